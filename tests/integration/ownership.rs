//! Ownership with several credentials (a bucket belongs to the key that created it; another key
//! gets AccessDenied on everything in it), upload ids bound to their bucket and key, and the cap
//! on open uploads per key (`--max-uploads-per-key`), against both state stores.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, CorsConfiguration, CorsRule,
    Delete, ExpirationStatus, LifecycleRule, LifecycleRuleFilter, ObjectIdentifier,
};
use mpgw::config::Config;
use mpgw::model::{UploadId, now_millis};
use mpgw::store::MetaStore;

use crate::harness::{
    ACCESS_KEY, Auth, RawResponse, SECRET_KEY, Store, TestGateway, both, complete, create_upload,
    err, get_bytes, operator_get, put, sigv2_expires, sigv2_query, upload_part,
};

const OTHER: &str = "MPGWOTHERACCESSKEY";
const OTHER_SECRET: &str = "mpgw-other-secret-0123456789";

async fn two_keys(store: Store, tweak: impl FnOnce(&mut Config)) -> TestGateway {
    TestGateway::start_with(store, |cfg| {
        cfg.access_keys.push(OTHER.into());
        cfg.secret_keys.push(OTHER_SECRET.into());
        tweak(cfg);
    })
    .await
}

#[track_caller]
fn denied<T: std::fmt::Debug, E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) {
    assert_eq!(err(r), (403, "AccessDenied".to_owned()));
}

/// HEAD answers carry no body, hence no code: the status says it.
#[track_caller]
fn denied_head<T: std::fmt::Debug, E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) {
    assert_eq!(err(r).0, 403);
}

fn lifecycle(days: i32) -> BucketLifecycleConfiguration {
    let rule = LifecycleRule::builder()
        .id("r")
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .status(ExpirationStatus::Enabled)
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(days)
                .build(),
        )
        .build()
        .unwrap();
    BucketLifecycleConfiguration::builder()
        .rules(rule)
        .build()
        .unwrap()
}

