//! The upload core in-process, without HTTP: `mpgw::upload::Uploads` over a state store
//! (embedded redb or Redis) and a `DiskStore` in a temp dir, the way `app::open_uploads` builds
//! them. Rules of the core checked where no front end stands in between.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use mpgw::model::{ObjectHeaders, PartNumber};
use mpgw::store::SealBucket;
use mpgw::store::disk::DiskStore;
use mpgw::store::meta::MetaStore;
use mpgw::store::meta_embedded::EmbeddedMetaStore;
use mpgw::store::meta_redis::RedisMetaStore;
use mpgw::upload::{
    BodyChecks, Caller, CompleteChecks, Error, Limits, ListedPart, Uploads, WriteCondition,
};

const NO_CONDITION: WriteCondition = WriteCondition::NONE;
use proptest::prelude::*;

use crate::harness::*;

const OWNER: &str = "owner-a";
const B: &str = "core";

/// An `Uploads` on a fresh data dir; for Redis under a key prefix of its own, removed on drop.
struct Core {
    up: Uploads,
    /// The stores `up` runs on, to build a second `Uploads` with other limits.
    meta: Arc<dyn MetaStore>,
    disk: DiskStore,
    dir: tempfile::TempDir,
    redis_prefix: Option<String>,
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(p) = &self.redis_prefix {
            let _ = delete_prefix(&redis_url(), p);
        }
    }
}

async fn core(store: Store, limits: Limits) -> Core {
    let dir = tempfile::Builder::new()
        .prefix("mpgw-core-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (meta, redis_prefix): (Arc<dyn MetaStore>, _) = match store {
        Store::Embedded => (
            Arc::new(EmbeddedMetaStore::open(&data.join("state.redb")).unwrap()),
            None,
        ),
        Store::Redis => {
            let prefix = format!("mpgw-core-{:016x}", rand::random::<u64>());
            let meta = RedisMetaStore::connect(&redis_url(), &prefix, None)
                .await
                .unwrap();
            (Arc::new(meta), Some(prefix))
        }
    };
    let disk = DiskStore::open(&data, false).unwrap();
    let up = Uploads::new(meta.clone(), disk.clone(), limits);
    up.create_bucket(OWNER, B).await.unwrap();
    Core {
        up,
        meta,
        disk,
        dir,
        redis_prefix,
    }
}

fn small_parts() -> Limits {
    Limits {
        min_part_size: 1,
        ..Limits::default()
    }
}

fn body(data: &[u8]) -> mpgw::upload::BodyStream {
    let b = Bytes::copy_from_slice(data);
    Box::pin(futures_util::stream::iter([Ok(b)]))
}

/// Puts part `n` and returns its listing entry (quoted hex MD5 as ETag).
async fn put_part(
    up: &Uploads,
    rec: &mpgw::model::UploadRecord,
    n: u32,
    data: &[u8],
) -> ListedPart {
    let admitted = up.admit(Some(data.len() as u64)).unwrap();
    let checks = BodyChecks {
        length: Some(data.len() as u64),
        ..BodyChecks::default()
    };
    let part = up
        .put_part(
            rec,
            PartNumber::new(n).unwrap(),
            body(data),
            checks,
            admitted,
        )
        .await
        .unwrap();
    let etag: String = part.md5.iter().map(|b| format!("{b:02x}")).collect();
    ListedPart {
        number: PartNumber::new(n).unwrap(),
        etag: format!("\"{etag}\""),
        checksum: None,
    }
}

/// A repeated Complete with the same parts is answered as the first one was, and changes nothing.
async fn repeated_complete_is_replayed(store: Store) {
    let c = core(store, small_parts()).await;
    let rec =
        c.up.init(OWNER, B, "k", ObjectHeaders::default(), None)
            .await
            .unwrap();
    let (a, b) = (random_bytes(1000), random_bytes(2000));
    let listed = vec![
        put_part(&c.up, &rec, 1, &a).await,
        put_part(&c.up, &rec, 2, &b).await,
    ];
    let first =
        c.up.complete(
            &rec.id,
            B,
            "k",
            listed.clone(),
            &CompleteChecks::default(),
            &NO_CONDITION,
        )
        .await
        .unwrap();
    assert_eq!(format!("\"{}\"", first.etag), multipart_etag(&[&a, &b]));
    let obj = c.up.object(B, "k").await.unwrap();
    let again =
        c.up.complete(
            &rec.id,
            B,
            "k",
            listed,
            &CompleteChecks::default(),
            &NO_CONDITION,
        )
        .await
        .unwrap();
    assert_eq!(again, first, "replayed answer");
    assert_eq!(c.up.object(B, "k").await.unwrap(), obj, "object unchanged");
    // Parts are gone with the open upload: a new part is refused.
    assert!(matches!(
        c.up.open_upload(&rec.id, B, Some("k"), Caller::Anyone)
            .await,
        Err(Error::NoSuchUpload)
    ));
}
both!(repeated_complete, repeated_complete_is_replayed);

