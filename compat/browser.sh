#!/usr/bin/env bash
# The browser upload page (/ui/) in headless Chromium, driven by playwright-core from npm
# (pinned in compat/browser/package-lock.json; it never downloads a browser: Debian's
# `chromium` package is used, installed when /usr/bin/chromium is missing). See the header of
# compat/browser/browser-test.mjs for the steps: the page's JS SHA-256 against Node's crypto,
# sign in, a 30 MiB chunked upload with a failed chunk retried, Pause/Resume, a page reload in
# the middle and the same file selected again (resumes: only the missing chunks are sent),
# download through a signed link + SHA-256, Cancel, and a second user's instant upload of the
# same content (proof of possession, no chunk sent). Then the page in its tus mode
# (compat/browser/tus-ui-test.mjs): a ~12 MiB upload through /_tus/ in 1 MiB PATCHes with
# Pause/Resume, a reload past 40 % and the same file picked again (HEAD, then PATCH from the
# server's offset, no second POST), download + SHA-256, Cancel (DELETE), and an upload URL the
# server forgot (HEAD 404: a new POST). Then, from a page of another origin (a
# local server on another port): a presigned UploadPart PUT reading the ETag
# (presigned_cors.py), and presigned POST forms (presigned_post.py): a real <form> with a file
# input answered with 201 PostResponse, one with success_action_redirect (303 back to the
# origin), and fetch() with FormData reading ETag and Location (CORS expose).
#
#   bash compat/browser.sh [embedded|redis]     (no argument: both stores)
#
# Screenshots (kept after a pass): compat/out/browser-<store>[-https].png after the upload, and
# the same name with -progress (mid-upload), -reloaded (after the reload), -offline (network
# drop) and -instant (second user's instant upload); browser-<store>[-https]-tus.png after the
# tus upload, with -progress and -reloaded.
# CHROMIUM overrides the browser binary (default /usr/bin/chromium). Needs node >= 20 and npm.
# The legacy tokens are the ones the gateway generated into its data dir (legacy-users). With
# COMPAT_ENDPOINT, user 1 is AWS_ACCESS_KEY_ID with token COMPAT_BROWSER_TOKEN1, and the
# instant-upload step runs only when COMPAT_BROWSER_USER2 / COMPAT_BROWSER_TOKEN2 are set.
set -euo pipefail

# shellcheck source=compat/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
each_store "$@"

BROWSER_DIR="$COMPAT_DIR/browser"
: "${CHROMIUM:=/usr/bin/chromium}"

# Debian packages, `apt-get update` at most once (root, or sudo).
_browser_apt_updated=0
browser_apt_install() {
    command -v apt-get >/dev/null || fail "cannot install $* here (no apt-get); please install it"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || fail "need root or sudo to install $*"
        sudo=(sudo)
    fi
    if [[ $_browser_apt_updated -eq 0 ]]; then
        timeout -k 10 600 "${sudo[@]}" apt-get update -q >&2 || fail "apt-get update failed"
        _browser_apt_updated=1
    fi
    timeout -k 10 900 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
        fail "apt-get install $* failed"
}

ensure_browser_deps() {
    if [[ ! -x "$CHROMIUM" ]]; then
        [[ "$CHROMIUM" == /usr/bin/chromium ]] || fail "CHROMIUM=$CHROMIUM is not an executable"
        log "installing Debian's chromium"
        browser_apt_install chromium
        [[ -x "$CHROMIUM" ]] || fail "no $CHROMIUM after installing the chromium package"
    fi
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        browser_apt_install nodejs npm
    fi
    local v
    v="$(node -e 'const a = Number(process.versions.node.split(".")[0]); console.log(a >= 20 ? "ok" : process.versions.node)')"
    [[ "$v" == ok ]] || fail "node $v is too old: playwright-core needs node >= 20"
    if [[ ! -f "$BROWSER_DIR/node_modules/.package-lock.json" ||
        "$BROWSER_DIR/package-lock.json" -nt "$BROWSER_DIR/node_modules/.package-lock.json" ||
        "$BROWSER_DIR/package.json" -nt "$BROWSER_DIR/node_modules/.package-lock.json" ]]; then
        local cmd=ci
        [[ -f "$BROWSER_DIR/package-lock.json" ]] || cmd=install
        log "npm $cmd in $BROWSER_DIR (playwright-core only; no browser download)"
        (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout -k 10 600 \
            npm "$cmd" --no-audit --no-fund --loglevel=error >&2) || fail "npm $cmd in $BROWSER_DIR failed"
    fi
    log "browser: $("$CHROMIUM" --version 2>/dev/null | head -n1); node $(node --version); playwright-core $(node -p 'require("'"$BROWSER_DIR"'/node_modules/playwright-core/package.json").version')"
}

