//! Error answers: HTTP status and `<Code>`, through the SDK where it can send the request and
//! with raw SigV4-signed requests where it cannot.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;

use crate::harness::*;

const B: &str = "errs";
const UNKNOWN_ID: &str = "0123456789abcdef0123456789abcdef";

fn complete_xml(parts: &[(&str, &str)]) -> String {
    let mut x =
        String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (n, e) in parts {
        x.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
        ));
    }
    x.push_str("</CompleteMultipartUpload>");
    x
}

async fn invalid_part_numbers(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let id = create_upload(&c, B, "k").await;
    for n in ["0", "10001", "abc", "-1", ""] {
        let raw = gw
            .raw("PUT", &format!("/errs/k?partNumber={n}&uploadId={id}"))
            .body("data")
            .send()
            .await;
        raw.assert_error(400, "InvalidArgument");
    }
    // The bounds themselves are fine.
    for n in ["1", "10000"] {
        let raw = gw
            .raw("PUT", &format!("/errs/k?partNumber={n}&uploadId={id}"))
            .body("data")
            .send()
            .await;
        assert_eq!(
            raw.status,
            200,
            "part {n}: {}",
            String::from_utf8_lossy(&raw.body)
        );
        assert_eq!(raw.header("etag"), Some(quoted_md5(b"data").as_str()));
    }
    let numbers: Vec<i32> = all_parts(&c, B, "k", &id)
        .await
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(numbers, vec![1, 10000], "refused parts were not stored");
}
both!(invalid_part_numbers, invalid_part_numbers);

async fn no_such_upload(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    for id in [UNKNOWN_ID, "not-an-id"] {
        let r = c
            .upload_part()
            .bucket(B)
            .key("k")
            .upload_id(id)
            .part_number(1)
            .body(b"x".to_vec().into())
            .send()
            .await;
        assert_err(r, 404, "NoSuchUpload");
        assert_err(
            c.list_parts().bucket(B).key("k").upload_id(id).send().await,
            404,
            "NoSuchUpload",
        );
        assert_err(
            try_complete(&c, B, "k", id, &[(1, "\"00\"")]).await,
            404,
            "NoSuchUpload",
        );
        assert_err(
            c.abort_multipart_upload()
                .bucket(B)
                .key("k")
                .upload_id(id)
                .send()
                .await,
            404,
            "NoSuchUpload",
        );
    }
    // A real upload id used with another key (or bucket).
    c.create_bucket()
        .bucket("other")
        .send()
        .await
        .expect("bucket");
    let id = create_upload(&c, B, "right").await;
    let e1 = upload_part(&c, B, "right", &id, 1, b"part").await;
    for (bucket, key) in [(B, "wrong"), ("other", "right")] {
        let r = c
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(2)
            .body(b"x".to_vec().into())
            .send()
            .await;
        assert_err(r, 404, "NoSuchUpload");
        assert_upload_gone(&c, bucket, key, &id).await;
        assert_err(
            try_complete(&c, bucket, key, &id, &[(1, &e1)]).await,
            404,
            "NoSuchUpload",
        );
        assert_err(
            c.abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .send()
                .await,
            404,
            "NoSuchUpload",
        );
    }
    let (status, code) = err(c.get_object().bucket(B).key("wrong").send().await);
    assert_eq!(
        (status, code.as_str()),
        (404, "NoSuchKey"),
        "a refused Complete created nothing"
    );
    // The upload is intact for its own key.
    assert_eq!(
        all_parts(&c, B, "right", &id).await,
        vec![(1, e1.clone(), 4)]
    );
    complete(&c, B, "right", &id, &[(1, &e1)]).await;
    assert_eq!(get_bytes(&c, B, "right").await, b"part");
}
both!(no_such_upload, no_such_upload);

