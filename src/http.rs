//! The single service function: request id, tracing span, the request-head size limit, then the
//! front-end that owns the path; the access log line and request metrics once the response body
//! is done. Also the body types shared by the front-ends: `Body` for responses and
//! `RequestBody`, which fails a request body that stalls (`--body-timeout`) or trickles
//! (`--min-body-rate`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt as _};
use http_body::SizeHint;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tokio::time::Sleep;
use tracing::Instrument as _;

use crate::app::App;
use crate::metrics::{Metrics, Timeout};
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
    if let Some(audience) = crate::admin::on_main_listener(&app, &req) {
        return Ok(crate::admin::handle(&app, &req, audience).await);
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
    let head = head_size(&req);
    let req = req.map(|inner| RequestBody {
        inner,
        timeout: app.limits.body_timeout,
        rate: app.limits.min_rate.map(crate::server::RateMeter::new),
        stalled: None,
        timer: None,
        metrics: app.metrics.clone(),
    });
    let path = req.uri().path();
    let mut resp = if head > app.limits.max_header_size {
        header_too_large(&app, req, &request_id, &mut access.info)
    } else if path == crate::ui::PREFIX || path.starts_with("/ui/") {
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

/// The size of the request head as an HTTP/1.1 client would send it (request line, header
/// fields, blank line), whichever protocol carried it.
fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len() + 8);
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    req.method().as_str().len() + target + authority + " HTTP/1.1\r\n".len() + fields + 2
}

/// AWS answers a too large request head with 400 RequestHeaderSectionTooLarge; the legacy API
/// gets its own envelope. The body is left unread: hyper closes the connection after the answer.
fn header_too_large(
    app: &App,
    req: Request<RequestBody>,
    request_id: &str,
    info: &mut RequestInfo,
) -> Response<Body> {
    let max = app.limits.max_header_size;
    let (parts, _body) = req.into_parts();
    let mut resp = if parts.uri.path().starts_with(crate::legacy::PREFIX) {
        info.op = "LegacyApi";
        crate::legacy::reply::error(&crate::legacy::reply::LegacyError::too_large(format!(
            "request header section exceeds {max} bytes"
        )))
    } else {
        let e = crate::s3::error::S3Error::new(
            "RequestHeaderSectionTooLarge",
            hyper::StatusCode::BAD_REQUEST,
            format!("Your request header section exceeds the maximum allowed size ({max} bytes)."),
        );
        info.error_code = Some(e.code);
        crate::s3::render(&e, parts.uri.path(), request_id, &parts)
    };
    if parts.version < hyper::Version::HTTP_2 {
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// A request body that fails with `BodyReadError::Timeout` once the client has sent nothing for
/// the body timeout while the gateway waits for data (a stalled or trickling upload). The clock
/// runs only while a read is pending, so a slow disk never counts against the client.
pub struct RequestBody {
    inner: Incoming,
    timeout: Option<Duration>,
    /// The client's sending pace against `--min-body-rate`.
    rate: Option<crate::server::RateMeter>,
    /// Since when the reader has been waiting for data.
    stalled: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    #[error("request body: no data for {0:?}")]
    Timeout(Duration),
    #[error("request body: slower than the minimum rate")]
    TooSlow,
    #[error(transparent)]
    Transport(#[from] hyper::Error),
}

/// Whether a body stream failed because the client stalled (S3: RequestTimeout).
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<BodyReadError>(),
        Some(BodyReadError::Timeout(_) | BodyReadError::TooSlow)
    )
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyReadError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.stalled = None;
            if let Some(meter) = this.rate.as_mut() {
                let n = match &frame {
                    Some(Ok(f)) => f.data_ref().map_or(0, Bytes::len),
                    _ => 0,
                };
                meter.moved(n);
            }
            return Poll::Ready(frame.map(|r| r.map_err(BodyReadError::Transport)));
        }
        if let Some(meter) = this.rate.as_mut()
            && meter.waiting(cx)
        {
            this.metrics.connections.timeout(Timeout::BodyRate);
            return Poll::Ready(Some(Err(BodyReadError::TooSlow)));
        }
        let Some(limit) = this.timeout else {
            return Poll::Pending;
        };
        let at = *this.stalled.get_or_insert_with(tokio::time::Instant::now) + limit;
        if !crate::server::wake_at(&mut this.timer, at, cx) {
            return Poll::Pending;
        }
        this.metrics.connections.timeout(Timeout::Body);
        Poll::Ready(Some(Err(BodyReadError::Timeout(limit))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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