/// Complete and Abort at once: exactly one wins, and the state agrees with the winner.
async fn complete_abort_race(store: Store) {
    let c = core(store, small_parts()).await;
    for round in 0..10 {
        let key = format!("race-{round}");
        let rec =
            c.up.init(OWNER, B, &key, ObjectHeaders::default(), None)
                .await
                .unwrap();
        let data = random_bytes(50_000);
        let listed = vec![put_part(&c.up, &rec, 1, &data).await];
        let (up1, up2) = (c.up.clone(), c.up.clone());
        let (id1, rec2) = (rec.id.clone(), rec.clone());
        let k1 = key.clone();
        let done = tokio::spawn(async move {
            up1.complete(
                &id1,
                B,
                &k1,
                listed,
                &CompleteChecks::default(),
                &NO_CONDITION,
            )
            .await
        });
        let aborted = tokio::spawn(async move { up2.abort(&rec2).await });
        let (done, aborted) = (done.await.unwrap(), aborted.await.unwrap());
        let object = c.up.object(B, &key).await;
        match (&done, &aborted) {
            (Ok(_), Err(Error::NoSuchUpload)) => {
                assert!(object.is_ok(), "round {round}: completed but no object");
            }
            (Err(Error::NoSuchUpload), Ok(())) => {
                assert!(
                    matches!(object, Err(Error::NoSuchKey)),
                    "round {round}: aborted but object {object:?}"
                );
            }
            other => panic!("round {round}: complete/abort answered {other:?}"),
        }
        assert!(matches!(
            c.up.open_upload(&rec.id, B, Some(&key), Caller::Anyone)
                .await,
            Err(Error::NoSuchUpload)
        ));
    }
}
both!(complete_races_abort, complete_abort_race);

/// An owner holds at most `max_uploads_per_key` open uploads; Complete and Abort give a slot
/// back, other owners are not affected.
async fn per_owner_reservations(store: Store) {
    let c = core(
        store,
        Limits {
            max_uploads_per_key: 2,
            ..small_parts()
        },
    )
    .await;
    let init = |owner: &'static str, key: &'static str| {
        let up = c.up.clone();
        async move { up.init(owner, B, key, ObjectHeaders::default(), None).await }
    };
    let one = init(OWNER, "1").await.unwrap();
    let two = init(OWNER, "2").await.unwrap();
    assert!(matches!(
        init(OWNER, "3").await,
        Err(Error::TooManyUploads(2))
    ));
    init("owner-b", "3")
        .await
        .expect("another owner has its own slots");
    c.up.abort(&one).await.unwrap();
    let three = init(OWNER, "3").await.expect("slot given back by Abort");
    assert!(matches!(
        init(OWNER, "4").await,
        Err(Error::TooManyUploads(2))
    ));
    let listed = vec![put_part(&c.up, &two, 1, b"x").await];
    c.up.complete(
        &two.id,
        B,
        "2",
        listed,
        &CompleteChecks::default(),
        &NO_CONDITION,
    )
    .await
    .unwrap();
    init(OWNER, "4").await.expect("slot given back by Complete");
    assert!(matches!(
        init(OWNER, "5").await,
        Err(Error::TooManyUploads(2))
    ));
    drop(three);
}
both!(reservations, per_owner_reservations);

