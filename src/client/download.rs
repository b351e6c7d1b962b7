//! `mpgw download s3://BUCKET/KEY FILE`: parallel ranged GETs into `FILE.mpgw-part`, resumable.
//!
//! The part file has the object's size from the start; each part is written at its offset,
//! fsynced, and only then marked done in `FILE.mpgw-download.json`, so after a kill or a crash
//! the journal never claims bytes the file lacks. Every GET carries `If-Match` with the ETag
//! first seen: an object replaced in between fails with 412, and the download starts over (as
//! it does when a re-run finds a different ETag or size). At the end the part file is renamed
//! into place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};

use super::journal::{self, DownloadJournal};
use super::progress::Progress;
use super::s3::{ObjectInfo, S3Client};
use super::settings::S3Settings;
use super::{Error, Plan, Result, retry};
use crate::config::DownloadArgs;
use crate::upload::checksum::normalize_etag;

/// A body that sends nothing for this long is given up (and retried).
const IDLE: Duration = Duration::from_secs(60);

/// Downloads; returns the path written.
pub async fn download(args: &DownloadArgs, progress: &Progress) -> Result<String> {
    let (bucket, key) = super::parse_s3_url(&args.source)?;
    if key.is_empty() || key.ends_with('/') {
        return Err(Error::Usage(format!(
            "{}: expected s3://BUCKET/KEY of an object",
            args.source
        )));
    }
    let t = &args.transfer;
    let s3 = S3Client::new(S3Settings::resolve(t)?, usize::from(t.jobs))?;
    let mut target = args.file.clone();
    if target.is_dir() {
        target.push(key.rsplit('/').next().unwrap_or(&key));
    }
    let job = Job {
        s3: &s3,
        bucket: &bucket,
        key: &key,
        part_path: journal::beside(&target, "mpgw-part"),
        journal_path: journal::beside(&target, "mpgw-download.json"),
        progress,
        attempts: t.retries.max(1),
        jobs: usize::from(t.jobs),
    };
    // One restart when the object changes under us; a second change is reported.
    let mut restarted = false;
    loop {
        match job.run(t.part_size).await {
            Err(e) if e.code() == Some("PreconditionFailed") && !restarted => {
                progress.note("the object changed during the download: starting over");
                journal::remove(&job.journal_path)?;
                restarted = true;
            }
            Err(e) => return Err(e),
            Ok(()) => break,
        }
    }
    tokio::fs::rename(&job.part_path, &target)
        .await
        .map_err(Error::local(&target))?;
    journal::remove(&job.journal_path)?;
    progress.summary("downloaded", &format!("s3://{bucket}/{key}"));
    Ok(target.display().to_string())
}

struct Job<'a> {
    s3: &'a S3Client,
    bucket: &'a str,
    key: &'a str,
    part_path: PathBuf,
    journal_path: PathBuf,
    progress: &'a Progress,
    attempts: u32,
    jobs: usize,
}

