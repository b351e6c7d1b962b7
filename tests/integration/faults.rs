//! Fault injection. A scripted sequence (PutObject, a multipart upload with a re-sent part and an
//! UploadPartCopy, Complete, CopyObject, reads) runs once to count the state-store calls and the
//! disk steps it makes; then, for every N, it runs again with the Nth call (or step) failing.
//! After each failure: the request failed with a 5xx (never a 2xx that lies), every part ListParts
//! shows has its bytes on disk under its ETag (data before state), no temp file is left, no
//! object is visible before its write succeeded (or, for a Complete whose last record failed,
//! only the whole object is), and retrying the request and the rest of the script succeeds
//! with byte-identical objects.
//!
//! Also here: the free-space reserve (refused before the body is stored), and a real full disk
//! on a small tmpfs where mounting is permitted (else the injected ENOSPC covers the write step).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use mpgw::model::event::{EventRecord, Notice, Settle};
use mpgw::model::{
    BucketRecord, ChallengeRecord, CompletedResult, FileRecord, Millis, ObjectRecord, PartNumber,
    PartRecord, UploadId, UploadRecord,
};
use mpgw::store::disk::{DiskStep, FaultHook};
use mpgw::store::{
    AbortUpload, AppendPart, BeginComplete, DeleteBucket, MetaStore, PutPart, SealBucket,
    StoreError, StoreResult, UploadCursor,
};
use mpgw::upload::Uploads;

use crate::harness::*;

const B: &str = "faults";
/// Every request of the script gets this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole sweep over every N, per store kind and fault target.
const SWEEP_BUDGET: Duration = Duration::from_secs(240);
const ENOSPC: i32 = 28;
const EIO: i32 = 5;

// ---------------- the fault plan ----------------

/// Counts calls while armed and fails the `fail_at`-th one (1-based; 0 = none).
#[derive(Default)]
struct Plan {
    armed: AtomicBool,
    calls: AtomicU64,
    fail_at: AtomicU64,
    /// What the failed call was, once it failed.
    failed: Mutex<Option<String>>,
    /// Fail the first call of this name instead of the `fail_at`-th.
    fail_on: Mutex<Option<&'static str>>,
}

