//! CORS for browser uploaders: bucket rules (Put/Get/DeleteBucketCors) or the server-wide
//! default, preflight answers (no authentication, as on AWS), and the headers on actual
//! responses, errors included, so a browser can read `ETag` after a presigned UploadPart.

use hyper::Response;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use super::error::{S3Error, S3ErrorCode};
use crate::body::{Body, empty};
use crate::model::CorsRule;
use crate::xml::{self, Xml};

const METHODS: [&str; 5] = CorsRule::METHODS;
const MAX_RULES: usize = 100;

pub const EXPOSE_DEFAULT: &[&str] = CorsRule::EXPOSE_DEFAULT;

/// Parses a PutBucketCors body.
pub fn parse(body: &[u8]) -> Result<Vec<CorsRule>, S3Error> {
    let root = xml::parse(body).map_err(|_| S3Error::malformed_xml())?;
    if root.name != "CORSConfiguration" {
        return Err(S3Error::malformed_xml());
    }
    let texts = |n: &xml::Node, name: &str| -> Vec<String> {
        n.children_named(name)
            .map(|c| c.text.trim().to_owned())
            .collect()
    };
    let mut rules = Vec::new();
    for r in root.children_named("CORSRule") {
        let rule = CorsRule {
            allowed_origins: texts(r, "AllowedOrigin"),
            allowed_methods: texts(r, "AllowedMethod"),
            allowed_headers: texts(r, "AllowedHeader"),
            expose_headers: texts(r, "ExposeHeader"),
            max_age_seconds: match r.child_text("MaxAgeSeconds") {
                None => None,
                Some(v) => Some(v.trim().parse().map_err(|_| S3Error::malformed_xml())?),
            },
        };
        if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
            return Err(S3Error::malformed_xml());
        }
        if let Some(m) = rule
            .allowed_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(S3Error::invalid_request(format!(
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            )));
        }
        rules.push(rule);
    }
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(S3Error::malformed_xml());
    }
    Ok(rules)
}

pub fn to_xml(rules: &[CorsRule]) -> String {
    let mut x = Xml::new("CORSConfiguration");
    for r in rules {
        x.open("CORSRule");
        for v in &r.allowed_headers {
            x.elem("AllowedHeader", v);
        }
        for v in &r.allowed_methods {
            x.elem("AllowedMethod", v);
        }
        for v in &r.allowed_origins {
            x.elem("AllowedOrigin", v);
        }
        for v in &r.expose_headers {
            x.elem("ExposeHeader", v);
        }
        x.opt("MaxAgeSeconds", r.max_age_seconds.map(|m| m.to_string()));
        x.close("CORSRule");
    }
    x.finish("CORSConfiguration")
}

/// `*` matches any run of characters (S3 allows one wildcard per value).
fn wildcard(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let (p, v) = if case_insensitive {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), value.to_owned())
    };
    match p.split_once('*') {
        None => p == v,
        Some((head, tail)) => {
            v.len() >= head.len() + tail.len() && v.starts_with(head) && v.ends_with(tail)
        }
    }
}

/// The first rule that allows `origin` to use `method` with `headers`.
fn find<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[&str],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| wildcard(o, origin, false))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| r.allowed_headers.iter().any(|a| wildcard(a, h, true)))
    })
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

fn allow_origin(h: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    if rule.allowed_origins.iter().any(|o| o == "*") {
        set(h, "access-control-allow-origin", "*");
    } else {
        set(h, "access-control-allow-origin", origin);
        set(h, "access-control-allow-credentials", "true");
    }
}

