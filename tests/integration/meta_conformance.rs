//! One conformance suite for every `MetaStore`: each case is an async fn over `Arc<dyn MetaStore>`,
//! instantiated by `conformance!` as `redis::<case>` (real Redis from `REDIS_URL`, default
//! `redis://127.0.0.1:6379`, under a unique key prefix removed afterwards) and
//! `embedded::<case>` (redb in a temp dir). A missing Redis fails the Redis tests loudly.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpgw::model::checksum::{ChecksumAlgorithm, ChecksumType};
use mpgw::model::event::{EventName, EventRecord, Notice, Settle};
use mpgw::model::tags::TagSet;
use mpgw::model::{
    BucketRecord, ChallengeRecord, Checksum, CompletedResult, CorsRule, FileRecord, Millis,
    ObjectHeaders, ObjectPart, ObjectRecord, PartNumber, PartRecord, UploadId, UploadRecord,
    UploadState, random_hex,
};
use mpgw::store::meta_embedded::EmbeddedMetaStore;
use mpgw::store::meta_redis::RedisMetaStore;
use mpgw::store::{
    AbortUpload, AppendPart, BeginComplete, DeleteBucket, MetaStore, PutPart, SealBucket,
    StoreError, UploadCursor,
};

macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = super::redis_store().await;
                    super::$case(store.meta.clone()).await;
                }
            )+
        }

        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = super::embedded_store();
                    super::$case(store.meta.clone()).await;
                }
            )+
        }

        /// Runs every case in turn, each on a fresh store from `open` (how the Redis Cluster
        /// test, which starts its cluster once, runs the suite).
        pub(crate) async fn all_cases<F, Fut>(open: F)
        where
            F: Fn() -> Fut,
            Fut: std::future::Future<Output = Arc<dyn MetaStore>>,
        {
            $(
                eprintln!("conformance case {}", stringify!($case));
                $case(open().await).await;
            )+
        }
    };
}

conformance!(
    buckets,
    sealed_bucket,
    objects,
    object_update,
    object_listing_order,
    upload_lifecycle,
    part_paging,
    abort,
    upload_listing,
    all_uploads_and_purge,
    object_blobs,
    concurrent_create_bucket,
    concurrent_put_part_same_number,
    append_part,
    concurrent_append_part,
    concurrent_begin_complete,
    put_part_racing_complete,
    owner_reservations,
    concurrent_reservations_respect_limit,
    file_table,
    challenges,
    concurrent_take_challenge,
    shared_secret,
    events_recorded_with_writes,
    event_claims,
    event_settle_and_dead_letters,
    event_queues,
    concurrent_event_claims,
);

// ---- backends ----

struct Store {
    meta: Arc<dyn MetaStore>,
    cleanup: Cleanup,
}

enum Cleanup {
    Redis(RedisKeys),
    Embedded { _dir: tempfile::TempDir },
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis_store() -> Store {
    let keys = RedisKeys {
        url: redis_url(),
        prefix: format!("mpgwtest:{}", random_hex(8)),
    };
    let meta = RedisMetaStore::connect(&keys.url, &keys.prefix, None)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis at {} is unreachable ({e}): start one or point REDIS_URL at one",
                keys.url
            )
        });
    Store {
        meta: Arc::new(meta),
        cleanup: Cleanup::Redis(keys),
    }
}

fn embedded_store() -> Store {
    let dir = tempfile::tempdir().expect("temp dir");
    let meta =
        EmbeddedMetaStore::open(&dir.path().join("state.redb")).expect("open embedded store");
    Store {
        meta: Arc::new(meta),
        cleanup: Cleanup::Embedded { _dir: dir },
    }
}

/// Deletes every key under a test's prefix when dropped, also when the test panics. The Redis
/// server is shared: never flush it.
struct RedisKeys {
    url: String,
    prefix: String,
}

impl RedisKeys {
    fn delete_all(&self) -> ::redis::RedisResult<()> {
        use ::redis::Commands as _;
        let mut con = ::redis::Client::open(self.url.as_str())?.get_connection()?;
        let keys = con
            .scan_match::<_, String>(format!("{}:*", self.prefix))?
            .collect::<::redis::RedisResult<Vec<_>>>()?;
        for chunk in keys.chunks(500) {
            con.del::<_, ()>(chunk)?;
        }
        Ok(())
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        if let Err(e) = self.delete_all() {
            eprintln!("cleanup of {}:* failed: {e}", self.prefix);
        }
    }
}

// ---- records ----

fn pn(n: u32) -> PartNumber {
    PartNumber::new(n).expect("valid part number")
}

fn bucket(name: &str, owner: &str) -> BucketRecord {
    BucketRecord {
        name: name.into(),
        created: 1_700_000_000_000,
        owner: owner.into(),
        cors: None,
        lifecycle: None,
        notification: None,
    }
}

fn object(etag: &str) -> ObjectRecord {
    ObjectRecord {
        blob: UploadId::generate(),
        parts: vec![ObjectPart {
            number: 1,
            md5: "0".repeat(32),
            file: "1.abc".into(),
            size: 5,
            checksum: None,
        }],
        size: 5,
        etag: etag.into(),
        modified: 1_700_000_000_000,
        owner: "alice".into(),
        headers: ObjectHeaders::default(),
        checksum: None,
        checksum_type: None,
        multipart: false,
    }
}

/// An Open upload whose headers exercise the JSON round trip (raw non-UTF-8 metadata bytes).
/// A sealed bucket takes no object and no upload until it is deleted or unsealed; a bucket
/// with an object is not sealed.
async fn sealed_bucket(s: Arc<dyn MetaStore>) {
    assert_eq!(
        s.seal_bucket("nope", 1).await.unwrap(),
        SealBucket::NotFound
    );
    s.create_bucket(&bucket("full", "alice")).await.unwrap();
    s.put_object("full", "k", &object("a"), None).await.unwrap();
    assert_eq!(
        s.seal_bucket("full", 1).await.unwrap(),
        SealBucket::NotEmpty
    );
    s.put_object("full", "k2", &object("b"), None)
        .await
        .unwrap();
    s.create_upload(&upload("full", "u", 1)).await.unwrap();

    s.create_bucket(&bucket("b", "alice")).await.unwrap();
    let open = upload("b", "u", 1);
    s.create_upload(&open).await.unwrap();
    assert_eq!(s.sealed_buckets().await.unwrap(), []);
    assert_eq!(s.seal_bucket("b", 7).await.unwrap(), SealBucket::Sealed);
    assert_eq!(s.sealed_buckets().await.unwrap(), [("b".to_owned(), 7)]);
    assert!(matches!(
        s.put_object("b", "k", &object("c"), None).await,
        Err(StoreError::BucketGone)
    ));
    assert_eq!(s.get_object("b", "k").await.unwrap(), None);
    let late = upload("b", "late", 2);
    assert!(matches!(
        s.create_upload(&late).await,
        Err(StoreError::BucketGone)
    ));
    assert_eq!(
        s.get_upload(&late.id).await.unwrap(),
        None,
        "nothing stored"
    );
    let listed = s.list_uploads("b", "", None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|u| &u.id).collect::<Vec<_>>(), [&open.id]);
    // An upload open before the seal still takes parts until it is aborted.
    assert!(matches!(
        s.put_part(&open.id, pn(1), &part("1")).await.unwrap(),
        PutPart::Recorded(None)
    ));
    assert_eq!(s.delete_bucket("b").await.unwrap(), DeleteBucket::NotEmpty);
    assert!(matches!(
        s.abort_upload(&open.id).await.unwrap(),
        AbortUpload::Aborted(..)
    ));
    assert_eq!(s.delete_bucket("b").await.unwrap(), DeleteBucket::Deleted);
    assert_eq!(
        s.sealed_buckets().await.unwrap(),
        [],
        "the seal goes with the bucket"
    );
    // Re-created, the bucket is not sealed any more.
    s.create_bucket(&bucket("b", "alice")).await.unwrap();
    s.put_object("b", "k", &object("d"), None).await.unwrap();
    s.create_upload(&upload("b", "u2", 3)).await.unwrap();

    // Unsealed, it takes writes again.
    s.create_bucket(&bucket("c", "alice")).await.unwrap();
    assert_eq!(s.seal_bucket("c", 9).await.unwrap(), SealBucket::Sealed);
    s.unseal_bucket("c").await.unwrap();
    assert_eq!(s.sealed_buckets().await.unwrap(), []);
    s.put_object("c", "k", &object("e"), None).await.unwrap();
    s.unseal_bucket("c").await.unwrap();
}

fn upload(bucket: &str, key: &str, created: Millis) -> UploadRecord {
    let mut headers = ObjectHeaders {
        content_type: Some("text/plain".into()),
        ..ObjectHeaders::default()
    };
    headers.user.insert("raw".into(), vec![0xff, 0x00, b'x']);
    UploadRecord {
        id: UploadId::generate(),
        bucket: bucket.into(),
        key: key.into(),
        created,
        owner: "alice".into(),
        headers,
        checksum_algorithm: Some(ChecksumAlgorithm::Crc64Nvme),
        checksum_type: Some(ChecksumType::FullObject),
        state: UploadState::Open,
        completing_since: None,
        completed: None,
        append: None,
    }
}

