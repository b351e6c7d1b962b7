//! Completion events: a bucket's notification rules and the outbox entries they produce.

use serde::{Deserialize, Serialize};

use super::Millis;

/// One rule of a bucket's notification configuration (an S3 `QueueConfiguration`): events
/// named in `events` on keys with `prefix` and `suffix` go to the target `target` (its ARN).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyRule {
    pub id: String,
    /// `arn:mpgw:sqs:<region>:<name>:webhook|redis`.
    pub target: String,
    /// Event types as S3 names them: `s3:ObjectCreated:*`, `s3:ObjectRemoved:Delete`, …
    pub events: Vec<String>,
    pub prefix: String,
    pub suffix: String,
}

/// What happened to the object, as the record's `eventName` says it (without `s3:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventName {
    #[serde(rename = "ObjectCreated:Put")]
    Put,
    #[serde(rename = "ObjectCreated:Post")]
    Post,
    #[serde(rename = "ObjectCreated:Copy")]
    Copy,
    #[serde(rename = "ObjectCreated:CompleteMultipartUpload")]
    CompleteMultipartUpload,
    #[serde(rename = "ObjectRemoved:Delete")]
    Delete,
}

impl EventName {
    /// The name in a record (`ObjectCreated:Put`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "ObjectCreated:Put",
            Self::Post => "ObjectCreated:Post",
            Self::Copy => "ObjectCreated:Copy",
            Self::CompleteMultipartUpload => "ObjectCreated:CompleteMultipartUpload",
            Self::Delete => "ObjectRemoved:Delete",
        }
    }
}

/// One event waiting in (or dead-lettered from) a bucket's outbox for one target. Everything
/// the delivered message says is here, so that it can be sent long after the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Position in the bucket's outbox, assigned by the store when the event is recorded:
    /// increasing per bucket, so also per key (the message's `sequencer`). 0 before that.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// The target's name (its ARN's fifth field).
    pub target: String,
    /// The rule's `Id` (`configurationId`).
    pub rule: String,
    pub name: EventName,
    pub bucket: String,
    pub key: String,
    /// Size and ETag (unquoted) of a created object; None for a removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// When the object was published or deleted.
    pub time: Millis,
    /// Who made the request (`userIdentity.principalId`).
    pub principal: String,
    /// The bucket's owner (`s3.bucket.ownerIdentity.principalId`).
    pub bucket_owner: String,
    pub source_ip: String,
    pub request_id: String,
    /// Delivery state, kept by the store: attempts made, not before `due`, claimed by a
    /// deliverer until `lease`, the last failure.
    #[serde(default)]
    pub tries: u32,
    #[serde(default)]
    pub due: Millis,
    #[serde(default)]
    pub lease: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An event to record with an object write, and the most events its outbox may hold: a write
/// that would go past it is refused (`StoreError::OutboxFull`) and nothing is stored.
#[derive(Clone, Copy, Debug)]
pub struct Notice<'a> {
    pub event: &'a EventRecord,
    pub limit: usize,
}

/// What became of a claimed event (`MetaStore::settle_events`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Delivered: removed from the outbox.
    Delivered,
    /// Failed: one more try counted, not again before `due`, lease cleared.
    Retry { due: Millis, error: String },
    /// Given up after one more failed try: moved to the dead-letter list with that try counted
    /// and its failure.
    Dead { error: String },
    /// Not attempted (an earlier event of its key failed): lease cleared, nothing counted.
    Release,
}
