#!/usr/bin/env bash
# AWS SDK for JavaScript v3 (@aws-sdk/client-s3, lib-storage, s3-request-presigner, s3-presigned-post from npm, versions
# pinned in compat/js/package-lock.json) on Node against the gateway, with forcePathStyle:
# lib-storage `Upload` of a 20 MiB file stream (5 MiB parts, 4 in flight) with both
# requestChecksumCalculation settings, an Upload of unknown length, GetObject + SHA-256,
# PutObject with a Buffer body and with a stream body (the SDK sends stream bodies as aws-chunked
# STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer, over plain http too; lib-storage
# buffers parts, so UploadPart bodies are Buffers), getSignedUrl (@aws-sdk/s3-request-presigner:
# PutObject with metadata and CopyObject, whose x-amz-* headers it moves into the signed query)
# used through fetch, createPresignedPost (@aws-sdk/s3-presigned-post) + fetch with FormData,
# object tags (Upload with `tags`, PutObject Tagging, Put/Get/DeleteObjectTagging, TagCount),
# ListObjectsV2 paging and with a delimiter, DeleteObjects. Steps:
# compat/js/jssdk-suite.mjs.
#
#   bash compat/jssdk.sh [embedded|redis]     (no argument: both stores)
#
# Needs node >= 20.15 and npm; `npm ci` runs in compat/js when node_modules is missing or
# older than package-lock.json.
#
# compat-https: yes   (run-all.sh also runs this script with COMPAT_TLS=1)
set -euo pipefail

# shellcheck source=compat/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
each_store "$@"

JS_DIR="$COMPAT_DIR/js"

ensure_node_deps() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        apt_install nodejs npm
    fi
    local v
    v="$(node -e 'const [a, b] = process.versions.node.split(".").map(Number); console.log(a > 20 || (a === 20 && b >= 15) ? "ok" : process.versions.node)')"
    [[ "$v" == ok ]] || fail "node $v is too old: the AWS SDK for JavaScript v3 needs node >= 20.15"
    if [[ ! -f "$JS_DIR/node_modules/.package-lock.json" ||
        "$JS_DIR/package-lock.json" -nt "$JS_DIR/node_modules/.package-lock.json" ]]; then
        log "npm ci in $JS_DIR"
        (cd "$JS_DIR" && timeout -k 10 600 npm ci --no-audit --no-fund --loglevel=error >&2) ||
            fail "npm ci in $JS_DIR failed"
    fi
    log "client: node $(node --version), @aws-sdk/client-s3 $(node -p 'require("'"$JS_DIR"'/node_modules/@aws-sdk/client-s3/package.json").version'), @aws-sdk/lib-storage $(node -p 'require("'"$JS_DIR"'/node_modules/@aws-sdk/lib-storage/package.json").version')"
}

ensure_node_deps
start_gateway "$1"

step "jssdk suite (node compat/js/jssdk-suite.mjs, $COMPAT_SCHEME)"
status=0
if [[ -n "${AWS_CA_BUNDLE:-}" ]]; then
    export NODE_EXTRA_CA_CERTS="$AWS_CA_BUNDLE"
fi
timeout -k 10 "$COMPAT_CMD_TIMEOUT" node "$JS_DIR/jssdk-suite.mjs" "$WORK" "$(_run_label)" || status=$?
if [[ $status -eq 124 ]]; then
    fail "jssdk suite timed out after $COMPAT_CMD_TIMEOUT s"
elif [[ $status -ne 0 ]]; then
    fail "jssdk suite failed (exit $status): see the FAIL line above"
fi

step "passed"
