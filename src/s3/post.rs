//! S3 POST Object: a browser upload through an HTML form carrying a signed policy
//! (<https://docs.aws.amazon.com/AmazonS3/latest/API/RESTObjectPOST.html>). The form's text
//! fields are read under caps, the signature and every policy condition are checked, and only
//! then is the `file` field streamed into the same data path as PutObject, its size held to
//! the policy's `content-length-range` as it is written.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures_util::{Stream, StreamExt as _};
use http::request::Parts;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::auth::{self, AuthError};
use super::error::{LengthError, S3Error, S3ErrorCode};
use super::policy::Policy;
use super::request::{
    declared_length, given_checksum, object_headers, quoted, url_encode, xml_response,
};
use super::route::{Query, Route, S3Op};
use crate::app::App;
use crate::body::{Body, DRAIN_LIMIT, DRAIN_TIME, RequestBody, RequestInfo, empty, full};
use crate::model::checksum::{ChecksumAlgorithm, b64};
use crate::model::event::EventName;
use crate::multipart::{self, Caps, FormError};
use crate::upload::{BodyChecks, BodyError, BodyStream, Expected, WriteCondition};
use crate::xml::Xml;

/// AWS caps the fields before the file at 20 KB; the count and the framing are capped too, so
/// an unauthenticated request costs bounded memory.
const CAPS: Caps = Caps {
    values: 20 * 1024,
    count: 100,
    head: 64 * 1024,
};

/// The file stream, failing once it passes `max` bytes or, at its end, short of `min`: the
/// core then stores nothing. Past `max` no byte is handed on; what is left of the form is read
/// and dropped first (at most `DRAIN_LIMIT` bytes, for `DRAIN_TIME`), as for any refused form,
/// so that a client still sending reads the `EntityTooLarge` answer instead of a reset.
struct Bounded {
    inner: BodyStream,
    seen: u64,
    min: u64,
    max: u64,
    /// Set once past `max`: the end of the drain.
    draining: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The error was returned: the stream is over.
    failed: bool,
}

impl Bounded {
    fn new(inner: BodyStream, min: u64, max: u64) -> Self {
        Self {
            inner,
            seen: 0,
            min,
            max,
            draining: None,
            failed: false,
        }
    }

    fn fail(&mut self, e: LengthError) -> Poll<Option<Result<bytes::Bytes, BodyError>>> {
        self.failed = true;
        self.draining = None;
        Poll::Ready(Some(Err(BodyError::new(e))))
    }
}

impl Stream for Bounded {
    type Item = Result<bytes::Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        loop {
            if let Some(deadline) = this.draining.as_mut() {
                if deadline.as_mut().poll(cx).is_ready()
                    || this.seen > this.max.saturating_add(DRAIN_LIMIT)
                {
                    return this.fail(LengthError::TooLarge);
                }
                match this.inner.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(data))) => {
                        this.seen += data.len() as u64;
                        continue;
                    }
                    Poll::Ready(_) => return this.fail(LengthError::TooLarge),
                    Poll::Pending => return Poll::Pending,
                }
            }
            return match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    this.seen += data.len() as u64;
                    if this.seen > this.max {
                        this.draining = Some(Box::pin(tokio::time::sleep(DRAIN_TIME)));
                        continue;
                    }
                    Poll::Ready(Some(Ok(data)))
                }
                Poll::Ready(None) if this.seen < this.min => this.fail(LengthError::TooSmall),
                other => other,
            };
        }
    }
}

fn malformed_post(why: &str) -> S3Error {
    S3Error::new(
        S3ErrorCode::MalformedPOSTRequest,
        format!("The body of your POST request is not well-formed multipart/form-data. {why}"),
    )
}

fn must_contain(field: &str) -> S3Error {
    S3Error::invalid_argument(format!(
        "Bucket POST must contain a field named '{field}'.  If it is specified, please check the order of the fields."
    ))
}

/// The form's text fields, names lower-cased (AWS compares them case-insensitively).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, S3Error> {
        self.get(name).ok_or_else(|| must_contain(name))
    }
}

