//! Crash test: a concurrent multipart workload against the real `mpgw serve` binary, SIGKILLed at
//! a random moment (some rounds aimed at Completes, some at large part writes), restarted on the
//! same data dir and state store, then checked against a ledger of what the gateway acknowledged.
//!
//! Invariants after every restart:
//! - an acknowledged part is listed, with its ETag, and its bytes come back once completed;
//! - a listed part is one that was sent for that number, never an older version than the
//!   acknowledged one and never a torn write (ETag and size match a sent body, bytes read back);
//! - an acknowledged Complete is readable byte-identical;
//! - an unacknowledged Complete left the upload either completed (right bytes, and a retried
//!   Complete replays the ETag) or open and completable, never in between;
//! - an acknowledged Abort stays aborted; every open upload resumes and completes.
//!
//! Bounded: `CRASH_ROUNDS` rounds (30) and `CRASH_SECS` seconds (60) per store. Seeded: the seed
//! is printed, `CRASH_SEED=<n>` replays the run's choices (the kill moment still depends on the
//! scheduler).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use md5::{Digest as _, Md5};

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_mpgw");
const BUCKET: &str = "crash";
const WORKERS: usize = 8;
const KIB: usize = 1 << 10;
/// Fewer rounds than this within the time budget fails the test: the machine is too slow for
/// the test to mean anything.
const MIN_ROUNDS: usize = 10;
/// Completed objects up to this size are kept and re-read after every later crash.
const KEEP_OBJECT: usize = 256 * KIB;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------- seeded randomness ----------------

