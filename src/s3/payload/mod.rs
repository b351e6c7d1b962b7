//! Turns a request body plus its `PayloadMode` into a plain, verified byte stream: whole-body
//! SHA-256, unsigned, or aws-chunked (signed or unsigned, with or without a trailer).
//!
//! Every check that needs the whole body fails as the stream's last item, so consumers must
//! only commit data once the stream has ended cleanly.
//! aws-chunked: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html> and
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html>.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::{Buf, Bytes};
use futures_util::TryStreamExt;
use http::header::CONTENT_LENGTH;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::auth::{ChunkSigner, PayloadMode};
use crate::model::BodyError;
use crate::upload::BodyStream;

/// The value of the checksum trailer (`x-amz-trailer`), set by the decoder when it reaches the
/// trailer section, before the stream ends.
pub type TrailerSlot = Arc<OnceLock<String>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    Sha256Mismatch,
    #[error("The request signature we calculated does not match the signature you provided.")]
    SignatureDoesNotMatch,
    #[error("You did not provide the number of bytes specified by the Content-Length HTTP header.")]
    IncompleteBody,
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("You must provide the Content-Length HTTP header.")]
    MissingContentLength,
    #[error("connection: {0}")]
    Transport(String),
    #[error(
        "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed."
    )]
    RequestTimeout,
}

pub struct Decoded {
    pub stream: BodyStream,
    /// `Some` when the body declares a checksum trailer (`x-amz-trailer`); holds its header name
    /// (lower-case, e.g. `x-amz-checksum-crc32`) and the slot the value lands in.
    pub trailer: Option<(String, TrailerSlot)>,
    /// The payload length when known up front (Content-Length or x-amz-decoded-content-length).
    pub length: Option<u64>,
}

/// Longest chunk-header or trailer line accepted; real ones are under 200 bytes.
const MAX_LINE: usize = 4096;
/// Most trailer lines accepted (AWS sends one checksum plus the signature).
const MAX_TRAILERS: usize = 16;

pub fn decode<B>(
    body: B,
    headers: &http::HeaderMap,
    mode: PayloadMode,
) -> Result<Decoded, PayloadError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + 'static,
{
    let (signing, trailer_variant) = match mode {
        PayloadMode::Sha256(hash) => return plain(body, headers, Some(hash)),
        PayloadMode::Unsigned => return plain(body, headers, None),
        PayloadMode::SignedChunks { signer, trailer } => {
            let prev = signer.seed_signature.clone();
            (
                Some(Signing {
                    signer,
                    prev,
                    expected: String::new(),
                    hasher: Sha256::new(),
                }),
                trailer,
            )
        }
        PayloadMode::UnsignedChunks => (None, true),
    };
    // The transport length (if any) counts the framing; the payload length is announced apart.
    let declared = header_u64(headers, "x-amz-decoded-content-length")?
        .ok_or(PayloadError::MissingContentLength)?;
    let trailer = match headers.get("x-amz-trailer") {
        None => None,
        Some(v) => {
            let name = v.to_str().unwrap_or_default().trim().to_ascii_lowercase();
            if name.is_empty() || name.contains(',') || name.contains(char::is_whitespace) {
                return Err(PayloadError::InvalidArgument(
                    "x-amz-trailer must name exactly one trailer.".into(),
                ));
            }
            if !trailer_variant {
                return Err(PayloadError::InvalidRequest(
                    "x-amz-trailer needs a STREAMING-*-TRAILER x-amz-content-sha256.".into(),
                ));
            }
            Some((name, TrailerSlot::default()))
        }
    };
    let codec = Chunked {
        state: State::Size,
        line: Vec::new(),
        declared,
        decoded: 0,
        signing,
        trailers_allowed: trailer_variant,
        trailer: trailer.clone(),
        trailer_value: None,
        canonical_trailers: String::new(),
        trailer_signature: None,
        trailer_lines: 0,
    };
    Ok(Decoded {
        stream: into_stream(body, codec),
        trailer,
        length: Some(declared),
    })
}

