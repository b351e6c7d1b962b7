"""boto3 against an S3 endpoint (run by compat/boto3.sh with the venv's python).

    python compat/boto3_suite.py WORK_DIR LABEL

Endpoint and credentials come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_CA_BUNDLE for https). Run it once with the
default botocore settings and once with AWS_REQUEST_CHECKSUM_CALCULATION=when_required.

Every step runs (they use their own keys), a failing one prints
`FAIL [boto3/LABEL] <step>: <what>` and the suite exits 1 after the last step. A check that
fails because of a gateway bug that is known and reported says `SERVER BUG` (see server_bug).
"""

import base64
import hashlib
import http.client
import io
import os
import random
import ssl
import sys
import time
import traceback
import urllib.parse
import zlib

import boto3
import requests
import botocore
import botocore.httpchecksum
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from suite_checks import (
    StepFailed,
    expect_client_error,
    expect_eq,
    expect_true,
    fail,
    log,
    server_bug,
)

try:
    from awscrt import checksums as crt_checksums
except ImportError:  # only CRC32C / CRC64NVME need it (botocore too)
    crt_checksums = None
# The xxHash family S3 added in 2026, computed here with its own package (compat/boto3.sh
# installs it), not with botocore's or awscrt's code.
import xxhash

MiB = 1024 * 1024
WORK = sys.argv[1]
LABEL = sys.argv[2] if len(sys.argv) > 2 else "?"
ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
CA_BUNDLE = os.environ.get("AWS_CA_BUNDLE") or None
CHECKSUM_MODE = os.environ.get("AWS_REQUEST_CHECKSUM_CALCULATION", "when_supported").lower()
# The gateway's --domain (boto3.sh sets it for the gateway it starts): virtual-host requests.
DOMAIN = os.environ.get("COMPAT_DOMAIN") or None
WHEN_REQUIRED = CHECKSUM_MODE == "when_required"

current_step = "(setup)"
failures = []


STEPS = []


def step(fn):
    STEPS.append(fn)
    return fn


# ---------------------------------------------------------------------------------------------
# Clients

def make_client(**config):
    s3 = config.pop("s3", {})
    s3.setdefault("addressing_style", "path")
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        verify=CA_BUNDLE if CA_BUNDLE else None,
        config=Config(s3=s3, retries={"total_max_attempts": 1, "mode": "standard"}, **config),
    )


s3 = make_client()
BUCKET = "compat-%d-%d" % (time.time(), random.randrange(1 << 30))


def rand_bytes(n, seed):
    return random.Random(seed).randbytes(n)


def md5_hex(b):
    return hashlib.md5(b).hexdigest()


def multipart_etag(parts):
    return '"%s-%d"' % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest(), len(parts))


# ---------------------------------------------------------------------------------------------
# Checksums (raw big-endian digests; values on the wire are base64)

def _crc32(b):
    return zlib.crc32(b).to_bytes(4, "big")


def _crc32c(b):
    return crt_checksums.crc32c(b).to_bytes(4, "big")


def _crc64nvme(b):
    return crt_checksums.crc64nvme(b).to_bytes(8, "big")


RAW_DIGEST = {
    "CRC32": _crc32,
    "CRC32C": _crc32c,
    "CRC64NVME": _crc64nvme,
    "SHA1": lambda b: hashlib.sha1(b).digest(),
    "SHA256": lambda b: hashlib.sha256(b).digest(),
    # The algorithms S3 added in 2026 (COMPOSITE only on multipart); xxhash's digest() is the
    # canonical big-endian form, as S3 encodes it.
    "MD5": lambda b: hashlib.md5(b).digest(),
    "SHA512": lambda b: hashlib.sha512(b).digest(),
    "XXHASH64": lambda b: xxhash.xxh64(b).digest(),
    "XXHASH3": lambda b: xxhash.xxh3_64(b).digest(),
    "XXHASH128": lambda b: xxhash.xxh3_128(b).digest(),
}
ADDED_ALGORITHMS = ["MD5", "SHA512", "XXHASH64", "XXHASH3", "XXHASH128"]


def b64(raw):
    return base64.b64encode(raw).decode()


def checksum_b64(alg, data):
    return b64(RAW_DIGEST[alg](data))


def composite_checksum(alg, parts):
    raw = b"".join(RAW_DIGEST[alg](p) for p in parts)
    return "%s-%d" % (b64(RAW_DIGEST[alg](raw)), len(parts))


def botocore_computes(alg):
    """Whether botocore can compute `alg` itself (xxHash needs awscrt >= 0.31.2; MD5 never)."""
    name = alg.lower()
    crt = getattr(botocore.httpchecksum, "_CRT_CHECKSUM_CLS", {}) if botocore.httpchecksum.HAS_CRT else {}
    return name in botocore.httpchecksum._CHECKSUM_CLS or name in crt


def checksum_args(alg, data):
    """Ask botocore to compute `alg` over the body, or, when it cannot, send the value."""
    if botocore_computes(alg):
        return {"ChecksumAlgorithm": alg}
    return {f"Checksum{alg}": checksum_b64(alg, data)}


def supported_algorithms():
    algs = ["CRC32", "SHA1", "SHA256"]
    if crt_checksums is not None:
        algs.insert(1, "CRC32C")
        # botocore knows CRC64NVME since 1.36 (and needs awscrt for it)
        if "crc64nvme" in getattr(botocore.httpchecksum, "_CHECKSUM_CLS", {}):
            algs.append("CRC64NVME")
        else:
            log(f"botocore {botocore.__version__} has no CRC64NVME: not tested")
    else:
        log("awscrt missing: CRC32C and CRC64NVME not tested")
    return algs


# ---------------------------------------------------------------------------------------------
@step
def create_bucket():
    s3.create_bucket(Bucket=BUCKET)
    s3.head_bucket(Bucket=BUCKET)
    names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
    expect_true("list_buckets shows the new bucket", BUCKET in names, repr(names))


@step
def put_get_small_objects():
    for n in (0, 1, 1000):
        data = rand_bytes(n, n)
        key = f"small-{n}"
        resp = s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        expect_eq(f"put_object ETag of {n} B", '"%s"' % md5_hex(data), resp["ETag"])
        if not WHEN_REQUIRED:
            # botocore sent x-amz-checksum-crc32; the response must echo it (spec 4.3)
            expect_eq(f"put_object ChecksumCRC32 echo of {n} B", checksum_b64("CRC32", data),
                      resp.get("ChecksumCRC32"))
        got = s3.get_object(Bucket=BUCKET, Key=key)
        expect_eq(f"get_object body of {n} B", data, got["Body"].read())
        expect_eq(f"get_object ContentLength of {n} B", n, got["ContentLength"])
    data = rand_bytes(1000, 1000)
    for rng, start, end in (("bytes=10-19", 10, 19), ("bytes=-10", 990, 999), ("bytes=995-", 995, 999),
                            ("bytes=990-5000", 990, 999)):
        got = s3.get_object(Bucket=BUCKET, Key="small-1000", Range=rng)
        expect_eq(f"get_object Range {rng}: status", 206, got["ResponseMetadata"]["HTTPStatusCode"])
        expect_eq(f"get_object Range {rng}: body", data[start:end + 1], got["Body"].read())
        expect_eq(f"get_object Range {rng}: ContentRange", f"bytes {start}-{end}/1000", got.get("ContentRange"))


