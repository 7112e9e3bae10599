#!/usr/bin/env bash
# Fjord's test command: everything CI runs, on a fresh machine or a warm one.
#
#   ./test.sh            all suites
#   ./test.sh rust       one suite: rust | fuzz | compat | librdkafka | perf-smoke | k8s
#
# It installs what the suites need by itself: the Rust components (rustfmt, clippy), cargo-fuzz
# (from crates.io; the fuzz suite runs libFuzzer on stable Rust), a Python
# venv with kafka-python and confluent-kafka from PyPI, Apache Kafka's jars and tools from
# Maven Central, librdkafka's build dependencies and containerd/runc/CNI from Debian, and
# Kubernetes, etcd, helm and CoreDNS built from their Go modules. Slow downloads and builds are
# cached by version under ${FJORD_CACHE:-$HOME/.cache/fjord}; Rust keeps target/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export FJORD_CACHE="${FJORD_CACHE:-$HOME/.cache/fjord}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
suites=("${@:-rust fuzz compat librdkafka perf-smoke k8s}")
suites=(${suites[*]})

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
started=$(date +%s)

ensure_rust() {
    command -v cargo >/dev/null || { echo "cargo is required (rustup)" >&2; exit 1; }
    if command -v rustup >/dev/null; then
        rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
        rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    fi
}

build_broker() {
    step "cargo build --release"
    cargo build --release --locked
    export FJORD_BROKER="${CARGO_TARGET_DIR:-$PWD/target}/release/fjord-broker"
}

for suite in "${suites[@]}"; do
    case $suite in
        rust)
            ensure_rust
            step "cargo fmt --check"
            cargo fmt --all -- --check
            step "cargo clippy -D warnings"
            cargo clippy --release --locked --all-targets -- -D warnings
            build_broker
            step "cargo test (unit and integration tests against a broker on 127.0.0.1:0)"
            cargo test --release --locked
            ;;
        fuzz)
            ensure_rust
            step "fuzzing: every target from the committed corpus, ${FUZZ_SECONDS:-30}s each"
            # The instrumented build is kept with the caches: a fresh clone rebuilds only Fjord.
            FJORD_FUZZ_TARGET_DIR="${FJORD_FUZZ_TARGET_DIR:-$FJORD_CACHE/fuzz-target}" e2e/fuzz/run
            ;;
        compat)
            build_broker
            step "client compatibility: kafka-python, confluent-kafka, Apache Kafka CLI tools and Java clients"
            e2e/compat/run
            ;;
        librdkafka)
            build_broker
            step "librdkafka's own test suite (allowlist) against Fjord, one node"
            e2e/librdkafka/against-fjord
            step "librdkafka's own test suite (allowlist) against three Fjord nodes"
            e2e/librdkafka/against-fjord --brokers 3
            ;;
        k8s)
            build_broker
            step "Kubernetes end to end: a real single-node cluster (e2e/k8s), broker image, CRDs"
            trap 'e2e/k8s down >/dev/null 2>&1 || true' EXIT
            e2e/k8s up
            e2e/k8s-test
            e2e/k8s down
            trap - EXIT
            ;;
        perf-smoke)
            build_broker
            step "performance harness, smoke mode"
            e2e/perf compare --smoke
            ;;
        *)
            echo "unknown suite: $suite (rust | fuzz | compat | librdkafka | perf-smoke | k8s)" >&2
            exit 2
            ;;
    esac
done
step "all suites passed in $(( $(date +%s) - started ))s"
