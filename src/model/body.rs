//! What a front end hands the core: a request body as a stream of verified bytes.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

/// A request body as the core sees it: plain bytes, already de-framed and verified by the front
/// end, failing (at the latest at its end) when the front end's checks fail.
pub type BodyStream = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, BodyError>> + Send>>;

/// An error raised by a request body stream (signature, framing, length, client gone). The front
/// end that built the stream knows its concrete type and maps it back.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BodyError(pub Box<dyn std::error::Error + Send + Sync>);

impl BodyError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}
