//! Multipart uploads through aws-sdk-s3: ETags, listing, abort, replay, replacement, restarts,
//! concurrency, metadata, partNumber reads and checksums.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
};
use base64::Engine as _;
use futures_util::StreamExt as _;

use crate::harness::*;

const B: &str = "mpu";

/// The 3 parts of the reference object: 5 MiB, 5 MiB, 1 MiB of random bytes.
fn three_parts() -> Vec<Vec<u8>> {
    vec![
        random_bytes(5 * MIB),
        random_bytes(5 * MIB),
        random_bytes(MIB),
    ]
}

/// Uploads `parts` as parts 1..=N of a new upload and completes it; returns (upload id, ETag).
async fn multipart_object(
    c: &aws_sdk_s3::Client,
    key: &str,
    parts: &[Vec<u8>],
) -> (String, String) {
    let id = create_upload(c, B, key).await;
    let mut etags = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        etags.push(upload_part(c, B, key, &id, i as i32 + 1, p).await);
    }
    let listed: Vec<(i32, &str)> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| (i as i32 + 1, e.as_str()))
        .collect();
    let etag = complete(c, B, key, &id, &listed).await;
    (id, etag)
}

async fn happy_path(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let parts = three_parts();
    let id = create_upload(&c, B, "big/object.bin").await;
    for (i, p) in parts.iter().enumerate() {
        let etag = upload_part(&c, B, "big/object.bin", &id, i as i32 + 1, p).await;
        assert_eq!(etag, quoted_md5(p), "part {} ETag", i + 1);
    }
    let listed = all_parts(&c, B, "big/object.bin", &id).await;
    let want: Vec<(i32, String, i64)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| (i as i32 + 1, quoted_md5(p), p.len() as i64))
        .collect();
    assert_eq!(listed, want);

    let etags: Vec<String> = parts.iter().map(|p| quoted_md5(p)).collect();
    let out = try_complete(
        &c,
        B,
        "big/object.bin",
        &id,
        &[(1, &etags[0]), (2, &etags[1]), (3, &etags[2])],
    )
    .await
    .expect("complete");
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let want_etag = multipart_etag(&refs);
    assert_eq!(out.e_tag(), Some(want_etag.as_str()));
    assert_eq!(out.bucket(), Some(B));
    assert_eq!(out.key(), Some("big/object.bin"));
    assert!(
        out.location()
            .is_some_and(|l| l.ends_with("/mpu/big/object.bin")),
        "location {:?}",
        out.location()
    );

    let got = get_bytes(&c, B, "big/object.bin").await;
    assert_same_bytes(&got, &parts.concat(), "completed object");
    let head = c
        .head_object()
        .bucket(B)
        .key("big/object.bin")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length(), Some(11 * MIB as i64));
    assert_eq!(head.e_tag(), Some(want_etag.as_str()));
    assert_eq!(head.parts_count(), None, "parts count only with partNumber");

    // The upload is gone from the listings; the object is listed.
    let ups = c
        .list_multipart_uploads()
        .bucket(B)
        .send()
        .await
        .expect("list uploads");
    assert!(
        ups.uploads().is_empty(),
        "completed upload still listed: {:?}",
        ups.uploads()
    );
    let objs = c.list_objects_v2().bucket(B).send().await.expect("list");
    let keys: Vec<_> = objs
        .contents()
        .iter()
        .map(|o| (o.key().unwrap(), o.size().unwrap(), o.e_tag().unwrap()))
        .collect();
    assert_eq!(
        keys,
        vec![("big/object.bin", 11 * MIB as i64, want_etag.as_str())]
    );
}
both!(happy_path, happy_path);

