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
use crate::model::random_hex;

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
    let drain = drain_plan(&req);
    let req = req.map(|inner| RequestBody {
        inner: Some(inner),
        timeout: app.limits.body_timeout,
        rate: app.limits.min_rate.map(crate::server::RateMeter::new),
        stalled: None,
        timer: None,
        metrics: app.metrics.clone(),
        drain,
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
    let (parts, body) = req.into_parts();
    body.close_unread();
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
    /// Taken only on drop, to drain what the handler left unread.
    inner: Option<Incoming>,
    timeout: Option<Duration>,
    /// The client's sending pace against `--min-body-rate`.
    rate: Option<crate::server::RateMeter>,
    /// Since when the reader has been waiting for data.
    stalled: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
    /// Whether, and how much of, an unread rest is read and dropped once the handler lets go.
    drain: Drain,
}

/// Most of a refused request's body that is read (and dropped) after the answer, so a client
/// still sending it reads the answer instead of a reset connection and can keep the
/// connection; beyond this the connection is closed instead.
pub const DRAIN_LIMIT: u64 = 16 << 20;

/// What is left to drain of a request body when its handler drops it unread.
#[derive(Clone, Copy, Debug)]
enum Drain {
    /// HTTP/2 (the stream is reset on its own), `Expect: 100-continue` before any byte was
    /// asked for (the client has not sent the body), or the body failed.
    Never,
    /// At most this many bytes are still to come (`None`: unknown length).
    Left(Option<u64>),
}

fn drain_plan<B>(req: &Request<B>) -> Drain {
    let expects = req
        .headers()
        .get(hyper::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if req.version() >= hyper::Version::HTTP_2 || expects {
        return Drain::Never;
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    Drain::Left(declared)
}

impl RequestBody {
    /// Drops the body without draining it: the connection closes after the answer.
    pub fn close_unread(mut self) {
        self.drain = Drain::Never;
    }
}

impl Drop for RequestBody {
    // A handler that answers before the body is read (a refusal, a failed write) drops it here.
    // Reading the rest in the background, bounded in bytes and time, lets the answer reach the
    // client: closing with unread bytes makes the kernel reset the connection, and a client
    // still writing then sees a broken pipe instead of the answer.
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        let Drain::Left(left) = self.drain else {
            return;
        };
        if http_body::Body::is_end_stream(&inner) || left.is_some_and(|n| n > DRAIN_LIMIT) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let mut seen = 0u64;
            let reading = async {
                while let Some(Ok(frame)) = inner.frame().await {
                    seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if seen > DRAIN_LIMIT {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), reading).await;
        });
    }
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
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            this.stalled = None;
            match &frame {
                Some(Ok(f)) => {
                    if let (Drain::Left(Some(n)), Some(d)) = (&mut this.drain, f.data_ref()) {
                        *n = n.saturating_sub(d.len() as u64);
                    }
                }
                Some(Err(_)) => this.drain = Drain::Never,
                None => {}
            }
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
            this.drain = Drain::Never;
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
        this.drain = Drain::Never;
        Poll::Ready(Some(Err(BodyReadError::Timeout(limit))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
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
