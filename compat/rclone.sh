#!/usr/bin/env bash
# rclone (the Debian package) against the gateway: mkdir, copy of a directory (0 B, 1 B, 3 MiB,
# 20 MiB with multipart forced at 5 MiB, 8 parts in flight, a nested key, a key with a space),
# check (multipart objects are compared through the X-Amz-Meta-Md5chksum metadata rclone sets on
# CreateMultipartUpload), md5sum, lsf, sync after a local change and a deletion, copy back down
# and diff -r, purge.
#
#   bash compat/rclone.sh [embedded|redis]     (no argument: both stores)
#
# The remote is configured through RCLONE_CONFIG_MPGW_* variables only; RCLONE_CONFIG points
# at an empty file under the run dir, so no rclone.conf of the user is read.
#
# compat-https: yes   (run-all.sh also runs this script with COMPAT_TLS=1)
set -euo pipefail

# shellcheck source=compat/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
each_store "$@"

MiB=1048576

command -v rclone >/dev/null || apt_install rclone
ensure_venv   # the aws cli checks what rclone did
log "client: $(rclone version 2>/dev/null | head -n 1)"
start_gateway "$1"

# Isolated configuration: nothing from ~/.config/rclone, only these variables.
: >"$COMPAT_RUN_DIR/rclone.conf"
for v in $(compgen -e); do
    [[ "$v" == RCLONE_* ]] && unset "$v"
done
export RCLONE_CONFIG="$COMPAT_RUN_DIR/rclone.conf"
export RCLONE_CONFIG_MPGW_TYPE=s3
export RCLONE_CONFIG_MPGW_PROVIDER=Other
export RCLONE_CONFIG_MPGW_ENDPOINT="$AWS_ENDPOINT_URL"
export RCLONE_CONFIG_MPGW_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
export RCLONE_CONFIG_MPGW_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
if [[ -n "${AWS_SESSION_TOKEN:-}" ]]; then
    export RCLONE_CONFIG_MPGW_SESSION_TOKEN="$AWS_SESSION_TOKEN"
fi
export RCLONE_CONFIG_MPGW_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export RCLONE_CONFIG_MPGW_FORCE_PATH_STYLE=true
if [[ -n "${AWS_CA_BUNDLE:-}" ]]; then
    export RCLONE_CA_CERT="$AWS_CA_BUNDLE"
fi

# rc ARGS...: rclone bounded in time, without retries (a server error must not be retried away).
rc() {
    local status=0
    # AWS_CA_BUNDLE stays with the aws cli: rclone 1.60's AWS SDK fails on it ("LoadCustomCABundleError:
    # ... unsupported transport"); rclone gets the certificate through RCLONE_CA_CERT instead.
    timeout -k 10 "$COMPAT_CMD_TIMEOUT" env -u AWS_CA_BUNDLE \
        rclone --retries 1 --low-level-retries 1 "$@" || status=$?
    if [[ $status -eq 124 ]]; then
        log "rclone timed out after $COMPAT_CMD_TIMEOUT s: rclone $*"
    elif [[ $status -ne 0 ]]; then
        log "(rclone exited with $status: rclone $*)"
    fi
    return "$status"
}
MULTIPART=(--s3-upload-cutoff 5M --s3-chunk-size 5M --s3-upload-concurrency 8)

# local_listing DIR: "path size" of every file, sorted (what `rclone lsf -R --format ps` prints).
local_listing() {
    (cd "$1" && find . -type f -printf '%P;%s\n' | LC_ALL=C sort)
}
remote_listing() {
    rc lsf -R --files-only --format ps --separator ';' "$1" | LC_ALL=C sort
}

# check_same LOCAL REMOTE: rclone check finds 0 differences and checked every hash.
check_same() {
    local out status=0
    out="$(rc check "$1" "$2" 2>&1)" || status=$?
    printf '%s\n' "$out" | sed 's/^/  check: /' >&2
    [[ $status -eq 0 ]] || fail "rclone check $1 $2 exited with $status"
    grep -q ' 0 differences found' <<<"$out" || fail "rclone check did not report 0 differences"
    if grep -q 'hashes could not be checked' <<<"$out"; then
        fail "rclone check could not compare some hashes (is X-Amz-Meta-Md5chksum kept for multipart objects?)"
    fi
}

# check_md5sums LOCAL REMOTE: rclone md5sum of the remote equals md5sum of the local files.
check_md5sums() {
    local expected actual
    expected="$(cd "$1" && find . -type f -printf '%P\0' | xargs -0 -r md5sum | LC_ALL=C sort -k2)"
    actual="$(rc md5sum "$2" | LC_ALL=C sort -k2)"
    expect_eq "rclone md5sum $2" "$expected" "$actual"
}