fn cors(origin: &str) -> CorsConfiguration {
    CorsConfiguration::builder()
        .cors_rules(
            CorsRule::builder()
                .allowed_origins(origin)
                .allowed_methods("PUT")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

async fn bucket_names(c: &aws_sdk_s3::Client) -> BTreeSet<String> {
    c.list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect()
}

async fn other_key_is_denied(store: Store) {
    let gw = two_keys(store, |_| {}).await;
    let owner = gw.client();
    let other = gw.client_with(OTHER, OTHER_SECRET);
    owner.create_bucket().bucket("mine").send().await.unwrap();
    other.create_bucket().bucket("theirs").send().await.unwrap();
    put(&owner, "mine", "obj", b"owner data").await;
    put(&other, "theirs", "obj", b"other data").await;
    let id = create_upload(&owner, "mine", "big").await;
    let etag = upload_part(&owner, "mine", "big", &id, 1, b"part one").await;
    owner
        .put_bucket_cors()
        .bucket("mine")
        .cors_configuration(cors("https://owner.example"))
        .send()
        .await
        .unwrap();
    owner
        .put_bucket_lifecycle_configuration()
        .bucket("mine")
        .lifecycle_configuration(lifecycle(3))
        .send()
        .await
        .unwrap();

    // Each key lists only its own buckets; creating the other's stays BucketAlreadyExists.
    assert_eq!(bucket_names(&owner).await, BTreeSet::from(["mine".into()]));
    assert_eq!(
        bucket_names(&other).await,
        BTreeSet::from(["theirs".into()])
    );
    assert_eq!(
        err(other.create_bucket().bucket("mine").send().await),
        (409, "BucketAlreadyExists".into())
    );

    // Bucket operations.
    denied_head(other.head_bucket().bucket("mine").send().await);
    denied(other.get_bucket_location().bucket("mine").send().await);
    denied(other.get_bucket_versioning().bucket("mine").send().await);
    denied(other.get_bucket_cors().bucket("mine").send().await);
    denied(
        other
            .put_bucket_cors()
            .bucket("mine")
            .cors_configuration(cors("https://evil.example"))
            .send()
            .await,
    );
    denied(other.delete_bucket_cors().bucket("mine").send().await);
    denied(
        other
            .get_bucket_lifecycle_configuration()
            .bucket("mine")
            .send()
            .await,
    );
    denied(
        other
            .put_bucket_lifecycle_configuration()
            .bucket("mine")
            .lifecycle_configuration(lifecycle(1))
            .send()
            .await,
    );
    denied(other.delete_bucket_lifecycle().bucket("mine").send().await);
    denied(other.list_objects().bucket("mine").send().await);
    denied(other.list_objects_v2().bucket("mine").send().await);
    denied(other.list_object_versions().bucket("mine").send().await);
    denied(other.list_multipart_uploads().bucket("mine").send().await);
    denied(other.delete_bucket().bucket("mine").send().await);

    // Objects.
    denied(other.get_object().bucket("mine").key("obj").send().await);
    denied(
        other
            .get_object_attributes()
            .bucket("mine")
            .key("obj")
            .object_attributes(aws_sdk_s3::types::ObjectAttributes::Etag)
            .send()
            .await,
    );
    denied_head(other.head_object().bucket("mine").key("obj").send().await);
    denied(
        other
            .put_object()
            .bucket("mine")
            .key("obj")
            .body(b"overwritten".to_vec().into())
            .send()
            .await,
    );
    denied(
        other
            .put_object()
            .bucket("mine")
            .key("new")
            .body(b"planted".to_vec().into())
            .send()
            .await,
    );
    denied(other.delete_object().bucket("mine").key("obj").send().await);
    denied(
        other
            .delete_objects()
            .bucket("mine")
            .delete(
                Delete::builder()
                    .objects(ObjectIdentifier::builder().key("obj").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
    );
    // Copies: into the owner's bucket, and out of it (the source is read with the caller's key).
    denied(
        other
            .copy_object()
            .bucket("mine")
            .key("copied")
            .copy_source("theirs/obj")
            .send()
            .await,
    );
    denied(
        other
            .copy_object()
            .bucket("theirs")
            .key("stolen")
            .copy_source("mine/obj")
            .send()
            .await,
    );

    // Uploads and parts.
    denied(
        other
            .create_multipart_upload()
            .bucket("mine")
            .key("big")
            .send()
            .await,
    );
    denied(
        other
            .upload_part()
            .bucket("mine")
            .key("big")
            .upload_id(&id)
            .part_number(1)
            .body(b"replaced".to_vec().into())
            .send()
            .await,
    );
    // An id that does not exist in the other key's bucket: still AccessDenied, not NoSuchUpload.
    denied(
        other
            .upload_part()
            .bucket("mine")
            .key("big")
            .upload_id(UploadId::generate().as_str())
            .part_number(2)
            .body(b"x".to_vec().into())
            .send()
            .await,
    );
    denied(
        other
            .upload_part_copy()
            .bucket("mine")
            .key("big")
            .upload_id(&id)
            .part_number(2)
            .copy_source("theirs/obj")
            .send()
            .await,
    );
    let their_upload = create_upload(&other, "theirs", "up").await;
    denied(
        other
            .upload_part_copy()
            .bucket("theirs")
            .key("up")
            .upload_id(&their_upload)
            .part_number(1)
            .copy_source("mine/obj")
            .send()
            .await,
    );
    denied(
        other
            .list_parts()
            .bucket("mine")
            .key("big")
            .upload_id(&id)
            .send()
            .await,
    );
    denied(
        other
            .complete_multipart_upload()
            .bucket("mine")
            .key("big")
            .upload_id(&id)
            .multipart_upload(crate::harness::completed(&[(1, &etag)]))
            .send()
            .await,
    );
    denied(
        other
            .abort_multipart_upload()
            .bucket("mine")
            .key("big")
            .upload_id(&id)
            .send()
            .await,
    );

    // A presigned URL acts as the key that signed it.
    let presign =
        aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let url = |c: &aws_sdk_s3::Client| {
        let c = c.clone();
        let presign = presign.clone();
        async move {
            c.get_object()
                .bucket("mine")
                .key("obj")
                .presigned(presign)
                .await
                .unwrap()
                .uri()
                .to_owned()
        }
    };
    assert_eq!(reqwest::get(url(&other).await).await.unwrap().status(), 403);
    assert_eq!(reqwest::get(url(&owner).await).await.unwrap().status(), 200);
    // Unsigned requests stay refused.
    gw.raw("GET", "/mine/obj")
        .auth(Auth::Anonymous)
        .send()
        .await
        .assert_error(403, "AccessDenied");
    // The error body is S3's.
    let raw = gw
        .raw("GET", "/mine/obj")
        .keys(OTHER, OTHER_SECRET)
        .send()
        .await;
    raw.assert_error(403, "AccessDenied");
    assert_eq!(
        crate::harness::xml_text(&raw.body, "Message").as_deref(),
        Some("Access Denied")
    );

    // Nothing changed.
    assert_eq!(get_bytes(&owner, "mine", "obj").await, b"owner data");
    let keys: Vec<String> = owner
        .list_objects_v2()
        .bucket("mine")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(keys, ["obj"]);
    let theirs: Vec<String> = other
        .list_objects_v2()
        .bucket("theirs")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(theirs, ["obj"]);
    let parts = crate::harness::all_parts(&owner, "mine", "big", &id).await;
    assert_eq!(parts, [(1, etag.clone(), 8)]);
    let rules = owner.get_bucket_cors().bucket("mine").send().await.unwrap();
    assert_eq!(
        rules.cors_rules()[0].allowed_origins(),
        ["https://owner.example"]
    );
    let life = owner
        .get_bucket_lifecycle_configuration()
        .bucket("mine")
        .send()
        .await
        .unwrap();
    assert_eq!(
        life.rules()[0]
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(3)
    );
    // The owner still does everything.
    complete(&owner, "mine", "big", &id, &[(1, &etag)]).await;
    assert_eq!(get_bytes(&owner, "mine", "big").await, b"part one");
    owner
        .copy_object()
        .bucket("mine")
        .key("copy")
        .copy_source("mine/obj")
        .send()
        .await
        .unwrap();
}
both!(other_key_is_denied, other_key_is_denied);

async fn upload_id_is_bound_to_bucket_and_key(store: Store) {
    let gw = two_keys(store, |_| {}).await;
    let owner = gw.client();
    let other = gw.client_with(OTHER, OTHER_SECRET);
    for b in ["one", "two"] {
        owner.create_bucket().bucket(b).send().await.unwrap();
    }
    other.create_bucket().bucket("theirs").send().await.unwrap();
    let id = create_upload(&owner, "one", "k").await;
    let etag = upload_part(&owner, "one", "k", &id, 1, b"first").await;
    let no_such = 404;
    for (c, b, k) in [
        (&owner, "one", "other-key"),
        (&owner, "two", "k"),
        (&other, "theirs", "k"),
    ] {
        let got = err(c
            .upload_part()
            .bucket(b)
            .key(k)
            .upload_id(&id)
            .part_number(2)
            .body(b"x".to_vec().into())
            .send()
            .await);
        assert_eq!(got, (no_such, "NoSuchUpload".into()), "UploadPart {b}/{k}");
        let got = err(c.list_parts().bucket(b).key(k).upload_id(&id).send().await);
        assert_eq!(got, (no_such, "NoSuchUpload".into()), "ListParts {b}/{k}");
        let got = err(crate::harness::try_complete(c, b, k, &id, &[(1, &etag)]).await);
        assert_eq!(got, (no_such, "NoSuchUpload".into()), "Complete {b}/{k}");
        let got = err(c
            .abort_multipart_upload()
            .bucket(b)
            .key(k)
            .upload_id(&id)
            .send()
            .await);
        assert_eq!(got, (no_such, "NoSuchUpload".into()), "Abort {b}/{k}");
    }
    // Untouched by all that.
    let parts = crate::harness::all_parts(&owner, "one", "k", &id).await;
    assert_eq!(parts, [(1, etag.clone(), 5)]);
    complete(&owner, "one", "k", &id, &[(1, &etag)]).await;
    assert_eq!(get_bytes(&owner, "one", "k").await, b"first");
}
both!(
    upload_id_is_bound_to_bucket_and_key,
    upload_id_is_bound_to_bucket_and_key
);

/// One credential: nothing is checked, so a key that replaced the one which made the buckets (a
/// rotation) still reaches them, as before ownership existed.
async fn single_key_is_unchanged(store: Store) {
    let mut gw = TestGateway::start(store).await;
    let c = gw.client();
    c.create_bucket().bucket("solo").send().await.unwrap();
    put(&c, "solo", "k", b"v").await;
    let id = create_upload(&c, "solo", "up").await;
    gw.stop().await;
    gw.cfg.access_keys = vec![OTHER.into()];
    gw.cfg.secret_keys = vec![OTHER_SECRET.into()];
    gw.restart().await;
    let rotated = gw.client_with(OTHER, OTHER_SECRET);
    assert_eq!(
        bucket_names(&rotated).await,
        BTreeSet::from(["solo".into()])
    );
    assert_eq!(get_bytes(&rotated, "solo", "k").await, b"v");
    let etag = upload_part(&rotated, "solo", "up", &id, 1, b"part").await;
    complete(&rotated, "solo", "up", &id, &[(1, &etag)]).await;
    rotated
        .delete_object()
        .bucket("solo")
        .key("k")
        .send()
        .await
        .unwrap();
}
both!(single_key_is_unchanged, single_key_is_unchanged);

async fn quota(c: &aws_sdk_s3::Client, b: &str, k: &str) {
    assert_eq!(
        err(c.create_multipart_upload().bucket(b).key(k).send().await),
        (403, "QuotaExceeded".into())
    );
}

async fn open_count(c: &aws_sdk_s3::Client, b: &str) -> usize {
    c.list_multipart_uploads()
        .bucket(b)
        .send()
        .await
        .unwrap()
        .uploads()
        .len()
}

async fn cap_on_open_uploads(store: Store) {
    let mut gw = two_keys(store, |cfg| cfg.max_uploads_per_key = 3).await;
    let owner = gw.client();
    let other = gw.client_with(OTHER, OTHER_SECRET);
    owner.create_bucket().bucket("capped").send().await.unwrap();
    other.create_bucket().bucket("spare").send().await.unwrap();
    let ids = [
        create_upload(&owner, "capped", "a").await,
        create_upload(&owner, "capped", "b").await,
        create_upload(&owner, "capped", "c").await,
    ];
    quota(&owner, "capped", "d").await;
    assert_eq!(open_count(&owner, "capped").await, 3);
    // Per key: the other key is not affected.
    create_upload(&other, "spare", "x").await;

    // Aborting one frees a slot, and only one.
    owner
        .abort_multipart_upload()
        .bucket("capped")
        .key("a")
        .upload_id(&ids[0])
        .send()
        .await
        .unwrap();
    let d = create_upload(&owner, "capped", "d").await;
    quota(&owner, "capped", "e").await;
    // So does completing one.
    let etag = upload_part(&owner, "capped", "b", &ids[1], 1, b"bee").await;
    complete(&owner, "capped", "b", &ids[1], &[(1, &etag)]).await;
    let e = create_upload(&owner, "capped", "e").await;
    quota(&owner, "capped", "f").await;

    // A restart keeps the count.
    gw.restart().await;
    let owner = gw.client();
    let other = gw.client_with(OTHER, OTHER_SECRET);
    quota(&owner, "capped", "f").await;
    for (k, id) in [("c", &ids[2]), ("d", &d), ("e", &e)] {
        owner
            .abort_multipart_upload()
            .bucket("capped")
            .key(k)
            .upload_id(id)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(open_count(&owner, "capped").await, 0);

    // A concurrent burst (the other key has 1 open of 3) never overshoots.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let c = other.clone();
            tokio::spawn(async move {
                c.create_multipart_upload()
                    .bucket("spare")
                    .key(format!("burst{i}"))
                    .send()
                    .await
                    .map_err(|e| err::<(), _>(Err(e)))
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err((403, code)) if code == "QuotaExceeded" => refused += 1,
            Err(e) => panic!("unexpected answer {e:?}"),
        }
    }
    assert_eq!((ok, refused), (2, 10));
    assert_eq!(open_count(&other, "spare").await, 3);
    // The legacy API's init counts against the same cap (its users are the keys by default).
    let other_token = gw.legacy_token(OTHER);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("username", OTHER),
            ("token", other_token.as_str()),
            ("filehash", &"ab".repeat(32)),
            ("filesize", "10"),
            ("filename", "f.bin"),
        ])
        .finish();
    let refused = reqwest::Client::new()
        .post(format!("{}/file/mpupload/init", gw.endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let reply: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(reply["code"], 10019);
}
both!(cap_on_open_uploads, cap_on_open_uploads);

/// What a crash leaves between the count and the records (a reservation without upload, an upload
/// without reservation) is repaired at start-up.
async fn restart_reconciles_counts(store: Store) {
    let mut gw = TestGateway::start_with(store, |cfg| cfg.max_uploads_per_key = 3).await;
    let c = gw.client();
    c.create_bucket().bucket("recount").send().await.unwrap();
    let first = create_upload(&c, "recount", "a").await;
    create_upload(&c, "recount", "b").await;
    gw.stop().await;
    {
        let meta = open_meta(&gw).await;
        // Two reservations an init crashed after (old enough to be stale): 4 counted, over the cap.
        let old = now_millis() - 3_600_000;
        for _ in 0..2 {
            assert!(
                meta.reserve_upload(ACCESS_KEY, &UploadId::generate(), old, 0)
                    .await
                    .unwrap()
            );
        }
        // An upload whose count a crash lost: 3 counted.
        meta.release_upload(ACCESS_KEY, &UploadId::parse(&first).unwrap())
            .await
            .unwrap();
        assert_eq!(meta.reserved_uploads().await.unwrap().len(), 3);
    }
    gw.restart().await;
    let c = gw.client();
    // Counted again: exactly the 2 live uploads, so one more fits and the next does not.
    create_upload(&c, "recount", "c").await;
    quota(&c, "recount", "d").await;
}
both!(restart_reconciles_counts, restart_reconciles_counts);

/// The state store a stopped gateway used.
async fn open_meta(gw: &TestGateway) -> Box<dyn MetaStore> {
    match gw.store {
        Store::Embedded => Box::new(
            mpgw::store::meta_embedded::EmbeddedMetaStore::open(&gw.data_dir().join("state.redb"))
                .unwrap(),
        ),
        Store::Redis => Box::new(
            mpgw::store::meta_redis::RedisMetaStore::connect(
                gw.cfg.redis_url.as_deref().unwrap(),
                &gw.cfg.redis_prefix,
                None,
            )
            .await
            .unwrap(),
        ),
    }
}

/// The legacy bucket belongs to the `/file/*` API: an S3 key reads its own user's files there and
/// nothing else, and writes nothing.
async fn legacy_bucket_from_s3(store: Store) {
    let gw = two_keys(store, |_| {}).await;
    let owner = gw.client();
    let other = gw.client_with(OTHER, OTHER_SECRET);
    // A file uploaded through the legacy API by user ACCESS_KEY (the default users are the keys).
    let data = crate::harness::random_bytes(1000);
    crate::legacy::Client::of(&gw, ACCESS_KEY)
        .upload(&data, "doc.txt")
        .await;
    let own_key = format!("{ACCESS_KEY}/doc.txt");
    assert_eq!(get_bytes(&owner, "files", &own_key).await, data);
    let listed = owner
        .list_objects_v2()
        .bucket("files")
        .prefix(format!("{ACCESS_KEY}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 1);
    // GetObjectAttributes reads like GetObject.
    let attrs = |c: &aws_sdk_s3::Client| {
        c.get_object_attributes()
            .bucket("files")
            .key(&own_key)
            .object_attributes(aws_sdk_s3::types::ObjectAttributes::ObjectSize)
            .send()
    };
    assert_eq!(attrs(&owner).await.unwrap().object_size(), Some(1000));
    denied(attrs(&other).await);
    // Another user's files, the whole bucket, and every write are refused.
    denied(
        other
            .get_object()
            .bucket("files")
            .key(&own_key)
            .send()
            .await,
    );
    denied(
        other
            .list_objects_v2()
            .bucket("files")
            .prefix(format!("{ACCESS_KEY}/"))
            .send()
            .await,
    );
    denied(owner.list_objects_v2().bucket("files").send().await);
    denied(
        owner
            .put_object()
            .bucket("files")
            .key(format!("{ACCESS_KEY}/planted"))
            .body(b"x".to_vec().into())
            .send()
            .await,
    );
    denied(
        owner
            .delete_object()
            .bucket("files")
            .key(&own_key)
            .send()
            .await,
    );
    denied(
        owner
            .create_multipart_upload()
            .bucket("files")
            .key(format!("{ACCESS_KEY}/up"))
            .send()
            .await,
    );
    denied(owner.delete_bucket().bucket("files").send().await);
    assert!(!bucket_names(&owner).await.contains("files"));
    assert_eq!(get_bytes(&owner, "files", &own_key).await, data);
}
both!(legacy_bucket_from_s3, legacy_bucket_from_s3);

/// No S3 key may take the legacy bucket's name before the legacy API made it.
async fn legacy_bucket_name_is_reserved(store: Store) {
    let gw = two_keys(store, |_| {}).await;
    assert_eq!(
        err(gw.client().create_bucket().bucket("files").send().await),
        (409, "BucketAlreadyExists".into())
    );
}
both!(
    legacy_bucket_name_is_reserved,
    legacy_bucket_name_is_reserved
);

/// UploadPart's ownership check rides on the upload record it loads anyway: no bucket read.
async fn upload_part_reads_no_bucket(store: Store) {
    let gw = two_keys(store, |_| {}).await;
    let c = gw.client();
    c.create_bucket().bucket("hot").send().await.unwrap();
    let id = create_upload(&c, "hot", "k").await;
    let calls = |text: &str, method: &str| -> f64 {
        let series = format!("mpgw_store_duration_seconds_count{{method=\"{method}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    let scrape = || async {
        operator_get(&format!("{}/metrics", gw.endpoint()))
            .await
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
    for n in 1..=3 {
        upload_part(&c, "hot", "k", &id, n, b"part").await;
    }
    let after = scrape().await;
    let delta = |m: &str| calls(&after, m) - calls(&before, m);
    assert_eq!(delta("get_bucket"), 0.0);
    assert_eq!(delta("get_upload"), 3.0);
    assert_eq!(delta("put_part"), 3.0);
}
both!(upload_part_reads_no_bucket, upload_part_reads_no_bucket);

/// The headers of a 403 the signature refused: AccessDenied with the unsigned headers listed.
#[track_caller]
fn headers_not_signed(resp: &RawResponse, names: &str) {
    resp.assert_error(403, "AccessDenied");
    assert_eq!(
        crate::harness::xml_text(&resp.body, "HeadersNotSigned").as_deref(),
        Some(names)
    );
}

async fn exists(c: &aws_sdk_s3::Client, b: &str, k: &str) -> bool {
    c.head_object().bucket(b).key(k).send().await.is_ok()
}

/// A presigned URL does what its signer signed, and nothing its holder adds: an unsigned
/// x-amz-copy-source does not turn a PUT or UploadPart URL into a copy of the signer's other
/// objects (issue 12, finding 1); x-amz-* values the presigner moved into the signed query are
/// honoured as headers, so a presigned CopyObject copies and never stores the holder's body,
/// and a copy source there is checked for ownership like a header.
async fn presigned_urls_do_only_what_was_signed(store: Store) {
    let gw = two_keys(store, |_| {}).await;
    let owner = gw.client();
    let other = gw.client_with(OTHER, OTHER_SECRET);
    owner.create_bucket().bucket("mine").send().await.unwrap();
    other.create_bucket().bucket("theirs").send().await.unwrap();
    put(&owner, "mine", "secret", b"the owner's secret").await;
    let id = create_upload(&owner, "mine", "big").await;
    let etag = upload_part(&owner, "mine", "big", &id, 1, b"part one").await;

    // A PUT URL handed to someone for one upload; they add a copy source.
    let url = gw.raw("PUT", "/mine/inbox/upload").presigned();
    let resp = gw
        .raw("PUT", &url)
        .auth(Auth::Anonymous)
        .header("x-amz-copy-source", "/mine/secret")
        .body(b"x".to_vec())
        .send()
        .await;
    headers_not_signed(&resp, "x-amz-copy-source");
    assert!(!exists(&owner, "mine", "inbox/upload").await);
    // The URL itself still works, as signed.
    let resp = gw
        .raw("PUT", &url)
        .auth(Auth::Anonymous)
        .body(b"uploaded".to_vec())
        .send()
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(get_bytes(&owner, "mine", "inbox/upload").await, b"uploaded");

    // An UploadPart URL, plus a copy source and range: no UploadPartCopy.
    let url = gw
        .raw("PUT", &format!("/mine/big?partNumber=1&uploadId={id}"))
        .presigned();
    let resp = gw
        .raw("PUT", &url)
        .auth(Auth::Anonymous)
        .header("x-amz-copy-source", "/mine/secret")
        .header("x-amz-copy-source-range", "bytes=0-3")
        .body(b"x".to_vec())
        .send()
        .await;
    headers_not_signed(&resp, "x-amz-copy-source, x-amz-copy-source-range");
    let parts = crate::harness::all_parts(&owner, "mine", "big", &id).await;
    assert_eq!(parts, [(1, etag.clone(), 8)]);

    // Unsigned metadata on a presigned PUT is refused too; signed (hoisted) metadata is kept.
    let url = gw
        .raw("PUT", "/mine/meta?x-amz-meta-note=signed")
        .presigned();
    let resp = gw
        .raw("PUT", &url)
        .auth(Auth::Anonymous)
        .header("x-amz-meta-planted", "1")
        .body(b"m".to_vec())
        .send()
        .await;
    headers_not_signed(&resp, "x-amz-meta-planted");
    let resp = gw
        .raw("PUT", &url)
        .auth(Auth::Anonymous)
        .body(b"m".to_vec())
        .send()
        .await;
    assert_eq!(resp.status, 200);
    let head = owner
        .head_object()
        .bucket("mine")
        .key("meta")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("note"))
            .map(String::as_str),
        Some("signed")
    );
    assert_eq!(head.metadata().map(|m| m.len()), Some(1));

    // A presigned CopyObject (the JS SDK presigner moves x-amz-copy-source into the query):
    // it copies; the holder's body is not what gets stored.
    let url = gw
        .raw("PUT", "/mine/copy?x-amz-copy-source=%2Fmine%2Fsecret")
        .presigned();
    let resp = gw
        .raw("PUT", &url)
        .auth(Auth::Anonymous)
        .body(b"the holder's bytes".to_vec())
        .send()
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(String::from_utf8_lossy(&resp.body).contains("CopyObjectResult"));
    assert_eq!(
        get_bytes(&owner, "mine", "copy").await,
        b"the owner's secret"
    );
    // Signed by the other key, the same copy source is another key's bucket: denied.
    let url = gw
        .raw("PUT", "/theirs/stolen?x-amz-copy-source=%2Fmine%2Fsecret")
        .keys(OTHER, OTHER_SECRET)
        .presigned();
    let resp = gw
        .raw("PUT", &url)
        .auth(Auth::Anonymous)
        .body(b"x".to_vec())
        .send()
        .await;
    resp.assert_error(403, "AccessDenied");
    assert!(!exists(&other, "theirs", "stolen").await);
    assert_eq!(
        get_bytes(&owner, "mine", "secret").await,
        b"the owner's secret"
    );
}
both!(
    presigned_urls_do_only_what_was_signed,
    presigned_urls_do_only_what_was_signed
);

/// SigV2: a sub-resource is signed under the name routing reads, whatever its spelling (issue
/// 12, finding 3), and with --domain the bucket a virtual-host request names is signed (finding
/// 7): the string to sign is botocore's (`/<bucket>/<key>`).
async fn sigv2_signs_what_routes(store: Store) {
    let domain = "s3.own.test";
    let gw = two_keys(store, |c| c.domain = Some(domain.into())).await;
    let owner = gw.client();
    owner.create_bucket().bucket("mine").send().await.unwrap();
    owner.create_bucket().bucket("mine2").send().await.unwrap();
    put(&owner, "mine", "obj", b"first bucket").await;
    put(&owner, "mine2", "obj", b"second bucket").await;
    let id = create_upload(&owner, "mine", "big").await;
    let etag = upload_part(&owner, "mine", "big", &id, 1, b"part one").await;
    let expires = sigv2_expires();
    let v2 = |method: &str, resource: &str| {
        let sts = format!("{method}\n\n\n{expires}\n{resource}");
        sigv2_query(ACCESS_KEY, SECRET_KEY, expires, &sts)
    };

    // A GET URL of the upload's key, plus `%75ploadId`: not a ListParts.
    let q = v2("GET", "/mine/big");
    let resp = gw
        .raw("GET", &format!("/mine/big?{q}&%75ploadId={id}"))
        .auth(Auth::Anonymous)
        .send_tcp()
        .await;
    resp.assert_error(403, "SignatureDoesNotMatch");
    // A DELETE URL of the same key, plus `%75ploadId`: not an Abort.
    let q = v2("DELETE", "/mine/big");
    let resp = gw
        .raw("DELETE", &format!("/mine/big?{q}&%75ploadId={id}"))
        .auth(Auth::Anonymous)
        .send_tcp()
        .await;
    resp.assert_error(403, "SignatureDoesNotMatch");
    let parts = crate::harness::all_parts(&owner, "mine", "big", &id).await;
    assert_eq!(parts, [(1, etag.clone(), 8)]);
    // Signed under its plain name, the sub-resource works.
    let q = v2("GET", &format!("/mine/big?uploadId={id}"));
    let resp = gw
        .raw("GET", &format!("/mine/big?uploadId={id}&{q}"))
        .auth(Auth::Anonymous)
        .send_tcp()
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));

    // Virtual-host style: signed for mine.<domain>, as botocore signs it.
    let port = gw.addr().port();
    let get_on = |bucket: &str, q: String| {
        gw.raw("GET", &format!("/obj?{q}"))
            .auth(Auth::Anonymous)
            .header("host", &format!("{bucket}.{domain}:{port}"))
            .send_tcp()
    };
    let resp = get_on("mine", v2("GET", "/mine/obj")).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(&resp.body[..], b"first bucket");
    // The same URL on another bucket's host, or a signature that names no bucket: refused.
    get_on("mine2", v2("GET", "/mine/obj"))
        .await
        .assert_error(403, "SignatureDoesNotMatch");
    get_on("mine2", v2("GET", "/obj"))
        .await
        .assert_error(403, "SignatureDoesNotMatch");
    // The header form too, for a bucket request (`/` on the host; signed `/mine/`).
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let sts = format!("GET\n\n\n{date}\n/mine/");
    let auth = format!(
        "AWS {ACCESS_KEY}:{}",
        crate::harness::sigv2_signature(SECRET_KEY, &sts)
    );
    let list = |bucket: &str| {
        gw.raw("GET", "/")
            .auth(Auth::Anonymous)
            .header("host", &format!("{bucket}.{domain}:{port}"))
            .header("date", &date)
            .header("authorization", &auth)
            .send_tcp()
    };
    let resp = list("mine").await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(String::from_utf8_lossy(&resp.body).contains("<Key>obj</Key>"));
    list("mine2")
        .await
        .assert_error(403, "SignatureDoesNotMatch");
}
both!(sigv2_signs_what_routes, sigv2_signs_what_routes);
