//! tus 1.0 at `/_tus/`, raw requests against both state stores: creation, PATCH and HEAD,
//! resume after a cut-off body and after a restart, merged small writes, every status the
//! protocol names, termination, deferred length, creation-with-upload, checksums,
//! concatenation, expiry, and another user's upload. (The real clients are in compat/tus*.sh.)

use std::io::{Read as _, Write as _};
use std::time::Duration;

use base64::Engine as _;
use sha1::Digest as _;

use crate::harness::{MIB, Store, TestGateway, both, get_bytes, random_bytes};
use crate::legacy::{BOB, gateway, sha256_hex};

const OCTETS: &str = "application/offset+octet-stream";

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

struct Tus {
    base: String,
    token: String,
    http: reqwest::Client,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn offset(&self) -> Option<u64> {
        self.header("upload-offset").and_then(|v| v.parse().ok())
    }
}

impl Tus {
    fn of(gw: &TestGateway, user: &str) -> Self {
        Self {
            base: gw.endpoint(),
            token: gw.legacy_token(user),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, id: &str) -> String {
        format!("{}/_tus/{id}", self.base)
    }

    async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .header("tus-resumable", "1.0.0")
            .header("authorization", format!("Bearer {}", self.token));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body).send().await.unwrap();
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
        }
    }

    /// Creates an upload; returns its id (the last segment of Location).
    async fn create(&self, headers: &[(&str, &str)]) -> String {
        let a = self
            .send("POST", &format!("{}/_tus/", self.base), headers, Vec::new())
            .await;
        assert_eq!(a.status, 201, "create");
        let loc = a.header("location").expect("Location").to_owned();
        assert!(loc.starts_with(&format!("{}/_tus/", self.base)), "{loc}");
        loc.rsplit('/').next().unwrap().to_owned()
    }

    async fn create_named(&self, name: &str, len: usize) -> String {
        let meta = format!(
            "filename {},filetype {}",
            b64(name.as_bytes()),
            b64(b"text/x-tus")
        );
        self.create(&[
            ("upload-length", &len.to_string()),
            ("upload-metadata", &meta),
        ])
        .await
    }

    async fn patch(&self, id: &str, offset: u64, data: &[u8]) -> Answer {
        self.patch_with(id, offset, data, &[]).await
    }

    async fn patch_with(
        &self,
        id: &str,
        offset: u64,
        data: &[u8],
        extra: &[(&str, &str)],
    ) -> Answer {
        let off = offset.to_string();
        let mut headers = vec![("content-type", OCTETS), ("upload-offset", off.as_str())];
        headers.extend_from_slice(extra);
        self.send("PATCH", &self.url(id), &headers, data.to_vec())
            .await
    }

    async fn head(&self, id: &str) -> Answer {
        self.send("HEAD", &self.url(id), &[], Vec::new()).await
    }
}

fn blob_files(gw: &TestGateway, id: &str) -> usize {
    std::fs::read_dir(gw.data_dir().join("blobs").join(id)).map_or(0, |d| d.count())
}

