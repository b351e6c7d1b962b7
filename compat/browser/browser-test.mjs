// The /ui/ upload page in headless Chromium (run by compat/browser.sh).
//
//   node compat/browser/browser-test.mjs WORK_DIR LABEL SCREENSHOT_PREFIX
//
// Environment: BROWSER_BASE_URL (the gateway, e.g. http://127.0.0.1:9000), BROWSER_USER1 /
// BROWSER_TOKEN1 and BROWSER_USER2 / BROWSER_TOKEN2 (two legacy users; without user 2 the
// instant-upload step is skipped), CHROMIUM (default /usr/bin/chromium).
//
// 1. The page's incremental SHA-256 (src/ui/sha256.js) against known vectors and Node's crypto.
// 2. In Chromium: a wrong token is refused with the server's message; sign in; upload a
//    30 MiB random file. The test's request interception fails chunk 2's first attempt (the page
//    must retry it) and holds chunks 4+, so the upload stops at 3 of 7 chunks; Pause, Resume
//    (the server still has 3 chunks), then the page is RELOADED in the middle of the upload.
//    After the reload the same file is selected again: the page must say "resumed: 3 of 7
//    chunks already uploaded" and send only the 4 missing chunks. The file list's download
//    link (a signed link the page asks for on click) must give back the same bytes (SHA-256).
//    No request of the page ever carries the token in its URL. Screenshots SCREENSHOT_PREFIX.png (done),
//    -progress.png (mid-upload), -reloaded.png (after the reload, before selecting the file);
//    -offline.png (the network drop below) and -instant.png (step 4).
// 3. Cancel: a second file, held mid-upload, is cancelled: the server forgets the upload.
//    Network drop: a third file's chunks fail while the browser is offline; after the retries
//    the page says the upload stopped, and continues by itself once the browser is back online.
// 4. A second user uploads the same 30 MiB: init challenges the page, which proves it holds the
//    file (mpupload/instant): stored instantly, no chunk sent; downloads the same bytes; deletes
//    it. Screenshot SCREENSHOT_PREFIX-instant.png.
//
// Every wait is bounded; the first failed check ends the run with `FAIL [browser/LABEL] ...`.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const [WORK, LABEL = 'local', SHOT = ''] = process.argv.slice(2);
if (!WORK) {
  console.error('usage: node browser-test.mjs WORK_DIR LABEL SCREENSHOT_PREFIX');
  process.exit(2);
}
const HERE = path.dirname(fileURLToPath(import.meta.url));
const UI_DIR = path.resolve(HERE, '../../src/ui');
const BASE = (process.env.BROWSER_BASE_URL || '').replace(/\/$/, '');
const USER1 = process.env.BROWSER_USER1;
const TOKEN1 = process.env.BROWSER_TOKEN1;
const USER2 = process.env.BROWSER_USER2 || '';
const TOKEN2 = process.env.BROWSER_TOKEN2 || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MIB = 1024 * 1024;
const WAIT = 30_000; // default bound for one wait

