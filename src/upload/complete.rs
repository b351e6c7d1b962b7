//! Complete (verify, assemble, publish; a repeated Complete replays its result) and Abort.

use std::time::Duration;

use super::error::{Error, Result};
use super::{
    BUSY_WAIT, CompleteChecks, Completed, ListedPart, STALE_COMPLETE, Uploads, WholeChecksum,
    WriteCondition, listed_digest, millis,
};
use crate::model::checksum::{
    ChecksumType, ContentHash, combine_parts, multipart_etag, normalize_etag,
};
use crate::model::event::EventName;
use crate::model::{
    Checksum, CompletedResult, ObjectHeaders, ObjectPart, ObjectRecord, PartNumber, PartRecord,
    UploadId, UploadRecord, UploadState, now_millis,
};
use crate::store::{AbortUpload, BeginComplete};

impl Uploads {
    /// Completes upload `id` into the object bucket/key from the listed parts, without copying
    /// part bytes: the object's manifest names the part files where they already are. What
    /// `checks` names (size, content hash) must hold before anything is published (the upload
    /// stays open otherwise); `cond` is the If-Match/If-None-Match the new object must meet.
    ///
    /// It runs in a task of its own: once begun, a Complete goes to its end (published, or the
    /// upload reopened) even if its client hangs up and the request is dropped. Dropped between
    /// its state steps it would leave the upload Completing, refusing parts, Abort and expiry
    /// until a later Complete took it over.
    pub async fn complete(
        &self,
        id: &UploadId,
        bucket: &str,
        key: &str,
        listed: Vec<ListedPart>,
        checks: &CompleteChecks,
        cond: &WriteCondition,
    ) -> Result<Completed> {
        let this = self.clone();
        let (id, bucket, key) = (id.clone(), bucket.to_owned(), key.to_owned());
        let (checks, cond) = (checks.clone(), cond.clone());
        let origin = super::events::Origin::current();
        tokio::spawn(origin.scope(async move {
            this.run_complete(&id, &bucket, &key, listed, &checks, &cond)
                .await
        }))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    pub(super) async fn run_complete(
        &self,
        id: &UploadId,
        bucket: &str,
        key: &str,
        listed: Vec<ListedPart>,
        checks: &CompleteChecks,
        cond: &WriteCondition,
    ) -> Result<Completed> {
        let listed = collapse_listed(listed)?;
        let digest = listed_digest(
            listed
                .iter()
                .map(|p| (p.number.get(), normalize_etag(&p.etag))),
        );
        self.get_open(id, bucket, key).await.or_else(|e| match e {
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
            check_checksum_type(&up, checks.checksum_type)?;
            let (rec, done) = self.assemble(&up, &parts, &listed, digest)?;
            if let Some(want) = &checks.checksum {
                check_whole_checksum(&up, &rec, want)?;
            }
            if let Some(want) = checks.size
                && want != rec.size
            {
                return Err(Error::InvalidRequest(format!(
                    "The provided 'x-amz-mp-object-size' header value {want} does not match what was computed: {}",
                    rec.size
                )));
            }
            if let Some(want) = &checks.content {
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
            self.publish(bucket, key, &rec, EventName::CompleteMultipartUpload)
                .await?;
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
    pub(super) fn assemble(
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
            // An upload written in order (tus) has no minimum part size: its parts are the
            // writes its client chose to make.
            if i + 1 < listed.len() && part.size < self.limits.min_part_size && up.append.is_none()
            {
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

    /// Aborts the open upload `up` and removes its files. Waits for a running Complete to settle.
    pub async fn abort(&self, up: &UploadRecord) -> Result<()> {
        let id = &up.id;
        let up = self.get_open(id, &up.bucket, &up.key).await?;
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
}

/// The type a Complete names (`x-amz-checksum-type`) must be the one its upload was created with.
fn check_checksum_type(up: &UploadRecord, named: Option<ChecksumType>) -> Result<()> {
    let own = up
        .checksum_algorithm
        .map(|a| up.checksum_type.unwrap_or_else(|| a.default_type()));
    match named {
        Some(t) if Some(t) != own => Err(Error::InvalidRequest(format!(
            "The upload was created using the {} checksum mode. The complete request must use the same checksum mode.",
            own.map_or("null", ChecksumType::as_str)
        ))),
        _ => Ok(()),
    }
}

/// A whole-object checksum sent with Complete must be the upload's algorithm (InvalidRequest
/// otherwise) and equal what its parts combine to (BadDigest otherwise); a COMPOSITE value's
/// `-N`, when written, must count the object's parts.
fn check_whole_checksum(up: &UploadRecord, rec: &ObjectRecord, want: &WholeChecksum) -> Result<()> {
    if up.checksum_algorithm != Some(want.algorithm) {
        return Err(Error::InvalidRequest(format!(
            "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
            up.checksum_algorithm
                .map_or_else(|| "null".to_owned(), |a| a.as_str().to_lowercase()),
            want.algorithm.as_str().to_lowercase()
        )));
    }
    let same_value = rec
        .checksum
        .as_ref()
        .is_some_and(|c| c.algorithm == want.algorithm && c.value == want.value);
    let same_count = match want.parts {
        None => true,
        Some(n) => rec.checksum_type == Some(ChecksumType::Composite) && n == rec.parts.len(),
    };
    if same_value && same_count {
        Ok(())
    } else {
        Err(Error::BadDigest(format!(
            "The {} you specified did not match the calculated checksum.",
            want.algorithm.as_str()
        )))
    }
}

pub(super) fn replay(
    up: &UploadRecord,
    bucket: &str,
    key: &str,
    digest: &str,
) -> Result<Completed> {
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
pub(super) fn collapse_listed(listed: Vec<ListedPart>) -> Result<Vec<ListedPart>> {
    if listed.is_empty() {
        return Err(Error::EmptyPartList);
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
            append: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PartNumber;

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
        assert!(matches!(collapse_listed(vec![]), Err(Error::EmptyPartList)));
    }
}
