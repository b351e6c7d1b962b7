//! Part and object bytes on local disk.
//!
//! Layout: `<data>/blobs/<blob id>/<file>`. A blob id is an upload id (its parts, which become the
//! object's files at Complete, with no copy or rename) or a fresh id for a PutObject/CopyObject.
//! Paths derive only from ids we generated and names we chose, never from bucket or object keys.
//!
//! Writes go to `.tmp-<random>` in the blob directory, are hashed on a blocking thread as they are
//! written (the socket task only moves `Bytes` over a channel: no copy of part bytes), fsynced,
//! and renamed into place only when the caller commits. A `Staged` file that is dropped
//! uncommitted is removed, so a failed or cancelled request leaves nothing behind; a crash leaves
//! at worst `.tmp-*` or unreferenced files, which `sweep` removes.
//!
//! The store also keeps the free-space reserve (`--min-free-space`): `reserve` holds room for a
//! write before any byte of it is read and refuses one that would take the disk below the
//! reserve, counting the room other writes in flight hold (see `space`); `write` takes more room
//! as a body runs past what it holds. So a full disk is met with a clean refusal rather than
//! with ENOSPC halfway through a part (which is still handled: the temp file goes and the caller
//! maps `StorageFull` to "insufficient storage").

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use md5::{Digest as _, Md5};

use super::io::IoPool;
use super::space::{Reservation, Space};
use super::stage::Stage;
use crate::metrics::{Fsync, Metrics};
use crate::model::BodyError;
use crate::model::checksum::{ChecksumAlgorithm, Hasher};
use crate::model::{BlobId, ObjectPart, random_hex};

const TMP_PREFIX: &str = ".tmp-";
/// Read size for GetObject; large reads keep syscalls few.
const READ_CHUNK: usize = 512 * 1024;
/// How soon a blob whose removal came due while a GET read it is looked at again.
const READ_RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Body(BodyError),
    #[error("body exceeds {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Debug)]
pub struct DiskStore {
    blobs: PathBuf,
    fsync: bool,
    metrics: Option<Arc<Metrics>>,
    space: Option<Arc<Space>>,
    faults: Option<Faults>,
    graveyard: Arc<Graveyard>,
    io: IoPool,
}

/// Blobs waiting out a grace period before removal. One queue and one task for all of them: a
/// sleeping task per deleted object cost ~0.5 KiB each, and with a 2-minute grace a busy server
/// keeps tens of thousands pending.
#[derive(Debug, Default)]
struct Graveyard {
    due: Mutex<BinaryHeap<Reverse<(Instant, BlobId)>>>,
    /// GETs streaming each blob now. A blob that comes due while read is put back: a GET opens
    /// its part files one after another, so a long download would otherwise end short.
    readers: Mutex<HashMap<BlobId, usize>>,
    /// Wakes the task when an entry may have become the earliest.
    wake: tokio::sync::Notify,
    /// Started on the first removal, in the runtime that asked for it.
    started: OnceLock<()>,
}

/// Counts one GET of a blob in [`Graveyard::readers`] while it lives.
struct ReadGuard {
    graveyard: Arc<Graveyard>,
    id: BlobId,
}

impl ReadGuard {
    fn new(graveyard: Arc<Graveyard>, id: BlobId) -> Self {
        *lock(&graveyard.readers).entry(id.clone()).or_default() += 1;
        Self { graveyard, id }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut readers = lock(&self.graveyard.readers);
        if let Some(n) = readers.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&self.id);
            }
        }
    }
}

/// A poisoned lock still guards consistent data here: every critical section is one assignment
/// or one heap operation.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Each step of a disk operation that can fail; a fault hook sees them in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskStep {
    /// Creating the blob directory and the temp file.
    CreateTemp,
    /// Writing one chunk of a body.
    WriteChunk,
    FsyncFile,
    /// Renaming a temp file to its final name.
    Rename,
    FsyncDir,
    /// Hard-linking one file into another blob (CopyObject).
    Link,
    /// Removing a committed file or a blob directory.
    Remove,
}

