#!/usr/bin/env bash
# tus 1.0 (/_tus/) from a browser: Uppy with @uppy/tus in headless Chromium, driven by
# playwright-core (versions pinned in compat/tusbrowser/package-lock.json; no browser download:
# Debian's `chromium` package, installed when /usr/bin/chromium is missing). The page
# (compat/tusbrowser/index.html + page.mjs, bundled with esbuild at test time into the run dir)
# is served from another 127.0.0.1 port than the gateway, so every tus request is a real CORS
# request. It uploads a ~12 MiB file built from a seeded PRNG in 1 MiB chunks with the legacy
# user's Bearer token; the test pauses and resumes it, reloads the page past 40 % (tus-js-client
# must resume from the fingerprint it stored: a HEAD, then a PATCH from the offset the gateway
# had, > 0), and waits for Uppy's complete event. See compat/tusbrowser/tus-test.mjs. The object
# `<user>/<name>` in the bucket `files` is then compared byte for byte with the same bytes made
# by Node (compat/tusbrowser/gen.mjs), its Content-Type with the upload's `filetype` and its
# user metadata with the page's extra meta field.
#
#   bash compat/tus-browser.sh [embedded|redis]     (no argument: both stores)
#
# compat-https: no   (http only: run-all.sh runs it once per store; the page's origin is http)
#
# Screenshots (kept after a pass): compat/out/tus-browser-<store>.png when complete,
# -progress.png (before the reload), -reloaded.png (after it). CHROMIUM overrides the browser
# binary (default /usr/bin/chromium); needs node >= 20 and npm. The token is the one the gateway
# generated into its data dir (legacy-users); with COMPAT_ENDPOINT, the user is
# AWS_ACCESS_KEY_ID and the token COMPAT_TUS_TOKEN.
set -euo pipefail

# shellcheck source=compat/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
each_store "$@"

TUS_DIR="$COMPAT_DIR/tusbrowser"
: "${CHROMIUM:=/usr/bin/chromium}"

# Debian packages, `apt-get update` at most once (root, or sudo).
_tus_apt_updated=0
tus_apt_install() {
    command -v apt-get >/dev/null || fail "cannot install $* here (no apt-get); please install it"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || fail "need root or sudo to install $*"
        sudo=(sudo)
    fi
    if [[ $_tus_apt_updated -eq 0 ]]; then
        timeout -k 10 600 "${sudo[@]}" apt-get update -q >&2 || fail "apt-get update failed"
        _tus_apt_updated=1
    fi
    timeout -k 10 900 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
        fail "apt-get install $* failed"
}

# The installed version of an npm package of compat/tusbrowser.
tus_pkg_version() { node -p 'require(process.argv[1]).version' "$TUS_DIR/node_modules/$1/package.json"; }

