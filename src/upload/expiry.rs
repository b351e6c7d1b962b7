//! Abandoned uploads: bucket lifecycle rules (`AbortIncompleteMultipartUpload`), the expiry
//! janitor, and the listing and purge behind `mpgw admin uploads` / `mpgw admin purge`.
//!
//! Expiry aborts through the store's atomic "only if open" abort: an upload being completed is
//! left alone, and a part still arriving for an expired upload gets NoSuchUpload (its file is
//! removed by `put_part`, as after any abort).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Result, Uploads, millis};
use crate::model::{LifecycleRule, Millis, PartNumber, UploadId, UploadRecord, UploadState};
use crate::store::AbortUpload;

const DAY_MS: Millis = 24 * 3600 * 1000;

/// An open upload as `mpgw admin uploads` shows it.
#[derive(Clone, Debug)]
pub struct OpenUpload {
    pub record: UploadRecord,
    /// Sum of the sizes of its recorded parts.
    pub size: u64,
    pub parts: usize,
    /// The length a part declared (a tus upload created with its length deferred).
    pub declared: Option<u64>,
}

/// What one expiry run did.
#[derive(Clone, Debug, Default)]
pub struct ExpiryReport {
    /// Open uploads looked at.
    pub checked: usize,
    /// Aborted as expired: (bucket, key, upload id).
    pub expired: Vec<(String, String, UploadId)>,
    /// Expired but left alone: a Complete was running, or it was gone already.
    pub skipped: usize,
}

/// The age limit (milliseconds) of an upload of `key`: the smallest `DaysAfterInitiation` among
/// enabled rules whose prefix matches, else `default` (zero: never).
pub fn age_limit(rules: Option<&[LifecycleRule]>, key: &str, default: Duration) -> Option<Millis> {
    let own = rules
        .unwrap_or_default()
        .iter()
        .filter(|r| r.enabled && key.starts_with(&r.prefix))
        .map(|r| Millis::from(r.days) * DAY_MS)
        .min();
    own.or_else(|| (!default.is_zero()).then(|| millis(default)))
}

impl Uploads {
    /// Sets (Some) or removes (None) a bucket's lifecycle rules.
    pub async fn set_bucket_lifecycle(
        &self,
        name: &str,
        rules: Option<Vec<LifecycleRule>>,
    ) -> Result<()> {
        self.modify_bucket(name, |rec| rec.lifecycle = rules).await
    }

    /// Aborts every open upload older than its age limit at time `now` (bucket rules, else the
    /// server-wide `Limits::upload_expiry`).
    pub async fn expire(&self, now: Millis) -> Result<ExpiryReport> {
        let rules: BTreeMap<String, Option<Vec<LifecycleRule>>> = self
            .meta
            .list_buckets()
            .await?
            .into_iter()
            .map(|b| (b.name, b.lifecycle))
            .collect();
        let mut report = ExpiryReport::default();
        for up in self.meta.all_uploads().await? {
            if up.state != UploadState::Open {
                continue;
            }
            report.checked += 1;
            let bucket_rules = rules.get(&up.bucket).and_then(Option::as_deref);
            let Some(limit) = age_limit(bucket_rules, &up.key, self.limits.upload_expiry) else {
                continue;
            };
            if now.saturating_sub(up.created) < limit {
                continue;
            }
            if self.abort_if_open(&up.id).await? {
                report.expired.push((up.bucket, up.key, up.id));
            } else {
                report.skipped += 1;
            }
        }
        Ok(report)
    }

    /// Open uploads, optionally only of `bucket` with keys under `key_prefix`, with their sizes.
    pub async fn open_uploads(
        &self,
        bucket: Option<&str>,
        key_prefix: &str,
    ) -> Result<Vec<OpenUpload>> {
        let mut out = Vec::new();
        let mut all = self.meta.all_uploads().await?;
        all.sort_by(|a, b| (&a.bucket, &a.key, a.created).cmp(&(&b.bucket, &b.key, b.created)));
        for up in all {
            if up.state == UploadState::Completed
                || bucket.is_some_and(|b| b != up.bucket)
                || !up.key.starts_with(key_prefix)
            {
                continue;
            }
            let parts = self
                .meta
                .list_parts(&up.id, None, usize::from(PartNumber::MAX))
                .await?;
            out.push(OpenUpload {
                size: parts.iter().map(|(_, p)| p.size).sum(),
                declared: parts.iter().find_map(|(_, p)| p.length),
                parts: parts.len(),
                record: up,
            });
        }
        Ok(out)
    }

    /// Aborts the open uploads created before `before` (optionally only of `bucket`, keys under
    /// `key_prefix`); returns those aborted. Uploads being completed are left alone.
    pub async fn purge(
        &self,
        before: Millis,
        bucket: Option<&str>,
        key_prefix: &str,
    ) -> Result<Vec<UploadRecord>> {
        let mut out = Vec::new();
        for up in self.meta.all_uploads().await? {
            if up.state != UploadState::Open
                || up.created >= before
                || bucket.is_some_and(|b| b != up.bucket)
                || !up.key.starts_with(key_prefix)
            {
                continue;
            }
            if self.abort_if_open(&up.id).await? {
                out.push(up);
            }
        }
        Ok(out)
    }

    /// One atomic abort attempt: true when the upload was open and is now gone (files removed);
    /// false when it is completing, completed or already gone (nothing touched).
    async fn abort_if_open(&self, id: &UploadId) -> Result<bool> {
        match self.meta.abort_upload(id).await? {
            AbortUpload::Aborted(up, _) => {
                self.release(&up).await;
                self.discard_aborted(id).await;
                Ok(true)
            }
            AbortUpload::Busy | AbortUpload::NotFound => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, days: u32, enabled: bool) -> LifecycleRule {
        LifecycleRule {
            id: None,
            enabled,
            prefix: prefix.into(),
            days,
        }
    }

    #[test]
    fn smallest_matching_enabled_rule_else_default() {
        let week = Duration::from_secs(7 * 86400);
        let rules = vec![
            rule("tmp/", 1, true),
            rule("tmp/x", 3, true),
            rule("", 5, true),
            rule("tmp/", 0, false),
        ];
        assert_eq!(age_limit(Some(&rules), "tmp/xy", week), Some(DAY_MS));
        assert_eq!(age_limit(Some(&rules), "other", week), Some(5 * DAY_MS));
        let only_prefixed = vec![rule("logs/", 2, true), rule("data/", 1, false)];
        assert_eq!(
            age_limit(Some(&only_prefixed), "data/a", week),
            Some(7 * DAY_MS)
        );
        assert_eq!(
            age_limit(Some(&only_prefixed), "data/a", Duration::ZERO),
            None
        );
        assert_eq!(age_limit(None, "k", Duration::ZERO), None);
        assert_eq!(age_limit(None, "k", week), Some(7 * DAY_MS));
    }
}
