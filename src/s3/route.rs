//! Which S3 operation a request is, from method, path, query flags and `x-amz-copy-source`.
//! Pure: no I/O. Ids and part numbers are parsed here, so later code never re-checks strings.

use hyper::{HeaderMap, Method};
use percent_encoding::percent_decode_str;

mod unsupported;

use self::unsupported::{UNSUPPORTED, unsupported};
use super::error::{S3Error, S3ErrorCode};
pub use super::query::Query;
use crate::model::{PartNumber, UploadId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Op {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    ListObjects {
        v2: bool,
    },
    ListMultipartUploads,
    DeleteObjects,
    /// POST Object: a browser form upload, authenticated by its signed policy (see `post`).
    PostObject,
    PutObject,
    CopyObject,
    GetObject,
    HeadObject,
    /// `GET /b/k?attributes`: what HeadObject and ListParts would tell, without the bytes.
    GetObjectAttributes,
    DeleteObject,
    PutObjectTagging,
    GetObjectTagging,
    DeleteObjectTagging,
    CreateMultipartUpload,
    UploadPart {
        upload_id: UploadId,
        part_number: PartNumber,
    },
    UploadPartCopy {
        upload_id: UploadId,
        part_number: PartNumber,
    },
    GetBucketVersioning,
    PutBucketCors,
    GetBucketCors,
    DeleteBucketCors,
    PutBucketLifecycle,
    GetBucketLifecycle,
    DeleteBucketLifecycle,
    PutBucketNotification,
    GetBucketNotification,
    ListObjectVersions,
    CompleteMultipartUpload {
        upload_id: UploadId,
    },
    AbortMultipartUpload {
        upload_id: UploadId,
    },
    ListParts {
        upload_id: UploadId,
    },
    GetBucketAcl,
    PutBucketAcl,
    GetObjectAcl,
    PutObjectAcl,
    /// An operation the gateway does not implement (answered 501), named for the access log
    /// after the sub-resource that selects it (`sub`).
    Unsupported {
        name: &'static str,
        sub: &'static str,
    },
}

impl S3Op {
    pub fn name(&self) -> &'static str {
        match self {
            Self::ListBuckets => "ListBuckets",
            Self::CreateBucket => "CreateBucket",
            Self::HeadBucket => "HeadBucket",
            Self::DeleteBucket => "DeleteBucket",
            Self::GetBucketLocation => "GetBucketLocation",
            Self::ListObjects { v2: true } => "ListObjectsV2",
            Self::ListObjects { v2: false } => "ListObjects",
            Self::ListMultipartUploads => "ListMultipartUploads",
            Self::DeleteObjects => "DeleteObjects",
            Self::PostObject => "PostObject",
            Self::PutObject => "PutObject",
            Self::CopyObject => "CopyObject",
            Self::GetObject => "GetObject",
            Self::HeadObject => "HeadObject",
            Self::GetObjectAttributes => "GetObjectAttributes",
            Self::DeleteObject => "DeleteObject",
            Self::PutObjectTagging => "PutObjectTagging",
            Self::GetObjectTagging => "GetObjectTagging",
            Self::DeleteObjectTagging => "DeleteObjectTagging",
            Self::CreateMultipartUpload => "CreateMultipartUpload",
            Self::UploadPart { .. } => "UploadPart",
            Self::UploadPartCopy { .. } => "UploadPartCopy",
            Self::GetBucketVersioning => "GetBucketVersioning",
            Self::PutBucketCors => "PutBucketCors",
            Self::GetBucketCors => "GetBucketCors",
            Self::DeleteBucketCors => "DeleteBucketCors",
            Self::PutBucketLifecycle => "PutBucketLifecycleConfiguration",
            Self::GetBucketLifecycle => "GetBucketLifecycleConfiguration",
            Self::DeleteBucketLifecycle => "DeleteBucketLifecycle",
            Self::PutBucketNotification => "PutBucketNotificationConfiguration",
            Self::GetBucketNotification => "GetBucketNotificationConfiguration",
            Self::ListObjectVersions => "ListObjectVersions",
            Self::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            Self::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            Self::ListParts { .. } => "ListParts",
            Self::GetBucketAcl => "GetBucketAcl",
            Self::PutBucketAcl => "PutBucketAcl",
            Self::GetObjectAcl => "GetObjectAcl",
            Self::PutObjectAcl => "PutObjectAcl",
            Self::Unsupported { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub op: S3Op,
    /// Empty for ListBuckets.
    pub bucket: String,
    /// Empty for bucket operations.
    pub key: String,
    pub query: Query,
}

/// The bucket a virtual-host-style request addresses: `Host: <bucket>.<domain>[:port]`.
/// Path style is used for every other host (an IP, `localhost`, the bare domain).
pub fn host_bucket(headers: &HeaderMap, uri: &http::Uri, domain: Option<&str>) -> Option<String> {
    let domain = domain.filter(|d| !d.is_empty())?;
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host())?;
    let host = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let bucket = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!bucket.is_empty()).then(|| bucket.to_ascii_lowercase())
}

/// `vhost_bucket` is the bucket named by the Host header (see `host_bucket`); the whole path is
/// then the key.
pub fn route(
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    vhost_bucket: Option<String>,
) -> Result<Route, S3Error> {
    let query = query.clone();
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = match vhost_bucket {
        Some(b) => (b, decode_path(path)?),
        None => {
            let (bucket_raw, key_raw) = path.split_once('/').unwrap_or((path, ""));
            (decode_path(bucket_raw)?, decode_path(key_raw)?)
        }
    };
    // Versioning is answered read-only: buckets are never versioned.
    let versioning_write = query.has("versioning") && *method != Method::GET;
    // Objects have tags, buckets do not (yet); `attributes` is an operation only as a GET of
    // an object (GetObjectAttributes).
    let implemented = |sub: &str| match sub {
        "tagging" => !key.is_empty(),
        "attributes" => *method == Method::GET && !key.is_empty(),
        _ => false,
    };
    if let Some(sub) = UNSUPPORTED
        .iter()
        .map(|(s, ..)| *s)
        .find(|s| query.has(s) && !implemented(s))
        .or(versioning_write.then_some("versioning"))
    {
        return Ok(Route {
            op: unsupported(sub, method, !key.is_empty()),
            bucket,
            key,
            query,
        });
    }
    let upload_id = || -> Result<UploadId, S3Error> {
        let raw = query.get("uploadId").unwrap_or_default();
        UploadId::parse(raw).ok_or_else(|| crate::upload::Error::NoSuchUpload.into())
    };
    let op = if bucket.is_empty() {
        match *method {
            Method::GET => S3Op::ListBuckets,
            _ => return Err(method_not_allowed()),
        }
    } else if query.has("acl") {
        match (method, key.is_empty()) {
            (&Method::GET, true) => S3Op::GetBucketAcl,
            (&Method::PUT, true) => S3Op::PutBucketAcl,
            (&Method::GET, false) => S3Op::GetObjectAcl,
            (&Method::PUT, false) => S3Op::PutObjectAcl,
            _ => return Err(method_not_allowed()),
        }
    } else if key.is_empty() && query.has("cors") {
        match *method {
            Method::PUT => S3Op::PutBucketCors,
            Method::GET => S3Op::GetBucketCors,
            Method::DELETE => S3Op::DeleteBucketCors,
            _ => return Err(method_not_allowed()),
        }
    } else if key.is_empty() && query.has("lifecycle") {
        match *method {
            Method::PUT => S3Op::PutBucketLifecycle,
            Method::GET => S3Op::GetBucketLifecycle,
            Method::DELETE => S3Op::DeleteBucketLifecycle,
            _ => return Err(method_not_allowed()),
        }
    } else if key.is_empty() && query.has("notification") {
        // S3 has no DeleteBucketNotification: an empty configuration turns notifications off.
        match *method {
            Method::PUT => S3Op::PutBucketNotification,
            Method::GET => S3Op::GetBucketNotification,
            _ => return Err(method_not_allowed()),
        }
    } else if key.is_empty() {
        match *method {
            Method::PUT => S3Op::CreateBucket,
            Method::HEAD => S3Op::HeadBucket,
            Method::DELETE => S3Op::DeleteBucket,
            Method::GET if query.has("location") => S3Op::GetBucketLocation,
            Method::GET if query.has("versioning") => S3Op::GetBucketVersioning,
            Method::GET if query.has("versions") => S3Op::ListObjectVersions,
            Method::GET if query.has("uploads") => S3Op::ListMultipartUploads,
            Method::GET => S3Op::ListObjects {
                v2: query.get("list-type") == Some("2"),
            },
            Method::POST if query.has("delete") => S3Op::DeleteObjects,
            Method::POST => S3Op::PostObject,
            _ => return Err(method_not_allowed()),
        }
    } else {
        let copy = headers.contains_key("x-amz-copy-source");
        if query.has("uploads") && query.has("uploadId") {
            return Err(S3Error::invalid_argument(
                "Conflicting query string parameters: uploadId, uploads",
            ));
        }
        match *method {
            _ if query.has("tagging") => match *method {
                Method::PUT => S3Op::PutObjectTagging,
                Method::GET => S3Op::GetObjectTagging,
                Method::DELETE => S3Op::DeleteObjectTagging,
                _ => return Err(method_not_allowed()),
            },
            Method::POST if query.has("uploads") => S3Op::CreateMultipartUpload,
            Method::POST if query.has("uploadId") => S3Op::CompleteMultipartUpload {
                upload_id: upload_id()?,
            },
            Method::PUT if query.has("uploadId") || query.has("partNumber") => {
                if !query.has("uploadId") {
                    return Err(S3Error::invalid_argument(
                        "This operation does not accept partNumber without uploadId",
                    ));
                }
                let part_number = query
                    .get("partNumber")
                    .and_then(PartNumber::parse)
                    .ok_or_else(|| {
                        S3Error::invalid_argument(
                            "Part number must be an integer between 1 and 10000, inclusive",
                        )
                    })?;
                if copy {
                    S3Op::UploadPartCopy {
                        upload_id: upload_id()?,
                        part_number,
                    }
                } else {
                    S3Op::UploadPart {
                        upload_id: upload_id()?,
                        part_number,
                    }
                }
            }
            Method::PUT if copy => S3Op::CopyObject,
            Method::PUT => S3Op::PutObject,
            Method::GET if query.has("attributes") => S3Op::GetObjectAttributes,
            Method::GET if query.has("uploadId") => S3Op::ListParts {
                upload_id: upload_id()?,
            },
            Method::GET => S3Op::GetObject,
            Method::HEAD => S3Op::HeadObject,
            Method::DELETE if query.has("uploadId") => S3Op::AbortMultipartUpload {
                upload_id: upload_id()?,
            },
            Method::DELETE => S3Op::DeleteObject,
            _ => return Err(method_not_allowed()),
        }
    };
    // Buckets are never versioned, so every object is its `null` version. Another version id
    // must not fall through to the current object (a DELETE would remove it).
    if matches!(
        op,
        S3Op::GetObject
            | S3Op::HeadObject
            | S3Op::DeleteObject
            | S3Op::GetObjectAttributes
            | S3Op::PutObjectTagging
            | S3Op::GetObjectTagging
            | S3Op::DeleteObjectTagging
            | S3Op::GetObjectAcl
            | S3Op::PutObjectAcl
    ) {
        for (_, v) in query.iter().filter(|(n, _)| *n == "versionId") {
            match v.unwrap_or_default() {
                "null" => {}
                "" => {
                    return Err(S3Error::invalid_argument(
                        "Version id cannot be the empty string",
                    ));
                }
                _ => return Err(S3Error::invalid_argument("Invalid version id specified")),
            }
        }
    }
    Ok(Route {
        op,
        bucket,
        key,
        query,
    })
}

/// `x-amz-copy-source: [/]bucket/key[?versionId=v]`; the key is percent-decoded exactly once,
/// after splitting off a literal `?versionId=`.
pub fn copy_source(h: &HeaderMap) -> Result<(String, String), S3Error> {
    let raw = h
        .get("x-amz-copy-source")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    let (path, version) = match raw.split_once("?versionId=") {
        Some((p, v)) => (p, Some(v)),
        None => (raw, None),
    };
    if version.is_some_and(|v| v != "null") {
        return Err(S3Error::not_implemented(
            "Object versions are not supported",
        ));
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| S3Error::invalid_argument("Invalid copy source encoding"))?;
    match decoded.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_owned(), k.to_owned())),
        _ => Err(S3Error::invalid_argument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )),
    }
}