@step
def low_level_multipart():
    key = "lowlevel.bin"
    parts = [rand_bytes(5 * MiB, 100 + i) for i in range(4)] + [rand_bytes(12345, 104)]
    create = s3.create_multipart_upload(Bucket=BUCKET, Key=key, Metadata={"purpose": "compat"})
    uid = create["UploadId"]
    expect_true("create_multipart_upload UploadId", bool(uid))
    expect_eq("create_multipart_upload Key", key, create["Key"])
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    expect_eq("list_multipart_uploads ids", [uid], [u["UploadId"] for u in uploads])

    # upload in reverse order: the gateway must not care
    etags = {}
    for n in range(len(parts), 0, -1):
        data = parts[n - 1]
        resp = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n, Body=data)
        expect_eq(f"upload_part {n} ETag", '"%s"' % md5_hex(data), resp["ETag"])
        if not WHEN_REQUIRED:
            # s3transfer copies this echo into Complete (spec 4.4)
            expect_eq(f"upload_part {n} ChecksumCRC32 echo", checksum_b64("CRC32", data),
                      resp.get("ChecksumCRC32"))
        etags[n] = resp["ETag"]

    # list_parts, two at a time
    seen, marker, pages = [], 0, 0
    while True:
        page = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid, MaxParts=2, PartNumberMarker=marker)
        pages += 1
        got = page.get("Parts", [])
        expect_true(f"list_parts page {pages} has at most 2 parts", len(got) <= 2, repr(got))
        expect_eq(f"list_parts page {pages} PartNumberMarker", marker, page.get("PartNumberMarker", 0))
        expect_eq(f"list_parts page {pages} MaxParts", 2, page.get("MaxParts"))
        for p in got:
            expect_eq(f"list_parts part {p['PartNumber']} ETag", etags[p["PartNumber"]], p["ETag"])
            expect_eq(f"list_parts part {p['PartNumber']} Size", len(parts[p["PartNumber"] - 1]), p["Size"])
            seen.append(p["PartNumber"])
        if not page.get("IsTruncated"):
            break
        expect_eq(f"list_parts page {pages} NextPartNumberMarker", got[-1]["PartNumber"],
                  page.get("NextPartNumberMarker"))
        marker = page["NextPartNumberMarker"]
        expect_true("list_parts paging ends", pages < 10)
    expect_eq("part numbers over all list_parts pages", [1, 2, 3, 4, 5], seen)
    expect_eq("number of list_parts pages", 3, pages)

    done = s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]})
    expected = multipart_etag(parts)
    expect_eq("complete_multipart_upload ETag (MD5 of the part MD5s, -5)", expected, done["ETag"])
    head = s3.head_object(Bucket=BUCKET, Key=key)
    expect_eq("head_object ETag", expected, head["ETag"])
    expect_eq("head_object ContentLength", sum(map(len, parts)), head["ContentLength"])
    expect_eq("head_object Metadata from create", {"purpose": "compat"}, head.get("Metadata"))
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    expect_true("get_object body equals the parts", body == b"".join(parts),
                f"{len(body)} B, sha256 {hashlib.sha256(body).hexdigest()}")
    part2 = s3.get_object(Bucket=BUCKET, Key=key, PartNumber=2)
    expect_eq("get_object PartNumber=2 status", 206, part2["ResponseMetadata"]["HTTPStatusCode"])
    expect_eq("get_object PartNumber=2 ETag (the whole object's)", expected, part2["ETag"])
    expect_eq("get_object PartNumber=2 PartsCount", 5, part2.get("PartsCount"))
    expect_true("get_object PartNumber=2 body", part2["Body"].read() == parts[1])
    attrs = s3.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=["ETag", "ObjectParts", "ObjectSize"])
    expect_eq("get_object_attributes ETag (unquoted)", expected.strip('"'), attrs.get("ETag"))
    expect_eq("get_object_attributes TotalPartsCount", 5, attrs.get("ObjectParts", {}).get("TotalPartsCount"))
    expect_eq("get_object_attributes ObjectSize", sum(map(len, parts)), attrs.get("ObjectSize"))
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    expect_eq("list_multipart_uploads after complete", [], uploads)


