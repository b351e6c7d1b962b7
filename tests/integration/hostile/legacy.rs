//! The `/file/*` API's hostile cases (issue 12, findings 2, 4, 6, 9, 11, and what a review of
//! the same API found beside them): each is answered with its status and legacy code, and every
//! user's stored files (names, sizes, hashes, bytes) and the open upload stay as they were.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::*;
use crate::legacy::{BOB, CHUNK, Client, Reply, assert_refused, proof, reply, sha256_hex};

const MALLORY: &str = "mallory";

/// Each user's files as (name, size, hash, MD5 of the bytes downloaded), and the open upload's
/// chunks.
async fn snapshot(users: &[&Client], open: (&Client, &str)) -> String {
    let mut out = String::new();
    for c in users {
        let q = reply(c.get("query", &[], None).await).await;
        assert_eq!(q.code, 0, "{q:?}");
        for f in q.data["Files"].as_array().unwrap() {
            let name = f["FileName"].as_str().unwrap();
            let bytes = c
                .get("download", &[("filename", name)], None)
                .await
                .bytes()
                .await
                .unwrap();
            out.push_str(&format!(
                "{} {name} {} {} {}\n",
                c.user,
                f["FileSize"],
                f["FileHash"],
                md5_hex(&bytes)
            ));
        }
    }
    let s = open.0.post("status", &[("uploadid", open.1.into())]).await;
    out.push_str(&format!(
        "open {} {}\n",
        s.data["ChunksPresent"], s.data["BytesReceived"]
    ));
    out
}

fn md5_hash(data: &[u8]) -> String {
    format!("md5:{}", md5_hex(data))
}

/// init with explicit fields (another user's hash, a wrong size).
async fn init_with(c: &Client, hash: &str, size: usize, name: &str) -> Reply {
    c.post(
        "init",
        &[
            ("filehash", hash.into()),
            ("filesize", size.to_string()),
            ("filename", name.into()),
        ],
    )
    .await
}

async fn instant(c: &Client, id: &str, nonce: &str, proof: &str) -> (Reply, Duration) {
    let t = Instant::now();
    let r = c
        .post(
            "instant",
            &[
                ("uploadid", id.into()),
                ("nonce", nonce.into()),
                ("proof", proof.into()),
            ],
        )
        .await;
    (r, t.elapsed())
}

