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
//!
//! From S3, the object's stored layout (GetObjectAttributes) is checked too: its size and part
//! count against HeadObject's, the listed parts' sizes against the object's, and, once every
//! byte is on disk, each part's checksum and the whole object's against the file. A server
//! without GetObjectAttributes (501, or a refusal) gets the download without those checks. A
//! mismatch fails the download and drops its journal, so the next run fetches everything again.

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
use super::s3::{ObjectInfo, ObjectLayout, S3Client, StoredPart};
use super::settings::S3Settings;
use super::{Error, Plan, Result, retry};
use crate::client::args::DownloadArgs;
use crate::model::Checksum;
use crate::model::checksum::{ChecksumType, Hasher, b64, normalize_etag};

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

    /// The object's stored layout, when the server tells it (GetObjectAttributes).
    async fn layout(&self, etag: &str) -> Result<Option<ObjectLayout>> {
        match self {
            Self::S3 { s3, bucket, key } => s3.get_object_attributes(bucket, key, etag).await,
            Self::Legacy { .. } => Ok(None),
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
        let expected = self.expected(&object).await?;
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
        if object.size > 0 {
            self.fetch_missing(&plan, &object, journal, missing).await?;
        }
        let Some(expected) = expected.filter(Expected::checks_bytes) else {
            return Ok(());
        };
        let path = self.part_path.clone();
        let checked = tokio::task::spawn_blocking(move || expected.verify(&path))
            .await
            .map_err(|e| Error::Local(format!("verifying: {e}")))?;
        match checked {
            Ok(what) => {
                self.progress.note(&format!("verified {what}"));
                Ok(())
            }
            Err(e) => {
                journal::remove(&self.journal_path)?;
                Err(e)
            }
        }
    }

    /// What the server's stored layout lets the download be checked against (S3 only);
    /// refuses a layout that contradicts HeadObject.
    async fn expected(&self, object: &ObjectInfo) -> Result<Option<Expected>> {
        if matches!(self.source, Source::Legacy { .. }) {
            return Ok(None);
        }
        let layout = retry(
            self.attempts,
            "GetObjectAttributes",
            self.progress,
            async || self.source.layout(&object.etag).await,
        )
        .await?;
        match layout {
            Some(layout) => Expected::new(object, layout).map(Some),
            None => {
                self.progress
                    .note("the server does not answer GetObjectAttributes: parts not verified");
                Ok(None)
            }
        }
    }

    /// Fetches the parts not yet done, `jobs` at a time, journaling each once it is on disk.
    async fn fetch_missing(
        &self,
        plan: &Plan,
        object: &ObjectInfo,
        journal: DownloadJournal,
        missing: Vec<u32>,
    ) -> Result<()> {
        let journal = tokio::sync::Mutex::new(journal);
        stream::iter(missing)
            .map(|n| {
                let (etag, journal) = (&object.etag, &journal);
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

/// The stored layout a finished download is checked against.
#[derive(Debug)]
struct Expected {
    size: u64,
    /// The object's parts in order, covering it exactly; empty when the server lists none.
    parts: Vec<StoredPart>,
    whole: Option<(Checksum, ChecksumType)>,
}

impl Expected {
    /// Checks the layout against HeadObject's size and ETag.
    fn new(object: &ObjectInfo, layout: ObjectLayout) -> Result<Self> {
        let bad = |why: String| Err(Error::Integrity(format!("GetObjectAttributes: {why}")));
        if let Some(size) = layout.size.filter(|s| *s != object.size) {
            return bad(format!("{size} bytes, HeadObject said {}", object.size));
        }
        // A multipart ETag ends in `-<part count>`.
        let etag_count = object
            .etag
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u32>().ok());
        if let (Some(a), Some(b)) = (layout.parts_count, etag_count)
            && a != b
        {
            return bad(format!("{a} parts, the ETag says {b}"));
        }
        if !layout.parts.is_empty() {
            let listed = layout.parts.len();
            if layout
                .parts_count
                .is_some_and(|n| usize::try_from(n).ok() != Some(listed))
            {
                return bad(format!(
                    "{listed} parts listed of {}",
                    layout.parts_count.unwrap_or_default()
                ));
            }
            if !layout.parts.windows(2).all(|w| w[0].number < w[1].number) {
                return bad("parts out of order".into());
            }
            let total: u64 = layout.parts.iter().map(|p| p.size).sum();
            if total != object.size {
                return bad(format!(
                    "the parts hold {total} bytes, the object {}",
                    object.size
                ));
            }
        }
        let whole = layout.checksum.map(|(c, t)| {
            // A checksum of an object without parts is of its bytes; of a multipart one,
            // COMPOSITE unless the server says otherwise (as S3 did before it said at all).
            let t = t.unwrap_or(if layout.parts_count.is_some() {
                ChecksumType::Composite
            } else {
                ChecksumType::FullObject
            });
            (c, t)
        });
        Ok(Self {
            size: object.size,
            parts: layout.parts,
            whole,
        })
    }

    /// Whether any checksum can be computed over the downloaded bytes.
    fn checks_bytes(&self) -> bool {
        self.parts.iter().any(|p| p.checksum.is_some())
            || match &self.whole {
                Some((_, ChecksumType::FullObject)) => true,
                Some((_, ChecksumType::Composite)) => !self.parts.is_empty(),
                None => false,
            }
    }

    /// Reads the file once, checking every part checksum and the whole-object one; says what
    /// was verified.
    fn verify(&self, path: &Path) -> Result<String> {
        use std::io::Read as _;
        let mut file = std::fs::File::open(path).map_err(Error::local(path))?;
        let whole_only = [StoredPart {
            number: 1,
            size: self.size,
            checksum: None,
        }];
        let segments = if self.parts.is_empty() {
            &whole_only[..]
        } else {
            &self.parts[..]
        };
        let mut full = match &self.whole {
            Some((c, ChecksumType::FullObject)) => Some(Hasher::new(c.algorithm)),
            _ => None,
        };
        // COMPOSITE: the checksum of the parts' digests, in the object's algorithm.
        let composite = match &self.whole {
            Some((c, ChecksumType::Composite)) if !self.parts.is_empty() => Some(c.algorithm),
            _ => None,
        };
        let mut digests = Vec::new();
        let mut checked = 0;
        let mut buf = vec![0u8; 1 << 20];
        for part in segments {
            let mut own = part.checksum.as_ref().map(|c| Hasher::new(c.algorithm));
            let mut for_composite = composite.map(Hasher::new);
            let mut left = part.size;
            while left > 0 {
                let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                file.read_exact(&mut buf[..n]).map_err(Error::local(path))?;
                let data = &buf[..n];
                for h in [own.as_mut(), for_composite.as_mut(), full.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    h.update(data);
                }
                left -= n as u64;
            }
            if let (Some(h), Some(want)) = (own, &part.checksum) {
                let got = h.finish();
                if got != want.value {
                    return Err(Error::Integrity(format!(
                        "part {}: {} {} where the server has {}",
                        part.number,
                        want.algorithm.as_str(),
                        b64(&got),
                        b64(&want.value)
                    )));
                }
                checked += 1;
            }
            if let Some(h) = for_composite {
                digests.extend(h.finish());
            }
        }
        let whole = match (&self.whole, full, composite) {
            (Some((want, _)), Some(h), _) => Some((want, h.finish())),
            (Some((want, _)), None, Some(alg)) => {
                Some((want, crate::model::checksum::checksum_of(alg, &digests)))
            }
            _ => None,
        };
        if let Some((want, got)) = &whole
            && *got != want.value
        {
            return Err(Error::Integrity(format!(
                "the object's {} is {} where the server has {}",
                want.algorithm.as_str(),
                b64(got),
                b64(&want.value)
            )));
        }
        let mut what = Vec::new();
        if checked > 0 {
            what.push(format!("{checked} part checksum(s)"));
        }
        if let Some((want, _)) = whole {
            what.push(format!("the object's {}", want.algorithm.as_str()));
        }
        Ok(what.join(" and "))
    }
}