/// The orphan sweep removes, once past the grace period, a blob directory no upload or object
/// owns, temp files, and files of an open upload that no part record names; the parts and the
/// objects stay, and the upload still completes into the right ETag. Within the grace period it
/// removes nothing.
async fn orphan_sweep(store: Store) {
    let c = core(
        store,
        Limits {
            sweep_grace: std::time::Duration::ZERO,
            ..small_parts()
        },
    )
    .await;
    let data = c.dir.path().join("data");
    let obj =
        c.up.init(OWNER, B, "obj", ObjectHeaders::default(), None)
            .await
            .unwrap();
    let o1 = random_bytes(3000);
    let listed = vec![put_part(&c.up, &obj, 1, &o1).await];
    c.up.complete(
        &obj.id,
        B,
        "obj",
        listed,
        &CompleteChecks::default(),
        &NO_CONDITION,
    )
    .await
    .unwrap();
    let open =
        c.up.init(OWNER, B, "open", ObjectHeaders::default(), None)
            .await
            .unwrap();
    let p1 = random_bytes(2000);
    let listed = vec![put_part(&c.up, &open, 1, &p1).await];
    let parts = blob_files(&data, open.id.as_str());
    assert_eq!(parts.len(), 1, "{parts:?}");
    let object_files = blob_files(&data, obj.id.as_str());
    assert!(!object_files.is_empty());
    // What a crash leaves: a stray part attempt and a temp file in the open upload's
    // directory, and a directory nothing owns.
    let open_dir = blob_dir(&data, open.id.as_str());
    std::fs::write(open_dir.join("1.99"), b"stray").unwrap();
    std::fs::write(open_dir.join(".tmp-crashed"), b"temp").unwrap();
    let orphan = "0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(blob_dir(&data, orphan)).unwrap();
    std::fs::write(blob_dir(&data, orphan).join("1.0"), b"orphan").unwrap();

    // Within the default grace period (15 min) nothing is touched.
    let patient = Uploads::new(
        c.meta.clone(),
        c.disk.clone(),
        Limits {
            min_part_size: 1,
            ..Limits::default()
        },
    );
    let report = patient.sweep().await.unwrap();
    assert_eq!((report.blobs, report.files), (0, 0), "{report:?}");
    assert_eq!(blob_files(&data, orphan), vec!["1.0"]);

    let report = c.up.sweep().await.unwrap();
    assert_eq!((report.blobs, report.files), (1, 2), "{report:?}");
    assert!(!blob_dir(&data, orphan).exists(), "orphan directory kept");
    assert_eq!(
        blob_files(&data, open.id.as_str()),
        parts,
        "open upload's files"
    );
    assert_eq!(
        blob_files(&data, obj.id.as_str()),
        object_files,
        "object's files"
    );
    let done =
        c.up.complete(
            &open.id,
            B,
            "open",
            listed,
            &CompleteChecks::default(),
            &NO_CONDITION,
        )
        .await
        .unwrap();
    assert_eq!(format!("\"{}\"", done.etag), multipart_etag(&[&p1]));
    assert_eq!(c.up.object(B, "obj").await.unwrap().size, o1.len() as u64);
}
both!(sweep, orphan_sweep);

/// A gateway that dies between sealing a bucket and deleting it: its uploads cannot complete
/// (nothing is published into a sealed bucket), so recovery finishes the deletion (at start-up
/// alone on the data dir at once, with live peers only once the seal is stale) and the periodic
/// sweep does the same for stale seals.
async fn interrupted_bucket_deletion(store: Store) {
    let c = core(store, small_parts()).await;
    let fresh = || Uploads::new(c.meta.clone(), c.disk.clone(), small_parts());
    let mut uploads = Vec::new();
    for (b, at) in [("dead", 1), ("young", now())] {
        c.up.create_bucket(OWNER, b).await.unwrap();
        let rec =
            c.up.init(OWNER, b, "k", ObjectHeaders::default(), None)
                .await
                .unwrap();
        put_part(&c.up, &rec, 1, &random_bytes(100)).await;
        // The crash: sealed, never deleted.
        assert_eq!(c.meta.seal_bucket(b, at).await.unwrap(), SealBucket::Sealed);
        uploads.push(rec);
    }
    // With live peers, only the stale seal is a dead gateway's.
    assert_eq!(fresh().recover(false).await.unwrap(), 1);
    assert!(matches!(
        c.up.bucket("dead").await,
        Err(Error::NoSuchBucket)
    ));
    assert!(c.up.bucket("young").await.is_ok());
    let files = |rec: &mpgw::model::UploadRecord| {
        std::fs::read_dir(c.disk.blob_dir(&rec.id)).map_or(0, |d| d.count())
    };
    assert_eq!(
        files(&uploads[0]),
        0,
        "the dead deletion's part files are gone"
    );
    assert_eq!(files(&uploads[1]), 1);
    // Alone on the data dir, every seal is a dead gateway's.
    assert_eq!(fresh().recover(true).await.unwrap(), 1);
    assert!(matches!(
        c.up.bucket("young").await,
        Err(Error::NoSuchBucket)
    ));
    for rec in &uploads {
        assert!(matches!(
            c.up.open_upload(&rec.id, &rec.bucket, None, Caller::Anyone)
                .await,
            Err(Error::NoSuchUpload | Error::NoSuchBucket)
        ));
    }
    assert_eq!(c.meta.sealed_buckets().await.unwrap(), []);
    // The sweep finishes stale seals too.
    c.up.create_bucket(OWNER, "swept").await.unwrap();
    c.meta.seal_bucket("swept", 1).await.unwrap();
    assert_eq!(fresh().sweep().await.unwrap().buckets_deleted, 1);
    assert!(matches!(
        c.up.bucket("swept").await,
        Err(Error::NoSuchBucket)
    ));
}
both!(interrupted_deletion, interrupted_bucket_deletion);

fn now() -> i64 {
    mpgw::model::now_millis()
}

// ---------------- model-based: random sequences against a BTreeMap ----------------

