//! CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload, ListParts,
//! ListMultipartUploads.

use futures_util::TryStreamExt as _;
use http::request::Parts;
use hyper::Response;
use hyper::header::{self, HeaderMap, HeaderName};

use crate::app::App;
use crate::body::RequestBody;
use crate::body::empty;
use crate::model::checksum::{ChecksumAlgorithm, ChecksumType, b64};
use crate::model::time::iso8601;
use crate::model::{PartNumber, UploadId, UploadRecord};
use crate::s3::auth::Verified;
use crate::s3::error::S3Error;
use crate::s3::request::{
    MAX_COMPLETE_XML, Res, check_conditions, collect, common_prefixes, declared_length,
    encoding_type, max_param, object_headers, owner, precheck, quoted, set, stream_body,
    url_encode, write_condition, xml_response,
};
use crate::s3::route::{Query, copy_source};
use crate::upload::{
    BodyChecks, Caller, CompleteChecks, Error as UploadError, ListedPart, WholeChecksum,
};
use crate::xml::{self, Xml};

pub(super) async fn create_multipart_upload(
    app: &App,
    req: &Parts,
    owner: &str,
    b: &str,
    k: &str,
) -> Res {
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
    // Kept with the upload; the object gets them at Complete.
    let mut headers = object_headers(h);
    headers.tags = crate::s3::tagging::from_headers(h)?;
    let up = app.uploads.init(owner, b, k, headers, checksum).await?;
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
pub(super) async fn upload_part(
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
pub(super) async fn upload_part_copy(
    app: &App,
    req: &Parts,
    b: &str,
    k: &str,
    id: &UploadId,
    n: PartNumber,
) -> Res {
    let up = app
        .uploads
        .open_upload(id, b, Some(k), Caller::Anyone)
        .await?;
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
                return Err(S3Error::invalid_range(src.size));
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
    // Buckets are never versioned: the source has no version id to name (AWS sends
    // `x-amz-copy-source-version-id` only for a versioned source).
    Ok(xml_response(x.finish("CopyPartResult")))
}

/// `bytes=first-last`, strictly (S3 answers InvalidArgument to anything else).
pub(super) fn parse_copy_range(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse::<u64>().ok())?
    };
    let (a, b) = (num(a)?, num(b)?);
    (a <= b).then_some((a, b))
}

pub(super) async fn complete(
    app: &App,
    req: &Parts,
    body: RequestBody,
    auth: &Verified,
    b: &str,
    k: &str,
    id: &UploadId,
) -> Res {
    app.uploads.bucket(b).await?;
    let checks = complete_checks(&req.headers)?;
    let body = collect(req, body, auth, MAX_COMPLETE_XML).await?;
    let listed = complete_parts(&body)?;
    let done = app
        .uploads
        .complete(id, b, k, listed, &checks, &write_condition(&req.headers))
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

/// What a Complete's headers say the object will be (`x-amz-mp-object-size`, a whole-object
/// `x-amz-checksum-<alg>` and `x-amz-checksum-type`), checked by the core before it publishes
/// anything.
fn complete_checks(h: &HeaderMap) -> Result<CompleteChecks, S3Error> {
    let size = match h.get("x-amz-mp-object-size") {
        None => None,
        Some(v) => {
            let s = String::from_utf8_lossy(v.as_bytes());
            let n = s.trim().parse::<i64>().map_err(|_| {
                S3Error::invalid_request(format!(
                    "Value for x-amz-mp-object-size header is invalid: '{s}'"
                ))
            })?;
            Some(u64::try_from(n).map_err(|_| {
                S3Error::invalid_request(format!(
                    "Value for x-amz-mp-object-size header is less than zero: '{n}'"
                ))
            })?)
        }
    };
    let checksum_type = match h.get("x-amz-checksum-type") {
        None => None,
        Some(v) => {
            let s = String::from_utf8_lossy(v.as_bytes());
            Some(ChecksumType::parse(&s).ok_or_else(|| {
                S3Error::invalid_request(format!(
                    "Value for x-amz-checksum-type header is invalid: {s}"
                ))
            })?)
        }
    };
    let mut checksum = None;
    for (name, v) in h {
        let Some(alg_name) = name.as_str().strip_prefix("x-amz-checksum-") else {
            continue;
        };
        if matches!(alg_name, "algorithm" | "type" | "mode") {
            continue;
        }
        let algorithm = ChecksumAlgorithm::parse(alg_name).ok_or_else(|| {
            S3Error::invalid_request(format!("Unsupported checksum algorithm: {alg_name}"))
        })?;
        if checksum.is_some() {
            return Err(S3Error::invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
        let invalid = || S3Error::invalid_request(format!("Value for {name} header is invalid."));
        // A COMPOSITE value may be written as S3 answers it, with its part count: `<base64>-N`
        // (base64 itself never holds a '-').
        let text = v.to_str().map_err(|_| invalid())?.trim();
        let (b64, parts) = match text.split_once('-') {
            None => (text, None),
            Some((b64, n)) => (
                b64,
                Some(
                    n.parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(invalid)?,
                ),
            ),
        };
        checksum = Some(WholeChecksum {
            algorithm,
            value: algorithm.decode(b64).ok_or_else(invalid)?,
            parts,
        });
    }
    Ok(CompleteChecks {
        size,
        checksum_type,
        checksum,
        ..CompleteChecks::default()
    })
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
pub(super) fn done_parts(body: &[u8]) -> usize {
    let Ok(root) = xml::parse(body) else { return 0 };
    let mut nums: Vec<&str> = root
        .children_named("Part")
        .filter_map(|p| p.child_text("PartNumber"))
        .map(str::trim)
        .collect();
    nums.dedup();
    nums.len()
}

pub(super) async fn list_parts(app: &App, q: &Query, b: &str, k: &str, id: &UploadId) -> Res {
    let max = max_param(q, "max-parts")?;
    let marker = match q.get("part-number-marker").filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => match m.parse::<u32>() {
            Ok(0) => None,
            Ok(n) => Some(PartNumber::new(n.min(u32::from(PartNumber::MAX))).expect("clamped")),
            Err(_) => return Err(S3Error::invalid_argument("Invalid part-number-marker")),
        },
    };
    let up = app
        .uploads
        .open_upload(id, b, Some(k), Caller::Anyone)
        .await?;
    let (parts, truncated) = app.uploads.list_parts(&up, marker, max).await?;
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

pub(super) async fn list_uploads(app: &App, b: &str, q: &Query) -> Res {
    let url = encoding_type(q)?;
    let enc = |s: &str| if url { url_encode(s) } else { s.to_owned() };
    let max = max_param(q, "max-uploads")?;
    let prefix = q.get("prefix").unwrap_or_default();
    let delimiter = q.get("delimiter").filter(|d| !d.is_empty());
    let key_marker = q.get("key-marker").filter(|m| !m.is_empty());
    let id_marker = q.get("upload-id-marker").filter(|m| !m.is_empty());
    let cursor = app.uploads.upload_cursor(key_marker, id_marker).await?;
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
