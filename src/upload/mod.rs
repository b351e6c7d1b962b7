//! The upload service: the one core that the S3 API and the legacy API both call. It orchestrates
//! the state store and the disk store and speaks only domain types (no HTTP, no XML, no forms).
//!
//! Ordering rule everywhere: data first (written, fsynced, renamed), state last (one atomic store
//! call). A crash between the two leaves an unreferenced file, never state pointing at nothing.

pub mod error;
pub mod expiry;
pub mod files;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use md5::{Digest as _, Md5};

pub use self::error::{Error, Result};
use crate::model::checksum::{
    ChecksumAlgorithm, ChecksumType, ContentHash, combine_parts, multipart_etag, normalize_etag,
};
use crate::model::{
    BlobId, BucketRecord, Checksum, CompletedResult, CorsRule, Millis, ObjectHeaders, ObjectPart,
    ObjectRecord, PartNumber, PartRecord, UploadId, UploadRecord, UploadState, now_millis,
    random_hex,
};
pub use crate::model::{BodyError, BodyStream, valid_bucket_name};
use crate::store::disk::{Staged, WriteError};
use crate::store::space::Reservation;
use crate::store::{
    AbortUpload, BeginComplete, DeleteBucket, DiskStore, MetaStore, PutPart, UploadCursor,
};

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
}

impl Uploads {
    pub fn new(meta: Arc<dyn MetaStore>, disk: DiskStore, limits: Limits) -> Self {
        Self { meta, disk, limits }
    }

    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
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

    // ---------------- buckets ----------------

    pub async fn create_bucket(&self, owner: &str, name: &str) -> Result<()> {
        if !valid_bucket_name(name) {
            return Err(Error::InvalidBucketName);
        }
        let rec = BucketRecord {
            name: name.to_owned(),
            created: now_millis(),
            owner: owner.to_owned(),
            cors: None,
            lifecycle: None,
        };
        match self.meta.create_bucket(&rec).await? {
            None => Ok(()),
            Some(old) if old.owner == owner => Err(Error::BucketAlreadyOwnedByYou),
            Some(_) => Err(Error::BucketAlreadyExists),
        }
    }

    pub async fn bucket(&self, name: &str) -> Result<BucketRecord> {
        self.meta.get_bucket(name).await?.ok_or(Error::NoSuchBucket)
    }

    /// Sets (Some) or removes (None) a bucket's CORS rules.
    pub async fn set_bucket_cors(&self, name: &str, rules: Option<Vec<CorsRule>>) -> Result<()> {
        self.modify_bucket(name, |rec| rec.cors = rules).await
    }

