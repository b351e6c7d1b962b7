//! The single service function: request id, tracing span, the request-head size limit, then the
//! front end that owns the path; the access log line and request metrics once the response body
//! is done. `run` serves it (and `run_admin` the admin endpoints) through `server`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::SizeHint;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use crate::app::App;
use crate::body::{Body, RequestBody, RequestInfo};
use crate::metrics::{ConnectionMetrics, Metrics};
use crate::model::random_hex;

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// (for at most `drain`). Readiness fails from the moment `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    app: App,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let health = app.health.clone();
    let shutdown = async move {
        shutdown.await;
        health.set_draining();
    };
    let conns = app.metrics.connections.clone();
    let limits = app.limits;
    crate::server::run(listener, tls, limits, conns, shutdown, drain, move |req| {
        handle(app.clone(), req)
    })
    .await;
}

/// Serves the admin endpoints (health, metrics) on their own listener until `shutdown` resolves.
pub async fn run_admin(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let limits = app.limits;
    let handler = move |req: Request<Incoming>| {
        let app = app.clone();
        async move {
            Ok::<_, Infallible>(
                crate::admin::handle(&app, &req, crate::admin::Audience::Operator).await,
            )
        }
    };
    crate::server::run(
        listener,
        None,
        limits,
        ConnectionMetrics::default(),
        shutdown,
        Duration::from_secs(5),
        handler,
    )
    .await;
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
    let origin = crate::upload::events::Origin {
        source_ip: req
            .extensions()
            .get::<crate::server::Peer>()
            .map(|p| p.0.ip().to_string())
            .unwrap_or_default(),
        request_id: request_id.clone(),
    };
    let req = RequestBody::wrap(
        req,
        app.limits.body_timeout,
        app.limits.min_rate,
        app.metrics.clone(),
    );
    let served = async {
        let path = req.uri().path();
        if head > app.limits.max_header_size {
            header_too_large(&app, req, &request_id, &mut access.info)
        } else if path == crate::ui::PREFIX || path.starts_with("/ui/") {
            access.info.op = "UiPage";
            crate::ui::handle(path)
        } else if crate::tus::serves(&app.tus_path, path) {
            // An S3 key may sign a tus creation with SigV4: the S3 front end checks the signature.
            let (parts, body) = req.into_parts();
            let signer = crate::s3::header_signer(&app, &parts);
            let req = Request::from_parts(parts, body);
            crate::tus::handle(&app, req, signer, &mut access.info)
                .instrument(span)
                .await
        } else if path.starts_with(crate::legacy::PREFIX) {
            crate::legacy::handle(&app, req, &mut access.info)
                .instrument(span)
                .await
        } else {
            crate::s3::handle(&app, req, &request_id, &mut access.info)
                .instrument(span)
                .await
        }
    };
    let mut resp = origin.scope(served).await;
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
            crate::s3::error::S3ErrorCode::RequestHeaderSectionTooLarge,
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
