//! The HTTP side of the client: one pooled hyper-util client (HTTP/1.1, plain or rustls), and
//! request bodies streamed from a range of a local file, so a part is never held in memory.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use md5::{Digest as _, Md5};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::{Error, Result};

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Called with the size of every chunk of a request body as it is read from the file.
pub type OnChunk = Arc<dyn Fn(u64) + Send + Sync>;

/// Streamed request bodies are read in pieces of this size.
const READ_CHUNK: usize = 256 << 10;

/// A pooled HTTP client; cheap to clone.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl Http {
    /// `max_idle`: connections kept per host, one per parallel job.
    pub fn new(max_idle: usize) -> Result<Self> {
        let mut plain = HttpConnector::new();
        plain.enforce_http(false);
        plain.set_connect_timeout(Some(Duration::from_secs(10)));
        plain.set_nodelay(true);
        // Ring explicitly: the process may link more than one rustls provider.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            // No system CA store (a minimal container): plain http still works, https fails on
            // the first handshake with a clear "unknown issuer".
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::Usage(format!("TLS: {e}")))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        };
        let connector = tls.https_or_http().enable_http1().wrap_connector(plain);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { client })
    }

    /// Sends a request and waits for the response head (so, for an upload, until the body has
    /// gone out and the server answered), at most `timeout`.
    pub async fn send(&self, req: Request<Body>, timeout: Duration) -> Result<Response<Incoming>> {
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(Error::Timeout(timeout)),
            Ok(Err(e)) => Err(Error::Transport(error_chain(&e))),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

/// "a: b: c" from an error and its sources (hyper's own messages are terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Reads a whole (small) response body, up to `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Error::Timeout(timeout)),
        Ok(Err(e)) => Err(Error::Transport(format!("reading the response: {e}"))),
        Ok(Ok(b)) => Ok(b.to_bytes()),
    }
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// `len` bytes of a file from `offset`.
#[derive(Clone, Debug)]
pub struct FileRange {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

impl FileRange {
    /// The range as a streamed body between `prefix` and `suffix` (multipart framing), reporting
    /// each piece read to `on_chunk`. A file that shrank makes the body end short, which fails
    /// the request rather than sending something else.
    pub async fn body(
        &self,
        prefix: Bytes,
        suffix: Bytes,
        on_chunk: Option<OnChunk>,
    ) -> Result<Body> {
        let mut file = tokio::fs::File::open(&self.path)
            .await
            .map_err(Error::local(&self.path))?;
        file.seek(SeekFrom::Start(self.offset))
            .await
            .map_err(Error::local(&self.path))?;
        let data = tokio_util::io::ReaderStream::with_capacity(file.take(self.len), READ_CHUNK)
            .inspect_ok(move |b| {
                if let Some(f) = &on_chunk {
                    f(b.len() as u64);
                }
            });
        let framing = |b: Bytes| stream::iter((!b.is_empty()).then_some(Ok(b)));
        let all = framing(prefix).chain(data).chain(framing(suffix));
        Ok(StreamBody::new(all.map_ok(Frame::data)).boxed_unsync())
    }

    /// MD5 of the range, read on a blocking thread.
    pub async fn md5(&self) -> Result<[u8; 16]> {
        let range = self.clone();
        tokio::task::spawn_blocking(move || range.md5_blocking())
            .await
            .map_err(|e| Error::Local(format!("hashing task: {e}")))?
    }

    fn md5_blocking(&self) -> Result<[u8; 16]> {
        let mut file = std::fs::File::open(&self.path).map_err(Error::local(&self.path))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(Error::local(&self.path))?;
        let mut h = Md5::new();
        let n = std::io::copy(&mut file.take(self.len), &mut HashWriter(&mut h))
            .map_err(Error::local(&self.path))?;
        if n != self.len {
            return Err(Error::Local(format!(
                "{}: shorter than expected (changed while uploading?)",
                self.path.display()
            )));
        }
        Ok(h.finalize().into())
    }
}

/// Lets `io::copy` feed a hasher (its buffer is large enough; no extra allocation of ours).
struct HashWriter<'a, D>(&'a mut D);

impl<D: md5::Digest> std::io::Write for HashWriter<'_, D> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// SHA-256 of a whole file, hex, read on a blocking thread; `on_chunk` sees the progress.
pub async fn sha256_file(path: &Path, on_chunk: OnChunk) -> Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(Error::local(&path))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(Error::local(&path))?;
            if n == 0 {
                return Ok(hex::encode(h.finalize()));
            }
            sha2::Digest::update(&mut h, &buf[..n]);
            on_chunk(n as u64);
        }
    })
    .await
    .map_err(|e| Error::Local(format!("hashing task: {e}")))?
}
