//! S3 POST Object (browser uploads with a signed policy) end to end, on both state stores:
//! policies built and signed by hand (SigV4 with HMAC-SHA256 here, not the server's signer;
//! one SigV2 case), multipart forms sent with reqwest (or raw TCP where the answer must come
//! before the body is sent), each success read back through the SDK and each refusal checked
//! for AWS's status and code and for nothing stored (HeadObject 404, no file left in the data
//! dir). Also a 1 GiB form streamed from a generator with the process's RSS held flat, and the
//! CORS headers a browser needs to read the answer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{ChecksumMode, CorsConfiguration, CorsRule};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use hmac::{KeyInit as _, Mac as _};
use md5::{Digest as _, Md5};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{
    ACCESS_KEY, MIB, SECRET_KEY, Store, TestGateway, both, err, get_bytes, quoted_md5,
    random_bytes, sigv2_signature, xml_text,
};

const B: &str = "forms";
const OTHER: &str = "MPGWOTHERACCESSKEY";
const OTHER_SECRET: &str = "mpgw-other-secret-0123456789";
const BOUNDARY: &str = "----mpgwFormBoundary7MA4YWxkTrZu0gW";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `yyyymmddThhmmssZ` and `yyyymmdd` of now.
fn amz_now() -> (String, String) {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = time::OffsetDateTime::now_utc().format(&f).expect("date");
    let day = stamp[..8].to_owned();
    (stamp, day)
}

/// A policy document expiring `expires_in` seconds from now (negative: already expired).
fn policy_doc(expires_in: i64, conditions: &[Value]) -> String {
    let exp = time::OffsetDateTime::now_utc() + time::Duration::seconds(expires_in);
    let exp = exp
        .format(&time::format_description::well_known::Rfc3339)
        .expect("rfc3339");
    json!({ "expiration": exp, "conditions": conditions }).to_string()
}

/// A signed form's fields, in the order a browser sends them before the file.
#[derive(Clone)]
struct Signed {
    fields: Vec<(String, String)>,
}

impl Signed {
    /// SigV4: `fields` plus the policy (its `conditions` plus the algorithm, credential and
    /// date ones, which AWS requires to be covered too) and its signature by `access`/`secret`.
    fn v4(
        access: &str,
        secret: &str,
        expires_in: i64,
        conditions: &[Value],
        fields: &[(&str, &str)],
    ) -> Self {
        let (stamp, day) = amz_now();
        let credential = format!("{access}/{day}/us-east-1/s3/aws4_request");
        let mut all = conditions.to_vec();
        all.push(json!({ "x-amz-algorithm": "AWS4-HMAC-SHA256" }));
        all.push(json!({ "x-amz-credential": credential }));
        all.push(json!({ "x-amz-date": stamp }));
        let policy = b64(policy_doc(expires_in, &all).as_bytes());
        let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), day.as_bytes());
        for part in ["us-east-1", "s3", "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac_sha256(&key, policy.as_bytes()));
        let mut out: Vec<(String, String)> = fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        out.extend([
            ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
            ("x-amz-credential".into(), credential),
            ("x-amz-date".into(), stamp),
            ("Policy".into(), policy),
            ("X-Amz-Signature".into(), signature),
        ]);
        Self { fields: out }
    }

    /// SigV4 with the test keys, valid for five minutes.
    fn ok(conditions: &[Value], fields: &[(&str, &str)]) -> Self {
        Self::v4(ACCESS_KEY, SECRET_KEY, 300, conditions, fields)
    }

    /// SigV2: `AWSAccessKeyId`, `policy` and `signature` (base64 HMAC-SHA1 of the policy).
    fn v2(conditions: &[Value], fields: &[(&str, &str)]) -> Self {
        let policy = b64(policy_doc(300, conditions).as_bytes());
        let signature = sigv2_signature(SECRET_KEY, &policy);
        let mut out: Vec<(String, String)> = fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        out.extend([
            ("AWSAccessKeyId".into(), ACCESS_KEY.into()),
            ("policy".into(), policy),
            ("signature".into(), signature),
        ]);
        Self { fields: out }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    fn set(mut self, name: &str, value: &str) -> Self {
        for f in &mut self.fields {
            if f.0.eq_ignore_ascii_case(name) {
                f.1 = value.into();
            }
        }
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }
}

