//! Request intake and header codecs shared by the S3 operations: the verified body stream, small
//! XML bodies (capped), draining a refused body, object headers in and out, answers' small parts.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::request::Parts;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::body::RequestBody;
use crate::body::{Body, empty, full};
use crate::model::checksum::ChecksumAlgorithm;
use crate::model::tags::TagSet;
use crate::model::time::http_date;
use crate::model::{ObjectHeaders, ObjectRecord};
use crate::s3::auth::Verified;
use crate::s3::error::{S3Error, S3ErrorCode};
use crate::s3::payload;
use crate::s3::route::Query;
use crate::upload::{
    BodyChecks, BodyStream, Error as UploadError, Expected, MAX_KEYS, WriteCondition,
};
use crate::xml::Xml;

/// Enough for 10,000 `<Part>` entries with checksums, and no more.
pub(crate) const MAX_COMPLETE_XML: usize = 10_000 * 320;

/// Other XML bodies (DeleteObjects with 1,000 long keys, CreateBucketConfiguration).
pub(crate) const MAX_XML: usize = 2 << 20;

pub(crate) type Res = Result<Response<Body>, S3Error>;

/// The verified body stream of a PutObject / UploadPart, with the checks its headers announce.
pub(crate) fn stream_body(
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
pub(crate) fn content_md5(h: &HeaderMap) -> Result<Option<[u8; 16]>, S3Error> {
    let Some(v) = h.get("content-md5") else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.as_bytes())
        .ok();
    raw.and_then(|r| <[u8; 16]>::try_from(r).ok())
        .map(Some)
        .ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidDigest,
                "The Content-MD5 you specified is not valid.",
            )
        })
}