let step = '(setup)';
const t0 = Date.now();
function setStep(s) {
  step = s;
  console.error(`--- [browser/${LABEL}] ${s} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
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
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn() until it returns a truthy value; fails after `ms`.
async function until(what, fn, ms = WAIT) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) fail(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(100);
  }
}

// ------------------------------------------------------------------ 1. SHA-256 in JS

async function testSha256() {
  setStep('incremental SHA-256 (src/ui/sha256.js) against known vectors and node:crypto');
  const src = fs.readFileSync(path.join(UI_DIR, 'sha256.js'), 'utf8');
  const { Sha256, sha256File } = await import(`data:text/javascript;base64,${Buffer.from(src).toString('base64')}`);
  const hex = (data) => new Sha256().update(data).hex();
  const vectors = [
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'],
    ['abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
      'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1'],
    ['a'.repeat(1_000_000), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0'],
  ];
  for (const [msg, want] of vectors) eq(`SHA-256 of ${JSON.stringify(msg.slice(0, 20))}… (${msg.length} B)`, want, hex(Buffer.from(msg)));
  // Every length around the padding boundaries, fed in random pieces.
  for (let n = 0; n <= 300; n++) {
    const data = crypto.randomBytes(n);
    const h = new Sha256();
    for (let i = 0; i < n;) {
      const k = 1 + crypto.randomInt(80);
      h.update(data.subarray(i, i + k));
      i += k;
    }
    eq(`SHA-256 of ${n} random bytes in pieces`, sha256(data), h.hex());
  }
  // A 9 MiB + 7 B Blob read in 4 MiB slices (and in odd-sized slices), as the page reads a File.
  const big = crypto.randomBytes(9 * MIB + 7);
  const blob = new Blob([big]);
  const seen = [];
  eq('sha256File(9 MiB Blob, 4 MiB slices)', sha256(big), await sha256File(blob, (d) => seen.push(d)));
  eq('progress callbacks', JSON.stringify([0, 4 * MIB, 8 * MIB, big.length]), JSON.stringify(seen));
  eq('sha256File(9 MiB Blob, 1000003 B slices)', sha256(big), await sha256File(blob, () => {}, undefined, 1_000_003));
  eq('sha256File(empty Blob)', sha256(Buffer.alloc(0)), await sha256File(new Blob([])));
}

// ------------------------------------------------------------------ 2-4. the page

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function testPage() {
  check(BASE && USER1 && TOKEN1, 'BROWSER_BASE_URL, BROWSER_USER1 and BROWSER_TOKEN1 must be set');
  setStep('generate a 30 MiB random file');
  const size = 30 * MIB + 12_345;
  const data = crypto.randomBytes(size);
  const filePath = path.join(WORK, 'random-30MiB.bin');
  fs.writeFileSync(filePath, data);
  const fileHash = sha256(data);

  setStep(`launch ${CHROMIUM}`);
  const profile = fs.mkdtempSync(path.join(WORK, 'chromium-profile-'));
  // launchPersistentContext passes the fresh profile as --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    acceptDownloads: true,
    ignoreHTTPSErrors: true, // the https pass uses a self-signed certificate
    viewport: { width: 1000, height: 900 },
    timeout: WAIT,
  });
  try {
    console.error(`chromium ${context.browser()?.version() ?? '(version unknown)'}, playwright-core ${await playwrightVersion()}`);
    await runPage(context, { data, size, filePath, fileHash });
  } finally {
    await context.close().catch(() => {});
  }
}

async function playwrightVersion() {
  const pkg = path.join(HERE, 'node_modules/playwright-core/package.json');
  return JSON.parse(fs.readFileSync(pkg, 'utf8')).version;
}

async function runPage(context, { data, size, filePath, fileHash }) {
  context.setDefaultTimeout(WAIT);
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
  });
  const noPageErrors = () => check(pageErrors.length === 0, `errors in the page: ${pageErrors.join(' | ')}`);

  // Every uppart and instant request, with its chunk index (the `index` form field); any URL
  // with a token in it.
  const upparts = [];
  const instants = [];
  const tokenUrls = [];
  page.on('request', (r) => {
    if (r.url().includes('/file/mpupload/uppart')) upparts.push(r);
    if (r.url().includes('/file/mpupload/instant')) instants.push(r);
    if (/[?&]token=/.test(r.url())) tokenUrls.push(r.url());
  });
  const noTokenUrls = () => check(tokenUrls.length === 0, `token in a URL: ${tokenUrls.join(' ')}`);
  const field = (req, name) => {
    const body = req.postDataBuffer();
    const m = body && new RegExp(`name="${name}"\r\n\r\n([^\r]*)\r\n`).exec(body.subarray(0, 4096).toString('latin1'));
    return m ? m[1] : null;
  };
  const indexOf = (req) => {
    const i = field(req, 'index');
    return i === null ? null : Number(i);
  };

  // Interception: chunk 2's first attempt fails; with `hold`, chunks > 3 wait (never reach the
  // server) until `release()`.
  let hold = true;
  let releaseHeld;
  let held = new Promise((r) => { releaseHeld = r; });
  let chunk2Attempts = 0;
  const heldRoutes = new Set();
  await page.route('**/file/mpupload/uppart*', async (route) => {
    const index = indexOf(route.request());
    if (index === null) {
      await route.continue();
      return;
    }
    if (index === 2 && ++chunk2Attempts === 1) {
      await route.abort('connectionreset');
      return;
    }
    if (hold && index > 3) {
      heldRoutes.add(route);
      await held;
      heldRoutes.delete(route);
      await route.abort('connectionaborted').catch(() => {});
      return;
    }
    await route.continue().catch(() => {});
  });
  const releaseAll = () => {
    releaseHeld();
    held = new Promise((r) => { releaseHeld = r; });
  };

  const jobState = () => page.locator('#job').getAttribute('data-state');
  const chunksDone = async () => Number(await page.locator('#job').getAttribute('data-chunks-done'));
  const text = (sel) => page.locator(sel).innerText();

  async function signIn(user, token) {
    await page.locator('#signin').waitFor({ state: 'visible' });
    await page.fill('#username', user);
    await page.fill('#token', token);
    await page.click('#signin-button');
    await page.locator('#upload').waitFor({ state: 'visible' });
    eq('signed-in user shown', user, (await text('#who-name')).trim());
  }

  // ---- sign in
  setStep('open /ui/ and sign in (a wrong token first)');
  await page.goto(`${BASE}/ui/`, { waitUntil: 'load' });
  eq('page title', 'mpgw upload', await page.title());
  await page.locator('#signin').waitFor({ state: 'visible' });
  await page.fill('#username', USER1);
  await page.fill('#token', `${TOKEN1}-wrong`);
  await page.click('#signin-button');
  await page.locator('#error').waitFor({ state: 'visible' });
  const err = await text('#error');
  check(err.includes('unknown username or wrong token'), `sign-in error should carry the server's msg, got: ${err}`);
  check(await page.locator('#signin').isVisible(), 'still on the sign-in form after a wrong token');
  await signIn(USER1, TOKEN1);
  check(!(await page.locator('#error').isVisible()), 'error banner left after signing in');
  await page.locator('#no-files').waitFor({ state: 'visible' });

  // ---- upload until 3 of 7 chunks, pause, resume, reload
  setStep('upload 30 MiB: chunk 2 fails once (retried), chunks 4+ held; stops at 3 of 7');
  await page.setInputFiles('#file', filePath);
  const total = Number(await until('the chunk count', () => page.locator('#job').getAttribute('data-chunks-total').then((n) => n !== '0' && n)));
  // 7 with the default 5 MiB chunks; the steps below work for any count from 5 on.
  check(total >= 5, `${total} chunks: too few for this test (chunk size above 6 MiB?)`);
  const heldWanted = Math.min(3, total - 3); // 3 requests in flight
  await until('3 chunks stored and the rest held', async () => (await chunksDone()) === 3 && heldRoutes.size === heldWanted);
  eq('state', 'uploading', await jobState());
  check(chunk2Attempts === 2, `chunk 2 should have been retried once after the failure, attempts: ${chunk2Attempts}`);
  const uploadId = await page.locator('#job').getAttribute('data-upload-id');
  check(/^[0-9a-zA-Z_-]{8,}$/.test(uploadId || ''), `no upload id on the page: ${uploadId}`);
  const stats = await text('#job-stats');
  check(/^[\d.]+ MiB of 30\.0 MiB · \d+%/.test(stats) && stats.includes(`chunks 3/${total}`), `progress text: ${stats}`);
  const stored = JSON.parse((await page.evaluate(() => localStorage.getItem('mpgw.uploads'))) || '{}');
  const rec = Object.values(stored)[0] || {};
  check(rec.uploadId === uploadId && rec.hash === fileHash && rec.size === size && rec.name === 'random-30MiB.bin',
    `localStorage record: ${JSON.stringify(stored)}`);
  await shot(page, '-progress');
  const status = await legacy(page, USER1, TOKEN1, 'mpupload/status', { uploadid: uploadId });
  eq('server ChunksPresent before the reload', JSON.stringify([1, 2, 3]), JSON.stringify(status.ChunksPresent));

  setStep('Pause, then Resume (init again: same upload, 3 chunks there)');
  await page.click('#pause');
  await until('state paused', async () => (await jobState()) === 'paused');
  check(await page.locator('#resume').isEnabled(), 'Resume disabled while paused');
  check(await page.locator('#pause').isDisabled(), 'Pause enabled while paused');
  releaseAll(); // the paused page aborted them; end their interception too
  await until('held requests gone after Pause', async () => heldRoutes.size === 0);
  await page.click('#resume');
  await until('chunks held again after Resume', async () => heldRoutes.size === heldWanted && (await jobState()) === 'uploading');
  eq('upload id after Resume', uploadId, await page.locator('#job').getAttribute('data-upload-id'));
  const resumedNote = `resumed: 3 of ${total} chunks already uploaded`;
  check((await text('#job-note')).includes(resumedNote), `note after Resume: ${await text('#job-note')}`);

  setStep('reload the page in the middle of the upload, select the same file again');
  const beforeReload = upparts.length;
  hold = false;
  await page.reload({ waitUntil: 'load' });
  releaseAll();
  // sessionStorage keeps the sign-in across a reload; sign in again if the page asks.
  await until('the page after the reload', async () => (await page.locator('#upload').isVisible()) || (await page.locator('#signin').isVisible()));
  if (await page.locator('#signin').isVisible()) await signIn(USER1, TOKEN1);
  await page.locator('#pending').waitFor({ state: 'visible' });
  check((await text('#pending')).includes('random-30MiB.bin'), `unfinished upload not listed: ${await text('#pending')}`);
  await shot(page, '-reloaded');
  const afterReload = upparts.length;
  await page.setInputFiles('#file', filePath);
  await until('upload done', async () => {
    const s = await jobState();
    if (s === 'failed') fail(`upload failed: ${await text('#job-state')}`);
    return s === 'done';
  }, 60_000);
  const note = await text('#job-note');
  check(note.includes(resumedNote), `the page should say "${resumedNote}", says: ${note}`);
  const resent = upparts.slice(afterReload).map(indexOf).sort((a, b) => a - b);
  console.error(`uppart requests: ${beforeReload} before the reload, ${resent.length} after (chunks ${resent.join(',')})`);
  check(resent.length < total, `all chunks re-sent after the reload: ${resent.join(',')}`);
  const missing = Array.from({ length: total - 3 }, (_, i) => i + 4);
  eq('chunks sent after the reload', JSON.stringify(missing), JSON.stringify(resent));
  // In a secure context (https, http://127.0.0.1) the page has Web Crypto: each chunk then
  // carries its SHA-256, which the server checks.
  const secure = await page.evaluate(() => Boolean(globalThis.crypto?.subtle));
  check(secure || !/^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(`${BASE}/`), 'no Web Crypto on http://127.0.0.1');
  for (const req of secure ? upparts.slice(afterReload) : []) {
    const i = indexOf(req);
    const chunk = data.subarray((i - 1) * status.ChunkSize, i * status.ChunkSize);
    eq(`chunkhash of chunk ${i}`, sha256(chunk), field(req, 'chunkhash'));
  }
  check((await text('#job-state')) === 'done', `state text: ${await text('#job-state')}`);
  check(/30\.0 MiB of 30\.0 MiB · 100%/.test(await text('#job-stats')), `final progress: ${await text('#job-stats')}`);
  eq('localStorage after completion', '{}', await page.evaluate(() => localStorage.getItem('mpgw.uploads')));

  setStep('the file list, and download through its link');
  const row = page.locator('#file-list tr[data-name="random-30MiB.bin"]');
  await row.waitFor({ state: 'visible' });
  check((await row.innerText()).includes('30.0 MiB'), `row: ${await row.innerText()}`);
  const got = await downloadVia(page, row);
  eq('downloaded size', size, got.length);
  eq('downloaded SHA-256', fileHash, sha256(got));
  await shot(page, '');
  noPageErrors();

  setStep('Cancel a second upload in the middle');
  hold = true;
  const smallPath = path.join(WORK, 'to-cancel.bin');
  fs.writeFileSync(smallPath, crypto.randomBytes(15 * MIB + 1)); // 4 chunks: 1-3 stored, 4 held
  await page.setInputFiles('#file', smallPath);
  await until('the second upload at 3 of 4 chunks', async () => (await jobState()) === 'uploading' && heldRoutes.size === 1 && (await chunksDone()) === 3);
  const cancelId = await page.locator('#job').getAttribute('data-upload-id');
  await page.click('#cancel');
  await until('state cancelled', async () => (await jobState()) === 'cancelled');
  releaseAll();
  await until('the server forgot the cancelled upload', async () => {
    const r = await legacyRaw(page, USER1, TOKEN1, 'mpupload/status', { uploadid: cancelId });
    return r.code === 10004;
  }, 10_000);
  check(!(await page.locator('#file-list tr[data-name="to-cancel.bin"]').count()), 'cancelled file listed');
  eq('localStorage after Cancel', '{}', await page.evaluate(() => localStorage.getItem('mpgw.uploads')));
  noPageErrors();

  setStep('network drop: the retries fail, the upload stops, and goes on when back online');
  const dropData = crypto.randomBytes(20 * MIB + 1);
  const dropPath = path.join(WORK, 'network-drop.bin');
  fs.writeFileSync(dropPath, dropData);
  await page.setInputFiles('#file', dropPath);
  await until('3 chunks stored, the rest held', async () => (await jobState()) === 'uploading' && (await chunksDone()) === 3 && heldRoutes.size > 0);
  const dropTotal = Number(await page.locator('#job').getAttribute('data-chunks-total'));
  hold = false;
  await context.setOffline(true);
  releaseAll(); // the held requests fail; their retries (1 s, 3 s, 6 s later) find no network
  await until('the upload stopped with a network error', async () => (await jobState()) === 'failed', 30_000);
  const stoppedText = await text('#job-state');
  check(/network error/.test(stoppedText) && /when the connection is back/.test(stoppedText), `stopped text: ${stoppedText}`);
  check(await page.locator('#resume').isEnabled(), 'Resume disabled after a network error');
  await shot(page, '-offline');
  await context.setOffline(false); // the page's `online` handler resumes by itself
  await until('upload done after the network came back', async () => (await jobState()) === 'done', 60_000);
  check((await text('#job-note')).includes(`resumed: 3 of ${dropTotal} chunks already uploaded`), `note: ${await text('#job-note')}`);
  const dropRow = page.locator('#file-list tr[data-name="network-drop.bin"]');
  await dropRow.waitFor({ state: 'visible' });
  eq('network-drop.bin downloaded', sha256(dropData), sha256(await downloadVia(page, dropRow)));
  noPageErrors();

  if (!USER2) {
    console.error('no BROWSER_USER2: instant-upload step skipped');
    return;
  }
  setStep('a second user uploads the same file: stored instantly');
  hold = false;
  await page.click('#signout');
  await signIn(USER2, TOKEN2);
  await page.locator('#no-files').waitFor({ state: 'visible' });
  const sentBeforeInstant = upparts.length;
  await page.setInputFiles('#file', filePath);
  await until('instant upload', async () => {
    const s = await jobState();
    if (s === 'failed') fail(`upload failed: ${await text('#job-state')}`);
    return s === 'instant';
  }, 60_000);
  eq('state text', 'stored instantly (already on the server)', await text('#job-state'));
  eq('chunks sent for the instant upload', 0, upparts.length - sentBeforeInstant);
  check(instants.length >= 1, 'no proof of possession (mpupload/instant) was sent');
  const row2 = page.locator('#file-list tr[data-name="random-30MiB.bin"]');
  await row2.waitFor({ state: 'visible' });
  eq('second user downloads the same bytes', fileHash, sha256(await downloadVia(page, row2)));
  await shot(page, '-instant');

  setStep('delete the second user\'s file (two clicks)');
  await row2.locator('button.delete').click();
  eq('armed delete button', 'Really delete?', await row2.locator('button.delete').innerText());
  await row2.locator('button.delete').click();
  await page.locator('#no-files').waitFor({ state: 'visible' });
  // The first user's copy is still there.
  const q = await legacy(page, USER1, TOKEN1, 'query', {}, 'GET');
  check((q.Files || []).some((f) => f.FileName === 'random-30MiB.bin'), `first user lost the file: ${JSON.stringify(q)}`);
  noPageErrors();
  noTokenUrls();
}

// A screenshot SHOT<suffix>.png of the whole page.
async function shot(page, suffix) {
  if (!SHOT) return;
  await page.evaluate(() => document.activeElement?.blur());
  await page.screenshot({ path: `${SHOT}${suffix}.png`, fullPage: true });
  console.error(`screenshot: ${SHOT}${suffix}.png`);
}

// Clicks the row's download link and returns the downloaded bytes. The page fetches a signed
// link on click: the download's URL carries a signature and an expiry, never the token.
async function downloadVia(page, row) {
  const link = row.locator('a.download');
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: WAIT }), link.click()]);
  const url = download.url();
  check(/\/file\/download\?/.test(url) && /[?&]signature=/.test(url) && /[?&]expires=/.test(url) && !/token/.test(url),
    `download URL: ${url}`);
  const out = path.join(WORK, `download-${Date.now()}.bin`);
  await download.saveAs(out);
  const failure = await download.failure();
  check(!failure, `download failed: ${failure}`);
  return fs.readFileSync(out);
}

