//! The upload service: the one core that the S3 API and the legacy API both call. It orchestrates
//! the state store and the disk store and speaks only domain types (no HTTP, no XML, no forms).
//!
//! Ordering rule everywhere: data first (written, fsynced, renamed), state last (one atomic store
//! call). A crash between the two leaves an unreferenced file, never state pointing at nothing.

pub mod append;
mod bucket;
mod complete;
pub mod error;
pub mod events;
pub mod expiry;
pub mod files;
mod listing;
pub mod notify_rules;
mod object;
mod part;
mod recovery;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use md5::{Digest as _, Md5};

pub use self::error::{Error, Result};
use crate::model::checksum::{ChecksumAlgorithm, ChecksumType, ContentHash, normalize_etag};
pub use crate::model::{BodyError, BodyStream, valid_bucket_name};
use crate::model::{Checksum, Millis, ObjectRecord, PartNumber, UploadState, random_hex};
use crate::store::disk::Staged;
use crate::store::space::Reservation;
use crate::store::{DiskStore, MetaStore};

/// A Complete that has been "completing" this long is considered crashed and may be taken over.
pub const STALE_COMPLETE: Duration = Duration::from_secs(60);

/// How long a second Complete or an Abort waits for a running Complete before giving up.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// Completed-upload records are kept this long so that a repeated Complete replays its result.
const KEEP_COMPLETED: Duration = Duration::from_secs(24 * 3600);

/// Replaced or deleted object data stays this long for readers that already hold its manifest.
const REPLACED_GRACE: Duration = Duration::from_secs(120);

/// A reservation against an owner's upload cap whose upload record has not appeared this long
/// after it was made belongs to an init that died between the two steps.
const RESERVATION_GRACE: Duration = Duration::from_secs(60);

/// Who asks for an open upload ([`Uploads::open_upload`]), which decides what they may touch.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    /// Anyone may act: one credential, nobody to tell apart.
    Anyone,
    /// An S3 key, confined to the buckets it owns: another's upload is `AccessDenied`.
    BucketOwner(&'a str),
    /// A key that may read in the bucket but never write there (an S3 key in the legacy bucket).
    ReadOnly,
    /// A user of the shared legacy bucket: another user's upload answers like a missing one.
    User(&'a str),
}

impl Caller<'_> {
    fn may_act(self, owner: &str) -> bool {
        match self {
            Self::Anyone => true,
            Self::BucketOwner(me) | Self::User(me) => me == owner,
            Self::ReadOnly => false,
        }
    }
}

/// A bucket sealed for deletion this long ago whose deletion has not ended belongs to a
/// gateway that died on the way (a live one aborts even many uploads well within it).
pub const STALE_SEAL: Duration = Duration::from_secs(600);

/// Most keys S3 returns in one listing page.
pub const MAX_KEYS: usize = 1000;

#[derive(Clone, Debug)]
pub struct Limits {
    pub min_part_size: u64,
    pub max_part_size: u64,
    /// Temp and unreferenced files younger than this are left alone by the sweep (they may
    /// belong to a request still running, here or on another gateway sharing the data dir).
    pub sweep_grace: Duration,
    /// Server-wide age at which an open upload is abandoned and expired (unless a bucket
    /// lifecycle rule says otherwise). Zero: never.
    pub upload_expiry: Duration,
    /// Most open (or completing) uploads one owner (access key or legacy user) may have; zero:
    /// no limit.
    pub max_uploads_per_key: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_part_size: 5 << 20,
            max_part_size: 5 << 30,
            sweep_grace: Duration::from_secs(900),
            upload_expiry: Duration::from_secs(7 * 24 * 3600),
            max_uploads_per_key: 10_000,
        }
    }
}

/// The checksum a client announces for a body.
#[derive(Clone, Debug)]
pub enum Expected {
    /// In a header, decoded.
    Given(Vec<u8>),
    /// In an aws-chunked trailer: base64 text, set by the decoder before the stream ends.
    Trailer(Arc<OnceLock<String>>),
    /// Nothing to check; compute and keep it.
    Compute,
}

