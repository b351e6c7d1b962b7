#!/usr/bin/env bash
# Runs every client script compat/*.sh (but lib.sh and run-all.sh) against both state stores,
# stopping at the first failure, and ends with the line "N passed, M failed".
#
#   bash compat/run-all.sh
#
# COMPAT_STORES overrides the stores ("embedded redis"); with COMPAT_ENDPOINT set, each script
# runs once, against that endpoint. COMPAT_SCRIPT_TIMEOUT bounds one script run (seconds).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -n "${COMPAT_ENDPOINT:-}" ]]; then
    : "${COMPAT_STORES:=external}"
else
    : "${COMPAT_STORES:=embedded redis}"
fi
: "${COMPAT_SCRIPT_TIMEOUT:=1200}"
read -r -a stores <<<"$COMPAT_STORES"

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
    case "$(basename "$f")" in
    lib.sh | run-all.sh) ;;
    *) scripts+=("$f") ;;
    esac
done
[[ ${#scripts[@]} -gt 0 ]] || { echo "no client scripts in compat/" >&2; exit 1; }

passed=0
failed=0
start=$SECONDS
for script in "${scripts[@]}"; do
    for store in "${stores[@]}"; do
        t0=$SECONDS
        echo "=== compat: $script $store" >&2
        status=0
        run_bounded "$COMPAT_SCRIPT_TIMEOUT" bash "$script" "$store" || status=$?
        if [[ $status -eq 0 ]]; then
            passed=$((passed + 1))
            echo "=== compat: $script $store: ok ($((SECONDS - t0)) s)" >&2
        else
            failed=$((failed + 1))
            if [[ $interrupted -eq 1 ]]; then
                echo "=== compat: $script $store: interrupted" >&2
            elif [[ $status -eq 124 ]]; then
                echo "=== compat: $script $store: TIMED OUT after $COMPAT_SCRIPT_TIMEOUT s" >&2
            else
                echo "=== compat: $script $store: FAILED (exit $status)" >&2
            fi
            break 2
        fi
    done
done

echo "compat: $((SECONDS - start)) s" >&2
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