@step
def abort_then_upload_part():
    key = "aborted.bin"
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=1, Body=b"x" * 1000)
    s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid)
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    expect_eq("list_multipart_uploads after abort", [], uploads)
    expect_client_error("upload_part after abort", "NoSuchUpload", 404, s3.upload_part,
                        Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=2, Body=b"y" * 1000)
    expect_client_error("list_parts after abort", "NoSuchUpload", 404, s3.list_parts,
                        Bucket=BUCKET, Key=key, UploadId=uid)
    expect_client_error("complete after abort", "NoSuchUpload", 404, s3.complete_multipart_upload,
                        Bucket=BUCKET, Key=key, UploadId=uid,
                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"%s"' % md5_hex(b"x" * 1000)}]})
    expect_client_error("head_object of the aborted key", "404", 404, s3.head_object, Bucket=BUCKET, Key=key)


@step
def transfer_manager():
    size = 40 * MiB + 4321
    src = os.path.join(WORK, "tm-src.bin")
    dst = os.path.join(WORK, "tm-dst.bin")
    data = rand_bytes(size, 7)
    with open(src, "wb") as f:
        f.write(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=8,
                            # the classic s3transfer manager, even where awscrt would be preferred
                            preferred_transfer_client="classic")
    t0 = time.monotonic()
    s3.upload_file(src, BUCKET, "tm.bin", Config=config)
    t1 = time.monotonic()
    s3.download_file(BUCKET, "tm.bin", dst, Config=config)
    t2 = time.monotonic()
    log(f"  upload_file {size} B in {t1 - t0:.1f} s, download_file in {t2 - t1:.1f} s")
    with open(dst, "rb") as f:
        down = f.read()
    expect_true("download_file bytes equal upload_file bytes", down == data,
                f"{len(down)} B vs {size} B")
    chunks = [data[i:i + 5 * MiB] for i in range(0, size, 5 * MiB)]
    head = s3.head_object(Bucket=BUCKET, Key="tm.bin", ChecksumMode="ENABLED")
    expect_eq("upload_file ETag (MD5 of the part MD5s)", multipart_etag(chunks), head["ETag"])
    expect_eq("head_object ContentLength", size, head["ContentLength"])
    if not WHEN_REQUIRED:
        # s3transfer created the upload with ChecksumAlgorithm=CRC32 and sent a CRC32 per part
        ctype = head.get("ChecksumType")
        if ctype == "FULL_OBJECT":
            expected = checksum_b64("CRC32", data)
        else:
            expected = composite_checksum("CRC32", chunks)
        log(f"  upload_file object: ChecksumCRC32 {head.get('ChecksumCRC32')}, ChecksumType {ctype}")
        expect_eq(f"head_object ChecksumCRC32 (type {ctype})", expected, head.get("ChecksumCRC32"))
    os.unlink(src)
    os.unlink(dst)


@step
def transfer_manager_copy():
    """s3transfer's managed copy: UploadPartCopy with CopySourceRange above the threshold."""
    size = 12 * MiB + 99
    data = rand_bytes(size, "copy")
    s3.put_object(Bucket=BUCKET, Key="copy-src.bin", Body=data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=8,
                            preferred_transfer_client="classic")
    s3.copy({"Bucket": BUCKET, "Key": "copy-src.bin"}, BUCKET, "copy-dst.bin", Config=config)
    chunks = [data[i:i + 5 * MiB] for i in range(0, size, 5 * MiB)]
    head = s3.head_object(Bucket=BUCKET, Key="copy-dst.bin")
    expect_eq("managed copy ETag (3 UploadPartCopy parts)", multipart_etag(chunks), head["ETag"])
    got = s3.get_object(Bucket=BUCKET, Key="copy-dst.bin")["Body"].read()
    expect_true("managed copy body", got == data, f"{len(got)} B")
    small = s3.copy_object(Bucket=BUCKET, Key="copy-small.bin", CopySource={"Bucket": BUCKET, "Key": "small-1000"})
    expect_eq("copy_object ETag", '"%s"' % md5_hex(rand_bytes(1000, 1000)), small["CopyObjectResult"]["ETag"])


# A listing that does not answer within this many seconds is a hung server, not a slow one.
LIST_TIMEOUT = 15
s3_short = make_client(read_timeout=LIST_TIMEOUT)


def bounded_listing(what, op, **params):
    """Calls a listing operation with a short read timeout; a timeout is reported as a server bug."""
    try:
        return getattr(s3_short, op)(**params)
    except botocore.exceptions.ReadTimeoutError:
        server_bug(f"{what}: no answer within {LIST_TIMEOUT} s (the gateway loops on listings with a "
                   f"delimiter whose last entries roll up into a CommonPrefix)")


@step
def delimiter_listings():
    """Listings with Delimiter='/', as `aws s3 ls s3://b/`, rclone and s3cmd make them."""
    b = BUCKET
    keys = ["a.txt", "dir1/x", "dir1/y", "dir2/sub/z", "m.txt", "zdir/last"]
    for k in keys:
        s3.put_object(Bucket=b, Key="dl/" + k, Body=b"d")
    expected_prefixes = ["dl/dir1/", "dl/dir2/", "dl/zdir/"]
    expected_keys = ["dl/a.txt", "dl/m.txt"]
    # the listing ends with a CommonPrefix (dl/zdir/): the case that used to hang
    r = bounded_listing("list_objects_v2 Prefix='dl/' Delimiter='/'", "list_objects_v2",
                        Bucket=b, Prefix="dl/", Delimiter="/")
    expect_eq("list_objects_v2 Delimiter: CommonPrefixes", expected_prefixes,
              [p["Prefix"] for p in r.get("CommonPrefixes", [])])
    expect_eq("list_objects_v2 Delimiter: Contents", expected_keys, [o["Key"] for o in r.get("Contents", [])])
    expect_eq("list_objects_v2 Delimiter: KeyCount", 5, r.get("KeyCount"))
    r = bounded_listing("list_objects Prefix='dl/' Delimiter='/'", "list_objects",
                        Bucket=b, Prefix="dl/", Delimiter="/")
    expect_eq("list_objects (v1) Delimiter: CommonPrefixes", expected_prefixes,
              [p["Prefix"] for p in r.get("CommonPrefixes", [])])
    # one entry per page: keys and prefixes interleaved, in order
    entries, token, pages = [], None, 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = bounded_listing(f"list_objects_v2 Delimiter='/' MaxKeys=1 page {pages + 1}", "list_objects_v2",
                            Bucket=b, Prefix="dl/", Delimiter="/", MaxKeys=1, **kw)
        pages += 1
        entries += [o["Key"] for o in r.get("Contents", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r.get("IsTruncated"):
            break
        token = r["NextContinuationToken"]
        expect_true("list_objects_v2 MaxKeys=1 paging ends", pages < 20)
    expect_eq("list_objects_v2 Delimiter MaxKeys=1: entries over all pages",
              ["dl/a.txt", "dl/dir1/", "dl/dir2/", "dl/m.txt", "dl/zdir/"], entries)
    entries = []
    for page in s3_short.get_paginator("list_objects").paginate(Bucket=b, Prefix="dl/", Delimiter="/",
                                                                PaginationConfig={"PageSize": 1}):
        entries += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    expect_eq("list_objects (v1) Delimiter MaxKeys=1: entries over all pages",
              ["dl/a.txt", "dl/dir1/", "dl/dir2/", "dl/m.txt", "dl/zdir/"], entries)
    # the same for open uploads
    ids = [s3.create_multipart_upload(Bucket=b, Key="ul/" + k)["UploadId"] for k in ("a", "d/1", "d/2", "e/1")]
    ids.append(s3.create_multipart_upload(Bucket=b, Key="ul/a")["UploadId"])  # two uploads of one key
    listed = [(u["Key"], u["UploadId"]) for page in s3_short.get_paginator("list_multipart_uploads").paginate(
        Bucket=b, Prefix="ul/", PaginationConfig={"PageSize": 1}) for u in page.get("Uploads", [])]
    expect_eq("list_multipart_uploads MaxUploads=1: keys over all pages", ["ul/a", "ul/a", "ul/d/1", "ul/d/2", "ul/e/1"],
              [k for k, _ in listed])
    expect_eq("list_multipart_uploads MaxUploads=1: upload ids over all pages", sorted(ids), sorted(u for _, u in listed))
    r = bounded_listing("list_multipart_uploads Prefix='ul/' Delimiter='/'", "list_multipart_uploads",
                        Bucket=b, Prefix="ul/", Delimiter="/")
    expect_eq("list_multipart_uploads Delimiter: CommonPrefixes", ["ul/d/", "ul/e/"],
              [p["Prefix"] for p in r.get("CommonPrefixes", [])])
    expect_eq("list_multipart_uploads Delimiter: Uploads", ["ul/a", "ul/a"], [u["Key"] for u in r.get("Uploads", [])])
    for k, uid in zip(("a", "d/1", "d/2", "e/1", "a"), ids):
        s3.abort_multipart_upload(Bucket=b, Key="ul/" + k, UploadId=uid)


@step
def awkward_keys():
    """Keys that need URL encoding (botocore asks for encoding-type=url in listings)."""
    keys = ["dir one/with space.txt", "plus+sign&amp=eq.txt", "unicodé/ключ/鍵.bin", "tilde~!$'()*,;@.txt",
            "percent%20literal.txt", "question?hash#.txt"]
    for i, key in enumerate(keys):
        data = rand_bytes(100 + i, key)
        s3.put_object(Bucket=BUCKET, Key="awk/" + key, Body=data)
        expect_eq(f"get_object {key!r}", data, s3.get_object(Bucket=BUCKET, Key="awk/" + key)["Body"].read())
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="awk/").get("Contents", []))
    expect_eq("list_objects_v2 of the awkward keys", sorted("awk/" + k for k in keys), listed)
    listed = sorted(o["Key"] for o in s3.list_objects(Bucket=BUCKET, Prefix="awk/").get("Contents", []))
    expect_eq("list_objects (v1) of the awkward keys", sorted("awk/" + k for k in keys), listed)
    top = bounded_listing("list_objects_v2 Prefix='awk/' Delimiter='/'", "list_objects_v2",
                          Bucket=BUCKET, Prefix="awk/", Delimiter="/")
    expect_eq("common prefixes of the awkward keys", ["awk/dir one/", "awk/unicodé/"],
              sorted(p["Prefix"] for p in top.get("CommonPrefixes", [])))
    key = "awk/multipart ü+&.bin"
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="awk/").get("Uploads", [])
    expect_eq("list_multipart_uploads key", [key], [u["Key"] for u in uploads])
    e1 = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=1, Body=b"z" * 777)["ETag"]
    done = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}]})
    expect_eq("complete on an awkward key: Key", key, done.get("Key"))
    expect_eq("get_object of the awkward multipart key", b"z" * 777,
              s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@step
def listings_and_names():
    """Issue 14 point 5: empty pages, key fields decoded once, ListBuckets pages, ACLs."""
    keys = ["nl\nkey/a", "nl\nkey/b", "nl\nkey%41"]
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"x")
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key="nl\nkey/u")["UploadId"]
    # botocore asks for encoding-type=url itself and decodes the key fields: each must come back
    # exactly as written (encoded once by the server, decoded once here).
    r = s3.list_objects(Bucket=BUCKET, Prefix="nl\n", Delimiter="/", Marker="nl\nkey%41")
    expect_eq("list_objects Prefix", "nl\n", r.get("Prefix"))
    expect_eq("list_objects Marker", "nl\nkey%41", r.get("Marker"))
    expect_eq("list_objects CommonPrefixes", ["nl\nkey/"], [p["Prefix"] for p in r.get("CommonPrefixes", [])])
    r = s3.list_objects(Bucket=BUCKET, Prefix="nl\n", Delimiter="/", MaxKeys=1)
    expect_eq("list_objects NextMarker", "nl\nkey%41", r.get("NextMarker"))
    expect_eq("list_objects Contents", ["nl\nkey%41"], [o["Key"] for o in r.get("Contents", [])])
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="nl\n", Delimiter="/", StartAfter="nl\nkey%41")
    expect_eq("list_objects_v2 Prefix", "nl\n", r.get("Prefix"))
    expect_eq("list_objects_v2 StartAfter", "nl\nkey%41", r.get("StartAfter"))
    expect_eq("list_objects_v2 CommonPrefixes", ["nl\nkey/"], [p["Prefix"] for p in r.get("CommonPrefixes", [])])
    r = s3.list_object_versions(Bucket=BUCKET, Prefix="nl\n", KeyMarker="nl\nkey%41", MaxKeys=1)
    expect_eq("list_object_versions KeyMarker", "nl\nkey%41", r.get("KeyMarker"))
    expect_eq("list_object_versions NextKeyMarker", "nl\nkey/a", r.get("NextKeyMarker"))
    expect_eq("list_object_versions Versions", ["nl\nkey/a"], [v["Key"] for v in r.get("Versions", [])])

    # max-keys=0 / max-uploads=0: an empty page that is not truncated.
    r = s3.list_objects_v2(Bucket=BUCKET, MaxKeys=0)
    expect_eq("list_objects_v2 MaxKeys=0: IsTruncated", False, r["IsTruncated"])
    expect_eq("list_objects_v2 MaxKeys=0: KeyCount", 0, r["KeyCount"])
    expect_eq("list_objects_v2 MaxKeys=0: Contents", None, r.get("Contents"))
    r = s3.list_objects(Bucket=BUCKET, MaxKeys=0)
    expect_eq("list_objects MaxKeys=0: IsTruncated", False, r["IsTruncated"])
    r = s3.list_object_versions(Bucket=BUCKET, MaxKeys=0)
    expect_eq("list_object_versions MaxKeys=0: IsTruncated", False, r["IsTruncated"])
    r = s3.list_multipart_uploads(Bucket=BUCKET, MaxUploads=0)
    expect_eq("list_multipart_uploads MaxUploads=0: IsTruncated", False, r["IsTruncated"])
    expect_eq("list_multipart_uploads MaxUploads=0: Uploads", None, r.get("Uploads"))

    # ListBuckets pages.
    extra = [f"{BUCKET}-p{i}" for i in range(3)]
    for b in extra:
        s3.create_bucket(Bucket=b)
    try:
        seen, token, pages = [], None, 0
        while True:
            kw = {"ContinuationToken": token} if token else {}
            r = s3.list_buckets(MaxBuckets=2, Prefix=BUCKET, **kw)
            pages += 1
            expect_eq("list_buckets Prefix echo", BUCKET, r.get("Prefix"))
            for b in r["Buckets"]:
                seen.append(b["Name"])
                expect_eq(f"list_buckets BucketRegion of {b['Name']}", s3.meta.region_name or "us-east-1",
                          b.get("BucketRegion"))
            token = r.get("ContinuationToken")
            if not token:
                break
        expect_eq("list_buckets pages: every bucket once, in order", sorted([BUCKET] + extra), seen)
        expect_eq("list_buckets pages: count", 2, pages)
    finally:
        for b in extra:
            s3.delete_bucket(Bucket=b)

    # ACLs: the owner's FULL_CONTROL; private accepted, public refused, unknown canned ACL 400.
    acl = s3.get_bucket_acl(Bucket=BUCKET)
    owner = acl["Owner"]["ID"]
    expect_eq("get_bucket_acl grants", [("CanonicalUser", owner, "FULL_CONTROL")],
              [(g["Grantee"]["Type"], g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]])
    acl = s3.get_object_acl(Bucket=BUCKET, Key="nl\nkey/a")
    expect_eq("get_object_acl grants", [("CanonicalUser", owner, "FULL_CONTROL")],
              [(g["Grantee"]["Type"], g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]])
    s3.put_object_acl(Bucket=BUCKET, Key="nl\nkey/a", ACL="private")
    s3.put_bucket_acl(Bucket=BUCKET, ACL="private")
    s3.put_bucket_acl(Bucket=BUCKET, AccessControlPolicy={
        "Owner": {"ID": owner},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner}, "Permission": "FULL_CONTROL"}]})
    expect_client_error("put_object_acl public-read", "AccessDenied", 403, s3.put_object_acl,
                        Bucket=BUCKET, Key="nl\nkey/a", ACL="public-read")
    expect_client_error("put_bucket_acl granting AllUsers READ", "AccessDenied", 403, s3.put_bucket_acl,
                        Bucket=BUCKET, GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')
    expect_client_error("put_object with x-amz-acl: public-fullcontrol", "InvalidArgument", 400, s3.put_object,
                        Bucket=BUCKET, Key="bad-acl", Body=b"x", ACL="public-fullcontrol")

    # UploadPartCopy on an unversioned bucket names no source version.
    r = s3.upload_part_copy(Bucket=BUCKET, Key="nl\nkey/u", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": BUCKET, "Key": "nl\nkey/a"})
    expect_eq("upload_part_copy CopySourceVersionId", None, r.get("CopySourceVersionId"))
    s3.abort_multipart_upload(Bucket=BUCKET, Key="nl\nkey/u", UploadId=uid)
    for k in keys:
        s3.delete_object(Bucket=BUCKET, Key=k)


ATTRIBUTES = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def checksum_put_object(alg):
    key = f"ck-put-{alg}"
    data = rand_bytes(300 * 1024 + 7, alg)
    expected = checksum_b64(alg, data)
    resp = s3.put_object(Bucket=BUCKET, Key=key, Body=data, **checksum_args(alg, data))
    expect_eq(f"put_object {alg}: ETag", '"%s"' % md5_hex(data), resp["ETag"])
    expect_eq(f"put_object {alg}: Checksum{alg} echo", expected, resp.get(f"Checksum{alg}"))
    head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    expect_eq(f"head_object {alg}: Checksum{alg}", expected, head.get(f"Checksum{alg}"))
    got = s3.get_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    expect_eq(f"get_object {alg}: Checksum{alg}", expected, got.get(f"Checksum{alg}"))
    expect_true(f"get_object {alg}: body", got["Body"].read() == data)  # botocore validated it too
    plain = s3.head_object(Bucket=BUCKET, Key=key)
    expect_eq(f"head_object {alg} without ChecksumMode: no checksum", None, plain.get(f"Checksum{alg}"))
    attrs = s3.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=ATTRIBUTES)
    expect_eq(f"get_object_attributes {alg}: ETag (unquoted)", md5_hex(data), attrs.get("ETag"))
    expect_eq(f"get_object_attributes {alg}: Checksum",
              {f"Checksum{alg}": expected, "ChecksumType": "FULL_OBJECT"}, attrs.get("Checksum"))
    expect_eq(f"get_object_attributes {alg}: no ObjectParts for a PUT", None, attrs.get("ObjectParts"))
    expect_eq(f"get_object_attributes {alg}: StorageClass", "STANDARD", attrs.get("StorageClass"))
    expect_eq(f"get_object_attributes {alg}: ObjectSize", len(data), attrs.get("ObjectSize"))


def checksum_multipart(alg, want_type=None):
    """want_type: ChecksumType for Create (None: the default, not sent)."""
    key = f"ck-mpu-{alg}-{want_type}"
    parts = [rand_bytes(5 * MiB, alg + "1"), rand_bytes(1024 * 1024 + 3, alg + "2")]
    extra = {"ChecksumType": want_type} if want_type else {}
    create = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm=alg, **extra)
    uid = create["UploadId"]
    expect_eq(f"create_multipart_upload {alg}: ChecksumAlgorithm", alg, create.get("ChecksumAlgorithm"))
    if want_type:
        expect_eq(f"create_multipart_upload {alg}: ChecksumType", want_type, create.get("ChecksumType"))
    listed = []
    for n, data in enumerate(parts, 1):
        resp = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n, Body=data,
                              **checksum_args(alg, data))
        expect_eq(f"upload_part {n} {alg}: Checksum{alg} echo", checksum_b64(alg, data),
                  resp.get(f"Checksum{alg}"))
        listed.append({"PartNumber": n, "ETag": resp["ETag"], f"Checksum{alg}": resp[f"Checksum{alg}"]})
    lp = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid)
    expect_eq(f"list_parts {alg}: part checksums", [p[f"Checksum{alg}"] for p in listed],
              [p.get(f"Checksum{alg}") for p in lp.get("Parts", [])])
    done = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid,
                                        MultipartUpload={"Parts": listed})
    ctype = done.get("ChecksumType")
    # spec 4.4: no x-amz-checksum-type at Create means COMPOSITE, but CRC64NVME is FULL_OBJECT only
    default_type = "FULL_OBJECT" if alg == "CRC64NVME" else "COMPOSITE"
    expect_eq(f"complete {alg}: ChecksumType", want_type or default_type, ctype)
    if ctype == "FULL_OBJECT":
        expected = checksum_b64(alg, b"".join(parts))
    else:
        expected = composite_checksum(alg, parts)
    expect_eq(f"complete {alg}: Checksum{alg}", expected, done.get(f"Checksum{alg}"))
    expect_eq(f"complete {alg}: ETag", multipart_etag(parts), done["ETag"])
    head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    expect_eq(f"head_object {alg}: Checksum{alg}", expected, head.get(f"Checksum{alg}"))
    expect_eq(f"head_object {alg}: ChecksumType", ctype, head.get("ChecksumType"))
    got = s3.get_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    expect_true(f"get_object {alg}: body", got["Body"].read() == b"".join(parts))
    # GetObjectAttributes: the object's checksum without `-N`, every part with its checksum.
    attrs = s3.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=ATTRIBUTES)
    expect_eq(f"get_object_attributes {alg}: ETag (unquoted)", multipart_etag(parts).strip('"'),
              attrs.get("ETag"))
    expect_eq(f"get_object_attributes {alg}: Checksum",
              {f"Checksum{alg}": expected.split("-")[0], "ChecksumType": ctype}, attrs.get("Checksum"))
    want_parts = [{"PartNumber": n, "Size": len(p), f"Checksum{alg}": checksum_b64(alg, p)}
                  for n, p in enumerate(parts, 1)]
    expect_eq(f"get_object_attributes {alg}: ObjectParts",
              {"TotalPartsCount": 2, "PartNumberMarker": 0, "NextPartNumberMarker": 2, "MaxParts": 1000,
               "IsTruncated": False, "Parts": want_parts}, attrs.get("ObjectParts"))
    expect_eq(f"get_object_attributes {alg}: ObjectSize", sum(map(len, parts)), attrs.get("ObjectSize"))
    page = s3.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=["ObjectParts"], MaxParts=1)
    expect_eq(f"get_object_attributes {alg} MaxParts=1",
              {"TotalPartsCount": 2, "PartNumberMarker": 0, "NextPartNumberMarker": 1, "MaxParts": 1,
               "IsTruncated": True, "Parts": want_parts[:1]}, page.get("ObjectParts"))
    page = s3.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=["ObjectParts"], MaxParts=1,
                                    PartNumberMarker=1)
    expect_eq(f"get_object_attributes {alg} after part 1",
              {"TotalPartsCount": 2, "PartNumberMarker": 1, "NextPartNumberMarker": 2, "MaxParts": 1,
               "IsTruncated": False, "Parts": want_parts[1:]}, page.get("ObjectParts"))


