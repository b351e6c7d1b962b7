// The test page's script (bundled with esbuild into app.js by compat/tus-browser.sh): Uppy with
// @uppy/tus pointed at the gateway's /_tus/, and hooks for tus-test.mjs on window.tusTest.
//
// window.TUS_CONFIG (config.js, served by the test): endpoint (…/_tus/), token, name, type,
// seed, size, lastModified.
//
// The file is built here from the seeded PRNG (prng.mjs) with a fixed name, type, size and
// lastModified, so that after a page reload the same file added again gets the same Uppy file id,
// hence the same tus fingerprint: tus-js-client finds the upload URL it stored in localStorage
// (storeFingerprintForResuming) and resumes there (HEAD, then PATCH from the server's offset).
//
// The test holds PATCHes from inside the page (onBeforeRequest), never with Playwright's request
// interception: with a route installed, Playwright answers CORS preflights itself, and the
// gateway's CORS would not be exercised.
import Uppy from '@uppy/core';
import Tus from '@uppy/tus';

import { pseudoRandomBytes } from './prng.mjs';

const cfg = window.TUS_CONFIG;
const MIB = 1024 * 1024;

const state = {
  fileId: null,
  started: false,
  progressEvents: 0,
  bytesUploaded: 0,
  bytesTotal: 0,
  maxBytesUploaded: 0,
  pauses: [],          // isPaused values of the upload-pause events
  errors: [],          // upload-error / error events
  success: null,       // { uploadURL } of upload-success
  complete: null,      // { successful, failed } of complete
  uploadURL: null,     // the tus upload URL, once Uppy knows it
  held: [],            // Upload-Offset of PATCHes held by holdFrom()
};
let holdAt = Infinity;

const uppy = new Uppy({ id: 'mpgw-tus', autoProceed: false });
uppy.use(Tus, {
  endpoint: cfg.endpoint,
  headers: { Authorization: `Bearer ${cfg.token}` },
  chunkSize: 1 * MIB,
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: false,
  // No retries: a request the gateway answers wrongly must fail the test, not be retried away.
  retryDelays: null,
  async onBeforeRequest(req) {
    if (req.getMethod() !== 'PATCH') return;
    const offset = Number(req.getHeader('Upload-Offset'));
    if (offset >= holdAt) {
      state.held.push(offset);
      render();
      await new Promise(() => {}); // never sent: the test reloads the page
    }
  },
});

uppy.on('upload-progress', (file, progress) => {
  state.progressEvents += 1;
  state.bytesUploaded = progress.bytesUploaded;
  state.bytesTotal = progress.bytesTotal;
  state.maxBytesUploaded = Math.max(state.maxBytesUploaded, progress.bytesUploaded);
  state.uploadURL = uppy.getFile(file.id)?.tus?.uploadUrl ?? state.uploadURL;
  render();
});
uppy.on('upload-pause', (_file, isPaused) => {
  state.pauses.push(isPaused);
  render();
});
uppy.on('upload-success', (_file, response) => {
  state.success = { uploadURL: response.uploadURL ?? null };
  render();
});
uppy.on('upload-error', (_file, error, response) => {
  state.errors.push(`upload-error: ${error?.message ?? error} (status ${response?.status ?? '-'})`);
  render();
});
uppy.on('error', (error) => {
  state.errors.push(`error: ${error?.message ?? error}`);
  render();
});
uppy.on('complete', (result) => {
  state.complete = { successful: result.successful?.length ?? 0, failed: result.failed?.length ?? 0 };
  render();
});

function snapshot() {
  const file = state.fileId ? uppy.getFile(state.fileId) : null;
  return {
    ...state,
    isPaused: !!file?.isPaused,
    uploadURL: file?.tus?.uploadUrl ?? state.uploadURL,
    storedUploads: Object.keys(localStorage).filter((k) => k.startsWith('tus::')),
  };
}

function render() {
  const pct = state.bytesTotal ? (100 * state.bytesUploaded) / state.bytesTotal : 0;
  document.getElementById('bar').value = pct;
  document.getElementById('pct').textContent = `${pct.toFixed(1)} %`;
  const s = snapshot();
  document.getElementById('status').textContent = [
    `file ${cfg.name} (${cfg.size} B)`,
    `progress ${s.bytesUploaded} / ${s.bytesTotal} B in ${s.progressEvents} events`,
    `paused: ${s.isPaused}; pause events: ${JSON.stringify(s.pauses)}`,
    `upload URL: ${s.uploadURL ?? '-'}`,
    `stored for resuming: ${s.storedUploads.length}`,
    s.complete ? `complete: ${s.complete.successful} successful, ${s.complete.failed} failed` : 'not complete',
    ...s.errors,
  ].join('\n');
}

window.tusTest = {
  addFile() {
    const bytes = pseudoRandomBytes(cfg.seed, cfg.size);
    const data = new File([bytes], cfg.name, { type: cfg.type, lastModified: cfg.lastModified });
    state.fileId = uppy.addFile({ name: cfg.name, type: cfg.type, data, source: 'tus-browser', meta: { origin: 'tus-browser' } });
    render();
    return state.fileId;
  },
  start() {
    state.started = true;
    uppy.upload().catch((e) => state.errors.push(`upload(): ${e?.message ?? e}`));
  },
  pause() {
    return uppy.pauseResume(state.fileId);
  },
  resume() {
    return uppy.pauseResume(state.fileId);
  },
  holdFrom(offset) {
    holdAt = offset;
  },
  state: snapshot,
};
document.getElementById('endpoint').textContent = cfg.endpoint;
render();
window.tusTestReady = true;
