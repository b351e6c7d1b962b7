//! Abandoned uploads: bucket lifecycle rules (AbortIncompleteMultipartUpload) through the SDK,
//! the expiry janitor (`Uploads::expire` with a `now` in the future, run in-process on the
//! stopped gateway's stores), and `mpgw admin uploads` / `mpgw admin purge` through the binary.

use std::process::{Command, Output};
use std::time::Duration;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
};
use mpgw::config::Config;
use mpgw::model::now_millis;

use crate::harness::{
    Store, TestGateway, assert_err, assert_upload_gone, blob_dir, both, complete, create_upload,
    get_bytes, upload_part,
};

const DAY: i64 = 24 * 3600 * 1000;

fn abort_rule(id: &str, prefix: &str, days: i32, enabled: bool) -> LifecycleRule {
    LifecycleRule::builder()
        .id(id)
        .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
        .status(if enabled {
            ExpirationStatus::Enabled
        } else {
            ExpirationStatus::Disabled
        })
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(days)
                .build(),
        )
        .build()
        .expect("lifecycle rule")
}

async fn put_rules(c: &aws_sdk_s3::Client, bucket: &str, rules: Vec<LifecycleRule>) {
    c.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .expect("lifecycle configuration"),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("put lifecycle on {bucket}: {e:?}"));
}

async fn lifecycle_round_trip(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket("life").await;
    assert_err(
        c.get_bucket_lifecycle_configuration()
            .bucket("life")
            .send()
            .await,
        404,
        "NoSuchLifecycleConfiguration",
    );
    put_rules(
        &c,
        "life",
        vec![
            abort_rule("tmp", "tmp/", 2, true),
            abort_rule("off", "", 1, false),
        ],
    )
    .await;
    let got = c
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .expect("get lifecycle");
    let rules = got.rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].id(), Some("tmp"));
    assert_eq!(rules[0].status(), &ExpirationStatus::Enabled);
    assert_eq!(
        rules[0].filter().and_then(|f| f.prefix()),
        Some("tmp/"),
        "{rules:?}"
    );
    assert_eq!(
        rules[0]
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(2)
    );
    assert_eq!(rules[1].id(), Some("off"));
    assert_eq!(rules[1].status(), &ExpirationStatus::Disabled);

    // Object expiration is not something this gateway does: refused, old rules kept.
    let expiration = LifecycleRule::builder()
        .id("exp")
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .status(ExpirationStatus::Enabled)
        .expiration(LifecycleExpiration::builder().days(30).build())
        .build()
        .expect("rule");
    assert_err(
        c.put_bucket_lifecycle_configuration()
            .bucket("life")
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(expiration)
                    .build()
                    .expect("configuration"),
            )
            .send()
            .await,
        501,
        "NotImplemented",
    );
    let still = c
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .expect("get lifecycle");
    assert_eq!(still.rules().len(), 2);

    // Malformed documents.
    let resp = gw
        .raw("PUT", "/life?lifecycle")
        .body("<LifecycleConfiguration><Rule>")
        .send()
        .await;
    resp.assert_error(400, "MalformedXML");

    c.delete_bucket_lifecycle()
        .bucket("life")
        .send()
        .await
        .expect("delete lifecycle");
    assert_err(
        c.get_bucket_lifecycle_configuration()
            .bucket("life")
            .send()
            .await,
        404,
        "NoSuchLifecycleConfiguration",
    );
    assert_err(
        c.get_bucket_lifecycle_configuration()
            .bucket("nope-no-bucket")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
}

both!(lifecycle_config, lifecycle_round_trip);

/// Runs the janitor once, in-process, on the (stopped) gateway's stores, as if at `now`.
async fn expire_at(cfg: &Config, default: Duration, now: i64) -> Vec<String> {
    let cfg = Config {
        upload_expiry: default,
        ..cfg.clone()
    };
    let uploads = mpgw::app::open_uploads(&cfg, std::sync::Arc::new(mpgw::metrics::Metrics::new()))
        .await
        .expect("open stores");
    let report = uploads.expire(now).await.expect("expire");
    let mut keys: Vec<String> = report
        .expired
        .into_iter()
        .map(|(b, k, _)| format!("{b}/{k}"))
        .collect();
    keys.sort();
    keys
}

