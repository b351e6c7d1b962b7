//! SigV4 verification: the Authorization header and presigned query forms, the POST policy
//! signature, and the canonical request all of them rebuild.
//!
//! References: <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use http::header::{DATE, HOST};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::{AuthError, CONTENT_SHA256, ChunkSigner, PayloadMode, Verified, header_malformed};
use crate::config::Credentials;

pub(super) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub(super) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const MAX_SKEW: Duration = Duration::from_mins(15);
const MAX_EXPIRES: u64 = 7 * 24 * 3600;
const AMZ_DATE: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// RFC 3986 unreserved characters stay, everything else is `%XX` (upper case), as SigV4 wants.
pub(super) const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
pub(super) const PATH_SET: &AsciiSet = &QUERY_SET.remove(b'/');

/// The fields every SigV4 signature carries, from the header or the query.
struct Signature<'a> {
    access_key: &'a str,
    /// The request time and its `yyyymmddThhmmssZ` form.
    time: SystemTime,
    amz_date: &'a str,
    /// The scope: `<yyyymmdd>/<region>/s3/aws4_request`.
    scope: &'a str,
    region: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

/// Verifies the SigV4 signature of an S3 POST Object form: the `x-amz-signature` field is the
/// signing key of the `x-amz-credential` scope (dated by `x-amz-date`, which must be the same
/// day) applied to the base64 `policy` field as sent. Returns the signer's access key.
pub fn verify_post_policy(
    creds: &Credentials,
    credential: &str,
    amz_date: &str,
    policy_b64: &str,
    signature: &str,
) -> Result<String, AuthError> {
    let (access_key, scope, region) = parse_credential(credential).ok_or_else(|| {
        AuthError::InvalidArgument(
            "Invalid credential: expecting \"<YOUR-AKID>/YYYYMMDD/REGION/s3/aws4_request\".".into(),
        )
    })?;
    let time = parse_amz_date(amz_date)
        .ok_or_else(|| AuthError::InvalidArgument("Invalid x-amz-date.".into()))?;
    if !same_day(scope, amz_date) {
        return Err(AuthError::InvalidArgument(
            "Invalid credential date. Date is not the same as X-Amz-Date.".into(),
        ));
    }
    let secret = creds
        .secret(access_key)
        .ok_or(AuthError::InvalidAccessKeyId)?;
    let key = generate_signing_key(secret, time, region, "s3");
    let expected = calculate_signature(&key, policy_b64.as_bytes());
    if !bool::from(expected.as_bytes().ct_eq(signature.trim().as_bytes())) {
        return Err(AuthError::SignatureDoesNotMatch);
    }
    Ok(access_key.to_owned())
}

