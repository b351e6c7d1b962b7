//! Recovery after a crash (settle interrupted Completes) and the orphan sweep.

use std::collections::{HashMap, HashSet};

use super::error::Result;
use super::{
    KEEP_COMPLETED, STALE_COMPLETE, STALE_SEAL, SweepReport, Uploads, listed_digest, millis,
};
use crate::model::{
    CompletedResult, Millis, PartNumber, UploadId, UploadRecord, UploadState, now_millis,
};
use crate::store::DiskStore;

impl Uploads {
    /// Settles Completes that a crash interrupted: published ones are marked completed, the
    /// others reopened, so every upload ends up either resumable or complete; then finishes the
    /// bucket deletions a crash interrupted (`finish_sealed`). When this gateway is `alone` on
    /// its data dir every running Complete or deletion was a dead gateway's; otherwise only
    /// those older than [`STALE_COMPLETE`] (deletions: [`STALE_SEAL`]) count as interrupted,
    /// since a younger one may be running on a live peer that shares the state store. Returns
    /// how many it settled or finished.
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
        let sealed_before = if alone {
            Millis::MAX
        } else {
            now_millis() - millis(STALE_SEAL)
        };
        settled += self.finish_sealed(sealed_before).await?;
        Ok(settled)
    }

    /// A Completing upload whose object is already published (its Complete stopped between
    /// the two) is complete: records it so and returns true.
    pub(super) async fn settle_published(&self, up: &UploadRecord) -> Result<bool> {
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
        report.buckets_deleted = self
            .finish_sealed(now_millis() - millis(STALE_SEAL))
            .await?;
        Ok(report)
    }
}
