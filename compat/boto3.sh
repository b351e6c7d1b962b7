#!/usr/bin/env bash
# boto3 (from PyPI, in compat/.venv, with awscrt for CRC32C/CRC64NVME) against the gateway:
# compat/boto3_suite.py, run twice: with the default botocore settings and with
# AWS_REQUEST_CHECKSUM_CALCULATION=when_required. Low-level multipart calls (list_parts
# paging, ETag = MD5 of the part MD5s), the transfer manager (40 MiB, 5 MiB parts, 8 threads),
# every flexible checksum algorithm (put_object and multipart; the 2026 ones checked with the
# xxhash package), what Complete's headers claim (MpuObjectSize, whole-object checksums),
# presigned URLs (SigV2 and SigV4: GET, PUT, UploadPart) used by plain http.client, botocore's
# SigV2 signer in virtual-host style (the gateway gets --domain), presigned POST forms
# (generate_presigned_post, SigV4 and SigV2, sent by `requests`), object tags (put_object,
# upload_fileobj and copy_object with Tagging, Put/Get/DeleteObjectTagging, TagCount, AWS's
# refusals), and the S3 error codes.
#
#   bash compat/boto3.sh [embedded|redis]     (no argument: both stores)
#   COMPAT_TLS=1 bash compat/boto3.sh embedded (over https: botocore then sends aws-chunked
#                                               bodies with an unsigned CRC32 trailer)
#
# compat-https: yes   (run-all.sh also runs this script with COMPAT_TLS=1)
set -euo pipefail

# shellcheck source=compat/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
each_store "$@"

ensure_venv_with awscrt=awscrt requests=requests xxhash=xxhash
# Virtual-host requests for <bucket>.$COMPAT_DOMAIN (the suite reaches them as a proxy: no DNS).
if [[ -z "$COMPAT_ENDPOINT" ]]; then
    export COMPAT_DOMAIN=s3.compat.test
    COMPAT_GATEWAY_ARGS="$COMPAT_GATEWAY_ARGS --domain $COMPAT_DOMAIN"
fi
start_gateway "$1"

PY="$COMPAT_VENV/bin/python"
SUITE="$COMPAT_DIR/boto3_suite.py"

# run_suite MODE: runs the suite with AWS_REQUEST_CHECKSUM_CALCULATION=MODE; returns 1 when it failed.
run_suite() {
    local mode="$1" status=0
    step "boto3 suite, request_checksum_calculation=$mode ($COMPAT_SCHEME)"
    AWS_REQUEST_CHECKSUM_CALCULATION="$mode" \
        timeout -k 10 "$COMPAT_CMD_TIMEOUT" "$PY" "$SUITE" "$WORK" "$(_run_label)" || status=$?
    if [[ $status -eq 124 ]]; then
        log "FAIL [boto3/$(_run_label)] boto3 suite ($mode) timed out after $COMPAT_CMD_TIMEOUT s"
    elif [[ $status -ne 0 ]]; then
        log "FAIL [boto3/$(_run_label)] boto3 suite ($mode) failed (exit $status): see the FAIL lines above"
    fi
    return $((status != 0))
}

# Both settings run even when the first fails, so one run shows every failing check.
failed_modes=()
for mode in when_supported when_required; do
    run_suite "$mode" || failed_modes+=("$mode")
done
if [[ ${#failed_modes[@]} -gt 0 ]]; then
    fail "the boto3 suite failed with request_checksum_calculation=${failed_modes[*]}"
fi

step "passed"
