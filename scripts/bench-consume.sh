#!/usr/bin/env bash
# Consume CPU and throughput, one run, one broker: spate's library (examples/consume.rs),
# `spate consume` and `kcat -C` (librdkafka) read the same topic (written once, lz4) from a
# fresh tansu, from the beginning to the end. The broker shares the machine's cores, so the
# figure to compare is client CPU seconds (user + sys) per million messages.
#
#   scripts/bench-consume.sh                   # 1,000,000 messages of 100 B and of 1 KiB, 3 runs
#   COUNT=200000 RUNS=5 CODEC=none scripts/bench-consume.sh
#
# Needs what scripts/bench-produce.sh needs (tansu, kcat, the confluent-kafka wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-1000000}
RUNS=${RUNS:-3}
CODEC=${CODEC:-lz4}
. scripts/bench-common.sh

cargo build --release --quiet --bin spate --example consume
example=target/release/examples/consume
for _ in $(seq 50); do "$spate" metadata -b "$b" >/dev/null 2>&1 && break; sleep 0.1; done

results=$work/results
for size in 100 1024; do
    topic="bench-$size"
    "$spate" topic create -b "$b" -t "$topic" --partitions 6 >/dev/null
    "$PYTHON" - "$work/in.txt" "$COUNT" "$size" <<'PY'
import sys
path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
words = b"spate consumes batched compressed records from kafka "
lines = []
for i in range(1024):
    v = b"%06d " % i
    while len(v) < size:
        v += bytes([words[(len(v) * 7 + i) % len(words)]])
    lines.append(v[:size] + b"\n")
with open(path, "wb") as f:
    for i in range(count):
        f.write(lines[i % 1024])
PY
    "$spate" produce -b "$b" -t "$topic" -z "$CODEC" <"$work/in.txt" 2>/dev/null
    for run in $(seq "$RUNS"); do
        for tool in library cli kcat; do
            case $tool in
                library) cmd=("$example" "$b" "$topic") ;;
                cli) cmd=("$spate" consume -b "$b" -t "$topic" -e) ;;
                kcat) cmd=(env LD_LIBRARY_PATH="$rdk_dir" kcat -C -b "$b" -t "$topic" -e -q) ;;
            esac
            /usr/bin/time -f "%U %S %e" -o "$work/time" "${cmd[@]}" >"$work/out" 2>"$work/err" \
                || { cat "$work/err" >&2; exit 1; }
            if [ "$tool" != library ]; then
                lines=$(wc -l <"$work/out")
                [ "$lines" -eq "$COUNT" ] || { echo "$tool read $lines of $COUNT" >&2; exit 1; }
            fi
            read -r user sys wall <"$work/time"
            echo "$size $tool $user $sys $wall" >>"$results"
        done
    done
    "$spate" topic delete -b "$b" -t "$topic" >/dev/null
done

"$PYTHON" - "$results" "$COUNT" "$CODEC" <<'PY'
import statistics, sys
count, codec = int(sys.argv[2]), sys.argv[3]
rows = {}
for line in open(sys.argv[1]):
    size, tool, user, sys_, wall = line.split()
    rows.setdefault((int(size), tool), []).append((float(user) + float(sys_), float(wall)))
print(f"{count:,} messages, {codec}, 6 partitions, read from the beginning to the end; median of runs")
print()
print("| size | client | CPU s per million msgs | vs kcat | wall s | msgs/s |")
print("|---|---|---|---|---|---|")
for size in sorted({s for s, _ in rows}):
    kcat = statistics.median(c for c, _ in rows[(size, "kcat")]) * 1e6 / count
    for tool, name in [("library", "spate (library)"), ("cli", "spate consume"), ("kcat", "kcat -C (librdkafka 2.16)")]:
        cpu = statistics.median(c for c, _ in rows[(size, tool)]) * 1e6 / count
        wall = statistics.median(w for _, w in rows[(size, tool)])
        print(f"| {size} B | {name} | {cpu:.3f} | {(cpu / kcat if kcat else float('nan')):.2f} | {wall:.2f} | {(count / wall if wall else 0):,.0f} |")
PY
