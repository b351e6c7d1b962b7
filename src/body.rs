//! HTTP plumbing shared by the dispatcher and the front ends: `Body` for responses, and
//! `RequestBody`, which fails a request body that stalls (`--body-timeout`) or trickles
//! (`--min-body-rate`) and drains what a handler left unread; `RequestInfo`, what a front end
//! reports for the access log.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt as _};
use http_body::SizeHint;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::Request;
use hyper::body::{Frame, Incoming};
use tokio::time::{Instant, Sleep};

use crate::metrics::{Metrics, Timeout};
use crate::units::MinRate;

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

/// An S3 key's SigV4 signature over a request that another front end serves (a tus creation),
/// as the S3 front end checked it: the access key (or why the signature is refused), the
/// headers it covers, the signed payload hash (None: unsigned).
pub type Signer = Result<(String, Vec<String>, Option<[u8; 32]>), String>;

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

/// A request body that fails with `BodyReadError::Timeout` once the client has sent nothing for
/// the body timeout while the gateway waits for data (a stalled or trickling upload). The clock
/// runs only while a read is pending, so a slow disk never counts against the client.
pub struct RequestBody {
    /// Taken only on drop, to drain what the handler left unread.
    inner: Option<Incoming>,
    timeout: Option<Duration>,
    /// The client's sending pace against `--min-body-rate`.
    rate: Option<RateMeter>,
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
/// How long that reading may take.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

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
    /// Wraps a request's body with the body timeout, the minimum rate and the drain rule.
    pub fn wrap(
        req: Request<Incoming>,
        timeout: Option<Duration>,
        min_rate: Option<MinRate>,
        metrics: Arc<Metrics>,
    ) -> Request<Self> {
        let drain = drain_plan(&req);
        req.map(|inner| Self {
            inner: Some(inner),
            timeout,
            rate: min_rate.map(RateMeter::new),
            stalled: None,
            timer: None,
            metrics,
            drain,
        })
    }

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
            let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
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
        if !wake_at(&mut this.timer, at, cx) {
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

/// Measures one direction of a client's data against a `MinRate`. The clock runs only while the
/// gateway waits for the client (a read or a write pending), in windows: at the end of each,
/// fewer bytes than the rate asks for is a failure.
#[derive(Debug)]
pub struct RateMeter {
    rate: MinRate,
    /// Waiting time counted in this window, bytes moved in it.
    waited: Duration,
    bytes: u64,
    /// Since when the current wait runs.
    since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl RateMeter {
    pub fn new(rate: MinRate) -> Self {
        Self {
            rate,
            waited: Duration::ZERO,
            bytes: 0,
            since: None,
            timer: None,
        }
    }

    /// Bytes moved: the wait (if any) ends.
    pub fn moved(&mut self, n: usize) {
        if let Some(since) = self.since.take() {
            self.waited += since.elapsed();
        }
        self.bytes += n as u64;
        if self.waited >= self.rate.window {
            // A window ended while data moved: it passes (the client is sending now), and the
            // next one begins.
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
    }

    /// The gateway waits for the client: true once a window has ended with too few bytes
    /// (then fail); else the task is woken when the window would end.
    pub fn waiting(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let since = *self.since.get_or_insert_with(Instant::now);
            let end = since + self.rate.window.saturating_sub(self.waited);
            if !wake_at(&mut self.timer, end, cx) {
                return false;
            }
            let need = u128::from(self.rate.bytes_per_sec) * self.rate.window.as_millis() / 1000;
            if u128::from(self.bytes) < need {
                return true;
            }
            self.since = Some(Instant::now());
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
    }
}

/// Makes sure the task is woken by `at` at the latest; true once `at` has passed. The timer moves
/// only when it has fired or would be late, not on every poll (a reset takes the timer driver's
/// lock, and reads pend thousands of times a second during an upload): waking early just means
/// the caller looks again.
pub fn wake_at(timer: &mut Option<Pin<Box<Sleep>>>, at: Instant, cx: &mut Context<'_>) -> bool {
    loop {
        if Instant::now() >= at {
            return true;
        }
        let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if t.deadline() > at || t.is_elapsed() {
            t.as_mut().reset(at);
        }
        if t.as_mut().poll(cx).is_pending() {
            return false;
        }
    }
}