/// SplitMix64: tiny and the same everywhere, so a seed replays the choices of a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The body of a part version: regenerated from its seed when checking, never kept in memory.
fn bytes_of(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

// ---------------- the gateway process ----------------

/// One data dir (and Redis prefix) that successive gateway processes run on.
struct Site {
    store: Store,
    dir: tempfile::TempDir,
    redis_prefix: String,
    starts: usize,
}

/// A running `mpgw serve`; killed (SIGKILL) when dropped.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Site {
    fn new(store: Store) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mpgw-crash-")
            .tempdir()
            .expect("tempdir");
        let redis_prefix = format!(
            "mpgw-crash-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        Self {
            store,
            dir,
            redis_prefix,
            starts: 0,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the binary on this site and waits until it serves and reports ready.
    async fn start(&mut self) -> Gateway {
        let n = self.starts;
        self.starts += 1;
        let out = self.dir.path().join(format!("gw-{n}.out"));
        let log = self.dir.path().join(format!("gw-{n}.log"));
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("MPGW_LOG", "info")
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir())
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            // Small parts keep rounds short; Complete still enforces the minimum.
            .args(["--min-part-size", "1KiB", "--min-free-space", "0"])
            // SIGKILL keeps the page cache: fsync guards against power loss, which this test
            // does not simulate, and would only slow the rounds down.
            .args(["--fsync", "false", "--log-format", "text"]);
        if self.store == Store::Redis {
            cmd.args([
                "--redis-url",
                &redis_url(),
                "--redis-prefix",
                &self.redis_prefix,
            ]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start mpgw");
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(rest) = text.split("mpgw listening on http://").nth(1) {
                let end = rest.find(' ').expect("address ends with a space");
                break rest[..end].parse::<SocketAddr>().expect("listen address");
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "mpgw exited ({status}) during start-up; log:\n{}",
                    tail(&log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "mpgw did not start within 60 s; log:\n{}",
                tail(&log)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let gw = Gateway { child, addr, log };
        gw.wait_ready().await;
        gw
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if self.store == Store::Redis
            && let Err(e) = delete_prefix(&redis_url(), &self.redis_prefix)
        {
            eprintln!(
                "warning: could not delete Redis keys {}:*: {e}",
                self.redis_prefix
            );
        }
    }
}

impl Gateway {
    async fn wait_ready(&self) {
        let url = format!("http://{}/health/ready", self.addr);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} not ready within 30 s; log:\n{}",
                tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no drain, no destructors, no flush.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Interrupted Completes the start-up recovery settled (from its "recovery done" log line).
    fn settled(&self) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.contains("recovery done"))
            .unwrap_or_else(|| panic!("no recovery line in the log:\n{text}"));
        line.split("settled=")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no settled count in {line:?}"))
    }

    fn client(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(format!("http://{}", self.addr))
            .force_path_style(true)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "crash",
            ))
            // Every failure is seen (a retry would blur what was acknowledged).
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last lines of a log file, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Temp files (`.tmp-*`) in the blob directories: part writes a kill cut short.
fn temp_files(data_dir: &Path) -> usize {
    let Ok(blobs) = std::fs::read_dir(data_dir.join("blobs")) else {
        return 0;
    };
    blobs
        .filter_map(Result::ok)
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|f| f.file_name().to_string_lossy().starts_with(".tmp-"))
        .count()
}

// ---------------- the ledger ----------------

/// One body sent for a part number.
#[derive(Clone, Debug)]
struct Version {
    seed: u64,
    size: usize,
    md5: String,
}

impl Version {
    fn new(seed: u64, size: usize) -> (Self, Vec<u8>) {
        let data = bytes_of(seed, size);
        let md5 = md5_hex(&data);
        (Self { seed, size, md5 }, data)
    }

    fn etag(&self) -> String {
        format!("\"{}\"", self.md5)
    }
}

#[derive(Default, Debug)]
struct PartLog {
    /// Every body sent for this number, in sending order.
    sent: Vec<Version>,
    /// Index into `sent` of the last acknowledged one.
    acked: Option<usize>,
}

#[derive(Debug)]
enum End {
    Open,
    /// (part number, index of the version) listed in a Complete that got no answer.
    CompleteSent(Vec<(i32, usize)>),
    Completed {
        parts: Vec<(i32, usize)>,
        etag: String,
    },
    AbortSent,
    Aborted,
}

#[derive(Debug)]
struct UploadLog {
    key: String,
    id: String,
    plan: i32,
    parts: BTreeMap<i32, PartLog>,
    end: End,
}

impl UploadLog {
    fn versions(&self, listed: &[(i32, usize)]) -> Vec<Version> {
        listed
            .iter()
            .map(|(n, v)| self.parts[n].sent[*v].clone())
            .collect()
    }
}

#[derive(Default)]
struct Ledger {
    uploads: Vec<UploadLog>,
    /// Keys whose CreateMultipartUpload got no answer (the upload may exist, id unknown).
    lost_creates: Vec<String>,
    /// What the gateway did wrong while running (error answers, wrong ETags).
    anomalies: Vec<String>,
}

/// A completed object kept for re-reading after later crashes.
struct Kept {
    key: String,
    etag: String,
    parts: Vec<Version>,
}

fn multipart_etag_of(parts: &[Version]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(hex::decode(&p.md5).expect("hex md5"));
    }
    format!("\"{}-{}\"", hex::encode(h.finalize()), parts.len())
}

// ---------------- the workload ----------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Small and medium parts, some Completes and Aborts; killed after a random delay.
    Mixed,
    /// Many small parts, then every worker completes at once; killed among the Completes.
    Complete,
    /// Parts of several MiB; killed while some are streaming.
    PartWrite,
}

const MODES: [Mode; 3] = [Mode::Mixed, Mode::Complete, Mode::PartWrite];

/// What one round's workers share with the controller.
struct Round {
    client: aws_sdk_s3::Client,
    round: usize,
    mode: Mode,
    ledger: Mutex<Ledger>,
    /// Set just before the SIGKILL: transport errors after it are expected.
    killed: AtomicBool,
    stop: AtomicBool,
    parts_in_flight: AtomicUsize,
    big_parts_in_flight: AtomicUsize,
    completes_sent: AtomicUsize,
    completes_in_flight: AtomicUsize,
    /// Workers ready to complete (Complete mode sends them together).
    ready: AtomicUsize,
}

