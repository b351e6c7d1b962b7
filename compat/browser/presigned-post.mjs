// A page on a second origin uploads to presigned POST forms of the gateway in Chromium, as a
// web application does with a form its server signed: (1) a real
// `<form enctype="multipart/form-data" method="post">` with the policy fields and a file input,
// submitted, the browser showing the 201 PostResponse; (2) the same with
// success_action_redirect, the browser following the 303 back to a page of the origin;
// (3) fetch() with FormData from the page, reading the ETag and Location headers (exposed by
// the bucket's CORS rule). Prints the results as one JSON line; the checks against the S3 API
// are presigned_post.py's.
//
//   POSTS_JSON='{"created": {url, fields}, "redirect": {...}, "fetch": {...}}' FILE=path \
//       node presigned-post.mjs
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const posts = JSON.parse(process.env.POSTS_JSON || 'null');
const file = process.env.FILE;
if (!posts || !file) throw new Error('POSTS_JSON and FILE must be set');

const escape = (s) => String(s).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
let origin = '';
function formPage(post, extra = {}) {
  const fields = { ...post.fields, ...extra };
  const hidden = Object.entries(fields)
    .map(([k, v]) => `<input type="hidden" name="${escape(k)}" value="${escape(v)}">`)
    .join('\n');
  return `<!doctype html><title>upload</title>
<form id="f" action="${escape(post.url)}" method="post" enctype="multipart/form-data">
${hidden}
<input type="file" name="file" id="file">
<button type="submit" id="go">Upload</button>
</form>`;
}
const server = http.createServer((req, res) => {
  const u = new URL(req.url, origin);
  let body = '<!doctype html><title>another origin</title>';
  if (u.pathname === '/created') body = formPage(posts.created);
  if (u.pathname === '/redirect') {
    body = formPage(posts.redirect, { success_action_redirect: `${origin}/done` });
  }
  if (u.pathname === '/done') body = `<!doctype html><title>done</title><p id="q">${escape(u.search)}</p>`;
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(body);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
origin = `http://127.0.0.1:${server.address().port}`;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mpgw-post-profile-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  ignoreHTTPSErrors: true,
  timeout: 30_000,
});
const out = { origin };
try {
  const page = await context.newPage();

  // 1. A real form, success_action_status 201: the browser shows the PostResponse.
  await page.goto(`${origin}/created`, { timeout: 30_000 });
  await page.setInputFiles('#file', file);
  const [created] = await Promise.all([
    page.waitForNavigation({ timeout: 30_000 }),
    page.click('#go'),
  ]);
  out.created = { status: created.status(), url: created.url(), body: await created.text() };

  // 2. success_action_redirect: the browser follows the 303 back to this origin.
  await page.goto(`${origin}/redirect`, { timeout: 30_000 });
  await page.setInputFiles('#file', file);
  await Promise.all([
    page.waitForURL(`${origin}/done**`, { timeout: 30_000 }),
    page.click('#go'),
  ]);
  out.redirect = { url: page.url(), shown: await page.textContent('#q') };

  // 3. fetch() with FormData from the page (a CORS request without preflight): the answer's
  // ETag and Location are readable only if the CORS rule exposes them.
  await page.goto(`${origin}/`, { timeout: 30_000 });
  const bytes = fs.readFileSync(file).toString('base64');
  out.fetch = await page.evaluate(async ({ post, bytes }) => {
    const data = Uint8Array.from(atob(bytes), (c) => c.charCodeAt(0));
    const form = new FormData();
    for (const [k, v] of Object.entries(post.fields)) form.append(k, v);
    form.append('file', new Blob([data], { type: 'application/octet-stream' }), 'fetched.bin');
    const r = await fetch(post.url, { method: 'POST', body: form });
    return { status: r.status, etag: r.headers.get('ETag'), location: r.headers.get('Location'), body: await r.text() };
  }, { post: posts.fetch, bytes });
  console.log(JSON.stringify(out));
} finally {
  await context.close();
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