fn text_part(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .as_bytes(),
    );
}

/// The form's bytes up to the file's content (or the closing boundary without a file).
fn form_head(fields: &[(String, String)], filename: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        text_part(&mut out, n, v);
    }
    if let Some(f) = filename {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    out
}

/// The form's bytes after the file's content: `after` fields, then the closing boundary.
fn tail(after: &[(String, String)]) -> Vec<u8> {
    let mut out = b"\r\n".to_vec();
    for (n, v) in after {
        text_part(&mut out, n, v);
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn form(s: &Signed, filename: &str, file: &[u8]) -> Vec<u8> {
    form_after(s, filename, file, &[])
}

fn form_after(s: &Signed, filename: &str, file: &[u8], after: &[(String, String)]) -> Vec<u8> {
    let mut out = form_head(&s.fields, Some(filename));
    out.extend_from_slice(file);
    out.extend_from_slice(&tail(after));
    out
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, xml_text(&self.body, "Code").as_deref()),
            (status, Some(code)),
            "unexpected answer; body: {}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

async fn post_body(
    gw: &TestGateway,
    bucket: &str,
    body: reqwest::Body,
    origin: Option<&str>,
) -> Answer {
    let mut req = http()
        .post(format!("{}/{bucket}", gw.endpoint()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("answer body");
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(gw: &TestGateway, bucket: &str, body: Vec<u8>) -> Answer {
    post_body(gw, bucket, body.into(), None).await
}

/// Every file under the data dir's `blobs/`.
fn blob_files(data: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data.join("blobs"), &mut out);
    out.sort();
    out
}

/// A refused form left nothing: no object under `key`, and the data dir's files are those it
/// had before (no temp file, no orphan).
async fn nothing_stored(
    gw: &TestGateway,
    c: &aws_sdk_s3::Client,
    before: &[PathBuf],
    key: &str,
    what: &str,
) {
    {
        let head = c.head_object().bucket(B).key(key).send().await;
        assert_eq!(err(head).0, 404, "{what}: an object {key} was stored");
        // A staged file is removed as its writer is dropped, which may trail the answer.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = blob_files(gw.data_dir());
            if now == before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: files left in the data dir: {:?}",
                now.iter()
                    .filter(|p| !before.contains(p))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The usual conditions: this bucket, keys under `uploads/`.
fn base_conditions() -> Vec<Value> {
    vec![
        json!({ "bucket": B }),
        json!(["starts-with", "$key", "uploads/"]),
    ]
}

async fn post_success(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;

    // Default: 204, the ETag and Location headers, the bytes read back.
    let data = random_bytes(100_000);
    let s = Signed::ok(&base_conditions(), &[("key", "uploads/plain")]);
    let a = post(&gw, B, form(&s, "plain.bin", &data)).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.body.is_empty());
    assert_eq!(a.header("etag"), Some(quoted_md5(&data).as_str()));
    assert_eq!(
        a.header("location"),
        Some(format!("{}/{B}/uploads/plain", gw.endpoint()).as_str())
    );
    assert_eq!(get_bytes(&c, B, "uploads/plain").await, data);

    // success_action_status 200: an empty 200.
    let mut conds = base_conditions();
    conds.push(json!({ "success_action_status": "200" }));
    let s = Signed::ok(
        &conds,
        &[("key", "uploads/s200"), ("success_action_status", "200")],
    );
    let a = post(&gw, B, form(&s, "a", b"two hundred")).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.body.is_empty());
    assert_eq!(get_bytes(&c, B, "uploads/s200").await, b"two hundred");

    // success_action_status 201: the PostResponse document.
    let mut conds = base_conditions();
    conds.push(json!(["eq", "$success_action_status", "201"]));
    let s = Signed::ok(
        &conds,
        &[("key", "uploads/s201"), ("success_action_status", "201")],
    );
    let a = post(&gw, B, form(&s, "a", b"created")).await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert!(
        std::str::from_utf8(&a.body)
            .unwrap()
            .contains("<PostResponse"),
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(xml_text(&a.body, "Bucket").as_deref(), Some(B));
    assert_eq!(xml_text(&a.body, "Key").as_deref(), Some("uploads/s201"));
    let etag = quoted_md5(b"created");
    assert_eq!(
        xml_text(&a.body, "ETag").map(|e| e.replace("&quot;", "\"")),
        Some(etag.clone())
    );
    assert_eq!(
        xml_text(&a.body, "Location").as_deref(),
        Some(format!("{}/{B}/uploads/s201", gw.endpoint()).as_str())
    );
    assert_eq!(get_bytes(&c, B, "uploads/s201").await, b"created");

    // success_action_redirect: a 303 to it with bucket, key and etag in the query.
    let to = "http://app.example/done?x=1";
    let mut conds = base_conditions();
    conds.push(json!([
        "starts-with",
        "$success_action_redirect",
        "http://app.example/"
    ]));
    let s = Signed::ok(
        &conds,
        &[("key", "uploads/redir"), ("success_action_redirect", to)],
    );
    let a = post(&gw, B, form(&s, "a", b"redirected")).await;
    assert_eq!(a.status, 303, "{}", String::from_utf8_lossy(&a.body));
    let loc = reqwest::Url::parse(a.header("location").expect("Location")).expect("url");
    assert_eq!(loc.host_str(), Some("app.example"));
    assert_eq!(loc.path(), "/done");
    let q: Vec<(String, String)> = loc.query_pairs().into_owned().collect();
    assert_eq!(
        q,
        vec![
            ("x".into(), "1".into()),
            ("bucket".into(), B.into()),
            ("key".into(), "uploads/redir".into()),
            ("etag".into(), quoted_md5(b"redirected")),
        ]
    );
    assert_eq!(get_bytes(&c, B, "uploads/redir").await, b"redirected");

    // ${filename}: the file's name, without a client path.
    let s = Signed::ok(&base_conditions(), &[("key", "uploads/${filename}")]);
    let a = post(&gw, B, form(&s, "photo 1.jpg", b"jpeg")).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(get_bytes(&c, B, "uploads/photo 1.jpg").await, b"jpeg");
    let a = post(&gw, B, form(&s, r"C:\Users\me\scan.pdf", b"pdf")).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(get_bytes(&c, B, "uploads/scan.pdf").await, b"pdf");

    // Metadata, Content-Type (field names as a browser form spells them), Cache-Control,
    // Content-Disposition and a SHA-256 checksum: stored and read back.
    let data = b"{\"hello\": \"form\"}".to_vec();
    let sha = b64(&sha2::Sha256::digest(&data));
    let mut conds = base_conditions();
    conds.extend([
        json!(["starts-with", "$Content-Type", "application/"]),
        json!({ "x-amz-meta-user": "alice" }),
        json!(["starts-with", "$x-amz-meta-note", ""]),
        json!(["eq", "$Cache-Control", "max-age=60"]),
        json!({ "content-disposition": "attachment" }),
        json!({ "x-amz-checksum-sha256": sha }),
        json!(["content-length-range", 1, 1024]),
    ]);
    let s = Signed::ok(
        &conds,
        &[
            ("key", "uploads/meta.json"),
            ("Content-Type", "application/json"),
            ("X-Amz-Meta-User", "alice"),
            ("x-amz-meta-note", "any note"),
            ("Cache-Control", "max-age=60"),
            ("Content-Disposition", "attachment"),
            ("x-amz-checksum-sha256", &sha),
        ],
    );
    let a = post(&gw, B, form(&s, "meta.json", &data)).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("x-amz-checksum-sha256"), Some(sha.as_str()));
    let got = c
        .get_object()
        .bucket(B)
        .key("uploads/meta.json")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("get meta.json");
    assert_eq!(got.content_type(), Some("application/json"));
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(got.content_disposition(), Some("attachment"));
    assert_eq!(got.checksum_sha256(), Some(sha.as_str()));
    let meta = got.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("user").map(String::as_str), Some("alice"));
    assert_eq!(meta.get("note").map(String::as_str), Some("any note"));
    assert_eq!(crate::harness::read_all(got).await, data);

    // Fields after the file are ignored, even ones no condition covers.
    let s = Signed::ok(&base_conditions(), &[("key", "uploads/after")]);
    let after = vec![("x-amz-meta-late".to_owned(), "ignored".to_owned())];
    let a = post(&gw, B, form_after(&s, "a", b"after", &after)).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    let head = c
        .head_object()
        .bucket(B)
        .key("uploads/after")
        .send()
        .await
        .expect("head after");
    assert!(head.metadata().is_none_or(|m| !m.contains_key("late")));

    // SigV2: AWSAccessKeyId, policy, signature.
    let s = Signed::v2(&base_conditions(), &[("key", "uploads/v2")]);
    let a = post(&gw, B, form(&s, "a", b"signed with v2")).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(get_bytes(&c, B, "uploads/v2").await, b"signed with v2");
}
both!(success, post_success);

async fn post_refusals(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| {
        cfg.access_keys.push(OTHER.into());
        cfg.secret_keys.push(OTHER_SECRET.into());
    })
    .await;
    let c = gw.bucket(B).await;
    // A bucket of the other key, for "another key's bucket".
    gw.client_with(OTHER, OTHER_SECRET)
        .create_bucket()
        .bucket("theirs")
        .send()
        .await
        .expect("create theirs");
    let before = blob_files(gw.data_dir());
    let key = "uploads/refused";
    let fields = [("key", key)];
    let data = b"must not be stored".to_vec();

    let cases: Vec<(&str, Signed, u16, &str)> = vec![
        (
            "expired policy",
            Signed::v4(ACCESS_KEY, SECRET_KEY, -60, &base_conditions(), &fields),
            403,
            "AccessDenied",
        ),
        (
            "starts-with violated",
            Signed::ok(
                &[
                    json!({ "bucket": B }),
                    json!(["starts-with", "$key", "elsewhere/"]),
                ],
                &fields,
            ),
            403,
            "AccessDenied",
        ),
        (
            "eq violated",
            Signed::ok(
                &[
                    base_conditions(),
                    vec![json!(["eq", "$x-amz-meta-user", "alice"])],
                ]
                .concat(),
                &[("key", key), ("x-amz-meta-user", "mallory")],
            ),
            403,
            "AccessDenied",
        ),
        (
            "field no condition covers",
            Signed::ok(&base_conditions(), &fields).with("x-amz-meta-extra", "sneaked in"),
            403,
            "AccessDenied",
        ),
        (
            "wrong bucket condition",
            Signed::ok(
                &[
                    json!({ "bucket": "another" }),
                    json!(["starts-with", "$key", ""]),
                ],
                &fields,
            ),
            403,
            "AccessDenied",
        ),
        (
            "signature of another secret",
            Signed::v4(ACCESS_KEY, OTHER_SECRET, 300, &base_conditions(), &fields),
            403,
            "SignatureDoesNotMatch",
        ),
        (
            "anonymous form",
            Signed {
                fields: vec![("key".into(), key.into())],
            },
            403,
            "AccessDenied",
        ),
    ];
    for (what, s, status, code) in cases {
        let a = post(&gw, B, form(&s, "f", &data)).await;
        a.assert_error(status, code);
        if code == "AccessDenied" && what != "anonymous form" {
            let msg = xml_text(&a.body, "Message").unwrap_or_default();
            assert!(
                msg.starts_with("Invalid according to Policy"),
                "{what}: {msg}"
            );
        }
        nothing_stored(&gw, &c, &before, key, what).await;
    }

    // A tampered policy: the signature of one document, another document sent.
    let good = Signed::ok(&base_conditions(), &fields);
    let policy = good
        .fields
        .iter()
        .find(|(n, _)| n == "Policy")
        .map(|(_, v)| v.clone())
        .unwrap();
    let doc = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&policy)
            .unwrap(),
    )
    .unwrap()
    .replace("uploads/", "");
    let tampered = good.set("Policy", &b64(doc.as_bytes()));
    let a = post(&gw, B, form(&tampered, "f", &data)).await;
    a.assert_error(403, "SignatureDoesNotMatch");
    nothing_stored(&gw, &c, &before, key, "tampered policy").await;

    // content-length-range, both ends: the file is refused as it streams.
    let ranged = |min: u64, max: u64| {
        Signed::ok(
            &[
                base_conditions(),
                vec![json!(["content-length-range", min, max])],
            ]
            .concat(),
            &fields,
        )
    };
    let a = post(&gw, B, form(&ranged(1, 100), "f", &[7u8; 101])).await;
    a.assert_error(400, "EntityTooLarge");
    nothing_stored(&gw, &c, &before, key, "over the range").await;
    let big = random_bytes(3 * MIB);
    let a = post(&gw, B, form(&ranged(1, MIB as u64), "f", &big)).await;
    a.assert_error(400, "EntityTooLarge");
    nothing_stored(&gw, &c, &before, key, "MiBs over the range").await;
    let a = post(&gw, B, form(&ranged(10, 100), "f", b"nine byte")).await;
    a.assert_error(400, "EntityTooSmall");
    nothing_stored(&gw, &c, &before, key, "under the range").await;
    // The ends are inclusive.
    let a = post(&gw, B, form(&ranged(9, 9), "f", b"nine byte")).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    c.delete_object().bucket(B).key(key).send().await.unwrap();
    let before = blob_files(gw.data_dir());

    // Another key's bucket: the form is well signed, by a key that does not own `theirs`.
    let s = Signed::ok(
        &[
            json!({ "bucket": "theirs" }),
            json!(["starts-with", "$key", ""]),
        ],
        &fields,
    );
    let a = post(&gw, "theirs", form(&s, "f", &data)).await;
    a.assert_error(403, "AccessDenied");
    let other = gw.client_with(OTHER, OTHER_SECRET);
    let head = other.head_object().bucket("theirs").key(key).send().await;
    assert_eq!(err(head).0, 404, "stored in another key's bucket");
    nothing_stored(&gw, &c, &before, key, "another key's bucket").await;

    // No file field.
    let s = Signed::ok(&base_conditions(), &fields);
    let mut body = form_head(&s.fields, None);
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let a = post(&gw, B, body).await;
    a.assert_error(400, "InvalidArgument");
    nothing_stored(&gw, &c, &before, key, "no file").await;

    // A wrong checksum: the policy covers it, the bytes do not match it.
    let wrong = b64(&sha2::Sha256::digest(b"other bytes"));
    let s = Signed::ok(
        &[
            base_conditions(),
            vec![json!(["starts-with", "$x-amz-checksum-sha256", ""])],
        ]
        .concat(),
        &[("key", key), ("x-amz-checksum-sha256", &wrong)],
    );
    let a = post(&gw, B, form(&s, "f", &data)).await;
    a.assert_error(400, "BadDigest");
    nothing_stored(&gw, &c, &before, key, "wrong checksum").await;

    // A field named twice.
    let s = Signed::ok(&base_conditions(), &fields).with("key", "uploads/twice");
    let a = post(&gw, B, form(&s, "f", &data)).await;
    a.assert_error(400, "InvalidArgument");
    nothing_stored(&gw, &c, &before, key, "a field twice").await;

    // The policy is not signed by a known key.
    let s = Signed::v4("NOSUCHKEY", SECRET_KEY, 300, &base_conditions(), &fields);
    let a = post(&gw, B, form(&s, "f", &data)).await;
    a.assert_error(403, "InvalidAccessKeyId");
    nothing_stored(&gw, &c, &before, key, "unknown key").await;

    // No policy at all.
    let s = Signed::ok(&base_conditions(), &fields).without("Policy");
    let a = post(&gw, B, form(&s, "f", &data)).await;
    a.assert_error(400, "InvalidArgument");
    nothing_stored(&gw, &c, &before, key, "no policy").await;
}
both!(refusals, post_refusals);

