//! SigV4 request authentication (Authorization header and presigned query). The only module
//! that imports aws-sigv4.
//!
//! References: <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>.

pub mod sigv2;

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use http::header::{AUTHORIZATION, DATE, HOST};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::query::Query;
use crate::config::Credentials;

/// How the body of a verified request must be checked, from `x-amz-content-sha256`.
#[derive(Clone, Debug)]
pub enum PayloadMode {
    /// A hex SHA-256: the body must hash to it (`XAmzContentSHA256Mismatch` otherwise).
    Sha256([u8; 32]),
    /// `UNSIGNED-PAYLOAD`, presigned URLs, or no payload hash at all.
    Unsigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: aws-chunked, every chunk signed.
    SignedChunks { signer: ChunkSigner, trailer: bool },
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked, unsigned, checksum in a trailer.
    UnsignedChunks,
}

/// What chunk and trailer signatures are chained from.
#[derive(Clone)]
pub struct ChunkSigner {
    pub signing_key: Vec<u8>,
    /// `x-amz-date` value, e.g. `20130524T000000Z`.
    pub amz_date: String,
    /// `<yyyymmdd>/<region>/s3/aws4_request`
    pub scope: String,
    /// The request's own (seed) signature, hex.
    pub seed_signature: String,
}

impl std::fmt::Debug for ChunkSigner {
    // The signing key is as good as the secret for a day: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigner")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .field("seed_signature", &self.seed_signature)
            .finish_non_exhaustive()
    }
}

impl ChunkSigner {
    /// Expected signature of one aws-chunked chunk whose data hashes to `data_sha256`, chained
    /// from `previous` (the seed for the first chunk). The final empty chunk is signed too.
    #[must_use]
    pub fn chunk_signature(&self, previous: &str, data_sha256: &[u8]) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            hex::encode(data_sha256)
        );
        calculate_signature(&self.signing_key, sts.as_bytes())
    }

    /// Expected `x-amz-trailer-signature`, chained from the final chunk's signature, over the
    /// SHA-256 of the canonical trailers (`name:value\n` each).
    #[must_use]
    pub fn trailer_signature(&self, previous: &str, trailers_sha256: &[u8]) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{previous}\n{}",
            self.amz_date,
            self.scope,
            hex::encode(trailers_sha256)
        );
        calculate_signature(&self.signing_key, sts.as_bytes())
    }
}

#[derive(Clone, Debug)]
pub struct Verified {
    pub access_key: String,
    pub payload: PayloadMode,
    /// Authenticated by a presigned URL (SigV4 or SigV2 query): its `x-amz-*` query parameters
    /// are signed request headers (see `hoisted_headers`).
    pub presigned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    AccessDenied(String),
    /// `x-amz-*` headers the signature does not cover, comma-separated (AWS: `AccessDenied`
    /// with a `<HeadersNotSigned>` element).
    #[error("There were headers present in the request which were not signed")]
    HeadersNotSigned(String),
    #[error("The AWS Access Key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your key and signing method."
    )]
    SignatureDoesNotMatch,
    #[error("The difference between the request time and the server's time is too large.")]
    RequestTimeTooSkewed,
    #[error("{0}")]
    AuthorizationHeaderMalformed(String),
    #[error("{0}")]
    AuthorizationQueryParametersError(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    NotImplemented(String),
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const CONTENT_SHA256: &str = "x-amz-content-sha256";
const MAX_SKEW: Duration = Duration::from_mins(15);
const MAX_EXPIRES: u64 = 7 * 24 * 3600;
const AMZ_DATE: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// RFC 3986 unreserved characters stay, everything else is `%XX` (upper case), as SigV4 wants.
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const PATH_SET: &AsciiSet = &QUERY_SET.remove(b'/');

/// Verifies a request's signature (SigV4 header or presigned query, SigV2 either way) against
/// `creds`. `query` is the request's decoded query, the same view routing reads; `vhost` the
/// bucket named by the Host header, which SigV2 signs in the resource.
pub fn verify(
    parts: &http::request::Parts,
    query: &Query,
    vhost: Option<&str>,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let presigned = query.has("X-Amz-Algorithm")
        || query.has("X-Amz-Credential")
        || query.has("X-Amz-Signature");
    match parts.headers.get(AUTHORIZATION) {
        Some(_) if presigned => Err(AuthError::InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string \
             parameter or the Authorization header should be specified"
                .into(),
        )),
        Some(auth) => verify_header(parts, auth, query, vhost, creds, now),
        None if presigned => verify_presigned(parts, creds, now),
        None if query.has("AWSAccessKeyId") => {
            sigv2::verify_query(parts, query, vhost, creds, now)
        }
        None => Err(AuthError::AccessDenied("Access Denied".into())),
    }
}

