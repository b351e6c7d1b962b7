//! What clients beyond the basics rely on: flexible checksums with every algorithm through the
//! Rust SDK, CORS for browser uploaders, virtual-host-style addressing and HTTPS.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
    CorsConfiguration, CorsRule,
};
use base64::Engine as _;
use sha2::Digest as _;

use crate::harness::{MIB, Store, TestGateway, assert_err, both, get_bytes, openssl, random_bytes};

const B: &str = "compat";

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// The whole-object value S3 reports, computed here without the gateway's own code: a CRC over
/// all bytes (FULL_OBJECT), or the hash of the part digests plus `-N` (COMPOSITE).
fn expected(alg: &ChecksumAlgorithm, parts: &[Vec<u8>]) -> String {
    let all: Vec<u8> = parts.concat();
    let crc = |a: crc_fast::CrcAlgorithm, width: usize| {
        let v = crc_fast::checksum(a, &all);
        b64(&v.to_be_bytes()[8 - width..])
    };
    match alg {
        ChecksumAlgorithm::Crc32 => format!(
            "{}-{}",
            b64(&sha_like(
                parts,
                |p| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, p).to_be_bytes()[4..]
                    .to_vec(),
                |d| {
                    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, d).to_be_bytes()[4..]
                        .to_vec()
                }
            )),
            parts.len()
        ),
        ChecksumAlgorithm::Crc32C => format!(
            "{}-{}",
            b64(&sha_like(
                parts,
                |p| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, p).to_be_bytes()[4..]
                    .to_vec(),
                |d| {
                    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, d).to_be_bytes()[4..]
                        .to_vec()
                }
            )),
            parts.len()
        ),
        ChecksumAlgorithm::Crc64Nvme => crc(crc_fast::CrcAlgorithm::Crc64Nvme, 8),
        ChecksumAlgorithm::Sha1 => format!(
            "{}-{}",
            b64(&sha_like(
                parts,
                |p| sha1::Sha1::digest(p).to_vec(),
                |d| sha1::Sha1::digest(d).to_vec()
            )),
            parts.len()
        ),
        ChecksumAlgorithm::Sha256 => format!(
            "{}-{}",
            b64(&sha_like(
                parts,
                |p| sha2::Sha256::digest(p).to_vec(),
                |d| sha2::Sha256::digest(d).to_vec()
            )),
            parts.len()
        ),
        other => panic!("no expectation for {other:?}"),
    }
}

/// H(H(part 1) || … || H(part N)).
fn sha_like(
    parts: &[Vec<u8>],
    part: impl Fn(&[u8]) -> Vec<u8>,
    whole: impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let digests: Vec<u8> = parts.iter().flat_map(|p| part(p)).collect();
    whole(&digests)
}

fn object_checksum(
    out: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
    alg: &ChecksumAlgorithm,
) -> Option<String> {
    match alg {
        ChecksumAlgorithm::Crc32 => out.checksum_crc32(),
        ChecksumAlgorithm::Crc32C => out.checksum_crc32_c(),
        ChecksumAlgorithm::Crc64Nvme => out.checksum_crc64_nvme(),
        ChecksumAlgorithm::Sha1 => out.checksum_sha1(),
        ChecksumAlgorithm::Sha256 => out.checksum_sha256(),
        _ => None,
    }
    .map(str::to_owned)
}