async fn invalid_part_and_order(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let (p1, p2) = (random_bytes(5 * MIB), random_bytes(100));
    let id = create_upload(&c, B, "k").await;
    let e1 = upload_part(&c, B, "k", &id, 1, &p1).await;
    let e2 = upload_part(&c, B, "k", &id, 2, &p2).await;
    // Wrong ETag, missing part.
    assert_err(
        try_complete(&c, B, "k", &id, &[(1, &e1), (2, &quoted_md5(b"other"))]).await,
        400,
        "InvalidPart",
    );
    assert_err(
        try_complete(&c, B, "k", &id, &[(1, &e1), (3, &e2)]).await,
        400,
        "InvalidPart",
    );
    // Raw XML: descending numbers; part number 0; ETags unquoted and entity-escaped are fine.
    let path = format!("/errs/k?uploadId={id}");
    let desc = complete_xml(&[("2", &e2), ("1", &e1)]);
    gw.raw("POST", &path)
        .body(desc)
        .send()
        .await
        .assert_error(400, "InvalidPartOrder");
    let zero = complete_xml(&[("0", &e1)]);
    gw.raw("POST", &path)
        .body(zero)
        .send()
        .await
        .assert_error(400, "InvalidPart");
    assert_eq!(
        all_parts(&c, B, "k", &id).await.len(),
        2,
        "refused Completes leave the upload open"
    );
    let escaped = complete_xml(&[
        ("1", &e1.replace('"', "&quot;")),
        ("2", e2.trim_matches('"')),
    ]);
    let raw = gw.raw("POST", &path).body(escaped).send().await;
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
    assert_eq!(
        xml_text(&raw.body, "ETag").map(|e| e.replace("&quot;", "\"").replace("&#34;", "\"")),
        Some(multipart_etag(&[&p1, &p2]))
    );
}
both!(invalid_part_and_order, invalid_part_and_order);

async fn entity_too_small(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let id = create_upload(&c, B, "k").await;
    let e1 = upload_part(&c, B, "k", &id, 1, &random_bytes(MIB)).await;
    let e2 = upload_part(&c, B, "k", &id, 2, b"z").await;
    assert_err(
        try_complete(&c, B, "k", &id, &[(1, &e1), (2, &e2)]).await,
        400,
        "EntityTooSmall",
    );
    // Exactly 5 MiB is enough; the last part may be 1 byte.
    let e1 = upload_part(&c, B, "k", &id, 1, &random_bytes(5 * MIB)).await;
    let etag = complete(&c, B, "k", &id, &[(1, &e1), (2, &e2)]).await;
    assert!(etag.ends_with("-2\""), "{etag}");
    let head = c
        .head_object()
        .bucket(B)
        .key("k")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length(), Some(5 * MIB as i64 + 1));
}
both!(entity_too_small, entity_too_small);

async fn malformed_xml(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let id = create_upload(&c, B, "k").await;
    let e1 = upload_part(&c, B, "k", &id, 1, b"data").await;
    let path = format!("/errs/k?uploadId={id}");
    for body in [
        "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></CompleteMultipartUpload>",
        "<CompleteMultipartUpload/>",
        "this is not xml",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
        "",
        "<Other><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Other>",
    ] {
        let raw = gw.raw("POST", &path).body(body).send().await;
        assert_eq!(
            (raw.status, raw.code().as_deref()),
            (400, Some("MalformedXML")),
            "body {body:?}"
        );
    }
    // Through the SDK: a Complete without parts.
    let r = c
        .complete_multipart_upload()
        .bucket(B)
        .key("k")
        .upload_id(&id)
        .multipart_upload(aws_sdk_s3::types::CompletedMultipartUpload::builder().build())
        .send()
        .await;
    assert_err(r, 400, "MalformedXML");
    complete(&c, B, "k", &id, &[(1, &e1)]).await;
}
both!(malformed_xml, malformed_xml);

