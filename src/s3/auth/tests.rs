//! Test vectors and cases of the SigV4 verifier (AWS's examples among them).

use std::time::Duration;

use http::header::HOST;
use percent_encoding::percent_encode;
use sha2::{Digest as _, Sha256};

use super::sigv4::{
    PATH_SET, QUERY_SET, UNSIGNED_PAYLOAD, canonical_query, canonical_uri, parse_query,
    push_trimmed,
};
use super::*;

pub(crate) const AK: &str = "AKIAIOSFODNN7EXAMPLE";
pub(crate) const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

pub(crate) fn creds() -> Credentials {
    let mut c = Credentials::default();
    c.insert(AK, SK).unwrap();
    c
}

/// Path-style verification, with the query parsed as `s3::handle` does.
pub(crate) fn verify(
    p: &http::request::Parts,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    super::verify(p, &Query::parse(p.uri.query()), None, creds, now)
}

/// 2013-05-24T00:00:00Z, the time of every AWS example.
pub(crate) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)
}

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn get_object_headers(auth: &str) -> Vec<(&str, &str)> {
    vec![
        ("host", "examplebucket.s3.amazonaws.com"),
        ("range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", "20130524T000000Z"),
        ("authorization", auth),
    ]
}

const GET_OBJECT_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
     SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
     Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

fn get_object(auth: &str, now: SystemTime) -> Result<Verified, AuthError> {
    verify(
        &parts("GET", "/test.txt", &get_object_headers(auth)),
        &creds(),
        now,
    )
}

#[test]
fn aws_example_get_object() {
    let v = get_object(GET_OBJECT_AUTH, t0()).unwrap();
    assert_eq!(v.access_key, AK);
    assert!(matches!(v.payload, PayloadMode::Sha256(h) if hex::encode(h) == EMPTY_SHA256));
}

#[test]
fn header_without_spaces_after_commas() {
    let auth = GET_OBJECT_AUTH.replace(", ", ",");
    assert!(get_object(&auth, t0()).is_ok());
    let auth = GET_OBJECT_AUTH.replace(", ", " ,  ");
    assert!(get_object(&auth, t0()).is_ok());
}

#[test]
fn header_clock_skew() {
    let min = Duration::from_secs(60);
    assert!(get_object(GET_OBJECT_AUTH, t0() + 14 * min).is_ok());
    assert!(get_object(GET_OBJECT_AUTH, t0() - 14 * min).is_ok());
    assert_eq!(
        get_object(GET_OBJECT_AUTH, t0() + 16 * min).unwrap_err(),
        AuthError::RequestTimeTooSkewed
    );
    assert_eq!(
        get_object(GET_OBJECT_AUTH, t0() - 16 * min).unwrap_err(),
        AuthError::RequestTimeTooSkewed
    );
}