/// Splits `AK/yyyymmdd/region/s3/aws4_request`. Split from the right: the scope is fixed.
fn parse_credential(credential: &str) -> Option<(&str, &str, &str)> {
    let mut it = credential.rsplitn(5, '/');
    let (terminator, service, region, date, access_key) =
        (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    let ok = terminator == "aws4_request"
        && service == "s3"
        && !region.is_empty()
        && date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
        && !access_key.is_empty();
    ok.then(|| (access_key, &credential[access_key.len() + 1..], region))
}

fn parse_signed_headers(list: &str) -> Option<Vec<&str>> {
    let names: Vec<&str> = list.split(';').collect();
    let ok =
        names.iter().all(|n| !n.is_empty()) && names.iter().any(|n| n.eq_ignore_ascii_case("host"));
    ok.then_some(names)
}

/// The fields of an `AWS4-HMAC-SHA256` Authorization header (`fields`, after the algorithm),
/// checked against `creds` and the request.
pub(super) fn verify_header(
    parts: &http::request::Parts,
    fields: &str,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let malformed = header_malformed;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for field in fields.split(',') {
        let (key, value) = field
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("a field is not key=value."))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(malformed(&format!("unknown field {key:?}."))),
        };
        if slot.replace(value.trim()).is_some() {
            return Err(malformed(&format!("{key} is repeated.")));
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(malformed(
            "Credential, SignedHeaders and Signature are all required.",
        ));
    };
    let (access_key, scope, region) = parse_credential(credential).ok_or_else(|| {
        malformed("the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
    })?;
    let signed_headers = parse_signed_headers(signed_headers)
        .ok_or_else(|| malformed("SignedHeaders must be non-empty and include host."))?;

    let secret = creds
        .secret(access_key)
        .ok_or(AuthError::InvalidAccessKeyId)?;
    let (time, amz_date) = request_time(parts)?;
    if abs_diff(time, now) > MAX_SKEW {
        return Err(AuthError::RequestTimeTooSkewed);
    }
    if !same_day(scope, &amz_date) {
        return Err(malformed(
            "Invalid credential date. Date is not the same as X-Amz-Date.",
        ));
    }
    let payload_hash = parts
        .headers
        .get(CONTENT_SHA256)
        .ok_or_else(|| {
            AuthError::InvalidRequest(format!(
                "Missing required header for this request: {CONTENT_SHA256}"
            ))
        })?
        .to_str()
        .map_err(|_| invalid_content_sha256())?;

    let sig = Signature {
        access_key,
        time,
        amz_date: &amz_date,
        scope,
        region,
        signed_headers,
        signature,
    };
    check(
        parts,
        &sig,
        secret,
        &canonical_query(&parse_query(parts.uri.query().unwrap_or("")), false),
        payload_hash,
        false,
    )
}

pub(super) fn verify_presigned(
    parts: &http::request::Parts,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let bad = |msg: &str| AuthError::AuthorizationQueryParametersError(msg.to_owned());
    // SigV4 signs every parameter byte for byte: the canonical query is built from the raw
    // decoding, not from the (lossy, UTF-8) view routing reads.
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let param = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let required = || {
        bad(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, \
             X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        )
    };
    let algorithm = param("X-Amz-Algorithm").ok_or_else(required)?;
    if algorithm != ALGORITHM {
        return Err(if algorithm.starts_with("AWS4-") {
            AuthError::NotImplemented(format!(
                "The authorization mechanism {algorithm} is not supported."
            ))
        } else {
            bad("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
        });
    }
    let (Some(credential), Some(amz_date), Some(expires), Some(signed_headers), Some(signature)) = (
        param("X-Amz-Credential"),
        param("X-Amz-Date"),
        param("X-Amz-Expires"),
        param("X-Amz-SignedHeaders"),
        param("X-Amz-Signature"),
    ) else {
        return Err(required());
    };
    let (access_key, scope, region) = parse_credential(credential).ok_or_else(|| {
        bad(
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting \
             \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        )
    })?;
    let signed_headers = parse_signed_headers(signed_headers)
        .ok_or_else(|| bad("X-Amz-SignedHeaders must be non-empty and include host."))?;
    let expires = expires
        .parse::<u64>()
        .ok()
        .filter(|e| (1..=MAX_EXPIRES).contains(e))
        .ok_or_else(|| {
            bad("X-Amz-Expires must be a number of seconds between 1 and 604800 (a week).")
        })?;
    let time = parse_amz_date(amz_date).ok_or_else(|| {
        bad("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;

    let secret = creds
        .secret(access_key)
        .ok_or(AuthError::InvalidAccessKeyId)?;
    // A URL dated ahead of the clock is not skewed, just not valid yet (AWS's wording).
    if time > now + MAX_SKEW {
        return Err(AuthError::AccessDenied("Request is not yet valid".into()));
    }
    if now > time + Duration::from_secs(expires) {
        return Err(AuthError::AccessDenied("Request has expired".into()));
    }
    if !same_day(scope, amz_date) {
        return Err(bad(
            "Invalid credential date. Date is not the same as X-Amz-Date.",
        ));
    }
    // A presigned URL cannot know its body, so it signs the literal UNSIGNED-PAYLOAD. A client
    // that sends x-amz-content-sha256 (the JS SDK pins it into the signature) has its value in
    // the canonical request as the payload hash, signed header or not, as AWS does: an unsigned
    // value other than UNSIGNED-PAYLOAD cannot match, so it cannot choose how the body is read.
    let hashed_payload = match parts.headers.get(CONTENT_SHA256) {
        Some(v) => v.to_str().map_err(|_| invalid_content_sha256())?,
        None => UNSIGNED_PAYLOAD,
    };
    let sig = Signature {
        access_key,
        time,
        amz_date,
        scope,
        region,
        signed_headers,
        signature,
    };
    check(
        parts,
        &sig,
        secret,
        &canonical_query(&query, true),
        hashed_payload,
        true,
    )
}

/// Recomputes the signature over the canonical request and compares; on success classifies the
/// payload by `hashed_payload`, the `x-amz-content-sha256` value the signature covers.
fn check(
    parts: &http::request::Parts,
    sig: &Signature<'_>,
    secret: &str,
    canonical_query: &str,
    hashed_payload: &str,
    presigned: bool,
) -> Result<Verified, AuthError> {
    unsigned_amz_headers(&parts.headers, &sig.signed_headers, presigned)?;
    let canonical = canonical_request(parts, canonical_query, &sig.signed_headers, hashed_payload)?;
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        sig.amz_date,
        sig.scope,
        hex::encode(Sha256::digest(&canonical))
    );
    // The scope date equals the request date (checked by the callers), so the request time
    // gives the key's date.
    let key = generate_signing_key(secret, sig.time, sig.region, "s3");
    let expected = calculate_signature(&key, string_to_sign.as_bytes());
    let payload = payload_mode(hashed_payload, || ChunkSigner {
        signing_key: key.as_ref().to_vec(),
        amz_date: sig.amz_date.to_owned(),
        scope: sig.scope.to_owned(),
        seed_signature: expected.clone(),
    })?;
    if !bool::from(expected.as_bytes().ct_eq(sig.signature.as_bytes())) {
        return Err(AuthError::SignatureDoesNotMatch);
    }
    Ok(Verified {
        access_key: sig.access_key.to_owned(),
        payload,
        presigned,
    })
}

/// AWS refuses a request carrying an `x-amz-*` header that its signature does not cover: such a
/// header would change what the signer asked for (a copy source, metadata, a checksum, the body
/// encoding). A presigned request's `x-amz-content-sha256` is covered as its payload hash.
fn unsigned_amz_headers(
    headers: &http::HeaderMap,
    signed: &[&str],
    presigned: bool,
) -> Result<(), AuthError> {
    let mut unsigned: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|n| n.starts_with("x-amz-") && !(presigned && *n == CONTENT_SHA256))
        .filter(|n| !signed.iter().any(|s| s.eq_ignore_ascii_case(n)))
        .collect();
    if unsigned.is_empty() {
        return Ok(());
    }
    unsigned.sort_unstable();
    Err(AuthError::HeadersNotSigned(unsigned.join(", ")))
}

fn invalid_content_sha256() -> AuthError {
    AuthError::InvalidArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
         STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, or a valid sha256 value."
            .into(),
    )
}

fn payload_mode(
    value: &str,
    signer: impl FnOnce() -> ChunkSigner,
) -> Result<PayloadMode, AuthError> {
    Ok(match value {
        UNSIGNED_PAYLOAD => PayloadMode::Unsigned,
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => PayloadMode::SignedChunks {
            signer: signer(),
            trailer: false,
        },
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => PayloadMode::SignedChunks {
            signer: signer(),
            trailer: true,
        },
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => PayloadMode::UnsignedChunks,
        v if v.starts_with("STREAMING-AWS4-ECDSA-") => {
            return Err(AuthError::NotImplemented(format!(
                "{v} (SigV4a) is not supported."
            )));
        }
        v => {
            let mut hash = [0; 32];
            hex::decode_to_slice(v, &mut hash).map_err(|_| invalid_content_sha256())?;
            PayloadMode::Sha256(hash)
        }
    })
}

/// The request time and its `yyyymmddThhmmssZ` form: `x-amz-date`, else an HTTP `Date`.
fn request_time(parts: &http::request::Parts) -> Result<(SystemTime, String), AuthError> {
    let denied = || {
        AuthError::AccessDenied(
            "AWS authentication requires a valid Date or x-amz-date header".into(),
        )
    };
    if let Some(v) = parts.headers.get("x-amz-date") {
        let v = v.to_str().map_err(|_| denied())?;
        return Ok((parse_amz_date(v).ok_or_else(denied)?, v.to_owned()));
    }
    let v = parts
        .headers
        .get(DATE)
        .ok_or_else(denied)?
        .to_str()
        .map_err(|_| denied())?;
    let time = httpdate::parse_http_date(v).map_err(|_| denied())?;
    let formatted = time::OffsetDateTime::from(time)
        .format(AMZ_DATE)
        .map_err(|_| denied())?;
    Ok((time, formatted))
}

fn parse_amz_date(v: &str) -> Option<SystemTime> {
    // The length check keeps `[year]` from accepting signs or extra digits.
    (v.len() == 16).then_some(())?;
    let t = time::PrimitiveDateTime::parse(v, AMZ_DATE).ok()?;
    Some(t.assume_utc().into())
}

/// AWS rejects a credential scope dated another day than the request.
fn same_day(scope: &str, amz_date: &str) -> bool {
    amz_date.get(..8).is_some_and(|day| scope.starts_with(day))
}

fn abs_diff(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}

/// A query parameter's name and value, percent-decoded.
type QueryPair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// Raw query pairs, percent-decoded once. `+` is not a space here: SigV4 clients always
/// encode a real space as `%20`, and AWS reads `+` as a literal plus.
pub(super) fn parse_query(raw: &str) -> Vec<QueryPair<'_>> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(n.as_bytes()).into(),
                percent_decode(v.as_bytes()).into(),
            )
        })
        .collect()
}

