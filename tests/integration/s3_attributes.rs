//! GetObjectAttributes through aws-sdk-s3 and raw requests: every attribute of single-part and
//! multipart objects (with and without checksums), paging of the parts, conditions and errors.

use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart, ObjectAttributes,
    StorageClass,
};
use base64::Engine as _;

use crate::harness::*;

const B: &str = "attrs";

const ALL: [ObjectAttributes; 5] = [
    ObjectAttributes::Etag,
    ObjectAttributes::Checksum,
    ObjectAttributes::ObjectParts,
    ObjectAttributes::StorageClass,
    ObjectAttributes::ObjectSize,
];

fn crc32(data: &[u8]) -> [u8; 4] {
    (crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, data) as u32).to_be_bytes()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A client that sends no checksum unless asked (the SDK's default adds CRC32 to every upload).
fn plain(c: &aws_sdk_s3::Client) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        c.config()
            .to_builder()
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build(),
    )
}

async fn attributes(
    c: &aws_sdk_s3::Client,
    key: &str,
    wanted: &[ObjectAttributes],
    max_parts: Option<i32>,
    marker: Option<&str>,
) -> aws_sdk_s3::operation::get_object_attributes::GetObjectAttributesOutput {
    c.get_object_attributes()
        .bucket(B)
        .key(key)
        .set_object_attributes(Some(wanted.to_vec()))
        .set_max_parts(max_parts)
        .set_part_number_marker(marker.map(str::to_owned))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetObjectAttributes {key}: {e:?}"))
}

/// Single-part objects, with and without a checksum, and a multipart one without checksums:
/// AWS lists no `Part` then, only the count.
async fn without_part_checksums(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = plain(&gw.bucket(B).await);
    let data = random_bytes(1000);
    put(&c, B, "single", &data).await;
    let head = c
        .head_object()
        .bucket(B)
        .key("single")
        .send()
        .await
        .unwrap();
    let a = attributes(&c, "single", &ALL, None, None).await;
    assert_eq!(a.e_tag(), Some(md5_hex(&data).as_str()), "unquoted ETag");
    assert_eq!(a.checksum(), None);
    assert_eq!(a.object_parts(), None, "a single PUT has no parts");
    assert_eq!(a.storage_class(), Some(&StorageClass::Standard));
    assert_eq!(a.object_size(), Some(1000));
    assert_eq!(a.last_modified(), head.last_modified());

    c.put_object()
        .bucket(B)
        .key("single-crc")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(data.clone().into())
        .send()
        .await
        .unwrap();
    let a = attributes(&c, "single-crc", &[ObjectAttributes::Checksum], None, None).await;
    let sum = a.checksum().expect("checksum");
    assert_eq!(sum.checksum_crc32(), Some(b64(&crc32(&data)).as_str()));
    assert_eq!(sum.checksum_type(), Some(&ChecksumType::FullObject));
    assert_eq!(
        (a.e_tag(), a.object_size(), a.object_parts()),
        (None, None, None)
    );

    let parts = [
        random_bytes(5 * MIB),
        random_bytes(5 * MIB),
        random_bytes(MIB),
    ];
    let id = create_upload(&c, B, "multi").await;
    let mut etags = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        etags.push(upload_part(&c, B, "multi", &id, i as i32 + 1, p).await);
    }
    let listed: Vec<(i32, &str)> = (1..).zip(etags.iter().map(String::as_str)).collect();
    complete(&c, B, "multi", &id, &listed).await;
    let a = attributes(&c, "multi", &ALL, Some(1), None).await;
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    assert_eq!(
        a.e_tag().map(|e| format!("\"{e}\"")),
        Some(multipart_etag(&refs))
    );
    assert_eq!(a.checksum(), None);
    let op = a.object_parts().expect("ObjectParts");
    assert_eq!(op.total_parts_count(), Some(3));
    assert!(op.parts().is_empty(), "{op:?}");
    assert_eq!(
        (
            op.max_parts(),
            op.is_truncated(),
            op.next_part_number_marker()
        ),
        (None, None, None)
    );
    assert_eq!(a.object_size(), Some(11 * MIB as i64));
}
both!(without_part_checksums, without_part_checksums);