fn plain<B>(
    body: B,
    headers: &http::HeaderMap,
    sha256: Option<[u8; 32]>,
) -> Result<Decoded, PayloadError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + 'static,
{
    let length = header_u64(headers, CONTENT_LENGTH.as_str())?;
    let codec = Plain {
        expected: length,
        seen: 0,
        sha256: sha256.map(|h| (Sha256::new(), h)),
    };
    Ok(Decoded {
        stream: into_stream(body, codec),
        trailer: None,
        length,
    })
}

fn header_u64(headers: &http::HeaderMap, name: &str) -> Result<Option<u64>, PayloadError> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    // `u64::from_str` takes a leading `+`, which HTTP does not allow.
    let v = v
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    v.and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| PayloadError::InvalidArgument(format!("Invalid {name} header.")))
}

/// A sans-IO body decoder: fed the incoming bytes, it hands back payload bytes.
trait Codec: Send + 'static {
    /// Consumes bytes from the front of `input` and returns the next payload piece, or `None`
    /// once `input` is used up.
    fn feed(&mut self, input: &mut Bytes) -> Result<Option<Bytes>, PayloadError>;
    /// The body ended: run the checks that need all of it.
    fn finish(&mut self) -> Result<(), PayloadError>;
    /// The error to report when the transport fails mid-body.
    fn body_error(&self, message: String) -> PayloadError {
        PayloadError::Transport(message)
    }
}

fn into_stream<B, C>(body: B, codec: C) -> BodyStream
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + 'static,
    C: Codec,
{
    let state = (body, codec, Bytes::new());
    // try_unfold ends the stream after the first error.
    let stream =
        futures_util::stream::try_unfold(state, |(mut body, mut codec, mut input)| async move {
            loop {
                if let Some(piece) = codec.feed(&mut input)? {
                    return Ok(Some((piece, (body, codec, input))));
                }
                match body.frame().await {
                    None => {
                        codec.finish()?;
                        return Ok(None);
                    }
                    // HTTP trailers carry nothing S3 reads: checksum trailers live in aws-chunked.
                    Some(Ok(frame)) => input = frame.into_data().unwrap_or_default(),
                    Some(Err(e)) if crate::body::is_body_timeout(&e) => {
                        return Err(PayloadError::RequestTimeout);
                    }
                    Some(Err(e)) => return Err(codec.body_error(e.to_string())),
                }
            }
        });
    Box::pin(stream.map_err(BodyError::new))
}

/// A body sent as is: counted and, for a signed payload, hashed.
struct Plain {
    expected: Option<u64>,
    seen: u64,
    sha256: Option<(Sha256, [u8; 32])>,
}

impl Codec for Plain {
    fn feed(&mut self, input: &mut Bytes) -> Result<Option<Bytes>, PayloadError> {
        if input.is_empty() {
            return Ok(None);
        }
        let piece = std::mem::take(input);
        self.seen += piece.len() as u64;
        if self.expected.is_some_and(|n| self.seen > n) {
            return Err(PayloadError::IncompleteBody);
        }
        if let Some((hasher, _)) = &mut self.sha256 {
            hasher.update(&piece);
        }
        Ok(Some(piece))
    }

    fn finish(&mut self) -> Result<(), PayloadError> {
        if self.expected.is_some_and(|n| self.seen != n) {
            return Err(PayloadError::IncompleteBody);
        }
        let mismatch = self
            .sha256
            .take()
            .is_some_and(|(hasher, want)| hasher.finalize()[..] != want);
        if mismatch {
            Err(PayloadError::Sha256Mismatch)
        } else {
            Ok(())
        }
    }

    fn body_error(&self, message: String) -> PayloadError {
        // hyper fails the body when the connection ends before Content-Length bytes came.
        match self.expected {
            Some(n) if self.seen < n => PayloadError::IncompleteBody,
            _ => PayloadError::Transport(message),
        }
    }
}