fn field_names(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// A GET of `path_and_query` with no credentials but what the URL carries.
async fn anonymous_get(gw: &TestGateway, path_and_query: &str, method: reqwest::Method) -> Reply {
    let resp = reqwest::Client::new()
        .request(method.clone(), format!("{}{path_and_query}", gw.endpoint()))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status == 200 {
        return Reply {
            status,
            code: 0,
            data: Value::Null,
        };
    }
    if method == reqwest::Method::HEAD {
        return Reply {
            status,
            code: -1,
            data: Value::Null,
        };
    }
    reply(resp).await
}

/// Three users; Alice stores X (by SHA-256) and M (by MD5) and has an open upload of Y with
/// one chunk; `before` is the snapshot every case must leave as it is.
struct Fixture {
    gw: TestGateway,
    alice: Client,
    bob: Client,
    mallory: Client,
    x: Vec<u8>,
    m: Vec<u8>,
    y: Vec<u8>,
    open_id: String,
    before: String,
}

impl Fixture {
    async fn unchanged(&self, what: &str) {
        let users = [&self.alice, &self.bob, &self.mallory];
        let now = snapshot(&users, (&self.alice, &self.open_id)).await;
        assert_eq!(self.before, now, "stored files changed by: {what}");
    }
}

async fn setup(store: Store) -> Fixture {
    let gw = TestGateway::start_with(store, |cfg| {
        for (a, s) in [(BOB, "bob-s3-secret-key"), (MALLORY, "mallory-s3-secret")] {
            cfg.access_keys.push(a.into());
            cfg.secret_keys.push(s.into());
        }
    })
    .await;
    let alice = Client::of(&gw, ACCESS_KEY);
    let bob = Client::of(&gw, BOB);
    let mallory = Client::of(&gw, MALLORY);

    // Alice's files: X by SHA-256, M by MD5; an open upload of Y with its first chunk.
    let x = random_bytes(CHUNK + 1000);
    alice.upload(&x, "x.bin").await;
    let m = random_bytes(3000);
    let init = init_with(&alice, &md5_hash(&m), m.len(), "m.bin").await;
    assert!(init.data.get("Challenge").is_none(), "{init:?}");
    let mid = init.data["UploadID"].as_str().unwrap().to_owned();
    assert_eq!(alice.uppart(&mid, 1, &m, &[]).await.code, 0);
    let done = alice
        .post(
            "complete",
            &[
                ("uploadid", mid.clone()),
                ("filehash", md5_hash(&m)),
                ("filesize", m.len().to_string()),
            ],
        )
        .await;
    assert_eq!(done.code, 0, "{done:?}");
    let y = random_bytes(CHUNK + 10);
    let open = alice.init(&y, "y.bin").await;
    let open_id = open.data["UploadID"].as_str().unwrap().to_owned();
    assert_eq!(alice.uppart(&open_id, 1, &y[..CHUNK], &[]).await.code, 0);
    let users = [&alice, &bob, &mallory];
    let before = snapshot(&users, (&alice, &open_id)).await;
    Fixture {
        gw,
        alice,
        bob,
        mallory,
        x,
        m,
        y,
        open_id,
        before,
    }
}

async fn hash_and_size_prove_nothing(store: Store) {
    let f = setup(store).await;
    let Fixture {
        mallory,
        x,
        open_id,
        ..
    } = &f;
    // ---- finding 2: a hash and a size prove nothing.
    // init for Alice's content answers like init for content nobody has: same fields, a
    // challenge of the same shape, nothing stored for Mallory.
    let known = init_with(mallory, &sha256_hex(x), x.len(), "stolen.bin").await;
    let unknown = init_with(
        mallory,
        &sha256_hex(&random_bytes(x.len())),
        x.len(),
        "nothing.bin",
    )
    .await;
    assert_eq!((known.status, known.code), (200, 0), "{known:?}");
    assert_eq!(known.data["Instant"], false, "finding 2: {known:?}");
    assert_eq!(field_names(&known.data), field_names(&unknown.data));
    assert_eq!(
        field_names(&known.data["Challenge"]),
        field_names(&unknown.data["Challenge"])
    );
    assert_eq!(
        known.data["Challenge"]["Ranges"].as_array().unwrap().len(),
        unknown.data["Challenge"]["Ranges"]
            .as_array()
            .unwrap()
            .len()
    );
    let id = known.data["UploadID"].as_str().unwrap().to_owned();
    let nonce = known.data["Challenge"]["Nonce"]
        .as_str()
        .unwrap()
        .to_owned();
    // Proofs without the content: made up, over other bytes, and a replay after one was spent.
    let wrong_bytes = proof(&nonce, &known.data["Challenge"], &random_bytes(x.len()));
    for guess in ["0".repeat(64), wrong_bytes, sha256_hex(nonce.as_bytes())] {
        let (r, took) = instant(mallory, &id, &nonce, &guess).await;
        assert_eq!((r.status, r.code), (200, 0), "{r:?}");
        assert_eq!(r.data["Instant"], false, "finding 2: {r:?}");
        assert_eq!(r.data["UploadID"], id.as_str());
        assert!(took >= Duration::from_millis(100), "answered in {took:?}");
    }
    // The answer for content nobody has is the same, in the same time class.
    let uid = unknown.data["UploadID"].as_str().unwrap();
    let un = unknown.data["Challenge"]["Nonce"].as_str().unwrap();
    let (r, took) = instant(mallory, uid, un, &"0".repeat(64)).await;
    assert_eq!(
        field_names(&r.data),
        field_names(&instant(mallory, &id, "x", "y").await.0.data)
    );
    assert!(took >= Duration::from_millis(100), "answered in {took:?}");
    // Another user's upload is not the caller's.
    assert_refused(&instant(mallory, open_id, &nonce, "0").await.0, 404, 10004);
    f.unchanged("init and proofs with another user's hash")
        .await;
}
both!(hash_and_size_prove_nothing, hash_and_size_prove_nothing);

async fn md5_never_deduplicates(store: Store) {
    let f = setup(store).await;
    let Fixture {
        bob, mallory, m, ..
    } = &f;
    // ---- finding 6: an MD5 (or SHA-1) filehash never deduplicates.
    let r = init_with(mallory, &md5_hash(m), m.len(), "m.bin").await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.data["Instant"], false, "finding 6: {r:?}");
    assert!(r.data.get("Challenge").is_none(), "finding 6: {r:?}");
    // Alice's MD5-named file is not in the table under its SHA-256 either: holding the bytes
    // links nothing; they are uploaded.
    let r = init_with(bob, &sha256_hex(m), m.len(), "m.bin").await;
    let (p, _) = instant(
        bob,
        r.data["UploadID"].as_str().unwrap(),
        r.data["Challenge"]["Nonce"].as_str().unwrap(),
        &proof(
            r.data["Challenge"]["Nonce"].as_str().unwrap(),
            &r.data["Challenge"],
            m,
        ),
    )
    .await;
    assert_eq!(p.data["Instant"], false, "finding 6: {p:?}");
    f.unchanged("MD5 filehashes").await;
}
both!(md5_never_deduplicates, md5_never_deduplicates);

