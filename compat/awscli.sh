#!/usr/bin/env bash
# aws cli (v1, from PyPI) against the gateway: high-level `aws s3` transfers (multipart above
# 8 MiB), presign and sync, the same with AWS_REQUEST_CHECKSUM_CALCULATION=when_required, a hand-driven `s3api`
# multipart session, abort, and resuming an upload across a SIGKILL of the gateway.
#
#   bash compat/awscli.sh [embedded|redis]     (no argument: both stores)
#   COMPAT_TLS=1 bash compat/awscli.sh embedded (over https: botocore then sends aws-chunked
#                                                bodies with an unsigned CRC32 trailer)
#
# compat-https: yes   (run-all.sh also runs this script with COMPAT_TLS=1)
set -euo pipefail

# shellcheck source=compat/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
each_store "$@"

MiB=1048576
BIG_SIZE=$((100 * MiB))

ensure_venv
start_gateway "$1"

# put_get_cmp FILE BUCKET KEY: aws s3 cp up, ls shows the size, cp down, cmp, head-object size.
put_get_cmp() {
    local file="$1" bucket="$2" key="$3" size listed length
    size="$(file_size "$file")"
    awsc s3 cp --no-progress "$file" "s3://$bucket/$key"
    listed="$(awsc s3 ls "s3://$bucket/$key" | awk -v k="$key" '$4 == k { print $3 }')"
    expect_eq "aws s3 ls size of $key" "$size" "$listed"
    rm -f "$WORK/down"
    awsc s3 cp --no-progress "s3://$bucket/$key" "$WORK/down"
    cmp_files "$file" "$WORK/down"
    length="$(awsc s3api head-object --bucket "$bucket" --key "$key" --query ContentLength --output text)"
    expect_eq "head-object ContentLength of $key" "$size" "$length"
}

# ---------------------------------------------------------------------------------------------
step "default cli settings: make bucket"
B1="$(new_bucket)"
awsc s3 mb "s3://$B1"