fn part(file: &str) -> PartRecord {
    PartRecord {
        size: u64::MAX - 1, // beyond f64 precision: catches a store that round-trips through doubles
        md5: [7; 16],
        file: file.into(),
        modified: 1_700_000_000_123,
        checksum: Some(Checksum {
            algorithm: ChecksumAlgorithm::Sha256,
            value: vec![0xab; 32],
        }),
        length: None,
    }
}

fn result(at: Millis) -> CompletedResult {
    CompletedResult {
        etag: "0123456789abcdef0123456789abcdef-2".into(),
        parts_digest: "digest".into(),
        checksum: Some(Checksum {
            algorithm: ChecksumAlgorithm::Crc32,
            value: vec![1, 2, 3, 4],
        }),
        checksum_type: Some(ChecksumType::Composite),
        at,
    }
}

fn numbers(parts: &[(PartNumber, PartRecord)]) -> Vec<u16> {
    parts.iter().map(|(n, _)| n.get()).collect()
}

async fn started(
    s: &dyn MetaStore,
    id: &UploadId,
    now: Millis,
) -> (UploadRecord, Vec<(PartNumber, PartRecord)>) {
    match s.begin_complete(id, now, 0).await.unwrap() {
        BeginComplete::Started(rec, parts) => (rec, parts),
        other => panic!("expected Started, got {other:?}"),
    }
}

// ---- cases ----

/// Paging through more parts than one page, with gaps in the numbering and across the Redis
/// script's 1000-number batches: every part once, in order, full pages but the last.
async fn part_paging(s: Arc<dyn MetaStore>) {
    let up = upload("b", "many", 1);
    s.create_upload(&up).await.unwrap();
    let want: Vec<u16> = (1..=1300u16)
        .filter(|n| n % 7 != 0)
        .chain([9_999])
        .collect();
    for chunk in want.chunks(64) {
        futures_util::future::try_join_all(chunk.iter().map(|&n| {
            let (s, id) = (s.clone(), up.id.clone());
            async move {
                s.put_part(&id, pn(n.into()), &part(&format!("{n}.a")))
                    .await
            }
        }))
        .await
        .unwrap();
    }
    let mut got = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_parts(&up.id, after, 400).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() == 400 || got.len() + page.len() == want.len());
        assert!(page.iter().all(|(n, r)| *r == part(&format!("{n}.a"))));
        after = page.last().map(|(n, _)| *n);
        got.extend(numbers(&page));
    }
    assert_eq!(got, want);
    let first = s.list_parts(&up.id, None, 1000).await.unwrap();
    assert_eq!(numbers(&first), want[..1000]);
}

async fn buckets(s: Arc<dyn MetaStore>) {
    let b1 = bucket("b1", "alice");
    assert_eq!(s.create_bucket(&b1).await.unwrap(), None);
    // A second create returns the existing record untouched.
    assert_eq!(
        s.create_bucket(&bucket("b1", "mallory")).await.unwrap(),
        Some(b1.clone())
    );
    assert_eq!(s.get_bucket("b1").await.unwrap(), Some(b1.clone()));
    assert_eq!(s.get_bucket("nope").await.unwrap(), None);

    // Settings replace the record of an existing bucket only.
    let mut with_cors = b1.clone();
    with_cors.cors = Some(vec![CorsRule {
        allowed_origins: vec!["*".into()],
        allowed_methods: vec!["PUT".into()],
        ..CorsRule::default()
    }]);
    assert!(s.update_bucket(&with_cors).await.unwrap());
    assert_eq!(s.get_bucket("b1").await.unwrap(), Some(with_cors));
    assert!(s.update_bucket(&b1).await.unwrap());
    assert!(!s.update_bucket(&bucket("nope", "alice")).await.unwrap());
    assert_eq!(s.get_bucket("nope").await.unwrap(), None);

    for name in ["b2", "b0", "a-b.c"] {
        s.create_bucket(&bucket(name, "alice")).await.unwrap();
    }
    let names: Vec<String> = s
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["a-b.c", "b0", "b1", "b2"]);
    assert_eq!(
        s.delete_bucket("nope").await.unwrap(),
        DeleteBucket::NotFound
    );

    // An object keeps the bucket.
    s.put_object("b1", "k", &object("e"), None).await.unwrap();
    assert_eq!(s.delete_bucket("b1").await.unwrap(), DeleteBucket::NotEmpty);
    s.delete_object("b1", "k", None).await.unwrap();

    // So does an Open upload, and a Completing one.
    let up = upload("b1", "k", 1);
    s.create_upload(&up).await.unwrap();
    assert_eq!(s.delete_bucket("b1").await.unwrap(), DeleteBucket::NotEmpty);
    started(&*s, &up.id, 10).await;
    assert_eq!(s.delete_bucket("b1").await.unwrap(), DeleteBucket::NotEmpty);
    s.reopen(&up.id).await.unwrap();
    assert!(matches!(
        s.abort_upload(&up.id).await.unwrap(),
        AbortUpload::Aborted(..)
    ));
    assert_eq!(s.delete_bucket("b1").await.unwrap(), DeleteBucket::Deleted);
    assert_eq!(s.get_bucket("b1").await.unwrap(), None);
    assert_eq!(s.delete_bucket("b1").await.unwrap(), DeleteBucket::NotFound);
    let names: Vec<String> = s
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["a-b.c", "b0", "b2"]);

    // A Completed upload does not keep its bucket (its object does, until deleted).
    let up = upload("b2", "k", 1);
    s.create_upload(&up).await.unwrap();
    started(&*s, &up.id, 10).await;
    s.finish_complete(&up.id, &result(20)).await.unwrap();
    assert_eq!(s.delete_bucket("b2").await.unwrap(), DeleteBucket::Deleted);

    // The name is free again, with a fresh record.
    let again = bucket("b1", "bob");
    assert_eq!(s.create_bucket(&again).await.unwrap(), None);
    assert_eq!(s.get_bucket("b1").await.unwrap(), Some(again));
    assert!(s.list_objects("b1", "", None, 10).await.unwrap().is_empty());
    assert!(s.list_uploads("b1", "", None, 10).await.unwrap().is_empty());
}

async fn objects(s: Arc<dyn MetaStore>) {
    s.create_bucket(&bucket("b", "alice")).await.unwrap();
    let (v1, v2) = (object("v1"), object("v2"));
    assert_eq!(s.get_object("b", "k").await.unwrap(), None);
    assert_eq!(s.put_object("b", "k", &v1, None).await.unwrap(), None);
    assert_eq!(s.get_object("b", "k").await.unwrap(), Some(v1.clone()));
    assert_eq!(s.put_object("b", "k", &v2, None).await.unwrap(), Some(v1));
    assert_eq!(s.get_object("b", "k").await.unwrap(), Some(v2.clone()));
    // Same key in another bucket is another object.
    assert_eq!(s.get_object("other", "k").await.unwrap(), None);
    assert_eq!(s.delete_object("b", "k", None).await.unwrap(), Some(v2));
    assert_eq!(s.delete_object("b", "k", None).await.unwrap(), None);
    assert_eq!(s.get_object("b", "k").await.unwrap(), None);
    assert!(s.list_objects("b", "", None, 10).await.unwrap().is_empty());
}

/// `update_object` changes the record of the object it names (its blob) and nothing else: not
/// a replacement, not a deleted key; tags round-trip, and a record without them reads as none.
async fn object_update(s: Arc<dyn MetaStore>) {
    s.create_bucket(&bucket("b", "alice")).await.unwrap();
    let v1 = object("v1");
    let mut tagged = v1.clone();
    tagged.headers.tags =
        TagSet::new(vec![("a".into(), "1".into()), ("ü".into(), String::new())]).unwrap();
    assert!(!s.update_object("b", "k", &v1.blob, &tagged).await.unwrap());
    assert_eq!(s.get_object("b", "k").await.unwrap(), None);
    s.put_object("b", "k", &v1, None).await.unwrap();
    assert!(
        s.get_object("b", "k")
            .await
            .unwrap()
            .unwrap()
            .headers
            .tags
            .is_empty()
    );
    assert!(s.update_object("b", "k", &v1.blob, &tagged).await.unwrap());
    assert_eq!(s.get_object("b", "k").await.unwrap(), Some(tagged.clone()));
    let listed = s.list_objects("b", "", None, 10).await.unwrap();
    assert_eq!(listed, vec![("k".to_owned(), tagged.clone())]);
    // Replaced: an update for the old object changes nothing.
    let v2 = object("v2");
    s.put_object("b", "k", &v2, None).await.unwrap();
    assert!(!s.update_object("b", "k", &v1.blob, &tagged).await.unwrap());
    assert_eq!(s.get_object("b", "k").await.unwrap(), Some(v2.clone()));
    // Deleted: nothing comes back.
    s.delete_object("b", "k", None).await.unwrap();
    let mut v2_tagged = v2.clone();
    v2_tagged.headers.tags = tagged.headers.tags.clone();
    assert!(
        !s.update_object("b", "k", &v2.blob, &v2_tagged)
            .await
            .unwrap()
    );
    assert_eq!(s.get_object("b", "k").await.unwrap(), None);
    assert!(s.list_objects("b", "", None, 10).await.unwrap().is_empty());
}

