//! Objects: put (data first, then one atomic publish), look up, read, copy, delete.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use super::error::{Error, Result};
use super::{Admission, BodyChecks, REPLACED_GRACE, Uploads, WriteCondition, check_key, verify};
use crate::model::BodyStream;
use crate::model::checksum::ChecksumType;
use crate::model::event::EventName;
use crate::model::tags::TagSet;
use crate::model::{BlobId, Checksum, ObjectHeaders, ObjectPart, ObjectRecord, now_millis};

/// How many times a tag change is tried while the object keeps being replaced under it.
const TAG_ATTEMPTS: usize = 5;

impl Uploads {
    /// Stores a single-part object. The previous object under the key stays readable until the
    /// new record replaces it in one step. `admitted` is the body's pass through `admit`; `how`
    /// says which request it was for the completion event (`Put` or `Post`).
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
        how: EventName,
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
            self.publish(bucket, key, &rec, how).await
        };
        published
            .await
            .inspect_err(|_| self.disk.remove_blob_later(blob, Duration::ZERO))?;
        Ok(rec)
    }

    pub(super) async fn check_condition(
        &self,
        bucket: &str,
        key: &str,
        cond: &WriteCondition,
    ) -> Result<()> {
        if cond.is_empty() {
            return Ok(());
        }
        cond.check(self.meta.get_object(bucket, key).await?.as_ref())
    }

    /// Makes `rec` the object at bucket/key and schedules the data of the one it replaced. The
    /// completion event `name` the bucket's rules ask for is recorded in the same step.
    pub(super) async fn publish(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        name: EventName,
    ) -> Result<()> {
        let event = self
            .notifying_bucket(bucket)
            .await?
            .and_then(|b| self.event_for(&b, name, key, &rec.owner, Some(rec)));
        let notice = self.notice(event.as_ref());
        let old = self.meta.put_object(bucket, key, rec, notice).await?;
        if event.is_some() {
            self.recorded.notify_one();
        }
        if let Some(old) = old
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

    /// Deletes an object for `principal`; a missing key is not an error (S3 answers 204 either
    /// way) and makes no event.
    pub async fn delete_object(&self, principal: &str, bucket: &str, key: &str) -> Result<()> {
        let bucket_rec = self.bucket(bucket).await?;
        let event = self.event_for(&bucket_rec, EventName::Delete, key, principal, None);
        let notice = self.notice(event.as_ref());
        if let Some(old) = self.meta.delete_object(bucket, key, notice).await? {
            if event.is_some() {
                self.recorded.notify_one();
            }
            self.disk.remove_blob_later(old.blob, REPLACED_GRACE);
        }
        Ok(())
    }

    /// Sets the tags of the object at bucket/key, leaving the rest of its record as it is. The
    /// write applies only to the object that was read; if a write replaced it in between, the
    /// change is made again on the new one, as if this request had come after that write.
    pub async fn set_object_tags(&self, bucket: &str, key: &str, tags: TagSet) -> Result<()> {
        self.bucket(bucket).await?;
        for _ in 0..TAG_ATTEMPTS {
            let mut rec = self
                .meta
                .get_object(bucket, key)
                .await?
                .ok_or(Error::NoSuchKey)?;
            let blob = rec.blob.clone();
            rec.headers.tags = tags.clone();
            if self.meta.update_object(bucket, key, &blob, &rec).await? {
                return Ok(());
            }
        }
        Err(Error::OperationAborted)
    }

    /// Copies an object by hard-linking its files into a new blob (no byte copy). `headers`
    /// replaces the source's metadata when given (REPLACE directive), and `tags` its tags
    /// (REPLACE tagging directive): the two directives are independent.
    pub async fn copy_object(
        &self,
        owner: &str,
        src: (&str, &str),
        dst: (&str, &str),
        headers: Option<ObjectHeaders>,
        tags: Option<TagSet>,
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
        let mut headers = headers.unwrap_or_else(|| source.headers.clone());
        headers.tags = tags.unwrap_or_else(|| source.headers.tags.clone());
        let rec = ObjectRecord {
            blob: blob.clone(),
            modified: now_millis(),
            owner: owner.to_owned(),
            headers,
            ..source
        };
        self.publish(dst.0, dst.1, &rec, EventName::Copy)
            .await
            .inspect_err(|_| self.disk.remove_blob_later(blob, Duration::ZERO))?;
        Ok(rec)
    }
}
