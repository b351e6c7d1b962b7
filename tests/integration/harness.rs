//! In-process gateway for the end-to-end tests, plus small helpers (random bytes, MD5s, error
//! inspection, raw SigV4-signed requests).
//!
//! Every gateway runs on its own tokio runtime on its own thread. Stopping it drops that runtime,
//! which also ends the background tasks `App::open` spawns (the orphan sweeper holds the state
//! store open; the embedded store cannot be reopened in the same process while it lives).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use bytes::Bytes;
use md5::{Digest as _, Md5};
use mpgw::config::Config;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

pub const ACCESS_KEY: &str = "MPGWTESTACCESSKEY";
pub const SECRET_KEY: &str = "mpgw-test-secret-key-0123456789";
pub const MIB: usize = 1 << 20;
/// The `--metrics-token` of every test gateway: `/metrics` and the readiness reasons on its S3
/// port answer a bearer of it (see `operator_get`).
pub const METRICS_TOKEN: &str = "mpgw-test-metrics-token";

/// A GET with `Authorization: Bearer <METRICS_TOKEN>`, as a Prometheus scraper sends it.
pub async fn operator_get(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(METRICS_TOKEN)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Generates `<prefix>::embedded` and `<prefix>::redis` tests running `async fn $f(Store)`.
///
/// `both!(slow, name, f)` puts the pair in the slow tier: ignored by plain `cargo test`, run by
/// `cargo test --features slow` (tests/run-all.sh).
macro_rules! both {
    ($name:ident, $f:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$f($crate::harness::Store::Embedded).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$f($crate::harness::Store::Redis).await;
            }
        }
    };
    (slow, $name:ident, $f:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(feature = "slow"),
                ignore = "slow tier: cargo test --features slow"
            )]
            async fn embedded() {
                super::$f($crate::harness::Store::Embedded).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(feature = "slow"),
                ignore = "slow tier: cargo test --features slow"
            )]
            async fn redis() {
                super::$f($crate::harness::Store::Redis).await;
            }
        }
    };
}
pub(crate) use both;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Embedded,
    Redis,
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

struct Running {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    /// Resolves once the server returned and its runtime (with every task it spawned) is gone.
    stopped: oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Replaces the gateway's upload service once it is open (e.g. to wrap its stores with faults).
pub type WrapUploads =
    std::sync::Arc<dyn Fn(mpgw::upload::Uploads) -> mpgw::upload::Uploads + Send + Sync>;

pub struct TestGateway {
    pub store: Store,
    pub cfg: Config,
    wrap: Option<WrapUploads>,
    running: Option<Running>,
    // Last field: removed after the server stopped.
    _dir: tempfile::TempDir,
}

impl TestGateway {
    pub async fn start(store: Store) -> Self {
        Self::start_with(store, |_| {}).await
    }

    /// Starts a gateway after `tweak` adjusted its config (part size limits, fsync…).
    pub async fn start_with(store: Store, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_wrapped(store, tweak, None).await
    }

    /// `start_with`, and the requests are served by `wrap(uploads)` (on every launch).
    pub async fn start_wrapped(
        store: Store,
        tweak: impl FnOnce(&mut Config),
        wrap: Option<WrapUploads>,
    ) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::Builder::new()
            .prefix("mpgw-it-")
            .tempdir()
            .expect("tempdir");
        let prefix = format!(
            "mpgw-it-{}-{}-{:08x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut cfg = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("data"),
            redis_url: None,
            redis_prefix: prefix,
            access_keys: vec![ACCESS_KEY.into()],
            secret_keys: vec![SECRET_KEY.into()],
            fsync: false,
            metrics_token: Some(METRICS_TOKEN.into()),
            ..Config::default()
        };
        if store == Store::Redis {
            let url = redis_url();
            check_redis(&url);
            cfg.redis_url = Some(url);
        }
        tweak(&mut cfg);
        let mut gw = Self {
            store,
            cfg,
            wrap,
            running: None,
            _dir: dir,
        };
        gw.launch().await;
        gw
    }