impl Round {
    fn anomaly(&self, what: String) {
        self.ledger.lock().unwrap().anomalies.push(what);
    }

    /// The answer of a workload request: an error the gateway answered is an anomaly, as is a
    /// transport failure before the kill.
    fn check<T, E: ProvideErrorMetadata + Debug>(
        &self,
        what: &str,
        r: Result<T, SdkError<E, HttpResponse>>,
    ) -> Result<T, ()> {
        match r {
            Ok(v) => Ok(v),
            Err(SdkError::ServiceError(e)) => {
                let status = e.raw().status().as_u16();
                self.anomaly(format!(
                    "{what}: the gateway answered {status} {:?}",
                    e.err().code()
                ));
                Err(())
            }
            Err(e) if !self.killed.load(SeqCst) => {
                self.anomaly(format!("{what} failed before the kill: {e:?}"));
                Err(())
            }
            Err(_) => Err(()),
        }
    }
}

async fn worker(r: Arc<Round>, w: usize, mut rng: Rng) {
    let mut i = 0;
    while !r.stop.load(SeqCst) {
        let key = format!("r{}/w{w}/u{i}", r.round);
        i += 1;
        if one_upload(&r, key, &mut rng).await.is_err() {
            return;
        }
    }
}

/// Create, parts (some numbers sent twice), then Complete, Abort or leave open.
async fn one_upload(r: &Round, key: String, rng: &mut Rng) -> Result<(), ()> {
    let c = &r.client;
    let created = c
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await;
    let id = match r.check("CreateMultipartUpload", created) {
        Ok(out) => out.upload_id().expect("upload id").to_owned(),
        Err(()) => {
            r.ledger.lock().unwrap().lost_creates.push(key);
            return Err(());
        }
    };
    let (plan, min, max) = match r.mode {
        Mode::Mixed => (rng.range(1, 5), KIB, 1536 * KIB),
        Mode::Complete => (rng.range(16, 48), KIB, 16 * KIB),
        Mode::PartWrite => (rng.range(1, 3), MIB, 6 * MIB),
    };
    let idx = {
        let mut l = r.ledger.lock().unwrap();
        l.uploads.push(UploadLog {
            key: key.clone(),
            id: id.clone(),
            plan: plan as i32,
            parts: BTreeMap::new(),
            end: End::Open,
        });
        l.uploads.len() - 1
    };
    for n in 1..=plan as i32 {
        let times = if rng.chance(12) { 2 } else { 1 };
        for _ in 0..times {
            send_part(r, idx, n, rng.range(min, max), rng).await?;
        }
    }
    let complete = match r.mode {
        Mode::Complete => true,
        _ => rng.chance(65),
    };
    if complete {
        if r.mode == Mode::Complete {
            // Line up with the other workers so that several Completes run at once.
            r.ready.fetch_add(1, SeqCst);
            let until = Instant::now() + Duration::from_secs(3);
            while r.ready.load(SeqCst) < WORKERS && Instant::now() < until {
                if r.stop.load(SeqCst) {
                    return Err(());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let listed: Vec<(i32, usize)> = {
            let mut l = r.ledger.lock().unwrap();
            let up = &mut l.uploads[idx];
            let listed: Vec<(i32, usize)> = up
                .parts
                .iter()
                .map(|(n, p)| (*n, p.acked.expect("every part acknowledged")))
                .collect();
            up.end = End::CompleteSent(listed.clone());
            listed
        };
        let (etags, want) = {
            let l = r.ledger.lock().unwrap();
            let vs = l.uploads[idx].versions(&listed);
            let etags: Vec<(i32, String)> = listed
                .iter()
                .zip(&vs)
                .map(|((n, _), v)| (*n, v.etag()))
                .collect();
            (etags, multipart_etag_of(&vs))
        };
        let refs: Vec<(i32, &str)> = etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
        r.completes_sent.fetch_add(1, SeqCst);
        r.completes_in_flight.fetch_add(1, SeqCst);
        let out = try_complete(c, BUCKET, &key, &id, &refs).await;
        r.completes_in_flight.fetch_sub(1, SeqCst);
        let out = r.check("CompleteMultipartUpload", out)?;
        let etag = out.e_tag().unwrap_or_default().to_owned();
        if etag != want {
            r.anomaly(format!("{key}: Complete answered ETag {etag}, want {want}"));
        }
        r.ledger.lock().unwrap().uploads[idx].end = End::Completed {
            parts: listed,
            etag,
        };
    } else if rng.chance(30) {
        r.ledger.lock().unwrap().uploads[idx].end = End::AbortSent;
        let out = c
            .abort_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .upload_id(&id)
            .send()
            .await;
        r.check("AbortMultipartUpload", out)?;
        r.ledger.lock().unwrap().uploads[idx].end = End::Aborted;
    }
    Ok(())
}

async fn send_part(r: &Round, idx: usize, n: i32, size: usize, rng: &mut Rng) -> Result<(), ()> {
    let (version, data) = Version::new(rng.next(), size);
    let etag = version.etag();
    let (key, id, v) = {
        let mut l = r.ledger.lock().unwrap();
        let up = &mut l.uploads[idx];
        let part = up.parts.entry(n).or_default();
        part.sent.push(version);
        (up.key.clone(), up.id.clone(), part.sent.len() - 1)
    };
    let big = size >= MIB;
    r.parts_in_flight.fetch_add(1, SeqCst);
    if big {
        r.big_parts_in_flight.fetch_add(1, SeqCst);
    }
    let out = r
        .client
        .upload_part()
        .bucket(BUCKET)
        .key(&key)
        .upload_id(&id)
        .part_number(n)
        .body(ByteStream::from(data))
        .send()
        .await;
    r.parts_in_flight.fetch_sub(1, SeqCst);
    if big {
        r.big_parts_in_flight.fetch_sub(1, SeqCst);
    }
    let out = r.check("UploadPart", out)?;
    if out.e_tag() != Some(etag.as_str()) {
        r.anomaly(format!(
            "{key} part {n}: acknowledged ETag {:?}, want {etag}",
            out.e_tag()
        ));
    }
    r.ledger.lock().unwrap().uploads[idx]
        .parts
        .get_mut(&n)
        .unwrap()
        .acked = Some(v);
    Ok(())
}

/// Waits for the round's kill moment.
async fn kill_point(r: &Round, rng: &mut Rng) {
    let poll = |cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let met = loop {
            if cond() {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        if !met {
            eprintln!("round {}: kill point not reached, killing anyway", r.round);
        }
    };
    match r.mode {
        Mode::Mixed => {
            tokio::time::sleep(Duration::from_millis(rng.range(50, 1500) as u64)).await;
        }
        Mode::Complete => {
            // Right after the k-th Complete left, a few hundred microseconds at most.
            let k = rng.range(1, WORKERS);
            let delay = Duration::from_micros(rng.range(0, 3000) as u64);
            tokio::task::block_in_place(|| {
                poll(&|| r.completes_sent.load(SeqCst) >= k);
                std::thread::sleep(delay);
            });
        }
        Mode::PartWrite => {
            let delay = Duration::from_millis(rng.range(0, 60) as u64);
            tokio::task::block_in_place(|| {
                poll(&|| r.big_parts_in_flight.load(SeqCst) > 0);
                std::thread::sleep(delay);
            });
        }
    }
}

// ---------------- checks after the restart ----------------

#[derive(Default, Debug)]
struct Stats {
    rounds: usize,
    kills_in_complete: usize,
    kills_in_part: usize,
    kills_in_big_part: usize,
    /// Completes that recovery found half done ("completing") and settled.
    settled: usize,
    /// Temp files found after a kill: part writes cut short on the server side.
    temp_files: usize,
    acked_parts: usize,
    listed_unacked_parts: usize,
    completes_acked: usize,
    completes_unacked_done: usize,
    completes_unacked_open: usize,
    resumed: usize,
    lost_creates_found: usize,
}

/// Status and code of a failed call; panics on success or when nothing answered.
fn failure<T, E: ProvideErrorMetadata + Debug>(
    r: Result<T, SdkError<E, HttpResponse>>,
    what: &str,
) -> Result<T, (u16, String)> {
    r.map_err(|e| match e.raw_response().map(|r| r.status().as_u16()) {
        Some(status) => (status, e.code().unwrap_or_default().to_owned()),
        None => panic!("{what}: no answer after the restart: {e:?}"),
    })
}

/// (number, ETag, size) of the upload's parts, or the error answered.
async fn list_parts(
    c: &aws_sdk_s3::Client,
    key: &str,
    id: &str,
) -> Result<Vec<(i32, String, usize)>, (u16, String)> {
    let r = c
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .send()
        .await;
    let page = failure(r, "ListParts")?;
    assert_ne!(page.is_truncated(), Some(true), "{key}: more than one page");
    Ok(page
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().expect("n"),
                p.e_tag().expect("etag").to_owned(),
                p.size().expect("size") as usize,
            )
        })
        .collect())
}

/// The object's ETag, or None when it does not exist.
async fn head(c: &aws_sdk_s3::Client, key: &str) -> Option<String> {
    let r = c.head_object().bucket(BUCKET).key(key).send().await;
    match failure(r, "HeadObject") {
        Ok(out) => Some(out.e_tag().expect("etag").to_owned()),
        Err((404, _)) => None,
        Err(e) => panic!("HEAD {key}: {e:?}"),
    }
}

/// The object reads back as exactly these part bodies, with this ETag.
async fn assert_object(c: &aws_sdk_s3::Client, key: &str, etag: &str, parts: &[Version]) {
    let out = c
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e:?}"));
    assert_eq!(out.e_tag(), Some(etag), "{key}: ETag");
    let got = read_all(out).await;
    let total: usize = parts.iter().map(|p| p.size).sum();
    assert_eq!(got.len(), total, "{key}: object size");
    let mut at = 0;
    for (i, p) in parts.iter().enumerate() {
        let want = bytes_of(p.seed, p.size);
        assert_same_bytes(&got[at..at + p.size], &want, &format!("{key} part #{i}"));
        at += p.size;
    }
}

