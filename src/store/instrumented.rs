//! `InstrumentedMeta`: a state store wrapped with timings, error counts and the upload
//! transitions operators watch.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::metrics::{Metrics, UploadEvent};
use crate::model::event::{EventRecord, Notice, Settle};
use crate::model::{
    BucketRecord, ChallengeRecord, CompletedResult, FileRecord, Millis, ObjectRecord, PartNumber,
    PartRecord, UploadId, UploadRecord,
};
use crate::store::{
    AbortUpload, AppendPart, BeginComplete, DeleteBucket, MetaStore, PutPart, SealBucket,
    StoreError, StoreResult, UploadCursor,
};

/// A `MetaStore` that delegates to another, timing every call, counting its errors, and counting
/// the transitions that matter to operators (parts recorded, uploads opened and closed). Every
/// state change goes through the store, so nothing above it needs to know about metrics.
pub struct InstrumentedMeta {
    inner: Arc<dyn MetaStore>,
    metrics: Arc<Metrics>,
}

impl InstrumentedMeta {
    pub fn new(inner: Arc<dyn MetaStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn call<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let started = Instant::now();
        let result = call.await;
        self.metrics.store_call(
            method,
            started.elapsed(),
            result.as_ref().err().map(StoreError::kind),
        );
        result
    }
}

#[async_trait]
impl MetaStore for InstrumentedMeta {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn create_bucket(&self, rec: &BucketRecord) -> StoreResult<Option<BucketRecord>> {
        self.call("create_bucket", self.inner.create_bucket(rec))
            .await
    }

    async fn get_bucket(&self, name: &str) -> StoreResult<Option<BucketRecord>> {
        self.call("get_bucket", self.inner.get_bucket(name)).await
    }

    async fn get_file(&self, hash: &str) -> StoreResult<Option<FileRecord>> {
        self.call("get_file", self.inner.get_file(hash)).await
    }

    async fn put_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()> {
        self.call("put_file", self.inner.put_file(hash, rec)).await
    }

    async fn delete_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()> {
        self.call("delete_file", self.inner.delete_file(hash, rec))
            .await
    }

    async fn put_challenge(
        &self,
        owner: &str,
        nonce: &str,
        rec: &ChallengeRecord,
        now: Millis,
        limit: usize,
    ) -> StoreResult<()> {
        self.call(
            "put_challenge",
            self.inner.put_challenge(owner, nonce, rec, now, limit),
        )
        .await
    }

    async fn take_challenge(
        &self,
        owner: &str,
        nonce: &str,
        now: Millis,
    ) -> StoreResult<Option<ChallengeRecord>> {
        self.call(
            "take_challenge",
            self.inner.take_challenge(owner, nonce, now),
        )
        .await
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        self.call("shared_secret", self.inner.shared_secret(name, candidate))
            .await
    }

    async fn update_bucket(&self, rec: &BucketRecord) -> StoreResult<bool> {
        self.call("update_bucket", self.inner.update_bucket(rec))
            .await
    }

    async fn list_buckets(&self) -> StoreResult<Vec<BucketRecord>> {
        self.call("list_buckets", self.inner.list_buckets()).await
    }

    async fn delete_bucket(&self, name: &str) -> StoreResult<DeleteBucket> {
        self.call("delete_bucket", self.inner.delete_bucket(name))
            .await
    }

    async fn seal_bucket(&self, name: &str, at: Millis) -> StoreResult<SealBucket> {
        self.call("seal_bucket", self.inner.seal_bucket(name, at))
            .await
    }

    async fn sealed_buckets(&self) -> StoreResult<Vec<(String, Millis)>> {
        self.call("sealed_buckets", self.inner.sealed_buckets())
            .await
    }

    async fn unseal_bucket(&self, name: &str) -> StoreResult<()> {
        self.call("unseal_bucket", self.inner.unseal_bucket(name))
            .await
    }

    async fn get_object(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectRecord>> {
        self.call("get_object", self.inner.get_object(bucket, key))
            .await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>> {
        let r = self
            .call(
                "put_object",
                self.inner.put_object(bucket, key, rec, notice),
            )
            .await;
        if r.is_ok()
            && let Some(n) = notice
        {
            self.metrics.events(&n.event.target, "queued", 1);
        }
        r
    }

    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        blob: &UploadId,
        rec: &ObjectRecord,
    ) -> StoreResult<bool> {
        self.call(
            "update_object",
            self.inner.update_object(bucket, key, blob, rec),
        )
        .await
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>> {
        let r = self
            .call(
                "delete_object",
                self.inner.delete_object(bucket, key, notice),
            )
            .await;
        // An event is recorded only when an object was removed.
        if let (Ok(Some(_)), Some(n)) = (&r, notice) {
            self.metrics.events(&n.event.target, "queued", 1);
        }
        r
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, ObjectRecord)>> {
        self.call(
            "list_objects",
            self.inner.list_objects(bucket, prefix, after, limit),
        )
        .await
    }

    async fn object_blobs(&self) -> StoreResult<Vec<UploadId>> {
        self.call("object_blobs", self.inner.object_blobs()).await
    }

    async fn create_upload(&self, rec: &UploadRecord) -> StoreResult<()> {
        let result = self
            .call("create_upload", self.inner.create_upload(rec))
            .await;
        if result.is_ok() {
            self.metrics.upload(UploadEvent::Created);
        }
        result
    }

    async fn get_upload(&self, id: &UploadId) -> StoreResult<Option<UploadRecord>> {
        self.call("get_upload", self.inner.get_upload(id)).await
    }

    async fn put_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
    ) -> StoreResult<PutPart> {
        let result = self
            .call("put_part", self.inner.put_part(id, n, part))
            .await;
        if let Ok(PutPart::Recorded(_)) = result {
            self.metrics.parts_written.inc();
        }
        result
    }

    async fn append_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
        replaces: Option<&str>,
    ) -> StoreResult<AppendPart> {
        let result = self
            .call("append_part", self.inner.append_part(id, n, part, replaces))
            .await;
        if let Ok(AppendPart::Recorded(_)) = result {
            self.metrics.parts_written.inc();
        }
        result
    }

