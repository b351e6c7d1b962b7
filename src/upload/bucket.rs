//! Buckets: create, look up, list, delete (aborting what is open in them), CORS settings.

use super::error::{Error, Result};
use super::{MAX_KEYS, Uploads};
use crate::model::valid_bucket_name;
use crate::model::{BucketRecord, CorsRule, now_millis};
use crate::store::{DeleteBucket, UploadCursor};

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
}