/// A finished upload is no longer listable.
async fn assert_gone(c: &aws_sdk_s3::Client, up: &UploadLog, why: &str) {
    match list_parts(c, &up.key, &up.id).await {
        Err((404, code)) if code == "NoSuchUpload" => {}
        other => panic!("{} ({why}): ListParts answered {other:?}", up.key),
    }
}

/// Checks the listed parts of an open upload against what was sent, uploads the missing ones,
/// completes it and reads it back.
async fn resume(c: &aws_sdk_s3::Client, up: &UploadLog, rng: &mut Rng, stats: &mut Stats) {
    let key = &up.key;
    let listed = list_parts(c, key, &up.id)
        .await
        .unwrap_or_else(|e| panic!("{key}: open upload not listable after restart: {e:?}"));
    let mut chosen: BTreeMap<i32, Version> = BTreeMap::new();
    for (n, etag, size) in listed {
        let log = up.parts.get(&n).unwrap_or_else(|| {
            panic!("{key}: part {n} listed ({etag}) but never sent; ledger {up:?}")
        });
        let v = log
            .sent
            .iter()
            .position(|v| v.etag() == etag)
            .unwrap_or_else(|| {
                panic!(
                    "{key}: part {n} listed with {etag}, a body never sent (torn?); sent {log:?}"
                )
            });
        let from = log.acked.unwrap_or(0);
        assert!(
            v >= from,
            "{key}: part {n} lists version {v}, older than the acknowledged {from}"
        );
        assert_eq!(size, log.sent[v].size, "{key}: part {n} size");
        if log.acked == Some(v) {
            stats.acked_parts += 1;
        } else {
            stats.listed_unacked_parts += 1;
        }
        chosen.insert(n, log.sent[v].clone());
    }
    for (n, log) in &up.parts {
        assert!(
            log.acked.is_none() || chosen.contains_key(n),
            "{key}: acknowledged part {n} is not listed after the restart"
        );
    }
    for n in 1..=up.plan {
        if chosen.contains_key(&n) {
            continue;
        }
        let (v, data) = Version::new(rng.next(), rng.range(KIB, 64 * KIB));
        let etag = upload_part(c, BUCKET, key, &up.id, n, &data).await;
        assert_eq!(etag, v.etag(), "{key}: resumed part {n}");
        chosen.insert(n, v);
    }
    let etags: Vec<(i32, String)> = chosen.iter().map(|(n, v)| (*n, v.etag())).collect();
    let refs: Vec<(i32, &str)> = etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let parts: Vec<Version> = chosen.into_values().collect();
    let want = multipart_etag_of(&parts);
    assert_eq!(
        complete(c, BUCKET, key, &up.id, &refs).await,
        want,
        "{key}: resumed Complete"
    );
    assert_object(c, key, &want, &parts).await;
    stats.resumed += 1;
}