    async fn launch(&mut self) {
        let cfg = self.cfg.clone();
        let wrap = self.wrap.clone();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<SocketAddr, String>>();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mpgw-test-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let started = async {
                        let (creds, _) = cfg.load_credentials()?;
                        let mut app = mpgw::App::open(&cfg, creds).await?;
                        let tls = mpgw::server::tls_for(&cfg)?;
                        if let Some(wrap) = &wrap {
                            app.uploads = wrap(app.uploads.clone());
                        }
                        let listener = tokio::net::TcpListener::bind(cfg.listen)
                            .await
                            .map_err(|e| e.to_string())?;
                        let addr = listener.local_addr().map_err(|e| e.to_string())?;
                        Ok::<_, String>((app, tls, listener, addr))
                    }
                    .await;
                    let (app, tls, listener, addr) = match started {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(addr));
                    let shutdown = async {
                        let _ = shutdown_rx.await;
                    };
                    mpgw::service::run(listener, app, tls, shutdown, Duration::from_secs(3)).await;
                });
                drop(rt);
                let _ = stopped_tx.send(());
            })
            .expect("spawn server thread");
        let addr = match ready_rx.await {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => panic!("gateway failed to start ({:?} store): {e}", self.store),
            Err(_) => panic!(
                "gateway thread died during start-up ({:?} store)",
                self.store
            ),
        };
        self.running = Some(Running {
            addr,
            shutdown: shutdown_tx,
            stopped: stopped_rx,
            thread,
        });
    }

    /// Graceful stop: no new connections, in-flight requests finish, the runtime is dropped.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown.send(());
            tokio::time::timeout(Duration::from_secs(30), r.stopped)
                .await
                .expect("gateway did not stop within 30 s")
                .expect("gateway thread panicked");
            r.thread.join().expect("gateway thread panicked");
        }
    }

    /// Stops the gateway and starts it again on the same data dir and Redis prefix.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().expect("gateway not running").addr
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    /// The token of legacy user `user` (an access key) that the gateway generated and keeps in
    /// its data dir.
    pub fn legacy_token(&self, user: &str) -> String {
        let path = mpgw::credentials::Users::file(self.data_dir());
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(u, _)| *u == user)
            .map(|(_, t)| t.trim().to_owned())
            .unwrap_or_else(|| panic!("no legacy token for {user} in {}", path.display()))
    }

    /// A new SDK client for the current endpoint (path style, us-east-1, no retries, so that
    /// every server error is seen).
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_with(ACCESS_KEY, SECRET_KEY)
    }

    pub fn client_with(&self, access: &str, secret: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(access, secret, None, None, "mpgw-tests"))
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            // A server that never answers fails the test instead of hanging it.
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates a bucket through the SDK.
    pub async fn bucket(&self, name: &str) -> aws_sdk_s3::Client {
        let c = self.client();
        c.create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
        c
    }

    /// A raw request, SigV4-signed with the test credentials unless told otherwise.
    pub fn raw(&self, method: &str, path_and_query: &str) -> Raw {
        Raw {
            addr: self.addr(),
            method: method.into(),
            path_and_query: path_and_query.into(),
            headers: Vec::new(),
            body: Vec::new(),
            auth: Auth::Signed {
                access: ACCESS_KEY.into(),
                secret: SECRET_KEY.into(),
                time: None,
            },
            unsigned_payload: false,
            payload_hash: None,
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown.send(());
            let _ = r.thread.join();
        }
        // The temp dir goes with the struct, after the server stopped. A TLS Redis is always a
        // test's private server, and its keys go with it.
        if let Some(url) = &self.cfg.redis_url
            && !url.starts_with("rediss://")
            && let Err(e) = delete_prefix(url, &self.cfg.redis_prefix)
        {
            eprintln!(
                "warning: could not delete Redis keys {}:*: {e}",
                self.cfg.redis_prefix
            );
        }
    }
}

fn check_redis(url: &str) {
    let ping = redis::Client::open(url).and_then(|c| {
        let mut con = c.get_connection_with_timeout(Duration::from_secs(3))?;
        redis::cmd("PING").query::<String>(&mut con)
    });
    if let Err(e) = ping {
        panic!("Redis is unreachable at {url} (set REDIS_URL to point at a running server): {e}");
    }
}