impl Job<'_> {
    /// Fills the part file: resumes the journaled download of the same object, or starts one.
    async fn run(&self, part_size: u64) -> Result<()> {
        let object = retry(self.attempts, "HeadObject", self.progress, async || {
            self.s3.head_object(self.bucket, self.key).await
        })
        .await
        .map_err(|e| match e.code() {
            Some("NotFound") => {
                Error::Usage(format!("s3://{}/{}: no such object", self.bucket, self.key))
            }
            _ => e,
        })?;
        let journal = self.journal(&object, part_size).await?;
        let plan = Plan {
            size: object.size,
            part_size: journal.part_size,
        };
        self.progress.start("downloading", object.size);
        let missing: Vec<u32> = (1..=plan.count())
            .filter(|n| !journal.is_done(*n))
            .collect();
        let done = (1..=plan.count())
            .filter(|n| journal.is_done(*n))
            .map(|n| plan.range(n).1)
            .sum();
        self.progress.skip(done);
        if object.size == 0 {
            return Ok(());
        }
        let journal = tokio::sync::Mutex::new(journal);
        stream::iter(missing)
            .map(|n| {
                let (plan, etag, journal) = (&plan, &object.etag, &journal);
                async move {
                    self.fetch_part(plan, etag, n).await?;
                    // Recorded only once the bytes are on disk (fetch_part fsynced them).
                    let mut j = journal.lock().await;
                    j.mark_done(n);
                    let (path, snapshot) = (self.journal_path.clone(), j.clone());
                    tokio::task::spawn_blocking(move || journal::save(&path, &snapshot))
                        .await
                        .map_err(|e| Error::Local(format!("journal: {e}")))?
                }
            })
            .buffer_unordered(self.jobs)
            .try_collect::<()>()
            .await
    }

    /// The journal to continue from, or a new one with an empty part file of the object's size.
    async fn journal(&self, object: &ObjectInfo, part_size: u64) -> Result<DownloadJournal> {
        let part_len = tokio::fs::metadata(&self.part_path)
            .await
            .map(|m| m.len())
            .ok();
        if let Some(j) = journal::load::<DownloadJournal>(&self.journal_path) {
            let same =
                j.endpoint == self.s3.endpoint() && j.bucket == self.bucket && j.key == self.key;
            if same
                && j.etag == object.etag
                && j.size == object.size
                && part_len == Some(object.size)
            {
                return Ok(j);
            }
            self.progress.note("the object or the partial file changed since the interrupted download: starting over");
        }
        let j = DownloadJournal {
            endpoint: self.s3.endpoint().to_owned(),
            bucket: self.bucket.to_owned(),
            key: self.key.to_owned(),
            etag: object.etag.clone(),
            size: object.size,
            part_size: Plan::new(object.size, part_size).part_size,
            done: Vec::new(),
        };
        let file = tokio::fs::File::create(&self.part_path)
            .await
            .map_err(Error::local(&self.part_path))?;
        file.set_len(object.size)
            .await
            .map_err(Error::local(&self.part_path))?;
        journal::save(&self.journal_path, &j)?;
        Ok(j)
    }

    /// Fetches part `n` into its place in the part file, with retries, and fsyncs it.
    async fn fetch_part(&self, plan: &Plan, etag: &str, n: u32) -> Result<()> {
        let (offset, len) = plan.range(n);
        retry(
            self.attempts,
            &format!("part {n}"),
            self.progress,
            async || {
                let got = Arc::new(AtomicU64::new(0));
                let r = self.fetch_once(offset, len, etag, &got).await;
                if r.is_err() {
                    self.progress.dec(got.load(Ordering::Relaxed));
                }
                r
            },
        )
        .await
    }

    async fn fetch_once(&self, offset: u64, len: u64, etag: &str, got: &AtomicU64) -> Result<()> {
        let resp = self
            .s3
            .get_object_range(self.bucket, self.key, offset..offset + len, Some(etag))
            .await?;
        let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
        // A server that ignores If-Match still names the ETag it serves.
        if header(hyper::header::ETAG).is_some_and(|e| normalize_etag(e) != etag) {
            return Err(Error::Service {
                status: 412,
                code: "PreconditionFailed".into(),
                message: "the ETag changed".into(),
            });
        }
        let expected_range = format!("bytes {offset}-{}/", offset + len - 1);
        let whole = resp.status() == hyper::StatusCode::OK && offset == 0;
        if !whole
            && !header(hyper::header::CONTENT_RANGE).is_some_and(|r| r.starts_with(&expected_range))
        {
            return Err(Error::Integrity(format!(
                "asked for {expected_range}…, got {:?}",
                header(hyper::header::CONTENT_RANGE)
            )));
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&self.part_path)
            .await
            .map_err(Error::local(&self.part_path))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(Error::local(&self.part_path))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut body = resp.into_body();
        let mut written = 0u64;
        while written < len {
            let frame = match tokio::time::timeout(IDLE, body.frame()).await {
                Err(_) => return Err(Error::Timeout(IDLE)),
                Ok(None) => {
                    return Err(Error::Transport(format!(
                        "the body ended after {written} of {len} bytes"
                    )));
                }
                Ok(Some(Err(e))) => return Err(Error::Transport(format!("reading the body: {e}"))),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let take = data
                .len()
                .min(usize::try_from(len - written).unwrap_or(usize::MAX));
            out.write_all(&data[..take])
                .await
                .map_err(Error::local(&self.part_path))?;
            written += take as u64;
            got.fetch_add(take as u64, Ordering::Relaxed);
            self.progress.inc(take as u64);
        }
        out.flush().await.map_err(Error::local(&self.part_path))?;
        sync(&self.part_path, out.into_inner()).await
    }
}

async fn sync(path: &Path, file: tokio::fs::File) -> Result<()> {
    file.sync_data().await.map_err(Error::local(path))
}
