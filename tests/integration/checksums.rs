//! Whole-object claims on CompleteMultipartUpload (`x-amz-mp-object-size`, a whole-object
//! `x-amz-checksum-<alg>` with `x-amz-checksum-type`) and the checksum algorithms S3 added in 2026
//! (MD5, SHA512, XXHASH64, XXHASH3, XXHASH128). Expected values are computed here with crates of
//! their own (md-5, sha2, xxhash-rust), not with the server's code.

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