/// What a body must satisfy before it is committed.
#[derive(Clone, Debug, Default)]
pub struct BodyChecks {
    /// Decoded length announced by the client.
    pub length: Option<u64>,
    pub content_md5: Option<[u8; 16]>,
    pub checksum: Option<(ChecksumAlgorithm, Expected)>,
}

/// `If-Match` / `If-None-Match` on a write (PutObject, CompleteMultipartUpload), checked against
/// the object the write would replace, just before it is published.
#[derive(Clone, Debug, Default)]
pub struct WriteCondition {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

impl WriteCondition {
    /// No condition: the write replaces whatever is there.
    pub const NONE: Self = Self {
        if_match: None,
        if_none_match: None,
    };

    fn check(&self, current: Option<&ObjectRecord>) -> Result<()> {
        let matches = |list: &str, rec: &ObjectRecord| {
            list.split(',')
                .any(|t| t.trim() == "*" || normalize_etag(t) == rec.etag)
        };
        if let Some(m) = &self.if_match {
            match current {
                None => return Err(Error::NoSuchKey),
                Some(rec) if !matches(m, rec) => return Err(Error::PreconditionFailed),
                Some(_) => {}
            }
        }
        if let (Some(m), Some(rec)) = (&self.if_none_match, current)
            && matches(m, rec)
        {
            return Err(Error::PreconditionFailed);
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }
}

/// What a Complete's client says the finished object will be; all of it is checked before
/// anything is published (the upload stays open when a check fails).
#[derive(Clone, Debug, Default)]
pub struct CompleteChecks {
    /// The whole file's content hash (the legacy API's `filehash`): the assembled bytes are read
    /// and hashed (BadDigest when they differ).
    pub content: Option<ContentHash>,
    /// `x-amz-mp-object-size`: the sum of the listed parts' sizes.
    pub size: Option<u64>,
    /// `x-amz-checksum-type`: must be the upload's own type.
    pub checksum_type: Option<ChecksumType>,
    /// A whole-object `x-amz-checksum-<alg>`: what the parts' checksums combine to.
    pub checksum: Option<WholeChecksum>,
}

/// A whole-object checksum a Complete's client claims, decoded.
#[derive(Clone, Debug)]
pub struct WholeChecksum {
    pub algorithm: ChecksumAlgorithm,
    pub value: Vec<u8>,
    /// The `-N` of a COMPOSITE value (its part count), when the client wrote one.
    pub parts: Option<usize>,
}

/// One `<Part>` of a CompleteMultipartUpload request.
#[derive(Clone, Debug)]
pub struct ListedPart {
    pub number: PartNumber,
    pub etag: String,
    /// A per-part checksum the client listed (base64 text), with its algorithm.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    pub etag: String,
    pub checksum: Option<Checksum>,
    pub checksum_type: Option<ChecksumType>,
}

/// One page of a listing with a delimiter rolled up into common prefixes.
#[derive(Debug)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or prefix returned: where the next page starts.
    pub last: Option<String>,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            prefixes: Vec::new(),
            truncated: false,
            last: None,
        }
    }
}

/// A body let through [`Uploads::admit`], with the room on the data disk held for it. Dropping
/// it (a request refused or gone before its write) gives the room back.
#[derive(Debug)]
#[must_use = "the room is given back when dropped"]
pub struct Admission(Reservation);

#[derive(Clone)]
pub struct Uploads {
    meta: Arc<dyn MetaStore>,
    disk: DiskStore,
    limits: Limits,
    events: Arc<events::EventSettings>,
    /// Woken whenever this gateway records an event, so the deliverer need not poll for them.
    recorded: Arc<tokio::sync::Notify>,
}

impl Uploads {
    pub fn new(meta: Arc<dyn MetaStore>, disk: DiskStore, limits: Limits) -> Self {
        Self {
            meta,
            disk,
            limits,
            events: Arc::default(),
            recorded: Arc::default(),
        }
    }