/// A form upload makes an `ObjectCreated:Post` event on the bucket's rules.
async fn post_event(store: Store) {
    use crate::events::{Receiver, arn, configure, gateway, rule};
    let hook = Receiver::start().await;
    let gw = gateway(store, &hook.url(), |_| {}).await;
    let c = gw.bucket(B).await;
    configure(
        &c,
        B,
        vec![rule(
            "forms",
            &arn("hook", "webhook"),
            &["s3:ObjectCreated:Post"],
            "",
            "",
        )],
    )
    .await;
    let data = random_bytes(1000);
    let s = Signed::ok(&base_conditions(), &[("key", "uploads/form")]);
    let a = post(&gw, B, form(&s, "form.bin", &data)).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    let got = hook.wait_for(1).await;
    let r = got[0].record();
    assert_eq!(r["eventName"], "ObjectCreated:Post");
    assert_eq!(r["s3"]["object"]["key"], "uploads/form");
    assert_eq!(r["s3"]["object"]["size"], 1000);
    assert_eq!(
        a.header("etag"),
        Some(format!("\"{}\"", r["s3"]["object"]["eTag"].as_str().unwrap()).as_str())
    );
}
both!(event, post_event);

/// Reads one HTTP/1.1 answer (head and Content-Length body) from a connection the client keeps
/// open, within `within`.
async fn answer_on(s: &mut tokio::net::TcpStream, within: Duration) -> (u16, String) {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).await.expect("read");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len || n == 0 {
                    break;
                }
            } else if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("no answer while the client holds back the rest of the body");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

