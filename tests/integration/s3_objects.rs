//! Buckets and single-part objects through aws-sdk-s3: CRUD, ranges, copies, listings.

use std::collections::BTreeSet;

use aws_sdk_s3::types::{Delete, EncodingType, MetadataDirective, ObjectIdentifier};

use crate::harness::*;

const B: &str = "objs";

async fn buckets(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.client();
    c.create_bucket()
        .bucket("alpha")
        .send()
        .await
        .expect("create alpha");
    c.create_bucket()
        .bucket("beta.2-x")
        .send()
        .await
        .expect("create beta");
    // In us-east-1 re-creating one's own bucket answers 200 (see s3_listings for the rest).
    c.create_bucket()
        .bucket("alpha")
        .send()
        .await
        .expect("create alpha again");

    c.head_bucket()
        .bucket("alpha")
        .send()
        .await
        .expect("head existing bucket");
    let (status, _) = err(c.head_bucket().bucket("nope").send().await);
    assert_eq!(status, 404);
    let raw = gw.raw("HEAD", "/nope").send().await;
    assert_eq!(raw.status, 404);
    assert!(raw.body.is_empty(), "HEAD errors carry no body");
    let raw = gw.raw("HEAD", "/alpha").send().await;
    assert_eq!(raw.header("x-amz-bucket-region"), Some("us-east-1"));

    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await
        .expect("list")
        .buckets()
        .iter()
        .map(|b| b.name().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["alpha", "beta.2-x"]);
    let loc = c
        .get_bucket_location()
        .bucket("alpha")
        .send()
        .await
        .expect("location");
    assert!(
        loc.location_constraint()
            .is_none_or(|l| l.as_str().is_empty()),
        "us-east-1 is the empty constraint: {loc:?}"
    );
    assert_err(
        c.get_bucket_location().bucket("nope").send().await,
        404,
        "NoSuchBucket",
    );

    put(&c, "alpha", "k", b"x").await;
    assert_err(
        c.delete_bucket().bucket("alpha").send().await,
        409,
        "BucketNotEmpty",
    );
    assert_err(
        c.delete_bucket().bucket("nope").send().await,
        404,
        "NoSuchBucket",
    );
    c.delete_bucket()
        .bucket("beta.2-x")
        .send()
        .await
        .expect("delete empty bucket");
    let (status, _) = err(c.head_bucket().bucket("beta.2-x").send().await);
    assert_eq!(status, 404);
    c.delete_object()
        .bucket("alpha")
        .key("k")
        .send()
        .await
        .expect("delete object");
    c.delete_bucket()
        .bucket("alpha")
        .send()
        .await
        .expect("delete emptied bucket");
    assert!(
        c.list_buckets()
            .send()
            .await
            .expect("list")
            .buckets()
            .is_empty()
    );

    for bad in ["_x", "aa", "foo..bar", "192.168.5.123", "Upper", "foo-"] {
        let raw = gw.raw("PUT", &format!("/{bad}")).send().await;
        raw.assert_error(400, "InvalidBucketName");
    }
    // And through the SDK where it sends the name as is.
    assert_err(
        c.create_bucket().bucket("foo..bar").send().await,
        400,
        "InvalidBucketName",
    );
    assert!(
        c.list_buckets()
            .send()
            .await
            .expect("list")
            .buckets()
            .is_empty(),
        "invalid names created nothing"
    );

    // Object operations on a missing bucket.
    assert_err(
        c.put_object()
            .bucket("nope")
            .key("k")
            .body(b"x".to_vec().into())
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    assert_err(
        c.get_object().bucket("nope").key("k").send().await,
        404,
        "NoSuchBucket",
    );
    assert_err(
        c.list_objects_v2().bucket("nope").send().await,
        404,
        "NoSuchBucket",
    );
    assert_err(
        c.create_multipart_upload()
            .bucket("nope")
            .key("k")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    assert_err(
        c.delete_object().bucket("nope").key("k").send().await,
        404,
        "NoSuchBucket",
    );
}
both!(buckets, buckets);

/// Regular files in the blob directories of `uploads` (their part files).
fn part_files(gw: &TestGateway, uploads: &[&str]) -> usize {
    uploads
        .iter()
        .map(|id| {
            std::fs::read_dir(gw.data_dir().join("blobs").join(id))
                .map_or(0, |rd| rd.flatten().filter(|e| e.path().is_file()).count())
        })
        .sum()
}

/// DeleteBucket with only incomplete multipart uploads left (`aws s3 rb --force` after a failed
/// Complete): 204, the uploads are aborted with their files, a part sent afterwards is refused,
/// and a bucket re-created under the name sees none of them. An object still keeps the bucket
/// (and its uploads); so does an open upload in the legacy bucket.
async fn delete_bucket_aborts_uploads(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket("rbf").await;
    let a = create_upload(&c, "rbf", "a").await;
    upload_part(&c, "rbf", "a", &a, 1, &random_bytes(1000)).await;
    upload_part(&c, "rbf", "a", &a, 2, &random_bytes(1000)).await;
    let b = create_upload(&c, "rbf", "dir/b").await;
    upload_part(&c, "rbf", "dir/b", &b, 1, &random_bytes(10)).await;
    create_upload(&c, "rbf", "empty").await;
    assert_eq!(part_files(&gw, &[&a, &b]), 3, "three part files stored");

    // An object refuses the deletion and costs no upload.
    put(&c, "rbf", "obj", b"x").await;
    assert_err(
        c.delete_bucket().bucket("rbf").send().await,
        409,
        "BucketNotEmpty",
    );
    let open = c
        .list_multipart_uploads()
        .bucket("rbf")
        .send()
        .await
        .unwrap();
    assert_eq!(open.uploads().len(), 3);
    c.delete_object()
        .bucket("rbf")
        .key("obj")
        .send()
        .await
        .unwrap();

    c.delete_bucket()
        .bucket("rbf")
        .send()
        .await
        .expect("a bucket with only incomplete uploads is deleted");
    assert_eq!(
        part_files(&gw, &[&a, &b]),
        0,
        "the uploads' part files are gone"
    );
    let (status, code) = err(c
        .upload_part()
        .bucket("rbf")
        .key("a")
        .upload_id(&a)
        .part_number(3)
        .body(b"late".to_vec().into())
        .send()
        .await);
    assert_eq!(status, 404);
    assert!(
        code == "NoSuchUpload" || code == "NoSuchBucket",
        "a late part is refused: {code}"
    );
    assert_err(
        c.abort_multipart_upload()
            .bucket("rbf")
            .key("dir/b")
            .upload_id(&b)
            .send()
            .await,
        404,
        "NoSuchUpload",
    );

    c.create_bucket().bucket("rbf").send().await.unwrap();
    let open = c
        .list_multipart_uploads()
        .bucket("rbf")
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "{open:?}");
    assert_err(
        c.upload_part()
            .bucket("rbf")
            .key("a")
            .upload_id(&a)
            .part_number(3)
            .body(b"late".to_vec().into())
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    assert_eq!(part_files(&gw, &[&a]), 0, "the refused part left no file");

    // The legacy bucket keeps its rule: its open uploads belong to the /file/* API.
    let data = random_bytes(100);
    let legacy = crate::legacy::Client::of(&gw, ACCESS_KEY);
    assert_eq!(legacy.init(&data, "f.bin").await.code, 0);
    assert_err(
        c.delete_bucket().bucket("files").send().await,
        409,
        "BucketNotEmpty",
    );
}
both!(delete_bucket_aborts_uploads, delete_bucket_aborts_uploads);

/// DeleteBucket is all or nothing while an object arrives during it: either the bucket is gone
/// with every upload (and the PutObject got NoSuchBucket), or it stays with the object and every
/// upload still open. Never a bucket that refused to go but lost its uploads on the way.
async fn delete_bucket_racing_an_object(store: Store) {
    const UPLOADS: usize = 30;
    let gw = TestGateway::start(store).await;
    let c = gw.client();
    for round in 0..4u64 {
        let b = format!("race{round}");
        c.create_bucket().bucket(&b).send().await.unwrap();
        let mut ids = Vec::new();
        for i in 0..UPLOADS {
            let key = format!("u{i}");
            let id = create_upload(&c, &b, &key).await;
            upload_part(&c, &b, &key, &id, 1, &random_bytes(100)).await;
            ids.push(id);
        }
        let deleting = {
            let (c, b) = (c.clone(), b.clone());
            tokio::spawn(async move { c.delete_bucket().bucket(b).send().await })
        };
        // Land the object while the deletion is under way (it aborts the uploads one by one).
        tokio::time::sleep(std::time::Duration::from_millis(2 + 3 * round)).await;
        let put = c
            .put_object()
            .bucket(&b)
            .key("late")
            .body(b"x".to_vec().into())
            .send()
            .await;
        let deleted = deleting.await.unwrap();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        match (&deleted, &put) {
            (Ok(_), Err(_)) => {
                assert_eq!(err(put).1, "NoSuchBucket", "round {round}");
                assert_err(c.head_bucket().bucket(&b).send().await, 404, "NotFound");
                assert_eq!(part_files(&gw, &ids), 0, "round {round}: part files left");
            }
            (Err(_), Ok(_)) => {
                assert_eq!(err(deleted).1, "BucketNotEmpty", "round {round}");
                let open = c.list_multipart_uploads().bucket(&b).send().await.unwrap();
                assert_eq!(
                    open.uploads().len(),
                    UPLOADS,
                    "round {round}: a refused DeleteBucket aborted uploads"
                );
                assert_eq!(part_files(&gw, &ids), UPLOADS, "round {round}");
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
}
both!(
    delete_bucket_racing_an_object,
    delete_bucket_racing_an_object
);

/// Two gateways on one Redis and one data dir: a DeleteBucket on one aborts the uploads made
/// through the other, whose parts, new uploads and Completes are then refused, and a bucket
/// re-created under the name sees none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_across_gateways() {
    let one = TestGateway::start(Store::Redis).await;
    let (prefix, dir) = (one.cfg.redis_prefix.clone(), one.cfg.data_dir.clone());
    let two = TestGateway::start_with(Store::Redis, |cfg| {
        cfg.redis_prefix = prefix;
        cfg.data_dir = dir;
    })
    .await;
    let (c1, c2) = (one.bucket("shared").await, two.client());
    let mut ids = Vec::new();
    for i in 0..20 {
        let key = format!("k{i}");
        let id = create_upload(&c2, "shared", &key).await;
        upload_part(&c2, "shared", &key, &id, 1, &random_bytes(1000)).await;
        ids.push((key, id));
    }
    // Parts keep arriving through the second gateway while the first deletes the bucket.
    let sender = {
        let (c2, ids) = (c2.clone(), ids.clone());
        tokio::spawn(async move {
            let mut refused = 0;
            for round in 2..6 {
                for (key, id) in &ids {
                    let r = c2
                        .upload_part()
                        .bucket("shared")
                        .key(key)
                        .upload_id(id)
                        .part_number(round)
                        .body(random_bytes(1000).into())
                        .send()
                        .await;
                    if let Err(e) = r {
                        assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));
                        refused += 1;
                    }
                }
            }
            refused
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c1.delete_bucket().bucket("shared").send().await.unwrap();
    let refused = sender.await.unwrap();
    assert!(refused > 0, "no part was sent after the deletion");
    let all: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(part_files(&one, &all), 0, "part files left");
    let (key, id) = &ids[0];
    let late = c2
        .complete_multipart_upload()
        .bucket("shared")
        .key(key)
        .upload_id(id)
        .send()
        .await;
    assert_eq!(
        late.unwrap_err()
            .raw_response()
            .map(|r| r.status().as_u16()),
        Some(404)
    );
    assert_err(
        c2.create_multipart_upload()
            .bucket("shared")
            .key("new")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    c2.create_bucket().bucket("shared").send().await.unwrap();
    let open = c1
        .list_multipart_uploads()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "{open:?}");
}

async fn put_get_head_delete(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    assert_eq!(
        put(&c, B, "bar-key", b"bar").await,
        "\"37b51d194a7513e45b56f6524f2d51f2\""
    );
    let data = random_bytes(100_000);
    let etag = put(&c, B, "dir/obj", &data).await;
    assert_eq!(etag, quoted_md5(&data));
    let get = c
        .get_object()
        .bucket(B)
        .key("dir/obj")
        .send()
        .await
        .expect("get");
    assert_eq!(get.e_tag(), Some(etag.as_str()));
    assert_eq!(get.content_length(), Some(100_000));
    assert_eq!(get.accept_ranges(), Some("bytes"));
    assert!(get.last_modified().is_some());
    assert_same_bytes(&read_all(get).await, &data, "GET");
    let head = c
        .head_object()
        .bucket(B)
        .key("dir/obj")
        .send()
        .await
        .expect("head");
    assert_eq!(
        (head.e_tag(), head.content_length()),
        (Some(etag.as_str()), Some(100_000))
    );

    // Stored without a Content-Type (the SDK always sends one): S3's default comes back.
    let raw = gw.raw("PUT", "/objs/no-type").body("x").send().await;
    assert_eq!(
        (raw.status, raw.header("etag")),
        (200, Some(quoted_md5(b"x").as_str()))
    );
    let head = c
        .head_object()
        .bucket(B)
        .key("no-type")
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.content_type(),
        Some("binary/octet-stream"),
        "default Content-Type"
    );
    c.delete_object()
        .bucket(B)
        .key("no-type")
        .send()
        .await
        .expect("delete");

    c.delete_object()
        .bucket(B)
        .key("dir/obj")
        .send()
        .await
        .expect("delete");
    assert_err(
        c.get_object().bucket(B).key("dir/obj").send().await,
        404,
        "NoSuchKey",
    );
    let (status, _) = err(c.head_object().bucket(B).key("dir/obj").send().await);
    assert_eq!(status, 404);
    // Deleting what is not there is still 204.
    c.delete_object()
        .bucket(B)
        .key("dir/obj")
        .send()
        .await
        .expect("delete missing");
    assert_eq!(
        gw.raw("DELETE", "/objs/never-existed").send().await.status,
        204
    );
    assert_eq!(gw.raw("DELETE", "/objs/bar-key").send().await.status, 204);
    assert!(list_keys(&c, B).await.is_empty());

    // Keys are literal: no path normalisation.
    let odd = ["a//b", "x/../y", "./z", "dir/", "%41", "ends with space "];
    for k in odd {
        put(&c, B, k, k.as_bytes()).await;
    }
    for k in odd {
        assert_eq!(get_bytes(&c, B, k).await, k.as_bytes(), "GET {k:?}");
    }
    let listed: BTreeSet<String> = list_keys(&c, B).await.into_iter().collect();
    assert_eq!(listed, odd.iter().map(|s| s.to_string()).collect());
}
both!(put_get_head_delete, put_get_head_delete);

async fn ranges(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let data: Vec<u8> = (0..100u8).collect();
    put(&c, B, "k", &data).await;
    let get_range = |r: &'static str| {
        let c = c.clone();
        async move { c.get_object().bucket(B).key("k").range(r).send().await }
    };
    for (r, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=-7", 93, 99),
        ("bytes=5-", 5, 99),
        ("bytes=90-200", 90, 99),
        ("bytes=99-99", 99, 99),
    ] {
        let out = get_range(r).await.unwrap_or_else(|e| panic!("{r}: {e:?}"));
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {start}-{end}/100").as_str()),
            "{r}"
        );
        assert_eq!(out.content_length(), Some(end - start + 1), "{r}");
        assert_eq!(
            read_all(out).await,
            data[start as usize..=end as usize],
            "{r}"
        );
    }
    let raw = gw
        .raw("GET", "/objs/k")
        .header("range", "bytes=0-9")
        .send()
        .await;
    assert_eq!(raw.status, 206);
    assert_eq!(raw.header("accept-ranges"), Some("bytes"));
    assert_eq!(&raw.body[..], &data[..10]);
    assert_err(get_range("bytes=100-").await, 416, "InvalidRange");
    assert_err(get_range("bytes=500-600").await, 416, "InvalidRange");
    let raw = gw
        .raw("GET", "/objs/k")
        .header("range", "bytes=100-")
        .send()
        .await;
    raw.assert_error(416, "InvalidRange");
    assert_eq!(raw.header("content-range"), Some("bytes */100"));

    // Never a whole-object checksum on a range: the SDK (checksum mode on) would reject it.
    let out = c
        .get_object()
        .bucket(B)
        .key("k")
        .range("bytes=10-19")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("ranged GET with checksum mode");
    assert_eq!(
        out.checksum_crc32(),
        None,
        "whole-object checksum on a range"
    );
    assert_eq!(read_all(out).await, data[10..20]);
    let full = c
        .get_object()
        .bucket(B)
        .key("k")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("get");
    assert!(
        full.checksum_crc32().is_some(),
        "the SDK's PutObject sent a CRC32 that is kept"
    );
    let head = c
        .head_object()
        .bucket(B)
        .key("k")
        .range("bytes=0-9")
        .send()
        .await
        .expect("ranged HEAD");
    assert_eq!(head.content_length(), Some(10));
    // s3-tests' suffix case on 11 bytes.
    put(&c, B, "eleven", b"testcontent").await;
    let out = c
        .get_object()
        .bucket(B)
        .key("eleven")
        .range("bytes=-7")
        .send()
        .await
        .expect("suffix");
    assert_eq!(out.content_range(), Some("bytes 4-10/11"));
    assert_eq!(read_all(out).await, b"content");
    // A range on an empty object is unsatisfiable.
    put(&c, B, "empty", b"").await;
    assert_err(
        c.get_object()
            .bucket(B)
            .key("empty")
            .range("bytes=0-0")
            .send()
            .await,
        416,
        "InvalidRange",
    );
}
both!(ranges, ranges);

async fn delete_objects(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    for k in ["a", "b", "c", "d", "e"] {
        put(&c, B, k, k.as_bytes()).await;
    }
    let ids = |keys: &[&str], quiet: bool| -> Delete {
        Delete::builder()
            .set_objects(Some(
                keys.iter()
                    .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                    .collect(),
            ))
            .quiet(quiet)
            .build()
            .unwrap()
    };
    // Verbose: every key is reported deleted, also a missing one (as S3 does).
    let out = c
        .delete_objects()
        .bucket(B)
        .delete(ids(&["a", "b", "missing"], false))
        .send()
        .await
        .expect("delete objects");
    let deleted: BTreeSet<&str> = out.deleted().iter().map(|d| d.key().unwrap()).collect();
    assert_eq!(deleted, BTreeSet::from(["a", "b", "missing"]));
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    // Quiet: nothing reported on success.
    let out = c
        .delete_objects()
        .bucket(B)
        .delete(ids(&["c"], true))
        .send()
        .await
        .expect("quiet delete");
    assert!(out.deleted().is_empty() && out.errors().is_empty());
    // VersionId "null" (s3-tests' cleanup) is accepted.
    let d = Delete::builder()
        .objects(
            ObjectIdentifier::builder()
                .key("d")
                .version_id("null")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let out = c
        .delete_objects()
        .bucket(B)
        .delete(d)
        .send()
        .await
        .expect("delete with VersionId null");
    assert_eq!(
        out.deleted()
            .iter()
            .map(|d| d.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["d"]
    );
    let left = list_keys(&c, B).await;
    assert_eq!(left, vec!["e"]);
    // Raw, without Content-MD5 or any checksum header.
    let raw = gw
        .raw("POST", "/objs?delete")
        .body("<Delete><Object><Key>e</Key></Object></Delete>")
        .send()
        .await;
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
    assert_eq!(xml_texts(&raw.body, "Key"), vec!["e"]);
    assert!(list_keys(&c, B).await.is_empty());
    // More than 1,000 keys: refused.
    let mut many = String::from("<Delete>");
    for i in 0..1001 {
        many.push_str(&format!("<Object><Key>k{i}</Key></Object>"));
    }
    many.push_str("</Delete>");
    gw.raw("POST", "/objs?delete")
        .body(many)
        .send()
        .await
        .assert_error(400, "MalformedXML");
    // No <Object>: MalformedXML.
    gw.raw("POST", "/objs?delete")
        .body("<Delete></Delete>")
        .send()
        .await
        .assert_error(400, "MalformedXML");
}
both!(delete_objects, delete_objects);

async fn copy_object(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let data = random_bytes(10_000);
    c.put_object()
        .bucket(B)
        .key("src")
        .content_type("text/x-src")
        .metadata("origin", "source")
        .body(data.clone().into())
        .send()
        .await
        .expect("put src");
    // COPY (default): metadata kept.
    let out = c
        .copy_object()
        .bucket(B)
        .key("dst")
        .copy_source("objs/src")
        .send()
        .await
        .expect("copy");
    assert_eq!(
        out.copy_object_result().and_then(|r| r.e_tag()),
        Some(quoted_md5(&data).as_str())
    );
    let head = c
        .head_object()
        .bucket(B)
        .key("dst")
        .send()
        .await
        .expect("head dst");
    assert_eq!(head.content_type(), Some("text/x-src"));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("source")
    );
    assert_eq!(head.e_tag(), Some(quoted_md5(&data).as_str()));
    assert_same_bytes(&get_bytes(&c, B, "dst").await, &data, "copy");
    // REPLACE: the request's metadata.
    c.copy_object()
        .bucket(B)
        .key("dst2")
        .copy_source("objs/src")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/x-new")
        .metadata("fresh", "yes")
        .send()
        .await
        .expect("copy replace");
    let head = c
        .head_object()
        .bucket(B)
        .key("dst2")
        .send()
        .await
        .expect("head dst2");
    assert_eq!(head.content_type(), Some("application/x-new"));
    let meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("fresh").map(String::as_str), Some("yes"));
    assert!(
        !meta.contains_key("origin"),
        "REPLACE must drop the old metadata: {meta:?}"
    );
    // Onto itself: refused without REPLACE, allowed with it.
    assert_err(
        c.copy_object()
            .bucket(B)
            .key("src")
            .copy_source("objs/src")
            .send()
            .await,
        400,
        "InvalidRequest",
    );
    c.copy_object()
        .bucket(B)
        .key("src")
        .copy_source("objs/src")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("origin", "rewritten")
        .send()
        .await
        .expect("self copy with REPLACE");
    let head = c
        .head_object()
        .bucket(B)
        .key("src")
        .send()
        .await
        .expect("head src");
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("rewritten")
    );
    assert_same_bytes(&get_bytes(&c, B, "src").await, &data, "self-copied object");
    // A missing source; a failed source condition.
    assert_err(
        c.copy_object()
            .bucket(B)
            .key("x")
            .copy_source("objs/none")
            .send()
            .await,
        404,
        "NoSuchKey",
    );
    let r = c
        .copy_object()
        .bucket(B)
        .key("x")
        .copy_source("objs/src")
        .copy_source_if_match("\"0000\"")
        .send()
        .await;
    assert_err(r, 412, "PreconditionFailed");
    let r = c
        .copy_object()
        .bucket(B)
        .key("x")
        .copy_source("objs/src")
        .copy_source_if_none_match(quoted_md5(&data))
        .send()
        .await;
    assert_err(r, 412, "PreconditionFailed");
    assert_eq!(
        err(c.head_object().bucket(B).key("x").send().await).0,
        404,
        "refused copies create nothing"
    );
    // Deleting the source leaves the copy intact.
    c.delete_object()
        .bucket(B)
        .key("src")
        .send()
        .await
        .expect("delete src");
    assert_same_bytes(
        &get_bytes(&c, B, "dst").await,
        &data,
        "copy after source deletion",
    );
    // A key with special characters as the source (URL-encoded in the header).
    put(&c, B, "sp ace+plus/ü", b"special").await;
    c.copy_object()
        .bucket(B)
        .key("special-copy")
        .copy_source("objs/sp%20ace%2Bplus/%C3%BC")
        .send()
        .await
        .expect("copy special");
    assert_eq!(get_bytes(&c, B, "special-copy").await, b"special");
}
both!(copy_object, copy_object);

async fn keys(c: &aws_sdk_s3::Client, names: impl IntoIterator<Item = String>) {
    for k in names {
        put(c, B, &k, k.as_bytes()).await;
    }
}

async fn list_v2_paging(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let flat: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    keys(&c, flat.clone()).await;

    // 25 keys, 10 per page: 10, 10, 5.
    let mut token: Option<String> = None;
    let mut got = Vec::new();
    for (page_no, (n, truncated)) in [(10, true), (10, true), (5, false)].into_iter().enumerate() {
        let out = c
            .list_objects_v2()
            .bucket(B)
            .max_keys(10)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list");
        assert_eq!(out.contents().len(), n, "page {page_no}");
        assert_eq!(out.key_count(), Some(n as i32));
        assert_eq!(out.is_truncated(), Some(truncated), "page {page_no}");
        assert_eq!(out.max_keys(), Some(10));
        assert_eq!(
            out.continuation_token(),
            token.as_deref(),
            "ContinuationToken echo"
        );
        assert_eq!(out.next_continuation_token().is_some(), truncated);
        for o in out.contents() {
            assert_eq!(o.size(), Some(3));
            assert_eq!(
                o.e_tag(),
                Some(quoted_md5(o.key().unwrap().as_bytes()).as_str())
            );
            assert!(o.owner().is_none(), "Owner only with fetch-owner");
        }
        got.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        token = out.next_continuation_token().map(str::to_owned);
    }
    assert_eq!(got, flat, "no duplicates, nothing missing, in order");

    let out = c
        .list_objects_v2()
        .bucket(B)
        .start_after("k19")
        .send()
        .await
        .expect("start-after");
    assert_eq!(
        out.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["k20", "k21", "k22", "k23", "k24"]
    );
    assert_eq!(out.start_after(), Some("k19"));
    let out = c
        .list_objects_v2()
        .bucket(B)
        .prefix("k1")
        .send()
        .await
        .expect("prefix");
    assert_eq!(out.contents().len(), 10);
    assert!(
        out.contents()
            .iter()
            .all(|o| o.key().unwrap().starts_with("k1"))
    );
    let out = c
        .list_objects_v2()
        .bucket(B)
        .prefix("k1")
        .fetch_owner(true)
        .max_keys(1)
        .send()
        .await
        .expect("fetch-owner");
    assert_eq!(
        out.contents()[0].owner().and_then(|o| o.id()),
        Some(ACCESS_KEY)
    );
    let out = c
        .list_objects_v2()
        .bucket(B)
        .max_keys(0)
        .send()
        .await
        .expect("max-keys 0");
    assert!(out.contents().is_empty());

    // With a delimiter: directories roll up, and paging counts keys + prefixes.
    let mut nested = Vec::new();
    for d in 0..4 {
        for f in 0..3 {
            nested.push(format!("dir{d}/f{f}"));
        }
    }
    nested.push("dir1/sub/deep".into());
    keys(&c, nested).await;
    let mut want: Vec<String> = flat.clone();
    want.extend((0..4).map(|d| format!("dir{d}/")));
    want.sort();
    for max in [1, 3, 10, 1000] {
        let mut token: Option<String> = None;
        let mut seen = Vec::new();
        for page_no in 0.. {
            assert!(page_no <= 30, "paging does not end (max {max})");
            let out = c
                .list_objects_v2()
                .bucket(B)
                .delimiter("/")
                .max_keys(max)
                .set_continuation_token(token.clone())
                .send()
                .await
                .expect("list");
            let n = out.contents().len() + out.common_prefixes().len();
            assert!(n <= max as usize);
            assert_eq!(out.key_count(), Some(n as i32));
            seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
            seen.extend(
                out.common_prefixes()
                    .iter()
                    .map(|p| p.prefix().unwrap().to_owned()),
            );
            if out.is_truncated() != Some(true) {
                break;
            }
            token = out.next_continuation_token().map(str::to_owned);
        }
        seen.sort();
        assert_eq!(seen, want, "max-keys {max}");
    }
    // A bad continuation token.
    assert_err(
        c.list_objects_v2()
            .bucket(B)
            .continuation_token("!!not a token!!")
            .send()
            .await,
        400,
        "InvalidArgument",
    );
}
both!(list_v2_paging, list_v2_paging);

/// A delimiter listing whose last entry is a common prefix (not a key) must end.
async fn listing_ends_with_common_prefix(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    keys(
        &c,
        ["dir1/f0", "dir1/f1", "dir1/sub/deep", "top"].map(String::from),
    )
    .await;
    let out = c
        .list_objects_v2()
        .bucket(B)
        .prefix("dir1/")
        .delimiter("/")
        .send()
        .await
        .expect("ListObjectsV2 prefix=dir1/ delimiter=/");
    assert_eq!(
        out.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["dir1/f0", "dir1/f1"]
    );
    assert_eq!(
        out.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        vec!["dir1/sub/"]
    );
    let out = c
        .list_objects()
        .bucket(B)
        .prefix("dir1/")
        .delimiter("/")
        .send()
        .await
        .expect("ListObjects prefix=dir1/ delimiter=/");
    assert_eq!(
        out.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        vec!["dir1/sub/"]
    );
    // Without a prefix: "top" sorts last, but the listing of "dir1/" alone ends in a prefix too.
    let out = c
        .list_objects_v2()
        .bucket(B)
        .delimiter("/")
        .send()
        .await
        .expect("ListObjectsV2 delimiter=/");
    assert_eq!(
        out.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        vec!["dir1/"]
    );
    assert_eq!(
        out.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["top"]
    );
    c.delete_object()
        .bucket(B)
        .key("top")
        .send()
        .await
        .expect("delete");
    let out = c
        .list_objects_v2()
        .bucket(B)
        .delimiter("/")
        .send()
        .await
        .expect("ListObjectsV2 delimiter=/ (only a prefix)");
    assert_eq!(
        out.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        vec!["dir1/"]
    );
    assert!(out.contents().is_empty());
}
both!(
    listing_ends_with_common_prefix,
    listing_ends_with_common_prefix
);

async fn list_v1(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let flat: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    keys(&c, flat.clone()).await;
    keys(
        &c,
        ["d/a".to_string(), "d/b".to_string(), "e/x".to_string()],
    )
    .await;

    // Without a delimiter: page by the last key (no NextMarker).
    let mut marker: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let out = c
            .list_objects()
            .bucket(B)
            .max_keys(10)
            .set_marker(marker.clone())
            .send()
            .await
            .expect("list v1");
        assert_eq!(
            out.marker().unwrap_or_default(),
            marker.as_deref().unwrap_or_default(),
            "Marker echo"
        );
        assert!(
            out.next_marker().is_none(),
            "NextMarker only with a delimiter"
        );
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if out.is_truncated() != Some(true) {
            break;
        }
        marker = seen.last().cloned();
    }
    let mut want = flat.clone();
    want.extend(["d/a".to_string(), "d/b".to_string(), "e/x".to_string()]);
    want.sort();
    assert_eq!(seen, want);

    // With a delimiter: NextMarker drives paging, prefixes count.
    let mut marker: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..20 {
        let out = c
            .list_objects()
            .bucket(B)
            .delimiter("/")
            .max_keys(4)
            .set_marker(marker.clone())
            .send()
            .await
            .expect("list v1");
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        seen.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        if out.is_truncated() != Some(true) {
            break;
        }
        marker = Some(
            out.next_marker()
                .expect("NextMarker with a delimiter")
                .to_owned(),
        );
    }
    let mut want = flat.clone();
    want.extend(["d/".to_string(), "e/".to_string()]);
    want.sort();
    seen.sort();
    assert_eq!(seen, want);
    let out = c
        .list_objects()
        .bucket(B)
        .prefix("d/")
        .send()
        .await
        .expect("prefix");
    assert_eq!(
        out.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["d/a", "d/b"]
    );
    // v1 always echoes <Marker>.
    let raw = gw.raw("GET", "/objs?max-keys=1").send().await;
    assert_eq!(raw.status, 200);
    assert!(
        String::from_utf8_lossy(&raw.body).contains("<Marker></Marker>")
            || String::from_utf8_lossy(&raw.body).contains("<Marker/>")
    );
    // An empty delimiter means none (rclone).
    let raw = gw
        .raw("GET", "/objs?delimiter=&max-keys=1000&prefix=")
        .send()
        .await;
    assert_eq!(xml_texts(&raw.body, "Key").len(), 28);
    assert!(xml_texts(&raw.body, "CommonPrefixes").is_empty());
}
both!(list_v1, list_v1);