impl Plan {
    fn start(&self, fail_at: u64) {
        self.calls.store(0, Ordering::SeqCst);
        self.fail_at.store(fail_at, Ordering::SeqCst);
        *self.failed.lock().unwrap() = None;
        *self.fail_on.lock().unwrap() = None;
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Arms the plan to fail the first call named `name`.
    fn start_named(&self, name: &'static str) {
        self.start(0);
        *self.fail_on.lock().unwrap() = Some(name);
    }

    /// Stops counting (checks between steps must not shift the numbering); `resume` continues.
    fn pause(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn failed(&self) -> Option<String> {
        self.failed.lock().unwrap().clone()
    }

    /// Whether this call is the one to fail.
    fn hit(&self, what: impl FnOnce() -> String) -> bool {
        if !self.armed.load(Ordering::SeqCst) {
            return false;
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let what = what();
        let mut fail_on = self.fail_on.lock().unwrap();
        let hit = match *fail_on {
            Some(name) => name == what,
            None => n == self.fail_at.load(Ordering::SeqCst),
        };
        if hit {
            *fail_on = None;
            *self.failed.lock().unwrap() = Some(what);
        }
        hit
    }
}

/// A state store whose calls fail as `plan` says, with the error a store returns when its
/// backend is unreachable.
struct FaultyMeta {
    inner: Arc<dyn MetaStore>,
    plan: Arc<Plan>,
}

impl FaultyMeta {
    fn check(&self, name: &'static str) -> StoreResult<()> {
        if self.plan.hit(|| name.to_owned()) {
            return Err(StoreError::Unavailable(format!(
                "injected fault in {name}: connection refused"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl MetaStore for FaultyMeta {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn create_bucket(&self, rec: &BucketRecord) -> StoreResult<Option<BucketRecord>> {
        self.check("create_bucket")?;
        self.inner.create_bucket(rec).await
    }
    async fn get_bucket(&self, name: &str) -> StoreResult<Option<BucketRecord>> {
        self.check("get_bucket")?;
        self.inner.get_bucket(name).await
    }
    async fn update_bucket(&self, rec: &BucketRecord) -> StoreResult<bool> {
        self.check("update_bucket")?;
        self.inner.update_bucket(rec).await
    }
    async fn list_buckets(&self) -> StoreResult<Vec<BucketRecord>> {
        self.check("list_buckets")?;
        self.inner.list_buckets().await
    }
    async fn delete_bucket(&self, name: &str) -> StoreResult<DeleteBucket> {
        self.check("delete_bucket")?;
        self.inner.delete_bucket(name).await
    }
    async fn seal_bucket(&self, name: &str, at: Millis) -> StoreResult<SealBucket> {
        self.check("seal_bucket")?;
        self.inner.seal_bucket(name, at).await
    }
    async fn sealed_buckets(&self) -> StoreResult<Vec<(String, Millis)>> {
        self.check("sealed_buckets")?;
        self.inner.sealed_buckets().await
    }
    async fn unseal_bucket(&self, name: &str) -> StoreResult<()> {
        self.check("unseal_bucket")?;
        self.inner.unseal_bucket(name).await
    }
    async fn get_object(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectRecord>> {
        self.check("get_object")?;
        self.inner.get_object(bucket, key).await
    }
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>> {
        self.check("put_object")?;
        self.inner.put_object(bucket, key, rec, notice).await
    }
    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        blob: &UploadId,
        rec: &ObjectRecord,
    ) -> StoreResult<bool> {
        self.check("update_object")?;
        self.inner.update_object(bucket, key, blob, rec).await
    }
    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>> {
        self.check("delete_object")?;
        self.inner.delete_object(bucket, key, notice).await
    }
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, ObjectRecord)>> {
        self.check("list_objects")?;
        self.inner.list_objects(bucket, prefix, after, limit).await
    }
    async fn object_blobs(&self) -> StoreResult<Vec<UploadId>> {
        self.check("object_blobs")?;
        self.inner.object_blobs().await
    }
    async fn create_upload(&self, rec: &UploadRecord) -> StoreResult<()> {
        self.check("create_upload")?;
        self.inner.create_upload(rec).await
    }
    async fn reserve_upload(
        &self,
        owner: &str,
        id: &UploadId,
        at: Millis,
        limit: usize,
    ) -> StoreResult<bool> {
        self.check("reserve_upload")?;
        self.inner.reserve_upload(owner, id, at, limit).await
    }
    async fn release_upload(&self, owner: &str, id: &UploadId) -> StoreResult<()> {
        self.check("release_upload")?;
        self.inner.release_upload(owner, id).await
    }
    async fn reserved_uploads(&self) -> StoreResult<Vec<(String, UploadId, Millis)>> {
        self.check("reserved_uploads")?;
        self.inner.reserved_uploads().await
    }
    async fn get_upload(&self, id: &UploadId) -> StoreResult<Option<UploadRecord>> {
        self.check("get_upload")?;
        self.inner.get_upload(id).await
    }
    async fn put_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
    ) -> StoreResult<PutPart> {
        self.check("put_part")?;
        self.inner.put_part(id, n, part).await
    }
    async fn append_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
        replaces: Option<&str>,
    ) -> StoreResult<AppendPart> {
        self.check("append_part")?;
        self.inner.append_part(id, n, part, replaces).await
    }
    async fn list_parts(
        &self,
        id: &UploadId,
        after: Option<PartNumber>,
        limit: usize,
    ) -> StoreResult<Vec<(PartNumber, PartRecord)>> {
        self.check("list_parts")?;
        self.inner.list_parts(id, after, limit).await
    }
    async fn begin_complete(
        &self,
        id: &UploadId,
        now: Millis,
        stale_before: Millis,
    ) -> StoreResult<BeginComplete> {
        self.check("begin_complete")?;
        self.inner.begin_complete(id, now, stale_before).await
    }
    async fn reopen(&self, id: &UploadId) -> StoreResult<()> {
        self.check("reopen")?;
        self.inner.reopen(id).await
    }
    async fn finish_complete(&self, id: &UploadId, result: &CompletedResult) -> StoreResult<()> {
        self.check("finish_complete")?;
        self.inner.finish_complete(id, result).await
    }
    async fn abort_upload(&self, id: &UploadId) -> StoreResult<AbortUpload> {
        self.check("abort_upload")?;
        self.inner.abort_upload(id).await
    }
    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&UploadCursor>,
        limit: usize,
    ) -> StoreResult<Vec<UploadRecord>> {
        self.check("list_uploads")?;
        self.inner.list_uploads(bucket, prefix, after, limit).await
    }
    async fn all_uploads(&self) -> StoreResult<Vec<UploadRecord>> {
        self.check("all_uploads")?;
        self.inner.all_uploads().await
    }
    async fn purge_completed(&self, before: Millis) -> StoreResult<usize> {
        self.check("purge_completed")?;
        self.inner.purge_completed(before).await
    }
    async fn get_file(&self, hash: &str) -> StoreResult<Option<FileRecord>> {
        self.check("get_file")?;
        self.inner.get_file(hash).await
    }
    async fn put_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()> {
        self.check("put_file")?;
        self.inner.put_file(hash, rec).await
    }
    async fn delete_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()> {
        self.check("delete_file")?;
        self.inner.delete_file(hash, rec).await
    }
    async fn put_challenge(
        &self,
        owner: &str,
        nonce: &str,
        rec: &ChallengeRecord,
        now: Millis,
        limit: usize,
    ) -> StoreResult<()> {
        self.check("put_challenge")?;
        self.inner
            .put_challenge(owner, nonce, rec, now, limit)
            .await
    }
    async fn take_challenge(
        &self,
        owner: &str,
        nonce: &str,
        now: Millis,
    ) -> StoreResult<Option<ChallengeRecord>> {
        self.check("take_challenge")?;
        self.inner.take_challenge(owner, nonce, now).await
    }
    async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        self.check("shared_secret")?;
        self.inner.shared_secret(name, candidate).await
    }
    // The outbox methods pass through unfaulted and uncounted: a deliverer working in the
    // background would make the call numbering of the scripted sequence vary between runs.
    async fn claim_events(
        &self,
        bucket: &str,
        target: &str,
        now: Millis,
        lease_until: Millis,
        scan: usize,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        self.inner
            .claim_events(bucket, target, now, lease_until, scan, limit)
            .await
    }
    async fn settle_events(
        &self,
        bucket: &str,
        target: &str,
        outcomes: &[(u64, Settle)],
        dead_limit: usize,
    ) -> StoreResult<usize> {
        self.inner
            .settle_events(bucket, target, outcomes, dead_limit)
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
        self.inner
            .list_events(bucket, target, dead, after, limit)
            .await
    }
    async fn count_events(&self, bucket: &str, target: &str) -> StoreResult<(usize, usize)> {
        self.inner.count_events(bucket, target).await
    }
    async fn retry_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
        now: Millis,
    ) -> StoreResult<usize> {
        self.inner
            .retry_dead_events(bucket, target, seqs, now)
            .await
    }
    async fn drop_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
    ) -> StoreResult<usize> {
        self.inner.drop_dead_events(bucket, target, seqs).await
    }
    async fn event_queues(&self) -> StoreResult<Vec<(String, String)>> {
        self.inner.event_queues().await
    }
    async fn forget_event_queue(&self, bucket: &str, target: &str) -> StoreResult<()> {
        self.inner.forget_event_queue(bucket, target).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.check("ping")?;
        self.inner.ping().await
    }
}

/// A disk hook failing as `plan` says: ENOSPC while writing a chunk (a full disk shows there),
/// EIO at any other step.
fn disk_hook(plan: Arc<Plan>) -> FaultHook {
    Arc::new(move |s: DiskStep| {
        if plan.hit(|| format!("disk {s:?}")) {
            let errno = if s == DiskStep::WriteChunk {
                ENOSPC
            } else {
                EIO
            };
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        Ok(())
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Meta,
    Disk,
}

/// A gateway whose state store and disk store fail as the two plans say (fsync on, so that the
/// fsync steps are part of the script).
async fn faulty_gateway(store: Store, meta: Arc<Plan>, disk: Arc<Plan>) -> TestGateway {
    let wrap: WrapUploads = Arc::new(move |u: Uploads| {
        let (inner, disk_store, limits) = u.into_parts();
        let faulty = FaultyMeta {
            inner,
            plan: meta.clone(),
        };
        Uploads::new(
            Arc::new(faulty),
            disk_store.with_faults(disk_hook(disk.clone())),
            limits,
        )
    });
    TestGateway::start_wrapped(
        store,
        |c| {
            c.fsync = true;
            c.min_part_size = 1;
        },
        Some(wrap),
    )
    .await
}

// ---------------- the script ----------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Put,
    ReadPut,
    Create,
    /// Part number, index into `Data::parts`.
    Part(i32, usize),
    /// Part 3 copied from the PutObject's bytes `COPY_RANGE`.
    PartCopy,
    Complete,
    ReadUpload,
    Copy,
    ReadCopy,
}

const SCRIPT: &[Step] = &[
    Step::Put,
    Step::ReadPut,
    Step::Create,
    Step::Part(1, 0),
    Step::Part(2, 1),
    Step::PartCopy,
    Step::Part(2, 2),
    Step::Complete,
    Step::ReadUpload,
    Step::Copy,
    Step::ReadCopy,
];

const COPY_RANGE: (usize, usize) = (1000, 30_000);

struct Data {
    put: Vec<u8>,
    parts: [Vec<u8>; 3],
}

impl Data {
    fn new() -> Self {
        Self {
            put: random_bytes(40_000),
            parts: [
                random_bytes(20_000),
                random_bytes(17_000),
                random_bytes(23_456),
            ],
        }
    }

    fn copied(&self) -> &[u8] {
        &self.put[COPY_RANGE.0..COPY_RANGE.1]
    }

    /// The completed object: part 1, the re-sent part 2, the copied part 3.
    fn object(&self) -> Vec<u8> {
        [&self.parts[0][..], &self.parts[2], self.copied()].concat()
    }
}

/// One run of the script on its own keys.
struct Run<'a> {
    c: aws_sdk_s3::Client,
    data: &'a Data,
    key: String,
    put_key: String,
    copy_key: String,
    id: Option<String>,
    /// ETags of the parts whose upload succeeded (the latest per number).
    etags: BTreeMap<i32, String>,
    done: Vec<Step>,
}

type Failure = (u16, String);

fn failure<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Failure {
    match e.raw_response() {
        Some(r) => (r.status().as_u16(), e.code().unwrap_or_default().to_owned()),
        None => panic!("request failed without an HTTP answer: {e:?}"),
    }
}

impl<'a> Run<'a> {
    fn new(c: aws_sdk_s3::Client, data: &'a Data, name: &str) -> Self {
        Self {
            c,
            data,
            key: format!("{name}/mp"),
            put_key: format!("{name}/put"),
            copy_key: format!("{name}/copy"),
            id: None,
            etags: BTreeMap::new(),
            done: Vec::new(),
        }
    }

    fn id(&self) -> &str {
        self.id.as_deref().expect("upload created")
    }

    async fn exec(&mut self, step: Step) -> Result<(), Failure> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exec_inner(step))
            .await
            .unwrap_or_else(|_| panic!("{step:?} took over {REQUEST_TIMEOUT:?}"))
    }

    async fn exec_inner(&mut self, step: Step) -> Result<(), Failure> {
        let c = &self.c;
        let d = self.data;
        match step {
            Step::Put => {
                let out = c
                    .put_object()
                    .bucket(B)
                    .key(&self.put_key)
                    .body(d.put.clone().into())
                    .send()
                    .await
                    .map_err(|e| failure(&e))?;
                assert_eq!(out.e_tag(), Some(quoted_md5(&d.put).as_str()));
            }
            Step::ReadPut => self.read(&self.put_key, &d.put).await?,
            Step::Create => {
                let out = c
                    .create_multipart_upload()
                    .bucket(B)
                    .key(&self.key)
                    .send()
                    .await
                    .map_err(|e| failure(&e))?;
                self.id = Some(out.upload_id().expect("upload id").to_owned());
            }
            Step::Part(n, i) => {
                let out = c
                    .upload_part()
                    .bucket(B)
                    .key(&self.key)
                    .upload_id(self.id())
                    .part_number(n)
                    .body(d.parts[i].clone().into())
                    .send()
                    .await
                    .map_err(|e| failure(&e))?;
                let etag = out.e_tag().expect("etag").to_owned();
                assert_eq!(etag, quoted_md5(&d.parts[i]), "part {n} ETag");
                self.etags.insert(n, etag);
            }
            Step::PartCopy => {
                let out = c
                    .upload_part_copy()
                    .bucket(B)
                    .key(&self.key)
                    .upload_id(self.id())
                    .part_number(3)
                    .copy_source(format!("{B}/{}", self.put_key))
                    .copy_source_range(format!("bytes={}-{}", COPY_RANGE.0, COPY_RANGE.1 - 1))
                    .send()
                    .await
                    .map_err(|e| failure(&e))?;
                let etag = out
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .expect("copy part etag")
                    .to_owned();
                assert_eq!(etag, quoted_md5(d.copied()), "copied part ETag");
                self.etags.insert(3, etag);
            }
            Step::Complete => {
                let parts: Vec<(i32, &str)> =
                    self.etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
                assert_eq!(parts.len(), 3, "all parts uploaded before Complete");
                let out = try_complete(c, B, &self.key, self.id(), &parts)
                    .await
                    .map_err(|e| failure(&e))?;
                let want = multipart_etag(&[&d.parts[0], &d.parts[2], d.copied()]);
                assert_eq!(out.e_tag(), Some(want.as_str()), "completed ETag");
            }
            Step::ReadUpload => self.read(&self.key, &d.object()).await?,
            Step::Copy => {
                c.copy_object()
                    .bucket(B)
                    .key(&self.copy_key)
                    .copy_source(format!("{B}/{}", self.key))
                    .send()
                    .await
                    .map_err(|e| failure(&e))?;
            }
            Step::ReadCopy => self.read(&self.copy_key, &d.object()).await?,
        }
        self.done.push(step);
        Ok(())
    }

    async fn read(&self, key: &str, want: &[u8]) -> Result<(), Failure> {
        let out = self
            .c
            .get_object()
            .bucket(B)
            .key(key)
            .send()
            .await
            .map_err(|e| failure(&e))?;
        assert_same_bytes(&read_all(out).await, want, key);
        Ok(())
    }

    /// Whether `key` answers a HEAD, and then with exactly `want`'s length.
    async fn visible(&self, key: &str) -> bool {
        match self.c.head_object().bucket(B).key(key).send().await {
            Ok(_) => true,
            Err(e) => {
                assert_eq!(failure(&e).0, 404, "HEAD {key}");
                false
            }
        }
    }

    /// What must hold after any failure: listed parts have their bytes on disk under their
    /// ETag, parts acknowledged are listed, no temp file is left, objects appear only whole
    /// and only once their write got past its last state change.
    async fn check_consistent(&self, data_dir: &Path, failed: Step) {
        assert_no_temp_files(data_dir);
        if let Some(id) = &self.id {
            match self
                .c
                .list_parts()
                .bucket(B)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await
            {
                Ok(out) => {
                    let files = blob_files(data_dir, id);
                    let mut listed = BTreeMap::new();
                    for p in out.parts() {
                        let n = p.part_number().unwrap();
                        let etag = p.e_tag().unwrap().to_owned();
                        let on_disk = files
                            .iter()
                            .filter(|f| f.starts_with(&format!("{n}.")))
                            .map(|f| std::fs::read(blob_dir(data_dir, id).join(f)).unwrap())
                            .any(|bytes| {
                                quoted_md5(&bytes) == etag
                                    && bytes.len() as i64 == p.size().unwrap()
                            });
                        assert!(
                            on_disk,
                            "part {n} ({etag}) is listed but its data is not on disk"
                        );
                        listed.insert(n, etag);
                    }
                    for (n, etag) in &self.etags {
                        assert_eq!(
                            listed.get(n),
                            Some(etag),
                            "part {n} was acknowledged but is not listed as such"
                        );
                    }
                }
                Err(e) => {
                    // Only a completed upload is gone; its object then must be whole.
                    assert_eq!(failure(&e), (404, "NoSuchUpload".into()), "ListParts");
                    assert!(
                        self.done.contains(&Step::Complete) || failed == Step::Complete,
                        "upload gone before its Complete"
                    );
                }
            }
        }
        for (key, step, want) in [
            (&self.put_key, Step::Put, self.data.put.clone()),
            (&self.key, Step::Complete, self.data.object()),
            (&self.copy_key, Step::Copy, self.data.object()),
        ] {
            if self.visible(key).await {
                assert!(
                    self.done.contains(&step) || failed == step,
                    "{key} is visible before its {step:?}"
                );
                self.read(key, &want)
                    .await
                    .unwrap_or_else(|f| panic!("{key} visible but unreadable: {f:?}"));
            } else {
                assert!(!self.done.contains(&step), "{key} vanished after {step:?}");
            }
        }
    }
}

fn assert_no_temp_files(data_dir: &Path) {
    let blobs = std::fs::read_dir(data_dir.join("blobs")).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (the disk store's layout moved? this check would pass vacuously)",
            data_dir.join("blobs").display()
        )
    });
    for blob in blobs {
        let blob = blob.unwrap().path();
        for f in std::fs::read_dir(&blob).into_iter().flatten() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".tmp-"),
                "temp file {name} left in {}",
                blob.display()
            );
        }
    }
}

