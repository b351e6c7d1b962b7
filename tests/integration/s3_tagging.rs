//! Object tags: Put/Get/DeleteObjectTagging, `x-amz-tagging` on PutObject,
//! CreateMultipartUpload (applied at Complete) and CopyObject (with `x-amz-tagging-directive`),
//! `x-amz-tagging-count` on GET and HEAD, AWS's limits and answers, ownership and signing of the
//! `tagging` sub-resource, against both state stores.

use aws_sdk_s3::types::{MetadataDirective, Tag, Tagging, TaggingDirective};

use crate::harness::*;

const B: &str = "tags";

/// The object's tags as (key, value) pairs, in the order the server returns them.
async fn tags_of(c: &aws_sdk_s3::Client, key: &str) -> Vec<(String, String)> {
    c.get_object_tagging()
        .bucket(B)
        .key(key)
        .send()
        .await
        .expect("get object tagging")
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn tagging(list: &[(&str, &str)]) -> Tagging {
    let tags = list
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
        .collect();
    Tagging::builder().set_tag_set(Some(tags)).build().unwrap()
}

/// `x-amz-tagging-count` of GET and HEAD (the SDK's `tag_count`), which must agree.
async fn tag_count(c: &aws_sdk_s3::Client, key: &str) -> Option<i32> {
    let head = c.head_object().bucket(B).key(key).send().await.unwrap();
    let get = c.get_object().bucket(B).key(key).send().await.unwrap();
    assert_eq!(head.tag_count(), get.tag_count(), "GET and HEAD agree");
    head.tag_count()
}

async fn tag_operations(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;

    // PutObject with x-amz-tagging: the tags in the order sent, `+` a space, `=` in a value.
    c.put_object()
        .bucket(B)
        .key("k")
        .tagging("z=1&a=&b+c=d%2Be=f")
        .body(b"hello".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(&c, "k").await,
        pairs(&[("z", "1"), ("a", ""), ("b c", "d+e=f")])
    );
    assert_eq!(tag_count(&c, "k").await, Some(3));
    assert_eq!(get_bytes(&c, B, "k").await, b"hello");

    // An object without tags has an empty TagSet and no count header at all.
    put(&c, B, "plain", b"x").await;
    assert!(tags_of(&c, "plain").await.is_empty());
    let head = gw.raw("HEAD", &format!("/{B}/plain")).send().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-amz-tagging-count"), None);
    let doc = gw.raw("GET", &format!("/{B}/plain?tagging")).send().await;
    assert_eq!(doc.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&doc.body),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet></TagSet></Tagging>"
    );

    // PutObjectTagging replaces the whole set; ten tags at the longest lengths, in Unicode
    // characters (a 128-character key of 4-byte letters), are accepted.
    let long_key = "𝒜".repeat(128);
    let long_value = "文".repeat(256);
    let mut ten: Vec<(String, String)> =
        (0..8).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    ten.push(("b c+d-e=f.g_h:i/j@k".into(), "2 + 2 = 4".into()));
    ten.push((long_key, long_value));
    let set: Vec<(&str, &str)> = ten.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let put_tags = c
        .put_object_tagging()
        .bucket(B)
        .key("k")
        .tagging(tagging(&set))
        .send()
        .await
        .unwrap();
    assert_eq!(put_tags.version_id(), None);
    assert_eq!(tags_of(&c, "k").await, ten);
    assert_eq!(tag_count(&c, "k").await, Some(10));
    // The object itself is unchanged: bytes, ETag, Last-Modified.
    let before = c.head_object().bucket(B).key("plain").send().await.unwrap();
    c.put_object_tagging()
        .bucket(B)
        .key("plain")
        .tagging(tagging(&[("only", "one")]))
        .send()
        .await
        .unwrap();
    let after = c.head_object().bucket(B).key("plain").send().await.unwrap();
    assert_eq!(
        (before.e_tag(), before.last_modified()),
        (after.e_tag(), after.last_modified())
    );
    assert_eq!(tags_of(&c, "plain").await, pairs(&[("only", "one")]));

    // DeleteObjectTagging: 204, then no tags and no count; an empty set does the same.
    let raw = gw
        .raw("DELETE", &format!("/{B}/plain?tagging"))
        .send()
        .await;
    assert_eq!(raw.status, 204);
    assert!(tags_of(&c, "plain").await.is_empty());
    assert_eq!(tag_count(&c, "plain").await, None);
    c.put_object_tagging()
        .bucket(B)
        .key("k")
        .tagging(tagging(&[]))
        .send()
        .await
        .unwrap();
    assert!(tags_of(&c, "k").await.is_empty());

    // A replaced object has the new object's tags (none here); a deleted one takes its tags along.
    c.put_object()
        .bucket(B)
        .key("r")
        .tagging("old=1")
        .body(b"1".to_vec().into())
        .send()
        .await
        .unwrap();
    put(&c, B, "r", b"2").await;
    assert!(tags_of(&c, "r").await.is_empty());
    c.put_object()
        .bucket(B)
        .key("r")
        .tagging("new=2")
        .body(b"3".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&c, "r").await, pairs(&[("new", "2")]));
    c.delete_object().bucket(B).key("r").send().await.unwrap();
    assert_err(
        c.get_object_tagging().bucket(B).key("r").send().await,
        404,
        "NoSuchKey",
    );
    put(&c, B, "r", b"4").await;
    assert!(tags_of(&c, "r").await.is_empty());

    // Missing keys and buckets.
    assert_err(
        c.put_object_tagging()
            .bucket(B)
            .key("missing")
            .tagging(tagging(&[("a", "1")]))
            .send()
            .await,
        404,
        "NoSuchKey",
    );
    assert_err(
        c.delete_object_tagging()
            .bucket(B)
            .key("missing")
            .send()
            .await,
        404,
        "NoSuchKey",
    );
    assert_err(
        c.get_object_tagging().bucket("nope").key("k").send().await,
        404,
        "NoSuchBucket",
    );
    // Buckets have no tags here: still answered 501, naming the sub-resource.
    let raw = gw.raw("GET", &format!("/{B}?tagging")).send().await;
    raw.assert_error(501, "NotImplemented");
}
both!(tag_operations, tag_operations);