async fn bad_and_invalid_digest(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    put(&c, B, "k", b"original").await;
    let r = c
        .put_object()
        .bucket(B)
        .key("k")
        .content_md5(content_md5(b"something else"))
        .body(b"replacement".to_vec().into())
        .send()
        .await;
    assert_err(r, 400, "BadDigest");
    assert_eq!(
        get_bytes(&c, B, "k").await,
        b"original",
        "a BadDigest PutObject stores nothing"
    );
    let r = c
        .put_object()
        .bucket(B)
        .key("new")
        .content_md5(content_md5(b"something else"))
        .body(b"replacement".to_vec().into())
        .send()
        .await;
    assert_err(r, 400, "BadDigest");
    assert_eq!(
        err(c.head_object().bucket(B).key("new").send().await).0,
        404,
        "a refused PutObject creates nothing"
    );
    // A correct Content-MD5 is accepted.
    let out = c
        .put_object()
        .bucket(B)
        .key("k")
        .content_md5(content_md5(b"good"))
        .body(b"good".to_vec().into())
        .send()
        .await
        .expect("put with md5");
    assert_eq!(out.e_tag(), Some(quoted_md5(b"good").as_str()));

    let id = create_upload(&c, B, "mp").await;
    let e1 = upload_part(&c, B, "mp", &id, 1, b"first version").await;
    let r = c
        .upload_part()
        .bucket(B)
        .key("mp")
        .upload_id(&id)
        .part_number(1)
        .content_md5(content_md5(b"nope"))
        .body(b"second version".to_vec().into())
        .send()
        .await;
    assert_err(r, 400, "BadDigest");
    assert_eq!(
        all_parts(&c, B, "mp", &id).await,
        vec![(1, e1.clone(), 13)],
        "the old part is unchanged"
    );
    let r = c
        .upload_part()
        .bucket(B)
        .key("mp")
        .upload_id(&id)
        .part_number(2)
        .content_md5(content_md5(b"nope"))
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_err(r, 400, "BadDigest");
    assert_eq!(
        all_parts(&c, B, "mp", &id).await.len(),
        1,
        "no part 2 stored"
    );
    assert_eq!(
        blob_files(gw.data_dir(), &id).len(),
        1,
        "no file left behind by refused parts"
    );

    // InvalidDigest: not base64, not 16 bytes, empty.
    for bad in ["not base64 !!", "YWJyYWNhZGFicmE="] {
        let r = c
            .put_object()
            .bucket(B)
            .key("k")
            .content_md5(bad)
            .body(b"abc".to_vec().into())
            .send()
            .await;
        assert_err(r, 400, "InvalidDigest");
        let r = c
            .upload_part()
            .bucket(B)
            .key("mp")
            .upload_id(&id)
            .part_number(1)
            .content_md5(bad)
            .body(b"abc".to_vec().into())
            .send()
            .await;
        assert_err(r, 400, "InvalidDigest");
    }
    gw.raw("PUT", "/errs/k")
        .header("content-md5", "")
        .body("abc")
        .send()
        .await
        .assert_error(400, "InvalidDigest");
    // A flexible checksum that does not match.
    let crc_other = {
        use base64::Engine as _;
        let v = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, b"other") as u32;
        base64::engine::general_purpose::STANDARD.encode(v.to_be_bytes())
    };
    gw.raw("PUT", "/errs/k")
        .header("x-amz-checksum-crc32", &crc_other)
        .body("abc")
        .send()
        .await
        .assert_error(400, "BadDigest");
    gw.raw("PUT", &format!("/errs/mp?partNumber=1&uploadId={id}"))
        .header("x-amz-checksum-crc32", &crc_other)
        .body("abc")
        .send()
        .await
        .assert_error(400, "BadDigest");
    assert_eq!(get_bytes(&c, B, "k").await, b"good");
    assert_eq!(all_parts(&c, B, "mp", &id).await, vec![(1, e1, 13)]);
}
both!(bad_and_invalid_digest, bad_and_invalid_digest);

async fn missing_content_length(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let raw = gw.raw("PUT", "/errs/k").unsigned_payload().send_tcp().await;
    raw.assert_error(411, "MissingContentLength");
    let id = create_upload(&c, B, "k").await;
    let raw = gw
        .raw("PUT", &format!("/errs/k?partNumber=1&uploadId={id}"))
        .unsigned_payload()
        .send_tcp()
        .await;
    raw.assert_error(411, "MissingContentLength");
    // Control: the same request with a Content-Length works.
    let raw = gw
        .raw("PUT", "/errs/k")
        .unsigned_payload()
        .header("content-length", "0")
        .send_tcp()
        .await;
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
}
both!(missing_content_length, missing_content_length);