/// Test-only fault injection: called before each `DiskStep`; an `Err` is returned as that
/// step's I/O error. None in production, where each step costs one branch.
pub type FaultHook = Arc<dyn Fn(DiskStep) -> std::io::Result<()> + Send + Sync>;

#[derive(Clone)]
struct Faults(FaultHook);

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faults")
    }
}

fn step(faults: Option<&Faults>, s: DiskStep) -> std::io::Result<()> {
    faults.map_or(Ok(()), |f| (f.0)(s))
}

/// A fully written, fsynced temp file with its digests, not yet visible under its final name.
#[derive(Debug)]
pub struct Staged {
    tmp: Option<PathBuf>,
    dir: PathBuf,
    fsync: bool,
    metrics: Option<Arc<Metrics>>,
    faults: Option<Faults>,
    pub size: u64,
    pub md5: [u8; 16],
    pub checksum: Option<Vec<u8>>,
    /// How the body ended early, when the write kept what had arrived (`write_with`).
    pub cut: Option<BodyError>,
}

impl Staged {
    /// Renames the file to `name` in its blob directory (and fsyncs the directory so the rename
    /// survives a crash before the state store records it).
    pub async fn commit(mut self, name: &str) -> std::io::Result<()> {
        let tmp = self.tmp.take().expect("staged file present until commit");
        let dir = self.dir.clone();
        let fsync = self.fsync;
        let metrics = self.metrics.clone();
        let faults = self.faults.clone();
        let target = dir.join(name);
        let res = tokio::task::spawn_blocking(move || {
            step(faults.as_ref(), DiskStep::Rename)
                .and_then(|()| std::fs::rename(&tmp, &target))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })?;
            if fsync {
                // Not durable, so not committed: the caller records nothing, nothing may stay.
                step(faults.as_ref(), DiskStep::FsyncDir)
                    .and_then(|()| {
                        timed(metrics.as_deref(), Fsync::Dir, || {
                            std::fs::File::open(&dir)?.sync_all()
                        })
                    })
                    .inspect_err(|_| {
                        let _ = std::fs::remove_file(&target);
                    })?;
            }
            Ok(())
        })
        .await;
        res.map_err(std::io::Error::other)?
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Body bytes held in memory per request between the socket and the disk: enough to keep the
/// socket, the hashing stage and the writing stage busy at once, small enough that many parts
/// arriving together cost little.
const IN_FLIGHT: u64 = 512 << 10;

/// What the writing stage owns.
struct Sink {
    file: std::fs::File,
    sum: Option<Hasher>,
    size: u64,
    /// Disk time only: waits for the client's next bytes are not the disk's fault.
    writing: Duration,
    faults: Option<Faults>,
    /// Bytes on disk so far, shared with the write's reservation.
    written: Arc<std::sync::atomic::AtomicU64>,
}

