//! Running it as a service: metrics, health, the config file, and the access log (the last
//! through the real binary, whose JSON log lines are read from its stderr).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpgw::cli::Cli;
use mpgw::config::{Config, LogFormat};

use crate::harness::*;

const B: &str = "ops";

// ---------------- metrics ----------------

async fn scrape(endpoint: &str) -> String {
    let resp = operator_get(&format!("{endpoint}/metrics")).await;
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        ct.starts_with("text/plain; version=0.0.4"),
        "content type {ct}"
    );
    resp.text().await.expect("metrics body")
}

/// The value of one series (`name{labels}` exactly as exposed), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("sample value"))
        .next()
        .unwrap_or(0.0)
}

fn requests(text: &str, op: &str, status: u16) -> f64 {
    value(
        text,
        &format!("mpgw_requests_total{{op=\"{op}\",status=\"{status}\"}}"),
    )
}

/// Request counters move when a response body is done, which can be a moment after the client
/// has read it: scrape until `done` holds (or give up after 5 s and return the last scrape).
async fn scrape_until(endpoint: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(endpoint).await;
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics_follow_a_multipart_upload(store: Store) {
    let gw = TestGateway::start_with(store, |c| {
        c.min_part_size = 64 << 10;
        c.fsync = true;
    })
    .await;
    let ep = gw.endpoint();
    let c = gw.bucket(B).await;
    let before = scrape(&ep).await;

    let id = create_upload(&c, B, "big").await;
    let during = scrape_until(&ep, |t| requests(t, "CreateMultipartUpload", 200) >= 1.0).await;
    assert_eq!(value(&during, "mpgw_uploads_total{event=\"created\"}"), 1.0);
    assert_eq!(
        value(&during, "mpgw_uploads_open") - value(&before, "mpgw_uploads_open"),
        1.0
    );

    let parts: Vec<Vec<u8>> = vec![
        random_bytes(300 << 10),
        random_bytes(200 << 10),
        random_bytes(1000),
    ];
    let mut etags = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        etags.push(upload_part(&c, B, "big", &id, i as i32 + 1, p).await);
    }
    let during = scrape_until(&ep, |t| requests(t, "UploadPart", 200) >= 3.0).await;
    assert_eq!(
        value(&during, "mpgw_parts_written_total") - value(&before, "mpgw_parts_written_total"),
        3.0
    );
    let listed: Vec<(i32, &str)> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| (i as i32 + 1, e.as_str()))
        .collect();
    complete(&c, B, "big", &id, &listed).await;
    let got = get_bytes(&c, B, "big").await;
    assert_eq!(got.len(), parts.iter().map(Vec::len).sum::<usize>());

    // Byte counters move right after each socket write, so a scrape may come a moment early:
    // wait for them (bounded) rather than assume.
    let sizes: usize = parts.iter().map(Vec::len).sum();
    let sent_before = value(&before, "mpgw_sent_bytes_total");
    let after = scrape_until(&ep, |t| {
        requests(t, "GetObject", 200) >= 1.0
            && value(t, "mpgw_sent_bytes_total") - sent_before >= sizes as f64
    })
    .await;
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(requests(&after, "CreateMultipartUpload", 200), 1.0);
    assert_eq!(requests(&after, "UploadPart", 200), 3.0);
    assert_eq!(requests(&after, "CompleteMultipartUpload", 200), 1.0);
    assert_eq!(
        delta("mpgw_request_duration_seconds_count{op=\"UploadPart\"}"),
        3.0
    );
    assert_eq!(delta("mpgw_parts_written_total"), 3.0);
    assert_eq!(delta("mpgw_uploads_total{event=\"completed\"}"), 1.0);
    assert_eq!(delta("mpgw_uploads_open"), 0.0);
    assert!(
        delta("mpgw_received_bytes_total") >= sizes as f64,
        "bytes received"
    );
    assert!(
        delta("mpgw_sent_bytes_total") >= sizes as f64,
        "bytes sent (the GetObject)"
    );
    assert!(delta("mpgw_part_write_duration_seconds_count") >= 3.0);
    assert!(delta("mpgw_fsync_duration_seconds_count{target=\"file\"}") >= 3.0);
    assert!(delta("mpgw_store_duration_seconds_count{method=\"put_part\"}") >= 3.0);
    assert!(value(&after, "mpgw_connections_total") >= 1.0);
    assert_eq!(
        value(
            &after,
            "mpgw_store_errors_total{method=\"put_part\",kind=\"unavailable\"}"
        ),
        0.0
    );

    // A refused request is counted under its operation even though it never got past auth.
    let resp = reqwest::Client::new()
        .put(format!("{ep}/{B}/anon"))
        .body("x")
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 403);
    let after = scrape_until(&ep, |t| requests(t, "PutObject", 403) >= 1.0).await;
    assert_eq!(requests(&after, "PutObject", 403), 1.0);
}
both!(
    metrics_follow_a_multipart_upload,
    metrics_follow_a_multipart_upload
);

