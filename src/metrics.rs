//! Prometheus metrics, and `InstrumentedMeta`, the state-store decorator that feeds them.
//!
//! One registry per `App`, no globals: gateways started in one process (the tests) count apart.
//! `admin` serves the registry as Prometheus text at `/metrics`. Where each number comes from:
//! requests and their latency from `http` (when the response body ends), connections and bytes
//! on the wire from `server`, write and fsync latency from `store::disk`, and state-store latency,
//! errors, parts and upload transitions from `InstrumentedMeta`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::model::{
    BucketRecord, ChallengeRecord, CompletedResult, FileRecord, Millis, ObjectRecord, PartNumber,
    PartRecord, UploadId, UploadRecord,
};
use crate::store::{
    AbortUpload, BeginComplete, DeleteBucket, MetaStore, PutPart, StoreError, StoreResult,
    UploadCursor,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: &'static str,
    kind: &'static str,
}

/// What happened to an upload; `Created` opens one, the others close it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadEvent {
    Created,
    Completed,
    Aborted,
    /// Aborted by the expiry janitor (also counted as `aborted`: see `Metrics::uploads_expired`).
    Expired,
}

impl UploadEvent {
    const ALL: [Self; 4] = [Self::Created, Self::Completed, Self::Aborted, Self::Expired];

    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Expired => "expired",
        }
    }
}

/// What an fsync made durable.
#[derive(Clone, Copy, Debug)]
pub enum Fsync {
    /// A part or object file's bytes.
    File,
    /// A directory entry (the rename of a committed file).
    Dir,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Why the gateway gave up on a client (see `server` and `http`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// TLS handshake not done within --header-timeout.
    Tls,
    /// Request head not complete within --header-timeout.
    Header,
    /// No request for --idle-timeout.
    Idle,
    /// Request body stalled for --body-timeout.
    Body,
    /// Response not read by the client for --body-timeout.
    Send,
    /// Request body slower than --min-body-rate over --body-rate-window.
    BodyRate,
    /// Response read by the client slower than --min-body-rate over --body-rate-window.
    SendRate,
}

impl Timeout {
    const ALL: [Self; 7] = [
        Self::Tls,
        Self::Header,
        Self::Idle,
        Self::Body,
        Self::Send,
        Self::BodyRate,
        Self::SendRate,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Header => "header",
            Self::Idle => "idle",
            Self::Body => "body",
            Self::Send => "send",
            Self::BodyRate => "body_rate",
            Self::SendRate => "send_rate",
        }
    }
}

/// Per-listener connection counters. `Default` gives detached ones, counted nowhere (the admin
/// listener, so that scrapes do not show up as traffic).
#[derive(Clone, Debug, Default)]
pub struct ConnectionMetrics {
    pub open: Gauge,
    pub accepted: Counter,
    /// On the wire, request and response heads included.
    pub received_bytes: Counter,
    pub sent_bytes: Counter,
    /// Times the accept loop reached --max-connections and paused.
    pub limited: Counter,
    timeouts: Family<KindLabels, Counter>,
}

