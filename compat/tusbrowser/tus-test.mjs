// Uppy + @uppy/tus against the gateway's /_tus/ in headless Chromium (run by compat/tus-browser.sh).
//
//   node compat/tusbrowser/tus-test.mjs WORK_DIR LABEL SCREENSHOT_PREFIX
//
// Environment: TUS_GATEWAY (the gateway, e.g. http://127.0.0.1:9000), TUS_TOKEN (a legacy
// user's token), TUS_NAME, TUS_TYPE, TUS_SEED, TUS_SIZE (the file the page builds, see prng.mjs),
// TUS_BUNDLE (page.mjs bundled by esbuild), CHROMIUM (default /usr/bin/chromium).
//
// The page (index.html + the bundle + config.js) is served by a small server here, on its own
// 127.0.0.1 port: another origin than the gateway, so every tus request is a CORS request with a
// preflight that the gateway answers. No Playwright route is ever installed (with one,
// Playwright answers CORS preflights itself): uploads are slowed to 4 MiB/s by Chromium's network
// emulation (CDP Network.emulateNetworkConditions) and the page holds PATCHes itself.
//
// 1. The CORS preflight of a PATCH, from Node: allowed for the page's origin, with the headers
//    tus-js-client sends.
// 2. In Chromium: add the file (~12 MiB, 1 MiB chunks) and start; progress events arrive.
//    At 2.5 MiB, pause (uppy.pauseResume): this aborts the PATCH in flight (the gateway keeps
//    the bytes that arrived); no tus request while paused, progress stands still. Resume: a HEAD
//    of the same upload URL, then a PATCH from exactly the offset it answered.
// 3. PATCHes from 5 MiB on are held in the page; past 40 % the page is RELOADED. The same file
//    added again gets the same fingerprint: tus-js-client finds the upload URL it stored in
//    localStorage and resumes: no POST, a HEAD of the same URL, and the first PATCH starts at the
//    offset the HEAD answered, > 0 (what the gateway had acknowledged before the reload).
// 4. The upload completes (Uppy's complete event: 1 successful); a HEAD of the finished upload
//    still answers offset = length. compat/tus-browser.sh then compares the S3 object.
//
// Prints one JSON line (name, upload URL, the offset resumed at, counts) on stdout. Every wait is
// bounded; the first failed check ends the run with `FAIL [tus-browser/LABEL] ...`, and the tus
// requests seen by the page are written to WORK_DIR/tus-requests.json.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const [WORK, LABEL = 'local', SHOT = ''] = process.argv.slice(2);
if (!WORK) {
  console.error('usage: node tus-test.mjs WORK_DIR LABEL SCREENSHOT_PREFIX');
  process.exit(2);
}
const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return v;
};
const GW = env('TUS_GATEWAY').replace(/\/$/, '');
const TOKEN = env('TUS_TOKEN');
const NAME = env('TUS_NAME');
const TYPE = process.env.TUS_TYPE || 'application/octet-stream';
const SEED = Number(env('TUS_SEED'));
const SIZE = Number(env('TUS_SIZE'));
const BUNDLE = env('TUS_BUNDLE');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MIB = 1024 * 1024;
const WAIT = 30_000; // default bound for one wait
const PAUSE_AT = 2.5 * MIB; // in the middle of the third chunk
const UPLOAD_BYTES_PER_S = 4 * MIB;
const HOLD_AT = 5 * MIB;
const ENDPOINT = `${GW}/_tus/`;