impl Sink {
    fn write(&mut self, c: &Bytes) -> std::io::Result<()> {
        if let Some(h) = self.sum.as_mut() {
            h.update(c);
        }
        let started = Instant::now();
        step(self.faults.as_ref(), DiskStep::WriteChunk)?;
        self.file.write_all(c)?;
        self.writing += started.elapsed();
        self.size += c.len() as u64;
        self.written.fetch_add(c.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn hash(m: &mut Md5, c: &Bytes) -> std::io::Result<()> {
    m.update(c);
    Ok(())
}

/// A file being read by a GET: its path (for errors), handle, and bytes left.
struct OpenFile {
    path: PathBuf,
    file: std::fs::File,
    left: u64,
}

/// One chunk read on the I/O pool; hands back the file for the next chunk.
type ReadJob =
    Pin<Box<dyn Future<Output = (std::io::Result<Bytes>, Option<OpenFile>)> + Send + Sync>>;

/// The state of a GET's read: the files still to read, the one open now.
struct Reader {
    io: IoPool,
    plan: std::collections::VecDeque<(PathBuf, u64, u64)>,
    open: Option<OpenFile>,
    _guard: ReadGuard,
}

impl Reader {
    /// The job that reads the next chunk, or None at the end.
    fn next_job(&mut self) -> Option<ReadJob> {
        let open = match self.open.take() {
            Some(o) if o.left > 0 => Either::Open(o),
            _ => Either::Next(self.plan.pop_front()?),
        };
        let io = self.io.clone();
        // The last file of the read: up to two chunks of it in one job, so a ranged GET of up to
        // 1 MiB costs one hop to the pool, and the bytes held stay at two chunks.
        let last = self.plan.is_empty();
        Some(Box::pin(async move {
            let job = io.run(move || {
                let mut o = match open {
                    Either::Open(o) => o,
                    Either::Next((path, from, to)) => {
                        let opened = std::fs::File::open(&path).and_then(|mut f| {
                            f.seek(SeekFrom::Start(from))?;
                            Ok(f)
                        });
                        match opened {
                            Ok(file) => OpenFile {
                                path,
                                file,
                                left: to - from,
                            },
                            Err(e) => return (Err(e), None),
                        }
                    }
                };
                let chunk = if last && o.left <= 2 * READ_CHUNK as u64 {
                    2 * READ_CHUNK
                } else {
                    READ_CHUNK
                };
                let want = usize::try_from(o.left.min(chunk as u64)).unwrap_or(chunk);
                // Read into spare capacity: zero-filling the buffer first cost 5.5% of a GET's
                // instructions.
                let mut buf = Vec::with_capacity(want);
                match (&mut o.file).take(want as u64).read_to_end(&mut buf) {
                    Err(e) => (Err(e), None),
                    Ok(0) => (
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("{} is shorter than its record", o.path.display()),
                        )),
                        None,
                    ),
                    Ok(n) => {
                        o.left -= n as u64;
                        (Ok(Bytes::from(buf)), Some(o))
                    }
                }
            });
            match job.await {
                Ok(done) => done,
                Err(e) => (Err(e), None),
            }
        }))
    }
}

enum Either {
    Open(OpenFile),
    Next((PathBuf, u64, u64)),
}

impl DiskStore {
    pub fn open(data_dir: &Path, fsync: bool) -> std::io::Result<Self> {
        let blobs = data_dir.join("blobs");
        std::fs::create_dir_all(&blobs)?;
        Ok(Self {
            blobs,
            fsync,
            metrics: None,
            space: None,
            faults: None,
            graveyard: Arc::default(),
            io: IoPool::default(),
        })
    }

    /// Runs the data path's disk jobs on at most `threads` threads (`--io-threads`).
    #[must_use]
    pub fn with_io_threads(mut self, threads: usize) -> Self {
        self.io = IoPool::new(threads);
        self
    }

    /// Keeps `bytes` free on the data disk: `reserve` refuses writes that would go below.
    #[must_use]
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        self.space = Some(Arc::new(Space::new(bytes, self.blobs.clone())));
        self
    }

    /// Installs a fault hook (tests only: see `FaultHook`).
    #[must_use]
    pub fn with_faults(mut self, hook: FaultHook) -> Self {
        self.faults = Some(Faults(hook));
        self
    }

    /// Holds room for a write of `len` bytes (0 for a length not known yet) until the returned
    /// reservation is dropped; fails with `StorageFull` when the disk, less the room writes in
    /// flight hold, would go below the reserve. Without a reserve nothing is held or refused.
    pub fn reserve(&self, len: u64) -> std::io::Result<Reservation> {
        Reservation::hold(self.space.as_ref(), len)
    }