    async fn list_parts(
        &self,
        id: &UploadId,
        after: Option<PartNumber>,
        limit: usize,
    ) -> StoreResult<Vec<(PartNumber, PartRecord)>> {
        self.call("list_parts", self.inner.list_parts(id, after, limit))
            .await
    }

    async fn begin_complete(
        &self,
        id: &UploadId,
        now: Millis,
        stale_before: Millis,
    ) -> StoreResult<BeginComplete> {
        self.call(
            "begin_complete",
            self.inner.begin_complete(id, now, stale_before),
        )
        .await
    }

    async fn reopen(&self, id: &UploadId) -> StoreResult<()> {
        self.call("reopen", self.inner.reopen(id)).await
    }

    async fn finish_complete(&self, id: &UploadId, result: &CompletedResult) -> StoreResult<()> {
        let out = self
            .call("finish_complete", self.inner.finish_complete(id, result))
            .await;
        if out.is_ok() {
            self.metrics.upload(UploadEvent::Completed);
        }
        out
    }

    async fn abort_upload(&self, id: &UploadId) -> StoreResult<AbortUpload> {
        let result = self.call("abort_upload", self.inner.abort_upload(id)).await;
        if let Ok(AbortUpload::Aborted(..)) = result {
            self.metrics.upload(UploadEvent::Aborted);
        }
        result
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&UploadCursor>,
        limit: usize,
    ) -> StoreResult<Vec<UploadRecord>> {
        self.call(
            "list_uploads",
            self.inner.list_uploads(bucket, prefix, after, limit),
        )
        .await
    }

    async fn all_uploads(&self) -> StoreResult<Vec<UploadRecord>> {
        self.call("all_uploads", self.inner.all_uploads()).await
    }

    async fn purge_completed(&self, before: Millis) -> StoreResult<usize> {
        self.call("purge_completed", self.inner.purge_completed(before))
            .await
    }

    async fn reserve_upload(
        &self,
        owner: &str,
        id: &UploadId,
        at: Millis,
        limit: usize,
    ) -> StoreResult<bool> {
        self.call(
            "reserve_upload",
            self.inner.reserve_upload(owner, id, at, limit),
        )
        .await
    }

    async fn release_upload(&self, owner: &str, id: &UploadId) -> StoreResult<()> {
        self.call("release_upload", self.inner.release_upload(owner, id))
            .await
    }

    async fn reserved_uploads(&self) -> StoreResult<Vec<(String, UploadId, Millis)>> {
        self.call("reserved_uploads", self.inner.reserved_uploads())
            .await
    }

    async fn claim_events(
        &self,
        bucket: &str,
        target: &str,
        now: Millis,
        lease_until: Millis,
        scan: usize,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        self.call(
            "claim_events",
            self.inner
                .claim_events(bucket, target, now, lease_until, scan, limit),
        )
        .await
    }

    async fn settle_events(
        &self,
        bucket: &str,
        target: &str,
        outcomes: &[(u64, Settle)],
        dead_limit: usize,
    ) -> StoreResult<usize> {
        self.call(
            "settle_events",
            self.inner
                .settle_events(bucket, target, outcomes, dead_limit),
        )
        .await
    }

    async fn list_events(
        &self,
        bucket: &str,
        target: &str,
        dead: bool,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        self.call(
            "list_events",
            self.inner.list_events(bucket, target, dead, after, limit),
        )
        .await
    }

    async fn count_events(&self, bucket: &str, target: &str) -> StoreResult<(usize, usize)> {
        self.call("count_events", self.inner.count_events(bucket, target))
            .await
    }

    async fn retry_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
        now: Millis,
    ) -> StoreResult<usize> {
        self.call(
            "retry_dead_events",
            self.inner.retry_dead_events(bucket, target, seqs, now),
        )
        .await
    }

    async fn drop_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
    ) -> StoreResult<usize> {
        self.call(
            "drop_dead_events",
            self.inner.drop_dead_events(bucket, target, seqs),
        )
        .await
    }

    async fn event_queues(&self) -> StoreResult<Vec<(String, String)>> {
        self.call("event_queues", self.inner.event_queues()).await
    }

    async fn forget_event_queue(&self, bucket: &str, target: &str) -> StoreResult<()> {
        self.call(
            "forget_event_queue",
            self.inner.forget_event_queue(bucket, target),
        )
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.call("ping", self.inner.ping()).await
    }
}