// ---------------- health ----------------

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// Polls `url` until it answers `status`, for at most `within`; returns the last answer.
async fn wait_for(url: &str, status: u16, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let got = get(url).await;
        if got.0 == status || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_state_store() {
    let mut redis = PrivateRedis::start(Persistence::None);
    let url = redis.url();
    let gw = TestGateway::start_with(Store::Redis, |c| c.redis_url = Some(url)).await;
    let (live, ready) = (
        format!("{}/health/live", gw.endpoint()),
        format!("{}/health/ready", gw.endpoint()),
    );
    assert_eq!(get(&ready).await, (200, "ready\n".into()));

    redis.kill();
    let (status, body) = wait_for(&ready, 503, Duration::from_secs(10)).await;
    assert_eq!(status, 503, "still ready with Redis stopped: {body}");
    // Anyone gets the answer; only the operator (the metrics token) gets the reasons.
    assert_eq!(body, "not ready\n");
    let resp = operator_get(&ready).await;
    assert_eq!(resp.status(), 503);
    let body = resp.text().await.unwrap();
    assert!(body.contains("state store"), "{body}");
    assert_eq!(get(&live).await.0, 200, "liveness does not depend on Redis");
    let text = scrape(&gw.endpoint()).await;
    assert!(
        value(
            &text,
            "mpgw_store_errors_total{method=\"ping\",kind=\"unavailable\"}"
        ) >= 1.0,
        "{text}"
    );

    redis.resume();
    let (status, body) = wait_for(&ready, 200, Duration::from_secs(10)).await;
    assert_eq!(
        status, 200,
        "not ready again 10 s after Redis came back: {body}"
    );
    drop(gw); // deletes its keys while the private Redis still runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_the_disk_reserve() {
    let gw = TestGateway::start_with(Store::Embedded, |c| c.min_free_space = u64::MAX).await;
    let ready = format!("{}/health/ready", gw.endpoint());
    // The data dir's path and free bytes are for the operator only.
    assert_eq!(get(&ready).await, (503, "not ready\n".into()));
    let resp = operator_get(&ready).await;
    assert_eq!(resp.status(), 503);
    let body = resp.text().await.unwrap();
    assert!(body.contains("min-free-space"), "{body}");
    assert!(
        body.contains(gw.data_dir().to_str().unwrap()),
        "the operator's view names the data dir: {body}"
    );
    assert_eq!(get(&format!("{}/health/live", gw.endpoint())).await.0, 200);
}

/// On the S3 port (no --admin-listen) a stranger gets liveness and a bare readiness only: no
/// metrics, no data dir path or free bytes. With --metrics-token the operator gets both with
/// `Authorization: Bearer`; without one `/metrics` is no admin path there at all (an anonymous
/// S3 request: 403 AccessDenied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_port_tells_strangers_nothing() {
    let gw = TestGateway::start_with(Store::Embedded, |c| c.min_free_space = u64::MAX).await;
    let ep = gw.endpoint();
    let data_dir = gw.data_dir().to_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let send = |path: &str, auth: Option<&str>| {
        let mut req = client.get(format!("{ep}{path}"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let www = resp.headers().get("www-authenticate").cloned();
            (status, resp.text().await.expect("body"), www)
        }
    };
    let bearer = format!("Bearer {METRICS_TOKEN}");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic x"),
        Some(METRICS_TOKEN),
    ] {
        let (status, body, www) = send("/metrics", auth).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(!body.contains("mpgw_"), "{auth:?}: {body}");
        assert!(www.is_some(), "{auth:?}");
        let (status, body, _) = send("/health/ready", auth).await;
        assert_eq!((status, body.as_str()), (503, "not ready\n"), "{auth:?}");
        assert_eq!(send("/health/live", auth).await.0, 200);
    }
    let (status, body, _) = send("/metrics", Some(&bearer)).await;
    assert_eq!(status, 200);
    assert!(body.contains("mpgw_connections_total"), "{body}");
    let (status, body, _) = send("/health/ready", Some(&bearer)).await;
    assert_eq!(status, 503);
    assert!(
        body.contains(&data_dir) && body.contains("bytes free"),
        "{body}"
    );

    // Without a token nothing on the S3 port serves the metrics: S3 answers as for any path.
    let gw = TestGateway::start_with(Store::Embedded, |c| c.metrics_token = None).await;
    let resp = operator_get(&format!("{}/metrics", gw.endpoint())).await;
    assert_eq!(resp.status(), 400, "a bearer token is no S3 credential");
    let resp = reqwest::get(format!("{}/metrics", gw.endpoint()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert_eq!(
        get(&format!("{}/health/ready", gw.endpoint())).await,
        (200, "ready\n".into())
    );
}

// ---------------- config file ----------------

/// Every key, each set to something other than its default.
const EVERY_KEY: &str = r#"
listen = "127.0.0.1:9100"
admin-listen = "127.0.0.1:9101"
metrics-token = "scrape-me"
data-dir = "/var/lib/mpgw"
min-free-space = "2GiB"
redis-url = "rediss://10.0.0.1:6380/2"
redis-prefix = "gw7"
redis-cluster = true
redis-ca-file = "/etc/mpgw/redis-ca.pem"
redis-cert-file = "/etc/mpgw/redis-client.pem"
redis-key-file = "/etc/mpgw/redis-client.key"
region = "eu-central-1"
access-key = ["ak1", "ak2"]
secret-key = ["sk1", "sk2"]
credentials-file = "/etc/mpgw/credentials"
fsync = false
min-part-size = "1MiB"
max-part-size = 104857600
log-format = "json"
shutdown-timeout = 5
max-header-size = "32KiB"
header-timeout = "10s"
idle-timeout = "2m"
body-timeout = 45
min-body-rate = 512
body-rate-window = "20s"
io-threads = 8
max-connections = 100
http2-max-streams = 16
tls-cert = "/etc/mpgw/cert.pem"
tls-key = "/etc/mpgw/key.pem"
domain = "s3.example.com"
cors-allow-origins = ["https://app.example.com", "http://localhost:3000"]
legacy-bucket = "uploads"
tus-path = "/_up/"
legacy-users = "/etc/mpgw/users"
legacy-chunk-size = "8MiB"
upload-expiry = "36h"
max-uploads-per-key = 250
notify-webhook = ["hook=https://hooks.example.com/s3"]
notify-webhook-secret = ["hook=sign-me"]
notify-webhook-token = ["hook=bear-me"]
notify-timeout = "3s"
notify-webhook-timeout = ["hook=10s"]
notify-redis = ["feed=mpgw:events"]
notify-redis-url = ["feed=redis://10.0.0.2:6379/1"]
notify-redis-maxlen = 5000
notify-max-tries = 7
notify-max-age = "2h"
notify-backoff = "500ms"
notify-backoff-max = "1m"
notify-queue-limit = 1000
"#;

fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn config_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "mpgw.toml", EVERY_KEY);
    let got = Cli::serve_config(["mpgw", "serve", "--config", &path]).unwrap();
    let want = Config {
        listen: "127.0.0.1:9100".parse().unwrap(),
        admin_listen: Some("127.0.0.1:9101".parse().unwrap()),
        metrics_token: Some("scrape-me".into()),
        data_dir: "/var/lib/mpgw".into(),
        min_free_space: 2 << 30,
        redis_url: Some("rediss://10.0.0.1:6380/2".into()),
        redis_prefix: "gw7".into(),
        redis_cluster: true,
        redis_ca_file: Some("/etc/mpgw/redis-ca.pem".into()),
        redis_cert_file: Some("/etc/mpgw/redis-client.pem".into()),
        redis_key_file: Some("/etc/mpgw/redis-client.key".into()),
        region: "eu-central-1".into(),
        access_keys: vec!["ak1".into(), "ak2".into()],
        secret_keys: vec!["sk1".into(), "sk2".into()],
        credentials_file: Some("/etc/mpgw/credentials".into()),
        fsync: false,
        min_part_size: 1 << 20,
        max_part_size: 100 << 20,
        log_format: LogFormat::Json,
        shutdown_timeout: 5,
        max_header_size: 32 << 10,
        header_timeout: std::time::Duration::from_secs(10),
        idle_timeout: std::time::Duration::from_secs(120),
        body_timeout: std::time::Duration::from_secs(45),
        min_body_rate: 512,
        body_rate_window: std::time::Duration::from_secs(20),
        io_threads: 8,
        max_connections: 100,
        http2_max_streams: 16,
        tls_cert: Some("/etc/mpgw/cert.pem".into()),
        tls_key: Some("/etc/mpgw/key.pem".into()),
        domain: Some("s3.example.com".into()),
        cors_allow_origins: vec![
            "https://app.example.com".into(),
            "http://localhost:3000".into(),
        ],
        legacy_bucket: "uploads".into(),
        tus_path: "/_up/".into(),
        legacy_users: Some("/etc/mpgw/users".into()),
        legacy_chunk_size: 8 << 20,
        upload_expiry: std::time::Duration::from_secs(36 * 3600),
        max_uploads_per_key: 250,
        notify_webhook: vec!["hook=https://hooks.example.com/s3".into()],
        notify_webhook_secret: vec!["hook=sign-me".into()],
        notify_webhook_token: vec!["hook=bear-me".into()],
        notify_timeout: std::time::Duration::from_secs(3),
        notify_webhook_timeout: vec!["hook=10s".into()],
        notify_redis: vec!["feed=mpgw:events".into()],
        notify_redis_url: vec!["feed=redis://10.0.0.2:6379/1".into()],
        notify_redis_maxlen: 5000,
        notify_max_tries: 7,
        notify_max_age: std::time::Duration::from_secs(2 * 3600),
        notify_backoff: std::time::Duration::from_millis(500),
        notify_backoff_max: std::time::Duration::from_secs(60),
        notify_queue_limit: 1000,
    };
    assert_eq!(got, want);
    // EVERY_KEY must stay complete: it sets every key of the example file (which a unit test
    // keeps in step with the flags).
    let keys = mpgw::config::EXAMPLE
        .lines()
        .filter_map(|l| Some(l.trim_start_matches("# ").split_once(" = ")?.0));
    for key in keys.filter(|k| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')) {
        assert!(
            EVERY_KEY.contains(&format!("\n{key} = ")),
            "{key} is not set in EVERY_KEY"
        );
    }

    // A flag beats the file, the file beats the default.
    let got = Cli::serve_config([
        "mpgw",
        "serve",
        "--config",
        &path,
        "--region",
        "us-east-1",
        "--fsync",
        "true",
    ])
    .unwrap();
    assert_eq!(
        (got.region.as_str(), got.fsync, got.redis_prefix.as_str()),
        ("us-east-1", true, "gw7")
    );
}

