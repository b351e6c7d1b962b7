//! Who may act on which bucket: the one ownership check of the S3 front-end, run for every
//! operation after authentication and before the operation itself (`ops::dispatch`).
//!
//! With several credentials, a bucket belongs to the access key that created it
//! (`BucketRecord::owner`). Any operation of another key on it (objects, uploads, parts,
//! listings, the bucket's settings, its deletion, and reading it as a copy source) is refused
//! with `AccessDenied`; `ListBuckets` shows a key only its own buckets; creating another key's
//! bucket stays `BucketAlreadyExists`. There is no administrator credential: every key is
//! confined to its own buckets (the `mpgw admin` commands, which work on the state store
//! directly, are the operator's tool). Presigned URLs act as the key that signed them; unsigned
//! requests never get this far (`auth`).
//!
//! With one credential there is nobody to tell apart, and nothing is checked: that key acts on
//! every bucket, as before ownership existed (including buckets made under a key since rotated,
//! and the legacy bucket).
//!
//! The legacy bucket (`--legacy-bucket`) belongs to the `/file/*` API and its users, not to an S3
//! key. An S3 key may read there what the legacy user of the same name owns (without
//! `--legacy-users` every access key is such a user): objects under `<access key>/`, listings
//! whose prefix starts with it, the bucket's existence and location. It may not write there:
//! uploads and deletions go through the legacy API, which keeps the user's file table and the
//! unique file table consistent. No S3 key may create that bucket (`BucketAlreadyExists`).

use http::request::Parts;

use super::error::S3Error;
use super::route::{Route, S3Op, copy_source};
use crate::app::App;
use crate::model::{BucketRecord, UploadId, UploadRecord};
use crate::upload::{Caller, Error as UploadError, Result as UploadResult};

/// What the check loaded on the way, handed to the operation so it is not fetched twice.
#[derive(Debug, Default)]
pub struct Granted {
    /// UploadPart: the caller's open upload.
    upload: Option<UploadRecord>,
}

impl Granted {
    /// The upload `authorize` loaded for an UploadPart.
    pub fn upload(self) -> Result<UploadRecord, S3Error> {
        self.upload.ok_or_else(S3Error::internal)
    }
}

/// Refuses the operation (`AccessDenied`) unless `caller` may do it. A missing bucket passes:
/// the operation answers `NoSuchBucket` itself.
///
/// UploadPart, the hot path, costs no extra state-store read: it is checked on the upload record
/// it needs anyway. That is the bucket check, because outside the legacy bucket an open upload's
/// owner is its bucket's owner: only the owner may create uploads in a bucket (this check), and a
/// bucket cannot be deleted, hence not re-created by another key, while it holds an open or
/// completing upload. The exceptions are harmless: an upload made before ownership was enforced
/// in a bucket of a since-rotated key, or one whose owner deleted its bucket while creating it
/// and another key re-created the bucket in between, can still take its creator's parts, but
/// only the bucket's owner can list, complete or abort it (those operations check the bucket).
pub async fn authorize(
    app: &App,
    req: &Parts,
    route: &Route,
    caller: &str,
) -> Result<Granted, S3Error> {
    let enforced = enforced(app);
    let (b, k) = (route.bucket.as_str(), route.key.as_str());
    match &route.op {
        S3Op::ListBuckets => return Ok(Granted::default()),
        S3Op::CreateBucket => {
            if enforced && is_legacy(app, b) {
                return Err(UploadError::BucketAlreadyExists.into());
            }
            return Ok(Granted::default());
        }
        S3Op::UploadPart { upload_id, .. } => {
            let up = own_upload(app, upload_id, b, k, caller, enforced).await?;
            return Ok(Granted { upload: Some(up) });
        }
        _ => {}
    }
    if !enforced {
        return Ok(Granted::default());
    }
    if let Some(bucket) = app.uploads.find_bucket(b).await? {
        check(app, &bucket, caller, legacy_read(&route.op, route, caller))?;
    }
    if matches!(route.op, S3Op::CopyObject | S3Op::UploadPartCopy { .. })
        && let Ok((sb, sk)) = copy_source(&req.headers)
        && let Some(bucket) = app.uploads.find_bucket(&sb).await?
    {
        check(app, &bucket, caller, under(&sk, caller))?;
    }
    Ok(Granted::default())
}

/// Whether `caller` sees `bucket` in ListBuckets.
pub fn lists(app: &App, bucket: &BucketRecord, caller: &str) -> bool {
    !enforced(app) || (bucket.owner == caller && !is_legacy(app, &bucket.name))
}

fn enforced(app: &App) -> bool {
    app.credentials.len() > 1
}

fn is_legacy(app: &App, bucket: &str) -> bool {
    app.legacy.bucket == bucket
}

/// The ownership rule for one existing bucket; `legacy_ok` says whether the operation is one the
/// legacy bucket allows this caller.
fn check(app: &App, bucket: &BucketRecord, caller: &str, legacy_ok: bool) -> Result<(), S3Error> {
    let allowed = if is_legacy(app, &bucket.name) {
        legacy_ok
    } else {
        bucket.owner == caller
    };
    if allowed {
        Ok(())
    } else {
        Err(UploadError::AccessDenied.into())
    }
}

/// The reads an S3 key may do in the legacy bucket: its own user's files (see the module doc).
fn legacy_read(op: &S3Op, route: &Route, caller: &str) -> bool {
    match op {
        S3Op::HeadBucket
        | S3Op::GetBucketLocation
        | S3Op::GetBucketVersioning
        | S3Op::GetBucketAcl => true,
        S3Op::GetObject
        | S3Op::HeadObject
        | S3Op::GetObjectTagging
        | S3Op::GetObjectAttributes
        | S3Op::GetObjectAcl => under(&route.key, caller),
        S3Op::ListObjects { .. } | S3Op::ListObjectVersions => {
            under(route.query.get("prefix").unwrap_or_default(), caller)
        }
        _ => false,
    }
}

fn under(key: &str, caller: &str) -> bool {
    key.strip_prefix(caller)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// UploadPart's check: the open upload `id` of bucket/key, which `caller` must own (see
/// `Uploads::open_upload` for the order of the answers).
async fn own_upload(
    app: &App,
    id: &UploadId,
    b: &str,
    k: &str,
    caller: &str,
    enforced: bool,
) -> UploadResult<UploadRecord> {
    let who = match () {
        () if !enforced => Caller::Anyone,
        () if is_legacy(app, b) => Caller::ReadOnly,
        () => Caller::BucketOwner(caller),
    };
    app.uploads.open_upload(id, b, Some(k), who).await
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn legacy_prefix_is_the_whole_first_segment() {
        assert!(under("alice/a.bin", "alice"));
        assert!(under("alice/", "alice"));
        assert!(!under("alice", "alice"));
        assert!(!under("alicex/a.bin", "alice"));
        assert!(!under("", "alice"));
    }
}