async fn url_encoding(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    // "ünïz-last" sorts last: the listing does not end in a common prefix (that case is
    // listing_ends_with_common_prefix).
    let names = [
        "foo+1/bar",
        "quux ab/baz",
        "plain",
        "ünï/cödé",
        "a&b<c>.txt",
        "ünïz-last",
    ];
    for k in names {
        put(&c, B, k, k.as_bytes()).await;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .expect("utf-8")
            .into_owned()
    };
    // The Rust SDK does not decode: the server must have encoded with %2B / %20 and left "/".
    let out = c
        .list_objects_v2()
        .bucket(B)
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("list");
    assert_eq!(out.encoding_type(), Some(&EncodingType::Url));
    let raw_keys: Vec<&str> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert!(raw_keys.contains(&"foo%2B1/bar"), "{raw_keys:?}");
    assert!(raw_keys.contains(&"quux%20ab/baz"), "{raw_keys:?}");
    let decoded: BTreeSet<String> = raw_keys.iter().map(|k| decode(k)).collect();
    assert_eq!(decoded, names.iter().map(|s| s.to_string()).collect());

    let out = c
        .list_objects_v2()
        .bucket(B)
        .encoding_type(EncodingType::Url)
        .delimiter("/")
        .send()
        .await
        .expect("list");
    let prefixes: Vec<&str> = out
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(prefixes, vec!["foo%2B1/", "quux%20ab/", "%C3%BCn%C3%AF/"]);
    let out = c
        .list_objects()
        .bucket(B)
        .encoding_type(EncodingType::Url)
        .prefix("quux ab/")
        .send()
        .await
        .expect("list v1");
    assert_eq!(
        out.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["quux%20ab/baz"]
    );
    // ListObjects v1 echoes its Prefix unencoded, as AWS does (botocore does not decode it).
    assert_eq!(out.prefix(), Some("quux ab/"));

    // Without encoding-type the keys come back literally.
    let literal: BTreeSet<String> = list_keys(&c, B).await.into_iter().collect();
    assert_eq!(literal, names.iter().map(|s| s.to_string()).collect());
    for k in names {
        assert_eq!(get_bytes(&c, B, k).await, k.as_bytes(), "GET {k:?}");
    }
    // Uploads listing with encoding-type too.
    create_upload(&c, B, "up load+1").await;
    let out = c
        .list_multipart_uploads()
        .bucket(B)
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("list uploads");
    assert_eq!(
        out.uploads()
            .iter()
            .map(|u| u.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["up%20load%2B1"]
    );
}
both!(url_encoding, url_encoding);

async fn metadata_and_content_type(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    c.put_object()
        .bucket(B)
        .key("m")
        .content_type("image/png")
        .content_language("de")
        .content_encoding("identity")
        .cache_control("no-cache")
        .metadata("one", "1")
        .metadata("Two-Words", "hello world")
        .body(b"png".to_vec().into())
        .send()
        .await
        .expect("put");
    let head = c
        .head_object()
        .bucket(B)
        .key("m")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(head.content_language(), Some("de"));
    assert_eq!(head.content_encoding(), Some("identity"));
    assert_eq!(head.cache_control(), Some("no-cache"));
    let meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("one").map(String::as_str), Some("1"));
    assert_eq!(
        meta.get("two-words").map(String::as_str),
        Some("hello world"),
        "{meta:?}"
    );
    // response-* overrides.
    let out = c
        .get_object()
        .bucket(B)
        .key("m")
        .response_content_type("text/override")
        .send()
        .await
        .expect("get");
    assert_eq!(out.content_type(), Some("text/override"));

    // Non-ASCII metadata comes back as AWS answers it: its bytes read as ISO-8859-1 and
    // RFC 2047 encoded in UTF-8 (expected value from Python's email.header; more in s3_listings).
    let value = "grüße ✓";
    let raw = gw
        .raw("PUT", "/objs/utf8")
        .header("x-amz-meta-greeting", value)
        .body("x")
        .send()
        .await;
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
    let raw = gw.raw("HEAD", "/objs/utf8").send().await;
    let got = raw
        .headers
        .get("x-amz-meta-greeting")
        .map(|v| v.as_bytes().to_vec());
    assert_eq!(
        got.as_deref(),
        Some(&b"=?UTF-8?B?Z3LDg8K8w4PCn2Ugw6LCnMKT?="[..])
    );
}
both!(metadata_and_content_type, metadata_and_content_type);

