#!/usr/bin/env bash
# A long fuzzing campaign over every target (CI runs only short smoke runs: scripts/test.sh).
# Each target runs until RUNS executions or SECONDS seconds, whichever comes first, JOBS
# targets at a time, with the same memory limits as CI (an allocation over 512 MiB is a
# finding). Prints one line per target and a summary; exits non-zero on any finding, whose
# input is left under fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                          # 10 million runs or 1 hour per target
#   RUNS=1000000 SECONDS_MAX=600 scripts/fuzz.sh responses requests
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler; runs on stable
# through RUSTC_BOOTSTRAP=1, as CI does.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
RUNS=${RUNS:-10000000}
SECONDS_MAX=${SECONDS_MAX:-3600}
JOBS=${JOBS:-$(nproc)}
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cargo fuzz build -O
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
mkdir -p logs

run_one() {
    local target=$1 log="logs/$1.log" started
    mkdir -p "corpus/$target" "seeds/$target"
    started=$(date +%s)
    if cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
            -runs="$RUNS" -max_total_time="$SECONDS_MAX" \
            -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 >"$log" 2>&1; then
        local runs secs
        # -a: a log may hold the bytes of an input; the last "Done" line is this run's.
        runs=$(grep -a -E '^Done [0-9]+ runs' "$log" | tail -n 1 | awk '{print $2}')
        secs=$(( $(date +%s) - started ))
        printf '%-20s %12s runs %6s s %9s runs/s  no finding\n' "$target" "$runs" "$secs" \
            "$(( runs / (secs > 0 ? secs : 1) ))"
    else
        printf '%-20s FINDING (see fuzz/%s and fuzz/artifacts/%s/)\n' "$target" "$log" "$target"
        return 1
    fi
}

status=0
running=0
for target in "${targets[@]}"; do
    run_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
echo "campaign: RUNS=$RUNS SECONDS_MAX=$SECONDS_MAX, $(date -u +%Y-%m-%d), $(nproc) cores: $([ $status = 0 ] && echo 'no finding' || echo 'FINDINGS')"
exit $status
