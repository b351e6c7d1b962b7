//! Listings and names where clients and conformance suites look closely (issue 14, point 5):
//! empty pages, `encoding-type=url` on every key-bearing field, ListBuckets pagination,
//! re-creating one's own bucket, ACLs, non-ASCII metadata, 501s named in the metrics.

use aws_sdk_s3::types::{
    AccessControlPolicy, BucketCannedAcl, Grant, Grantee, ObjectCannedAcl, Owner, Permission, Type,
};

use crate::harness::*;

const B: &str = "lists";

/// Decodes one level of percent-encoding (what a client does with `encoding-type=url`).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .expect("utf-8")
        .into_owned()
}

async fn max_keys_zero(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    for k in ["a", "b/c", "d"] {
        put(&c, B, k, b"x").await;
    }
    create_upload(&c, B, "u").await;
    for (path, item) in [
        ("/lists?max-keys=0", "Contents"),
        ("/lists?list-type=2&max-keys=0", "Contents"),
        (
            "/lists?list-type=2&max-keys=0&delimiter=/",
            "CommonPrefixes",
        ),
        ("/lists?versions&max-keys=0", "Version"),
        ("/lists?uploads&max-uploads=0", "Upload"),
    ] {
        let r = gw.raw("GET", path).send().await;
        assert_eq!(r.status, 200, "{path}");
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(
            xml_text(&r.body, "IsTruncated").as_deref(),
            Some("false"),
            "{path}: {body}"
        );
        assert!(!body.contains(&format!("<{item}>")), "{path}: {body}");
        for next in ["NextMarker", "NextContinuationToken", "NextKeyMarker"] {
            assert!(!body.contains(next), "{path}: {body}");
        }
    }
    let r = gw.raw("GET", "/lists?list-type=2&max-keys=0").send().await;
    assert_eq!(xml_text(&r.body, "KeyCount").as_deref(), Some("0"));
    assert_eq!(xml_text(&r.body, "MaxKeys").as_deref(), Some("0"));
    let r = gw.raw("GET", "/lists?uploads&max-uploads=0").send().await;
    assert_eq!(xml_text(&r.body, "MaxUploads").as_deref(), Some("0"));
    let out = c
        .list_objects_v2()
        .bucket(B)
        .max_keys(0)
        .send()
        .await
        .expect("list");
    assert_eq!(out.is_truncated(), Some(false));
    assert_eq!(out.key_count(), Some(0));
    assert!(out.contents().is_empty());
    // One key still pages as before.
    let out = c
        .list_objects_v2()
        .bucket(B)
        .max_keys(1)
        .send()
        .await
        .expect("list");
    assert_eq!(out.is_truncated(), Some(true));
    assert_eq!(out.contents().len(), 1);
}
both!(max_keys_zero, max_keys_zero);

