//! SigV4 request authentication (Authorization header and presigned query). The only module
//! that imports aws-sigv4.
//!
//! References: <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use http::header::{AUTHORIZATION, DATE, HOST};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::route::Query;
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
            super::sigv2::verify_query(parts, query, vhost, creds, now)
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
        "AWS" => return super::sigv2::verify_header(parts, query, vhost, fields, creds, now),
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
pub(crate) mod tests {
    use super::*;

    pub(crate) const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    pub(crate) const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    pub(crate) fn creds() -> Credentials {
        let mut c = Credentials::default();
        c.insert(AK, SK).unwrap();
        c
    }

    /// Path-style verification, with the query parsed as `s3::handle` does.
    pub(crate) fn verify(
        p: &http::request::Parts,
        creds: &Credentials,
        now: SystemTime,
    ) -> Result<Verified, AuthError> {
        super::verify(p, &Query::parse(p.uri.query()), None, creds, now)
    }

    /// 2013-05-24T00:00:00Z, the time of every AWS example.
    pub(crate) fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn get_object_headers(auth: &str) -> Vec<(&str, &str)> {
        vec![
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
            ("authorization", auth),
        ]
    }

    const GET_OBJECT_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
         SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
         Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

    fn get_object(auth: &str, now: SystemTime) -> Result<Verified, AuthError> {
        verify(
            &parts("GET", "/test.txt", &get_object_headers(auth)),
            &creds(),
            now,
        )
    }

    #[test]
    fn aws_example_get_object() {
        let v = get_object(GET_OBJECT_AUTH, t0()).unwrap();
        assert_eq!(v.access_key, AK);
        assert!(matches!(v.payload, PayloadMode::Sha256(h) if hex::encode(h) == EMPTY_SHA256));
    }

    #[test]
    fn header_without_spaces_after_commas() {
        let auth = GET_OBJECT_AUTH.replace(", ", ",");
        assert!(get_object(&auth, t0()).is_ok());
        let auth = GET_OBJECT_AUTH.replace(", ", " ,  ");
        assert!(get_object(&auth, t0()).is_ok());
    }

    #[test]
    fn header_clock_skew() {
        let min = Duration::from_secs(60);
        assert!(get_object(GET_OBJECT_AUTH, t0() + 14 * min).is_ok());
        assert!(get_object(GET_OBJECT_AUTH, t0() - 14 * min).is_ok());
        assert_eq!(
            get_object(GET_OBJECT_AUTH, t0() + 16 * min).unwrap_err(),
            AuthError::RequestTimeTooSkewed
        );
        assert_eq!(
            get_object(GET_OBJECT_AUTH, t0() - 16 * min).unwrap_err(),
            AuthError::RequestTimeTooSkewed
        );
    }

