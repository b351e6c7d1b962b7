//! Helpers shared by the fuzz targets: in-memory request bodies and a poll loop for futures
//! that never wait (their bodies are already in memory).

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::StreamBody;
use mpgw::model::BodyStream;

pub type MemBody = StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>,
>;

/// A body that yields `frames` one by one (empty frames included).
pub fn body(frames: Vec<Bytes>) -> MemBody {
    let frames: Vec<_> = frames
        .into_iter()
        .map(|b| Ok(http_body::Frame::data(b)))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

/// Splits `data` into frames at `cuts` (positions taken modulo the length, any order).
pub fn split(data: &[u8], cuts: &[u16]) -> Vec<Bytes> {
    let data = Bytes::copy_from_slice(data);
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (data.len() + 1))
        .collect();
    at.push(data.len());
    at.sort_unstable();
    let mut start = 0;
    at.into_iter()
        .map(|end| {
            let frame = data.slice(start..end);
            start = end;
            frame
        })
        .collect()
}

/// Runs a future that never pends to completion.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory body never pends"),
    }
}

/// Reads a body stream to its end: the bytes, and the error that ended it if any (as text).
pub fn drain(mut stream: BodyStream) -> (Vec<u8>, Result<(), String>) {
    block_on(async {
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => {
                    let end = stream.next().await;
                    assert!(end.is_none(), "an error must end the stream");
                    return (out, Err(e.0.to_string()));
                }
            }
        }
        (out, Ok(()))
    })
}

/// A request written as HTTP/1.1 text: `METHOD URI [HTTP/1.1]`, header lines, an empty line,
/// then the body. Seed corpora are real requests in this form. `None` when the text does not
/// make a valid `http` request head.
pub fn request(data: &[u8]) -> Option<(http::request::Parts, &[u8])> {
    let (head, body) = match find(data, b"\r\n\r\n") {
        Some(i) => (&data[..i], &data[i + 4..]),
        None => match find(data, b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &[][..]),
        },
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let (method, uri) = (first.next()?, first.next()?);
    let mut b = http::Request::builder().method(method).uri(uri);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        b = b.header(name.trim(), value.trim());
    }
    Some((b.body(()).ok()?.into_parts().0, body))
}

fn find(data: &[u8], needle: &[u8]) -> Option<usize> {
    data.windows(needle.len()).position(|w| w == needle)
}