/// Answers an OPTIONS preflight against `rules` (the bucket's, else the server default).
pub fn preflight(rules: &[CorsRule], req: &HeaderMap) -> Result<Response<Body>, S3Error> {
    let get = |n: &str| req.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let (Some(origin), Some(method)) = (get("origin"), get("access-control-request-method")) else {
        return Err(S3Error::new(
            S3ErrorCode::BadRequest,
            "Insufficient information. Origin request header needed.",
        ));
    };
    let requested: Vec<&str> = get("access-control-request-headers")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let rule = find(rules, origin, method, &requested).ok_or_else(|| {
        S3Error::new(
            S3ErrorCode::AccessForbidden, "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        )
    })?;
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    allow_origin(h, rule, origin);
    set(
        h,
        "access-control-allow-methods",
        &rule.allowed_methods.join(", "),
    );
    if !requested.is_empty() {
        set(h, "access-control-allow-headers", &requested.join(", "));
    }
    if !rule.expose_headers.is_empty() {
        set(
            h,
            "access-control-expose-headers",
            &rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set(h, "access-control-max-age", &age.to_string());
    }
    set(
        h,
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
    Ok(resp)
}

/// Adds CORS headers to an actual response when `origin` may use `method`.
pub fn decorate(rules: &[CorsRule], origin: &str, method: &str, resp: &mut HeaderMap) {
    if let Some(rule) = find(rules, origin, method, &[]) {
        allow_origin(resp, rule, origin);
        if !rule.expose_headers.is_empty() {
            set(
                resp,
                "access-control-expose-headers",
                &rule.expose_headers.join(", "),
            );
        }
        set(resp, "vary", "Origin");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use hyper::StatusCode;

    use super::*;

    const UPPY: &str = r#"<CORSConfiguration><CORSRule>
      <AllowedOrigin>https://*.example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>
      <AllowedHeader>Authorization</AllowedHeader><AllowedHeader>x-amz-*</AllowedHeader><AllowedHeader>content-type</AllowedHeader>
      <ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule></CORSConfiguration>"#;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_static(k),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn round_trip_and_validation() {
        let rules = parse(UPPY.as_bytes()).unwrap();
        assert_eq!(rules[0].allowed_methods, ["GET", "PUT"]);
        assert_eq!(parse(to_xml(&rules).as_bytes()).unwrap(), rules);
        let bad = UPPY.replace(
            "<AllowedMethod>GET</AllowedMethod>",
            "<AllowedMethod>PATCH</AllowedMethod>",
        );
        assert_eq!(parse(bad.as_bytes()).unwrap_err().code, "InvalidRequest");
        assert_eq!(
            parse(b"<CORSConfiguration/>").unwrap_err().code,
            "MalformedXML"
        );
    }

    #[test]
    fn preflight_matches_origin_method_and_headers() {
        let rules = parse(UPPY.as_bytes()).unwrap();
        let ok = preflight(
            &rules,
            &headers(&[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "Content-Type, X-Amz-Date"),
            ]),
        )
        .unwrap();
        let h = ok.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-expose-headers"], "ETag");
        assert_eq!(h["access-control-max-age"], "3000");
        for (origin, method, hdrs) in [
            ("https://evil.test", "PUT", ""),
            ("https://app.example.com", "DELETE", ""),
            ("https://app.example.com", "PUT", "x-custom"),
        ] {
            let req = headers(&[
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", hdrs),
            ]);
            assert_eq!(
                preflight(&rules, &req).unwrap_err().status,
                StatusCode::FORBIDDEN,
                "{origin} {method} {hdrs}"
            );
        }
        assert_eq!(
            preflight(&rules, &HeaderMap::new()).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn default_rule_exposes_etag_to_any_listed_origin() {
        let rule = CorsRule::allow_origins(&["*".into()]).unwrap();
        let mut h = HeaderMap::new();
        decorate(&[rule], "http://localhost:3000", "PUT", &mut h);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(
            h["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .starts_with("ETag, Location")
        );
        assert!(CorsRule::allow_origins(&[]).is_none());
    }

    fn trimmed() -> impl Strategy<Value = String> {
        any::<String>().prop_map(|s| s.trim().to_owned())
    }

    fn rule() -> impl Strategy<Value = CorsRule> {
        (
            prop::collection::vec(trimmed(), 1..4),
            prop::collection::vec(prop::sample::select(&METHODS[..]), 1..4),
            prop::collection::vec(trimmed(), 0..4),
            prop::collection::vec(trimmed(), 0..4),
            any::<Option<u32>>(),
        )
            .prop_map(|(origins, methods, headers, expose, max_age)| CorsRule {
                allowed_origins: origins,
                allowed_methods: methods.into_iter().map(str::to_owned).collect(),
                allowed_headers: headers,
                expose_headers: expose,
                max_age_seconds: max_age,
            })
    }

    proptest! {
        /// GetBucketCors answers what PutBucketCors stored, whatever the values.
        #[test]
        fn rules_round_trip(rules in prop::collection::vec(rule(), 1..4)) {
            prop_assert_eq!(parse(to_xml(&rules).as_bytes()).unwrap(), rules);
        }

        /// Hostile bodies get an S3 error, never a panic; what parses is within the limits.
        #[test]
        fn arbitrary_bodies(body in "(<CORSConfiguration>(<CORSRule>(<Allowed(Origin|Method|Header)>[ -~]{0,8}</Allowed(Origin|Method|Header)>|<MaxAgeSeconds>[0-9-]{0,12}</MaxAgeSeconds>)*</CORSRule>)*</CORSConfiguration>|[ -~]{0,100})") {
            if let Ok(rules) = parse(body.as_bytes()) {
                prop_assert!((1..=MAX_RULES).contains(&rules.len()));
                for r in &rules {
                    prop_assert!(!r.allowed_origins.is_empty());
                    prop_assert!(r.allowed_methods.iter().all(|m| METHODS.contains(&m.as_str())));
                }
            }
        }
    }
}
