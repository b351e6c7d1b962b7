//! The design note's `/file/mpupload/*` API and the user file endpoints, end to end, against
//! both state stores: chunked upload in any order, resume after re-init, instant upload with its
//! proof of possession, the user file table, downloads with Range and through signed links,
//! generated tokens, and every error reply. (Attacks on these are in `hostile::legacy`.)

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::harness::{
    ACCESS_KEY, MIB, SECRET_KEY, Store, TestGateway, both, get_bytes, md5_hex, random_bytes,
};

pub(crate) const CHUNK: usize = 5 * MIB;
pub(crate) const BOB: &str = "bob";
pub(crate) const BOB_SECRET: &str = "bob-s3-secret-key";

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A gateway with two S3 keys, ACCESS_KEY and BOB: the default legacy users, each with a token
/// the gateway generated.
pub(crate) async fn gateway(store: Store) -> TestGateway {
    TestGateway::start_with(store, |cfg| {
        cfg.access_keys.push(BOB.into());
        cfg.secret_keys.push(BOB_SECRET.into());
    })
    .await
}

pub(crate) struct Client {
    base: String,
    pub(crate) user: String,
    token: String,
    http: reqwest::Client,
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) code: i64,
    pub(crate) data: Value,
}

impl Client {
    /// Default user `user` (an access key) with the token the gateway generated for it.
    pub(crate) fn of(gw: &TestGateway, user: &str) -> Self {
        Self::new(gw, user, &gw.legacy_token(user))
    }

    pub(crate) fn new(gw: &TestGateway, user: &str, token: &str) -> Self {
        Self {
            base: gw.endpoint(),
            user: user.into(),
            token: token.into(),
            http: reqwest::Client::new(),
        }
    }

    pub(crate) async fn post(&self, endpoint: &str, fields: &[(&str, String)]) -> Reply {
        let mut all = vec![
            ("username", self.user.clone()),
            ("token", self.token.clone()),
        ];
        all.extend(fields.iter().cloned());
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(all)
            .finish();
        let resp = self
            .http
            .post(format!("{}/file/mpupload/{endpoint}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        reply(resp).await
    }

    /// uppart as multipart/form-data, fields first and the chunk in `file`.
    pub(crate) async fn uppart(
        &self,
        id: &str,
        index: usize,
        chunk: &[u8],
        extra: &[(&str, String)],
    ) -> Reply {
        let boundary = "mpgwtestboundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        let mut fields = vec![
            ("username", self.user.clone()),
            ("token", self.token.clone()),
            ("uploadid", id.to_owned()),
            ("index", index.to_string()),
        ];
        fields.extend(extra.iter().cloned());
        for (k, v) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(chunk);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let resp = self
            .http
            .post(format!("{}/file/mpupload/uppart", self.base))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        reply(resp).await
    }

    pub(crate) async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        range: Option<&str>,
    ) -> reqwest::Response {
        let mut q = vec![("username", self.user.as_str())];
        q.extend_from_slice(query);
        let qs = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q)
            .finish();
        let mut req = self
            .http
            .get(format!("{}/file/{path}?{qs}", self.base))
            .bearer_auth(&self.token);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send().await.unwrap()
    }

    pub(crate) async fn init(&self, data: &[u8], name: &str) -> Reply {
        let r = self
            .post(
                "init",
                &[
                    ("filehash", sha256_hex(data)),
                    ("filesize", data.len().to_string()),
                    ("filename", name.into()),
                ],
            )
            .await;
        assert_eq!((r.status, r.code), (200, 0), "init: {r:?}");
        r
    }

    pub(crate) async fn complete(&self, id: &str, data: &[u8], name: &str) -> Reply {
        self.post(
            "complete",
            &[
                ("uploadid", id.into()),
                ("filehash", sha256_hex(data)),
                ("filesize", data.len().to_string()),
                ("filename", name.into()),
            ],
        )
        .await
    }

    /// Answers init's challenge with the proof over `data`.
    pub(crate) async fn prove(&self, init: &Reply, data: &[u8]) -> Reply {
        let c = &init.data["Challenge"];
        let nonce = c["Nonce"].as_str().expect("a challenge").to_owned();
        self.post(
            "instant",
            &[
                (
                    "uploadid",
                    init.data["UploadID"].as_str().unwrap().to_owned(),
                ),
                ("proof", proof(&nonce, c, data)),
                ("nonce", nonce),
            ],
        )
        .await
    }

    /// init + its proof + every chunk (last first, to show any order works) + complete.
    pub(crate) async fn upload(&self, data: &[u8], name: &str) -> String {
        let mut init = self.init(data, name).await;
        if init.data["Challenge"].is_object() {
            init = self.prove(&init, data).await;
            assert_eq!((init.status, init.code), (200, 0), "instant: {init:?}");
        }
        if init.data["Instant"] == true {
            return String::new();
        }
        let id = init.data["UploadID"].as_str().unwrap().to_owned();
        for (i, chunk) in data.chunks(CHUNK).enumerate().rev() {
            let r = self.uppart(&id, i + 1, chunk, &[]).await;
            assert_eq!((r.status, r.code), (200, 0), "uppart {}: {r:?}", i + 1);
        }
        let r = self.complete(&id, data, name).await;
        assert_eq!((r.status, r.code), (200, 0), "complete: {r:?}");
        id
    }
}