async fn open_keys(c: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = c
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list uploads");
    out.uploads()
        .iter()
        .map(|u| u.key().unwrap_or_default().to_owned())
        .collect()
}

async fn janitor_expires_by_rule_and_default(store: Store) {
    let mut gw = TestGateway::start(store).await;
    let c = gw.bucket("exp-rules").await;
    gw.bucket("exp-default").await;
    put_rules(
        &c,
        "exp-rules",
        vec![
            abort_rule("tmp", "tmp/", 1, true),
            abort_rule("all", "", 10, true),
            abort_rule("off", "off/", 1, false),
        ],
    )
    .await;
    let mut ids = std::collections::BTreeMap::new();
    for (bucket, key) in [
        ("exp-rules", "tmp/x"),
        ("exp-rules", "keep/y"),
        ("exp-rules", "off/z"),
        ("exp-default", "k1"),
    ] {
        let id = create_upload(&c, bucket, key).await;
        upload_part(&c, bucket, key, &id, 1, b"part data").await;
        assert!(blob_dir(gw.data_dir(), &id).is_dir());
        ids.insert(format!("{bucket}/{key}"), id);
    }
    // A completed upload is never the janitor's business.
    let done = create_upload(&c, "exp-rules", "tmp/done").await;
    let etag = upload_part(&c, "exp-rules", "tmp/done", &done, 1, b"kept").await;
    complete(&c, "exp-rules", "tmp/done", &done, &[(1, etag.as_str())]).await;

    gw.stop().await;
    let now = now_millis();
    let never = Duration::ZERO;
    let week = Duration::from_secs(7 * 86_400);
    // Day 2, no server-wide expiry: only the 1-day rule fires (the disabled one does not).
    assert_eq!(
        expire_at(&gw.cfg, never, now + 2 * DAY).await,
        ["exp-rules/tmp/x"]
    );
    // Day 8, still no server-wide expiry: the default bucket keeps its upload forever.
    assert!(expire_at(&gw.cfg, never, now + 8 * DAY).await.is_empty());
    // Day 8 with the 7-day default: the bucket without rules; the other is governed by its
    // 10-day catch-all rule.
    assert_eq!(
        expire_at(&gw.cfg, week, now + 8 * DAY).await,
        ["exp-default/k1"]
    );
    let data_dir = gw.cfg.data_dir.clone();
    let gone = |k: &str| !blob_dir(&data_dir, &ids[k]).exists();
    assert!(gone("exp-rules/tmp/x") && gone("exp-default/k1"));
    assert!(!gone("exp-rules/keep/y") && !gone("exp-rules/off/z"));

    gw.restart().await;
    let c = gw.client();
    assert_eq!(open_keys(&c, "exp-rules").await, ["keep/y", "off/z"]);
    assert!(open_keys(&c, "exp-default").await.is_empty());
    assert_upload_gone(&c, "exp-rules", "tmp/x", &ids["exp-rules/tmp/x"]).await;
    assert_eq!(get_bytes(&c, "exp-rules", "tmp/done").await, b"kept");

    // Day 11: the 10-day rule takes the rest.
    gw.stop().await;
    assert_eq!(
        expire_at(&gw.cfg, week, now + 11 * DAY).await,
        ["exp-rules/keep/y", "exp-rules/off/z"]
    );
    assert!(gone("exp-rules/keep/y") && gone("exp-rules/off/z"));
    gw.restart().await;
    let c = gw.client();
    assert!(open_keys(&c, "exp-rules").await.is_empty());
    assert_eq!(get_bytes(&c, "exp-rules", "tmp/done").await, b"kept");
}

both!(janitor, janitor_expires_by_rule_and_default);