async fn list_parts_pagination(store: Store) {
    const N: i32 = 2500;
    let gw = TestGateway::start_with(store, |cfg| cfg.min_part_size = 1).await;
    let c = gw.bucket(B).await;
    let id = create_upload(&c, B, "many").await;
    let data = |n: i32| format!("part-{n:05}").into_bytes();
    let results: Vec<(i32, String)> = futures_util::stream::iter(1..=N)
        .map(|n| {
            let (c, id) = (c.clone(), id.clone());
            async move { (n, upload_part(&c, B, "many", &id, n, &data(n)).await) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for (n, etag) in &results {
        assert_eq!(*etag, quoted_md5(&data(*n)), "part {n}");
    }

    // Pages of 1000: 1..=1000, 1001..=2000, 2001..=2500.
    let mut marker: Option<String> = None;
    let mut seen = Vec::new();
    for (page_no, (first, last, truncated)) in
        [(1, 1000, true), (1001, 2000, true), (2001, 2500, false)]
            .into_iter()
            .enumerate()
    {
        let page = c
            .list_parts()
            .bucket(B)
            .key("many")
            .upload_id(&id)
            .max_parts(1000)
            .set_part_number_marker(marker.clone())
            .send()
            .await
            .expect("list parts");
        let numbers: Vec<i32> = page
            .parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect();
        assert_eq!(
            numbers,
            (first..=last).collect::<Vec<_>>(),
            "page {page_no}"
        );
        assert_eq!(
            page.is_truncated(),
            Some(truncated),
            "page {page_no} IsTruncated"
        );
        assert_eq!(page.max_parts(), Some(1000));
        assert_eq!(
            page.part_number_marker(),
            Some(marker.as_deref().unwrap_or("0")),
            "page {page_no} marker echo"
        );
        assert_eq!(
            page.next_part_number_marker(),
            Some(last.to_string().as_str()),
            "page {page_no} next marker"
        );
        assert_eq!(page.upload_id(), Some(id.as_str()));
        for p in page.parts() {
            let n = p.part_number().unwrap();
            assert_eq!(
                p.e_tag(),
                Some(quoted_md5(&data(n)).as_str()),
                "part {n} etag"
            );
            assert_eq!(p.size(), Some(data(n).len() as i64));
            assert!(p.last_modified().is_some());
        }
        seen.extend(numbers);
        marker = page.next_part_number_marker().map(str::to_owned);
    }
    assert_eq!(seen.len(), N as usize);

    // Small pages from the middle.
    let page = c
        .list_parts()
        .bucket(B)
        .key("many")
        .upload_id(&id)
        .max_parts(7)
        .part_number_marker("1234")
        .send()
        .await
        .expect("list");
    let numbers: Vec<i32> = page
        .parts()
        .iter()
        .map(|p| p.part_number().unwrap())
        .collect();
    assert_eq!(numbers, (1235..=1241).collect::<Vec<_>>());
    assert_eq!(page.is_truncated(), Some(true));
    assert_eq!(page.next_part_number_marker(), Some("1241"));
    // Exactly at the end: 7 parts left, not truncated.
    let page = c
        .list_parts()
        .bucket(B)
        .key("many")
        .upload_id(&id)
        .max_parts(7)
        .part_number_marker("2493")
        .send()
        .await
        .expect("list");
    let numbers: Vec<i32> = page
        .parts()
        .iter()
        .map(|p| p.part_number().unwrap())
        .collect();
    assert_eq!(numbers, (2494..=2500).collect::<Vec<_>>());
    assert_eq!(page.is_truncated(), Some(false));
    // Past the end.
    let page = c
        .list_parts()
        .bucket(B)
        .key("many")
        .upload_id(&id)
        .part_number_marker("2500")
        .send()
        .await
        .expect("list");
    assert!(page.parts().is_empty());
    assert_eq!(page.is_truncated(), Some(false));
    // No max-parts: 1000 (the cap), also when more is asked.
    for max in [None, Some(5000)] {
        let page = c
            .list_parts()
            .bucket(B)
            .key("many")
            .upload_id(&id)
            .set_max_parts(max)
            .send()
            .await
            .expect("list");
        assert_eq!(page.parts().len(), 1000, "max-parts {max:?}");
        assert_eq!(page.is_truncated(), Some(true));
    }

    // And all 2,500 complete into one object.
    let mut sorted = results.clone();
    sorted.sort();
    let listed: Vec<(i32, &str)> = sorted.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let etag = complete(&c, B, "many", &id, &listed).await;
    let all: Vec<Vec<u8>> = (1..=N).map(data).collect();
    let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    assert_eq!(etag, multipart_etag(&refs));
    assert_same_bytes(
        &get_bytes(&c, B, "many").await,
        &all.concat(),
        "2500-part object",
    );
}
both!(list_parts_pagination, list_parts_pagination);

async fn list_multipart_uploads(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    // Creation order differs from key order; "c" has three uploads ordered by initiation.
    let mut ids = std::collections::HashMap::new();
    for key in ["c", "b/1", "a/2", "c", "a/1", "c"] {
        let id = create_upload(&c, B, key).await;
        ids.entry(key).or_insert_with(Vec::new).push(id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let want: Vec<(String, String)> = [
        ("a/1", 0),
        ("a/2", 0),
        ("b/1", 0),
        ("c", 0),
        ("c", 1),
        ("c", 2),
    ]
    .iter()
    .map(|(k, i)| (k.to_string(), ids[k][*i].clone()))
    .collect();
    let pairs = |out: &aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput| -> Vec<(String, String)> {
        out.uploads().iter().map(|u| (u.key().unwrap().to_owned(), u.upload_id().unwrap().to_owned())).collect()
    };
    let prefixes = |out: &aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput| -> Vec<String> {
        out.common_prefixes().iter().map(|p| p.prefix().unwrap().to_owned()).collect()
    };

    let all = c
        .list_multipart_uploads()
        .bucket(B)
        .send()
        .await
        .expect("list");
    assert_eq!(pairs(&all), want);
    assert_eq!(all.is_truncated(), Some(false));
    for u in all.uploads() {
        assert!(u.initiated().is_some());
        assert_eq!(u.initiator().and_then(|i| i.id()), Some(ACCESS_KEY));
    }

    let out = c
        .list_multipart_uploads()
        .bucket(B)
        .prefix("a/")
        .send()
        .await
        .expect("list");
    assert_eq!(pairs(&out), want[..2].to_vec());
    assert_eq!(out.prefix(), Some("a/"));

    let out = c
        .list_multipart_uploads()
        .bucket(B)
        .delimiter("/")
        .send()
        .await
        .expect("list");
    assert_eq!(pairs(&out), want[3..].to_vec());
    assert_eq!(prefixes(&out), vec!["a/", "b/"]);
    assert_eq!(out.delimiter(), Some("/"));

    // A listing that ends in a common prefix.
    let out = c
        .list_multipart_uploads()
        .bucket(B)
        .prefix("a")
        .delimiter("/")
        .send()
        .await
        .expect("list");
    assert!(pairs(&out).is_empty());
    assert_eq!(prefixes(&out), vec!["a/"]);

    let out = c
        .list_multipart_uploads()
        .bucket(B)
        .key_marker("b/1")
        .send()
        .await
        .expect("list");
    assert_eq!(
        pairs(&out),
        want[3..].to_vec(),
        "key-marker alone: keys after the marker"
    );

    let out = c
        .list_multipart_uploads()
        .bucket(B)
        .key_marker("c")
        .upload_id_marker(&ids["c"][0])
        .send()
        .await
        .expect("list");
    assert_eq!(
        pairs(&out),
        want[4..].to_vec(),
        "key-marker + upload-id-marker: later uploads of that key"
    );

    // Paging two at a time walks the same list.
    let (mut km, mut im): (Option<String>, Option<String>) = (None, None);
    let mut walked = Vec::new();
    for page_no in 0.. {
        assert!(page_no < 10, "paging does not end");
        let out = c
            .list_multipart_uploads()
            .bucket(B)
            .max_uploads(2)
            .set_key_marker(km.clone())
            .set_upload_id_marker(im.clone())
            .send()
            .await
            .expect("list");
        assert_eq!(out.max_uploads(), Some(2));
        let got = pairs(&out);
        assert!(got.len() <= 2);
        walked.extend(got.clone());
        if out.is_truncated() != Some(true) {
            break;
        }
        let last = got.last().expect("truncated page with uploads");
        assert_eq!(out.next_key_marker(), Some(last.0.as_str()));
        assert_eq!(out.next_upload_id_marker(), Some(last.1.as_str()));
        km = out.next_key_marker().map(str::to_owned);
        im = out.next_upload_id_marker().map(str::to_owned);
    }
    assert_eq!(walked, want);

    // Aborted and completed uploads disappear.
    c.abort_multipart_upload()
        .bucket(B)
        .key("c")
        .upload_id(&ids["c"][1])
        .send()
        .await
        .expect("abort");
    let e = upload_part(&c, B, "a/1", &ids["a/1"][0], 1, b"x").await;
    complete(&c, B, "a/1", &ids["a/1"][0], &[(1, &e)]).await;
    let out = c
        .list_multipart_uploads()
        .bucket(B)
        .send()
        .await
        .expect("list");
    let remaining: Vec<_> = want
        .iter()
        .filter(|(k, i)| !(k == "a/1" || *i == ids["c"][1]))
        .cloned()
        .collect();
    assert_eq!(pairs(&out), remaining);
}
both!(list_multipart_uploads, list_multipart_uploads);

async fn abort(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    put(&c, B, "k", b"existing object").await;
    let id = create_upload(&c, B, "k").await;
    let etag = upload_part(&c, B, "k", &id, 1, b"part one").await;
    assert_eq!(
        blob_files(gw.data_dir(), &id).len(),
        1,
        "one part file before abort"
    );
    c.abort_multipart_upload()
        .bucket(B)
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .expect("abort");
    assert!(
        blob_files(gw.data_dir(), &id).is_empty(),
        "abort leaves part files behind"
    );

    assert_err(
        c.upload_part()
            .bucket(B)
            .key("k")
            .upload_id(&id)
            .part_number(2)
            .body(b"x".to_vec().into())
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    assert_upload_gone(&c, B, "k", &id).await;
    assert_err(
        try_complete(&c, B, "k", &id, &[(1, &etag)]).await,
        404,
        "NoSuchUpload",
    );
    assert_err(
        c.abort_multipart_upload()
            .bucket(B)
            .key("k")
            .upload_id(&id)
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    // The object under the key is untouched, and the upload is no longer listed.
    assert_eq!(get_bytes(&c, B, "k").await, b"existing object");
    let ups = c
        .list_multipart_uploads()
        .bucket(B)
        .send()
        .await
        .expect("list");
    assert!(ups.uploads().is_empty());
}
both!(abort, abort);

async fn repeated_complete(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let (p1, p2) = (random_bytes(5 * MIB), random_bytes(1000));
    let id = create_upload(&c, B, "k").await;
    let e1 = upload_part(&c, B, "k", &id, 1, &p1).await;
    let e2 = upload_part(&c, B, "k", &id, 2, &p2).await;
    let first = complete(&c, B, "k", &id, &[(1, &e1), (2, &e2)]).await;
    assert_eq!(first, multipart_etag(&[&p1, &p2]));
    let again = complete(&c, B, "k", &id, &[(1, &e1), (2, &e2)]).await;
    assert_eq!(again, first, "a repeated Complete replays the result");
    // A different part list is not a replay.
    assert_err(
        try_complete(&c, B, "k", &id, &[(1, &e1)]).await,
        404,
        "NoSuchUpload",
    );
    // The completed upload takes no more parts.
    assert_err(
        c.upload_part()
            .bucket(B)
            .key("k")
            .upload_id(&id)
            .part_number(3)
            .body(b"x".to_vec().into())
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    assert_upload_gone(&c, B, "k", &id).await;
    assert_same_bytes(
        &get_bytes(&c, B, "k").await,
        &[p1, p2].concat(),
        "object after replays",
    );
}
both!(repeated_complete, repeated_complete);

async fn reupload_replaces_part(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let (old, new, tail) = (
        random_bytes(5 * MIB),
        random_bytes(5 * MIB + 17),
        random_bytes(10),
    );
    let id = create_upload(&c, B, "k").await;
    let e_old = upload_part(&c, B, "k", &id, 1, &old).await;
    let e_tail = upload_part(&c, B, "k", &id, 2, &tail).await;
    let e_new = upload_part(&c, B, "k", &id, 1, &new).await;
    assert_ne!(e_old, e_new);
    let parts = all_parts(&c, B, "k", &id).await;
    assert_eq!(
        parts,
        vec![
            (1, e_new.clone(), new.len() as i64),
            (2, e_tail.clone(), 10)
        ]
    );
    assert_eq!(
        blob_files(gw.data_dir(), &id).len(),
        2,
        "the replaced part's file is removed"
    );
    // The old ETag no longer names part 1.
    assert_err(
        try_complete(&c, B, "k", &id, &[(1, &e_old), (2, &e_tail)]).await,
        400,
        "InvalidPart",
    );
    let etag = complete(&c, B, "k", &id, &[(1, &e_new), (2, &e_tail)]).await;
    assert_eq!(etag, multipart_etag(&[&new, &tail]));
    assert_same_bytes(
        &get_bytes(&c, B, "k").await,
        &[new, tail].concat(),
        "object with the re-uploaded part",
    );
}
both!(reupload_replaces_part, reupload_replaces_part);

async fn duplicate_part_numbers_last_wins(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let (x, y, z) = (
        random_bytes(5 * MIB),
        random_bytes(5 * MIB),
        random_bytes(100),
    );
    let id = create_upload(&c, B, "k").await;
    let ex = upload_part(&c, B, "k", &id, 1, &x).await;
    let ez = upload_part(&c, B, "k", &id, 2, &z).await;
    let ey = upload_part(&c, B, "k", &id, 1, &y).await;
    // The stale entry last: it names data that is gone.
    assert_err(
        try_complete(&c, B, "k", &id, &[(1, &ey), (1, &ex), (2, &ez)]).await,
        400,
        "InvalidPart",
    );
    // The current entry last (s3-tests' resend case): the later entry wins.
    let etag = complete(&c, B, "k", &id, &[(1, &ex), (1, &ey), (2, &ez)]).await;
    assert_eq!(etag, multipart_etag(&[&y, &z]));
    assert_same_bytes(&get_bytes(&c, B, "k").await, &[y, z].concat(), "object");
}
both!(
    duplicate_part_numbers_last_wins,
    duplicate_part_numbers_last_wins
);

async fn unlisted_parts_are_dropped(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let parts = three_parts();
    let id = create_upload(&c, B, "k").await;
    let mut e = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        e.push(upload_part(&c, B, "k", &id, i as i32 + 1, p).await);
    }
    let etag = complete(&c, B, "k", &id, &[(1, &e[0]), (3, &e[2])]).await;
    assert_eq!(etag, multipart_etag(&[&parts[0], &parts[2]]));
    let got = get_bytes(&c, B, "k").await;
    assert_same_bytes(
        &got,
        &[parts[0].clone(), parts[2].clone()].concat(),
        "object without part 2",
    );
    let head = c
        .head_object()
        .bucket(B)
        .key("k")
        .part_number(2)
        .send()
        .await
        .expect("head part 2");
    assert_eq!(head.parts_count(), Some(2));
    assert_eq!(
        head.content_length(),
        Some(MIB as i64),
        "the object's 2nd part is upload part 3"
    );
    assert_eq!(
        blob_files(gw.data_dir(), &id).len(),
        2,
        "the unlisted part's file is removed"
    );
}
both!(unlisted_parts_are_dropped, unlisted_parts_are_dropped);

async fn restart_between_parts(store: Store) {
    let mut gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let parts = three_parts();
    let id = create_upload(&c, B, "k").await;
    let e1 = upload_part(&c, B, "k", &id, 1, &parts[0]).await;
    gw.restart().await;
    let c = gw.client();
    let e2 = upload_part(&c, B, "k", &id, 2, &parts[1]).await;
    gw.restart().await;
    let c = gw.client();
    let e3 = upload_part(&c, B, "k", &id, 3, &parts[2]).await;
    let etag = complete(&c, B, "k", &id, &[(1, &e1), (2, &e2), (3, &e3)]).await;
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    assert_eq!(etag, multipart_etag(&refs));
    assert_same_bytes(
        &get_bytes(&c, B, "k").await,
        &parts.concat(),
        "object across restarts",
    );
}
both!(restart_between_parts, restart_between_parts);

async fn concurrent_same_part_number(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let id = create_upload(&c, B, "k").await;
    let payloads: Vec<Vec<u8>> = (0..8).map(|_| random_bytes(512 * 1024)).collect();
    let mut tasks = Vec::new();
    for p in &payloads {
        let (c, id, p) = (c.clone(), id.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            upload_part(&c, B, "k", &id, 1, &p).await
        }));
    }
    for (t, p) in tasks.into_iter().zip(&payloads) {
        assert_eq!(
            t.await.expect("task"),
            quoted_md5(p),
            "every concurrent upload is acknowledged with its own ETag"
        );
    }
    let parts = all_parts(&c, B, "k", &id).await;
    assert_eq!(parts.len(), 1, "{parts:?}");
    let winner = payloads
        .iter()
        .position(|p| quoted_md5(p) == parts[0].1)
        .expect("listed ETag is one of the payloads");
    assert_eq!(
        blob_files(gw.data_dir(), &id).len(),
        1,
        "replaced part files are removed"
    );
    complete(&c, B, "k", &id, &[(1, &parts[0].1)]).await;
    let got = get_bytes(&c, B, "k").await;
    assert_same_bytes(&got, &payloads[winner], "object = the listed payload");
}
both!(concurrent_same_part_number, concurrent_same_part_number);

async fn metadata_round_trip(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let out = c
        .create_multipart_upload()
        .bucket(B)
        .key("doc.txt")
        .content_type("text/plain; charset=utf-8")
        .cache_control("max-age=60")
        .content_disposition("attachment; filename=\"doc.txt\"")
        .metadata("color", "blue")
        .metadata("md5chksum", "abc123==")
        .send()
        .await
        .expect("create");
    let id = out.upload_id().unwrap().to_owned();
    let e = upload_part(&c, B, "doc.txt", &id, 1, b"hello metadata").await;
    complete(&c, B, "doc.txt", &id, &[(1, &e)]).await;
    let head = c
        .head_object()
        .bucket(B)
        .key("doc.txt")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(head.cache_control(), Some("max-age=60"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"doc.txt\"")
    );
    let meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.len(), 2, "{meta:?}");
    assert_eq!(meta.get("color").map(String::as_str), Some("blue"));
    assert_eq!(meta.get("md5chksum").map(String::as_str), Some("abc123=="));
    let get = c
        .get_object()
        .bucket(B)
        .key("doc.txt")
        .send()
        .await
        .expect("get");
    assert_eq!(get.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(
        get.metadata()
            .and_then(|m| m.get("color"))
            .map(String::as_str),
        Some("blue")
    );
    assert_eq!(read_all(get).await, b"hello metadata");
}
both!(metadata_round_trip, metadata_round_trip);

async fn get_by_part_number(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let parts = three_parts();
    let (_, etag) = multipart_object(&c, "k", &parts).await;
    let total = 11 * MIB;
    let mut offset = 0;
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = c
            .get_object()
            .bucket(B)
            .key("k")
            .part_number(n)
            .send()
            .await
            .expect("get part");
        assert_eq!(out.parts_count(), Some(3));
        assert_eq!(out.content_length(), Some(p.len() as i64));
        let range = format!("bytes {offset}-{}/{total}", offset + p.len() - 1);
        assert_eq!(out.content_range(), Some(range.as_str()));
        assert_eq!(
            out.e_tag(),
            Some(etag.as_str()),
            "partNumber reads carry the object's ETag"
        );
        assert_same_bytes(&read_all(out).await, p, "part read");
        let head = c
            .head_object()
            .bucket(B)
            .key("k")
            .part_number(n)
            .send()
            .await
            .expect("head part");
        assert_eq!(head.parts_count(), Some(3));
        assert_eq!(head.content_length(), Some(p.len() as i64));
        offset += p.len();
    }
    // Ranges across part boundaries read from both parts.
    let whole = parts.concat();
    for (a, b) in [
        (5 * MIB - 10, 5 * MIB + 9),
        (MIB, 10 * MIB + 5),
        (10 * MIB - 1, 10 * MIB),
    ] {
        let out = c
            .get_object()
            .bucket(B)
            .key("k")
            .range(format!("bytes={a}-{b}"))
            .send()
            .await
            .expect("ranged get");
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {a}-{b}/{total}").as_str())
        );
        assert_same_bytes(&read_all(out).await, &whole[a..=b], "range across parts");
    }
    let raw = gw.raw("GET", "/mpu/k?partNumber=2").send().await;
    assert_eq!(raw.status, 206);
    assert_eq!(raw.header("x-amz-mp-parts-count"), Some("3"));
    assert_eq!(
        raw.header("content-range"),
        Some(format!("bytes {}-{}/{total}", 5 * MIB, 10 * MIB - 1).as_str())
    );
    assert_same_bytes(&raw.body, &parts[1], "raw part 2");
    assert_err(
        c.get_object()
            .bucket(B)
            .key("k")
            .part_number(4)
            .send()
            .await,
        400,
        "InvalidPart",
    );
    // A part number with a Range is refused.
    let raw = gw
        .raw("GET", "/mpu/k?partNumber=1")
        .header("range", "bytes=0-1")
        .send()
        .await;
    raw.assert_error(400, "InvalidRequest");

    // A single-part object: part 1 is the whole object, part 2 does not exist.
    put(&c, B, "single", b"0123456789").await;
    let out = c
        .get_object()
        .bucket(B)
        .key("single")
        .part_number(1)
        .send()
        .await
        .expect("get part 1");
    assert_eq!(read_all(out).await, b"0123456789");
    assert_err(
        c.get_object()
            .bucket(B)
            .key("single")
            .part_number(2)
            .send()
            .await,
        400,
        "InvalidPart",
    );
}
both!(get_by_part_number, get_by_part_number);

fn crc32(data: &[u8]) -> [u8; 4] {
    (crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, data) as u32).to_be_bytes()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

async fn checksum_crc32(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let parts = [random_bytes(5 * MIB), random_bytes(123_457)];
    for typ in [None, Some(ChecksumType::FullObject)] {
        let key = format!("crc-{typ:?}");
        let out = c
            .create_multipart_upload()
            .bucket(B)
            .key(&key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_checksum_type(typ.clone())
            .send()
            .await
            .expect("create");
        assert_eq!(out.checksum_algorithm(), Some(&ChecksumAlgorithm::Crc32));
        let want_type = typ.clone().unwrap_or(ChecksumType::Composite);
        assert_eq!(out.checksum_type(), Some(&want_type));
        let id = out.upload_id().unwrap().to_owned();
        let mut completed_parts = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let n = i as i32 + 1;
            let up = c
                .upload_part()
                .bucket(B)
                .key(&key)
                .upload_id(&id)
                .part_number(n)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(p.clone().into())
                .send()
                .await
                .expect("upload part");
            assert_eq!(
                up.checksum_crc32(),
                Some(b64(&crc32(p)).as_str()),
                "part {n} checksum echo"
            );
            completed_parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(up.e_tag().unwrap())
                    .checksum_crc32(up.checksum_crc32().unwrap())
                    .build(),
            );
        }
        let listed = c
            .list_parts()
            .bucket(B)
            .key(&key)
            .upload_id(&id)
            .send()
            .await
            .expect("list parts");
        assert_eq!(listed.checksum_algorithm(), Some(&ChecksumAlgorithm::Crc32));
        assert_eq!(
            listed.parts()[0].checksum_crc32(),
            Some(b64(&crc32(&parts[0])).as_str())
        );
        let done = c
            .complete_multipart_upload()
            .bucket(B)
            .key(&key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed_parts))
                    .build(),
            )
            .send()
            .await
            .expect("complete");
        let want = match want_type {
            ChecksumType::Composite => {
                let raw: Vec<u8> = parts.iter().flat_map(|p| crc32(p)).collect();
                format!("{}-2", b64(&crc32(&raw)))
            }
            _ => b64(&crc32(&parts.concat())),
        };
        assert_eq!(
            done.checksum_crc32(),
            Some(want.as_str()),
            "{key}: Complete checksum"
        );
        assert_eq!(done.checksum_type(), Some(&want_type));
        let head = c
            .head_object()
            .bucket(B)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("head");
        assert_eq!(
            head.checksum_crc32(),
            Some(want.as_str()),
            "{key}: HEAD checksum"
        );
        assert_eq!(head.checksum_type(), Some(&want_type));
        // A part read carries that part's checksum.
        let part = c
            .get_object()
            .bucket(B)
            .key(&key)
            .part_number(1)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("get part 1");
        assert_eq!(
            part.checksum_crc32(),
            Some(b64(&crc32(&parts[0])).as_str()),
            "{key}: part 1 checksum"
        );
        assert_same_bytes(&read_all(part).await, &parts[0], "part 1");
        // GET with checksum mode: the SDK validates what it can.
        let get = c
            .get_object()
            .bucket(B)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("get");
        assert_same_bytes(&read_all(get).await, &parts.concat(), "checksummed object");
    }
}
both!(checksum_crc32, checksum_crc32);