/// Runs the script with `target`'s `fail_at`-th call failing (0: none). Returns the calls made
/// and whether one failed (the count varies a little: a body arrives in a varying number of
/// chunks).
async fn run_script(
    gw: &TestGateway,
    plans: (&Plan, &Plan),
    target: Target,
    fail_at: u64,
    data: &Data,
) -> (u64, bool) {
    let (plan, other) = match target {
        Target::Meta => plans,
        Target::Disk => (plans.1, plans.0),
    };
    let name = format!("{target:?}-{fail_at}").to_lowercase();
    let mut run = Run::new(gw.client(), data, &name);
    other.pause();
    plan.start(fail_at);
    let mut failures = 0;
    for &step in SCRIPT {
        match run.exec(step).await {
            Ok(()) => {}
            Err((status, code)) => {
                plan.pause();
                let what = plan.failed();
                let ctx = format!("{name}: {step:?} failed with {status} {code}, fault {what:?}");
                assert!(what.is_some(), "{ctx}: no fault was injected");
                failures += 1;
                assert_eq!(failures, 1, "{ctx}: a second failure");
                let want = match (target, what.as_deref()) {
                    (Target::Meta, _) => (503, "ServiceUnavailable"),
                    (Target::Disk, Some("disk WriteChunk")) => (507, "InsufficientStorage"),
                    (Target::Disk, _) => (500, "InternalError"),
                };
                assert_eq!((status, code.as_str()), want, "{ctx}");
                run.check_consistent(gw.data_dir(), step).await;
                run.exec(step)
                    .await
                    .unwrap_or_else(|f| panic!("{ctx}: the retry failed too: {f:?}"));
                plan.resume();
            }
        }
    }
    plan.pause();
    let calls = plan.calls();
    // The end state: every object whole, the upload gone, no stray files (unless a removal was
    // what failed: the sweep takes those).
    run.check_consistent(gw.data_dir(), Step::ReadCopy).await;
    assert_eq!(run.done, SCRIPT, "{name}");
    let leftover = blob_files(gw.data_dir(), run.id());
    let removal_failed = plan.failed().is_some_and(|f| f == "disk Remove");
    if !removal_failed {
        assert_eq!(
            leftover.len(),
            3,
            "{name}: files of the object: {leftover:?} (fault: {:?})",
            plan.failed()
        );
    }
    (calls, plan.failed().is_some())
}