/// Checks every upload of the round against the ledger and leaves none of them open.
async fn check_round(
    c: &aws_sdk_s3::Client,
    round: usize,
    ledger: Ledger,
    rng: &mut Rng,
    stats: &mut Stats,
    kept: &mut Vec<Kept>,
) {
    assert!(
        ledger.anomalies.is_empty(),
        "round {round}: the gateway misbehaved before the kill:\n{}",
        ledger.anomalies.join("\n")
    );
    for up in &ledger.uploads {
        let key = &up.key;
        let done = match &up.end {
            End::Completed { parts, etag } => {
                let vs = up.versions(parts);
                assert_object(c, key, etag, &vs).await;
                assert_gone(c, up, "acknowledged Complete").await;
                stats.completes_acked += 1;
                Some((etag.clone(), vs))
            }
            End::CompleteSent(parts) => {
                let vs = up.versions(parts);
                let want = multipart_etag_of(&vs);
                match head(c, key).await {
                    Some(etag) => {
                        assert_eq!(etag, want, "{key}: object of an unanswered Complete");
                        assert_object(c, key, &want, &vs).await;
                        // The client's natural retry replays the result.
                        let etags: Vec<(i32, String)> = parts
                            .iter()
                            .zip(&vs)
                            .map(|((n, _), v)| (*n, v.etag()))
                            .collect();
                        let refs: Vec<(i32, &str)> =
                            etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
                        assert_eq!(
                            complete(c, BUCKET, key, &up.id, &refs).await,
                            want,
                            "{key}: retried Complete"
                        );
                        assert_gone(c, up, "unanswered Complete that happened").await;
                        stats.completes_unacked_done += 1;
                        Some((want, vs))
                    }
                    None => {
                        stats.completes_unacked_open += 1;
                        resume(c, up, rng, stats).await;
                        None
                    }
                }
            }
            End::Aborted => {
                assert_gone(c, up, "acknowledged Abort").await;
                assert_eq!(head(c, key).await, None, "{key}: aborted yet an object");
                None
            }
            End::AbortSent => {
                match list_parts(c, key, &up.id).await {
                    Err((404, _)) => {}
                    Ok(_) => resume(c, up, rng, stats).await,
                    Err(e) => panic!("{key}: ListParts after an unanswered Abort: {e:?}"),
                }
                None
            }
            End::Open => {
                resume(c, up, rng, stats).await;
                None
            }
        };
        if let Some((etag, parts)) = done {
            let size: usize = parts.iter().map(|p| p.size).sum();
            if size <= KEEP_OBJECT {
                kept.push(Kept {
                    key: key.clone(),
                    etag,
                    parts,
                });
            }
        }
    }
    // An upload whose creation got no answer may exist: it must be completable too.
    for key in &ledger.lost_creates {
        let page = c
            .list_multipart_uploads()
            .bucket(BUCKET)
            .prefix(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list uploads {key}: {e:?}"));
        for u in page.uploads().iter().filter(|u| u.key() == Some(key)) {
            let id = u.upload_id().expect("upload id");
            let log = UploadLog {
                key: key.clone(),
                id: id.to_owned(),
                plan: 1,
                parts: BTreeMap::new(),
                end: End::Open,
            };
            resume(c, &log, rng, stats).await;
            stats.lost_creates_found += 1;
        }
    }
    let open = c
        .list_multipart_uploads()
        .bucket(BUCKET)
        .prefix(format!("r{round}/"))
        .send()
        .await
        .expect("list uploads");
    let left: Vec<_> = open.uploads().iter().filter_map(|u| u.key()).collect();
    assert!(
        left.is_empty(),
        "round {round}: uploads left open: {left:?}"
    );
}

/// Kept objects from earlier rounds: `heads` sampled by HEAD, `gets` read back in full.
async fn recheck(c: &aws_sdk_s3::Client, kept: &[Kept], rng: &mut Rng, heads: usize, gets: usize) {
    if kept.is_empty() {
        return;
    }
    for _ in 0..heads.min(kept.len()) {
        let k = &kept[rng.range(0, kept.len() - 1)];
        assert_eq!(
            head(c, &k.key).await.as_deref(),
            Some(k.etag.as_str()),
            "{}: completed object after a later crash",
            k.key
        );
    }
    for _ in 0..gets.min(kept.len()) {
        let k = &kept[rng.range(0, kept.len() - 1)];
        assert_object(c, &k.key, &k.etag, &k.parts).await;
    }
}

// ---------------- the loop ----------------

async fn crash_loop(store: Store) {
    let seed = env_num("CRASH_SEED", rand::random::<u64>());
    let rounds = env_num("CRASH_ROUNDS", 30) as usize;
    let budget = Duration::from_secs(env_num("CRASH_SECS", 60));
    eprintln!("crash test, {store:?} store: seed {seed} (replay with CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let mut site = Site::new(store);
    let mut gw = site.start().await;
    gw.client()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut kept: Vec<Kept> = Vec::new();
    for round in 0..rounds {
        if started.elapsed() > budget {
            break;
        }
        let mode = MODES[round % MODES.len()];
        let r = Arc::new(Round {
            client: gw.client(),
            round,
            mode,
            ledger: Mutex::default(),
            killed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            parts_in_flight: AtomicUsize::new(0),
            big_parts_in_flight: AtomicUsize::new(0),
            completes_sent: AtomicUsize::new(0),
            completes_in_flight: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
        });
        let temp_before = temp_files(&site.data_dir());
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| tokio::spawn(worker(r.clone(), w, Rng(rng.next()))))
            .collect();
        kill_point(&r, &mut rng).await;
        r.killed.store(true, SeqCst);
        // Read just before the kill: what the kill interrupts, as far as the client knows.
        let completes = r.completes_in_flight.load(SeqCst);
        let parts = r.parts_in_flight.load(SeqCst);
        let big = r.big_parts_in_flight.load(SeqCst);
        gw.kill();
        r.stop.store(true, SeqCst);
        for w in workers {
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("worker hung after the kill")
                .expect("worker panicked");
        }
        stats.kills_in_complete += usize::from(completes > 0);
        stats.kills_in_part += usize::from(parts > 0);
        stats.kills_in_big_part += usize::from(big > 0);
        // Temp files are swept only after a grace period: count the ones this kill left.
        stats.temp_files += temp_files(&site.data_dir()).saturating_sub(temp_before);

        gw = site.start().await;
        stats.settled += gw.settled();
        let c = gw.client();
        let ledger = std::mem::take(&mut *r.ledger.lock().unwrap());
        let uploads = ledger.uploads.len();
        check_round(&c, round, ledger, &mut rng, &mut stats, &mut kept).await;
        recheck(&c, &kept, &mut rng, 20, 3).await;
        stats.rounds += 1;
        eprintln!(
            "round {round} ({mode:?}): {uploads} uploads; in flight at the kill: \
             {completes} completes, {parts} parts ({big} large)"
        );
    }
    let elapsed = started.elapsed();
    // Every kept object, after the last crash.
    let c = gw.client();
    recheck(&c, &kept, &mut rng, kept.len(), 0).await;
    for k in &kept {
        assert_object(&c, &k.key, &k.etag, &k.parts).await;
    }
    eprintln!(
        "crash test, {store:?} store: {} rounds in {:.1} s (seed {seed}); {stats:?}",
        stats.rounds,
        elapsed.as_secs_f64()
    );
    assert!(
        stats.rounds >= MIN_ROUNDS.min(rounds),
        "only {} rounds in {budget:?}",
        stats.rounds
    );
    assert!(
        stats.kills_in_complete > 0 && stats.kills_in_big_part > 0,
        "the kills never landed during a Complete and during a large part write: {stats:?}"
    );
}

both!(slow, crash_recovery, crash_loop);

/// A crash between a Complete's commit and its removal of the parts it left out leaves their
/// files in the object's directory, where no record names them: the sweep removes them (and
/// only them), and the object still reads back.
async fn complete_leftovers_are_swept(store: Store) {
    const LB: &str = "leftovers";
    let mut gw = TestGateway::start_with(store, |cfg| cfg.min_part_size = 1).await;
    let c = gw.bucket(LB).await;
    let (kept, left_out) = (random_bytes(3000), random_bytes(2000));
    let id = create_upload(&c, LB, "k").await;
    let e1 = upload_part(&c, LB, "k", &id, 1, &kept).await;
    upload_part(&c, LB, "k", &id, 2, &left_out).await;
    let before = blob_files(gw.data_dir(), &id);
    complete(&c, LB, "k", &id, &[(1, &e1)]).await;
    let after = blob_files(gw.data_dir(), &id);
    let removed: Vec<&String> = before.iter().filter(|f| !after.contains(f)).collect();
    assert_eq!(removed.len(), 1, "Complete removes the part it left out");
    // Put back what the crash would have left, and age everything past the sweep's grace.
    let dir = blob_dir(gw.data_dir(), &id);
    std::fs::write(dir.join(removed[0]), &left_out).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for f in blob_files(gw.data_dir(), &id) {
        std::fs::File::options()
            .write(true)
            .open(dir.join(f))
            .and_then(|f| f.set_modified(hour_ago))
            .unwrap();
    }
    gw.stop().await;
    let uploads = mpgw::app::open_uploads(&gw.cfg, Arc::new(mpgw::metrics::Metrics::new()))
        .await
        .expect("open the stores");
    let report = uploads.sweep().await.expect("sweep");
    drop(uploads);
    assert_eq!(report.files, 1, "{report:?}");
    assert_eq!(blob_files(gw.data_dir(), &id), after);
    gw.restart().await;
    assert_same_bytes(
        &get_bytes(&gw.client(), LB, "k").await,
        &kept,
        "object after the sweep",
    );
}

both!(complete_leftovers, complete_leftovers_are_swept);
