//! The S3 front-end: route → auth → payload → ops → response. Every error of this front-end is
//! rendered here, once.

pub mod auth;
pub mod cors;
pub mod error;
pub mod ops;
pub mod payload;
pub mod route;
pub mod sigv2;
pub mod xml;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use self::error::S3Error;
use crate::app::App;
use crate::http::{Body, RequestInfo, empty, full};

/// Answers one S3 request, filling `info` (operation, bucket, key, access key, error code) for
/// the access log and the metrics as it learns them, so a cancelled request still has them.
pub async fn handle(
    app: &App,
    req: Request<Incoming>,
    request_id: &str,
    info: &mut RequestInfo,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // Routing is pure, so it runs first to name the operation even when authentication fails;
    // its error is still reported only after authentication.
    let routed = route::route(
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        None,
    );
    if let Ok(r) = &routed {
        info.op = r.op.name();
        info.bucket.clone_from(&r.bucket);
        info.key.clone_from(&r.key);
    }
    let result = async {
        let verified = auth::verify(&parts, &app.credentials, std::time::SystemTime::now())?;
        info.access_key = Some(verified.access_key.clone());
        ops::dispatch(app, &parts, body, routed?, verified).await
    }
    .await;
    let op_name = info.op;
    match result {
        Ok(resp) => resp,
        Err(e) => {
            // The access line carries the code of every failure; server errors also need the
            // message, which clients do not get in full.
            if e.is_server_error() {
                tracing::warn!(op = op_name, code = e.code, message = %e.message, "request failed");
            } else {
                tracing::debug!(op = op_name, code = e.code, message = %e.message, "request refused");
            }
            info.error_code = Some(e.code);
            render(&e, parts.uri.path(), request_id, &parts)
        }
    }
}

/// `<Error>` XML with the AWS status; HEAD responses carry no body.
pub fn render(
    e: &S3Error,
    resource: &str,
    request_id: &str,
    req: &http::request::Parts,
) -> Response<Body> {
    let mut x = xml::Xml::bare("Error");
    x.elem("Code", e.code)
        .elem("Message", &e.message)
        .elem("Resource", resource)
        .elem("RequestId", request_id);
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
