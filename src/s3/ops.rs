//! One function per S3 operation: read headers, query and XML, call `upload::Uploads`, build the
//! status, headers and XML of the answer. No storage logic lives here.

use std::time::{Duration, SystemTime};

use crate::body::RequestBody;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use http::request::Parts;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::auth::Verified;
use super::error::S3Error;
use super::payload;
use super::route::{Query, Route, S3Op, copy_source};
use crate::app::App;
use crate::body::{Body, empty, full};
use crate::model::checksum::{ChecksumAlgorithm, ChecksumType, b64};
use crate::model::time::{http_date, iso8601};
use crate::model::{ObjectHeaders, ObjectRecord, PartNumber, UploadId, UploadRecord};
use crate::range::byte_range;
use crate::store::UploadCursor;
use crate::upload::{
    BodyChecks, BodyStream, Error as UploadError, Expected, ListedPart, MAX_KEYS, WriteCondition,
};
use crate::xml::{self, Xml};

type Res = Result<Response<Body>, S3Error>;

/// Enough for 10,000 `<Part>` entries with checksums, and no more.
const MAX_COMPLETE_XML: usize = 10_000 * 320;
/// Other XML bodies (DeleteObjects with 1,000 long keys, CreateBucketConfiguration).
const MAX_XML: usize = 2 << 20;