/// Percent-decodes a path segment exactly once. Keys are UTF-8 without NUL (NUL would also
/// break the stores' ordered indexes).
fn decode_path(raw: &str) -> Result<String, S3Error> {
    let s = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| S3Error::invalid_argument("Object key must be valid UTF-8"))?;
    if s.contains('\0') {
        return Err(S3Error::invalid_argument("Object key must not contain NUL"));
    }
    Ok(s.into_owned())
}

fn method_not_allowed() -> S3Error {
    S3Error::new(
        S3ErrorCode::MethodNotAllowed,
        "The specified method is not allowed against this resource.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn r(method: Method, uri: &str, copy: bool) -> Result<Route, S3Error> {
        let (path, q) = uri
            .split_once('?')
            .map_or((uri, None), |(p, q)| (p, Some(q)));
        let mut h = HeaderMap::new();
        if copy {
            h.insert("x-amz-copy-source", "b/k".parse().unwrap());
        }
        route(&method, path, &Query::parse(q), &h, None)
    }

    fn op(method: Method, uri: &str) -> S3Op {
        r(method, uri, false).unwrap().op
    }

    #[test]
    fn table() {
        let id = UploadId::parse(ID).unwrap();
        let n = PartNumber::new(3).unwrap();
        assert_eq!(op(Method::GET, "/"), S3Op::ListBuckets);
        assert_eq!(op(Method::PUT, "/b"), S3Op::CreateBucket);
        assert_eq!(op(Method::PUT, "/b/"), S3Op::CreateBucket);
        assert_eq!(op(Method::HEAD, "/b"), S3Op::HeadBucket);
        assert_eq!(
            op(Method::GET, "/b?list-type=2&prefix="),
            S3Op::ListObjects { v2: true }
        );
        assert_eq!(
            op(Method::GET, "/b?delimiter=&max-keys=1000&prefix="),
            S3Op::ListObjects { v2: false }
        );
        assert_eq!(op(Method::GET, "/b?uploads"), S3Op::ListMultipartUploads);
        assert_eq!(op(Method::POST, "/b/?delete="), S3Op::DeleteObjects);
        assert_eq!(
            op(Method::POST, "/b/k?uploads="),
            S3Op::CreateMultipartUpload
        );
        assert_eq!(
            op(Method::POST, "/b/k?uploads&x-id=CreateMultipartUpload"),
            S3Op::CreateMultipartUpload
        );
        assert_eq!(
            op(
                Method::PUT,
                &format!("/b/k?partNumber=3&uploadId={ID}&x-id=UploadPart")
            ),
            S3Op::UploadPart {
                upload_id: id.clone(),
                part_number: n
            }
        );
        assert_eq!(
            op(Method::POST, &format!("/b/k?uploadId={ID}")),
            S3Op::CompleteMultipartUpload {
                upload_id: id.clone()
            }
        );
        assert_eq!(
            op(Method::DELETE, &format!("/b/k?uploadId={ID}")),
            S3Op::AbortMultipartUpload {
                upload_id: id.clone()
            }
        );
        assert_eq!(
            op(Method::GET, &format!("/b/k?uploadId={ID}")),
            S3Op::ListParts { upload_id: id }
        );
        assert_eq!(op(Method::PUT, "/b/k"), S3Op::PutObject);
        assert_eq!(
            r(
                Method::PUT,
                &format!("/b/k?partNumber=3&uploadId={ID}"),
                true
            )
            .unwrap()
            .op,
            S3Op::UploadPartCopy {
                upload_id: UploadId::parse(ID).unwrap(),
                part_number: n
            }
        );
        assert_eq!(op(Method::GET, "/b?versioning"), S3Op::GetBucketVersioning);
        assert_eq!(op(Method::PUT, "/b?cors"), S3Op::PutBucketCors);
        assert_eq!(op(Method::GET, "/b?cors"), S3Op::GetBucketCors);
        assert_eq!(op(Method::DELETE, "/b?cors"), S3Op::DeleteBucketCors);
        assert_eq!(op(Method::PUT, "/b?lifecycle"), S3Op::PutBucketLifecycle);
        assert_eq!(op(Method::GET, "/b?lifecycle"), S3Op::GetBucketLifecycle);
        assert_eq!(
            op(Method::DELETE, "/b?lifecycle"),
            S3Op::DeleteBucketLifecycle
        );
        assert_eq!(
            op(Method::PUT, "/b?notification"),
            S3Op::PutBucketNotification
        );
        assert_eq!(
            op(Method::GET, "/b/?notification="),
            S3Op::GetBucketNotification
        );
        assert!(r(Method::DELETE, "/b?notification", false).is_err());
        assert!(r(Method::POST, "/b?notification", false).is_err());
        // On an object it is no sub-resource (as `lifecycle` and `cors`).
        assert_eq!(op(Method::GET, "/b/k?notification"), S3Op::GetObject);
        assert_eq!(
            op(Method::GET, "/b?versions&prefix=a"),
            S3Op::ListObjectVersions
        );
        assert_eq!(
            op(Method::PUT, "/b?versioning"),
            S3Op::Unsupported {
                name: "PutBucketVersioning",
                sub: "versioning"
            }
        );
        assert_eq!(op(Method::GET, "/b?acl"), S3Op::GetBucketAcl);
        assert_eq!(op(Method::PUT, "/b?acl"), S3Op::PutBucketAcl);
        assert_eq!(op(Method::GET, "/b/k?acl"), S3Op::GetObjectAcl);
        assert_eq!(op(Method::PUT, "/b/k?acl"), S3Op::PutObjectAcl);
        assert_eq!(
            r(Method::DELETE, "/b/k?acl", false).unwrap_err().code,
            "MethodNotAllowed"
        );
        assert_eq!(r(Method::PUT, "/b/k", true).unwrap().op, S3Op::CopyObject);
        assert_eq!(op(Method::GET, "/b/k?partNumber=1"), S3Op::GetObject);
        assert_eq!(
            op(Method::GET, "/b/k?attributes"),
            S3Op::GetObjectAttributes
        );
        assert_eq!(
            op(Method::GET, &format!("/b/k?attributes&uploadId={ID}")),
            S3Op::GetObjectAttributes
        );
        for (m, uri) in [
            (Method::GET, "/b?attributes"),
            (Method::HEAD, "/b/k?attributes"),
            (Method::PUT, "/b/k?attributes"),
            (Method::DELETE, "/b/k?attributes"),
        ] {
            assert!(
                matches!(r(m, uri, false).unwrap().op, S3Op::Unsupported { .. }),
                "{uri}"
            );
        }
        assert_eq!(op(Method::DELETE, "/b/k"), S3Op::DeleteObject);
        assert_eq!(op(Method::PUT, "/b/k?tagging"), S3Op::PutObjectTagging);
        assert_eq!(op(Method::GET, "/b/k?tagging="), S3Op::GetObjectTagging);
        assert_eq!(
            op(Method::DELETE, "/b/k?tagging&versionId=null"),
            S3Op::DeleteObjectTagging
        );
        // The sub-resource wins over a copy source, as it does on S3.
        assert_eq!(
            r(Method::PUT, "/b/k?tagging", true).unwrap().op,
            S3Op::PutObjectTagging
        );
    }

    #[test]
    fn virtual_host_style() {
        let uri: http::Uri = "/a/b%20c".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", "my-bucket.s3.local:9000".parse().unwrap());
        let b = host_bucket(&h, &uri, Some("s3.local"));
        assert_eq!(b.as_deref(), Some("my-bucket"));
        let route = route(&Method::GET, uri.path(), &Query::default(), &h, b).unwrap();
        assert_eq!(
            (route.bucket.as_str(), route.key.as_str(), &route.op),
            ("my-bucket", "a/b c", &S3Op::GetObject)
        );
        let route = super::route(
            &Method::PUT,
            "/",
            &Query::default(),
            &h,
            Some("my-bucket".into()),
        )
        .unwrap();
        assert_eq!(route.op, S3Op::CreateBucket);
        for host in [
            "s3.local:9000",
            "127.0.0.1:9000",
            "localhost",
            "x.other.domain",
        ] {
            h.insert("host", host.parse().unwrap());
            assert_eq!(host_bucket(&h, &uri, Some("s3.local")), None, "{host}");
        }
        assert_eq!(host_bucket(&h, &uri, None), None);
    }

    #[test]
    fn keys_are_decoded_once_and_kept_literal() {
        let route = r(Method::GET, "/b/a%20b/..//c%2525", false).unwrap();
        assert_eq!(route.bucket, "b");
        assert_eq!(route.key, "a b/..//c%25");
        assert_eq!(
            r(Method::GET, "/b/a%00b", false).unwrap_err().code,
            "InvalidArgument"
        );
        assert_eq!(
            r(Method::GET, "/b/%ff", false).unwrap_err().code,
            "InvalidArgument"
        );
    }

    #[test]
    fn bad_parameters() {
        for n in ["0", "10001", "-1", "abc", ""] {
            let e = r(
                Method::PUT,
                &format!("/b/k?partNumber={n}&uploadId={ID}"),
                false,
            )
            .unwrap_err();
            assert_eq!(e.code, "InvalidArgument", "{n}");
        }
        let e = r(Method::PUT, "/b/k?partNumber=1&uploadId=../../x", false).unwrap_err();
        assert_eq!(e.code, "NoSuchUpload");
        let e = r(Method::PUT, "/b/k?partNumber=1", false).unwrap_err();
        assert_eq!(e.code, "InvalidArgument");
        let e = r(Method::POST, &format!("/b/k?uploads&uploadId={ID}"), false).unwrap_err();
        assert_eq!(e.code, "InvalidArgument");
        // Unimplemented sub-resources are named after the operation they select (access log).
        for (m, uri, name) in [
            (Method::GET, "/b?tagging", "GetBucketTagging"),
            (Method::DELETE, "/b?policy", "DeleteBucketPolicy"),
            (Method::POST, "/b/k?restore", "RestoreObject"),
            (Method::HEAD, "/b/k?attributes", "GetObjectAttributes"),
            (Method::POST, "/b?website", "GetBucketWebsite"),
        ] {
            let route = r(m, uri, false).unwrap();
            assert_eq!(route.op.name(), name, "{uri}");
            assert!(matches!(route.op, S3Op::Unsupported { .. }), "{uri}");
        }
        assert_eq!(
            r(Method::POST, "/b/k?tagging", false).unwrap_err().code,
            "MethodNotAllowed"
        );
        assert_eq!(
            r(Method::GET, "/b/k?tagging&versionId=abc", false)
                .unwrap_err()
                .code,
            "InvalidArgument"
        );
        assert_eq!(
            r(Method::POST, "/b/k", false).unwrap_err().code,
            "MethodNotAllowed"
        );
        // Buckets are not versioned: only the `null` version exists.
        for m in [Method::GET, Method::HEAD, Method::DELETE] {
            let e = r(m.clone(), "/b/k?versionId=abc", false).unwrap_err();
            assert_eq!(e.code, "InvalidArgument", "{m}");
            let e = r(m.clone(), "/b/k?versionId=null&versionId=abc", false).unwrap_err();
            assert_eq!(e.code, "InvalidArgument", "{m}");
            let e = r(m.clone(), "/b/k?versionId=", false).unwrap_err();
            assert_eq!(e.message, "Version id cannot be the empty string");
            assert!(r(m, "/b/k?versionId=null", false).is_ok());
        }
        let e = r(Method::GET, "/b/k?attributes&versionId=abc", false).unwrap_err();
        assert_eq!(e.code, "InvalidArgument");
        assert!(r(Method::GET, "/b/k?attributes&versionId=null", false).is_ok());
    }

    #[test]
    fn query_names_are_decoded_once() {
        let q = Query::parse(Some("%75ploadId=a%2Bb&uploads&x=1+2&%2575=z"));
        assert_eq!(q.get("uploadId"), Some("a+b"));
        assert_eq!(q.get("x"), Some("1+2"));
        assert_eq!(q.get("%75"), Some("z"));
        assert!(!q.has("u"));
        let all: Vec<_> = q.iter().collect();
        assert_eq!(all[1], ("uploads", None));
        assert_eq!(all[0], ("uploadId", Some("a+b")));
        let id = UploadId::parse(ID).unwrap();
        assert_eq!(
            op(Method::DELETE, &format!("/b/k?%75ploadId={ID}")),
            S3Op::AbortMultipartUpload { upload_id: id }
        );
    }

    proptest::proptest! {
        /// Any method, path, query and Host: an operation or an S3 error, never a panic.
        #[test]
        fn arbitrary_requests_never_panic(
            method in "(GET|PUT|POST|HEAD|DELETE|OPTIONS|PATCH)",
            path in "/[ -~]{0,40}",
            query in "((uploads|uploadId|partNumber|cors|lifecycle|notification|versioning|delete|acl)(=[0-9a-f%]{0,34})?&?){0,4}|[ -~]{0,40}",
            host in "[a-z0-9.:-]{0,30}",
            copy in proptest::bool::ANY,
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = host.parse() {
                h.insert("host", v);
            }
            if copy {
                h.insert("x-amz-copy-source", "b/k".parse().unwrap());
            }
            let uri: http::Uri = "/".parse().unwrap();
            let vhost = host_bucket(&h, &uri, Some("s3.example.com"));
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            if let Ok(r) = route(&method, &path, &Query::parse(Some(&query)), &h, vhost) {
                proptest::prop_assert!(!r.key.contains('\0'));
            }
        }

        /// An UploadPart for any key, id and part number routes to exactly those, in path and
        /// virtual-host style.
        #[test]
        fn upload_part_round_trip(
            key in "[^\u{0}]{1,30}",
            id in "[0-9a-f]{32}",
            n in 1..=10000u16,
            vhost in proptest::bool::ANY,
        ) {
            let enc = percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC).to_string();
            let mut h = HeaderMap::new();
            h.insert("host", "bkt.s3.example.com:9000".parse().unwrap());
            let (path, bucket) = if vhost {
                (format!("/{enc}"), host_bucket(&h, &"/".parse().unwrap(), Some("s3.example.com")))
            } else {
                (format!("/bkt/{enc}"), None)
            };
            let query = format!("partNumber={n}&uploadId={id}");
            let r = route(&Method::PUT, &path, &Query::parse(Some(&query)), &h, bucket).unwrap();
            proptest::prop_assert_eq!((r.bucket.as_str(), r.key.as_str()), ("bkt", key.as_str()));
            proptest::prop_assert_eq!(r.op, S3Op::UploadPart {
                upload_id: UploadId::parse(&id).unwrap(),
                part_number: PartNumber::new(n.into()).unwrap(),
            });
        }

        /// Part numbers outside 1..=10000 are refused before anything else happens.
        #[test]
        fn bad_part_numbers_are_refused(n in "[0-9]{1,7}|-[0-9]{1,3}|\\+[0-9]{1,2}|[a-z]{0,3}") {
            // At most five digits, value 1..=10000; no sign.
            let ok = n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()) && n.parse::<u32>().is_ok_and(|n| (1..=10000).contains(&n));
            let routed = r(Method::PUT, &format!("/b/k?partNumber={n}&uploadId={ID}"), false);
            proptest::prop_assert_eq!(routed.is_ok(), ok, "{:?}", routed);
        }
    }
}