let step = '(setup)';
const t0 = Date.now();
function setStep(s) {
  step = s;
  console.error(`--- [tus-browser/${LABEL}] ${s} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
function fail(msg) {
  const err = new Error(msg);
  err.checkFailed = true;
  throw err;
}
function check(cond, msg) {
  if (!cond) fail(msg);
}
function eq(what, expected, actual) {
  if (expected !== actual) fail(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn() until it returns a truthy value; fails after `ms`.
async function until(what, fn, ms = WAIT) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) fail(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(50);
  }
}

// ------------------------------------------------------------------ the page's origin

const config = {
  endpoint: ENDPOINT,
  token: TOKEN,
  name: NAME,
  type: TYPE,
  seed: SEED,
  size: SIZE,
  lastModified: 1_700_000_000_000,
};
const server = http.createServer((req, res) => {
  const p = new URL(req.url, 'http://x').pathname;
  const send = (type, body) => {
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  if (p === '/' || p === '/index.html') return send('text/html; charset=utf-8', fs.readFileSync(path.join(HERE, 'index.html')));
  if (p === '/app.js') return send('text/javascript', fs.readFileSync(BUNDLE));
  if (p === '/config.js') return send('text/javascript', `window.TUS_CONFIG = ${JSON.stringify(config)};\n`);
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found');
});

// An HTTP request from Node (http.request: fetch would not send an Origin header of our choice).
function rawRequest(method, url, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout: WAIT }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer in ${WAIT / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}

// ------------------------------------------------------------------ 1. preflight from Node

const TUS_REQUEST_HEADERS = ['authorization', 'content-type', 'tus-resumable', 'upload-length', 'upload-metadata', 'upload-offset'];

async function checkPreflight(origin) {
  setStep(`CORS preflight of a PATCH to ${ENDPOINT} from ${origin} (Node)`);
  const r = await rawRequest('OPTIONS', ENDPOINT, {
    Origin: origin,
    'Access-Control-Request-Method': 'PATCH',
    'Access-Control-Request-Headers': TUS_REQUEST_HEADERS.join(','),
  });
  const h = r.headers;
  const desc = `OPTIONS ${ENDPOINT} (Origin ${origin}, Access-Control-Request-Method PATCH) answered ${r.status} ${JSON.stringify(h)}`;
  check(r.status >= 200 && r.status < 300, `preflight status: ${desc}`);
  const allowOrigin = h['access-control-allow-origin'];
  check(allowOrigin === origin || allowOrigin === '*', `Access-Control-Allow-Origin: ${desc}`);
  const list = (v) => String(v || '').toLowerCase().split(',').map((s) => s.trim()).filter(Boolean);
  const methods = list(h['access-control-allow-methods']);
  check(methods.includes('patch') || methods.includes('*'), `Access-Control-Allow-Methods lacks PATCH: ${desc}`);
  // A `*` does not cover Authorization (Fetch standard): it must be listed.
  const allowed = list(h['access-control-allow-headers']);
  for (const name of TUS_REQUEST_HEADERS) {
    check(allowed.includes(name) || (allowed.includes('*') && name !== 'authorization'),
      `Access-Control-Allow-Headers lacks ${name}: ${desc}`);
  }
  console.error(`preflight: ${r.status}, allow-methods ${h['access-control-allow-methods']}, allow-headers ${h['access-control-allow-headers']}`);
}

// ------------------------------------------------------------------ 2.-4. Chromium

async function main() {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  check(!GW.startsWith(origin), `the page's origin ${origin} is the gateway's`);
  await checkPreflight(origin);

  setStep('start Chromium');
  const profile = path.join(WORK, 'chromium-profile');
  fs.rmSync(profile, { recursive: true, force: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 900, height: 500 },
    timeout: WAIT,
  });
  context.setDefaultTimeout(WAIT);
  try {
    return await run(context, origin);
  } finally {
    await context.close().catch(() => {});
  }
}

// Every tus request the page makes: { phase, method, url, reqOffset, status, resOffset, location, failed }.
const tus = [];
let phase = 'start';

async function run(context, origin) {
  const page = context.pages()[0] ?? (await context.newPage());
  // Slow uploads down (1 MiB PATCH = 1/4 s) so that the pause cuts a PATCH in the middle.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: UPLOAD_BYTES_PER_S });
  const consoleLog = fs.createWriteStream(path.join(WORK, 'page-console.log'));
  const pageErrors = [];
  page.on('console', (m) => consoleLog.write(`[${phase}] ${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const byReq = new Map();
  page.on('request', (r) => {
    if (!r.url().startsWith(ENDPOINT)) return;
    const h = r.headers();
    const e = { phase, method: r.method(), url: r.url(), reqOffset: h['upload-offset'] ?? null, status: null };
    byReq.set(r, e);
    tus.push(e);
  });
  page.on('response', (resp) => {
    const e = byReq.get(resp.request());
    if (!e) return;
    const h = resp.headers();
    e.status = resp.status();
    e.resOffset = h['upload-offset'] ?? null;
    if (h.location) e.location = h.location;
    e.exposed = h['access-control-expose-headers'] ?? null;
  });
  page.on('requestfailed', (r) => {
    const e = byReq.get(r);
    if (e) e.failed = r.failure()?.errorText ?? 'failed';
  });
  const state = () => page.evaluate(() => window.tusTest.state());
  const inPhase = (p, method) => tus.filter((e) => e.phase === p && e.method !== 'OPTIONS' && (!method || e.method === method));
  const show = (e) => `${e.method} ${e.url} (Upload-Offset ${e.reqOffset ?? '-'}) -> ${e.status ?? e.failed ?? 'no answer yet'}${e.resOffset != null ? ` (Upload-Offset ${e.resOffset})` : ''}`;
  const noErrors = async () => {
    const s = await state();
    check(s.errors.length === 0, `Uppy reported errors: ${s.errors.join('; ')}; tus requests: ${tus.map(show).join(', ')}`);
    check(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);
    const bad = tus.filter((e) => e.status != null && (e.status < 200 || e.status >= 300));
    check(bad.length === 0, `tus requests answered with an error: ${bad.map(show).join(', ')}`);
    return s;
  };

  setStep(`load the page from ${origin}`);
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.tusTestReady === true);

  // ---------------------------------------------------------------- 2. start, pause, resume
  setStep(`add the file (${SIZE} B) and start the upload`);
  phase = 'first';
  const fileId = await page.evaluate((hold) => {
    window.tusTest.holdFrom(hold);
    const id = window.tusTest.addFile();
    window.tusTest.start();
    return id;
  }, HOLD_AT);
  check(fileId, 'addFile returned no file id');
  const before = await until(`progress past ${PAUSE_AT} B`, async () => {
    const s = await noErrors();
    return s.bytesUploaded >= PAUSE_AT && s.uploadURL ? s : null;
  });
  check(before.progressEvents > 0, 'no upload-progress event');
  eq('upload-progress bytesTotal', SIZE, before.bytesTotal);
  const uploadURL = before.uploadURL;
  check(uploadURL.startsWith(ENDPOINT) && uploadURL.length > ENDPOINT.length,
    `the upload URL (the POST's Location) ${uploadURL} is not an absolute URL under ${ENDPOINT}`);
  const posts = inPhase('first', 'POST');
  eq('POSTs creating the upload', 1, posts.length);
  eq('status of the creation POST', 201, posts[0].status);
  console.error(`upload URL ${uploadURL}; ${before.progressEvents} progress events so far`);

  setStep('pause (uppy.pauseResume) mid-upload');
  phase = 'paused';
  eq('pauseResume() when uploading (true = now paused)', true, await page.evaluate(() => window.tusTest.pause()));
  await sleep(300);
  const paused1 = await noErrors();
  check(paused1.isPaused, 'the file is not paused after pauseResume()');
  await sleep(1500);
  const paused2 = await noErrors();
  eq('tus requests made while paused', '', inPhase('paused').map(show).join(', '));
  eq('bytesUploaded while paused (must stand still)', paused1.bytesUploaded, paused2.bytesUploaded);
  check(paused2.bytesUploaded < SIZE, 'the upload finished before it could be paused');

  setStep('resume (uppy.pauseResume): HEAD, then PATCH from the offset the server answered');
  phase = 'resumed';
  eq('pauseResume() when paused (false = now running)', false, await page.evaluate(() => window.tusTest.resume()));
  // Held: the PATCH from the offset of the last 204 (its answer may reach this process a moment
  // after the page has seen it).
  const lastAck = () => [...tus].reverse().find((e) => e.method === 'PATCH' && e.status === 204);
  const held = await until(`progress past 40 % with a PATCH from ${HOLD_AT} B on held in the page`, async () => {
    const s = await noErrors();
    return s.held.length > 0 && s.bytesUploaded >= 0.4 * SIZE && lastAck()?.resOffset === String(s.held[0]) ? s : null;
  });
  const resumed = inPhase('resumed');
  check(resumed.length >= 2, `after resume: ${resumed.map(show).join(', ')}`);
  eq('first request after resume', `HEAD ${uploadURL}`, `${resumed[0].method} ${resumed[0].url}`);
  eq('status of the HEAD after resume', 200, resumed[0].status);
  check(resumed[0].resOffset != null, `the HEAD after resume has no Upload-Offset: ${show(resumed[0])}`);
  eq('second request after resume', `PATCH ${uploadURL}`, `${resumed[1].method} ${resumed[1].url}`);
  eq('Upload-Offset of the first PATCH after resume (= what the HEAD answered)', resumed[0].resOffset, resumed[1].reqOffset);
  check(inPhase('resumed', 'POST').length === 0, 'a POST after resume: the upload was created anew');
  check(held.isPaused === false, 'still paused after resume');
  // The PATCH the pause aborted (if it was in flight): the HEAD's offset tells what the gateway kept.
  const cut = tus.find((e) => e.phase === 'first' && e.method === 'PATCH' && e.failed);
  const pauseCut = cut ? { patchAt: Number(cut.reqOffset), kept: Number(resumed[0].resOffset) - Number(cut.reqOffset) } : null;
  console.error(cut
    ? `the pause aborted the PATCH from ${cut.reqOffset} (${cut.failed}); the gateway kept ${pauseCut.kept} B of it`
    : 'the pause aborted no PATCH in flight');

  // ---------------------------------------------------------------- 3. reload
  const ackedOffset = lastAck().resOffset;
  check(Number(ackedOffset) >= HOLD_AT, `the gateway acknowledged only ${ackedOffset} B before the reload: ${tus.map(show).join(', ')}`);
  eq('uploads stored for resuming (localStorage tus::…) before the reload', 1, held.storedUploads.length);
  if (SHOT) await page.screenshot({ path: `${SHOT}-progress.png` });
  const progressBefore = held.progressEvents;
  console.error(`reloading at ${held.bytesUploaded} / ${SIZE} B (${(100 * held.bytesUploaded / SIZE).toFixed(1)} %), the gateway has ${ackedOffset} B`);

  setStep('reload the page mid-upload');
  phase = 'reloaded';
  await page.reload();
  await page.waitForFunction(() => window.tusTestReady === true);
  const fresh = await state();
  eq('progress events in the reloaded page before starting', 0, fresh.progressEvents);
  eq('uploads stored for resuming after the reload', 1, fresh.storedUploads.length);
  if (SHOT) await page.screenshot({ path: `${SHOT}-reloaded.png` });

  setStep('add the same file again and start: tus resumes from its stored fingerprint');
  const fileId2 = await page.evaluate(() => {
    const id = window.tusTest.addFile();
    window.tusTest.start();
    return id;
  });
  eq('Uppy file id after the reload (the fingerprint derives from it)', fileId, fileId2);
  const done = await until('the upload to complete', async () => {
    const s = await noErrors();
    return s.complete ? s : null;
  }, 60_000);
  const after = inPhase('reloaded');
  check(after.length >= 2, `after the reload: ${after.map(show).join(', ')}`);
  check(inPhase('reloaded', 'POST').length === 0, `a POST after the reload (not resumed): ${after.map(show).join(', ')}`);
  eq('first request after the reload', `HEAD ${uploadURL}`, `${after[0].method} ${after[0].url}`);
  eq('status of the HEAD after the reload', 200, after[0].status);
  eq('Upload-Offset the HEAD answered after the reload (= the last 204 before it)', ackedOffset, after[0].resOffset);
  const firstPatch = after.find((e) => e.method === 'PATCH');
  check(firstPatch, `no PATCH after the reload: ${after.map(show).join(', ')}`);
  check(Number(firstPatch.reqOffset) > 0, `the first PATCH after the reload starts at ${firstPatch.reqOffset}: not resumed`);
  eq('Upload-Offset of the first PATCH after the reload', ackedOffset, firstPatch.reqOffset);
  const offsets = after.filter((e) => e.method === 'PATCH').map((e) => Number(e.reqOffset));
  check(offsets.every((o, i) => i === 0 || o > offsets[i - 1]), `PATCH offsets after the reload do not increase: ${offsets}`);

  // ---------------------------------------------------------------- 4. complete
  setStep('complete');
  eq('complete: successful files', 1, done.complete.successful);
  eq('complete: failed files', 0, done.complete.failed);
  check(done.success, 'no upload-success event');
  eq('upload-success uploadURL', uploadURL, done.success.uploadURL);
  check(done.progressEvents > 0, 'no upload-progress event after the reload');
  eq('last upload-progress bytesUploaded', SIZE, done.bytesUploaded);
  const last = [...after].reverse().find((e) => e.method === 'PATCH');
  eq('Upload-Offset answered to the last PATCH', String(SIZE), last.resOffset);
  const failedRequests = tus.filter((e) => e.failed && e.phase !== 'paused' && e.phase !== 'first');
  check(failedRequests.length === 0, `tus requests that failed: ${failedRequests.map(show).join(', ')}`);
  if (SHOT) await page.screenshot({ path: `${SHOT}.png` });

  setStep('HEAD of the finished upload (Node): offset = length');
  const head = await rawRequest('HEAD', uploadURL, { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${TOKEN}` });
  const headDesc = `HEAD ${uploadURL} answered ${head.status} ${JSON.stringify(head.headers)}`;
  eq(`status of ${headDesc}`, 200, head.status);
  eq(`Upload-Offset of ${headDesc}`, String(SIZE), head.headers['upload-offset']);
  eq(`Upload-Length of ${headDesc}`, String(SIZE), head.headers['upload-length']);

  const patches = tus.filter((e) => e.method === 'PATCH');
  return {
    name: NAME,
    size: SIZE,
    uploadURL,
    pausedAt: paused2.bytesUploaded,
    resumedAfterPauseAt: Number(resumed[0].resOffset),
    pauseCut,
    reloadedAt: held.bytesUploaded,
    resumedAfterReloadAt: Number(firstPatch.reqOffset),
    progressEvents: { beforeReload: progressBefore, afterReload: done.progressEvents },
    patches: patches.length,
    patchesAfterReload: offsets.length,
    preflightsSeen: tus.filter((e) => e.method === 'OPTIONS').length,
    origin,
  };
}

let status = 0;
try {
  const result = await main();
  setStep('passed');
  console.log(JSON.stringify(result));
} catch (err) {
  status = 1;
  console.error(`FAIL [tus-browser/${LABEL}] ${step}: ${err.checkFailed ? err.message : err.stack || err}`);
} finally {
  fs.writeFileSync(path.join(WORK, 'tus-requests.json'), JSON.stringify(tus, null, 1));
  server.close();
}
process.exit(status);