async fn zero_byte_and_overwrite(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    assert_eq!(
        put(&c, B, "empty", b"").await,
        "\"d41d8cd98f00b204e9800998ecf8427e\""
    );
    let out = c
        .get_object()
        .bucket(B)
        .key("empty")
        .send()
        .await
        .expect("get empty");
    assert_eq!(out.content_length(), Some(0));
    assert!(read_all(out).await.is_empty());
    let head = c
        .head_object()
        .bucket(B)
        .key("empty")
        .send()
        .await
        .expect("head empty");
    assert_eq!(head.content_length(), Some(0));

    let (a, b) = (random_bytes(3000), random_bytes(1234));
    put(&c, B, "k", &a).await;
    let etag = put(&c, B, "k", &b).await;
    assert_eq!(etag, quoted_md5(&b));
    assert_same_bytes(&get_bytes(&c, B, "k").await, &b, "overwritten object");
    let out = c
        .list_objects_v2()
        .bucket(B)
        .prefix("k")
        .send()
        .await
        .expect("list");
    assert_eq!(out.contents().len(), 1);
    assert_eq!(out.contents()[0].size(), Some(1234));
    assert_eq!(out.contents()[0].e_tag(), Some(etag.as_str()));
    // A multipart object overwritten by a PutObject and back.
    let id = create_upload(&c, B, "k").await;
    let e = upload_part(&c, B, "k", &id, 1, &a).await;
    assert_same_bytes(
        &get_bytes(&c, B, "k").await,
        &b,
        "an open upload does not touch the object",
    );
    complete(&c, B, "k", &id, &[(1, &e)]).await;
    assert_same_bytes(
        &get_bytes(&c, B, "k").await,
        &a,
        "completed over a PutObject",
    );
    put(&c, B, "k", &b).await;
    assert_same_bytes(
        &get_bytes(&c, B, "k").await,
        &b,
        "PutObject over a multipart object",
    );
}
both!(zero_byte_and_overwrite, zero_byte_and_overwrite);

