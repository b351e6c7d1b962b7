"""Drives presigned-post.mjs: a bucket whose CORS rule admits pages on any 127.0.0.1 port and
exposes ETag and Location; three presigned POST forms from boto3's generate_presigned_post (SigV4)
that Chromium submits from a page of another origin: a real <form> answered with 201 and a
PostResponse, one answered with a 303 to the page's origin, and a fetch() with FormData that
reads the ETag and Location headers. Each object is then checked through the S3 API (bytes,
Content-Type, metadata). Exits non-zero with a message on any mismatch."""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import xml.etree.ElementTree as ET

import boto3
from botocore.config import Config

here = os.path.dirname(os.path.abspath(__file__))
s3 = boto3.client(
    "s3",
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
)
bucket = "post-" + os.urandom(6).hex()
s3.create_bucket(Bucket=bucket)
s3.put_bucket_cors(
    Bucket=bucket,
    CORSConfiguration={
        "CORSRules": [
            {
                "AllowedOrigins": ["http://127.0.0.1:*"],
                "AllowedMethods": ["POST", "GET"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": ["ETag", "Location"],
                "MaxAgeSeconds": 60,
            }
        ]
    },
)


def presign(prefix, fields, conditions):
    return s3.generate_presigned_post(
        bucket,
        prefix + "${filename}",
        Fields=fields,
        Conditions=[["starts-with", "$key", prefix], ["content-length-range", 1, 1 << 20], *conditions],
        ExpiresIn=300,
    )


posts = {
    "created": presign(
        "form/",
        {"success_action_status": "201", "x-amz-meta-via": "form"},
        [{"success_action_status": "201"}, {"x-amz-meta-via": "form"}],
    ),
    "redirect": presign("redirect/", {}, [["starts-with", "$success_action_redirect", "http://127.0.0.1:"]]),
    "fetch": presign(
        "fetch/", {"Content-Type": "text/plain"}, [["starts-with", "$Content-Type", "text/"]]
    ),
}
data = os.urandom(48 * 1024)
etag = '"%s"' % hashlib.md5(data).hexdigest()
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "picture.bin")
    with open(path, "wb") as f:
        f.write(data)
    env = dict(os.environ, POSTS_JSON=json.dumps(posts), FILE=path)
    out = subprocess.run(
        ["node", os.path.join(here, "presigned-post.mjs")], env=env, capture_output=True, text=True, timeout=180
    )
if out.returncode != 0:
    sys.exit(f"FAIL presigned-post.mjs exited {out.returncode}: {out.stderr[-3000:]}")
result = json.loads(out.stdout.strip().splitlines()[-1])


def check(what, cond, detail):
    if not cond:
        sys.exit(f"FAIL {what}: {detail}")


def stored(key, content_type=None, metadata=None):
    got = s3.get_object(Bucket=bucket, Key=key)
    check(f"bytes of {key}", got["Body"].read() == data, "differ from the file the browser sent")
    check(f"ETag of {key}", got["ETag"] == etag, got["ETag"])
    if content_type:
        check(f"Content-Type of {key}", got["ContentType"] == content_type, got["ContentType"])
    if metadata is not None:
        check(f"metadata of {key}", got["Metadata"] == metadata, got["Metadata"])


# 1. The real form, 201.
created = result["created"]
print(f"form POST from {result['origin']}: status {created['status']}")
check("form POST status", created["status"] == 201, created)
doc = ET.fromstring(created["body"])
ns = {"s3": doc.tag[1:].split("}")[0]} if doc.tag.startswith("{") else {}
find = (lambda n: doc.findtext(f"s3:{n}", namespaces=ns)) if ns else doc.findtext
check("PostResponse", doc.tag.endswith("PostResponse"), created["body"])
check("PostResponse Key", find("Key") == "form/picture.bin", created["body"])
check("PostResponse Bucket", find("Bucket") == bucket, created["body"])
check("PostResponse ETag", find("ETag") == etag, created["body"])
check("PostResponse Location", (find("Location") or "").endswith(f"/{bucket}/form/picture.bin"), created["body"])
stored("form/picture.bin", metadata={"via": "form"})

# 2. The 303 back to the page's origin, with bucket, key and etag.
redirect = result["redirect"]
print(f"redirected to {redirect['url']}")
u = urllib.parse.urlsplit(redirect["url"])
q = dict(urllib.parse.parse_qsl(u.query))
check("redirect target", f"{u.scheme}://{u.netloc}" == result["origin"] and u.path == "/done", redirect)
check("redirect query", q == {"bucket": bucket, "key": "redirect/picture.bin", "etag": etag}, q)
stored("redirect/picture.bin")

# 3. fetch() with FormData: the exposed ETag and Location.
fetched = result["fetch"]
print(f"fetch POST: status {fetched['status']}, ETag {fetched['etag']}, Location {fetched['location']}")
check("fetch POST status", fetched["status"] == 204, fetched)
check("fetch POST ETag (exposed through CORS)", fetched["etag"] == etag, fetched)
location = fetched["location"] or ""
check("fetch POST Location (exposed through CORS)", location.endswith(f"/{bucket}/fetch/fetched.bin"), fetched)
# The Location names the object where the gateway serves it: https when it serves https.
scheme = urllib.parse.urlsplit(os.environ.get("AWS_ENDPOINT_URL", "")).scheme
check("fetch POST Location scheme", not scheme or location.startswith(scheme + "://"), fetched)
stored("fetch/fetched.bin", content_type="text/plain")

for key in ["form/picture.bin", "redirect/picture.bin", "fetch/fetched.bin"]:
    s3.delete_object(Bucket=bucket, Key=key)
s3.delete_bucket(Bucket=bucket)
print("presigned POST from another origin (form, redirect, fetch): ok")