impl ConnectionMetrics {
    pub fn timeout(&self, kind: Timeout) {
        self.timeouts
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<OpLabels, Histogram>,
    pub connections: ConnectionMetrics,
    pub parts_written: Counter,
    uploads: Family<EventLabels, Counter>,
    pub uploads_open: Gauge,
    part_write_duration: Histogram,
    fsync_duration: Family<TargetLabels, Histogram>,
    store_duration: Family<MethodLabels, Histogram>,
    store_errors: Family<ErrorLabels, Counter>,
}

/// 1 ms to 33 s: requests, including the transfer of large bodies.
fn slow_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// 0.1 ms to 3.3 s: single disk or state-store operations.
fn fast_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("mpgw"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(slow_buckets),
            connections: ConnectionMetrics::default(),
            parts_written: Counter::default(),
            uploads: Family::default(),
            uploads_open: Gauge::default(),
            part_write_duration: slow_buckets(),
            fsync_duration: Family::new_with_constructor(fast_buckets),
            store_duration: Family::new_with_constructor(fast_buckets),
            store_errors: Family::default(),
        };
        // Every event series exists from the start, so rates work before the first one happens.
        for e in UploadEvent::ALL {
            drop(m.uploads.get_or_create(&EventLabels { event: e.as_str() }));
        }
        for t in Timeout::ALL {
            drop(
                m.connections
                    .timeouts
                    .get_or_create(&KindLabels { kind: t.as_str() }),
            );
        }
        let r = &mut m.registry;
        r.register(
            "requests",
            "S3 requests by operation and HTTP status",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "S3 request latency by operation, until the last response byte",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register(
            "connections_open",
            "Open client connections",
            m.connections.open.clone(),
        );
        r.register(
            "connections",
            "Accepted client connections",
            m.connections.accepted.clone(),
        );
        r.register(
            "connections_limited",
            "Times --max-connections was reached and accepting paused",
            m.connections.limited.clone(),
        );
        r.register(
            "timeouts",
            "Connections or requests ended by a timeout, by kind (tls, header, idle, body, send)",
            m.connections.timeouts.clone(),
        );
        r.register_with_unit(
            "received",
            "Bytes received from clients (heads included)",
            Unit::Bytes,
            m.connections.received_bytes.clone(),
        );
        r.register_with_unit(
            "sent",
            "Bytes sent to clients (heads included)",
            Unit::Bytes,
            m.connections.sent_bytes.clone(),
        );
        r.register(
            "parts_written",
            "Parts recorded by UploadPart",
            m.parts_written.clone(),
        );
        r.register(
            "uploads",
            "Multipart upload transitions by event",
            m.uploads.clone(),
        );
        r.register(
            "uploads_open",
            "Open multipart uploads (recounted from the state store at start-up and every orphan sweep)",
            m.uploads_open.clone(),
        );
        r.register_with_unit(
            "part_write_duration",
            "Time spent writing one part or object file, excluding waits for the client and the fsync",
            Unit::Seconds,
            m.part_write_duration.clone(),
        );
        r.register_with_unit(
            "fsync_duration",
            "fsync latency by target",
            Unit::Seconds,
            m.fsync_duration.clone(),
        );
        r.register_with_unit(
            "store_duration",
            "State store call latency by method",
            Unit::Seconds,
            m.store_duration.clone(),
        );
        r.register(
            "store_errors",
            "Failed state store calls by method and kind",
            m.store_errors.clone(),
        );
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn request(&self, op: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { op, status })
            .inc();
        self.request_duration
            .get_or_create(&OpLabels { op })
            .observe(elapsed.as_secs_f64());
    }

    pub fn upload(&self, event: UploadEvent) {
        self.uploads
            .get_or_create(&EventLabels {
                event: event.as_str(),
            })
            .inc();
        match event {
            UploadEvent::Created => self.uploads_open.inc(),
            UploadEvent::Completed | UploadEvent::Aborted | UploadEvent::Expired => {
                self.uploads_open.dec()
            }
        };
    }

    /// Counts `n` uploads the expiry janitor aborted. Their abort already went through the state
    /// store (counted as `aborted`, open gauge decremented), so only the `expired` series moves.
    pub fn uploads_expired(&self, n: usize) {
        self.uploads
            .get_or_create(&EventLabels {
                event: UploadEvent::Expired.as_str(),
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub fn part_write(&self, elapsed: Duration) {
        self.part_write_duration.observe(elapsed.as_secs_f64());
    }

    pub fn fsync(&self, target: Fsync, elapsed: Duration) {
        let target = match target {
            Fsync::File => "file",
            Fsync::Dir => "dir",
        };
        self.fsync_duration
            .get_or_create(&TargetLabels { target })
            .observe(elapsed.as_secs_f64());
    }

    fn store_call(&self, method: &'static str, elapsed: Duration, error: Option<&StoreError>) {
        self.store_duration
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
        if let Some(e) = error {
            let kind = match e {
                StoreError::Unavailable(_) => "unavailable",
                StoreError::Corrupt(_) => "corrupt",
                StoreError::Backend(_) => "backend",
                StoreError::Io(_) => "io",
            };
            self.store_errors
                .get_or_create(&ErrorLabels { method, kind })
                .inc();
        }
    }
}

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
        self.metrics
            .store_call(method, started.elapsed(), result.as_ref().err());
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

    async fn get_object(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectRecord>> {
        self.call("get_object", self.inner.get_object(bucket, key))
            .await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
    ) -> StoreResult<Option<ObjectRecord>> {
        self.call("put_object", self.inner.put_object(bucket, key, rec))
            .await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectRecord>> {
        self.call("delete_object", self.inner.delete_object(bucket, key))
            .await
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

    async fn ping(&self) -> StoreResult<()> {
        self.call("ping", self.inner.ping()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.request("UploadPart", 200, Duration::from_millis(3));
        m.upload(UploadEvent::Created);
        m.fsync(Fsync::Dir, Duration::from_micros(50));
        m.connections.received_bytes.inc_by(10);
        let text = m.encode();
        for want in [
            "mpgw_requests_total{op=\"UploadPart\",status=\"200\"} 1",
            "mpgw_request_duration_seconds_count{op=\"UploadPart\"} 1",
            "mpgw_uploads_total{event=\"created\"} 1",
            "mpgw_uploads_total{event=\"expired\"} 0",
            "mpgw_uploads_open 1",
            "mpgw_fsync_duration_seconds_count{target=\"dir\"} 1",
            "mpgw_received_bytes_total 10",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
