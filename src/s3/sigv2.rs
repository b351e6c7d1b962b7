//! SigV2 (HMAC-SHA1) authentication: the header form `Authorization: AWS AK:sig` and presigned
//! query URLs (`AWSAccessKeyId`, `Signature`, `Expires`), which is what `aws s3 presign` and
//! boto3's `generate_presigned_url` produce unless told to use SigV4. The string to sign follows
//! botocore's `HmacV1Auth`: method, Content-MD5, Content-Type, Date (or Expires), the `x-amz-*`
//! headers, then the path as sent plus the sub-resources that S3 signs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use percent_encoding::percent_decode_str;
use subtle::ConstantTimeEq as _;

use super::auth::{AuthError, PayloadMode, Verified};
use crate::config::Credentials;

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

/// `Authorization: AWS <access key>:<base64 signature>`.
pub fn verify_header(
    parts: &http::request::Parts,
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
        (Some(v), _) => (String::new(), v.to_str().ok().and_then(parse_date)),
        (None, Some(v)) => {
            let s = v.to_str().unwrap_or_default().trim().to_owned();
            let t = parse_date(&s);
            (s, t)
        }
        (None, None) => (String::new(), None),
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
    let sts = string_to_sign(parts, &date_line, &[]);
    check(secret, &sts, signature)?;
    Ok(Verified {
        access_key: access_key.to_owned(),
        payload: PayloadMode::Unsigned,
    })
}

/// `?AWSAccessKeyId=…&Signature=…&Expires=<unix seconds>`.
pub fn verify_query(
    parts: &http::request::Parts,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let pairs = decoded_query(parts.uri.query().unwrap_or_default());
    let get = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let bad = |m: &str| AuthError::AuthorizationQueryParametersError(m.to_owned());
    let access_key = get("AWSAccessKeyId")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("AWSAccessKeyId is missing"))?;
    let signature = get("Signature").ok_or_else(|| bad("Signature is missing"))?;
    let expires = get("Expires").ok_or_else(|| bad("Expires is missing"))?;
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
    // x-amz-* values a presigner moved into the query are signed like headers.
    let amz: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-amz-"))
        .cloned()
        .collect();
    let sts = string_to_sign(parts, expires, &amz);
    check(secret, &sts, signature)?;
    Ok(Verified {
        access_key: access_key.to_owned(),
        payload: PayloadMode::Unsigned,
    })
}

fn check(secret: &str, string_to_sign: &str, given: &str) -> Result<(), AuthError> {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .map_err(|_| AuthError::SignatureDoesNotMatch)?;
    mac.update(string_to_sign.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if bool::from(expected.as_bytes().ct_eq(given.trim().as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::SignatureDoesNotMatch)
    }
}

fn string_to_sign(
    parts: &http::request::Parts,
    date: &str,
    query_amz: &[(String, String)],
) -> String {
    let h = &parts.headers;
    let header = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let mut amz: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    for (name, value) in h {
        if name.as_str().starts_with("x-amz-") {
            amz.entry(name.as_str().to_owned())
                .or_default()
                .push(value.to_str().unwrap_or_default().trim().to_owned());
        }
    }
    for (name, value) in query_amz {
        amz.entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.trim().to_owned());
    }
    let mut s = format!(
        "{}\n{}\n{}\n{date}\n",
        parts.method.as_str(),
        header("content-md5"),
        header("content-type")
    );
    for (name, values) in &amz {
        s.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    s.push_str(parts.uri.path());
    let raw = parts.uri.query().unwrap_or_default();
    let mut subs: Vec<(String, Option<String>)> = raw
        .split('&')
        .filter_map(|p| {
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => (
                    k,
                    Some(percent_decode_str(v).decode_utf8_lossy().into_owned()),
                ),
                None => (p, None),
            };
            SUBRESOURCES.contains(&k).then(|| (k.to_owned(), v))
        })
        .collect();
    if !subs.is_empty() {
        subs.sort_by(|a, b| a.0.cmp(&b.0));
        let joined: Vec<String> = subs
            .into_iter()
            .map(|(k, v)| v.map_or(k.clone(), |v| format!("{k}={v}")))
            .collect();
        s.push('?');
        s.push_str(&joined.join("&"));
    }
    s
}

fn decoded_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (d(k), d(v))
        })
        .collect()
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
            verify_header(&p, auth, &creds(), now).unwrap().access_key,
            "AKIAIOSFODNN7EXAMPLE"
        );
        let wrong = auth.replace("nfA", "nfB");
        assert_eq!(
            verify_header(&p, &wrong, &creds(), now).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
        assert_eq!(
            verify_header(&p, auth, &creds(), now + MAX_SKEW * 2).unwrap_err(),
            AuthError::RequestTimeTooSkewed
        );
        assert_eq!(
            verify_header(&p, "NOPE:x", &creds(), now).unwrap_err(),
            AuthError::InvalidAccessKeyId
        );
    }

    #[test]
    fn botocore_presigned_url() {
        let uri = "/b/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=44V6wBvxt60X2VBLsmxmtg8ci%2B0%3D&Expires=1175139620";
        let p = parts("GET", uri, &[]);
        let before = UNIX_EPOCH + Duration::from_secs(1_175_139_000);
        assert!(verify_query(&p, &creds(), before).is_ok());
        let after = UNIX_EPOCH + Duration::from_secs(1_175_139_621);
        assert_eq!(
            verify_query(&p, &creds(), after).unwrap_err(),
            AuthError::AccessDenied("Request has expired".into())
        );
        let tampered = parts("GET", &uri.replace("puppy", "kitty"), &[]);
        assert_eq!(
            verify_query(&tampered, &creds(), before).unwrap_err(),
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
                verify_query(&parts("GET", &uri, &[]), &creds(), UNIX_EPOCH).unwrap_err(),
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
        let sts = string_to_sign(&p, "123", &[]);
        assert!(
            sts.ends_with("/b/k?partNumber=3&response-content-type=a/b&uploadId=abc"),
            "{sts}"
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
            proptest::prop_assert!(verify_query(&parts("GET", &uri, &[]), &creds(), now).is_err());
            let h = http::HeaderValue::from_str(&date).map(|_| vec![("date", date.as_str())]).unwrap_or_default();
            proptest::prop_assert!(verify_header(&parts("GET", "/b/k", &h), &fields, &creds(), now).is_err());
        }

        /// A signature stops matching when the path or a signed sub-resource changes.
        #[test]
        fn tampering_breaks_the_signature(key in "[a-z0-9]{1,10}".prop_filter("the signed id", |k| k != "abc")) {
            let date = "Tue, 27 Mar 2007 19:36:42 GMT";
            let auth = "AKIAIOSFODNN7EXAMPLE:nfAirJ//Mw/t2AGv4pSJRNKkKyY=";
            let h = [("content-type", "text/plain"), ("x-amz-meta-x", " v "), ("date", date)];
            for uri in [format!("/b/{key}?partNumber=3&uploadId=abc"), format!("/b/a%20b+c?partNumber=3&uploadId={key}")] {
                let p = parts("PUT", &uri, &h);
                proptest::prop_assert_eq!(verify_header(&p, auth, &creds(), at(date)).unwrap_err(), AuthError::SignatureDoesNotMatch);
            }
        }
    }
}
