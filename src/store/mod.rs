//! Storage: the upload-state store (trait with a Redis and an embedded implementation) and the
//! local-disk part store. Nothing here knows HTTP or S3 wire formats.

pub mod disk;
pub mod instrumented;
pub mod io;
pub mod meta;
pub mod meta_embedded;
pub mod meta_redis;
pub mod peers;
pub mod space;
mod stage;

pub use disk::DiskStore;
pub use meta::{
    AbortUpload, AppendPart, BeginComplete, DeleteBucket, MetaStore, PutPart, SealBucket,
    UploadCursor,
};

/// Infrastructure failure. `Unavailable` is "retry later" (Redis down, pool exhausted) and maps to
/// 503; the rest are real faults (500).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt state record: {0}")]
    Corrupt(String),
    #[error("state store error: {0}")]
    Backend(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The bucket is being deleted (see `MetaStore::seal_bucket`): nothing new goes into it.
    #[error("the bucket is being deleted")]
    BucketGone,
    /// The bucket's outbox for the event's target is full (see `MetaStore::put_object`).
    #[error("the event outbox is full")]
    OutboxFull,
}

impl StoreError {
    /// The metrics label of this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Corrupt(_) => "corrupt",
            Self::Backend(_) => "backend",
            Self::Io(_) => "io",
            Self::BucketGone => "bucket_gone",
            Self::OutboxFull => "outbox_full",
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
