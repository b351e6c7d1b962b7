# shellcheck shell=bash
# Shared helpers for the client compatibility scripts (compat/<client>.sh). Source it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Environment (all optional):
#   MPGW_BIN            gateway binary (default target/debug/mpgw, built when missing)
#   REDIS_URL           Redis for the `redis` store (default redis://127.0.0.1:6379)
#   COMPAT_ENDPOINT     test an already running S3 endpoint instead of starting a gateway;
#                       credentials then come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
#                       (and AWS_SESSION_TOKEN), region from AWS_DEFAULT_REGION (default us-east-1)
#   COMPAT_ACCESS_KEY / COMPAT_SECRET_KEY   keys of the gateway started here
#   COMPAT_GATEWAY_ARGS extra arguments for `mpgw serve` (word-split)
#   COMPAT_VENV         Python venv with the clients (default compat/.venv)
#   COMPAT_KEEP=1       keep compat/out/<run>/ even when the script passes
#   COMPAT_CMD_TIMEOUT  seconds one client command may take (default 300)
#   COMPAT_TLS=1        serve https (same as `start_gateway STORE https`): the gateway gets
#                       --tls-cert/--tls-key with a self-signed certificate for 127.0.0.1 and
#                       localhost, made once per run under the run dir; AWS_ENDPOINT_URL is
#                       https://127.0.0.1:PORT and AWS_CA_BUNDLE that certificate

set -euo pipefail

COMPAT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$COMPAT_DIR/.." && pwd)"
SCRIPT_NAME="$(basename "$0" .sh)"

: "${MPGW_BIN:=$REPO_ROOT/target/debug/mpgw}"
: "${REDIS_URL:=redis://127.0.0.1:6379}"
: "${COMPAT_ENDPOINT:=}"
: "${COMPAT_ACCESS_KEY:=MPGWCOMPATACCESSKEY1}"
: "${COMPAT_SECRET_KEY:=compat-secret-key-0123456789abcdefghij}"
: "${COMPAT_GATEWAY_ARGS:=}"
: "${COMPAT_VENV:=$COMPAT_DIR/.venv}"
: "${COMPAT_KEEP:=0}"
: "${COMPAT_CMD_TIMEOUT:=300}"
: "${COMPAT_TLS:=0}"
export MPGW_BIN REDIS_URL

# Set by start_gateway.
COMPAT_STORE=""
COMPAT_RUN_DIR=""   # compat/out/<script>-<store>-<pid>/ (server.log, data/, work/, aws config)
WORK=""             # scratch files of the script
GW_PID=""
GW_PORT=""
GW_DATA_DIR=""
GW_REDIS_PREFIX=""
GW_TLS_CERT=""     # with TLS: the self-signed certificate (also AWS_CA_BUNDLE)
GW_TLS_KEY=""
COMPAT_SCHEME=http # http|https: how the gateway started here is reached
CURRENT_STEP="(setup)"

# "store" or "store/https": names the run in messages.
_run_label() {
    if [[ "$COMPAT_SCHEME" == https ]]; then
        printf '%s/https' "${COMPAT_STORE:-?}"
    else
        printf '%s' "${COMPAT_STORE:-?}"
    fi
}

log() { printf '%s\n' "$*" >&2; }

step() {
    CURRENT_STEP="$*"
    printf '\n--- [%s/%s] %s\n' "$SCRIPT_NAME" "$(_run_label)" "$*" >&2
}

fail() {
    printf 'FAIL [%s/%s] %s: %s\n' "$SCRIPT_NAME" "$(_run_label)" "$CURRENT_STEP" "$*" >&2
    exit 1
}

# server_bug WHAT: a check that fails because of a known gateway bug (reported, not worked
# around). Fails like `fail`, with a marker that is easy to grep for.
server_bug() {
    fail "SERVER BUG: $*"
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
    [[ "$2" == "$3" ]] || fail "$1: expected '$2', got '$3'"
}