async fn entity_too_large(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| cfg.max_part_size = MIB as u64).await;
    let c = gw.bucket(B).await;
    let id = create_upload(&c, B, "k").await;
    let big = random_bytes(2 * MIB);
    let r = c
        .upload_part()
        .bucket(B)
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .body(big.clone().into())
        .send()
        .await;
    assert_err(r, 400, "EntityTooLarge");
    let r = c
        .put_object()
        .bucket(B)
        .key("k")
        .body(big.into())
        .send()
        .await;
    assert_err(r, 400, "EntityTooLarge");
    assert!(all_parts(&c, B, "k", &id).await.is_empty());
    let (status, _) = err(c.head_object().bucket(B).key("k").send().await);
    assert_eq!(status, 404);
    // Exactly the limit is fine.
    let e = upload_part(&c, B, "k", &id, 1, &random_bytes(MIB)).await;
    complete(&c, B, "k", &id, &[(1, &e)]).await;
}
both!(entity_too_large, entity_too_large);

async fn auth_errors(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    put(&c, B, "k", b"secret data").await;
    let stranger = gw.client_with("AKIDNOTKNOWN", SECRET_KEY);
    assert_err(
        stranger.list_buckets().send().await,
        403,
        "InvalidAccessKeyId",
    );
    assert_err(
        stranger.get_object().bucket(B).key("k").send().await,
        403,
        "InvalidAccessKeyId",
    );
    let wrong = gw.client_with(ACCESS_KEY, "not-the-secret");
    assert_err(
        wrong.list_buckets().send().await,
        403,
        "SignatureDoesNotMatch",
    );
    assert_err(
        wrong
            .put_object()
            .bucket(B)
            .key("k")
            .body(b"overwrite".to_vec().into())
            .send()
            .await,
        403,
        "SignatureDoesNotMatch",
    );
    assert_eq!(get_bytes(&c, B, "k").await, b"secret data");

    gw.raw("GET", "/errs/k")
        .auth(Auth::Anonymous)
        .send()
        .await
        .assert_error(403, "AccessDenied");
    gw.raw("GET", "/")
        .auth(Auth::Anonymous)
        .send()
        .await
        .assert_error(403, "AccessDenied");
    gw.raw("PUT", "/errs/anon")
        .auth(Auth::Anonymous)
        .body("x")
        .send()
        .await
        .assert_error(403, "AccessDenied");
    gw.raw("GET", "/errs/k")
        .keys("AKIDNOTKNOWN", SECRET_KEY)
        .send()
        .await
        .assert_error(403, "InvalidAccessKeyId");
    gw.raw("GET", "/errs/k")
        .keys(ACCESS_KEY, "wrong")
        .send()
        .await
        .assert_error(403, "SignatureDoesNotMatch");

    let now = SystemTime::now();
    for skewed in [
        now - Duration::from_secs(20 * 60),
        now + Duration::from_secs(20 * 60),
    ] {
        gw.raw("GET", "/errs/k")
            .signed_at(skewed)
            .send()
            .await
            .assert_error(403, "RequestTimeTooSkewed");
    }
    // Within 15 minutes is accepted.
    let raw = gw
        .raw("GET", "/errs/k")
        .signed_at(now - Duration::from_secs(10 * 60))
        .send()
        .await;
    assert_eq!(raw.status, 200);
    assert_eq!(&raw.body[..], b"secret data");
    // A body that does not match the signed payload hash.
    let raw = gw
        .raw("PUT", "/errs/k")
        .header("x-amz-content-sha256", &"0".repeat(64))
        .body("tampered")
        .send()
        .await;
    assert_eq!(
        raw.status / 100,
        4,
        "{}",
        String::from_utf8_lossy(&raw.body)
    );
    assert_eq!(get_bytes(&c, B, "k").await, b"secret data");
}
both!(auth_errors, auth_errors);