/// Reads a small body (XML) whole, verified (payload hash, Content-MD5), refusing more than
/// `limit` bytes.
pub(crate) async fn collect(
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
            S3ErrorCode::MaxMessageLengthExceeded,
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
                S3ErrorCode::MaxMessageLengthExceeded,
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

/// `<Owner>` / `<Initiator>`: the access key stands for both ID and display name.
pub(crate) fn owner(x: &mut Xml, tag: &str, id: &str) {
    x.open(tag)
        .elem("ID", id)
        .elem("DisplayName", id)
        .close(tag);
}

pub(crate) fn common_prefixes(x: &mut Xml, prefixes: &[String], enc: &impl Fn(&str) -> String) {
    for p in prefixes {
        x.open("CommonPrefixes")
            .elem("Prefix", enc(p))
            .close("CommonPrefixes");
    }
}

/// Reads and drops an unread request body before an early error answer. A client that sent
/// `Expect: 100-continue` has not sent its body: nothing to drain (the answer closes instead).
pub async fn drain(req: &Parts, body: RequestBody) {
    use crate::body::{DRAIN_LIMIT, DRAIN_TIME};
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
    let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
}

/// The body length a request announces (decoded length for aws-chunked bodies).
pub(crate) fn declared_length(req: &Parts) -> Option<u64> {
    let h = &req.headers;
    h.get("x-amz-decoded-content-length")
        .or_else(|| h.get(header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Runs the checks that can refuse a body-carrying request before its body is read; on refusal
/// the body is drained first.
pub(crate) async fn precheck<T, F: std::future::Future<Output = Result<T, UploadError>>>(
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

pub(crate) fn write_condition(h: &HeaderMap) -> WriteCondition {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    WriteCondition {
        if_match: get("if-match"),
        if_none_match: get("if-none-match"),
    }
}

pub(crate) fn max_param(q: &Query, name: &str) -> Result<usize, S3Error> {
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

pub(crate) fn encoding_type(q: &Query) -> Result<bool, S3Error> {
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
pub(crate) fn object_headers(h: &HeaderMap) -> ObjectHeaders {
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
        // Set by the operations that take `x-amz-tagging` (see `tagging`): it can be refused.
        tags: TagSet::default(),
    }
}

/// Writes an object's stored headers into a GET/HEAD response, with `response-*` overrides.
pub(crate) fn put_object_headers(h: &mut HeaderMap, oh: &ObjectHeaders, q: &Query) {
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
            HeaderValue::from_bytes(&mime_encoded(value)),
        ) {
            h.append(n, v);
        }
    }
}

/// A user metadata value as AWS returns it. Plain ASCII goes back as sent. A value with other
/// bytes is read the way S3 reads header bytes (ISO-8859-1, one character per byte) and answered
/// as RFC 2047 encoded words in UTF-8, the way S3's documentation describes and S3 answers
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html>): `Q` encoding
/// when most characters are ASCII (`\x04mymeta` is `=?UTF-8?Q?=04mymeta?=`), `B` otherwise (a
/// UTF-8 `ö` sent as two bytes is `=?UTF-8?B?w4PCtg==?=`), words of at most 63 encoded
/// characters, split in halves of the text until they fit and joined by a space.
pub(crate) fn mime_encoded(value: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let special = |b: u8| !(0x20..0x7f).contains(&b) && b != b'\t';
    if !value.iter().any(|&b| special(b)) {
        return value.into();
    }
    let non_ascii = value.iter().filter(|&&b| special(b)).count();
    let q = value.len() - non_ascii > non_ascii;
    let mut out = String::new();
    encode_words(value, q, &mut out);
    out.into_bytes().into()
}

/// Appends the encoded words of `chars` (ISO-8859-1 bytes, one character each).
fn encode_words(chars: &[u8], q: bool, out: &mut String) {
    const AVAIL: usize = 63;
    let utf8: String = chars.iter().map(|&b| char::from(b)).collect();
    let encoded = if q {
        let mut e = String::new();
        for &b in utf8.as_bytes() {
            match b {
                b' ' => e.push('_'),
                b'=' | b'_' | b'?' => e.push_str(&format!("={b:02X}")),
                0x21..=0x7e => e.push(char::from(b)),
                _ => e.push_str(&format!("={b:02X}")),
            }
        }
        e
    } else {
        base64::engine::general_purpose::STANDARD.encode(utf8.as_bytes())
    };
    if encoded.len() > AVAIL && chars.len() > 1 {
        let half = chars.len() / 2;
        encode_words(&chars[..half], q, out);
        encode_words(&chars[half..], q, out);
        return;
    }
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(if q { "=?UTF-8?Q?" } else { "=?UTF-8?B?" });
    out.push_str(&encoded);
    out.push_str("?=");
}

pub(crate) fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

pub(crate) fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

pub(crate) fn status(s: StatusCode) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = s;
    resp
}

pub(crate) fn xml_response(doc: String) -> Response<Body> {
    let mut resp = Response::new(full(doc));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// The one `x-amz-checksum-<alg>` value a request gives (as a header, or a POST form field: `noun`),
/// decoded; `x-amz-checksum-{algorithm,type,mode}` name no value and are skipped.
pub(crate) fn given_checksum<'a>(
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

/// A read's condition that did not hold: GET/HEAD answer 304 to the `NotModified` ones.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unmet {
    NotModified,
    Precondition,
}

impl From<Unmet> for S3Error {
    fn from(u: Unmet) -> Self {
        match u {
            Unmet::NotModified => S3Error::new(S3ErrorCode::NotModified, "Not Modified"),
            Unmet::Precondition => UploadError::PreconditionFailed.into(),
        }
    }
}

/// A read's conditions (GetObject, HeadObject, GetObjectAttributes): `Some` 304 answer (with
/// the object's ETag and Last-Modified) when the object is not modified, `Err` 412 when a
/// precondition fails, `None` to go on.
pub(crate) fn conditional_read(
    h: &HeaderMap,
    rec: &ObjectRecord,
) -> Result<Option<Response<Body>>, S3Error> {
    match check_conditions(h, rec, "") {
        Ok(()) => Ok(None),
        Err(Unmet::NotModified) => {
            let mut resp = status(StatusCode::NOT_MODIFIED);
            set(resp.headers_mut(), header::ETAG, &quoted(&rec.etag));
            set(
                resp.headers_mut(),
                header::LAST_MODIFIED,
                &http_date(rec.modified),
            );
            Ok(Some(resp))
        }
        Err(e) => Err(e.into()),
    }
}

/// If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since, with S3's precedence.
/// `prefix` is "" for GET/HEAD or "x-amz-copy-source-" for copies (which answer 412, never 304).
pub(crate) fn check_conditions(
    h: &HeaderMap,
    rec: &ObjectRecord,
    prefix: &str,
) -> Result<(), Unmet> {
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
            return Err(Unmet::Precondition);
        }
    } else if since("if-unmodified-since").is_some_and(|t| modified > t) {
        return Err(Unmet::Precondition);
    }
    let not_modified = if prefix.is_empty() {
        Unmet::NotModified
    } else {
        Unmet::Precondition
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

#[cfg(test)]
mod tests {
    use super::mime_encoded;

    fn enc(v: &[u8]) -> String {
        String::from_utf8(mime_encoded(v).into_owned()).unwrap()
    }

    #[test]
    fn metadata_values_as_aws_answers_them() {
        assert_eq!(enc(b"plain value"), "plain value");
        // Examples S3 is known to answer (ceph s3-tests, MinIO's comparison with AWS).
        assert_eq!(enc(b"\x04mymeta"), "=?UTF-8?Q?=04mymeta?=");
        assert_eq!(enc("ö".as_bytes()), "=?UTF-8?B?w4PCtg==?=");
        assert_eq!(enc("Miniö".as_bytes()), "=?UTF-8?Q?Mini=C3=83=C2=B6?=");
        // One ISO-8859-1 byte is one character.
        assert_eq!(enc(b"caf\xe9"), "=?UTF-8?Q?caf=C3=A9?=");
        assert_eq!(enc(b"\xe9"), "=?UTF-8?B?w6k=?=");
        assert_eq!(enc(b"a b=c?d_e\xe9"), "=?UTF-8?Q?a_b=3Dc=3Fd=5Fe=C3=A9?=");
        // Long values become several words of at most 63 encoded characters.
        let long = enc(&[0xe9; 60]);
        let words: Vec<&str> = long.split(' ').collect();
        assert!(words.len() > 1, "{long}");
        for w in &words {
            let inner = w
                .strip_prefix("=?UTF-8?B?")
                .unwrap()
                .strip_suffix("?=")
                .unwrap();
            assert!(inner.len() <= 63, "{w}");
        }
    }
}