pub(super) fn canonical_query(pairs: &[QueryPair], presigned: bool) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .filter(|(n, _)| !(presigned && n.as_ref() == b"X-Amz-Signature"))
        .map(|(n, v)| {
            (
                percent_encode(n, QUERY_SET).to_string(),
                percent_encode(v, QUERY_SET).to_string(),
            )
        })
        .collect();
    encoded.sort_unstable();
    let pairs: Vec<String> = encoded
        .into_iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    pairs.join("&")
}

/// The path as sent, decoded once and encoded again. Dot segments and `//` are kept: S3 keys
/// may contain them.
pub(super) fn canonical_uri(path: &str) -> String {
    let decoded: Cow<[u8]> = percent_decode(path.as_bytes()).into();
    let encoded = percent_encode(&decoded, PATH_SET).to_string();
    if encoded.is_empty() {
        "/".into()
    } else {
        encoded
    }
}

fn canonical_request(
    parts: &http::request::Parts,
    canonical_query: &str,
    signed_headers: &[&str],
    hashed_payload: &str,
) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(512);
    for line in [
        parts.method.as_str(),
        &canonical_uri(parts.uri.path()),
        canonical_query,
    ] {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    for name in signed_headers {
        out.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        out.push(b':');
        let mut values = parts
            .headers
            .get_all(*name)
            .iter()
            .map(http::HeaderValue::as_bytes)
            .peekable();
        if values.peek().is_none() {
            // HTTP/2 carries the host in `:authority`, which `http` moves into the URI.
            let host = match parts.uri.authority() {
                Some(a) if name.eq_ignore_ascii_case(HOST.as_str()) => a.as_str(),
                _ => return Err(AuthError::SignatureDoesNotMatch),
            };
            out.extend_from_slice(host.as_bytes());
        }
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_trimmed(&mut out, value);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").to_ascii_lowercase().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(hashed_payload.as_bytes());
    Ok(out)
}

/// Trims a header value and collapses inner runs of whitespace to one space.
pub(super) fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let mut words = value
        .split(|b| matches!(b, b' ' | b'\t'))
        .filter(|w| !w.is_empty());
    if let Some(first) = words.next() {
        out.extend_from_slice(first);
    }
    for word in words {
        out.push(b' ');
        out.extend_from_slice(word);
    }
}