/// The proof for challenge `c` (its `Ranges`) over `data`.
pub(crate) fn proof(nonce: &str, c: &Value, data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(nonce.as_bytes());
    for r in c["Ranges"].as_array().unwrap() {
        let o = r["Offset"].as_u64().unwrap() as usize;
        let l = r["Length"].as_u64().unwrap() as usize;
        h.update(&data[o..o + l]);
    }
    hex::encode(h.finalize())
}

pub(crate) async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).expect("JSON envelope");
    assert!(
        v.get("msg").is_some_and(Value::is_string),
        "envelope without msg: {v}"
    );
    Reply {
        status,
        code: v["code"].as_i64().unwrap(),
        data: v["data"].clone(),
    }
}

#[track_caller]
pub(crate) fn assert_refused(r: &Reply, status: u16, code: i64) {
    assert_eq!((r.status, r.code), (status, code), "unexpected reply {r:?}");
}

async fn chunked_upload_roundtrip(store: Store) {
    let gw = gateway(store).await;
    let alice = Client::of(&gw, ACCESS_KEY);
    let data = random_bytes(2 * CHUNK + 12_345);
    let init = alice.init(&data, "report.bin").await;
    assert_eq!(init.data["ChunkSize"], CHUNK);
    assert_eq!(init.data["ChunkCount"], 3);
    let id = init.data["UploadID"].as_str().unwrap().to_owned();
    // Chunks in parallel and out of order; the middle one with an MD5 and a SHA-256 chunk hash.
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let md5 = format!("md5:{}", md5_hex(chunks[1]));
    let extra = [("chunkhash", md5)];
    let (a, b) = tokio::join!(
        alice.uppart(&id, 3, chunks[2], &[]),
        alice.uppart(&id, 2, chunks[1], &extra)
    );
    assert_eq!((a.code, b.code), (0, 0), "{a:?} {b:?}");
    let status = alice.post("status", &[("uploadid", id.clone())]).await;
    assert_eq!(status.data["ChunksPresent"], serde_json::json!([2, 3]));
    assert_eq!(status.data["State"], "open");
    assert_eq!(status.data["BytesReceived"], (CHUNK + 12_345) as u64);
    // Complete refuses while a chunk is missing, and says which.
    let r = alice.complete(&id, &data, "report.bin").await;
    assert_refused(&r, 409, 10008);
    assert_eq!(r.data["missing"], serde_json::json!([1]));
    let r = alice
        .uppart(&id, 1, chunks[0], &[("chunkhash", sha256_hex(chunks[0]))])
        .await;
    assert_eq!(r.code, 0, "{r:?}");
    let done = alice.complete(&id, &data, "report.bin").await;
    assert_eq!(done.code, 0, "{done:?}");
    assert!(done.data["ETag"].as_str().unwrap().ends_with("-3"));

    // The user file table lists it; download whole and by range.
    let q = reply(alice.get("query", &[], None).await).await;
    let files = q.data["Files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["FileName"], "report.bin");
    assert_eq!(files[0]["FileSize"], data.len() as u64);
    assert_eq!(
        files[0]["FileHash"],
        format!("sha256:{}", sha256_hex(&data))
    );
    let hash = sha256_hex(&data);
    let whole = alice.get("download", &[("filehash", &hash)], None).await;
    assert_eq!(whole.status(), 200);
    assert!(whole.bytes().await.unwrap() == data, "download differs");
    let part = alice
        .get(
            "download",
            &[("filename", "report.bin")],
            Some("bytes=100-199"),
        )
        .await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), data[100..200]);
    let r = reply(
        alice
            .get("download", &[("filehash", &hash)], Some("bytes=999999999-"))
            .await,
    )
    .await;
    assert_refused(&r, 416, 10013);

    // The same file is an S3 object `<user>/<filename>` in the legacy bucket.
    let s3 = gw.client();
    assert!(get_bytes(&s3, "files", &format!("{ACCESS_KEY}/report.bin")).await == data);
    // The upload is gone once completed.
    assert_refused(&alice.post("status", &[("uploadid", id)]).await, 404, 10004);
}
both!(chunked_upload_roundtrip, chunked_upload_roundtrip);

