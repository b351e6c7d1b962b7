//! Load and soak: the real binary as a child process, many concurrent clients running small
//! multipart cycles (create, 3 parts, complete, read back, verify), zero errors allowed, the
//! server's resident memory and open descriptors sampled all along and required to stay flat.
//!
//! 20000 cycles per store (`SOAK_CYCLES` changes it). The embedded store, whose every state change
//! is an fsynced redb commit, does about 200 cycles/s in a debug build on 2 quiet cores (100 s),
//! Redis about 340.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mpgw::client::s3::S3Client;
use mpgw::client::settings::S3Settings;

use crate::harness::*;

const B: &str = "soak";
const CLIENTS: usize = 64;
const PARTS: u32 = 3;
/// Part sizes are drawn from this range (the server's minimum part size is lowered to 1 byte).
const PART_SIZE: std::ops::RangeInclusive<usize> = 1024..=16 * 1024;
/// Sampling period of the server's RSS and descriptor count.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Cycles before this fraction of the run are warm-up: pools, caches and allocator arenas fill.
const WARM_UP: f64 = 0.2;
/// How far RSS may rise above the warm-up peak. Bounded growth after warm-up: the embedded store's
/// page cache filling up to its 8 MiB as the state grows; deleted objects' data queued for two
/// minutes (tens of bytes each); and allocator slack: glibc keeps pages freed in its per-thread
/// arenas, ~10 MiB over the 16000 cycles after warm-up while heaptrack showed the live heap flat
/// (8.0 to 8.8 MiB with a 4 MiB cache). A leak of 2 KiB per cycle (less than one part) over
/// those 16000 cycles would exceed it.
const RSS_MARGIN: u64 = 32 << 20;
/// How far the last quarter's mean RSS may lie above the second quarter's: catches a steady
/// growth that has not yet reached `RSS_MARGIN` (2 KiB per cycle over the 10000 cycles between
/// the quarters' middles).
const TREND_MARGIN: u64 = 20 << 20;
/// Descriptors beyond the warm-up peak: a few for connections the clients reopen, never one per
/// cycle.
const FD_MARGIN: usize = 32;
/// Errors printed when the run fails.
const SHOW_ERRORS: usize = 5;

fn cycles() -> u64 {
    match std::env::var("SOAK_CYCLES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("SOAK_CYCLES={v:?}: not a number")),
        Err(_) => 20_000,
    }
}

/// Wall-clock bound for `cycles`: 30 s plus a floor of 25 cycles/s, five times below the slowest
/// rate measured (a debug build on 2 cores shared with other tests does 130–400).
fn time_limit(cycles: u64) -> Duration {
    Duration::from_secs(30 + cycles / 25)
}

/// `mpgw serve` as a child process; killed on drop, its Redis keys deleted then. Its log goes to
/// a file, printed on failure.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
    redis_prefix: Option<String>,
}