/// Keys that trip naive lex bounds: Redis range markers, 0xff-heavy UTF-8, separators.
const TRICKY_KEYS: &[&str] = &[
    "a",
    "a/b",
    "a/b/c",
    "a+b",
    "a b",
    "a-b",
    "a[",
    "a(",
    "a\u{7f}",
    "aé",
    "ab",
    "a\u{10FFFF}",
    "a\u{10FFFF}\u{10FFFF}",
    "a\u{10FFFF}z",
    "ä",
    "äb",
    "b",
    "-",
    "+",
    "[",
    "(",
    "[x",
    "(x",
    "\u{10FFFF}",
    "\u{FFFD}",
    "0",
    "a\u{1}",
];

async fn object_listing_order(s: Arc<dyn MetaStore>) {
    s.create_bucket(&bucket("b", "alice")).await.unwrap();
    for key in TRICKY_KEYS {
        s.put_object("b", key, &object(key), None).await.unwrap();
    }
    s.put_object("neighbour", "a/zzz", &object("x"), None)
        .await
        .unwrap();
    let model: BTreeSet<&str> = TRICKY_KEYS.iter().copied().collect(); // str order is byte order

    let prefixes = [
        "",
        "a",
        "a/",
        "a\u{10FFFF}",
        "ä",
        "-",
        "+",
        "[",
        "(",
        "z",
        "\u{10FFFF}",
        "a\u{1}",
    ];
    let afters = [
        None,
        Some(""),
        Some("a"),
        Some("a+b"),
        Some("a\u{10FFFF}"),
        Some("a/b/c/d"),
        Some("b"),
        Some("\u{10FFFF}\u{10FFFF}"),
        Some("["),
    ];
    for prefix in prefixes {
        for after in afters {
            for limit in [0, 1, 2, 100] {
                let want: Vec<&str> = model
                    .iter()
                    .copied()
                    .filter(|k| k.starts_with(prefix) && after.is_none_or(|a| *k > a))
                    .take(limit)
                    .collect();
                let got = s.list_objects("b", prefix, after, limit).await.unwrap();
                let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(
                    keys, want,
                    "prefix {prefix:?} after {after:?} limit {limit}"
                );
                for (k, rec) in &got {
                    assert_eq!(&rec.etag, k);
                }
            }
        }
    }

    // Paging with the last key as `after` walks the whole listing.
    let mut seen = Vec::new();
    loop {
        let page = s
            .list_objects("b", "", seen.last().map(String::as_str), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page.into_iter().map(|(k, _)| k));
    }
    assert_eq!(
        seen,
        model.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}

async fn upload_lifecycle(s: Arc<dyn MetaStore>) {
    let up = upload("b", "dir/key", 1_000);
    s.create_upload(&up).await.unwrap();
    assert_eq!(s.get_upload(&up.id).await.unwrap(), Some(up.clone()));

    // put_part: replace returns the old record. Numbers chosen so string order would be wrong.
    assert_eq!(
        s.put_part(&up.id, pn(1), &part("1.a")).await.unwrap(),
        PutPart::Recorded(None)
    );
    assert_eq!(
        s.put_part(&up.id, pn(1), &part("1.b")).await.unwrap(),
        PutPart::Recorded(Some(part("1.a")))
    );
    for n in [10_000, 100, 10, 3, 2] {
        assert_eq!(
            s.put_part(&up.id, pn(n), &part(&format!("{n}.a")))
                .await
                .unwrap(),
            PutPart::Recorded(None)
        );
    }
    let all = s.list_parts(&up.id, None, 1000).await.unwrap();
    assert_eq!(numbers(&all), [1, 2, 3, 10, 100, 10_000]);
    assert_eq!(all[0].1, part("1.b"));
    assert_eq!(
        numbers(&s.list_parts(&up.id, None, 2).await.unwrap()),
        [1, 2]
    );
    assert_eq!(
        numbers(&s.list_parts(&up.id, Some(pn(2)), 2).await.unwrap()),
        [3, 10]
    );
    assert_eq!(
        numbers(&s.list_parts(&up.id, Some(pn(4)), 2).await.unwrap()),
        [10, 100]
    );
    assert_eq!(
        numbers(&s.list_parts(&up.id, Some(pn(100)), 10).await.unwrap()),
        [10_000]
    );
    assert!(
        s.list_parts(&up.id, Some(pn(10_000)), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.list_parts(&up.id, None, 0).await.unwrap().is_empty());

    // begin_complete: Open → Completing, with the whole table.
    let (rec, parts) = started(&*s, &up.id, 5_000).await;
    assert_eq!(rec.state, UploadState::Completing);
    assert_eq!(rec.completing_since, Some(5_000));
    assert_eq!(
        UploadRecord {
            state: UploadState::Open,
            completing_since: None,
            ..rec.clone()
        },
        up
    );
    assert_eq!(parts, all);
    assert_eq!(s.get_upload(&up.id).await.unwrap(), Some(rec.clone()));

    // A second Complete while the first is fresh: Busy. Once stale: taken over.
    assert_eq!(
        s.begin_complete(&up.id, 6_000, 4_000).await.unwrap(),
        BeginComplete::Busy(rec.clone())
    );
    assert_eq!(
        s.begin_complete(&up.id, 6_000, 5_000).await.unwrap(),
        BeginComplete::Busy(rec)
    );
    let BeginComplete::Started(rec, parts) = s.begin_complete(&up.id, 7_000, 5_001).await.unwrap()
    else {
        panic!("stale Completing upload not taken over");
    };
    assert_eq!(rec.completing_since, Some(7_000));
    assert_eq!(parts, all);

    // Parts cannot change while Completing; reopen makes them writable again.
    assert_eq!(
        s.put_part(&up.id, pn(4), &part("4.a")).await.unwrap(),
        PutPart::NotOpen
    );
    s.reopen(&up.id).await.unwrap();
    assert_eq!(s.get_upload(&up.id).await.unwrap(), Some(up.clone()));
    s.reopen(&up.id).await.unwrap(); // no-op when Open
    assert_eq!(s.get_upload(&up.id).await.unwrap(), Some(up.clone()));
    assert_eq!(
        s.put_part(&up.id, pn(4), &part("4.a")).await.unwrap(),
        PutPart::Recorded(None)
    );

    let (_, parts) = started(&*s, &up.id, 8_000).await;
    assert_eq!(numbers(&parts), [1, 2, 3, 4, 10, 100, 10_000]);
    assert_eq!(
        s.put_part(&up.id, pn(5), &part("5.a")).await.unwrap(),
        PutPart::NotOpen
    );

    // finish: Completed with the result; the part table is gone; everything else refuses.
    s.finish_complete(&up.id, &result(9_000)).await.unwrap();
    let done = s
        .get_upload(&up.id)
        .await
        .unwrap()
        .expect("completed record kept for replay");
    assert_eq!(done.state, UploadState::Completed);
    assert_eq!(done.completed, Some(result(9_000)));
    assert_eq!(
        UploadRecord {
            state: UploadState::Open,
            completing_since: None,
            completed: None,
            ..done.clone()
        },
        up
    );
    assert_eq!(
        s.begin_complete(&up.id, 10_000, 0).await.unwrap(),
        BeginComplete::Completed(done.clone())
    );
    assert_eq!(
        s.put_part(&up.id, pn(6), &part("6.a")).await.unwrap(),
        PutPart::NotOpen
    );
    assert!(s.list_parts(&up.id, None, 1000).await.unwrap().is_empty());
    assert_eq!(s.abort_upload(&up.id).await.unwrap(), AbortUpload::NotFound);
    s.reopen(&up.id).await.unwrap();
    s.finish_complete(&up.id, &result(11_000)).await.unwrap();
    assert_eq!(
        s.get_upload(&up.id).await.unwrap(),
        Some(done),
        "Completed is final"
    );

    // Unknown ids.
    let ghost = UploadId::generate();
    assert_eq!(s.get_upload(&ghost).await.unwrap(), None);
    assert_eq!(
        s.put_part(&ghost, pn(1), &part("x")).await.unwrap(),
        PutPart::NotOpen
    );
    assert!(s.list_parts(&ghost, None, 10).await.unwrap().is_empty());
    assert_eq!(
        s.begin_complete(&ghost, 1, 0).await.unwrap(),
        BeginComplete::NotFound
    );
    assert_eq!(s.abort_upload(&ghost).await.unwrap(), AbortUpload::NotFound);
    s.reopen(&ghost).await.unwrap();
    s.finish_complete(&ghost, &result(1)).await.unwrap();
    assert_eq!(s.get_upload(&ghost).await.unwrap(), None);
}

async fn abort(s: Arc<dyn MetaStore>) {
    let up = upload("b", "k", 1);
    s.create_upload(&up).await.unwrap();
    s.put_part(&up.id, pn(2), &part("2.a")).await.unwrap();
    s.put_part(&up.id, pn(1), &part("1.a")).await.unwrap();

    // Not while Completing.
    started(&*s, &up.id, 10).await;
    assert_eq!(s.abort_upload(&up.id).await.unwrap(), AbortUpload::Busy);
    s.reopen(&up.id).await.unwrap();

    let want = vec![(pn(1), part("1.a")), (pn(2), part("2.a"))];
    assert_eq!(
        s.abort_upload(&up.id).await.unwrap(),
        AbortUpload::Aborted(up.clone(), want)
    );
    assert_eq!(s.get_upload(&up.id).await.unwrap(), None);
    assert!(s.list_parts(&up.id, None, 10).await.unwrap().is_empty());
    assert!(s.list_uploads("b", "", None, 10).await.unwrap().is_empty());
    assert_eq!(
        s.put_part(&up.id, pn(3), &part("3.a")).await.unwrap(),
        PutPart::NotOpen
    );
    assert_eq!(s.abort_upload(&up.id).await.unwrap(), AbortUpload::NotFound);
    assert_eq!(
        s.begin_complete(&up.id, 20, 0).await.unwrap(),
        BeginComplete::NotFound
    );
    assert!(s.all_uploads().await.unwrap().is_empty());
}

/// The contract's order: (key, created, id); a cursor without upload skips the whole key.
fn after_cursor(rec: &UploadRecord, cursor: Option<&UploadCursor>) -> bool {
    let Some(c) = cursor else { return true };
    match &c.upload {
        None => rec.key > c.key,
        Some((created, id)) => (&rec.key, rec.created, &rec.id) > (&c.key, *created, id),
    }
}

async fn upload_listing(s: Arc<dyn MetaStore>) {
    let specs = [
        ("a", 5),
        ("a", 3),
        ("a", 3),
        ("a", -1),
        ("a/b", 1),
        ("b", 2),
        ("ä", 1),
        ("a\u{10FFFF}", 9),
        ("a b", 4),
        ("a+", 4),
        ("(", 1),
        ("-", 1),
    ];
    let mut live = Vec::new();
    for (key, created) in specs {
        let up = upload("lb", key, created);
        s.create_upload(&up).await.unwrap();
        live.push(up);
    }
    // Same key elsewhere and finished uploads must not show.
    s.create_upload(&upload("other", "a", 1)).await.unwrap();
    let gone = upload("lb", "a", 4);
    s.create_upload(&gone).await.unwrap();
    started(&*s, &gone.id, 10).await;
    s.finish_complete(&gone.id, &result(20)).await.unwrap();
    let aborted = upload("lb", "a", 4);
    s.create_upload(&aborted).await.unwrap();
    s.abort_upload(&aborted.id).await.unwrap();
    // Completing uploads stay listed, with their current state.
    let (completing, _) = started(&*s, &live[0].id, 10).await;
    live[0] = completing;

    live.sort_by(|x, y| (&x.key, x.created, &x.id).cmp(&(&y.key, y.created, &y.id)));
    assert_eq!(s.list_uploads("lb", "", None, 1000).await.unwrap(), live);

    let a3 = live
        .iter()
        .find(|u| u.key == "a" && u.created == 3)
        .unwrap();
    let mut cursors = vec![
        None,
        Some(UploadCursor {
            key: "a".into(),
            upload: None,
        }),
        Some(UploadCursor {
            key: "a".into(),
            upload: Some((a3.created, a3.id.clone())),
        }),
        Some(UploadCursor {
            key: "a".into(),
            upload: Some((i64::MIN, UploadId::generate())),
        }),
        Some(UploadCursor {
            key: "a0".into(),
            upload: None,
        }),
        Some(UploadCursor {
            key: String::new(),
            upload: None,
        }),
        Some(UploadCursor {
            key: "zzz".into(),
            upload: None,
        }),
    ];
    cursors.extend(live.iter().map(|u| {
        Some(UploadCursor {
            key: u.key.clone(),
            upload: Some((u.created, u.id.clone())),
        })
    }));
    for prefix in ["", "a", "a/", "a\u{10FFFF}", "ä", "(", "-", "b", "c"] {
        for cursor in &cursors {
            for limit in [0, 1, 3, 1000] {
                let want: Vec<&UploadRecord> = live
                    .iter()
                    .filter(|u| u.key.starts_with(prefix) && after_cursor(u, cursor.as_ref()))
                    .take(limit)
                    .collect();
                let got = s
                    .list_uploads("lb", prefix, cursor.as_ref(), limit)
                    .await
                    .unwrap();
                assert_eq!(
                    got.iter().collect::<Vec<_>>(),
                    want,
                    "prefix {prefix:?} cursor {cursor:?} limit {limit}"
                );
            }
        }
    }

    // Paging by the last upload's position walks everything once.
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let page = s.list_uploads("lb", "", cursor.as_ref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(UploadCursor {
            key: last.key.clone(),
            upload: Some((last.created, last.id.clone())),
        });
        seen.extend(page);
    }
    assert_eq!(seen, live);
}

async fn all_uploads_and_purge(s: Arc<dyn MetaStore>) {
    let open = upload("b", "open", 1);
    let completing = upload("b", "completing", 2);
    let (old, new) = (upload("b", "old", 3), upload("c", "new", 4));
    for up in [&open, &completing, &old, &new] {
        s.create_upload(up).await.unwrap();
    }
    started(&*s, &completing.id, 10).await;
    for (up, at) in [(&old, 100), (&new, 300)] {
        started(&*s, &up.id, 10).await;
        s.finish_complete(&up.id, &result(at)).await.unwrap();
    }

    let mut all = s.all_uploads().await.unwrap();
    all.sort_by_key(|u| u.created);
    let mut want = Vec::new();
    for up in [&open, &completing, &old, &new] {
        want.push(s.get_upload(&up.id).await.unwrap().unwrap());
    }
    assert_eq!(all, want);
    let states: Vec<UploadState> = all.iter().map(|u| u.state).collect();
    assert_eq!(
        states,
        [
            UploadState::Open,
            UploadState::Completing,
            UploadState::Completed,
            UploadState::Completed
        ]
    );

    assert_eq!(s.purge_completed(100).await.unwrap(), 0, "strictly before");
    assert_eq!(s.purge_completed(200).await.unwrap(), 1);
    assert_eq!(s.get_upload(&old.id).await.unwrap(), None);
    assert!(s.get_upload(&new.id).await.unwrap().is_some());
    assert_eq!(s.purge_completed(200).await.unwrap(), 0);
    assert_eq!(s.purge_completed(i64::MAX).await.unwrap(), 1);
    let mut ids: Vec<UploadId> = s
        .all_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    ids.sort();
    let mut want = vec![open.id, completing.id];
    want.sort();
    assert_eq!(ids, want);
}

async fn object_blobs(s: Arc<dyn MetaStore>) {
    assert!(s.object_blobs().await.unwrap().is_empty());
    let (a, b, c, replaced, deleted) = (
        object("a"),
        object("b"),
        object("c"),
        object("r"),
        object("d"),
    );
    s.put_object("b1", "x", &replaced, None).await.unwrap();
    s.put_object("b1", "x", &a, None).await.unwrap();
    s.put_object("b1", "y", &b, None).await.unwrap();
    s.put_object("b2", "x", &c, None).await.unwrap();
    s.put_object("b2", "z", &deleted, None).await.unwrap();
    s.delete_object("b2", "z", None).await.unwrap();
    let got: BTreeSet<UploadId> = s.object_blobs().await.unwrap().into_iter().collect();
    assert_eq!(got, BTreeSet::from([a.blob, b.blob, c.blob]));
}

async fn owner_reservations(s: Arc<dyn MetaStore>) {
    let (a, b, c) = (
        UploadId::generate(),
        UploadId::generate(),
        UploadId::generate(),
    );
    assert!(s.reserve_upload("alice", &a, 10, 2).await.unwrap());
    // Counting an id already counted succeeds and changes nothing, even at the limit.
    assert!(s.reserve_upload("alice", &a, 99, 1).await.unwrap());
    assert!(s.reserve_upload("alice", &b, 20, 2).await.unwrap());
    assert!(!s.reserve_upload("alice", &c, 30, 2).await.unwrap());
    // Limits are per owner; 0 is none.
    assert!(s.reserve_upload("bob", &c, 30, 1).await.unwrap());
    assert!(s.reserve_upload("alice", &c, 40, 0).await.unwrap());
    let mut all = s.reserved_uploads().await.unwrap();
    all.sort();
    let mut want = vec![
        ("alice".to_owned(), a.clone(), 10),
        ("alice".to_owned(), b.clone(), 20),
        ("alice".to_owned(), c.clone(), 40),
        ("bob".to_owned(), c.clone(), 30),
    ];
    want.sort();
    assert_eq!(all, want);
    s.release_upload("alice", &a).await.unwrap();
    s.release_upload("alice", &a).await.unwrap();
    s.release_upload("alice", &c).await.unwrap();
    assert!(s.reserve_upload("alice", &a, 50, 2).await.unwrap());
    assert!(!s.reserve_upload("alice", &c, 60, 2).await.unwrap());
    let left: BTreeSet<(String, UploadId)> = s
        .reserved_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(o, id, _)| (o, id))
        .collect();
    assert_eq!(
        left,
        BTreeSet::from([
            ("alice".to_owned(), a),
            ("alice".to_owned(), b),
            ("bob".to_owned(), c),
        ])
    );
}

async fn concurrent_reservations_respect_limit(s: Arc<dyn MetaStore>) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.reserve_upload("burst", &UploadId::generate(), i, 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.unwrap());
    }
    assert_eq!(granted, 5);
    assert_eq!(s.reserved_uploads().await.unwrap().len(), 5);
}

