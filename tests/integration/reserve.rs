//! The free-space reserve (`--min-free-space`) under concurrent writes, on a real small disk: a
//! tmpfs mounted on the gateway's blob directory (the state store stays off it). Writes in
//! flight hold room on the disk from admission until they end, so concurrent writes that each
//! fit but not together cannot take it below the reserve; bodies of unknown length take room as
//! they stream. A sampler reads the free space all along.
//!
//! Mounting needs root (or CAP_SYS_ADMIN): without it these tests fail, they do not skip.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::faults::{Tmpfs, free_bytes};
use crate::harness::*;
use crate::legacy::Client as Legacy;

const B: &str = "reserve";
const DISK: &str = "32m";
const RESERVE: u64 = 8 << 20;
/// Each write: 4 of them fit above the reserve on an empty disk, 6 do not.
const EACH: usize = 6 * MIB;
/// What an unknown-length body tries to send: more than the whole disk.
const FLOOD: usize = 40 * MIB;

/// Mounts the tmpfs on the blob directory of a gateway about to start on `data_dir`.
fn require_tmpfs(data_dir: &Path) -> Tmpfs {
    Tmpfs::mount(&data_dir.join("blobs"), DISK).unwrap_or_else(|| {
        panic!(
            "cannot mount a {DISK} tmpfs on {}: the reserve tests need root (or CAP_SYS_ADMIN) \
             and `mount -t tmpfs`",
            data_dir.join("blobs").display()
        )
    })
}

/// A gateway whose part data sits on a fresh tmpfs, with the reserve set.
async fn gateway(store: Store) -> (TestGateway, Tmpfs) {
    let mut mounted = None;
    let gw = TestGateway::start_with(store, |c| {
        c.min_free_space = RESERVE;
        c.min_part_size = 1;
        c.legacy_chunk_size = EACH as u64;
        mounted = Some(require_tmpfs(&c.data_dir));
    })
    .await;
    (gw, mounted.expect("mounted in the tweak"))
}

