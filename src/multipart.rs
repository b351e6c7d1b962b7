//! A capped, streaming multipart/form-data reader shared by the front ends that take forms (the
//! legacy `/file/*` API and S3 POST Object). Text fields come first and are read whole, under
//! caps checked as they are read; the `file` field ends the read and is handed on as a stream,
//! never held in memory. Everything before the file is read before anything is authenticated,
//! so a request over a cap is refused as soon as it passes it, without reading further.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use http_body_util::BodyExt as _;

use crate::upload::{BodyError, BodyStream};

/// How much a form may hold before its file part.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Most bytes of field values, all fields together.
    pub values: usize,
    /// Most text fields.
    pub count: usize,
    /// Most bytes of body read before the file part starts: framing (preamble, part headers,
    /// boundaries) plus values.
    pub head: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Over one of the `Caps`.
    #[error("{0}")]
    TooLarge(String),
    /// Not multipart/form-data as announced, or cut short.
    #[error("{0}")]
    Malformed(String),
}

/// The file part: its field name as sent, the filename its Content-Disposition gives, its
/// Content-Type, and its bytes.
pub struct FilePart {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub stream: BodyStream,
}

/// What the multipart parser and the field loop share about the body read so far.
#[derive(Default)]
struct Gate {
    /// The file part has started: from here on the bytes are the file, capped elsewhere.
    file: AtomicBool,
    /// The head cap is reached and the parser was refused more bytes.
    starved: AtomicBool,
}

/// The body as the multipart parser reads it: until the file part starts, it hands out at most
/// `head` bytes (plus the frame that crosses it), then no more. The parser reads ahead greedily,
/// so the cap does not refuse by itself (the file part may already sit in the parser's buffer);
/// the field loop refuses when the parser, starved, cannot go on.
struct Gated<S> {
    inner: S,
    read: u64,
    head: u64,
    gate: Arc<Gate>,
}

impl<S, E> Stream for Gated<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let before_file = !self.gate.file.load(Ordering::Acquire);
        if before_file && self.read >= self.head {
            self.gate.starved.store(true, Ordering::Release);
            return Poll::Pending;
        }
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(data))) = &next
            && before_file
        {
            self.read += data.len() as u64;
        }
        next
    }
}

/// Runs one step of the multipart parser; a parser that waits for bytes the head cap withholds
/// means the fields and their framing are too long.
async fn step<F: Future>(gate: &Gate, head: u64, fut: F) -> Result<F::Output, FormError> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Ok(v)),
        Poll::Pending if gate.starved.load(Ordering::Acquire) => Poll::Ready(Err(
            FormError::TooLarge(format!("more than {head} bytes before the file part")),
        )),
        Poll::Pending => Poll::Pending,
    })
    .await
}

fn malformed(e: impl std::fmt::Display) -> FormError {
    FormError::Malformed(e.to_string())
}

/// Reads the text fields of a multipart/form-data `body` (`content_type` carries the boundary)
/// in the order sent, up to the field `is_file` names (compared as sent), whose bytes are then
/// returned as a stream; what follows the file part is never read. Field values are UTF-8
/// (lossy). Generic over the body so that tests and fuzz targets can feed it bytes from memory.
pub async fn read<B>(
    content_type: &str,
    body: B,
    caps: Caps,
    is_file: impl Fn(&str) -> bool,
) -> Result<(Vec<(String, String)>, Option<FilePart>), FormError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let boundary = multer::parse_boundary(content_type).map_err(malformed)?;
    let gate = Arc::new(Gate::default());
    let gated = Gated {
        inner: Box::pin(body.into_data_stream()),
        read: 0,
        head: caps.head,
        gate: gate.clone(),
    };
    let mut mp = multer::Multipart::new(gated, boundary);
    let (mut values, mut fields) = (0usize, Vec::new());
    while let Some(field) = step(&gate, caps.head, mp.next_field())
        .await?
        .map_err(malformed)?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if is_file(&name) {
            gate.file.store(true, Ordering::Release);
            let filename = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(|m| m.to_string());
            let stream: BodyStream = Box::pin(field.map_err(BodyError::new));
            return Ok((
                fields,
                Some(FilePart {
                    filename,
                    content_type,
                    stream,
                }),
            ));
        }
        if fields.len() >= caps.count {
            return Err(FormError::TooLarge(format!(
                "more than {} fields",
                caps.count
            )));
        }
        let mut text = Vec::new();
        let mut field = field;
        while let Some(chunk) = step(&gate, caps.head, field.next()).await? {
            let chunk = chunk.map_err(malformed)?;
            values += chunk.len();
            if values > caps.values {
                return Err(FormError::TooLarge(format!(
                    "fields longer than {} bytes in all (at {name})",
                    caps.values
                )));
            }
            text.extend_from_slice(&chunk);
        }
        fields.push((name, String::from_utf8_lossy(&text).into_owned()));
    }
    Ok((fields, None))
}