/// Where the aws-chunked decoder is in `HEX(size)[;chunk-signature=SIG]\r\n<data>\r\n … 0…\r\n
/// <trailers>\r\n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// Passing chunk data through; this many bytes are left.
    Data(u64),
    /// Expecting the CRLF after chunk data; this many of its bytes were seen.
    DataEnd(usize),
    /// After the final chunk: trailer lines up to an empty line.
    Trailers,
    Done,
}

struct Signing {
    signer: ChunkSigner,
    /// The signature the next one chains from: the seed, then each verified chunk's.
    prev: String,
    /// The current chunk's claimed signature.
    expected: String,
    hasher: Sha256,
}

impl Signing {
    /// Checks the chunk just read (its data went through `hasher`) and moves the chain on.
    fn check_chunk(&mut self) -> Result<(), PayloadError> {
        let hash = std::mem::replace(&mut self.hasher, Sha256::new()).finalize();
        let want = self.signer.chunk_signature(&self.prev, &hash);
        if !ct_eq(&want, &self.expected) {
            return Err(PayloadError::SignatureDoesNotMatch);
        }
        self.prev = want;
        Ok(())
    }
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn malformed(msg: &str) -> PayloadError {
    PayloadError::Malformed(msg.to_owned())
}

struct Chunked {
    state: State,
    /// A header or trailer line read so far (lines may span frames).
    line: Vec<u8>,
    /// `x-amz-decoded-content-length`.
    declared: u64,
    /// Sum of the chunk sizes announced so far.
    decoded: u64,
    signing: Option<Signing>,
    trailers_allowed: bool,
    trailer: Option<(String, TrailerSlot)>,
    trailer_value: Option<String>,
    /// `name:value\n` per trailer, what the trailer signature covers.
    canonical_trailers: String,
    trailer_signature: Option<String>,
    trailer_lines: usize,
}

impl Codec for Chunked {
    fn feed(&mut self, input: &mut Bytes) -> Result<Option<Bytes>, PayloadError> {
        while !input.is_empty() {
            match self.state {
                State::Size => {
                    if let Some(line) = self.take_line(input)? {
                        self.chunk_header(&line)?;
                    }
                }
                State::Data(left) => {
                    // Pass data through without copying, whatever the frame boundaries. Signed
                    // data goes out before its chunk's signature is checked: a bad one fails the
                    // stream before it ends, and consumers only commit clean ends.
                    let n = usize::try_from(left).map_or(input.len(), |left| left.min(input.len()));
                    let piece = input.split_to(n);
                    let left = left - n as u64;
                    if let Some(s) = &mut self.signing {
                        s.hasher.update(&piece);
                        if left == 0 {
                            s.check_chunk()?;
                        }
                    }
                    self.state = if left == 0 {
                        State::DataEnd(0)
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(piece));
                }
                State::DataEnd(seen) => {
                    if input[0] != b"\r\n"[seen] {
                        return Err(malformed("Missing CRLF after aws-chunked chunk data."));
                    }
                    input.advance(1);
                    self.state = if seen == 0 {
                        State::DataEnd(1)
                    } else {
                        State::Size
                    };
                }
                State::Trailers => {
                    if let Some(line) = self.take_line(input)? {
                        self.trailer_line(&line)?;
                    }
                }
                State::Done => {
                    return Err(malformed(
                        "Unexpected data after the end of the aws-chunked body.",
                    ));
                }
            }
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<(), PayloadError> {
        match self.state {
            // Lenient: the trailer section may lack its final CRLF, even its last line's.
            State::Trailers => {
                let line = std::mem::take(&mut self.line);
                if !line.is_empty() {
                    self.trailer_line(strip_eol(&line))?;
                }
                if self.state == State::Trailers {
                    self.end_trailers()?;
                }
                Ok(())
            }
            State::Done => Ok(()),
            State::Size | State::Data(_) | State::DataEnd(_) => Err(PayloadError::IncompleteBody),
        }
    }
}

/// Drops a line's `\n` or `\r\n`.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Chunked {
    /// Appends input up to and including the next LF to `self.line`; returns the complete line
    /// (without its end) once there is one.
    fn take_line(&mut self, input: &mut Bytes) -> Result<Option<Vec<u8>>, PayloadError> {
        let end = input.iter().position(|&b| b == b'\n');
        let n = end.map_or(input.len(), |i| i + 1);
        if self.line.len() + n > MAX_LINE {
            return Err(malformed("aws-chunked header line too long."));
        }
        self.line.extend_from_slice(&input[..n]);
        input.advance(n);
        if end.is_none() {
            return Ok(None);
        }
        let mut line = std::mem::take(&mut self.line);
        let len = strip_eol(&line).len();
        line.truncate(len);
        Ok(Some(line))
    }

    fn chunk_header(&mut self, line: &[u8]) -> Result<(), PayloadError> {
        let line = std::str::from_utf8(line)
            .map_err(|_| malformed("Invalid aws-chunked chunk header."))?;
        let (size, extensions) = line.split_once(';').unwrap_or((line, ""));
        let size = size.trim();
        if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("Invalid aws-chunked chunk size."));
        }
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| malformed("Invalid aws-chunked chunk size."))?;
        if let Some(s) = &mut self.signing {
            let sig = extensions
                .trim()
                .strip_prefix("chunk-signature=")
                .filter(|sig| sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| malformed("Missing or invalid chunk-signature."))?;
            s.expected.clear();
            s.expected.push_str(sig);
        }
        // More data than announced is an error right away, not after storing it.
        self.decoded = self
            .decoded
            .checked_add(size)
            .filter(|&n| n <= self.declared)
            .ok_or(PayloadError::IncompleteBody)?;
        if size > 0 {
            self.state = State::Data(size);
            return Ok(());
        }
        // The final, empty chunk is signed like any other.
        if let Some(s) = &mut self.signing {
            s.check_chunk()?;
        }
        if self.decoded != self.declared {
            return Err(PayloadError::IncompleteBody);
        }
        self.state = State::Trailers;
        Ok(())
    }

    fn trailer_line(&mut self, line: &[u8]) -> Result<(), PayloadError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return self.end_trailers();
        }
        self.trailer_lines += 1;
        if self.trailer_lines > MAX_TRAILERS {
            return Err(malformed("Too many trailers."));
        }
        let line = std::str::from_utf8(line).map_err(|_| malformed("Invalid trailer."))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("Invalid trailer."))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "x-amz-trailer-signature" {
            if self.trailer_signature.replace(value.to_owned()).is_some() {
                return Err(malformed("Repeated x-amz-trailer-signature."));
            }
            return Ok(());
        }
        // The plain signed variant ends right after the final chunk: nothing would vouch for these.
        if !self.trailers_allowed {
            return Err(malformed("Unexpected trailer in aws-chunked body."));
        }
        let _ = writeln!(self.canonical_trailers, "{name}:{value}");
        if self.trailer.as_ref().is_some_and(|(want, _)| *want == name) {
            self.trailer_value = Some(value.to_owned());
        }
        Ok(())
    }

    /// The trailer section is over: check its signature and publish the declared trailer.
    fn end_trailers(&mut self) -> Result<(), PayloadError> {
        self.state = State::Done;
        if let Some(s) = self.signing.as_ref().filter(|_| self.trailers_allowed) {
            let claimed = self
                .trailer_signature
                .as_deref()
                .ok_or_else(|| malformed("Missing x-amz-trailer-signature."))?;
            let want = s
                .signer
                .trailer_signature(&s.prev, &Sha256::digest(self.canonical_trailers.as_bytes()));
            if !ct_eq(&want, claimed) {
                return Err(PayloadError::SignatureDoesNotMatch);
            }
        }
        if let Some((_, slot)) = &self.trailer {
            let value = self
                .trailer_value
                .take()
                .ok_or_else(|| malformed("missing trailer"))?;
            // The slot is fresh per request and set once, here.
            let _ = slot.set(value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