async fn post_field_cap(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let before = blob_files(gw.data_dir());
    // 24 KB of field values before the file; the form announces 1 GiB, sends the fields and
    // the file's first bytes, then waits: the answer must come without the rest.
    let s = Signed::ok(&base_conditions(), &[("key", "uploads/capped")])
        .with("x-ignore-padding", &"p".repeat(24 * 1024));
    let mut sent = form_head(&s.fields, Some("f"));
    sent.extend_from_slice(&[1u8; 4096]);
    let mut conn = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let req_head = format!(
        "POST /{B} HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        gw.addr(),
        1u64 << 30
    );
    conn.write_all(req_head.as_bytes()).await.unwrap();
    conn.write_all(&sent).await.unwrap();
    let (status, text) = answer_on(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("<Code>MaxPostPreDataLengthExceeded</Code>"),
        "{text}"
    );
    drop(conn);
    nothing_stored(&gw, &c, &before, "uploads/capped", "fields over 20 KB").await;

    // Just under the cap (20 KB of values in all, the policy's own included) is fine.
    let s = Signed::ok(&base_conditions(), &[("key", "uploads/padded")]);
    let used: usize = s.fields.iter().map(|(_, v)| v.len()).sum();
    let s = s.with("x-ignore-padding", &"p".repeat(20 * 1024 - used));
    let a = post(&gw, B, form(&s, "f", b"padded")).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(get_bytes(&c, B, "uploads/padded").await, b"padded");
}
both!(field_cap, post_field_cap);