/// How a [`PrivateRedis`] keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Memory only (`--appendonly no --save ""`): a restart starts empty.
    None,
    /// Append-only file, fsynced before each write is acknowledged (`--appendonly yes
    /// --appendfsync always --save ""`): a restart, even after SIGKILL, replays every
    /// acknowledged write.
    AofAlways,
}

/// A private redis-server on a free port with its own data dir (tests must never stop the shared
/// one), killed on drop.
pub struct PrivateRedis {
    port: u16,
    persistence: Persistence,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start(persistence: Persistence) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("local addr")
            .port();
        let mut r = Self {
            port,
            persistence,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        r.resume();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port and dir and waits until it answers (it answers only
    /// once an append-only file has been replayed).
    pub fn resume(&mut self) {
        let aof = match self.persistence {
            Persistence::None => ["--appendonly", "no"],
            Persistence::AofAlways => ["--appendonly", "yes"],
        };
        let child = std::process::Command::new("/usr/bin/redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendfsync", "always"])
            .args(aof)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start /usr/bin/redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let url = self.url();
        while redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut con| redis::cmd("PING").query::<String>(&mut con))
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "private redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: a crash, no chance to write anything on the way out.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SCAN + DEL of every key under `prefix:` (the gateway namespaces all its keys there).
pub fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<usize> {
    let mut con = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(3))?;
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)?;
        if !keys.is_empty() {
            deleted += keys.len();
            redis::cmd("DEL").arg(keys).query::<()>(&mut con)?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Number of Redis keys under `prefix:`.
pub fn count_prefix(url: &str, prefix: &str) -> usize {
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("redis");
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    let mut n = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .expect("scan");
        n += keys.len();
        if next == 0 {
            return n;
        }
        cursor = next;
    }
}

// ---------------- data helpers ----------------

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::fill(&mut v[..]);
    v
}

pub fn md5_raw(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5_raw(data))
}

/// `"<hex md5>"` as S3 sends it.
pub fn quoted_md5(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

/// The multipart ETag of an object made of `parts` (quoted): md5 of the binary part md5s, `-N`.
pub fn multipart_etag(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(md5_raw(p));
    }
    format!("\"{}-{}\"", hex::encode(h.finalize()), parts.len())
}

pub fn content_md5(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(md5_raw(data))
}

pub async fn read_all(out: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    out.body
        .collect()
        .await
        .expect("read object body")
        .into_bytes()
        .to_vec()
}

/// The keys of the first page of a ListObjectsV2 of `bucket`, in listing order.
pub async fn list_keys(c: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    c.list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list")
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_owned())
        .collect()
}

pub async fn get_bytes(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    read_all(out).await
}

pub async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) -> String {
    let out = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(data.to_vec().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    out.e_tag().expect("etag").to_owned()
}

/// Asserts a compact "byte-identical" without printing megabytes on failure.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: bytes differ (got {} bytes, want {}; first difference at {first_diff:?})",
            got.len(),
            want.len()
        );
    }
}

// ---------------- errors ----------------

/// HTTP status and S3 error code of a failed SDK call; panics when the call succeeded.
#[track_caller]
pub fn err<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> (u16, String) {
    err_or_transport(r).unwrap_or_else(|e| panic!("no HTTP response: {e}"))
}

/// Like `err`, but a failure without an HTTP response (connection reset, broken pipe, timeout)
/// is returned as `Err(description)` instead of panicking.
#[track_caller]
pub fn err_or_transport<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> Result<(u16, String), String> {
    match r {
        Ok(v) => panic!("expected an error, got success: {v:?}"),
        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
            Some(status) => Ok((status, e.code().unwrap_or_default().to_owned())),
            None => Err(format!("{e:?}")),
        },
    }
}

/// Asserts that an SDK call failed with this status and code.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    status: u16,
    code: &str,
) {
    let got = err(r);
    assert_eq!(got, (status, code.to_owned()), "expected {status} {code}");
}

/// The text of the first `<name>` element of an XML document, if any.
pub fn xml_text(body: &[u8], name: &str) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = s.find(&open)? + open.len();
    let end = s[start..].find(&format!("</{name}>"))? + start;
    Some(s[start..end].to_owned())
}