async fn every_fault(store: Store, target: Target) {
    let (meta, disk) = (Arc::new(Plan::default()), Arc::new(Plan::default()));
    let gw = faulty_gateway(store, meta.clone(), disk.clone()).await;
    gw.bucket(B).await;
    let data = Data::new();
    let plans = (&*meta, &*disk);
    let (total, _) = run_script(&gw, plans, target, 0, &data).await;
    assert!(total > 10, "{target:?}: only {total} calls counted");
    let started = Instant::now();
    // Until N is past the last call of the run.
    let mut n = 1;
    while run_script(&gw, plans, target, n, &data).await.1 {
        assert!(
            started.elapsed() < SWEEP_BUDGET,
            "{target:?}: {n} runs took over {SWEEP_BUDGET:?}"
        );
        n += 1;
    }
    assert!(
        n > total / 2,
        "{target:?}: faults stopped at {n} of ~{total} calls"
    );
    eprintln!(
        "{store:?} {target:?}: the script makes ~{total} calls; each failed once in {:?}",
        started.elapsed()
    );
}

async fn every_state_store_fault(store: Store) {
    every_fault(store, Target::Meta).await;
}
both!(
    every_state_store_fault_leaves_a_resumable_upload,
    every_state_store_fault
);

async fn every_disk_fault(store: Store) {
    every_fault(store, Target::Disk).await;
}
both!(every_disk_fault_leaves_a_resumable_upload, every_disk_fault);

