//! Request authentication: what SigV4 (`sigv4`: the Authorization header and presigned query)
//! and SigV2 (`sigv2`) share — the verified outcome, the payload mode and its chunk signer, the
//! errors, the dispatch by scheme and the hoisting of presigned `x-amz-*` parameters. The only
//! module that imports aws-sigv4.
//!
//! Reference for the chunk signatures: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>.

pub mod sigv2;
mod sigv4;

pub use sigv4::verify_post_policy;

use std::time::SystemTime;

use aws_sigv4::sign::v4::calculate_signature;
use http::header::AUTHORIZATION;

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

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const CONTENT_SHA256: &str = "x-amz-content-sha256";

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
        None if presigned => sigv4::verify_presigned(parts, creds, now),
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

fn header_malformed(msg: &str) -> AuthError {
    AuthError::AuthorizationHeaderMalformed(format!("The authorization header is malformed; {msg}"))
}

/// Picks the scheme of an Authorization header: SigV4 (`AWS4-HMAC-SHA256`) or SigV2 (`AWS`).
fn verify_header(
    parts: &http::request::Parts,
    auth: &http::HeaderValue,
    query: &Query,
    vhost: Option<&str>,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let malformed = header_malformed;
    let auth = auth
        .to_str()
        .map_err(|_| malformed("it is not ASCII."))?
        .trim();
    if auth.is_empty() {
        return Err(AuthError::AccessDenied("Access Denied".into()));
    }
    let (algorithm, fields) = auth.split_once(' ').unwrap_or((auth, ""));
    match algorithm {
        sigv4::ALGORITHM => {}
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
    sigv4::verify_header(parts, fields, creds, now)
}

#[cfg(test)]
pub(crate) mod tests;
