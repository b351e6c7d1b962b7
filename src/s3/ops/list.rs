//! ListBuckets, ListObjects (v1, v2), ListObjectVersions.

use base64::Engine as _;

use crate::app::App;
use crate::model::time::iso8601;
use crate::s3::error::S3Error;
use crate::s3::request::{
    Res, common_prefixes, encoding_type, max_param, owner, quoted, url_encode, xml_response,
};
use crate::s3::route::Query;
use crate::xml::Xml;

/// ListBuckets, paginated when asked (`max-buckets`, `continuation-token`, `prefix`,
/// `bucket-region`): then by pages of at most `max-buckets` (10,000 by default), each naming in
/// `ContinuationToken` where the next one starts. Every bucket is in the gateway's region.
pub(super) async fn list_buckets(app: &App, owner: &str, q: &Query) -> Res {
    const MAX_BUCKETS: usize = 10_000;
    let paginated = [
        "max-buckets",
        "continuation-token",
        "prefix",
        "bucket-region",
    ]
    .iter()
    .any(|p| q.has(p));
    let max = match q.get("max-buckets") {
        None => MAX_BUCKETS,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_BUCKETS).contains(n))
            .ok_or_else(|| {
                S3Error::invalid_argument(format!(
                    "Argument max-buckets must be an integer between 1 and {MAX_BUCKETS}"
                ))
            })?,
    };
    let after = q
        .get("continuation-token")
        .map(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|v| String::from_utf8(v).ok())
                .filter(|name| !name.is_empty())
                .ok_or_else(|| {
                    S3Error::invalid_argument("The continuation token provided is incorrect")
                })
        })
        .transpose()?;
    let prefix = q.get("prefix").unwrap_or_default();
    let region = q.get("bucket-region").filter(|r| !r.is_empty());
    let mut buckets = app.uploads.list_buckets().await?;
    buckets.retain(|bkt| {
        crate::s3::access::lists(app, bkt, owner)
            && bkt.name.starts_with(prefix)
            && after.as_ref().is_none_or(|a| bkt.name > *a)
            && region.is_none_or(|r| r == &*app.region)
    });
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    let next = (paginated && buckets.len() > max)
        .then(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buckets[max - 1].name));
    if paginated {
        buckets.truncate(max);
    }
    let mut x = Xml::new("ListAllMyBucketsResult");
    x.open("Owner")
        .elem("ID", owner)
        .elem("DisplayName", owner)
        .close("Owner")
        .open("Buckets");
    for bkt in buckets {
        x.open("Bucket")
            .elem("Name", &bkt.name)
            .elem("CreationDate", iso8601(bkt.created));
        if paginated {
            x.elem("BucketRegion", &*app.region);
        }
        x.close("Bucket");
    }
    x.close("Buckets");
    if paginated {
        x.opt("ContinuationToken", next);
        if q.has("prefix") {
            x.elem("Prefix", prefix);
        }
    }
    Ok(xml_response(x.finish("ListAllMyBucketsResult")))
}