/// Regression: a Complete whose object was published but whose completion record failed used
/// to reopen the upload, so that a re-sent part or an Abort then deleted files the visible
/// object is made of. Now the upload stays Completing and is settled from the object.
async fn complete_with_failed_record(store: Store) {
    let (meta, disk) = (Arc::new(Plan::default()), Arc::new(Plan::default()));
    let gw = faulty_gateway(store, meta.clone(), disk).await;
    let c = gw.bucket(B).await;
    let (a, b) = (random_bytes(10_000), random_bytes(7_000));
    let id = create_upload(&c, B, "k").await;
    let ea = upload_part(&c, B, "k", &id, 1, &a).await;
    let eb = upload_part(&c, B, "k", &id, 2, &b).await;
    meta.start_named("finish_complete");
    let r = try_complete(&c, B, "k", &id, &[(1, &ea), (2, &eb)]).await;
    meta.pause();
    assert_eq!(meta.failed().as_deref(), Some("finish_complete"));
    assert_eq!(err(r), (503, "ServiceUnavailable".into()));
    let whole = [&a[..], &b].concat();
    assert_same_bytes(&get_bytes(&c, B, "k").await, &whole, "published object");

    // A part re-sent now must not replace a file of the visible object.
    let r = c
        .upload_part()
        .bucket(B)
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .body(random_bytes(10_000).into())
        .send()
        .await;
    assert_eq!(err(r), (404, "NoSuchUpload".into()), "part after publish");
    // Nor may an Abort delete them: the upload is complete.
    let r = c
        .abort_multipart_upload()
        .bucket(B)
        .key("k")
        .upload_id(&id)
        .send()
        .await;
    assert_eq!(err(r), (404, "NoSuchUpload".into()), "abort after publish");
    assert_same_bytes(&get_bytes(&c, B, "k").await, &whole, "object after abort");
    // The retried Complete replays the result.
    let etag = complete(&c, B, "k", &id, &[(1, &ea), (2, &eb)]).await;
    assert_eq!(etag, multipart_etag(&[&a, &b]));
    assert_eq!(blob_files(gw.data_dir(), &id).len(), 2);
}
both!(
    complete_with_failed_record_keeps_the_object,
    complete_with_failed_record
);