impl Server {
    fn start(dir: &Path, store: Store, prefix: &str) -> Self {
        let log = dir.join("server.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpgw"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .args(["--min-part-size", "1"])
            .args(["--fsync", "false"])
            .env_clear()
            // Warnings and errors only: 100000 access lines would cost the server CPU the
            // clients need.
            .env("MPGW_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if store == Store::Redis {
            cmd.args(["--redis-url", &redis_url(), "--redis-prefix", prefix]);
        }
        let mut child = cmd.spawn().expect("start mpgw");
        // The bound address (port 0 asked) is printed on stdout.
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        const PREFIX: &str = "mpgw listening on http://";
        while !line.starts_with(PREFIX) {
            line.clear();
            if stdout.read_line(&mut line).expect("read stdout") == 0 {
                let _ = child.kill();
                panic!(
                    "mpgw exited during start-up: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
        let rest = &line[PREFIX.len()..];
        let addr = rest[..rest.find(' ').expect("address")]
            .parse()
            .expect("address");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in stdout.lines().map_while(Result::ok) {});
        Self {
            child,
            addr,
            log,
            redis_prefix: (store == Store::Redis).then(|| prefix.to_owned()),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(prefix) = &self.redis_prefix
            && let Err(e) = delete_prefix(&redis_url(), prefix)
        {
            eprintln!("warning: could not delete Redis keys {prefix}:*: {e}");
        }
    }
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User + system CPU time of a process (`self` or a pid), from `/proc/<pid>/stat`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Cycles finished when the sample was taken.
    done: u64,
    rss: u64,
    fds: usize,
}

/// Samples the server every [`SAMPLE_EVERY`] until `stop` is set.
fn sampler(
    pid: u32,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let (Some(rss), Some(fds)) = (status_kib(pid, "VmRSS:"), open_fds(pid)) {
                samples.push(Sample {
                    done: done.load(Ordering::Relaxed),
                    rss: rss << 10,
                    fds,
                });
            }
            std::thread::sleep(SAMPLE_EVERY);
        }
        samples
    })
}

/// Part bodies are windows of one random pool at random offsets (distinct per part, no copy), so
/// the clients spend their share of the 2 cores on requests, not on generating bytes.
fn pool() -> Bytes {
    let mut v = vec![0u8; 4 << 20];
    rand::fill(&mut v[..]);
    Bytes::from(v)
}

fn window(pool: &Bytes) -> Bytes {
    let len = rand::random_range(PART_SIZE);
    let at = rand::random_range(0..=pool.len() - len);
    pool.slice(at..at + len)
}

/// One cycle: create, 3 parts of random sizes, complete, GET and compare bytes and ETag; every
/// other object is deleted again so the store sees deletes too and does not only grow.
async fn cycle(c: &S3Client, pool: &Bytes, i: u64) -> Result<(), String> {
    let key = format!("obj/{i}");
    let step = |what: &'static str| move |e: mpgw::client::Error| format!("cycle {i} {what}: {e}");
    let id = c
        .create_multipart_upload(B, &key)
        .await
        .map_err(step("create"))?;
    let parts: Vec<Bytes> = (0..PARTS).map(|_| window(pool)).collect();
    let mut listed = Vec::new();
    for (n, data) in (1..).zip(&parts) {
        let md5 = md5_raw(data);
        let etag = c
            .upload_part_bytes(B, &key, &id, n, data.clone(), Some(md5))
            .await
            .map_err(step("upload part"))?;
        if etag != hex::encode(md5) {
            return Err(format!("cycle {i} part {n}: ETag {etag}, want the MD5"));
        }
        listed.push((n, etag));
    }
    let etag = c
        .complete_multipart_upload(B, &key, &id, &listed)
        .await
        .map_err(step("complete"))?;
    let slices: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
    let want_etag = multipart_etag(&slices);
    if format!("\"{etag}\"") != want_etag {
        return Err(format!("cycle {i}: Complete ETag {etag}, want {want_etag}"));
    }
    let resp = c.get_object(B, &key).await.map_err(step("get"))?;
    let got_etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = mpgw::client::http::read_body(resp.into_body(), 1 << 20, Duration::from_secs(60))
        .await
        .map_err(step("read body"))?;
    if got_etag.as_deref() != Some(want_etag.as_str()) {
        return Err(format!(
            "cycle {i}: GetObject ETag {got_etag:?}, want {want_etag}"
        ));
    }
    if body != parts.concat() {
        return Err(format!(
            "cycle {i}: GetObject returned {} bytes that differ from the {} uploaded",
            body.len(),
            parts.iter().map(Bytes::len).sum::<usize>()
        ));
    }
    if i.is_multiple_of(2) {
        c.delete_object(B, &key).await.map_err(step("delete"))?;
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn mean_rss(s: &[Sample]) -> u64 {
    s.iter().map(|s| s.rss).sum::<u64>() / s.len().max(1) as u64
}

async fn multipart_cycles(store: Store) {
    let total = cycles();
    let dir = tempfile::Builder::new()
        .prefix("mpgw-soak-")
        .tempdir()
        .expect("tempdir");
    let prefix = format!(
        "mpgw-soak-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let server = Server::start(dir.path(), store, &prefix);
    let client = S3Client::new(
        S3Settings {
            endpoint: format!("http://{}", server.addr),
            region: "us-east-1".into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            session_token: None,
            virtual_host: false,
        },
        CLIENTS,
    )
    .expect("client");
    client.create_bucket(B).await.expect("create bucket");

    let pool = pool();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let samples = sampler(server.pid(), done.clone(), stop.clone());
    let limit = time_limit(total);
    let deadline = tokio::time::Instant::now() + limit;
    let started = Instant::now();
    let cpu_before = (cpu_time(&server.pid().to_string()), cpu_time("self"));

    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (c, pool, next, done, stop, errors) = (
                client.clone(),
                pool.clone(),
                next.clone(),
                done.clone(),
                stop.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, cycle(&c, &pool, i)).await {
                        Ok(Ok(())) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(e)) => {
                            errors.lock().unwrap().push(e);
                            // The first error decides the run; the others in flight still show.
                            stop.store(true, Ordering::Relaxed);
                        }
                        Err(_) => {
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task panicked");
    }
    let elapsed = started.elapsed();
    let server_cpu = cpu_time(&server.pid().to_string()) - cpu_before.0;
    // The whole test process: other tests running beside this one count too.
    let client_cpu = cpu_time("self") - cpu_before.1;
    stop.store(true, Ordering::Relaxed);
    let samples = samples.join().expect("sampler");
    let hwm = status_kib(server.pid(), "VmHWM:").unwrap_or(0) << 10;
    // RSS at each tenth of the run, and the state the server holds on disk by then.
    let trace: Vec<String> = (0..10)
        .filter_map(|t| samples.iter().find(|s| s.done >= total * t / 10))
        .map(|s| format!("{:.0}", mib(s.rss)))
        .collect();
    let state_db = std::fs::metadata(dir.path().join("data/state.redb")).map_or(0, |m| m.len());
    let finished = done.load(Ordering::Relaxed);
    let rate = finished as f64 / elapsed.as_secs_f64();

    let errors = errors.lock().unwrap().clone();
    if !errors.is_empty() {
        panic!(
            "{store:?}: {} error(s) after {finished} good cycles; the first:\n  {}\nserver log:\n{}",
            errors.len(),
            errors[..errors.len().min(SHOW_ERRORS)].join("\n  "),
            server.log_tail()
        );
    }
    assert_eq!(
        finished, total,
        "{store:?}: only {finished} of {total} cycles within {limit:?} ({rate:.0} cycles/s); \
         lower SOAK_CYCLES or find what slowed the server down"
    );

    // Memory: the warm-up peak against everything after it, and the trend between quarters.
    let warm_until = (total as f64 * WARM_UP) as u64;
    let (warm, after): (Vec<Sample>, Vec<Sample>) =
        samples.iter().partition(|s| s.done < warm_until);
    assert!(
        !warm.is_empty() && after.len() >= 4,
        "{store:?}: too few RSS samples ({} warm-up, {} after) in {elapsed:?}",
        warm.len(),
        after.len()
    );
    let quarter = |q: u64| -> Vec<Sample> {
        samples
            .iter()
            .filter(|s| s.done >= total * q / 4 && s.done < total * (q + 1) / 4)
            .copied()
            .collect()
    };
    let warm_rss = warm.iter().map(|s| s.rss).max().unwrap_or(0);
    let peak = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    let last = samples.last().map_or(0, |s| s.rss);
    let (q2, q4) = (mean_rss(&quarter(1)), mean_rss(&quarter(3)));
    // Throughput of the first and last quarter (a state store slowing down as it fills shows here).
    let quarter_rate = |q: u64| -> f64 {
        let s = quarter(q);
        match (s.first(), s.last()) {
            (Some(a), Some(b)) if s.len() > 1 => {
                (b.done - a.done) as f64 / ((s.len() - 1) as f64 * SAMPLE_EVERY.as_secs_f64())
            }
            _ => 0.0,
        }
    };
    let (rate_q1, rate_q4) = (quarter_rate(0), quarter_rate(3));
    let warm_fds = warm.iter().map(|s| s.fds).max().unwrap_or(0);
    let max_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    eprintln!(
        "soak {store:?}: {finished} cycles ({CLIENTS} clients) in {:.1} s = {rate:.0} cycles/s (first quarter {rate_q1:.0}, last {rate_q4:.0}); \
         server RSS warm-up {:.1} MiB, peak {:.1} MiB (VmHWM {:.1} MiB), final {:.1} MiB, \
         2nd-quarter mean {:.1} MiB, last-quarter mean {:.1} MiB; open fds warm-up {warm_fds}, \
         max {max_fds}; {} samples; CPU server {:.1} s, test process {:.1} s; RSS MiB by tenth \
         [{}]; state.redb {:.1} MiB",
        elapsed.as_secs_f64(),
        mib(warm_rss),
        mib(peak),
        mib(hwm),
        mib(last),
        mib(q2),
        mib(q4),
        samples.len(),
        server_cpu.as_secs_f64(),
        client_cpu.as_secs_f64(),
        trace.join(" "),
        mib(state_db)
    );
    assert!(
        peak <= warm_rss + RSS_MARGIN,
        "{store:?}: RSS grew from {:.1} MiB (warm-up) to {:.1} MiB",
        mib(warm_rss),
        mib(peak)
    );
    assert!(
        q4 <= q2 + TREND_MARGIN,
        "{store:?}: mean RSS rose from {:.1} MiB (2nd quarter) to {:.1} MiB (last quarter)",
        mib(q2),
        mib(q4)
    );
    assert!(
        max_fds <= warm_fds + FD_MARGIN,
        "{store:?}: open descriptors grew from {warm_fds} (warm-up) to {max_fds}"
    );
}
both!(slow, multipart_cycles, multipart_cycles);
