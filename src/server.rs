//! Accept loops and graceful shutdown; no protocol knowledge. Counts connections and the bytes
//! they move, and enforces the limits against abusive clients (see `ConnLimits`).
//!
//! Timeouts live in the connection's IO wrapper (`Watched`) rather than in hyper: hyper's HTTP/1
//! `header_read_timeout` also runs while a keep-alive connection waits for its next request, so
//! it cannot tell an idle client from a slow-loris one, and HTTP/2 has no such timeout at all.
//! The wrapper knows whether a request is in progress (the service marks it) and when the
//! client last started sending, which is enough for both.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::SizeHint;
use http_body_util::combinators::BoxBody;
use hyper::body::Frame;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

use crate::body::{Body, RateMeter, wake_at};
use crate::config::{Config, ConnLimits};
use crate::metrics::{ConnectionMetrics, Timeout};

/// Hyper's own HTTP/1 read-buffer limit (its default), kept unless `max_header_size` needs more:
/// it also sizes the reads of request bodies, so a smaller one would slow uploads down.
const HYPER_MAX_BUF: usize = 8192 + 4096 * 100;

/// The TLS acceptor `cfg` asks for (`--tls-cert` and `--tls-key`), if any.
pub fn tls_for(cfg: &Config) -> Result<Option<TlsAcceptor>, String> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => tls_acceptor(cert, key).map(Some),
        _ => Ok(None),
    }
}

/// Loads a PEM certificate chain and key into a TLS acceptor offering HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("tls-cert {}: {e}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls-key {}: {e}", key.display()))?;
    // Name the provider: the dependency tree may enable several, and rustls then refuses to guess.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// Serves `handler` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (for at most `drain`). Knows nothing of the protocol behind the handler.
pub async fn run<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ConnLimits,
    conns: ConnectionMetrics,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Heads between max_header_size and these limits get the S3 answer from `http`; beyond
    // them hyper refuses the head itself (HTTP/1: 431 without a body, checked between reads so
    // up to about twice the buffer; HTTP/2: stream reset).
    builder
        .http1()
        .max_buf_size(HYPER_MAX_BUF.max(limits.max_header_size.saturating_mul(2)));
    builder
        .http2()
        .max_header_list_size(
            u32::try_from(limits.max_header_size.saturating_mul(2)).unwrap_or(u32::MAX),
        )
        .max_concurrent_streams(limits.http2_max_streams);
    let graceful = GracefulShutdown::new();
    // Past the cap, connections wait in the kernel's listen backlog instead of being accepted
    // and refused: they are served (late) once a slot frees, hold no file descriptor of ours
    // meanwhile, and nobody has to read and discard a request body to answer 503 on it.
    let slots = limits
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))));
    tokio::pin!(shutdown);
    loop {
        let permit = match &slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    conns.limited.inc();
                    tracing::debug!("max-connections reached: accepting paused");
                    tokio::select! {
                        p = slots.clone().acquire_owned() => Some(p.expect("the semaphore is never closed")),
                        () = &mut shutdown => break,
                    }
                }
            },
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(v) => v,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                conns.accepted.inc();
                conns.open.inc();
                let watch = Arc::new(Watch::new());
                let io = Watched::new(stream, conns.clone(), watch.clone(), limits, tls.is_some());
                let service = service_fn(busy(watch.clone(), peer, handler.clone()));
                let open = conns.open.clone();
                match &tls {
                    None => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                        let conn = graceful.watch(conn.into_owned());
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(%peer, error = %e, "connection ended with error");
                            }
                            open.dec();
                            drop(permit);
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's task, so a slow client never
                        // holds up the accept loop.
                        let (acceptor, builder, conns) = (acceptor.clone(), builder.clone(), conns.clone());
                        let watcher = graceful.watcher();
                        let handshake_timeout = limits.header_timeout.unwrap_or(Duration::MAX);
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await;
                            match handshake {
                                Ok(Ok(stream)) => {
                                    // An HTTP/2 client never has a request head of its own in
                                    // progress between requests: only the idle timeout applies.
                                    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                                        watch.h2.store(true, Ordering::Relaxed);
                                    }
                                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                                        tracing::debug!(%peer, error = %e, "connection ended with error");
                                    }
                                }
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => {
                                    conns.timeout(Timeout::Tls);
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                }
                            }
                            open.dec();
                            drop(permit);
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing remaining connections");
    }
}

/// A response on its way, boxed: what the service wrapper `busy` returns.
type Responding = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Wraps `handler` so that the connection counts each request as in progress until its response
/// body is done (or dropped): only then can the connection fall idle.
fn busy<H, F>(
    watch: Arc<Watch>,
    peer: SocketAddr,
    handler: H,
) -> impl Fn(Request<Incoming>) -> Responding + Clone + Send + Sync + 'static
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    move |mut req| {
        req.extensions_mut().insert(Peer(peer));
        let guard = Busy::new(watch.clone());
        let fut = handler(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|body| BoxBody::new(BusyBody { body, _busy: guard })))
        })
    }
}

/// The address a request came from (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// What the service tells the connection's IO wrapper, and back.
struct Watch {
    /// Requests whose response is not done yet.
    in_flight: AtomicUsize,
    /// When the last request in progress ended, in µs after `epoch` (0: since the start).
    idle_since: AtomicU64,
    /// Requests done so far: tells a head begun since the last one from older bytes.
    done: AtomicU64,
    /// Serving HTTP/2 (from ALPN, or the prior-knowledge preface).
    h2: AtomicBool,
    epoch: Instant,
}

