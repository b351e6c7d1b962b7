// The upload page: sign in, hash the file (SHA-256, in slices), init, answer init's challenge
// (the server stores this content already: it is linked at once), else send the missing chunks
// three at a time, complete. The upload's id and the file's identity are kept in localStorage,
// so selecting the same file again (after a reload, a crash or a network drop) continues the
// upload: init answers with the same UploadID and the chunks the server already has.
//
// API: the legacy /file/* endpoints (src/legacy/mod.rs); every reply is {code, msg, data}. The
// token goes in the Authorization header only; downloads use short-lived signed links.
//
// The other protocol the page can use is tus 1.0 at /_tus/ (src/tus/mod.rs), with the same
// Bearer token: POST creates the upload (Upload-Length, Upload-Metadata filename and filetype),
// PATCHes of the chosen chunk size append in order at Upload-Offset, HEAD tells the offset the
// server has (after a pause, an error or a reload), DELETE cancels. The upload URL is kept in
// localStorage under the file's fingerprint (user, name, size, modification time).

import { Sha256, sha256File } from './sha256.js';

const PARALLEL = 3; // chunks in flight
const ATTEMPTS = 4; // per chunk, before the upload stops with an error
const RETRY_DELAYS = [1000, 3000, 6000]; // ms before the 2nd, 3rd, 4th attempt
const CRED_KEY = 'mpgw.credentials';
const UPLOADS_KEY = 'mpgw.uploads';
const PROTOCOL_KEY = 'mpgw.protocol'; // 'note' or 'tus'
const TUS_CHUNK_KEY = 'mpgw.tusChunkSize';
const TUS_ENDPOINT = '/_tus/';
const TUS_DEFAULT_CHUNK = 5 * 1024 * 1024;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function fmtDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso || '' : d.toLocaleString();
}

// ---------------------------------------------------------------- credentials

let creds = null; // {username, token}

function loadCreds() {
  for (const store of [sessionStorage, localStorage]) {
    try {
      const c = JSON.parse(store.getItem(CRED_KEY));
      if (c?.username && c?.token) return c;
    } catch { /* ignore a damaged entry */ }
  }
  return null;
}

function saveCreds(c, remember) {
  clearCreds();
  (remember ? localStorage : sessionStorage).setItem(CRED_KEY, JSON.stringify(c));
}

function clearCreds() {
  sessionStorage.removeItem(CRED_KEY);
  localStorage.removeItem(CRED_KEY);
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(message, { status = 0, code = -1, data = null, network = false } = {}) {
    super(message);
    this.name = 'ApiError';
    Object.assign(this, { status, code, data, network });
  }
}

function abortError() {
  return new DOMException('aborted', 'AbortError');
}

// The envelope's data, or an ApiError carrying its msg.
function envelope(status, text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(`unexpected reply from the server (HTTP ${status})`, { status });
  }
  if (body.code !== 0) {
    throw new ApiError(body.msg || `error ${body.code} (HTTP ${status})`, { status, code: body.code, data: body.data });
  }
  return body.data;
}

// POST (urlencoded) or GET to /file/<endpoint>; the token goes in the Authorization header.
async function api(endpoint, fields = {}, { method = 'POST', signal } = {}) {
  const params = new URLSearchParams({ username: creds.username, ...fields });
  let url = `/file/${endpoint}`;
  const init = { method, headers: { Authorization: `Bearer ${creds.token}` }, signal };
  if (method === 'GET') url += `?${params}`;
  else init.body = params;
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError('cannot reach the server (network error)', { network: true });
  }
  return envelope(resp.status, await resp.text());
}

async function hexSha256(buf) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