#[test]
fn header_unknown_key_and_wrong_secret() {
    let auth = GET_OBJECT_AUTH.replace(AK, "AKIDUNKNOWN");
    assert_eq!(
        get_object(&auth, t0()).unwrap_err(),
        AuthError::InvalidAccessKeyId
    );

    let mut c = Credentials::default();
    c.insert(AK, "not-the-secret").unwrap();
    let p = parts("GET", "/test.txt", &get_object_headers(GET_OBJECT_AUTH));
    assert_eq!(
        verify(&p, &c, t0()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );

    // A tampered header or signature.
    let mut h = get_object_headers(GET_OBJECT_AUTH);
    h[1] = ("range", "bytes=0-10");
    assert_eq!(
        verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let auth = GET_OBJECT_AUTH.replace("f0e8bdb8", "f0e8bdb9");
    assert_eq!(
        get_object(&auth, t0()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
}

#[test]
fn missing_or_empty_auth_is_denied() {
    let denied = AuthError::AccessDenied("Access Denied".into());
    let p = parts("GET", "/test.txt", &[("host", "h")]);
    assert_eq!(verify(&p, &creds(), t0()).unwrap_err(), denied);
    assert_eq!(get_object("", t0()).unwrap_err(), denied);
    assert_eq!(get_object("   ", t0()).unwrap_err(), denied);
}

#[test]
fn malformed_headers() {
    let cases = [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 garbage",
        "AWS4-HMAC-SHA256Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=ab, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/2013052/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=range;x-amz-date, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;;range, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, Foo=bar, SignedHeaders=host, Signature=ab",
        // The scope date must be the request date.
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130525/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab",
    ];
    for auth in cases {
        let err = get_object(auth, t0()).unwrap_err();
        assert!(
            matches!(err, AuthError::AuthorizationHeaderMalformed(_)),
            "{auth}: {err:?}"
        );
    }
}

#[test]
fn other_schemes() {
    let not_impl = |a: &str| matches!(get_object(a, t0()), Err(AuthError::NotImplemented(_)));
    // SigV2 is handled by `sigv2` (a wrong signature, here).
    assert_eq!(
        get_object(
            "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
            t0()
        )
        .unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    assert!(not_impl(
        &GET_OBJECT_AUTH.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
    ));
    assert!(matches!(
        get_object("Bearer abc", t0()),
        Err(AuthError::InvalidArgument(_))
    ));
    let p = parts(
        "GET",
        "/test.txt?AWSAccessKeyId=AK&Signature=x&Expires=1",
        &[("host", "h")],
    );
    // SigV2 presigned query: dispatched to `sigv2`, which knows no key "AK".
    assert_eq!(
        verify(&p, &creds(), t0()).unwrap_err(),
        AuthError::InvalidAccessKeyId
    );
}

#[test]
fn missing_date() {
    let mut h = get_object_headers(GET_OBJECT_AUTH);
    h.retain(|(n, _)| *n != "x-amz-date");
    let err = verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err();
    assert!(matches!(err, AuthError::AccessDenied(_)), "{err:?}");
    h.push(("x-amz-date", "2013-05-24T00:00:00Z"));
    let err = verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err();
    assert!(matches!(err, AuthError::AccessDenied(_)), "{err:?}");
}

#[test]
fn content_sha256_values() {
    let with = |v: &str| {
        let mut h = get_object_headers(GET_OBJECT_AUTH);
        h[2] = ("x-amz-content-sha256", v);
        verify(&parts("GET", "/test.txt", &h), &creds(), t0())
    };
    assert!(matches!(
        with("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"),
        Err(AuthError::NotImplemented(_))
    ));
    assert!(matches!(with("abc"), Err(AuthError::InvalidArgument(_))));
    assert!(matches!(
        with(&"z".repeat(64)),
        Err(AuthError::InvalidArgument(_))
    ));
    // Valid but different from what was signed.
    assert_eq!(
        with(UNSIGNED_PAYLOAD).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );

    let mut h = get_object_headers(GET_OBJECT_AUTH);
    h.remove(2);
    let err = verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err();
    assert_eq!(
        err,
        AuthError::InvalidRequest(
            "Missing required header for this request: x-amz-content-sha256".into()
        )
    );
}

/// The AWS streaming examples: a PUT whose body is aws-chunked.
pub(crate) fn streaming_parts(trailer: bool) -> http::request::Parts {
    let (sha, signed, sig) = if trailer {
        (
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
            "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        )
    } else {
        (
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        )
    };
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed},Signature={sig}"
    );
    let mut headers = vec![
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("authorization", &auth),
        ("x-amz-content-sha256", sha),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
    ];
    if trailer {
        headers.push(("x-amz-trailer", "x-amz-checksum-crc32c"));
    } else {
        headers.push(("content-length", "66824"));
    }
    parts("PUT", "/examplebucket/chunkObject.txt", &headers)
}

#[test]
fn aws_example_streaming_seed() {
    for (trailer, seed) in [
        (
            false,
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ),
        (
            true,
            "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        ),
    ] {
        let v = verify(&streaming_parts(trailer), &creds(), t0()).unwrap();
        let PayloadMode::SignedChunks { signer, trailer: t } = v.payload else {
            panic!("{:?}", v.payload)
        };
        assert_eq!(t, trailer);
        assert_eq!(signer.seed_signature, seed);
        assert_eq!(signer.amz_date, "20130524T000000Z");
        assert_eq!(signer.scope, "20130524/us-east-1/s3/aws4_request");
        assert!(!format!("{signer:?}").contains("signing_key"));
    }
}

#[test]
fn aws_example_chunk_signatures() {
    let v = verify(&streaming_parts(false), &creds(), t0()).unwrap();
    let PayloadMode::SignedChunks { signer, .. } = v.payload else {
        panic!()
    };
    let s1 = signer.chunk_signature(&signer.seed_signature, &Sha256::digest(vec![b'a'; 65536]));
    assert_eq!(
        s1,
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    );
    let s2 = signer.chunk_signature(&s1, &Sha256::digest(vec![b'a'; 1024]));
    assert_eq!(
        s2,
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    );
    let s3 = signer.chunk_signature(&s2, &Sha256::digest(b""));
    assert_eq!(
        s3,
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
    );
}

#[test]
fn aws_example_trailer_signatures() {
    let v = verify(&streaming_parts(true), &creds(), t0()).unwrap();
    let PayloadMode::SignedChunks { signer, .. } = v.payload else {
        panic!()
    };
    let s1 = signer.chunk_signature(&signer.seed_signature, &Sha256::digest(vec![b'a'; 65536]));
    assert_eq!(
        s1,
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
    );
    let s2 = signer.chunk_signature(&s1, &Sha256::digest(vec![b'a'; 1024]));
    assert_eq!(
        s2,
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
    );
    let s3 = signer.chunk_signature(&s2, &Sha256::digest(b""));
    assert_eq!(
        s3,
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
    );
    let t = signer.trailer_signature(&s3, &Sha256::digest(b"x-amz-checksum-crc32c:sOO8/Q==\n"));
    assert_eq!(
        t,
        "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
    );
}

const PRESIGNED: &str = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
    &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
    &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
    &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

fn presigned(uri: &str, now: SystemTime) -> Result<Verified, AuthError> {
    verify(
        &parts("GET", uri, &[("host", "examplebucket.s3.amazonaws.com")]),
        &creds(),
        now,
    )
}

#[test]
fn aws_example_presigned_get() {
    let v = presigned(PRESIGNED, t0()).unwrap();
    assert_eq!(v.access_key, AK);
    assert!(matches!(v.payload, PayloadMode::Unsigned));
    // Any time within the validity window.
    assert!(presigned(PRESIGNED, t0() + Duration::from_secs(86400)).is_ok());
    assert!(presigned(PRESIGNED, t0() - Duration::from_secs(14 * 60)).is_ok());
    // An unsigned x-amz-content-sha256 header is the payload hash of the canonical request,
    // as on AWS: UNSIGNED-PAYLOAD (what the URL signed) passes, any other value (a hash, a
    // streaming mode) no longer matches, so it cannot change how the body is read.
    let with = |v: &str| {
        let p = parts(
            "GET",
            PRESIGNED,
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-content-sha256", v),
            ],
        );
        verify(&p, &creds(), t0())
    };
    assert!(matches!(
        with(UNSIGNED_PAYLOAD).unwrap().payload,
        PayloadMode::Unsigned
    ));
    for v in [EMPTY_SHA256, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"] {
        assert_eq!(
            with(v).unwrap_err(),
            AuthError::SignatureDoesNotMatch,
            "{v}"
        );
    }
}

#[test]
fn unsigned_amz_headers_are_refused() {
    let not_signed = |e: AuthError| match e {
        AuthError::HeadersNotSigned(names) => names,
        e => panic!("{e:?}"),
    };
    // Header auth: every x-amz-* header must be in SignedHeaders, x-amz-content-sha256 too.
    let mut h = get_object_headers(GET_OBJECT_AUTH);
    h.push(("x-amz-copy-source", "b/k"));
    h.push(("X-Amz-Meta-A", "1"));
    let err = verify(&parts("GET", "/test.txt", &h), &creds(), t0()).unwrap_err();
    assert_eq!(not_signed(err), "x-amz-copy-source, x-amz-meta-a");
    let signed = "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date";
    let auth = GET_OBJECT_AUTH.replace(signed, "SignedHeaders=host;range;x-amz-date");
    let err = get_object(&auth, t0()).unwrap_err();
    assert_eq!(not_signed(err), "x-amz-content-sha256");
    // Presigned: the same, but for x-amz-content-sha256 (see aws_example_presigned_get).
    let p = parts(
        "PUT",
        PRESIGNED,
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-copy-source", "b/k"),
            ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ],
    );
    assert_eq!(
        not_signed(verify(&p, &creds(), t0()).unwrap_err()),
        "x-amz-copy-source"
    );
    // Signed x-amz-* headers pass (aws-sigv4 signs every header it is given).
    for presign in [false, true] {
        let h = [("host", "h"), ("x-amz-copy-source", "b/k")];
        let p = sdk_sign("PUT", "/b/k2", &h, presign);
        assert!(verify(&p, &creds(), t0()).is_ok(), "presign={presign}");
    }
}

#[test]
fn presigned_query_parameters_stand_for_headers() {
    let q = Query::parse(Some(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=x&x-amz-meta-a=1&X-Amz-Copy-Source=b%2Fk\
         &x-amz-content-sha256=abc&x-amz-trailer=t&partNumber=1&x-amz-checksum-crc32=AAAAAA%3D%3D\
         &x-amz-sdk-checksum-algorithm=CRC32",
    ));
    let got = hoisted_headers(&q, &http::HeaderMap::new()).unwrap();
    let got: Vec<(&str, &str)> = got
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(got, [("x-amz-meta-a", "1"), ("x-amz-copy-source", "b/k")]);
    let mut h = http::HeaderMap::new();
    h.insert("x-amz-meta-a", "2".parse().unwrap());
    assert!(matches!(
        hoisted_headers(&q, &h),
        Err(AuthError::InvalidRequest(_))
    ));
    let twice = Query::parse(Some("x-amz-meta-a=1&X-Amz-Meta-A=2"));
    assert!(hoisted_headers(&twice, &http::HeaderMap::new()).is_err());
}

#[test]
fn presigned_expired_and_not_yet_valid() {
    let err = presigned(PRESIGNED, t0() + Duration::from_secs(86401)).unwrap_err();
    assert_eq!(err, AuthError::AccessDenied("Request has expired".into()));
    let err = presigned(PRESIGNED, t0() - Duration::from_secs(16 * 60)).unwrap_err();
    assert_eq!(
        err,
        AuthError::AccessDenied("Request is not yet valid".into())
    );
}

#[test]
fn presigned_bad_parameters() {
    let qp = |uri: &str| {
        matches!(
            presigned(uri, t0()),
            Err(AuthError::AuthorizationQueryParametersError(_))
        )
    };
    assert!(qp(&PRESIGNED.replace("86400", "604801")));
    assert!(qp(&PRESIGNED.replace("86400", "0")));
    assert!(qp(&PRESIGNED.replace("86400", "-1")));
    assert!(qp(&PRESIGNED.replace("86400", "soon")));
    assert!(qp(&PRESIGNED.replace("&X-Amz-Expires=86400", "")));
    assert!(qp(&PRESIGNED.replace("&X-Amz-Date=20130524T000000Z", "")));
    assert!(qp(&PRESIGNED.replace(
        "X-Amz-Date=20130524T000000Z",
        "X-Amz-Date=2013-05-24"
    )));
    assert!(qp(&PRESIGNED.replace("%2Fs3%2F", "%2Fsqs%2F")));
    assert!(qp(&PRESIGNED.replace("AWS4-HMAC-SHA256", "HMAC")));
    assert!(matches!(
        presigned(
            &PRESIGNED.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
            t0()
        ),
        Err(AuthError::NotImplemented(_))
    ));
    assert_eq!(
        presigned(&PRESIGNED.replace(AK, "AKIDUNKNOWN"), t0()).unwrap_err(),
        AuthError::InvalidAccessKeyId
    );
    assert_eq!(
        presigned(&PRESIGNED.replace("aeeed9bb", "aeeed9bc"), t0()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    // Extra parameters are signed too.
    assert_eq!(
        presigned(&format!("{PRESIGNED}&x-id=GetObject"), t0()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let p = parts(
        "GET",
        PRESIGNED,
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("authorization", "x"),
        ],
    );
    assert!(matches!(
        verify(&p, &creds(), t0()),
        Err(AuthError::InvalidArgument(_))
    ));
}

#[test]
fn canonical_forms() {
    assert_eq!(
        canonical_uri("/b/a%20b/c+d/%E2%82%AC"),
        "/b/a%20b/c%2Bd/%E2%82%AC"
    );
    assert_eq!(
        canonical_uri("/b/a b/!(*)/./..//x"),
        "/b/a%20b/%21%28%2A%29/./..//x"
    );
    assert_eq!(canonical_uri("/b/%2Fk"), "/b//k");
    assert_eq!(canonical_uri(""), "/");
    let q = |raw: &str| canonical_query(&parse_query(raw), false);
    assert_eq!(q("uploads"), "uploads=");
    assert_eq!(q("uploads="), "uploads=");
    assert_eq!(
        q("prefix=a+b&delimiter=%2F&max-keys=2"),
        "delimiter=%2F&max-keys=2&prefix=a%2Bb"
    );
    assert_eq!(q("a=2&a=1&b&&A=x"), "A=x&a=1&a=2&b=");
    assert_eq!(q("k=%E2%82%AC%20~"), "k=%E2%82%AC%20~");
    let mut out = Vec::new();
    push_trimmed(&mut out, b"  a \t  b   c ");
    assert_eq!(out, b"a b c");
}

/// Signs with aws-sigv4's own request signer (an independent implementation of the canonical
/// request), the way SDKs sign for S3: single URI encoding, no path normalisation.
fn sdk_sign(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    presign: bool,
) -> http::request::Parts {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
        SigningSettings, UriPathNormalizationMode, sign,
    };
    let identity = aws_credential_types::Credentials::new(AK, SK, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    if presign {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(3600));
    } else {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-3")
        .name("s3")
        .time(t0())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let body = if presign {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(b"")
    };
    let signable = SignableRequest::new(method, uri, headers.iter().copied(), body).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut b = http::Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let mut req = b.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req.into_parts().0
}

#[test]
fn sdk_signed_requests_verify() {
    let uris = [
        "/b/a%20b/c%2Bd",
        "/b/%E2%82%AC%C3%A9/x~y_z.-",
        "/b/dir//./../k",
        "/b/k?uploads",
        "/b/k?uploads=",
        "/b?list-type=2&prefix=a%20b%2Fc&delimiter=%2F&encoding-type=url",
        "/b/k?partNumber=3&uploadId=abc%3D%3D",
    ];
    let headers = [
        ("host", "127.0.0.1:9000"),
        ("content-type", "text/plain"),
        ("x-amz-meta-note", "  two   spaces  "),
    ];
    for uri in uris {
        for presign in [false, true] {
            let p = sdk_sign("PUT", uri, &headers, presign);
            let v = verify(&p, &creds(), t0() + Duration::from_secs(60));
            assert!(v.is_ok(), "{uri} presign={presign}: {v:?} {p:?}");
        }
    }
}

#[test]
fn http2_authority_stands_in_for_host() {
    let p = sdk_sign("GET", "/b/k", &[("host", "example.com:9000")], false);
    let mut req = http::Request::from_parts(p, ());
    req.headers_mut().remove(HOST);
    *req.uri_mut() = "http://example.com:9000/b/k".parse().unwrap();
    let (p, ()) = req.into_parts();
    assert!(verify(&p, &creds(), t0()).is_ok());
}

#[test]
fn date_header_fallback() {
    // Sign with x-amz-date, then send the same instant as an HTTP Date instead.
    let p = sdk_sign("GET", "/b/k", &[("host", "h")], false);
    let auth = p.headers[AUTHORIZATION]
        .to_str()
        .unwrap()
        .replace("x-amz-date", "date");
    let sha = p.headers[CONTENT_SHA256].to_str().unwrap();
    let h = [
        ("host", "h"),
        ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        (CONTENT_SHA256, sha),
        ("authorization", &auth),
    ];
    // The signature covered x-amz-date's value, so it differs; but time and scope checks pass.
    assert_eq!(
        verify(&parts("GET", "/b/k", &h), &creds(), t0()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    assert_eq!(
        verify(
            &parts("GET", "/b/k", &h),
            &creds(),
            t0() + Duration::from_secs(3600)
        )
        .unwrap_err(),
        AuthError::RequestTimeTooSkewed
    );
}

proptest::proptest! {
    /// Hostile headers and queries get an error, never a panic.
    #[test]
    fn arbitrary_input_never_panics(
        auth in "(AWS4-HMAC-SHA256 Credential=[A-Z0-9a-z/_]{0,50}, ?SignedHeaders=[a-z;-]{0,30}, ?Signature=[0-9a-f]{0,70}|[ -~]{0,80})",
        query in "(X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[A-Z0-9a-z%_]{0,50}&X-Amz-Date=[0-9TZ]{0,18}&X-Amz-Expires=[0-9+-]{0,12}&X-Amz-SignedHeaders=host&X-Amz-Signature=ab|[A-Za-z0-9%=&+-]{0,60})",
        date in "[0-9TZ]{0,18}",
        use_header in proptest::bool::ANY,
    ) {
        let mut h = vec![("host", "h"), ("x-amz-date", date.as_str()), ("x-amz-content-sha256", UNSIGNED_PAYLOAD)];
        if use_header {
            h.push(("authorization", auth.as_str()));
        }
        let _ = verify(&parts("GET", &format!("/b/k?{query}"), &h), &creds(), t0());
    }

    /// Requests signed by aws-sigv4 (header or presigned) over any key, query and header
    /// value verify; a changed path does not.
    #[test]
    fn sdk_signed_requests_round_trip(
        key in proptest::prelude::any::<String>(),
        query in proptest::collection::vec(("[A-Za-z][ -~]{0,8}", proptest::prelude::any::<String>()), 0..4),
        note in "[ -~]{0,20}",
        presign in proptest::bool::ANY,
    ) {
        // Encoded as SDKs do: everything but the unreserved characters (and `/` in the path).
        let enc = |s: &str| percent_encode(s.as_bytes(), QUERY_SET).to_string();
        let mut uri = format!("/b/{}", percent_encode(key.as_bytes(), PATH_SET));
        let q: Vec<String> = query
            .iter()
            .filter(|(n, _)| !n.starts_with("X-Amz-"))
            .map(|(n, v)| format!("{}={}", enc(n), enc(v)))
            .collect();
        if !q.is_empty() {
            uri = format!("{uri}?{}", q.join("&"));
        }
        let headers = [("host", "127.0.0.1:9000"), ("x-amz-meta-note", note.trim())];
        let p = sdk_sign("PUT", &uri, &headers, presign);
        let v = verify(&p, &creds(), t0() + Duration::from_secs(60));
        proptest::prop_assert!(v.is_ok(), "{uri}: {v:?}");
        let mut req = http::Request::from_parts(p, ());
        let tampered = req.uri().to_string().replacen("/b/", "/b/x", 1);
        *req.uri_mut() = tampered.parse().unwrap();
        let (p, ()) = req.into_parts();
        proptest::prop_assert_eq!(verify(&p, &creds(), t0()).unwrap_err(), AuthError::SignatureDoesNotMatch);
    }
}