/// A per-part checksum in Complete that differs from the stored one is refused; the upload stays
/// completable.
async fn checksum_mismatch_in_complete(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let out = c
        .create_multipart_upload()
        .bucket(B)
        .key("k")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .expect("create");
    let id = out.upload_id().unwrap().to_owned();
    let data = random_bytes(1000);
    let up = c
        .upload_part()
        .bucket(B)
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(data.clone().into())
        .send()
        .await
        .expect("upload part");
    let bad = CompletedPart::builder()
        .part_number(1)
        .e_tag(up.e_tag().unwrap())
        .checksum_crc32(b64(&crc32(b"other")))
        .build();
    let r = c
        .complete_multipart_upload()
        .bucket(B)
        .key("k")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().parts(bad).build())
        .send()
        .await;
    assert_err(r, 400, "InvalidPart");
    let good = CompletedPart::builder()
        .part_number(1)
        .e_tag(up.e_tag().unwrap())
        .checksum_crc32(up.checksum_crc32().unwrap())
        .build();
    c.complete_multipart_upload()
        .bucket(B)
        .key("k")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().parts(good).build())
        .send()
        .await
        .expect("complete after a refused one");
    assert_eq!(get_bytes(&c, B, "k").await, data);
}
both!(checksum_mismatch_in_complete, checksum_mismatch_in_complete);