// One chunk as multipart/form-data, the text fields before `file` (the server reads them
// first). XMLHttpRequest rather than fetch: only it reports upload progress.
async function sendChunk(job, index, blob, signal) {
  const form = new FormData();
  form.append('username', creds.username);
  form.append('uploadid', job.uploadId);
  form.append('index', String(index));
  let body = blob;
  if (globalThis.crypto?.subtle) {
    // Web Crypto exists in secure contexts (https, localhost): let the server check the chunk.
    const buf = await blob.arrayBuffer();
    form.append('chunkhash', await hexSha256(buf));
    body = new Blob([buf]);
  }
  form.append('file', body, 'chunk');
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const stop = () => xhr.abort();
    const done = () => {
      signal.removeEventListener('abort', stop);
      job.inflight.delete(xhr);
      scheduleRender();
    };
    xhr.open('POST', '/file/mpupload/uppart');
    xhr.setRequestHeader('Authorization', `Bearer ${creds.token}`);
    xhr.upload.onprogress = (e) => {
      job.inflight.set(xhr, Math.min(e.loaded, blob.size));
      scheduleRender();
    };
    xhr.onload = () => {
      done();
      try {
        resolve(envelope(xhr.status, xhr.responseText));
      } catch (e) {
        reject(e);
      }
    };
    xhr.onerror = () => {
      done();
      reject(new ApiError(`network error while sending chunk ${index}`, { network: true }));
    };
    xhr.onabort = () => {
      done();
      reject(abortError());
    };
    signal.addEventListener('abort', stop);
    job.inflight.set(xhr, 0);
    xhr.send(form);
  });
}

// ---------------------------------------------------------------- tus

function base64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

// Upload-Metadata: the file's name and, when the browser knows it, its type (values base64).
function tusMetadata(file) {
  const enc = new TextEncoder();
  const pairs = [`filename ${base64(enc.encode(file.name))}`];
  if (file.type) pairs.push(`filetype ${base64(enc.encode(file.type))}`);
  return pairs.join(',');
}

// An ApiError from a tus answer: its status and the server's text.
function tusError(what, status, text, offset = null) {
  const msg = (text || '').trim() || `HTTP ${status}`;
  return new ApiError(`${what}: ${msg} (HTTP ${status})`, { status, data: { offset } });
}

async function tusFetch(method, url, headers = {}, signal = undefined) {
  try {
    return await fetch(url, {
      method,
      headers: { Authorization: `Bearer ${creds.token}`, 'Tus-Resumable': '1.0.0', ...headers },
      cache: 'no-store',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError('cannot reach the server (network error)', { network: true });
  }
}

// POST: a new upload of the file; its URL and the offset the server answers.
async function tusCreate(file, signal) {
  const resp = await tusFetch('POST', TUS_ENDPOINT, {
    'Upload-Length': String(file.size), 'Upload-Metadata': tusMetadata(file),
  }, signal);
  if (resp.status !== 201) throw tusError('creating the upload', resp.status, await resp.text());
  const loc = resp.headers.get('Location');
  if (!loc) throw new ApiError('the server created the upload but sent no Location');
  return { url: new URL(loc, window.location.href).href, offset: Number(resp.headers.get('Upload-Offset') || 0) };
}

// HEAD: {offset, length} of an upload, or null when the server no longer has it.
async function tusHead(url, signal) {
  const resp = await tusFetch('HEAD', url, {}, signal);
  if ([403, 404, 410].includes(resp.status)) return null;
  if (resp.status !== 200 && resp.status !== 204) throw tusError('asking the upload\'s offset', resp.status, '');
  const offset = Number(resp.headers.get('Upload-Offset'));
  if (!Number.isSafeInteger(offset) || offset < 0) throw new ApiError('HEAD answered no Upload-Offset');
  const length = resp.headers.get('Upload-Length');
  return { offset, length: length === null ? null : Number(length) };
}

// One PATCH of `blob` at `offset`; resolves with the server's new offset. XMLHttpRequest rather
// than fetch: only it reports upload progress. The run's AbortController aborts it (Pause).
async function tusPatch(j, offset, blob, signal) {
  const buf = await blob.arrayBuffer();
  let checksum = null;
  if (globalThis.crypto?.subtle) {
    // Web Crypto exists in secure contexts: the server checks the PATCH (460 on a mismatch).
    checksum = `sha256 ${base64(new Uint8Array(await crypto.subtle.digest('SHA-256', buf)))}`;
  }
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const stop = () => xhr.abort();
    const done = () => {
      signal.removeEventListener('abort', stop);
      j.inflight.delete(xhr);
      scheduleRender();
    };
    xhr.open('PATCH', j.url);
    xhr.setRequestHeader('Authorization', `Bearer ${creds.token}`);
    xhr.setRequestHeader('Tus-Resumable', '1.0.0');
    xhr.setRequestHeader('Upload-Offset', String(offset));
    xhr.setRequestHeader('Content-Type', 'application/offset+octet-stream');
    if (checksum) xhr.setRequestHeader('Upload-Checksum', checksum);
    xhr.upload.onprogress = (e) => {
      j.inflight.set(xhr, Math.min(e.loaded, blob.size));
      scheduleRender();
    };
    xhr.onload = () => {
      done();
      const at = xhr.getResponseHeader('Upload-Offset');
      const n = at === null ? NaN : Number(at);
      if (xhr.status === 204 || xhr.status === 200) {
        if (Number.isSafeInteger(n) && n >= offset) resolve(n);
        else reject(new ApiError(`PATCH answered Upload-Offset ${at}`, { status: xhr.status }));
      } else {
        reject(tusError(`PATCH at ${offset}`, xhr.status, xhr.responseText, Number.isSafeInteger(n) ? n : null));
      }
    };
    xhr.onerror = () => {
      done();
      reject(new ApiError(`network error while sending bytes ${offset}–${offset + blob.size}`, { network: true }));
    };
    xhr.onabort = () => {
      done();
      reject(abortError());
    };
    signal.addEventListener('abort', stop);
    j.inflight.set(xhr, 0);
    xhr.send(buf);
  });
}