    /// Changes a bucket's settings (its record) in place.
    pub(crate) async fn modify_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut BucketRecord),
    ) -> Result<()> {
        let mut rec = self.bucket(name).await?;
        change(&mut rec);
        if self.meta.update_bucket(&rec).await? {
            Ok(())
        } else {
            Err(Error::NoSuchBucket)
        }
    }

    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        Ok(self.meta.list_buckets().await?)
    }

    /// Deletes a bucket that holds no object. With `abort_uploads`, the incomplete multipart
    /// uploads it still holds are aborted first, as AWS does for general-purpose buckets (and
    /// `aws s3 rb --force` relies on): each abort is atomic in the state store, so a part or a
    /// Complete arriving after it gets `NoSuchUpload`, and their files go with them. Without it
    /// (the legacy bucket, whose uploads belong to the `/file/*` API) an open upload keeps the
    /// bucket (`BucketNotEmpty`).
    ///
    /// The objects are checked first so that a bucket that cannot be deleted loses no upload;
    /// only an object published concurrently can still leave the bucket in place with its
    /// uploads aborted. An upload created meanwhile is caught by the store's final check and
    /// aborted on the next round.
    pub async fn delete_bucket(&self, name: &str, abort_uploads: bool) -> Result<()> {
        const ROUNDS: usize = 3;
        for round in 1..=ROUNDS {
            if abort_uploads {
                self.bucket(name).await?;
                if !self.meta.list_objects(name, "", None, 1).await?.is_empty() {
                    return Err(Error::BucketNotEmpty);
                }
                self.abort_bucket_uploads(name).await?;
            }
            match self.meta.delete_bucket(name).await? {
                DeleteBucket::Deleted => return Ok(()),
                DeleteBucket::NotFound => return Err(Error::NoSuchBucket),
                DeleteBucket::NotEmpty if abort_uploads && round < ROUNDS => {}
                DeleteBucket::NotEmpty => return Err(Error::BucketNotEmpty),
            }
        }
        Err(Error::BucketNotEmpty)
    }

    /// Aborts every open upload of `bucket` (waiting for a running Complete to settle, as
    /// `abort` does); one already gone is skipped.
    async fn abort_bucket_uploads(&self, bucket: &str) -> Result<()> {
        let mut after: Option<UploadCursor> = None;
        loop {
            let page = self
                .meta
                .list_uploads(bucket, "", after.as_ref(), MAX_KEYS)
                .await?;
            for up in &page {
                match self.abort(&up.id, &up.bucket, &up.key).await {
                    Ok(()) | Err(Error::NoSuchUpload) => {}
                    // Its Complete published an object: the bucket is not empty.
                    Err(e) => return Err(e),
                }
            }
            // A Complete that won the race leaves an object, which the store's final check sees.
            match page.last() {
                Some(last) if page.len() == MAX_KEYS => {
                    after = Some(UploadCursor {
                        key: last.key.clone(),
                        upload: Some((last.created, last.id.clone())),
                    });
                }
                _ => return Ok(()),
            }
        }
    }

    // ---------------- objects ----------------

    /// Stores a single-part object. The previous object under the key stays readable until the
    /// new record replaces it in one step. `admitted` is the body's pass through `admit`.
    #[allow(clippy::too_many_arguments)] // each is a distinct input of PutObject
    pub async fn put_object(
        &self,
        owner: &str,
        bucket: &str,
        key: &str,
        headers: ObjectHeaders,
        body: BodyStream,
        checks: BodyChecks,
        cond: &WriteCondition,
        admitted: Admission,
    ) -> Result<ObjectRecord> {
        check_key(key)?;
        self.bucket(bucket).await?;
        // Refuse early when we can (before reading the body); checked again at commit time.
        self.check_condition(bucket, key, cond).await?;
        let blob = BlobId::generate();
        let alg = checks.checksum.as_ref().map(|(a, _)| *a);
        let staged = self.write(&blob, body, alg, admitted).await?;
        verify(&staged, &checks)?;
        let md5 = hex::encode(staged.md5);
        let checksum = alg
            .zip(staged.checksum.clone())
            .map(|(algorithm, value)| Checksum { algorithm, value });
        let size = staged.size;
        staged.commit("1").await?;
        let rec = ObjectRecord {
            blob: blob.clone(),
            parts: vec![ObjectPart {
                number: 1,
                md5: md5.clone(),
                file: "1".into(),
                size,
                checksum: checksum.clone(),
            }],
            size,
            etag: md5,
            modified: now_millis(),
            owner: owner.to_owned(),
            headers,
            checksum_type: checksum.as_ref().map(|_| ChecksumType::FullObject),
            checksum,
            multipart: false,
        };
        let published = async {
            self.check_condition(bucket, key, cond).await?;
            self.publish(bucket, key, &rec).await
        };
        published
            .await
            .inspect_err(|_| self.disk.remove_blob_later(blob, Duration::ZERO))?;
        Ok(rec)
    }

    async fn check_condition(&self, bucket: &str, key: &str, cond: &WriteCondition) -> Result<()> {
        if cond.is_empty() {
            return Ok(());
        }
        cond.check(self.meta.get_object(bucket, key).await?.as_ref())
    }

    /// Makes `rec` the object at bucket/key and schedules the data of the one it replaced.
    async fn publish(&self, bucket: &str, key: &str, rec: &ObjectRecord) -> Result<()> {
        if let Some(old) = self.meta.put_object(bucket, key, rec).await?
            && old.blob != rec.blob
        {
            self.disk.remove_blob_later(old.blob, REPLACED_GRACE);
        }
        Ok(())
    }

    pub async fn object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        self.bucket(bucket).await?;
        self.meta
            .get_object(bucket, key)
            .await?
            .ok_or(Error::NoSuchKey)
    }

    /// Bytes `[start, end)` of a stored object.
    pub fn read(
        &self,
        rec: &ObjectRecord,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        self.disk.read(&rec.blob, &rec.parts, start, end)
    }

    /// Deletes an object; a missing key is not an error (S3 answers 204 either way).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.bucket(bucket).await?;
        if let Some(old) = self.meta.delete_object(bucket, key).await? {
            self.disk.remove_blob_later(old.blob, REPLACED_GRACE);
        }
        Ok(())
    }

    /// Copies an object by hard-linking its files into a new blob (no byte copy). `headers`
    /// replaces the source's metadata when given (REPLACE directive).
    pub async fn copy_object(
        &self,
        owner: &str,
        src: (&str, &str),
        dst: (&str, &str),
        headers: Option<ObjectHeaders>,
    ) -> Result<ObjectRecord> {
        check_key(dst.1)?;
        let source = self.object(src.0, src.1).await?;
        self.bucket(dst.0).await?;
        // Hard links take no data space, but a disk below its reserve takes no new writes.
        drop(self.disk.reserve(0)?);
        let blob = BlobId::generate();
        let files: Vec<String> = source.parts.iter().map(|p| p.file.clone()).collect();
        if let Err(e) = self.disk.link(&source.blob, &files, &blob).await {
            self.disk.remove_blob_later(blob, Duration::ZERO);
            return Err(e.into());
        }
        let rec = ObjectRecord {
            blob: blob.clone(),
            modified: now_millis(),
            owner: owner.to_owned(),
            headers: headers.unwrap_or_else(|| source.headers.clone()),
            ..source
        };
        self.publish(dst.0, dst.1, &rec)
            .await
            .inspect_err(|_| self.disk.remove_blob_later(blob, Duration::ZERO))?;
        Ok(rec)
    }

    /// Lists objects under `prefix` after `after`, rolling keys up to `delimiter`.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<Listing<(String, ObjectRecord)>> {
        self.bucket(bucket).await?;
        let mut out = Listing::default();
        let mut cursor = resume_after(prefix, delimiter, after);
        loop {
            let page = self
                .meta
                .list_objects(bucket, prefix, cursor.as_deref(), MAX_KEYS)
                .await?;
            let full = page.len() == MAX_KEYS;
            let mut jumped = false;
            for (key, rec) in page {
                if let Some(cp) = common_prefix(&key, prefix, delimiter) {
                    if out.prefixes.last() != Some(&cp) {
                        if out.items.len() + out.prefixes.len() >= max {
                            out.truncated = true;
                            return Ok(out);
                        }
                        out.last = Some(cp.clone());
                        out.prefixes.push(cp.clone());
                    }
                    cursor = Some(skip_prefix(&cp));
                    jumped = true;
                    break;
                }
                if out.items.len() + out.prefixes.len() >= max {
                    out.truncated = true;
                    return Ok(out);
                }
                out.last = Some(key.clone());
                cursor = Some(key.clone());
                out.items.push((key, rec));
            }
            // A page cut short at a common prefix continues after it.
            if !full && !jumped {
                return Ok(out);
            }
        }
    }

    // ---------------- multipart uploads ----------------

    pub async fn init(
        &self,
        owner: &str,
        bucket: &str,
        key: &str,
        headers: ObjectHeaders,
        checksum: Option<(ChecksumAlgorithm, ChecksumType)>,
    ) -> Result<UploadRecord> {
        check_key(key)?;
        self.bucket(bucket).await?;
        let rec = UploadRecord {
            id: UploadId::generate(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            created: now_millis(),
            owner: owner.to_owned(),
            headers,
            checksum_algorithm: checksum.map(|c| c.0),
            checksum_type: checksum.map(|c| c.1),
            state: UploadState::Open,
            completing_since: None,
            completed: None,
        };
        // Counted first, created second: the count can only run ahead of the records (a crash in
        // between leaves a reservation that the reconciliation drops), never behind them.
        let limit = self.limits.max_uploads_per_key;
        if !self
            .meta
            .reserve_upload(owner, &rec.id, rec.created, limit)
            .await?
        {
            return Err(Error::TooManyUploads(limit));
        }
        if let Err(e) = self.meta.create_upload(&rec).await {
            let _ = self.meta.release_upload(owner, &rec.id).await;
            return Err(e.into());
        }
        Ok(rec)
    }

    /// Stops counting an upload that ended (aborted, completed) against its owner's cap. The end
    /// has happened, so a failure here only leaves a reservation for the reconciliation.
    pub(crate) async fn release(&self, up: &UploadRecord) {
        if let Err(e) = self.meta.release_upload(&up.owner, &up.id).await {
            tracing::warn!(upload = %up.id, error = %e, "upload count left for the reconciliation");
        }
    }

    /// Makes the per-owner upload counts match the upload records: drops reservations whose
    /// upload is gone or Completed (older than the grace, so an init between its two steps is
    /// left alone) and counts live uploads that are not (made before counting existed, or by an
    /// init whose reservation was dropped). Returns (dropped, added).
    ///
    /// Reservations are read before the records, so an upload created meanwhile is either among
    /// the records (and counted already: adding is a no-op) or young. An abort racing this can
    /// leave its upload counted again until the next run: the count errs high, never low.
    pub async fn reconcile_counts(&self, now: Millis) -> Result<(usize, usize)> {
        let reserved = self.meta.reserved_uploads().await?;
        let uploads = self.meta.all_uploads().await?;
        let live: std::collections::HashMap<&UploadId, &UploadRecord> = uploads
            .iter()
            .filter(|u| u.state != UploadState::Completed)
            .map(|u| (&u.id, u))
            .collect();
        let stale_before = now - millis(RESERVATION_GRACE);
        let (mut dropped, mut added) = (0, 0);
        for (owner, id, at) in &reserved {
            let alive = live.get(id).is_some_and(|u| &u.owner == owner);
            if !alive && *at < stale_before {
                self.meta.release_upload(owner, id).await?;
                dropped += 1;
            }
        }
        let counted: std::collections::HashSet<(&str, &UploadId)> = reserved
            .iter()
            .map(|(owner, id, _)| (owner.as_str(), id))
            .collect();
        for up in live.values() {
            if !counted.contains(&(up.owner.as_str(), &up.id)) {
                self.meta
                    .reserve_upload(&up.owner, &up.id, up.created, 0)
                    .await?;
                added += 1;
            }
        }
        Ok((dropped, added))
    }

    /// `upload`, answering NoSuchBucket rather than NoSuchUpload when the bucket is missing too.
    pub async fn upload_in(&self, id: &UploadId, bucket: &str, key: &str) -> Result<UploadRecord> {
        match self.upload(id, bucket, key).await {
            Err(Error::NoSuchUpload) => {
                self.bucket(bucket).await?;
                Err(Error::NoSuchUpload)
            }
            r => r,
        }
    }

    /// The open upload `id`, which must belong to bucket/key.
    pub async fn upload(&self, id: &UploadId, bucket: &str, key: &str) -> Result<UploadRecord> {
        match self.meta.get_upload(id).await? {
            Some(u) if u.bucket == bucket && u.key == key && u.state != UploadState::Completed => {
                Ok(u)
            }
            _ => Err(Error::NoSuchUpload),
        }
    }

    /// Stores one part: streamed to disk while hashed, verified, renamed, then recorded only if
    /// the upload is still open. Re-sending a number replaces the old part atomically.
    /// `up` is the record the caller just fetched (`upload_in`), so a part costs one state-store
    /// read before its bytes and one atomic write after them; `admitted` is the body's pass
    /// through `admit`.
    pub async fn put_part(
        &self,
        up: &UploadRecord,
        n: PartNumber,
        body: BodyStream,
        checks: BodyChecks,
        admitted: Admission,
    ) -> Result<PartRecord> {
        let id = &up.id;
        if up.state != UploadState::Open {
            return Err(Error::NoSuchUpload);
        }
        let alg = match (checks.checksum.as_ref().map(|c| c.0), up.checksum_algorithm) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::InvalidRequest(format!(
                    "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                    b.as_str().to_lowercase(),
                    a.as_str().to_lowercase()
                )));
            }
            (a, b) => a.or(b),
        };
        let staged = match self.write(id, body, alg, admitted).await {
            Err(Error::Io(e)) => return Err(self.gone_or(id, Error::Io(e)).await),
            r => r?,
        };
        verify(&staged, &checks)?;
        let file = format!("{n}.{}", random_hex(6));
        let part = PartRecord {
            size: staged.size,
            md5: staged.md5,
            file: file.clone(),
            modified: now_millis(),
            checksum: alg
                .zip(staged.checksum.clone())
                .map(|(algorithm, value)| Checksum { algorithm, value }),
        };
        if let Err(e) = staged.commit(&file).await {
            return Err(self.gone_or(id, e.into()).await);
        }
        match self.meta.put_part(id, n, &part).await {
            Ok(PutPart::Recorded(old)) => {
                // The part is recorded: a replaced file that cannot be removed now is the
                // sweep's to remove, not a reason to report the part as failed.
                if let Some(old) = old
                    && let Err(e) = self.disk.remove_file(id, &old.file).await
                {
                    tracing::warn!(upload = %id, file = %old.file, error = %e, "replaced part file left for the sweep");
                }
                Ok(part)
            }
            Ok(PutPart::NotOpen) => {
                let _ = self.disk.remove_file(id, &file).await;
                Err(Error::NoSuchUpload)
            }
            Err(e) => {
                let _ = self.disk.remove_file(id, &file).await;
                Err(e.into())
            }
        }
    }

    /// A disk error while an Abort (or Complete) removed the upload under the writer is the
    /// upload's end, not a fault: answer NoSuchUpload then.
    async fn gone_or(&self, id: &UploadId, err: Error) -> Error {
        match self.meta.get_upload(id).await {
            Ok(Some(u)) if u.state == UploadState::Open => err,
            Ok(_) => Error::NoSuchUpload,
            Err(e) => e.into(),
        }
    }

    async fn write(
        &self,
        blob: &BlobId,
        body: BodyStream,
        alg: Option<ChecksumAlgorithm>,
        admitted: Admission,
    ) -> Result<Staged> {
        self.disk
            .write(blob, body, self.limits.max_part_size, alg, admitted.0)
            .await
            .map_err(|e| match e {
                WriteError::Body(b) => Error::Body(b),
                WriteError::TooLarge(_) => Error::EntityTooLarge,
                WriteError::Io(io) => io.into(),
            })
    }

    /// Parts of upload `id` numbered above `after`, at most `max`, and whether more follow.
    pub async fn list_parts(
        &self,
        id: &UploadId,
        bucket: &str,
        key: &str,
        after: Option<PartNumber>,
        max: usize,
    ) -> Result<(UploadRecord, Vec<(PartNumber, PartRecord)>, bool)> {
        let up = self.upload(id, bucket, key).await?;
        let mut parts = self.meta.list_parts(id, after, max + 1).await?;
        let truncated = parts.len() > max;
        parts.truncate(max);
        Ok((up, parts, truncated))
    }

    /// Parts of upload `id` (any bucket/key: for callers that checked ownership themselves).
    pub async fn list_parts_any(
        &self,
        id: &UploadId,
        max: usize,
    ) -> Result<(UploadRecord, Vec<(PartNumber, PartRecord)>, bool)> {
        let up = self
            .meta
            .get_upload(id)
            .await?
            .filter(|u| u.state != UploadState::Completed)
            .ok_or(Error::NoSuchUpload)?;
        self.list_parts(id, &up.bucket, &up.key, None, max).await
    }

    /// Completes upload `id` into the object bucket/key from the listed parts, without copying
    /// part bytes: the object's manifest names the part files where they already are.
    pub async fn complete(
        &self,
        id: &UploadId,
        bucket: &str,
        key: &str,
        listed: Vec<ListedPart>,
    ) -> Result<Completed> {
        self.complete_verified(id, bucket, key, listed, None, &WriteCondition::default())
            .await
    }

    /// `complete`, and when `content` is given the assembled bytes must hash to it before
    /// anything is published (BadDigest otherwise, and the upload stays open).
    ///
    /// It runs in a task of its own: once begun, a Complete goes to its end (published, or the
    /// upload reopened) even if its client hangs up and the request is dropped. Dropped between
    /// its state steps it would leave the upload Completing, refusing parts, Abort and expiry
    /// until a later Complete took it over.
    pub async fn complete_verified(
        &self,
        id: &UploadId,
        bucket: &str,
        key: &str,
        listed: Vec<ListedPart>,
        content: Option<&ContentHash>,
        cond: &WriteCondition,
    ) -> Result<Completed> {
        let this = self.clone();
        let (id, bucket, key) = (id.clone(), bucket.to_owned(), key.to_owned());
        let (content, cond) = (content.cloned(), cond.clone());
        tokio::spawn(async move {
            this.run_complete(&id, &bucket, &key, listed, content.as_ref(), &cond)
                .await
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    async fn run_complete(
        &self,
        id: &UploadId,
        bucket: &str,
        key: &str,
        listed: Vec<ListedPart>,
        content: Option<&ContentHash>,
        cond: &WriteCondition,
    ) -> Result<Completed> {
        let listed = collapse_listed(listed)?;
        let digest = listed_digest(
            listed
                .iter()
                .map(|p| (p.number.get(), normalize_etag(&p.etag))),
        );
        self.upload(id, bucket, key).await.or_else(|e| match e {
            // A completed upload is still addressable for a replay.
            Error::NoSuchUpload => Ok(UploadRecord::placeholder()),
            e => Err(e),
        })?;
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        let (up, parts) = loop {
            let now = now_millis();
            match self
                .meta
                .begin_complete(id, now, now - millis(STALE_COMPLETE))
                .await?
            {
                BeginComplete::Started(up, parts) => break (up, parts),
                BeginComplete::NotFound => return Err(Error::NoSuchUpload),
                BeginComplete::Completed(up) => return replay(&up, bucket, key, &digest),
                // A Complete that published but failed to record it: settle, then replay.
                BeginComplete::Busy(up) if self.settle_published(&up).await? => {}
                BeginComplete::Busy(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                BeginComplete::Busy(_) => return Err(Error::OperationAborted),
            }
        };
        if up.bucket != bucket || up.key != key {
            self.meta.reopen(id).await?;
            return Err(Error::NoSuchUpload);
        }
        let checked = async {
            let (rec, done) = self.assemble(&up, &parts, &listed, digest)?;
            if let Some(want) = content {
                self.check_content(&rec, want).await?;
            }
            self.check_condition(bucket, key, cond).await?;
            Ok::<_, Error>((rec, done))
        }
        .await;
        let (rec, done) = match checked {
            Ok(v) => v,
            Err(e) => {
                // Validation failed: the upload stays resumable.
                let _ = self.meta.reopen(id).await;
                return Err(e);
            }
        };
        let committed = async {
            self.publish(bucket, key, &rec).await?;
            self.meta.finish_complete(id, &done).await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = committed {
            // Once the object is visible its parts are its files: reopening would let a re-sent
            // part or an Abort delete them. So reopen only when the object is certainly not ours
            // (the store may also have applied a publish whose answer was lost); otherwise the
            // upload stays Completing, and a retried Complete or Abort, or recovery, settles it.
            let ours = self
                .meta
                .get_object(bucket, key)
                .await
                .map(|o| o.is_some_and(|o| o.blob == *id));
            if matches!(ours, Ok(false)) {
                let _ = self.meta.reopen(id).await;
            }
            return Err(e);
        }
        self.release(&up).await;
        // Parts uploaded but not listed are no longer needed. (A set: a scan per part would be
        // quadratic, 10^8 comparisons for 10,000 parts.)
        let kept: std::collections::HashSet<&str> =
            rec.parts.iter().map(|o| o.file.as_str()).collect();
        for (_, p) in &parts {
            if !kept.contains(p.file.as_str()) {
                let _ = self.disk.remove_file(id, &p.file).await;
            }
        }
        Ok(Completed {
            etag: done.etag,
            checksum: done.checksum,
            checksum_type: done.checksum_type,
        })
    }

    /// Reads an object's bytes (in place, no copy) and compares their hash with `want`.
    pub async fn check_content(&self, rec: &ObjectRecord, want: &ContentHash) -> Result<()> {
        let mut hasher = want.hasher();
        let mut bytes = self.read(rec, 0, rec.size);
        while let Some(chunk) = futures_util::StreamExt::next(&mut bytes).await {
            hasher.update(&chunk?);
        }
        let got = hasher.finish_hex();
        if got == want.hex {
            Ok(())
        } else {
            Err(Error::BadDigest(format!(
                "The file's {} does not match filehash",
                want.canonical().split(':').next().unwrap_or_default()
            )))
        }
    }

    /// Validates the listed parts against the part table and builds the object record.
    fn assemble(
        &self,
        up: &UploadRecord,
        parts: &[(PartNumber, PartRecord)],
        listed: &[ListedPart],
        parts_digest: String,
    ) -> Result<(ObjectRecord, CompletedResult)> {
        let mut chosen = Vec::with_capacity(listed.len());
        for (i, lp) in listed.iter().enumerate() {
            let invalid = || {
                Error::InvalidPart(
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.".into(),
                )
            };
            let idx = parts
                .binary_search_by_key(&lp.number, |(n, _)| *n)
                .map_err(|_| invalid())?;
            let part = &parts[idx].1;
            if normalize_etag(&lp.etag) != hex::encode(part.md5) {
                return Err(invalid());
            }
            if let Some((alg, value)) = &lp.checksum {
                let stored = part.checksum.as_ref().filter(|c| c.algorithm == *alg);
                if stored.is_none_or(|c| alg.decode(value).as_deref() != Some(c.value.as_slice())) {
                    return Err(Error::InvalidPart(format!(
                        "The {} you specified for part {} did not match what we received.",
                        alg.xml_name().trim_start_matches("Checksum"),
                        lp.number
                    )));
                }
            }
            if i + 1 < listed.len() && part.size < self.limits.min_part_size {
                return Err(Error::EntityTooSmall);
            }
            chosen.push((lp.number, part));
        }
        let etag = multipart_etag(chosen.iter().map(|(_, p)| &p.md5));
        let checksum_type = up
            .checksum_algorithm
            .map(|a| up.checksum_type.unwrap_or_else(|| a.default_type()));
        let checksum = up
            .checksum_algorithm
            .zip(checksum_type)
            .and_then(|(alg, t)| {
                let input: Vec<(Option<&[u8]>, u64)> = chosen
                    .iter()
                    .map(|(_, p)| (p.checksum.as_ref().map(|c| c.value.as_slice()), p.size))
                    .collect();
                combine_parts(alg, t, &input).map(|value| Checksum {
                    algorithm: alg,
                    value,
                })
            });
        let now = now_millis();
        let rec = ObjectRecord {
            blob: up.id.clone(),
            parts: chosen
                .iter()
                .map(|(n, p)| ObjectPart {
                    number: n.get(),
                    md5: hex::encode(p.md5),
                    file: p.file.clone(),
                    size: p.size,
                    checksum: p.checksum.clone(),
                })
                .collect(),
            size: chosen.iter().map(|(_, p)| p.size).sum(),
            etag: etag.clone(),
            modified: now,
            owner: up.owner.clone(),
            headers: up.headers.clone(),
            checksum: checksum.clone(),
            checksum_type: checksum.as_ref().and(checksum_type),
            multipart: true,
        };
        let done = CompletedResult {
            etag,
            parts_digest,
            checksum,
            checksum_type: rec.checksum_type,
            at: now,
        };
        Ok((rec, done))
    }

    /// Aborts an open upload and removes its files. Waits for a running Complete to settle.
    pub async fn abort(&self, id: &UploadId, bucket: &str, key: &str) -> Result<()> {
        let up = self.upload(id, bucket, key).await?;
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        loop {
            match self.meta.abort_upload(id).await? {
                AbortUpload::Aborted(up, _) => {
                    self.release(&up).await;
                    break;
                }
                AbortUpload::NotFound => return Err(Error::NoSuchUpload),
                // Its Complete published but failed to record it: the upload is complete.
                AbortUpload::Busy if self.settle_published(&up).await? => {}
                AbortUpload::Busy if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                AbortUpload::Busy => return Err(Error::OperationAborted),
            }
        }
        self.discard_aborted(id).await;
        Ok(())
    }

    /// Removes an aborted upload's files. The abort has happened (the state store says so), so a
    /// failure here must not fail it: a part still arriving may be re-creating the directory
    /// (it removes its own file once refused), and what remains is left to the orphan sweep.
    pub(crate) async fn discard_aborted(&self, id: &UploadId) {
        for attempt in 1..=3 {
            match self.disk.remove_blob(id).await {
                Ok(()) => return,
                Err(e) if attempt == 3 => {
                    tracing::warn!(upload = %id, error = %e, "aborted upload's files left for the sweep");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Open uploads of a bucket in (key, initiated) order, keys rolled up to `delimiter`.
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<UploadCursor>,
        max: usize,
    ) -> Result<Listing<UploadRecord>> {
        self.bucket(bucket).await?;
        let mut out = Listing::default();
        let mut cursor =
            after.map(
                |c| match (&c.upload, resume_after(prefix, delimiter, Some(&c.key))) {
                    (None, Some(k)) => UploadCursor {
                        key: k,
                        upload: None,
                    },
                    _ => c,
                },
            );
        loop {
            let page = self
                .meta
                .list_uploads(bucket, prefix, cursor.as_ref(), MAX_KEYS)
                .await?;
            let full = page.len() == MAX_KEYS;
            let mut jumped = false;
            for up in page {
                if let Some(cp) = common_prefix(&up.key, prefix, delimiter) {
                    if out.prefixes.last() != Some(&cp) {
                        if out.items.len() + out.prefixes.len() >= max {
                            out.truncated = true;
                            return Ok(out);
                        }
                        out.last = Some(cp.clone());
                        out.prefixes.push(cp.clone());
                    }
                    cursor = Some(UploadCursor {
                        key: skip_prefix(&cp),
                        upload: None,
                    });
                    jumped = true;
                    break;
                }
                if out.items.len() + out.prefixes.len() >= max {
                    out.truncated = true;
                    return Ok(out);
                }
                cursor = Some(UploadCursor {
                    key: up.key.clone(),
                    upload: Some((up.created, up.id.clone())),
                });
                out.last = Some(up.key.clone());
                out.items.push(up);
            }
            if !full && !jumped {
                return Ok(out);
            }
        }
    }

    // ---------------- recovery and housekeeping ----------------

    /// Settles Completes that a crash interrupted: published ones are marked completed, the
    /// others reopened, so every upload ends up either resumable or complete. When this gateway
    /// is `alone` on its data dir every running Complete was a dead gateway's; otherwise only
    /// those older than [`STALE_COMPLETE`] count as interrupted, since a younger one may be
    /// running on a live peer that shares the state store.
    pub async fn recover(&self, alone: bool) -> Result<usize> {
        let mut settled = 0;
        let stale_before = if alone {
            Millis::MAX
        } else {
            now_millis() - millis(STALE_COMPLETE)
        };
        for up in self.meta.all_uploads().await? {
            let stale = up.completing_since.is_none_or(|t| t < stale_before);
            if up.state != UploadState::Completing || !stale {
                continue;
            }
            if !self.settle_published(&up).await? {
                self.meta.reopen(&up.id).await?;
            }
            settled += 1;
        }
        Ok(settled)
    }

    /// A Completing upload whose object is already published (its Complete stopped between
    /// the two) is complete: records it so and returns true.
    async fn settle_published(&self, up: &UploadRecord) -> Result<bool> {
        let Some(obj) = self
            .meta
            .get_object(&up.bucket, &up.key)
            .await?
            .filter(|o| o.blob == up.id)
        else {
            return Ok(false);
        };
        let digest = listed_digest(obj.parts.iter().map(|p| (p.number, p.md5.clone())));
        let done = CompletedResult {
            etag: obj.etag,
            parts_digest: digest,
            checksum: obj.checksum,
            checksum_type: obj.checksum_type,
            at: now_millis(),
        };
        self.meta.finish_complete(&up.id, &done).await?;
        self.release(up).await;
        Ok(true)
    }

    /// Removes what a crash or a failed request left behind: temp files, part files no record
    /// names (neither the part table nor the object a completed upload became), and blob
    /// directories that belong to no upload and no object. Anything younger than the grace
    /// period is left alone. Also forgets completed-upload records past replay age.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let grace = self.limits.sweep_grace;
        let old = |t: std::time::SystemTime| t.elapsed().is_ok_and(|age| age >= grace);
        let uploads = self.meta.all_uploads().await?;
        // By id: a scan of the list per blob was quadratic in the number of uploads.
        let by_id: HashMap<&UploadId, &UploadRecord> = uploads.iter().map(|u| (&u.id, u)).collect();
        let objects = self.meta.object_blobs().await?;
        for (blob, modified) in self.disk.list_blobs().await? {
            let rec = by_id.get(&blob).copied();
            let upload = rec.filter(|u| u.state != UploadState::Completed);
            let object = objects.contains(&blob);
            if upload.is_none() && !object {
                // A GET here may still be streaming a deleted object's data.
                if old(modified) && !self.disk.being_read(&blob) {
                    self.disk.remove_blob(&blob).await?;
                    report.blobs += 1;
                }
                continue;
            }
            let keep: HashSet<String> = match upload {
                Some(_) => self
                    .meta
                    .list_parts(&blob, None, usize::from(PartNumber::MAX))
                    .await?
                    .into_iter()
                    .map(|(_, p)| p.file)
                    .collect(),
                None => HashSet::new(),
            };
            // The object a completed upload became names the files it reads: the parts its
            // Complete left out are strays that a crash kept it from removing.
            let completed = rec.filter(|u| u.state == UploadState::Completed);
            let manifest: Option<HashSet<String>> = match completed {
                Some(done) if object => self
                    .meta
                    .get_object(&done.bucket, &done.key)
                    .await?
                    .filter(|o| o.blob == blob)
                    .map(|o| o.parts.into_iter().map(|p| p.file).collect()),
                _ => None,
            };
            for (file, modified) in self.disk.list_files(&blob).await? {
                let left_out = manifest.as_ref().is_some_and(|m| !m.contains(&file));
                let stray = DiskStore::is_temp(&file)
                    || (upload.is_some() && !object && !keep.contains(&file))
                    || left_out;
                if stray && old(modified) {
                    if left_out {
                        tracing::debug!(%blob, file, "removing a part left out of its Complete");
                    }
                    self.disk.remove_file(&blob, &file).await?;
                    report.files += 1;
                }
            }
        }
        report.completed_records = self
            .meta
            .purge_completed(now_millis() - millis(KEEP_COMPLETED))
            .await?;
        Ok(report)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub blobs: usize,
    pub files: usize,
    pub completed_records: usize,
}

impl UploadRecord {
    fn placeholder() -> Self {
        Self {
            id: UploadId::generate(),
            bucket: String::new(),
            key: String::new(),
            created: 0,
            owner: String::new(),
            headers: ObjectHeaders::default(),
            checksum_algorithm: None,
            checksum_type: None,
            state: UploadState::Completed,
            completing_since: None,
            completed: None,
        }
    }
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

fn replay(up: &UploadRecord, bucket: &str, key: &str, digest: &str) -> Result<Completed> {
    match &up.completed {
        Some(done) if up.bucket == bucket && up.key == key && done.parts_digest == digest => {
            Ok(Completed {
                etag: done.etag.clone(),
                checksum: done.checksum.clone(),
                checksum_type: done.checksum_type,
            })
        }
        _ => Err(Error::NoSuchUpload),
    }
}

/// Ascending part numbers required; equal neighbours collapse to the last one (s3-tests resends
/// part 1 and lists it twice, expecting the newer data).
fn collapse_listed(listed: Vec<ListedPart>) -> Result<Vec<ListedPart>> {
    if listed.is_empty() {
        return Err(Error::MalformedXml);
    }
    let mut out: Vec<ListedPart> = Vec::with_capacity(listed.len());
    for p in listed {
        match out.last_mut() {
            Some(last) if last.number == p.number => *last = p,
            Some(last) if last.number > p.number => return Err(Error::InvalidPartOrder),
            _ => out.push(p),
        }
    }
    Ok(out)
}

fn listed_digest(parts: impl Iterator<Item = (u16, String)>) -> String {
    let mut h = Md5::new();
    for (n, etag) in parts {
        h.update(format!("{n}:{etag}\n").as_bytes());
    }
    hex::encode(h.finalize())
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

/// Sorts after every key that starts with the prefix it is appended to.
const SKIP_CHAR: char = '\u{10FFFF}';

fn skip_prefix(cp: &str) -> String {
    format!("{cp}{SKIP_CHAR}")
}

/// The common prefix `key` rolls up to under `delimiter`, if any.
fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.strip_prefix(prefix)?;
    rest.find(d)
        .map(|i| key[..prefix.len() + i + d.len()].to_owned())
}

/// Where a listing resumes: after a marker that is itself a common prefix, skip everything under it.
fn resume_after(prefix: &str, delimiter: Option<&str>, after: Option<&str>) -> Option<String> {
    let after = after?;
    match delimiter.filter(|d| !d.is_empty()) {
        Some(d)
            if after.starts_with(prefix) && after.len() > prefix.len() && after.ends_with(d) =>
        {
            Some(skip_prefix(after))
        }
        _ => Some(after.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "a-b.c", "123", "a".repeat(63).as_str()] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "_x",
            "a",
            "aa",
            "192.168.5.123",
            "foo_bar",
            "foo-",
            "foo..bar",
            "foo.-bar",
            "foo-.bar",
            "Abc",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn listed_parts_collapse_and_order() {
        let p = |n: u32, e: &str| ListedPart {
            number: PartNumber::new(n).unwrap(),
            etag: e.into(),
            checksum: None,
        };
        let out = collapse_listed(vec![p(1, "a"), p(1, "b"), p(2, "c")]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].etag, "b");
        assert!(matches!(
            collapse_listed(vec![p(2, "a"), p(1, "b")]),
            Err(Error::InvalidPartOrder)
        ));
        assert!(matches!(collapse_listed(vec![]), Err(Error::MalformedXml)));
    }

    #[test]
    fn prefixes() {
        assert_eq!(common_prefix("a/b/c", "a/", Some("/")), Some("a/b/".into()));
        assert_eq!(common_prefix("a/b", "a/", Some("/")), None);
        assert_eq!(common_prefix("a/b", "", Some("")), None);
        assert_eq!(
            resume_after("", Some("/"), Some("a/")),
            Some(format!("a/{SKIP_CHAR}"))
        );
        assert_eq!(resume_after("", None, Some("a/")), Some("a/".into()));
    }
}