@step
def checksums():
    for alg in supported_algorithms():
        log(f"  {alg}: put_object, then create/upload_part x2/complete")
        checksum_put_object(alg)
        checksum_multipart(alg)
        if alg in ("CRC32", "CRC32C"):
            log(f"  {alg}: the same multipart upload with ChecksumType=FULL_OBJECT")
            checksum_multipart(alg, "FULL_OBJECT")
    data = b"checksum mismatch"
    expect_client_error("put_object with a wrong ChecksumCRC32 value", "BadDigest", 400, s3.put_object,
                        Bucket=BUCKET, Key="ck-bad", Body=data, ChecksumCRC32=checksum_b64("CRC32", b"other"))
    expect_client_error("put_object with a wrong ChecksumSHA256 value", "BadDigest", 400, s3.put_object,
                        Bucket=BUCKET, Key="ck-bad", Body=data, ChecksumSHA256=checksum_b64("SHA256", b"other"))


@step
def added_checksums():
    """MD5, SHA512, XXHASH64, XXHASH3, XXHASH128: what botocore can compute it computes (sent as a
    header, or an aws-chunked trailer over https), the rest is sent as a value; every expected
    value comes from hashlib / the xxhash package."""
    for alg in ADDED_ALGORITHMS:
        how = "computed by botocore" if botocore_computes(alg) else "value sent"
        log(f"  {alg} ({how}): put_object, then create/upload_part x2/complete (COMPOSITE)")
        checksum_put_object(alg)
        checksum_multipart(alg)
        expect_client_error(f"put_object with a wrong Checksum{alg} value", "BadDigest", 400, s3.put_object,
                            Bucket=BUCKET, Key="ck-bad", Body=b"x", **{f"Checksum{alg}": checksum_b64(alg, b"y")})
        expect_client_error(f"create_multipart_upload {alg} FULL_OBJECT (COMPOSITE only)", "InvalidRequest", 400,
                            s3.create_multipart_upload, Bucket=BUCKET, Key="ck-bad", ChecksumAlgorithm=alg,
                            ChecksumType="FULL_OBJECT")