/// Many uploads on one key at once stay separate.
async fn parallel_uploads_same_key(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let mut ids = HashSet::new();
    for _ in 0..5 {
        assert!(
            ids.insert(create_upload(&c, B, "same").await),
            "upload ids are never reused"
        );
    }
    let ids: Vec<String> = ids.into_iter().collect();
    let datas: Vec<Vec<u8>> = (0..5).map(|_| random_bytes(1000)).collect();
    for (id, d) in ids.iter().zip(&datas) {
        upload_part(&c, B, "same", id, 1, d).await;
    }
    for (id, d) in ids.iter().zip(&datas) {
        let parts = all_parts(&c, B, "same", id).await;
        assert_eq!(parts, vec![(1, quoted_md5(d), 1000)]);
    }
    // The last Complete decides the object.
    for (id, d) in ids.iter().zip(&datas) {
        complete(&c, B, "same", id, &[(1, &quoted_md5(d))]).await;
        assert_eq!(&get_bytes(&c, B, "same").await, d);
    }
}
both!(parallel_uploads_same_key, parallel_uploads_same_key);

/// Concurrent Completes of one upload: one does the work, the others replay its result.
async fn concurrent_completes(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let (p1, p2) = (random_bytes(5 * MIB), random_bytes(777));
    let id = create_upload(&c, B, "k").await;
    let e1 = upload_part(&c, B, "k", &id, 1, &p1).await;
    let e2 = upload_part(&c, B, "k", &id, 2, &p2).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (c, id, e1, e2) = (c.clone(), id.clone(), e1.clone(), e2.clone());
        tasks.push(tokio::spawn(async move {
            try_complete(&c, B, "k", &id, &[(1, &e1), (2, &e2)]).await
        }));
    }
    let want = multipart_etag(&[&p1, &p2]);
    for t in tasks {
        let out = t
            .await
            .expect("task")
            .expect("every concurrent Complete succeeds");
        assert_eq!(out.e_tag(), Some(want.as_str()));
    }
    assert_same_bytes(&get_bytes(&c, B, "k").await, &[p1, p2].concat(), "object");
}
both!(concurrent_completes, concurrent_completes);