async fn presigned_urls(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let http = reqwest::Client::new();
    let data = random_bytes(50_000);

    let put_req = c
        .put_object()
        .bucket(B)
        .key("pre/signed")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .expect("presign put");
    let mut req = http.put(put_req.uri()).body(data.clone());
    for (n, v) in put_req.headers() {
        req = req.header(n, v);
    }
    let resp = req.send().await.expect("presigned PUT");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    assert_same_bytes(
        &get_bytes(&c, B, "pre/signed").await,
        &data,
        "object written through a presigned PUT",
    );

    let get_req = c
        .get_object()
        .bucket(B)
        .key("pre/signed")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .expect("presign get");
    let resp = http.get(get_req.uri()).send().await.expect("presigned GET");
    assert_eq!(resp.status().as_u16(), 200);
    assert_same_bytes(&resp.bytes().await.unwrap(), &data, "presigned GET");

    // Tampered: the signature covers the key.
    let tampered = get_req.uri().replace("pre/signed", "pre/other");
    let resp = http.get(tampered).send().await.expect("tampered GET");
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        xml_text(&resp.bytes().await.unwrap(), "Code").as_deref(),
        Some("SignatureDoesNotMatch")
    );

    // Expired: signed a minute ago, valid for one second.
    let expired = c
        .get_object()
        .bucket(B)
        .key("pre/signed")
        .presigned(
            PresigningConfig::builder()
                .start_time(SystemTime::now() - Duration::from_secs(60))
                .expires_in(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .await
        .expect("presign expired");
    let resp = http.get(expired.uri()).send().await.expect("expired GET");
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        xml_text(&resp.bytes().await.unwrap(), "Code").as_deref(),
        Some("AccessDenied")
    );

    // Expiry as it happens: valid now, refused once the 2 s are over (X-Amz-Date has whole seconds).
    let short = c
        .get_object()
        .bucket(B)
        .key("pre/signed")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(2)).unwrap())
        .await
        .expect("presign short");
    assert_eq!(
        http.get(short.uri())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        http.get(short.uri())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
}
both!(presigned_urls, presigned_urls);

async fn request_id_and_head_errors(store: Store) {
    let gw = TestGateway::start(store).await;
    gw.bucket(B).await;
    let raw = gw.raw("GET", "/errs/missing").send().await;
    raw.assert_error(404, "NoSuchKey");
    let header_id = raw
        .header("x-amz-request-id")
        .expect("x-amz-request-id header")
        .to_owned();
    assert!(!header_id.is_empty());
    assert_eq!(
        xml_text(&raw.body, "RequestId").as_deref(),
        Some(header_id.as_str())
    );
    assert_eq!(
        xml_text(&raw.body, "Resource").as_deref(),
        Some("/errs/missing")
    );
    assert!(xml_text(&raw.body, "Message").is_some_and(|m| !m.is_empty()));
    assert_eq!(raw.header("content-type"), Some("application/xml"));
    let other = gw.raw("GET", "/errs/missing").send().await;
    assert_ne!(
        other.header("x-amz-request-id"),
        Some(header_id.as_str()),
        "request ids are per request"
    );
    assert!(
        gw.raw("GET", "/")
            .send()
            .await
            .header("x-amz-request-id")
            .is_some(),
        "also on success"
    );

    for path in ["/errs/missing", "/nobucket/k", "/nobucket"] {
        let raw = gw.raw("HEAD", path).send().await;
        assert_eq!(raw.status, 404, "HEAD {path}");
        assert!(raw.body.is_empty(), "HEAD {path} has a body");
        assert!(raw.header("x-amz-request-id").is_some());
    }
}
both!(request_id_and_head_errors, request_id_and_head_errors);

