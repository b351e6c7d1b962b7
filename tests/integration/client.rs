//! `mpgw upload` / `mpgw download`: the real binary as a child process (so it can be SIGKILLed
//! half-way), against an in-process gateway behind a TCP proxy that counts the bytes each way
//! and can slow them down, so "half-way" is catchable and "how much was sent again" is measured
//! on the wire. Each scenario runs against both state stores.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{
    ACCESS_KEY, MIB, SECRET_KEY, Store, TestGateway, all_parts, both, random_bytes,
};

const BIN: &str = env!("CARGO_BIN_EXE_mpgw");
/// Every wait in these tests is bounded by this.
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------- a counting, throttling TCP proxy ----------------

/// Paces one direction to `rate` bytes/s (0: unlimited), across all connections.
#[derive(Default)]
struct Throttle {
    rate: AtomicU64,
    next_free: Mutex<Option<Instant>>,
}

impl Throttle {
    async fn pass(&self, n: usize) {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return;
        }
        let until = {
            let mut next = self.next_free.lock().unwrap();
            let start = next.map_or_else(Instant::now, |t| t.max(Instant::now()));
            let until = start + Duration::from_secs_f64(n as f64 / rate as f64);
            *next = Some(until);
            until
        };
        tokio::time::sleep_until(until.into()).await;
    }
}

#[derive(Default)]
struct Direction {
    bytes: AtomicU64,
    throttle: Throttle,
}