/// Reads the free space of a directory's file system every 200 µs until stopped; keeps the
/// lowest reading.
struct FreeWatch {
    stop: Arc<AtomicBool>,
    lowest: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FreeWatch {
    fn start(dir: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let lowest = Arc::new(AtomicU64::new(free_bytes(dir)));
        let dir = dir.to_owned();
        let thread = std::thread::spawn({
            let (stop, lowest) = (stop.clone(), lowest.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    lowest.fetch_min(free_bytes(&dir), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        Self {
            stop,
            lowest,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the lowest free space seen.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler");
        }
        self.lowest.load(Ordering::Relaxed)
    }
}

impl Drop for FreeWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[track_caller]
fn assert_reserve_kept(lowest: u64) {
    assert!(
        lowest >= RESERVE,
        "free space fell to {lowest} bytes, under the {RESERVE}-byte reserve ({} bytes short)",
        RESERVE - lowest
    );
}

/// None for a success, else the HTTP status and S3 code (status 0: no HTTP answer).
fn s3_failure<T, E: ProvideErrorMetadata>(
    r: &Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> Option<(u16, String)> {
    match r {
        Ok(_) => None,
        Err(e) => Some((
            e.raw_response().map_or(0, |r| r.status().as_u16()),
            e.code().unwrap_or_default().to_owned(),
        )),
    }
}

/// The room left above the reserve now, less a margin for block rounding: a write of this
/// many bytes must be taken (nothing is held once every write has ended).
fn room(mount: &Path) -> usize {
    usize::try_from(free_bytes(mount) - RESERVE).unwrap() - 64 * 1024
}

/// Six writes of 6 MiB sent at once, two through each path (PutObject, UploadPart, legacy
/// uppart), where four would fit above the reserve: the ones the disk cannot take are refused
/// before their body is stored (`507 InsufficientStorage`; legacy 507, code 10018), the free
/// space never goes under the reserve, no temp file stays, what was stored reads back intact,
/// and once they are over the whole room above the reserve can be written again.
async fn concurrent_writes(store: Store) {
    let (gw, mount) = gateway(store).await;
    let c = gw.bucket(B).await;
    let kept = random_bytes(100_000);
    put(&c, B, "kept", &kept).await;
    let id = create_upload(&c, B, "mp").await;
    let legacy = Legacy::of(&gw, ACCESS_KEY);
    let file = random_bytes(2 * EACH);
    let init = legacy.init(&file, "big.bin").await;
    let lid = init.data["UploadID"].as_str().unwrap().to_owned();
    let room_before = free_bytes(&mount.0) - RESERVE;
    assert!(
        EACH as u64 <= room_before && 6 * EACH as u64 > room_before,
        "{room_before} bytes above the reserve"
    );
    let data: Vec<Vec<u8>> = (0..4).map(|_| random_bytes(EACH)).collect();
    let put_obj = |i: usize| {
        c.put_object()
            .bucket(B)
            .key(format!("o{i}"))
            .body(data[i].clone().into())
            .send()
    };
    let put_part = |n: i32| {
        c.upload_part()
            .bucket(B)
            .key("mp")
            .upload_id(&id)
            .part_number(n)
            .body(data[n as usize + 1].clone().into())
            .send()
    };
    let watch = FreeWatch::start(&mount.0);
    let (o0, o1, p1, p2, l1, l2) = tokio::join!(
        put_obj(0),
        put_obj(1),
        put_part(1),
        put_part(2),
        legacy.uppart(&lid, 1, &file[..EACH], &[]),
        legacy.uppart(&lid, 2, &file[EACH..], &[]),
    );
    let lowest = watch.finish();
    assert_reserve_kept(lowest);

    let full = Some((507, "InsufficientStorage".to_owned()));
    let mut stored = 0;
    for (i, r) in [&o0, &o1].into_iter().enumerate() {
        let key = format!("o{i}");
        match s3_failure(r) {
            None => {
                stored += 1;
                assert_same_bytes(&get_bytes(&c, B, &key).await, &data[i], &key);
            }
            failed => {
                assert_eq!(failed, full, "PutObject {key}");
                let r = c.head_object().bucket(B).key(&key).send().await;
                assert_eq!(err(r).0, 404, "refused {key} is visible");
            }
        }
    }
    let mut parts = Vec::new();
    for (n, r) in [(1, &p1), (2, &p2)] {
        match (s3_failure(r), r) {
            (None, Ok(out)) => {
                stored += 1;
                let etag = out.e_tag().unwrap().to_owned();
                assert_eq!(etag, quoted_md5(&data[n as usize + 1]), "part {n}");
                parts.push((n, etag, EACH as i64));
            }
            (failed, _) => assert_eq!(failed, full, "UploadPart {n}"),
        }
    }
    assert_eq!(all_parts(&c, B, "mp", &id).await, parts, "listed parts");
    assert_eq!(
        blob_files(gw.data_dir(), &id).len(),
        parts.len(),
        "part files"
    );
    let mut present = Vec::new();
    for (i, r) in [(1, &l1), (2, &l2)] {
        match (r.status, r.code) {
            (200, 0) => {
                stored += 1;
                let chunk = &file[(i - 1) * EACH..i * EACH];
                assert_eq!(r.data["ETag"], md5_hex(chunk), "chunk {i}");
                present.push(i);
            }
            _ => assert_eq!((r.status, r.code), (507, 10018), "uppart {i}: {r:?}"),
        }
    }
    let status = legacy.post("status", &[("uploadid", lid.clone())]).await;
    assert_eq!(status.data["ChunksPresent"], serde_json::json!(present));
    assert_eq!(status.data["BytesReceived"], present.len() * EACH);
    assert!(
        (1..6).contains(&stored),
        "{stored} of 6 writes stored with room for {room_before} bytes"
    );
    assert_no_temp_files(gw.data_dir());
    assert_same_bytes(&get_bytes(&c, B, "kept").await, &kept, "earlier object");

    // Nothing is held any more: the whole room above the reserve takes a write.
    let rest = random_bytes(room(&mount.0));
    put(&c, B, "rest", &rest).await;
    assert_same_bytes(&get_bytes(&c, B, "rest").await, &rest, "rest");
    let r = c
        .put_object()
        .bucket(B)
        .key("over")
        .body(random_bytes(256 * 1024).into())
        .send()
        .await;
    assert_eq!(s3_failure(&r), full, "a write past the reserve");
    assert_reserve_kept(free_bytes(&mount.0));
    drop(c);
    drop(mount);
}
both!(reserve_holds_under_concurrent_writes, concurrent_writes);

/// Sends `head` then `body` in 1 MiB writes on a new connection while reading the answer: the
/// gateway may answer, and close, before the body is over.
async fn stream_request(addr: SocketAddr, head: Vec<u8>, body: Vec<u8>) -> RawResponse {
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        if wr.write_all(&head).await.is_err() {
            return;
        }
        for piece in body.chunks(MIB) {
            if wr.write_all(piece).await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let reading = async {
        // A reset after the answer ends the read; the answer is what counts.
        while let Ok(n) = rd.read_buf(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("no answer within 30 s");
    writer.abort();
    parse_http_response(&buf)
}

/// `data` as an HTTP/1.1 chunked body in 1 MiB chunks.
fn http_chunked(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1024);
    for piece in data.chunks(MIB) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Bodies whose length is not announced before they stream: S3 PutObject and UploadPart with
/// `Transfer-Encoding: chunked` and no Content-Length, and a legacy chunk whose `file` field
/// runs past the chunk's size. Each tries to send more than the whole disk and is cut as it
/// would take the disk under the reserve, with the full-disk answer (`507
/// InsufficientStorage`; legacy 507, code 10018); the free space never goes under the reserve,
/// nothing is stored, no temp file stays, and the room is free again afterwards.
async fn unknown_length(store: Store) {
    let (gw, mount) = gateway(store).await;
    let c = gw.bucket(B).await;
    let kept = random_bytes(100_000);
    put(&c, B, "kept", &kept).await;
    let id = create_upload(&c, B, "mp").await;
    let flood = random_bytes(FLOOD);
    let watch = FreeWatch::start(&mount.0);

    for (what, path) in [
        ("PutObject", format!("/{B}/flood")),
        ("UploadPart", format!("/{B}/mp?partNumber=1&uploadId={id}")),
    ] {
        let (addr, head, _) = gw
            .raw("PUT", &path)
            .header("transfer-encoding", "chunked")
            .unsigned_payload()
            .into_wire();
        let answer = stream_request(addr, head, http_chunked(&flood)).await;
        assert_eq!(
            (answer.status, answer.code().as_deref()),
            (507, Some("InsufficientStorage")),
            "{what} with a chunked body larger than the disk: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }

    let legacy = Legacy::of(&gw, ACCESS_KEY);
    let file = random_bytes(2 * EACH);
    let init = legacy.init(&file, "big.bin").await;
    let lid = init.data["UploadID"].as_str().unwrap().to_owned();
    let boundary = "mpgwreserveboundary";
    let mut body = Vec::new();
    for (k, v) in [
        ("username", ACCESS_KEY.to_owned()),
        ("token", gw.legacy_token(ACCESS_KEY)),
        ("uploadid", lid.clone()),
        ("index", "1".to_owned()),
    ] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&flood);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /file/mpupload/uppart HTTP/1.1\r\nhost: {}\r\n\
         content-type: multipart/form-data; boundary={boundary}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        gw.addr(),
        body.len()
    );
    let answer = stream_request(gw.addr(), head.into_bytes(), body).await;
    let v: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON envelope");
    assert_eq!(
        (answer.status, v["code"].as_i64()),
        (507, Some(10018)),
        "uppart with a chunk larger than the disk: {v}"
    );

    let lowest = watch.finish();
    assert_reserve_kept(lowest);
    assert_no_temp_files(gw.data_dir());
    assert_eq!(
        err(c.head_object().bucket(B).key("flood").send().await).0,
        404
    );
    assert!(all_parts(&c, B, "mp", &id).await.is_empty(), "parts");
    let status = legacy.post("status", &[("uploadid", lid)]).await;
    assert_eq!(status.data["ChunksPresent"], serde_json::json!([]));
    assert_same_bytes(&get_bytes(&c, B, "kept").await, &kept, "earlier object");
    let rest = random_bytes(room(&mount.0));
    put(&c, B, "rest", &rest).await;
    assert_same_bytes(&get_bytes(&c, B, "rest").await, &rest, "rest");
    drop(c);
    drop(mount);
}
both!(reserve_cuts_unknown_length_bodies, unknown_length);

/// No temp file in any blob directory (and the blob directory is there to look in; the files
/// beside the blob directories are the tests' fillers).
fn assert_no_temp_files(data_dir: &Path) {
    let blobs = std::fs::read_dir(data_dir.join("blobs")).expect("blob directory");
    for blob in blobs {
        let blob = blob.unwrap().path();
        if !blob.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&blob).expect("blob dir") {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".tmp-"),
                "temp file {name} left in {}",
                blob.display()
            );
        }
    }
}

/// Another process fills the disk while an admitted part streams (the room a write holds is this
/// gateway's bookkeeping, not the disk's): the part meets ENOSPC, fails with `507
/// InsufficientStorage` and leaves no temp file; once the disk has room again the same part is
/// taken, and the whole room above the reserve after it: the failed write gave its room back.
async fn filled_mid_write(store: Store) {
    let (gw, mount) = gateway(store).await;
    let c = gw.bucket(B).await;
    let id = create_upload(&c, B, "mp").await;
    let part = random_bytes(EACH);
    let (addr, head, body) = gw
        .raw("PUT", &format!("/{B}/mp?partNumber=1&uploadId={id}"))
        .unsigned_payload()
        .body(part.clone())
        .into_wire();
    let head = String::from_utf8(head).unwrap().replace(
        "connection: close\r\n",
        &format!("content-length: {}\r\nconnection: close\r\n", body.len()),
    );
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    wr.write_all(&body[..MIB]).await.unwrap();
    // Admitted and writing once its temp file is there.
    let dir = blob_dir(gw.data_dir(), &id);
    let started = std::time::Instant::now();
    while !blob_files(gw.data_dir(), &id)
        .iter()
        .any(|f| f.starts_with(".tmp-"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no temp file in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let filler = mount.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![9u8; 64 * 1024];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    let _ = wr.write_all(&body[MIB..]).await;
    let mut buf = Vec::new();
    let reading = async {
        while let Ok(n) = rd.read_buf(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("no answer within 30 s");
    parse_http_response(&buf).assert_error(507, "InsufficientStorage");
    assert_no_temp_files(gw.data_dir());
    assert!(all_parts(&c, B, "mp", &id).await.is_empty(), "parts");

    std::fs::remove_file(&filler).unwrap();
    let etag = upload_part(&c, B, "mp", &id, 1, &part).await;
    complete(&c, B, "mp", &id, &[(1, &etag)]).await;
    assert_same_bytes(&get_bytes(&c, B, "mp").await, &part, "part sent again");
    let rest = random_bytes(room(&mount.0));
    put(&c, B, "rest", &rest).await;
    drop(c);
    drop(mount);
}
both!(disk_filled_mid_write_fails_the_part, filled_mid_write);
