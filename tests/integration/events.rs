//! Completion events end to end, on both stores: bucket rules select the writes, each write's
//! event reaches its webhook (signed) or Redis Stream in AWS's shape, in order per key, once the
//! target is up; failures are retried, then dead-lettered, and `mpgw admin events` shows and
//! resends them; a full outbox refuses the write instead of losing its event; events recorded
//! before a restart are delivered after it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::harness::{ACCESS_KEY, MIB, Store, TestGateway, both, md5_hex, put, random_bytes};

const SECRET: &str = "webhook-signing-secret";

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Got {
    delivery: String,
    signature: Option<String>,
    authorization: Option<String>,
    raw: Bytes,
}

impl Got {
    pub(crate) fn record(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.raw).expect("event JSON");
        assert_eq!(v["Records"].as_array().map(Vec::len), Some(1), "{v}");
        v["Records"][0].clone()
    }

    pub(crate) fn name(&self) -> String {
        self.record()["eventName"].as_str().unwrap().to_owned()
    }

    pub(crate) fn key(&self) -> String {
        self.record()["s3"]["object"]["key"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// A webhook receiver on 127.0.0.1: records every request and answers `status`. Stopping it
/// closes its connections too, so the gateway sees a target that is down.
pub(crate) struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    status: Arc<AtomicU16>,
    tasks: Option<JoinSet<()>>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_at(addr: SocketAddr) -> Self {
        let mut r = Self {
            addr,
            got: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            tasks: None,
        };
        r.resume().await;
        r
    }

    /// (Re)opens the port it had.
    pub(crate) async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let (got, status) = (self.got.clone(), self.status.clone());
        let mut tasks = JoinSet::new();
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let held = conns.clone();
        tasks.spawn(async move {
            let _held = held;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (got, status) = (got.clone(), status.clone());
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (got, status) = (got.clone(), status.clone());
                    async move {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let mut g = Got {
                            delivery: header("x-mpgw-delivery").unwrap_or_default(),
                            signature: header("x-mpgw-signature"),
                            authorization: header("authorization"),
                            raw: Bytes::new(),
                        };
                        g.raw = req.into_body().collect().await.unwrap().to_bytes();
                        let code = status.load(Ordering::SeqCst);
                        if code == 200 {
                            got.lock().unwrap().push(g);
                        }
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *resp.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                conns.lock().unwrap().spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Closes the port and every open connection.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.shutdown().await;
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` events arrived (panics after 20 s).
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{} of {n} events arrived: {:?}",
                got.len(),
                got.iter().map(|g| (g.name(), g.key())).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(crate) fn arn(name: &str, kind: &str) -> String {
    format!("arn:mpgw:sqs:us-east-1:{name}:{kind}")
}

pub(crate) fn rule(
    id: &str,
    target: &str,
    events: &[&str],
    prefix: &str,
    suffix: &str,
) -> QueueConfiguration {
    let mut rules = Vec::new();
    if !prefix.is_empty() {
        rules.push(
            FilterRule::builder()
                .name(FilterRuleName::Prefix)
                .value(prefix)
                .build(),
        );
    }
    if !suffix.is_empty() {
        rules.push(
            FilterRule::builder()
                .name(FilterRuleName::Suffix)
                .value(suffix)
                .build(),
        );
    }
    let mut b = QueueConfiguration::builder().id(id).queue_arn(target);
    for e in events {
        b = b.events(Event::from(*e));
    }
    if !rules.is_empty() {
        b = b.filter(
            NotificationConfigurationFilter::builder()
                .key(S3KeyFilter::builder().set_filter_rules(Some(rules)).build())
                .build(),
        );
    }
    b.build().unwrap()
}

pub(crate) async fn configure(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    rules: Vec<QueueConfiguration>,
) {
    c.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .set_queue_configurations(Some(rules))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// A gateway with the webhook target `hook` (signed with SECRET) at `url`, fast retries.
pub(crate) async fn gateway(
    store: Store,
    url: &str,
    tweak: impl FnOnce(&mut mpgw::Config),
) -> TestGateway {
    let url = url.to_owned();
    TestGateway::start_with(store, move |cfg| {
        cfg.notify_webhook = vec![format!("hook={url}")];
        cfg.notify_webhook_secret = vec![format!("hook={SECRET}")];
        cfg.notify_webhook_token = vec!["hook=hook-token".into()];
        cfg.notify_backoff = Duration::from_millis(100);
        cfg.notify_backoff_max = Duration::from_millis(400);
        tweak(cfg);
    })
    .await
}

fn verify_signature(g: &Got) {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&g.raw);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(g.signature.as_deref(), Some(want.as_str()), "signature");
    assert_eq!(g.authorization.as_deref(), Some("Bearer hook-token"));
}

/// PutObject, multipart upload, copy, delete (and a delete of nothing), each makes exactly its
/// event, in AWS's shape, signed, in write order.
async fn every_write_makes_its_event(store: Store) {
    let hook = Receiver::start().await;
    let gw = gateway(store, &hook.url(), |_| {}).await;
    let c = gw.bucket("evb").await;
    configure(
        &c,
        "evb",
        vec![rule(
            "all",
            &arn("hook", "webhook"),
            &["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
            "",
            "",
        )],
    )
    .await;
    let small = random_bytes(1000);
    put(&c, "evb", "dir/a b+c.txt", &small).await;
    let parts = [random_bytes(5 * MIB), random_bytes(1000)];
    let up = c
        .create_multipart_upload()
        .bucket("evb")
        .key("big")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let mut done = aws_sdk_s3::types::CompletedMultipartUpload::builder();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = c
            .upload_part()
            .bucket("evb")
            .key("big")
            .upload_id(id)
            .part_number(n)
            .body(p.clone().into())
            .send()
            .await
            .unwrap();
        done = done.parts(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    let completed = c
        .complete_multipart_upload()
        .bucket("evb")
        .key("big")
        .upload_id(id)
        .multipart_upload(done.build())
        .send()
        .await
        .unwrap();
    c.copy_object()
        .bucket("evb")
        .key("copy")
        .copy_source("evb/big")
        .send()
        .await
        .unwrap();
    let deleted = c
        .delete_object()
        .bucket("evb")
        .key("copy")
        .send()
        .await
        .unwrap();
    drop(deleted);
    // Nothing to delete: no event.
    c.delete_object()
        .bucket("evb")
        .key("never-was")
        .send()
        .await
        .unwrap();

    let got = hook.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = if hook.got().len() > 4 {
        hook.got()
    } else {
        got
    };
    let mut names: Vec<(String, String)> = got.iter().map(|g| (g.key(), g.name())).collect();
    names.sort();
    assert_eq!(
        names,
        [
            (
                "big".to_owned(),
                "ObjectCreated:CompleteMultipartUpload".to_owned()
            ),
            ("copy".to_owned(), "ObjectCreated:Copy".to_owned()),
            ("copy".to_owned(), "ObjectRemoved:Delete".to_owned()),
            ("dir/a+b%2Bc.txt".to_owned(), "ObjectCreated:Put".to_owned()),
        ]
    );
    for g in &got {
        verify_signature(g);
        let r = g.record();
        assert_eq!(r["eventVersion"], "2.1");
        assert_eq!(r["eventSource"], "aws:s3");
        assert_eq!(r["awsRegion"], "us-east-1");
        assert!(r["eventTime"].as_str().unwrap().ends_with('Z'));
        assert_eq!(r["userIdentity"]["principalId"], ACCESS_KEY);
        assert_eq!(r["requestParameters"]["sourceIPAddress"], "127.0.0.1");
        assert_eq!(
            r["responseElements"]["x-amz-request-id"]
                .as_str()
                .unwrap()
                .len(),
            16
        );
        assert_eq!(r["s3"]["s3SchemaVersion"], "1.0");
        assert_eq!(r["s3"]["configurationId"], "all");
        assert_eq!(r["s3"]["bucket"]["name"], "evb");
        assert_eq!(r["s3"]["bucket"]["arn"], "arn:aws:s3:::evb");
        assert_eq!(
            r["s3"]["bucket"]["ownerIdentity"]["principalId"],
            ACCESS_KEY
        );
        let seq = r["s3"]["object"]["sequencer"].as_str().unwrap();
        assert_eq!(seq.len(), 16);
        assert_eq!(
            g.delivery,
            format!("evb/hook/{}", u64::from_str_radix(seq, 16).unwrap())
        );
    }
    let by = |key: &str, name: &str| {
        got.iter()
            .find(|g| g.key() == key && g.name() == name)
            .unwrap()
            .record()
    };
    let put_ev = by("dir/a+b%2Bc.txt", "ObjectCreated:Put");
    assert_eq!(put_ev["s3"]["object"]["size"], 1000);
    assert_eq!(put_ev["s3"]["object"]["eTag"], md5_hex(&small));
    let mp = by("big", "ObjectCreated:CompleteMultipartUpload");
    assert_eq!(mp["s3"]["object"]["size"], 5 * MIB as u64 + 1000);
    assert_eq!(
        format!("\"{}\"", mp["s3"]["object"]["eTag"].as_str().unwrap()),
        completed.e_tag().unwrap()
    );
    let created = by("copy", "ObjectCreated:Copy");
    let removed = by("copy", "ObjectRemoved:Delete");
    assert!(removed["s3"]["object"].get("size").is_none());
    assert!(removed["s3"]["object"].get("eTag").is_none());
    // One key's events: the sequencer orders them, and they arrived in that order.
    let seq = |r: &Value| r["s3"]["object"]["sequencer"].as_str().unwrap().to_owned();
    assert!(seq(&created) < seq(&removed));
    let order: Vec<String> = got
        .iter()
        .filter(|g| g.key() == "copy")
        .map(Got::name)
        .collect();
    assert_eq!(order, ["ObjectCreated:Copy", "ObjectRemoved:Delete"]);
    assert_eq!(hook.got().len(), 4, "no other event");
}
both!(every_write_makes_its_event, every_write_makes_its_event);

/// Prefix and suffix rules pick the target; a Redis Stream target gets its events by XADD.
async fn filters_pick_the_target(store: Store) {
    let hook = Receiver::start().await;
    let stream = format!("mpgw-it-events-{:08x}", rand::random::<u32>());
    let redis_url = crate::harness::redis_url();
    let s = stream.clone();
    let gw = gateway(store, &hook.url(), move |cfg| {
        cfg.notify_redis = vec![format!("feed={s}")];
        cfg.notify_redis_url = vec![format!("feed={}", crate::harness::redis_url())];
    })
    .await;
    let c = gw.bucket("flt").await;
    configure(
        &c,
        "flt",
        vec![
            rule(
                "images",
                &arn("hook", "webhook"),
                &["s3:ObjectCreated:Put"],
                "images/",
                ".jpg",
            ),
            rule(
                "logs",
                &arn("feed", "redis"),
                &["s3:ObjectCreated:*"],
                "logs/",
                "",
            ),
        ],
    )
    .await;
    for key in [
        "images/a.jpg",
        "images/b.png",
        "logs/1.txt",
        "other/c.jpg",
        "logs/2.jpg",
    ] {
        put(&c, "flt", key, b"x").await;
    }
    let got = hook.wait_for(1).await;
    // The stream gets the two logs.
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let start = Instant::now();
    let entries: Vec<(String, Vec<(String, String)>)> = loop {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        if reply.ids.len() >= 2 || start.elapsed() > Duration::from_secs(20) {
            break reply
                .ids
                .iter()
                .map(|id| {
                    let fields = id
                        .map
                        .iter()
                        .map(|(k, v)| {
                            (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap())
                        })
                        .collect();
                    (id.id.clone(), fields)
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(hook.got().len(), 1, "only images/*.jpg");
    assert_eq!(got[0].key(), "images/a.jpg");
    assert_eq!(got[0].record()["s3"]["configurationId"], "images");
    let keys: Vec<String> = entries
        .iter()
        .map(|(_, f)| {
            let get = |n: &str| f.iter().find(|(k, _)| k == n).unwrap().1.clone();
            let ev: Value = serde_json::from_str(&get("event")).unwrap();
            assert_eq!(ev["Records"][0]["s3"]["configurationId"], "logs");
            assert_eq!(get("name"), "ObjectCreated:Put");
            assert_eq!(get("bucket"), "flt");
            assert!(get("delivery").starts_with("flt/feed/"));
            get("key")
        })
        .collect();
    assert_eq!(keys, ["logs/1.txt", "logs/2.jpg"]);
}
both!(filters_pick_the_target, filters_pick_the_target);

/// A target answering 500 gets the event again (with back-off) until it answers 200; one that
/// keeps failing has it dead-lettered after --notify-max-tries, and `mpgw admin events retry`
/// sends it again.
async fn retries_then_dead_letters(store: Store) {
    let mut hook = Receiver::start().await;
    hook.status.store(500, Ordering::SeqCst);
    let mut gw = gateway(store, &hook.url(), |cfg| cfg.notify_max_tries = 4).await;
    let c = gw.bucket("retry").await;
    configure(
        &c,
        "retry",
        vec![rule(
            "r",
            &arn("hook", "webhook"),
            &["s3:ObjectCreated:*"],
            "",
            "",
        )],
    )
    .await;
    put(&c, "retry", "first", b"1").await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    hook.status.store(200, Ordering::SeqCst);
    let got = hook.wait_for(1).await;
    assert_eq!(got[0].key(), "first");
    assert!(counter(&gw, "retried").await >= 1.0);
    assert_eq!(counter(&gw, "delivered").await, 1.0);
    assert_eq!(counter(&gw, "queued").await, 1.0);

    // Always failing: dead after 4 tries, then nothing more is sent.
    hook.status.store(503, Ordering::SeqCst);
    put(&c, "retry", "second", b"2").await;
    let start = Instant::now();
    while counter(&gw, "dead").await < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
    let dead = admin_events(&gw, &["list", "--dead"]);
    assert!(dead.contains("retry\thook\t"), "{dead}");
    assert!(dead.contains("ObjectCreated:Put\tsecond\t"), "{dead}");
    assert!(dead.contains("\t4\tHTTP 503: ok"), "{dead}");
    assert!(!admin_events(&gw, &["list"]).contains("second"));
    // Sent again on request, once the target is back.
    hook.status.store(200, Ordering::SeqCst);
    admin_events(&gw, &["retry", "--bucket", "retry"]);
    assert!(!admin_events(&gw, &["list", "--dead"]).contains("second"));
    gw.restart().await;
    let got = hook.wait_for(2).await;
    assert_eq!(got[1].key(), "second");
    hook.stop().await;
}
both!(retries_then_dead_letters, retries_then_dead_letters);

/// `mpgw admin events …` on the gateway's store (stopped first for the embedded store).
fn admin_events(gw: &TestGateway, args: &[&str]) -> String {
    let out = admin_output(gw, &[&["events"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `mpgw admin …` with the gateway's store and event targets.
fn admin_output(gw: &TestGateway, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mpgw"));
    cmd.arg("admin").args(args);
    cmd.arg("--data-dir").arg(&gw.cfg.data_dir);
    if let Some(url) = &gw.cfg.redis_url {
        cmd.args(["--redis-url", url, "--redis-prefix", &gw.cfg.redis_prefix]);
    }
    for t in &gw.cfg.notify_webhook {
        cmd.args(["--notify-webhook", t]);
    }
    cmd.output().unwrap()
}

/// The gateway's `mpgw_events_total` for target `hook` and `outcome`.
async fn counter(gw: &TestGateway, outcome: &str) -> f64 {
    let metrics = crate::harness::operator_get(&format!("{}/metrics", gw.endpoint()))
        .await
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|l| {
            l.starts_with("mpgw_events_total{")
                && l.contains("target=\"hook\"")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// While a target is down its events wait in the outbox, across a restart of the gateway, and
/// all arrive in order per key once it is back. Past --notify-queue-limit a write is refused
/// (503) rather than stored without its event.
async fn down_target_then_back(store: Store) {
    let mut hook = Receiver::start().await;
    let url = hook.url();
    hook.stop().await;
    let mut gw = gateway(store, &url, |cfg| cfg.notify_queue_limit = 6).await;
    let c = gw.bucket("down").await;
    configure(
        &c,
        "down",
        vec![rule(
            "d",
            &arn("hook", "webhook"),
            &["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
            "",
            "",
        )],
    )
    .await;
    for i in 0..3 {
        put(&c, "down", "k1", format!("v{i}").as_bytes()).await;
        put(&c, "down", "k2", format!("v{i}").as_bytes()).await;
    }
    // Six pending: the seventh write is refused and changes nothing.
    let refused = c
        .put_object()
        .bucket("down")
        .key("k1")
        .body(b"refused".to_vec().into())
        .customize()
        .config_override(
            aws_sdk_s3::config::Builder::default()
                .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled()),
        )
        .send()
        .await;
    assert_eq!(crate::harness::err(refused), (503, "SlowDown".to_owned()));
    assert_eq!(crate::harness::get_bytes(&c, "down", "k1").await, b"v2");
    // Readiness stays 200 but warns the operator, and the backlog shows in the metrics.
    let start = Instant::now();
    loop {
        let r = crate::harness::operator_get(&format!("{}/health/ready", gw.endpoint())).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        if text.contains("warning: events: 6 undelivered for target hook in bucket down") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = crate::harness::operator_get(&format!("{}/metrics", gw.endpoint()))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mpgw_events_pending{target=\"hook\"} 6"),
        "{metrics}"
    );
    gw.stop().await;
    gw.restart().await;
    let c = gw.client();
    hook.resume().await;
    let got = hook.wait_for(6).await;
    for key in ["k1", "k2"] {
        let seqs: Vec<String> = got
            .iter()
            .filter(|g| g.key() == key)
            .map(|g| {
                g.record()["s3"]["object"]["sequencer"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(seqs.len(), 3, "{key}");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{key}: {seqs:?}");
    }
    // The outbox took writes again once drained.
    put(&c, "down", "k3", b"x").await;
    hook.wait_for(7).await;
}
both!(down_target_then_back, down_target_then_back);

/// The note's API (complete, instant upload, delete) and tus make their events on the legacy
/// bucket's rules like S3 writes do, with the legacy user as the principal.
async fn legacy_and_tus_writes_make_events(store: Store) {
    use crate::legacy::{CHUNK, Client};
    let hook = Receiver::start().await;
    let users = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        users.path(),
        "alice alice-token-0123456789\nbob bob-token-0123456789\n",
    )
    .unwrap();
    let path = users.path().to_owned();
    let gw = gateway(store, &hook.url(), move |cfg| cfg.legacy_users = Some(path)).await;
    let alice = Client::new(&gw, "alice", "alice-token-0123456789");
    let bob = Client::new(&gw, "bob", "bob-token-0123456789");
    // The first upload makes the legacy bucket; its rules come after.
    alice.upload(b"before any rule", "first.bin").await;
    configure(
        &gw.client(),
        "files",
        vec![rule(
            "files",
            &arn("hook", "webhook"),
            &["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
            "",
            "",
        )],
    )
    .await;
    let data = random_bytes(CHUNK + 99);
    alice.upload(&data, "a.bin").await;
    // Bob holds the same content: his proof links Alice's copy.
    let init = bob.init(&data, "b.bin").await;
    let done = bob.prove(&init, &data).await;
    assert_eq!(done.data["Instant"], true, "{done:?}");
    let hash = crate::legacy::sha256_hex(&data);
    assert_eq!(alice.post_delete(&[("filehash", hash)]).await.code, 0);
    // tus, as bob.
    let http = reqwest::Client::new();
    let tus = |method: &str, url: String| {
        http.request(method.parse().unwrap(), url)
            .header("tus-resumable", "1.0.0")
            .header("authorization", "Bearer bob-token-0123456789")
    };
    let meta = format!("filename {}", base64_of(b"t.bin"));
    let created = tus("POST", format!("{}/_tus/", gw.endpoint()))
        .header("upload-length", "5")
        .header("upload-metadata", meta)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let patched = tus("PATCH", location)
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(b"hello".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 204);

    let got = hook.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen: Vec<(String, String, String)> = hook
        .got()
        .iter()
        .map(|g| {
            let r = g.record();
            let who = r["userIdentity"]["principalId"]
                .as_str()
                .unwrap()
                .to_owned();
            (g.key(), g.name(), who)
        })
        .collect();
    assert_eq!(got.len(), 4);
    let want = [
        (
            "alice/a.bin",
            "ObjectCreated:CompleteMultipartUpload",
            "alice",
        ),
        ("bob/b.bin", "ObjectCreated:Copy", "bob"),
        ("alice/a.bin", "ObjectRemoved:Delete", "alice"),
        ("bob/t.bin", "ObjectCreated:CompleteMultipartUpload", "bob"),
    ];
    for w in want {
        assert!(
            seen.iter()
                .any(|s| (s.0.as_str(), s.1.as_str(), s.2.as_str()) == w),
            "{w:?} not in {seen:?}"
        );
    }
    let a = got
        .iter()
        .find(|g| g.key() == "alice/a.bin")
        .unwrap()
        .record();
    assert_eq!(a["s3"]["object"]["size"], (CHUNK + 99) as u64);
}
both!(
    legacy_and_tus_writes_make_events,
    legacy_and_tus_writes_make_events
);

fn base64_of(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Two gateways on one Redis share the outboxes: every event of writes made through both is
/// delivered, and (in normal operation, no gateway dying) by one of them only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_deliver_each_event_once() {
    let hook = Receiver::start().await;
    let a = gateway(Store::Redis, &hook.url(), |_| {}).await;
    let prefix = a.cfg.redis_prefix.clone();
    let b = gateway(Store::Redis, &hook.url(), move |cfg| {
        cfg.redis_prefix = prefix
    })
    .await;
    let ca = a.bucket("shared").await;
    let cb = b.client();
    configure(
        &ca,
        "shared",
        vec![rule(
            "all",
            &arn("hook", "webhook"),
            &["s3:ObjectCreated:*"],
            "",
            "",
        )],
    )
    .await;
    const N: usize = 60;
    let writes = (0..N).map(|i| {
        let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        async move { put(&c, "shared", &format!("k{}", i % 7), b"x").await }
    });
    futures_util::future::join_all(writes).await;
    hook.wait_for(N).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = hook.got();
    let mut ids: Vec<&str> = got.iter().map(|g| g.delivery.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N, "every event");
    assert_eq!(got.len(), N, "{} duplicate deliveries", got.len() - N);
    // In order per key, though two gateways delivered.
    for k in 0..7 {
        let key = format!("k{k}");
        let seqs: Vec<String> = got
            .iter()
            .filter(|g| g.key() == key)
            .map(|g| {
                g.record()["s3"]["object"]["sequencer"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{key}: {seqs:?}");
    }
}

/// With several S3 keys the legacy bucket belongs to none of them: its rules are set by the
/// operator with `mpgw admin notification`, checked like the S3 operation's.
async fn operator_configures_the_legacy_bucket(store: Store) {
    use crate::legacy::Client;
    let hook = Receiver::start().await;
    let mut gw = gateway(store, &hook.url(), |cfg| {
        cfg.access_keys.push("OTHERKEY".into());
        cfg.secret_keys.push("other-secret-0123456789".into());
    })
    .await;
    let alice = Client::of(&gw, ACCESS_KEY);
    alice.upload(b"makes the bucket", "first.bin").await;
    let denied = gw
        .client()
        .put_bucket_notification_configuration()
        .bucket("files")
        .notification_configuration(NotificationConfiguration::builder().build())
        .send()
        .await;
    assert_eq!(
        crate::harness::err(denied),
        (403, "AccessDenied".to_owned())
    );
    gw.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, xml: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, xml).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let bad = write(
        "bad.xml",
        "<NotificationConfiguration><QueueConfiguration>\
         <Queue>arn:mpgw:sqs:us-east-1:nobody:webhook</Queue>\
         <Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>",
    );
    let refused = admin_output(&gw, &["notification", "--bucket", "files", "--set", &bad]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("Unable to validate"), "{why}");
    let good = write(
        "good.xml",
        "<NotificationConfiguration><QueueConfiguration><Id>files</Id>\
         <Queue>arn:mpgw:sqs:us-east-1:hook:webhook</Queue>\
         <Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>",
    );
    let out = admin_output(&gw, &["notification", "--bucket", "files", "--set", &good]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<Id>files</Id>"));
    gw.restart().await;
    let alice = Client::of(&gw, ACCESS_KEY);
    alice.upload(b"now with an event", "second.bin").await;
    let got = hook.wait_for(1).await;
    assert_eq!(got[0].key(), format!("{ACCESS_KEY}/second.bin"));
    assert_eq!(got[0].name(), "ObjectCreated:CompleteMultipartUpload");
}
both!(
    operator_configures_the_legacy_bucket,
    operator_configures_the_legacy_bucket
);

/// An event older than --notify-max-age is dead-lettered at its first failure, whatever its
/// tries.
async fn old_events_are_dead_lettered(store: Store) {
    let hook = Receiver::start().await;
    hook.status.store(500, Ordering::SeqCst);
    let gw = gateway(store, &hook.url(), |cfg| {
        cfg.notify_max_age = Duration::from_millis(1);
        cfg.notify_max_tries = 100;
    })
    .await;
    let c = gw.bucket("aged").await;
    configure(
        &c,
        "aged",
        vec![rule(
            "r",
            &arn("hook", "webhook"),
            &["s3:ObjectCreated:*"],
            "",
            "",
        )],
    )
    .await;
    put(&c, "aged", "k", b"x").await;
    let start = Instant::now();
    while counter(&gw, "dead").await < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counter(&gw, "retried").await, 0.0);
}
both!(old_events_are_dead_lettered, old_events_are_dead_lettered);