#[test]
fn malformed_config_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown.toml",
            "region = \"x\"\nretention-days = 3\n",
            "retention-days",
        ),
        ("size.toml", "max-part-size = \"lots\"\n", "max-part-size"),
        (
            "addr.toml",
            "admin-listen = \"localhost\"\n",
            "admin-listen",
        ),
        (
            "type.toml",
            "shutdown-timeout = \"soon\"\n",
            "shutdown-timeout",
        ),
    ];
    for (name, text, key) in cases {
        let path = write_config(dir.path(), name, text);
        let e = Cli::serve_config(["mpgw", "serve", "--config", &path]).unwrap_err();
        assert!(e.contains(&format!("`{key}`")), "{name}: {e}");

        let check = Command::new(env!("CARGO_BIN_EXE_mpgw"))
            .args(["config", "check", &path])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&check.stderr);
        assert!(
            !check.status.success() && stderr.contains(&format!("`{key}`")),
            "config check {name}: {stderr}"
        );
    }
    // `serve` refuses to start on the same file, before binding anything.
    let path = write_config(
        dir.path(),
        "start.toml",
        "listen = \"127.0.0.1:0\"\nbogus = true\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mpgw"))
        .args(["serve", "--config", &path])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`bogus`"));

    let ok = Command::new(env!("CARGO_BIN_EXE_mpgw"))
        .args(["config", "example"])
        .output()
        .unwrap();
    let example = write_config(
        dir.path(),
        "example.toml",
        &String::from_utf8(ok.stdout).unwrap(),
    );
    let check = Command::new(env!("CARGO_BIN_EXE_mpgw"))
        .args(["config", "check", &example])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Event targets: checked, and listed with the ARNs the bucket rules name them by.
    let targets = write_config(
        dir.path(),
        "targets.toml",
        "region = \"eu-west-1\"\nnotify-webhook = [\"hook=http://127.0.0.1:8000/\"]\n\
         notify-redis = [\"feed=mpgw:events\"]\nnotify-redis-url = [\"feed=redis://127.0.0.1:6379\"]\n",
    );
    let check = Command::new(env!("CARGO_BIN_EXE_mpgw"))
        .args(["config", "check", &targets])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{out}");
    assert!(
        out.contains("event target hook: arn:mpgw:sqs:eu-west-1:hook:webhook"),
        "{out}"
    );
    assert!(
        out.contains("event target feed: arn:mpgw:sqs:eu-west-1:feed:redis"),
        "{out}"
    );
    let unknown = write_config(
        dir.path(),
        "unknown.toml",
        "notify-webhook-secret = [\"nobody=s\"]\n",
    );
    let check = Command::new(env!("CARGO_BIN_EXE_mpgw"))
        .args(["config", "check", &unknown])
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("no event target named \"nobody\""));
}

