//! Authorization header and presigned query parsing (SigV4 and SigV2). Input: a request as
//! HTTP text (the seeds are the AWS and botocore examples), or, after a `#`, the pieces of a
//! request for aws-sigv4 to sign. Properties: no input panics; a request that verifies stops
//! verifying when its path changes; a request signed by aws-sigv4 (an independent
//! implementation) over arbitrary keys, query values and header values verifies.
#![no_main]

use std::time::{Duration, SystemTime};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mpgw::config::Credentials;
use mpgw::s3::auth::{self, sigv2};
use mpgw::s3::route::Query;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What SDKs percent-encode: all but the RFC 3986 unreserved characters (and `/` in paths).
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const PATH_SET: &AsciiSet = &QUERY_SET.remove(b'/');

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// The pieces of a request that aws-sigv4 signs as SDKs do.
#[derive(Arbitrary, Debug)]
struct Signed {
    key: String,
    query: Vec<(String, String)>,
    meta: String,
    presign: bool,
    tamper: bool,
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)
}

fn creds() -> Credentials {
    let mut c = Credentials::default();
    c.insert(AK, SK).unwrap();
    c
}

fn sdk_sign(uri: &str, headers: &[(&str, &str)], presign: bool) -> Option<http::request::Parts> {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
        SigningSettings, UriPathNormalizationMode, sign,
    };
    let identity = aws_credential_types::Credentials::new(AK, SK, None, None, "fuzz").into();
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
    let signable = SignableRequest::new("PUT", uri, headers.iter().copied(), body).ok()?;
    let (instructions, _) = sign(signable, &params).ok()?.into_parts();
    let mut req = http::Request::builder().method("PUT").uri(uri);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let mut req = req.body(()).ok()?;
    instructions.apply_to_request_http1x(&mut req);
    Some(req.into_parts().0)
}

/// The request with one more character in its path.
fn tampered(p: &http::request::Parts) -> http::request::Parts {
    let mut req = http::Request::from_parts(p.clone(), ());
    let pq = p.uri.path_and_query().map_or("/", |pq| pq.as_str());
    *req.uri_mut() = format!("/x{pq}").parse().unwrap();
    req.into_parts().0
}

fuzz_target!(|data: &[u8]| {
    if let Some(rest) = data.strip_prefix(b"#") {
        if let Ok(input) = Signed::arbitrary_take_rest(Unstructured::new(rest)) {
            signed(input);
        }
        return;
    }
    let Some((p, _)) = mpgw_fuzz::request(data) else {
        return;
    };
    // The AWS examples are signed at t0 with the example key: mutants stay near valid.
    let verify = |p: &http::request::Parts, now| {
        auth::verify(p, &Query::parse(p.uri.query()), None, &creds(), now)
    };
    let query = Query::parse(p.uri.query());
    let tampered_query = Query::parse(tampered(&p).uri.query());
    for now in [t0(), t0() + Duration::from_secs(3600 * 24)] {
        if verify(&p, now).is_ok() {
            assert!(verify(&tampered(&p), now).is_err());
        }
        if let Some(fields) = p
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("AWS "))
            && sigv2::verify_header(&p, &query, None, fields, &creds(), now).is_ok()
        {
            assert!(
                sigv2::verify_header(&tampered(&p), &tampered_query, None, fields, &creds(), now)
                    .is_err()
            );
        }
        if sigv2::verify_query(&p, &query, None, &creds(), now).is_ok() {
            assert!(
                sigv2::verify_query(&tampered(&p), &tampered_query, None, &creds(), now).is_err()
            );
        }
    }
});

fn signed(input: Signed) {
    let Signed {
        key,
        query,
        meta,
        presign,
        tamper,
    } = input;
    let enc = |s: &str| utf8_percent_encode(s, QUERY_SET).to_string();
    let mut uri = format!("/bucket/{}", utf8_percent_encode(&key, PATH_SET));
    let q: Vec<String> = query
        .iter()
        .filter(|(n, _)| !n.is_empty() && !n.starts_with("X-Amz-"))
        .map(|(n, v)| format!("{}={}", enc(n), enc(v)))
        .collect();
    if !q.is_empty() {
        uri = format!("{uri}?{}", q.join("&"));
    }
    // Header values: visible ASCII and inner spaces, as an SDK would send them.
    let meta: String = meta
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    let headers = [("host", "127.0.0.1:9000"), ("x-amz-meta-note", meta.trim())];
    let Some(mut p) = sdk_sign(&uri, &headers, presign) else {
        return;
    };
    if tamper {
        let pq = p
            .uri
            .path_and_query()
            .unwrap()
            .as_str()
            .replacen("/bucket/", "/bucket/x", 1);
        p.uri = pq.parse().unwrap();
    }
    let q = Query::parse(p.uri.query());
    let v = auth::verify(&p, &q, None, &creds(), t0() + Duration::from_secs(60));
    if tamper {
        assert_eq!(v.unwrap_err(), auth::AuthError::SignatureDoesNotMatch);
    } else {
        let v = v.unwrap_or_else(|e| panic!("{uri}: {e:?}"));
        assert_eq!(v.access_key, AK);
    }
}
