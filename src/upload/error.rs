//! Domain outcomes of the upload service, named after the S3 codes they become. Each front-end
//! maps this enum exactly once (`s3::error`, `legacy::reply`).

use crate::store::StoreError;

pub use crate::model::body::BodyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("The specified bucket does not exist")]
    NoSuchBucket,
    #[error("The specified key does not exist.")]
    NoSuchKey,
    #[error(
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )]
    NoSuchUpload,
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou,
    #[error("The requested bucket name is not available.")]
    BucketAlreadyExists,
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty,
    #[error("The specified bucket is not valid.")]
    InvalidBucketName,
    #[error("Your key is too long")]
    KeyTooLong,
    #[error("{0}")]
    InvalidPart(String),
    #[error("The list of parts was not in ascending order. Parts must be ordered by part number.")]
    InvalidPartOrder,
    #[error("Your proposed upload is smaller than the minimum allowed size")]
    EntityTooSmall,
    #[error("Your proposed upload exceeds the maximum allowed size")]
    EntityTooLarge,
    #[error("{0}")]
    BadDigest(String),
    #[error("You did not provide the number of bytes specified by the Content-Length HTTP header.")]
    IncompleteBody,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "The XML you provided was not well-formed or did not validate against our published schema"
    )]
    /// A Complete that lists no part (S3 calls it malformed XML).
    EmptyPartList,
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed,
    /// A write to an upload written in order (tus) at an offset other than its end, which is
    /// this.
    #[error("The upload is at offset {0}")]
    OffsetMismatch(u64),
    /// An upload past its expiry that the janitor has not removed yet.
    #[error("The upload has expired")]
    UploadExpired,
    /// A file (legacy API) larger than 10000 chunks or parts can hold.
    #[error("{size} bytes do not fit in 10000 chunks of {chunk}")]
    FileTooLarge { size: u64, chunk: u64 },
    /// A file's Complete before all its chunks arrived (1-based indexes).
    #[error("{} chunk(s) missing", .0.len())]
    ChunksMissing(Vec<u32>),
    #[error("Access Denied")]
    AccessDenied,
    /// The caller already has this many open uploads (`--max-uploads-per-key`).
    #[error(
        "You have {0} open multipart uploads, the most this server allows per access key. Complete or abort some first."
    )]
    TooManyUploads(usize),
    /// Another Complete or Abort of the same upload is still running.
    #[error(
        "A conflicting conditional operation is currently in progress against this resource. Please try again."
    )]
    OperationAborted,
    /// The data disk is full, over quota, or below the free-space reserve. Not retried by SDKs
    /// (a 5xx they would retry at once cannot help); S3 has no such code, MinIO uses the same.
    #[error("Not enough free space on the gateway's data disk to store this part or object.")]
    InsufficientStorage(#[source] std::io::Error),
    #[error("request body: {0}")]
    Body(#[from] BodyError),
    /// The write would add an event to an outbox already holding `--notify-queue-limit`
    /// undelivered ones (a target is down): refused, nothing stored; retry later (503).
    #[error("Please reduce your request rate.")]
    SlowDown,
    /// The state store cannot be reached now: retry later (503).
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(StoreError),
    /// Any other disk failure (EIO, …). Build it with `.into()`, which sorts out "disk full".
    #[error("disk: {0}")]
    Io(std::io::Error),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            // Refused because the bucket is being deleted: for the caller it is gone.
            StoreError::BucketGone => Self::NoSuchBucket,
            StoreError::Unavailable(why) => Self::Unavailable(why),
            StoreError::OutboxFull => Self::SlowDown,
            e => Self::Store(e),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::StorageFull | K::QuotaExceeded => Self::InsufficientStorage(e),
            _ => Self::Io(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `e` and its sources, outermost first, for the one log line of a failed request (a source
/// whose text its wrapper already shows is not repeated).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}