struct Proxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    /// Client → server.
    up: Arc<Direction>,
    /// Server → client.
    down: Arc<Direction>,
    /// Connections being proxied.
    open: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream));
        let (up, down) = (
            Arc::new(Direction::default()),
            Arc::new(Direction::default()),
        );
        let open = Arc::new(AtomicU64::new(0));
        let (u, d, target, count) = (up.clone(), down.clone(), upstream.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let to = *target.lock().unwrap();
                let (u, d, count) = (u.clone(), d.clone(), count.clone());
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _open = Decrement(count);
                    // A refused upstream (the gateway is restarting) drops the client's connection.
                    let Ok(server) = TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    // Either side closing ends both: HTTP/1.1 never half-closes here.
                    tokio::select! {
                        () = pump(cr, sw, &u) => {}
                        () = pump(sr, cw, &d) => {}
                    }
                });
            }
        });
        Self {
            addr,
            upstream,
            up,
            down,
            open,
            task,
        }
    }

    /// After a client was killed: lets through what it had already written into its sockets
    /// (megabytes of kernel buffers on loopback), so those bytes count for the run that sent
    /// them, and waits until its connections are gone.
    async fn drain(&self) {
        let up = self.up.throttle.rate.swap(0, Ordering::Relaxed);
        let down = self.down.throttle.rate.swap(0, Ordering::Relaxed);
        let deadline = Instant::now() + PATIENCE;
        while self.open.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "proxied connections outlive the client"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.up.throttle.rate.store(up, Ordering::Relaxed);
        self.down.throttle.rate.store(down, Ordering::Relaxed);
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_upstream(&self, to: SocketAddr) {
        *self.upstream.lock().unwrap() = to;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Decrement(Arc<AtomicU64>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dir: &Direction,
) {
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dir.throttle.pass(n).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        dir.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

// ---------------- the client as a child process ----------------

/// A client "installation": its state dir (upload journals) and the environment it runs with.
struct Client {
    home: tempfile::TempDir,
}

impl Client {
    fn new() -> Self {
        Self {
            home: tempfile::Builder::new()
                .prefix("mpgw-client-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// `mpgw <args>` with only our settings in its environment, stdout and stderr captured.
    fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new(BIN)
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("XDG_STATE_HOME", self.path("state"))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("MPGW_USERNAME", ACCESS_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start mpgw")
    }

    /// Runs to the end (bounded); returns the output.
    async fn run(&self, args: &[&str]) -> Output {
        let child = self.spawn(args);
        tokio::time::timeout(PATIENCE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("mpgw {args:?} did not finish within {PATIENCE:?}"))
            .unwrap()
    }

    /// The one upload journal in the state dir, once it exists.
    fn upload_journal(&self) -> Option<serde_json::Value> {
        let dir = self.path("state/mpgw/uploads");
        let entry = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
        serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()
    }

    fn journals(&self) -> usize {
        std::fs::read_dir(self.path("state/mpgw/uploads")).map_or(0, |d| d.count())
    }
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}): {stderr}",
        out.status
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

/// Polls `cond` every 20 ms until it holds; panics after `PATIENCE` or if `child` exits first.
async fn wait_until(
    child: &mut tokio::process::Child,
    what: &str,
    mut cond: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    while !cond().await {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mpgw exited ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigkill(mut child: tokio::process::Child) -> Output {
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "not killed: {out:?}"
    );
    out
}

// ---------------- data ----------------

/// Writes `size` random bytes to `path`; returns their MD5.
fn random_file(path: &Path, size: usize) -> [u8; 16] {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut h = Md5::new();
    let mut left = size;
    while left > 0 {
        let chunk = random_bytes(left.min(8 * MIB));
        std::io::Write::write_all(&mut f, &chunk).unwrap();
        h.update(&chunk);
        left -= chunk.len();
    }
    std::io::Write::flush(&mut f).unwrap();
    h.finalize().into()
}

fn file_md5(path: &Path) -> [u8; 16] {
    Md5::digest(std::fs::read(path).unwrap()).into()
}

/// MD5 and ETag of an object, streamed (the objects here are up to 200 MiB).
async fn object_md5(gw: &TestGateway, bucket: &str, key: &str) -> ([u8; 16], String) {
    let out = gw
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let etag = out.e_tag().unwrap().trim_matches('"').to_owned();
    let mut body = out.body;
    let mut h = Md5::new();
    while let Some(chunk) = body.next().await {
        h.update(chunk.unwrap());
    }
    (h.finalize().into(), etag)
}

fn fraction(n: u64, of: usize) -> f64 {
    n as f64 / of as f64
}

// ---------------- (1) kill the uploader half-way, run it again ----------------

const BIG: usize = 200 * MIB;
const PART: usize = 5 * MIB;

async fn upload_resumes_after_kill(store: Store) {
    let gw = TestGateway::start(store).await;
    let s3 = gw.bucket("uploads").await;
    let proxy = Proxy::start(gw.addr()).await;
    let client = Client::new();
    let file = client.path("big.bin");
    let md5 = random_file(&file, BIG);
    let file_arg = file.to_str().unwrap();
    let args = [
        "upload",
        file_arg,
        "s3://uploads/big.bin",
        "--endpoint",
        &proxy.endpoint(),
        "--part-size",
        "5MiB",
        "--jobs",
        "4",
    ];

    // About 4 s for the whole file: slow enough to stop it past the middle.
    proxy
        .up
        .throttle
        .rate
        .store(50 * MIB as u64, Ordering::Relaxed);
    let mut child = client.spawn(&args);
    let parts = (BIG / PART) as u64;
    wait_until(&mut child, "60% of the parts are stored", async || {
        let Some(id) = client
            .upload_journal()
            .and_then(|j| j["upload_id"].as_str().map(str::to_owned))
        else {
            return false;
        };
        all_parts(&s3, "uploads", "big.bin", &id).await.len() as u64 * 10 >= parts * 6
    })
    .await;
    sigkill(child).await;
    proxy.drain().await;
    let first = proxy.up.bytes.swap(0, Ordering::Relaxed);
    let id = client
        .upload_journal()
        .expect("the journal survives a kill")["upload_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = all_parts(&s3, "uploads", "big.bin", &id).await.len();
    assert!(
        stored < parts as usize,
        "the upload finished before the kill"
    );

    // A stored part whose bytes differ from the file must be sent again.
    let junk = random_bytes(PART);
    let etag = s3
        .upload_part()
        .bucket("uploads")
        .key("big.bin")
        .upload_id(&id)
        .part_number(1)
        .body(junk.into())
        .send()
        .await
        .unwrap();
    assert!(etag.e_tag().is_some());

    proxy.up.throttle.rate.store(0, Ordering::Relaxed);
    let out = client.run(&args).await;
    let printed = assert_ok(&out, "the resumed upload");
    let second = proxy.up.bytes.load(Ordering::Relaxed);

    let (got, etag) = object_md5(&gw, "uploads", "big.bin").await;
    assert_eq!(got, md5, "the object differs from the file");
    assert_eq!(printed, etag, "printed ETag");
    assert!(etag.ends_with(&format!("-{parts}")), "{etag}");
    assert_eq!(client.journals(), 0, "the journal is removed after success");
    let resent = (first + second).saturating_sub(BIG as u64);
    eprintln!(
        "upload resume ({store:?}): {stored}/{parts} parts stored at the kill; first run sent {:.3}, second {:.3}, re-sent {:.3} of the file",
        fraction(first, BIG),
        fraction(second, BIG),
        fraction(resent, BIG)
    );
    assert!(
        second < BIG as u64 / 2,
        "the second run sent {second} bytes of {BIG}"
    );
    assert!(
        resent < BIG as u64 / 2,
        "{resent} bytes of {BIG} were sent twice"
    );
}
both!(slow, upload_kill_and_resume, upload_resumes_after_kill);

// ---------------- (2) the server restarts mid-upload ----------------

const MID: usize = 60 * MIB;

async fn upload_survives_server_restart(store: Store) {
    let mut gw = TestGateway::start(store).await;
    let s3 = gw.bucket("uploads").await;
    let proxy = Proxy::start(gw.addr()).await;
    let client = Client::new();
    let file = client.path("mid.bin");
    let md5 = random_file(&file, MID);
    let args = [
        "upload",
        file.to_str().unwrap(),
        "s3://uploads/mid.bin",
        "--endpoint",
        &proxy.endpoint(),
        "--part-size",
        "5MiB",
        "--jobs",
        "2",
    ];

    proxy
        .up
        .throttle
        .rate
        .store(20 * MIB as u64, Ordering::Relaxed);
    let mut child = client.spawn(&args);
    let parts = (MID / PART) as u64;
    wait_until(&mut child, "40% of the parts are stored", async || {
        let Some(id) = client
            .upload_journal()
            .and_then(|j| j["upload_id"].as_str().map(str::to_owned))
        else {
            return false;
        };
        all_parts(&s3, "uploads", "mid.bin", &id).await.len() as u64 * 10 >= parts * 4
    })
    .await;
    // Stop and start on the same data dir and Redis prefix (a new port, which the proxy follows).
    gw.restart().await;
    proxy.set_upstream(gw.addr());

    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the upload hangs")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let printed = if out.status.success() {
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    } else {
        // Out of retries: the journal lets a second run finish.
        assert_ok(&client.run(&args).await, "the re-run after the restart")
    };
    let total = proxy.up.bytes.load(Ordering::Relaxed);
    let (got, etag) = object_md5(&gw, "uploads", "mid.bin").await;
    assert_eq!(got, md5, "the object differs from the file");
    assert_eq!(printed, etag);
    let resent = total.saturating_sub(MID as u64);
    eprintln!(
        "server restart ({store:?}): client {}, re-sent {:.3} of the file, {} retries",
        if out.status.success() {
            "retried through it"
        } else {
            "exited, re-run finished"
        },
        fraction(resent, MID),
        stderr.lines().filter(|l| l.contains("retrying")).count()
    );
    assert!(
        stderr.contains("retrying"),
        "the client never saw the restart: {stderr}"
    );
    assert!(
        resent < MID as u64 / 2,
        "{resent} bytes of {MID} were sent twice"
    );
}
both!(upload_server_restart, upload_survives_server_restart);

// ---------------- (3) the same over the legacy API ----------------

async fn legacy_upload_resumes_after_kill(store: Store) {
    let gw = TestGateway::start(store).await;
    let s3 = gw.client();
    let proxy = Proxy::start(gw.addr()).await;
    let client = Client::new();
    let file = client.path("legacy.bin");
    let md5 = random_file(&file, MID);
    let token = gw.legacy_token(ACCESS_KEY);
    let args = [
        "upload",
        "--legacy",
        file.to_str().unwrap(),
        "report.bin",
        "--endpoint",
        &proxy.endpoint(),
        "--token",
        &token,
        "--jobs",
        "2",
    ];
    let key = format!("{ACCESS_KEY}/report.bin");

    proxy
        .up
        .throttle
        .rate
        .store(20 * MIB as u64, Ordering::Relaxed);
    let mut child = client.spawn(&args);
    let chunks = (MID / PART) as u64; // the gateway's default legacy chunk size is 5 MiB
    wait_until(&mut child, "60% of the chunks are stored", async || {
        let Some(id) = client
            .upload_journal()
            .and_then(|j| j["upload_id"].as_str().map(str::to_owned))
        else {
            return false;
        };
        all_parts(&s3, "files", &key, &id).await.len() as u64 * 10 >= chunks * 6
    })
    .await;
    sigkill(child).await;
    proxy.drain().await;
    let first = proxy.up.bytes.swap(0, Ordering::Relaxed);

    proxy.up.throttle.rate.store(0, Ordering::Relaxed);
    let out = client.run(&args).await;
    let printed = assert_ok(&out, "the resumed legacy upload");
    let second = proxy.up.bytes.load(Ordering::Relaxed);
    let (got, etag) = object_md5(&gw, "files", &key).await;
    assert_eq!(got, md5, "the stored file differs");
    assert_eq!(printed, etag);
    assert_eq!(client.journals(), 0, "the journal is removed after success");
    let resent = (first + second).saturating_sub(MID as u64);
    eprintln!(
        "legacy resume ({store:?}): first run sent {:.3}, second {:.3}, re-sent {:.3} of the file",
        fraction(first, MID),
        fraction(second, MID),
        fraction(resent, MID)
    );
    assert!(
        second < MID as u64 / 2,
        "the second run sent {second} bytes of {MID}"
    );
    assert!(
        resent < MID as u64 / 2,
        "{resent} bytes of {MID} were sent twice"
    );

    // The same content again: proven held (a few ranges read), stored at once, nothing sent.
    proxy.up.bytes.store(0, Ordering::Relaxed);
    let again = [
        "upload",
        "--legacy",
        file.to_str().unwrap(),
        "copy.bin",
        "--endpoint",
        &proxy.endpoint(),
        "--token",
        &token,
    ];
    assert_ok(&client.run(&again).await, "instant upload");
    assert!(
        proxy.up.bytes.load(Ordering::Relaxed) < MIB as u64,
        "an instant upload sends no chunks"
    );
    assert_eq!(
        object_md5(&gw, "files", &format!("{ACCESS_KEY}/copy.bin"))
            .await
            .0,
        md5
    );
}
both!(legacy_kill_and_resume, legacy_upload_resumes_after_kill);

/// `mpgw download --legacy`: parallel ranged GETs through signed links (no token in any URL),
/// resumed after a kill like the S3 download.
async fn legacy_download_resumes_after_kill(store: Store) {
    let gw = TestGateway::start(store).await;
    let client = Client::new();
    let source = client.path("source.bin");
    let md5 = random_file(&source, MID);
    let token = gw.legacy_token(ACCESS_KEY);
    let up = [
        "upload",
        "--legacy",
        source.to_str().unwrap(),
        "sub/d.bin",
        "--endpoint",
        &gw.endpoint(),
        "--token",
        &token,
    ];
    assert_ok(&client.run(&up).await, "the legacy upload");
    let proxy = Proxy::start(gw.addr()).await;
    let target = client.path("copy.bin");
    let journal = client.path("copy.bin.mpgw-download.json");
    let args = [
        "download",
        "--legacy",
        "sub/d.bin",
        target.to_str().unwrap(),
        "--endpoint",
        &proxy.endpoint(),
        "--token",
        &token,
        "--part-size",
        "5MiB",
        "--jobs",
        "2",
    ];
    proxy
        .down
        .throttle
        .rate
        .store(20 * MIB as u64, Ordering::Relaxed);
    let mut child = client.spawn(&args);
    wait_until(&mut child, "a third of the parts are on disk", async || {
        std::fs::read(&journal)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|j| j["done"].as_array().is_some_and(|d| !d.is_empty()))
    })
    .await;
    sigkill(child).await;
    proxy.drain().await;
    assert!(!target.exists(), "the target appears only when complete");
    proxy.down.throttle.rate.store(0, Ordering::Relaxed);
    assert_ok(&client.run(&args).await, "the resumed legacy download");
    assert_eq!(file_md5(&target), md5, "the downloaded file differs");
    assert!(!journal.exists(), "the journal is removed after success");
    // A wrong token gets no link, hence no bytes.
    let other = client.path("other.bin");
    let mut bad = args;
    bad[3] = other.to_str().unwrap();
    bad[7] = "not-the-token";
    let out = client.run(&bad).await;
    assert!(!out.status.success() && !other.exists(), "{out:?}");
}
both!(
    legacy_download_kill_and_resume,
    legacy_download_resumes_after_kill
);

// ---------------- (4) download resume ----------------

async fn download_resumes_after_kill(store: Store) {
    let gw = TestGateway::start(store).await;
    let s3 = gw.bucket("down").await;
    let client = Client::new();
    let source = client.path("source.bin");
    let md5 = random_file(&source, MID);
    s3.put_object()
        .bucket("down")
        .key("d.bin")
        .body(std::fs::read(&source).unwrap().into())
        .send()
        .await
        .unwrap();
    let proxy = Proxy::start(gw.addr()).await;
    let target = client.path("copy.bin");
    let journal = client.path("copy.bin.mpgw-download.json");
    let args = [
        "download",
        "s3://down/d.bin",
        target.to_str().unwrap(),
        "--endpoint",
        &proxy.endpoint(),
        "--part-size",
        "5MiB",
        "--jobs",
        "2",
    ];

    proxy
        .down
        .throttle
        .rate
        .store(20 * MIB as u64, Ordering::Relaxed);
    let mut child = client.spawn(&args);
    let parts = (MID / PART) as u64;
    wait_until(&mut child, "60% of the parts are on disk", async || {
        let Some(j) = std::fs::read(&journal)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            return false;
        };
        let done: u64 = j["done"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap())
            .sum();
        done * 10 >= parts * 6
    })
    .await;
    sigkill(child).await;
    proxy.drain().await;
    assert!(!target.exists(), "the target appears only when complete");
    let first = proxy.down.bytes.swap(0, Ordering::Relaxed);

    proxy.down.throttle.rate.store(0, Ordering::Relaxed);
    let out = client.run(&args).await;
    assert_ok(&out, "the resumed download");
    let second = proxy.down.bytes.load(Ordering::Relaxed);
    assert_eq!(file_md5(&target), md5, "the downloaded file differs");
    assert!(
        !journal.exists() && !client.path("copy.bin.mpgw-part").exists(),
        "leftovers"
    );
    let refetched = (first + second).saturating_sub(MID as u64);
    eprintln!(
        "download resume ({store:?}): first run fetched {:.3}, second {:.3}, fetched again {:.3} of the object",
        fraction(first, MID),
        fraction(second, MID),
        fraction(refetched, MID)
    );
    assert!(
        second < MID as u64 / 2,
        "the second run fetched {second} bytes of {MID}"
    );
    assert!(
        refetched < MID as u64 / 2,
        "{refetched} bytes of {MID} were fetched twice"
    );
}
both!(download_kill_and_resume, download_resumes_after_kill);

// ---------------- Ctrl-C, a changed file ----------------

/// SIGINT stops the upload with exit code 130 and keeps the journal; after the file changes,
/// the next run starts a new upload (and the object is the new content).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_then_changed_file() {
    let gw = TestGateway::start(Store::Embedded).await;
    let s3 = gw.bucket("uploads").await;
    let proxy = Proxy::start(gw.addr()).await;
    let client = Client::new();
    let file = client.path("small.bin");
    random_file(&file, 20 * MIB);
    let args = [
        "upload",
        file.to_str().unwrap(),
        "s3://uploads/small.bin",
        "--endpoint",
        &proxy.endpoint(),
        "--part-size",
        "5MiB",
        "--jobs",
        "1",
    ];

    proxy
        .up
        .throttle
        .rate
        .store(5 * MIB as u64, Ordering::Relaxed);
    let mut child = client.spawn(&args);
    wait_until(&mut child, "a part is stored", async || {
        let Some(id) = client
            .upload_journal()
            .and_then(|j| j["upload_id"].as_str().map(str::to_owned))
        else {
            return false;
        };
        !all_parts(&s3, "uploads", "small.bin", &id).await.is_empty()
    })
    .await;
    let old_id = client.upload_journal().unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("SIGINT did not stop it")
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{out:?}"
    );
    assert_eq!(client.journals(), 1, "the journal stays for a re-run");

    proxy.up.throttle.rate.store(0, Ordering::Relaxed);
    let md5 = random_file(&file, 12 * MIB);
    let out = client.run(&args).await;
    assert_ok(&out, "the upload of the changed file");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("changed"),
        "{out:?}"
    );
    assert_eq!(object_md5(&gw, "uploads", "small.bin").await.0, md5);
    // The old upload was aborted, not left behind.
    let uploads = s3
        .list_multipart_uploads()
        .bucket("uploads")
        .send()
        .await
        .unwrap();
    assert!(
        uploads
            .uploads()
            .iter()
            .all(|u| u.upload_id() != Some(&old_id)),
        "the old upload is still open"
    );
}

// ---------------- parts verified against GetObjectAttributes ----------------

/// Uploads `parts` through the SDK as a CRC32 multipart object (COMPOSITE); returns its upload id.
async fn crc32_multipart(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    parts: &[Vec<u8>],
) -> String {
    use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
    let id = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let up = c
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(p.clone().into())
            .send()
            .await
            .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(up.e_tag().unwrap())
                .checksum_crc32(up.checksum_crc32().unwrap())
                .build(),
        );
    }
    c.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    id
}