def claimed_upload(key, alg, parts, ctype=None):
    """An open upload of `parts` with `alg`; returns (upload id, listed parts for Complete)."""
    extra = {"ChecksumType": ctype} if ctype else {}
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm=alg, **extra)["UploadId"]
    listed = []
    for n, data in enumerate(parts, 1):
        resp = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n, Body=data,
                              **checksum_args(alg, data))
        listed.append({"PartNumber": n, "ETag": resp["ETag"], f"Checksum{alg}": checksum_b64(alg, data)})
    return uid, listed


def expect_unpublished(key):
    expect_client_error(f"head_object {key} after a refused complete", "404", 404, s3.head_object,
                        Bucket=BUCKET, Key=key)


@step
def complete_claims():
    """What CompleteMultipartUpload's headers claim (MpuObjectSize, a whole-object checksum and its
    ChecksumType) is checked: refused with nothing published, then accepted when right."""
    parts = [rand_bytes(5 * MiB, "claim1"), rand_bytes(4321, "claim2")]
    size = sum(len(p) for p in parts)
    key = "claims-crc32"
    uid, listed = claimed_upload(key, "CRC32", parts)
    complete = lambda **kw: s3.complete_multipart_upload(  # noqa: E731
        Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": listed}, **kw)
    e = expect_client_error("complete with MpuObjectSize one byte short", "InvalidRequest", 400, complete,
                            MpuObjectSize=size - 1)
    expect_eq("MpuObjectSize mismatch message",
              f"The provided 'x-amz-mp-object-size' header value {size - 1} does not match what was computed: {size}",
              e.response["Error"].get("Message"))
    expect_client_error("complete with a wrong whole-object ChecksumCRC32", "BadDigest", 400, complete,
                        ChecksumCRC32=checksum_b64("CRC32", b"other"))
    expect_client_error("complete with ChecksumType FULL_OBJECT on a COMPOSITE upload", "InvalidRequest", 400,
                        complete, ChecksumType="FULL_OBJECT")
    expect_client_error("complete with a ChecksumSHA256 on a CRC32 upload", "InvalidRequest", 400, complete,
                        ChecksumSHA256=checksum_b64("SHA256", b"x"))
    expect_unpublished(key)
    want = composite_checksum("CRC32", parts)
    done = complete(MpuObjectSize=size, ChecksumCRC32=want, ChecksumType="COMPOSITE")
    expect_eq("complete with right claims: ChecksumCRC32", want, done.get("ChecksumCRC32"))
    expect_true("completed object", s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"".join(parts))

    # A composite of one of the added algorithms, written without its -N.
    key = "claims-xxhash3"
    uid, listed = claimed_upload(key, "XXHASH3", parts)
    want = composite_checksum("XXHASH3", parts)
    expect_client_error("complete with a wrong whole-object ChecksumXXHASH3", "BadDigest", 400,
                        s3.complete_multipart_upload, Bucket=BUCKET, Key=key, UploadId=uid,
                        MultipartUpload={"Parts": listed}, ChecksumXXHASH3=checksum_b64("XXHASH3", b"x"))
    expect_unpublished(key)
    done = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": listed},
                                        ChecksumXXHASH3=want.rsplit("-", 1)[0], MpuObjectSize=size)
    expect_eq("complete XXHASH3: ChecksumXXHASH3", want, done.get("ChecksumXXHASH3"))

    if "CRC64NVME" in supported_algorithms():
        key = "claims-crc64nvme"
        uid, listed = claimed_upload(key, "CRC64NVME", parts, "FULL_OBJECT")
        whole = checksum_b64("CRC64NVME", b"".join(parts))  # the CRC of the whole object, by awscrt
        expect_client_error("complete with a wrong full-object ChecksumCRC64NVME", "BadDigest", 400,
                            s3.complete_multipart_upload, Bucket=BUCKET, Key=key, UploadId=uid,
                            MultipartUpload={"Parts": listed}, ChecksumCRC64NVME=checksum_b64("CRC64NVME", b"x"))
        expect_unpublished(key)
        done = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": listed},
                                            ChecksumCRC64NVME=whole, ChecksumType="FULL_OBJECT")
        expect_eq("complete CRC64NVME FULL_OBJECT: ChecksumCRC64NVME", whole, done.get("ChecksumCRC64NVME"))


# ---------------------------------------------------------------------------------------------
# Presigned URLs, used by plain http.client (urllib would add a Content-Type to PUTs, which
# SigV2 signs).

def http_request(method, url, body=None):
    u = urllib.parse.urlsplit(url)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=CA_BUNDLE)
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.request(method, u.path + ("?" + u.query if u.query else ""), body=body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def presigned_round_trip(label, client, expect_style):
    key = f"presigned-{label}"
    data = rand_bytes(70000, label)
    put_url = client.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=600)
    get_url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=600)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(put_url).query)
    style = "SigV2" if "AWSAccessKeyId" in q else "SigV4" if "X-Amz-Signature" in q else "?"
    log(f"  {label}: presigned URLs are {style}")
    expect_eq(f"{label}: signature style of the presigned URL", expect_style, style)

    status, headers, body = http_request("PUT", put_url, data)
    expect_eq(f"{label}: presigned PUT status (body {body[:300]!r})", 200, status)
    expect_eq(f"{label}: presigned PUT ETag", '"%s"' % md5_hex(data), headers.get("etag"))
    status, headers, body = http_request("GET", get_url)
    expect_eq(f"{label}: presigned GET status", 200, status)
    expect_true(f"{label}: presigned GET body", body == data, f"{len(body)} B")

    # a tampered signature must be refused
    sig = "Signature" if style == "SigV2" else "X-Amz-Signature"
    bad = get_url.replace(f"{sig}=", f"{sig}=AAAA", 1)
    status, _, body = http_request("GET", bad)
    expect_eq(f"{label}: GET with a tampered signature (body {body[:300]!r})", 403, status)
    expect_true(f"{label}: tampered signature error code", b"<Code>SignatureDoesNotMatch</Code>" in body,
                repr(body[:300]))

    # an expired URL must be refused
    expired = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=1)
    time.sleep(2.1)
    status, _, body = http_request("GET", expired)
    expect_eq(f"{label}: GET with an expired presigned URL (body {body[:300]!r})", 403, status)
    expect_true(f"{label}: expired presigned URL error code", b"<Code>AccessDenied</Code>" in body, repr(body[:300]))

    # presigned UploadPart: the upload is created and completed by the client
    mkey = f"presigned-mpu-{label}"
    uid = client.create_multipart_upload(Bucket=BUCKET, Key=mkey)["UploadId"]
    parts = [rand_bytes(5 * MiB, label + "p1"), rand_bytes(4000, label + "p2")]
    listed = []
    for n, part in enumerate(parts, 1):
        url = client.generate_presigned_url(
            "upload_part", Params={"Bucket": BUCKET, "Key": mkey, "UploadId": uid, "PartNumber": n},
            ExpiresIn=600)
        status, headers, body = http_request("PUT", url, part)
        expect_eq(f"{label}: presigned UploadPart {n} status (body {body[:300]!r})", 200, status)
        expect_eq(f"{label}: presigned UploadPart {n} ETag", '"%s"' % md5_hex(part), headers.get("etag"))
        listed.append({"PartNumber": n, "ETag": headers["etag"]})
    done = client.complete_multipart_upload(Bucket=BUCKET, Key=mkey, UploadId=uid,
                                            MultipartUpload={"Parts": listed})
    expect_eq(f"{label}: complete after presigned parts: ETag", multipart_etag(parts), done["ETag"])
    got = client.get_object(Bucket=BUCKET, Key=mkey)["Body"].read()
    expect_true(f"{label}: object made of presigned parts", got == b"".join(parts))