// ---------------- the binary: addresses, access log ----------------

/// `mpgw serve` as a child process, its stderr (JSON log lines) collected by a thread.
struct Binary {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    fn start(config: &str, envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mpgw"))
            .args(["serve", "--config", config])
            .env_clear()
            .env("MPGW_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mpgw");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        // The bound addresses (port 0 in the file) are printed on stdout.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut addr_of = |prefix: &str| -> SocketAddr {
            let mut line = String::new();
            while !line.starts_with(prefix) {
                line.clear();
                assert!(
                    stdout.read_line(&mut line).unwrap() > 0,
                    "mpgw exited; log: {:?}",
                    log.lock().unwrap()
                );
            }
            let rest = &line[prefix.len()..];
            rest[..rest.find(' ').unwrap()].parse().unwrap()
        };
        let addr = addr_of("mpgw listening on http://");
        let admin = addr_of("mpgw admin on http://");
        Self {
            child,
            addr,
            admin,
            log,
        }
    }

    /// The JSON log lines that satisfy `pred`, waiting up to 5 s for the first one.
    fn lines(&self, pred: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<serde_json::Value> = self
                .log
                .lock()
                .unwrap()
                .iter()
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
                })
                .filter(|v| pred(v))
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn all_log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM, then wait for a graceful exit.
    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("mpgw did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sdk_client(addr: SocketAddr) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(format!("http://{addr}"))
        .force_path_style(true)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "ops",
        ))
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &v["fields"][name]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_from_a_config_file_and_logs_each_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        "mpgw.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\ndata-dir = {data:?}\nfsync = false\n\
             access-key = [\"{ACCESS_KEY}\"]\nsecret-key = [\"{SECRET_KEY}\"]\nlog-format = \"text\"\n"
        ),
    );
    // The environment beats the file: JSON logs although the file says text.
    let bin = Binary::start(&config, &[("MPGW_LOG_FORMAT", "json")]);
    assert!(
        data.join("state.redb").exists(),
        "data-dir from the file is not in use"
    );

    // Start-up recovery reports its counts and duration.
    let recovery = bin.lines(|v| field(v, "message") == "recovery done");
    assert!(
        recovery
            .first()
            .is_some_and(|v| field(v, "settled").is_u64() && field(v, "duration_ms").is_u64())
    );

    // The admin listener has the operator endpoints; the S3 listener leaves those paths to S3.
    let admin = format!("http://{}", bin.admin);
    assert_eq!(
        get(&format!("{admin}/health/ready")).await,
        (200, "ready\n".into())
    );
    assert!(scrape(&admin).await.contains("mpgw_uploads_open "));
    let (status, body) = get(&format!("http://{}/metrics", bin.addr)).await;
    assert_eq!(
        status, 403,
        "main listener answered /metrics itself: {body}"
    );

    let c = sdk_client(bin.addr);
    c.create_bucket()
        .bucket(B)
        .send()
        .await
        .expect("create bucket");
    let data = random_bytes(1000);
    c.put_object()
        .bucket(B)
        .key("dir/obj")
        .body(data.clone().into())
        .send()
        .await
        .expect("put");
    let presign =
        aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let url = c
        .get_object()
        .bucket(B)
        .key("dir/obj")
        .presigned(presign)
        .await
        .unwrap()
        .uri()
        .to_owned();
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-amz-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(resp.bytes().await.unwrap().len(), 1000);

    let access = bin
        .lines(|v| v["target"] == "mpgw::access" && field(v, "request_id") == request_id.as_str());
    assert_eq!(
        access.len(),
        1,
        "one access line per request; log:\n{}",
        bin.all_log()
    );
    let line = &access[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(field(line, "op"), "GetObject");
    assert_eq!(field(line, "bucket"), B);
    assert_eq!(field(line, "key"), "dir/obj");
    assert_eq!(field(line, "access_key"), ACCESS_KEY);
    assert_eq!(field(line, "status"), 200);
    assert_eq!(field(line, "bytes_out"), 1000);
    assert!(field(line, "duration_ms").is_u64());
    let put = bin.lines(|v| v["target"] == "mpgw::access" && field(v, "op") == "PutObject");
    assert!(
        put.first()
            .is_some_and(|v| field(v, "bytes_in").as_u64() >= Some(1000)),
        "{put:?}"
    );

    // What is not implemented is still named: operation, bucket and key.
    let (status, _) = err(c
        .get_object_legal_hold()
        .bucket(B)
        .key("dir/obj")
        .send()
        .await);
    assert_eq!(status, 501);
    let held = bin.lines(|v| v["target"] == "mpgw::access" && field(v, "status") == 501);
    assert!(
        held.first()
            .is_some_and(|v| field(v, "op") == "GetObjectLegalHold"
                && field(v, "bucket") == B
                && field(v, "key") == "dir/obj"
                && field(v, "error_code") == "NotImplemented"),
        "{held:?}"
    );

    let refused = bin.lines(|v| v["target"] == "mpgw::access" && field(v, "status") == 403);
    assert!(
        refused
            .first()
            .is_some_and(|v| field(v, "error_code") == "AccessDenied"),
        "{refused:?}"
    );

    // Neither the presigned signature nor the credential scope reach the log.
    let signature = url
        .split("X-Amz-Signature=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let log = bin.all_log();
    assert!(
        !log.contains(signature)
            && !log.contains("X-Amz-Credential")
            && !log.contains("AWS4-HMAC-SHA256")
    );
    assert!(!log.contains(SECRET_KEY));

    bin.terminate();
}
