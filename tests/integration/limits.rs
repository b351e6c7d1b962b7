//! Limits against abusive clients: slow-loris heads, idle keep-alive connections, stalled
//! bodies, oversized heads, the connection cap, the TLS handshake timeout.
//!
//! Timeouts are set to 1 s; every check allows generous margins both ways (a deadline must not
//! fire before ~80 % of its time, and must fire within a few seconds).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{
    Store, TestGateway, blob_files, both, create_upload, openssl, operator_get, read_response,
};

const SHORT: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(60);
/// Earliest a 1 s timeout may fire (timer granularity, accept-to-first-read delay).
const NOT_BEFORE: Duration = Duration::from_millis(800);
/// Latest a 1 s timeout may fire on a busy shared test machine.
const WITHIN: Duration = Duration::from_secs(6);

/// Reads (and discards) until the server closes the connection; panics after `limit`. Returns
/// the time from `since`.
async fn closed(s: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// A request that needs no credentials and leaves the connection open.
const LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one answer with a Content-Length body off a keep-alive connection.
async fn read_one(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before a whole answer");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let status = text[9..12].parse().expect("status");
                    return (status, text[end + 4..end + 4 + len].to_owned());
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no answer within 10 s")
}

/// The value of a Prometheus series (summed over its labels when `labels` is empty).
async fn metric(gw: &TestGateway, series: &str) -> f64 {
    let text = operator_get(&format!("{}/metrics", gw.endpoint()))
        .await
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A client trickling its request head is cut off after --header-timeout, while other clients
/// are served meanwhile; the same client sending a whole head in time is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_head_is_cut_off() {
    let gw = TestGateway::start_with(Store::Embedded, |c| {
        c.header_timeout = SHORT;
        c.idle_timeout = LONG;
    })
    .await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(gw.addr()).await.unwrap();
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = slow.into_split();
    // One header byte every 100 ms: progress, but never a whole head.
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if wr.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Others are served while the slow one hangs on.
    let c = gw.client();
    let t = Instant::now();
    c.list_buckets().send().await.expect("ListBuckets");
    assert!(
        t.elapsed() < NOT_BEFORE,
        "a normal client waited {:?}",
        t.elapsed()
    );

    let mut buf = [0u8; 1024];
    let ended = tokio::time::timeout(WITHIN, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("slow-loris connection still open");
    trickle.abort();
    assert!(
        ended >= NOT_BEFORE,
        "cut off after {ended:?}, before the timeout"
    );
    assert!(metric(&gw, "mpgw_timeouts_total{kind=\"header\"}").await >= 1.0);

    // A head sent in time is fine, on a connection older than the timeout too.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(LIVE).await.unwrap();
    assert_eq!(read_one(&mut s).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"GET /health/live HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"Host: x\r\n\r\n").await.unwrap();
    assert_eq!(read_one(&mut s).await.0, 200);
}

/// Many slow-loris connections up to --max-connections hold a normal client only until the
/// header timeout frees their slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_swarm_delays_others_only_until_the_timeout() {
    let gw = TestGateway::start_with(Store::Embedded, |c| {
        c.header_timeout = SHORT;
        c.max_connections = 8;
    })
    .await;
    let started = Instant::now();
    let mut swarm = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"PUT /b/k HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        swarm.push(s);
    }
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(LIVE).await.unwrap();
    let (status, _) = read_one(&mut s).await;
    let waited = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        waited >= NOT_BEFORE,
        "served after {waited:?}: the cap did not hold"
    );
    assert!(waited < WITHIN, "served only after {waited:?}");
    for mut s in swarm {
        closed(&mut s, started, WITHIN).await;
    }
    assert!(metric(&gw, "mpgw_connections_limited_total").await >= 1.0);
}