async fn file_table(s: Arc<dyn MetaStore>) {
    let hash = format!("sha256:{}", "ab".repeat(32));
    let rec = |key: &str| FileRecord {
        bucket: "files".into(),
        key: key.into(),
        size: 10,
        created: 1,
    };
    assert_eq!(s.get_file(&hash).await.unwrap(), None);
    s.put_file(&hash, &rec("a/x")).await.unwrap();
    s.put_file(&hash, &rec("b/x")).await.unwrap();
    assert_eq!(s.get_file(&hash).await.unwrap(), Some(rec("b/x")));
    // Only the entry as read is removed: an older one leaves the newer in place.
    s.delete_file(&hash, &rec("a/x")).await.unwrap();
    assert_eq!(s.get_file(&hash).await.unwrap(), Some(rec("b/x")));
    s.delete_file(&hash, &rec("b/x")).await.unwrap();
    assert_eq!(s.get_file(&hash).await.unwrap(), None);
}

fn challenge(expires: Millis) -> ChallengeRecord {
    ChallengeRecord {
        hash: format!("sha256:{}", "cd".repeat(32)),
        size: 1 << 20,
        ranges: vec![(0, 10), (100, 4196)],
        upload: UploadId::generate(),
        expires,
    }
}

async fn challenges(s: Arc<dyn MetaStore>) {
    // Real time: Redis expires the keys by its own clock.
    let now = mpgw::model::now_millis();
    let c = challenge(now + 60_000);
    s.put_challenge("alice", "n1", &c, now, 4).await.unwrap();
    // Another owner's nonce, an unknown nonce: nothing.
    assert_eq!(s.take_challenge("bob", "n1", now).await.unwrap(), None);
    assert_eq!(s.take_challenge("alice", "n0", now).await.unwrap(), None);
    // Single use.
    assert_eq!(s.take_challenge("alice", "n1", now).await.unwrap(), Some(c));
    assert_eq!(s.take_challenge("alice", "n1", now).await.unwrap(), None);
    // Expired: gone, also for the take that finds it.
    s.put_challenge("alice", "old", &challenge(now + 10), now, 4)
        .await
        .unwrap();
    assert_eq!(
        s.take_challenge("alice", "old", now + 10).await.unwrap(),
        None
    );
    assert_eq!(s.take_challenge("alice", "old", now).await.unwrap(), None);
    // At most `limit` per owner: the ones expiring first make room; other owners untouched.
    s.put_challenge("bob", "b", &challenge(now + 60_000), now, 3)
        .await
        .unwrap();
    for i in 0..5 {
        s.put_challenge(
            "alice",
            &format!("m{i}"),
            &challenge(now + 60_000 + i),
            now,
            3,
        )
        .await
        .unwrap();
    }
    for i in 0..5 {
        let got = s
            .take_challenge("alice", &format!("m{i}"), now)
            .await
            .unwrap();
        assert_eq!(got.is_some(), i >= 2, "m{i}");
    }
    assert!(s.take_challenge("bob", "b", now).await.unwrap().is_some());
    // A put drops the owner's expired challenges (they count against nothing afterwards).
    for i in 0..3 {
        s.put_challenge("carol", &format!("e{i}"), &challenge(now + 1), now, 3)
            .await
            .unwrap();
    }
    s.put_challenge("carol", "fresh", &challenge(now + 60_000), now + 2, 3)
        .await
        .unwrap();
    s.put_challenge("carol", "fresh2", &challenge(now + 60_001), now + 2, 3)
        .await
        .unwrap();
    assert!(
        s.take_challenge("carol", "fresh", now + 2)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.take_challenge("carol", "fresh2", now + 2)
            .await
            .unwrap()
            .is_some()
    );
    // Challenges made in the same millisecond share an expiry: the first made still goes
    // first, whatever its nonce (here the first sorts last).
    for i in 0..4 {
        s.put_challenge(
            "erin",
            &format!("z{}", 9 - i),
            &challenge(now + 60_000),
            now,
            3,
        )
        .await
        .unwrap();
    }
    for i in 0..4 {
        let got = s
            .take_challenge("erin", &format!("z{}", 9 - i), now)
            .await
            .unwrap();
        assert_eq!(got.is_some(), i >= 1, "z{}", 9 - i);
    }
}