    /// Reports write and fsync latency to `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn blob_dir(&self, id: &BlobId) -> PathBuf {
        self.blobs.join(id.as_str())
    }

    /// Streams `body` into a temp file in blob `id`. The bytes are received here, on the
    /// request's task, and queued for two stages on the I/O pool that run side by side: one
    /// hashes them (MD5), the other writes them (with `checksum`, when asked). A stage holds a
    /// thread only while it has bytes to work on, so no thread waits for the client. Fails with
    /// `TooLarge` as soon as more than `max` bytes arrive, and with `StorageFull` when the body
    /// runs past the room `room` holds and the disk has no more above the reserve. The room goes
    /// back when the write ends.
    pub async fn write<S>(
        &self,
        id: &BlobId,
        body: S,
        max: u64,
        checksum: Option<ChecksumAlgorithm>,
        room: Reservation,
    ) -> Result<Staged, WriteError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        self.write_with(id, body, max, checksum, room, false).await
    }

    /// [`write`](Self::write), and with `keep_prefix` a body that fails (cut off, timed out)
    /// keeps what arrived before: those bytes are written, fsynced and staged like a whole body,
    /// with the failure in `Staged::cut` (tus resumes from the bytes a server made durable).
    pub async fn write_with<S>(
        &self,
        id: &BlobId,
        mut body: S,
        max: u64,
        checksum: Option<ChecksumAlgorithm>,
        mut room: Reservation,
        keep_prefix: bool,
    ) -> Result<Staged, WriteError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let dir = self.blob_dir(id);
        let tmp = dir.join(format!("{TMP_PREFIX}{}", random_hex(8)));
        let fsync = self.fsync;
        let metrics = self.metrics.clone();
        let faults = self.faults.clone();
        // From here on, dropping `guard` removes the temp file whatever happens.
        let mut guard = Staged {
            tmp: Some(tmp.clone()),
            dir: dir.clone(),
            fsync,
            metrics: metrics.clone(),
            faults: faults.clone(),
            size: 0,
            md5: [0; 16],
            checksum: None,
            cut: None,
        };
        let create_faults = faults.clone();
        let file = self
            .io
            .run(move || -> std::io::Result<std::fs::File> {
                step(create_faults.as_ref(), DiskStep::CreateTemp)?;
                std::fs::create_dir_all(&dir)?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
            })
            .await??;
        let wake = Arc::new(tokio::sync::Notify::new());
        let sink = Sink {
            file,
            sum: checksum.map(Hasher::new),
            size: 0,
            writing: Duration::ZERO,
            faults: faults.clone(),
            written: room.written(),
        };
        let writer = Stage::new(self.io.clone(), sink, Sink::write, wake.clone());
        let hasher = Stage::new(self.io.clone(), Md5::new(), hash, wake.clone());

        let mut received = 0u64;
        let mut ended = false;
        loop {
            let done = writer.progress()?.min(hasher.progress()?);
            if ended && done == received {
                break;
            }
            if ended || received - done >= IN_FLIGHT {
                wake.notified().await;
                continue;
            }
            match body.next().await {
                None => ended = true,
                Some(Err(e)) if keep_prefix => {
                    guard.cut = Some(e);
                    ended = true;
                }
                Some(chunk) => {
                    let chunk = chunk.map_err(WriteError::Body)?;
                    received += chunk.len() as u64;
                    if received > max {
                        return Err(WriteError::TooLarge(max));
                    }
                    if !chunk.is_empty() {
                        room.cover(received)?;
                        hasher.push(chunk.clone());
                        writer.push(chunk);
                    }
                }
            }
        }
        let (Some(mut s), Some(m)) = (writer.finish(), hasher.finish()) else {
            unreachable!("both stages are idle once every byte is done");
        };
        if let Some(m) = &metrics {
            m.part_write(s.writing);
        }
        let sync_metrics = metrics.clone();
        let (size, sum) = self
            .io
            .run(move || -> std::io::Result<(u64, Option<Vec<u8>>)> {
                if fsync {
                    step(faults.as_ref(), DiskStep::FsyncFile)?;
                    timed(sync_metrics.as_deref(), Fsync::File, || s.file.sync_all())?;
                }
                Ok((s.size, s.sum.take().map(Hasher::finish)))
            })
            .await??;
        guard.size = size;
        guard.md5 = m.finalize().into();
        guard.checksum = sum;
        Ok(guard)
    }

    /// Removes one committed file (a replaced or unlisted part). Missing files are fine.
    pub async fn remove_file(&self, id: &BlobId, name: &str) -> std::io::Result<()> {
        let path = self.blob_dir(id).join(name);
        step(self.faults.as_ref(), DiskStep::Remove)?;
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes a whole blob directory. Missing is fine.
    pub async fn remove_blob(&self, id: &BlobId) -> std::io::Result<()> {
        step(self.faults.as_ref(), DiskStep::Remove)?;
        match tokio::fs::remove_dir_all(self.blob_dir(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes a blob after `delay`, so that readers that already hold its manifest can finish,
    /// and not while a GET here is streaming it. If the process stops first, the orphan sweep
    /// removes it.
    pub fn remove_blob_later(&self, id: BlobId, delay: Duration) {
        let graveyard = &self.graveyard;
        lock(&graveyard.due).push(Reverse((Instant::now() + delay, id)));
        graveyard.wake.notify_one();
        graveyard.started.get_or_init(|| {
            tokio::spawn(self.clone().bury());
        });
    }

    /// Removes each queued blob once its time has come; runs as long as the runtime does.
    async fn bury(self) {
        let graveyard = self.graveyard.clone();
        loop {
            let next = lock(&graveyard.due).peek().map(|Reverse((at, _))| *at);
            match next {
                None => graveyard.wake.notified().await,
                Some(at) if at > Instant::now() => {
                    // A `notify_one` before this point leaves a permit, so no push is missed.
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = graveyard.wake.notified() => {}
                    }
                }
                Some(_) => {
                    let Some(Reverse((_, id))) = lock(&graveyard.due).pop() else {
                        continue;
                    };
                    if lock(&graveyard.readers).contains_key(&id) {
                        lock(&graveyard.due).push(Reverse((Instant::now() + READ_RECHECK, id)));
                        continue;
                    }
                    if let Err(e) = self.remove_blob(&id).await {
                        tracing::warn!(blob = %id, error = %e, "could not remove replaced object data");
                    }
                }
            }
        }
    }

    /// Whether a GET in this process is streaming the blob now.
    pub fn being_read(&self, id: &BlobId) -> bool {
        lock(&self.graveyard.readers).contains_key(id)
    }

    /// Blobs queued for removal and not yet removed.
    pub fn pending_removals(&self) -> usize {
        lock(&self.graveyard.due).len()
    }

    /// Hard-links `files` of blob `src` into a new blob `dst` (CopyObject without copying bytes).
    pub async fn link(&self, src: &BlobId, files: &[String], dst: &BlobId) -> std::io::Result<()> {
        let pairs: Vec<(String, String)> = files.iter().map(|f| (f.clone(), f.clone())).collect();
        self.link_as(src, &pairs, dst).await
    }

    /// Hard-links files of blob `src` into blob `dst` under new names (`(from, to)` pairs).
    pub async fn link_as(
        &self,
        src: &BlobId,
        files: &[(String, String)],
        dst: &BlobId,
    ) -> std::io::Result<()> {
        let (s, d) = (self.blob_dir(src), self.blob_dir(dst));
        let files = files.to_vec();
        let fsync = self.fsync;
        let faults = self.faults.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&d)?;
            for (from, to) in &files {
                step(faults.as_ref(), DiskStep::Link)?;
                std::fs::hard_link(s.join(from), d.join(to))?;
            }
            if fsync {
                step(faults.as_ref(), DiskStep::FsyncDir)?;
                std::fs::File::open(&d)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Streams bytes `[start, end)` of the object made of `parts` (in order) from blob `id`.
    pub fn read(
        &self,
        id: &BlobId,
        parts: &[ObjectPart],
        start: u64,
        end: u64,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let dir = self.blob_dir(id);
        // Which files, and where in each, the range covers.
        let mut plan = Vec::new();
        let mut offset = 0u64;
        for p in parts {
            let (ps, pe) = (offset, offset + p.size);
            offset = pe;
            if pe <= start || ps >= end {
                continue;
            }
            let from = start.max(ps) - ps;
            let to = end.min(pe) - ps;
            plan.push((dir.join(&p.file), from, to));
        }
        // Held while the stream lives: done, failed, or the client went away.
        let guard = ReadGuard::new(self.graveyard.clone(), id.clone());
        let reader = Reader {
            io: self.io.clone(),
            plan: plan.into(),
            open: None,
            _guard: guard,
        };
        // One chunk read ahead while the previous one is sent. Nothing runs while the client
        // does not read: the next read is only started when the stream is polled.
        Box::pin(futures_util::stream::unfold(
            (reader, None::<ReadJob>),
            |(mut reader, ahead)| async move {
                let job = match ahead {
                    Some(job) => job,
                    None => reader.next_job()?,
                };
                let (res, open) = job.await;
                reader.open = open;
                match res {
                    Ok(chunk) => {
                        let ahead = reader.next_job();
                        Some((Ok(chunk), (reader, ahead)))
                    }
                    Err(e) => {
                        reader.plan.clear();
                        reader.open = None;
                        Some((Err(e), (reader, None)))
                    }
                }
            },
        ))
    }

    /// Every blob directory with its last modification time.
    pub async fn list_blobs(&self) -> std::io::Result<Vec<(BlobId, SystemTime)>> {
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&blobs)? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(id) = name.to_str().and_then(BlobId::parse) else {
                    continue;
                };
                // Another gateway sharing the data dir (or an abort here) may remove it meanwhile.
                let Some(modified) = modified_if_present(&entry)? else {
                    continue;
                };
                out.push((id, modified));
            }
            Ok(out)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Files in one blob directory with their modification times (temp files included).
    pub async fn list_files(&self, id: &BlobId) -> std::io::Result<Vec<(String, SystemTime)>> {
        let dir = self.blob_dir(id);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let rd = match std::fs::read_dir(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                r => r?,
            };
            for entry in rd {
                let entry = entry?;
                if let Some(name) = entry.file_name().to_str()
                    && let Some(modified) = modified_if_present(&entry)?
                {
                    out.push((name.to_owned(), modified));
                }
            }
            Ok(out)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    pub fn is_temp(name: &str) -> bool {
        name.starts_with(TMP_PREFIX)
    }
}

/// Runs an fsync, reporting its latency.
fn timed(
    metrics: Option<&Metrics>,
    target: Fsync,
    sync: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let started = Instant::now();
    let result = sync();
    if let Some(m) = metrics {
        m.fsync(target, started.elapsed());
    }
    result
}

/// An entry's modification time; None if it vanished since the directory was read (a temp
/// file renamed, a blob removed by a concurrent abort or by another gateway's sweep).
fn modified_if_present(entry: &std::fs::DirEntry) -> std::io::Result<Option<SystemTime>> {
    match entry.metadata().and_then(|m| m.modified()) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checksum::md5_of;

    fn body(chunks: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, BodyError>> + Unpin {
        futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c))))
    }

    fn room(store: &DiskStore) -> Reservation {
        store.reserve(0).unwrap()
    }

    #[tokio::test]
    async fn write_commit_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), true).unwrap();
        let id = BlobId::generate();
        let staged = store
            .write(
                &id,
                body(vec![b"hello ", b"world"]),
                100,
                Some(ChecksumAlgorithm::Crc32),
                room(&store),
            )
            .await
            .unwrap();
        assert_eq!(staged.size, 11);
        assert_eq!(staged.md5, md5_of(b"hello world"));
        staged.commit("1.a").await.unwrap();
        let parts = vec![ObjectPart {
            number: 1,
            md5: String::new(),
            file: "1.a".into(),
            size: 11,
            checksum: None,
        }];
        let got: Vec<Bytes> = store
            .read(&id, &parts, 3, 8)
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(got.concat(), b"lo wo");
        let files = store.list_files(&id).await.unwrap();
        assert_eq!(files.len(), 1);
    }

    /// Queued removals happen in deadline order, an earlier one queued later included, and not
    /// before their time. The gaps between deadlines (2 s, 3 s) leave room for a loaded machine.
    #[tokio::test]
    async fn removals_wait_their_turn() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), false).unwrap();
        let [late, now, soon] = [(); 3].map(|()| {
            let id = BlobId::generate();
            std::fs::create_dir_all(store.blob_dir(&id)).unwrap();
            std::fs::write(store.blob_dir(&id).join("1.a"), b"x").unwrap();
            id
        });
        let exists = |id: &BlobId| store.blob_dir(id).exists();
        let gone = async |id: &BlobId| {
            for _ in 0..200 {
                if !exists(id) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("blob {id} still there after 10 s");
        };
        let start = Instant::now();
        store.remove_blob_later(late.clone(), Duration::from_secs(5));
        // The task is asleep until the late deadline when the earlier ones arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.remove_blob_later(soon.clone(), Duration::from_secs(2));
        store.remove_blob_later(now.clone(), Duration::ZERO);
        gone(&now).await;
        assert!(exists(&soon) && exists(&late));
        gone(&soon).await;
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert!(exists(&late), "removed 3 s early");
        assert_eq!(store.pending_removals(), 1);
        gone(&late).await;
        assert!(start.elapsed() >= Duration::from_secs(5));
        assert_eq!(store.pending_removals(), 0);
    }

    /// A blob that comes due while a GET streams it stays until the GET has read its last part
    /// file (opened only after the first is done), and goes once the stream is dropped.
    #[tokio::test]
    async fn removal_waits_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), false).unwrap();
        let id = BlobId::generate();
        std::fs::create_dir_all(store.blob_dir(&id)).unwrap();
        // Far more than the reader thread runs ahead (the channel holds 4 chunks of 512 KiB).
        let first: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(store.blob_dir(&id).join("1.a"), &first).unwrap();
        std::fs::write(store.blob_dir(&id).join("2.a"), b"tail").unwrap();
        let part = |number, file: &str, size| ObjectPart {
            number,
            md5: String::new(),
            file: file.into(),
            size,
            checksum: None,
        };
        let parts = [part(1, "1.a", first.len() as u64), part(2, "2.a", 4)];
        let total = first.len() as u64 + 4;
        let mut stream = Box::pin(store.read(&id, &parts, 0, total));
        let mut got = stream.next().await.unwrap().unwrap().to_vec();
        assert!(store.being_read(&id));
        store.remove_blob_later(id.clone(), Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(store.blob_dir(&id).exists(), "removed under a reader");
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got.len() as u64, total);
        assert!(got[..first.len()] == first[..] && got.ends_with(b"tail"));
        drop(stream);
        for _ in 0..200 {
            if !store.blob_dir(&id).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !store.blob_dir(&id).exists(),
            "still there 10 s after the reader left"
        );
        assert!(!store.being_read(&id));
    }

    #[test]
    fn reserve() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), false).unwrap();
        assert!(store.reserve(u64::MAX).is_ok(), "no reserve, no refusal");
        let store = store.with_reserve(0);
        assert!(store.reserve(0).is_ok());
        let e = store.reserve(u64::MAX).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::StorageFull,
            "more than the disk has"
        );
        let full = DiskStore::open(dir.path(), false)
            .unwrap()
            .with_reserve(u64::MAX);
        assert_eq!(
            full.reserve(0).unwrap_err().kind(),
            std::io::ErrorKind::StorageFull
        );
    }

    #[tokio::test]
    async fn failures_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), false).unwrap();
        let id = BlobId::generate();
        let err = store
            .write(&id, body(vec![b"0123456789", b"x"]), 10, None, room(&store))
            .await
            .unwrap_err();
        assert!(matches!(err, WriteError::TooLarge(10)));
        let bad = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(BodyError::new(std::io::Error::other("boom"))),
        ]);
        assert!(matches!(
            store.write(&id, bad, 10, None, room(&store)).await,
            Err(WriteError::Body(_))
        ));
        let staged = store
            .write(&id, body(vec![b"abc"]), 10, None, room(&store))
            .await
            .unwrap();
        drop(staged);
        assert!(store.list_files(&id).await.unwrap().is_empty());
    }
}