    #[test]
    fn header_unknown_key_and_wrong_secret() {
        let auth = GET_OBJECT_AUTH.replace(AK, "AKIDUNKNOWN");
        assert_eq!(
            get_object(&auth, t0()).unwrap_err(),
            AuthError::InvalidAccessKeyId
        );

        let mut c = Credentials::default();
        c.insert(AK, "not-the-secret").unwrap();
        let p = parts("GET", "/test.txt", &get_object_headers(GET_OBJECT_AUTH));
        assert_eq!(
            verify(&p, &c, t0()).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );

        // A tampered header or signature.
        let mut h = get_object_headers(GET_OBJECT_AUTH);
        h[1] = ("range", "bytes=0-10");
        assert_eq!(
            verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
        let auth = GET_OBJECT_AUTH.replace("f0e8bdb8", "f0e8bdb9");
        assert_eq!(
            get_object(&auth, t0()).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
    }

    #[test]
    fn missing_or_empty_auth_is_denied() {
        let denied = AuthError::AccessDenied("Access Denied".into());
        let p = parts("GET", "/test.txt", &[("host", "h")]);
        assert_eq!(verify(&p, &creds(), t0()).unwrap_err(), denied);
        assert_eq!(get_object("", t0()).unwrap_err(), denied);
        assert_eq!(get_object("   ", t0()).unwrap_err(), denied);
    }

    #[test]
    fn malformed_headers() {
        let cases = [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 garbage",
            "AWS4-HMAC-SHA256Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=ab, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3, SignedHeaders=host, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/2013052/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=range;x-amz-date, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;;range, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, Foo=bar, SignedHeaders=host, Signature=ab",
            // The scope date must be the request date.
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130525/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab",
        ];
        for auth in cases {
            let err = get_object(auth, t0()).unwrap_err();
            assert!(
                matches!(err, AuthError::AuthorizationHeaderMalformed(_)),
                "{auth}: {err:?}"
            );
        }
    }

    #[test]
    fn other_schemes() {
        let not_impl = |a: &str| matches!(get_object(a, t0()), Err(AuthError::NotImplemented(_)));
        // SigV2 is handled by `sigv2` (a wrong signature, here).
        assert_eq!(
            get_object(
                "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
                t0()
            )
            .unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
        assert!(not_impl(
            &GET_OBJECT_AUTH.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
        ));
        assert!(matches!(
            get_object("Bearer abc", t0()),
            Err(AuthError::InvalidArgument(_))
        ));
        let p = parts(
            "GET",
            "/test.txt?AWSAccessKeyId=AK&Signature=x&Expires=1",
            &[("host", "h")],
        );
        // SigV2 presigned query: dispatched to `sigv2`, which knows no key "AK".
        assert_eq!(
            verify(&p, &creds(), t0()).unwrap_err(),
            AuthError::InvalidAccessKeyId
        );
    }

    #[test]
    fn missing_date() {
        let mut h = get_object_headers(GET_OBJECT_AUTH);
        h.retain(|(n, _)| *n != "x-amz-date");
        let err = verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err();
        assert!(matches!(err, AuthError::AccessDenied(_)), "{err:?}");
        h.push(("x-amz-date", "2013-05-24T00:00:00Z"));
        let err = verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err();
        assert!(matches!(err, AuthError::AccessDenied(_)), "{err:?}");
    }

    #[test]
    fn content_sha256_values() {
        let with = |v: &str| {
            let mut h = get_object_headers(GET_OBJECT_AUTH);
            h[2] = ("x-amz-content-sha256", v);
            verify(&parts("GET", "/test.txt", &h), &creds(), t0())
        };
        assert!(matches!(
            with("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"),
            Err(AuthError::NotImplemented(_))
        ));
        assert!(matches!(with("abc"), Err(AuthError::InvalidArgument(_))));
        assert!(matches!(
            with(&"z".repeat(64)),
            Err(AuthError::InvalidArgument(_))
        ));
        // Valid but different from what was signed.
        assert_eq!(
            with(UNSIGNED_PAYLOAD).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );

        let mut h = get_object_headers(GET_OBJECT_AUTH);
        h.remove(2);
        let err = verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err();
        assert_eq!(
            err,
            AuthError::InvalidRequest(
                "Missing required header for this request: x-amz-content-sha256".into()
            )
        );
    }

    /// The AWS streaming examples: a PUT whose body is aws-chunked.
    pub(crate) fn streaming_parts(trailer: bool) -> http::request::Parts {
        let (sha, signed, sig) = if trailer {
            (
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
                "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
            )
        } else {
            (
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            )
        };
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed},Signature={sig}"
        );
        let mut headers = vec![
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("authorization", &auth),
            ("x-amz-content-sha256", sha),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
        ];
        if trailer {
            headers.push(("x-amz-trailer", "x-amz-checksum-crc32c"));
        } else {
            headers.push(("content-length", "66824"));
        }
        parts("PUT", "/examplebucket/chunkObject.txt", &headers)
    }

    #[test]
    fn aws_example_streaming_seed() {
        for (trailer, seed) in [
            (
                false,
                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ),
            (
                true,
                "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
            ),
        ] {
            let v = verify(&streaming_parts(trailer), &creds(), t0()).unwrap();
            let PayloadMode::SignedChunks { signer, trailer: t } = v.payload else {
                panic!("{:?}", v.payload)
            };
            assert_eq!(t, trailer);
            assert_eq!(signer.seed_signature, seed);
            assert_eq!(signer.amz_date, "20130524T000000Z");
            assert_eq!(signer.scope, "20130524/us-east-1/s3/aws4_request");
            assert!(!format!("{signer:?}").contains("signing_key"));
        }
    }

    #[test]
    fn aws_example_chunk_signatures() {
        let v = verify(&streaming_parts(false), &creds(), t0()).unwrap();
        let PayloadMode::SignedChunks { signer, .. } = v.payload else {
            panic!()
        };
        let s1 = signer.chunk_signature(&signer.seed_signature, &Sha256::digest(vec![b'a'; 65536]));
        assert_eq!(
            s1,
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        );
        let s2 = signer.chunk_signature(&s1, &Sha256::digest(vec![b'a'; 1024]));
        assert_eq!(
            s2,
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
        );
        let s3 = signer.chunk_signature(&s2, &Sha256::digest(b""));
        assert_eq!(
            s3,
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
        );
    }

    #[test]
    fn aws_example_trailer_signatures() {
        let v = verify(&streaming_parts(true), &creds(), t0()).unwrap();
        let PayloadMode::SignedChunks { signer, .. } = v.payload else {
            panic!()
        };
        let s1 = signer.chunk_signature(&signer.seed_signature, &Sha256::digest(vec![b'a'; 65536]));
        assert_eq!(
            s1,
            "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
        );
        let s2 = signer.chunk_signature(&s1, &Sha256::digest(vec![b'a'; 1024]));
        assert_eq!(
            s2,
            "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
        );
        let s3 = signer.chunk_signature(&s2, &Sha256::digest(b""));
        assert_eq!(
            s3,
            "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
        );
        let t = signer.trailer_signature(&s3, &Sha256::digest(b"x-amz-checksum-crc32c:sOO8/Q==\n"));
        assert_eq!(
            t,
            "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
        );
    }

    const PRESIGNED: &str = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    fn presigned(uri: &str, now: SystemTime) -> Result<Verified, AuthError> {
        verify(
            &parts("GET", uri, &[("host", "examplebucket.s3.amazonaws.com")]),
            &creds(),
            now,
        )
    }

    #[test]
    fn aws_example_presigned_get() {
        let v = presigned(PRESIGNED, t0()).unwrap();
        assert_eq!(v.access_key, AK);
        assert!(matches!(v.payload, PayloadMode::Unsigned));
        // Any time within the validity window.
        assert!(presigned(PRESIGNED, t0() + Duration::from_secs(86400)).is_ok());
        assert!(presigned(PRESIGNED, t0() - Duration::from_secs(14 * 60)).is_ok());
        // An unsigned x-amz-content-sha256 header is the payload hash of the canonical request,
        // as on AWS: UNSIGNED-PAYLOAD (what the URL signed) passes, any other value (a hash, a
        // streaming mode) no longer matches, so it cannot change how the body is read.
        let with = |v: &str| {
            let p = parts(
                "GET",
                PRESIGNED,
                &[
                    ("host", "examplebucket.s3.amazonaws.com"),
                    ("x-amz-content-sha256", v),
                ],
            );
            verify(&p, &creds(), t0())
        };
        assert!(matches!(
            with(UNSIGNED_PAYLOAD).unwrap().payload,
            PayloadMode::Unsigned
        ));
        for v in [EMPTY_SHA256, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"] {
            assert_eq!(
                with(v).unwrap_err(),
                AuthError::SignatureDoesNotMatch,
                "{v}"
            );
        }
    }

    #[test]
    fn unsigned_amz_headers_are_refused() {
        let not_signed = |e: AuthError| match e {
            AuthError::HeadersNotSigned(names) => names,
            e => panic!("{e:?}"),
        };
        // Header auth: every x-amz-* header must be in SignedHeaders, x-amz-content-sha256 too.
        let mut h = get_object_headers(GET_OBJECT_AUTH);
        h.push(("x-amz-copy-source", "b/k"));
        h.push(("X-Amz-Meta-A", "1"));
        let err = verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err();
        assert_eq!(not_signed(err), "x-amz-copy-source, x-amz-meta-a");
        let signed = "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date";
        let auth = GET_OBJECT_AUTH.replace(signed, "SignedHeaders=host;range;x-amz-date");
        let err = get_object(&auth, t0()).unwrap_err();
        assert_eq!(not_signed(err), "x-amz-content-sha256");
        // Presigned: the same, but for x-amz-content-sha256 (see aws_example_presigned_get).
        let p = parts(
            "PUT",
            PRESIGNED,
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-copy-source", "b/k"),
                ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
            ],
        );
        assert_eq!(
            not_signed(verify(&p, &creds(), t0()).unwrap_err()),
            "x-amz-copy-source"
        );
        // Signed x-amz-* headers pass (aws-sigv4 signs every header it is given).
        for presign in [false, true] {
            let h = [("host", "h"), ("x-amz-copy-source", "b/k")];
            let p = sdk_sign("PUT", "/b/k2", &h, presign);
            assert!(verify(&p, &creds(), t0()).is_ok(), "presign={presign}");
        }
    }