step "default cli settings: 100 MiB file (multipart upload) up, ls, down, cmp"
head -c "$BIG_SIZE" /dev/urandom >"$WORK/big"
put_get_cmp "$WORK/big" "$B1" big.bin
etag="$(awsc s3api head-object --bucket "$B1" --key big.bin --query ETag --output text)"
[[ "$etag" =~ -[0-9]+\"$ ]] || fail "ETag of a multipart upload should end with -<parts>: $etag"

step "default cli settings: small files (0 B, 1 B, 5 MiB, 5 MiB + 1 B)"
small_keys=()
for n in 0 1 $((5 * MiB)) $((5 * MiB + 1)); do
    head -c "$n" "$WORK/big" >"$WORK/small-$n"
    put_get_cmp "$WORK/small-$n" "$B1" "small-$n.bin"
    small_keys+=("small-$n.bin")
done
etag="$(awsc s3api head-object --bucket "$B1" --key small-1.bin --query ETag --output text)"
expect_eq "ETag of the 1 B object" "\"$(md5_hex "$WORK/small-1")\"" "$etag"

step "list-objects-v2"
listing="$(awsc s3api list-objects-v2 --bucket "$B1" --output json)"
expect_eq "listed keys" "$(printf '%s\n' big.bin "${small_keys[@]}" | sort | tr '\n' ' ')" \
    "$(json_eval '" ".join(sorted(o["Key"] for o in d.get("Contents", []))) + " "' <<<"$listing")"
expect_eq "listed size of big.bin" "$BIG_SIZE" \
    "$(json_eval '[o["Size"] for o in d["Contents"] if o["Key"] == "big.bin"][0]' <<<"$listing")"
expect_eq "listed size of small-5242881.bin" $((5 * MiB + 1)) \
    "$(json_eval '[o["Size"] for o in d["Contents"] if o["Key"] == "small-5242881.bin"][0]' <<<"$listing")"

step "aws s3 presign (SigV2 by default): the URL works without credentials"
command -v curl >/dev/null || apt_install curl
url="$(awsc s3 presign "s3://$B1/small-$((5 * MiB + 1)).bin" --expires-in 300)"
log "presigned: ${url%%\?*}?$(sed 's/.*?//; s/Signature=[^&]*/Signature=…/' <<<"$url")"
curl -sSf ${AWS_CA_BUNDLE:+--cacert "$AWS_CA_BUNDLE"} -o "$WORK/presigned" "$url" || fail "GET of the presigned URL failed"
cmp_files "$WORK/small-$((5 * MiB + 1))" "$WORK/presigned"

step "aws s3 sync up (new, changed and deleted files, one multipart) and back down"
mkdir -p "$WORK/sync/sub"
head -c 1000 /dev/urandom >"$WORK/sync/a.txt"
head -c $((9 * MiB)) /dev/urandom >"$WORK/sync/sub/b.bin"
printf 'x' >"$WORK/sync/c.txt"
awsc s3 sync --no-progress "$WORK/sync" "s3://$B1/sync"
head -c 2000 /dev/urandom >"$WORK/sync/a.txt"
rm "$WORK/sync/c.txt"
awsc s3 sync --no-progress --delete "$WORK/sync" "s3://$B1/sync"
synced="$(awsc s3api list-objects-v2 --bucket "$B1" --prefix sync/ --output json \
    | json_eval '" ".join(sorted(o["Key"] for o in d.get("Contents", [])))')"
expect_eq "keys after sync --delete" "sync/a.txt sync/sub/b.bin" "$synced"
awsc s3 sync --no-progress "s3://$B1/sync" "$WORK/sync-down"
diff -r "$WORK/sync" "$WORK/sync-down" >/dev/null || fail "aws s3 sync down differs from the local tree"

step "aws s3 rm, aws s3 rb"
awsc s3 rm "s3://$B1/big.bin"
awsc s3 rm --recursive "s3://$B1"
left="$(awsc s3api list-objects-v2 --bucket "$B1" --output json | json_eval 'len(d.get("Contents", []))')"
expect_eq "objects left after rm" 0 "$left"
awsc s3 rb "s3://$B1"
if awsc s3api head-bucket --bucket "$B1" 2>/dev/null; then
    fail "bucket $B1 still exists after aws s3 rb"
fi

# ---------------------------------------------------------------------------------------------
step "AWS_REQUEST_CHECKSUM_CALCULATION=when_required: 100 MiB + 1 B up, ls, down, cmp"
B2="$(new_bucket)"
awsc s3 mb "s3://$B2"
cat "$WORK/big" <(printf 'x') >"$WORK/big1"
rm -f "$WORK/big"
AWS_REQUEST_CHECKSUM_CALCULATION=when_required put_get_cmp "$WORK/big1" "$B2" big1.bin

# ---------------------------------------------------------------------------------------------
step "s3api multipart by hand: create, upload-part x2, list-parts"
head -c $((5 * MiB)) "$WORK/big1" >"$WORK/p1"
dd if="$WORK/big1" of="$WORK/p2" bs="$MiB" skip=5 count=1 status=none
cat "$WORK/p1" "$WORK/p2" >"$WORK/p12"
expect_eq "size of part 2 file" "$MiB" "$(file_size "$WORK/p2")"

upload_id="$(awsc s3api create-multipart-upload --bucket "$B2" --key mp.bin --query UploadId --output text)"
[[ -n "$upload_id" && "$upload_id" != None ]] || fail "create-multipart-upload returned no UploadId"
e1="$(awsc s3api upload-part --bucket "$B2" --key mp.bin --upload-id "$upload_id" --part-number 1 \
    --body "$WORK/p1" --query ETag --output text)"
e2="$(awsc s3api upload-part --bucket "$B2" --key mp.bin --upload-id "$upload_id" --part-number 2 \
    --body "$WORK/p2" --query ETag --output text)"
expect_eq "ETag of part 1" "\"$(md5_hex "$WORK/p1")\"" "$e1"
expect_eq "ETag of part 2" "\"$(md5_hex "$WORK/p2")\"" "$e2"

parts="$(awsc s3api list-parts --bucket "$B2" --key mp.bin --upload-id "$upload_id" --output json)"
expect_eq "list-parts: part numbers" "[1, 2]" "$(json_eval '[p["PartNumber"] for p in d.get("Parts", [])]' <<<"$parts")"
expect_eq "list-parts: sizes" "[$((5 * MiB)), $MiB]" "$(json_eval '[p["Size"] for p in d.get("Parts", [])]' <<<"$parts")"
expect_eq "list-parts: ETags" "[\"$e1\", \"$e2\"]" \
    "$(json_eval '"[" + ", ".join("\"%s\"" % p["ETag"] for p in d.get("Parts", [])) + "]"' <<<"$parts")"

step "s3api multipart by hand: complete, get-object, cmp, ETag"
parts_json "$e1" "$e2" >"$WORK/parts.json"
final_etag="$(awsc s3api complete-multipart-upload --bucket "$B2" --key mp.bin --upload-id "$upload_id" \
    --multipart-upload "file://$WORK/parts.json" --query ETag --output text)"
expected_etag="\"$(multipart_etag "$WORK/p1" "$WORK/p2")\""
[[ "$final_etag" == *'-2"' ]] || fail "multipart ETag should end with -2: $final_etag"
expect_eq "multipart ETag (MD5 of the part MD5s)" "$expected_etag" "$final_etag"
rm -f "$WORK/down"
awsc s3api get-object --bucket "$B2" --key mp.bin "$WORK/down" >/dev/null
cmp_files "$WORK/p12" "$WORK/down"
head="$(awsc s3api head-object --bucket "$B2" --key mp.bin --output json)"
expect_eq "head-object ETag" "$expected_etag" "$(json_eval 'd["ETag"]' <<<"$head")"
expect_eq "head-object ContentLength" $((6 * MiB)) "$(json_eval 'd["ContentLength"]' <<<"$head")"

step "s3api: abort-multipart-upload, list-multipart-uploads shows none"
abort_id="$(awsc s3api create-multipart-upload --bucket "$B2" --key aborted.bin --query UploadId --output text)"
awsc s3api upload-part --bucket "$B2" --key aborted.bin --upload-id "$abort_id" --part-number 1 \
    --body "$WORK/p2" >/dev/null
uploads="$(awsc s3api list-multipart-uploads --bucket "$B2" --output json)"
expect_eq "uploads listed before the abort" "[\"$abort_id\"]" \
    "$(json_eval '"[" + ", ".join("\"%s\"" % u["UploadId"] for u in d.get("Uploads") or []) + "]"' <<<"$uploads")"
awsc s3api abort-multipart-upload --bucket "$B2" --key aborted.bin --upload-id "$abort_id"
uploads="$(awsc s3api list-multipart-uploads --bucket "$B2" --output json)"
expect_eq "uploads listed after the abort" 0 "$(json_eval 'len(d.get("Uploads") or [])' <<<"$uploads")"
if awsc s3api head-object --bucket "$B2" --key aborted.bin >/dev/null 2>&1; then
    fail "aborted.bin exists after abort-multipart-upload"
fi

# ---------------------------------------------------------------------------------------------
if [[ -n "$COMPAT_ENDPOINT" ]]; then
    step "resume across a gateway restart: skipped (COMPAT_ENDPOINT)"
else
    step "resume: create, upload part 1, SIGKILL + restart the gateway, upload part 2, complete"
    resume_id="$(awsc s3api create-multipart-upload --bucket "$B2" --key resume.bin --query UploadId --output text)"
    r1="$(awsc s3api upload-part --bucket "$B2" --key resume.bin --upload-id "$resume_id" --part-number 1 \
        --body "$WORK/p1" --query ETag --output text)"
    restart_gateway_hard
    parts="$(awsc s3api list-parts --bucket "$B2" --key resume.bin --upload-id "$resume_id" --output json)"
    expect_eq "list-parts after the restart" "[1]" "$(json_eval '[p["PartNumber"] for p in d.get("Parts", [])]' <<<"$parts")"
    r2="$(awsc s3api upload-part --bucket "$B2" --key resume.bin --upload-id "$resume_id" --part-number 2 \
        --body "$WORK/p2" --query ETag --output text)"
    parts_json "$r1" "$r2" >"$WORK/parts.json"
    resume_etag="$(awsc s3api complete-multipart-upload --bucket "$B2" --key resume.bin --upload-id "$resume_id" \
        --multipart-upload "file://$WORK/parts.json" --query ETag --output text)"
    expect_eq "ETag of the resumed upload" "$expected_etag" "$resume_etag"
    rm -f "$WORK/down"
    awsc s3 cp --no-progress "s3://$B2/resume.bin" "$WORK/down"
    cmp_files "$WORK/p12" "$WORK/down"
fi

step "cleanup: aws s3 rb --force of a bucket with objects and an incomplete multipart upload"
left_id="$(awsc s3api create-multipart-upload --bucket "$B2" --key left-open.bin --query UploadId --output text)"
awsc s3api upload-part --bucket "$B2" --key left-open.bin --upload-id "$left_id" --part-number 1 \
    --body "$WORK/p12" >/dev/null
awsc s3 rb --force "s3://$B2"
if awsc s3api head-bucket --bucket "$B2" >/dev/null 2>&1; then
    fail "bucket $B2 still exists after aws s3 rb --force"
fi

step "passed"
