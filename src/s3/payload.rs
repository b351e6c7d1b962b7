//! Turns a request body plus its `PayloadMode` into a plain, verified byte stream. INTERFACE STUB.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::auth::PayloadMode;
use crate::upload::BodyStream;

/// The value of the checksum trailer (`x-amz-trailer`), set by the decoder when it reaches the
/// trailer section, before the stream ends.
pub type TrailerSlot = Arc<OnceLock<String>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    Sha256Mismatch,
    #[error("The request signature we calculated does not match the signature you provided.")]
    SignatureDoesNotMatch,
    #[error("You did not provide the number of bytes specified by the Content-Length HTTP header.")]
    IncompleteBody,
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("You must provide the Content-Length HTTP header.")]
    MissingContentLength,
    #[error("connection: {0}")]
    Transport(String),
}

pub struct Decoded {
    pub stream: BodyStream,
    /// `Some` when the body declares a checksum trailer (`x-amz-trailer`); holds its header name
    /// (lower-case, e.g. `x-amz-checksum-crc32`) and the slot the value lands in.
    pub trailer: Option<(String, TrailerSlot)>,
    /// The payload length when known up front (Content-Length or x-amz-decoded-content-length).
    pub length: Option<u64>,
}

pub fn decode<B>(_body: B, _headers: &http::HeaderMap, _mode: PayloadMode) -> Result<Decoded, PayloadError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    Err(PayloadError::InvalidRequest("payload pending".into()))
}