/// Part uploads racing an Abort either succeed or get NoSuchUpload; nothing is left behind.
async fn abort_races_part_uploads(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    for round in 0..3 {
        let id = create_upload(&c, B, "k").await;
        let mut tasks = Vec::new();
        for n in 1..=12 {
            let (c2, id2) = (c.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let body = random_bytes(MIB);
                c2.upload_part()
                    .bucket(B)
                    .key("k")
                    .upload_id(&id2)
                    .part_number(n)
                    .body(body.into())
                    .send()
                    .await
            }));
            if n == 6 {
                let r = c
                    .abort_multipart_upload()
                    .bucket(B)
                    .key("k")
                    .upload_id(&id)
                    .send()
                    .await;
                r.unwrap_or_else(|e| {
                    panic!("round {round}: Abort racing part uploads failed: {e:?}")
                });
            }
        }
        for t in tasks {
            let r = t.await.expect("task");
            if r.is_err() {
                // A refused body may also end as a broken connection: the server answers before
                // reading it (see s3_errors::early_error_with_large_body). Any answer must be 404.
                if let Ok(answer) = err_or_transport(r) {
                    let want = (404, "NoSuchUpload".to_owned());
                    assert_eq!(answer, want, "round {round}: a part upload racing Abort");
                }
            }
        }
        assert_upload_gone(&c, B, "k", &id).await;
        let left = blob_files(gw.data_dir(), &id);
        assert!(
            left.is_empty(),
            "round {round}: files left after abort: {left:?}"
        );
    }
}
both!(abort_races_part_uploads, abort_races_part_uploads);

