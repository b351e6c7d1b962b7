#!/usr/bin/env bash
# Builds every fuzz target of fuzz/ (cargo-fuzz, nightly) and runs each one for a bounded time,
# starting from its seed corpus in fuzz/corpus/<target>; any crash or failed property fails.
#
#   bash tests/fuzz.sh [target...]        # default: every target (`cargo fuzz list`)
#
# Installs what it needs when missing: the nightly toolchain (rustup) and cargo-fuzz (crates.io).
# FUZZ_SECONDS: time per target (default 20). FUZZ_TIMEOUT bounds each target's run as a whole
# (seconds, default FUZZ_SECONDS + 120). Build artifacts stay in fuzz/target between runs; the
# inputs libFuzzer finds go to fuzz/target/corpus/<target> (git ignores fuzz/target), so the
# committed seeds never change. A crash leaves its input in fuzz/artifacts/<target>/; replay
# it with `cargo +nightly fuzz run --sanitizer none <target> <file>`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

: "${FUZZ_SECONDS:=20}"
: "${FUZZ_TIMEOUT:=$((FUZZ_SECONDS + 120))}"
# Our code forbids `unsafe`: AddressSanitizer would mostly slow the build and the runs down.
FUZZ_FLAGS=(--sanitizer none)
START=$SECONDS

step() {
    printf '\n== fuzz: %s  [+%ds]\n' "$*" "$((SECONDS - START))" >&2
}

if ! cargo +nightly --version >/dev/null 2>&1; then
    step "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# fuzz/ is its own workspace, which the main `cargo fmt --all` does not see.
step "cargo fmt --manifest-path fuzz/Cargo.toml -- --check"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

step "cargo +nightly fuzz build ${FUZZ_FLAGS[*]}"
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

for t in "${targets[@]}"; do
    step "$t for ${FUZZ_SECONDS}s"
    work="fuzz/target/corpus/$t"
    mkdir -p "$work"
    log="fuzz/target/$t.log"
    # New inputs land in the first corpus directory; the seeds are only read.
    if ! timeout -k 10 "$FUZZ_TIMEOUT" \
        cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $t failed; full log: $log, crashing input: fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$log" >&2 || true
done

step "all ${#targets[@]} targets passed in $((SECONDS - START)) s"
