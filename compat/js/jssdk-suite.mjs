// AWS SDK for JavaScript v3 against an S3 endpoint (run by compat/jssdk.sh).
//
//   node compat/js/jssdk-suite.mjs WORK_DIR LABEL
//
// Endpoint and credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
// (AWS_SESSION_TOKEN), AWS_DEFAULT_REGION; for https the certificate is given to node with
// NODE_EXTRA_CA_CERTS. Stream bodies go out as aws-chunked STREAMING-UNSIGNED-PAYLOAD-TRAILER
// with a CRC32 trailer even over plain http: that is the interesting case here.
//
// Steps run in order and the first mismatch ends the run with
// `FAIL [jssdk/LABEL] <step>: <what>` and exit status 1.

import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, rmSync } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { crc32 } from "node:zlib";

import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectTaggingCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { createPresignedPost } from "@aws-sdk/s3-presigned-post";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const MiB = 1024 * 1024;
const [WORK, LABEL = "?"] = process.argv.slice(2);
if (!WORK) {
  console.error("usage: node jssdk-suite.mjs WORK_DIR LABEL");
  process.exit(2);
}
const ENDPOINT = process.env.AWS_ENDPOINT_URL;
const REGION = process.env.AWS_DEFAULT_REGION || process.env.AWS_REGION || "us-east-1";
const BUCKET = `compat-${Math.floor(Date.now() / 1000)}-${Math.floor(Math.random() * 1e9)}`;

// A listing that does not answer within this time is a hung server, not a slow one.
const LIST_TIMEOUT_MS = 15000;
let currentStep = "(setup)";

class StepFailed extends Error {}

function log(msg) {
  process.stderr.write(`${msg}\n`);
}
function step(name) {
  currentStep = name;
  log(`\n--- [jssdk/${LABEL}] ${name}`);
}
function fail(msg) {
  throw new StepFailed(msg);
}
function expectEq(what, expected, actual) {
  const e = JSON.stringify(expected);
  const a = JSON.stringify(actual);
  if (e !== a) fail(`${what}: expected ${e}, got ${a}`);
}

function makeClient(extra = {}) {
  return new S3Client({
    endpoint: ENDPOINT,
    region: REGION,
    forcePathStyle: true,
    maxAttempts: 1, // a server error must not be retried away
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID,
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
      ...(process.env.AWS_SESSION_TOKEN ? { sessionToken: process.env.AWS_SESSION_TOKEN } : {}),
    },
    ...extra,
  });
}

const md5 = (buf) => createHash("md5").update(buf).digest();
const b64crc32 = (buf) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(buf) >>> 0);
  return b.toString("base64");
};
function multipartEtag(buf, partSize) {
  const digests = [];
  for (let off = 0; off < buf.length; off += partSize) digests.push(md5(buf.subarray(off, off + partSize)));
  return `"${createHash("md5").update(Buffer.concat(digests)).digest("hex")}-${digests.length}"`;
}
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

async function getObjectSha256(client, key) {
  const resp = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const h = createHash("sha256");
  let n = 0;
  for await (const chunk of resp.Body) {
    h.update(chunk);
    n += chunk.length;
  }
  return { sha256: h.digest("hex"), length: n, etag: resp.ETag };
}

async function writeFile(path, buf) {
  await pipeline(Readable.from([buf]), createWriteStream(path));
}