@step
def presigned_urls():
    default_client = s3
    url = default_client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "x"})
    default_style = "SigV2" if "AWSAccessKeyId=" in url else "SigV4"
    presigned_round_trip("default", default_client, default_style)
    presigned_round_trip("s3v4", make_client(signature_version="s3v4"), "SigV4")
    if default_style != "SigV2":
        log(f"  botocore {botocore.__version__} presigns with SigV4 by default: SigV2 asked for explicitly")
        presigned_round_trip("sigv2", make_client(signature_version="s3"), "SigV2")


# ---------------------------------------------------------------------------------------------
# Presigned POST (browser form uploads): generate_presigned_post, the form sent by `requests`
# as a browser would (fields, then the file).

def post_form(post, filename, data, content_type="application/octet-stream", fields=None):
    form = dict(post["fields"])
    form.update(fields or {})
    # requests sends `data` fields first and `files` last, as the form must be.
    return requests.post(post["url"], data=form, files={"file": (filename, data, content_type)},
                         verify=CA_BUNDLE if CA_BUNDLE else True, allow_redirects=False, timeout=60)


def curl_form(post, filename, data, content_type):
    """The same form sent by `curl -F` (fields in order, the file last), as a shell script would.
    Returns (status, body)."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, filename)
        with open(path, "wb") as f:
            f.write(data)
        cmd = ["curl", "-sS", "-o", os.path.join(d, "answer"), "-w", "%{http_code}"]
        if CA_BUNDLE:
            cmd += ["--cacert", CA_BUNDLE]
        for k, v in post["fields"].items():
            cmd += ["--form-string", f"{k}={v}"]
        cmd += ["-F", f"file=@{path};type={content_type}", post["url"]]
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
        with open(os.path.join(d, "answer"), "rb") as f:
            return int(out.stdout.decode()), f.read()


def presigned_post_round_trip(label, client, want_style):
    prefix = f"post-{label}/"
    post = client.generate_presigned_post(
        BUCKET, prefix + "${filename}",
        Fields={"Content-Type": "image/png", "x-amz-meta-owner": "alice", "success_action_status": "201"},
        Conditions=[
            ["starts-with", "$Content-Type", "image/"],
            {"x-amz-meta-owner": "alice"},
            {"success_action_status": "201"},
            ["content-length-range", 1, 256 * 1024],
        ],
        ExpiresIn=600,
    )
    names = {k.lower() for k in post["fields"]}
    style = "SigV4" if "x-amz-signature" in names else "SigV2" if "signature" in names else "?"
    log(f"  {label}: generate_presigned_post made a {style} form: {sorted(post['fields'])}")
    expect_eq(f"{label}: signature style of the presigned POST", want_style, style)

    data = rand_bytes(100_000, "post" + label)
    resp = post_form(post, "photo.png", data, "image/png")
    expect_eq(f"{label}: POST status (body {resp.content[:300]!r})", 201, resp.status_code)
    expect_true(f"{label}: PostResponse", b"<PostResponse" in resp.content, repr(resp.content[:300]))
    key = prefix + "photo.png"
    expect_true(f"{label}: PostResponse Key", f"<Key>{key}</Key>".encode() in resp.content, repr(resp.content))
    expect_eq(f"{label}: POST ETag header", '"%s"' % md5_hex(data), resp.headers.get("ETag"))
    got = s3.get_object(Bucket=BUCKET, Key=key)
    expect_true(f"{label}: bytes read back", got["Body"].read() == data)
    expect_eq(f"{label}: Content-Type stored", "image/png", got["ContentType"])
    expect_eq(f"{label}: metadata stored", {"owner": "alice"}, got["Metadata"])

    # curl -F with the same form: stored; over the range: refused, nothing stored.
    curl_data = rand_bytes(50_000, "curl" + label)
    status, body = curl_form(post, "curl.png", curl_data, "image/png")
    expect_eq(f"{label}: curl -F status (body {body[:300]!r})", 201, status)
    got = s3.get_object(Bucket=BUCKET, Key=prefix + "curl.png")
    expect_true(f"{label}: curl -F bytes read back", got["Body"].read() == curl_data)
    status, body = curl_form(post, "curl-big.png", rand_bytes(256 * 1024 + 1, "curlbig"), "image/png")
    expect_eq(f"{label}: curl -F over content-length-range (body {body[:300]!r})", 400, status)
    expect_true(f"{label}: curl -F EntityTooLarge", b"<Code>EntityTooLarge</Code>" in body, repr(body[:300]))
    expect_client_error(f"{label}: head_object after curl's EntityTooLarge", "404", 404, s3.head_object,
                        Bucket=BUCKET, Key=prefix + "curl-big.png")
    s3.delete_object(Bucket=BUCKET, Key=prefix + "curl.png")

    # Policy violations: nothing is stored.
    bad = prefix + "too-big.png"
    resp = post_form(post, "too-big.png", rand_bytes(256 * 1024 + 1, "big"), "image/png")
    expect_eq(f"{label}: POST over content-length-range: status (body {resp.content[:300]!r})", 400,
              resp.status_code)
    expect_true(f"{label}: EntityTooLarge", b"<Code>EntityTooLarge</Code>" in resp.content, repr(resp.content[:300]))
    expect_client_error(f"{label}: head_object after EntityTooLarge", "404", 404, s3.head_object,
                        Bucket=BUCKET, Key=bad)
    resp = post_form(post, "note.txt", b"text", "text/plain", fields={"Content-Type": "text/plain"})
    expect_eq(f"{label}: POST with a Content-Type the policy refuses: status (body {resp.content[:300]!r})",
              403, resp.status_code)
    expect_true(f"{label}: AccessDenied", b"<Code>AccessDenied</Code>" in resp.content, repr(resp.content[:300]))
    expect_client_error(f"{label}: head_object after AccessDenied", "404", 404, s3.head_object,
                        Bucket=BUCKET, Key=prefix + "note.txt")
    s3.delete_object(Bucket=BUCKET, Key=key)


@step
def presigned_post():
    presigned_post_round_trip("s3v4", make_client(signature_version="s3v4"), "SigV4")
    presigned_post_round_trip("sigv2", make_client(signature_version="s3"), "SigV2")


# ---------------------------------------------------------------------------------------------
def proxied_request(method, url, body=None, host=None):
    """Sends `url` (absolute, on <bucket>.<DOMAIN>) to the gateway as an HTTP proxy would: the
    absolute URL in the request line, its host (or `host`) in Host. No DNS name is needed."""
    u = urllib.parse.urlsplit(ENDPOINT)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host or urllib.parse.urlsplit(url).netloc)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@step
def sigv2_virtual_host():
    """botocore's own SigV2 signer (signature_version="s3") in virtual-host style: it signs
    `/<bucket>/<key>` (and `/<bucket>/` for bucket requests) while sending `/<key>` to
    <bucket>.<domain>. The gateway is reached as an HTTP proxy, so no DNS name is needed."""
    if not DOMAIN or urllib.parse.urlsplit(ENDPOINT).scheme != "http":
        log("  skipped: needs the gateway's --domain (COMPAT_DOMAIN) and plain http")
        return
    port = urllib.parse.urlsplit(ENDPOINT).port
    vhost = boto3.client(
        "s3",
        endpoint_url=f"http://{DOMAIN}:{port}",
        config=Config(signature_version="s3", s3={"addressing_style": "virtual"},
                      proxies={"http": ENDPOINT}, retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    data = rand_bytes(3000, "vhost")
    key = "vhost/a b+c.bin"
    put = vhost.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="application/x-test",
                           Metadata={"via": "sigv2-vhost"})
    expect_eq("SigV2 vhost put_object ETag", '"%s"' % md5_hex(data), put["ETag"])
    got = vhost.get_object(Bucket=BUCKET, Key=key)
    expect_true("SigV2 vhost get_object body", got["Body"].read() == data)
    expect_eq("SigV2 vhost metadata", {"via": "sigv2-vhost"}, got.get("Metadata"))
    expect_eq("SigV2 vhost content type", "application/x-test", got.get("ContentType"))
    # botocore's SigV2 leaves `attributes` out of the signed resource
    attrs = vhost.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=["ETag", "ObjectSize"])
    expect_eq("SigV2 vhost get_object_attributes", (md5_hex(data), len(data)),
              (attrs.get("ETag"), attrs.get("ObjectSize")))
    listed = [o["Key"] for o in vhost.list_objects(Bucket=BUCKET, Prefix="vhost/").get("Contents", [])]
    expect_eq("SigV2 vhost list_objects (bucket request, signed /<bucket>/)", [key], listed)
    # multipart: ?uploads, ?partNumber&uploadId, ?uploadId are signed sub-resources
    uid = vhost.create_multipart_upload(Bucket=BUCKET, Key="vhost/mp")["UploadId"]
    parts = [rand_bytes(5 * MiB, "vh1"), rand_bytes(1000, "vh2")]
    listed = []
    for n, part in enumerate(parts, 1):
        r = vhost.upload_part(Bucket=BUCKET, Key="vhost/mp", UploadId=uid, PartNumber=n, Body=part)
        listed.append({"PartNumber": n, "ETag": r["ETag"]})
    got_parts = vhost.list_parts(Bucket=BUCKET, Key="vhost/mp", UploadId=uid)["Parts"]
    expect_eq("SigV2 vhost list_parts", [1, 2], [p["PartNumber"] for p in got_parts])
    done = vhost.complete_multipart_upload(Bucket=BUCKET, Key="vhost/mp", UploadId=uid,
                                           MultipartUpload={"Parts": listed})
    expect_eq("SigV2 vhost complete ETag", multipart_etag(parts), done["ETag"])
    # A presigned (query) SigV2 URL for this bucket's host works there, and nowhere else.
    url = vhost.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=600)
    expect_true("SigV2 vhost presigned URL is virtual-host style",
                urllib.parse.urlsplit(url).hostname == f"{BUCKET}.{DOMAIN}", url)
    status, body = proxied_request("GET", url)
    expect_eq(f"SigV2 vhost presigned GET (body {body[:300]!r})", 200, status)
    expect_true("SigV2 vhost presigned GET body", body == data)
    other_host = f"{BUCKET}-other.{DOMAIN}:{port}"
    status, body = proxied_request("GET", url, host=other_host)
    expect_eq(f"SigV2 vhost presigned GET on another bucket's host (body {body[:300]!r})", 403, status)
    expect_true("... is SignatureDoesNotMatch", b"<Code>SignatureDoesNotMatch</Code>" in body, repr(body[:300]))
    vhost.delete_object(Bucket=BUCKET, Key=key)
    vhost.delete_object(Bucket=BUCKET, Key="vhost/mp")


# ---------------------------------------------------------------------------------------------
@step
def error_codes():
    missing = BUCKET + "-missing"
    expect_client_error("list_objects_v2 on a missing bucket", "NoSuchBucket", 404, s3.list_objects_v2,
                        Bucket=missing)
    expect_client_error("get_object in a missing bucket", "NoSuchBucket", 404, s3.get_object,
                        Bucket=missing, Key="k")
    expect_client_error("create_multipart_upload in a missing bucket", "NoSuchBucket", 404,
                        s3.create_multipart_upload, Bucket=missing, Key="k")
    expect_client_error("get_object of a missing key", "NoSuchKey", 404, s3.get_object,
                        Bucket=BUCKET, Key="no/such/key")
    expect_client_error("get_object_attributes of a missing key", "NoSuchKey", 404, s3.get_object_attributes,
                        Bucket=BUCKET, Key="no/such/key", ObjectAttributes=["ETag"])
    s3.put_object(Bucket=BUCKET, Key="attrs-errors", Body=b"x")
    expect_client_error("get_object_attributes with an unknown attribute", "InvalidArgument", 400,
                        s3.get_object_attributes, Bucket=BUCKET, Key="attrs-errors", ObjectAttributes=["Size"])
    s3.delete_object(Bucket=BUCKET, Key="attrs-errors")

    five = rand_bytes(5 * MiB, "five")
    small = b"tail" * 100
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key="errors.bin")["UploadId"]
    e1 = s3.upload_part(Bucket=BUCKET, Key="errors.bin", UploadId=uid, PartNumber=1, Body=five)["ETag"]
    e2 = s3.upload_part(Bucket=BUCKET, Key="errors.bin", UploadId=uid, PartNumber=2, Body=small)["ETag"]
    wrong = '"%s"' % md5_hex(b"not this part")
    expect_client_error("complete with a wrong ETag", "InvalidPart", 400, s3.complete_multipart_upload,
                        Bucket=BUCKET, Key="errors.bin", UploadId=uid,
                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": wrong}]})
    expect_client_error("complete with a part never uploaded", "InvalidPart", 400,
                        s3.complete_multipart_upload, Bucket=BUCKET, Key="errors.bin", UploadId=uid,
                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e2}]})
    expect_client_error("complete with parts out of order", "InvalidPartOrder", 400,
                        s3.complete_multipart_upload, Bucket=BUCKET, Key="errors.bin", UploadId=uid,
                        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    # the failed Completes leave the upload usable
    done = s3.complete_multipart_upload(Bucket=BUCKET, Key="errors.bin", UploadId=uid,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                                   {"PartNumber": 2, "ETag": e2}]})
    expect_eq("complete after the failed ones: ETag", multipart_etag([five, small]), done["ETag"])

    uid = s3.create_multipart_upload(Bucket=BUCKET, Key="too-small.bin")["UploadId"]
    s1 = s3.upload_part(Bucket=BUCKET, Key="too-small.bin", UploadId=uid, PartNumber=1, Body=small)["ETag"]
    s2 = s3.upload_part(Bucket=BUCKET, Key="too-small.bin", UploadId=uid, PartNumber=2, Body=small)["ETag"]
    expect_client_error("complete with a 400 B first part", "EntityTooSmall", 400,
                        s3.complete_multipart_upload, Bucket=BUCKET, Key="too-small.bin", UploadId=uid,
                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": s1}, {"PartNumber": 2, "ETag": s2}]})
    s3.abort_multipart_upload(Bucket=BUCKET, Key="too-small.bin", UploadId=uid)

    wrong_md5 = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    expect_client_error("put_object with a wrong ContentMD5", "BadDigest", 400, s3.put_object,
                        Bucket=BUCKET, Key="bad-md5", Body=b"hello world", ContentMD5=wrong_md5)
    expect_client_error("head_object of the refused put", "404", 404, s3.head_object,
                        Bucket=BUCKET, Key="bad-md5")
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key="bad-md5-part")["UploadId"]
    expect_client_error("upload_part with a wrong ContentMD5", "BadDigest", 400, s3.upload_part,
                        Bucket=BUCKET, Key="bad-md5-part", UploadId=uid, PartNumber=1, Body=b"hello world",
                        ContentMD5=wrong_md5)
    expect_eq("list_parts after the refused part", [],
              s3.list_parts(Bucket=BUCKET, Key="bad-md5-part", UploadId=uid).get("Parts", []))
    s3.abort_multipart_upload(Bucket=BUCKET, Key="bad-md5-part", UploadId=uid)
    ok = s3.put_object(Bucket=BUCKET, Key="good-md5", Body=b"hello world",
                       ContentMD5=base64.b64encode(hashlib.md5(b"hello world").digest()).decode())
    expect_eq("put_object with the right ContentMD5: ETag", '"%s"' % md5_hex(b"hello world"), ok["ETag"])

    s3.put_object(Bucket=BUCKET, Key="hundred", Body=b"h" * 100)
    expect_client_error("get_object Range beyond the end", "InvalidRange", 416, s3.get_object,
                        Bucket=BUCKET, Key="hundred", Range="bytes=1000-2000")

    expect_client_error("put_object with a ContentMD5 that is not 16 bytes", "InvalidDigest", 400, s3.put_object,
                        Bucket=BUCKET, Key="bad-md5", Body=b"hello world", ContentMD5="YWJyYWNhZGFicmE=")
    # us-east-1 answers 200 to re-creating one's own bucket (AWS's legacy behaviour there);
    # every other region answers 409 BucketAlreadyOwnedByYou.
    if s3.meta.region_name in (None, "us-east-1"):
        again = s3.create_bucket(Bucket=BUCKET)
        expect_eq("create_bucket of one's own bucket in us-east-1: status", 200,
                  again["ResponseMetadata"]["HTTPStatusCode"])
        expect_true("create_bucket again keeps the objects", "hundred" in [
            o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="hundred").get("Contents", [])])
    else:
        expect_client_error("create_bucket of an existing bucket", "BucketAlreadyOwnedByYou", 409,
                            s3.create_bucket, Bucket=BUCKET,
                            CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    expect_client_error("delete_bucket of a non-empty bucket", "BucketNotEmpty", 409, s3.delete_bucket,
                        Bucket=BUCKET)
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key="bad-part-number")["UploadId"]
    expect_client_error("upload_part PartNumber=10001", "InvalidArgument", 400, s3.upload_part,
                        Bucket=BUCKET, Key="bad-part-number", UploadId=uid, PartNumber=10001, Body=b"x")
    s3.abort_multipart_upload(Bucket=BUCKET, Key="bad-part-number", UploadId=uid)
    etag = s3.head_object(Bucket=BUCKET, Key="hundred")["ETag"]
    expect_client_error("get_object IfMatch a wrong ETag", "PreconditionFailed", 412, s3.get_object,
                        Bucket=BUCKET, Key="hundred", IfMatch='"%s"' % md5_hex(b"other"))
    expect_client_error("get_object IfNoneMatch the ETag", "304", 304, s3.get_object,
                        Bucket=BUCKET, Key="hundred", IfNoneMatch=etag)
    got = s3.get_object(Bucket=BUCKET, Key="hundred", IfMatch=etag)
    expect_eq("get_object IfMatch the ETag", b"h" * 100, got["Body"].read())

    wrong_key = boto3.client("s3", endpoint_url=ENDPOINT, verify=CA_BUNDLE if CA_BUNDLE else None,
                             aws_access_key_id="AKIDNOSUCHKEY0000000", aws_secret_access_key="x" * 40,
                             config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
    expect_client_error("an unknown access key", "InvalidAccessKeyId", 403, wrong_key.list_objects_v2,
                        Bucket=BUCKET)
    creds = s3._request_signer._credentials
    wrong_secret = boto3.client("s3", endpoint_url=ENDPOINT, verify=CA_BUNDLE if CA_BUNDLE else None,
                                aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key + "x",
                                aws_session_token=creds.token,
                                config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
    expect_client_error("a wrong secret key", "SignatureDoesNotMatch", 403, wrong_secret.list_objects_v2,
                        Bucket=BUCKET)


@step
def object_tagging():
    """Tags on put_object, the transfer manager's multipart upload (ExtraArgs Tagging, sent
    with CreateMultipartUpload and applied at Complete) and copies; Put/Get/DeleteObjectTagging;
    TagCount on GET and HEAD; AWS's refusals."""
    def tags_of(key):
        return [(t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]]

    s3.put_object(Bucket=BUCKET, Key="tags/put", Body=b"tagged", Tagging="team=a&note=two%20words")
    expect_eq("put_object Tagging", [("team", "a"), ("note", "two words")], tags_of("tags/put"))
    expect_eq("head_object TagCount", 2, s3.head_object(Bucket=BUCKET, Key="tags/put").get("TagCount"))
    expect_eq("get_object TagCount", 2, s3.get_object(Bucket=BUCKET, Key="tags/put").get("TagCount"))

    data = rand_bytes(12 * MiB + 7, 21)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                            preferred_transfer_client="classic")
    s3.upload_fileobj(io.BytesIO(data), BUCKET, "tags/multipart", Config=config,
                      ExtraArgs={"Tagging": "stage=raw"})
    chunks = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    expect_eq("multipart upload ETag", multipart_etag(chunks),
              s3.head_object(Bucket=BUCKET, Key="tags/multipart")["ETag"])
    expect_eq("multipart upload tags (applied at Complete)", [("stage", "raw")], tags_of("tags/multipart"))

    s3.copy_object(Bucket=BUCKET, Key="tags/copy", CopySource={"Bucket": BUCKET, "Key": "tags/put"})
    expect_eq("copy_object (TaggingDirective COPY)", tags_of("tags/put"), tags_of("tags/copy"))
    s3.copy_object(Bucket=BUCKET, Key="tags/replaced", CopySource={"Bucket": BUCKET, "Key": "tags/put"},
                   TaggingDirective="REPLACE", Tagging="fresh=1")
    expect_eq("copy_object (TaggingDirective REPLACE)", [("fresh", "1")], tags_of("tags/replaced"))

    tag_set = [{"Key": f"k{i}", "Value": "v" * 256} for i in range(9)] + [{"Key": "x" * 128, "Value": ""}]
    s3.put_object_tagging(Bucket=BUCKET, Key="tags/put", Tagging={"TagSet": tag_set})
    expect_eq("put_object_tagging (10 tags, longest key and value)",
              [(t["Key"], t["Value"]) for t in tag_set], tags_of("tags/put"))
    s3.delete_object_tagging(Bucket=BUCKET, Key="tags/put")
    expect_eq("tags after delete_object_tagging", [], tags_of("tags/put"))
    expect_eq("head_object without tags has no TagCount", None,
              s3.head_object(Bucket=BUCKET, Key="tags/put").get("TagCount"))

    eleven = [{"Key": f"k{i}", "Value": ""} for i in range(11)]
    e = expect_client_error("11 tags", "BadRequest", 400, s3.put_object_tagging, Bucket=BUCKET, Key="tags/put",
                            Tagging={"TagSet": eleven})
    expect_eq("11 tags: message", "Object tags cannot be greater than 10", e.response["Error"]["Message"])
    e = expect_client_error("a duplicate tag key", "InvalidTag", 400, s3.put_object_tagging, Bucket=BUCKET,
                            Key="tags/put", Tagging={"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]})
    expect_eq("duplicate key: message", "Cannot provide multiple Tags with the same key",
              e.response["Error"]["Message"])
    expect_client_error("a 129-character key", "InvalidTag", 400, s3.put_object_tagging, Bucket=BUCKET,
                        Key="tags/put", Tagging={"TagSet": [{"Key": "k" * 129, "Value": ""}]})
    expect_client_error("a 257-character value", "InvalidTag", 400, s3.put_object_tagging, Bucket=BUCKET,
                        Key="tags/put", Tagging={"TagSet": [{"Key": "k", "Value": "v" * 257}]})
    expect_client_error("an aws: key", "InvalidTag", 400, s3.put_object_tagging, Bucket=BUCKET,
                        Key="tags/put", Tagging={"TagSet": [{"Key": "aws:cost", "Value": "1"}]})
    expect_client_error("x-amz-tagging with a repeated key", "InvalidArgument", 400, s3.put_object,
                        Bucket=BUCKET, Key="tags/refused", Body=b"x", Tagging="a=1&a=2")
    expect_client_error("nothing stored for refused tags", "404", 404, s3.head_object, Bucket=BUCKET,
                        Key="tags/refused")
    expect_client_error("get_object_tagging of a missing key", "NoSuchKey", 404, s3.get_object_tagging,
                        Bucket=BUCKET, Key="tags/missing")


@step
def list_and_delete_objects():
    keys = sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, PaginationConfig={"PageSize": 7}) for o in page.get("Contents", []))
    expect_true("list_objects_v2 (pages of 7) lists the objects", len(keys) > 10, repr(keys))
    expect_eq("list_objects_v2 keys are unique", len(set(keys)), len(keys))
    for k in ("lowlevel.bin", "tm.bin", "errors.bin", "small-0", "copy-dst.bin", "awk/dir one/with space.txt",
              "dl/zdir/last"):
        expect_true(f"list_objects_v2 lists {k}", k in keys, repr(keys))
    # delete_objects: botocore sends a CRC32 (or MD5) and no Content-MD5 by default
    resp = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]})
    expect_eq("delete_objects errors", [], resp.get("Errors", []))
    expect_eq("delete_objects deleted keys", keys, sorted(d["Key"] for d in resp.get("Deleted", [])))
    left = s3.list_objects_v2(Bucket=BUCKET).get("KeyCount")
    expect_eq("objects left after delete_objects", 0, left)