// ---------------- the free-space reserve ----------------

fn blob_dirs(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("blobs")).map_or(0, Iterator::count)
}

/// Below the reserve every write is refused with 507 before its body is stored (a client
/// waiting for `100 Continue` gets the answer instead), while reads and state-only requests
/// (ListParts, Complete of parts already there) go on.
async fn reserve_refuses_writes(store: Store) {
    let mut gw = TestGateway::start_with(store, |c| c.min_part_size = 1).await;
    let c = gw.bucket(B).await;
    let kept = random_bytes(3000);
    put(&c, B, "kept", &kept).await;
    let id = create_upload(&c, B, "mp").await;
    let p1 = random_bytes(5000);
    let e1 = upload_part(&c, B, "mp", &id, 1, &p1).await;

    gw.cfg.min_free_space = 1000 << 40; // 1000 TiB
    gw.restart().await;
    let c = gw.client();
    let dirs = blob_dirs(gw.data_dir());
    let full = (507, "InsufficientStorage".to_owned());
    let r = c
        .put_object()
        .bucket(B)
        .key("new")
        .body(random_bytes(1000).into())
        .send()
        .await;
    assert_eq!(err(r), full, "PutObject");
    let r = c
        .upload_part()
        .bucket(B)
        .key("mp")
        .upload_id(&id)
        .part_number(2)
        .body(random_bytes(1000).into())
        .send()
        .await;
    assert_eq!(err(r), full, "UploadPart");
    let r = c
        .upload_part_copy()
        .bucket(B)
        .key("mp")
        .upload_id(&id)
        .part_number(2)
        .copy_source(format!("{B}/kept"))
        .send()
        .await;
    assert_eq!(err(r), full, "UploadPartCopy");
    let r = c
        .copy_object()
        .bucket(B)
        .key("copy")
        .copy_source(format!("{B}/kept"))
        .send()
        .await;
    assert_eq!(err(r), full, "CopyObject");
    // Only the head of an 8 MiB part is sent: the refusal must come without the body.
    let (addr, head, _) = gw
        .raw("PUT", &format!("/{B}/mp?partNumber=3&uploadId={id}"))
        .header("content-length", &(8 * MIB).to_string())
        .header("expect", "100-continue")
        .unsigned_payload()
        .into_wire();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, &head)
        .await
        .unwrap();
    read_response(&mut s)
        .await
        .assert_error(507, "InsufficientStorage");

    assert_eq!(
        blob_dirs(gw.data_dir()),
        dirs,
        "a refused write left a blob"
    );
    assert_eq!(blob_files(gw.data_dir(), &id).len(), 1, "part files");
    for key in ["new", "copy"] {
        let r = c.head_object().bucket(B).key(key).send().await;
        assert_eq!(err(r).0, 404, "{key}");
    }
    assert_same_bytes(
        &get_bytes(&c, B, "kept").await,
        &kept,
        "read below the reserve",
    );
    assert_eq!(
        all_parts(&c, B, "mp", &id).await,
        vec![(1, e1.clone(), p1.len() as i64)]
    );
    complete(&c, B, "mp", &id, &[(1, &e1)]).await;
    assert_same_bytes(
        &get_bytes(&c, B, "mp").await,
        &p1,
        "completed below the reserve",
    );
}
both!(
    reserve_refuses_writes_before_the_body,
    reserve_refuses_writes
);