/// `mpgw download` checks every part's CRC32 and the object's against the bytes it wrote (its
/// own ranges cut across the object's parts); a part whose stored bytes went bad fails the
/// download, leaving neither the file nor a journal that claims it.
async fn download_verifies_parts(store: Store) {
    let gw = TestGateway::start(store).await;
    let s3 = gw.bucket("verify").await;
    let parts = vec![
        random_bytes(5 * MIB),
        random_bytes(5 * MIB + 7),
        random_bytes(300_000),
    ];
    let id = crc32_multipart(&s3, "verify", "v.bin", &parts).await;
    let client = Client::new();
    let endpoint = format!("http://{}", gw.addr());
    let args = |target: &Path| {
        [
            "download".to_owned(),
            "s3://verify/v.bin".to_owned(),
            target.to_str().unwrap().to_owned(),
            "--endpoint".to_owned(),
            endpoint.clone(),
            "--part-size".to_owned(),
            "4MiB".to_owned(),
        ]
    };
    let run = async |target: &Path| {
        let a = args(target);
        client
            .run(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .await
    };
    let good = client.path("good.bin");
    let out = run(&good).await;
    assert_ok(&out, "download");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("verified 3 part checksum(s) and the object's CRC32"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&good).unwrap(), parts.concat());

    // A single PUT with a checksum: the object's CRC32.
    s3.put_object()
        .bucket("verify")
        .key("one.bin")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
        .body(parts[2].clone().into())
        .send()
        .await
        .unwrap();
    let one = client.path("one.bin");
    let out = client
        .run(&[
            "download",
            "s3://verify/one.bin",
            one.to_str().unwrap(),
            "--endpoint",
            &endpoint,
        ])
        .await;
    assert_ok(&out, "single-part download");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verified the object's CRC32"),
        "{out:?}"
    );

    // Part 2's stored bytes rot (same size, one byte changed).
    let dir = crate::harness::blob_dir(gw.data_dir(), &id);
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).unwrap().len() == (5 * MIB + 7) as u64)
        .expect("part 2's file");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let bad = client.path("bad.bin");
    let out = run(&bad).await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("part 2: CRC32"), "{stderr}");
    assert!(
        !bad.exists(),
        "a file that failed its checks is not put in place"
    );
    assert!(
        !client.path("bad.bin.mpgw-download.json").exists(),
        "no journal claims the bad bytes"
    );
}
both!(download_verifies_parts, download_verifies_parts);

