"""tuspy (PyPI `tuspy`, module `tusclient`) against the gateway's /_tus/ endpoint, one step per
run: compat/tus.sh runs it several times and SIGKILLs the gateway in between.

    python compat/tus/tuspy_suite.py start    WORK_DIR LABEL N   # create, send N chunks
    python compat/tus/tuspy_suite.py resume   WORK_DIR LABEL N   # new Uploader from the stored
                                                                 # URL, N chunks (0: to the end)
    python compat/tus/tuspy_suite.py midpatch WORK_DIR LABEL     # a PATCH that stops mid-body

Environment: TUS_BASE (the gateway's base URL), TUS_TOKEN1 (bearer token of the user).

The file is WORK_DIR/tuspy-30m.bin (30 MiB + 777 B, made by `start`), sent in 1 MiB chunks
with an Upload-Checksum (sha1) on each PATCH. The upload URL is kept in tuspy's FileStorage
(WORK_DIR/tuspy-urls.json, keyed by the file's fingerprint), so every run builds a new Uploader
with store_url=True and resumes from the offset HEAD reports. WORK_DIR/tuspy-state.json holds
what the previous run knows: the URL, the last offset the server confirmed, and how many bytes
a cut PATCH sent past it; `resume` checks HEAD's offset against it.

`midpatch` sends the headers of a 1 MiB PATCH at the current offset and 600 KiB of its body,
writes WORK_DIR/tuspy-midpatch.ready, then waits for an answer that never comes: tus.sh kills
the gateway meanwhile. The next `resume` accepts any offset from the one before the cut up to
the bytes that went out (the contract keeps the bytes that arrived; a crash may lose the ones
not yet stored), and finishes from there.

A failing check prints `FAIL [tus/LABEL] <step>: <what>` and exits 1. When the upload is
complete, `object tuspy-30m.bin <file> <type>` is appended to WORK_DIR/tus-expect.tsv for tus.sh
to compare through S3 GetObject.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

from importlib.metadata import version as pkg_version

from tusclient import client as tus_client
from tusclient.storage import filestorage

MiB = 1024 * 1024
SIZE = 30 * MiB + 777
CHUNK = MiB
CUT_SENT = 600 * 1024
NAME = "tuspy-30m.bin"
CONTENT_TYPE = "application/x-tuspy-compat"

MODE = sys.argv[1] if len(sys.argv) > 1 else ""
WORK = sys.argv[2] if len(sys.argv) > 2 else ""
LABEL = sys.argv[3] if len(sys.argv) > 3 else "?"
BASE = os.environ.get("TUS_BASE", "").rstrip("/")
TOKEN = os.environ.get("TUS_TOKEN1", "")
PATH = os.path.join(WORK, NAME)
STATE = os.path.join(WORK, "tuspy-state.json")
READY = os.path.join(WORK, "tuspy-midpatch.ready")

STEP = {
    "start": "tuspy: create, send the first chunks",
    "resume": "tuspy: resume from HEAD's offset with a new Uploader",
    "midpatch": "tuspy: a PATCH cut off by a SIGKILL of the gateway",
}.get(MODE, MODE)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fail(msg):
    log(f"FAIL [tus/{LABEL}] {STEP}: {msg}")
    sys.exit(1)


def server_bug(msg):
    fail(f"SERVER BUG: {msg}")


def load_state():
    with open(STATE) as f:
        return json.load(f)


def save_state(state):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, STATE)


def make_uploader():
    """A new Uploader for the file; with a URL in the storage it HEADs it for the offset."""
    client = tus_client.TusClient(f"{BASE}/_tus/", headers={"Authorization": f"Bearer {TOKEN}"})
    storage = filestorage.FileStorage(os.path.join(WORK, "tuspy-urls.json"))
    return client.uploader(
        PATH,
        chunk_size=CHUNK,
        metadata={"filename": NAME, "filetype": CONTENT_TYPE},
        store_url=True,
        url_storage=storage,
        upload_checksum=True,
        retries=0,
    )


def send_chunks(uploader, n):
    """N chunks (0: until the end); the state records every confirmed offset."""
    state = {"url": uploader.url, "offset": uploader.offset, "cut_sent": 0}
    done = 0
    while uploader.offset < SIZE and (n == 0 or done < n):
        before = uploader.offset
        try:
            uploader.upload_chunk()
        except Exception as e:  # tusclient's TusUploadFailed / TusCommunicationError
            status = getattr(e, "status_code", None)
            body = getattr(e, "response_content", b"") or b""
            fail(f"PATCH {uploader.url} at offset {before}: {type(e).__name__} {status} {body[:200]!r} {e}")
        if uploader.offset != min(before + CHUNK, SIZE):
            server_bug(f"PATCH {uploader.url} at {before} with {min(CHUNK, SIZE - before)} B answered Upload-Offset {uploader.offset}")
        state = {"url": uploader.url, "offset": uploader.offset, "cut_sent": 0}
        save_state(state)
        done += 1
    log(f"{done} chunk(s) sent; offset {uploader.offset} of {SIZE}")
    if uploader.offset == SIZE:
        with open(os.path.join(WORK, "tus-expect.tsv"), "a") as f:
            f.write(f"object\t{NAME}\t{PATH}\t{CONTENT_TYPE}\n")
    return state


def start(n):
    with open(PATH, "wb") as f:
        left = SIZE
        while left > 0:
            f.write(os.urandom(min(left, MiB)))
            left -= min(left, MiB)
    for stale in (STATE, os.path.join(WORK, "tuspy-urls.json")):
        if os.path.exists(stale):
            os.remove(stale)
    up = make_uploader()
    if up.url is not None:
        fail(f"a fresh URL storage gave the URL {up.url}")
    send_chunks(up, n)
    log(f"upload URL {up.url}")


def resume(n):
    state = load_state()
    try:
        up = make_uploader()
    except Exception as e:
        fail(f"new Uploader (HEAD {state['url']}): {type(e).__name__}: {e}")
    if up.url != state["url"]:
        fail(f"the URL storage gave {up.url}, expected {state['url']}")
    lo, hi = state["offset"], state["offset"] + state["cut_sent"]
    log(f"HEAD {up.url}: Upload-Offset {up.offset} (last confirmed {lo}, up to {hi} sent)")
    if not lo <= up.offset <= hi:
        if up.offset < lo:
            server_bug(f"HEAD {up.url} after a restart: Upload-Offset {up.offset}, but a PATCH had been answered with {lo}")
        fail(f"HEAD {up.url}: Upload-Offset {up.offset}, more than the {hi} bytes ever sent")
    if state["cut_sent"]:
        log(f"the cut PATCH kept {up.offset - lo} of the {state['cut_sent']} bytes it sent")
    send_chunks(up, n)


def midpatch():
    state = load_state()
    up = make_uploader()
    if up.url != state["url"] or up.offset != state["offset"]:
        fail(f"before the cut PATCH: URL {up.url} offset {up.offset}, expected {state['url']} at {state['offset']}")
    offset = up.offset
    with open(PATH, "rb") as f:
        f.seek(offset)
        body = f.read(CHUNK)
    u = urllib.parse.urlsplit(up.url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
    conn.putrequest("PATCH", u.path)
    for k, v in {
        "Tus-Resumable": "1.0.0",
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": str(offset),
        "Content-Length": str(len(body)),
    }.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(body[:CUT_SENT])
    save_state({"url": up.url, "offset": offset, "cut_sent": CUT_SENT})
    with open(READY, "w") as f:
        f.write(f"{CUT_SENT} of {len(body)} bytes sent at offset {offset}\n")
    log(f"PATCH {up.url} at {offset}: {CUT_SENT} of {len(body)} body bytes sent; waiting for the gateway to die")
    try:
        resp = conn.getresponse()
        fail(f"the cut PATCH got an answer: {resp.status} {resp.read()[:200]!r} (the gateway was to be killed first)")
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        log(f"the cut PATCH ended with {type(e).__name__}: {e}")
    finally:
        conn.close()


def main():
    if MODE not in ("start", "resume", "midpatch") or not WORK:
        log(__doc__)
        sys.exit(2)
    if not BASE or not TOKEN:
        fail("TUS_BASE and TUS_TOKEN1 must be set")
    log(f"tuspy {pkg_version('tuspy')} against {BASE}/_tus/")
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    if MODE == "start":
        start(n)
    elif MODE == "resume":
        resume(n)
    else:
        midpatch()


if __name__ == "__main__":
    main()