// ---------------- a real full disk ----------------

/// A tmpfs mounted for the test, lazily unmounted when dropped.
pub(crate) struct Tmpfs(pub(crate) std::path::PathBuf);

impl Tmpfs {
    /// None where mounting is not permitted (not root, no CAP_SYS_ADMIN, a container).
    pub(crate) fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Free bytes on the file system holding `dir`, as the gateway measures them.
pub(crate) fn free_bytes(dir: &Path) -> u64 {
    let st = rustix::fs::statvfs(dir).unwrap();
    st.f_bavail * st.f_frsize
}

/// Part data on a 16 MiB tmpfs (the state store stays off it), no reserve. Two parts that each
/// fit the free space but not together are sent at once: at least one fails with 507 (refused
/// for the room the other holds; a disk filled by someone else mid-write is `reserve.rs`'s) and
/// leaves no temp file, earlier parts and objects stay readable, and once space is freed it is
/// re-sent and the upload completes.
async fn full_disk(store: Store) {
    let mut mounted = None;
    let gw = TestGateway::start_with(store, |c| {
        c.min_free_space = 0;
        c.min_part_size = 1;
        mounted = Tmpfs::mount(&c.data_dir.join("blobs"), "16m");
    })
    .await;
    // Declared after the gateway, so unmounted before it is dropped (even on a panic).
    let mounted = mounted.expect(
        "full_disk: cannot mount a tmpfs (`mount -t tmpfs` needs root or CAP_SYS_ADMIN); run the \
         tests as root, as CI does, or skip this one with `-- --skip full_disk`",
    );
    let c = gw.bucket(B).await;
    let kept = random_bytes(100_000);
    put(&c, B, "kept", &kept).await;
    // Someone else's file takes part of the disk.
    let filler = mounted.0.join("filler");
    std::fs::write(&filler, vec![7u8; 6 << 20]).unwrap();
    let id = create_upload(&c, B, "mp").await;
    let first = random_bytes(3 * MIB);
    let mut etags = BTreeMap::from([(1, upload_part(&c, B, "mp", &id, 1, &first).await)]);
    let each = usize::try_from(free_bytes(&mounted.0) * 6 / 10).unwrap();
    let parts: BTreeMap<i32, Vec<u8>> = (2..=3).map(|n| (n, random_bytes(each))).collect();
    let send = |n: i32| {
        c.upload_part()
            .bucket(B)
            .key("mp")
            .upload_id(&id)
            .part_number(n)
            .body(parts[&n].clone().into())
            .send()
    };
    let (r2, r3) = tokio::join!(send(2), send(3));
    let mut failed = Vec::new();
    for (n, r) in [(2, r2), (3, r3)] {
        match r {
            Ok(out) => {
                etags.insert(n, out.e_tag().unwrap().to_owned());
            }
            Err(e) => {
                assert_eq!(
                    failure(&e),
                    (507, "InsufficientStorage".into()),
                    "part {n} on a full disk"
                );
                failed.push(n);
            }
        }
    }
    assert!(
        !failed.is_empty(),
        "two parts larger than the disk both stored"
    );
    assert_no_temp_files(gw.data_dir());
    assert_eq!(
        blob_files(gw.data_dir(), &id).len(),
        etags.len(),
        "part files"
    );
    let sizes = BTreeMap::from([(1, first.len()), (2, each), (3, each)]);
    let want: Vec<(i32, String, i64)> = etags
        .iter()
        .map(|(n, e)| (*n, e.clone(), sizes[n] as i64))
        .collect();
    assert_eq!(all_parts(&c, B, "mp", &id).await, want);
    assert_same_bytes(
        &get_bytes(&c, B, "kept").await,
        &kept,
        "object on a full disk",
    );
    let r = c
        .put_object()
        .bucket(B)
        .key("late")
        .body(random_bytes(2 * each).into())
        .send()
        .await;
    assert_eq!(err(r), (507, "InsufficientStorage".into()), "PutObject");
    assert_eq!(
        err(c.head_object().bucket(B).key("late").send().await).0,
        404
    );
    assert_no_temp_files(gw.data_dir());

    std::fs::remove_file(&filler).unwrap();
    for n in failed {
        let out = send(n).await.expect("the part once space is free");
        etags.insert(n, out.e_tag().unwrap().to_owned());
    }
    let listed: Vec<(i32, &str)> = etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
    complete(&c, B, "mp", &id, &listed).await;
    let whole = [&first[..], &parts[&2], &parts[&3]].concat();
    assert_same_bytes(&get_bytes(&c, B, "mp").await, &whole, "resumed upload");
    drop(c);
    drop(mounted);
}
both!(full_disk_fails_the_part_and_resumes, full_disk);