#[derive(Clone, Debug)]
enum Op {
    /// Starts an upload of key `k0`..`k2`.
    Init(u8),
    /// Puts part `n` (1..=3) of the `i`-th upload started so far, `len` bytes.
    Put(usize, u8, u16),
    /// Completes the `i`-th upload with every part it has, in order.
    Complete(usize),
    Abort(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8).prop_map(Op::Init),
        (0..6usize, 1..=3u8, 1..2000u16).prop_map(|(i, n, len)| Op::Put(i, n, len)),
        (0..6usize).prop_map(Op::Complete),
        (0..6usize).prop_map(Op::Abort),
    ]
}

/// What the core must agree with: open uploads with their parts' bytes, and per key the ETag
/// of the object last completed.
#[derive(Default)]
struct Model {
    open: BTreeMap<usize, BTreeMap<u8, Vec<u8>>>,
    objects: BTreeMap<String, String>,
}

async fn run_model(store: Store, ops: Vec<Op>) {
    let c = core(store, small_parts()).await;
    let mut model = Model::default();
    let mut started: Vec<mpgw::model::UploadRecord> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Init(k) => {
                let key = format!("k{k}");
                let rec =
                    c.up.init(OWNER, B, &key, ObjectHeaders::default(), None)
                        .await
                        .unwrap();
                model.open.insert(started.len(), BTreeMap::new());
                started.push(rec);
            }
            Op::Put(i, n, len) => {
                let Some(rec) = started.get(i) else { continue };
                let data = random_bytes(len.into());
                if let Some(parts) = model.open.get_mut(&i) {
                    put_part(&c.up, rec, n.into(), &data).await;
                    parts.insert(n, data);
                } else {
                    let r =
                        c.up.put_part(
                            rec,
                            PartNumber::new(n.into()).unwrap(),
                            body(&data),
                            BodyChecks::default(),
                            c.up.admit(Some(data.len() as u64)).unwrap(),
                        )
                        .await;
                    // The record handed in is stale (still Open): the core must look it up.
                    assert!(
                        r.is_err(),
                        "step {step}: part {n} accepted into closed upload {i}"
                    );
                }
            }
            Op::Complete(i) => {
                let Some(rec) = started.get(i) else { continue };
                let parts = model.open.get(&i).cloned();
                let listed: Vec<ListedPart> = match &parts {
                    Some(p) => p
                        .iter()
                        .map(|(n, d)| ListedPart {
                            number: PartNumber::new((*n).into()).unwrap(),
                            etag: md5_hex(d),
                            checksum: None,
                        })
                        .collect(),
                    None => Vec::new(),
                };
                let r =
                    c.up.complete(
                        &rec.id,
                        B,
                        &rec.key,
                        listed,
                        &CompleteChecks::default(),
                        &NO_CONDITION,
                    )
                    .await;
                match parts {
                    Some(p) if !p.is_empty() => {
                        let done = r.unwrap_or_else(|e| panic!("step {step}: complete {i}: {e:?}"));
                        let want: Vec<&[u8]> = p.values().map(Vec::as_slice).collect();
                        assert_eq!(format!("\"{}\"", done.etag), multipart_etag(&want));
                        model.open.remove(&i);
                        model.objects.insert(rec.key.clone(), done.etag);
                    }
                    Some(_) => assert!(r.is_err(), "step {step}: complete {i} without parts"),
                    None => {}
                }
            }
            Op::Abort(i) => {
                let Some(rec) = started.get(i) else { continue };
                let r = c.up.abort(rec).await;
                if model.open.remove(&i).is_some() {
                    r.unwrap_or_else(|e| panic!("step {step}: abort {i}: {e:?}"));
                } else {
                    assert!(
                        r.is_err(),
                        "step {step}: abort of closed upload {i} succeeded"
                    );
                }
            }
        }
        // After every step: the open uploads and the objects are what the model says.
        for (i, rec) in started.iter().enumerate() {
            let got =
                c.up.open_upload(&rec.id, B, Some(&rec.key), Caller::Anyone)
                    .await;
            assert_eq!(
                got.is_ok(),
                model.open.contains_key(&i),
                "step {step}: upload {i} open? {got:?}"
            );
        }
        for k in 0..3 {
            let key = format!("k{k}");
            let got = c.up.object(B, &key).await.ok().map(|o| o.etag);
            assert_eq!(
                got.as_ref(),
                model.objects.get(&key),
                "step {step}: object {key}"
            );
        }
    }
}

fn model_check(store: Store, ops: Vec<Op>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run_model(store, ops));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random init/put/complete/abort sequences: the core agrees with a BTreeMap model.
    #[test]
    fn model_embedded(ops in proptest::collection::vec(op(), 1..25)) {
        model_check(Store::Embedded, ops);
    }

    #[test]
    fn model_redis(ops in proptest::collection::vec(op(), 1..25)) {
        model_check(Store::Redis, ops);
    }
}
