#!/usr/bin/env bash
# Runs every test: format + lint, build, unit and integration tests (the fast and the slow tier:
# --features slow), a short fuzz run, client compatibility.
#
#   bash tests/run-all.sh
#
# Installs/starts what it needs when missing: redis-server (apt-get) — a private one on a free
# port when nothing answers at 127.0.0.1:6379 — the Python clients (compat/.venv), and for the
# fuzz run the nightly toolchain and cargo-fuzz (see tests/fuzz.sh).
#
# Switches: SKIP_LINT=1 (no fmt/clippy), SKIP_FUZZ=1 (no fuzz run; FUZZ_SECONDS sets the time per
# target, default 20), SKIP_COMPAT=1 (no compat/ scripts).
# REDIS_URL, when set, is used as is. STEP_TIMEOUT bounds each step (seconds, default 2400).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

: "${SKIP_LINT:=0}"
: "${SKIP_FUZZ:=0}"
: "${SKIP_COMPAT:=0}"
: "${STEP_TIMEOUT:=2400}"
START=$SECONDS

section() {
    printf '\n==== %s  [%s, +%ds]\n' "$*" "$(date '+%T')" "$((SECONDS - START))" >&2
}

# run_bounded CMD...: CMD under `timeout` (in its own process group, killed as a whole after
# STEP_TIMEOUT), in the background so Ctrl-C / SIGTERM here still reach it.
run_bounded() {
    local pid status
    timeout -k 30 "$STEP_TIMEOUT" "$@" </dev/null &
    pid=$!
    # shellcheck disable=SC2064 # expand $pid now
    trap "kill -TERM $pid 2>/dev/null; INTERRUPTED=1" INT TERM
    while :; do
        status=0
        wait "$pid" || status=$?
        kill -0 "$pid" 2>/dev/null || break
    done
    trap - INT TERM
    if [[ $INTERRUPTED -eq 1 ]]; then
        echo "interrupted" >&2
        exit 130
    fi
    if [[ $status -eq 124 ]]; then
        echo "TIMED OUT after ${STEP_TIMEOUT}s: $*" >&2
    fi
    return "$status"
}
INTERRUPTED=0

APT_UPDATED=0
apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    if [[ $APT_UPDATED -eq 0 ]]; then
        "${sudo[@]}" apt-get update -q
        APT_UPDATED=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# ---------------------------------------------------------------------------------------------
REDIS_PID_FILE=""
stop_private_redis() {
    if [[ -n "$REDIS_PID_FILE" && -s "$REDIS_PID_FILE" ]]; then
        local pid
        pid="$(cat "$REDIS_PID_FILE")"
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$REDIS_PID_FILE"
    fi
}

on_exit() {
    local status=$?
    set +e
    stop_private_redis
    if [[ $status -ne 0 ]]; then
        printf '\n==== FAILED (exit %d) after %d s\n' "$status" "$((SECONDS - START))" >&2
    fi
    exit "$status"
}
trap on_exit EXIT

redis_ping() { # HOST PORT
    [[ "$(timeout 5 redis-cli -h "$1" -p "$2" ping 2>/dev/null)" == PONG ]]
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_private_redis() {
    local dir="$ROOT/target/test-redis" port attempt
    mkdir -p "$dir"
    REDIS_PID_FILE="$dir/redis.pid"
    for attempt in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 20000))
        port_in_use "$port" && continue
        rm -f "$REDIS_PID_FILE"
        if redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
            --daemonize yes --pidfile "$REDIS_PID_FILE" --dir "$dir" \
            --logfile "$dir/redis-$port.log"; then
            local deadline=$((SECONDS + 10))
            while ((SECONDS < deadline)); do
                if redis_ping 127.0.0.1 "$port"; then
                    export REDIS_URL="redis://127.0.0.1:$port"
                    echo "started a private redis-server at $REDIS_URL (attempt $attempt)" >&2
                    return 0
                fi
                sleep 0.1
            done
            stop_private_redis
        fi
    done
    echo "could not start redis-server; see $dir/redis-*.log" >&2
    exit 1
}

section "redis"
# Whatever Redis the tests share, the persistence, cluster and TLS tests start private
# redis-servers of their own, and the TLS tests make certificates with openssl.
missing=()
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    missing+=(redis-server)
fi
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi
if [[ -n "${REDIS_URL:-}" ]]; then
    echo "using REDIS_URL=$REDIS_URL (from the environment)" >&2
elif command -v redis-cli >/dev/null && redis_ping 127.0.0.1 6379; then
    export REDIS_URL="redis://127.0.0.1:6379"
    echo "using the Redis server at $REDIS_URL" >&2
else
    start_private_redis
fi

# ---------------------------------------------------------------------------------------------
if [[ "$SKIP_LINT" != 1 ]]; then
    section "cargo fmt --all -- --check"
    run_bounded cargo fmt --all -- --check
    section "cargo clippy --all-targets --locked --features slow -- -D warnings"
    run_bounded cargo clippy --all-targets --locked --features slow -- -D warnings
else
    section "lint skipped (SKIP_LINT=1)"
fi

section "cargo build --locked --all-targets --features slow"
# One feature set for every step, so nothing is compiled twice.
run_bounded cargo build --locked --all-targets --features slow

section "cargo test --locked --features slow (both tiers)"
# tests/slow_clients.rs holds 1,200 connections open at once; raise the soft fd limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
run_bounded cargo test --locked --features slow

if [[ "$SKIP_FUZZ" != 1 ]]; then
    section "fuzz: bash tests/fuzz.sh (${FUZZ_SECONDS:-20}s per target)"
    run_bounded bash tests/fuzz.sh
else
    section "fuzz skipped (SKIP_FUZZ=1)"
fi

if [[ "$SKIP_COMPAT" != 1 ]]; then
    section "compat: bash compat/run-all.sh"
    export MPGW_BIN="$ROOT/target/debug/mpgw"
    run_bounded bash compat/run-all.sh
else
    section "compat skipped (SKIP_COMPAT=1)"
fi

section "all tests passed in $((SECONDS - START)) s"