/// A keep-alive connection with no request is closed after --idle-timeout, even when the header
/// timeout is longer; a request in progress (a slow but steady upload) is never cut by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed() {
    let gw = TestGateway::start_with(Store::Embedded, |c| {
        c.header_timeout = LONG;
        c.idle_timeout = SHORT;
        c.body_timeout = SHORT;
    })
    .await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(LIVE).await.unwrap();
    assert_eq!(read_one(&mut s).await.0, 200);
    let idle = Instant::now();
    let after = closed(&mut s, idle, WITHIN).await;
    assert!(
        after >= NOT_BEFORE,
        "closed after {after:?}, before the idle timeout"
    );
    assert!(metric(&gw, "mpgw_timeouts_total{kind=\"idle\"}").await >= 1.0);

    // 2.5 s of upload at one chunk per 250 ms: longer than the idle timeout, never stalled for
    // the body timeout.
    let c = gw.bucket("steady").await;
    let data = crate::harness::random_bytes(10 * 4096);
    let (addr, head, _) = gw
        .raw("PUT", "/steady/obj")
        .unsigned_payload()
        .header("content-length", &data.len().to_string())
        .into_wire();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&head).await.unwrap();
    for chunk in data.chunks(4096) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.write_all(chunk).await.unwrap();
    }
    let resp = read_response(&mut s).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    crate::harness::assert_same_bytes(
        &crate::harness::get_bytes(&c, "steady", "obj").await,
        &data,
        "steady upload",
    );
}

/// An UploadPart whose body stops arriving fails with 400 RequestTimeout after --body-timeout;
/// no part is recorded and no file is left.
async fn stalled_body_times_out(store: Store) {
    let gw = TestGateway::start_with(store, |c| {
        c.body_timeout = SHORT;
        c.min_part_size = 1;
    })
    .await;
    let c = gw.bucket("stall").await;
    let id = create_upload(&c, "stall", "k").await;
    let (addr, head, _) = gw
        .raw("PUT", &format!("/stall/k?partNumber=1&uploadId={id}"))
        .unsigned_payload()
        .header("content-length", &(1 << 20).to_string())
        .into_wire();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&head).await.unwrap();
    s.write_all(&vec![7u8; 64 << 10]).await.unwrap();
    let stalled = Instant::now();
    let resp = read_response(&mut s).await;
    let after = stalled.elapsed();
    resp.assert_error(400, "RequestTimeout");
    assert!(after >= NOT_BEFORE, "timed out after {after:?}");
    assert!(after < WITHIN, "timed out only after {after:?}");

    let parts = c
        .list_parts()
        .bucket("stall")
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .expect("ListParts");
    assert!(parts.parts().is_empty(), "a part was recorded: {parts:?}");
    // The staged file is removed as the failed write unwinds (on a blocking thread).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = blob_files(gw.data_dir(), &id);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "files left: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(&gw, "mpgw_timeouts_total{kind=\"body\"}").await >= 1.0);
    // The upload still works.
    let put = c
        .upload_part()
        .bucket("stall")
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .body(vec![1u8; 1000].into())
        .send()
        .await;
    assert!(put.is_ok(), "{put:?}");
}
both!(stalled_body, stalled_body_times_out);

/// A head over --max-header-size gets AWS's 400 RequestHeaderSectionTooLarge; one under it is
/// served; a huge one is refused too, by hyper or by us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_is_refused() {
    let gw = TestGateway::start_with(Store::Embedded, |c| c.max_header_size = 4 << 10).await;
    let ok = gw
        .raw("GET", "/")
        .header("x-pad", &"a".repeat(3 << 10))
        .send()
        .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));

    let big = gw
        .raw("GET", "/")
        .header("x-pad", &"a".repeat(6 << 10))
        .send()
        .await;
    big.assert_error(400, "RequestHeaderSectionTooLarge");
    let legacy = gw
        .raw("POST", "/file/mpupload/init")
        .header("x-pad", &"a".repeat(6 << 10))
        .send()
        .await;
    assert_eq!(
        legacy.status,
        413,
        "{}",
        String::from_utf8_lossy(&legacy.body)
    );
    assert!(String::from_utf8_lossy(&legacy.body).contains("\"code\":10009"));

    // Beyond hyper's 400 KiB read buffer: no head is parsed at all.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..60 {
        head.extend_from_slice(format!("x-pad-{i}: {}\r\n", "a".repeat(8000)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let _ = s.write_all(&head).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WITHIN, s.read_to_end(&mut answer))
        .await
        .expect("connection not closed");
    // Hyper checks its buffer between reads, so a head a little over the buffer may still be
    // parsed whole (and get the S3 answer); and the answer may be lost to a reset when the
    // gateway closes with part of the head unread.
    if read.is_ok() {
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 431")
                || (text.starts_with("HTTP/1.1 400")
                    && text.contains("<Code>RequestHeaderSectionTooLarge</Code>")),
            "{text}"
        );
    }
    // And the server is fine.
    assert_eq!(gw.raw("GET", "/").send().await.status, 200);
}

