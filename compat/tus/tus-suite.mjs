// tus-js-client (and raw tus 1.0 requests with fetch) against the gateway's /_tus/ endpoint
// (run by compat/tus.sh).
//
//   node compat/tus/tus-suite.mjs main WORK_DIR LABEL
//   node compat/tus/tus-suite.mjs expired WORK_DIR LABEL   (gateway started with --upload-expiry 2s)
//
// Environment: TUS_BASE (the gateway's base URL, e.g. http://127.0.0.1:PORT), TUS_TOKEN1 (bearer
// token of the first user), TUS_USER2 / TUS_TOKEN2 (a second user; empty: the cross-user cases
// are skipped), TUS_DATA_DIR (the gateway's data dir; empty: the blobs/<id> checks are skipped),
// TUS_ONLY (a regular expression: only the steps whose name matches run).
//
// Every step runs (each uses uploads of its own); a failing one prints
// `FAIL [tus/LABEL] <step>: <what>` and the suite exits 1 after the last step. Uploads that must
// have become S3 objects are written to WORK_DIR/tus-expect.tsv for tus.sh to read back with
// `aws s3api get-object` (lines `object NAME LOCAL_FILE CONTENT_TYPE`, `meta NAME KEY VALUE`,
// `absent NAME`).

import { createHash, randomBytes } from "node:crypto";
import {
  appendFileSync,
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { crc32 } from "node:zlib";

import { FileUrlStorage, Upload } from "tus-js-client";

const TUS_JS_VERSION = createRequire(import.meta.url)("tus-js-client/package.json").version;

const MiB = 1024 * 1024;
const [MODE, WORK, LABEL = "?"] = process.argv.slice(2);
if (!MODE || !WORK) {
  console.error("usage: node tus-suite.mjs main|expired WORK_DIR LABEL");
  process.exit(2);
}
const BASE = (process.env.TUS_BASE || "").replace(/\/+$/, "");
const TOKEN1 = process.env.TUS_TOKEN1 || "";
const USER2 = process.env.TUS_USER2 || "";
const TOKEN2 = process.env.TUS_TOKEN2 || "";
const DATA_DIR = process.env.TUS_DATA_DIR || "";
if (!BASE || !TOKEN1) {
  console.error("tus-suite.mjs needs TUS_BASE and TUS_TOKEN1");
  process.exit(2);
}
const ENDPOINT = `${BASE}/_tus/`;
const AUTH1 = { Authorization: `Bearer ${TOKEN1}` };
const AUTH2 = { Authorization: `Bearer ${TOKEN2}` };
const EXPECT = `${WORK}/tus-expect.tsv`;
// TUS_ONLY=REGEX runs only the steps whose name matches (for debugging one case).
const ONLY = process.env.TUS_ONLY ? new RegExp(process.env.TUS_ONLY) : null;

let currentStep = "(setup)";
const failures = [];

class StepFailed extends Error {}

function log(msg) {
  process.stderr.write(`${msg}\n`);
}
function fail(msg) {
  throw new StepFailed(msg);
}
// A check that fails because the server answers against the contract or the tus spec.
function serverBug(msg) {
  throw new StepFailed(`SERVER BUG: ${msg}`);
}
function expectEq(what, expected, actual) {
  const e = JSON.stringify(expected);
  const a = JSON.stringify(actual);
  if (e !== a) fail(`${what}: expected ${e}, got ${a}`);
}
function expectIn(what, allowed, actual) {
  if (!allowed.includes(actual)) fail(`${what}: expected one of ${JSON.stringify(allowed)}, got ${JSON.stringify(actual)}`);
}

// step NAME FN: runs FN; a failure is recorded and the next step runs.
async function step(name, fn) {
  if (ONLY && !ONLY.test(name)) return;
  currentStep = name;
  log(`\n--- [tus/${LABEL}] ${name}`);
  try {
    await fn();
  } catch (e) {
    const cause = e.cause ? ` (${e.cause.code || e.cause.message || e.cause})` : "";
    const what = e instanceof StepFailed ? e.message : `unexpected ${e.name}: ${e.message}${cause}`;
    if (!(e instanceof StepFailed)) log(e.stack);
    log(`FAIL [tus/${LABEL}] ${name}: ${what}`);
    failures.push(name);
  }
}

const b64 = (s) => Buffer.from(s, "utf8").toString("base64");
const sha1b64 = (buf) => createHash("sha1").update(buf).digest("base64");

// A random file of SIZE bytes at WORK/NAME (written in 1 MiB pieces); returns its path.
function randomFile(name, size) {
  const path = `${WORK}/${name}`;
  const fd = openSync(path, "w");
  for (let left = size; left > 0; ) {
    const n = Math.min(left, MiB);
    writeSync(fd, randomBytes(n));
    left -= n;
  }
  closeSync(fd);
  return path;
}

function expectObject(name, file, contentType = "-") {
  appendFileSync(EXPECT, `object\t${name}\t${file}\t${contentType}\n`);
}
function expectMeta(name, key, value) {
  appendFileSync(EXPECT, `meta\t${name}\t${key}\t${value}\n`);
}
function expectAbsent(name) {
  appendFileSync(EXPECT, `absent\t${name}\n`);
}

// One tus request with fetch. HEADERS are added to Tus-Resumable: 1.0.0 (unless `tus: false`).
async function tusReq(method, urlOrPath, { headers = {}, body, tus: withTus = true } = {}) {
  const url = urlOrPath.startsWith("http") ? urlOrPath : `${BASE}${urlOrPath}`;
  const h = { ...(withTus ? { "Tus-Resumable": "1.0.0" } : {}), ...headers };
  const res = await fetch(url, { method, headers: h, body, signal: AbortSignal.timeout(30000) });
  const text = method === "HEAD" ? "" : await res.text();
  return { status: res.status, headers: res.headers, text, what: `${method} ${url.replace(BASE, "")}` };
}

// Creates an upload with raw requests; returns its absolute URL.
async function create(auth, length, { filename, concat, extra = {} } = {}) {
  const headers = { ...auth, "Upload-Length": String(length), ...extra };
  if (filename) headers["Upload-Metadata"] = `filename ${b64(filename)}`;
  if (concat) headers["Upload-Concat"] = concat;
  const r = await tusReq("POST", "/_tus/", { headers });
  if (r.status !== 201) fail(`POST /_tus/ (Upload-Length ${length}${concat ? `, Upload-Concat ${concat}` : ""}): ${r.status} ${r.text.slice(0, 200)}`);
  const loc = r.headers.get("location");
  if (!loc) serverBug(`POST /_tus/ answered 201 without a Location header`);
  return new URL(loc, ENDPOINT).toString();
}

async function patch(auth, url, offset, body, extra = {}) {
  return tusReq("PATCH", url, {
    headers: { ...auth, "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(offset), ...extra },
    body,
  });
}

async function headOffset(auth, url) {
  const r = await tusReq("HEAD", url, { headers: auth });
  return { status: r.status, offset: r.headers.get("upload-offset"), length: r.headers.get("upload-length"), r };
}

// HEAD until the offset stays the same for 1 s (a PATCH cut off just now may still be being
// stored); at most 8 s. Returns the offset (a number).
async function settledOffset(auth, url) {
  let last = null;
  let lastStatus = null;
  let same = 0;
  const deadline = Date.now() + 8000;
  while (Date.now() < deadline) {
    const h = await headOffset(auth, url);
    lastStatus = h.status;
    if (h.status === 200 && h.offset !== null) {
      same = h.offset === last ? same + 1 : 0;
      last = h.offset;
      if (same >= 4) return Number(last);
    }
    await sleep(250);
  }
  if (last === null) fail(`HEAD ${url}: ${lastStatus}, no Upload-Offset within 8 s`);
  return Number(last);
}

// A PATCH on its own connection: headers announcing CONTENT_LENGTH, BODY, then WAIT_MS later the
// socket is closed without reading any answer.
async function rawPatch(url, offset, contentLength, body, waitMs) {
  const u = new URL(url);
  await new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port || 80), u.hostname, () => {
      sock.write(
        `PATCH ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nTus-Resumable: 1.0.0\r\n` +
          `Authorization: Bearer ${TOKEN1}\r\nContent-Type: application/offset+octet-stream\r\n` +
          `Upload-Offset: ${offset}\r\nContent-Length: ${contentLength}\r\n\r\n`,
      );
      sock.write(body, () => {
        setTimeout(() => {
          sock.destroy();
          resolve();
        }, waitMs);
      });
    });
    sock.on("error", reject);
  });
}

