#!/usr/bin/env bash
# Completion events (bucket notifications) with real clients: boto3 and redis-py (PyPI, in
# compat/.venv) and a webhook receiver (Python http.server), compat/events/events_suite.py.
# The suite runs its own gateways (`mpgw serve` with --notify-webhook hook=<receiver>
# --notify-webhook-secret, --notify-redis feed=<stream> --notify-redis-url, --notify-backoff 200ms
# --notify-backoff-max 1s, a --legacy-users file), because it kills and restarts them while the
# receiver keeps counting:
#
#  1. put/get_bucket_notification_configuration: two webhook rules (prefix docs/, suffix .txt;
#     created and removed) and a Redis Stream rule (prefix feed/), read back as put;
#  9. refused with InvalidArgument (ClientError), the configuration left as it was: an unknown
#     ARN, overlapping prefixes with one event type, an unknown event name;
#  2. upload_file (multipart, 3 parts), put_object (a key with a space), copy_object,
#     delete_object: exactly one event each (CompleteMultipartUpload, Put, Copy, Delete), every
#     field of the AWS record checked (request id = what boto3 saw, ETag = head_object's without
#     quotes, key form-encoded, sequencer = the X-Mpgw-Delivery seq); keys outside the filters
#     and a delete of a missing key make none;
#  7. XREAD on the stream: the feed/ events, field `event` the same JSON;
#  3. the note's API (/file/mpupload/init, uppart, complete) as a --legacy-users user: an
#     ObjectCreated:CompleteMultipartUpload for <user>/<filename> in the `files` bucket;
#  5. the receiver down for 3 s (port closed) under 9 writes on 3 keys: all arrive afterwards, in
#     write order per key; a receiver answering 500 twice: the event is retried and arrives;
#  6. the gateway SIGKILLed right after writes, the receiver down; restart (same data dir and
#     Redis prefix), receiver back: every event arrives (duplicates counted and printed); the
#     gateway SIGKILLed while the receiver holds a POST: that delivery is sent again (same
#     X-Mpgw-Delivery) once the dead gateway's lease ran out (30 s);
#  8. (redis store) two gateways on one Redis prefix with separate data dirs, writes through
#     both, with the receiver up and after an outage (both retry one backlog): every event
#     delivered exactly once (a duplicate fails), in order per key;
# 10. --notify-max-tries 2 and a receiver answering 500: `mpgw admin events list --dead`,
#     `retry` (then delivered), `drop` (never delivered); beside the gateway with Redis, with
#     the gateway stopped for the embedded store;
#     --notify-queue-limit 3 with the receiver down: the 4th write is refused with 503 SlowDown
#     and stores nothing; then an empty configuration: no more events;
#  4. every request the receiver got had X-Mpgw-Signature: sha256=<HMAC-SHA256 of the body>.
#
#   bash compat/events.sh [embedded|redis]     (no argument: both stores)
#   COMPAT_TLS=1 bash compat/events.sh redis   (the S3 and legacy requests over https)
#
# The stream is the key compat-events-<16 hex> on REDIS_URL (also for the embedded store: the
# Redis Stream target needs a Redis), deleted at the end. Against COMPAT_ENDPOINT there is
# nothing to run (the targets are settings of a gateway started here): SKIPPED.
#
# compat-https: yes   (run-all.sh also runs this script with COMPAT_TLS=1)
set -euo pipefail

# shellcheck source=compat/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
each_store "$@"

if [[ -n "$COMPAT_ENDPOINT" ]]; then
    log "SKIPPED: events.sh needs a gateway it starts itself (notification targets are its settings), not COMPAT_ENDPOINT"
    exit 0
fi

ensure_venv_with redis=redis
command -v redis-cli >/dev/null || fail "redis-cli not found (run tests/run-all.sh, or install redis-tools)"
[[ "$(timeout 5 redis-cli -u "$REDIS_URL" ping 2>&1)" == PONG ]] ||
    fail "no Redis answering at $REDIS_URL (the Redis Stream target needs one, whatever the store)"

prepare_gateway "$1"
EVENTS_STREAM="compat-events-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

# On top of lib.sh's cleanup: the gateways the suite left running (it stops them itself, but
# not when it is killed), and the stream.
_events_cleanup() {
    local status=$? pid exe
    set +e # (a failing command here must not end the cleanup before lib.sh's part)
    if [[ -f "$WORK/gateway-pids" ]]; then
        while read -r pid; do
            exe="$(readlink -f "/proc/$pid/exe" 2>/dev/null)" || continue
            [[ "$exe" == "$(readlink -f "$MPGW_BIN")" ]] && kill -KILL "$pid" 2>/dev/null
        done <"$WORK/gateway-pids"
    fi
    timeout 10 redis-cli -u "$REDIS_URL" del "$EVENTS_STREAM" >/dev/null 2>&1 || true
    if [[ $status -ne 0 && -s "$COMPAT_RUN_DIR/server-b.log" ]]; then
        log "--- last 30 lines of $COMPAT_RUN_DIR/server-b.log (the second gateway):"
        tail -n 30 "$COMPAT_RUN_DIR/server-b.log" >&2
    fi
    (exit "$status")
    _compat_cleanup
}
trap _events_cleanup EXIT

export MPGW_BIN COMPAT_STORE COMPAT_RUN_DIR GW_DATA_DIR REDIS_URL GW_REDIS_PREFIX COMPAT_ACCESS_KEY \
    COMPAT_SECRET_KEY COMPAT_SCHEME GW_TLS_CERT GW_TLS_KEY COMPAT_GATEWAY_ARGS EVENTS_STREAM

step "events suite ($COMPAT_SCHEME, store $COMPAT_STORE)"
status=0
timeout -k 10 "$COMPAT_CMD_TIMEOUT" "$COMPAT_VENV/bin/python" "$COMPAT_DIR/events/events_suite.py" \
    "$WORK" "$(_run_label)" || status=$?
if [[ $status -eq 124 ]]; then
    fail "the events suite timed out after $COMPAT_CMD_TIMEOUT s"
elif [[ $status -ne 0 ]]; then
    fail "the events suite failed (exit $status): see the FAIL lines above"
fi

step "passed"