/// Conditional PutObject (spec 5.10).
async fn conditional_put(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let etag = put(&c, B, "k", b"v1").await;
    let r = c
        .put_object()
        .bucket(B)
        .key("k")
        .if_none_match("*")
        .body(b"v2".to_vec().into())
        .send()
        .await;
    assert_err(r, 412, "PreconditionFailed");
    let r = c
        .put_object()
        .bucket(B)
        .key("k")
        .if_match("\"0123456789abcdef0123456789abcdef\"")
        .body(b"v2".to_vec().into())
        .send()
        .await;
    assert_err(r, 412, "PreconditionFailed");
    assert_eq!(
        get_bytes(&c, B, "k").await,
        b"v1",
        "refused conditional writes change nothing"
    );
    c.put_object()
        .bucket(B)
        .key("k")
        .if_match(&etag)
        .body(b"v2".to_vec().into())
        .send()
        .await
        .expect("If-Match with the current ETag");
    assert_eq!(get_bytes(&c, B, "k").await, b"v2");
    c.put_object()
        .bucket(B)
        .key("fresh")
        .if_none_match("*")
        .body(b"new".to_vec().into())
        .send()
        .await
        .expect("If-None-Match * on a new key");
    let r = c
        .put_object()
        .bucket(B)
        .key("missing")
        .if_match(&etag)
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_err(r, 404, "NoSuchKey");
}
both!(conditional_put, conditional_put);

