// A page on a second origin PUTs one part to a presigned UploadPart URL of the gateway, as a
// browser uploader does (Uppy and the like): Chromium sends the CORS preflight, the PUT, and the
// page must be able to read the part's ETag. Prints {status, etag, origin} as JSON.
//
//   PRESIGNED_URL=… PART_B64=… node presigned-cors.mjs
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const url = process.env.PRESIGNED_URL;
const partB64 = process.env.PART_B64;
if (!url || !partB64) throw new Error('PRESIGNED_URL and PART_B64 must be set');

const server = http.createServer((_, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>another origin</title>');
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mpgw-cors-profile-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  ignoreHTTPSErrors: true,
  timeout: 30_000,
});
try {
  const page = await context.newPage();
  await page.goto(origin, { timeout: 30_000 });
  const result = await page.evaluate(async ({ url, partB64 }) => {
    const bytes = Uint8Array.from(atob(partB64), (c) => c.charCodeAt(0));
    // A content type makes the preflight carry Access-Control-Request-Headers too.
    const r = await fetch(url, { method: 'PUT', body: bytes, headers: { 'Content-Type': 'application/octet-stream' } });
    return { status: r.status, etag: r.headers.get('ETag'), body: await r.text() };
  }, { url, partB64 });
  console.log(JSON.stringify({ ...result, origin }));
} finally {
  await context.close();
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