pub async fn dispatch(
    app: &App,
    req: &Parts,
    body: RequestBody,
    route: Route,
    auth: Verified,
) -> Res {
    let owner = auth.access_key.clone();
    let granted = match super::access::authorize(app, req, &route, &owner).await {
        Ok(g) => g,
        Err(e) => {
            drain(req, body).await;
            return Err(e);
        }
    };
    let Route {
        op,
        bucket,
        key,
        query,
    } = route;
    let (b, k) = (bucket.as_str(), key.as_str());
    match op {
        S3Op::ListBuckets => list_buckets(app, &owner).await,
        S3Op::CreateBucket => {
            let _ = collect(req, body, &auth, MAX_XML).await?;
            if b == "file" {
                // Path-style `/file/...` belongs to the design note's API (see `legacy`).
                return Err(S3Error::new(
                    "InvalidBucketName",
                    StatusCode::BAD_REQUEST,
                    "The bucket name `file` is reserved for the /file/* API.",
                ));
            }
            app.uploads.create_bucket(&owner, b).await?;
            let mut resp = Response::new(empty());
            set(resp.headers_mut(), header::LOCATION, &format!("/{b}"));
            Ok(resp)
        }
        S3Op::HeadBucket => {
            app.uploads.bucket(b).await?;
            let mut resp = Response::new(empty());
            set(
                resp.headers_mut(),
                HeaderName::from_static("x-amz-bucket-region"),
                &app.region,
            );
            Ok(resp)
        }
        S3Op::DeleteBucket => {
            let legacy = app.legacy.bucket == b;
            app.uploads.delete_bucket(b, !legacy).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::GetBucketLocation => {
            app.uploads.bucket(b).await?;
            let region = if &*app.region == "us-east-1" {
                ""
            } else {
                &app.region
            };
            Ok(xml_response(Xml::text_document(
                "LocationConstraint",
                region,
            )))
        }
        S3Op::GetBucketVersioning => {
            app.uploads.bucket(b).await?;
            Ok(xml_response(
                Xml::new("VersioningConfiguration").finish("VersioningConfiguration"),
            ))
        }
        S3Op::ListObjectVersions => list_object_versions(app, b, &query).await,
        S3Op::PutBucketCors => {
            let body = collect(req, body, &auth, MAX_XML).await?;
            app.uploads
                .set_bucket_cors(b, Some(super::cors::parse(&body)?))
                .await?;
            Ok(Response::new(empty()))
        }
        S3Op::GetBucketCors => match app.uploads.bucket(b).await?.cors {
            Some(rules) => Ok(xml_response(super::cors::to_xml(&rules))),
            None => Err(S3Error::new(
                "NoSuchCORSConfiguration",
                StatusCode::NOT_FOUND,
                "The CORS configuration does not exist",
            )),
        },
        S3Op::DeleteBucketCors => {
            app.uploads.set_bucket_cors(b, None).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::PutBucketLifecycle => {
            let body = collect(req, body, &auth, MAX_XML).await?;
            app.uploads
                .set_bucket_lifecycle(b, Some(super::lifecycle::parse(&body)?))
                .await?;
            Ok(Response::new(empty()))
        }
        S3Op::GetBucketLifecycle => match app.uploads.bucket(b).await?.lifecycle {
            Some(rules) => Ok(xml_response(super::lifecycle::to_xml(&rules))),
            None => Err(S3Error::new(
                "NoSuchLifecycleConfiguration",
                StatusCode::NOT_FOUND,
                "The lifecycle configuration does not exist",
            )),
        },
        S3Op::DeleteBucketLifecycle => {
            app.uploads.set_bucket_lifecycle(b, None).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::ListObjects { v2 } => list_objects(app, b, &query, v2).await,
        S3Op::ListMultipartUploads => list_uploads(app, b, &query).await,
        S3Op::DeleteObjects => delete_objects(app, req, body, &auth, b).await,
        S3Op::PostObject => {
            // A form upload authenticates by its policy (see `mod.rs`); signed like any other
            // request, it is not a form upload S3 knows.
            drain(req, body).await;
            Err(S3Error::new(
                "MethodNotAllowed",
                StatusCode::METHOD_NOT_ALLOWED,
                "The specified method is not allowed against this resource.",
            ))
        }
        S3Op::PutObject => put_object(app, req, body, &auth, b, k).await,
        S3Op::CopyObject => copy_object(app, req, &owner, b, k).await,
        S3Op::GetObject => get_object(app, req, &query, b, k, false).await,
        S3Op::HeadObject => get_object(app, req, &query, b, k, true).await,
        S3Op::DeleteObject => {
            app.uploads.delete_object(b, k).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::CreateMultipartUpload => create_multipart_upload(app, req, &owner, b, k).await,
        S3Op::UploadPart { part_number, .. } => {
            upload_part(app, req, body, &auth, granted.upload()?, part_number).await
        }
        S3Op::UploadPartCopy {
            upload_id,
            part_number,
        } => upload_part_copy(app, req, b, k, &upload_id, part_number).await,
        S3Op::CompleteMultipartUpload { upload_id } => {
            complete(app, req, body, &auth, b, k, &upload_id).await
        }
        S3Op::AbortMultipartUpload { upload_id } => {
            app.uploads.abort(&upload_id, b, k).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::ListParts { upload_id } => list_parts(app, &query, b, k, &upload_id).await,
    }
}

// ---------------- bodies ----------------

/// The verified body stream of a PutObject / UploadPart, with the checks its headers announce.
fn stream_body(
    req: &Parts,
    body: RequestBody,
    auth: &Verified,
) -> Result<(BodyStream, BodyChecks), S3Error> {
    let h = &req.headers;
    let chunked_te = h.get(header::TRANSFER_ENCODING).is_some_and(|v| {
        v.to_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("chunked")
    });
    if !h.contains_key(header::CONTENT_LENGTH)
        && !chunked_te
        && !h.contains_key("x-amz-decoded-content-length")
    {
        return Err(payload::PayloadError::MissingContentLength.into());
    }
    let decoded = payload::decode(body, h, auth.payload.clone())?;
    let content_md5 = content_md5(h)?;
    let mut checksum = given_checksum(
        h.iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or_default())),
        "header",
    )?;
    if let Some((name, slot)) = decoded.trailer {
        let alg = name
            .strip_prefix("x-amz-checksum-")
            .and_then(ChecksumAlgorithm::parse)
            .ok_or_else(|| S3Error::invalid_request(format!("Unsupported trailer: {name}")))?;
        if checksum.is_some() {
            return Err(S3Error::invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
        checksum = Some((alg, Expected::Trailer(slot)));
    }
    if checksum.is_none() {
        // The SDKs name the algorithm even when the value comes later; compute it so we can echo it.
        let named = h
            .get("x-amz-sdk-checksum-algorithm")
            .or_else(|| h.get("x-amz-checksum-algorithm"));
        if let Some(v) = named {
            let s = v.to_str().unwrap_or_default();
            let alg = ChecksumAlgorithm::parse(s).ok_or_else(|| {
                S3Error::invalid_request(format!("Unsupported checksum algorithm: {s}"))
            })?;
            checksum = Some((alg, Expected::Compute));
        }
    }
    Ok((
        decoded.stream,
        BodyChecks {
            length: decoded.length,
            content_md5,
            checksum,
        },
    ))
}

/// The `Content-MD5` header's digest, if one was sent.
fn content_md5(h: &HeaderMap) -> Result<Option<[u8; 16]>, UploadError> {
    let Some(v) = h.get("content-md5") else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.as_bytes())
        .ok();
    raw.and_then(|r| <[u8; 16]>::try_from(r).ok())
        .map(Some)
        .ok_or(UploadError::InvalidDigest)
}

/// Reads a small body (XML) whole, verified (payload hash, Content-MD5), refusing more than
/// `limit` bytes.
async fn collect(
    req: &Parts,
    body: RequestBody,
    auth: &Verified,
    limit: usize,
) -> Result<Bytes, S3Error> {
    let announced = req
        .headers
        .get("x-amz-decoded-content-length")
        .or_else(|| req.headers.get(header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(S3Error::new(
            "MaxMessageLengthExceeded",
            StatusCode::BAD_REQUEST,
            "Your request was too big.",
        ));
    }
    let md5_header = content_md5(&req.headers)?;
    let mut stream = payload::decode(body, &req.headers, auth.payload.clone())?.stream;
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| S3Error::from(UploadError::Body(e)))?;
        if buf.len() + chunk.len() > limit {
            return Err(S3Error::new(
                "MaxMessageLengthExceeded",
                StatusCode::BAD_REQUEST,
                "Your request was too big.",
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    // A Complete or DeleteObjects acts on what its body says: a damaged one must not run.
    if let Some(want) = md5_header
        && crate::model::checksum::md5_of(&buf) != want
    {
        return Err(UploadError::BadDigest(
            "The Content-MD5 you specified did not match what we received.".into(),
        )
        .into());
    }
    Ok(buf.into())
}

// ---------------- objects ----------------

async fn put_object(
    app: &App,
    req: &Parts,
    body: RequestBody,
    auth: &Verified,
    b: &str,
    k: &str,
) -> Res {
    let (body, admitted) = precheck(req, body, async {
        app.uploads.bucket(b).await?;
        app.uploads.admit(declared_length(req))
    })
    .await?;
    let headers = object_headers(&req.headers);
    let (stream, checks) = stream_body(req, body, auth)?;
    let rec = app
        .uploads
        .put_object(
            &auth.access_key,
            b,
            k,
            headers,
            stream,
            checks,
            &write_condition(&req.headers),
            admitted,
        )
        .await?;
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    set(h, header::ETAG, &quoted(&rec.etag));
    if let Some(c) = &rec.checksum {
        set(
            h,
            HeaderName::from_static(c.algorithm.header_name()),
            &b64(&c.value),
        );
        set(
            h,
            HeaderName::from_static("x-amz-checksum-type"),
            ChecksumType::FullObject.as_str(),
        );
    }
    Ok(resp)
}

async fn copy_object(app: &App, req: &Parts, owner: &str, b: &str, k: &str) -> Res {
    let (sb, sk) = copy_source(&req.headers)?;
    let replace = match req
        .headers
        .get("x-amz-metadata-directive")
        .map(HeaderValue::as_bytes)
    {
        None | Some(b"COPY") => false,
        Some(b"REPLACE") => true,
        Some(_) => return Err(S3Error::invalid_argument("Unknown metadata directive.")),
    };
    if (sb.as_str(), sk.as_str()) == (b, k) && !replace {
        return Err(S3Error::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let src = app.uploads.object(&sb, &sk).await?;
    check_conditions(&req.headers, &src, "x-amz-copy-source-")?;
    let headers = replace.then(|| object_headers(&req.headers));
    let rec = app
        .uploads
        .copy_object(owner, (&sb, &sk), (b, k), headers)
        .await?;
    let mut x = Xml::new("CopyObjectResult");
    x.elem("LastModified", iso8601(rec.modified))
        .elem("ETag", quoted(&rec.etag));
    Ok(xml_response(x.finish("CopyObjectResult")))
}

async fn get_object(app: &App, req: &Parts, query: &Query, b: &str, k: &str, head: bool) -> Res {
    let rec = app.uploads.object(b, k).await?;
    if let Err(e) = check_conditions(&req.headers, &rec, "") {
        if matches!(e, UploadError::NotModified) {
            let mut resp = status(StatusCode::NOT_MODIFIED);
            set(resp.headers_mut(), header::ETAG, &quoted(&rec.etag));
            set(
                resp.headers_mut(),
                header::LAST_MODIFIED,
                &http_date(rec.modified),
            );
            return Ok(resp);
        }
        return Err(e.into());
    }
    let range = req.headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let part = query.get("partNumber");
    if part.is_some() && range.is_some() {
        return Err(S3Error::invalid_request(
            "Cannot specify both Range header and partNumber query parameter.",
        ));
    }
    // (start, end-exclusive, partial?, the part's checksum for partNumber reads)
    let (start, end, partial, part_index) = if let Some(p) = part {
        let n = PartNumber::parse(p).ok_or_else(|| {
            S3Error::invalid_argument(
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })?;
        let idx = usize::from(n.get()) - 1;
        if !rec.multipart {
            if idx != 0 {
                return Err(UploadError::InvalidPart(
                    "The requested partnumber is not satisfiable".into(),
                )
                .into());
            }
            (0, rec.size, false, None)
        } else {
            let p = rec.parts.get(idx).ok_or_else(|| {
                UploadError::InvalidPart("The requested partnumber is not satisfiable".into())
            })?;
            let offset: u64 = rec.parts[..idx].iter().map(|p| p.size).sum();
            (offset, offset + p.size, true, Some(idx))
        }
    } else if let Some(r) = range {
        match byte_range(r, rec.size) {
            None => (0, rec.size, false, None),
            Some(Err(())) => {
                return Err(UploadError::InvalidRange { size: rec.size }.into());
            }
            Some(Ok((s, e))) => (s, e, true, None),
        }
    } else {
        (0, rec.size, false, None)
    };

    let body = if head || start == end {
        empty()
    } else {
        crate::body::stream(app.uploads.read(&rec, start, end))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    set(h, header::CONTENT_LENGTH, &(end - start).to_string());
    set(h, header::ACCEPT_RANGES, "bytes");
    set(h, header::ETAG, &quoted(&rec.etag));
    set(h, header::LAST_MODIFIED, &http_date(rec.modified));
    if partial {
        let last = end.saturating_sub(1).max(start);
        set(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{last}/{}", rec.size),
        );
    }
    if rec.multipart && part.is_some() {
        set(
            h,
            HeaderName::from_static("x-amz-mp-parts-count"),
            &rec.parts.len().to_string(),
        );
    }
    put_object_headers(h, &rec.headers, query);
    let checksum_mode = req
        .headers
        .get("x-amz-checksum-mode")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"ENABLED"));
    if checksum_mode {
        // Never a whole-object checksum on a range: clients would check it against the range.
        let (sum, t) = match part_index {
            Some(i) => (
                rec.parts[i].checksum.as_ref(),
                Some(ChecksumType::FullObject),
            ),
            None if range.is_none() => (rec.checksum.as_ref(), rec.checksum_type),
            None => (None, None),
        };
        if let Some(c) = sum {
            let mut v = b64(&c.value);
            if t == Some(ChecksumType::Composite) && part_index.is_none() {
                v = format!("{v}-{}", rec.parts.len());
            }
            set(h, HeaderName::from_static(c.algorithm.header_name()), &v);
            if let Some(t) = t {
                set(
                    h,
                    HeaderName::from_static("x-amz-checksum-type"),
                    t.as_str(),
                );
            }
        }
    }
    Ok(resp)
}

/// If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since, with S3's precedence.
/// `prefix` is "" for GET/HEAD or "x-amz-copy-source-" for copies (which answer 412, never 304).
fn check_conditions(h: &HeaderMap, rec: &ObjectRecord, prefix: &str) -> Result<(), UploadError> {
    let get = |name: &str| {
        h.get(format!("{prefix}{name}").as_str())
            .and_then(|v| v.to_str().ok())
    };
    let etag_matches = |list: &str| {
        list.split(',').any(|t| {
            let t = t.trim();
            t == "*" || crate::model::checksum::normalize_etag(t) == rec.etag
        })
    };
    let modified = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(rec.modified / 1000).unwrap_or(0));
    let since = |name: &str| get(name).and_then(|v| httpdate::parse_http_date(v).ok());
    let if_match = get("if-match");
    if let Some(m) = if_match {
        if !etag_matches(m) {
            return Err(UploadError::PreconditionFailed);
        }
    } else if since("if-unmodified-since").is_some_and(|t| modified > t) {
        return Err(UploadError::PreconditionFailed);
    }
    let not_modified = if prefix.is_empty() {
        UploadError::NotModified
    } else {
        UploadError::PreconditionFailed
    };
    if let Some(m) = get("if-none-match") {
        if etag_matches(m) {
            return Err(not_modified);
        }
    } else if since("if-modified-since").is_some_and(|t| modified <= t) {
        return Err(not_modified);
    }
    Ok(())
}

async fn delete_objects(
    app: &App,
    req: &Parts,
    body: RequestBody,
    auth: &Verified,
    b: &str,
) -> Res {
    let body = collect(req, body, auth, MAX_XML).await?;
    let (quiet, objects) = delete_request(&body)?;
    app.uploads.bucket(b).await?;
    let mut x = Xml::new("DeleteResult");
    for (key, version) in &objects {
        let (key, version) = (key.as_str(), version.as_deref());
        let result = if version.is_some_and(|v| v != "null") {
            Err(S3Error::not_implemented(
                "Object versions are not supported",
            ))
        } else if key.is_empty() {
            Err(S3Error::invalid_argument("Key must not be empty"))
        } else {
            app.uploads
                .delete_object(b, key)
                .await
                .map_err(S3Error::from)
        };
        match result {
            Ok(()) if quiet => {}
            Ok(()) => {
                x.open("Deleted")
                    .elem("Key", key)
                    .opt("VersionId", version)
                    .close("Deleted");
            }
            Err(e) => {
                x.open("Error")
                    .elem("Key", key)
                    .elem("Code", e.code)
                    .elem("Message", &e.message)
                    .close("Error");
            }
        }
    }
    Ok(xml_response(x.finish("DeleteResult")))
}

/// A DeleteObjects request: the Quiet flag and each object's key and version id, in order.
pub type DeleteRequest = (bool, Vec<(String, Option<String>)>);

/// Parses a DeleteObjects body.
pub fn delete_request(body: &[u8]) -> Result<DeleteRequest, S3Error> {
    let root = xml::parse(body).map_err(|_| S3Error::malformed_xml())?;
    if root.name != "Delete" {
        return Err(S3Error::malformed_xml());
    }
    let quiet = root
        .child_text("Quiet")
        .is_some_and(|q| q.trim().eq_ignore_ascii_case("true"));
    let objects: Vec<_> = root
        .children_named("Object")
        .map(|o| {
            let key = o.child_text("Key").unwrap_or_default().to_owned();
            (key, o.child_text("VersionId").map(str::to_owned))
        })
        .collect();
    if objects.is_empty() || objects.len() > 1000 {
        return Err(S3Error::malformed_xml());
    }
    Ok((quiet, objects))
}

async fn list_buckets(app: &App, owner: &str) -> Res {
    let mut buckets = app.uploads.list_buckets().await?;
    buckets.retain(|bkt| super::access::lists(app, bkt, owner));
    let mut x = Xml::new("ListAllMyBucketsResult");
    x.open("Owner")
        .elem("ID", owner)
        .elem("DisplayName", owner)
        .close("Owner")
        .open("Buckets");
    for bkt in buckets {
        x.open("Bucket")
            .elem("Name", &bkt.name)
            .elem("CreationDate", iso8601(bkt.created))
            .close("Bucket");
    }
    x.close("Buckets");
    Ok(xml_response(x.finish("ListAllMyBucketsResult")))
}

async fn list_objects(app: &App, b: &str, q: &Query, v2: bool) -> Res {
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
    x.elem("Name", b).elem("Prefix", enc(prefix));
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
async fn list_object_versions(app: &App, b: &str, q: &Query) -> Res {
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

// ---------------- multipart ----------------

async fn create_multipart_upload(app: &App, req: &Parts, owner: &str, b: &str, k: &str) -> Res {
    let h = &req.headers;
    let alg = match h.get("x-amz-checksum-algorithm") {
        None => None,
        Some(v) => {
            let s = v.to_str().unwrap_or_default();
            Some(ChecksumAlgorithm::parse(s).ok_or_else(|| {
                S3Error::invalid_request(format!("Checksum algorithm provided is unsupported: {s}"))
            })?)
        }
    };
    let typ = match h.get("x-amz-checksum-type") {
        None => None,
        Some(v) => {
            let s = v.to_str().unwrap_or_default();
            Some(ChecksumType::parse(s).ok_or_else(|| {
                S3Error::invalid_request(format!(
                    "Value for x-amz-checksum-type header is invalid: {s}"
                ))
            })?)
        }
    };
    let checksum = match (alg, typ) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(S3Error::invalid_request(
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
            ));
        }
        (Some(a), t) => {
            let t = t.unwrap_or_else(|| a.default_type());
            if !a.supports(t) {
                return Err(S3Error::invalid_request(format!(
                    "The {} checksum type cannot be used with the {} checksum algorithm.",
                    t.as_str(),
                    a.as_str().to_lowercase()
                )));
            }
            Some((a, t))
        }
    };
    let up = app
        .uploads
        .init(owner, b, k, object_headers(h), checksum)
        .await?;
    let mut x = Xml::new("InitiateMultipartUploadResult");
    x.elem("Bucket", b)
        .elem("Key", k)
        .elem("UploadId", up.id.as_str());
    let mut resp = xml_response(x.finish("InitiateMultipartUploadResult"));
    if let Some((a, t)) = checksum {
        set(
            resp.headers_mut(),
            HeaderName::from_static("x-amz-checksum-algorithm"),
            a.as_str(),
        );
        set(
            resp.headers_mut(),
            HeaderName::from_static("x-amz-checksum-type"),
            t.as_str(),
        );
    }
    Ok(resp)
}

/// `up` is the caller's open upload, which `access::authorize` loaded.
async fn upload_part(
    app: &App,
    req: &Parts,
    body: RequestBody,
    auth: &Verified,
    up: UploadRecord,
    n: PartNumber,
) -> Res {
    // Refuse before reading the body when we can (the client may be waiting for 100-continue).
    let (body, admitted) =
        precheck(req, body, async { app.uploads.admit(declared_length(req)) }).await?;
    let (stream, checks) = stream_body(req, body, auth)?;
    let part = app
        .uploads
        .put_part(&up, n, stream, checks, admitted)
        .await?;
    let mut resp = Response::new(empty());
    set(
        resp.headers_mut(),
        header::ETAG,
        &quoted(&hex::encode(part.md5)),
    );
    if let Some(c) = &part.checksum {
        set(
            resp.headers_mut(),
            HeaderName::from_static(c.algorithm.header_name()),
            &b64(&c.value),
        );
    }
    Ok(resp)
}

/// UploadPartCopy: a byte range of an existing object becomes a part (its ETag is the MD5 of
/// the copied bytes, as for an uploaded part).
async fn upload_part_copy(
    app: &App,
    req: &Parts,
    b: &str,
    k: &str,
    id: &UploadId,
    n: PartNumber,
) -> Res {
    let up = app.uploads.upload_in(id, b, k).await?;
    let (sb, sk) = copy_source(&req.headers)?;
    let src = app.uploads.object(&sb, &sk).await?;
    check_conditions(&req.headers, &src, "x-amz-copy-source-")?;
    let (start, end) = match req.headers.get("x-amz-copy-source-range") {
        None => (0, src.size),
        Some(v) => {
            let (s, e) = parse_copy_range(v.to_str().unwrap_or_default()).ok_or_else(|| {
                S3Error::invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
            })?;
            if e >= src.size {
                return Err(UploadError::InvalidRange { size: src.size }.into());
            }
            (s, e + 1)
        }
    };
    if end - start > app.uploads.limits().max_part_size {
        return Err(S3Error::invalid_request(
            "The specified copy source is larger than the maximum allowable size for a copy source",
        ));
    }
    let source = app
        .uploads
        .read(&src, start, end)
        .map_err(crate::upload::BodyError::new);
    let checks = BodyChecks {
        length: Some(end - start),
        ..BodyChecks::default()
    };
    let admitted = app.uploads.admit(checks.length)?;
    let part = app
        .uploads
        .put_part(&up, n, Box::pin(source), checks, admitted)
        .await?;
    let mut x = Xml::new("CopyPartResult");
    x.elem("ETag", quoted(&hex::encode(part.md5)))
        .elem("LastModified", iso8601(part.modified));
    if let Some(c) = &part.checksum {
        x.elem(c.algorithm.xml_name(), b64(&c.value));
    }
    let mut resp = xml_response(x.finish("CopyPartResult"));
    set(
        resp.headers_mut(),
        HeaderName::from_static("x-amz-copy-source-version-id"),
        "null",
    );
    Ok(resp)
}

/// `bytes=first-last`, strictly (S3 answers InvalidArgument to anything else).
fn parse_copy_range(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse::<u64>().ok())?
    };
    let (a, b) = (num(a)?, num(b)?);
    (a <= b).then_some((a, b))
}

async fn complete(
    app: &App,
    req: &Parts,
    body: RequestBody,
    auth: &Verified,
    b: &str,
    k: &str,
    id: &UploadId,
) -> Res {
    app.uploads.bucket(b).await?;
    let body = collect(req, body, auth, MAX_COMPLETE_XML).await?;
    let listed = complete_parts(&body)?;
    let done = app
        .uploads
        .complete_verified(id, b, k, listed, None, &write_condition(&req.headers))
        .await?;
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let mut x = Xml::new("CompleteMultipartUploadResult");
    x.elem("Location", format!("http://{host}/{b}/{}", url_encode(k)))
        .elem("Bucket", b)
        .elem("Key", k)
        .elem("ETag", quoted(&done.etag));
    if let Some(c) = &done.checksum {
        let mut v = b64(&c.value);
        if done.checksum_type == Some(ChecksumType::Composite) {
            v = format!("{v}-{}", done_parts(&body));
        }
        x.elem(c.algorithm.xml_name(), v);
        x.opt("ChecksumType", done.checksum_type.map(ChecksumType::as_str));
    }
    Ok(xml_response(x.finish("CompleteMultipartUploadResult")))
}

/// Parses a CompleteMultipartUpload body into the parts it lists, in the order listed (the
/// order and the ETags are checked against the upload later).
pub fn complete_parts(body: &[u8]) -> Result<Vec<ListedPart>, S3Error> {
    let root = xml::parse(body).map_err(|_| S3Error::malformed_xml())?;
    if root.name != "CompleteMultipartUpload" {
        return Err(S3Error::malformed_xml());
    }
    let mut listed = Vec::new();
    for p in root.children_named("Part") {
        let number = p
            .child_text("PartNumber")
            .map(str::trim)
            .and_then(PartNumber::parse)
            .ok_or_else(|| {
                UploadError::InvalidPart(
                    "Part number must be an integer between 1 and 10000, inclusive".into(),
                )
            })?;
        let etag = p
            .child_text("ETag")
            .ok_or_else(S3Error::malformed_xml)?
            .to_owned();
        let checksum = ChecksumAlgorithm::ALL
            .into_iter()
            .find_map(|a| p.child_text(a.xml_name()).map(|v| (a, v.trim().to_owned())));
        listed.push(ListedPart {
            number,
            etag,
            checksum,
        });
    }
    Ok(listed)
}

/// Number of distinct parts a Complete body named (for the composite checksum's `-N`).
fn done_parts(body: &[u8]) -> usize {
    let Ok(root) = xml::parse(body) else { return 0 };
    let mut nums: Vec<&str> = root
        .children_named("Part")
        .filter_map(|p| p.child_text("PartNumber"))
        .map(str::trim)
        .collect();
    nums.dedup();
    nums.len()
}

async fn list_parts(app: &App, q: &Query, b: &str, k: &str, id: &UploadId) -> Res {
    let max = max_param(q, "max-parts")?;
    let marker = match q.get("part-number-marker").filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => match m.parse::<u32>() {
            Ok(0) => None,
            Ok(n) => Some(PartNumber::new(n.min(u32::from(PartNumber::MAX))).expect("clamped")),
            Err(_) => return Err(S3Error::invalid_argument("Invalid part-number-marker")),
        },
    };
    app.uploads.bucket(b).await?;
    let (up, parts, truncated) = app.uploads.list_parts(id, b, k, marker, max).await?;
    let mut x = Xml::new("ListPartsResult");
    x.elem("Bucket", b)
        .elem("Key", k)
        .elem("UploadId", id.as_str());
    owner(&mut x, "Initiator", &up.owner);
    owner(&mut x, "Owner", &up.owner);
    x.elem("StorageClass", "STANDARD");
    x.elem(
        "PartNumberMarker",
        marker.map_or(0, PartNumber::get).to_string(),
    );
    if let Some((n, _)) = parts.last() {
        x.elem("NextPartNumberMarker", n.to_string());
    }
    x.elem("MaxParts", max.to_string())
        .elem("IsTruncated", truncated.to_string());
    if let Some(a) = up.checksum_algorithm {
        x.elem("ChecksumAlgorithm", a.as_str());
        x.opt("ChecksumType", up.checksum_type.map(ChecksumType::as_str));
    }
    for (n, p) in &parts {
        x.open("Part")
            .elem("PartNumber", n.to_string())
            .elem("LastModified", iso8601(p.modified))
            .elem("ETag", quoted(&hex::encode(p.md5)))
            .elem("Size", p.size.to_string());
        if let Some(c) = &p.checksum {
            x.elem(c.algorithm.xml_name(), b64(&c.value));
        }
        x.close("Part");
    }
    Ok(xml_response(x.finish("ListPartsResult")))
}

async fn list_uploads(app: &App, b: &str, q: &Query) -> Res {
    let url = encoding_type(q)?;
    let enc = |s: &str| if url { url_encode(s) } else { s.to_owned() };
    let max = max_param(q, "max-uploads")?;
    let prefix = q.get("prefix").unwrap_or_default();
    let delimiter = q.get("delimiter").filter(|d| !d.is_empty());
    let key_marker = q.get("key-marker").filter(|m| !m.is_empty());
    let id_marker = q.get("upload-id-marker").filter(|m| !m.is_empty());
    let mut cursor = key_marker.map(|k| UploadCursor {
        key: k.to_owned(),
        upload: None,
    });
    if let (Some(c), Some(id)) = (cursor.as_mut(), id_marker.and_then(UploadId::parse)) {
        // Uploads on the marker key started after that upload; an unknown id lists none on it.
        if let Some(up) = app
            .uploads
            .meta()
            .get_upload(&id)
            .await
            .map_err(UploadError::from)?
            && up.key == c.key
        {
            c.upload = Some((up.created, up.id));
        }
    }
    let page = app
        .uploads
        .list_uploads(b, prefix, delimiter, cursor, max)
        .await?;
    let mut x = Xml::new("ListMultipartUploadsResult");
    x.elem("Bucket", b)
        .elem("KeyMarker", enc(key_marker.unwrap_or_default()))
        .elem("UploadIdMarker", id_marker.unwrap_or_default());
    if page.truncated {
        match page.items.last() {
            Some(last) if page.last.as_deref() == Some(last.key.as_str()) => {
                x.elem("NextKeyMarker", enc(&last.key))
                    .elem("NextUploadIdMarker", last.id.as_str());
            }
            _ => {
                x.elem(
                    "NextKeyMarker",
                    enc(page.last.as_deref().unwrap_or_default()),
                );
            }
        }
    }
    x.elem("Prefix", enc(prefix))
        .opt("Delimiter", delimiter.map(enc));
    x.elem("MaxUploads", max.to_string())
        .elem("IsTruncated", page.truncated.to_string());
    if url {
        x.elem("EncodingType", "url");
    }
    for up in &page.items {
        x.open("Upload")
            .elem("Key", enc(&up.key))
            .elem("UploadId", up.id.as_str());
        owner(&mut x, "Initiator", &up.owner);
        owner(&mut x, "Owner", &up.owner);
        x.elem("StorageClass", "STANDARD")
            .elem("Initiated", iso8601(up.created));
        if let Some(a) = up.checksum_algorithm {
            x.elem("ChecksumAlgorithm", a.as_str());
            x.opt("ChecksumType", up.checksum_type.map(ChecksumType::as_str));
        }
        x.close("Upload");
    }
    common_prefixes(&mut x, &page.prefixes, &enc);
    Ok(xml_response(x.finish("ListMultipartUploadsResult")))
}

// ---------------- helpers ----------------

/// `<Owner>` / `<Initiator>`: the access key stands for both ID and display name.
fn owner(x: &mut Xml, tag: &str, id: &str) {
    x.open(tag)
        .elem("ID", id)
        .elem("DisplayName", id)
        .close(tag);
}

fn common_prefixes(x: &mut Xml, prefixes: &[String], enc: &impl Fn(&str) -> String) {
    for p in prefixes {
        x.open("CommonPrefixes")
            .elem("Prefix", enc(p))
            .close("CommonPrefixes");
    }
}

/// Reads and drops an unread request body before an early error answer. A client that sent
/// `Expect: 100-continue` has not sent its body: nothing to drain (the answer closes instead).
pub async fn drain(req: &Parts, body: RequestBody) {
    use crate::body::DRAIN_LIMIT;
    use http_body_util::BodyExt as _;
    let expects = req
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if expects || declared.is_some_and(|n| n == 0 || n > DRAIN_LIMIT) {
        return;
    }
    let mut body = body;
    let mut seen = 0u64;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), reading).await;
}

/// The body length a request announces (decoded length for aws-chunked bodies).
pub(super) fn declared_length(req: &Parts) -> Option<u64> {
    let h = &req.headers;
    h.get("x-amz-decoded-content-length")
        .or_else(|| h.get(header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Runs the checks that can refuse a body-carrying request before its body is read; on refusal
/// the body is drained first.
async fn precheck<T, F: std::future::Future<Output = Result<T, UploadError>>>(
    req: &Parts,
    body: RequestBody,
    checks: F,
) -> Result<(RequestBody, T), S3Error> {
    match checks.await {
        Ok(v) => Ok((body, v)),
        Err(e) => {
            drain(req, body).await;
            Err(e.into())
        }
    }
}

fn write_condition(h: &HeaderMap) -> WriteCondition {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    WriteCondition {
        if_match: get("if-match"),
        if_none_match: get("if-none-match"),
    }
}

fn max_param(q: &Query, name: &str) -> Result<usize, S3Error> {
    match q.get(name) {
        None | Some("") => Ok(MAX_KEYS),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| usize::try_from(n).unwrap_or(MAX_KEYS).min(MAX_KEYS))
            .ok_or_else(|| {
                S3Error::invalid_argument(format!(
                    "Provided {name} not an integer or within integer range"
                ))
            }),
    }
}

fn encoding_type(q: &Query) -> Result<bool, S3Error> {
    match q.get("encoding-type") {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("url") => Ok(true),
        Some(_) => Err(S3Error::invalid_argument(
            "Invalid Encoding Method specified in Request",
        )),
    }
}

/// Percent-encodes like S3's `encoding-type=url`: everything but unreserved characters and `/`.
pub fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The headers kept with an object, from a PutObject / CreateMultipartUpload / CopyObject request.
pub(super) fn object_headers(h: &HeaderMap) -> ObjectHeaders {
    let text = |name: &str| {
        h.get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    // `aws-chunked` describes the transfer, not the object: drop it from Content-Encoding.
    let encoding = text("content-encoding").and_then(|v| {
        let kept: Vec<&str> = v
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
            .collect();
        (!kept.is_empty()).then(|| kept.join(", "))
    });
    let user = h
        .iter()
        .filter_map(|(n, v)| {
            n.as_str()
                .strip_prefix("x-amz-meta-")
                .map(|m| (m.to_owned(), v.as_bytes().to_vec()))
        })
        .collect();
    ObjectHeaders {
        content_type: text("content-type"),
        cache_control: text("cache-control"),
        content_disposition: text("content-disposition"),
        content_encoding: encoding,
        content_language: text("content-language"),
        expires: text("expires"),
        user,
    }
}

/// Writes an object's stored headers into a GET/HEAD response, with `response-*` overrides.
fn put_object_headers(h: &mut HeaderMap, oh: &ObjectHeaders, q: &Query) {
    let fields: [(HeaderName, &Option<String>, &str); 6] = [
        (
            header::CONTENT_TYPE,
            &oh.content_type,
            "response-content-type",
        ),
        (
            header::CACHE_CONTROL,
            &oh.cache_control,
            "response-cache-control",
        ),
        (
            header::CONTENT_DISPOSITION,
            &oh.content_disposition,
            "response-content-disposition",
        ),
        (
            header::CONTENT_ENCODING,
            &oh.content_encoding,
            "response-content-encoding",
        ),
        (
            header::CONTENT_LANGUAGE,
            &oh.content_language,
            "response-content-language",
        ),
        (header::EXPIRES, &oh.expires, "response-expires"),
    ];
    for (name, stored, over) in fields {
        let value = q.get(over).map(str::to_owned).or_else(|| stored.clone());
        let value = match (&name, value) {
            (n, None) if *n == header::CONTENT_TYPE => Some("binary/octet-stream".to_owned()),
            (_, v) => v,
        };
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    }
    for (name, value) in &oh.user {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(format!("x-amz-meta-{name}")),
            HeaderValue::from_bytes(value),
        ) {
            h.append(n, v);
        }
    }
}

pub(super) fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn status(s: StatusCode) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = s;
    resp
}

pub(super) fn xml_response(doc: String) -> Response<Body> {
    let mut resp = Response::new(full(doc));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// The one `x-amz-checksum-<alg>` value a request gives (as a header, or a POST form field: `noun`),
/// decoded; `x-amz-checksum-{algorithm,type,mode}` name no value and are skipped.
pub(super) fn given_checksum<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    noun: &str,
) -> Result<Option<(ChecksumAlgorithm, Expected)>, S3Error> {
    let mut checksum = None;
    for (name, value) in pairs {
        let Some(alg_name) = name.strip_prefix("x-amz-checksum-") else {
            continue;
        };
        if matches!(alg_name, "algorithm" | "type" | "mode") {
            continue;
        }
        let alg = ChecksumAlgorithm::parse(alg_name).ok_or_else(|| {
            S3Error::invalid_request(format!("Unsupported checksum algorithm: {alg_name}"))
        })?;
        if checksum.is_some() {
            return Err(S3Error::invalid_request(format!(
                "Expecting a single x-amz-checksum- {noun}. Multiple checksum Types are not allowed."
            )));
        }
        let value = alg.decode(value).ok_or_else(|| {
            S3Error::invalid_request(format!("Value for {name} {noun} is invalid."))
        })?;
        checksum = Some((alg, Expected::Given(value)));
    }
    Ok(checksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_are_strict() {
        assert_eq!(parse_copy_range("bytes=0-2"), Some((0, 2)));
        for bad in [
            "0-2",
            "bytes=0",
            "bytes=hello-world",
            "bytes=0-bar",
            "bytes=hello-",
            "bytes=0-2,3-5",
            "bytes=3-1",
        ] {
            assert_eq!(parse_copy_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn url_encoding_matches_botocore_expectations() {
        assert_eq!(url_encode("foo+1/bar"), "foo%2B1/bar");
        assert_eq!(url_encode("quux ab/"), "quux%20ab/");
        assert_eq!(url_encode("ä"), "%C3%A4");
    }

    /// Part number, ETag, and a checksum (index into `ChecksumAlgorithm::ALL`, value).
    type PartSpec = (u16, String, Option<(usize, String)>);

    /// A Complete body as SDKs write it.
    fn complete_body(parts: &[PartSpec]) -> String {
        let mut x = Xml::new("CompleteMultipartUpload");
        for (n, etag, checksum) in parts {
            x.open("Part")
                .elem("PartNumber", n.to_string())
                .elem("ETag", etag);
            if let Some((alg, v)) = checksum {
                x.elem(ChecksumAlgorithm::ALL[*alg].xml_name(), v);
            }
            x.close("Part");
        }
        x.finish("CompleteMultipartUpload")
    }

    proptest::proptest! {
        /// Any Range value: no panic, and what is served lies inside the object and is not empty.
        #[test]
        fn ranges_stay_inside_the_object(r in "(bytes=)?[0-9 ]{0,21}-?[0-9 ,]{0,21}|[ -~]{0,30}", size in proptest::prelude::any::<u64>()) {
            if let Some(Ok((s, e))) = byte_range(&r, size) {
                proptest::prop_assert!(s < e && e <= size, "{r} {size}: {s}..{e}");
            }
        }

        /// `bytes=a-b`, `bytes=a-` and `bytes=-n` mean what RFC 9110 says.
        #[test]
        fn range_forms(a in 0..1000u64, b in 0..1000u64, size in 0..1000u64) {
            let (lo, hi) = (a.min(b), a.max(b));
            let want = |r: (u64, u64)| Some(if lo < size { Ok(r) } else { Err(()) });
            proptest::prop_assert_eq!(byte_range(&format!("bytes={lo}-{hi}"), size), want((lo, (hi + 1).min(size))));
            proptest::prop_assert_eq!(byte_range(&format!("bytes={lo}-"), size), want((lo, size)));
            let suffix = if a == 0 || size == 0 { Err(()) } else { Ok((size.saturating_sub(a), size)) };
            proptest::prop_assert_eq!(byte_range(&format!("bytes=-{a}"), size), Some(suffix));
            // Reversed ranges are ignored (the whole object), as on AWS.
            if lo < hi {
                proptest::prop_assert_eq!(byte_range(&format!("bytes={hi}-{lo}"), size), None);
            }
        }

        /// The parts a Complete body lists come back in order, ETags and checksums verbatim.
        #[test]
        fn complete_bodies_round_trip(parts in proptest::collection::vec(
            (1..=10000u16, "[ -~]{0,40}", proptest::option::of((0..5usize, "[A-Za-z0-9+/=]{0,12}"))),
            0..20,
        )) {
            let listed = complete_parts(complete_body(&parts).as_bytes()).unwrap();
            proptest::prop_assert_eq!(listed.len(), parts.len());
            for (got, (n, etag, checksum)) in listed.iter().zip(&parts) {
                proptest::prop_assert_eq!(got.number.get(), *n);
                proptest::prop_assert_eq!(&got.etag, etag);
                let want = checksum.as_ref().map(|(a, v)| (ChecksumAlgorithm::ALL[*a], v.clone()));
                proptest::prop_assert_eq!(&got.checksum, &want);
            }
        }

        /// Part numbers outside 1..=10000 (or not numbers) are refused as InvalidPart.
        #[test]
        fn complete_refuses_bad_part_numbers(n in "[0-9]{1,7}|-[0-9]{1,3}|[a-z]{1,3}") {
            let body = format!("<CompleteMultipartUpload><Part><PartNumber>{n}</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>");
            let accepted = complete_parts(body.as_bytes()).is_ok();
            // At most five digits (so "000001" is refused too), value 1..=10000.
            let valid = n.len() <= 5 && n.parse::<u32>().is_ok_and(|n| (1..=10000).contains(&n));
            proptest::prop_assert_eq!(accepted, valid);
        }

        /// DeleteObjects: keys (any text) and version ids come back in order; 1..=1000 objects.
        #[test]
        fn delete_bodies_round_trip(
            objects in proptest::collection::vec((proptest::prelude::any::<String>(), proptest::option::of("[A-Za-z0-9.]{0,10}")), 0..12),
            quiet in proptest::prelude::any::<bool>(),
        ) {
            let mut x = Xml::new("Delete");
            if quiet {
                x.elem("Quiet", "true");
            }
            for (key, version) in &objects {
                x.open("Object").elem("Key", key).opt("VersionId", version.as_ref()).close("Object");
            }
            let parsed = delete_request(x.finish("Delete").as_bytes());
            if objects.is_empty() {
                proptest::prop_assert_eq!(parsed.unwrap_err().code, "MalformedXML");
            } else {
                proptest::prop_assert_eq!(parsed.unwrap(), (quiet, objects));
            }
        }
    }
}
