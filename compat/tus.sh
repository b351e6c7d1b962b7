#!/usr/bin/env bash
# tus 1.0 clients against the gateway's /_tus/ endpoint (bearer tokens of the legacy users that
# the gateway generates into its data dir; a second S3 key gives a second user):
#
# - tus-js-client (npm, pinned by compat/tus/package-lock.json) on Node, compat/tus/tus-suite.mjs:
#   a 64 MiB file in 5 MiB chunks aborted half-way and resumed by a new Upload found through its
#   fingerprint (FileUrlStorage), counting the bytes of the second run on the wire (a TCP proxy
#   in the same process: only the missing bytes + at most one chunk may go out);
#   parallelUploads: 4 (concatenation); creation-with-upload; termination (HEAD 404, the
#   upload's blobs/<id> directory gone); a PATCH cut off mid-body; raw fetch() requests for 412,
#   415, 409, 460 (and 400 for an unknown checksum algorithm), 413 over Tus-Max-Size, 404 for
#   another user's upload, a final concatenation of another user's partial upload refused.
# - tuspy (PyPI, pinned below, in compat/.venv), compat/tus/tuspy_suite.py: 30 MiB in 1 MiB
#   chunks with Upload-Checksum, the gateway SIGKILLed (restart_gateway_hard) between two PATCHes
#   and once in the middle of one; each time a new Uploader resumes from HEAD's offset.
# - expiration: the gateway restarted with --upload-expiry 2s; an upload past its Upload-Expires
#   answers 404 or 410.
# Every finished upload is then read back with `aws s3api get-object --bucket files --key
# USER/NAME` and compared byte for byte (Content-Type from `filetype`, user metadata); uploads
# that must not have become objects are checked absent.
#
#   bash compat/tus.sh [embedded|redis]     (no argument: both stores)
#
# Needs node >= 20 and npm; `npm ci` runs in compat/tus when node_modules is missing or older
# than package-lock.json. Against COMPAT_ENDPOINT: COMPAT_TUS_TOKEN1 is the token of
# AWS_ACCESS_KEY_ID's user, COMPAT_TUS_USER2 / COMPAT_TUS_TOKEN2 an optional second user; the
# kills, the expiry and the blobs/<id> checks are skipped.
#
# compat-https: no   (tus rides on the S3 listener; the https passes of the S3 clients cover TLS)
set -euo pipefail

# shellcheck source=compat/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
each_store "$@"

TUS_DIR="$COMPAT_DIR/tus"
TUSPY_VERSION=1.1.0

ensure_tus_clients() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        apt_install nodejs npm
    fi
    local v
    v="$(node -e 'const a = Number(process.versions.node.split(".")[0]); console.log(a >= 20 ? "ok" : process.versions.node)')"
    [[ "$v" == ok ]] || fail "node $v is too old: this suite needs node >= 20 (fetch, AbortSignal.timeout)"
    if [[ ! -f "$TUS_DIR/node_modules/.package-lock.json" ||
        "$TUS_DIR/package-lock.json" -nt "$TUS_DIR/node_modules/.package-lock.json" ]]; then
        log "npm ci in $TUS_DIR"
        (cd "$TUS_DIR" && timeout -k 10 600 npm ci --no-audit --no-fund --loglevel=error >&2) ||
            fail "npm ci in $TUS_DIR failed"
    fi
    ensure_venv
    local have
    have="$("$COMPAT_VENV/bin/python" -c 'from importlib.metadata import version; print(version("tuspy"))' 2>/dev/null)" || true
    if [[ "$have" != "$TUSPY_VERSION" ]]; then
        log "installing into $COMPAT_VENV: tuspy==$TUSPY_VERSION"
        "$COMPAT_VENV/bin/python" -m pip install -q --disable-pip-version-check "tuspy==$TUSPY_VERSION"
    fi
    log "clients: node $(node --version), tus-js-client $(node -p 'require("'"$TUS_DIR"'/node_modules/tus-js-client/package.json").version'), tuspy $TUSPY_VERSION"
}

ensure_tus_clients