// HEAD until Upload-Offset is WANT (at most 5 s); returns the last offset seen (a number, or null).
async function offsetReaching(auth, url, want) {
  let offset = null;
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const h = await headOffset(auth, url);
    offset = h.offset === null ? null : Number(h.offset);
    if (h.status === 200 && offset === want) break;
    await sleep(200);
  }
  return offset;
}

const uploadId = (url) => new URL(url).pathname.split("/").filter(Boolean).pop();

// A TCP proxy to the gateway that counts the bytes the client sends (headers and bodies).
async function countingProxy() {
  const target = new URL(BASE);
  const port = Number(target.port || 80);
  const sockets = new Set();
  const proxy = { sent: 0 };
  const server = net.createServer((client) => {
    const upstream = net.connect(port, target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    client.on("data", (d) => {
      proxy.sent += d.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.port = server.address().port;
  proxy.endpoint = `http://127.0.0.1:${proxy.port}/_tus/`;
  proxy.close = () => {
    for (const s of sockets) s.destroy();
    server.close();
  };
  return proxy;
}

// Runs an Upload to its end; resolves with the Upload. OPTIONS are tus-js-client options.
function runUpload(input, options) {
  return new Promise((resolve, reject) => {
    const up = new Upload(input, {
      retryDelays: null, // a server error must not be retried away
      ...options,
      onSuccess: () => resolve(up),
      onError: reject,
    });
    up.start();
  });
}

async function mainSuite() {
  let maxSize = null;

  await step("OPTIONS /_tus/: versions, extensions, Tus-Max-Size (no auth)", async () => {
    const r = await tusReq("OPTIONS", "/_tus/", { tus: false });
    expectIn("OPTIONS status", [200, 204], r.status);
    if (r.status !== 204) serverBug(`OPTIONS /_tus/ answered ${r.status}, the contract says 204`);
    const version = r.headers.get("tus-version") || "";
    if (!version.split(",").map((s) => s.trim()).includes("1.0.0")) serverBug(`Tus-Version '${version}' lacks 1.0.0`);
    const ext = (r.headers.get("tus-extension") || "").split(",").map((s) => s.trim());
    for (const e of ["creation", "creation-with-upload", "creation-defer-length", "termination", "expiration", "checksum", "concatenation"]) {
      if (!ext.includes(e)) serverBug(`Tus-Extension '${ext.join(",")}' lacks ${e}`);
    }
    const algs = (r.headers.get("tus-checksum-algorithm") || "").split(",").map((s) => s.trim());
    for (const a of ["md5", "sha1", "sha256", "crc32"]) {
      if (!algs.includes(a)) serverBug(`Tus-Checksum-Algorithm '${algs.join(",")}' lacks ${a}`);
    }
    const max = r.headers.get("tus-max-size");
    if (!/^[0-9]+$/.test(max || "") || Number(max) <= 0) serverBug(`Tus-Max-Size '${max}' is not a positive integer`);
    maxSize = Number(max);
    log(`Tus-Version ${version}; Tus-Max-Size ${maxSize}; extensions ${ext.join(",")}`);
  });

  await step("64 MiB in 5 MiB chunks: abort half-way, resume from the stored fingerprint, only the missing bytes sent", async () => {
    const size = 64 * MiB;
    const chunk = 5 * MiB;
    const name = "tus-js-64m.bin";
    const path = randomFile("tus-js-64m.bin", size);
    const storage = new FileUrlStorage(`${WORK}/tus-js-urls.json`);
    const proxy = await countingProxy();
    try {
      const options = {
        endpoint: proxy.endpoint,
        chunkSize: chunk,
        headers: AUTH1,
        urlStorage: storage,
        metadata: { filename: name, filetype: "application/x-tus-compat", origin: "tus-js-client" },
      };
      // Run 1: stopped 30 ms after the progress passed half the bytes, so usually in the middle
      // of a PATCH's body (progress is reported at most every 100 ms, and at each chunk's start).
      let abortedAt = null;
      let wireAtChunk = 0; // proxy bytes when the last PATCH was answered
      let wireInPatch = 0; // proxy bytes of the PATCH in flight when aborted (headers included)
      const firstUrl = await new Promise((resolve, reject) => {
        const up = new Upload(createReadStream(path), {
          retryDelays: null,
          ...options,
          onChunkComplete: () => {
            wireAtChunk = proxy.sent;
          },
          onProgress: (sent, total) => {
            if (abortedAt === null && sent >= total / 2) {
              abortedAt = sent;
              setTimeout(() => {
                wireInPatch = proxy.sent - wireAtChunk;
                up.abort().then(() => resolve(up.url), reject);
              }, 30);
            }
          },
          onSuccess: () => reject(new StepFailed("the upload finished before it could be aborted")),
          onError: reject,
        });
        up.start();
      });
      if (!firstUrl) fail("no upload URL after the first run");
      if (new URL(firstUrl).port !== String(proxy.port)) {
        serverBug(`Location ${firstUrl} does not use the request's Host (127.0.0.1:${proxy.port})`);
      }
      const offset = await settledOffset(AUTH1, firstUrl);
      log(`aborted 30 ms after progress ${abortedAt} B, with ${wireInPatch} B of the PATCH then in flight through the proxy (headers included); HEAD Upload-Offset ${offset} (${(offset / MiB).toFixed(2)} MiB)`);
      if (!(offset > 0 && offset < size)) fail(`offset after the abort: ${offset}, expected between 0 and ${size}`);

      // Run 2: a new Upload finds the URL through the fingerprint and resumes it.
      const methods = [];
      let settle;
      const finished = new Promise((resolve, reject) => {
        settle = { resolve, reject };
      });
      const up2 = new Upload(createReadStream(path), {
        retryDelays: null,
        ...options,
        onBeforeRequest: (req) => methods.push(req.getMethod()),
        onSuccess: () => settle.resolve(),
        onError: (e) => settle.reject(e),
      });
      const previous = await up2.findPreviousUploads();
      expectEq("stored uploads for the file's fingerprint", 1, previous.length);
      expectEq("stored upload URL", firstUrl, previous[0].uploadUrl);
      up2.resumeFromPreviousUpload(previous[0]);
      proxy.sent = 0;
      up2.start();
      await finished;
      const sent = proxy.sent;
      const missing = size - offset;
      log(`second run: ${methods.join(" ")}; ${sent} B on the wire for ${missing} missing bytes`);
      expectEq("upload URL of the second run", firstUrl, up2.url);
      if (methods[0] !== "HEAD" || methods.includes("POST")) fail(`second run's requests ${methods.join(" ")}: expected HEAD, then PATCHes only`);
      if (sent < missing) fail(`second run sent ${sent} B, fewer than the ${missing} missing bytes`);
      if (sent > missing + chunk) fail(`second run sent ${sent} B: more than the ${missing} missing bytes + one chunk (${chunk})`);
      const h = await headOffset(AUTH1, firstUrl);
      expectEq("HEAD of the finished upload: status", 200, h.status);
      expectEq("HEAD of the finished upload: Upload-Offset", String(size), h.offset);
      expectEq("HEAD of the finished upload: Upload-Length", String(size), h.length);
      expectObject(name, path, "application/x-tus-compat");
      expectMeta(name, "origin", "tus-js-client");
    } finally {
      proxy.close();
    }
  });

  // parallelUploads: 4 (tus-js-client's concatenation): four Upload-Concat: partial uploads of
  // ~5 MiB, then the final one. With the default chunkSize each partial is one PATCH; with
  // 2 MiB chunks each is three.
  for (const [label, chunkSize] of [["default chunkSize (one PATCH per partial)", undefined], ["chunkSize 2 MiB", 2 * MiB]]) {
    await step(`parallelUploads: 4 of a 20 MiB file, ${label}`, async () => {
      const size = 20 * MiB + 12345;
      const name = `tus-js-parallel-${chunkSize ? "2m" : "whole"}.bin`;
      const path = randomFile(name, size);
      const concat = [];
      const up = await runUpload(createReadStream(path), {
        endpoint: ENDPOINT,
        ...(chunkSize ? { chunkSize } : {}),
        parallelUploads: 4,
        headers: AUTH1,
        metadata: { filename: name },
        onBeforeRequest: (req) => {
          if (req.getMethod() === "POST") concat.push(String(req.getHeader("Upload-Concat")));
        },
      });
      expectEq("partial creations", 4, concat.filter((c) => c === "partial").length);
      expectEq("final creations", 1, concat.filter((c) => c.startsWith("final;")).length);
      const r = await tusReq("HEAD", up.url, { headers: AUTH1 });
      expectEq("HEAD of the final upload: status", 200, r.status);
      if (r.headers.get("upload-offset") !== String(size) || r.headers.get("upload-length") !== String(size)) {
        serverBug(`HEAD ${up.url} (final upload): Upload-Offset ${r.headers.get("upload-offset")}, Upload-Length ${r.headers.get("upload-length")}, expected both ${size}`);
      }
      const bugs = [];
      if (!(r.headers.get("upload-concat") || "").startsWith("final;")) {
        bugs.push(`HEAD ${up.url} (final upload): Upload-Concat '${r.headers.get("upload-concat")}', tus 1.0 says the answer MUST carry the Upload-Concat of the creation ('final;...')`);
      }
      // tus 1.0: "The Server MUST respond with the 403 Forbidden status to PATCH requests against
      // a final upload URL".
      const p = await patch(AUTH1, up.url, size, Buffer.from("more"));
      if (p.status !== 403) bugs.push(`PATCH ${up.url} (final upload) at ${size}: ${p.status}, tus 1.0 says 403`);
      expectObject(name, path);
      if (bugs.length) serverBug(bugs.join("; "));
    });
  }

  await step("creation-with-upload (uploadDataDuringCreation) of a small file: one POST, no PATCH", async () => {
    const size = 100 * 1024 + 7;
    const name = "tus-js-with-upload.bin";
    const path = randomFile("tus-js-with-upload.bin", size);
    const seen = [];
    await runUpload(createReadStream(path), {
      endpoint: ENDPOINT,
      uploadDataDuringCreation: true,
      headers: AUTH1,
      metadata: { filename: name, filetype: "text/plain" },
      onAfterResponse: (req, res) => {
        seen.push(`${req.getMethod()} ${res.getStatus()} offset=${res.getHeader("Upload-Offset")}`);
      },
    });
    expectEq("requests", [`POST 201 offset=${size}`], seen);
    expectObject(name, path, "text/plain");
  });

  await step("termination: abort after one chunk, Upload.terminate(url): HEAD 404, blobs/<id> removed", async () => {
    const path = randomFile("tus-js-terminate.bin", 8 * MiB);
    const url = await new Promise((resolve, reject) => {
      const up = new Upload(createReadStream(path), {
        endpoint: ENDPOINT,
        chunkSize: MiB,
        retryDelays: null,
        headers: AUTH1,
        metadata: { filename: "tus-js-terminated.bin" },
        onChunkComplete: () => {
          up.abort().then(() => resolve(up.url), reject);
        },
        onSuccess: () => reject(new StepFailed("the upload finished before it could be aborted")),
        onError: reject,
      });
      up.start();
    });
    const offset = await settledOffset(AUTH1, url);
    if (offset < MiB) fail(`offset after one chunk: ${offset}`);
    const id = uploadId(url);
    const dir = `${DATA_DIR}/blobs/${id}`;
    if (DATA_DIR && !existsSync(dir)) fail(`no directory ${dir} for the open upload ${url} (the check below would prove nothing)`);
    await Upload.terminate(url, { headers: AUTH1, retryDelays: null });
    const h = await headOffset(AUTH1, url);
    if (h.status !== 404) serverBug(`HEAD ${url} after DELETE (204): ${h.status}, expected 404`);
    const p = await patch(AUTH1, url, offset, Buffer.alloc(10));
    if (![404, 410].includes(p.status)) serverBug(`PATCH ${url} after DELETE: ${p.status}, expected 404 or 410`);
    if (DATA_DIR) {
      const deadline = Date.now() + 5000;
      while (existsSync(dir) && Date.now() < deadline) await sleep(200);
      if (existsSync(dir)) serverBug(`${dir} still exists 5 s after DELETE ${url} answered 204`);
    }
    expectAbsent("tus-js-terminated.bin");
  });

  await step("a PATCH cut off mid-body keeps the bytes that arrived", async () => {
    const size = MiB;
    const name = "tus-raw-cut.bin";
    const path = randomFile("tus-raw-cut.bin", size);
    const data = readFileSync(path);
    const url = await create(AUTH1, size, { filename: name });
    const part = 300 * 1024;
    // Headers for the whole MiB, 300 KiB of body, half a second, then the socket is closed.
    await rawPatch(url, 0, size, data.subarray(0, part), 500);
    const offset = await offsetReaching(AUTH1, url, part);
    if (offset !== part) {
      serverBug(`PATCH ${url} with Content-Length ${size}, cut after ${part} B (socket closed): HEAD Upload-Offset ${offset} after 5 s, expected ${part}`);
    }
    const r = await patch(AUTH1, url, part, data.subarray(part));
    expectEq(`PATCH the rest at ${part}: status`, 204, r.status);
    expectEq("Upload-Offset", String(size), r.headers.get("upload-offset"));
    expectObject(name, path);
  });

  await step("a PATCH whose whole body went out before the client hung up (no answer read) keeps all of it", async () => {
    // What tus-js-client's abort() does when it comes after the last byte of a chunk was sent.
    const size = 10 * MiB;
    const name = "tus-raw-hangup.bin";
    const path = randomFile("tus-raw-hangup.bin", size);
    const data = readFileSync(path);
    const url = await create(AUTH1, size, { filename: name });
    const chunk = 5 * MiB;
    await rawPatch(url, 0, chunk, data.subarray(0, chunk), 0);
    const offset = await offsetReaching(AUTH1, url, chunk);
    if (offset !== chunk) {
      serverBug(`PATCH ${url} Upload-Offset 0 with all ${chunk} B of its body sent, then the socket closed before the answer: HEAD Upload-Offset ${offset} after 5 s, expected ${chunk} (the whole body arrived)`);
    }
    const r = await patch(AUTH1, url, chunk, data.subarray(chunk));
    expectEq(`PATCH the rest at ${chunk}: status`, 204, r.status);
    expectEq("Upload-Offset", String(size), r.headers.get("upload-offset"));
    expectObject(name, path);
  });

  await step("raw: 412 without Tus-Resumable (with Tus-Version)", async () => {
    const r = await tusReq("POST", "/_tus/", { tus: false, headers: { ...AUTH1, "Upload-Length": "10", "Upload-Metadata": `filename ${b64("x412.bin")}` } });
    if (r.status !== 412) serverBug(`POST /_tus/ without Tus-Resumable: ${r.status}, expected 412`);
    if (!r.headers.get("tus-version")) serverBug("the 412 has no Tus-Version header");
    const h = await tusReq("HEAD", "/_tus/does-not-exist", { tus: false, headers: AUTH1 });
    if (h.status !== 412) serverBug(`HEAD without Tus-Resumable: ${h.status}, expected 412`);
    expectAbsent("x412.bin");
  });

  await step("raw: no Authorization refused; unknown upload id 404", async () => {
    const r = await tusReq("POST", "/_tus/", { headers: { "Upload-Length": "10", "Upload-Metadata": `filename ${b64("noauth.bin")}` } });
    expectIn("POST without Authorization: status", [401, 403], r.status);
    const h = await tusReq("HEAD", "/_tus/0123456789abcdef0123456789abcdef", { headers: AUTH1 });
    expectEq("HEAD of an unknown id: status", 404, h.status);
    const p = await patch(AUTH1, `${BASE}/_tus/0123456789abcdef0123456789abcdef`, 0, Buffer.from("x"));
    expectEq("PATCH of an unknown id: status", 404, p.status);
    expectAbsent("noauth.bin");
  });

  await step("raw: 415 for a PATCH with the wrong Content-Type, 409 for the wrong offset; HEAD's headers", async () => {
    const url = await create(AUTH1, 10, { filename: "tus-raw-415-409.bin" });
    const r = await patch(AUTH1, url, 0, Buffer.from("hello"), { "Content-Type": "application/octet-stream" });
    if (r.status !== 415) serverBug(`PATCH Content-Type application/octet-stream: ${r.status}, expected 415`);
    const c = await patch(AUTH1, url, 5, Buffer.from("hello"));
    if (c.status !== 409) serverBug(`PATCH Upload-Offset 5 of an upload at 0: ${c.status}, expected 409`);
    const h = await headOffset(AUTH1, url);
    expectEq("Upload-Offset after the refused PATCHes", "0", h.offset);
    // tus 1.0, HEAD: Upload-Length, Cache-Control: no-store, the creation's Upload-Metadata,
    // and Tus-Resumable on every answer.
    const hh = h.r.headers;
    const missing = [];
    if (hh.get("upload-length") !== "10") missing.push(`Upload-Length '${hh.get("upload-length")}'`);
    if (!/no-store/.test(hh.get("cache-control") || "")) missing.push(`Cache-Control '${hh.get("cache-control")}'`);
    if (!(hh.get("upload-metadata") || "").includes(`filename ${b64("tus-raw-415-409.bin")}`)) missing.push(`Upload-Metadata '${hh.get("upload-metadata")}'`);
    if (hh.get("tus-resumable") !== "1.0.0") missing.push(`Tus-Resumable '${hh.get("tus-resumable")}'`);
    if (missing.length) serverBug(`HEAD ${url}: ${missing.join(", ")}`);
    const ok = await patch(AUTH1, url, 0, Buffer.from("hello"));
    expectEq("PATCH at 0: status", 204, ok.status);
    expectEq("PATCH at 0: Upload-Offset", "5", ok.headers.get("upload-offset"));
    const c2 = await patch(AUTH1, url, 0, Buffer.from("hello"));
    if (c2.status !== 409) serverBug(`PATCH Upload-Offset 0 of an upload at 5: ${c2.status}, expected 409`);
    expectAbsent("tus-raw-415-409.bin");
  });

  await step("raw: Upload-Checksum: 460 on a mismatch (nothing kept), 400 for an unknown algorithm, a right sha1/md5/sha256/crc32 accepted", async () => {
    const body = Buffer.from("0123456789");
    const url = await create(AUTH1, 40, { filename: "tus-raw-checksum.bin" });
    const bad = await patch(AUTH1, url, 0, body, { "Upload-Checksum": `sha1 ${sha1b64(Buffer.from("something else"))}` });
    if (bad.status !== 460) serverBug(`PATCH with a wrong sha1 Upload-Checksum: ${bad.status}, expected 460`);
    expectEq("Upload-Offset after the 460", "0", (await headOffset(AUTH1, url)).offset);
    const unknown = await patch(AUTH1, url, 0, body, { "Upload-Checksum": `whirlpool ${sha1b64(body)}` });
    if (unknown.status !== 400) serverBug(`PATCH with Upload-Checksum algorithm 'whirlpool': ${unknown.status}, expected 400`);
    expectEq("Upload-Offset after the 400", "0", (await headOffset(AUTH1, url)).offset);
    const crc = Buffer.alloc(4);
    let offset = 0;
    for (const [alg, digest] of [
      ["sha1", (b) => createHash("sha1").update(b).digest("base64")],
      ["md5", (b) => createHash("md5").update(b).digest("base64")],
      ["sha256", (b) => createHash("sha256").update(b).digest("base64")],
      ["crc32", (b) => (crc.writeUInt32BE(crc32(b) >>> 0), crc.toString("base64"))],
    ]) {
      const r = await patch(AUTH1, url, offset, body, { "Upload-Checksum": `${alg} ${digest(body)}` });
      if (r.status !== 204) serverBug(`PATCH with a right ${alg} Upload-Checksum: ${r.status} ${r.text.slice(0, 200)}`);
      offset += body.length;
      expectEq(`Upload-Offset after the ${alg} PATCH`, String(offset), r.headers.get("upload-offset"));
    }
    const path = `${WORK}/tus-raw-checksum.bin`;
    writeFileSync(path, Buffer.concat([body, body, body, body]));
    expectObject("tus-raw-checksum.bin", path);
  });

  await step("raw: 413 when Upload-Length exceeds Tus-Max-Size", async () => {
    if (maxSize === null) fail("no Tus-Max-Size from OPTIONS (see the first step)");
    const r = await tusReq("POST", "/_tus/", { headers: { ...AUTH1, "Upload-Length": String(maxSize + 1), "Upload-Metadata": `filename ${b64("too-big.bin")}` } });
    if (r.status !== 413) serverBug(`POST Upload-Length ${maxSize + 1} (Tus-Max-Size ${maxSize}): ${r.status}, expected 413`);
    const ok = await tusReq("POST", "/_tus/", { headers: { ...AUTH1, "Upload-Length": String(maxSize), "Upload-Metadata": `filename ${b64("max-size.bin")}` } });
    if (ok.status !== 201) serverBug(`POST Upload-Length ${maxSize} (= Tus-Max-Size): ${ok.status}, expected 201`);
    const loc = ok.headers.get("location");
    if (loc) await tusReq("DELETE", new URL(loc, ENDPOINT).toString(), { headers: AUTH1 });
    expectAbsent("too-big.bin");
  });

  if (!TOKEN2) {
    log("\n(no second user: the cross-user steps are skipped)");
  } else {
    await step("raw: another user's upload URL answers 404 (HEAD, PATCH, DELETE) and stays intact", async () => {
      const url = await create(AUTH1, 10, { filename: "tus-raw-user1.bin" });
      const p1 = await patch(AUTH1, url, 0, Buffer.from("hello"));
      expectEq("user 1 PATCH: status", 204, p1.status);
      const h = await headOffset(AUTH2, url);
      if (h.status !== 404) serverBug(`HEAD ${url} (user 1's) with user 2's token: ${h.status}, expected 404`);
      const p = await patch(AUTH2, url, 5, Buffer.from("world"));
      if (p.status !== 404) serverBug(`PATCH ${url} (user 1's) with user 2's token: ${p.status}, expected 404`);
      const d = await tusReq("DELETE", url, { headers: AUTH2 });
      if (d.status !== 404) serverBug(`DELETE ${url} (user 1's) with user 2's token: ${d.status}, expected 404`);
      const h1 = await headOffset(AUTH1, url);
      expectEq("user 1 HEAD afterwards: status", 200, h1.status);
      expectEq("user 1 HEAD afterwards: Upload-Offset", "5", h1.offset);
      expectAbsent("tus-raw-user1.bin");
    });

    await step("raw: a final concatenation naming another user's partial upload is refused, nothing created", async () => {
      const other = await create(AUTH2, 5, { concat: "partial" });
      expectEq("user 2 PATCH of its partial: status", 204, (await patch(AUTH2, other, 0, Buffer.from("hello"))).status);
      const own = await create(AUTH1, 5, { concat: "partial" });
      expectEq("user 1 PATCH of its partial: status", 204, (await patch(AUTH1, own, 0, Buffer.from("world"))).status);
      const cases = [
        ["tus-stolen-abs.bin", `final;${other}`],
        ["tus-stolen-mixed.bin", `final;${new URL(own).pathname} ${new URL(other).pathname}`],
      ];
      for (const [name, concat] of cases) {
        const r = await tusReq("POST", "/_tus/", { headers: { ...AUTH1, "Upload-Concat": concat, "Upload-Metadata": `filename ${b64(name)}` } });
        if (![400, 403, 404].includes(r.status)) {
          serverBug(`POST /_tus/ by user 1 with Upload-Concat '${concat}' (user 2's partial): ${r.status} (Location ${r.headers.get("location")}), expected 400/403/404`);
        }
        expectAbsent(name);
      }
      const h = await headOffset(AUTH2, other);
      expectEq("user 2's partial afterwards: status", 200, h.status);
      expectEq("user 2's partial afterwards: Upload-Offset", "5", h.offset);
      if (h.r.headers.get("upload-concat") !== "partial") {
        serverBug(`HEAD ${other} (a partial upload): Upload-Concat '${h.r.headers.get("upload-concat")}', tus 1.0 says 'partial' (the value of the creation)`);
      }
    });
  }
}

async function expiredSuite() {
  await step("expiration (--upload-expiry 2s): Upload-Expires on creation and PATCH; 404 or 410 once past it", async () => {
    const before = Date.now();
    const r = await tusReq("POST", "/_tus/", { headers: { ...AUTH1, "Upload-Length": "10", "Upload-Metadata": `filename ${b64("tus-expired.bin")}` } });
    expectEq("POST status", 201, r.status);
    const url = new URL(r.headers.get("location"), ENDPOINT).toString();
    const expires = Date.parse(r.headers.get("upload-expires") || "");
    if (Number.isNaN(expires)) serverBug(`POST /_tus/ answered Upload-Expires '${r.headers.get("upload-expires")}', not an RFC 7231 date`);
    // RFC 7231 dates have whole seconds: creation + 2 s, give or take 1.5 s.
    if (expires < before + 500 || expires > Date.now() + 3500) {
      serverBug(`Upload-Expires ${r.headers.get("upload-expires")} is not about 2 s after creation (${new Date(before).toUTCString()})`);
    }
    const p = await patch(AUTH1, url, 0, Buffer.from("hello"));
    expectEq("PATCH before the expiry: status", 204, p.status);
    // tus 1.0: Upload-Expires "MUST be included in every PATCH response if the upload is going to expire".
    if (!p.headers.get("upload-expires")) serverBug(`PATCH ${url} (204) has no Upload-Expires header`);
    await sleep(Math.max(0, expires - Date.now()) + 1500);
    const h = await headOffset(AUTH1, url);
    if (![404, 410].includes(h.status)) serverBug(`HEAD ${url} 1.5 s after its Upload-Expires: ${h.status}, expected 404 or 410`);
    const p2 = await patch(AUTH1, url, 5, Buffer.from("world"));
    if (![404, 410].includes(p2.status)) serverBug(`PATCH ${url} 1.5 s after its Upload-Expires: ${p2.status}, expected 404 or 410`);
    log(`after the expiry: HEAD ${h.status}, PATCH ${p2.status}`);
    expectAbsent("tus-expired.bin");
  });
}

mkdirSync(WORK, { recursive: true });
log(`tus-js-client ${TUS_JS_VERSION} on node ${process.versions.node} against ${ENDPOINT}`);
if (MODE === "main") {
  await mainSuite();
} else if (MODE === "expired") {
  await expiredSuite();
} else {
  log(`unknown mode ${MODE}`);
  process.exit(2);
}
if (failures.length > 0) {
  log(`\ntus suite (${MODE}): ${failures.length} step(s) failed: ${failures.join("; ")}`);
  process.exit(1);
}
log(`\ntus suite (${MODE}) passed`);
process.exit(0);