ensure_browser_deps

if [[ -z "$COMPAT_ENDPOINT" ]]; then
    # A second user for the instant upload: without --legacy-users, every S3 access key is a
    # legacy user, with a token of its own that the gateway generates into its data dir.
    : "${COMPAT_BROWSER_USER2:=browser-user2}"
    COMPAT_GATEWAY_ARGS="$COMPAT_GATEWAY_ARGS --access-key $COMPAT_BROWSER_USER2 --secret-key browser-user2-s3-secret-0123456789"
fi
start_gateway "$1"
export BROWSER_BASE_URL="$AWS_ENDPOINT_URL"
export BROWSER_USER1="$AWS_ACCESS_KEY_ID"
if [[ -z "$COMPAT_ENDPOINT" ]]; then
    token_of() { awk -v u="$1" '$1 == u { print $2 }' "$GW_DATA_DIR/legacy-users"; }
    BROWSER_TOKEN1="$(token_of "$BROWSER_USER1")"
    COMPAT_BROWSER_TOKEN2="$(token_of "$COMPAT_BROWSER_USER2")"
    [[ -n "$BROWSER_TOKEN1" && -n "$COMPAT_BROWSER_TOKEN2" ]] || fail "no generated legacy tokens in $GW_DATA_DIR/legacy-users"
    [[ "$BROWSER_TOKEN1" != "$AWS_SECRET_ACCESS_KEY" ]] || fail "the legacy token is the S3 secret key"
else
    BROWSER_TOKEN1="${COMPAT_BROWSER_TOKEN1:?with COMPAT_ENDPOINT, set COMPAT_BROWSER_TOKEN1 (user 1 is AWS_ACCESS_KEY_ID)}"
fi
export BROWSER_TOKEN1 BROWSER_USER2="${COMPAT_BROWSER_USER2:-}" BROWSER_TOKEN2="${COMPAT_BROWSER_TOKEN2:-}"
export CHROMIUM

shot="$COMPAT_DIR/out/browser-$COMPAT_STORE"
[[ "$COMPAT_SCHEME" == https ]] && shot="$shot-https"
mkdir -p "$COMPAT_DIR/out"
rm -f "$shot.png" "$shot-instant.png" "$shot-tus.png" "$shot-tus-progress.png" "$shot-tus-reloaded.png"

step "browser suite (node compat/browser/browser-test.mjs, $COMPAT_SCHEME)"
status=0
timeout -k 10 "$COMPAT_CMD_TIMEOUT" node "$BROWSER_DIR/browser-test.mjs" "$WORK" "$COMPAT_STORE" "$shot" || status=$?
if [[ $status -eq 124 ]]; then
    fail "browser suite timed out after $COMPAT_CMD_TIMEOUT s"
elif [[ $status -ne 0 ]]; then
    fail "browser suite failed (exit $status): see the FAIL line above"
fi
[[ -s "$shot.png" ]] || fail "no screenshot $shot.png"
log "screenshots: $shot.png $shot-instant.png"

step "the page's tus mode (node compat/browser/tus-ui-test.mjs, $COMPAT_SCHEME)"
status=0
timeout -k 10 "$COMPAT_CMD_TIMEOUT" node "$BROWSER_DIR/tus-ui-test.mjs" "$WORK" "$COMPAT_STORE" "$shot-tus" || status=$?
if [[ $status -eq 124 ]]; then
    fail "the tus page test timed out after $COMPAT_CMD_TIMEOUT s (requests: $WORK/tus-ui-requests.json)"
elif [[ $status -ne 0 ]]; then
    fail "the tus page test failed (exit $status): see the FAIL line above (requests: $WORK/tus-ui-requests.json)"
fi
[[ -s "$shot-tus.png" ]] || fail "no screenshot $shot-tus.png"
log "screenshots: $shot-tus-progress.png $shot-tus-reloaded.png $shot-tus.png"

step "presigned UploadPart from a page of another origin (CORS in Chromium)"
ensure_venv
timeout -k 10 "$COMPAT_CMD_TIMEOUT" "$COMPAT_VENV/bin/python" "$BROWSER_DIR/presigned_cors.py" \
    || fail "presigned UploadPart from another origin failed"

step "presigned POST from a page of another origin: a real <form> (201, then a 303 redirect) and fetch() reading ETag/Location"
timeout -k 10 "$COMPAT_CMD_TIMEOUT" "$COMPAT_VENV/bin/python" "$BROWSER_DIR/presigned_post.py" \
    || fail "presigned POST from another origin failed"

step "passed"