// The protocol and tus chunk size chosen on the page (remembered in localStorage).
function currentProtocol() {
  return localStorage.getItem(PROTOCOL_KEY) === 'tus' ? 'tus' : 'note';
}

function tusChunkSize() {
  const n = Number(localStorage.getItem(TUS_CHUNK_KEY));
  return Number.isSafeInteger(n) && n > 0 ? n : TUS_DEFAULT_CHUNK;
}

// ---------------------------------------------------------------- unfinished uploads (localStorage)

function recordKey(user, file) {
  return JSON.stringify([user, file.name, file.size, file.lastModified]);
}

// A tus upload's fingerprint: the same file identity, apart from the note API's records.
function tusRecordKey(user, file) {
  return JSON.stringify(['tus', user, file.name, file.size, file.lastModified]);
}

function loadRecords() {
  try {
    return JSON.parse(localStorage.getItem(UPLOADS_KEY)) || {};
  } catch {
    return {};
  }
}

function saveRecords(recs) {
  localStorage.setItem(UPLOADS_KEY, JSON.stringify(recs));
}

function saveRecord(job) {
  const recs = loadRecords();
  const f = job.file;
  if (job.protocol === 'tus') {
    recs[job.key] = {
      protocol: 'tus', user: creds.username, name: f.name, size: f.size, lastModified: f.lastModified,
      url: job.url, started: recs[job.key]?.started || Date.now(),
    };
    saveRecords(recs);
    return;
  }
  recs[job.key] = {
    user: creds.username, name: f.name, size: f.size, lastModified: f.lastModified, hash: job.hash,
    uploadId: job.uploadId || null, chunkCount: job.count || null, started: recs[job.key]?.started || Date.now(),
  };
  saveRecords(recs);
}

function forgetRecord(key) {
  const recs = loadRecords();
  delete recs[key];
  saveRecords(recs);
}

// ---------------------------------------------------------------- the upload job

let job = null;

// States: hashing, starting, uploading, paused, completing, done, instant, cancelled, failed.
const ACTIVE = new Set(['hashing', 'starting', 'uploading', 'completing']);

function newJob(file, protocol = 'note') {
  const tus = protocol === 'tus';
  return {
    file, protocol, key: (tus ? tusRecordKey : recordKey)(creds.username, file),
    state: tus ? 'starting' : 'hashing', hash: null, hashed: 0,
    // tus: the upload's URL and the offset the server acknowledged.
    url: null, offset: 0,
    // inflight: XMLHttpRequest -> bytes of its chunk sent so far. abort: stops the current run
    // (hashing, requests, retry waits); each run (start, resume) gets a new one.
    uploadId: null, chunkSize: 0, count: 0, present: new Set(), inflight: new Map(),
    abort: new AbortController(), error: null, note: '', retry: null, samples: [],
  };
}