if [[ -z "$COMPAT_ENDPOINT" ]]; then
    # A second user: without --legacy-users, every S3 access key is a legacy user with a token
    # of its own, generated into the data dir.
    TUS_USER2=tus-user2
    COMPAT_GATEWAY_ARGS="$COMPAT_GATEWAY_ARGS --access-key $TUS_USER2 --secret-key tus-user2-s3-secret-0123456789"
fi
start_gateway "$1"
[[ "$COMPAT_SCHEME" == http ]] || fail "tus.sh runs over http only (compat-https: no)"

USER1="$AWS_ACCESS_KEY_ID"
if [[ -z "$COMPAT_ENDPOINT" ]]; then
    token_of() { awk -v u="$1" '$1 == u { print $2 }' "$GW_DATA_DIR/legacy-users"; }
    TUS_TOKEN1="$(token_of "$USER1")"
    TUS_TOKEN2="$(token_of "$TUS_USER2")"
    [[ -n "$TUS_TOKEN1" && -n "$TUS_TOKEN2" ]] || fail "no generated legacy tokens in $GW_DATA_DIR/legacy-users"
    TUS_DATA_DIR="$GW_DATA_DIR"
else
    TUS_TOKEN1="${COMPAT_TUS_TOKEN1:?with COMPAT_ENDPOINT, set COMPAT_TUS_TOKEN1 (the token of AWS_ACCESS_KEY_ID)}"
    TUS_USER2="${COMPAT_TUS_USER2:-}"
    TUS_TOKEN2="${COMPAT_TUS_TOKEN2:-}"
    TUS_DATA_DIR=""
fi
export TUS_BASE="$AWS_ENDPOINT_URL" TUS_TOKEN1 TUS_USER2 TUS_TOKEN2 TUS_DATA_DIR
: >"$WORK/tus-expect.tsv"

failed_parts=()

# tus_node MODE: the tus-js-client suite; returns 1 when it failed.
tus_node() {
    local status=0
    timeout -k 10 "$COMPAT_CMD_TIMEOUT" node "$TUS_DIR/tus-suite.mjs" "$1" "$WORK" "$(_run_label)" || status=$?
    if [[ $status -eq 124 ]]; then
        log "FAIL [tus/$(_run_label)] $CURRENT_STEP: timed out after $COMPAT_CMD_TIMEOUT s"
    elif [[ $status -ne 0 ]]; then
        log "FAIL [tus/$(_run_label)] $CURRENT_STEP: exit $status, see the FAIL lines above"
    fi
    return $((status != 0))
}

# tuspy MODE [N]: one run of the tuspy suite.
tuspy() {
    local mode="$1"
    shift
    timeout -k 10 "$COMPAT_CMD_TIMEOUT" "$COMPAT_VENV/bin/python" "$TUS_DIR/tuspy_suite.py" \
        "$mode" "$WORK" "$(_run_label)" "$@"
}

step "tus-js-client suite (node compat/tus/tus-suite.mjs main)"
tus_node main || failed_parts+=("tus-js-client")