    /// The same core with these event targets and delivery rules.
    pub fn with_events(self, events: events::EventSettings) -> Self {
        Self {
            events: Arc::new(events),
            ..self
        }
    }

    /// The stores and limits this core was built from, for a caller that rebuilds it around
    /// wrapped stores (the fault-injection tests). Front ends reach the stores only through
    /// the core's methods.
    pub fn into_parts(self) -> (Arc<dyn MetaStore>, DiskStore, Limits) {
        (self.meta, self.disk, self.limits)
    }

    /// Which state store this is (`redis`, `embedded`…), for logs.
    pub fn store_kind(&self) -> &'static str {
        self.meta.kind()
    }

    /// Whether the state store answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.meta.ping().await?)
    }

    /// Uploads not completed, across every bucket (the open-uploads gauge).
    pub async fn count_open(&self) -> Result<usize> {
        let all = self.meta.all_uploads().await?;
        Ok(all
            .iter()
            .filter(|u| u.state != UploadState::Completed)
            .count())
    }

    /// A secret shared by every gateway on this state store (made by the first that asks).
    pub async fn shared_secret(&self, name: &str) -> Result<String> {
        Ok(self.meta.shared_secret(name, &random_hex(32)).await?)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn disk(&self) -> &DiskStore {
        &self.disk
    }

    /// The one gate a body passes before a byte of it is read (PutObject, UploadPart and its
    /// copy, a legacy chunk): refuses a body announced larger than a part or object may be
    /// (EntityTooLarge), then one the data disk cannot take above its free-space reserve,
    /// counting the room other writes in flight hold (InsufficientStorage). The admission holds
    /// the room until the write it is handed to ends; a body of unknown length (`None`) takes
    /// room as it streams.
    pub fn admit(&self, len: Option<u64>) -> Result<Admission> {
        if len.is_some_and(|l| l > self.limits.max_part_size) {
            return Err(Error::EntityTooLarge);
        }
        Ok(Admission(self.disk.reserve(len.unwrap_or(0))?))
    }
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

fn verify(staged: &Staged, checks: &BodyChecks) -> Result<()> {
    if checks.length.is_some_and(|l| l != staged.size) {
        return Err(Error::IncompleteBody);
    }
    if checks.content_md5.is_some_and(|m| m != staged.md5) {
        return Err(Error::BadDigest(
            "The Content-MD5 you specified did not match what we received.".into(),
        ));
    }
    if let Some((alg, expected)) = &checks.checksum {
        let want = match expected {
            Expected::Given(v) => Some(v.clone()),
            Expected::Trailer(slot) => {
                let text = slot.get().ok_or_else(|| {
                    Error::InvalidRequest("The checksum trailer is missing.".into())
                })?;
                Some(alg.decode(text).ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "Value for {} trailing header is invalid.",
                        alg.header_name()
                    ))
                })?)
            }
            Expected::Compute => None,
        };
        if want.is_some_and(|w| Some(&w) != staged.checksum.as_ref()) {
            return Err(Error::BadDigest(format!(
                "The {} you specified did not match the calculated checksum.",
                alg.as_str()
            )));
        }
    }
    Ok(())
}

/// S3 keys are at most 1024 bytes of UTF-8.
fn check_key(key: &str) -> Result<()> {
    if key.len() > 1024 {
        return Err(Error::KeyTooLong);
    }
    if key.is_empty() {
        return Err(Error::InvalidArgument("Key must not be empty".into()));
    }
    Ok(())
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub blobs: usize,
    pub files: usize,
    pub completed_records: usize,
    /// Bucket deletions a crash had interrupted, finished.
    pub buckets_deleted: usize,
}

fn listed_digest(parts: impl Iterator<Item = (u16, String)>) -> String {
    let mut h = Md5::new();
    for (n, etag) in parts {
        h.update(format!("{n}:{etag}\n").as_bytes());
    }
    hex::encode(h.finalize())
}