async function main() {
  const client = makeClient();
  log(`@aws-sdk/client-s3 against ${ENDPOINT}, bucket ${BUCKET}`);
  mkdirSync(WORK, { recursive: true });
  const keys = [];

  step("CreateBucket, HeadBucket");
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await client.send(new HeadBucketCommand({ Bucket: BUCKET }));

  const bigSize = 20 * MiB + 1234;
  const big = randomBytes(bigSize);
  const bigPath = `${WORK}/big.bin`;
  await writeFile(bigPath, big);

  for (const mode of ["WHEN_SUPPORTED", "WHEN_REQUIRED"]) {
    const c = makeClient({ requestChecksumCalculation: mode });
    const key = `upload-${mode}.bin`;
    step(`lib-storage Upload of ${bigSize} B from fs.createReadStream (partSize 5 MiB, queueSize 4, requestChecksumCalculation ${mode})`);
    const parts = [];
    const upload = new Upload({
      client: c,
      params: { Bucket: BUCKET, Key: key, Body: createReadStream(bigPath) },
      partSize: 5 * MiB,
      queueSize: 4,
    });
    upload.on("httpUploadProgress", (p) => parts.push(p.part));
    const done = await upload.done();
    keys.push(key);
    expectEq("Upload result ETag (MD5 of the part MD5s, -5)", multipartEtag(big, 5 * MiB), done.ETag);
    expectEq("Upload: parts reported", 5, new Set(parts).size);

    step(`GetObject ${key}, SHA-256`);
    const got = await getObjectSha256(c, key);
    expectEq("GetObject length", bigSize, got.length);
    expectEq("GetObject SHA-256", sha256(big), got.sha256);
    const head = await c.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    expectEq("HeadObject ContentLength", bigSize, head.ContentLength);
    expectEq("HeadObject ETag", done.ETag, head.ETag);
  }

  step("lib-storage Upload of a Readable of unknown length (12 MiB in 64 KiB chunks): multipart");
  {
    const chunks = [];
    for (let i = 0; i < 192; i++) chunks.push(big.subarray(i * 65536, (i + 1) * 65536));
    const data = Buffer.concat(chunks);
    const done = await new Upload({
      client,
      params: { Bucket: BUCKET, Key: "unknown-length.bin", Body: Readable.from(chunks) },
      partSize: 5 * MiB,
      queueSize: 4,
    }).done();
    keys.push("unknown-length.bin");
    expectEq("Upload (unknown length) ETag", multipartEtag(data, 5 * MiB), done.ETag);
    const got = await getObjectSha256(client, "unknown-length.bin");
    expectEq("GetObject SHA-256", sha256(data), got.sha256);
  }

  // Upload sends its `tags` with PutObjectTagging once the object exists (multipart or not).
  for (const [what, size] of [["multipart", 12 * MiB], ["single PutObject", 1000]]) {
    step(`lib-storage Upload with tags (${what}, ${size} B), GetObjectTagging, HeadObject TagCount`);
    const key = `tagged-${size}.bin`;
    const tags = [{ Key: "project", Value: "mpgw" }, { Key: "stage", Value: "compat test" }];
    const data = big.subarray(0, size);
    const done = await new Upload({
      client,
      params: { Bucket: BUCKET, Key: key, Body: data },
      partSize: 5 * MiB,
      queueSize: 4,
      tags,
    }).done();
    keys.push(key);
    if (size > 5 * MiB) expectEq("Upload with tags ETag", multipartEtag(data, 5 * MiB), done.ETag);
    const got = await client.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: key }));
    expectEq("GetObjectTagging TagSet", tags, got.TagSet);
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    expectEq("HeadObject TagCount", 2, head.TagCount);
  }

  step("PutObject with Tagging, PutObjectTagging, DeleteObjectTagging, an invalid tag");
  {
    await client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: "tags.txt", Body: Buffer.from("t"), Tagging: "a=1&b=two%20words" }),
    );
    keys.push("tags.txt");
    let got = await client.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: "tags.txt" }));
    expectEq("tags from x-amz-tagging", [{ Key: "a", Value: "1" }, { Key: "b", Value: "two words" }], got.TagSet);
    await client.send(
      new PutObjectTaggingCommand({ Bucket: BUCKET, Key: "tags.txt", Tagging: { TagSet: [{ Key: "c", Value: "3" }] } }),
    );
    got = await client.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: "tags.txt" }));
    expectEq("tags after PutObjectTagging", [{ Key: "c", Value: "3" }], got.TagSet);
    await client.send(new DeleteObjectTaggingCommand({ Bucket: BUCKET, Key: "tags.txt" }));
    got = await client.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: "tags.txt" }));
    expectEq("tags after DeleteObjectTagging", [], got.TagSet || []);
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "tags.txt" }));
    expectEq("HeadObject TagCount without tags", undefined, head.TagCount);
    try {
      await client.send(
        new PutObjectTaggingCommand({ Bucket: BUCKET, Key: "tags.txt", Tagging: { TagSet: [{ Key: "aws:x", Value: "1" }] } }),
      );
      fail("PutObjectTagging with an aws: key succeeds");
    } catch (e) {
      if (e instanceof StepFailed) throw e;
      expectEq("aws: tag key: status", 400, e.$metadata?.httpStatusCode);
      expectEq("aws: tag key: code", "InvalidTag", e.name);
    }
  }

  step("PutObject with a Buffer body (CRC32 header, signed payload)");
  {
    const data = big.subarray(0, 100 * 1024 + 5);
    const resp = await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "buffer.bin", Body: data }));
    keys.push("buffer.bin");
    expectEq("PutObject ETag", `"${md5(data).toString("hex")}"`, resp.ETag);
    expectEq("PutObject ChecksumCRC32 echo", b64crc32(data), resp.ChecksumCRC32);
    const got = await getObjectSha256(client, "buffer.bin");
    expectEq("GetObject SHA-256", sha256(data), got.sha256);
  }

  step("PutObject with an empty Buffer body");
  {
    const resp = await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "empty.bin", Body: Buffer.alloc(0) }));
    keys.push("empty.bin");
    expectEq("PutObject ETag of 0 B", `"${md5(Buffer.alloc(0)).toString("hex")}"`, resp.ETag);
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "empty.bin" }));
    expectEq("HeadObject ContentLength of 0 B", 0, head.ContentLength);
  }

  step("PutObject with a stream body (fs.createReadStream, 3 MiB + 7 B: aws-chunked with a CRC32 trailer)");
  {
    const data = big.subarray(0, 3 * MiB + 7);
    const path = `${WORK}/stream.bin`;
    await writeFile(path, data);
    const resp = await client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: "stream.bin", Body: createReadStream(path) }),
    );
    keys.push("stream.bin");
    expectEq("PutObject ETag", `"${md5(data).toString("hex")}"`, resp.ETag);
    expectEq("PutObject ChecksumCRC32 echo", b64crc32(data), resp.ChecksumCRC32);
    const got = await getObjectSha256(client, "stream.bin");
    expectEq("GetObject SHA-256", sha256(data), got.sha256);
    const ranged = await client.send(
      new GetObjectCommand({ Bucket: BUCKET, Key: "stream.bin", Range: "bytes=100-199" }),
    );
    expectEq("ranged GetObject body", data.subarray(100, 200).toString("hex"),
      Buffer.from(await ranged.Body.transformToByteArray()).toString("hex"));
    rmSync(path);
  }

  step("getSignedUrl (x-amz-* headers moved into the signed query): PutObject with Metadata, CopyObject, "
    + "and an unsigned x-amz-meta-* header (403 HeadersNotSigned)");
  {
    const data = randomBytes(4321);
    const type = "application/x-presigned";
    const putUrl = await getSignedUrl(client, new PutObjectCommand({
      Bucket: BUCKET, Key: "presigned.bin", Metadata: { note: "hoisted" }, ContentType: type,
    }), { expiresIn: 300 });
    const hoisted = [...new URL(putUrl).searchParams.keys()].filter((k) => /^x-amz-(?!algorithm|credential|date|expires|signedheaders|signature)/i.test(k));
    log(`  presigned PutObject carries in its query: ${hoisted.join(", ")}`);
    if (!hoisted.includes("x-amz-meta-note")) fail(`the presigner did not move the metadata into the query: ${putUrl}`);
    let resp = await fetch(putUrl, { method: "PUT", body: data, headers: { "content-type": type } });
    expectEq(`presigned PUT status (${await resp.text()})`, 200, resp.status);
    keys.push("presigned.bin");
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "presigned.bin" }));
    expectEq("metadata from the signed query", { note: "hoisted" }, head.Metadata);
    expectEq("presigned PUT ETag", `"${md5(data).toString("hex")}"`, head.ETag);
    resp = await fetch(putUrl, {
      method: "PUT", body: Buffer.from("planted"), headers: { "content-type": type, "x-amz-meta-planted": "1" },
    });
    const body = await resp.text();
    expectEq(`presigned PUT plus an unsigned x-amz-meta-* header: status (${body})`, 403, resp.status);
    if (!body.includes("<HeadersNotSigned>x-amz-meta-planted</HeadersNotSigned>")) fail(`no HeadersNotSigned: ${body}`);
    const copyUrl = await getSignedUrl(client, new CopyObjectCommand({
      Bucket: BUCKET, Key: "presigned-copy.bin", CopySource: `${BUCKET}/presigned.bin`,
    }), { expiresIn: 300 });
    if (!new URL(copyUrl).searchParams.has("x-amz-copy-source")) fail(`the copy source is not in the query: ${copyUrl}`);
    resp = await fetch(copyUrl, { method: "PUT" });
    const copied = await resp.text();
    expectEq(`presigned CopyObject status (${copied})`, 200, resp.status);
    if (!copied.includes("<CopyObjectResult")) fail(`not a CopyObjectResult: ${copied}`);
    keys.push("presigned-copy.bin");
    const got = await getObjectSha256(client, "presigned-copy.bin");
    expectEq("copied bytes (SHA-256)", sha256(data), got.sha256);
  }

  step("createPresignedPost (@aws-sdk/s3-presigned-post) + fetch with FormData: a form upload read back, "
    + "a policy violation refused");
  {
    const post = await createPresignedPost(client, {
      Bucket: BUCKET,
      Key: "post-${filename}",
      Conditions: [["content-length-range", 1, 64 * 1024], ["starts-with", "$Content-Type", "text/"]],
      Fields: { "Content-Type": "text/plain", "x-amz-meta-from": "jssdk", success_action_status: "201" },
      Expires: 300,
    });
    const send = (fields, data, name) => {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      form.append("file", new Blob([data], { type: "text/plain" }), name); // the file goes last
      return fetch(post.url, { method: "POST", body: form, redirect: "manual" });
    };
    const data = Buffer.from(`a note posted from node ${randomBytes(8).toString("hex")}\n`);
    let resp = await send(post.fields, data, "note.txt");
    let body = await resp.text();
    expectEq(`POST status (${body})`, 201, resp.status);
    if (!body.includes("<Key>post-note.txt</Key>")) fail(`PostResponse without the key: ${body}`);
    expectEq("POST ETag header", `"${md5(data).toString("hex")}"`, resp.headers.get("etag"));
    keys.push("post-note.txt");
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "post-note.txt" }));
    expectEq("Content-Type stored", "text/plain", head.ContentType);
    expectEq("metadata stored", { from: "jssdk" }, head.Metadata);
    const got = await getObjectSha256(client, "post-note.txt");
    expectEq("GetObject SHA-256 of the posted file", sha256(data), got.sha256);

    resp = await send(post.fields, randomBytes(64 * 1024 + 1), "big.txt");
    body = await resp.text();
    expectEq(`POST over content-length-range: status (${body})`, 400, resp.status);
    if (!body.includes("<Code>EntityTooLarge</Code>")) fail(`not EntityTooLarge: ${body}`);
    resp = await send({ ...post.fields, "Content-Type": "application/pdf" }, data, "doc.pdf");
    body = await resp.text();
    expectEq(`POST with a Content-Type the policy refuses: status (${body})`, 403, resp.status);
    if (!body.includes("<Code>AccessDenied</Code>")) fail(`not AccessDenied: ${body}`);
    for (const k of ["post-big.txt", "post-doc.pdf"]) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: k }));
        fail(`a refused POST stored ${k}`);
      } catch (e) {
        if (e instanceof StepFailed) throw e;
        expectEq(`HeadObject ${k} after a refused POST: status`, 404, e.$metadata?.httpStatusCode);
      }
    }
  }

  step("ListObjectsV2 (pages of 2)");
  {
    const listed = [];
    let token;
    let pages = 0;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: BUCKET, MaxKeys: 2, ContinuationToken: token }),
      );
      pages++;
      for (const o of page.Contents || []) listed.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (pages > 20) fail("ListObjectsV2 paging does not end");
    } while (token);
    expectEq("listed keys", [...keys].sort(), listed);
    expectEq("ListObjectsV2 pages", Math.ceil(keys.length / 2), pages);
  }

  step("ListObjectsV2 with Delimiter '/' ending with a common prefix");
  {
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "zz/last.bin", Body: Buffer.from("z") }));
    keys.push("zz/last.bin");
    let page;
    try {
      page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Delimiter: "/" }), {
        abortSignal: AbortSignal.timeout(LIST_TIMEOUT_MS),
      });
    } catch (e) {
      if (e.name === "AbortError" || e.name === "TimeoutError") {
        fail(`SERVER BUG: ListObjectsV2 Delimiter='/' got no answer within ${LIST_TIMEOUT_MS / 1000} s ` +
          "(the gateway loops when the last entries of a delimiter listing roll up into a CommonPrefix)");
      }
      throw e;
    }
    expectEq("CommonPrefixes", ["zz/"], (page.CommonPrefixes || []).map((p) => p.Prefix));
    expectEq("Contents", keys.filter((k) => !k.includes("/")).sort(), (page.Contents || []).map((o) => o.Key));
  }

  step("DeleteObjects (CRC32, no Content-MD5), DeleteBucket");
  {
    const resp = await client.send(
      new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: keys.map((Key) => ({ Key })) } }),
    );
    expectEq("DeleteObjects errors", [], resp.Errors || []);
    expectEq("DeleteObjects deleted", [...keys].sort(), (resp.Deleted || []).map((d) => d.Key).sort());
    const left = await client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    expectEq("objects left", 0, left.KeyCount);
    await client.send(new DeleteBucketCommand({ Bucket: BUCKET }));
    try {
      await client.send(new HeadBucketCommand({ Bucket: BUCKET }));
      fail("HeadBucket succeeds after DeleteBucket");
    } catch (e) {
      if (e instanceof StepFailed) throw e;
      expectEq("HeadBucket after DeleteBucket: status", 404, e.$metadata?.httpStatusCode);
    }
  }
  rmSync(bigPath);
  log(`\njssdk suite passed`);
}

try {
  await main();
} catch (e) {
  const what = e instanceof StepFailed ? e.message
    : `unexpected ${e.name}: ${e.message} (HTTP ${e.$metadata?.httpStatusCode ?? "-"}, code ${e.Code ?? e.name})`;
  if (!(e instanceof StepFailed)) log(e.stack);
  log(`FAIL [jssdk/${LABEL}] ${currentStep}: ${what}`);
  process.exit(1);
}
