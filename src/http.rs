//! The single service function: request id, tracing span, then the front-end that owns the
//! path; the access log line and request metrics once the response body is done. Also the
//! response body type shared by the front-ends.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt as _};
use http_body::SizeHint;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tracing::Instrument as _;

use crate::app::App;
use crate::metrics::Metrics;
use crate::upload::model::random_hex;

pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn stream<S>(s: S) -> Body
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
{
    BoxBody::new(StreamBody::new(s.map_ok(Frame::data)))
}

/// What a front-end learned about a request, for the access log and the metrics.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// S3 operation name (`UploadPart`…), `Unknown` when the request could not be routed.
    pub op: &'static str,
    pub bucket: String,
    pub key: String,
    /// Set once the signature is verified.
    pub access_key: Option<String>,
    /// The S3 error code of a failed request.
    pub error_code: Option<&'static str>,
}

impl Default for RequestInfo {
    fn default() -> Self {
        Self {
            op: "Unknown",
            bucket: String::new(),
            key: String::new(),
            access_key: None,
            error_code: None,
        }
    }
}

pub async fn handle(app: App, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if app.health.on_main_listener && crate::admin::is_admin_request(&req) {
        return Ok(crate::admin::handle(&app, &req).await);
    }
    let request_id = random_hex(8).to_uppercase();
    // The path only: a presigned URL's query carries its credential and signature.
    let span = tracing::info_span!("req", request_id = %request_id, method = %req.method(), path = %req.uri().path());
    let mut access = Access {
        started: Instant::now(),
        method: req.method().to_string(),
        bytes_in: declared_length(req.headers()),
        request_id: request_id.clone(),
        info: RequestInfo::default(),
        // Unless a response is produced: the client went away first (nginx's convention).
        status: 499,
        bytes_out: 0,
        metrics: app.metrics.clone(),
    };
    let path = req.uri().path();
    let mut resp = if path == crate::ui::PREFIX || path.starts_with("/ui/") {
        access.info.op = "UiPage";
        crate::ui::handle(path)
    } else if path.starts_with(crate::legacy::PREFIX) {
        access.info.op = "LegacyApi";
        crate::legacy::handle(&app, req).instrument(span).await
    } else {
        crate::s3::handle(&app, req, &request_id, &mut access.info)
            .instrument(span)
            .await
    };
    let headers = resp.headers_mut();
    if let Ok(v) = request_id.parse() {
        headers.insert("x-amz-request-id", v);
    }
    if let Ok(v) = format!("{request_id}{request_id}").parse() {
        headers.insert("x-amz-id-2", v);
    }
    headers.insert(
        hyper::header::SERVER,
        hyper::header::HeaderValue::from_static("mpgw"),
    );
    access.status = resp.status().as_u16();
    Ok(resp.map(|body| BoxBody::new(Logged { body, access })))
}

/// The request body size the client announced: the wire size (aws-chunked framing included).
fn declared_length(h: &hyper::HeaderMap) -> u64 {
    h.get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

/// One request's access log fields, completed as its response body is sent.
struct Access {
    started: Instant,
    request_id: String,
    method: String,
    info: RequestInfo,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    metrics: Arc<Metrics>,
}

impl Drop for Access {
    // Dropped with the response body, whether it was sent whole or the client went away: so a
    // long GetObject is logged with its real duration and byte count.
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        self.metrics.request(self.info.op, self.status, elapsed);
        tracing::info!(
            target: "mpgw::access",
            request_id = %self.request_id,
            access_key = self.info.access_key.as_deref().unwrap_or("-"),
            op = self.info.op,
            bucket = %self.info.bucket,
            key = %self.info.key,
            method = %self.method,
            status = self.status,
            error_code = self.info.error_code.unwrap_or("-"),
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "request"
        );
    }
}

/// A response body that counts what it sends into its `Access`.
struct Logged {
    body: Body,
    access: Access,
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.access.bytes_out += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