// A legacy API call from the test (through the browser context, so https needs no CA setup).
async function legacyRaw(page, user, token, endpoint, fields, method = 'POST') {
  const params = { username: user, ...fields };
  const opts = { headers: { Authorization: `Bearer ${token}` }, timeout: WAIT, failOnStatusCode: false };
  const resp = method === 'GET'
    ? await page.request.get(`${BASE}/file/${endpoint}?${new URLSearchParams(params)}`, opts)
    : await page.request.post(`${BASE}/file/${endpoint}`, { ...opts, form: params });
  return resp.json();
}

async function legacy(page, user, token, endpoint, fields, method = 'POST') {
  const r = await legacyRaw(page, user, token, endpoint, fields, method);
  check(r.code === 0, `${endpoint}: ${JSON.stringify(r)}`);
  return r.data;
}

// ------------------------------------------------------------------ main

const watchdog = setTimeout(() => {
  console.error(`FAIL [browser/${LABEL}] ${step}: the whole test took more than 240 s`);
  process.exit(1);
}, 240_000);

try {
  await testSha256();
  await testPage();
  setStep('passed');
  clearTimeout(watchdog);
} catch (e) {
  console.error(`FAIL [browser/${LABEL}] ${step}: ${e.checkFailed ? e.message : e.stack || e}`);
  process.exit(1);
}