    #[test]
    fn presigned_query_parameters_stand_for_headers() {
        let q = Query::parse(Some(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=x&x-amz-meta-a=1&X-Amz-Copy-Source=b%2Fk\
             &x-amz-content-sha256=abc&x-amz-trailer=t&partNumber=1&x-amz-checksum-crc32=AAAAAA%3D%3D\
             &x-amz-sdk-checksum-algorithm=CRC32",
        ));
        let got = hoisted_headers(&q, &http::HeaderMap::new()).unwrap();
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(got, [("x-amz-meta-a", "1"), ("x-amz-copy-source", "b/k")]);
        let mut h = http::HeaderMap::new();
        h.insert("x-amz-meta-a", "2".parse().unwrap());
        assert!(matches!(
            hoisted_headers(&q, &h),
            Err(AuthError::InvalidRequest(_))
        ));
        let twice = Query::parse(Some("x-amz-meta-a=1&X-Amz-Meta-A=2"));
        assert!(hoisted_headers(&twice, &http::HeaderMap::new()).is_err());
    }

    #[test]
    fn presigned_expired_and_not_yet_valid() {
        let err = presigned(PRESIGNED, t0() + Duration::from_secs(86401)).unwrap_err();
        assert_eq!(err, AuthError::AccessDenied("Request has expired".into()));
        let err = presigned(PRESIGNED, t0() - Duration::from_secs(16 * 60)).unwrap_err();
        assert_eq!(
            err,
            AuthError::AccessDenied("Request is not yet valid".into())
        );
    }