/// Complete, Abort and a re-sent part all at once, several rounds: exactly one of Complete and
/// Abort wins; a completed object holds exactly the bytes its Complete listed (never a re-sent
/// part's); an aborted upload leaves nothing; every loser gets a clean S3 error.
async fn complete_races_abort_and_parts(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let (mut completed, mut aborted) = (0, 0);
    for round in 0..8 {
        let key = format!("race-{round}");
        let id = create_upload(&c, B, &key).await;
        let p1 = random_bytes(5 * MIB);
        let p2 = random_bytes(256 * 1024);
        let e1 = upload_part(&c, B, &key, &id, 1, &p1).await;
        let e2 = upload_part(&c, B, &key, &id, 2, &p2).await;
        let complete = {
            let (c, key, id, e1, e2) = (c.clone(), key.clone(), id.clone(), e1.clone(), e2.clone());
            tokio::spawn(async move { try_complete(&c, B, &key, &id, &[(1, &e1), (2, &e2)]).await })
        };
        let resend = {
            let (c, key, id) = (c.clone(), key.clone(), id.clone());
            // Odd rounds re-send part 2 with other bytes, even rounds add a part 3.
            let n = if round % 2 == 1 { 2 } else { 3 };
            tokio::spawn(async move {
                c.upload_part()
                    .bucket(B)
                    .key(&key)
                    .upload_id(&id)
                    .part_number(n)
                    .body(random_bytes(MIB).into())
                    .send()
                    .await
            })
        };
        if round % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let abort = c
            .abort_multipart_upload()
            .bucket(B)
            .key(&key)
            .upload_id(&id)
            .send()
            .await;
        let complete = complete.await.expect("task");
        let resend = resend.await.expect("task");
        match (&complete, &abort) {
            (Ok(out), Err(_)) => {
                completed += 1;
                let answer = err_or_transport(abort).expect("an S3 answer");
                assert_eq!(
                    answer.0, 404,
                    "round {round}: Abort after Complete: {answer:?}"
                );
                assert_eq!(
                    out.e_tag(),
                    Some(multipart_etag(&[&p1, &p2]).as_str()),
                    "round {round}"
                );
                let got = get_bytes(&c, B, &key).await;
                assert_same_bytes(&got, &[p1.clone(), p2.clone()].concat(), "completed object");
            }
            (Err(_), Ok(_)) => {
                aborted += 1;
                let answer = err_or_transport(complete).expect("an S3 answer");
                assert!(
                    [(404, "NoSuchUpload"), (400, "InvalidPart")]
                        .contains(&(answer.0, answer.1.as_str())),
                    "round {round}: Complete losing to Abort: {answer:?}"
                );
                assert_err(
                    c.head_object().bucket(B).key(&key).send().await,
                    404,
                    "NotFound",
                );
                let left = blob_files(gw.data_dir(), &id);
                assert!(
                    left.is_empty(),
                    "round {round}: files left after abort: {left:?}"
                );
            }
            (Err(_), Err(_)) => {
                // An Abort waits for a running Complete to settle, so one of them must win.
                let ca = err_or_transport(complete).expect("an S3 answer");
                let aa = err_or_transport(abort).expect("an S3 answer");
                panic!("round {round}: neither Complete ({ca:?}) nor Abort ({aa:?}) won");
            }
            (Ok(_), Ok(_)) => panic!("round {round}: both Complete and Abort succeeded"),
        }
        // A part that lost the race is refused cleanly (or, refused before its body was read,
        // ends as a broken connection).
        if let Err(e) = resend
            && let Ok(answer) = err_or_transport::<(), _>(Err(e))
        {
            assert_eq!(
                answer,
                (404, "NoSuchUpload".to_owned()),
                "round {round}: part"
            );
        }
    }
    eprintln!("complete/abort race: {completed} completed, {aborted} aborted");
}
both!(
    complete_races_abort_and_parts,
    complete_races_abort_and_parts
);

/// A copy of a multipart object keeps its parts (ETag, partNumber reads) and its bytes,
/// independently of the source.
async fn copy_multipart_object(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| cfg.min_part_size = 1).await;
    let c = gw.bucket(B).await;
    let parts = vec![random_bytes(1000), random_bytes(2000), random_bytes(3)];
    let (_, etag) = multipart_object(&c, "src", &parts).await;
    let out = c
        .copy_object()
        .bucket(B)
        .key("dst")
        .copy_source("mpu/src")
        .send()
        .await
        .expect("copy");
    assert_eq!(
        out.copy_object_result().and_then(|r| r.e_tag()),
        Some(etag.as_str())
    );
    put(&c, B, "src", b"overwritten").await;
    let out = c
        .get_object()
        .bucket(B)
        .key("dst")
        .part_number(2)
        .send()
        .await
        .expect("part 2 of the copy");
    assert_eq!(out.parts_count(), Some(3));
    assert_eq!(out.e_tag(), Some(etag.as_str()));
    assert_eq!(read_all(out).await, parts[1]);
    assert_same_bytes(&get_bytes(&c, B, "dst").await, &parts.concat(), "copy");
}
both!(copy_multipart_object, copy_multipart_object);
