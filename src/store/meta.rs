//! The upload-state store contract. Two implementations: `meta_redis` (production, shared by
//! several gateways) and `meta_embedded` (redb in the data dir, the default). The same
//! conformance suite (`tests/integration/meta_conformance.rs`) runs against both.
//!
//! Every method is one atomic step: it either happens whole or not at all, and concurrent calls
//! see each other's effects in some serial order. Records are opaque to the store except for the
//! fields named in a method's contract (upload `state`, `completing_since`, part numbers).

use async_trait::async_trait;

use super::StoreResult;
use crate::model::event::{EventRecord, Notice, Settle};
use crate::model::{
    BlobId, BucketRecord, ChallengeRecord, CompletedResult, FileRecord, Millis, ObjectRecord,
    PartNumber, PartRecord, UploadId, UploadRecord,
};

#[derive(Debug, PartialEq, Eq)]
pub enum DeleteBucket {
    Deleted,
    NotFound,
    /// Objects or open (or completing) uploads remain.
    NotEmpty,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SealBucket {
    /// Marked as being deleted.
    Sealed,
    NotFound,
    /// It holds an object: left as it was.
    NotEmpty,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PutPart {
    /// Recorded; carries the record it replaced (its file is now unreferenced).
    Recorded(Option<PartRecord>),
    /// The upload is missing or no longer Open (aborted, completing, completed): nothing recorded.
    NotOpen,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AppendPart {
    /// Recorded; carries the record it replaced (its file is now unreferenced).
    Recorded(Option<PartRecord>),
    /// The upload is missing or no longer Open: nothing recorded.
    NotOpen,
    /// The part table is not as the caller read it (another append came first).
    Moved,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BeginComplete {
    /// Open → Completing; the record (now Completing) and its whole part table, ascending.
    Started(UploadRecord, Vec<(PartNumber, PartRecord)>),
    /// Another Complete is running (Completing and not stale).
    Busy(UploadRecord),
    /// Already Completed: the caller may replay `completed`.
    Completed(UploadRecord),
    NotFound,
}

#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one value per call; boxing would buy nothing
pub enum AbortUpload {
    /// Removed (record, part table, listing entry); the parts whose files the caller deletes.
    Aborted(UploadRecord, Vec<(PartNumber, PartRecord)>),
    /// Completing: the caller waits and retries.
    Busy,
    /// Missing or Completed.
    NotFound,
}

/// Position in a bucket's upload listing, which is ordered by (key, created, id).
/// Listing returns uploads strictly after the cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadCursor {
    pub key: String,
    /// None: after every upload on `key`.
    pub upload: Option<(Millis, UploadId)>,
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Short name for logs ("redis", "embedded").
    fn kind(&self) -> &'static str;

    // ---- buckets ----

    /// Creates the bucket if absent (returns None) or returns the existing record untouched.
    async fn create_bucket(&self, rec: &BucketRecord) -> StoreResult<Option<BucketRecord>>;
    async fn get_bucket(&self, name: &str) -> StoreResult<Option<BucketRecord>>;
    /// Replaces the record of an existing bucket (its settings); false when the bucket is missing.
    async fn update_bucket(&self, rec: &BucketRecord) -> StoreResult<bool>;
    /// All buckets, ascending by name.
    async fn list_buckets(&self) -> StoreResult<Vec<BucketRecord>>;
    /// Deletes the bucket only if it holds no object and no upload that is Open or Completing;
    /// its seal goes with it.
    async fn delete_bucket(&self, name: &str) -> StoreResult<DeleteBucket>;
    /// Marks an existing bucket that holds no object as being deleted, in one step with that
    /// check. From then on `put_object` and `create_upload` in it fail with
    /// `StoreError::BucketGone` (on every gateway), so once its open uploads are aborted it stays
    /// empty for `delete_bucket`. A bucket holding an object is left unmarked (`NotEmpty`).
    /// `at` is when, for [`Self::sealed_buckets`].
    async fn seal_bucket(&self, name: &str, at: Millis) -> StoreResult<SealBucket>;
    /// Lifts the mark of a deletion that could not finish. Idempotent.
    async fn unseal_bucket(&self, name: &str) -> StoreResult<()>;
    /// Every sealed bucket with the time it was sealed: deletions a crash may have interrupted.
    async fn sealed_buckets(&self) -> StoreResult<Vec<(String, Millis)>>;

    // ---- objects ----

    async fn get_object(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectRecord>>;
    /// Sets the object record, returning the one it replaced. Readers see old or new, never a mix.
    /// Fails with `StoreError::BucketGone` while the bucket is sealed. With a notice, its event
    /// is added to the bucket's outbox for its target in the same step (given the next `seq` of
    /// the bucket); when that outbox already holds `limit` pending events, fails with
    /// `StoreError::OutboxFull` and stores nothing.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>>;
    /// Replaces the record of the object at bucket/key only while that is still the object stored
    /// in `blob` (each write of an object makes a new blob, so a record replaced or deleted
    /// meanwhile is never overwritten); returns whether it did. Changes the record, not the
    /// object: Put/DeleteObjectTagging.
    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        blob: &BlobId,
        rec: &ObjectRecord,
    ) -> StoreResult<bool>;
    /// Removes the object record, returning it. With a notice, its event is recorded as with
    /// `put_object`, in the same step, only when a record was removed (`OutboxFull` as there).
    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>>;
    /// Objects whose key starts with `prefix` and sorts strictly after `after` (byte order),
    /// ascending, at most `limit`.
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, ObjectRecord)>>;
    /// Every blob id that some object record points at (for the orphan sweep).
    async fn object_blobs(&self) -> StoreResult<Vec<UploadId>>;

    // ---- uploads ----

    /// Stores a new upload (state Open) and its entry in the bucket's upload listing. Fails with
    /// `StoreError::BucketGone`, storing nothing, while the bucket is sealed.
    async fn create_upload(&self, rec: &UploadRecord) -> StoreResult<()>;
    async fn get_upload(&self, id: &UploadId) -> StoreResult<Option<UploadRecord>>;
    /// Records part `n` only if the upload exists and is Open; replaces any earlier record for `n`.
    async fn put_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
    ) -> StoreResult<PutPart>;
    /// Records part `n` of an upload written in order (tus) only if the upload is Open and its
    /// part table is still as the caller read it: with `replaces` None, `n` is the next number
    /// (no part `n` yet, part `n - 1` present unless `n` is 1); with `replaces` Some(file), `n`
    /// is the last part and is still the one stored in `file`. Of two appends that read the same
    /// table, one at most is recorded; the other gets `Moved`.
    async fn append_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
        replaces: Option<&str>,
    ) -> StoreResult<AppendPart>;
    /// Parts numbered above `after`, ascending, at most `limit`.
    async fn list_parts(
        &self,
        id: &UploadId,
        after: Option<PartNumber>,
        limit: usize,
    ) -> StoreResult<Vec<(PartNumber, PartRecord)>>;
    /// Open → Completing with `completing_since = now`. A Completing upload whose
    /// `completing_since` is older than `stale_before` (its gateway died) is taken over the same way.
    async fn begin_complete(
        &self,
        id: &UploadId,
        now: Millis,
        stale_before: Millis,
    ) -> StoreResult<BeginComplete>;
    /// Completing → Open (the Complete failed validation or its commit failed). No-op otherwise.
    async fn reopen(&self, id: &UploadId) -> StoreResult<()>;
    /// Completing → Completed with `result`: drops the part table and the listing entry; keeps the
    /// record (for replay) until `purge_completed` removes it.
    async fn finish_complete(&self, id: &UploadId, result: &CompletedResult) -> StoreResult<()>;
    /// Removes an Open upload: record, part table and listing entry.
    async fn abort_upload(&self, id: &UploadId) -> StoreResult<AbortUpload>;
    /// Open and Completing uploads of `bucket` whose key starts with `prefix`, ordered by
    /// (key, created, id), strictly after `after`, at most `limit`.
    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&UploadCursor>,
        limit: usize,
    ) -> StoreResult<Vec<UploadRecord>>;
    /// Every upload record in any state (start-up recovery, orphan sweep, expiry).
    async fn all_uploads(&self) -> StoreResult<Vec<UploadRecord>>;
    /// Deletes Completed records whose `completed.at` is before `before`; returns how many.
    async fn purge_completed(&self, before: Millis) -> StoreResult<usize>;
    // ---- open uploads per owner (the `--max-uploads-per-key` cap) ----
    //
    // A count kept beside the upload records, not derived from them: it must be checked and
    // bumped in one step, and in Redis the records live in one slot per upload. The upload
    // service reserves before it creates and releases after an abort or completion; what a crash
    // leaves between the two steps is repaired by its reconciliation (start-up and sweep).

    /// Counts upload `id` (reserved at time `at`) among `owner`'s open uploads if fewer than
    /// `limit` are counted (0: no limit) and returns true; returns false, counting nothing, when
    /// `limit` already are. An id already counted for `owner` succeeds without change. Atomic:
    /// concurrent reservations for one owner never take the count above `limit`.
    async fn reserve_upload(
        &self,
        owner: &str,
        id: &UploadId,
        at: Millis,
        limit: usize,
    ) -> StoreResult<bool>;
    /// Stops counting `id` among `owner`'s open uploads. Idempotent.
    async fn release_upload(&self, owner: &str, id: &UploadId) -> StoreResult<()>;
    /// Every counted upload as (owner, id, reserved at), for the reconciliation.
    async fn reserved_uploads(&self) -> StoreResult<Vec<(String, UploadId, Millis)>>;

    // ---- unique file table (the legacy API's instant upload) ----

    /// The file recorded for content `hash` (`<algorithm>:<hex>`).
    async fn get_file(&self, hash: &str) -> StoreResult<Option<FileRecord>>;
    /// Records `rec` as the stored copy of `hash`, replacing any earlier entry.
    async fn put_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()>;
    /// Removes the entry for `hash` only if it still equals `rec` (a newer entry stays).
    async fn delete_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()>;

    // ---- instant-upload challenges (single use, expiring, at most `limit` per owner) ----

    /// Stores `owner`'s challenge `nonce`. The owner's challenges expired at `now` are dropped;
    /// when `limit` live ones remain, those expiring first are dropped to make room. One that
    /// would expire no later than a live one expires 1 ms after the latest instead, so that
    /// challenges of equal expiry (made in the same millisecond) are dropped in the order they
    /// came.
    async fn put_challenge(
        &self,
        owner: &str,
        nonce: &str,
        rec: &ChallengeRecord,
        now: Millis,
        limit: usize,
    ) -> StoreResult<()>;
    /// Removes `owner`'s challenge `nonce` and returns it, unless it had expired at `now`. Of
    /// concurrent takes of one nonce, one at most gets it.
    async fn take_challenge(
        &self,
        owner: &str,
        nonce: &str,
        now: Millis,
    ) -> StoreResult<Option<ChallengeRecord>>;

    /// The secret kept under `name`, storing `candidate` first when there is none: every
    /// gateway on this store gets the same value, for as long as the store keeps its data.
    async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String>;

    // ---- completion events: one outbox per (bucket, target), filled by put/delete_object ----

    /// Claims up to `limit` events of the outbox, in `seq` order among the first `scan`: those
    /// due at `now` (`due <= now`), not leased (`lease <= now`), and with no earlier event on the
    /// same key left unclaimed (events of one key are delivered in order). Each claimed event's
    /// lease is set to `lease_until`, so another deliverer does not take it meanwhile.
    #[allow(clippy::too_many_arguments)] // one value each, all part of the claim
    async fn claim_events(
        &self,
        bucket: &str,
        target: &str,
        now: Millis,
        lease_until: Millis,
        scan: usize,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>>;
    /// Applies each outcome to the pending event `seq` (missing ones are skipped): see
    /// [`Settle`]. The dead-letter list keeps the newest `dead_limit`; returns how many older
    /// dead letters were dropped to stay within it.
    async fn settle_events(
        &self,
        bucket: &str,
        target: &str,
        outcomes: &[(u64, Settle)],
        dead_limit: usize,
    ) -> StoreResult<usize>;
    /// Pending events (or with `dead`, dead-lettered ones) with `seq > after`, ascending, at
    /// most `limit`.
    async fn list_events(
        &self,
        bucket: &str,
        target: &str,
        dead: bool,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>>;
    /// How many events are (pending, dead-lettered).
    async fn count_events(&self, bucket: &str, target: &str) -> StoreResult<(usize, usize)>;
    /// Moves the dead letters `seqs` (all when empty) back to the outbox, due at `now` with no
    /// try counted; returns how many.
    async fn retry_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
        now: Millis,
    ) -> StoreResult<usize>;
    /// Deletes the dead letters `seqs` (all when empty); returns how many.
    async fn drop_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
    ) -> StoreResult<usize>;
    /// Every (bucket, target) that has had an event, ascending, until forgotten.
    async fn event_queues(&self) -> StoreResult<Vec<(String, String)>>;
    /// Stops listing an outbox that holds nothing, pending or dead (of a deleted bucket).
    /// Not atomic with writers: call it only when no event can be added (the bucket is gone).
    async fn forget_event_queue(&self, bucket: &str, target: &str) -> StoreResult<()>;

    /// Cheap liveness probe of the backend.
    async fn ping(&self) -> StoreResult<()>;
}
