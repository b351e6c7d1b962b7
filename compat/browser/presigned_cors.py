"""Drives presigned-cors.mjs: a bucket whose CORS rule admits browser pages on any 127.0.0.1
port, a multipart upload, a SigV4-presigned UploadPart URL; Chromium PUTs the part from a page
of another origin and reads its ETag; the upload is then completed with that ETag and read back.
Exits non-zero with a message on any mismatch."""

import base64
import json
import os
import subprocess
import sys

import boto3
from botocore.config import Config

here = os.path.dirname(os.path.abspath(__file__))
s3 = boto3.client("s3", config=Config(signature_version="s3v4", retries={"total_max_attempts": 1}))
bucket = "cors-" + os.urandom(6).hex()
s3.create_bucket(Bucket=bucket)
s3.put_bucket_cors(
    Bucket=bucket,
    CORSConfiguration={
        "CORSRules": [
            {
                "AllowedOrigins": ["http://127.0.0.1:*"],
                "AllowedMethods": ["PUT", "GET"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 60,
            }
        ]
    },
)
part = os.urandom(64 * 1024)
up = s3.create_multipart_upload(Bucket=bucket, Key="from-browser.bin")
url = s3.generate_presigned_url(
    "upload_part",
    Params={"Bucket": bucket, "Key": "from-browser.bin", "UploadId": up["UploadId"], "PartNumber": 1},
    ExpiresIn=300,
)
env = dict(os.environ, PRESIGNED_URL=url, PART_B64=base64.b64encode(part).decode())
out = subprocess.run(
    ["node", os.path.join(here, "presigned-cors.mjs")], env=env, capture_output=True, text=True, timeout=120
)
if out.returncode != 0:
    sys.exit(f"FAIL presigned-cors.mjs exited {out.returncode}: {out.stderr[-2000:]}")
result = json.loads(out.stdout.strip().splitlines()[-1])
print(f"browser PUT from {result['origin']}: status {result['status']}, ETag {result['etag']}")
if result["status"] != 200:
    sys.exit(f"FAIL presigned UploadPart from the browser: {result}")
if not result["etag"]:
    sys.exit("FAIL the page could not read the part's ETag (not exposed through CORS)")
s3.complete_multipart_upload(
    Bucket=bucket,
    Key="from-browser.bin",
    UploadId=up["UploadId"],
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": result["etag"]}]},
)
got = s3.get_object(Bucket=bucket, Key="from-browser.bin")["Body"].read()
if got != part:
    sys.exit("FAIL the object completed from the browser's part differs")
s3.delete_object(Bucket=bucket, Key="from-browser.bin")
s3.delete_bucket(Bucket=bucket)
print("presigned UploadPart from another origin: ok")