async fn multipart_with_every_checksum(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let parts: Vec<Vec<u8>> = vec![random_bytes(5 * MIB), random_bytes(MIB + 7)];
    for alg in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("mp-{}", alg.as_str());
        let up = c
            .create_multipart_upload()
            .bucket(B)
            .key(&key)
            .checksum_algorithm(alg.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("create {alg:?}: {e:?}"));
        assert_eq!(up.checksum_algorithm(), Some(&alg));
        let id = up.upload_id().unwrap();
        let mut done = Vec::new();
        for (i, data) in parts.iter().enumerate() {
            let n = i32::try_from(i + 1).unwrap();
            // The SDK computes the part checksum, sends it, and checks the echo.
            let out = c
                .upload_part()
                .bucket(B)
                .key(&key)
                .upload_id(id)
                .part_number(n)
                .checksum_algorithm(alg.clone())
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("part {n} {alg:?}: {e:?}"));
            let mut part = CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap());
            part = match alg {
                ChecksumAlgorithm::Crc32 => {
                    part.checksum_crc32(out.checksum_crc32().expect("crc32 echoed"))
                }
                ChecksumAlgorithm::Crc32C => {
                    part.checksum_crc32_c(out.checksum_crc32_c().expect("crc32c echoed"))
                }
                ChecksumAlgorithm::Crc64Nvme => {
                    part.checksum_crc64_nvme(out.checksum_crc64_nvme().expect("crc64nvme echoed"))
                }
                ChecksumAlgorithm::Sha1 => {
                    part.checksum_sha1(out.checksum_sha1().expect("sha1 echoed"))
                }
                _ => part.checksum_sha256(out.checksum_sha256().expect("sha256 echoed")),
            };
            done.push(part.build());
        }
        c.complete_multipart_upload()
            .bucket(B)
            .key(&key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("complete {alg:?}: {e:?}"));
        let head = c
            .head_object()
            .bucket(B)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(
            object_checksum(&head, &alg),
            Some(expected(&alg, &parts)),
            "{alg:?}"
        );
        let want_type = if alg == ChecksumAlgorithm::Crc64Nvme {
            ChecksumType::FullObject
        } else {
            ChecksumType::Composite
        };
        assert_eq!(head.checksum_type(), Some(&want_type), "{alg:?}");
        // A ranged GET never carries the whole-object checksum (the SDK would check it).
        let ranged = c
            .get_object()
            .bucket(B)
            .key(&key)
            .range("bytes=0-99")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert!(
            ranged.checksum_crc32().is_none()
                && ranged.checksum_sha256().is_none()
                && ranged.checksum_crc64_nvme().is_none()
        );
        assert!(
            get_bytes(&c, B, &key).await == parts.concat(),
            "{alg:?} bytes"
        );
    }
}
both!(multipart_with_every_checksum, multipart_with_every_checksum);

async fn put_object_checksums(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let data = random_bytes(100_000);
    for alg in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("put-{}", alg.as_str());
        c.put_object()
            .bucket(B)
            .key(&key)
            .checksum_algorithm(alg.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {alg:?}: {e:?}"));
        let head = c
            .head_object()
            .bucket(B)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert!(
            object_checksum(&head, &alg).is_some(),
            "{alg:?} not returned"
        );
    }
    // A wrong value is BadDigest and stores nothing; an unknown algorithm is a clean 400.
    let r = gw
        .raw("PUT", &format!("/{B}/bad"))
        .header("x-amz-checksum-crc32", "AAAAAA==")
        .body(b"data".to_vec())
        .send()
        .await;
    r.assert_error(400, "BadDigest");
    assert_err(
        c.head_object().bucket(B).key("bad").send().await,
        404,
        "NotFound",
    );
    let r = gw
        .raw("PUT", &format!("/{B}/bad"))
        .header("x-amz-checksum-sha512", "AAAA")
        .body(b"data".to_vec())
        .send()
        .await;
    assert_eq!(r.status, 400, "unknown algorithm: {:?}", r.code());
}
both!(put_object_checksums, put_object_checksums);

async fn cors_for_browser_uploads(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let origin = "https://app.example.com";
    let http = reqwest::Client::new();
    let preflight = |method: &'static str, origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}/{B}/k", gw.endpoint()))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .send()
    };
    // No rules yet: refused.
    assert_eq!(preflight("PUT", origin).await.unwrap().status(), 403);
    assert_err(
        c.get_bucket_cors().bucket(B).send().await,
        404,
        "NoSuchCORSConfiguration",
    );
    let rule = CorsRule::builder()
        .allowed_origins("https://*.example.com")
        .allowed_methods("PUT")
        .allowed_methods("GET")
        .allowed_headers("*")
        .expose_headers("ETag")
        .max_age_seconds(3000)
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
        .expect("PutBucketCors");
    let got = c.get_bucket_cors().bucket(B).send().await.unwrap();
    assert_eq!(
        got.cors_rules()[0].allowed_origins(),
        ["https://*.example.com"]
    );
    // Preflight needs no credentials.
    let ok = preflight("PUT", origin).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], origin);
    assert!(
        ok.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    assert_eq!(ok.headers()["access-control-max-age"], "3000");
    assert_eq!(preflight("DELETE", origin).await.unwrap().status(), 403);
    assert_eq!(
        preflight("PUT", "https://evil.test")
            .await
            .unwrap()
            .status(),
        403
    );

    // A presigned UploadPart from the browser origin: the ETag is readable.
    let up = c
        .create_multipart_upload()
        .bucket(B)
        .key("k")
        .send()
        .await
        .unwrap();
    let presigned = c
        .upload_part()
        .bucket(B)
        .key("k")
        .upload_id(up.upload_id().unwrap())
        .part_number(1)
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(
                60,
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    let part = http
        .put(presigned.uri())
        .header("origin", origin)
        .body(b"chunk".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 200);
    assert_eq!(part.headers()["access-control-allow-origin"], origin);
    assert!(
        part.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("ETag")
    );
    assert!(part.headers().contains_key("etag"));
    // Errors carry the CORS headers too, or the page could not read them.
    let missing = http
        .get(format!("{}/{B}/nope", gw.endpoint()))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 403); // anonymous
    assert_eq!(missing.headers()["access-control-allow-origin"], origin);

    c.delete_bucket_cors()
        .bucket(B)
        .send()
        .await
        .expect("DeleteBucketCors");
    assert_err(
        c.get_bucket_cors().bucket(B).send().await,
        404,
        "NoSuchCORSConfiguration",
    );
    assert_eq!(preflight("PUT", origin).await.unwrap().status(), 403);
}
both!(cors_for_browser_uploads, cors_for_browser_uploads);