/// Runs `mpgw admin <args>` on the gateway's stores.
fn admin(gw: &TestGateway, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpgw"));
    cmd.env_clear().arg("admin").args(args);
    cmd.arg("--data-dir").arg(&gw.cfg.data_dir);
    if let Some(url) = &gw.cfg.redis_url {
        cmd.args(["--redis-url", url, "--redis-prefix", &gw.cfg.redis_prefix]);
    }
    cmd.output().expect("run mpgw admin")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "mpgw admin failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn admin_lists_and_purges(store: Store) {
    let mut gw = TestGateway::start(store).await;
    let c = gw.bucket("adm").await;
    let mut ids = Vec::new();
    for (key, data) in [("a/1", &b"12345"[..]), ("a/2", b"1"), ("b/1", b"123")] {
        let id = create_upload(&c, "adm", key).await;
        upload_part(&c, "adm", key, &id, 1, data).await;
        ids.push(id);
    }
    // A tus upload with its length deferred, 7 bytes in.
    let http = reqwest::Client::new();
    let token = gw.legacy_token(crate::harness::ACCESS_KEY);
    let tus = |r: reqwest::RequestBuilder| {
        r.header("tus-resumable", "1.0.0")
            .header("authorization", format!("Bearer {token}"))
    };
    let created = tus(http.post(format!("{}/_tus/", gw.endpoint())))
        .header("upload-defer-length", "1")
        .header("upload-metadata", "filename dC5iaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let url = created.headers()["location"].to_str().unwrap().to_owned();
    let patched = tus(http.patch(&url))
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "0")
        .body("1234567")
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 204);
    let tus_id = url.rsplit('/').next().unwrap().to_owned();
    if store == Store::Embedded {
        // The embedded store is held by the running gateway: a clear refusal.
        let out = admin(&gw, &["uploads"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("gateway running"), "{err}");
    }
    gw.stop().await;

    let list = stdout(&admin(&gw, &["uploads"]));
    for (id, (key, size)) in ids.iter().zip([("a/1", 5), ("a/2", 1), ("b/1", 3)]) {
        let line = list
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed:\n{list}"));
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[0], "adm", "{line}");
        assert_eq!(cols[1], key, "{line}");
        assert_eq!(cols[4], "1", "{line}");
        assert_eq!(cols[5], size.to_string(), "{line}");
        assert_eq!(cols[6], "-", "{line}");
    }
    let line = list
        .lines()
        .find(|l| l.contains(&tus_id))
        .unwrap_or_else(|| panic!("tus upload not listed:\n{list}"));
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!((cols[5], cols[6]), ("7", "deferred"), "{line}");
    let only_b = stdout(&admin(&gw, &["uploads", "--prefix", "adm/b/"]));
    assert!(
        only_b.contains(&ids[2]) && !only_b.contains(&ids[0]),
        "{only_b}"
    );

    // Nothing is two days old yet.
    let none = stdout(&admin(&gw, &["purge", "--older-than", "2d"]));
    assert!(!none.contains("aborted"), "{none}");
    // Everything under adm/a/, whatever its age.
    let purged = stdout(&admin(
        &gw,
        &["purge", "--older-than", "0", "--prefix", "adm/a/"],
    ));
    assert!(
        purged.contains(&ids[0]) && purged.contains(&ids[1]) && !purged.contains(&ids[2]),
        "{purged}"
    );
    assert!(!blob_dir(&gw.cfg.data_dir, &ids[0]).exists());
    assert!(!blob_dir(&gw.cfg.data_dir, &ids[1]).exists());
    assert!(blob_dir(&gw.cfg.data_dir, &ids[2]).is_dir());
    let list = stdout(&admin(&gw, &["uploads"]));
    assert!(list.contains(&ids[2]) && !list.contains(&ids[0]), "{list}");

    gw.restart().await;
    assert_eq!(open_keys(&gw.client(), "adm").await, ["b/1"]);
}

both!(admin_cli, admin_lists_and_purges);
