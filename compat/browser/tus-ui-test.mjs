// The /ui/ upload page in its tus mode, in headless Chromium (run by compat/browser.sh after
// browser-test.mjs).
//
//   node compat/browser/tus-ui-test.mjs WORK_DIR LABEL SCREENSHOT_PREFIX
//
// Environment: BROWSER_BASE_URL (the gateway), BROWSER_USER1 / BROWSER_TOKEN1 (a legacy user),
// CHROMIUM (default /usr/bin/chromium).
//
// The page's own tus client (src/ui/app.js) against /_tus/, uploads slowed down to 2 MiB/s by
// Chromium's network emulation (CDP Network.emulateNetworkConditions) so that a PATCH is in
// flight whenever the test acts. Every /_tus/ request is observed with page.on('request') and
// its answer.
//
// 1. Sign in, choose "tus" and 1 MiB chunks (both remembered in localStorage), pick a random
//    ~12 MiB file: one POST creation, then PATCHes of 1 MiB.
// 2. Pause while a PATCH is in flight: it is aborted, no tus request while paused. Resume: a
//    HEAD of the same upload URL, then a PATCH from exactly the offset the HEAD answered.
// 3. Past 40 % the page is RELOADED. The page still says tus, lists the unfinished upload, and
//    the same file picked again resumes: no POST, a HEAD of the stored upload URL, the first
//    PATCH at the offset it answered (> 0). The upload completes; the file list's download gives
//    back the same bytes (SHA-256).
// 4. Cancel in the middle of a second upload: DELETE of its URL (204), the server forgets it.
// 5. An upload whose URL the server no longer knows (the test DELETEs it behind the page's back,
//    across a reload): the page's HEAD gets 404, it starts over with a new POST and completes.
//
// Screenshots SCREENSHOT_PREFIX-progress.png (before the reload), -reloaded.png (after it) and
// SCREENSHOT_PREFIX.png (done). Every wait is bounded; the first failed check ends the run with
// `FAIL [tus-ui/LABEL] ...`, and the tus requests seen are written to WORK_DIR/tus-ui-requests.json.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';

const [WORK, LABEL = 'local', SHOT = ''] = process.argv.slice(2);
if (!WORK) {
  console.error('usage: node tus-ui-test.mjs WORK_DIR LABEL SCREENSHOT_PREFIX');
  process.exit(2);
}
const BASE = (process.env.BROWSER_BASE_URL || '').replace(/\/$/, '');
const USER1 = process.env.BROWSER_USER1;
const TOKEN1 = process.env.BROWSER_TOKEN1;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MIB = 1024 * 1024;
const WAIT = 30_000; // default bound for one wait
const UPLOAD_BYTES_PER_S = 2 * MIB;
const TUS = `${BASE}/_tus/`;