    #[test]
    fn presigned_bad_parameters() {
        let qp = |uri: &str| {
            matches!(
                presigned(uri, t0()),
                Err(AuthError::AuthorizationQueryParametersError(_))
            )
        };
        assert!(qp(&PRESIGNED.replace("86400", "604801")));
        assert!(qp(&PRESIGNED.replace("86400", "0")));
        assert!(qp(&PRESIGNED.replace("86400", "-1")));
        assert!(qp(&PRESIGNED.replace("86400", "soon")));
        assert!(qp(&PRESIGNED.replace("&X-Amz-Expires=86400", "")));
        assert!(qp(&PRESIGNED.replace("&X-Amz-Date=20130524T000000Z", "")));
        assert!(qp(&PRESIGNED.replace(
            "X-Amz-Date=20130524T000000Z",
            "X-Amz-Date=2013-05-24"
        )));
        assert!(qp(&PRESIGNED.replace("%2Fs3%2F", "%2Fsqs%2F")));
        assert!(qp(&PRESIGNED.replace("AWS4-HMAC-SHA256", "HMAC")));
        assert!(matches!(
            presigned(
                &PRESIGNED.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
                t0()
            ),
            Err(AuthError::NotImplemented(_))
        ));
        assert_eq!(
            presigned(&PRESIGNED.replace(AK, "AKIDUNKNOWN"), t0()).unwrap_err(),
            AuthError::InvalidAccessKeyId
        );
        assert_eq!(
            presigned(&PRESIGNED.replace("aeeed9bb", "aeeed9bc"), t0()).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
        // Extra parameters are signed too.
        assert_eq!(
            presigned(&format!("{PRESIGNED}&x-id=GetObject"), t0()).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
        let p = parts(
            "GET",
            PRESIGNED,
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("authorization", "x"),
            ],
        );
        assert!(matches!(
            verify(&p, &creds(), t0()),
            Err(AuthError::InvalidArgument(_))
        ));
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canonical_uri("/b/a%20b/c+d/%E2%82%AC"),
            "/b/a%20b/c%2Bd/%E2%82%AC"
        );
        assert_eq!(
            canonical_uri("/b/a b/!(*)/./..//x"),
            "/b/a%20b/%21%28%2A%29/./..//x"
        );
        assert_eq!(canonical_uri("/b/%2Fk"), "/b//k");
        assert_eq!(canonical_uri(""), "/");
        let q = |raw: &str| canonical_query(&parse_query(raw), false);
        assert_eq!(q("uploads"), "uploads=");
        assert_eq!(q("uploads="), "uploads=");
        assert_eq!(
            q("prefix=a+b&delimiter=%2F&max-keys=2"),
            "delimiter=%2F&max-keys=2&prefix=a%2Bb"
        );
        assert_eq!(q("a=2&a=1&b&&A=x"), "A=x&a=1&a=2&b=");
        assert_eq!(q("k=%E2%82%AC%20~"), "k=%E2%82%AC%20~");
        let mut out = Vec::new();
        push_trimmed(&mut out, b"  a \t  b   c ");
        assert_eq!(out, b"a b c");
    }