ensure_tus_browser_deps() {
    if [[ ! -x "$CHROMIUM" ]]; then
        [[ "$CHROMIUM" == /usr/bin/chromium ]] || fail "CHROMIUM=$CHROMIUM is not an executable"
        log "installing Debian's chromium"
        tus_apt_install chromium
        [[ -x "$CHROMIUM" ]] || fail "no $CHROMIUM after installing the chromium package"
    fi
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        tus_apt_install nodejs npm
    fi
    local v
    v="$(node -e 'const a = Number(process.versions.node.split(".")[0]); console.log(a >= 20 ? "ok" : process.versions.node)')"
    [[ "$v" == ok ]] || fail "node $v is too old: playwright-core and Uppy need node >= 20"
    if [[ ! -f "$TUS_DIR/node_modules/.package-lock.json" ||
        "$TUS_DIR/package-lock.json" -nt "$TUS_DIR/node_modules/.package-lock.json" ||
        "$TUS_DIR/package.json" -nt "$TUS_DIR/node_modules/.package-lock.json" ]]; then
        log "npm ci in $TUS_DIR (playwright-core, @uppy/core, @uppy/tus, esbuild; no browser download)"
        (cd "$TUS_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout -k 10 600 \
            npm ci --no-audit --no-fund --loglevel=error >&2) || fail "npm ci in $TUS_DIR failed"
    fi
    log "browser: $("$CHROMIUM" --version 2>/dev/null | head -n1); node $(node --version); playwright-core $(tus_pkg_version playwright-core), @uppy/core $(tus_pkg_version @uppy/core), @uppy/tus $(tus_pkg_version @uppy/tus), tus-js-client $(tus_pkg_version tus-js-client), esbuild $(tus_pkg_version esbuild)"
}

ensure_tus_browser_deps
ensure_venv

start_gateway "$1" http
user="$AWS_ACCESS_KEY_ID"
if [[ -z "$COMPAT_ENDPOINT" ]]; then
    step "the legacy user's token (generated into $GW_DATA_DIR/legacy-users)"
    token_of() { awk -v u="$1" '$1 == u { print $2 }' "$GW_DATA_DIR/legacy-users" 2>/dev/null; }
    deadline=$((SECONDS + 10))
    token=""
    while [[ -z "$token" ]] && ((SECONDS < deadline)); do
        token="$(token_of "$user")"
        [[ -n "$token" ]] || sleep 0.2
    done
    [[ -n "$token" ]] || fail "no token for $user in $GW_DATA_DIR/legacy-users after 10 s"
    [[ "$token" != "$AWS_SECRET_ACCESS_KEY" ]] || fail "the legacy token is the S3 secret key"
else
    token="${COMPAT_TUS_TOKEN:?with COMPAT_ENDPOINT, set COMPAT_TUS_TOKEN (the user is AWS_ACCESS_KEY_ID)}"
fi

seed=$(((RANDOM << 15 | RANDOM) + 1))
size=$((12 * 1024 * 1024 + 12345)) # 13 chunks of 1 MiB, the last one short
name="tus-browser-$COMPAT_STORE-$seed.bin"
type="application/x-mpgw-tus-test"

step "bundle the page (esbuild compat/tusbrowser/page.mjs)"
bundle="$WORK/tusbrowser/app.js"
mkdir -p "$WORK/tusbrowser"
(cd "$TUS_DIR" && timeout -k 10 120 node_modules/.bin/esbuild page.mjs --bundle --format=esm \
    --platform=browser --target=chrome110 --log-level=warning --outfile="$bundle" >&2) ||
    fail "esbuild could not bundle compat/tusbrowser/page.mjs"
[[ -s "$bundle" ]] || fail "no bundle $bundle"

shot="$COMPAT_DIR/out/tus-browser-$COMPAT_STORE"
mkdir -p "$COMPAT_DIR/out"
rm -f "$shot.png" "$shot-progress.png" "$shot-reloaded.png"

step "Uppy + tus in Chromium: $name ($size B), pause/resume, reload at 40 % and resume, complete"
status=0
TUS_GATEWAY="$AWS_ENDPOINT_URL" TUS_TOKEN="$token" TUS_NAME="$name" TUS_TYPE="$type" \
    TUS_SEED="$seed" TUS_SIZE="$size" TUS_BUNDLE="$bundle" CHROMIUM="$CHROMIUM" \
    timeout -k 10 "$COMPAT_CMD_TIMEOUT" node "$TUS_DIR/tus-test.mjs" "$WORK" "$COMPAT_STORE" "$shot" \
    >"$WORK/result.json" || status=$?
if [[ $status -eq 124 ]]; then
    fail "the browser test timed out after $COMPAT_CMD_TIMEOUT s (requests: $WORK/tus-requests.json)"
elif [[ $status -ne 0 ]]; then
    fail "the browser test failed (exit $status): see the FAIL line above"
fi
log "result: $(cat "$WORK/result.json")"
[[ -s "$shot.png" ]] || fail "no screenshot $shot.png"

step "the object files/$user/$name is the file the page built (same PRNG in Node, cmp)"
node "$TUS_DIR/gen.mjs" "$seed" "$size" "$WORK/expected.bin" || fail "gen.mjs failed"
expect_eq "size of the regenerated file" "$size" "$(file_size "$WORK/expected.bin")"
awsc s3api get-object --bucket files --key "$user/$name" "$WORK/got.bin" --output json >"$WORK/get.json" ||
    fail "get-object files/$user/$name failed"
cmp_files "$WORK/expected.bin" "$WORK/got.bin"
expect_eq "ContentLength of files/$user/$name" "$size" "$(json_eval 'd.get("ContentLength")' <"$WORK/get.json")"
expect_eq "ContentType of files/$user/$name (the upload's filetype)" "$type" "$(json_eval 'd.get("ContentType")' <"$WORK/get.json")"
# Uppy sends every meta field of the file; the page adds origin=tus-browser.
expect_eq "user metadata 'origin' of files/$user/$name (Upload-Metadata origin)" "tus-browser" \
    "$(json_eval 'd.get("Metadata", {}).get("origin")' <"$WORK/get.json")"

step "passed"
log "screenshots: $shot-progress.png $shot-reloaded.png $shot.png"