let step = '(setup)';
const t0 = Date.now();
function setStep(s) {
  step = s;
  console.error(`--- [tus-ui/${LABEL}] ${s} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
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

async function until(what, fn, ms = WAIT) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) fail(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(50);
  }
}

// Every /_tus/ request of the page: { phase, method, url, reqOffset, status, resOffset, failed }.
const tus = [];
let phase = 'start';
const show = (e) => `[${e.phase}] ${e.method} ${e.url} (Upload-Offset ${e.reqOffset ?? '-'}) -> ${e.status ?? e.failed ?? 'no answer yet'}${e.resOffset != null ? ` (Upload-Offset ${e.resOffset})` : ''}`;
const inPhase = (p, method) => tus.filter((e) => e.phase === p && e.method !== 'OPTIONS' && (!method || e.method === method));

async function main() {
  check(BASE && USER1 && TOKEN1, 'BROWSER_BASE_URL, BROWSER_USER1 and BROWSER_TOKEN1 must be set');
  setStep('generate a ~12 MiB random file');
  const size = 12 * MIB + 12_345;
  const data = crypto.randomBytes(size);
  const filePath = path.join(WORK, 'tus-ui-12MiB.bin');
  fs.writeFileSync(filePath, data);

  setStep(`launch ${CHROMIUM}`);
  const profile = fs.mkdtempSync(path.join(WORK, 'chromium-profile-tus-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    acceptDownloads: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1000, height: 900 },
    timeout: WAIT,
  });
  context.setDefaultTimeout(WAIT);
  try {
    await run(context, { data, size, filePath });
  } finally {
    await context.close().catch(() => {});
  }
}

async function run(context, { data, size, filePath }) {
  const page = context.pages()[0] || (await context.newPage());
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: UPLOAD_BYTES_PER_S });

  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
  });
  const noPageErrors = () => check(pageErrors.length === 0, `errors in the page: ${pageErrors.join(' | ')}`);
  const tokenUrls = [];
  const byReq = new Map();
  page.on('request', (r) => {
    if (r.url().includes(TOKEN1)) tokenUrls.push(r.url());
    if (!r.url().startsWith(TUS)) return;
    const h = r.headers();
    const e = { phase, method: r.method(), url: r.url(), reqOffset: h['upload-offset'] ?? null, status: null, resOffset: null, t: Date.now() };
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
  });
  page.on('requestfailed', (r) => {
    const e = byReq.get(r);
    if (e) e.failed = r.failure()?.errorText ?? 'failed';
  });

  const jobAttr = (name) => page.locator('#job').getAttribute(`data-${name}`);
  const jobState = () => jobAttr('state');
  const offset = async () => Number(await jobAttr('offset'));
  const text = (sel) => page.locator(sel).innerText();
  const records = async () => JSON.parse((await page.evaluate(() => localStorage.getItem('mpgw.uploads'))) || '{}');
  const waitDone = (what) => until(what, async () => {
    const s = await jobState();
    if (s === 'failed') fail(`upload failed: ${await text('#job-state')}; tus requests: ${tus.map(show).join(', ')}`);
    return s === 'done';
  }, 90_000);
  const patchInFlight = () => tus.some((e) => e.method === 'PATCH' && e.status === null && !e.failed);

  async function signIn() {
    await page.locator('#signin').waitFor({ state: 'visible' });
    await page.fill('#username', USER1);
    await page.fill('#token', TOKEN1);
    await page.click('#signin-button');
    await page.locator('#upload').waitFor({ state: 'visible' });
  }
  async function afterReload() {
    await until('the page after the reload', async () => (await page.locator('#upload').isVisible()) || (await page.locator('#signin').isVisible()));
    if (await page.locator('#signin').isVisible()) await signIn();
  }

  // ---- 1. sign in, choose tus, pick the file
  setStep('open /ui/, sign in, choose tus with 1 MiB chunks');
  await page.goto(`${BASE}/ui/`, { waitUntil: 'load' });
  await signIn();
  eq('protocol before choosing', 'note', await page.locator('#protocol').inputValue());
  check(await page.locator('#chunk-size-label').isHidden(), 'chunk size shown in the note API mode');
  await page.selectOption('#protocol', 'tus');
  await page.locator('#chunk-size-label').waitFor({ state: 'visible' });
  await page.selectOption('#chunk-size', String(MIB));
  eq('protocol remembered', 'tus', await page.evaluate(() => localStorage.getItem('mpgw.protocol')));
  eq('chunk size remembered', String(MIB), await page.evaluate(() => localStorage.getItem('mpgw.tusChunkSize')));

  setStep(`upload ${size} B through tus (POST, PATCHes of 1 MiB at ${UPLOAD_BYTES_PER_S / MIB} MiB/s)`);
  phase = 'first';
  await page.setInputFiles('#file', filePath);
  const url = await until('the upload URL on the page', () => jobAttr('upload-url'));
  eq('protocol of the job', 'tus', await jobAttr('protocol'));
  const posts = inPhase('first', 'POST');
  check(posts.length === 1 && posts[0].status === 201 && posts[0].url === TUS, `creation: ${posts.map(show).join(', ')}`);
  check(url.startsWith(TUS) && url.length > TUS.length, `upload URL ${url}`);
  await until('2 MiB acknowledged and a PATCH in flight', async () => (await offset()) >= 2 * MIB && patchInFlight());
  const firstPatches = inPhase('first', 'PATCH');
  check(firstPatches.every((e) => e.url === url), `PATCH of another URL: ${firstPatches.map(show).join(', ')}`);
  const done1 = firstPatches.filter((e) => e.status === 204);
  check(done1.length >= 2 && done1.every((e, i) => Number(e.reqOffset) === i * MIB && Number(e.resOffset) === (i + 1) * MIB),
    `PATCHes of 1 MiB in order: ${firstPatches.map(show).join(', ')}`);
  // The record's key is the fingerprint: user, name, size, modification time.
  const stored = Object.entries(await records());
  const [key, rec] = stored[0] || [];
  check(stored.length === 1 && rec.protocol === 'tus' && rec.url === url && rec.size === size && rec.name === 'tus-ui-12MiB.bin'
    && key === JSON.stringify(['tus', USER1, rec.name, size, rec.lastModified]), `localStorage record: ${JSON.stringify(stored)}`);
  check(/MiB of 12\.0 MiB · \d+%/.test(await text('#job-stats')), `progress text: ${await text('#job-stats')}`);

  // ---- 2. pause, resume
  setStep('Pause while a PATCH is in flight, then Resume (HEAD, PATCH from its offset)');
  // 100-250 ms into a PATCH (1 MiB takes 1/2 s here): the pause cuts it mid-body.
  const inFlight = await until('a PATCH 100-250 ms in flight', () => tus.find((e) => e.method === 'PATCH' && e.status === null && !e.failed
    && Date.now() - e.t >= 100 && Date.now() - e.t <= 250));
  await page.click('#pause');
  const cut = [inFlight];
  await until('state paused', async () => (await jobState()) === 'paused');
  check(await page.locator('#resume').isEnabled(), 'Resume disabled while paused');
  check(await page.locator('#pause').isDisabled(), 'Pause enabled while paused');
  await until('the PATCH in flight aborted', () => cut.length > 0 && cut.every((e) => e.failed || e.status !== null), 5_000);
  check(cut.some((e) => e.failed), `Pause did not abort the PATCH in flight: ${cut.map(show).join(', ')}`);
  const pausedAt = await offset();
  const requestsAtPause = tus.length;
  const shownAtPause = await text('#job-stats');
  await sleep(800);
  eq('tus requests while paused', requestsAtPause, tus.length);
  eq('acknowledged offset while paused', pausedAt, await offset());
  check(shownAtPause.split(' · ')[1] === (await text('#job-stats')).split(' · ')[1], `progress moved while paused: ${shownAtPause} -> ${await text('#job-stats')}`);
  phase = 'resumed';
  await page.click('#resume');
  await until('a PATCH after Resume', () => inPhase('resumed', 'PATCH').length > 0 && inPhase('resumed')[0].status !== null);
  const r0 = inPhase('resumed');
  check(r0[0].method === 'HEAD' && r0[0].url === url && r0[0].status === 200, `first request after Resume: ${r0.map(show).join(', ')}`);
  const p0 = inPhase('resumed', 'PATCH')[0];
  check(p0.url === url && p0.reqOffset === r0[0].resOffset, `first PATCH after Resume should start at the HEAD's offset: ${r0.map(show).join(', ')}`);
  check(Number(p0.reqOffset) >= pausedAt, `resumed at ${p0.reqOffset}, below the ${pausedAt} acknowledged before the pause`);
  console.error(`paused at ${pausedAt} acknowledged; the pause cut the PATCH from ${cut[0].reqOffset} (${cut[0].failed}); the gateway kept ${Number(r0[0].resOffset) - Number(cut[0].reqOffset)} B of it`);
  check((await text('#job-note')).includes('resumed:'), `note after Resume: ${await text('#job-note')}`);
  eq('POSTs after Resume', 0, inPhase('resumed', 'POST').length);

  // ---- 3. reload past 40 %
  setStep('reload the page past 40 %, pick the same file again');
  await until('40 % acknowledged', async () => (await offset()) > 0.4 * size && patchInFlight());
  await shot(page, '-progress');
  const beforeReload = await offset();
  phase = 'reloaded';
  await page.reload({ waitUntil: 'load' });
  await afterReload();
  eq('protocol after the reload', 'tus', await page.locator('#protocol').inputValue());
  eq('chunk size after the reload', String(MIB), await page.locator('#chunk-size').inputValue());
  await page.locator('#pending').waitFor({ state: 'visible' });
  check((await text('#pending')).includes('tus-ui-12MiB.bin'), `unfinished upload not listed: ${await text('#pending')}`);
  check((await text('#pending')).includes('(tus)'), `unfinished upload not marked tus: ${await text('#pending')}`);
  await shot(page, '-reloaded');
  await page.setInputFiles('#file', filePath);
  await waitDone('the upload done after the reload');
  const after = inPhase('reloaded');
  eq('POST creations after the reload', 0, inPhase('reloaded', 'POST').length);
  check(after[0]?.method === 'HEAD' && after[0].url === url && after[0].status === 200, `first tus request after the reload: ${after.map(show).join(', ')}`);
  const firstPatch = inPhase('reloaded', 'PATCH')[0];
  check(firstPatch && firstPatch.url === url, `first PATCH after the reload: ${after.map(show).join(', ')}`);
  check(Number(firstPatch.reqOffset) > 0, `the first PATCH after the reload starts at ${firstPatch.reqOffset}: not resumed`);
  eq('first PATCH after the reload at the offset HEAD answered', after[0].resOffset, firstPatch.reqOffset);
  check(Number(firstPatch.reqOffset) >= beforeReload, `resumed at ${firstPatch.reqOffset}, below the ${beforeReload} acknowledged before the reload`);
  console.error(`resumed after the reload at ${firstPatch.reqOffset} of ${size} (${beforeReload} acknowledged before it); ${inPhase('reloaded', 'PATCH').length} PATCHes after it`);
  check((await text('#job-note')).includes('resumed:'), `note after the reload: ${await text('#job-note')}`);
  const last = inPhase('reloaded', 'PATCH').at(-1);
  eq('last PATCH status', 204, last.status);
  eq('last PATCH answered offset', String(size), last.resOffset);
  eq('POST creations in all', 1, tus.filter((e) => e.method === 'POST').length);
  check(/12\.0 MiB of 12\.0 MiB · 100%/.test(await text('#job-stats')), `final progress: ${await text('#job-stats')}`);
  eq('localStorage after completion', '{}', await page.evaluate(() => localStorage.getItem('mpgw.uploads')));

  setStep('the file list, and download through its link');
  const row = page.locator('#file-list tr[data-name="tus-ui-12MiB.bin"]');
  await row.waitFor({ state: 'visible' });
  const got = await downloadVia(page, row);
  eq('downloaded size', size, got.length);
  eq('downloaded SHA-256', sha256(data), sha256(got));
  await shot(page, '');
  noPageErrors();

  // ---- 4. cancel
  setStep('Cancel a second tus upload in the middle: DELETE');
  phase = 'cancel';
  const cancelPath = path.join(WORK, 'tus-ui-cancel.bin');
  fs.writeFileSync(cancelPath, crypto.randomBytes(6 * MIB));
  await page.setInputFiles('#file', cancelPath);
  await until('1 MiB of the second upload acknowledged', async () => (await jobState()) === 'uploading' && (await offset()) >= MIB);
  const cancelUrl = await jobAttr('upload-url');
  check(cancelUrl && cancelUrl !== url, `second upload URL ${cancelUrl}`);
  await page.click('#cancel');
  await until('state cancelled', async () => (await jobState()) === 'cancelled');
  const del = await until('the DELETE answered', () => inPhase('cancel', 'DELETE').find((e) => e.status !== null));
  check(del.url === cancelUrl && del.status === 204, `DELETE: ${inPhase('cancel').map(show).join(', ')}`);
  eq('HEAD of the cancelled upload', 404, await tusHead(page, cancelUrl));
  eq('localStorage after Cancel', '{}', await page.evaluate(() => localStorage.getItem('mpgw.uploads')));
  await page.click('#refresh');
  await sleep(300);
  check(!(await page.locator('#file-list tr[data-name="tus-ui-cancel.bin"]').count()), 'cancelled file listed');
  noPageErrors();

  // ---- 5. the upload URL is gone: start over
  setStep('an upload the server no longer has (deleted across a reload): HEAD 404, a new POST');
  phase = 'gone-first';
  const gonePath = path.join(WORK, 'tus-ui-gone.bin');
  const goneData = crypto.randomBytes(3 * MIB + 5);
  fs.writeFileSync(gonePath, goneData);
  await page.setInputFiles('#file', gonePath);
  await until('1 MiB of the third upload acknowledged', async () => (await jobState()) === 'uploading' && (await offset()) >= MIB);
  const goneUrl = await jobAttr('upload-url');
  await page.click('#pause');
  await until('state paused', async () => (await jobState()) === 'paused');
  await page.reload({ waitUntil: 'load' });
  await afterReload();
  eq('DELETE from the test', 204, await tusDelete(page, goneUrl));
  phase = 'gone';
  await page.setInputFiles('#file', gonePath);
  await waitDone('the third upload done');
  const g = inPhase('gone');
  check(g[0]?.method === 'HEAD' && g[0].url === goneUrl && g[0].status === 404, `first request: ${g.map(show).join(', ')}`);
  check(g[1]?.method === 'POST' && g[1].status === 201, `then a creation: ${g.map(show).join(', ')}`);
  const newUrl = await jobAttr('upload-url');
  check(newUrl !== goneUrl, 'the same upload URL after starting over');
  eq('first PATCH of the new upload', '0', inPhase('gone', 'PATCH')[0]?.reqOffset);
  check((await text('#job-note')).includes('starting over'), `note: ${await text('#job-note')}`);
  const goneRow = page.locator('#file-list tr[data-name="tus-ui-gone.bin"]');
  await goneRow.waitFor({ state: 'visible' });
  eq('tus-ui-gone.bin downloaded', sha256(goneData), sha256(await downloadVia(page, goneRow)));
  eq('localStorage at the end', '{}', await page.evaluate(() => localStorage.getItem('mpgw.uploads')));
  noPageErrors();
  check(tokenUrls.length === 0, `the token appeared in URLs: ${tokenUrls.join(', ')}`);
}

// HEAD / DELETE of a tus upload from the test (through the browser context: https needs no CA).
async function tusHead(page, url) {
  const r = await page.request.head(url, { headers: { Authorization: `Bearer ${TOKEN1}`, 'Tus-Resumable': '1.0.0' }, timeout: WAIT, failOnStatusCode: false });
  return r.status();
}

async function tusDelete(page, url) {
  const r = await page.request.delete(url, { headers: { Authorization: `Bearer ${TOKEN1}`, 'Tus-Resumable': '1.0.0' }, timeout: WAIT, failOnStatusCode: false });
  return r.status();
}

async function shot(page, suffix) {
  if (!SHOT) return;
  await page.evaluate(() => document.activeElement?.blur());
  await page.screenshot({ path: `${SHOT}${suffix}.png`, fullPage: true });
  console.error(`screenshot: ${SHOT}${suffix}.png`);
}

// Clicks the row's download link (a signed link the page asks for) and returns the bytes.
async function downloadVia(page, row) {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: WAIT }), row.locator('a.download').click()]);
  const out = path.join(WORK, `tus-download-${Date.now()}.bin`);
  await download.saveAs(out);
  const failure = await download.failure();
  check(!failure, `download failed: ${failure}`);
  return fs.readFileSync(out);
}

const watchdog = setTimeout(() => {
  console.error(`FAIL [tus-ui/${LABEL}] ${step}: the whole test took more than 240 s`);
  fs.writeFileSync(path.join(WORK, 'tus-ui-requests.json'), JSON.stringify(tus, null, 1));
  process.exit(1);
}, 240_000);

try {
  await main();
  setStep('passed');
  clearTimeout(watchdog);
} catch (e) {
  console.error(`FAIL [tus-ui/${LABEL}] ${step}: ${e.checkFailed ? e.message : e.stack || e}`);
  fs.writeFileSync(path.join(WORK, 'tus-ui-requests.json'), JSON.stringify(tus, null, 1));
  process.exit(1);
}
