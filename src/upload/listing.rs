//! Listings: objects and open uploads, with S3's prefix, delimiter and marker rules.

use super::error::Result;
use super::{Listing, MAX_KEYS, Uploads};
use crate::model::{ObjectRecord, UploadId, UploadRecord};
use crate::store::UploadCursor;

impl Uploads {
    /// Where a ListMultipartUploads page starts: after `key_marker`, and on that key after the
    /// upload `id_marker` names (uploads on the marker key started after it; an unknown id lists
    /// none on that key).
    pub async fn upload_cursor(
        &self,
        key_marker: Option<&str>,
        id_marker: Option<&str>,
    ) -> Result<Option<UploadCursor>> {
        let mut cursor = key_marker.map(|k| UploadCursor {
            key: k.to_owned(),
            upload: None,
        });
        if let (Some(c), Some(id)) = (cursor.as_mut(), id_marker.and_then(UploadId::parse))
            && let Some(up) = self.meta.get_upload(&id).await?
            && up.key == c.key
        {
            c.upload = Some((up.created, up.id));
        }
        Ok(cursor)
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
        // `max-keys=0` asks for nothing: an empty page that is not truncated, as AWS answers.
        if max == 0 {
            return Ok(out);
        }
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
        if max == 0 {
            return Ok(out);
        }
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
}

/// Sorts after every key that starts with the prefix it is appended to.
pub(super) const SKIP_CHAR: char = '\u{10FFFF}';

pub(super) fn skip_prefix(cp: &str) -> String {
    format!("{cp}{SKIP_CHAR}")
}

/// The common prefix `key` rolls up to under `delimiter`, if any.
pub(super) fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.strip_prefix(prefix)?;
    rest.find(d)
        .map(|i| key[..prefix.len() + i + d.len()].to_owned())
}

/// Where a listing resumes: after a marker that is itself a common prefix, skip everything under it.
pub(super) fn resume_after(
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
) -> Option<String> {
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
