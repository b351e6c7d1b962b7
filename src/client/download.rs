//! `mpgw download s3://BUCKET/KEY FILE`: parallel ranged GETs into `FILE.mpgw-part`, resumable.
//! `mpgw download --legacy NAME FILE` does the same with a legacy user's file, through signed
//! links that the legacy API issues (renewed before they expire).
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
use super::legacy::{LegacyClient, Link};
use super::progress::Progress;
use super::s3::{ObjectInfo, S3Client};
use super::settings::S3Settings;
use super::{Error, Plan, Result, retry};
use crate::client::args::DownloadArgs;
use crate::model::checksum::normalize_etag;

/// A body that sends nothing for this long is given up (and retried).
const IDLE: Duration = Duration::from_secs(60);

/// Downloads; returns the path written.
pub async fn download(args: &DownloadArgs, progress: &Progress) -> Result<String> {
    let t = &args.transfer;
    let (source, name, label) = if args.legacy {
        legacy_source(args)?
    } else {
        let (bucket, key) = super::parse_s3_url(&args.source)?;
        if key.is_empty() || key.ends_with('/') {
            return Err(Error::Usage(format!(
                "{}: expected s3://BUCKET/KEY of an object",
                args.source
            )));
        }
        let s3 = S3Client::new(S3Settings::resolve(t)?, usize::from(t.jobs))?;
        let label = format!("s3://{bucket}/{key}");
        let name = key.rsplit('/').next().unwrap_or(&key).to_owned();
        (Source::S3 { s3, bucket, key }, name, label)
    };
    let mut target = args.file.clone();
    if target.is_dir() {
        target.push(&name);
    }
    let job = Job {
        source: &source,
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
    progress.summary("downloaded", &label);
    Ok(target.display().to_string())
}

fn legacy_source(args: &DownloadArgs) -> Result<(Source, String, String)> {
    let t = &args.transfer;
    let endpoint = t
        .endpoint
        .clone()
        .or_else(|| {
            std::env::var("AWS_ENDPOINT_URL")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .ok_or_else(|| Error::Usage("--legacy needs --endpoint (the mpgw server)".into()))?;
    let (Some(username), Some(token)) = (&args.username, &args.token) else {
        return Err(Error::Usage(
            "--legacy needs --username and --token (or MPGW_USERNAME and MPGW_TOKEN)".into(),
        ));
    };
    if args.source.starts_with("s3://") || args.source.is_empty() {
        return Err(Error::Usage(
            "with --legacy the source is a file name on the server, not s3://…".into(),
        ));
    }
    let client = LegacyClient::new(&endpoint, username, token, usize::from(t.jobs))?;
    let name = args
        .source
        .rsplit('/')
        .next()
        .unwrap_or(&args.source)
        .to_owned();
    let label = format!("{} (legacy, user {username})", args.source);
    let source = Source::Legacy {
        client,
        filename: args.source.clone(),
        link: tokio::sync::Mutex::new(None),
    };
    Ok((source, name, label))
}

/// Where the bytes come from.
enum Source {
    S3 {
        s3: S3Client,
        bucket: String,
        key: String,
    },
    /// A legacy user's file, read through signed links (the current one kept for reuse).
    Legacy {
        client: LegacyClient,
        filename: String,
        link: tokio::sync::Mutex<Option<Link>>,
    },
}

/// A link this close to its expiry is renewed before it is used.
const LINK_MARGIN: u64 = 30;
/// Legacy code of "invalid or expired download link".
const BAD_LINK: &str = "10020";

impl Source {
    /// (endpoint, bucket, key): what the journal names the download by.
    fn identity(&self) -> (&str, String, &str) {
        match self {
            Self::S3 { s3, bucket, key } => (s3.endpoint(), bucket.clone(), key),
            Self::Legacy {
                client, filename, ..
            } => (
                client.endpoint(),
                format!("legacy:{}", client.username()),
                filename,
            ),
        }
    }

    async fn head(&self) -> Result<ObjectInfo> {
        match self {
            Self::S3 { s3, bucket, key } => s3.head_object(bucket, key).await.map_err(|e| match e
                .code()
            {
                Some("NotFound") => Error::Usage(format!("s3://{bucket}/{key}: no such object")),
                _ => e,
            }),
            Self::Legacy { .. } => {
                let link = self.link(true).await?;
                Ok(ObjectInfo {
                    size: link.size,
                    etag: link.etag,
                })
            }
        }
    }

    /// A link valid for a while yet (a new one with `renew`).
    async fn link(&self, renew: bool) -> Result<Link> {
        let Self::Legacy {
            client,
            filename,
            link,
        } = self
        else {
            unreachable!("links are the legacy source's");
        };
        let mut current = link.lock().await;
        match &*current {
            Some(l) if !renew && l.expires > super::legacy::unix_now() + LINK_MARGIN => {
                Ok(l.clone())
            }
            _ => {
                let fresh = client
                    .link(filename, None)
                    .await
                    .map_err(|e| match e.code() {
                        Some("10010") => Error::Usage(format!("{filename}: no such file")),
                        _ => e,
                    })?;
                *current = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }

    async fn get_range(
        &self,
        range: std::ops::Range<u64>,
        etag: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        match self {
            Self::S3 { s3, bucket, key } => {
                s3.get_object_range(bucket, key, range, Some(etag)).await
            }
            Self::Legacy { client, .. } => {
                let link = self.link(false).await?;
                match client.get_range(&link.url, range.clone()).await {
                    // Expired meanwhile (clocks differ): once more with a new link.
                    Err(e) if e.code() == Some(BAD_LINK) => {
                        let link = self.link(true).await?;
                        client.get_range(&link.url, range).await
                    }
                    r => r,
                }
            }
        }
    }
}

struct Job<'a> {
    source: &'a Source,
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
            self.source.head().await
        })
        .await?;
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
        let (endpoint, bucket, key) = self.source.identity();
        if let Some(j) = journal::load::<DownloadJournal>(&self.journal_path) {
            let same = j.endpoint == endpoint && j.bucket == bucket && j.key == key;
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
            endpoint: endpoint.to_owned(),
            bucket,
            key: key.to_owned(),
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
        let resp = self.source.get_range(offset..offset + len, etag).await?;
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