pub(super) async fn list_objects(app: &App, b: &str, q: &Query, v2: bool) -> Res {
    let url = encoding_type(q)?;
    let enc = |s: &str| if url { url_encode(s) } else { s.to_owned() };
    let max = max_param(q, "max-keys")?;
    let prefix = q.get("prefix").unwrap_or_default();
    let delimiter = q.get("delimiter").filter(|d| !d.is_empty());
    let token = if v2 {
        q.get("continuation-token")
    } else {
        None
    };
    let decoded_token = token
        .map(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or_else(|| {
                    S3Error::invalid_argument("The continuation token provided is incorrect")
                })
        })
        .transpose()?;
    let start_after = if v2 {
        q.get("start-after")
    } else {
        q.get("marker")
    };
    let after = decoded_token
        .as_deref()
        .or(start_after.filter(|s| !s.is_empty()));
    let page = app
        .uploads
        .list_objects(b, prefix, delimiter, after, max)
        .await?;
    let fetch_owner = !v2 || q.get("fetch-owner") == Some("true");
    let mut x = Xml::new("ListBucketResult");
    // ListObjects (v1) is the one listing whose own Prefix AWS leaves unencoded (botocore
    // decodes only Delimiter, Marker, NextMarker, keys and common prefixes there); v2 encodes it.
    x.elem("Name", b)
        .elem("Prefix", if v2 { enc(prefix) } else { prefix.to_owned() });
    if v2 {
        x.opt("ContinuationToken", token)
            .opt("StartAfter", start_after.map(enc));
        x.elem(
            "KeyCount",
            (page.items.len() + page.prefixes.len()).to_string(),
        );
        if page.truncated {
            let next = page.last.as_deref().unwrap_or_default();
            x.elem(
                "NextContinuationToken",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(next),
            );
        }
    } else {
        x.elem("Marker", enc(start_after.unwrap_or_default()));
        if page.truncated && delimiter.is_some() {
            x.opt("NextMarker", page.last.as_deref().map(enc));
        }
    }
    x.elem("MaxKeys", max.to_string())
        .opt("Delimiter", delimiter.map(enc));
    x.elem("IsTruncated", page.truncated.to_string());
    if url {
        x.elem("EncodingType", "url");
    }
    for (key, rec) in &page.items {
        x.open("Contents")
            .elem("Key", enc(key))
            .elem("LastModified", iso8601(rec.modified))
            .elem("ETag", quoted(&rec.etag))
            .elem("Size", rec.size.to_string());
        if let Some(c) = &rec.checksum {
            x.elem("ChecksumAlgorithm", c.algorithm.as_str());
        }
        x.elem("StorageClass", "STANDARD");
        if fetch_owner {
            owner(&mut x, "Owner", &rec.owner);
        }
        x.close("Contents");
    }
    common_prefixes(&mut x, &page.prefixes, &enc);
    Ok(xml_response(x.finish("ListBucketResult")))
}

/// Buckets are never versioned: every object is its one `null` version.
pub(super) async fn list_object_versions(app: &App, b: &str, q: &Query) -> Res {
    let url = encoding_type(q)?;
    let enc = |s: &str| if url { url_encode(s) } else { s.to_owned() };
    let max = max_param(q, "max-keys")?;
    let prefix = q.get("prefix").unwrap_or_default();
    let delimiter = q.get("delimiter").filter(|d| !d.is_empty());
    let key_marker = q.get("key-marker").filter(|m| !m.is_empty());
    let page = app
        .uploads
        .list_objects(b, prefix, delimiter, key_marker, max)
        .await?;
    let mut x = Xml::new("ListVersionsResult");
    x.elem("Name", b)
        .elem("Prefix", enc(prefix))
        .elem("KeyMarker", enc(key_marker.unwrap_or_default()));
    x.elem(
        "VersionIdMarker",
        q.get("version-id-marker").unwrap_or_default(),
    );
    if page.truncated {
        x.opt("NextKeyMarker", page.last.as_deref().map(enc))
            .elem("NextVersionIdMarker", "null");
    }
    x.elem("MaxKeys", max.to_string())
        .opt("Delimiter", delimiter.map(enc));
    x.elem("IsTruncated", page.truncated.to_string());
    if url {
        x.elem("EncodingType", "url");
    }
    for (key, rec) in &page.items {
        x.open("Version")
            .elem("Key", enc(key))
            .elem("VersionId", "null")
            .elem("IsLatest", "true")
            .elem("LastModified", iso8601(rec.modified))
            .elem("ETag", quoted(&rec.etag))
            .elem("Size", rec.size.to_string())
            .elem("StorageClass", "STANDARD");
        owner(&mut x, "Owner", &rec.owner);
        x.close("Version");
    }
    common_prefixes(&mut x, &page.prefixes, &enc);
    Ok(xml_response(x.finish("ListVersionsResult")))
}
