//! Scale-out on Redis Cluster: a private three-master cluster, three `mpgw serve` processes on
//! one shared data dir, and uploads whose requests land on every gateway. Also the state-store
//! conformance suite on the cluster (each script and transaction must stay within one slot).
//!
//! Every process started here is killed on drop, also when an assertion fails. A missing
//! `redis-server` fails the tests (the test command installs it).

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use mpgw::model::random_hex;
use mpgw::store::MetaStore;
use mpgw::store::meta_redis::RedisMetaStore;

use crate::harness::{
    all_parts, assert_same_bytes, complete, create_upload, get_bytes, multipart_etag, quoted_md5,
    random_bytes, upload_part,
};

const BUCKET: &str = "scale";
const PART: usize = 256 << 10;

// ---------------- a private Redis Cluster ----------------

/// Three masters on free ports in a temp dir, no replicas, no persistence.
pub(crate) struct RedisCluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    dir: tempfile::TempDir,
    /// TLS only (clients and the cluster bus): the CA's PEM, which signed the nodes' certificate.
    tls_ca: Option<Vec<u8>>,
}

impl RedisCluster {
    fn start() -> Self {
        Self::start_with(None)
    }

    /// With `tls`, a directory holding `ca.pem`, `server.pem` and `server.key` (as
    /// `redis_tls::certificates` makes them), the nodes speak TLS only.
    pub(crate) fn start_with(tls: Option<&Path>) -> Self {
        // Built up in place, so a failure half-way still kills the nodes started so far.
        let mut cluster = Self {
            nodes: Vec::new(),
            ports: Vec::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            tls_ca: tls.map(|d| std::fs::read(d.join("ca.pem")).expect("ca.pem")),
        };
        let dir = cluster.dir.path().to_owned();
        for _ in 0..3 {
            let port = free_cluster_port(&cluster.ports);
            let mut cmd = Command::new("redis-server");
            match tls {
                None => cmd.args(["--port", &port.to_string()]),
                Some(certs) => cmd
                    .args(["--port", "0", "--tls-port", &port.to_string()])
                    .args(["--tls-cluster", "yes", "--tls-auth-clients", "no"])
                    .arg("--tls-cert-file")
                    .arg(certs.join("server.pem"))
                    .arg("--tls-key-file")
                    .arg(certs.join("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(certs.join("ca.pem")),
            };
            let child = cmd
                .args(["--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{port}.conf")))
                .arg("--dir")
                .arg(&dir)
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start redis-server ({e}): the Redis Cluster tests need it on PATH \
                         (apt-get install redis-server; tests/run-all.sh installs it)"
                    )
                });
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            wait_until(
                Duration::from_secs(10),
                &format!("redis-server on {port}"),
                || cluster.cmd(port, &["PING"]).is_some_and(|r| r == "PONG"),
            );
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        // Bounded: redis-cli waits for the nodes to join for as long as it takes.
        let mut cli = Command::new("timeout");
        cli.args(["60", "redis-cli"]);
        if let Some(certs) = tls {
            cli.arg("--tls").arg("--cacert").arg(certs.join("ca.pem"));
        }
        let out = cli
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run timeout redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for &port in &cluster.ports {
            wait_until(Duration::from_secs(20), "cluster_state:ok", || {
                cluster
                    .cmd(port, &["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            });
        }
        cluster
    }

    /// The `--redis-url` value: every node as a seed.
    pub(crate) fn seeds(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.ports
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        if port <= 55_535
            && !taken.contains(&port)
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port pair for a Redis Cluster node");
}

/// One command on one node (not cluster-aware), as a string; None if it fails.
impl RedisCluster {
    /// One command to one node, outside the cluster client; `None` if it fails.
    fn cmd(&self, port: u16, args: &[&str]) -> Option<String> {
        node_cmd(port, self.tls_ca.as_deref(), args)
    }
}

fn node_cmd(port: u16, tls_ca: Option<&[u8]>, args: &[&str]) -> Option<String> {
    let client = match tls_ca {
        None => redis::Client::open(format!("redis://127.0.0.1:{port}")),
        Some(ca) => {
            // As the gateway does (see `meta_redis`): the tests link two rustls providers.
            let _ = rustls::crypto::ring::default_provider().install_default();
            redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{port}"),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.to_vec()),
                },
            )
        }
    }
    .ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<redis::Value>(&mut con).ok()? {
        redis::Value::SimpleString(s) => Some(s),
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

fn wait_until(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------- gateways as processes ----------------

/// One `mpgw serve` process; killed (SIGKILL) on drop.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    fn start(seeds: &str, prefix: &str, data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mpgw"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args([
                "--redis-url",
                seeds,
                "--redis-cluster",
                "--redis-prefix",
                prefix,
            ])
            .args(["--fsync", "false", "--min-part-size", "64KiB"])
            .args(["--log-format", "json"])
            .args(extra)
            .env_clear()
            .env("MPGW_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mpgw");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().expect("stderr"), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let prefix = "mpgw listening on http://";
        let mut line = String::new();
        while !line.starts_with(prefix) {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mpgw exited at start-up; log: {:?}", log.lock().unwrap());
            }
        }
        let rest = &line[prefix.len()..];
        let addr = rest[..rest.find(' ').expect("address")]
            .parse()
            .expect("addr");
        assert!(line.contains("redis cluster"), "not on the cluster: {line}");
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in stdout.lines().map_while(Result::ok) {});
        Self { child, addr, log }
    }

    fn client(&self, (access, secret): &(String, String)) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(format!("http://{}", self.addr))
            .force_path_style(true)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(access, secret, None, None, "cluster"))
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The JSON log lines whose message is `message`.
    fn logged(&self, message: &str) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == message)
            .collect()
    }

    fn all_log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_three(seeds: &str, prefix: &str, data: &Path, extra: &[&str]) -> Vec<Gateway> {
    // Start-up runs recovery, the sweep and expiry: let all three do it at the same time.
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (seeds, prefix, data) = (seeds.to_owned(), prefix.to_owned(), data.to_owned());
            let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
            std::thread::spawn(move || {
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                Gateway::start(&seeds, &prefix, &data, &extra)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("gateway start"))
        .collect()
}

// ---------------- the tests ----------------

/// Uploads `parts` of `data` (numbered from 1) in parallel, part `i` through `clients[i % n]`.
async fn upload_spread(
    clients: &[aws_sdk_s3::Client],
    key: &str,
    id: &str,
    data: &[u8],
    numbers: &[usize],
) -> Vec<(i32, String)> {
    let tasks: Vec<_> = numbers
        .iter()
        .map(|&n| {
            let c = clients[n % clients.len()].clone();
            let chunk = data[(n - 1) * PART..(n * PART).min(data.len())].to_vec();
            let (key, id) = (key.to_owned(), id.to_owned());
            tokio::spawn(async move {
                let n = i32::try_from(n).expect("part number");
                (n, upload_part(&c, BUCKET, &key, &id, n, &chunk).await)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("part task"));
    }
    out.sort();
    out
}

async fn open_uploads(c: &aws_sdk_s3::Client) -> Vec<(String, String)> {
    let out = c
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .expect("list uploads");
    out.uploads()
        .iter()
        .map(|u| {
            (
                u.key().expect("key").to_owned(),
                u.upload_id().expect("id").to_owned(),
            )
        })
        .collect()
}

async fn object_keys(c: &aws_sdk_s3::Client) -> Vec<(String, i64)> {
    let out = c
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .expect("list objects");
    out.contents()
        .iter()
        .map(|o| (o.key().expect("key").to_owned(), o.size().expect("size")))
        .collect()
}

fn generated_credentials(data: &Path) -> (String, String) {
    let text = std::fs::read_to_string(data.join("credentials")).expect("generated credentials");
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(a), Some(s), None) => (a.to_owned(), s.to_owned()),
        _ => panic!("credentials file: {text:?}"),
    }
}

fn blob_dirs(data: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(data.join("blobs")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "slow"),
    ignore = "slow tier: cargo test --features slow"
)]
async fn three_gateways_share_one_cluster_and_data_dir() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    let seeds = cluster.seeds();
    let prefix = format!("mpgw-cluster-{}", random_hex(4));
    let dir = tempfile::tempdir().expect("temp dir");
    let data: PathBuf = dir.path().join("data");
    let expiry = ["--upload-expiry", "4s"];
    // No credentials given: the three generate a pair in the shared data dir at the same time,
    // and must all end up with the one that won.
    let mut gws = start_three(&seeds, &prefix, &data, &expiry);
    let creds = generated_credentials(&data);
    let clients: Vec<_> = gws.iter().map(|g| g.client(&creds)).collect();
    clients[0]
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");

    // 1. One upload, parts round-robin over the three gateways, in parallel and out of order.
    let data1 = random_bytes(12 * PART + 1000);
    let id = create_upload(&clients[1], BUCKET, "spread.bin").await;
    let numbers: Vec<usize> = (1..=13).rev().collect();
    let etags = upload_spread(&clients, "spread.bin", &id, &data1, &numbers).await;
    for c in &clients {
        let listed = all_parts(c, BUCKET, "spread.bin", &id).await;
        let got: Vec<(i32, String)> = listed.iter().map(|(n, e, _)| (*n, e.clone())).collect();
        assert_eq!(got, etags, "ListParts differs between gateways");
        assert_eq!(
            open_uploads(c).await,
            [("spread.bin".to_owned(), id.clone())]
        );
    }
    let parts: Vec<(i32, &str)> = etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let etag = complete(&clients[2], BUCKET, "spread.bin", &id, &parts).await;
    let chunks: Vec<&[u8]> = data1.chunks(PART).collect();
    assert_eq!(etag, multipart_etag(&chunks));
    for c in &clients {
        assert_same_bytes(
            &get_bytes(c, BUCKET, "spread.bin").await,
            &data1,
            "spread.bin",
        );
        assert!(open_uploads(c).await.is_empty());
        assert_eq!(
            object_keys(c).await,
            [("spread.bin".to_owned(), i64::try_from(data1.len()).unwrap())]
        );
    }

    // 2. One gateway SIGKILLed mid-upload; the other two finish it.
    let data2 = random_bytes(10 * PART + 77);
    let id2 = create_upload(&clients[0], BUCKET, "survivor.bin").await;
    let first = upload_spread(&clients, "survivor.bin", &id2, &data2, &[1, 2, 3, 4, 5, 6]).await;
    let in_flight = {
        let (c, chunk, id2) = (
            clients[1].clone(),
            data2[6 * PART..7 * PART].to_vec(),
            id2.clone(),
        );
        tokio::spawn(async move {
            c.upload_part()
                .bucket(BUCKET)
                .key("survivor.bin")
                .upload_id(id2)
                .part_number(7)
                .body(chunk.into())
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    gws[1].kill();
    let _ = in_flight.await;
    let survivors = [clients[0].clone(), clients[2].clone()];
    let rest = upload_spread(&survivors, "survivor.bin", &id2, &data2, &[7, 8, 9, 10, 11]).await;
    // Parts 1..6 that went to the killed gateway were acknowledged: they are on the shared disk
    // and in the cluster, so nothing is re-sent.
    let mut all: Vec<(i32, String)> = first.into_iter().chain(rest).collect();
    all.sort();
    let listed = all_parts(&survivors[1], BUCKET, "survivor.bin", &id2).await;
    assert_eq!(
        listed
            .iter()
            .map(|(n, e, _)| (*n, e.clone()))
            .collect::<Vec<_>>(),
        all
    );
    let parts: Vec<(i32, &str)> = all.iter().map(|(n, e)| (*n, e.as_str())).collect();
    complete(&survivors[0], BUCKET, "survivor.bin", &id2, &parts).await;
    assert_same_bytes(
        &get_bytes(&survivors[1], BUCKET, "survivor.bin").await,
        &data2,
        "survivor.bin",
    );

    // 3. The janitor on all three at once: open uploads older than --upload-expiry, then three
    // fresh gateways whose start-up runs (sweep + expiry) race each other.
    let mut abandoned = Vec::new();
    for i in 0..6 {
        let key = format!("abandoned/{i}");
        let id = create_upload(&survivors[i % 2], BUCKET, &key).await;
        let chunk = random_bytes(1000 + i);
        let e = upload_part(&survivors[(i + 1) % 2], BUCKET, &key, &id, 1, &chunk).await;
        assert_eq!(e, quoted_md5(&chunk));
        abandoned.push(id);
    }
    for g in &mut gws {
        g.kill();
    }
    assert!(blob_dirs(&data).iter().any(|b| abandoned.contains(b)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let gws = start_three(&seeds, &prefix, &data, &expiry);
    let deadline = Instant::now() + Duration::from_secs(15);
    while gws
        .iter()
        .any(|g| g.logged("upload expiry done").is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "a gateway's start-up janitor did not finish: {}",
            gws.iter()
                .map(Gateway::all_log)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired: u64 = gws
        .iter()
        .map(|g| {
            g.logged("upload expiry done")[0]["fields"]["expired"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        expired, 6,
        "each abandoned upload must be expired exactly once"
    );
    for g in &gws {
        let log = g.all_log();
        assert!(
            !log.contains("sweep failed") && !log.contains("expiry failed"),
            "janitor failed: {log}"
        );
    }
    let clients: Vec<_> = gws.iter().map(|g| g.client(&creds)).collect();
    for c in &clients {
        assert!(open_uploads(c).await.is_empty());
        assert_same_bytes(
            &get_bytes(c, BUCKET, "spread.bin").await,
            &data1,
            "spread.bin",
        );
        assert_same_bytes(
            &get_bytes(c, BUCKET, "survivor.bin").await,
            &data2,
            "survivor.bin",
        );
    }
    let left = blob_dirs(&data);
    assert!(
        !left.iter().any(|b| abandoned.contains(b)),
        "expired uploads' files remain: {left:?}"
    );
    eprintln!("cluster scale-out test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "slow"),
    ignore = "slow tier: cargo test --features slow"
)]
async fn meta_conformance_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let seeds = cluster.seeds();
    crate::meta_conformance::all_cases(|| {
        let seeds = seeds.clone();
        async move {
            let prefix = format!("mpgwtest:{}", random_hex(8));
            let store = RedisMetaStore::connect_cluster(&seeds, &prefix, None)
                .await
                .unwrap_or_else(|e| panic!("connect to the cluster at {seeds}: {e}"));
            Arc::new(store) as Arc<dyn MetaStore>
        }
    })
    .await;
    // A single seed is enough: the other masters are discovered.
    let one = format!("redis://127.0.0.1:{}", cluster.ports[2]);
    let store = RedisMetaStore::connect_cluster(&one, "mpgwtest:one", None)
        .await
        .expect("connect through one seed");
    store.ping().await.expect("ping");

    // A master that stops answering: calls that need it fail as Unavailable (503 with
    // Retry-After at the S3 layer) within seconds, and work again once it is back.
    store.all_uploads().await.expect("scan every master");
    let pid = cluster.nodes[0].id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let t = Instant::now();
    let err = store
        .all_uploads()
        .await
        .expect_err("a stopped master answered");
    signal("-CONT");
    assert!(
        matches!(err, mpgw::store::StoreError::Unavailable(_)),
        "not Unavailable: {err:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "took {:?}",
        t.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(e) = store.all_uploads().await {
        assert!(
            Instant::now() < deadline,
            "no recovery after the master came back: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