/// Every text of `<name>` elements, in order.
pub fn xml_texts(body: &[u8], name: &str) -> Vec<String> {
    let s = String::from_utf8_lossy(body);
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = &s[..];
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(rest[..j].to_owned());
        rest = &rest[j + close.len()..];
    }
    out
}

// ---------------- raw requests ----------------

pub enum Auth {
    /// No Authorization header at all.
    Anonymous,
    /// SigV4 with these keys; `time` overrides the signing time (for skew tests).
    Signed {
        access: String,
        secret: String,
        time: Option<SystemTime>,
    },
}

/// A hand-built request, for what the SDK refuses to send.
pub struct Raw {
    addr: SocketAddr,
    method: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    auth: Auth,
    unsigned_payload: bool,
    /// Signed as `x-amz-content-sha256` instead of the body's hash (streaming modes, lies).
    payload_hash: Option<String>,
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn code(&self) -> Option<String> {
        xml_text(&self.body, "Code")
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code().as_deref()),
            (status, Some(code)),
            "unexpected answer; body: {}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

impl Raw {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub fn keys(self, access: &str, secret: &str) -> Self {
        self.auth(Auth::Signed {
            access: access.into(),
            secret: secret.into(),
            time: None,
        })
    }

    pub fn signed_at(self, time: SystemTime) -> Self {
        self.auth(Auth::Signed {
            access: ACCESS_KEY.into(),
            secret: SECRET_KEY.into(),
            time: Some(time),
        })
    }

    /// Sign `x-amz-content-sha256: UNSIGNED-PAYLOAD` instead of the body's hash.
    pub fn unsigned_payload(mut self) -> Self {
        self.unsigned_payload = true;
        self
    }

    /// Sign this `x-amz-content-sha256` value (e.g. `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, or a
    /// hash the body does not have) instead of the body's hash.
    pub fn content_sha256(mut self, value: &str) -> Self {
        self.payload_hash = Some(value.to_owned());
        self
    }