/// A server without GetObjectAttributes (501): the download works, unverified, and says so.
/// The server here is a stub that knows HeadObject and ranged GetObject of one object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_without_get_object_attributes() {
    let data: Arc<Vec<u8>> = Arc::new(random_bytes(100_000));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicU64::new(0));
    let (d, a) = (data.clone(), asked.clone());
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (d, a) = (d.clone(), a.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let line = head.lines().next().unwrap_or_default().to_owned();
                        let range = head.lines().find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            n.eq_ignore_ascii_case("range").then(|| v.trim().to_owned())
                        });
                        let etag = "\"0123456789abcdef0123456789abcdef\"";
                        let resp: Vec<u8> = if line.contains("?attributes") {
                            a.fetch_add(1, Ordering::SeqCst);
                            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NotImplemented</Code><Message>no</Message></Error>";
                            format!("HTTP/1.1 501 Not Implemented\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
                        } else if line.starts_with("HEAD") {
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\netag: {etag}\r\n\r\n",
                                d.len()
                            )
                            .into_bytes()
                        } else {
                            let (start, end) = range
                                .as_deref()
                                .and_then(|r| r.strip_prefix("bytes="))
                                .and_then(|r| r.split_once('-'))
                                .map(|(s, e)| {
                                    (s.parse::<usize>().unwrap(), e.parse::<usize>().unwrap() + 1)
                                })
                                .unwrap_or((0, d.len()));
                            let mut r = format!(
                                "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {start}-{}/{}\r\netag: {etag}\r\n\r\n",
                                end - start,
                                end - 1,
                                d.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&d[start..end]);
                            r
                        };
                        if s.write_all(&resp).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let client = Client::new();
    let target = client.path("stub.bin");
    let out = client
        .run(&[
            "download",
            "s3://stub/stub.bin",
            target.to_str().unwrap(),
            "--endpoint",
            &format!("http://{addr}"),
        ])
        .await;
    assert_ok(&out, "download from a server without GetObjectAttributes");
    assert_eq!(std::fs::read(&target).unwrap(), *data);
    assert_eq!(asked.load(Ordering::SeqCst), 1, "asked once, not retried");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("parts not verified"),
        "{out:?}"
    );
    server.abort();
}