async fn concurrent_take_challenge(s: Arc<dyn MetaStore>) {
    let now = mpgw::model::now_millis();
    s.put_challenge("dave", "once", &challenge(now + 60_000), now, 8)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.take_challenge("dave", "once", now).await.unwrap() })
        })
        .collect();
    let mut got = 0;
    for t in tasks {
        got += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(got, 1);
}

async fn shared_secret(s: Arc<dyn MetaStore>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.shared_secret("links", &format!("c{i}")).await.unwrap() })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    let first = seen.into_iter().next().unwrap();
    assert_eq!(s.shared_secret("links", "later").await.unwrap(), first);
    assert_eq!(s.shared_secret("other", "o").await.unwrap(), "o");
}

async fn concurrent_create_bucket(s: Arc<dyn MetaStore>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.create_bucket(&bucket("race", &format!("owner{i}")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut existing = Vec::new();
    for t in tasks {
        existing.extend(t.await.unwrap());
    }
    // One create won; everybody else saw exactly its record.
    let winner = s.get_bucket("race").await.unwrap().unwrap();
    assert_eq!(existing.len(), 7);
    assert!(existing.iter().all(|b| *b == winner));
    assert_eq!(s.list_buckets().await.unwrap(), [winner]);
}

async fn concurrent_put_part_same_number(s: Arc<dyn MetaStore>) {
    let up = upload("b", "k", 1);
    s.create_upload(&up).await.unwrap();
    let written: Vec<PartRecord> = (0..16).map(|i| part(&format!("1.{i}"))).collect();
    let tasks: Vec<_> = written
        .iter()
        .map(|p| {
            let (s, id, p) = (s.clone(), up.id.clone(), p.clone());
            tokio::spawn(async move { s.put_part(&id, pn(1), &p).await.unwrap() })
        })
        .collect();
    let mut replaced = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            PutPart::Recorded(old) => replaced.push(old),
            PutPart::NotOpen => panic!("upload is Open"),
        }
    }
    let last = s.list_parts(&up.id, None, 10).await.unwrap();
    assert_eq!(last.len(), 1);
    // Serial order: one call found nothing, every other replaced a distinct earlier write, and
    // the survivor is the one write nobody replaced.
    assert_eq!(replaced.iter().filter(|o| o.is_none()).count(), 1);
    let mut chain: Vec<String> = replaced.into_iter().flatten().map(|p| p.file).collect();
    chain.push(last[0].1.file.clone());
    chain.sort();
    let mut all: Vec<String> = written.into_iter().map(|p| p.file).collect();
    all.sort();
    assert_eq!(chain, all);
}

/// Appends in order: the next number only, the last one replaced only while it is still the
/// file the caller read, nothing once the upload is not Open.
async fn append_part(s: Arc<dyn MetaStore>) {
    let up = upload("b", "k", 1);
    let missing = UploadId::generate();
    assert_eq!(
        s.append_part(&missing, pn(1), &part("1.a"), None)
            .await
            .unwrap(),
        AppendPart::NotOpen
    );
    s.create_upload(&up).await.unwrap();
    let id = &up.id;
    // Not the next number: part 2 before part 1.
    assert_eq!(
        s.append_part(id, pn(2), &part("2.a"), None).await.unwrap(),
        AppendPart::Moved
    );
    assert_eq!(
        s.append_part(id, pn(1), &part("1.a"), None).await.unwrap(),
        AppendPart::Recorded(None)
    );
    // Part 1 exists: appending it again is a lost race.
    assert_eq!(
        s.append_part(id, pn(1), &part("1.b"), None).await.unwrap(),
        AppendPart::Moved
    );
    // Replacing the last part names the file it read.
    assert_eq!(
        s.append_part(id, pn(1), &part("1.b"), Some("1.x"))
            .await
            .unwrap(),
        AppendPart::Moved
    );
    assert_eq!(
        s.append_part(id, pn(1), &part("1.b"), Some("1.a"))
            .await
            .unwrap(),
        AppendPart::Recorded(Some(part("1.a")))
    );
    assert_eq!(
        s.append_part(id, pn(2), &part("2.a"), None).await.unwrap(),
        AppendPart::Recorded(None)
    );
    // Part 1 is no longer the last: it cannot be replaced.
    assert_eq!(
        s.append_part(id, pn(1), &part("1.c"), Some("1.b"))
            .await
            .unwrap(),
        AppendPart::Moved
    );
    let mut declared = part("3.a");
    declared.length = Some(42);
    assert_eq!(
        s.append_part(id, pn(3), &declared, None).await.unwrap(),
        AppendPart::Recorded(None)
    );
    let parts = s.list_parts(id, None, 10).await.unwrap();
    let files: Vec<&str> = parts.iter().map(|(_, p)| p.file.as_str()).collect();
    assert_eq!(files, ["1.b", "2.a", "3.a"]);
    assert_eq!(parts[2].1.length, Some(42));
    assert_eq!(parts[0].1.length, None);
    started(&*s, id, 5).await;
    assert_eq!(
        s.append_part(id, pn(4), &part("4.a"), None).await.unwrap(),
        AppendPart::NotOpen
    );
}

