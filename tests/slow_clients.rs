//! Slow clients hold no thread: 1,000 trickling uploads and 200 stalled GET readers at once,
//! while another client's PutObject, GetObject, HeadObject, UploadPart and /health/ready each
//! answer within 1 s, on both state stores; the process's RSS stays bounded.
//!
//! A separate test binary: it opens thousands of sockets and must not share the process (or
//! its file-descriptor budget) with the other end-to-end tests.

#[allow(dead_code, unused_macros, unused_imports)]
#[path = "integration/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use harness::{Store, TestGateway};

const TRICKLERS: usize = 1000;
const STALLED_READERS: usize = 200;
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
const ROUNDS: usize = 3;
const RSS_CAP_MIB: u64 = 768;

/// This test holds ~2,500 sockets (both ends) in one process: the open-files limit must allow
/// it (`ulimit -n 4096` or more).
fn check_fd_limit() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    assert!(
        soft >= 4096,
        "open-files limit {soft} too low: run with ulimit -n 4096"
    );
}

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// Within `ANSWER_WITHIN`, or the gateway is frozen.
async fn answers<T>(store: Store, round: usize, what: &str, f: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = tokio::time::timeout(ANSWER_WITHIN, f)
        .await
        .unwrap_or_else(|_| panic!("[{store:?}] round {round}: {what} did not answer within 1s"));
    println!(
        "[{store:?}] round {round}: {what} in {:?}",
        started.elapsed()
    );
    out
}

async fn slow_clients_hold_no_thread(store: Store) {
    let began = Instant::now();
    let gw = TestGateway::start_with(store, |c| {
        // Keep every slow client connected for the whole test: the point is that they cost
        // no thread, not that they are cut.
        c.min_body_rate = 0;
        c.body_timeout = Duration::from_secs(300);
        c.idle_timeout = Duration::from_secs(300);
        c.min_part_size = 1;
    })
    .await;
    let c = gw.bucket("slow").await;
    let big = vec![3u8; 8 << 20];
    harness::put(&c, "slow", "big", &big).await;
    let id = harness::create_upload(&c, "slow", "parts").await;

    // Trickling uploads: half PutObject, half UploadPart, each announcing 1 MiB and sending
    // one byte every 2 s.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut clients = Vec::new();
    for i in 0..TRICKLERS {
        let path = if i % 2 == 0 {
            format!("/slow/trickle-{i}")
        } else {
            format!("/slow/parts?partNumber={}&uploadId={id}", i % 10_000 + 1)
        };
        let (addr, head, _) = gw
            .raw("PUT", &path)
            .unsigned_payload()
            .header("content-length", &(1 << 20).to_string())
            .into_wire();
        let mut s = TcpStream::connect(addr).await.expect("connect trickler");
        s.write_all(&head).await.expect("trickler head");
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            loop {
                if s.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }));
    }
    // Stalled readers: GETs of an 8 MiB object whose clients never read.
    let mut readers = Vec::new();
    for _ in 0..STALLED_READERS {
        let (addr, head, _) = gw.raw("GET", "/slow/big").into_wire();
        let mut s = TcpStream::connect(addr).await.expect("connect reader");
        s.write_all(&head).await.expect("reader head");
        readers.push(s);
    }
    // Let every request reach the gateway and start its body.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let open = harness::operator_get(&format!("{}/metrics", gw.endpoint()))
        .await
        .text()
        .await
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("mpgw_connections_open"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    println!("[{store:?}] open connections: {open}");
    assert!(
        open >= (TRICKLERS + STALLED_READERS) as f64,
        "the slow clients are not all connected: {open}"
    );

    let http = reqwest::Client::new();
    let small = vec![9u8; 64 << 10];
    for round in 1..=ROUNDS {
        let key = format!("probe-{round}");
        answers(store, round, "PutObject", async {
            c.put_object()
                .bucket("slow")
                .key(&key)
                .body(small.clone().into())
                .send()
                .await
                .expect("PutObject")
        })
        .await;
        let got = answers(store, round, "GetObject", async {
            harness::get_bytes(&c, "slow", &key).await
        })
        .await;
        assert_eq!(got.len(), small.len());
        answers(store, round, "HeadObject", async {
            c.head_object()
                .bucket("slow")
                .key(&key)
                .send()
                .await
                .expect("HeadObject")
        })
        .await;
        answers(store, round, "UploadPart", async {
            c.upload_part()
                .bucket("slow")
                .key("parts")
                .upload_id(&id)
                .part_number(10_000)
                .body(small.clone().into())
                .send()
                .await
                .expect("UploadPart")
        })
        .await;
        let ready = answers(store, round, "/health/ready", async {
            http.get(format!("{}/health/ready", gw.endpoint()))
                .send()
                .await
                .expect("/health/ready")
        })
        .await;
        assert_eq!(ready.status(), 200, "[{store:?}] not ready");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rss = rss_mib();
    println!(
        "[{store:?}] RSS with {TRICKLERS} trickling uploads and {STALLED_READERS} stalled readers: {rss} MiB"
    );
    assert!(rss < RSS_CAP_MIB, "[{store:?}] RSS {rss} MiB");

    stop.cancel();
    drop(readers);
    for t in clients {
        let _ = t.await;
    }
    let mut gw = gw;
    gw.stop().await;
    let took = began.elapsed();
    println!("[{store:?}] took {took:?}");
    assert!(took < Duration::from_secs(90), "[{store:?}] took {took:?}");
}

/// Both stores in one test, one after the other: two at once would double the sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hold_no_thread_on_both_stores() {
    check_fd_limit();
    slow_clients_hold_no_thread(Store::Embedded).await;
    slow_clients_hold_no_thread(Store::Redis).await;
}
