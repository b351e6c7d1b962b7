#!/usr/bin/env bash
# Runs every client script compat/*.sh (but lib.sh and run-all.sh) against both state stores,
# then, for the scripts marked `# compat-https: yes` (all of them today), the same over https
# (COMPAT_TLS=1), stopping at the first failure, and ends with the line "N passed, M failed".
#
#   bash compat/run-all.sh
#
# COMPAT_STORES overrides the stores ("embedded redis"); with COMPAT_ENDPOINT set, each script
# runs once, against that endpoint (no https pass: the endpoint's scheme decides).
# COMPAT_TLS_STORES: stores of the https passes (default: COMPAT_STORES; empty: none).
# COMPAT_SCRIPTS: only these scripts (e.g. "boto3 rclone"; default: all).
# COMPAT_KEEP_GOING=1: run everything even after a failure.
# COMPAT_SCRIPT_TIMEOUT bounds one script run (seconds).
#
# The https passes need `mpgw serve --tls-cert/--tls-key`. A gateway binary without them gets a
# loud SKIPPED line for these passes (not counted), unless COMPAT_TLS_REQUIRED=1, which counts
# them as failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -n "${COMPAT_ENDPOINT:-}" ]]; then
    : "${COMPAT_STORES:=external}"
    COMPAT_TLS_STORES=""
else
    : "${COMPAT_STORES:=embedded redis}"
fi
: "${COMPAT_TLS_STORES=$COMPAT_STORES}"
: "${COMPAT_SCRIPT_TIMEOUT:=1200}"
: "${COMPAT_KEEP_GOING:=0}"
: "${COMPAT_TLS_REQUIRED:=0}"
: "${COMPAT_SCRIPTS:=}"
read -r -a stores <<<"$COMPAT_STORES"
read -r -a tls_stores <<<"$COMPAT_TLS_STORES"

# run_bounded SECONDS CMD...: CMD under `timeout` (its own process group, killed as a whole),
# in the background so that Ctrl-C / SIGTERM here still reach it.
run_bounded() {
    local limit="$1" pid status
    shift
    timeout -k 30 "$limit" "$@" </dev/null &
    pid=$!
    # shellcheck disable=SC2064 # expand $pid now
    trap "kill -TERM $pid 2>/dev/null; interrupted=1" INT TERM
    while :; do
        status=0
        wait "$pid" || status=$?
        kill -0 "$pid" 2>/dev/null || break
    done
    trap - INT TERM
    return "$status"
}
interrupted=0

scripts=()
for f in compat/*.sh; do
    name="$(basename "$f" .sh)"
    case "$name" in
    lib | run-all) continue ;;
    esac
    if [[ -n "$COMPAT_SCRIPTS" && " $COMPAT_SCRIPTS " != *" $name "* ]]; then
        continue
    fi
    scripts+=("$f")
done
[[ ${#scripts[@]} -gt 0 ]] || { echo "no client scripts in compat/ (COMPAT_SCRIPTS='$COMPAT_SCRIPTS')" >&2; exit 1; }

passed=0
failed=0
skipped=0
results=()
start=$SECONDS
tls_support=""   # yes|no, found out before the first https pass

# run_one SCRIPT STORE TRANSPORT: one run; returns 1 when the run failed.
run_one() {
    local script="$1" store="$2" transport="$3" label t0 status=0
    label="$script $store"
    [[ "$transport" == https ]] && label="$label (https)"
    t0=$SECONDS
    echo "=== compat: $label" >&2
    if [[ "$transport" == https ]]; then
        run_bounded "$COMPAT_SCRIPT_TIMEOUT" env COMPAT_TLS=1 bash "$script" "$store" || status=$?
    else
        run_bounded "$COMPAT_SCRIPT_TIMEOUT" env COMPAT_TLS=0 bash "$script" "$store" || status=$?
    fi
    if [[ $status -eq 0 ]]; then
        passed=$((passed + 1))
        echo "=== compat: $label: ok ($((SECONDS - t0)) s)" >&2
        results+=("ok      $label ($((SECONDS - t0)) s)")
        return 0
    fi
    failed=$((failed + 1))
    if [[ $interrupted -eq 1 ]]; then
        echo "=== compat: $label: interrupted" >&2
    elif [[ $status -eq 124 ]]; then
        echo "=== compat: $label: TIMED OUT after $COMPAT_SCRIPT_TIMEOUT s" >&2
    else
        echo "=== compat: $label: FAILED (exit $status)" >&2
    fi
    results+=("FAILED  $label ($((SECONDS - t0)) s)")
    return 1
}

for script in "${scripts[@]}"; do
    for store in "${stores[@]}"; do
        if ! run_one "$script" "$store" http; then
            [[ "$COMPAT_KEEP_GOING" == 1 && $interrupted -eq 0 ]] || break 2
        fi
    done
    grep -q '^# compat-https: yes' "$script" || continue
    for store in "${tls_stores[@]}"; do
        if [[ -z "$tls_support" ]]; then
            # shellcheck disable=SC2016 # expanded by the inner bash
            if bash -c 'source compat/lib.sh && gateway_supports_tls'; then
                tls_support=yes
            else
                tls_support=no
            fi
        fi
        if [[ "$tls_support" == no && "$COMPAT_TLS_REQUIRED" != 1 ]]; then
            skipped=$((skipped + 1))
            echo "=== compat: $script $store (https): SKIPPED: ${MPGW_BIN:-target/debug/mpgw} has no --tls-cert flag yet" >&2
            results+=("SKIPPED $script $store (https): gateway has no --tls-cert")
            continue
        fi
        if ! run_one "$script" "$store" https; then
            [[ "$COMPAT_KEEP_GOING" == 1 && $interrupted -eq 0 ]] || break 2
        fi
    done
done

echo "compat: $((SECONDS - start)) s" >&2
printf '  %s\n' "${results[@]}" >&2
if [[ $skipped -gt 0 ]]; then
    echo "compat: $skipped https pass(es) SKIPPED: the gateway has no --tls-cert (COMPAT_TLS_REQUIRED=1 makes them fail)" >&2
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
