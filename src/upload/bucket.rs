//! Buckets: create, look up, list, delete (aborting what is open in them), CORS and notification
//! settings.

use super::error::{Error, Result};
use super::{MAX_KEYS, Uploads};
use crate::model::event::NotifyRule;
use crate::model::valid_bucket_name;
use crate::model::{BucketRecord, CorsRule, Millis, now_millis};
use crate::store::{DeleteBucket, SealBucket, UploadCursor};

impl Uploads {
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
            notification: None,
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

    /// The bucket's record, if the bucket exists.
    pub async fn find_bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        Ok(self.meta.get_bucket(name).await?)
    }

    /// Sets (Some) or removes (None) a bucket's CORS rules.
    pub async fn set_bucket_cors(&self, name: &str, rules: Option<Vec<CorsRule>>) -> Result<()> {
        self.modify_bucket(name, |rec| rec.cors = rules).await
    }

    /// Replaces a bucket's notification rules once they pass [`super::notify_rules::validate`]
    /// (each target ARN must be one this server has). An empty list turns
    /// notifications off but is kept (`Some`), as the outboxes of earlier rules may still hold
    /// events to deliver.
    pub async fn set_bucket_notification(&self, name: &str, rules: Vec<NotifyRule>) -> Result<()> {
        let targets = &self.events.targets;
        super::notify_rules::validate(&rules, |arn| targets.contains_key(arn))?;
        self.modify_bucket(name, |rec| rec.notification = Some(rules))
            .await
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
    /// uploads it still holds go with it, as AWS does for general-purpose buckets (and
    /// `aws s3 rb --force` relies on); without it (the legacy bucket, whose uploads belong to
    /// the `/file/*` API) an open upload keeps the bucket (`BucketNotEmpty`).
    ///
    /// All or nothing, on every gateway sharing the state store: the bucket is first sealed, in
    /// one step with the check that it holds no object, so nothing can be stored or created in
    /// it any more (a PutObject or Complete publishing meanwhile gets `NoSuchBucket`, a new
    /// upload too); only then are its uploads aborted (each atomically: a part arriving after its
    /// abort gets `NoSuchUpload`, and its files go) and the empty bucket deleted with its seal.
    /// A bucket holding an object is refused before anything changes; a deletion that cannot
    /// finish (a store failure) lifts the seal again.
    pub async fn delete_bucket(&self, name: &str, abort_uploads: bool) -> Result<()> {
        if !abort_uploads {
            return match self.meta.delete_bucket(name).await? {
                DeleteBucket::Deleted => Ok(()),
                DeleteBucket::NotFound => Err(Error::NoSuchBucket),
                DeleteBucket::NotEmpty => Err(Error::BucketNotEmpty),
            };
        }
        match self.meta.seal_bucket(name, now_millis()).await? {
            SealBucket::Sealed => {}
            SealBucket::NotFound => return Err(Error::NoSuchBucket),
            SealBucket::NotEmpty => return Err(Error::BucketNotEmpty),
        }
        let finished = self.delete_sealed(name).await;
        if finished.is_err()
            && let Err(e) = self.meta.unseal_bucket(name).await
        {
            tracing::warn!(bucket = name, error = %e, "bucket left sealed; a DeleteBucket retry finishes it");
        }
        finished
    }

    /// The rest of a sealed bucket's deletion: its uploads are aborted, then the empty bucket
    /// goes with its seal.
    async fn delete_sealed(&self, name: &str) -> Result<()> {
        self.abort_bucket_uploads(name).await?;
        match self.meta.delete_bucket(name).await? {
            DeleteBucket::Deleted => Ok(()),
            DeleteBucket::NotFound => Err(Error::NoSuchBucket),
            // Nothing is published into a sealed bucket: an object here predates the seal,
            // which the seal's own check rules out.
            DeleteBucket::NotEmpty => Err(Error::BucketNotEmpty),
        }
    }

    /// Finishes the deletions of buckets sealed before `before` that never ended (their
    /// gateway crashed between the seal and the delete): a DeleteBucket that began goes to its
    /// end, so the bucket's remaining uploads are not left unable to complete. Returns how many.
    pub async fn finish_sealed(&self, before: Millis) -> Result<usize> {
        let mut finished = 0;
        for (name, at) in self.meta.sealed_buckets().await? {
            if at >= before {
                continue;
            }
            match self.delete_sealed(&name).await {
                Ok(()) | Err(Error::NoSuchBucket) => finished += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(finished)
    }

    /// Aborts every open upload of `bucket` (waiting for a running Complete to settle, as
    /// `abort` does); one already gone is skipped.
    pub(super) async fn abort_bucket_uploads(&self, bucket: &str) -> Result<()> {
        let mut after: Option<UploadCursor> = None;
        loop {
            let page = self
                .meta
                .list_uploads(bucket, "", after.as_ref(), MAX_KEYS)
                .await?;
            for up in &page {
                match self.abort(up).await {
                    Ok(()) | Err(Error::NoSuchUpload) => {}
                    Err(e) => return Err(e),
                }
            }
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
}