async fn server_wide_cors_default(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| cfg.cors_allow_origins = vec!["*".into()]).await;
    gw.bucket(B).await;
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/{B}/any", gw.endpoint()),
        )
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "x-amz-date, content-type, x-amz-content-sha256, authorization",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let expose = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        expose.contains("ETag") && expose.contains("x-amz-checksum-crc32"),
        "{expose}"
    );
}
both!(server_wide_cors_default, server_wide_cors_default);

async fn virtual_host_style(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| cfg.domain = Some("s3.test".into())).await;
    let host = format!("vbucket.s3.test:{}", gw.addr().port());
    let made = gw
        .raw("PUT", "/")
        .header("host", &host)
        .header("content-length", "0")
        .send_tcp()
        .await;
    assert_eq!(
        made.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&made.body)
    );
    let put = gw
        .raw("PUT", "/dir/obj.txt")
        .header("host", &host)
        .header("content-length", "11")
        .body(b"hello vhost".to_vec())
        .send_tcp()
        .await;
    assert_eq!(put.status, 200, "{:?}", String::from_utf8_lossy(&put.body));
    // Path style reaches the same bucket.
    assert_eq!(
        get_bytes(&gw.client(), "vbucket", "dir/obj.txt").await,
        b"hello vhost"
    );
    let get = gw
        .raw("GET", "/dir/obj.txt")
        .header("host", &host)
        .send_tcp()
        .await;
    assert_eq!((get.status, &get.body[..]), (200, &b"hello vhost"[..]));
    let list = gw
        .raw("GET", "/?list-type=2")
        .header("host", &host)
        .send_tcp()
        .await;
    assert!(String::from_utf8_lossy(&list.body).contains("<Key>dir/obj.txt</Key>"));
}
both!(virtual_host_style, virtual_host_style);

/// HTTPS with a certificate made by `openssl`: TLS handshake (HTTP/1.1 and h2 via ALPN) and a
/// signed request through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_signed_requests() {
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
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ],
    );
    let (c2, k2) = (cert.clone(), key.clone());
    let gw = TestGateway::start_with(Store::Embedded, move |cfg| {
        cfg.tls_cert = Some(c2);
        cfg.tls_key = Some(k2);
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject as _;
    for c in rustls_pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
        if alpn == b"http/1.1" {
            // An S3 request over TLS gets an S3 answer (anonymous: AccessDenied).
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            tls.write_all(b"GET /compat HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            let _ = tls.read_to_end(&mut answer).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
            assert!(answer.contains("<Code>AccessDenied</Code>"), "{answer}");
        }
    }
    // A plain-HTTP client on the TLS port gets no S3 answer: the same request as above, sent in
    // the clear, ends in a transport failure or something other than an S3 XML reply (without
    // TLS enforced it would be the 403 AccessDenied document).
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let mut answer = Vec::new();
    let sent = tcp
        .write_all(b"GET /compat HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    if sent.is_ok() {
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tcp.read_to_end(&mut answer),
        )
        .await
        .expect("the TLS port neither answers nor closes a plain-HTTP request");
        let _ = read; // A reset is a transport failure: what was read so far is checked below.
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("<?xml") && !answer.contains("<Code>"),
        "plain HTTP on the TLS port got an S3 answer: {answer}"
    );
}