B="$(new_bucket)"
SRC="$WORK/src"
DOWN="$WORK/down"

step "rclone mkdir, lsd"
rc mkdir "mpgw:$B"
buckets="$(rc lsd mpgw:)"
grep -q " $B\$" <<<"$buckets" || fail "rclone lsd mpgw: does not list $B: $buckets"

step "local directory: 0 B, 1 B, 3 MiB, 20 MiB, a nested file and a name with a space"
mkdir -p "$SRC/sub/deeper"
: >"$SRC/empty.bin"
printf 'x' >"$SRC/one.bin"
head -c $((3 * MiB)) /dev/urandom >"$SRC/three-mib.bin"
head -c $((20 * MiB)) /dev/urandom >"$SRC/twenty-mib.bin"
head -c 12345 /dev/urandom >"$SRC/sub/deeper/nested.bin"
printf 'hello rclone\n' >"$SRC/sub/with space.txt"

step "rclone copy (multipart forced: --s3-upload-cutoff 5M --s3-chunk-size 5M --s3-upload-concurrency 8)"
rc copy "${MULTIPART[@]}" "$SRC" "mpgw:$B/data"
etag="$(awsc s3api head-object --bucket "$B" --key data/twenty-mib.bin --query ETag --output text)"
[[ "$etag" == *'-4"' ]] || fail "twenty-mib.bin should be a 4-part multipart object, ETag $etag"
meta="$(awsc s3api head-object --bucket "$B" --key data/twenty-mib.bin --query 'Metadata.md5chksum' --output text)"
expect_eq "X-Amz-Meta-Md5chksum of twenty-mib.bin" \
    "$(openssl dgst -md5 -binary "$SRC/twenty-mib.bin" | base64)" "$meta"

step "rclone lsf of the bucket root and of data/ (non-recursive: ListObjects with delimiter=/)"
# Everything is under data/, so the listing ends with a CommonPrefix.
status=0
root="$(rc --timeout 15s lsf "mpgw:$B" 2>"$WORK/lsf.err")" || status=$?
if [[ $status -ne 0 ]]; then
    cat "$WORK/lsf.err" >&2
    if grep -qi 'timeout' "$WORK/lsf.err"; then
        server_bug "rclone lsf mpgw:$B: the non-recursive listing (GET /$B?delimiter=%2F&max-keys=1000&prefix=) got no answer within 15 s; the gateway loops when the last entries of a delimiter listing roll up into a CommonPrefix"
    fi
    fail "rclone lsf mpgw:$B exited with $status"
fi
expect_eq "rclone lsf mpgw:$B" "data/" "$root"
expect_eq "rclone lsf mpgw:$B/data" "$(printf '%s\n' empty.bin one.bin sub/ three-mib.bin twenty-mib.bin)" \
    "$(rc --timeout 15s lsf "mpgw:$B/data" | LC_ALL=C sort)"

step "rclone lsf -R matches the local tree"
expect_eq "rclone lsf -R after copy" "$(local_listing "$SRC")" "$(remote_listing "mpgw:$B/data")"

step "rclone check (0 differences), rclone md5sum"
check_same "$SRC" "mpgw:$B/data"
check_md5sums "$SRC" "mpgw:$B/data"

step "change, add and delete local files, rclone sync"
head -c $((7 * MiB)) /dev/urandom >"$SRC/twenty-mib.bin"   # now 7 MiB, still multipart
printf 'y' >"$SRC/one.bin"
rm "$SRC/three-mib.bin" "$SRC/sub/deeper/nested.bin"
rmdir "$SRC/sub/deeper"
head -c 6000 /dev/urandom >"$SRC/added.bin"
rc sync "${MULTIPART[@]}" "$SRC" "mpgw:$B/data"
expect_eq "rclone lsf -R after sync" "$(local_listing "$SRC")" "$(remote_listing "mpgw:$B/data")"
check_same "$SRC" "mpgw:$B/data"
check_md5sums "$SRC" "mpgw:$B/data"
if awsc s3api head-object --bucket "$B" --key data/three-mib.bin >/dev/null 2>&1; then
    fail "data/three-mib.bin still exists after sync deleted it"
fi

step "rclone copy back down, diff -r"
rc copy "mpgw:$B/data" "$DOWN"
diff -r "$SRC" "$DOWN" >&2 || fail "downloaded tree differs from the local one"
cmp_files "$SRC/twenty-mib.bin" "$DOWN/twenty-mib.bin"

step "rclone purge"
rc purge "mpgw:$B"
buckets="$(rc lsd mpgw:)"
if grep -q " $B\$" <<<"$buckets"; then
    fail "bucket $B still listed after rclone purge"
fi
if awsc s3api head-bucket --bucket "$B" 2>/dev/null; then
    fail "bucket $B still exists after rclone purge"
fi

step "passed"