both!(roundtrip, roundtrip);
async fn roundtrip(store: Store) {
    let gw = gateway(store).await;
    let tus = Tus::of(&gw, crate::harness::ACCESS_KEY);
    let opts = tus
        .send("OPTIONS", &format!("{}/_tus/", tus.base), &[], Vec::new())
        .await;
    assert_eq!(opts.status, 204);
    assert_eq!(opts.header("tus-version"), Some("1.0.0"));
    for ext in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
        "concatenation",
    ] {
        assert!(
            opts.header("tus-extension")
                .unwrap()
                .split(',')
                .any(|e| e == ext),
            "{ext}"
        );
    }
    assert!(opts.header("tus-max-size").unwrap().parse::<u64>().unwrap() >= 5 << 30);

    let data = random_bytes(3 * MIB + 17);
    let id = tus.create_named("round.bin", data.len()).await;
    let head = tus.head(&id).await;
    assert_eq!((head.status, head.offset()), (200, Some(0)));
    assert_eq!(
        head.header("upload-length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(head.header("cache-control"), Some("no-store"));
    assert!(head.header("upload-expires").is_some());
    assert!(
        head.header("upload-metadata")
            .unwrap()
            .contains(&b64(b"round.bin"))
    );

    let a = tus.patch(&id, 0, &data[..MIB + 1]).await;
    assert_eq!((a.status, a.offset()), (204, Some(MIB as u64 + 1)));
    // The same bytes again at 0: the offset moved on.
    let again = tus.patch(&id, 0, &data[..10]).await;
    assert_eq!((again.status, again.offset()), (409, Some(MIB as u64 + 1)));
    // Many small writes are merged as they come, not kept as thousands of files.
    let mut at = MIB + 1;
    for _ in 0..64 {
        let a = tus.patch(&id, at as u64, &data[at..at + 4096]).await;
        assert_eq!(a.status, 204);
        at += 4096;
    }
    assert!(blob_files(&gw, &id) <= 3, "{} files", blob_files(&gw, &id));
    // Past the length: refused, nothing stored.
    let mut past = data[at..].to_vec();
    past.push(0);
    let a = tus.patch(&id, at as u64, &past).await;
    assert_eq!(a.status, 400);
    assert_eq!(tus.head(&id).await.offset(), Some(at as u64));
    let a = tus.patch(&id, at as u64, &data[at..]).await;
    assert_eq!((a.status, a.offset()), (204, Some(data.len() as u64)));

    let s3 = gw.client();
    let key = format!("{}/round.bin", crate::harness::ACCESS_KEY);
    assert_eq!(get_bytes(&s3, "files", &key).await, data);
    let obj = s3
        .head_object()
        .bucket("files")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(obj.content_type(), Some("text/x-tus"));
    // Finished: HEAD still answers, at the end; a PATCH is a mismatch.
    let head = tus.head(&id).await;
    assert_eq!((head.status, head.offset()), (200, Some(data.len() as u64)));
    assert_eq!(tus.patch(&id, 0, b"x").await.status, 409);
}

/// Sends a PATCH at `offset` announcing `len` bytes, sends `body`, and hangs up without reading
/// the answer.
fn raw_patch(gw: &TestGateway, tus: &Tus, id: &str, offset: usize, body: &[u8], len: usize) {
    let mut sock = std::net::TcpStream::connect(gw.addr()).unwrap();
    let head = format!(
        "PATCH /_tus/{id} HTTP/1.1\r\nhost: {}\r\ntus-resumable: 1.0.0\r\nauthorization: Bearer {}\r\ncontent-type: {OCTETS}\r\nupload-offset: {offset}\r\ncontent-length: {len}\r\n\r\n",
        gw.addr(),
        tus.token,
    );
    sock.write_all(head.as_bytes()).unwrap();
    sock.write_all(body).unwrap();
    sock.flush().unwrap();
    sock.shutdown(std::net::Shutdown::Both).unwrap();
}

both!(cut_off_patch_keeps_its_bytes, cut_off_patch_keeps_its_bytes);
/// A body cut off mid-way keeps what arrived: HEAD reports it, the rest completes the file.
async fn cut_off_patch_keeps_its_bytes(store: Store) {
    let mut gw = gateway(store).await;
    let tus = Tus::of(&gw, crate::harness::ACCESS_KEY);
    let data = random_bytes(4 * MIB);
    let id = tus.create_named("cut.bin", data.len()).await;
    let sent = 3 * MIB / 2 + 5;
    raw_patch(&gw, &tus, &id, 0, &data[..sent], data.len());
    let mut offset = 0;
    for _ in 0..100 {
        offset = tus.head(&id).await.offset().unwrap();
        if offset > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(offset, sent as u64, "the bytes that arrived are kept");
    // A whole body sent, and the client gone before the answer: stored all the same.
    let more = MIB;
    raw_patch(&gw, &tus, &id, sent, &data[sent..sent + more], more);
    let want = (sent + more) as u64;
    for _ in 0..100 {
        if tus.head(&id).await.offset() == Some(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        tus.head(&id).await.offset(),
        Some(want),
        "a whole body is kept"
    );
    let sent = sent + more;
    // And after a restart (a crash loses nothing that was answered or recorded).
    gw.restart().await;
    let tus = Tus::of(&gw, crate::harness::ACCESS_KEY);
    assert_eq!(tus.head(&id).await.offset(), Some(sent as u64));
    let a = tus.patch(&id, sent as u64, &data[sent..]).await;
    assert_eq!(a.status, 204);
    let key = format!("{}/cut.bin", crate::harness::ACCESS_KEY);
    assert_eq!(get_bytes(&gw.client(), "files", &key).await, data);
}

both!(statuses, statuses);
async fn statuses(store: Store) {
    let gw = gateway(store).await;
    let tus = Tus::of(&gw, crate::harness::ACCESS_KEY);
    let bob = Tus::of(&gw, BOB);
    let id = tus.create_named("s.bin", 100).await;
    let url = tus.url(&id);
    let http = reqwest::Client::new();

    // No Tus-Resumable: 412 with the versions.
    let r = http
        .head(&url)
        .header("authorization", format!("Bearer {}", tus.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 412);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    // No token, a wrong one: 401.
    let r = http
        .head(&url)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let wrong = Tus {
        token: "nope".into(),
        ..Tus::of(&gw, BOB)
    };
    assert_eq!(wrong.head(&id).await.status, 401);
    // Wrong content type: 415.
    let a = tus
        .send(
            "PATCH",
            &url,
            &[
                ("content-type", "application/octet-stream"),
                ("upload-offset", "0"),
            ],
            b"abc".to_vec(),
        )
        .await;
    assert_eq!(a.status, 415);
    // A bad checksum: 460, nothing stored; a right one is taken.
    let a = tus
        .patch_with(
            &id,
            0,
            b"hello",
            &[(
                "upload-checksum",
                &format!("sha1 {}", b64(&sha1::Sha1::digest(b"other"))),
            )],
        )
        .await;
    assert_eq!(a.status, 460);
    assert_eq!(tus.head(&id).await.offset(), Some(0));
    let a = tus
        .patch_with(
            &id,
            0,
            b"hello",
            &[(
                "upload-checksum",
                &format!("sha1 {}", b64(&sha1::Sha1::digest(b"hello"))),
            )],
        )
        .await;
    assert_eq!((a.status, a.offset()), (204, Some(5)));
    let a = tus
        .patch_with(&id, 5, b"x", &[("upload-checksum", "whirlpool AAAA")])
        .await;
    assert_eq!(a.status, 400);
    // Over Tus-Max-Size: 413.
    let a = tus
        .send(
            "POST",
            &format!("{}/_tus/", tus.base),
            &[
                ("upload-length", "99999999999999999"),
                ("upload-metadata", &format!("filename {}", b64(b"big"))),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(a.status, 413);
    // No length, no filename, bad metadata: 400.
    for headers in [
        vec![("upload-metadata", format!("filename {}", b64(b"n")))],
        vec![("upload-length", "5".to_owned())],
        vec![
            ("upload-length", "5".to_owned()),
            ("upload-metadata", "filename !!!".to_owned()),
        ],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = tus
            .send("POST", &format!("{}/_tus/", tus.base), &h, Vec::new())
            .await;
        assert_eq!(a.status, 400, "{headers:?}");
    }
    // Unknown id, and another user's upload: the same 404, and it stays untouched.
    assert_eq!(
        tus.head("0123456789abcdef0123456789abcdef").await.status,
        404
    );
    assert_eq!(bob.head(&id).await.status, 404);
    assert_eq!(bob.patch(&id, 5, b"evil").await.status, 404);
    assert_eq!(bob.send("DELETE", &url, &[], Vec::new()).await.status, 404);
    assert_eq!(tus.head(&id).await.offset(), Some(5));
    // Termination: 204, then gone with its files.
    assert!(blob_files(&gw, &id) > 0);
    assert_eq!(tus.send("DELETE", &url, &[], Vec::new()).await.status, 204);
    assert_eq!(tus.head(&id).await.status, 404);
    assert!(!gw.data_dir().join("blobs").join(&id).exists());
    // CORS: the preflight needs no token; answers expose the tus headers.
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{}/_tus/", tus.base))
        .header("origin", "http://app.example")
        .header("access-control-request-method", "PATCH")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PATCH")
    );
    let a = tus
        .send(
            "HEAD",
            &url,
            &[("origin", "http://app.example")],
            Vec::new(),
        )
        .await;
    assert!(
        a.header("access-control-expose-headers")
            .unwrap()
            .contains("Upload-Offset")
    );
}

both!(creation_variants, creation_variants);
/// creation-with-upload, deferred length, and the whole-file SHA-256 of the note's API.
async fn creation_variants(store: Store) {
    let gw = gateway(store).await;
    let tus = Tus::of(&gw, crate::harness::ACCESS_KEY);
    let s3 = gw.client();
    let user = crate::harness::ACCESS_KEY;

    let data = random_bytes(300_000);
    let meta = format!(
        "filename {},sha256 {}",
        b64(b"with-body.bin"),
        b64(sha256_hex(&data).as_bytes())
    );
    let a = tus
        .send(
            "POST",
            &format!("{}/_tus/", tus.base),
            &[
                ("upload-length", &data.len().to_string()),
                ("upload-metadata", &meta),
                ("content-type", OCTETS),
            ],
            data.clone(),
        )
        .await;
    assert_eq!((a.status, a.offset()), (201, Some(data.len() as u64)));
    assert_eq!(
        get_bytes(&s3, "files", &format!("{user}/with-body.bin")).await,
        data
    );
    // Its verified SHA-256 entered the unique file table: Bob's note-API init of the same
    // content, with the proof, links it at once (instant upload).
    let bob = crate::legacy::Client::of(&gw, BOB);
    let init = bob.init(&data, "same.bin").await;
    let done = bob.prove(&init, &data).await;
    assert_eq!(done.data["Instant"], true, "{done:?}");
    // A wrong whole-file hash: the upload stays open, nothing is published.
    let meta = format!(
        "filename {},sha256 {}",
        b64(b"bad-hash.bin"),
        b64(sha256_hex(b"other").as_bytes())
    );
    let id = tus
        .create(&[
            ("upload-length", &data.len().to_string()),
            ("upload-metadata", &meta),
        ])
        .await;
    assert_ne!(tus.patch(&id, 0, &data).await.status, 204);
    assert!(
        s3.head_object()
            .bucket("files")
            .key(format!("{user}/bad-hash.bin"))
            .send()
            .await
            .is_err()
    );

    // An empty file is complete at creation.
    let meta = format!("filename {}", b64(b"empty.bin"));
    let id = tus
        .create(&[("upload-length", "0"), ("upload-metadata", &meta)])
        .await;
    assert_eq!(tus.head(&id).await.offset(), Some(0));
    assert_eq!(
        get_bytes(&s3, "files", &format!("{user}/empty.bin")).await,
        b""
    );

    let meta = format!("filename {}", b64(b"deferred.bin"));
    let id = tus
        .create(&[("upload-defer-length", "1"), ("upload-metadata", &meta)])
        .await;
    let head = tus.head(&id).await;
    assert_eq!(head.header("upload-defer-length"), Some("1"));
    assert_eq!(head.header("upload-length"), None);
    assert_eq!(tus.patch(&id, 0, &data[..100_000]).await.status, 204);
    let len = data.len().to_string();
    let a = tus
        .patch_with(&id, 100_000, &data[100_000..], &[("upload-length", &len)])
        .await;
    assert_eq!((a.status, a.offset()), (204, Some(data.len() as u64)));
    assert_eq!(
        tus.head(&id).await.header("upload-length"),
        Some(len.as_str())
    );
    assert_eq!(
        get_bytes(&s3, "files", &format!("{user}/deferred.bin")).await,
        data
    );
}

both!(concatenation, concatenation);
async fn concatenation(store: Store) {
    let gw = gateway(store).await;
    let tus = Tus::of(&gw, crate::harness::ACCESS_KEY);
    let bob = Tus::of(&gw, BOB);
    let data = random_bytes(3 * MIB);
    let halves = [&data[..MIB + 3], &data[MIB + 3..]];
    let mut urls = Vec::new();
    for half in halves {
        let id = tus
            .create(&[
                ("upload-length", &half.len().to_string()),
                ("upload-concat", "partial"),
            ])
            .await;
        assert_eq!(tus.head(&id).await.header("upload-concat"), Some("partial"));
        assert_eq!(tus.patch(&id, 0, half).await.status, 204);
        urls.push(tus.url(&id));
    }
    // Bob cannot take them: as if they did not exist; no object is made.
    let meta = format!("filename {}", b64(b"joined.bin"));
    let concat = format!("final;{}", urls.join(" "));
    let a = bob
        .send(
            "POST",
            &format!("{}/_tus/", bob.base),
            &[("upload-concat", &concat), ("upload-metadata", &meta)],
            Vec::new(),
        )
        .await;
    assert_eq!(a.status, 404);
    assert!(
        gw.client()
            .head_object()
            .bucket("files")
            .key(format!("{BOB}/joined.bin"))
            .send()
            .await
            .is_err()
    );
    let a = tus
        .send(
            "POST",
            &format!("{}/_tus/", tus.base),
            &[("upload-concat", &concat), ("upload-metadata", &meta)],
            Vec::new(),
        )
        .await;
    assert_eq!(a.status, 201);
    let key = format!("{}/joined.bin", crate::harness::ACCESS_KEY);
    assert_eq!(get_bytes(&gw.client(), "files", &key).await, data);
    // The partial uploads are gone, their bytes live on in the final file (no copy).
    for url in &urls {
        let id = url.rsplit('/').next().unwrap();
        assert_eq!(tus.head(id).await.status, 404);
    }
    let final_id = a
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let head = tus.head(&final_id).await;
    assert_eq!(head.offset(), Some(data.len() as u64));
    assert_eq!(head.header("upload-concat"), Some(concat.as_str()));
    // A final upload takes no writes: 403.
    assert_eq!(
        tus.patch(&final_id, data.len() as u64, b"more")
            .await
            .status,
        403
    );
    let mut links = 0;
    for f in std::fs::read_dir(gw.data_dir().join("blobs").join(&final_id)).unwrap() {
        let mut file = std::fs::File::open(f.unwrap().path()).unwrap();
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).unwrap();
        links += 1;
    }
    assert_eq!(links, 2);
}

both!(expired_upload_is_gone, expired_upload_is_gone);
async fn expired_upload_is_gone(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| cfg.upload_expiry = Duration::from_secs(2)).await;
    let tus = Tus::of(&gw, crate::harness::ACCESS_KEY);
    let started = std::time::Instant::now();
    let id = tus.create_named("old.bin", 10).await;
    let a = tus.patch(&id, 0, b"12345").await;
    // Within its time the upload takes writes (unless this machine is slower than 2 s here).
    if started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(a.status, 204);
        assert!(a.header("upload-expires").is_some());
    }
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(started.elapsed())).await;
    let status = tus.head(&id).await.status;
    assert!(status == 410 || status == 404, "{status}");
    let status = tus.patch(&id, 5, b"67890").await.status;
    assert!(status == 410 || status == 404, "{status}");
}

both!(s3_key_creation, s3_key_creation);
/// An S3 key signs the creation with SigV4 and names a bucket of its own and a key; the upload
/// URL it gets back (with its `sig`) is the capability for the PATCHes.
async fn s3_key_creation(store: Store) {
    use crate::harness::{ACCESS_KEY, SECRET_KEY};
    use crate::legacy::BOB_SECRET;
    let gw = gateway(store).await;
    let s3 = gw.bucket("tus-s3").await;
    let data = random_bytes(2 * MIB + 7);
    let meta = format!(
        "bucket {},key {},filetype {}",
        b64(b"tus-s3"),
        b64(b"dir/obj.bin"),
        b64(b"image/png")
    );
    let len = data.len().to_string();
    let create = |access: &str, secret: &str| {
        gw.raw("POST", "/_tus/")
            .header("tus-resumable", "1.0.0")
            .header("upload-length", &len)
            .header("upload-metadata", &meta)
            .keys(access, secret)
    };
    // Another key's bucket: 403, nothing made.
    assert_eq!(create(BOB, BOB_SECRET).send().await.status, 403);
    // A wrong signature: 403.
    assert_eq!(create(ACCESS_KEY, "wrong-secret").send().await.status, 403);
    // An Upload-Metadata the signature does not cover: 403.
    let (addr, head, _) = gw
        .raw("POST", "/_tus/")
        .header("tus-resumable", "1.0.0")
        .header("upload-length", &len)
        .keys(ACCESS_KEY, SECRET_KEY)
        .into_wire();
    let head = String::from_utf8(head).unwrap().replacen(
        "\r\n",
        &format!("\r\nupload-metadata: {meta}\r\n"),
        1,
    );
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    sock.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("upload-metadata"), "{answer}");

    let made = create(ACCESS_KEY, SECRET_KEY).send().await;
    assert_eq!(made.status, 201);
    let loc = made.header("location").unwrap().to_owned();
    assert!(loc.contains("?sig="), "{loc}");
    // The URL alone authorizes; a changed sig is an unknown upload.
    let http = reqwest::Client::new();
    let patch = |url: String, offset: usize, body: Vec<u8>| {
        http.patch(url)
            .header("tus-resumable", "1.0.0")
            .header("content-type", OCTETS)
            .header("upload-offset", offset.to_string())
            .body(body)
            .send()
    };
    // The last hex digit changed (to another one, whatever it was).
    let last = if loc.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &loc[..loc.len() - 1]);
    let r = patch(forged, 0, data[..10].to_vec()).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = patch(loc.clone(), 0, data[..MIB].to_vec()).await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = patch(loc.clone(), MIB, data[MIB..].to_vec()).await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get_bytes(&s3, "tus-s3", "dir/obj.bin").await, data);
    let obj = s3
        .head_object()
        .bucket("tus-s3")
        .key("dir/obj.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(obj.content_type(), Some("image/png"));
    assert!(obj.metadata().is_none_or(|m| !m.contains_key("bucket")));
}