function chunkBytes(j, index) {
  return Math.max(0, Math.min(j.chunkSize, j.file.size - (index - 1) * j.chunkSize));
}

function uploadedBytes(j) {
  let n = j.protocol === 'tus' ? j.offset : 0;
  for (const i of j.present) n += chunkBytes(j, i);
  for (const b of j.inflight.values()) n += b;
  return Math.min(n, j.file.size);
}

// Stops everything in flight (chunks already stored stay stored).
function halt(j) {
  j.abort.abort();
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortError());
      return;
    }
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      reject(abortError());
    }, { once: true });
  });
}

function retryable(e) {
  return e.network || e.status >= 500 || [408, 409, 429].includes(e.status) || e.code === 10006;
}

async function startFile(file) {
  if (job) halt(job);
  const j = newJob(file, currentProtocol());
  job = j;
  const ctl = j.abort;
  showError('');
  render();
  if (j.protocol === 'tus') {
    try {
      await runTus(j, loadRecords()[j.key]?.url || null);
    } catch (e) {
      stopped(j, e, ctl);
    }
    return;
  }
  try {
    const rec = loadRecords()[j.key];
    if (rec?.hash) {
      j.hash = rec.hash; // the same file (name, size, modification time) was hashed before
    } else {
      j.hash = await sha256File(file, (done) => {
        j.hashed = done;
        scheduleRender();
      }, j.abort.signal);
      saveRecord(j);
    }
    await run(j, rec?.uploadId);
  } catch (e) {
    stopped(j, e, ctl);
  }
}

// init (a fresh upload, or the server's answer for one already open), the chunks, complete.
async function run(j, earlierId = null) {
  const ctl = j.abort;
  const signal = ctl.signal;
  j.state = 'starting';
  render();
  const f = j.file;
  let r = await api('mpupload/init', { filehash: j.hash, filesize: String(f.size), filename: f.name }, { signal });
  if (r.Challenge) {
    // Prove the file is held (the hash alone proves nothing): SHA-256 of the nonce and the
    // asked byte ranges. Stored content is then linked at once; otherwise the answer is init's.
    r = await api('mpupload/instant', { uploadid: r.UploadID, nonce: r.Challenge.Nonce, proof: await proveFile(f, r.Challenge) }, { signal });
  }
  if (r.Instant) {
    j.state = 'instant';
    j.count = r.ChunkCount;
    j.chunkSize = r.ChunkSize;
    j.present = new Set(Array.from({ length: r.ChunkCount }, (_, i) => i + 1));
    forgetRecord(j.key);
    render();
    refreshFiles();
    return;
  }
  j.uploadId = r.UploadID;
  j.chunkSize = r.ChunkSize;
  j.count = r.ChunkCount;
  j.present = new Set(r.ChunksPresent);
  saveRecord(j);
  if (r.Resumed) {
    j.note = `resumed: ${j.present.size} of ${j.count} chunks already uploaded`;
  } else if (earlierId && earlierId !== r.UploadID) {
    j.note = 'the earlier upload of this file is gone from the server: starting over';
  }
  j.samples = [];
  for (let round = 0; ; round++) {
    await sendMissing(j, ctl);
    j.state = 'completing';
    render();
    try {
      await api('mpupload/complete', { uploadid: j.uploadId, filehash: j.hash, filesize: String(f.size), filename: f.name }, { signal });
      break;
    } catch (e) {
      if (e.code === 10008 && round < 2 && Array.isArray(e.data?.missing)) {
        for (const i of e.data.missing) j.present.delete(i); // the server lacks these: send again
        continue;
      }
      if (e.code === 10007) {
        // The bytes sent do not hash to filehash: the file changed since it was hashed.
        forgetRecord(j.key);
        api('mpupload/cancel', { uploadid: j.uploadId }).catch(() => {});
        throw new ApiError(`${e.message}: the file changed during the upload? Select it again to start over`, e);
      }
      throw e;
    }
  }
  j.state = 'done';
  forgetRecord(j.key);
  render();
  refreshFiles();
}