/// A multipart object with CRC32 parts (COMPOSITE and FULL_OBJECT): the whole-object checksum
/// (no `-N`), and every part's number, size and checksum, paged by max-parts and the marker.
async fn with_part_checksums(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = plain(&gw.bucket(B).await);
    let parts = [
        random_bytes(5 * MIB),
        random_bytes(5 * MIB),
        random_bytes(123_457),
    ];
    for typ in [ChecksumType::Composite, ChecksumType::FullObject] {
        let key = format!("crc-{}", typ.as_str());
        let id = c
            .create_multipart_upload()
            .bucket(B)
            .key(&key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .checksum_type(typ.clone())
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
        let mut done = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let n = i as i32 + 1;
            let up = c
                .upload_part()
                .bucket(B)
                .key(&key)
                .upload_id(&id)
                .part_number(n)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(p.clone().into())
                .send()
                .await
                .unwrap();
            done.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(up.e_tag().unwrap())
                    .checksum_crc32(up.checksum_crc32().unwrap())
                    .build(),
            );
        }
        c.complete_multipart_upload()
            .bucket(B)
            .key(&key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let whole = match typ {
            ChecksumType::Composite => {
                let raw: Vec<u8> = parts.iter().flat_map(|p| crc32(p)).collect();
                b64(&crc32(&raw))
            }
            _ => b64(&crc32(&parts.concat())),
        };
        let a = attributes(&c, &key, &ALL, None, None).await;
        let sum = a.checksum().expect("checksum");
        assert_eq!(sum.checksum_crc32(), Some(whole.as_str()), "{key}");
        assert_eq!(sum.checksum_type(), Some(&typ));
        let op = a.object_parts().expect("ObjectParts");
        assert_eq!(op.total_parts_count(), Some(3));
        assert_eq!(op.max_parts(), Some(1000));
        assert_eq!(op.is_truncated(), Some(false));
        assert_eq!(op.part_number_marker(), Some("0"));
        assert_eq!(op.next_part_number_marker(), Some("3"));
        let got: Vec<_> = op
            .parts()
            .iter()
            .map(|p| {
                (
                    p.part_number(),
                    p.size(),
                    p.checksum_crc32().map(str::to_owned),
                )
            })
            .collect();
        let want: Vec<_> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    Some(i as i32 + 1),
                    Some(p.len() as i64),
                    Some(b64(&crc32(p))),
                )
            })
            .collect();
        assert_eq!(got, want, "{key}");
        assert_eq!(a.object_size(), Some((10 * MIB + 123_457) as i64));

        // Paging: two parts, then the rest after marker 2.
        let page = attributes(&c, &key, &[ObjectAttributes::ObjectParts], Some(2), None).await;
        let op = page.object_parts().unwrap();
        let numbers: Vec<_> = op
            .parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect();
        assert_eq!(numbers, [1, 2]);
        assert_eq!(
            (
                op.is_truncated(),
                op.max_parts(),
                op.next_part_number_marker()
            ),
            (Some(true), Some(2), Some("2"))
        );
        let page = attributes(
            &c,
            &key,
            &[ObjectAttributes::ObjectParts],
            Some(2),
            Some("2"),
        )
        .await;
        let op = page.object_parts().unwrap();
        let numbers: Vec<_> = op
            .parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect();
        assert_eq!(numbers, [3]);
        assert_eq!(
            (
                op.is_truncated(),
                op.part_number_marker(),
                op.next_part_number_marker()
            ),
            (Some(false), Some("2"), Some("3"))
        );
        assert_eq!(op.total_parts_count(), Some(3));
        // Past the end: no part, not truncated.
        let page = attributes(&c, &key, &[ObjectAttributes::ObjectParts], None, Some("3")).await;
        let op = page.object_parts().unwrap();
        assert!(op.parts().is_empty());
        assert_eq!(
            (op.is_truncated(), op.next_part_number_marker()),
            (Some(false), None)
        );
        // Only what was asked for.
        let a = attributes(&c, &key, &[ObjectAttributes::StorageClass], None, None).await;
        assert_eq!(
            (a.e_tag(), a.checksum(), a.object_parts(), a.object_size()),
            (None, None, None, None)
        );
        assert_eq!(a.storage_class(), Some(&StorageClass::Standard));
    }
}
both!(with_part_checksums, with_part_checksums);