/// This process's resident set, in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib << 10)
}

const LARGE: usize = 1024 * MIB;
/// How far the process (client and in-process server together) may grow while a 1 GiB form
/// streams through: far less than the file, so that neither side holds it.
const RSS_GROWTH_CAP: u64 = 96 << 20;

async fn post_large(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let s = Signed::ok(
        &[
            base_conditions(),
            vec![json!(["content-length-range", LARGE, LARGE])],
        ]
        .concat(),
        &[("key", "uploads/large")],
    );
    let (head, tail) = (form_head(&s.fields, Some("large.bin")), tail(&[]));
    let md5 = Arc::new(Mutex::new(Md5::new()));
    let hasher = md5.clone();
    // 1 MiB chunks made on demand: the client never holds the file either.
    let chunks = futures_util::stream::iter(0..LARGE / MIB).map(move |i| {
        let chunk: Vec<u8> = (0..MIB).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        hasher.lock().unwrap().update(&chunk);
        Ok::<_, std::io::Error>(Bytes::from(chunk))
    });
    let body = futures_util::stream::once(async { Ok(Bytes::from(head)) })
        .chain(chunks)
        .chain(futures_util::stream::once(async { Ok(Bytes::from(tail)) }));

    let base = rss();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(base));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let a = post_body(&gw, B, reqwest::Body::wrap_stream(body), None).await;
    let took = started.elapsed();
    sampling.abort();
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    let want = format!(
        "\"{}\"",
        hex::encode(md5.lock().unwrap().clone().finalize())
    );
    assert_eq!(a.header("etag"), Some(want.as_str()));
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let growth = peak.saturating_sub(base);
    println!(
        "[{store:?}] POST of {} MiB in {took:?}: process RSS {} MiB before, peak {} MiB (+{} MiB)",
        LARGE / MIB,
        base >> 20,
        peak >> 20,
        growth >> 20
    );
    assert!(
        growth <= RSS_GROWTH_CAP,
        "[{store:?}] RSS grew by {} MiB during a {} MiB POST",
        growth >> 20,
        LARGE / MIB
    );
    let head = c
        .head_object()
        .bucket(B)
        .key("uploads/large")
        .send()
        .await
        .expect("head large");
    assert_eq!(head.content_length(), Some(LARGE as i64));
    assert_eq!(head.e_tag(), Some(want.as_str()));
}
both!(slow, large, post_large);