impl Watch {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            done: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_micros(self.idle_since.load(Ordering::Acquire))
    }
}

/// One request in progress on its connection.
struct Busy(Arc<Watch>);

impl Busy {
    fn new(watch: Arc<Watch>) -> Self {
        watch.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(watch)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let w = &self.0;
        let us = u64::try_from(w.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Before the count drops, so a reader that sees 0 also sees the new state.
        w.idle_since.fetch_max(us, Ordering::AcqRel);
        w.done.fetch_add(1, Ordering::AcqRel);
        w.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in progress.
struct BusyBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A client connection: counts the bytes it reads and writes, and fails reads and writes once the
/// client is over one of its timeouts (`io::ErrorKind::TimedOut`; hyper then closes it).
struct Watched {
    stream: TcpStream,
    conns: ConnectionMetrics,
    watch: Arc<Watch>,
    limits: ConnLimits,
    /// When the client started its current request head: set at accept (a client connects to
    /// send one), then by the first byte read while the connection is idle.
    head_started: Instant,
    /// `Watch::done` when `head_started` was set: a head is in progress while they are equal.
    head_of: u64,
    /// Still to look for the HTTP/2 preface (plain connections' first read).
    sniff: bool,
    read_timer: Option<Pin<Box<Sleep>>>,
    /// Since when writes make no progress.
    write_stalled: Option<Instant>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// The client's reading pace against `--min-body-rate`.
    send_rate: Option<RateMeter>,
}

enum Deadline {
    /// The client is over its time at this instant.
    Fire(Instant, Timeout),
    /// Nothing due, but look again then (a request in progress may end meanwhile, without
    /// waking this reader).
    Recheck(Instant),
}

impl Watched {
    fn new(
        stream: TcpStream,
        conns: ConnectionMetrics,
        watch: Arc<Watch>,
        limits: ConnLimits,
        tls: bool,
    ) -> Self {
        Self {
            stream,
            conns,
            head_started: watch.epoch,
            head_of: 0,
            watch,
            limits,
            sniff: !tls,
            read_timer: None,
            write_stalled: None,
            write_timer: None,
            send_rate: limits.min_rate.map(RateMeter::new),
        }
    }

    fn read_deadline(&self) -> Option<Deadline> {
        let ConnLimits {
            header_timeout,
            idle_timeout,
            ..
        } = self.limits;
        let period = match (header_timeout, idle_timeout) {
            (None, None) => return None,
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
        };
        if self.watch.in_flight.load(Ordering::Acquire) > 0 {
            // A request body's own stalls are `http`'s business (per request, also for HTTP/2).
            return Some(Deadline::Recheck(Instant::now() + period));
        }
        let idle_since = self.watch.idle_since();
        let h2 = self.watch.h2.load(Ordering::Relaxed);
        let head_in_progress = self.head_of == self.watch.done.load(Ordering::Acquire);
        let due = if head_in_progress && !h2 {
            header_timeout.map(|t| (self.head_started + t, Timeout::Header))
        } else {
            idle_timeout.map(|t| (idle_since + t, Timeout::Idle))
        };
        Some(match due {
            Some((at, kind)) => Deadline::Fire(at, kind),
            None => Deadline::Recheck(Instant::now() + period),
        })
    }

    fn saw_bytes(&mut self, bytes: &[u8]) {
        if std::mem::take(&mut self.sniff) && bytes.starts_with(b"PRI * HTTP/2") {
            self.watch.h2.store(true, Ordering::Relaxed);
        }
        let done = self.watch.done.load(Ordering::Acquire);
        if self.watch.in_flight.load(Ordering::Acquire) == 0 && self.head_of != done {
            self.head_of = done;
            self.head_started = Instant::now();
        }
    }

    /// A read found nothing: fails it if the client is over its time, else arms the timer.
    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let (at, fire) = match self.read_deadline() {
                None => return Poll::Pending,
                Some(Deadline::Fire(at, kind)) => (at, Some(kind)),
                Some(Deadline::Recheck(at)) => (at, None),
            };
            if !wake_at(&mut self.read_timer, at, cx) {
                return Poll::Pending;
            }
            // Due: a timeout, or a recheck (then look again).
            if let Some(kind) = fire {
                self.conns.timeout(kind);
                let what = match kind {
                    Timeout::Idle => "idle connection",
                    _ => "request head not received",
                };
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{what}: timed out"),
                )));
            }
        }
    }

    /// A write could not proceed: fails it once the client has read nothing for the body timeout.
    fn write_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if let Some(meter) = self.send_rate.as_mut()
            && meter.waiting(cx)
        {
            self.conns.timeout(Timeout::SendRate);
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client reads the response too slowly: cut off",
            )));
        }
        let Some(limit) = self.limits.body_timeout else {
            return Poll::Pending;
        };
        let at = *self.write_stalled.get_or_insert_with(Instant::now) + limit;
        if !wake_at(&mut self.write_timer, at, cx) {
            return Poll::Pending;
        }
        self.conns.timeout(Timeout::Send);
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client does not read the response: timed out",
        )))
    }

    fn wrote(
        &mut self,
        polled: Poll<std::io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                self.conns.sent_bytes.inc_by(n as u64);
                self.write_stalled = None;
                if let Some(meter) = self.send_rate.as_mut() {
                    meter.moved(n);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.write_pending(cx),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                self.conns.received_bytes.inc_by(got.len() as u64);
                if !got.is_empty() {
                    self.saw_bytes(got);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.read_pending(cx),
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