async fn other_error_codes(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    put(&c, B, "k", b"x").await;
    // Unsupported sub-resources.
    gw.raw("GET", "/errs?tagging")
        .send()
        .await
        .assert_error(501, "NotImplemented");
    gw.raw("PUT", "/errs?policy")
        .body("{}")
        .send()
        .await
        .assert_error(501, "NotImplemented");
    assert_err(
        c.get_object_legal_hold().bucket(B).key("k").send().await,
        501,
        "NotImplemented",
    );
    assert_eq!(
        get_bytes(&c, B, "k").await,
        b"x",
        "a sub-resource request is never an object operation"
    );
    // Method not allowed on an object.
    gw.raw("POST", "/errs/k")
        .send()
        .await
        .assert_error(405, "MethodNotAllowed");
    // Key too long.
    let long = "k".repeat(1025);
    assert_err(
        c.put_object()
            .bucket(B)
            .key(&long)
            .body(b"x".to_vec().into())
            .send()
            .await,
        400,
        "KeyTooLongError",
    );
    assert_err(
        c.create_multipart_upload()
            .bucket(B)
            .key(&long)
            .send()
            .await,
        400,
        "KeyTooLongError",
    );
    put(&c, B, &"k".repeat(1024), b"ok").await;
    // Bad listing parameters.
    let id = create_upload(&c, B, "k").await;
    gw.raw("GET", &format!("/errs/k?uploadId={id}&max-parts=abc"))
        .send()
        .await
        .assert_error(400, "InvalidArgument");
    gw.raw("GET", &format!("/errs/k?uploadId={id}&max-parts=-1"))
        .send()
        .await
        .assert_error(400, "InvalidArgument");
    gw.raw("GET", "/errs?list-type=2&max-keys=abc")
        .send()
        .await
        .assert_error(400, "InvalidArgument");
    gw.raw("GET", "/errs?uploads&max-uploads=x")
        .send()
        .await
        .assert_error(400, "InvalidArgument");
    gw.raw("GET", "/errs?encoding-type=base64")
        .send()
        .await
        .assert_error(400, "InvalidArgument");
    // Missing key / bucket.
    assert_err(
        c.get_object().bucket(B).key("nope").send().await,
        404,
        "NoSuchKey",
    );
    assert_err(
        c.get_object().bucket("nobucket").key("k").send().await,
        404,
        "NoSuchBucket",
    );
    assert_err(
        c.list_parts()
            .bucket("nobucket")
            .key("k")
            .upload_id(&id)
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    // Conditional reads.
    let etag = quoted_md5(b"x");
    assert_err(
        c.get_object()
            .bucket(B)
            .key("k")
            .if_match("\"0000\"")
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    let (status, _) = err(c
        .get_object()
        .bucket(B)
        .key("k")
        .if_none_match(&etag)
        .send()
        .await);
    assert_eq!(status, 304);
    c.get_object()
        .bucket(B)
        .key("k")
        .if_match(&etag)
        .send()
        .await
        .expect("If-Match with the right ETag");
}
both!(other_error_codes, other_error_codes);

/// A client waiting for `100 Continue` gets the error at once, without sending its body.
async fn early_error_with_expect_continue(store: Store) {
    use tokio::io::AsyncWriteExt as _;
    let gw = TestGateway::start(store).await;
    gw.bucket(B).await;
    let (addr, head, _) = gw
        .raw(
            "PUT",
            &format!("/errs/k?partNumber=1&uploadId={UNKNOWN_ID}"),
        )
        .unsigned_payload()
        .header("content-length", &(8 * MIB).to_string())
        .header("expect", "100-continue")
        .into_wire();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(&head).await.expect("write head");
    let resp = read_response(&mut s).await;
    resp.assert_error(404, "NoSuchUpload");
}
both!(
    early_error_with_expect_continue,
    early_error_with_expect_continue
);

/// Errors found before the body is read (unknown upload, missing bucket, too large) reach a
/// client that sends a large body without `Expect: 100-continue`, as a response, not as a
/// broken connection.
async fn early_error_with_large_body(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| cfg.max_part_size = 4 * MIB as u64).await;
    let c = gw.bucket(B).await;
    let body = random_bytes(8 * MIB);
    for round in 0..3 {
        let r = c
            .upload_part()
            .bucket(B)
            .key("k")
            .upload_id(UNKNOWN_ID)
            .part_number(1)
            .body(body.clone().into())
            .send()
            .await;
        assert_eq!(
            err_or_transport(r),
            Ok((404, "NoSuchUpload".to_owned())),
            "UploadPart (8 MiB) to an unknown upload, round {round}"
        );
        let r = c
            .put_object()
            .bucket("nobucket")
            .key("k")
            .body(body.clone().into())
            .send()
            .await;
        assert_eq!(
            err_or_transport(r),
            Ok((404, "NoSuchBucket".to_owned())),
            "PutObject (8 MiB) to a missing bucket, round {round}"
        );
        let r = c
            .put_object()
            .bucket(B)
            .key("k")
            .body(body.clone().into())
            .send()
            .await;
        assert_eq!(
            err_or_transport(r),
            Ok((400, "EntityTooLarge".to_owned())),
            "PutObject (8 MiB) over a 4 MiB max-part-size, round {round}"
        );
    }
}
both!(early_error_with_large_body, early_error_with_large_body);
