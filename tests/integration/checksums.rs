//! Whole-object claims on CompleteMultipartUpload (`x-amz-mp-object-size`, a whole-object
//! `x-amz-checksum-<alg>` with `x-amz-checksum-type`) and the checksum algorithms S3 added in 2026
//! (MD5, SHA512, XXHASH64, XXHASH3, XXHASH128). Expected values are computed here with crates of
//! their own (md-5, sha2, xxhash-rust), not with the server's code.

use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType};
use base64::Engine as _;

use crate::harness::*;

const B: &str = "sums";

/// The `<CompleteMultipartUpload>` body naming `parts` (number, quoted ETag).
fn complete_xml(parts: &[(i32, &str)]) -> String {
    let mut x = String::from("<CompleteMultipartUpload>");
    for (n, e) in parts {
        x.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
        ));
    }
    x + "</CompleteMultipartUpload>"
}

/// A Complete sent by hand (signed), with `headers`.
async fn raw_complete(
    gw: &TestGateway,
    key: &str,
    id: &str,
    parts: &[(i32, &str)],
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut r = gw
        .raw("POST", &format!("/{B}/{key}?uploadId={id}"))
        .body(complete_xml(parts));
    for (n, v) in headers {
        r = r.header(n, v);
    }
    r.send().await
}

#[track_caller]
fn assert_refused(r: &RawResponse, status: u16, code: &str, message: &str) {
    r.assert_error(status, code);
    let got = xml_text(&r.body, "Message").map(|m| m.replace("&apos;", "'"));
    assert_eq!(got.as_deref(), Some(message));
}

/// `x-amz-mp-object-size` must equal the sum of the listed parts' sizes: 400 InvalidRequest with
/// AWS's messages otherwise (not a number, negative, different), nothing published, and the
/// upload still completes afterwards.
async fn mp_object_size(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let parts = [random_bytes(5 * MIB), random_bytes(1000)];
    let id = create_upload(&c, B, "k").await;
    let mut etags = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        etags.push(upload_part(&c, B, "k", &id, i as i32 + 1, p).await);
    }
    let listed = [(1, etags[0].as_str()), (2, etags[1].as_str())];
    let total = (5 * MIB + 1000) as i64;
    let cases = [
        (
            "size".to_owned(),
            "Value for x-amz-mp-object-size header is invalid: 'size'".to_owned(),
        ),
        (
            "-5".to_owned(),
            "Value for x-amz-mp-object-size header is less than zero: '-5'".to_owned(),
        ),
        (
            (total + 1).to_string(),
            format!(
                "The provided 'x-amz-mp-object-size' header value {} does not match what was computed: {total}",
                total + 1
            ),
        ),
    ];
    for (value, message) in &cases {
        let r = raw_complete(&gw, "k", &id, &listed, &[("x-amz-mp-object-size", value)]).await;
        assert_refused(&r, 400, "InvalidRequest", message);
    }
    // Nothing was published and the upload is still open.
    assert_eq!(err(c.head_object().bucket(B).key("k").send().await).0, 404);
    assert_eq!(all_parts(&c, B, "k", &id).await.len(), 2);
    // The SDK's own header, right this time.
    let done = complete_with(&c, B, "k", &id, &listed, |r| r.mpu_object_size(total))
        .await
        .expect("complete with the right size");
    assert!(done.e_tag().is_some_and(|e| e.ends_with("-2\"")));
    assert_eq!(get_bytes(&c, B, "k").await, parts.concat());
}
both!(mp_object_size, mp_object_size);

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn crc(alg: crc_fast::CrcAlgorithm, data: &[u8]) -> Vec<u8> {
    let v = crc_fast::checksum(alg, data);
    match alg {
        crc_fast::CrcAlgorithm::Crc64Nvme => v.to_be_bytes().to_vec(),
        _ => (v as u32).to_be_bytes().to_vec(),
    }
}

