//! SigV4 request authentication (Authorization header and presigned query). The only module
//! that imports aws-sigv4. INTERFACE STUB: implementation pending.

use std::time::SystemTime;

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
#[derive(Clone, Debug)]
pub struct ChunkSigner {
    pub signing_key: Vec<u8>,
    /// `x-amz-date` value, e.g. `20130524T000000Z`.
    pub amz_date: String,
    /// `<yyyymmdd>/<region>/s3/aws4_request`
    pub scope: String,
    /// The request's own (seed) signature, hex.
    pub seed_signature: String,
}

#[derive(Clone, Debug)]
pub struct Verified {
    pub access_key: String,
    pub payload: PayloadMode,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    AccessDenied(String),
    #[error("The AWS Access Key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,
    #[error("The request signature we calculated does not match the signature you provided. Check your key and signing method.")]
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

/// Verifies a request's SigV4 signature (header or presigned query) against `creds`.
pub fn verify(_parts: &http::request::Parts, _creds: &Credentials, _now: SystemTime) -> Result<Verified, AuthError> {
    Err(AuthError::NotImplemented("auth pending".into()))
}
