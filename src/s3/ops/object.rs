//! PutObject, CopyObject, GetObject/HeadObject (ranges and conditions), DeleteObjects.

use http::request::Parts;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::app::App;
use crate::body::RequestBody;
use crate::body::empty;
use crate::model::PartNumber;
use crate::model::checksum::{ChecksumType, b64};
use crate::model::event::EventName;
use crate::model::time::{http_date, iso8601};
use crate::range::byte_range;
use crate::s3::auth::Verified;
use crate::s3::error::S3Error;
use crate::s3::request::{
    MAX_XML, Res, check_conditions, collect, conditional_read, declared_length, drain,
    object_headers, precheck, put_object_headers, quoted, set, status, stream_body,
    write_condition, xml_response,
};
use crate::s3::route::{Query, copy_source};
use crate::s3::tagging;
use crate::upload::Error as UploadError;
use crate::xml::{self, Xml};

pub(super) async fn put_object(
    app: &App,
    req: &Parts,
    body: RequestBody,
    auth: &Verified,
    b: &str,
    k: &str,
) -> Res {
    // Refused tags store nothing: checked before the body is read.
    let tags = match tagging::from_headers(&req.headers) {
        Ok(t) => t,
        Err(e) => {
            drain(req, body).await;
            return Err(e);
        }
    };
    let (body, admitted) = precheck(req, body, async {
        app.uploads.bucket(b).await?;
        app.uploads.admit(declared_length(req))
    })
    .await?;
    let mut headers = object_headers(&req.headers);
    headers.tags = tags;
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
            EventName::Put,
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

pub(super) async fn copy_object(app: &App, req: &Parts, owner: &str, b: &str, k: &str) -> Res {
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
    let tags = if tagging::replace_directive(&req.headers)? {
        Some(tagging::from_headers(&req.headers)?)
    } else {
        None
    };
    let src = app.uploads.object(&sb, &sk).await?;
    check_conditions(&req.headers, &src, "x-amz-copy-source-")?;
    let headers = replace.then(|| object_headers(&req.headers));
    let rec = app
        .uploads
        .copy_object(owner, (&sb, &sk), (b, k), headers, tags)
        .await?;
    let mut x = Xml::new("CopyObjectResult");
    x.elem("LastModified", iso8601(rec.modified))
        .elem("ETag", quoted(&rec.etag));
    Ok(xml_response(x.finish("CopyObjectResult")))
}

pub(super) async fn get_object(
    app: &App,
    req: &Parts,
    query: &Query,
    b: &str,
    k: &str,
    head: bool,
) -> Res {
    let rec = app.uploads.object(b, k).await?;
    if let Some(not_modified) = conditional_read(&req.headers, &rec)? {
        return Ok(not_modified);
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
                return Err(S3Error::invalid_range(rec.size));
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
    if !rec.headers.tags.is_empty() {
        set(
            h,
            HeaderName::from_static("x-amz-tagging-count"),
            &rec.headers.tags.len().to_string(),
        );
    }
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

/// PutObjectTagging: the document's tags replace the object's (an empty set removes them).
pub(super) async fn put_object_tagging(
    app: &App,
    req: &Parts,
    body: RequestBody,
    auth: &Verified,
    b: &str,
    k: &str,
) -> Res {
    let body = collect(req, body, auth, MAX_XML).await?;
    if body.is_empty() {
        return Err(tagging::missing_body());
    }
    let tags = tagging::parse(&body)?;
    app.uploads.set_object_tags(b, k, tags).await?;
    Ok(Response::new(empty()))
}

pub(super) async fn get_object_tagging(app: &App, b: &str, k: &str) -> Res {
    let rec = app.uploads.object(b, k).await?;
    Ok(xml_response(tagging::to_xml(&rec.headers.tags)))
}

pub(super) async fn delete_object_tagging(app: &App, b: &str, k: &str) -> Res {
    app.uploads
        .set_object_tags(b, k, crate::model::tags::TagSet::default())
        .await?;
    Ok(status(StatusCode::NO_CONTENT))
}

pub(super) async fn delete_objects(
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
                .delete_object(&auth.access_key, b, key)
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