/// One element of a listing answer and its values once decoded.
type Field = (&'static str, &'static [&'static str]);

/// Every key-bearing field of every listing is percent-encoded exactly once: decoded once, a
/// key holding a newline (and a literal `%`) comes back as it was written.
async fn url_encoding_every_field(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    let keys = ["n\nl/a", "n\nl/b", "n\nl%41", "n\nlz", "p\nq"];
    for k in keys {
        put(&c, B, k, b"x").await;
        create_upload(&c, B, k).await;
    }
    // (request, element, value once decoded)
    let cases: &[(&str, &[Field])] = &[
        (
            "/lists?encoding-type=url&prefix=n%0Al&delimiter=%2F&marker=n%0Al%2541&max-keys=1",
            &[
                ("Prefix", &["n\nl/"]),
                ("Delimiter", &["/"]),
                ("Marker", &["n\nl%41"]),
                ("NextMarker", &["n\nl/"]),
            ],
        ),
        (
            "/lists?encoding-type=url&prefix=n%0Al&marker=n%0Al%2541",
            &[("Key", &["n\nl/a", "n\nl/b", "n\nlz"])],
        ),
        (
            "/lists?list-type=2&encoding-type=url&prefix=n%0A&start-after=n%0Al%2541&delimiter=%2F",
            &[
                ("Prefix", &["n\n", "n\nl/"]),
                ("StartAfter", &["n\nl%41"]),
                ("Delimiter", &["/"]),
            ],
        ),
        (
            "/lists?list-type=2&encoding-type=url&start-after=n%0Al%2F",
            &[("Key", &["n\nl/a", "n\nl/b", "n\nlz", "p\nq"])],
        ),
        (
            "/lists?versions&encoding-type=url&prefix=n%0A&key-marker=n%0Al%2541&max-keys=1",
            &[
                ("Prefix", &["n\n"]),
                ("KeyMarker", &["n\nl%41"]),
                ("NextKeyMarker", &["n\nl/a"]),
                ("Key", &["n\nl/a"]),
            ],
        ),
        (
            "/lists?versions&encoding-type=url&delimiter=%0A",
            &[("Delimiter", &["\n"]), ("Prefix", &["", "n\n", "p\n"])],
        ),
        (
            "/lists?uploads&encoding-type=url&prefix=n%0A&key-marker=n%0Al%2541&max-uploads=1",
            &[
                ("Prefix", &["n\n"]),
                ("KeyMarker", &["n\nl%41"]),
                ("NextKeyMarker", &["n\nl/a"]),
                ("Key", &["n\nl/a"]),
            ],
        ),
        (
            "/lists?uploads&encoding-type=url&delimiter=%0A",
            &[("Delimiter", &["\n"]), ("Prefix", &["", "n\n", "p\n"])],
        ),
    ];
    for (path, fields) in cases {
        let r = gw.raw("GET", path).send().await;
        assert_eq!(r.status, 200, "{path}");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(xml_text(&r.body, "EncodingType").as_deref(), Some("url"));
        // ListObjects v1 alone echoes its own Prefix unencoded (AWS; botocore relies on it).
        let v1 = !path.contains("list-type=2")
            && !path.contains("versions")
            && !path.contains("uploads");
        let mut raw_body = r.body.to_vec();
        if v1 {
            let top = xml_text(&r.body, "Prefix").expect("Prefix");
            assert_eq!(top, "n\nl", "{path}: v1 Prefix as sent; body {body}");
            let at = body.find(&format!("<Prefix>{top}</Prefix>")).unwrap();
            raw_body.drain(at..at + "<Prefix></Prefix>".len() + top.len());
        }
        for (name, want) in *fields {
            let raw = xml_texts(&raw_body, name);
            assert!(
                raw.iter()
                    .all(|v| !v.contains('\n') && !v.contains("%250A")),
                "{path}: <{name}> not encoded once: {raw:?}"
            );
            let got: Vec<String> = raw.iter().map(|v| decode(v)).collect();
            assert_eq!(got, *want, "{path}: <{name}>; body {body}");
        }
    }
    // The SDK does not decode: its view is the encoded one.
    let out = c
        .list_objects_v2()
        .bucket(B)
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .prefix("p\n")
        .send()
        .await
        .expect("list");
    assert_eq!(out.prefix(), Some("p%0A"));
    let listed: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(listed, vec!["p%0Aq"]);
    // Without encoding-type the keys come back literally.
    let out = c.list_objects_v2().bucket(B).prefix("p\n").send().await;
    let out = out.expect("list");
    let listed: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(listed, vec!["p\nq"]);
}
both!(url_encoding_every_field, url_encoding_every_field);

async fn list_buckets_pages(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.client();
    let names = ["aa1", "aa2", "aa3", "bb1", "cc1"];
    for n in names {
        c.create_bucket().bucket(n).send().await.expect("create");
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = c
            .list_buckets()
            .max_buckets(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list buckets");
        pages += 1;
        assert!(out.buckets().len() <= 2);
        for b in out.buckets() {
            seen.push(b.name().unwrap().to_owned());
            assert_eq!(b.bucket_region(), Some("us-east-1"));
        }
        match out.continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, names);
    assert_eq!(pages, 3);
    // A page that ends exactly at the last bucket names no next one.
    let out = c.list_buckets().max_buckets(5).send().await.expect("list");
    assert_eq!(out.buckets().len(), 5);
    assert_eq!(out.continuation_token(), None);

    let out = c.list_buckets().prefix("aa").send().await.expect("prefix");
    let got: Vec<&str> = out.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(got, vec!["aa1", "aa2", "aa3"]);
    assert_eq!(out.prefix(), Some("aa"));
    assert_eq!(out.continuation_token(), None);
    let out = c
        .list_buckets()
        .prefix("aa")
        .max_buckets(2)
        .send()
        .await
        .expect("prefix page");
    let got: Vec<&str> = out.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(got, vec!["aa1", "aa2"]);
    let next = out.continuation_token().expect("more").to_owned();
    let out = c
        .list_buckets()
        .prefix("aa")
        .continuation_token(next)
        .send()
        .await
        .expect("prefix page 2");
    let got: Vec<&str> = out.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(got, vec!["aa3"]);

    let out = c
        .list_buckets()
        .bucket_region("us-east-1")
        .send()
        .await
        .expect("region");
    assert_eq!(out.buckets().len(), 5);
    let out = c
        .list_buckets()
        .bucket_region("eu-west-1")
        .send()
        .await
        .expect("other region");
    assert!(out.buckets().is_empty());

    // Unpaginated, the answer is as before: every bucket, no region, no token.
    let r = gw.raw("GET", "/").send().await;
    assert_eq!(xml_texts(&r.body, "Name"), names);
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains("BucketRegion") && !body.contains("ContinuationToken"));

    for bad in ["0", "10001", "-1", "x"] {
        gw.raw("GET", &format!("/?max-buckets={bad}"))
            .send()
            .await
            .assert_error(400, "InvalidArgument");
    }
    gw.raw("GET", "/?continuation-token=%21%21")
        .send()
        .await
        .assert_error(400, "InvalidArgument");
}
both!(list_buckets_pages, list_buckets_pages);

/// us-east-1 (the default region) answers 200 to re-creating one's own bucket and changes
/// nothing; another region answers 409 BucketAlreadyOwnedByYou.
async fn create_own_bucket_again(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    put(&c, B, "keep", b"kept").await;
    let before = c.list_buckets().send().await.expect("list");
    let created = before.buckets()[0].creation_date().copied();
    c.create_bucket()
        .bucket(B)
        .send()
        .await
        .expect("create again in us-east-1");
    let r = gw.raw("PUT", "/lists").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("location"), Some("/lists"));
    let after = c.list_buckets().send().await.expect("list");
    assert_eq!(after.buckets().len(), 1);
    assert_eq!(after.buckets()[0].creation_date().copied(), created);
    assert_eq!(get_bytes(&c, B, "keep").await, b"kept");
    drop(gw);

    let gw = TestGateway::start_with(store, |cfg| cfg.region = "eu-west-1".into()).await;
    let c = gw.bucket(B).await;
    assert_err(
        c.create_bucket().bucket(B).send().await,
        409,
        "BucketAlreadyOwnedByYou",
    );
}
both!(create_own_bucket_again, create_own_bucket_again);

async fn acls(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    put(&c, B, "k", b"x").await;

    // A canned ACL S3 does not know: 400 InvalidArgument wherever x-amz-acl is read.
    for (method, path) in [
        ("PUT", "/lists/bad"),
        ("PUT", "/newbucket"),
        ("POST", "/lists/bad?uploads"),
        ("PUT", "/lists/k?acl"),
        ("PUT", "/lists?acl"),
    ] {
        gw.raw(method, path)
            .header("x-amz-acl", "public-fullcontrol")
            .send()
            .await
            .assert_error(400, "InvalidArgument");
    }
    gw.raw("PUT", "/lists/copy")
        .header("x-amz-copy-source", "/lists/k")
        .header("x-amz-acl", "public-fullcontrol")
        .send()
        .await
        .assert_error(400, "InvalidArgument");
    assert_eq!(
        err(c.head_object().bucket(B).key("bad").send().await).0,
        404
    );
    assert_eq!(err(c.head_bucket().bucket("newbucket").send().await).0, 404);
    // Known canned ACLs on writes are accepted, as before.
    c.put_object()
        .bucket(B)
        .key("p")
        .acl(ObjectCannedAcl::Private)
        .body(b"y".to_vec().into())
        .send()
        .await
        .expect("put with private");

    // The owner's FULL_CONTROL, for the bucket and for the object.
    let acl = c
        .get_bucket_acl()
        .bucket(B)
        .send()
        .await
        .expect("bucket acl");
    assert_eq!(acl.owner().and_then(Owner::id), Some(ACCESS_KEY));
    let grants = acl.grants();
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(g.permission(), Some(&Permission::FullControl));
    let grantee = g.grantee().expect("grantee");
    assert_eq!(grantee.r#type(), &Type::CanonicalUser);
    assert_eq!(grantee.id(), Some(ACCESS_KEY));
    let acl = c
        .get_object_acl()
        .bucket(B)
        .key("k")
        .send()
        .await
        .expect("object acl");
    assert_eq!(acl.owner().and_then(Owner::id), Some(ACCESS_KEY));
    assert_eq!(acl.grants().len(), 1);
    assert_eq!(
        acl.grants()[0].grantee().and_then(Grantee::id),
        Some(ACCESS_KEY)
    );
    assert_err(
        c.get_object_acl().bucket(B).key("nope").send().await,
        404,
        "NoSuchKey",
    );
    assert_err(
        c.get_bucket_acl().bucket("nobucket").send().await,
        404,
        "NoSuchBucket",
    );

    // `private`, as a canned ACL or as the owner-only policy, is accepted and changes nothing.
    c.put_object_acl()
        .bucket(B)
        .key("k")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .expect("put object acl private");
    c.put_bucket_acl()
        .bucket(B)
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .expect("put bucket acl private");
    let owner_only = |extra: Option<Grant>| {
        let me = Grantee::builder()
            .r#type(Type::CanonicalUser)
            .id(ACCESS_KEY)
            .build()
            .unwrap();
        let mut p = AccessControlPolicy::builder()
            .owner(Owner::builder().id(ACCESS_KEY).build())
            .grants(
                Grant::builder()
                    .grantee(me)
                    .permission(Permission::FullControl)
                    .build(),
            );
        if let Some(g) = extra {
            p = p.grants(g);
        }
        p.build()
    };
    c.put_object_acl()
        .bucket(B)
        .key("k")
        .access_control_policy(owner_only(None))
        .send()
        .await
        .expect("put object acl policy");
    c.put_bucket_acl()
        .bucket(B)
        .access_control_policy(owner_only(None))
        .send()
        .await
        .expect("put bucket acl policy");
    c.put_object_acl()
        .bucket(B)
        .key("k")
        .grant_full_control(format!("id={ACCESS_KEY}"))
        .send()
        .await
        .expect("put object acl grant header");

    // Public grants are refused as on a bucket that blocks public ACLs.
    assert_err(
        c.put_object_acl()
            .bucket(B)
            .key("k")
            .acl(ObjectCannedAcl::PublicRead)
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        c.put_bucket_acl()
            .bucket(B)
            .acl(BucketCannedAcl::PublicReadWrite)
            .send()
            .await,
        403,
        "AccessDenied",
    );
    let everyone = Grant::builder()
        .grantee(
            Grantee::builder()
                .r#type(Type::Group)
                .uri("http://acs.amazonaws.com/groups/global/AllUsers")
                .build()
                .unwrap(),
        )
        .permission(Permission::Read)
        .build();
    assert_err(
        c.put_object_acl()
            .bucket(B)
            .key("k")
            .access_control_policy(owner_only(Some(everyone)))
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        c.put_bucket_acl()
            .bucket(B)
            .grant_read("uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"")
            .send()
            .await,
        403,
        "AccessDenied",
    );
    // Grants to someone else cannot be kept.
    assert_err(
        c.put_object_acl()
            .bucket(B)
            .key("k")
            .grant_read("id=someone-else")
            .send()
            .await,
        501,
        "NotImplemented",
    );
    gw.raw("PUT", "/lists/k?acl")
        .body("<AccessControlPolicy><nope")
        .send()
        .await
        .assert_error(400, "MalformedACLError");
    assert_err(
        c.put_object_acl()
            .bucket(B)
            .key("nope")
            .acl(ObjectCannedAcl::Private)
            .send()
            .await,
        404,
        "NoSuchKey",
    );
    // Nothing changed: the object is still readable by its owner, the ACL still the one grant.
    assert_eq!(get_bytes(&c, B, "k").await, b"x");
    let acl = c.get_object_acl().bucket(B).key("k").send().await.unwrap();
    assert_eq!(acl.grants().len(), 1);
}
both!(acls, acls);

/// The ACL operations follow the ownership rules: another key gets AccessDenied.
async fn acl_ownership(store: Store) {
    const OTHER: &str = "MPGWOTHERACCESSKEY";
    const OTHER_SECRET: &str = "mpgw-other-secret-0123456789";
    let gw = TestGateway::start_with(store, |cfg| {
        cfg.access_keys.push(OTHER.into());
        cfg.secret_keys.push(OTHER_SECRET.into());
    })
    .await;
    let c = gw.bucket(B).await;
    put(&c, B, "k", b"x").await;
    let other = gw.client_with(OTHER, OTHER_SECRET);
    assert_err(
        other.get_bucket_acl().bucket(B).send().await,
        403,
        "AccessDenied",
    );
    assert_err(
        other.get_object_acl().bucket(B).key("k").send().await,
        403,
        "AccessDenied",
    );
    assert_err(
        other
            .put_object_acl()
            .bucket(B)
            .key("k")
            .acl(ObjectCannedAcl::Private)
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        other
            .put_bucket_acl()
            .bucket(B)
            .acl(BucketCannedAcl::Private)
            .send()
            .await,
        403,
        "AccessDenied",
    );
    let acl = c.get_object_acl().bucket(B).key("k").send().await.unwrap();
    assert_eq!(acl.owner().and_then(Owner::id), Some(ACCESS_KEY));
}
both!(acl_ownership, acl_ownership);

/// What is not implemented is still named (operation) in the metrics and the access log, and
/// UploadPartCopy names no source version on an unversioned bucket.
async fn unimplemented_is_named(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    put(&c, B, "src", &random_bytes(1000)).await;
    gw.raw("PUT", "/lists/src?legal-hold")
        .body("<LegalHold/>")
        .send()
        .await
        .assert_error(501, "NotImplemented");
    gw.raw("GET", "/lists?website")
        .send()
        .await
        .assert_error(501, "NotImplemented");
    let want = [
        "mpgw_requests_total{op=\"PutObjectLegalHold\",status=\"501\"} 1",
        "mpgw_requests_total{op=\"GetBucketWebsite\",status=\"501\"} 1",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let text = operator_get(&format!("{}/metrics", gw.endpoint()))
            .await
            .text()
            .await
            .unwrap();
        if want.iter().all(|w| text.contains(w)) || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    for w in want {
        assert!(text.contains(w), "{w} missing from:\n{text}");
    }
    assert!(!text.contains("op=\"Unknown\",status=\"501\""), "{text}");

    let id = create_upload(&c, B, "dst").await;
    let r = gw
        .raw("PUT", &format!("/lists/dst?partNumber=1&uploadId={id}"))
        .header("x-amz-copy-source", "/lists/src")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-amz-copy-source-version-id"), None);
    let out = c
        .upload_part_copy()
        .bucket(B)
        .key("dst")
        .upload_id(&id)
        .part_number(2)
        .copy_source("lists/src")
        .send()
        .await
        .expect("upload part copy");
    assert_eq!(out.copy_source_version_id(), None);
}
both!(unimplemented_is_named, unimplemented_is_named);

/// Non-ASCII user metadata comes back as AWS answers it: the bytes read as ISO-8859-1, RFC 2047
/// encoded in UTF-8 (`Q` when most characters are ASCII, as S3 chooses), on PutObject,
/// CopyObject and multipart objects alike; ASCII comes back as sent. Python's
/// `email.header.decode_header` of each expected value, read back as ISO-8859-1 bytes, gives the
/// UTF-8 text the SDK sent.
async fn non_ascii_metadata(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    // The SDK sends "café" as UTF-8: c a f 0xC3 0xA9, five ISO-8859-1 characters.
    let want = "=?UTF-8?Q?caf=C3=83=C2=A9?=";
    c.put_object()
        .bucket(B)
        .key("m")
        .metadata("word", "café")
        .metadata("plain", "as sent")
        .body(b"x".to_vec().into())
        .send()
        .await
        .expect("put");
    let head = c.head_object().bucket(B).key("m").send().await.unwrap();
    let meta = head.metadata().expect("metadata");
    assert_eq!(meta.get("word").map(String::as_str), Some(want));
    assert_eq!(meta.get("plain").map(String::as_str), Some("as sent"));
    let out = c.get_object().bucket(B).key("m").send().await.unwrap();
    assert_eq!(
        out.metadata()
            .and_then(|m| m.get("word"))
            .map(String::as_str),
        Some(want)
    );
    c.copy_object()
        .bucket(B)
        .key("copied")
        .copy_source("lists/m")
        .send()
        .await
        .expect("copy");
    let head = c
        .head_object()
        .bucket(B)
        .key("copied")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("word"))
            .map(String::as_str),
        Some(want)
    );
    let up = c
        .create_multipart_upload()
        .bucket(B)
        .key("mp")
        .metadata("word", "ö")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_owned();
    let e = upload_part(&c, B, "mp", &id, 1, b"part").await;
    complete(&c, B, "mp", &id, &[(1, e.as_str())]).await;
    let head = c.head_object().bucket(B).key("mp").send().await.unwrap();
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("word"))
            .map(String::as_str),
        Some("=?UTF-8?B?w4PCtg==?=")
    );
}
both!(non_ascii_metadata, non_ascii_metadata);