async fn conditional_complete(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let etag = put(&c, B, "k", b"v2").await;
    let id = create_upload(&c, B, "k").await;
    let e = upload_part(&c, B, "k", &id, 1, b"multipart").await;
    let r = complete_with(&c, B, "k", &id, &[(1, &e)], |r| r.if_none_match("*")).await;
    assert_err(r, 412, "PreconditionFailed");
    assert_eq!(get_bytes(&c, B, "k").await, b"v2");
    let r = complete_with(&c, B, "k", &id, &[(1, &e)], |r| {
        r.if_match("\"0123456789abcdef0123456789abcdef\"")
    })
    .await;
    assert_err(r, 412, "PreconditionFailed");
    assert_eq!(get_bytes(&c, B, "k").await, b"v2");
    let out = complete_with(&c, B, "k", &id, &[(1, &e)], |r| r.if_match(&etag))
        .await
        .expect("Complete with If-Match of the current object");
    assert!(out.e_tag().is_some());
    assert_eq!(get_bytes(&c, B, "k").await, b"multipart");
}
both!(conditional_complete, conditional_complete);

/// Bodies the SDK streams from a file (aws-chunked with a trailing checksum).
async fn streaming_bodies(store: Store) {
    use aws_sdk_s3::primitives::ByteStream;
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * MIB + 12345);
    let path = dir.path().join("file.bin");
    std::fs::write(&path, &data).unwrap();
    let out = c
        .put_object()
        .bucket(B)
        .key("streamed")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .expect("streamed PutObject");
    assert_eq!(out.e_tag(), Some(quoted_md5(&data).as_str()));
    assert_same_bytes(
        &get_bytes(&c, B, "streamed").await,
        &data,
        "streamed PutObject",
    );

    let id = create_upload(&c, B, "streamed-mp").await;
    let part1 = random_bytes(5 * MIB);
    let p1 = dir.path().join("p1");
    std::fs::write(&p1, &part1).unwrap();
    let up = c
        .upload_part()
        .bucket(B)
        .key("streamed-mp")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_path(&p1).await.unwrap())
        .send()
        .await
        .expect("streamed UploadPart");
    assert_eq!(up.e_tag(), Some(quoted_md5(&part1).as_str()));
    let e2 = upload_part(&c, B, "streamed-mp", &id, 2, &data).await;
    complete(
        &c,
        B,
        "streamed-mp",
        &id,
        &[(1, up.e_tag().unwrap()), (2, &e2)],
    )
    .await;
    assert_same_bytes(
        &get_bytes(&c, B, "streamed-mp").await,
        &[part1, data].concat(),
        "streamed multipart",
    );
}
both!(streaming_bodies, streaming_bodies);