// tus: HEAD the earlier upload URL (continue from its offset; start over when the server no
// longer has it) or POST a new upload, then PATCH the rest in order, one chunk at a time.
async function runTus(j, earlierUrl = null) {
  const ctl = j.abort;
  const signal = ctl.signal;
  const f = j.file;
  j.state = 'starting';
  render();
  let at = null;
  if (earlierUrl) {
    at = await tusHead(earlierUrl, signal);
    if (at && at.length !== null && at.length !== f.size) at = null; // not this file's upload
    if (!at) {
      forgetRecord(j.key);
      j.note = 'the earlier upload of this file is gone from the server: starting over';
    }
  }
  if (at) {
    j.url = earlierUrl;
    j.offset = at.offset;
    j.note = `resumed: ${fmtBytes(at.offset)} of ${fmtBytes(f.size)} already uploaded`;
  } else {
    const created = await tusCreate(f, signal);
    j.url = created.url;
    j.offset = created.offset;
  }
  saveRecord(j);
  j.state = 'uploading';
  j.samples = [];
  render();
  const chunk = tusChunkSize();
  let failures = 0;
  while (j.offset < f.size) {
    const start = j.offset;
    try {
      j.offset = await tusPatch(j, start, f.slice(start, Math.min(f.size, start + chunk)), signal);
      failures = 0;
      j.retry = null;
      scheduleRender();
    } catch (e) {
      if (e.name === 'AbortError' || signal.aborted) throw e;
      if (!(retryable(e) || e.status === 460) || ++failures >= ATTEMPTS) throw e;
      j.retry = { text: `${e.message}; retry ${failures} of ${ATTEMPTS - 1}` };
      scheduleRender();
      await sleep(RETRY_DELAYS[failures - 1], signal);
      // Whatever arrived of the failed PATCH is stored: continue from the server's offset.
      const now = await tusHead(j.url, signal);
      if (!now) {
        forgetRecord(j.key);
        throw new ApiError('the upload is gone from the server: select the file again to start over', { status: 404 });
      }
      j.offset = now.offset;
    }
  }
  j.state = 'done';
  forgetRecord(j.key);
  render();
  refreshFiles();
}

// The proof for init's challenge: hex SHA-256 of the nonce (its text) and the bytes of each
// asked range of the file, in order.
async function proveFile(file, challenge) {
  const h = new Sha256();
  h.update(new TextEncoder().encode(challenge.Nonce));
  for (const r of challenge.Ranges) {
    h.update(new Uint8Array(await file.slice(r.Offset, r.Offset + r.Length).arrayBuffer()));
  }
  return h.hex();
}

