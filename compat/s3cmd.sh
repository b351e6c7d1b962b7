#!/usr/bin/env bash
# s3cmd (the Debian package, SigV4, path-style addressing) against the gateway: mb, put of a
# 20 MiB file in 5 MiB parts and of a small file, ls/la/info, get, cmp, multipart listing and
# abortmp of an interrupted upload, del, rb.
#
#   bash compat/s3cmd.sh [embedded|redis]     (no argument: both stores)
#
# The configuration lives in the run dir (`-c FILE`), ~/.s3cfg is never read. host_bucket has
# no %(bucket)s, so s3cmd uses path-style requests (http://HOST:PORT/BUCKET/KEY).
#
# compat-https: yes   (run-all.sh also runs this script with COMPAT_TLS=1)
set -euo pipefail

# shellcheck source=compat/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
each_store "$@"

MiB=1048576

command -v s3cmd >/dev/null || apt_install s3cmd
ensure_venv   # the aws cli checks what s3cmd did
log "client: $(s3cmd --version 2>&1)"
start_gateway "$1"

CFG="$COMPAT_RUN_DIR/s3cfg"
{
    echo "[default]"
    echo "access_key = $AWS_ACCESS_KEY_ID"
    echo "secret_key = $AWS_SECRET_ACCESS_KEY"
    if [[ -n "${AWS_SESSION_TOKEN:-}" ]]; then
        echo "access_token = $AWS_SESSION_TOKEN"
    fi
    echo "host_base = $(endpoint_hostport)"
    echo "host_bucket = $(endpoint_hostport)"
    echo "bucket_location = ${AWS_DEFAULT_REGION:-us-east-1}"
    echo "signature_v2 = False"
    if [[ "$COMPAT_SCHEME" == https ]]; then
        echo "use_https = True"
        echo "check_ssl_certificate = True"
        [[ -z "${AWS_CA_BUNDLE:-}" ]] || echo "ca_certs_file = $AWS_CA_BUNDLE"
    else
        echo "use_https = False"
    fi
    echo "progress_meter = False"
    echo "max_retries = 1"
} >"$CFG"

# s3c ARGS...: s3cmd with this config, bounded in time, no retries hiding server errors.
s3c() {
    local status=0
    timeout -k 10 "$COMPAT_CMD_TIMEOUT" s3cmd -c "$CFG" "$@" || status=$?
    if [[ $status -eq 124 ]]; then
        log "s3cmd timed out after $COMPAT_CMD_TIMEOUT s: s3cmd $*"
    elif [[ $status -ne 0 ]]; then
        log "(s3cmd exited with $status: s3cmd $*)"
    fi
    return "$status"
}

B="$(new_bucket)"

step "s3cmd mb, ls"
s3c mb "s3://$B"
buckets="$(s3c ls)"
grep -q "s3://$B\$" <<<"$buckets" || fail "s3cmd ls does not list s3://$B: $buckets"

step "s3cmd put: 20 MiB with --multipart-chunk-size-mb=5, and 1000 B"
head -c $((20 * MiB)) /dev/urandom >"$WORK/big.bin"
head -c 1000 /dev/urandom >"$WORK/small.bin"
s3c put --multipart-chunk-size-mb=5 "$WORK/big.bin" "s3://$B/dir/big.bin"
s3c put "$WORK/small.bin" "s3://$B/small.bin"
etag="$(awsc s3api head-object --bucket "$B" --key dir/big.bin --query ETag --output text)"
expect_eq "ETag of the 4-part upload" "\"$(py - "$WORK/big.bin" <<'EOF'
import hashlib, sys
data = open(sys.argv[1], "rb").read()
step = 5 * 1024 * 1024
parts = [data[i:i + step] for i in range(0, len(data), step)]
print("%s-%d" % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest(), len(parts)))
EOF
)\"" "$etag"
etag="$(awsc s3api head-object --bucket "$B" --key small.bin --query ETag --output text)"
expect_eq "ETag of small.bin" "\"$(md5_hex "$WORK/small.bin")\"" "$etag"