async fn init_again_resumes(store: Store) {
    let gw = gateway(store).await;
    let alice = Client::of(&gw, ACCESS_KEY);
    let data = random_bytes(CHUNK + 7);
    let first = alice.init(&data, "big.iso").await;
    let id = first.data["UploadID"].as_str().unwrap().to_owned();
    assert_eq!(alice.uppart(&id, 1, &data[..CHUNK], &[]).await.code, 0);
    // "Crash", then the client starts over with init: it gets the same upload and what is there.
    let again = alice.init(&data, "big.iso").await;
    assert_eq!(again.data["UploadID"], id.as_str());
    assert_eq!(again.data["Resumed"], true);
    assert_eq!(again.data["ChunksPresent"], serde_json::json!([1]));
    assert_eq!(alice.uppart(&id, 2, &data[CHUNK..], &[]).await.code, 0);
    assert_eq!(alice.complete(&id, &data, "big.iso").await.code, 0);
    assert!(get_bytes(&gw.client(), "files", &format!("{ACCESS_KEY}/big.iso")).await == data);
}
both!(init_again_resumes, init_again_resumes);

async fn instant_upload_shares_one_copy(store: Store) {
    let gw = gateway(store).await;
    let alice = Client::of(&gw, ACCESS_KEY);
    let bob = Client::of(&gw, BOB);
    let data = random_bytes(CHUNK + 99);
    alice.upload(&data, "a.bin").await;
    // Bob holds the same content: init challenges him, his proof links Alice's stored copy.
    let init = bob.init(&data, "b.bin").await;
    assert_eq!(init.data["Instant"], false, "{init:?}");
    let ranges = init.data["Challenge"]["Ranges"].as_array().unwrap();
    assert!(!ranges.is_empty());
    for r in ranges {
        let end = r["Offset"].as_u64().unwrap() + r["Length"].as_u64().unwrap();
        assert!(end <= data.len() as u64, "{r}");
    }
    let done = bob.prove(&init, &data).await;
    assert_eq!((done.status, done.code), (200, 0), "{done:?}");
    assert_eq!(done.data["Instant"], true, "{done:?}");
    assert_eq!(done.data["FileName"], "b.bin");
    // The upload init started for him is gone.
    assert_refused(
        &bob.post(
            "status",
            &[("uploadid", init.data["UploadID"].as_str().unwrap().into())],
        )
        .await,
        404,
        10004,
    );
    let hash = sha256_hex(&data);
    let got = bob
        .get("download", &[("filehash", &hash)], None)
        .await
        .bytes()
        .await
        .unwrap();
    assert!(got == data);
    // One stored copy: every byte of both files lives in the same inodes.
    let mut inodes = HashSet::new();
    let mut bytes = 0;
    for dir in std::fs::read_dir(gw.data_dir().join("blobs")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let m = f.unwrap().metadata().unwrap();
            if inodes.insert((m.dev(), m.ino())) {
                bytes += m.len();
            }
        }
    }
    assert_eq!(bytes, data.len() as u64, "content stored more than once");
    // Deleting Alice's entry keeps Bob's.
    assert_eq!(
        alice.post_delete(&[("filehash", hash.clone())]).await.code,
        0
    );
    assert_refused(
        &reply(alice.get("download", &[("filehash", &hash)], None).await).await,
        404,
        10010,
    );
    let got = bob
        .get("download", &[("filename", "b.bin")], None)
        .await
        .bytes()
        .await
        .unwrap();
    assert!(got == data, "bob's file lost after alice deleted hers");
    // Each user sees only their own files.
    let q = reply(bob.get("query", &[], None).await).await;
    assert_eq!(q.data["Files"].as_array().unwrap().len(), 1);
    let q = reply(alice.get("query", &[], None).await).await;
    assert!(q.data["Files"].as_array().unwrap().is_empty());
}
both!(
    instant_upload_shares_one_copy,
    instant_upload_shares_one_copy
);