both!(tus_path_is_configurable, tus_path_is_configurable);
/// `--tus-path` moves the endpoint; the default path is then the S3 API's again.
async fn tus_path_is_configurable(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| cfg.tus_path = "/_up/tus".into()).await;
    let tus = Tus::of(&gw, crate::harness::ACCESS_KEY);
    let meta = format!("filename {}", b64(b"moved.bin"));
    let a = tus
        .send(
            "POST",
            &format!("{}/_up/tus/", tus.base),
            &[("upload-length", "3"), ("upload-metadata", &meta)],
            Vec::new(),
        )
        .await;
    assert_eq!(a.status, 201);
    let loc = a.header("location").unwrap().to_owned();
    assert!(loc.starts_with(&format!("{}/_up/tus/", tus.base)), "{loc}");
    let id = loc.rsplit('/').next().unwrap();
    let a = tus
        .send(
            "PATCH",
            &loc,
            &[("content-type", OCTETS), ("upload-offset", "0")],
            b"abc".to_vec(),
        )
        .await;
    assert_eq!(a.status, 204);
    // The old path is not tus any more (the S3 API answers it, and refuses it).
    let a = tus.head(id).await;
    assert_ne!(a.status, 200);
    assert!(a.header("tus-resumable").is_none());
    let key = format!("{}/moved.bin", crate::harness::ACCESS_KEY);
    assert_eq!(get_bytes(&gw.client(), "files", &key).await, b"abc");
}