# tuspy: the steps depend on each other, so the first failure ends this part.
tuspy_part() {
    step "tuspy: create, 8 chunks of 1 MiB"
    tuspy start 8 || return 1
    if [[ -n "$COMPAT_ENDPOINT" ]]; then
        step "tuspy: resume with a new Uploader, to the end (no kills against COMPAT_ENDPOINT)"
        tuspy resume 0 || return 1
        return 0
    fi
    step "tuspy: SIGKILL between two PATCHes, restart"
    restart_gateway_hard
    step "tuspy: resume from HEAD's offset (8 MiB) with a new Uploader, 8 more chunks"
    tuspy resume 8 || return 1

    step "tuspy: SIGKILL in the middle of a PATCH"
    rm -f "$WORK/tuspy-midpatch.ready"
    local pid status=0 deadline
    timeout -k 10 120 "$COMPAT_VENV/bin/python" "$TUS_DIR/tuspy_suite.py" midpatch "$WORK" "$(_run_label)" &
    pid=$!
    deadline=$((SECONDS + 60))
    while [[ ! -s "$WORK/tuspy-midpatch.ready" ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || true
            log "FAIL [tus/$(_run_label)] $CURRENT_STEP: the PATCH ended before the gateway was killed"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            kill "$pid" 2>/dev/null || true
            wait "$pid" || true
            log "FAIL [tus/$(_run_label)] $CURRENT_STEP: the PATCH did not start within 60 s"
            return 1
        fi
        sleep 0.1
    done
    sleep 0.5 # let the gateway read what was sent
    restart_gateway_hard
    wait "$pid" || status=$?
    [[ $status -eq 0 ]] || return 1

    step "tuspy: resume after the cut PATCH with a new Uploader, to the end"
    tuspy resume 0 || return 1
}
tuspy_part || failed_parts+=("tuspy")

# verify_objects FILE: every upload the suites finished (FILE, lines written by the suites) must
# be the object USER/NAME in the legacy bucket `files`; the others must not exist. Returns 1 on a
# mismatch.
verify_objects() {
    local kind name a b out bad=0 got
    while IFS=$'\t' read -r kind name a b; do
        case "$kind" in
        object)
            out="$WORK/s3-get.bin"
            rm -f "$out"
            if ! got="$(awsc s3api get-object --bucket files --key "$USER1/$name" "$out" --output json </dev/null)"; then
                log "FAIL [tus/$(_run_label)] $CURRENT_STEP: GetObject files/$USER1/$name failed"
                bad=1
                continue
            fi
            if ! cmp -s "$a" "$out"; then
                log "FAIL [tus/$(_run_label)] $CURRENT_STEP: files/$USER1/$name differs from $a ($(file_size "$a") B vs $(file_size "$out") B)"
                bad=1
                continue
            fi
            if [[ "$b" != - ]]; then
                local ct
                ct="$(json_eval 'd.get("ContentType")' <<<"$got")"
                if [[ "$ct" != "$b" ]]; then
                    log "FAIL [tus/$(_run_label)] $CURRENT_STEP: files/$USER1/$name has Content-Type '$ct', expected '$b' (from filetype)"
                    bad=1
                    continue
                fi
            fi
            log "ok: files/$USER1/$name ($(file_size "$a") B, same bytes)"
            ;;
        meta)
            got="$(awsc s3api head-object --bucket files --key "$USER1/$name" --output json </dev/null)" || {
                bad=1
                continue
            }
            local value
            value="$(json_eval "d.get('Metadata', {}).get('$a')" <<<"$got")"
            if [[ "$value" != "$b" ]]; then
                log "FAIL [tus/$(_run_label)] $CURRENT_STEP: files/$USER1/$name: user metadata $a is '$value', expected '$b'"
                bad=1
            fi
            ;;
        absent)
            if awsc s3api head-object --bucket files --key "$USER1/$name" </dev/null >/dev/null 2>&1; then
                log "FAIL [tus/$(_run_label)] $CURRENT_STEP: files/$USER1/$name exists, but that upload must not have made an object"
                bad=1
            fi
            ;;
        esac
    done <"$1"
    return "$bad"
}

step "the finished uploads through S3 (get-object --bucket files --key $USER1/NAME, cmp)"
mv "$WORK/tus-expect.tsv" "$WORK/tus-expect-main.tsv"
: >"$WORK/tus-expect.tsv"
[[ -s "$WORK/tus-expect-main.tsv" ]] || failed_parts+=("nothing to read back")
verify_objects "$WORK/tus-expect-main.tsv" || failed_parts+=("S3 read-back")

if [[ -z "$COMPAT_ENDPOINT" ]]; then
    step "restart the gateway with --upload-expiry 2s"
    COMPAT_GATEWAY_ARGS="$COMPAT_GATEWAY_ARGS --upload-expiry 2s"
    restart_gateway_hard
    step "expired upload (node compat/tus/tus-suite.mjs expired)"
    tus_node expired || failed_parts+=("expiration")
    verify_objects "$WORK/tus-expect.tsv" || failed_parts+=("S3 check after the expiry")
fi

step "summary"
if [[ ${#failed_parts[@]} -gt 0 ]]; then
    fail "failed: ${failed_parts[*]} (see the FAIL lines above)"
fi
step "passed"