/// Whether a request is a POST Object: a POST naming a bucket alone, with a form body.
pub fn is_form(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// Answers one POST Object request to `bucket`; `vhost` says the bucket came from the Host.
pub async fn handle(
    app: &App,
    parts: &Parts,
    body: RequestBody,
    bucket: &str,
    vhost: bool,
    info: &mut RequestInfo,
) -> Result<Response<Body>, S3Error> {
    if !is_form(&parts.headers) {
        super::request::drain(parts, body).await;
        return Err(malformed_post(
            "The Content-Type must be multipart/form-data.",
        ));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (raw, file) = multipart::read(content_type, body, CAPS, |n| n.eq_ignore_ascii_case("file"))
        .await
        .map_err(|e| match e {
            FormError::TooLarge(_) => S3Error::new(
                S3ErrorCode::MaxPostPreDataLengthExceeded,
                "Your POST request fields preceding the upload file were too large.",
            ),
            FormError::Malformed(why) => malformed_post(&why),
        })?;
    let mut fields = Fields(Vec::with_capacity(raw.len()));
    for (name, value) in raw {
        let name = name.to_ascii_lowercase();
        if fields.get(&name).is_some() {
            return Err(S3Error::invalid_argument(format!(
                "The field {name} appears more than once."
            )));
        }
        fields.0.push((name, value));
    }
    let Some(file) = file else {
        return Err(S3Error::invalid_argument(
            "POST requires exactly one file upload per request.",
        ));
    };
    let prepared = match authorize(app, &fields, bucket, SystemTime::now(), info).await {
        Ok(access_key) => prepare(app, parts, &fields, file.filename.as_deref())
            .map(|(key, checks, admitted)| (access_key, key, checks, admitted)),
        Err(e) => Err(e),
    };
    let (owner, key, (range, headers, checks), admitted) = match prepared {
        Ok(v) => v,
        Err(e) => {
            drain(file.stream).await;
            return Err(e);
        }
    };
    info.key.clone_from(&key);
    let (min, max) = range.unwrap_or((0, u64::MAX));
    let stream: BodyStream = Box::pin(Bounded::new(file.stream, min, max));
    let rec = app
        .uploads
        .put_object(
            &owner,
            bucket,
            &key,
            headers,
            stream,
            checks,
            &WriteCondition::default(),
            admitted,
            EventName::Post,
        )
        .await?;
    answer(parts, &fields, bucket, &key, &rec, vhost, app.https)
}

type Prepared = (Option<(u64, u64)>, crate::model::ObjectHeaders, BodyChecks);

/// The object's key (with `${filename}` replaced), its headers, the body checks the form asks
/// for, and the disk room it is admitted with.
fn prepare(
    app: &App,
    parts: &Parts,
    fields: &Fields,
    filename: Option<&str>,
) -> Result<(String, Prepared, crate::upload::Admission), S3Error> {
    let range = Policy::parse(fields.required("policy")?)?.length_range();
    let base = filename
        .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f))
        .unwrap_or_default();
    let key = fields.required("key")?.replace("${filename}", base);
    if key.is_empty() {
        return Err(must_contain("key"));
    }
    // The stored headers come from the fields that stand for them.
    let mut h = HeaderMap::new();
    for (name, value) in &fields.0 {
        let stored = matches!(
            name.as_str(),
            "content-type"
                | "cache-control"
                | "content-disposition"
                | "content-encoding"
                | "content-language"
                | "expires"
        ) || name.starts_with("x-amz-meta-");
        if stored
            && let (Ok(n), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(value),
            )
        {
            h.insert(n, v);
        }
    }
    let mut checksum = given_checksum(
        fields.0.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        "field",
    )?;
    if checksum.is_none()
        && let Some(v) = fields.get("x-amz-checksum-algorithm")
    {
        let alg = ChecksumAlgorithm::parse(v).ok_or_else(|| {
            S3Error::invalid_request(format!("Unsupported checksum algorithm: {v}"))
        })?;
        checksum = Some((alg, Expected::Compute));
    }
    // AWS takes the tags as a `<Tagging>` document in the `tagging` field (covered by the
    // policy like any other field).
    let mut headers = object_headers(&h);
    if let Some(doc) = fields.get("tagging").filter(|d| !d.trim().is_empty()) {
        headers.tags = super::tagging::parse(doc.as_bytes())?;
    }
    // The whole form's length bounds the file's.
    let admitted = app
        .uploads
        .admit(declared_length(parts).map(|n| range.map_or(n, |(_, max)| n.min(max))))?;
    Ok((
        key,
        (
            range,
            headers,
            BodyChecks {
                length: None,
                content_md5: None,
                checksum,
            },
        ),
        admitted,
    ))
}