/// The `x-amz-*` query parameters of a presigned request, as the request headers they stand
/// for: presigners move signed `x-amz-*` headers into the URL (the JS SDK's `getSignedUrl`,
/// botocore's SigV2 presigner), where the signature covers them, and S3 honours them as
/// headers. The authentication parameters themselves are not headers, and neither are
/// checksums: S3 documents that presigned uploads do not support them (the JS SDK bakes the
/// CRC32 of an empty body into its presigned PUT URLs). A value given both ways is refused
/// rather than guessed at.
pub fn hoisted_headers(
    query: &Query,
    headers: &http::HeaderMap,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, AuthError> {
    const NOT_HEADERS: &[&str] = &[
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-signature",
        "x-amz-security-token",
        // The body's framing is the payload mode's, which the signature itself decides (see
        // `verify_presigned`); a presigned body is never aws-chunked.
        CONTENT_SHA256,
        "x-amz-decoded-content-length",
        "x-amz-trailer",
    ];
    let mut out = Vec::new();
    for (name, value) in query.iter() {
        let lower = name.to_ascii_lowercase();
        let checksum =
            lower.starts_with("x-amz-checksum-") || lower == "x-amz-sdk-checksum-algorithm";
        if !lower.starts_with("x-amz-") || NOT_HEADERS.contains(&lower.as_str()) || checksum {
            continue;
        }
        let invalid = || AuthError::InvalidArgument(format!("Invalid query parameter {name}"));
        let name = http::HeaderName::from_bytes(lower.as_bytes()).map_err(|_| invalid())?;
        let value =
            http::HeaderValue::from_str(value.unwrap_or_default()).map_err(|_| invalid())?;
        if headers.contains_key(&name) || out.iter().any(|(n, _)| *n == name) {
            return Err(AuthError::InvalidRequest(format!(
                "{name} is given more than once (as a header or query parameter)"
            )));
        }
        out.push((name, value));
    }
    Ok(out)
}

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

fn verify_header(
    parts: &http::request::Parts,
    auth: &http::HeaderValue,
    query: &Query,
    vhost: Option<&str>,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let malformed = |msg: &str| {
        AuthError::AuthorizationHeaderMalformed(format!(
            "The authorization header is malformed; {msg}"
        ))
    };
    let auth = auth
        .to_str()
        .map_err(|_| malformed("it is not ASCII."))?
        .trim();
    if auth.is_empty() {
        return Err(AuthError::AccessDenied("Access Denied".into()));
    }
    let (algorithm, fields) = auth.split_once(' ').unwrap_or((auth, ""));
    match algorithm {
        ALGORITHM => {}
        "AWS" => return sigv2::verify_header(parts, query, vhost, fields, creds, now),
        a if a.contains('=') => return Err(malformed("expecting AWS4-HMAC-SHA256 and a space.")),
        a if a.starts_with("AWS4-") => {
            return Err(AuthError::NotImplemented(format!(
                "The authorization mechanism {a} is not supported."
            )));
        }
        _ => {
            return Err(AuthError::InvalidArgument(
                "Unsupported Authorization Type".into(),
            ));
        }
    }

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

fn verify_presigned(
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
fn parse_query(raw: &str) -> Vec<QueryPair<'_>> {
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

fn canonical_query(pairs: &[QueryPair], presigned: bool) -> String {
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
fn canonical_uri(path: &str) -> String {
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
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
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

#[cfg(test)]
pub(crate) mod tests;