impl Client {
    /// `/file/delete` (not under mpupload/), the token in the form body.
    pub(crate) async fn post_delete(&self, fields: &[(&str, String)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("username", self.user.as_str()),
                ("token", self.token.as_str()),
            ])
            .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        reply(
            self.http
                .post(format!("{}/file/delete", self.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// `/file/link`: a signed download link (path and query).
    pub(crate) async fn link(&self, fields: &[(&str, String)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", &self.user)
            .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        reply(
            self.http
                .post(format!("{}/file/link", self.base))
                .bearer_auth(&self.token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

async fn bad_input_gets_clear_errors(store: Store) {
    let gw = gateway(store).await;
    let alice = Client::of(&gw, ACCESS_KEY);
    let bob = Client::of(&gw, BOB);
    let data = random_bytes(CHUNK + 10);
    let id = alice.init(&data, "x.bin").await.data["UploadID"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_refused(
        &Client::new(&gw, ACCESS_KEY, "wrong")
            .post("status", &[("uploadid", id.clone())])
            .await,
        401,
        10003,
    );
    assert_refused(
        &Client::new(&gw, "nobody", "x")
            .post("status", &[("uploadid", id.clone())])
            .await,
        401,
        10003,
    );
    assert_refused(
        &alice
            .post(
                "init",
                &[("filesize", "1".into()), ("filename", "f".into())],
            )
            .await,
        400,
        10001,
    );
    assert_refused(
        &alice
            .post(
                "init",
                &[
                    ("filehash", "xyz".into()),
                    ("filesize", "1".into()),
                    ("filename", "f".into()),
                ],
            )
            .await,
        400,
        10002,
    );
    assert_refused(
        &alice
            .post(
                "status",
                &[("uploadid", "0123456789abcdef0123456789abcdef".into())],
            )
            .await,
        404,
        10004,
    );
    assert_refused(
        &alice.post("status", &[("uploadid", "../etc".into())]).await,
        404,
        10004,
    );
    // Another user's upload id is as unknown as a missing one.
    assert_refused(
        &bob.post("status", &[("uploadid", id.clone())]).await,
        404,
        10004,
    );
    assert_refused(&bob.uppart(&id, 1, &data[..CHUNK], &[]).await, 404, 10004);
    assert_refused(
        &bob.post("cancel", &[("uploadid", id.clone())]).await,
        404,
        10004,
    );
    // Index outside 1..=ChunkCount, wrong sizes, wrong chunk hash.
    for bad in [0, 3] {
        assert_refused(&alice.uppart(&id, bad, &data[..10], &[]).await, 400, 10005);
    }
    assert_refused(
        &alice.uppart(&id, 1, &data[..CHUNK - 1], &[]).await,
        400,
        10006,
    );
    assert_refused(
        &alice.uppart(&id, 2, &data[CHUNK - 1..], &[]).await,
        400,
        10006,
    );
    let wrong = format!("md5:{}", "0".repeat(32));
    assert_refused(
        &alice
            .uppart(&id, 1, &data[..CHUNK], &[("chunkhash", wrong)])
            .await,
        400,
        10007,
    );
    let status = alice.post("status", &[("uploadid", id.clone())]).await;
    assert_eq!(
        status.data["ChunksPresent"],
        serde_json::json!([]),
        "a refused chunk was kept"
    );
    // A file whose bytes do not match filehash is never published.
    let other = random_bytes(data.len());
    assert_eq!(alice.uppart(&id, 1, &other[..CHUNK], &[]).await.code, 0);
    assert_eq!(alice.uppart(&id, 2, &other[CHUNK..], &[]).await.code, 0);
    assert_refused(&alice.complete(&id, &data, "x.bin").await, 400, 10007);
    let q = reply(alice.get("query", &[], None).await).await;
    assert!(
        q.data["Files"].as_array().unwrap().is_empty(),
        "mismatching file published"
    );
    // Still resumable: fix chunk 1 and 2, then complete.
    assert_eq!(alice.uppart(&id, 1, &data[..CHUNK], &[]).await.code, 0);
    assert_eq!(alice.uppart(&id, 2, &data[CHUNK..], &[]).await.code, 0);
    assert_eq!(alice.complete(&id, &data, "x.bin").await.code, 0);
    // cancel: the upload and its chunks go away.
    let id2 = alice.init(&random_bytes(100), "y.bin").await.data["UploadID"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        alice
            .post("cancel", &[("uploadid", id2.clone())])
            .await
            .code,
        0
    );
    assert_refused(
        &alice.post("status", &[("uploadid", id2)]).await,
        404,
        10004,
    );
    // Unknown endpoints and methods.
    let r = reply(gw_post(&gw, "/file/mpupload/nope").await).await;
    assert_refused(&r, 404, 10011);
}
both!(bad_input_gets_clear_errors, bad_input_gets_clear_errors);

async fn gw_post(gw: &TestGateway, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", gw.endpoint()))
        .send()
        .await
        .unwrap()
}

/// Below the free-space reserve a chunk is refused (507, code 10018) without being stored, and
/// the upload's state is unchanged.
async fn chunk_below_reserve(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| {
        cfg.access_keys.push(BOB.into());
        cfg.secret_keys.push(BOB_SECRET.into());
        cfg.min_free_space = 1000 << 40;
    })
    .await;
    let bob = Client::of(&gw, BOB);
    let data = random_bytes(1000);
    let init = bob.init(&data, "full.bin").await;
    let id = init.data["UploadID"].as_str().unwrap().to_owned();
    let r = bob.uppart(&id, 1, &data, &[]).await;
    assert_eq!((r.status, r.code), (507, 10018), "{r:?}");
    let r = bob.post("status", &[("uploadid", id.clone())]).await;
    assert_eq!((r.status, r.code), (200, 0), "{r:?}");
    assert_eq!(r.data["ChunksPresent"], serde_json::json!([]), "{r:?}");
    assert_eq!(r.data["BytesReceived"], 0, "{r:?}");
}
both!(chunk_below_reserve_is_refused, chunk_below_reserve);

/// Tokens: generated per user and kept (never the S3 secret), in a header or the form body;
/// downloads by plain URL go through signed links that expire, work on every gateway of the
/// store, and bind their user and file.
async fn tokens_and_signed_links(store: Store) {
    let mut gw = gateway(store).await;
    let token = gw.legacy_token(ACCESS_KEY);
    assert_ne!(token, SECRET_KEY);
    let alice = Client::of(&gw, ACCESS_KEY);
    assert_refused(
        &Client::new(&gw, ACCESS_KEY, SECRET_KEY)
            .post("status", &[("uploadid", "0".repeat(32))])
            .await,
        401,
        10003,
    );
    let data = random_bytes(300_000);
    alice.upload(&data, "dir/doc.bin").await;

    let l = alice
        .link(&[("filename", "dir/doc.bin".into()), ("expires", "60".into())])
        .await;
    assert_eq!((l.status, l.code), (200, 0), "{l:?}");
    let url = l.data["URL"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("/file/download?") && url.contains("signature=") && !url.contains("token"),
        "{url}"
    );
    assert_eq!(l.data["FileSize"], data.len() as u64);
    let http = reqwest::Client::new();
    let get = |base: String, url: String, range: Option<&'static str>| {
        let http = http.clone();
        async move {
            let mut req = http.get(format!("{base}{url}"));
            if let Some(r) = range {
                req = req.header("range", r);
            }
            req.send().await.unwrap()
        }
    };
    let whole = get(gw.endpoint(), url.clone(), None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(
        whole.headers()["content-disposition"],
        "attachment; filename=\"doc.bin\""
    );
    assert!(whole.bytes().await.unwrap() == data);
    let part = get(gw.endpoint(), url.clone(), Some("bytes=10-19")).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), data[10..20]);
    // By hash too: the link names the file it resolved to.
    let by_hash = alice.link(&[("filehash", sha256_hex(&data))]).await;
    assert!(
        by_hash.data["URL"]
            .as_str()
            .unwrap()
            .contains("filename=dir%2Fdoc.bin")
    );
    // Other users' files and missing files get no link; lifetimes are bounded.
    let bob = Client::of(&gw, BOB);
    assert_refused(
        &bob.link(&[("filename", "dir/doc.bin".into())]).await,
        404,
        10010,
    );
    assert_refused(
        &alice
            .link(&[
                ("filename", "dir/doc.bin".into()),
                ("expires", "86400".into()),
            ])
            .await,
        400,
        10002,
    );

    // A link expires.
    let short = Client::of(&gw, ACCESS_KEY)
        .link(&[("filename", "dir/doc.bin".into()), ("expires", "1".into())])
        .await;
    let short_url = short.data["URL"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = reply(get(gw.endpoint(), short_url, None).await).await;
    assert_refused(&expired, 403, 10020);

    // Every gateway of the store accepts the link: the same one restarted (embedded), a second
    // one on the same Redis prefix and data dir (redis).
    match store {
        Store::Embedded => {
            gw.restart().await;
            let again = get(gw.endpoint(), url.clone(), None).await;
            assert_eq!(again.status(), 200);
        }
        Store::Redis => {
            let (prefix, dir) = (gw.cfg.redis_prefix.clone(), gw.data_dir().to_owned());
            // (Dropping it deletes the prefix's keys: this comes last.)
            let other = TestGateway::start_with(store, |cfg| {
                cfg.redis_prefix = prefix;
                cfg.data_dir = dir;
                cfg.access_keys.push(BOB.into());
                cfg.secret_keys.push(BOB_SECRET.into());
            })
            .await;
            let there = get(other.endpoint(), url.clone(), None).await;
            assert_eq!(there.status(), 200);
            assert!(there.bytes().await.unwrap() == data);
        }
    }
}
both!(tokens_and_signed_links, tokens_and_signed_links);
