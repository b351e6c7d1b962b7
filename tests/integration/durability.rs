//! Restart-based checks: what was acknowledged before a graceful restart is there after it.

use crate::harness::*;

const B: &str = "dura";

fn durable(store: Store) -> impl std::future::Future<Output = TestGateway> {
    TestGateway::start_with(store, |cfg| cfg.fsync = true)
}

async fn parts_survive_restart(store: Store) {
    let mut gw = durable(store).await;
    let c = gw.bucket(B).await;
    let parts = [
        random_bytes(5 * MIB),
        random_bytes(5 * MIB),
        random_bytes(4321),
    ];
    let id = create_upload(&c, B, "k").await;
    let mut etags = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        etags.push(upload_part(&c, B, "k", &id, i as i32 + 1, p).await);
    }
    let before = all_parts(&c, B, "k", &id).await;
    gw.restart().await;
    let c = gw.client();
    let after = all_parts(&c, B, "k", &id).await;
    assert_eq!(after, before, "parts after restart");
    let want: Vec<(i32, String, i64)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| (i as i32 + 1, quoted_md5(p), p.len() as i64))
        .collect();
    assert_eq!(after, want);
    let ups = c
        .list_multipart_uploads()
        .bucket(B)
        .send()
        .await
        .expect("list uploads");
    assert_eq!(
        ups.uploads()
            .iter()
            .map(|u| u.upload_id().unwrap())
            .collect::<Vec<_>>(),
        vec![id.as_str()]
    );
    let etag = complete(
        &c,
        B,
        "k",
        &id,
        &[(1, &etags[0]), (2, &etags[1]), (3, &etags[2])],
    )
    .await;
    assert_eq!(etag, multipart_etag(&[&parts[0], &parts[1], &parts[2]]));
    assert_same_bytes(
        &get_bytes(&c, B, "k").await,
        &parts.concat(),
        "completed after restart",
    );
}
both!(parts_survive_restart, parts_survive_restart);

async fn objects_survive_restart(store: Store) {
    let mut gw = durable(store).await;
    let c = gw.bucket(B).await;
    let single = random_bytes(300_000);
    let etag_single = put(&c, B, "single", &single).await;
    c.put_object()
        .bucket(B)
        .key("meta")
        .content_type("text/x-kept")
        .metadata("a", "b")
        .body(b"m".to_vec().into())
        .send()
        .await
        .expect("put");
    let (p1, p2) = (random_bytes(5 * MIB), random_bytes(10));
    let id = create_upload(&c, B, "multi").await;
    let e1 = upload_part(&c, B, "multi", &id, 1, &p1).await;
    let e2 = upload_part(&c, B, "multi", &id, 2, &p2).await;
    let etag_multi = complete(&c, B, "multi", &id, &[(1, &e1), (2, &e2)]).await;

    gw.restart().await;
    let c = gw.client();
    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await
        .expect("list buckets")
        .buckets()
        .iter()
        .map(|b| b.name().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec![B]);
    let out = c
        .get_object()
        .bucket(B)
        .key("single")
        .send()
        .await
        .expect("get single");
    assert_eq!(out.e_tag(), Some(etag_single.as_str()));
    assert_same_bytes(&read_all(out).await, &single, "single after restart");
    let out = c
        .get_object()
        .bucket(B)
        .key("multi")
        .send()
        .await
        .expect("get multi");
    assert_eq!(out.e_tag(), Some(etag_multi.as_str()));
    assert_same_bytes(
        &read_all(out).await,
        &[p1, p2.clone()].concat(),
        "multipart after restart",
    );
    let out = c
        .get_object()
        .bucket(B)
        .key("multi")
        .part_number(2)
        .send()
        .await
        .expect("get part 2");
    assert_eq!(out.parts_count(), Some(2));
    assert_eq!(read_all(out).await, p2);
    let head = c
        .head_object()
        .bucket(B)
        .key("meta")
        .send()
        .await
        .expect("head meta");
    assert_eq!(head.content_type(), Some("text/x-kept"));
    assert_eq!(
        head.metadata().and_then(|m| m.get("a")).map(String::as_str),
        Some("b")
    );
    let keys = list_keys(&c, B).await;
    assert_eq!(keys, vec!["meta", "multi", "single"]);
    // A repeated Complete is still replayed after the restart.
    assert_eq!(
        complete(&c, B, "multi", &id, &[(1, &e1), (2, &e2)]).await,
        etag_multi
    );
}
both!(objects_survive_restart, objects_survive_restart);