step "s3cmd ls s3://BUCKET/dir/ (ListObjects with delimiter=/ ending with a common prefix)"
# A delimiter listing whose last entry is a common prefix (dir/sub/ after dir/big.bin) is the
# one the gateway used to loop on.
s3c put "$WORK/small.bin" "s3://$B/dir/sub/nested.bin"
status=0
listing="$(COMPAT_CMD_TIMEOUT=30 s3c ls "s3://$B/dir/")" || status=$?
if [[ $status -eq 124 ]]; then
    server_bug "s3cmd ls s3://$B/dir/ (GET /$B/?delimiter=%2F&prefix=dir%2F) got no answer within 30 s: the gateway loops when the last entries of a delimiter listing roll up into a CommonPrefix"
fi
[[ $status -eq 0 ]] || fail "s3cmd ls s3://$B/dir/ exited with $status"
grep -q "DIR  *s3://$B/dir/sub/\$" <<<"$listing" || fail "s3cmd ls s3://$B/dir/ does not show the dir/sub/ prefix: $listing"
s3c del "s3://$B/dir/sub/nested.bin"

step "s3cmd ls, la, info"
listing="$(s3c ls "s3://$B/dir/")"
log "$listing"
size="$(awk -v want="s3://$B/dir/big.bin" '$4 == want { found = $3 } END { print found }' <<<"$listing")"
expect_eq "s3cmd ls size of dir/big.bin" $((20 * MiB)) "$size"
top="$(s3c ls "s3://$B")"
grep -q "DIR  *s3://$B/dir/\$" <<<"$top" || fail "s3cmd ls s3://$B does not show the dir/ prefix: $top"
grep -q "s3://$B/small.bin\$" <<<"$top" || fail "s3cmd ls s3://$B does not show small.bin: $top"
expect_eq "s3cmd la: objects" 2 "$(s3c la | grep -c "s3://$B/")"
info="$(s3c info "s3://$B/dir/big.bin")"
log "$info"
# s3cmd keeps the MD5 of a multipart upload in x-amz-meta-s3cmd-attrs and shows it
grep -Eq "MD5 sum: +$(md5_hex "$WORK/big.bin")\$" <<<"$info" ||
    fail "s3cmd info does not show the file's MD5 (from x-amz-meta-s3cmd-attrs)"

step "s3cmd get, cmp"
s3c get "s3://$B/dir/big.bin" "$WORK/big.down"
cmp_files "$WORK/big.bin" "$WORK/big.down"
s3c get "s3://$B/small.bin" "$WORK/small.down"
cmp_files "$WORK/small.bin" "$WORK/small.down"

step "s3cmd multipart (list uploads), abortmp"
upload_id="$(awsc s3api create-multipart-upload --bucket "$B" --key pending.bin --query UploadId --output text)"
uploads="$(s3c multipart "s3://$B")"
grep -q "$upload_id" <<<"$uploads" || fail "s3cmd multipart does not list upload $upload_id: $uploads"
s3c abortmp "s3://$B/pending.bin" "$upload_id"
left="$(awsc s3api list-multipart-uploads --bucket "$B" --output json | json_eval 'len(d.get("Uploads") or [])')"
expect_eq "uploads left after s3cmd abortmp" 0 "$left"

step "s3cmd del, rb"
s3c del "s3://$B/dir/big.bin" "s3://$B/small.bin"
expect_eq "objects left after del" 0 \
    "$(awsc s3api list-objects-v2 --bucket "$B" --output json | json_eval 'len(d.get("Contents", []))')"
s3c rb "s3://$B"
if awsc s3api head-bucket --bucket "$B" 2>/dev/null; then
    fail "bucket $B still exists after s3cmd rb"
fi

step "passed"