    /// The final header list (host, x-amz-date, x-amz-content-sha256, authorization included).
    pub fn signed_headers(&self) -> Vec<(String, String)> {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
            SigningSettings, UriPathNormalizationMode, sign,
        };
        let mut headers = self.headers.clone();
        // A test may name its own Host (virtual-host-style requests); otherwise the address.
        if !headers.iter().any(|(n, _)| n == "host") {
            headers.push(("host".into(), self.addr.to_string()));
        }
        let Auth::Signed {
            access,
            secret,
            time,
        } = &self.auth
        else {
            return headers;
        };
        if self.unsigned_payload {
            headers.push(("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
        }
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = if self.unsigned_payload {
            PayloadChecksumKind::NoHeader
        } else {
            PayloadChecksumKind::XAmzSha256
        };
        let identity =
            aws_credential_types::Credentials::new(access, secret, None, None, "raw").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(time.unwrap_or_else(SystemTime::now))
            .settings(settings)
            .build()
            .expect("signing params")
            .into();
        let body = if let Some(hash) = &self.payload_hash {
            SignableBody::Precomputed(hash.clone())
        } else if self.unsigned_payload {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(&self.body)
        };
        let uri = format!("http://{}{}", self.addr, self.path_and_query);
        let signable = SignableRequest::new(
            &self.method,
            uri.as_str(),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            body,
        )
        .expect("signable request");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        let (new_headers, new_query) = instructions.into_parts();
        assert!(
            new_query.is_empty(),
            "header signing added query parameters"
        );
        for h in new_headers {
            headers.push((h.name().to_owned(), h.value().to_owned()));
        }
        headers
    }

    /// This request as a SigV4 presigned URL (path and query, valid 5 minutes), signed as an
    /// SDK presigner signs: its query parameters and headers (and `host`) are covered, the
    /// payload is `UNSIGNED-PAYLOAD`. Send it with `Auth::Anonymous`.
    pub fn presigned(&self) -> String {
        use aws_sigv4::http_request::{
            PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
            UriPathNormalizationMode, sign,
        };
        let (access, secret, time) = match &self.auth {
            Auth::Signed {
                access,
                secret,
                time,
            } => (access.as_str(), secret.as_str(), *time),
            Auth::Anonymous => (ACCESS_KEY, SECRET_KEY, None),
        };
        let mut headers = self.headers.clone();
        if !headers.iter().any(|(n, _)| n == "host") {
            headers.push(("host".into(), self.addr.to_string()));
        }
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
        let identity =
            aws_credential_types::Credentials::new(access, secret, None, None, "raw").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(time.unwrap_or_else(SystemTime::now))
            .settings(settings)
            .build()
            .expect("signing params")
            .into();
        let uri = format!("http://{}{}", self.addr, self.path_and_query);
        let signable = SignableRequest::new(
            &self.method,
            uri.as_str(),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::UnsignedPayload,
        )
        .expect("signable request");
        let (instructions, _) = sign(signable, &params).expect("presign").into_parts();
        let mut req = http::Request::builder()
            .method(self.method.as_str())
            .uri(uri.as_str())
            .body(())
            .expect("request");
        instructions.apply_to_request_http1x(&mut req);
        req.uri()
            .path_and_query()
            .expect("path and query")
            .as_str()
            .to_owned()
    }

    /// Sends through reqwest (which adds Content-Length for the body).
    pub async fn send(self) -> RawResponse {
        let headers = self.signed_headers();
        let method = http::Method::from_bytes(self.method.as_bytes()).expect("method");
        let url = format!("http://{}{}", self.addr, self.path_and_query);
        let mut req = reqwest::Client::new()
            .request(method, url)
            .timeout(Duration::from_secs(20));
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        let resp = req.body(self.body).send().await.expect("raw request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("raw response body");
        RawResponse {
            status,
            headers,
            body,
        }
    }

    /// The request head as written on the wire (signed headers, `connection: close`), and the body.
    pub fn into_wire(self) -> (SocketAddr, Vec<u8>, Vec<u8>) {
        let headers = self.signed_headers();
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path_and_query);
        for (n, v) in &headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("connection: close\r\n\r\n");
        (self.addr, head.into_bytes(), self.body)
    }

    /// Writes the request by hand on a new TCP connection, with exactly the given headers (no
    /// Content-Length unless added), and reads the answer until the server closes.
    pub async fn send_tcp(self) -> RawResponse {
        let (addr, head, body) = self.into_wire();
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(&head).await.expect("write head");
        s.write_all(&body).await.expect("write body");
        read_response(&mut s).await
    }
}

/// A SigV2 signature (base64 HMAC-SHA1) of `string_to_sign`, as botocore's HmacV1Auth makes
/// it: `METHOD\nContent-MD5\nContent-Type\nDate-or-Expires\n<x-amz-* lines>/bucket/key?subs`.
pub fn sigv2_signature(secret: &str, string_to_sign: &str) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The query of a SigV2 presigned URL for `string_to_sign` (whose date line is `expires`).
pub fn sigv2_query(access: &str, secret: &str, expires: u64, string_to_sign: &str) -> String {
    let sig = sigv2_signature(secret, string_to_sign);
    let sig = percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC);
    format!("AWSAccessKeyId={access}&Expires={expires}&Signature={sig}")
}

/// A SigV2 `Expires` five minutes from now.
pub fn sigv2_expires() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 300
}

/// Reads an HTTP/1.1 answer until the server closes the connection (10 s at most).
pub async fn read_response(s: &mut tokio::net::TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("server did not answer and close within 10 s")
        .expect("read");
    parse_http_response(&buf)
}

pub fn parse_http_response(buf: &[u8]) -> RawResponse {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of response head");
    let head = std::str::from_utf8(&buf[..end]).expect("response head is not UTF-8");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut headers = http::HeaderMap::new();
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            headers.append(
                http::HeaderName::from_bytes(n.trim().as_bytes()).expect("header name"),
                http::HeaderValue::from_str(v.trim()).expect("header value"),
            );
        }
    }
    let rest = &buf[end + 4..];
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body: body.into(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
}