    /// Signs with aws-sigv4's own request signer (an independent implementation of the canonical
    /// request), the way SDKs sign for S3: single URI encoding, no path normalisation.
    fn sdk_sign(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        presign: bool,
    ) -> http::request::Parts {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
            SignatureLocation, SigningSettings, UriPathNormalizationMode, sign,
        };
        let identity = aws_credential_types::Credentials::new(AK, SK, None, None, "test").into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        if presign {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(3600));
        } else {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-3")
            .name("s3")
            .time(t0())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let body = if presign {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(b"")
        };
        let signable = SignableRequest::new(method, uri, headers.iter().copied(), body).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let mut req = b.body(()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        req.into_parts().0
    }

    #[test]
    fn sdk_signed_requests_verify() {
        let uris = [
            "/b/a%20b/c%2Bd",
            "/b/%E2%82%AC%C3%A9/x~y_z.-",
            "/b/dir//./../k",
            "/b/k?uploads",
            "/b/k?uploads=",
            "/b?list-type=2&prefix=a%20b%2Fc&delimiter=%2F&encoding-type=url",
            "/b/k?partNumber=3&uploadId=abc%3D%3D",
        ];
        let headers = [
            ("host", "127.0.0.1:9000"),
            ("content-type", "text/plain"),
            ("x-amz-meta-note", "  two   spaces  "),
        ];
        for uri in uris {
            for presign in [false, true] {
                let p = sdk_sign("PUT", uri, &headers, presign);
                let v = verify(&p, &creds(), t0() + Duration::from_secs(60));
                assert!(v.is_ok(), "{uri} presign={presign}: {v:?} {p:?}");
            }
        }
    }

    #[test]
    fn http2_authority_stands_in_for_host() {
        let p = sdk_sign("GET", "/b/k", &[("host", "example.com:9000")], false);
        let mut req = http::Request::from_parts(p, ());
        req.headers_mut().remove(HOST);
        *req.uri_mut() = "http://example.com:9000/b/k".parse().unwrap();
        let (p, ()) = req.into_parts();
        assert!(verify(&p, &creds(), t0()).is_ok());
    }

    #[test]
    fn date_header_fallback() {
        // Sign with x-amz-date, then send the same instant as an HTTP Date instead.
        let p = sdk_sign("GET", "/b/k", &[("host", "h")], false);
        let auth = p.headers[AUTHORIZATION]
            .to_str()
            .unwrap()
            .replace("x-amz-date", "date");
        let sha = p.headers[CONTENT_SHA256].to_str().unwrap();
        let h = [
            ("host", "h"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            (CONTENT_SHA256, sha),
            ("authorization", &auth),
        ];
        // The signature covered x-amz-date's value, so it differs; but time and scope checks pass.
        assert_eq!(
            verify(&parts("GET", "/b/k", &h), &creds(), t0()).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
        assert_eq!(
            verify(
                &parts("GET", "/b/k", &h),
                &creds(),
                t0() + Duration::from_secs(3600)
            )
            .unwrap_err(),
            AuthError::RequestTimeTooSkewed
        );
    }

    proptest::proptest! {
        /// Hostile headers and queries get an error, never a panic.
        #[test]
        fn arbitrary_input_never_panics(
            auth in "(AWS4-HMAC-SHA256 Credential=[A-Z0-9a-z/_]{0,50}, ?SignedHeaders=[a-z;-]{0,30}, ?Signature=[0-9a-f]{0,70}|[ -~]{0,80})",
            query in "(X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[A-Z0-9a-z%_]{0,50}&X-Amz-Date=[0-9TZ]{0,18}&X-Amz-Expires=[0-9+-]{0,12}&X-Amz-SignedHeaders=host&X-Amz-Signature=ab|[A-Za-z0-9%=&+-]{0,60})",
            date in "[0-9TZ]{0,18}",
            use_header in proptest::bool::ANY,
        ) {
            let mut h = vec![("host", "h"), ("x-amz-date", date.as_str()), ("x-amz-content-sha256", UNSIGNED_PAYLOAD)];
            if use_header {
                h.push(("authorization", auth.as_str()));
            }
            let _ = verify(&parts("GET", &format!("/b/k?{query}"), &h), &creds(), t0());
        }

        /// Requests signed by aws-sigv4 (header or presigned) over any key, query and header
        /// value verify; a changed path does not.
        #[test]
        fn sdk_signed_requests_round_trip(
            key in proptest::prelude::any::<String>(),
            query in proptest::collection::vec(("[A-Za-z][ -~]{0,8}", proptest::prelude::any::<String>()), 0..4),
            note in "[ -~]{0,20}",
            presign in proptest::bool::ANY,
        ) {
            // Encoded as SDKs do: everything but the unreserved characters (and `/` in the path).
            let enc = |s: &str| percent_encode(s.as_bytes(), QUERY_SET).to_string();
            let mut uri = format!("/b/{}", percent_encode(key.as_bytes(), PATH_SET));
            let q: Vec<String> = query
                .iter()
                .filter(|(n, _)| !n.starts_with("X-Amz-"))
                .map(|(n, v)| format!("{}={}", enc(n), enc(v)))
                .collect();
            if !q.is_empty() {
                uri = format!("{uri}?{}", q.join("&"));
            }
            let headers = [("host", "127.0.0.1:9000"), ("x-amz-meta-note", note.trim())];
            let p = sdk_sign("PUT", &uri, &headers, presign);
            let v = verify(&p, &creds(), t0() + Duration::from_secs(60));
            proptest::prop_assert!(v.is_ok(), "{uri}: {v:?}");
            let mut req = http::Request::from_parts(p, ());
            let tampered = req.uri().to_string().replacen("/b/", "/b/x", 1);
            *req.uri_mut() = tampered.parse().unwrap();
            let (p, ()) = req.into_parts();
            proptest::prop_assert_eq!(verify(&p, &creds(), t0()).unwrap_err(), AuthError::SignatureDoesNotMatch);
        }
    }
}
