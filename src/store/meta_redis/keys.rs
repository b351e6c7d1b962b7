//! The key schema's names (see the table in `mod.rs`): every key of a bucket shares the hash
//! tag `{b:<bucket>}`, every key of an upload `{u:<uploadId>}`.

use super::RedisMetaStore;
use super::codec::glob_escape;
use crate::model::UploadId;

/// The keys of one (bucket, target) outbox (see the schema table in `mod.rs`).
pub(super) struct Outbox {
    pub(super) pending: String,
    pub(super) dead: String,
    pub(super) records: String,
}

impl RedisMetaStore {
    pub(super) fn bucket_names(&self) -> String {
        format!("{}:buckets", self.root)
    }

    /// The unique-file entry of one content hash (its own slot).
    pub(super) fn file(&self, hash: &str) -> String {
        format!("{}:file:{{f:{hash}}}", self.root)
    }

    pub(super) fn bucket(&self, bucket: &str) -> String {
        format!("{}:bkt:{{b:{bucket}}}", self.root)
    }

    pub(super) fn objects(&self, bucket: &str) -> String {
        format!("{}:objects", self.bucket(bucket))
    }

    pub(super) fn object_keys(&self, bucket: &str) -> String {
        format!("{}:okeys", self.bucket(bucket))
    }

    pub(super) fn listing(&self, bucket: &str) -> String {
        format!("{}:uploads", self.bucket(bucket))
    }

    pub(super) fn seal(&self, bucket: &str) -> String {
        format!("{}:sealed", self.bucket(bucket))
    }

    /// The bucket's event counter: the last `seq` given. Kept when the bucket is deleted, so a
    /// re-created bucket never reuses a seq its old outboxes may still hold.
    pub(super) fn event_seq(&self, bucket: &str) -> String {
        format!("{}:evseq", self.bucket(bucket))
    }

    /// One outbox of the bucket, in its slot: (pending seqs, dead-lettered seqs, records). The
    /// target comes last, so no target name can make one outbox's key another's.
    pub(super) fn outbox(&self, bucket: &str, target: &str) -> Outbox {
        let b = self.bucket(bucket);
        Outbox {
            pending: format!("{b}:ev:pending:{target}"),
            dead: format!("{b}:ev:dead:{target}"),
            records: format!("{b}:ev:rec:{target}"),
        }
    }

    /// Every (bucket, target) that has had an event, as `bucket \n target` (its own slot).
    pub(super) fn event_queues(&self) -> String {
        format!("{}:evqueues", self.root)
    }

    pub(super) fn upload(&self, id: &UploadId) -> String {
        format!("{}:upl:{{u:{id}}}", self.root)
    }

    pub(super) fn parts(&self, id: &UploadId) -> String {
        format!("{}:parts", self.upload(id))
    }

    /// The uploads counted against `owner`'s cap (its own slot: one key per owner).
    pub(super) fn owned(&self, owner: &str) -> String {
        format!("{}:own:{{o:{owner}}}", self.root)
    }

    /// `owner`'s open challenges (their records, and the same nonces by expiry), one slot.
    pub(super) fn challenges(&self, owner: &str) -> (String, String) {
        let key = format!("{}:chal:{{c:{owner}}}", self.root);
        let by_expiry = format!("{key}:exp");
        (key, by_expiry)
    }

    pub(super) fn secret(&self, name: &str) -> String {
        format!("{}:secret:{name}", self.root)
    }

    /// A glob matching every seal key.
    pub(super) fn seal_pattern(&self) -> String {
        format!("{}:bkt:{{b:*}}:sealed", glob_escape(&self.root))
    }

    /// The bucket a seal key belongs to.
    pub(super) fn sealed_name(&self, key: &str) -> Option<String> {
        key.strip_prefix(&format!("{}:bkt:{{b:", self.root))?
            .strip_suffix("}:sealed")
            .map(str::to_owned)
    }
}
