//! Multipart uploads up to Complete: init (with the per-owner cap), the caller's open upload,
//! parts (written, fsynced and renamed, then recorded with one atomic call), ListParts.

use super::error::{Error, Result};
use super::{Admission, BodyChecks, Caller, RESERVATION_GRACE, Uploads, check_key, millis, verify};
use crate::model::BodyStream;
use crate::model::checksum::{ChecksumAlgorithm, ChecksumType};
use crate::model::{
    AppendInfo, BlobId, Checksum, Millis, ObjectHeaders, PartNumber, PartRecord, UploadId,
    UploadRecord, UploadState, now_millis, random_hex,
};
use crate::store::PutPart;
use crate::store::disk::{Staged, WriteError};

impl Uploads {
    pub async fn init(
        &self,
        owner: &str,
        bucket: &str,
        key: &str,
        headers: ObjectHeaders,
        checksum: Option<(ChecksumAlgorithm, ChecksumType)>,
    ) -> Result<UploadRecord> {
        self.init_with(owner, bucket, key, headers, checksum, None)
            .await
    }

    pub(super) async fn init_with(
        &self,
        owner: &str,
        bucket: &str,
        key: &str,
        headers: ObjectHeaders,
        checksum: Option<(ChecksumAlgorithm, ChecksumType)>,
        append: Option<AppendInfo>,
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
            append,
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

    /// The caller's open upload `id` of `bucket` (and `key`, when the request names one): the one
    /// lookup every front end makes before acting on an upload. Answers in S3's order: an unknown
    /// id answers `NoSuchBucket` when the bucket is missing, then `AccessDenied` when `caller` may
    /// not act in the bucket, then `NoSuchUpload`; a known one `AccessDenied` when `caller` may
    /// not act on it. A [`Caller::User`] sees another user's upload as a missing one.
    pub async fn open_upload(
        &self,
        id: &UploadId,
        bucket: &str,
        key: Option<&str>,
        caller: Caller<'_>,
    ) -> Result<UploadRecord> {
        let found = self.meta.get_upload(id).await?.filter(|u| {
            u.bucket == bucket
                && key.is_none_or(|k| u.key == k)
                && u.state != UploadState::Completed
        });
        match (found, caller) {
            (Some(u), Caller::User(user)) if u.owner != user => Err(Error::NoSuchUpload),
            (Some(u), caller) if !caller.may_act(&u.owner) => Err(Error::AccessDenied),
            (Some(u), _) => Ok(u),
            (None, Caller::User(_)) => Err(Error::NoSuchUpload),
            (None, caller) => {
                let b = self.bucket(bucket).await?;
                if caller.may_act(&b.owner) {
                    Err(Error::NoSuchUpload)
                } else {
                    Err(Error::AccessDenied)
                }
            }
        }
    }

    /// The open upload `id` of bucket/key, whoever owns it (the core's own re-check).
    pub(super) async fn get_open(
        &self,
        id: &UploadId,
        bucket: &str,
        key: &str,
    ) -> Result<UploadRecord> {
        match self.meta.get_upload(id).await? {
            Some(u) if u.bucket == bucket && u.key == key && u.state != UploadState::Completed => {
                Ok(u)
            }
            _ => Err(Error::NoSuchUpload),
        }
    }

    /// Stores one part: streamed to disk while hashed, verified, renamed, then recorded only if
    /// the upload is still open. Re-sending a number replaces the old part atomically.
    /// `up` is the record the caller just fetched (`open_upload`), so a part costs one state-store
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
            length: None,
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
    pub(super) async fn gone_or(&self, id: &UploadId, err: Error) -> Error {
        match self.meta.get_upload(id).await {
            Ok(Some(u)) if u.state == UploadState::Open => err,
            Ok(_) => Error::NoSuchUpload,
            Err(e) => e.into(),
        }
    }

    pub(super) async fn write(
        &self,
        blob: &BlobId,
        body: BodyStream,
        alg: Option<ChecksumAlgorithm>,
        admitted: Admission,
    ) -> Result<Staged> {
        let max = self.limits.max_part_size;
        self.write_with(blob, body, max, alg, admitted, false).await
    }

    /// `write` with a size cap of its own and, with `keep_prefix`, the bytes of a cut-off body
    /// kept (`DiskStore::write_with`).
    pub(super) async fn write_with(
        &self,
        blob: &BlobId,
        body: BodyStream,
        max: u64,
        alg: Option<ChecksumAlgorithm>,
        admitted: Admission,
        keep_prefix: bool,
    ) -> Result<Staged> {
        self.disk
            .write_with(blob, body, max, alg, admitted.0, keep_prefix)
            .await
            .map_err(|e| match e {
                WriteError::Body(b) => Error::Body(b),
                WriteError::TooLarge(_) => Error::EntityTooLarge,
                WriteError::Io(io) => io.into(),
            })
    }

    /// Parts of the open upload `up` numbered above `after`, at most `max`, and whether more
    /// follow.
    pub async fn list_parts(
        &self,
        up: &UploadRecord,
        after: Option<PartNumber>,
        max: usize,
    ) -> Result<(Vec<(PartNumber, PartRecord)>, bool)> {
        let mut parts = self.meta.list_parts(&up.id, after, max + 1).await?;
        let truncated = parts.len() > max;
        parts.truncate(max);
        Ok((parts, truncated))
    }
}