async fn post_cors(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| {
        cfg.cors_allow_origins = vec!["http://default.example".into()];
    })
    .await;
    let c = gw.bucket(B).await;
    let rule = CorsRule::builder()
        .allowed_origins("http://app.example")
        .allowed_methods("POST")
        .expose_headers("ETag")
        .expose_headers("Location")
        .build()
        .unwrap();
    c.put_bucket_cors()
        .bucket(B)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put cors");
    let exposes = |a: &Answer, name: &str| {
        a.header("access-control-expose-headers")
            .unwrap_or_default()
            .split(',')
            .any(|h| h.trim().eq_ignore_ascii_case(name))
    };

    // The bucket's rule: success and refusal alike carry it.
    let s = Signed::ok(&base_conditions(), &[("key", "uploads/cors")]);
    let a = post_body(
        &gw,
        B,
        form(&s, "f", b"from a page").into(),
        Some("http://app.example"),
    )
    .await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert!(
        exposes(&a, "ETag") && exposes(&a, "Location"),
        "{:?}",
        a.headers
    );
    let s = Signed::ok(&base_conditions(), &[("key", "elsewhere/cors")]);
    let a = post_body(
        &gw,
        B,
        form(&s, "f", b"from a page").into(),
        Some("http://app.example"),
    )
    .await;
    a.assert_error(403, "AccessDenied");
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert!(
        exposes(&a, "ETag") && exposes(&a, "Location"),
        "{:?}",
        a.headers
    );
    // Another origin gets no CORS headers.
    let s = Signed::ok(&base_conditions(), &[("key", "uploads/cors2")]);
    let a = post_body(
        &gw,
        B,
        form(&s, "f", b"x").into(),
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("access-control-allow-origin"), None);

    // The server-wide rule (`--cors-allow-origins`) on a bucket without one: ETag and
    // Location exposed, on success and on a refusal.
    gw.bucket("plain").await;
    let conds = [
        json!({ "bucket": "plain" }),
        json!(["starts-with", "$key", "uploads/"]),
    ];
    for (key, status) in [("uploads/d", 204), ("elsewhere/d", 403)] {
        let s = Signed::ok(&conds, &[("key", key)]);
        let a = post_body(
            &gw,
            "plain",
            form(&s, "f", b"d").into(),
            Some("http://default.example"),
        )
        .await;
        assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(
            a.header("access-control-allow-origin"),
            Some("http://default.example")
        );
        assert!(
            exposes(&a, "ETag") && exposes(&a, "Location"),
            "{:?}",
            a.headers
        );
    }
}
both!(cors, post_cors);

