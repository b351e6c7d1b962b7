//! Accept loops and graceful shutdown; no protocol knowledge. Counts connections and the bytes
//! they move.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::http::Body;
use crate::metrics::ConnectionMetrics;

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// (for at most `drain`). Readiness fails from the moment `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let health = app.health.clone();
    let shutdown = async move {
        shutdown.await;
        health.set_draining();
    };
    let conns = app.metrics.connections.clone();
    let tls = app.tls.clone();
    accept_loop(listener, tls, conns, shutdown, drain, move |req| {
        crate::http::handle(app.clone(), req)
    })
    .await;
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

/// Serves the admin endpoints (health, metrics) on their own listener until `shutdown` resolves.
pub async fn run_admin(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let handler = move |req: Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(crate::admin::handle(&app, &req).await) }
    };
    accept_loop(
        listener,
        None,
        ConnectionMetrics::default(),
        shutdown,
        Duration::from_secs(5),
        handler,
    )
    .await;
}

async fn accept_loop<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    conns: ConnectionMetrics,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
                let counted = Counted { stream, conns: conns.clone() };
                let open = conns.open.clone();
                match &tls {
                    None => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(counted), service_fn(handler.clone()));
                        let conn = graceful.watch(conn.into_owned());
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(%peer, error = %e, "connection ended with error");
                            }
                            open.dec();
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's task, so a slow client never
                        // holds up the accept loop.
                        let (acceptor, builder, handler) = (acceptor.clone(), builder.clone(), handler.clone());
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(counted)).await;
                            match handshake {
                                Ok(Ok(stream)) => {
                                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service_fn(handler));
                                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                                        tracing::debug!(%peer, error = %e, "connection ended with error");
                                    }
                                }
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                            open.dec();
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

/// A connection that counts the bytes it reads and writes.
struct Counted {
    stream: TcpStream,
    conns: ConnectionMetrics,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.conns
            .received_bytes
            .inc_by((buf.filled().len() - before) as u64);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.conns.sent_bytes.inc_by(n as u64);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.conns.sent_bytes.inc_by(n as u64);
        }
        polled
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