/// AWS's errors and conditions, on the wire.
async fn errors_and_conditions(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = plain(&gw.bucket(B).await);
    let data = random_bytes(100);
    put(&c, B, "k", &data).await;
    let etag = md5_hex(&data);

    let ok = gw
        .raw("GET", &format!("/{B}/k?attributes"))
        .header("x-amz-object-attributes", "ObjectSize,ETag")
        .send()
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some("application/xml"));
    assert!(ok.header("last-modified").is_some());
    let body = String::from_utf8(ok.body.to_vec()).unwrap();
    assert!(
        body.ends_with(&format!(
            "<GetObjectAttributesResponse xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <ETag>{etag}</ETag><ObjectSize>100</ObjectSize></GetObjectAttributesResponse>"
        )),
        "{body}"
    );

    // The attribute list: missing, empty, or naming something else.
    for value in [None, Some(""), Some("Etag"), Some("ETag,Size")] {
        let mut r = gw.raw("GET", &format!("/{B}/k?attributes"));
        if let Some(v) = value {
            r = r.header("x-amz-object-attributes", v);
        }
        r.send().await.assert_error(400, "InvalidArgument");
    }
    for (name, value) in [
        ("x-amz-max-parts", "x"),
        ("x-amz-max-parts", "-1"),
        ("x-amz-part-number-marker", "two"),
    ] {
        gw.raw("GET", &format!("/{B}/k?attributes"))
            .header("x-amz-object-attributes", "ETag")
            .header(name, value)
            .send()
            .await
            .assert_error(400, "InvalidArgument");
    }
    let ask = |path: &str| {
        gw.raw("GET", path)
            .header("x-amz-object-attributes", "ETag")
    };
    ask(&format!("/{B}/nope?attributes"))
        .send()
        .await
        .assert_error(404, "NoSuchKey");
    ask("/no-such-bucket/k?attributes")
        .send()
        .await
        .assert_error(404, "NoSuchBucket");
    ask(&format!("/{B}/k?attributes&versionId=abc"))
        .send()
        .await
        .assert_error(400, "InvalidArgument");
    assert_eq!(
        ask(&format!("/{B}/k?attributes&versionId=null"))
            .send()
            .await
            .status,
        200
    );
    // Other methods on `?attributes` stay unimplemented, never an object write or read.
    for m in ["PUT", "DELETE"] {
        gw.raw(m, &format!("/{B}/k?attributes"))
            .send()
            .await
            .assert_error(501, "NotImplemented");
    }
    assert_eq!(get_bytes(&c, B, "k").await, data);

    // Conditions, as GetObject applies them.
    let quoted = format!("\"{etag}\"");
    let cond = |name: &str, value: &str| ask(&format!("/{B}/k?attributes")).header(name, value);
    assert_eq!(cond("if-match", &quoted).send().await.status, 200);
    cond("if-match", "\"0123\"")
        .send()
        .await
        .assert_error(412, "PreconditionFailed");
    let not_modified = cond("if-none-match", &quoted).send().await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(quoted.as_str()));
    assert_eq!(cond("if-none-match", "\"0123\"").send().await.status, 200);
    let future = httpdate::fmt_http_date(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    let past = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(cond("if-modified-since", &future).send().await.status, 304);
    assert_eq!(cond("if-modified-since", past).send().await.status, 200);
    cond("if-unmodified-since", past)
        .send()
        .await
        .assert_error(412, "PreconditionFailed");
    // If-Match true wins over If-Unmodified-Since false.
    assert_eq!(
        cond("if-match", &quoted)
            .header("if-unmodified-since", past)
            .send()
            .await
            .status,
        200
    );

    // The SDK sees NoSuchKey as its modeled error.
    let r = c
        .get_object_attributes()
        .bucket(B)
        .key("nope")
        .object_attributes(ObjectAttributes::Etag)
        .send()
        .await;
    assert!(
        r.as_ref()
            .unwrap_err()
            .as_service_error()
            .is_some_and(|e| e.is_no_such_key()),
        "{r:?}"
    );
}
both!(errors_and_conditions, errors_and_conditions);