/// Virtual-host style: `POST /` to `<bucket>.<domain>`; Location names the bucket's host.
async fn post_virtual_host(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| cfg.domain = Some("s3.test".into())).await;
    let c = gw.bucket(B).await;
    let host = format!("{B}.s3.test:{}", gw.addr().port());
    let s = Signed::ok(&base_conditions(), &[("key", "uploads/vhost")]);
    let resp = http()
        .post(format!("{}/", gw.endpoint()))
        .header("host", &host)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form(&s, "f", b"virtual host"))
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        location.as_deref(),
        Some(format!("http://{host}/uploads/vhost").as_str())
    );
    assert_eq!(get_bytes(&c, B, "uploads/vhost").await, b"virtual host");
    // The policy's bucket condition is checked against the Host's bucket.
    gw.bucket("other").await;
    let other = format!("other.s3.test:{}", gw.addr().port());
    let resp = http()
        .post(format!("{}/", gw.endpoint()))
        .header("host", &other)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form(&s, "f", b"virtual host"))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 403);
    let body = resp.bytes().await.unwrap_or_default();
    assert_eq!(xml_text(&body, "Code").as_deref(), Some("AccessDenied"));
}
both!(virtual_host, post_virtual_host);

/// A file that passes `content-length-range` while the client is still sending: the refusal
/// is read after the rest of the form, not met with a reset mid-body (the JS SDK suite's
/// `fetch` failed so when the gateway answered and closed as soon as the range was passed).
async fn post_too_large_while_sending(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let before = blob_files(gw.data_dir());
    let s = Signed::ok(
        &[
            base_conditions(),
            vec![json!(["content-length-range", 1, 1000])],
        ]
        .concat(),
        &[("key", "uploads/big")],
    );
    let (head, tail) = (form_head(&s.fields, Some("f")), tail(&[]));
    let rest = vec![5u8; 2 * MIB];
    let total = head.len() + 1001 + rest.len() + tail.len();
    let mut conn = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let req_head = format!(
        "POST /{B} HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {total}\r\n\r\n",
        gw.addr()
    );
    conn.write_all(req_head.as_bytes()).await.unwrap();
    conn.write_all(&head).await.unwrap();
    conn.write_all(&[5u8; 1001]).await.unwrap();
    // The gateway has seen more than the range allows; the client goes on sending.
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(&rest)
        .await
        .expect("the gateway stopped reading the form it refused");
    conn.write_all(&tail)
        .await
        .expect("the gateway stopped reading the form it refused");
    let (status, text) = answer_on(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>EntityTooLarge</Code>"), "{text}");
    nothing_stored(&gw, &c, &before, "uploads/big", "too large while sending").await;
}
both!(too_large_while_sending, post_too_large_while_sending);

/// The `tagging` field (a `<Tagging>` document, covered by the policy like any other field)
/// tags the stored object; a refused tag set stores nothing.
async fn post_tagging(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let mut conds = base_conditions();
    conds.push(json!(["starts-with", "$tagging", ""]));
    let doc = |tags: &str| {
        format!(
            r#"<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>{tags}</TagSet></Tagging>"#
        )
    };
    let tags =
        doc("<Tag><Key>from</Key><Value>form</Value></Tag><Tag><Key>n</Key><Value>2</Value></Tag>");
    let s = Signed::ok(&conds, &[("key", "uploads/tagged"), ("tagging", &tags)]);
    let a = post(&gw, B, form(&s, "t.bin", b"tagged")).await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    let got = c
        .get_object_tagging()
        .bucket(B)
        .key("uploads/tagged")
        .send()
        .await
        .unwrap();
    let got: Vec<(&str, &str)> = got.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(got, [("from", "form"), ("n", "2")]);

    // Not covered by the policy: refused like any extra field.
    let s = Signed::ok(
        &base_conditions(),
        &[("key", "uploads/uncovered"), ("tagging", &tags)],
    );
    post(&gw, B, form(&s, "t.bin", b"x"))
        .await
        .assert_error(403, "AccessDenied");
    // A refused tag set: AWS's answer, nothing stored.
    let bad = doc("<Tag><Key>aws:x</Key><Value>1</Value></Tag>");
    let s = Signed::ok(&conds, &[("key", "uploads/refused"), ("tagging", &bad)]);
    post(&gw, B, form(&s, "t.bin", b"x"))
        .await
        .assert_error(400, "InvalidTag");
    let s = Signed::ok(
        &conds,
        &[("key", "uploads/refused"), ("tagging", "<Tagging>")],
    );
    post(&gw, B, form(&s, "t.bin", b"x"))
        .await
        .assert_error(400, "MalformedXML");
    assert_eq!(
        err(c
            .head_object()
            .bucket(B)
            .key("uploads/refused")
            .send()
            .await)
        .0,
        404
    );
}
both!(tagging, post_tagging);