# Installs Debian packages (apt-get update once per process; sudo only when not root).
# With no store argument, runs the calling script once per store (or once against
# COMPAT_ENDPOINT) and exits; with one, returns and the script runs for that store.
each_store() {
    [[ $# -gt 0 ]] && return 0
    if [[ -n "$COMPAT_ENDPOINT" ]]; then
        exec bash "$0" external
    fi
    local store
    for store in embedded redis; do
        bash "$0" "$store"
    done
    exit 0
}

_apt_updated=0
apt_install() {
    command -v apt-get >/dev/null || fail "cannot install $* here (no apt-get); please install it"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || fail "need root or sudo to install $*"
        sudo=(sudo)
    fi
    if [[ $_apt_updated -eq 0 ]]; then
        "${sudo[@]}" apt-get update -q >&2
        _apt_updated=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# Python venv with the aws cli (v1, from PyPI) and boto3; puts its bin/ first in PATH.
ensure_venv() {
    local py="$COMPAT_VENV/bin/python"
    if ! [[ -x "$py" ]] || ! "$py" -c 'import awscli, boto3' 2>/dev/null; then
        log "setting up the Python venv $COMPAT_VENV (awscli, boto3)"
        if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
            apt_install python3 python3-venv
        fi
        if ! [[ -x "$py" ]] || ! "$py" -m pip --version >/dev/null 2>&1; then
            python3 -m venv --clear "$COMPAT_VENV"
        fi
        "$py" -m pip install -q --disable-pip-version-check awscli boto3
    fi
    PATH="$COMPAT_VENV/bin:$PATH"
    export PATH
    AWS="$COMPAT_VENV/bin/aws"
    log "clients: $("$AWS" --version 2>&1); boto3 $("$py" -c 'import boto3; print(boto3.__version__)')"
}

# ensure_venv_with PIP_PACKAGE=IMPORT_NAME...: ensure_venv, plus these packages when they
# cannot be imported (e.g. `ensure_venv_with awscrt=awscrt`).
ensure_venv_with() {
    local py="$COMPAT_VENV/bin/python" extra pkgs=()
    ensure_venv
    for extra in "$@"; do
        "$py" -c "import ${extra#*=}" 2>/dev/null || pkgs+=("${extra%%=*}")
    done
    if [[ ${#pkgs[@]} -gt 0 ]]; then
        log "installing into $COMPAT_VENV: ${pkgs[*]}"
        "$py" -m pip install -q --disable-pip-version-check "${pkgs[@]}"
    fi
}

# The Python to use for small helpers (the venv's when it exists).
py() {
    if [[ -x "$COMPAT_VENV/bin/python" ]]; then
        "$COMPAT_VENV/bin/python" "$@"
    else
        python3 "$@"
    fi
}

free_port() {
    py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# A bucket name nobody else uses (lowercase, DNS-compatible).
new_bucket() {
    printf 'compat-%s-%s\n' "$(date +%s)" "$RANDOM"
}

# aws cli with the endpoint always passed explicitly, bounded in time.
awsc() {
    local status=0
    timeout -k 10 "$COMPAT_CMD_TIMEOUT" "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" "$@" || status=$?
    if [[ $status -eq 124 ]]; then
        log "aws timed out after $COMPAT_CMD_TIMEOUT s: aws $*"
    elif [[ $status -ne 0 ]]; then
        log "(aws exited with $status: aws $*)"
    fi
    return "$status"
}

# Reads JSON on stdin and prints a Python expression over it (`d`); empty input is {}.
#   awsc s3api list-parts ... --output json | json_eval 'len(d.get("Parts", []))'
json_eval() {
    py -c 'import json, sys
raw = sys.stdin.read()
d = json.loads(raw) if raw.strip() else {}
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)' "$1"
}

# The S3 multipart ETag of the given part files: hex(md5(md5(p1) || md5(p2) ...))-N.
multipart_etag() {
    py -c 'import hashlib, sys
def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()
print("%s-%d" % (hashlib.md5(b"".join(md5(p) for p in sys.argv[1:])).hexdigest(), len(sys.argv) - 1))' "$@"
}

# parts_json ETAG1 ETAG2 ...: the --multipart-upload document for complete-multipart-upload.
parts_json() {
    py -c 'import json, sys
print(json.dumps({"Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(sys.argv[1:])]}))' "$@"
}

file_size() { stat -c %s "$1"; }
md5_hex() { md5sum "$1" | cut -d' ' -f1; }

# cmp_files EXPECTED ACTUAL
cmp_files() {
    cmp -s "$1" "$2" || fail "content differs: $1 ($(file_size "$1") B) vs $2 ($(file_size "$2") B)"
}

_ensure_binary() {
    if [[ -x "$MPGW_BIN" ]]; then
        return
    fi
    if [[ "$MPGW_BIN" != "$REPO_ROOT/target/debug/mpgw" ]]; then
        fail "MPGW_BIN=$MPGW_BIN is not an executable"
    fi
    log "building $MPGW_BIN"
    (cd "$REPO_ROOT" && cargo build --locked --bin mpgw)
}

_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts `mpgw serve` on GW_PORT (picks a new one when empty) with GW_DATA_DIR and, for the
# redis store, GW_REDIS_PREFIX. Waits (<= 30 s) until it accepts connections. Returns 1 when
# the process exits early (e.g. the port was taken).
_spawn_gateway() {
    [[ -n "$GW_PORT" ]] || GW_PORT="$(free_port)"
    local args=(serve --listen "127.0.0.1:$GW_PORT" --data-dir "$GW_DATA_DIR"
        --access-key "$COMPAT_ACCESS_KEY" --secret-key "$COMPAT_SECRET_KEY" --region us-east-1)
    if [[ "$COMPAT_STORE" == redis ]]; then
        args+=(--redis-url "$REDIS_URL" --redis-prefix "$GW_REDIS_PREFIX")
    fi
    if [[ "$COMPAT_SCHEME" == https ]]; then
        args+=(--tls-cert "$GW_TLS_CERT" --tls-key "$GW_TLS_KEY")
    fi
    local extra=()
    read -r -a extra <<<"$COMPAT_GATEWAY_ARGS"
    args+=("${extra[@]}")
    printf '\n=== %s %s\n' "$(date '+%F %T')" "$MPGW_BIN ${args[*]}" >>"$COMPAT_RUN_DIR/server.log"
    # The gateway reads MPGW_* settings from the environment: only the flags above count here.
    local bin="$MPGW_BIN" v
    (
        for v in $(compgen -e); do
            [[ "$v" == MPGW_* ]] && unset "$v"
        done
        exec "$bin" "${args[@]}"
    ) >>"$COMPAT_RUN_DIR/server.log" 2>&1 &
    GW_PID=$!
    local deadline=$((SECONDS + 30))
    while ! _port_open "$GW_PORT"; do
        if ! kill -0 "$GW_PID" 2>/dev/null; then
            local status=0
            wait "$GW_PID" 2>/dev/null || status=$?
            log "gateway exited during startup (exit $status, port $GW_PORT)"
            GW_PID=""
            return 1
        fi
        if ((SECONDS >= deadline)); then
            fail "gateway not accepting connections on 127.0.0.1:$GW_PORT after 30 s"
        fi
        sleep 0.2
    done
    AWS_ENDPOINT_URL="$COMPAT_SCHEME://127.0.0.1:$GW_PORT"
    export AWS_ENDPOINT_URL
    log "gateway pid $GW_PID on $AWS_ENDPOINT_URL (store $COMPAT_STORE, data $GW_DATA_DIR)"
}

_spawn_gateway_retrying() {
    local _
    for _ in 1 2 3; do
        if _spawn_gateway; then
            return 0
        fi
        GW_PORT=""   # maybe the port was taken meanwhile: try another one
    done
    fail "gateway did not start (3 attempts); see $COMPAT_RUN_DIR/server.log"
}

_stop_gateway() {
    [[ -n "$GW_PID" ]] || return 0
    kill -TERM "$GW_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$GW_PID" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    kill -KILL "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=""
}

# Kills the gateway with SIGKILL (no graceful shutdown) and starts it again on the same port,
# data dir and Redis prefix.
restart_gateway_hard() {
    [[ -z "$COMPAT_ENDPOINT" ]] || fail "restart_gateway_hard needs a gateway started here"
    log "killing gateway pid $GW_PID with SIGKILL"
    kill -KILL "$GW_PID"
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=""
    _spawn_gateway_retrying
}

_compat_cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [[ $status -ne 0 ]]; then
        log ""
        log "FAILED: $SCRIPT_NAME ($COMPAT_STORE), exit $status, in step: $CURRENT_STEP"
        if [[ -n "$COMPAT_RUN_DIR" && -s "$COMPAT_RUN_DIR/server.log" ]]; then
            log "--- last 50 lines of $COMPAT_RUN_DIR/server.log:"
            tail -n 50 "$COMPAT_RUN_DIR/server.log" >&2
            log "---"
        fi
    fi
    _stop_gateway
    if [[ -n "$GW_REDIS_PREFIX" ]]; then
        if command -v redis-cli >/dev/null; then
            timeout 60 redis-cli -u "$REDIS_URL" --scan --pattern "${GW_REDIS_PREFIX}*" |
                timeout 60 xargs -r -d '\n' redis-cli -u "$REDIS_URL" del >/dev/null
        else
            log "redis-cli missing: cannot delete the keys ${GW_REDIS_PREFIX}*"
        fi
    fi
    if [[ -n "$COMPAT_RUN_DIR" && -d "$COMPAT_RUN_DIR" ]]; then
        if [[ "$COMPAT_KEEP" == 1 ]]; then
            log "kept $COMPAT_RUN_DIR"
        elif [[ $status -eq 0 ]]; then
            rm -rf "$COMPAT_RUN_DIR"
            rmdir "$COMPAT_DIR/out" 2>/dev/null || true
        else
            # Keep the logs, not the 100 MiB files (COMPAT_KEEP=1 keeps everything).
            rm -rf "$WORK" "$GW_DATA_DIR"
            log "kept the logs in $COMPAT_RUN_DIR"
        fi
    fi
    exit "$status"
}

# True when the gateway binary has the --tls-cert flag.
gateway_supports_tls() {
    _ensure_binary
    local help
    help="$("$MPGW_BIN" serve --help 2>/dev/null)" || true
    [[ "$help" == *--tls-cert* ]]
}

# A self-signed certificate + key for 127.0.0.1 and localhost under the run dir (made once).
_ensure_tls_cert() {
    local dir="$COMPAT_RUN_DIR/tls"
    GW_TLS_CERT="$dir/cert.pem"
    GW_TLS_KEY="$dir/key.pem"
    [[ -s "$GW_TLS_CERT" && -s "$GW_TLS_KEY" ]] && return 0
    command -v openssl >/dev/null || apt_install openssl
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$GW_TLS_KEY" -out "$GW_TLS_CERT" 2>"$dir/openssl.log" ||
        fail "openssl could not make a self-signed certificate: $(cat "$dir/openssl.log")"
}

# Host and port of AWS_ENDPOINT_URL ("127.0.0.1:9000"), for clients configured by host name.
endpoint_hostport() {
    local rest="${AWS_ENDPOINT_URL#*://}"
    printf '%s\n' "${rest%%/*}"
}

# start_gateway STORE [https] (STORE: embedded|redis): starts a private gateway (over https with
# a self-signed certificate when the second argument is `https` or COMPAT_TLS=1), or with
# COMPAT_ENDPOINT set uses that endpoint (STORE then only names the run; its scheme decides http
# or https, AWS_CA_BUNDLE is left as given). Sets WORK, AWS_ENDPOINT_URL, COMPAT_SCHEME and the
# AWS_* credentials, and cleans everything up when the script exits.
start_gateway() {
    prepare_gateway "$@"
    [[ -n "$COMPAT_ENDPOINT" ]] && return 0
    _spawn_gateway_retrying
}

# prepare_gateway STORE [https]: everything start_gateway does but starting the gateway, for a
# script that runs its own `mpgw serve` processes: the run dir, WORK, the AWS_* settings, the
# binary, GW_DATA_DIR, GW_REDIS_PREFIX (redis store), GW_TLS_CERT/GW_TLS_KEY (https), and the
# cleanup at exit (Redis keys GW_REDIS_PREFIX*, the run dir).
prepare_gateway() {
    COMPAT_STORE="${1:?usage: start_gateway embedded|redis [https]}"
    case "${2:-}" in
    "") ;;
    https) COMPAT_TLS=1 ;;
    http) COMPAT_TLS=0 ;;
    *) fail "start_gateway: unknown transport '$2' (http|https)" ;;
    esac
    if [[ -n "$COMPAT_ENDPOINT" ]]; then
        COMPAT_SCHEME="${COMPAT_ENDPOINT%%://*}"
    elif [[ "$COMPAT_TLS" == 1 ]]; then
        COMPAT_SCHEME=https
    else
        COMPAT_SCHEME=http
    fi
    if [[ -z "$COMPAT_ENDPOINT" ]]; then
        case "$COMPAT_STORE" in
        embedded | redis) ;;
        *) fail "unknown store '$COMPAT_STORE' (embedded|redis)" ;;
        esac
    fi
    if [[ "$COMPAT_SCHEME" == https ]]; then
        COMPAT_RUN_DIR="$COMPAT_DIR/out/$SCRIPT_NAME-$COMPAT_STORE-https-$$"
    else
        COMPAT_RUN_DIR="$COMPAT_DIR/out/$SCRIPT_NAME-$COMPAT_STORE-$$"
    fi
    WORK="$COMPAT_RUN_DIR/work"
    rm -rf "$COMPAT_RUN_DIR"
    mkdir -p "$WORK"
    trap _compat_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # Keep the user's ~/.aws (profiles, endpoints, checksum settings) out of the picture.
    : >"$COMPAT_RUN_DIR/aws-config"
    : >"$COMPAT_RUN_DIR/aws-credentials"
    export AWS_CONFIG_FILE="$COMPAT_RUN_DIR/aws-config"
    export AWS_SHARED_CREDENTIALS_FILE="$COMPAT_RUN_DIR/aws-credentials"
    export AWS_EC2_METADATA_DISABLED=true
    unset AWS_PROFILE AWS_DEFAULT_PROFILE

    if [[ -n "$COMPAT_ENDPOINT" ]]; then
        [[ -n "${AWS_ACCESS_KEY_ID:-}" && -n "${AWS_SECRET_ACCESS_KEY:-}" ]] ||
            fail "COMPAT_ENDPOINT needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        export AWS_ENDPOINT_URL="$COMPAT_ENDPOINT"
        export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
        [[ "$COMPAT_TLS" != 1 || "$COMPAT_SCHEME" == https ]] ||
            log "COMPAT_TLS=1 ignored: COMPAT_ENDPOINT decides the scheme ($COMPAT_ENDPOINT)"
        log "using the external endpoint $AWS_ENDPOINT_URL (no gateway started)"
        return 0
    fi

    export AWS_ACCESS_KEY_ID="$COMPAT_ACCESS_KEY"
    export AWS_SECRET_ACCESS_KEY="$COMPAT_SECRET_KEY"
    export AWS_DEFAULT_REGION=us-east-1
    unset AWS_SESSION_TOKEN AWS_REGION

    _ensure_binary
    if [[ "$COMPAT_SCHEME" == https ]]; then
        gateway_supports_tls ||
            fail "https requested but $MPGW_BIN has no --tls-cert flag (\`mpgw serve --help\`): TLS not built in yet"
        _ensure_tls_cert
        export AWS_CA_BUNDLE="$GW_TLS_CERT"
    else
        unset AWS_CA_BUNDLE
    fi
    GW_DATA_DIR="$COMPAT_RUN_DIR/data"
    mkdir -p "$GW_DATA_DIR"
    if [[ "$COMPAT_STORE" == redis ]]; then
        command -v redis-cli >/dev/null || fail "redis-cli not found (run tests/run-all.sh, or install redis-tools)"
        [[ "$(timeout 5 redis-cli -u "$REDIS_URL" ping 2>&1)" == PONG ]] || fail "no Redis answering at $REDIS_URL"
        # Fixed length, so no run's prefix is a prefix of another's (the cleanup uses PREFIX*).
        GW_REDIS_PREFIX="compat-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    fi
    GW_PORT=""
}