async fn multipart_and_copy(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;

    // CreateMultipartUpload keeps the tags with the upload; the object gets them at Complete.
    let id = c
        .create_multipart_upload()
        .bucket(B)
        .key("mp")
        .tagging("stage=raw&team=a")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    assert_err(
        c.get_object_tagging().bucket(B).key("mp").send().await,
        404,
        "NoSuchKey",
    );
    let etag = upload_part(&c, B, "mp", &id, 1, b"part").await;
    complete(&c, B, "mp", &id, &[(1, &etag)]).await;
    assert_eq!(
        tags_of(&c, "mp").await,
        pairs(&[("stage", "raw"), ("team", "a")])
    );
    assert_eq!(tag_count(&c, "mp").await, Some(2));
    // A refused tag set creates no upload.
    assert_err(
        c.create_multipart_upload()
            .bucket(B)
            .key("mp2")
            .tagging("a=1&a=2")
            .send()
            .await,
        400,
        "InvalidArgument",
    );
    let open = c.list_multipart_uploads().bucket(B).send().await.unwrap();
    assert!(open.uploads().is_empty());

    // CopyObject: COPY (the default) takes the source's tags, whatever x-amz-tagging says.
    let copy = |dst: &'static str| {
        c.copy_object()
            .bucket(B)
            .key(dst)
            .copy_source(format!("{B}/mp"))
    };
    copy("c1").tagging("ignored=1").send().await.unwrap();
    assert_eq!(tags_of(&c, "c1").await, tags_of(&c, "mp").await);
    copy("c2")
        .tagging_directive(TaggingDirective::Copy)
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&c, "c2").await.len(), 2);
    // REPLACE takes the request's tags, or none.
    copy("c3")
        .tagging_directive(TaggingDirective::Replace)
        .tagging("fresh=yes")
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&c, "c3").await, pairs(&[("fresh", "yes")]));
    copy("c4")
        .tagging_directive(TaggingDirective::Replace)
        .send()
        .await
        .unwrap();
    assert!(tags_of(&c, "c4").await.is_empty());
    // The two directives are independent: new metadata keeps the source's tags.
    copy("c5")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("m", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&c, "c5").await.len(), 2);
    // The source's tags are untouched; the copy's are its own.
    c.delete_object_tagging()
        .bucket(B)
        .key("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&c, "mp").await.len(), 2);
    // Copying onto itself with new metadata and new tags replaces both.
    c.copy_object()
        .bucket(B)
        .key("mp")
        .copy_source(format!("{B}/mp"))
        .metadata_directive(MetadataDirective::Replace)
        .tagging_directive(TaggingDirective::Replace)
        .tagging("self=1")
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&c, "mp").await, pairs(&[("self", "1")]));

    // AWS's refusals.
    let raw = gw
        .raw("PUT", &format!("/{B}/c6"))
        .header("x-amz-copy-source", &format!("/{B}/mp"))
        .header("x-amz-tagging-directive", "MERGE")
        .send()
        .await;
    raw.assert_error(400, "InvalidArgument");
    assert_eq!(
        xml_text(&raw.body, "Message").as_deref(),
        Some("Unknown tagging directive.")
    );
    assert_eq!(
        xml_text(&raw.body, "ArgumentValue").as_deref(),
        Some("MERGE")
    );
    // New tags alone do not make a copy onto itself legal.
    let raw = gw
        .raw("PUT", &format!("/{B}/mp"))
        .header("x-amz-copy-source", &format!("/{B}/mp"))
        .header("x-amz-tagging-directive", "REPLACE")
        .header("x-amz-tagging", "b=2")
        .send()
        .await;
    raw.assert_error(400, "InvalidRequest");
    let raw = gw
        .raw("PUT", &format!("/{B}/c6"))
        .header("x-amz-copy-source", &format!("/{B}/mp"))
        .header("x-amz-tagging-directive", "REPLACE")
        .header("x-amz-tagging", "aws:x=1")
        .send()
        .await;
    raw.assert_error(400, "InvalidTag");
    assert_err(
        c.head_object().bucket(B).key("c6").send().await,
        404,
        "NotFound",
    );
}
both!(multipart_and_copy, multipart_and_copy);

