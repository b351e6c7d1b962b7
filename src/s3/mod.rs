//! The S3 front-end: route → auth → payload → ops → response. Every error of this front-end is
//! rendered here, once.

pub mod access;
pub mod acl;
pub mod auth;
pub mod cors;
pub mod error;
pub mod lifecycle;
pub mod notification;
pub mod ops;
pub mod payload;
pub mod policy;
pub mod post;
pub mod query;
pub mod request;
pub mod route;
pub mod tagging;

use crate::body::RequestBody;
use hyper::{Method, Request, Response};

use self::error::S3Error;
use crate::app::App;
use crate::body::{Body, RequestInfo, empty, full};

/// Answers one S3 request, filling `info` (operation, bucket, key, access key, error code) for
/// the access log and the metrics as it learns them, so a cancelled request still has them.
pub async fn handle(
    app: &App,
    req: Request<RequestBody>,
    request_id: &str,
    info: &mut RequestInfo,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let vhost = route::host_bucket(&parts.headers, &parts.uri, app.domain.as_deref());
    let origin = parts
        .headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A CORS preflight carries no credentials: it is answered from the CORS rules alone.
    if parts.method == Method::OPTIONS {
        info.op = "PreflightCors";
        let bucket = vhost
            .clone()
            .unwrap_or_else(|| first_segment(parts.uri.path()));
        let result = match cors_rules(app, &bucket).await {
            Some(rules) => cors::preflight(&rules, &parts.headers),
            None => cors::preflight(&[], &parts.headers),
        };
        return result.unwrap_or_else(|e| {
            info.error_code = Some(e.code);
            render(&e, parts.uri.path(), request_id, &parts)
        });
    }
    // One decoded view of the query for authentication and routing (see `route::Query`).
    let query = route::Query::parse(parts.uri.query());
    // A POST Object form carries its own authentication (a signed policy) in its fields.
    if parts.method == Method::POST
        && parts.headers.get(hyper::header::AUTHORIZATION).is_none()
        && post::is_form(&parts.headers)
        && let Ok(r) = route::route(
            &parts.method,
            parts.uri.path(),
            &query,
            &parts.headers,
            vhost.clone(),
        )
        && r.op == route::S3Op::PostObject
    {
        info.op = r.op.name();
        info.bucket.clone_from(&r.bucket);
        let result = post::handle(app, &parts, body, &r.bucket, vhost.is_some(), info).await;
        return finish(app, result, origin, request_id, &parts, info).await;
    }
    let verified = auth::verify(
        &parts,
        &query,
        vhost.as_deref(),
        &app.credentials,
        std::time::SystemTime::now(),
    )
    .and_then(|v| {
        // A presigned URL's signed x-amz-* parameters are its headers, for routing (a copy
        // source) and for the operation alike.
        if v.presigned {
            for (name, value) in auth::hoisted_headers(&query, &parts.headers)? {
                parts.headers.insert(name, value);
            }
        }
        Ok(v)
    });
    // Routing is pure, so it runs whatever authentication said, to name the operation; its
    // error is still reported only after authentication.
    let routed = route::route(
        &parts.method,
        parts.uri.path(),
        &query,
        &parts.headers,
        vhost,
    );
    if let Ok(r) = &routed {
        info.op = r.op.name();
        info.bucket.clone_from(&r.bucket);
        info.key.clone_from(&r.key);
    }
    let result = match verified {
        Ok(verified) => {
            info.access_key = Some(verified.access_key.clone());
            match routed {
                Ok(route) => ops::dispatch(app, &parts, body, route, verified).await,
                Err(e) => {
                    request::drain(&parts, body).await;
                    Err(e)
                }
            }
        }
        Err(e) => {
            request::drain(&parts, body).await;
            Err(e.into())
        }
    };
    finish(app, result, origin, request_id, &parts, info).await
}