/// A reader that started before an overwrite (or delete) gets the old object, whole.
async fn read_during_overwrite(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let old = random_bytes(12 * MIB);
    put(&c, B, "k", &old).await;
    let mut out = c.get_object().bucket(B).key("k").send().await.expect("get");
    let mut got = Vec::new();
    let first = out
        .body
        .next()
        .await
        .expect("a first chunk")
        .expect("chunk");
    got.extend_from_slice(&first);
    put(&c, B, "k", b"new").await;
    c.delete_object()
        .bucket(B)
        .key("k")
        .send()
        .await
        .expect("delete");
    while let Some(chunk) = out.body.next().await {
        got.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_same_bytes(&got, &old, "read across an overwrite and a delete");
}
both!(read_during_overwrite, read_during_overwrite);

/// Listings that cross the stores' internal 1,000-entry pages.
async fn listing_across_internal_pages(store: Store) {
    use futures_util::StreamExt as _;
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let mut names: Vec<String> = (0..1100).map(|i| format!("d/{i:04}")).collect();
    names.extend(["a".to_string(), "e/1".to_string(), "z".to_string()]);
    futures_util::stream::iter(names.clone())
        .map(|k| {
            let c = c.clone();
            async move { put(&c, B, &k, b"").await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    names.sort();
    // Without a delimiter: 1000 + 103.
    let p1 = c.list_objects_v2().bucket(B).send().await.expect("page 1");
    assert_eq!(p1.contents().len(), 1000);
    assert_eq!(p1.is_truncated(), Some(true));
    let p2 = c
        .list_objects_v2()
        .bucket(B)
        .continuation_token(p1.next_continuation_token().unwrap())
        .send()
        .await
        .expect("page 2");
    assert_eq!(p2.is_truncated(), Some(false));
    let all: Vec<String> = p1
        .contents()
        .iter()
        .chain(p2.contents())
        .map(|o| o.key().unwrap().to_owned())
        .collect();
    assert_eq!(all, names);
    // With a delimiter, the 1,100 keys under d/ are one prefix.
    let out = c
        .list_objects_v2()
        .bucket(B)
        .delimiter("/")
        .send()
        .await
        .expect("delimited");
    assert_eq!(
        out.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["a", "z"]
    );
    assert_eq!(
        out.common_prefixes()
            .iter()
            .map(|p| p.prefix().unwrap())
            .collect::<Vec<_>>(),
        vec!["d/", "e/"]
    );
    assert_eq!(out.is_truncated(), Some(false));
    let out = c
        .list_objects_v2()
        .bucket(B)
        .delimiter("/")
        .max_keys(2)
        .send()
        .await
        .expect("delimited, 2");
    assert_eq!(out.key_count(), Some(2));
    let next = c
        .list_objects_v2()
        .bucket(B)
        .delimiter("/")
        .max_keys(2)
        .continuation_token(out.next_continuation_token().expect("token"))
        .send()
        .await
        .expect("delimited, page 2");
    let rest: Vec<&str> = next
        .contents()
        .iter()
        .map(|o| o.key().unwrap())
        .chain(next.common_prefixes().iter().map(|p| p.prefix().unwrap()))
        .collect();
    assert_eq!(rest, vec!["z", "e/"], "after [a, d/]: e/ and z");
    // start-after inside the big prefix.
    let out = c
        .list_objects_v2()
        .bucket(B)
        .start_after("d/1095")
        .send()
        .await
        .expect("start-after");
    assert_eq!(
        out.contents()
            .iter()
            .map(|o| o.key().unwrap())
            .collect::<Vec<_>>(),
        vec!["d/1096", "d/1097", "d/1098", "d/1099", "e/1", "z"]
    );
}
both!(listing_across_internal_pages, listing_across_internal_pages);