async fn fields_capped_before_the_token(store: Store) {
    let f = setup(store).await;
    let Fixture {
        gw,
        alice,
        y,
        open_id,
        ..
    } = &f;
    // ---- finding 4: field values are capped before the token is checked; the answer comes
    // while most of the announced body is still unsent.
    let (status, body) = oversized_form(gw).await;
    assert_eq!(status, 400, "finding 4: {body}");
    assert!(body.contains("\"code\":10014"), "finding 4: {body}");
    f.unchanged("an oversized form").await;
    // Too many fields, in an uppart before its chunk.
    let many: Vec<(&str, String)> = (0..100).map(|_| ("pad", "x".into())).collect();
    let r = alice.uppart(open_id, 2, &y[CHUNK..], &many).await;
    assert_refused(&r, 400, 10014);
    f.unchanged("an uppart with too many fields").await;
}
both!(
    fields_capped_before_the_token,
    fields_capped_before_the_token
);

async fn tokens_never_in_urls(store: Store) {
    let f = setup(store).await;
    let Fixture { gw, alice, .. } = &f;
    // ---- finding 11: tokens only in a header or the body, never the S3 secret.
    let token = gw.legacy_token(ACCESS_KEY);
    for path in [
        format!("/file/query?username={ACCESS_KEY}&token={token}"),
        format!("/file/download?username={ACCESS_KEY}&filename=x.bin&token={token}"),
    ] {
        let r = anonymous_get(gw, &path, reqwest::Method::GET).await;
        assert_refused(&r, 401, 10003);
    }
    let r = reply(
        reqwest::Client::new()
            .post(format!(
                "{}/file/delete?username={ACCESS_KEY}&token={token}&filename=x.bin",
                gw.endpoint()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&r, 401, 10003);
    assert_refused(
        &Client::new(gw, ACCESS_KEY, SECRET_KEY)
            .post_delete(&[("filename", "x.bin".into())])
            .await,
        401,
        10003,
    );
    // Signed links bind their user, file, expiry and method.
    let l = alice.link(&[("filename", "x.bin".into())]).await;
    let url = l.data["URL"].as_str().unwrap().to_owned();
    assert_eq!(
        anonymous_get(gw, &url, reqwest::Method::GET).await.status,
        200
    );
    let expires = l.data["Expires"].as_u64().unwrap();
    for tampered in [
        url.replace("filename=x.bin", "filename=y.bin"),
        url.replace(&format!("username={ACCESS_KEY}"), "username=bob"),
        url.replace(
            &format!("expires={expires}"),
            &format!("expires={}", expires + 3600),
        ),
        url.replace("signature=", "signature=0"),
    ] {
        let r = anonymous_get(gw, &tampered, reqwest::Method::GET).await;
        assert_refused(&r, 403, 10020);
    }
    // Without its signature a link is a request without credentials.
    let unsigned = url.split("&signature=").next().unwrap().to_owned() + "&signature=";
    let r = anonymous_get(gw, &unsigned, reqwest::Method::GET).await;
    assert_refused(&r, 401, 10003);
    let head = anonymous_get(gw, &url, reqwest::Method::HEAD).await;
    assert_eq!(head.status, 403, "a GET link used for HEAD");
    f.unchanged("tokens in URLs and tampered links").await;
}
both!(tokens_never_in_urls, tokens_never_in_urls);

async fn challenges_are_bounded(store: Store) {
    let f = setup(store).await;
    let Fixture { bob, x, .. } = &f;
    // ---- beyond the list: challenges are bounded per user (the oldest go first).
    let first = init_with(bob, &sha256_hex(x), x.len(), "later.bin").await;
    for i in 0..16 {
        let r = init_with(bob, &sha256_hex(&[i]), 1, &format!("f{i}")).await;
        assert_eq!(r.code, 0, "{r:?}");
    }
    let fc = &first.data["Challenge"];
    let fnonce = fc["Nonce"].as_str().unwrap();
    let (r, _) = instant(
        bob,
        first.data["UploadID"].as_str().unwrap(),
        fnonce,
        &proof(fnonce, fc, x),
    )
    .await;
    assert_eq!(
        r.data["Instant"], false,
        "an evicted challenge was honoured"
    );
    f.unchanged("challenge flood").await;
}
both!(challenges_are_bounded, challenges_are_bounded);

async fn wrong_size_init_keeps_the_entry(store: Store) {
    let f = setup(store).await;
    let Fixture {
        bob, mallory, x, ..
    } = &f;
    // ---- finding 9: a wrong-size init (and proof) keeps the file table's entry; a holder of
    // the content still gets it at once.
    let wrong = init_with(mallory, &sha256_hex(x), x.len() + 1, "x.bin").await;
    assert_eq!(wrong.code, 0, "{wrong:?}");
    let wc = &wrong.data["Challenge"];
    let wn = wc["Nonce"].as_str().unwrap();
    let (r, _) = instant(mallory, wrong.data["UploadID"].as_str().unwrap(), wn, "00").await;
    assert_eq!(r.data["Instant"], false);
    f.unchanged("a wrong-size init").await;
    let init = bob.init(x, "b.bin").await;
    let r = bob.prove(&init, x).await;
    assert_eq!(r.data["Instant"], true, "finding 9: {r:?}");
    // (Bob's earlier init of this content is the upload resumed: its name is the file's.)
    let name = r.data["FileName"].as_str().unwrap();
    let got = bob
        .get("download", &[("filename", name)], None)
        .await
        .bytes()
        .await
        .unwrap();
    assert!(got == x, "bob's instant copy differs");
}
both!(
    wrong_size_init_keeps_the_entry,
    wrong_size_init_keeps_the_entry
);

/// A multipart POST announcing 64 MiB of form fields, without a token: sends 1 MiB of small
/// fields and then waits. Returns the status and body the server answered with (within 10 s).
async fn oversized_form(gw: &TestGateway) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let head = format!(
        "POST /file/mpupload/init HTTP/1.1\r\nhost: {}\r\ncontent-type: multipart/form-data; boundary=BB\r\ncontent-length: {}\r\n\r\n",
        gw.addr(),
        64 << 20
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let field = format!(
        "--BB\r\ncontent-disposition: form-data; name=\"f\"\r\n\r\n{}\r\n",
        "v".repeat(64)
    );
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = field.repeat((16 << 10) / field.len());
        let mut sent = 0;
        while sent < 1 << 20 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        // Keep the connection open: the rest of the announced body never comes.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(wr);
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = rd.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    writer.abort();
    assert!(
        read.is_ok() && !answer.is_empty(),
        "no answer within 10 s while the body was still coming (got {:?})",
        String::from_utf8_lossy(&answer)
    );
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}