async fn temp_files_are_not_parts(store: Store) {
    // Small parts allowed, so that the only thing wrong with part 2 below is that it is not a part.
    let mut gw = TestGateway::start_with(store, |cfg| {
        cfg.fsync = true;
        cfg.min_part_size = 1;
    })
    .await;
    let c = gw.bucket(B).await;
    let data = random_bytes(2000);
    let id = create_upload(&c, B, "k").await;
    let e1 = upload_part(&c, B, "k", &id, 1, &data).await;
    // What a crash mid-write leaves: a temp file; and a stray file named like a part.
    let dir = blob_dir(gw.data_dir(), &id);
    assert!(dir.is_dir(), "parts live in {}", dir.display());
    std::fs::write(dir.join(".tmp-deadbeefdeadbeef"), b"half a part").unwrap();
    std::fs::write(dir.join("2.abcdef012345"), b"not a recorded part").unwrap();
    for restart in [false, true] {
        if restart {
            gw.restart().await;
        }
        let c = gw.client();
        assert_eq!(
            all_parts(&c, B, "k", &id).await,
            vec![(1, e1.clone(), 2000)],
            "restart: {restart}"
        );
    }
    let c = gw.client();
    assert_err(
        try_complete(
            &c,
            B,
            "k",
            &id,
            &[(1, &e1), (2, &quoted_md5(b"not a recorded part"))],
        )
        .await,
        400,
        "InvalidPart",
    );
    complete(&c, B, "k", &id, &[(1, &e1)]).await;
    assert_same_bytes(
        &get_bytes(&c, B, "k").await,
        &data,
        "object ignores stray files",
    );
}
both!(temp_files_are_not_parts, temp_files_are_not_parts);

async fn aborted_stays_aborted(store: Store) {
    let mut gw = durable(store).await;
    let c = gw.bucket(B).await;
    let id = create_upload(&c, B, "k").await;
    upload_part(&c, B, "k", &id, 1, b"data").await;
    c.abort_multipart_upload()
        .bucket(B)
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .expect("abort");
    gw.restart().await;
    let c = gw.client();
    assert_upload_gone(&c, B, "k", &id).await;
    assert!(
        c.list_multipart_uploads()
            .bucket(B)
            .send()
            .await
            .expect("list")
            .uploads()
            .is_empty()
    );
}
both!(aborted_stays_aborted, aborted_stays_aborted);

/// A part upload in flight when a graceful stop begins finishes, is acknowledged, and is there
/// after the restart; new connections are refused meanwhile.
async fn graceful_stop_drains_in_flight_part(store: Store) {
    use tokio::io::AsyncWriteExt as _;
    let mut gw = durable(store).await;
    let c = gw.bucket(B).await;
    let id = create_upload(&c, B, "k").await;
    let data = random_bytes(2 * MIB);
    let (addr, head, body) = gw
        .raw("PUT", &format!("/dura/k?partNumber=1&uploadId={id}"))
        .unsigned_payload()
        .header("content-length", &data.len().to_string())
        .body(data.clone())
        .into_wire();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(&head).await.unwrap();
    s.write_all(&body[..MIB]).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let client_side = async {
        // Give the server time to start its shutdown, then finish the body.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let refused = tokio::net::TcpStream::connect(addr).await;
        s.write_all(&body[MIB..]).await.unwrap();
        (refused.is_err(), read_response(&mut s).await)
    };
    let ((), (refused, resp)) = tokio::join!(gw.stop(), client_side);
    assert_eq!(
        resp.status,
        200,
        "in-flight part during shutdown: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.header("etag"), Some(quoted_md5(&data).as_str()));
    assert!(
        refused,
        "new connections are refused once the shutdown started"
    );
    gw.restart().await;
    let c = gw.client();
    assert_eq!(
        all_parts(&c, B, "k", &id).await,
        vec![(1, quoted_md5(&data), data.len() as i64)]
    );
}
both!(
    graceful_stop_drains_in_flight_part,
    graceful_stop_drains_in_flight_part
);