both!(limits_and_metrics, limits_and_metrics);
/// The per-user cap of open uploads holds for tus creations, and tus requests are counted per
/// operation in the metrics.
async fn limits_and_metrics(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| cfg.max_uploads_per_key = 2).await;
    let tus = Tus::of(&gw, crate::harness::ACCESS_KEY);
    let meta = format!("filename {}", b64(b"capped.bin"));
    let url = format!("{}/_tus/", tus.base);
    let headers = [("upload-length", "5"), ("upload-metadata", meta.as_str())];
    let create = || tus.send("POST", &url, &headers, Vec::new());
    assert_eq!(create().await.status, 201);
    let second = create().await;
    assert_eq!(second.status, 201);
    assert_eq!(
        create().await.status,
        403,
        "a third open upload is over the cap"
    );
    // Finishing one frees its place.
    let id = second
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(tus.patch(&id, 0, b"12345").await.status, 204);
    assert_eq!(create().await.status, 201);
    assert_eq!(tus.head(&id).await.status, 200);

    let want = [
        "mpgw_requests_total{op=\"TusCreate\",status=\"201\"} 3",
        "mpgw_requests_total{op=\"TusCreate\",status=\"403\"} 1",
        "mpgw_requests_total{op=\"TusPatch\",status=\"204\"} 1",
        "mpgw_requests_total{op=\"TusHead\",status=\"200\"} 1",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = crate::harness::operator_get(&format!("{}/metrics", gw.endpoint()))
            .await
            .text()
            .await
            .unwrap();
        if want.iter().all(|w| text.contains(w)) || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for w in want {
        assert!(text.contains(w), "{w} missing from:\n{text}");
    }
}
