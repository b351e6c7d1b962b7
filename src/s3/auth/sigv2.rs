//! SigV2 (HMAC-SHA1) authentication: the header form `Authorization: AWS AK:sig` and presigned
//! query URLs (`AWSAccessKeyId`, `Signature`, `Expires`), which is what `aws s3 presign` and
//! boto3's `generate_presigned_url` produce unless told to use SigV4. The string to sign follows
//! botocore's `HmacV1Auth`: method, Content-MD5, Content-Type, Date (or Expires), the `x-amz-*`
//! headers, then the path as sent plus the sub-resources that S3 signs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use subtle::ConstantTimeEq as _;

use super::{AuthError, PayloadMode, Verified};
use crate::config::Credentials;
use crate::s3::query::Query;

const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Query parameters that are part of the signed resource (botocore's `QSAOfInterest`).
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// `Authorization: AWS <access key>:<base64 signature>`. `query` is the request's decoded
/// query (the view routing reads); `vhost` the bucket its Host header names.
pub fn verify_header(
    parts: &http::request::Parts,
    query: &Query,
    vhost: Option<&str>,
    fields: &str,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let (access_key, signature) = fields.trim().split_once(':').ok_or_else(|| {
        AuthError::InvalidArgument(
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature".into(),
        )
    })?;
    let secret = creds
        .secret(access_key)
        .ok_or(AuthError::InvalidAccessKeyId)?;
    let h = &parts.headers;
    // With x-amz-date the Date line stays empty; x-amz-date is signed among the x-amz-* headers.
    let (date_line, when) = match (h.get("x-amz-date"), h.get(http::header::DATE)) {
        (Some(v), _) => (&[][..], v.to_str().ok().and_then(parse_date)),
        (None, Some(v)) => (trim(v.as_bytes()), v.to_str().ok().and_then(parse_date)),
        (None, None) => (&[][..], None),
    };
    let when = when.ok_or_else(|| {
        AuthError::AccessDenied(
            "AWS authentication requires a valid Date or x-amz-date header".into(),
        )
    })?;
    if when
        .duration_since(now)
        .or_else(|_| now.duration_since(when))
        .unwrap_or_default()
        > MAX_SKEW
    {
        return Err(AuthError::RequestTimeTooSkewed);
    }
    check(secret, parts, query, vhost, date_line, false, signature)?;
    Ok(Verified {
        access_key: access_key.to_owned(),
        payload: PayloadMode::Unsigned,
        presigned: false,
    })
}

/// `?AWSAccessKeyId=…&Signature=…&Expires=<unix seconds>`.
pub fn verify_query(
    parts: &http::request::Parts,
    query: &Query,
    vhost: Option<&str>,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let bad = |m: &str| AuthError::AuthorizationQueryParametersError(m.to_owned());
    let access_key = query
        .get("AWSAccessKeyId")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("AWSAccessKeyId is missing"))?;
    let signature = query
        .get("Signature")
        .ok_or_else(|| bad("Signature is missing"))?;
    let expires = query
        .get("Expires")
        .ok_or_else(|| bad("Expires is missing"))?;
    let expires_at = expires
        .parse::<u64>()
        .map_err(|_| bad("Expires must be a number of seconds since the epoch"))?;
    let secret = creds
        .secret(access_key)
        .ok_or(AuthError::InvalidAccessKeyId)?;
    // An `Expires` beyond what SystemTime holds never expires (adding it would panic).
    if UNIX_EPOCH
        .checked_add(Duration::from_secs(expires_at))
        .is_some_and(|t| t < now)
    {
        return Err(AuthError::AccessDenied("Request has expired".into()));
    }
    check(
        secret,
        parts,
        query,
        vhost,
        expires.as_bytes(),
        true,
        signature,
    )?;
    Ok(Verified {
        access_key: access_key.to_owned(),
        payload: PayloadMode::Unsigned,
        presigned: true,
    })
}