/// Creates an upload with `alg`/`typ`, sends `parts` with that algorithm; returns the upload
/// id and the (part number, quoted ETag) list.
async fn checksummed_upload(
    c: &aws_sdk_s3::Client,
    key: &str,
    alg: ChecksumAlgorithm,
    typ: Option<ChecksumType>,
    parts: &[Vec<u8>],
) -> (String, Vec<(i32, String)>) {
    let out = c
        .create_multipart_upload()
        .bucket(B)
        .key(key)
        .checksum_algorithm(alg.clone())
        .set_checksum_type(typ)
        .send()
        .await
        .expect("create");
    let id = out.upload_id().unwrap().to_owned();
    let mut listed = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let up = c
            .upload_part()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(alg.clone())
            .body(p.clone().into())
            .send()
            .await
            .expect("upload part");
        listed.push((n, up.e_tag().unwrap().to_owned()));
    }
    (id, listed)
}

/// A whole-object checksum sent with Complete is checked against what the parts give
/// (COMPOSITE: the checksum of the part checksums, `-N` optional; FULL_OBJECT: the CRC of the
/// whole object). A wrong value is BadDigest, another algorithm or type InvalidRequest; nothing
/// is published and the upload completes afterwards.
async fn whole_object_checksum(store: Store) {
    use crc_fast::CrcAlgorithm::{Crc32IsoHdlc, Crc64Nvme};
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let parts = vec![random_bytes(5 * MIB), random_bytes(4321)];

    // COMPOSITE CRC32.
    let (id, listed) = checksummed_upload(&c, "comp", ChecksumAlgorithm::Crc32, None, &parts).await;
    let refs: Vec<(i32, &str)> = listed.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let part_sums: Vec<u8> = parts.iter().flat_map(|p| crc(Crc32IsoHdlc, p)).collect();
    let composite = b64(&crc(Crc32IsoHdlc, &part_sums));
    let wrong = b64(&crc(Crc32IsoHdlc, b"other"));
    let bad_n = format!("{composite}-3");
    let zeros = b64(&[0u8; 32]);
    // (header, value, code, message), each answered with 400.
    let refused = [
        (
            "x-amz-checksum-crc32",
            wrong.as_str(),
            "BadDigest",
            "The CRC32 you specified did not match the calculated checksum.",
        ),
        (
            "x-amz-checksum-crc32",
            bad_n.as_str(),
            "BadDigest",
            "The CRC32 you specified did not match the calculated checksum.",
        ),
        (
            "x-amz-checksum-sha256",
            zeros.as_str(),
            "InvalidRequest",
            "Checksum Type mismatch occurred, expected checksum Type: crc32, actual checksum Type: sha256",
        ),
        (
            "x-amz-checksum-type",
            "FULL_OBJECT",
            "InvalidRequest",
            "The upload was created using the COMPOSITE checksum mode. The complete request must use the same checksum mode.",
        ),
        (
            "x-amz-checksum-crc32",
            "not base64!",
            "InvalidRequest",
            "Value for x-amz-checksum-crc32 header is invalid.",
        ),
    ];
    for (header, value, code, message) in refused {
        let r = raw_complete(&gw, "comp", &id, &refs, &[(header, value)]).await;
        assert_refused(&r, 400, code, message);
    }
    assert_eq!(
        err(c.head_object().bucket(B).key("comp").send().await).0,
        404
    );
    // Without and with the `-N`, through the SDK.
    let r = raw_complete(
        &gw,
        "comp",
        &id,
        &refs,
        &[
            ("x-amz-checksum-crc32", &composite),
            ("x-amz-checksum-type", "COMPOSITE"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        xml_text(&r.body, "ChecksumCRC32"),
        Some(format!("{composite}-2"))
    );
    let (id, listed) =
        checksummed_upload(&c, "comp2", ChecksumAlgorithm::Crc32, None, &parts).await;
    let refs: Vec<(i32, &str)> = listed.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let with_parts = complete_with(&c, B, "comp2", &id, &refs, |r| {
        r.checksum_crc32(format!("{composite}-2"))
            .checksum_type(ChecksumType::Composite)
    })
    .await;
    let done = with_parts.expect("complete with the composite checksum and its -N");
    assert_eq!(
        done.checksum_crc32(),
        Some(format!("{composite}-2").as_str())
    );

    // FULL_OBJECT CRC64NVME: the CRC of the whole object.
    let (id, listed) = checksummed_upload(
        &c,
        "full",
        ChecksumAlgorithm::Crc64Nvme,
        Some(ChecksumType::FullObject),
        &parts,
    )
    .await;
    let refs: Vec<(i32, &str)> = listed.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let whole = b64(&crc(Crc64Nvme, &parts.concat()));
    let bad = complete_with(&c, B, "full", &id, &refs, |r| {
        r.checksum_crc64_nvme(b64(&crc(Crc64Nvme, b"x")))
    })
    .await;
    assert_err(bad, 400, "BadDigest");
    let bad = complete_with(&c, B, "full", &id, &refs, |r| {
        r.checksum_crc64_nvme(&whole)
            .checksum_type(ChecksumType::Composite)
    })
    .await;
    assert_err(bad, 400, "InvalidRequest");
    assert_eq!(
        err(c.head_object().bucket(B).key("full").send().await).0,
        404
    );
    let done = complete_with(&c, B, "full", &id, &refs, |r| {
        r.checksum_crc64_nvme(&whole)
            .checksum_type(ChecksumType::FullObject)
    })
    .await
    .expect("complete with the full-object CRC");
    assert_eq!(done.checksum_crc64_nvme(), Some(whole.as_str()));
    assert_eq!(get_bytes(&c, B, "full").await, parts.concat());

    // An upload created without a checksum has none to match.
    let id = create_upload(&c, B, "plain").await;
    let e = upload_part(&c, B, "plain", &id, 1, &parts[1]).await;
    let r = raw_complete(
        &gw,
        "plain",
        &id,
        &[(1, &e)],
        &[("x-amz-checksum-crc32", &b64(&crc(Crc32IsoHdlc, &parts[1])))],
    )
    .await;
    assert_refused(
        &r,
        400,
        "InvalidRequest",
        "Checksum Type mismatch occurred, expected checksum Type: null, actual checksum Type: crc32",
    );
    let r = raw_complete(
        &gw,
        "plain",
        &id,
        &[(1, &e)],
        &[("x-amz-checksum-type", "FULL_OBJECT")],
    )
    .await;
    assert_refused(
        &r,
        400,
        "InvalidRequest",
        "The upload was created using the null checksum mode. The complete request must use the same checksum mode.",
    );
    complete(&c, B, "plain", &id, &[(1, &e)]).await;
}
both!(whole_object_checksum, whole_object_checksum);

/// One of the algorithms S3 added in 2026: its wire names and a digest computed here.
struct Added {
    name: &'static str,
    header: &'static str,
    xml: &'static str,
    digest: fn(&[u8]) -> Vec<u8>,
}

fn added() -> [Added; 5] {
    use md5::Digest as _;
    [
        Added {
            name: "MD5",
            header: "x-amz-checksum-md5",
            xml: "ChecksumMD5",
            digest: |d| md5::Md5::digest(d).to_vec(),
        },
        Added {
            name: "SHA512",
            header: "x-amz-checksum-sha512",
            xml: "ChecksumSHA512",
            digest: |d| <sha2::Sha512 as sha2::Digest>::digest(d).to_vec(),
        },
        Added {
            name: "XXHASH64",
            header: "x-amz-checksum-xxhash64",
            xml: "ChecksumXXHASH64",
            digest: |d| xxhash_rust::xxh64::xxh64(d, 0).to_be_bytes().to_vec(),
        },
        Added {
            name: "XXHASH3",
            header: "x-amz-checksum-xxhash3",
            xml: "ChecksumXXHASH3",
            digest: |d| xxhash_rust::xxh3::xxh3_64(d).to_be_bytes().to_vec(),
        },
        Added {
            name: "XXHASH128",
            header: "x-amz-checksum-xxhash128",
            xml: "ChecksumXXHASH128",
            digest: |d| xxhash_rust::xxh3::xxh3_128(d).to_be_bytes().to_vec(),
        },
    ]
}

/// MD5, SHA512, XXHASH64, XXHASH3 and XXHASH128 wherever the first five algorithms go:
/// PutObject headers (checked, echoed, kept for HEAD/GET with checksum mode), an aws-chunked
/// trailer, CreateMultipartUpload (COMPOSITE only), UploadPart (echoed), ListParts, Complete
/// (per-part values checked, the composite `-N` answered and verified when sent), and part
/// reads. A value that does not match is BadDigest.
async fn added_algorithms(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let data = random_bytes(300_001);
    let parts = [random_bytes(5 * MIB), random_bytes(777)];
    for a in added() {
        let sum = |d: &[u8]| b64(&(a.digest)(d));
        let lower = a.name.to_lowercase();

        // PutObject with the value in a header: a wrong one is refused, the right one kept.
        let key = format!("put-{lower}");
        let put = |value: String| {
            gw.raw("PUT", &format!("/{B}/{key}"))
                .header(a.header, &value)
                .body(data.clone())
        };
        let r = put(sum(b"other")).send().await;
        assert_refused(
            &r,
            400,
            "BadDigest",
            &format!(
                "The {} you specified did not match the calculated checksum.",
                a.name
            ),
        );
        let r = put(sum(&data)).send().await;
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            a.name,
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.header(a.header),
            Some(sum(&data).as_str()),
            "{} PUT echo",
            a.name
        );
        let head = gw
            .raw("HEAD", &format!("/{B}/{key}"))
            .header("x-amz-checksum-mode", "ENABLED")
            .send()
            .await;
        assert_eq!(
            head.header(a.header),
            Some(sum(&data).as_str()),
            "{} HEAD",
            a.name
        );
        assert_eq!(head.header("x-amz-checksum-type"), Some("FULL_OBJECT"));

        // Named by x-amz-sdk-checksum-algorithm with no value: computed and echoed.
        let r = gw
            .raw("PUT", &format!("/{B}/named-{lower}"))
            .header("x-amz-sdk-checksum-algorithm", a.name)
            .body(data.clone())
            .send()
            .await;
        assert_eq!(
            r.header(a.header),
            Some(sum(&data).as_str()),
            "{} computed",
            a.name
        );

        // In an unsigned aws-chunked trailer.
        let trailed = |value: String| {
            let mut body = format!("{:x}\r\n", data.len()).into_bytes();
            body.extend_from_slice(&data);
            body.extend_from_slice(format!("\r\n0\r\n{}:{value}\r\n\r\n", a.header).as_bytes());
            gw.raw("PUT", &format!("/{B}/trailer-{lower}"))
                .content_sha256("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
                .header("content-encoding", "aws-chunked")
                .header("x-amz-decoded-content-length", &data.len().to_string())
                .header("x-amz-trailer", a.header)
                .body(body)
        };
        trailed(sum(b"other"))
            .send()
            .await
            .assert_error(400, "BadDigest");
        let r = trailed(sum(&data)).send().await;
        assert_eq!(
            r.status,
            200,
            "{} trailer: {}",
            a.name,
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(get_bytes(&c, B, &format!("trailer-{lower}")).await, data);

        // Multipart, COMPOSITE (the only type these algorithms have).
        let key = format!("mp-{lower}");
        gw.raw("POST", &format!("/{B}/{key}?uploads"))
            .header("x-amz-checksum-algorithm", a.name)
            .header("x-amz-checksum-type", "FULL_OBJECT")
            .send()
            .await
            .assert_error(400, "InvalidRequest");
        let r = gw
            .raw("POST", &format!("/{B}/{key}?uploads"))
            .header("x-amz-checksum-algorithm", a.name)
            .send()
            .await;
        assert_eq!(r.header("x-amz-checksum-algorithm"), Some(a.name));
        assert_eq!(r.header("x-amz-checksum-type"), Some("COMPOSITE"));
        let id = xml_text(&r.body, "UploadId").expect("upload id");
        let mut etags = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let r = gw
                .raw(
                    "PUT",
                    &format!("/{B}/{key}?partNumber={}&uploadId={id}", i + 1),
                )
                .header(a.header, &sum(p))
                .body(p.clone())
                .send()
                .await;
            assert_eq!(r.status, 200, "{} part {}", a.name, i + 1);
            assert_eq!(
                r.header(a.header),
                Some(sum(p).as_str()),
                "{} part echo",
                a.name
            );
            etags.push(r.header("etag").expect("etag").to_owned());
        }
        let listed = gw
            .raw("GET", &format!("/{B}/{key}?uploadId={id}"))
            .send()
            .await;
        assert_eq!(
            xml_text(&listed.body, "ChecksumAlgorithm").as_deref(),
            Some(a.name)
        );
        assert_eq!(
            xml_texts(&listed.body, a.xml),
            parts.iter().map(|p| sum(p)).collect::<Vec<_>>(),
            "{} ListParts",
            a.name
        );
        let composite = sum(&parts.iter().flat_map(|p| (a.digest)(p)).collect::<Vec<_>>());
        let complete_body = |part1: &str| {
            format!(
                "<CompleteMultipartUpload>\
                 <Part><PartNumber>1</PartNumber><ETag>{}</ETag><{x}>{part1}</{x}></Part>\
                 <Part><PartNumber>2</PartNumber><ETag>{}</ETag><{x}>{}</{x}></Part>\
                 </CompleteMultipartUpload>",
                etags[0],
                etags[1],
                sum(&parts[1]),
                x = a.xml
            )
        };
        let complete = |part1: &str, whole: &str| {
            gw.raw("POST", &format!("/{B}/{key}?uploadId={id}"))
                .header(a.header, whole)
                .body(complete_body(part1))
        };
        complete(&sum(b"other"), &format!("{composite}-2"))
            .send()
            .await
            .assert_error(400, "InvalidPart");
        complete(&sum(&parts[0]), &sum(b"other"))
            .send()
            .await
            .assert_error(400, "BadDigest");
        let r = complete(&sum(&parts[0]), &format!("{composite}-2"))
            .send()
            .await;
        assert_eq!(
            r.status,
            200,
            "{} Complete: {}",
            a.name,
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(xml_text(&r.body, a.xml), Some(format!("{composite}-2")));
        assert_eq!(
            xml_text(&r.body, "ChecksumType").as_deref(),
            Some("COMPOSITE")
        );
        let head = gw
            .raw("HEAD", &format!("/{B}/{key}"))
            .header("x-amz-checksum-mode", "ENABLED")
            .send()
            .await;
        assert_eq!(
            head.header(a.header),
            Some(format!("{composite}-2").as_str())
        );
        assert_eq!(head.header("x-amz-checksum-type"), Some("COMPOSITE"));
        let part2 = gw
            .raw("GET", &format!("/{B}/{key}?partNumber=2"))
            .header("x-amz-checksum-mode", "ENABLED")
            .send()
            .await;
        assert_eq!(part2.header(a.header), Some(sum(&parts[1]).as_str()));
        assert_eq!(&part2.body[..], &parts[1][..]);
    }
    // The SDK reads the new elements and headers.
    let head = c
        .head_object()
        .bucket(B)
        .key("put-xxhash128")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.checksum_xxhash128(),
        Some(b64(&xxhash_rust::xxh3::xxh3_128(&data).to_be_bytes()).as_str())
    );
}
both!(added_algorithms, added_algorithms);