/// Appends racing for the same next number: exactly one is recorded.
async fn concurrent_append_part(s: Arc<dyn MetaStore>) {
    let up = upload("b", "k", 1);
    s.create_upload(&up).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (s, id) = (s.clone(), up.id.clone());
            tokio::spawn(async move {
                s.append_part(&id, pn(1), &part(&format!("1.{i}")), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut recorded = 0;
    for t in tasks {
        match t.await.unwrap() {
            AppendPart::Recorded(None) => recorded += 1,
            AppendPart::Moved => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(s.list_parts(&up.id, None, 10).await.unwrap().len(), 1);
}

async fn concurrent_begin_complete(s: Arc<dyn MetaStore>) {
    let up = upload("b", "k", 1);
    s.create_upload(&up).await.unwrap();
    s.put_part(&up.id, pn(1), &part("1.a")).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (s, id) = (s.clone(), up.id.clone());
            tokio::spawn(async move { s.begin_complete(&id, 1_000 + i, 0).await.unwrap() })
        })
        .collect();
    let (mut started, mut busy) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            BeginComplete::Started(_, parts) => {
                started += 1;
                assert_eq!(numbers(&parts), [1]);
            }
            BeginComplete::Busy(rec) => {
                busy += 1;
                assert_eq!(rec.state, UploadState::Completing);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((started, busy), (1, 7));
}

async fn put_part_racing_complete(s: Arc<dyn MetaStore>) {
    const WRITERS: u32 = 4;
    const PER_WRITER: u32 = 100;
    let up = upload("b", "k", 1);
    s.create_upload(&up).await.unwrap();
    // Writers put distinct part numbers one after another; the completer starts once a few
    // landed, so some puts come before begin_complete and many after.
    let writers: Vec<_> = (1..=WRITERS)
        .map(|w| {
            let (s, id) = (s.clone(), up.id.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                for n in (0..PER_WRITER).map(|i| w + i * WRITERS) {
                    out.push((
                        n,
                        s.put_part(&id, pn(n), &part(&format!("{n}.a")))
                            .await
                            .unwrap(),
                    ));
                }
                out
            })
        })
        .collect();
    let complete = {
        let (s, id) = (s.clone(), up.id.clone());
        tokio::spawn(async move {
            while s.list_parts(&id, None, 8).await.unwrap().len() < 8 {
                tokio::task::yield_now().await;
            }
            let (_, parts) = started(&*s, &id, 100).await;
            s.finish_complete(&id, &result(200)).await.unwrap();
            parts
        })
    };
    let (mut recorded, mut refused) = (Vec::new(), 0);
    for w in writers {
        let mut closed = false;
        for (n, outcome) in w.await.unwrap() {
            match outcome {
                PutPart::Recorded(None) if !closed => recorded.push(n),
                PutPart::NotOpen => (closed, refused) = (true, refused + 1),
                other => panic!("part {n}: unexpected {other:?} (closed: {closed})"),
            }
        }
    }
    // Every Recorded part happened before begin_complete, so it is in the snapshot; every part
    // refused came after, so it is not.
    let snapshot: Vec<u32> = complete
        .await
        .unwrap()
        .iter()
        .map(|(n, _)| u32::from(n.get()))
        .collect();
    recorded.sort_unstable();
    assert_eq!(snapshot, recorded);
    assert!(
        recorded.len() >= 8 && refused > 0,
        "no race: {} recorded, {refused} refused",
        recorded.len()
    );
    assert!(s.list_parts(&up.id, None, 1000).await.unwrap().is_empty());
}

// ---- completion events ----

/// An event on `key` for `target`, as the core would record it (due at once).
fn event(target: &str, key: &str, name: EventName) -> EventRecord {
    EventRecord {
        seq: 0,
        target: target.into(),
        rule: "rule-1".into(),
        name,
        bucket: "ev".into(),
        key: key.into(),
        size: (name != EventName::Delete).then_some(5 << 40),
        etag: (name != EventName::Delete).then(|| "0123456789abcdef0123456789abcdef".into()),
        time: 1_800_000_000_123,
        principal: "alice".into(),
        bucket_owner: "alice".into(),
        source_ip: "192.0.2.7".into(),
        request_id: random_hex(8),
        tries: 0,
        due: 0,
        lease: 0,
        error: None,
    }
}

fn notice(ev: &EventRecord, limit: usize) -> Option<Notice<'_>> {
    Some(Notice { event: ev, limit })
}

fn seqs(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Puts an object at `key` with an event for `target`; returns the event as recorded.
async fn put_noticed(s: &Arc<dyn MetaStore>, bucket: &str, target: &str, key: &str) -> EventRecord {
    let ev = event(target, key, EventName::Put);
    s.put_object(bucket, key, &object("e"), notice(&ev, 1000))
        .await
        .unwrap();
    let recorded = s
        .list_events(bucket, target, false, 0, 10_000)
        .await
        .unwrap();
    let last = recorded.last().expect("event recorded").clone();
    assert_eq!(
        EventRecord {
            seq: 0,
            ..last.clone()
        },
        ev,
        "recorded as given"
    );
    last
}

/// Events are recorded with the object write that caused them, under increasing per-bucket
/// seqs; a delete records one only when it removed a record; a full outbox refuses the write
/// whole; a sealed bucket refuses it first.
async fn events_recorded_with_writes(s: Arc<dyn MetaStore>) {
    s.create_bucket(&bucket("ev", "alice")).await.unwrap();
    // Keys with a space, a newline and non-ASCII round-trip; the size needs more than 32 bits.
    let k1 = "dir/a b\nc-é";
    let a = event("hook", k1, EventName::Put);
    assert_eq!(
        s.put_object("ev", k1, &object("1"), notice(&a, 3))
            .await
            .unwrap(),
        None
    );
    let b = event("hook", "k2", EventName::Copy);
    s.put_object("ev", "k2", &object("2"), notice(&b, 3))
        .await
        .unwrap();
    let listed = s.list_events("ev", "hook", false, 0, 10).await.unwrap();
    assert_eq!(seqs(&listed), [1, 2]);
    assert_eq!(listed[0], EventRecord { seq: 1, ..a });
    assert_eq!(listed[1], EventRecord { seq: 2, ..b });

    // Deleting a missing key records nothing.
    let gone = event("hook", "missing", EventName::Delete);
    assert_eq!(
        s.delete_object("ev", "missing", notice(&gone, 3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.count_events("ev", "hook").await.unwrap(), (2, 0));
    // Another target of the bucket: its own outbox, the bucket's next seq.
    let other = event("stream", "k2", EventName::Put);
    s.put_object("ev", "k2", &object("3"), notice(&other, 1))
        .await
        .unwrap();
    assert_eq!(
        seqs(&s.list_events("ev", "stream", false, 0, 10).await.unwrap()),
        [3]
    );
    let del = event("hook", "k2", EventName::Delete);
    assert!(
        s.delete_object("ev", "k2", notice(&del, 3))
            .await
            .unwrap()
            .is_some()
    );
    let listed = s.list_events("ev", "hook", false, 0, 10).await.unwrap();
    assert_eq!(seqs(&listed), [1, 2, 4]);
    assert_eq!(listed[2], EventRecord { seq: 4, ..del });
    assert_eq!(listed[2].size, None);

    // Full (3 pending): neither the object nor the event is stored, put or delete.
    let late = event("hook", "k3", EventName::Put);
    assert!(matches!(
        s.put_object("ev", "k3", &object("4"), notice(&late, 3))
            .await,
        Err(StoreError::OutboxFull)
    ));
    assert_eq!(s.get_object("ev", "k3").await.unwrap(), None);
    let before = s.get_object("ev", k1).await.unwrap();
    assert!(matches!(
        s.put_object("ev", k1, &object("5"), notice(&late, 3)).await,
        Err(StoreError::OutboxFull)
    ));
    let del = event("hook", k1, EventName::Delete);
    assert!(matches!(
        s.delete_object("ev", k1, notice(&del, 3)).await,
        Err(StoreError::OutboxFull)
    ));
    assert_eq!(
        s.get_object("ev", k1).await.unwrap(),
        before,
        "left as it was"
    );
    assert_eq!(s.count_events("ev", "hook").await.unwrap(), (3, 0));
    // Without a notice, or with a larger limit, writes go on.
    s.put_object("ev", "k3", &object("6"), None).await.unwrap();
    s.put_object("ev", "k3", &object("7"), notice(&late, 4))
        .await
        .unwrap();
    assert_eq!(
        seqs(&s.list_events("ev", "hook", false, 0, 10).await.unwrap()),
        [1, 2, 4, 5]
    );

    // Seqs are per bucket.
    s.create_bucket(&bucket("ev2", "alice")).await.unwrap();
    assert_eq!(put_noticed(&s, "ev2", "hook", "k").await.seq, 1);

    // A sealed bucket refuses the write before the outbox is looked at, even when full.
    s.create_bucket(&bucket("sealed", "alice")).await.unwrap();
    assert_eq!(
        s.seal_bucket("sealed", 1).await.unwrap(),
        SealBucket::Sealed
    );
    let e = event("hook", "k", EventName::Put);
    assert!(matches!(
        s.put_object("sealed", "k", &object("8"), notice(&e, 0))
            .await,
        Err(StoreError::BucketGone)
    ));
    assert!(matches!(
        s.put_object("sealed", "k", &object("8"), notice(&e, 5))
            .await,
        Err(StoreError::BucketGone)
    ));
    assert_eq!(s.count_events("sealed", "hook").await.unwrap(), (0, 0));

    // The outboxes outlive their bucket, and a re-created bucket's seqs carry on.
    s.delete_object("ev2", "k", None).await.unwrap();
    assert_eq!(s.delete_bucket("ev2").await.unwrap(), DeleteBucket::Deleted);
    assert_eq!(s.count_events("ev2", "hook").await.unwrap(), (1, 0));
    s.create_bucket(&bucket("ev2", "alice")).await.unwrap();
    assert_eq!(put_noticed(&s, "ev2", "hook", "k").await.seq, 2);
}

/// Claims go in seq order; an event that is not due or is leased holds back the later events of
/// its key (and only of its key); a lease keeps others off until it ends.
async fn event_claims(s: Arc<dyn MetaStore>) {
    s.create_bucket(&bucket("ev", "alice")).await.unwrap();
    let mut put = Vec::new();
    for key in ["a", "b", "a", "b", "c"] {
        put.push(put_noticed(&s, "ev", "hook", key).await);
    }
    assert_eq!(seqs(&put), [1, 2, 3, 4, 5]);
    // Nothing with no room to scan or claim.
    assert!(
        s.claim_events("ev", "hook", 100, 1100, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.claim_events("ev", "hook", 100, 1100, 10, 0)
            .await
            .unwrap()
            .is_empty()
    );
    // Limit, then scan window.
    let got = s
        .claim_events("ev", "hook", 100, 1100, 10, 2)
        .await
        .unwrap();
    assert_eq!(seqs(&got), [1, 2]);
    assert_eq!(
        got[0],
        EventRecord {
            lease: 1100,
            ..put[0].clone()
        }
    );
    // 1 and 2 are leased: the next a and b wait; only c is in the window of 5.
    let got = s
        .claim_events("ev", "hook", 100, 1100, 5, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&got), [5]);
    assert!(
        s.claim_events("ev", "hook", 100, 1100, 5, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // a(1) fails and is due again at 200; b(2) is delivered; c(5) is released.
    let retry = Settle::Retry {
        due: 200,
        error: "HTTP 500".into(),
    };
    let dropped = s
        .settle_events(
            "ev",
            "hook",
            &[(1, retry), (2, Settle::Delivered), (5, Settle::Release)],
            10,
        )
        .await
        .unwrap();
    assert_eq!(dropped, 0);
    let pending = s.list_events("ev", "hook", false, 0, 10).await.unwrap();
    assert_eq!(seqs(&pending), [1, 3, 4, 5]);
    assert_eq!(
        (pending[0].tries, pending[0].due, pending[0].lease),
        (1, 200, 0)
    );
    assert_eq!(pending[0].error.as_deref(), Some("HTTP 500"));
    assert_eq!(
        (pending[3].tries, pending[3].lease),
        (0, 0),
        "release counts nothing"
    );
    let b = put_noticed(&s, "ev", "hook", "b").await;
    assert_eq!(b.seq, 6);

    // At 150 a(1) is not due: a(3) waits behind it; b(4), c(5) and b(6) go, in order.
    let got = s
        .claim_events("ev", "hook", 150, 1150, 10, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&got), [4, 5, 6]);
    // Settled as failed, b(4) is not due: b(6) may not overtake it even once its lease ends.
    let retry = Settle::Retry {
        due: 5000,
        error: "timeout".into(),
    };
    s.settle_events("ev", "hook", &[(4, retry), (5, Settle::Delivered)], 10)
        .await
        .unwrap();
    // At 250: a(1) is due, so a(1) and a(3) go together; b(6) is still leased.
    let got = s
        .claim_events("ev", "hook", 250, 1250, 10, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&got), [1, 3]);
    assert_eq!((got[0].tries, got[0].lease), (1, 1250));
    assert!(
        s.claim_events("ev", "hook", 1000, 2000, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Past b(6)'s lease: b(4) still not due, so b(6) waits; a(1), a(3) are leased until 1250.
    assert!(
        s.claim_events("ev", "hook", 1200, 2200, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Past every lease: a(1) and a(3) are taken again.
    let got = s
        .claim_events("ev", "hook", 1300, 2300, 10, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&got), [1, 3]);
    // Past b(4)'s due time, b(4) and then b(6); a(1) and a(3), never settled, once more.
    let got = s
        .claim_events("ev", "hook", 5000, 6000, 10, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&got), [1, 3, 4, 6]);
    assert_eq!((got[2].tries, got[2].lease), (1, 6000));
    // Another target's outbox is another queue.
    assert!(
        s.claim_events("ev", "other", 0, 1, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Settling: Delivered removes, Dead moves to the dead letters (newest `dead_limit` kept),
/// unknown or no longer pending seqs are skipped; dead letters can be listed, retried and
/// dropped, selected or all.
async fn event_settle_and_dead_letters(s: Arc<dyn MetaStore>) {
    s.create_bucket(&bucket("ev", "alice")).await.unwrap();
    for i in 0..6 {
        put_noticed(&s, "ev", "hook", &format!("k{i}")).await;
    }
    assert_eq!(
        seqs(&s.claim_events("ev", "hook", 10, 100, 10, 10).await.unwrap()),
        [1, 2, 3, 4, 5, 6]
    );
    let dead = |e: &str| Settle::Dead { error: e.into() };
    let dropped = s
        .settle_events(
            "ev",
            "hook",
            &[
                (1, dead("one")),
                (2, dead("two")),
                (3, dead("three")),
                (99, Settle::Delivered),
            ],
            2,
        )
        .await
        .unwrap();
    assert_eq!(dropped, 1, "the oldest dead letter goes");
    assert_eq!(s.count_events("ev", "hook").await.unwrap(), (3, 2));
    let letters = s.list_events("ev", "hook", true, 0, 10).await.unwrap();
    assert_eq!(seqs(&letters), [2, 3]);
    assert_eq!(letters[0].error.as_deref(), Some("two"));
    assert_eq!((letters[0].key.as_str(), letters[0].lease), ("k1", 0));
    assert_eq!(letters[0].tries, 1, "the failed try that killed it counts");
    // A dead letter is not pending: settling it again does nothing.
    s.settle_events(
        "ev",
        "hook",
        &[(2, Settle::Delivered), (3, dead("again"))],
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        seqs(&s.list_events("ev", "hook", true, 0, 10).await.unwrap()),
        [2, 3]
    );
    // Paging: after and limit, pending and dead alike.
    assert_eq!(
        seqs(&s.list_events("ev", "hook", false, 4, 10).await.unwrap()),
        [5, 6]
    );
    assert_eq!(
        seqs(&s.list_events("ev", "hook", false, 0, 2).await.unwrap()),
        [4, 5]
    );
    assert_eq!(
        seqs(&s.list_events("ev", "hook", true, 2, 10).await.unwrap()),
        [3]
    );
    assert!(
        s.list_events("ev", "hook", true, 3, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.list_events("ev", "hook", true, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Retry one: back in the outbox, due now, no try counted, not leased.
    assert_eq!(
        s.retry_dead_events("ev", "hook", &[3, 77], 500)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.count_events("ev", "hook").await.unwrap(), (4, 1));
    let pending = s.list_events("ev", "hook", false, 0, 10).await.unwrap();
    assert_eq!(seqs(&pending), [3, 4, 5, 6]);
    assert_eq!(
        (pending[0].tries, pending[0].due, pending[0].lease),
        (0, 500, 0)
    );
    assert_eq!(pending[0].key, "k2");
    // Retry all.
    assert_eq!(
        s.retry_dead_events("ev", "hook", &[], 600).await.unwrap(),
        1
    );
    assert_eq!(s.count_events("ev", "hook").await.unwrap(), (5, 0));
    assert_eq!(
        s.retry_dead_events("ev", "hook", &[], 600).await.unwrap(),
        0
    );
    // Every lease has ended: all five are claimed.
    assert_eq!(
        seqs(
            &s.claim_events("ev", "hook", 600, 700, 10, 10)
                .await
                .unwrap()
        ),
        [2, 3, 4, 5, 6]
    );

    // Dead again (limit 0 keeps none), then drop: selected, then all.
    let dropped = s
        .settle_events("ev", "hook", &[(2, dead("x")), (3, dead("y"))], 0)
        .await
        .unwrap();
    assert_eq!(dropped, 2);
    assert_eq!(s.count_events("ev", "hook").await.unwrap(), (3, 0));
    s.settle_events(
        "ev",
        "hook",
        &[(4, dead("x")), (5, dead("y")), (6, dead("z"))],
        10,
    )
    .await
    .unwrap();
    assert_eq!(s.count_events("ev", "hook").await.unwrap(), (0, 3));
    assert_eq!(s.drop_dead_events("ev", "hook", &[5, 8]).await.unwrap(), 1);
    assert_eq!(
        seqs(&s.list_events("ev", "hook", true, 0, 10).await.unwrap()),
        [4, 6]
    );
    assert_eq!(s.drop_dead_events("ev", "hook", &[]).await.unwrap(), 2);
    assert_eq!(s.count_events("ev", "hook").await.unwrap(), (0, 0));
    assert_eq!(s.drop_dead_events("ev", "hook", &[]).await.unwrap(), 0);
    // The counter does not rewind when the outbox empties.
    assert_eq!(put_noticed(&s, "ev", "hook", "k").await.seq, 7);
}

/// The outbox index lists every (bucket, target) that has had an event until it is forgotten,
/// which only an empty outbox is.
async fn event_queues(s: Arc<dyn MetaStore>) {
    assert!(s.event_queues().await.unwrap().is_empty());
    s.create_bucket(&bucket("ev", "alice")).await.unwrap();
    s.create_bucket(&bucket("a-ev", "alice")).await.unwrap();
    s.put_object("ev", "plain", &object("p"), None)
        .await
        .unwrap();
    assert!(s.event_queues().await.unwrap().is_empty());
    put_noticed(&s, "ev", "zeta", "k").await;
    put_noticed(&s, "ev", "alpha", "k").await;
    put_noticed(&s, "a-ev", "zeta", "k").await;
    let pair = |b: &str, t: &str| (b.to_owned(), t.to_owned());
    assert_eq!(
        s.event_queues().await.unwrap(),
        [
            pair("a-ev", "zeta"),
            pair("ev", "alpha"),
            pair("ev", "zeta")
        ]
    );
    // Not empty: still listed.
    s.forget_event_queue("ev", "alpha").await.unwrap();
    assert_eq!(s.event_queues().await.unwrap().len(), 3);
    // A dead letter keeps it listed too.
    s.claim_events("ev", "alpha", 0, 10, 10, 10).await.unwrap();
    s.settle_events(
        "ev",
        "alpha",
        &[(2, Settle::Dead { error: "e".into() })],
        10,
    )
    .await
    .unwrap();
    s.forget_event_queue("ev", "alpha").await.unwrap();
    assert_eq!(s.event_queues().await.unwrap().len(), 3);
    s.drop_dead_events("ev", "alpha", &[]).await.unwrap();
    s.forget_event_queue("ev", "alpha").await.unwrap();
    assert_eq!(
        s.event_queues().await.unwrap(),
        [pair("a-ev", "zeta"), pair("ev", "zeta")]
    );
    // Idempotent, and for an outbox never seen.
    s.forget_event_queue("ev", "alpha").await.unwrap();
    s.forget_event_queue("nope", "none").await.unwrap();
    // A new event lists it again.
    put_noticed(&s, "ev", "alpha", "k").await;
    assert_eq!(s.event_queues().await.unwrap().len(), 3);
}

/// Deliverers claiming one outbox at once never get the same event.
async fn concurrent_event_claims(s: Arc<dyn MetaStore>) {
    s.create_bucket(&bucket("ev", "alice")).await.unwrap();
    for i in 0..60 {
        put_noticed(&s, "ev", "hook", &format!("k{}", i % 20)).await;
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..40 {
                    let got = s
                        .claim_events("ev", "hook", 100, 60_000, 100, 3)
                        .await
                        .unwrap();
                    mine.extend(seqs(&got));
                    // Delivered at once: the next event of the key becomes claimable.
                    let done: Vec<_> = got.iter().map(|e| (e.seq, Settle::Delivered)).collect();
                    s.settle_events("ev", "hook", &done, 10).await.unwrap();
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an event claimed twice: {all:?}");
    assert_eq!(unique, (1..=60).collect(), "every event delivered");
    assert_eq!(s.count_events("ev", "hook").await.unwrap(), (0, 0));
}

// ---- Redis only ----

/// The Redis store spans an upload slot and a bucket slot in two steps; a crash between them
/// leaves a listing entry behind. Readers must skip it and `delete_bucket` must not count it.
#[tokio::test]
async fn redis_stale_listing_entries_are_ignored() {
    let store = redis_store().await;
    let Cleanup::Redis(keys) = &store.cleanup else {
        unreachable!()
    };
    let s = &store.meta;
    let mut con = ::redis::Client::open(keys.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let listing = format!("{}:v1:bkt:{{b:b}}:uploads", keys.prefix);
    s.create_bucket(&bucket("b", "alice")).await.unwrap();

    // An upload whose record vanished (abort interrupted after its first step).
    let lost = upload("b", "k", 1);
    s.create_upload(&lost).await.unwrap();
    let members: Vec<Vec<u8>> = ::redis::cmd("ZRANGE")
        .arg(&listing)
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(members.len(), 1);
    ::redis::cmd("DEL")
        .arg(format!("{}:v1:upl:{{u:{}}}", keys.prefix, lost.id))
        .exec_async(&mut con)
        .await
        .unwrap();

    // A Completed upload whose listing entry was not removed (finish interrupted likewise).
    let done = upload("b", "k", 2);
    s.create_upload(&done).await.unwrap();
    let before: Vec<Vec<u8>> = ::redis::cmd("ZRANGE")
        .arg(&listing)
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    started(&**s, &done.id, 10).await;
    s.finish_complete(&done.id, &result(20)).await.unwrap();
    for m in &before {
        ::redis::cmd("ZADD")
            .arg(&listing)
            .arg(0)
            .arg(m)
            .exec_async(&mut con)
            .await
            .unwrap();
    }
    let ttl: i64 = ::redis::cmd("TTL")
        .arg(format!("{}:v1:upl:{{u:{}}}", keys.prefix, done.id))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        ttl > 0,
        "completed uploads expire by themselves (TTL {ttl})"
    );

    let live = upload("b", "k", 3);
    s.create_upload(&live).await.unwrap();
    assert_eq!(
        s.list_uploads("b", "", None, 10).await.unwrap(),
        std::slice::from_ref(&live)
    );
    assert_eq!(s.delete_bucket("b").await.unwrap(), DeleteBucket::NotEmpty);
    s.abort_upload(&live.id).await.unwrap();
    ::redis::cmd("ZADD")
        .arg(&listing)
        .arg(0)
        .arg(&members[0])
        .exec_async(&mut con)
        .await
        .unwrap();
    assert!(s.list_uploads("b", "", None, 10).await.unwrap().is_empty());
    assert_eq!(s.delete_bucket("b").await.unwrap(), DeleteBucket::Deleted);
    let left: i64 = ::redis::cmd("EXISTS")
        .arg(&listing)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn redis_unreachable_fails_fast() {
    let start = Instant::now();
    let err = RedisMetaStore::connect("redis://127.0.0.1:1", "mpgwtest:unreachable", None)
        .await
        .err();
    assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

/// A TCP proxy to the test Redis that can turn into a black hole: accepted connections then get
/// no answer, the way a hung or partitioned server behaves.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            up: Arc::default(),
            links: Arc::default(),
        };
        proxy.set_up(true);
        let (up, links) = (proxy.up.clone(), proxy.links.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up.load(std::sync::atomic::Ordering::SeqCst) {
                    held.push(inbound); // open, silent
                    continue;
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links.lock().unwrap().push(link.abort_handle());
            }
        });
        proxy
    }

    /// Down: cuts every open link and swallows new ones.
    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.links.lock().unwrap().drain(..).for_each(|l| l.abort());
        }
    }
}

/// A Redis that stops answering turns requests into `Unavailable` within seconds (never a hang),
/// and the store recovers by itself once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_unavailable_then_recovers() {
    let keys = RedisKeys {
        url: redis_url(),
        prefix: format!("mpgwtest:{}", random_hex(8)),
    };
    let client = ::redis::Client::open(keys.url.as_str()).unwrap();
    let ::redis::ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr().clone()
    else {
        panic!("the outage test needs a plain TCP REDIS_URL")
    };
    let proxy = Proxy::start(format!("{host}:{port}")).await;
    let via_proxy = match keys
        .url
        .replacen(&format!("{host}:{port}"), &proxy.addr.to_string(), 1)
    {
        same if same == keys.url => keys.url.replacen(&host, &proxy.addr.to_string(), 1),
        url => url,
    };
    let s = RedisMetaStore::connect(&via_proxy, &keys.prefix, None)
        .await
        .unwrap_or_else(|e| panic!("Redis at {} is unreachable ({e})", keys.url));
    let up = upload("b", "k", 1);
    s.create_upload(&up).await.unwrap();

    proxy.set_up(false);
    for _ in 0..2 {
        let start = Instant::now();
        let err = s.put_part(&up.id, pn(1), &part("1.a")).await.err();
        assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "took {:?}",
            start.elapsed()
        );
    }

    proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.ping().await.is_err() {
        assert!(Instant::now() < deadline, "no reconnect after the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        s.put_part(&up.id, pn(1), &part("1.a")).await.unwrap(),
        PutPart::Recorded(None)
    );
}