/// The `<Message>` of an error document, its entities decoded.
fn message_of(raw: &RawResponse) -> String {
    text_of(raw, "Message").unwrap_or_default()
}

/// The text of an element of an answer, its entities decoded.
fn text_of(raw: &RawResponse, name: &str) -> Option<String> {
    xml_text(&raw.body, name).map(|t| {
        t.replace("&apos;", "'")
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
    })
}

fn doc(tags: &[(&str, &str)]) -> String {
    let items: String = tags
        .iter()
        .map(|(k, v)| format!("<Tag><Key>{k}</Key><Value>{v}</Value></Tag>"))
        .collect();
    format!(
        r#"<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>{items}</TagSet></Tagging>"#
    )
}

/// Every refusal with AWS's status, code, message and details; nothing changes.
async fn refusals(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;
    c.put_object()
        .bucket(B)
        .key("object")
        .tagging("a=1")
        .body(b"hello".to_vec().into())
        .send()
        .await
        .unwrap();
    let path = format!("/{B}/object?tagging");
    let k129 = "k".repeat(129);
    let v257 = "v".repeat(257);
    let eleven: Vec<(String, String)> = (0..11)
        .map(|i| (format!("key-{i}"), String::new()))
        .collect();
    let eleven_ref: Vec<(&str, &str)> = eleven
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let invalid_key = "The TagKey you have provided is invalid";
    let invalid_value = "The TagValue you have provided is invalid";
    #[allow(clippy::type_complexity)]
    let mut cases: Vec<(String, u16, &str, &str, Vec<(&str, String)>)> = vec![
        (
            doc(&eleven_ref),
            400,
            "BadRequest",
            "Object tags cannot be greater than 10",
            vec![],
        ),
        (
            doc(&[("a", "1"), ("a", "2")]),
            400,
            "InvalidTag",
            "Cannot provide multiple Tags with the same key",
            vec![("TagKey", "a".into())],
        ),
        (
            doc(&[(&k129, "")]),
            400,
            "InvalidTag",
            invalid_key,
            vec![("TagKey", k129.clone())],
        ),
        (
            doc(&[("", "v")]),
            400,
            "InvalidTag",
            invalid_key,
            vec![("TagKey", String::new())],
        ),
        (
            doc(&[("k", &v257)]),
            400,
            "InvalidTag",
            invalid_value,
            vec![("TagKey", "k".into()), ("TagValue", v257.clone())],
        ),
        (
            doc(&[("AWS:cost", "v")]),
            400,
            "InvalidTag",
            "System tags cannot be added/updated by requester",
            vec![("TagKey", "AWS:cost".into())],
        ),
        (
            "<Tagging><TagSet>".into(),
            400,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema",
            vec![],
        ),
        (
            "<Tagging></Tagging>".into(),
            400,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema",
            vec![],
        ),
        (
            "<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>".into(),
            400,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema",
            vec![],
        ),
        (
            String::new(),
            400,
            "MissingRequestBodyError",
            "Request Body is empty.",
            vec![],
        ),
    ];
    for bad in ["a,b", "a;b", "a?b", "a*b", "a%b", "a\tb", "😀"] {
        cases.push((
            doc(&[(bad, "v")]),
            400,
            "InvalidTag",
            invalid_key,
            vec![("TagKey", bad.into())],
        ));
        cases.push((
            doc(&[("k", bad)]),
            400,
            "InvalidTag",
            invalid_value,
            vec![("TagKey", "k".into()), ("TagValue", bad.into())],
        ));
    }
    for (body, status, code, message, details) in cases {
        let raw = gw
            .raw("PUT", &path)
            .header("content-md5", &content_md5(body.as_bytes()))
            .body(body.clone())
            .send()
            .await;
        raw.assert_error(status, code);
        assert_eq!(message_of(&raw), message, "{body}");
        for (name, value) in details {
            assert_eq!(text_of(&raw, name), Some(value), "{body}: {name}");
        }
    }
    assert_eq!(tags_of(&c, "object").await, pairs(&[("a", "1")]));

    // x-amz-tagging on PutObject: a header that is not one query string of distinct names is
    // InvalidArgument; the tag rules answer as above. Nothing is stored.
    let header_message = "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.";
    let eleven_header: Vec<String> = (0..11).map(|i| format!("key-{i}=")).collect();
    let eleven_header = eleven_header.join("&");
    for (header, code, message) in [
        ("a=1&a=2", "InvalidArgument", header_message),
        ("=1", "InvalidArgument", header_message),
        ("a=%FF", "InvalidArgument", header_message),
        (
            eleven_header.as_str(),
            "BadRequest",
            "Object tags cannot be greater than 10",
        ),
        ("a,b=1", "InvalidTag", invalid_key),
        (
            "aws:cost=1",
            "InvalidTag",
            "System tags cannot be added/updated by requester",
        ),
    ] {
        let raw = gw
            .raw("PUT", &format!("/{B}/new"))
            .header("x-amz-tagging", header)
            .body(b"data".to_vec())
            .send()
            .await;
        raw.assert_error(400, code);
        assert_eq!(message_of(&raw), message, "{header}");
        if code == "InvalidArgument" {
            assert_eq!(
                xml_text(&raw.body, "ArgumentName").as_deref(),
                Some("x-amz-tagging")
            );
            assert_eq!(text_of(&raw, "ArgumentValue").as_deref(), Some(header));
        }
    }
    assert_err(
        c.head_object().bucket(B).key("new").send().await,
        404,
        "NotFound",
    );
    // The tagging sub-resource takes PUT, GET and DELETE only.
    let raw = gw.raw("POST", &path).send().await;
    raw.assert_error(405, "MethodNotAllowed");
}
both!(refusals, refusals);

