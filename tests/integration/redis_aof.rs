//! What a Redis crash does to the gateway's state, both ways (the README's "Redis persistence"):
//! with an fsynced append-only file every acknowledged part and Complete survives a SIGKILL of
//! redis-server; without persistence the state is gone, the gateway says so cleanly, and the
//! orphan sweep later removes the files nothing refers to any more.

use std::time::{Duration, Instant, SystemTime};

use crate::harness::*;

const B: &str = "aof";
const K: &str = "k";

async fn gateway(redis: &PrivateRedis) -> TestGateway {
    let url = redis.url();
    TestGateway::start_with(Store::Redis, |c| {
        c.redis_url = Some(url);
        // Small parts keep the test fast; nothing here depends on part sizes.
        c.min_part_size = 1;
    })
    .await
}

/// Polls ListParts until the gateway answers with something other than an outage (503 or no
/// HTTP answer at all), for at most 20 s: the gateway reconnects to Redis by itself.
async fn list_parts_after_outage(
    c: &aws_sdk_s3::Client,
    id: &str,
) -> Result<Vec<(i32, String, i64)>, (u16, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.list_parts().bucket(B).key(K).upload_id(id).send().await;
        let last = match r {
            Ok(out) => {
                return Ok(out
                    .parts()
                    .iter()
                    .map(|p| {
                        (
                            p.part_number().expect("n"),
                            p.e_tag().expect("etag").to_owned(),
                            p.size().expect("size"),
                        )
                    })
                    .collect());
            }
            Err(e) => match err_or_transport(Err::<(), _>(e)) {
                Ok((503, code)) => format!("503 {code}"),
                Ok(answer) => return Err(answer),
                Err(transport) => transport,
            },
        };
        assert!(
            Instant::now() < deadline,
            "the gateway did not get its state store back within 20 s; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn want_parts(parts: &[Vec<u8>]) -> Vec<(i32, String, i64)> {
    (1..)
        .zip(parts)
        .map(|(n, p)| (n, quoted_md5(p), p.len() as i64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_survives_a_redis_crash_with_aof() {
    let mut redis = PrivateRedis::start(Persistence::AofAlways);
    let gw = gateway(&redis).await;
    let c = gw.bucket(B).await;
    let parts: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(100_000 + i)).collect();
    let id = create_upload(&c, B, K).await;
    let mut etags = Vec::new();
    for (n, p) in (1..).zip(&parts[..2]) {
        etags.push(upload_part(&c, B, K, &id, n, p).await);
    }

    redis.kill();
    // While Redis is down a part is refused as retryable, neither kept half-way nor a 500.
    let r = c
        .upload_part()
        .bucket(B)
        .key(K)
        .upload_id(&id)
        .part_number(3)
        .body(parts[2].clone().into())
        .send()
        .await;
    assert_eq!(
        err_or_transport(r),
        Ok((503, "ServiceUnavailable".to_owned())),
        "UploadPart while Redis is down"
    );
    redis.resume();

    let listed = list_parts_after_outage(&c, &id)
        .await
        .unwrap_or_else(|e| panic!("the upload did not survive the crash: {e:?}"));
    assert_eq!(listed, want_parts(&parts[..2]), "parts after the crash");
    for (n, p) in (3..).zip(&parts[2..]) {
        etags.push(upload_part(&c, B, K, &id, n, p).await);
    }
    assert_eq!(all_parts(&c, B, K, &id).await, want_parts(&parts));
    let listed: Vec<(i32, &str)> = (1..).zip(etags.iter().map(String::as_str)).collect();
    let etag = complete(&c, B, K, &id, &listed).await;
    let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    assert_eq!(etag, multipart_etag(&slices));
    assert_same_bytes(&get_bytes(&c, B, K).await, &parts.concat(), "object");

    // The Complete was acknowledged, so it survives a second crash too.
    redis.kill();
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        match c.get_object().bucket(B).key(K).send().await {
            Ok(out) => break out,
            Err(e) => {
                match err_or_transport(Err::<(), _>(e)) {
                    Ok((503, _)) | Err(_) => {}
                    Ok(answer) => panic!("GetObject after the second crash: {answer:?}"),
                }
                assert!(Instant::now() < deadline, "no answer 20 s after the crash");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(out.e_tag(), Some(etag.as_str()));
    assert_same_bytes(
        &read_all(out).await,
        &parts.concat(),
        "object after a crash",
    );
    drop(gw); // deletes its keys while the private Redis still runs
}

/// Sets the modification time of a blob directory and its files an hour back, past the sweep's
/// grace period.
fn age(dir: &std::path::Path) {
    let then = SystemTime::now() - Duration::from_secs(3600);
    for entry in std::fs::read_dir(dir).expect("read blob dir") {
        let path = entry.expect("entry").path();
        std::fs::File::open(&path)
            .and_then(|f| f.set_modified(then))
            .expect("age file");
    }
    std::fs::File::open(dir)
        .and_then(|f| f.set_modified(then))
        .expect("age dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_persistence_a_redis_crash_forgets_everything() {
    let mut redis = PrivateRedis::start(Persistence::None);
    let mut gw = gateway(&redis).await;
    let c = gw.bucket(B).await;
    // A completed object (its blob is named after its upload) and an upload in progress.
    let done = random_bytes(5000);
    let done_id = create_upload(&c, B, "done").await;
    let e = upload_part(&c, B, "done", &done_id, 1, &done).await;
    complete(&c, B, "done", &done_id, &[(1, &e)]).await;
    let id = create_upload(&c, B, K).await;
    let mut etags = Vec::new();
    for n in 1..=2 {
        etags.push(upload_part(&c, B, K, &id, n, &random_bytes(1000)).await);
    }
    assert_eq!(blob_files(gw.data_dir(), &id).len(), 2);

    redis.kill();
    redis.resume();
    // The bucket went with the rest, so that is what the gateway names first.
    assert_eq!(
        list_parts_after_outage(&c, &id).await,
        Err((404, "NoSuchBucket".to_owned())),
        "ListParts after Redis lost its data"
    );
    assert_err(
        c.get_object().bucket(B).key("done").send().await,
        404,
        "NoSuchBucket",
    );
    // With the bucket created again: the upload and the object are unknown.
    gw.bucket(B).await;
    assert_eq!(
        list_parts_after_outage(&c, &id).await,
        Err((404, "NoSuchUpload".to_owned())),
        "ListParts"
    );
    assert_err(
        c.upload_part()
            .bucket(B)
            .key(K)
            .upload_id(&id)
            .part_number(3)
            .body(b"more".to_vec().into())
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    assert_err(
        try_complete(&c, B, K, &id, &[(1, &etags[0]), (2, &etags[1])]).await,
        404,
        "NoSuchUpload",
    );
    assert_err(
        c.get_object().bucket(B).key("done").send().await,
        404,
        "NoSuchKey",
    );

    // The files stay until the orphan sweep finds them past its grace period; it runs at
    // start-up, so age them and restart the gateway.
    let blobs = [
        blob_dir(gw.data_dir(), &id),
        blob_dir(gw.data_dir(), &done_id),
    ];
    for dir in &blobs {
        assert!(dir.is_dir(), "{} removed before the sweep", dir.display());
        age(dir);
    }
    gw.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while blobs.iter().any(|d| d.exists()) {
        assert!(
            Instant::now() < deadline,
            "the sweep left {:?}",
            blobs.iter().filter(|d| d.exists()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(gw);
}

/// Events not yet delivered live in Redis with their objects: with an fsynced append-only file
/// they survive a SIGKILL of redis-server and are delivered once the target is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_events_survive_a_redis_crash_with_aof() {
    use crate::events::{Receiver, arn, configure, rule};
    let mut redis = PrivateRedis::start(Persistence::AofAlways);
    let mut hook = Receiver::start().await;
    let url = hook.url();
    hook.stop().await;
    let redis_url = redis.url();
    let gw =
        crate::events::gateway(Store::Redis, &url, move |c| c.redis_url = Some(redis_url)).await;
    let c = gw.bucket(B).await;
    configure(
        &c,
        B,
        vec![rule(
            "r",
            &arn("hook", "webhook"),
            &["s3:ObjectCreated:*"],
            "",
            "",
        )],
    )
    .await;
    for i in 0..3 {
        put(&c, B, &format!("k{i}"), b"x").await;
    }
    redis.kill();
    redis.resume();
    hook.resume().await;
    let got = hook.wait_for(3).await;
    let mut keys: Vec<String> = got.iter().map(crate::events::Got::key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys, ["k0", "k1", "k2"]);
    drop(gw);
}