/// Verifies the SigV2 signature of an S3 POST Object form: `signature` is the base64
/// HMAC-SHA1 of the base64 `policy` field under the secret of `access_key`.
pub fn verify_post_policy(
    creds: &Credentials,
    access_key: &str,
    policy_b64: &str,
    given: &str,
) -> Result<(), AuthError> {
    let secret = creds
        .secret(access_key)
        .ok_or(AuthError::InvalidAccessKeyId)?;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .map_err(|_| AuthError::SignatureDoesNotMatch)?;
    mac.update(policy_b64.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if bool::from(expected.as_bytes().ct_eq(given.trim().as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::SignatureDoesNotMatch)
    }
}

/// Accepts `given` if it signs one of the string-to-sign forms of this request (see
/// `resources`).
fn check(
    secret: &str,
    parts: &http::request::Parts,
    query: &Query,
    vhost: Option<&str>,
    date: &[u8],
    query_amz: bool,
    given: &str,
) -> Result<(), AuthError> {
    let mut matched = false;
    // `attributes` (GetObjectAttributes) is newer than the SigV2 sub-resource lists: botocore
    // leaves it out of the signed resource, other signers may put it in. Either form is
    // accepted; the operation's `x-amz-object-attributes` header is signed in both.
    let attributes = if query.has("attributes") {
        &[false, true][..]
    } else {
        &[false][..]
    };
    for resource in resources(parts.uri.path(), vhost) {
        for &with_attributes in attributes {
            let sts = string_to_sign(parts, query, &resource, date, query_amz, with_attributes);
            let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
                .map_err(|_| AuthError::SignatureDoesNotMatch)?;
            mac.update(&sts);
            let expected =
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            matched |= bool::from(expected.as_bytes().ct_eq(given.trim().as_bytes()));
        }
    }
    if matched {
        Ok(())
    } else {
        Err(AuthError::SignatureDoesNotMatch)
    }
}

/// The CanonicalizedResource path: for a virtual-host request `/<bucket>` and then the path as
/// sent, so the signature covers the bucket the Host header names; for path style the path as
/// sent. A path-style request for a bucket alone (`/bucket`) may be signed as `/bucket/` too,
/// which is what botocore signs (both name the same bucket and nothing else).
fn resources(path: &str, vhost: Option<&str>) -> Vec<String> {
    let path = if path.is_empty() { "/" } else { path };
    match vhost {
        Some(bucket) => vec![format!("/{bucket}{path}")],
        None => {
            let bucket_only = path.len() > 1 && !path[1..].contains('/');
            let mut forms = vec![path.to_owned()];
            if bucket_only {
                forms.push(format!("{path}/"));
            }
            forms
        }
    }
}

/// Method, Content-MD5, Content-Type, date, the `x-amz-*` headers (with a presigned URL's
/// `x-amz-*` query parameters when `query_amz`), then `resource` and the signed sub-resources
/// (with `attributes` when `with_attributes`). Header values are signed byte for byte, as they
/// will be used: a value that is not visible ASCII must not drop out of the signature.
fn string_to_sign(
    parts: &http::request::Parts,
    query: &Query,
    resource: &str,
    date: &[u8],
    query_amz: bool,
    with_attributes: bool,
) -> Vec<u8> {
    let h = &parts.headers;
    let header = |name: &str| h.get(name).map_or(&[][..], |v| trim(v.as_bytes()));
    let mut amz: std::collections::BTreeMap<String, Vec<&[u8]>> = std::collections::BTreeMap::new();
    for (name, value) in h {
        if name.as_str().starts_with("x-amz-") {
            amz.entry(name.as_str().to_owned())
                .or_default()
                .push(trim(value.as_bytes()));
        }
    }
    if query_amz {
        for (name, value) in query.iter() {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("x-amz-") {
                amz.entry(lower)
                    .or_default()
                    .push(trim(value.unwrap_or_default().as_bytes()));
            }
        }
    }
    let mut s = Vec::with_capacity(256);
    for line in [
        parts.method.as_str().as_bytes(),
        header("content-md5"),
        header("content-type"),
        date,
    ] {
        s.extend_from_slice(line);
        s.push(b'\n');
    }
    for (name, values) in &amz {
        s.extend_from_slice(name.as_bytes());
        s.push(b':');
        s.extend_from_slice(&values.join(&b","[..]));
        s.push(b'\n');
    }
    s.extend_from_slice(resource.as_bytes());
    let mut subs: Vec<(&str, Option<&str>)> = query
        .iter()
        .filter(|(name, _)| {
            SUBRESOURCES.contains(name) || (with_attributes && *name == "attributes")
        })
        .collect();
    subs.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (name, value)) in subs.into_iter().enumerate() {
        s.push(if i == 0 { b'?' } else { b'&' });
        s.extend_from_slice(name.as_bytes());
        if let Some(v) = value {
            s.push(b'=');
            s.extend_from_slice(v.as_bytes());
        }
    }
    s
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

fn parse_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok().or_else(|| {
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        time::PrimitiveDateTime::parse(s.trim(), &fmt)
            .ok()
            .map(|t| t.assume_utc().into())
    })
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy as _;

    use super::*;

    fn creds() -> Credentials {
        let mut c = Credentials::default();
        c.insert(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .unwrap();
        c
    }

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// Path-style SigV2 header authentication, with the query parsed as `s3::handle` does.
    fn header_auth(
        p: &http::request::Parts,
        fields: &str,
        now: SystemTime,
    ) -> Result<Verified, AuthError> {
        verify_header(p, &Query::parse(p.uri.query()), None, fields, &creds(), now)
    }

    fn query_auth(p: &http::request::Parts, now: SystemTime) -> Result<Verified, AuthError> {
        verify_query(p, &Query::parse(p.uri.query()), None, &creds(), now)
    }

    fn at(date: &str) -> SystemTime {
        httpdate::parse_http_date(date).unwrap()
    }

    // Vectors produced by botocore's HmacV1Auth / HmacV1QueryAuth (an independent implementation).
    #[test]
    fn botocore_header_signature() {
        let date = "Tue, 27 Mar 2007 19:36:42 GMT";
        let auth = "AKIAIOSFODNN7EXAMPLE:nfAirJ//Mw/t2AGv4pSJRNKkKyY=";
        let p = parts(
            "PUT",
            "/b/a%20b+c?partNumber=3&uploadId=abc",
            &[
                ("content-type", "text/plain"),
                ("x-amz-meta-x", " v "),
                ("date", date),
            ],
        );
        let now = at(date);
        assert_eq!(
            header_auth(&p, auth, now).unwrap().access_key,
            "AKIAIOSFODNN7EXAMPLE"
        );
        let wrong = auth.replace("nfA", "nfB");
        assert_eq!(
            header_auth(&p, &wrong, now).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
        assert_eq!(
            header_auth(&p, auth, now + MAX_SKEW * 2).unwrap_err(),
            AuthError::RequestTimeTooSkewed
        );
        assert_eq!(
            header_auth(&p, "NOPE:x", now).unwrap_err(),
            AuthError::InvalidAccessKeyId
        );
    }

    #[test]
    fn botocore_presigned_url() {
        let uri = "/b/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=44V6wBvxt60X2VBLsmxmtg8ci%2B0%3D&Expires=1175139620";
        let p = parts("GET", uri, &[]);
        let before = UNIX_EPOCH + Duration::from_secs(1_175_139_000);
        assert!(query_auth(&p, before).is_ok());
        let after = UNIX_EPOCH + Duration::from_secs(1_175_139_621);
        assert_eq!(
            query_auth(&p, after).unwrap_err(),
            AuthError::AccessDenied("Request has expired".into())
        );
        let tampered = parts("GET", &uri.replace("puppy", "kitty"), &[]);
        assert_eq!(
            query_auth(&tampered, before).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
    }

    #[test]
    fn huge_expires_is_a_signature_error_not_a_panic() {
        // Found by the property test below: `UNIX_EPOCH + u64::MAX s` overflows SystemTime.
        for expires in [u64::MAX, 1 << 63] {
            let uri =
                format!("/b/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=x&Expires={expires}");
            assert_eq!(
                query_auth(&parts("GET", &uri, &[]), UNIX_EPOCH).unwrap_err(),
                AuthError::SignatureDoesNotMatch
            );
        }
    }

    #[test]
    fn subresources_are_signed_sorted_and_decoded() {
        let p = parts(
            "PUT",
            "/b/k?uploadId=abc&partNumber=3&x-id=UploadPart&response-content-type=a%2Fb",
            &[],
        );
        let q = Query::parse(p.uri.query());
        let sts = String::from_utf8(string_to_sign(&p, &q, "/b/k", b"123", false, false)).unwrap();
        assert!(
            sts.ends_with("/b/k?partNumber=3&response-content-type=a/b&uploadId=abc"),
            "{sts}"
        );
    }

    /// Vectors from botocore's HmacV1Auth with the `auth_path` its virtual-host addressing sets.
    #[test]
    fn botocore_virtual_host_signatures() {
        let date = "Tue, 27 Mar 2007 19:36:42 GMT";
        let put = parts(
            "PUT",
            "/a%20b/k?uploadId=abc&partNumber=2",
            &[("x-amz-meta-x", "v"), ("date", date)],
        );
        let q = Query::parse(put.uri.query());
        let auth = "AKIAIOSFODNN7EXAMPLE:X3J6dzEv8Uyoj0pSeRFZw7COV/w=";
        assert!(verify_header(&put, &q, Some("bkt"), auth, &creds(), at(date)).is_ok());
        // The same signature for another bucket's Host, or path style, does not verify.
        for vhost in [Some("other"), None] {
            assert_eq!(
                verify_header(&put, &q, vhost, auth, &creds(), at(date)).unwrap_err(),
                AuthError::SignatureDoesNotMatch,
                "{vhost:?}"
            );
        }
        // A bucket request: `/` on `bkt.<domain>`, `/bkt` path style; botocore signs `/bkt/`.
        let auth = "AKIAIOSFODNN7EXAMPLE:DTeDDG9Qwo5bOVeWlbqaEBB025M=";
        for (uri, vhost) in [("/?uploads", Some("bkt")), ("/bkt?uploads", None)] {
            let p = parts("GET", uri, &[("date", date)]);
            let q = Query::parse(p.uri.query());
            assert!(
                verify_header(&p, &q, vhost, auth, &creds(), at(date)).is_ok(),
                "{uri}"
            );
        }
        assert_eq!(resources("/", None), ["/"]);
        assert_eq!(resources("/bkt", None), ["/bkt", "/bkt/"]);
        assert_eq!(resources("/bkt/", None), ["/bkt/"]);
        assert_eq!(resources("/bkt/k", None), ["/bkt/k"]);
        assert_eq!(resources("/k", Some("bkt")), ["/bkt/k"]);
    }

    /// GetObjectAttributes is accepted signed as botocore signs it (`attributes` left out of the
    /// resource) and with `attributes` in it; its header is signed either way. Signatures
    /// computed with Python's hmac.
    #[test]
    fn attributes_is_signed_or_not() {
        let date = "Tue, 27 Mar 2007 19:36:42 GMT";
        let h = [
            ("x-amz-object-attributes", "ETag,ObjectSize"),
            ("date", date),
        ];
        let p = parts("GET", "/b/k?attributes", &h);
        for sig in [
            "ekszGjz3Pn261/xa0zsWiZUslTg=",
            "7MrlsNaa8hk5nWla7Sg07karaZ4=",
        ] {
            let auth = format!("AKIAIOSFODNN7EXAMPLE:{sig}");
            assert!(header_auth(&p, &auth, at(date)).is_ok(), "{sig}");
            // Another attribute list breaks both.
            let other = parts(
                "GET",
                "/b/k?attributes",
                &[("x-amz-object-attributes", "ETag"), ("date", date)],
            );
            assert_eq!(
                header_auth(&other, &auth, at(date)).unwrap_err(),
                AuthError::SignatureDoesNotMatch
            );
        }
        // Without the flag, only the form without it.
        let plain = parts("GET", "/b/k", &h);
        assert!(
            header_auth(
                &plain,
                "AKIAIOSFODNN7EXAMPLE:ekszGjz3Pn261/xa0zsWiZUslTg=",
                at(date)
            )
            .is_ok()
        );
        assert_eq!(
            header_auth(
                &plain,
                "AKIAIOSFODNN7EXAMPLE:7MrlsNaa8hk5nWla7Sg07karaZ4=",
                at(date)
            )
            .unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
    }

    /// A sub-resource is signed under the name routing reads: `%75ploadId` is `uploadId`.
    #[test]
    fn encoded_subresource_names_are_signed_decoded() {
        let p = parts("DELETE", "/b/k?%75ploadId=abc&%70artNumber=1&x%2Did=y", &[]);
        let q = Query::parse(p.uri.query());
        let sts = String::from_utf8(string_to_sign(&p, &q, "/b/k", b"1", false, false)).unwrap();
        assert!(sts.ends_with("/b/k?partNumber=1&uploadId=abc"), "{sts}");
    }

    /// Header values are signed byte for byte: one that is not visible ASCII is not signed as
    /// an empty value (which a signature over no such header would match).
    #[test]
    fn header_values_are_signed_as_sent() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "content-type",
            http::HeaderValue::from_bytes(b"text/html; charset=\xe9").unwrap(),
        );
        h.insert(
            "x-amz-meta-a",
            http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        let mut p = parts("PUT", "/b/k", &[]);
        p.headers = h;
        let sts = string_to_sign(&p, &Query::default(), "/b/k", b"1", false, false);
        assert_eq!(
            sts,
            b"PUT\n\ntext/html; charset=\xe9\n1\nx-amz-meta-a:\xff\n/b/k".to_vec()
        );
    }

    proptest::proptest! {
        /// Hostile presigned queries and header fields get an error, never a panic, even with
        /// a known access key.
        #[test]
        fn arbitrary_input_never_panics(
            expires in proptest::prop_oneof![proptest::prelude::any::<u64>().prop_map(|n| n.to_string()), "[0-9]{0,25}|[A-Za-z0-9%+-]{0,10}"],
            signature in "[A-Za-z0-9+/=%]{0,30}",
            fields in "(AKIAIOSFODNN7EXAMPLE)?:?[ -~]{0,40}",
            date in "[ -~]{0,40}",
        ) {
            let uri = format!("/b/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature={signature}&Expires={expires}");
            let now = at("Tue, 27 Mar 2007 19:36:42 GMT");
            proptest::prop_assert!(query_auth(&parts("GET", &uri, &[]), now).is_err());
            let h = http::HeaderValue::from_str(&date).map(|_| vec![("date", date.as_str())]).unwrap_or_default();
            proptest::prop_assert!(header_auth(&parts("GET", "/b/k", &h), &fields, now).is_err());
        }

        /// A signature stops matching when the path or a signed sub-resource changes.
        #[test]
        fn tampering_breaks_the_signature(key in "[a-z0-9]{1,10}".prop_filter("the signed id", |k| k != "abc")) {
            let date = "Tue, 27 Mar 2007 19:36:42 GMT";
            let auth = "AKIAIOSFODNN7EXAMPLE:nfAirJ//Mw/t2AGv4pSJRNKkKyY=";
            let h = [("content-type", "text/plain"), ("x-amz-meta-x", " v "), ("date", date)];
            for uri in [format!("/b/{key}?partNumber=3&uploadId=abc"), format!("/b/a%20b+c?partNumber=3&uploadId={key}")] {
                let p = parts("PUT", &uri, &h);
                proptest::prop_assert_eq!(header_auth(&p, auth, at(date)).unwrap_err(), AuthError::SignatureDoesNotMatch);
            }
        }
    }
}
