//! Path, query and Host → S3 operation. Input: a request as HTTP text, or, after a `#`, the
//! pieces of an UploadPart. Properties: no request panics, and what routes keeps its
//! invariants; an UploadPart addressed with any key, upload id and part number routes to
//! exactly those, in path style and virtual-host style alike.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mpgw::s3::route::{Query, S3Op, host_bucket, route};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

#[derive(Arbitrary, Debug)]
struct UploadPart {
    key: String,
    id: u128,
    part: u16,
    vhost: bool,
}

fuzz_target!(|data: &[u8]| {
    if let Some(rest) = data.strip_prefix(b"#") {
        if let Ok(input) = UploadPart::arbitrary_take_rest(Unstructured::new(rest)) {
            upload_part(input);
        }
        return;
    }
    let Some((p, _)) = mpgw_fuzz::request(data) else {
        return;
    };
    for domain in [None, Some("s3.example.com"), Some("localhost")] {
        let vhost = host_bucket(&p.headers, &p.uri, domain);
        if let Some(b) = &vhost {
            assert!(!b.is_empty() && !b.bytes().any(|c| c.is_ascii_uppercase()));
        }
        if let Ok(r) = route(
            &p.method,
            p.uri.path(),
            &Query::parse(p.uri.query()),
            &p.headers,
            vhost,
        ) {
            assert!(!r.key.contains('\0'));
            match r.op {
                S3Op::ListBuckets => assert!(r.bucket.is_empty()),
                S3Op::UploadPart { .. }
                | S3Op::UploadPartCopy { .. }
                | S3Op::CompleteMultipartUpload { .. }
                | S3Op::AbortMultipartUpload { .. }
                | S3Op::ListParts { .. }
                | S3Op::CreateMultipartUpload
                | S3Op::PutObject
                | S3Op::CopyObject
                | S3Op::GetObject
                | S3Op::HeadObject
                | S3Op::DeleteObject
                | S3Op::GetObjectAttributes
                | S3Op::PutObjectTagging
                | S3Op::GetObjectTagging
                | S3Op::DeleteObjectTagging
                | S3Op::GetObjectAcl
                | S3Op::PutObjectAcl => assert!(!r.bucket.is_empty() && !r.key.is_empty()),
                // Answered 501 wherever it is addressed (the root, a bucket or an object).
                S3Op::Unsupported { .. } => {}
                _ => assert!(!r.bucket.is_empty() && r.key.is_empty()),
            }
        }
    }
});

fn upload_part(input: UploadPart) {
    let UploadPart {
        key,
        id,
        part,
        vhost,
    } = input;
    if key.is_empty() || key.contains('\0') {
        return;
    }
    let part = part % 10000 + 1;
    let id = format!("{id:032x}");
    let path = utf8_percent_encode(&key, NON_ALPHANUMERIC).to_string();
    let mut headers = http::HeaderMap::new();
    let (path, bucket) = if vhost {
        headers.insert(
            "host",
            http::HeaderValue::from_static("bkt.s3.example.com:9000"),
        );
        (
            format!("/{path}"),
            host_bucket(&headers, &"/".parse().unwrap(), Some("s3.example.com")),
        )
    } else {
        (format!("/bkt/{path}"), None)
    };
    assert_eq!(bucket.is_some(), vhost);
    let query = format!("partNumber={part}&uploadId={id}");
    let r = route(
        &http::Method::PUT,
        &path,
        &Query::parse(Some(&query)),
        &headers,
        bucket,
    )
    .unwrap();
    assert_eq!((r.bucket.as_str(), r.key.as_str()), ("bkt", key.as_str()));
    match r.op {
        S3Op::UploadPart {
            upload_id,
            part_number,
        } => {
            assert_eq!(upload_id.as_str(), id);
            assert_eq!(part_number.get(), part);
        }
        op => panic!("{op:?}"),
    }
}