// Sends every chunk the server does not have, PARALLEL at a time.
async function sendMissing(j, ctl) {
  j.state = 'uploading';
  render();
  const queue = [];
  for (let i = 1; i <= j.count; i++) if (!j.present.has(i)) queue.push(i);
  let failure = null;
  const worker = async () => {
    while (queue.length > 0 && !ctl.signal.aborted) {
      const index = queue.shift();
      try {
        await sendWithRetry(j, index, ctl.signal);
        j.present.add(index);
        scheduleRender();
      } catch (e) {
        if (!failure && e.name !== 'AbortError') failure = e;
        ctl.abort(); // one chunk gave up (or a pause): stop the others too
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
  if (failure) throw failure;
  ctl.signal.throwIfAborted();
}

async function sendWithRetry(j, index, signal) {
  const start = (index - 1) * j.chunkSize;
  const blob = j.file.slice(start, start + chunkBytes(j, index));
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await sendChunk(j, index, blob, signal);
      if (j.retry?.index === index) j.retry = null;
      return r;
    } catch (e) {
      if (e.name === 'AbortError' || signal.aborted || !retryable(e) || attempt >= ATTEMPTS) throw e;
      j.retry = { index, text: `${e.message}; retry ${attempt} of ${ATTEMPTS - 1}` };
      scheduleRender();
      await sleep(RETRY_DELAYS[attempt - 1], signal);
    }
  }
}

// Where a run ended other than by success: paused, cancelled, or an error.
function stopped(j, e, ctl) {
  if (j !== job || ctl !== j.abort) return; // replaced by another file or another run meanwhile
  if (e?.name === 'AbortError') {
    if (j.state !== 'cancelled') j.state = 'paused';
  } else {
    j.state = 'failed';
    j.error = e;
    if (e?.code === 10003 || (j.protocol === 'tus' && e?.status === 401)) signedOut('Your token was refused: sign in again.');
  }
  render();
}

function pause() {
  if (!job || !ACTIVE.has(job.state) || job.state === 'hashing') return;
  job.state = 'paused';
  halt(job);
  render();
}

async function resume() {
  const j = job;
  if (!j || !['paused', 'failed'].includes(j.state) || (j.protocol !== 'tus' && !j.hash)) return;
  j.abort.abort(); // whatever is left of the previous run
  const ctl = new AbortController();
  j.abort = ctl;
  j.error = null;
  j.retry = null;
  try {
    if (j.protocol === 'tus') await runTus(j, j.url);
    else await run(j, j.uploadId);
  } catch (e) {
    stopped(j, e, ctl);
  }
}

async function cancel() {
  const j = job;
  if (!j || ['done', 'instant', 'cancelled'].includes(j.state)) return;
  j.state = 'cancelled';
  halt(j);
  forgetRecord(j.key);
  j.note = '';
  render();
  if (j.protocol === 'tus' && j.url) {
    // termination: the server drops the upload and the bytes it had
    try {
      const resp = await tusFetch('DELETE', j.url);
      if (resp.status !== 204 && resp.status !== 404 && resp.status !== 410) {
        showError(`Cancel: ${tusError('DELETE', resp.status, await resp.text()).message}`);
      }
    } catch (e) {
      showError(`Cancel: ${e.message}`);
    }
  } else if (j.uploadId) {
    try {
      await api('mpupload/cancel', { uploadid: j.uploadId });
    } catch (e) {
      if (e.code !== 10004) showError(`Cancel: ${e.message}`);
    }
  }
  renderPending();
}

// ---------------------------------------------------------------- rendering

let renderQueued = false;

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

const STATE_TEXT = {
  hashing: 'computing the SHA-256…',
  starting: 'starting…',
  uploading: 'uploading',
  paused: 'paused',
  completing: 'completing…',
  done: 'done',
  instant: 'stored instantly (already on the server)',
  cancelled: 'cancelled',
};

function rate(j, bytes) {
  const now = performance.now();
  if (j.state !== 'uploading') {
    j.samples = [];
    return 0;
  }
  j.samples.push([now, bytes]);
  while (j.samples.length > 2 && now - j.samples[0][0] > 3000) j.samples.shift();
  const [t0, b0] = j.samples[0];
  return now - t0 > 250 ? ((bytes - b0) * 1000) / (now - t0) : 0;
}

// The protocol choice, and the chunk size that only tus uses.
function renderOptions() {
  const tus = currentProtocol() === 'tus';
  $('protocol').value = tus ? 'tus' : 'note';
  const busy = Boolean(job && ACTIVE.has(job.state));
  $('protocol').disabled = busy;
  $('chunk-size').disabled = busy; // a run reads it when it starts (a new file, or Resume)
  $('chunk-size-label').hidden = !tus;
  $('chunk-size').value = String(tusChunkSize());
  $('hint-note').hidden = tus;
  $('hint-tus').hidden = !tus;
}

function render() {
  const j = job;
  const box = $('job');
  box.hidden = !j;
  renderOptions();
  renderPending();
  if (!j) return;
  const size = j.file.size;
  $('job-name').textContent = j.file.name;
  $('job-size').textContent = fmtBytes(size);
  let stats = '';
  let frac;
  if (j.state === 'hashing') {
    frac = size ? j.hashed / size : 1;
    stats = `${fmtBytes(j.hashed)} of ${fmtBytes(size)} hashed · ${Math.floor(frac * 100)}%`;
  } else {
    const sent = uploadedBytes(j);
    frac = size ? sent / size : j.present.size >= j.count && j.count > 0 ? 1 : 0;
    stats = `${fmtBytes(sent)} of ${fmtBytes(size)} · ${Math.floor(frac * 100)}%`;
    const r = rate(j, sent);
    if (r > 0) stats += ` · ${fmtBytes(r)}/s`;
    if (j.count && j.state !== 'instant') stats += ` · chunk${j.count === 1 ? '' : 's'} ${j.present.size}/${j.count}`;
    if (j.protocol === 'tus') stats += ' · tus';
  }
  $('bar-fill').style.width = `${(frac * 100).toFixed(2)}%`;
  box.dataset.state = j.state;
  box.dataset.chunksDone = String(j.present.size);
  box.dataset.chunksTotal = String(j.count);
  box.dataset.uploadId = j.uploadId || '';
  box.dataset.protocol = j.protocol;
  box.dataset.offset = String(j.offset);
  box.dataset.uploadUrl = j.url || '';
  let text = STATE_TEXT[j.state] || j.state;
  if (j.state === 'failed') text = `upload stopped: ${j.error?.message || j.error}`;
  if (j.state === 'failed' && j.error?.network) text += ' (it continues when the connection is back, or press Resume)';
  if (j.state === 'uploading' && j.retry) text += ` (${j.retry.text})`;
  $('job-state').textContent = text;
  $('job-state').className = j.state === 'failed' ? 'error-text' : j.state === 'done' || j.state === 'instant' ? 'ok-text' : '';
  $('job-stats').textContent = stats;
  $('job-note').hidden = !j.note;
  $('job-note').textContent = j.note;
  $('pause').disabled = !['starting', 'uploading'].includes(j.state);
  $('resume').disabled = !['paused', 'failed'].includes(j.state) || (j.protocol !== 'tus' && !j.hash);
  $('cancel').disabled = ['done', 'instant', 'cancelled'].includes(j.state);
  $('file').disabled = ACTIVE.has(j.state);
  $('job-buttons').hidden = ['done', 'instant', 'cancelled'].includes(j.state);
  box.classList.toggle('hashing', j.state === 'hashing');
  box.classList.toggle('finished', j.state === 'done' || j.state === 'instant');
}

// Unfinished uploads of this user other than the current one.
function renderPending() {
  const list = $('pending-list');
  list.replaceChildren();
  if (!creds) return;
  const recs = Object.entries(loadRecords()).filter(([k, r]) => r.user === creds.username && k !== job?.key);
  $('pending').hidden = recs.length === 0;
  for (const [k, r] of recs) {
    const li = document.createElement('li');
    const name = document.createElement('b');
    name.textContent = r.name;
    const info = document.createElement('span');
    info.className = 'muted';
    info.textContent = ` ${fmtBytes(r.size)}${r.protocol === 'tus' ? ' (tus)' : ''}, started ${fmtDate(r.started)} `;
    const discard = document.createElement('button');
    discard.type = 'button';
    discard.className = 'link';
    discard.textContent = 'discard';
    discard.title = 'Cancel this upload on the server and forget it';
    discard.onclick = async () => {
      forgetRecord(k);
      renderPending();
      if (r.protocol === 'tus') {
        if (r.url) tusFetch('DELETE', r.url).catch(() => {});
      } else if (r.uploadId) {
        api('mpupload/cancel', { uploadid: r.uploadId }).catch(() => {});
      }
    };
    li.append(name, info, discard);
    list.append(li);
  }
}

function showError(msg) {
  $('error').hidden = !msg;
  $('error').textContent = msg;
}

// ---------------------------------------------------------------- file list

// Links cannot carry headers, and a token never goes into a URL: each click asks the server for
// a signed link to the file that works for a few minutes, and follows it.
async function download(name) {
  try {
    const l = await api('link', { filename: name });
    const a = document.createElement('a');
    a.href = l.URL;
    a.download = name.split('/').pop();
    a.rel = 'noreferrer';
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    if (e.code === 10003) signedOut('Your token was refused: sign in again.');
    else showError(`Downloading ${name}: ${e.message}`);
  }
}

async function refreshFiles() {
  if (!creds) return;
  let data;
  try {
    data = await api('query', {}, { method: 'GET' });
  } catch (e) {
    if (e.code === 10003) signedOut('Your token was refused: sign in again.');
    else showError(`Listing your files: ${e.message}`);
    return;
  }
  const body = $('file-list');
  body.replaceChildren();
  const files = data.Files || [];
  $('no-files').hidden = files.length > 0;
  $('file-table').hidden = files.length === 0;
  for (const f of files) {
    const tr = document.createElement('tr');
    tr.dataset.name = f.FileName;
    const cells = [f.FileName, fmtBytes(f.FileSize), fmtDate(f.UploadAt)].map((t, i) => {
      const td = document.createElement('td');
      td.textContent = t;
      if (i === 1) td.className = 'num';
      if (i === 0 && f.FileHash) td.title = f.FileHash;
      return td;
    });
    const actions = document.createElement('td');
    actions.className = 'actions';
    const a = document.createElement('a');
    a.href = '#';
    a.textContent = 'Download';
    a.className = 'download';
    a.onclick = (ev) => {
      ev.preventDefault();
      download(f.FileName);
    };
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'delete danger';
    del.textContent = 'Delete';
    del.onclick = () => deleteFile(f.FileName, del);
    actions.append(a, del);
    tr.append(...cells, actions);
    body.append(tr);
  }
}

// First click arms the button, a second one within 4 s deletes.
async function deleteFile(name, button) {
  if (!button.classList.contains('armed')) {
    button.classList.add('armed');
    button.textContent = 'Really delete?';
    setTimeout(() => {
      button.classList.remove('armed');
      button.textContent = 'Delete';
    }, 4000);
    return;
  }
  button.disabled = true;
  try {
    await api('delete', { filename: name });
    showError('');
  } catch (e) {
    showError(`Deleting ${name}: ${e.message}`);
  }
  refreshFiles();
}

// ---------------------------------------------------------------- sign in / out

function showSignedIn(on) {
  $('signin').hidden = on;
  $('upload').hidden = !on;
  $('files').hidden = !on;
  $('who').hidden = !on;
  $('who-name').textContent = on ? creds.username : '';
}

function signedOut(msg = '') {
  if (job) halt(job);
  job = null;
  creds = null;
  clearCreds();
  showSignedIn(false);
  $('file-list').replaceChildren();
  render();
  showError(msg);
}

async function signIn(c, remember) {
  creds = c;
  try {
    await api('query', { limit: '1' }, { method: 'GET' });
  } catch (e) {
    creds = null;
    if (e.code === 10003) clearCreds();
    showSignedIn(false);
    showError(`Sign-in failed: ${e.message}`);
    return false;
  }
  if (remember !== undefined) saveCreds(c, remember);
  showError('');
  showSignedIn(true);
  render();
  refreshFiles();
  return true;
}

function init() {
  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = $('signin-button');
    button.disabled = true;
    await signIn({ username: $('username').value.trim(), token: $('token').value }, $('remember').checked);
    button.disabled = false;
    $('token').value = '';
  });
  $('signout').onclick = () => signedOut();
  $('file').addEventListener('change', (ev) => {
    const f = ev.target.files?.[0];
    ev.target.value = ''; // so that choosing the same file again fires `change` again
    if (f) startFile(f);
  });
  $('protocol').addEventListener('change', (ev) => {
    localStorage.setItem(PROTOCOL_KEY, ev.target.value === 'tus' ? 'tus' : 'note');
    render();
  });
  $('chunk-size').addEventListener('change', (ev) => {
    localStorage.setItem(TUS_CHUNK_KEY, ev.target.value);
    render();
  });
  $('pause').onclick = pause;
  $('resume').onclick = resume;
  $('cancel').onclick = cancel;
  $('refresh').onclick = refreshFiles;
  // After a network drop the upload stops with an error; it goes on when the browser is back online.
  window.addEventListener('online', () => {
    if (job?.state === 'failed' && job.error?.network) resume();
  });
  creds = loadCreds();
  if (creds) {
    showSignedIn(true); // optimistic; signIn() checks the token
    signIn(creds);
  } else {
    showSignedIn(false);
  }
  render();
}

init();