/// The success answer the form asks for: a 303 to `success_action_redirect`, else the
/// `success_action_status` (200, 201 with a `PostResponse`, 204 by default). `tls`: this
/// gateway serves HTTPS itself (else a proxy in front may say so with `X-Forwarded-Proto`).
fn answer(
    parts: &Parts,
    fields: &Fields,
    bucket: &str,
    key: &str,
    rec: &crate::model::ObjectRecord,
    vhost: bool,
    tls: bool,
) -> Result<Response<Body>, S3Error> {
    let etag = quoted(&rec.etag);
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str))
        .unwrap_or("localhost");
    let forwarded_https = parts
        .headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https");
    let scheme = if tls || forwarded_https {
        "https"
    } else {
        "http"
    };
    let location = if vhost {
        format!("{scheme}://{host}/{}", url_encode(key))
    } else {
        format!(
            "{scheme}://{host}/{}/{}",
            url_encode(bucket),
            url_encode(key)
        )
    };
    let redirect = fields
        .get("success_action_redirect")
        .or_else(|| fields.get("redirect"))
        .filter(|r| {
            r.parse::<http::Uri>()
                .is_ok_and(|u| u.scheme().is_some() && u.host().is_some())
        });
    let mut resp = if let Some(to) = redirect {
        let sep = if to.contains('?') { '&' } else { '?' };
        let target = format!(
            "{to}{sep}bucket={}&key={}&etag={}",
            url_encode(bucket),
            url_encode(key),
            url_encode(&etag)
        );
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(&target) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    } else {
        match fields.get("success_action_status") {
            Some("201") => {
                let mut x = Xml::new("PostResponse");
                x.elem("Location", &location)
                    .elem("Bucket", bucket)
                    .elem("Key", key)
                    .elem("ETag", &etag);
                let mut resp = xml_response(x.finish("PostResponse"));
                *resp.status_mut() = StatusCode::CREATED;
                resp
            }
            Some("200") => Response::new(full(bytes::Bytes::new())),
            _ => {
                let mut resp = Response::new(empty());
                *resp.status_mut() = StatusCode::NO_CONTENT;
                resp
            }
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if !h.contains_key(header::LOCATION)
        && let Ok(v) = HeaderValue::from_str(&location)
    {
        h.insert(header::LOCATION, v);
    }
    if let Some(c) = &rec.checksum
        && let Ok(v) = HeaderValue::from_str(&b64(&c.value))
    {
        h.insert(HeaderName::from_static(c.algorithm.header_name()), v);
    }
    Ok(resp)
}

/// Checks the form's signature, its policy and the signer's right to the bucket; returns the
/// signer's access key. Nothing is stored before this succeeds.
async fn authorize(
    app: &App,
    fields: &Fields,
    bucket: &str,
    now: SystemTime,
    info: &mut RequestInfo,
) -> Result<String, S3Error> {
    let key_field = fields.required("key")?;
    info.key = key_field.to_owned();
    let access_key = if let Some(sig) = fields.get("x-amz-signature") {
        let algorithm = fields.required("x-amz-algorithm")?;
        if algorithm != "AWS4-HMAC-SHA256" {
            return Err(S3Error::invalid_argument(format!(
                "Invalid algorithm: {algorithm}; only AWS4-HMAC-SHA256 is supported."
            )));
        }
        let policy = fields.required("policy")?;
        auth::verify_post_policy(
            &app.credentials,
            fields.required("x-amz-credential")?,
            fields.required("x-amz-date")?,
            policy,
            sig,
        )?
    } else if let Some(access_key) = fields.get("awsaccesskeyid") {
        let policy = fields.required("policy")?;
        let sig = fields.required("signature")?;
        super::auth::sigv2::verify_post_policy(&app.credentials, access_key, policy, sig)?;
        access_key.to_owned()
    } else {
        // Anonymous POSTs need a public-write bucket, which this gateway never has.
        return Err(AuthError::AccessDenied("Access Denied".into()).into());
    };
    info.access_key = Some(access_key.clone());
    let policy = Policy::parse(fields.required("policy")?)?;
    policy.check(&fields.0, bucket, now)?;
    app.uploads.bucket(bucket).await?;
    let route = Route {
        op: S3Op::PostObject,
        bucket: bucket.to_owned(),
        key: key_field.to_owned(),
        query: Query::parse(None),
    };
    let req = http::Request::new(()).into_parts().0;
    super::access::authorize(app, &req, &route, &access_key).await?;
    Ok(access_key)
}

/// Reads and drops what is left of a refused form's file, bounded in bytes and time, so that
/// the client, still sending, can read the answer.
async fn drain(mut stream: BodyStream) {
    let mut seen = 0u64;
    let reading = async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
}