/// Path of a blob directory of the disk store (uploads keep their parts in `blobs/<uploadId>`).
pub fn blob_dir(data_dir: &Path, upload_id: &str) -> PathBuf {
    data_dir.join("blobs").join(upload_id)
}

// ---------------- multipart helpers ----------------

pub async fn create_upload(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let out = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create upload {key}: {e:?}"));
    out.upload_id().expect("upload id").to_owned()
}

/// Uploads one part; returns its (quoted) ETag.
pub async fn upload_part(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    id: &str,
    n: i32,
    data: &[u8],
) -> String {
    let out = c
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(data.to_vec().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("upload part {n} of {key}: {e:?}"));
    out.e_tag().expect("part etag").to_owned()
}

pub fn completed(parts: &[(i32, &str)]) -> aws_sdk_s3::types::CompletedMultipartUpload {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

pub type CompleteResult = Result<
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
    SdkError<
        aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
>;

pub async fn try_complete(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    id: &str,
    parts: &[(i32, &str)],
) -> CompleteResult {
    complete_with(c, bucket, key, id, parts, |r| r).await
}

/// `try_complete` with `more` applied to the request first (conditional headers, checksums).
pub async fn complete_with(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    id: &str,
    parts: &[(i32, &str)],
    more: impl FnOnce(CompleteRequest) -> CompleteRequest,
) -> CompleteResult {
    more(
        c.complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(completed(parts)),
    )
    .send()
    .await
}

pub type CompleteRequest =
    aws_sdk_s3::operation::complete_multipart_upload::builders::CompleteMultipartUploadFluentBuilder;

/// Completes and returns the object's (quoted) ETag.
pub async fn complete(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    id: &str,
    parts: &[(i32, &str)],
) -> String {
    let out = try_complete(c, bucket, key, id, parts)
        .await
        .unwrap_or_else(|e| panic!("complete {key}: {e:?}"));
    out.e_tag().expect("object etag").to_owned()
}

/// (part number, quoted ETag, size) of every part, paging through ListParts.
pub async fn all_parts(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    id: &str,
) -> Vec<(i32, String, i64)> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c
            .list_parts()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .set_part_number_marker(marker.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("list parts of {key}: {e:?}"));
        for p in page.parts() {
            out.push((
                p.part_number().expect("n"),
                p.e_tag().expect("etag").to_owned(),
                p.size().expect("size"),
            ));
        }
        if page.is_truncated() != Some(true) {
            return out;
        }
        marker = Some(
            page.next_part_number_marker()
                .expect("next marker")
                .to_owned(),
        );
    }
}

/// The upload is gone: ListParts answers 404 NoSuchUpload.
pub async fn assert_upload_gone(c: &aws_sdk_s3::Client, bucket: &str, key: &str, id: &str) {
    assert_err(
        c.list_parts()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
}

/// Names of the files of a blob directory (parts or object files), sorted.
pub fn blob_files(data_dir: &Path, id: &str) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(blob_dir(data_dir, id)) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        // A blob directory is removed with its upload; `blobs/` itself never is. Its absence
        // means the disk store's layout moved, and every "no files left" check would pass.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let blobs = data_dir.join("blobs");
            assert!(
                blobs.is_dir(),
                "{} is missing: the disk store's layout moved, fix blob_dir()",
                blobs.display()
            );
            Vec::new()
        }
        Err(e) => panic!("read blob dir: {e}"),
    };
    v.sort();
    v
}

/// The harness removes its Redis keys when a gateway is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_cleans_redis_keys() {
    let gw = TestGateway::start(Store::Redis).await;
    let c = gw.bucket("cleanup").await;
    put(&c, "cleanup", "k", b"x").await;
    create_upload(&c, "cleanup", "k").await;
    let (url, prefix) = (redis_url(), gw.cfg.redis_prefix.clone());
    assert!(
        count_prefix(&url, &prefix) > 0,
        "the gateway keeps its state under {prefix}:"
    );
    drop(gw);
    assert_eq!(count_prefix(&url, &prefix), 0, "keys left under {prefix}:");
}

/// Runs `openssl` in `dir` (test certificates), failing the test with its stderr.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