/// Past --max-connections the gateway stops accepting: a new client waits (in the listen
/// backlog) and is served as soon as a connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_holds_new_clients_until_a_slot_frees() {
    let gw = TestGateway::start_with(Store::Embedded, |c| {
        c.max_connections = 2;
        c.header_timeout = LONG;
    })
    .await;
    let mut first = TcpStream::connect(gw.addr()).await.unwrap();
    first.write_all(LIVE).await.unwrap();
    assert_eq!(read_one(&mut first).await.0, 200);
    let second = TcpStream::connect(gw.addr()).await.unwrap();

    let mut third = TcpStream::connect(gw.addr()).await.unwrap();
    third.write_all(LIVE).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(early.is_err(), "answered beyond the cap: {early:?}");

    drop(second);
    let t = Instant::now();
    assert_eq!(read_one(&mut third).await.0, 200);
    assert!(t.elapsed() < WITHIN);
    // The open connections keep their service.
    first.write_all(LIVE).await.unwrap();
    assert_eq!(read_one(&mut first).await.0, 200);
    drop(first);
    drop(third);
    assert!(metric(&gw, "mpgw_connections_limited_total").await >= 1.0);
}

/// A TLS client that never finishes its handshake is disconnected after --header-timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ],
    );
    let gw = TestGateway::start_with(Store::Embedded, move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.header_timeout = SHORT;
        c.idle_timeout = LONG;
    })
    .await;
    let started = Instant::now();
    // Nothing at all, and half a ClientHello record header.
    let mut silent = TcpStream::connect(gw.addr()).await.unwrap();
    let mut partial = TcpStream::connect(gw.addr()).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    for s in [&mut silent, &mut partial] {
        let after = closed(s, started, WITHIN).await;
        assert!(
            after >= NOT_BEFORE,
            "closed after {after:?}, before the timeout"
        );
    }
}

/// An HTTP/2 (prior knowledge) connection falls idle once its streams are done and is closed after
/// --idle-timeout; the header timeout, shorter here, does not apply between its requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_idle_connection_is_closed() {
    use http_body_util::{BodyExt as _, Empty};
    let gw = TestGateway::start_with(Store::Embedded, |c| {
        c.header_timeout = Duration::from_millis(500);
        c.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let uri = format!("http://{}/health/live", gw.addr());
    for _ in 0..2 {
        let req = http::Request::get(&uri)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.expect("h2 request");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.expect("h2 body");
        // Longer than the header timeout: still open for the second request.
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let idle = Instant::now() - Duration::from_millis(1000);
    let _ = tokio::time::timeout(WITHIN, conn)
        .await
        .expect("h2 connection still open");
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(1600),
        "closed after {after:?}, before the idle timeout"
    );
}

/// A client that stops reading a large GetObject is cut off after --body-timeout rather than
/// holding the connection (and the open file) forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_response_is_cut_off() {
    let gw = TestGateway::start_with(Store::Embedded, |c| {
        c.body_timeout = SHORT;
        c.idle_timeout = LONG;
    })
    .await;
    let c = gw.bucket("unread").await;
    // Larger than what the socket buffers of both ends can hold on loopback.
    let data = vec![5u8; 48 << 20];
    crate::harness::put(&c, "unread", "big", &data).await;
    let (addr, head, _) = gw.raw("GET", "/unread/big").into_wire();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&head).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&gw, "mpgw_timeouts_total{kind=\"send\"}").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled response was not cut off"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WITHIN, s.read_to_end(&mut got))
        .await
        .expect("connection not closed");
    assert!(got.len() < data.len(), "the whole object arrived");
}