/// Who signed a request with SigV4 in its `Authorization` header, for another front end (tus
/// creation by an S3 key): the access key, the headers the signature covers, and the signed
/// payload hash (None: unsigned). None when the request carries no such header.
pub fn header_signer(app: &App, parts: &http::request::Parts) -> Option<crate::body::Signer> {
    let auth = parts
        .headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    if !auth.starts_with("AWS4-HMAC-SHA256 ") {
        return None;
    }
    let query = route::Query::parse(parts.uri.query());
    let verified = auth::verify(
        parts,
        &query,
        None,
        &app.credentials,
        std::time::SystemTime::now(),
    );
    Some(match verified {
        Err(e) => Err(e.to_string()),
        Ok(v) => {
            let signed = auth
                .split(',')
                .find_map(|f| f.trim().strip_prefix("SignedHeaders="))
                .map(|h| h.split(';').map(str::to_owned).collect())
                .unwrap_or_default();
            match v.payload {
                auth::PayloadMode::Sha256(h) => Ok((v.access_key, signed, Some(h))),
                auth::PayloadMode::Unsigned => Ok((v.access_key, signed, None)),
                _ => Err("a tus request cannot be aws-chunked".into()),
            }
        }
    })
}

/// Renders a result (logging a failure once), with the CORS headers a browser origin needs.
async fn finish(
    app: &App,
    result: Result<Response<Body>, S3Error>,
    origin: Option<String>,
    request_id: &str,
    parts: &http::request::Parts,
    info: &mut RequestInfo,
) -> Response<Body> {
    let op_name = info.op;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            // The access line carries the code of every failure; server errors also need the
            // message, which clients do not get in full.
            if e.is_server_error() {
                let cause = e.cause.as_deref().unwrap_or("-");
                tracing::warn!(op = op_name, code = e.code, message = %e.message, cause, "request failed");
            } else {
                tracing::debug!(op = op_name, code = e.code, message = %e.message, "request refused");
            }
            info.error_code = Some(e.code);
            render(&e, parts.uri.path(), request_id, parts)
        }
    };
    // Browsers need the CORS headers on every answer, errors included, to read it at all.
    if let Some(origin) = origin
        && let Some(rules) = cors_rules(app, &info.bucket).await
    {
        cors::decorate(&rules, &origin, parts.method.as_str(), resp.headers_mut());
    }
    resp
}

/// The bucket's CORS rules, else the server-wide rule.
async fn cors_rules(app: &App, bucket: &str) -> Option<Vec<crate::model::CorsRule>> {
    let own = if bucket.is_empty() {
        None
    } else {
        app.uploads.bucket(bucket).await.ok().and_then(|b| b.cors)
    };
    own.or_else(|| app.cors_default.as_deref().map(|r| vec![r.clone()]))
}

fn first_segment(path: &str) -> String {
    let path = path.trim_start_matches('/');
    percent_encoding::percent_decode_str(path.split('/').next().unwrap_or_default())
        .decode_utf8_lossy()
        .into_owned()
}

/// `<Error>` XML with the AWS status; HEAD responses carry no body.
pub fn render(
    e: &S3Error,
    resource: &str,
    request_id: &str,
    req: &http::request::Parts,
) -> Response<Body> {
    let mut x = crate::xml::Xml::bare("Error");
    x.elem("Code", e.code).elem("Message", &e.message);
    for (name, value) in &e.details {
        x.elem(name, value);
    }
    x.elem("Resource", resource).elem("RequestId", request_id);
    let body = if req.method == Method::HEAD {
        empty()
    } else {
        full(x.finish("Error"))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = e.status;
    let h = resp.headers_mut();
    if req.method != Method::HEAD {
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/xml"),
        );
    }
    for (name, value) in &e.headers {
        if let Ok(v) = value.parse() {
            h.insert(*name, v);
        }
    }
    // A client that waits for `100 Continue` has not sent its body; closing is the only way to
    // keep the connection's framing intact after answering early.
    if req
        .headers
        .get(hyper::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        h.insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    resp
}