const OTHER: &str = "MPGWOTHERACCESSKEY";
const OTHER_SECRET: &str = "mpgw-other-secret-0123456789";

/// The ownership rules cover the tag operations; the `tagging` sub-resource is signed, so a
/// signature for the object itself does not reach its tags.
async fn ownership_and_signing(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| {
        cfg.access_keys.push(OTHER.into());
        cfg.secret_keys.push(OTHER_SECRET.into());
    })
    .await;
    let owner = gw.bucket(B).await;
    let other = gw.client_with(OTHER, OTHER_SECRET);
    owner
        .put_object()
        .bucket(B)
        .key("k")
        .tagging("a=1")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_err(
        other.get_object_tagging().bucket(B).key("k").send().await,
        403,
        "AccessDenied",
    );
    assert_err(
        other
            .put_object_tagging()
            .bucket(B)
            .key("k")
            .tagging(tagging(&[("b", "2")]))
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        other
            .delete_object_tagging()
            .bucket(B)
            .key("k")
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_eq!(tags_of(&owner, "k").await, pairs(&[("a", "1")]));
    // The legacy bucket: a key reads its own user's tags there (none) and writes none.
    let data = random_bytes(100);
    crate::legacy::Client::of(&gw, ACCESS_KEY)
        .upload(&data, "doc.txt")
        .await;
    let own = format!("{ACCESS_KEY}/doc.txt");
    let read = owner
        .get_object_tagging()
        .bucket("files")
        .key(&own)
        .send()
        .await
        .unwrap();
    assert!(read.tag_set().is_empty());
    assert_err(
        owner
            .put_object_tagging()
            .bucket("files")
            .key(&own)
            .tagging(tagging(&[("b", "2")]))
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        owner
            .delete_object_tagging()
            .bucket("files")
            .key(&own)
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        other
            .get_object_tagging()
            .bucket("files")
            .key(&own)
            .send()
            .await,
        403,
        "AccessDenied",
    );

    // SigV2 (presigned and header-signed): `tagging` is in the string to sign.
    let expires = sigv2_expires();
    let sts = format!("DELETE\n\n\n{expires}\n/{B}/missing");
    let q = sigv2_query(ACCESS_KEY, SECRET_KEY, expires, &sts);
    let raw = gw
        .raw("DELETE", &format!("/{B}/k?{q}&tagging"))
        .auth(Auth::Anonymous)
        .send()
        .await;
    raw.assert_error(403, "SignatureDoesNotMatch");
    let sts = format!("DELETE\n\n\n{expires}\n/{B}/k?tagging");
    let q = sigv2_query(ACCESS_KEY, SECRET_KEY, expires, &sts);
    let raw = gw
        .raw("DELETE", &format!("/{B}/k?tagging&{q}"))
        .auth(Auth::Anonymous)
        .send()
        .await;
    assert_eq!(raw.status, 204, "{}", String::from_utf8_lossy(&raw.body));
    assert!(tags_of(&owner, "k").await.is_empty());
    // SigV4 presigned: a URL for GetObject with `tagging` added is not the URL that was signed.
    let path_and_query = gw.raw("GET", &format!("/{B}/k")).presigned();
    let raw = gw
        .raw("GET", &format!("{path_and_query}&tagging"))
        .auth(Auth::Anonymous)
        .send()
        .await;
    raw.assert_error(403, "SignatureDoesNotMatch");
}
both!(ownership_and_signing, ownership_and_signing);