/// An UploadPart that trickles (a few bytes at a time, never stalled for --body-timeout) is cut
/// after --body-rate-window with 400 RequestTimeout: it holds no thread meanwhile, and nothing
/// is recorded.
async fn trickling_body_is_cut(store: Store) {
    let gw = TestGateway::start_with(store, |c| {
        c.body_timeout = LONG;
        c.min_body_rate = 1024;
        c.body_rate_window = Duration::from_secs(2);
        c.min_part_size = 1;
    })
    .await;
    let c = gw.bucket("trickle").await;
    let id = create_upload(&c, "trickle", "k").await;
    let (addr, head, _) = gw
        .raw("PUT", &format!("/trickle/k?partNumber=1&uploadId={id}"))
        .unsigned_payload()
        .header("content-length", &(1 << 20).to_string())
        .into_wire();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&head).await.unwrap();
    let started = Instant::now();
    // 50 bytes/s: well under 1 KiB/s, never silent for long.
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if wr.write_all(&[7u8; 10]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&raw).contains("</Error>") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the trickling body was not cut");
    let after = started.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("<Code>RequestTimeout</Code>"), "{text}");
    assert!(
        after >= Duration::from_millis(1600),
        "cut after {after:?}, before the window"
    );
    let parts = c
        .list_parts()
        .bucket("trickle")
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .expect("ListParts");
    assert!(parts.parts().is_empty(), "a part was recorded: {parts:?}");
    assert!(metric(&gw, "mpgw_timeouts_total{kind=\"body_rate\"}").await >= 1.0);
}
both!(trickling_body, trickling_body_is_cut);

/// A client that reads a large GetObject far slower than --min-body-rate (never stopping for
/// --body-timeout) is cut off after the rate window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_cut_off() {
    let gw = TestGateway::start_with(Store::Embedded, |c| {
        c.body_timeout = LONG;
        c.idle_timeout = LONG;
        c.min_body_rate = 64 << 10;
        c.body_rate_window = Duration::from_secs(2);
    })
    .await;
    let c = gw.bucket("slowread").await;
    let data = vec![5u8; 48 << 20];
    crate::harness::put(&c, "slowread", "big", &data).await;
    let (addr, head, _) = gw.raw("GET", "/slowread/big").into_wire();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&head).await.unwrap();
    let started = Instant::now();
    let mut got = 0usize;
    let mut buf = [0u8; 1024];
    // ~10 KiB/s: reads all the time, far below 64 KiB/s.
    let closed = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the slow reader was not cut off"
        );
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => got += n,
            Err(_) => break false,
        }
        if metric(&gw, "mpgw_timeouts_total{kind=\"send_rate\"}").await >= 1.0 {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(closed, "no data and no close for 5 s");
    assert!(got < data.len(), "the whole object arrived");
    assert!(metric(&gw, "mpgw_timeouts_total{kind=\"send_rate\"}").await >= 1.0);
}

/// A request refused before its body is read (a CompleteMultipartUpload announcing more XML
/// than allowed) gets its answer, and the body sent after the answer is read and dropped: the
/// connection stays usable. Closing with the body unread made the kernel reset the connection,
/// and a client still writing saw a broken pipe instead of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refusal_keeps_the_connection() {
    let gw = TestGateway::start(Store::Embedded).await;
    let c = gw.bucket("early").await;
    let id = create_upload(&c, "early", "k").await;
    let len = 3_300_000usize;
    let (addr, head, _) = gw
        .raw("POST", &format!("/early/k?uploadId={id}"))
        .unsigned_payload()
        .header("content-length", &len.to_string())
        .into_wire();
    // into_wire asks for `connection: close`; this client wants to keep the connection.
    let head = String::from_utf8(head)
        .unwrap()
        .replace("connection: close\r\n", "");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = read_one(&mut s).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<Code>MaxMessageLengthExceeded</Code>"),
        "{body}"
    );
    // The body follows the answer, in pieces, as a client that does not wait would send it.
    for piece in vec![b' '; len].chunks(64 << 10) {
        tokio::time::timeout(Duration::from_secs(10), s.write_all(piece))
            .await
            .expect("write stalled")
            .expect("the connection was reset while the body was sent");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s.write_all(LIVE).await.expect("next request");
    let (status, _) = read_one(&mut s).await;
    assert_eq!(status, 200, "the connection did not carry the next request");
}