def cleanup():
    """Best effort: objects, uploads, bucket."""
    try:
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=BUCKET):
            for u in page.get("Uploads", []):
                s3.abort_multipart_upload(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=BUCKET, Key=o["Key"])
        s3.delete_bucket(Bucket=BUCKET)
        expect_client_error("head_bucket after delete_bucket", "404", 404, s3.head_bucket, Bucket=BUCKET)
        return True
    except Exception as e:  # noqa: BLE001
        log(f"cleanup of {BUCKET} failed: {e!r}")
        return False


def main():
    global current_step
    log(f"boto3 {boto3.__version__}, botocore {botocore.__version__}, endpoint {ENDPOINT}, "
        f"request_checksum_calculation={CHECKSUM_MODE}, bucket {BUCKET}")
    t_all = time.monotonic()
    for fn in STEPS:
        current_step = fn.__name__
        log(f"\n--- [boto3/{LABEL}] {current_step} ({CHECKSUM_MODE})")
        t0 = time.monotonic()
        try:
            fn()
        except StepFailed as e:
            failures.append((current_step, str(e)))
            log(f"FAIL [boto3/{LABEL}] {current_step} ({CHECKSUM_MODE}): {e}")
        except Exception as e:  # noqa: BLE001
            failures.append((current_step, repr(e)))
            traceback.print_exc()
            log(f"FAIL [boto3/{LABEL}] {current_step} ({CHECKSUM_MODE}): unexpected {e!r}")
        else:
            log(f"  ok ({time.monotonic() - t0:.1f} s)")
        if fn is create_bucket and failures:
            break
    current_step = "cleanup"
    cleaned = cleanup()
    if failures:
        log(f"\n{len(failures)} boto3 step(s) failed ({CHECKSUM_MODE}):")
        for name, msg in failures:
            log(f"  FAIL [boto3/{LABEL}] {name}: {msg}")
        return 1
    if not cleaned:
        log(f"FAIL [boto3/{LABEL}] cleanup: could not remove bucket {BUCKET}")
        return 1
    log(f"\nboto3 suite passed ({CHECKSUM_MODE}, {time.monotonic() - t_all:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
