//! The verified byte stream against AWS's aws-chunked examples, framing errors and trailers.

use std::convert::Infallible;
use std::task::{Context, Poll, Waker};

use http_body::Frame;
use http_body_util::StreamBody;
use proptest::prelude::*;

use super::*;
use crate::s3::auth;

type TestBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn body(frames: Vec<Bytes>) -> TestBody {
    StreamBody::new(futures_util::stream::iter(
        frames
            .into_iter()
            .map(|b| Ok(Frame::data(b)))
            .collect::<Vec<_>>(),
    ))
}

/// Splits `data` into frames at the given cut points (any order, duplicates allowed).
fn split(data: &Bytes, mut cuts: Vec<usize>) -> Vec<Bytes> {
    cuts.push(data.len());
    cuts.sort_unstable();
    let mut start = 0;
    let mut frames = Vec::new();
    for cut in cuts {
        let cut = cut.min(data.len());
        frames.push(data.slice(start..cut)); // empty frames included on purpose
        start = cut;
    }
    frames
}

/// Drains a stream whose body never pends; returns the data and how it ended.
fn drain(mut stream: BodyStream) -> (Vec<u8>, Result<(), PayloadError>) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match stream.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(Ok(b))) => out.extend_from_slice(&b),
            Poll::Ready(Some(Err(e))) => {
                let err =
                    e.0.downcast_ref::<PayloadError>()
                        .expect("a PayloadError")
                        .clone();
                assert!(
                    matches!(stream.as_mut().poll_next(&mut cx), Poll::Ready(None)),
                    "error must end the stream"
                );
                return (out, Err(err));
            }
            Poll::Ready(None) => return (out, Ok(())),
            Poll::Pending => panic!("test bodies never pend"),
        }
    }
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap()))
        .collect()
}

fn run(
    frames: Vec<Bytes>,
    h: &http::HeaderMap,
    mode: PayloadMode,
) -> (Vec<u8>, Result<(), PayloadError>, Decoded) {
    let mut d = decode(body(frames), h, mode).unwrap();
    let stream = std::mem::replace(
        &mut d.stream,
        Box::pin(futures_util::stream::empty::<Result<Bytes, BodyError>>()),
    );
    let (data, end) = drain(stream);
    (data, end, d)
}

/// The signer of the AWS streaming examples, from verifying their seed request.
fn aws_signer(trailer: bool) -> PayloadMode {
    let v = auth::tests::verify(
        &auth::tests::streaming_parts(trailer),
        &auth::tests::creds(),
        auth::tests::t0(),
    )
    .unwrap();
    v.payload
}

fn aws_payload() -> Vec<u8> {
    vec![b'a'; 65536 + 1024]
}

/// The AWS example bodies, framed by hand from the published signatures.
fn aws_body(trailer: bool) -> Bytes {
    let sigs = if trailer {
        [
            "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
            "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
            "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
        ]
    } else {
        [
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
        ]
    };
    let mut b = Vec::new();
    for (size, sig) in [(65536, sigs[0]), (1024, sigs[1])] {
        b.extend_from_slice(format!("{size:x};chunk-signature={sig}\r\n").as_bytes());
        b.extend(std::iter::repeat_n(b'a', size));
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("0;chunk-signature={}\r\n", sigs[2]).as_bytes());
    if trailer {
        b.extend_from_slice(b"x-amz-checksum-crc32c:sOO8/Q==\r\n");
        b.extend_from_slice(
            b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n",
        );
    }
    b.extend_from_slice(b"\r\n");
    b.into()
}

fn aws_headers(trailer: bool) -> http::HeaderMap {
    let mut h = vec![
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
    ];
    if trailer {
        h.push(("x-amz-trailer", "x-amz-checksum-crc32c"));
    }
    headers(&h)
}

/// botocore's unsigned-trailer body for a 120-byte object (spec §10.2).
fn botocore_body(data: &[u8]) -> Bytes {
    let mut b = format!("{:x}\r\n", data.len()).into_bytes();
    b.extend_from_slice(data);
    b.extend_from_slice(b"\r\n0\r\nx-amz-checksum-crc32:vxfLBA==\r\n\r\n");
    b.into()
}

fn botocore_headers(len: usize) -> http::HeaderMap {
    headers(&[
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", &len.to_string()),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
    ])
}

#[test]
fn aws_example_signed_chunks() {
    let encoded = aws_body(false);
    assert_eq!(encoded.len(), 66824);
    let (data, end, d) = run(vec![encoded], &aws_headers(false), aws_signer(false));
    assert_eq!(end, Ok(()));
    assert_eq!(data, aws_payload());
    assert_eq!(d.length, Some(66560));
    assert!(d.trailer.is_none());
}

#[test]
fn aws_example_signed_trailer() {
    let (data, end, d) = run(vec![aws_body(true)], &aws_headers(true), aws_signer(true));
    assert_eq!(end, Ok(()));
    assert_eq!(data, aws_payload());
    let (name, slot) = d.trailer.unwrap();
    assert_eq!(name, "x-amz-checksum-crc32c");
    assert_eq!(slot.get().map(String::as_str), Some("sOO8/Q=="));
}

#[test]
fn one_byte_frames() {
    let encoded = aws_body(true);
    let frames = (0..encoded.len()).map(|i| encoded.slice(i..=i)).collect();
    let (data, end, _) = run(frames, &aws_headers(true), aws_signer(true));
    assert_eq!(end, Ok(()));
    assert_eq!(data, aws_payload());
}

#[test]
fn corrupted_signatures() {
    let corrupt = |body: &Bytes, from: &str, to: &str| -> Bytes {
        let s = String::from_utf8(body.to_vec()).unwrap();
        assert!(s.contains(from));
        s.replacen(from, to, 1).into()
    };
    let cases = [
        (false, "ad80c730", "ad80c731"), // first chunk
        (false, "b6c6ea8a", "b6c6ea8b"), // final empty chunk
        (true, "d81f82fc", "d81f82fd"),  // trailer signature
        (true, "sOO8/Q==", "sOO8/R=="),  // trailer value
    ];
    for (trailer, from, to) in cases {
        let (_, end, d) = run(
            vec![corrupt(&aws_body(trailer), from, to)],
            &aws_headers(trailer),
            aws_signer(trailer),
        );
        assert_eq!(end, Err(PayloadError::SignatureDoesNotMatch), "{from}");
        assert!(d.trailer.is_none_or(|(_, slot)| slot.get().is_none()));
    }
    // A chunk's data changed: caught when that chunk ends, before the next one passes.
    let mut body = aws_body(false).to_vec();
    body[100] = b'b';
    let (data, end, _) = run(vec![body.into()], &aws_headers(false), aws_signer(false));
    assert_eq!(end, Err(PayloadError::SignatureDoesNotMatch));
    assert!(data.len() <= 65536);
    // Unsigned chunks where signed ones were promised.
    let (_, end, _) = run(
        vec![botocore_body(&[1; 120])],
        &botocore_headers(120),
        aws_signer(true),
    );
    assert!(matches!(end, Err(PayloadError::Malformed(_))), "{end:?}");
}

#[test]
fn botocore_unsigned_trailer() {
    let payload: Vec<u8> = (0..120).collect();
    let (data, end, d) = run(
        vec![botocore_body(&payload)],
        &botocore_headers(120),
        PayloadMode::UnsignedChunks,
    );
    assert_eq!(end, Ok(()));
    assert_eq!(data, payload);
    assert_eq!(d.length, Some(120));
    let (name, slot) = d.trailer.unwrap();
    assert_eq!(name, "x-amz-checksum-crc32");
    assert_eq!(slot.get().unwrap(), "vxfLBA==");
}

#[test]
fn lenient_trailer_endings() {
    let payload = b"hello";
    for tail in [
        "x-amz-checksum-crc32:vxfLBA==\r\n",
        "x-amz-checksum-crc32:vxfLBA==",
        "X-Amz-Checksum-CRC32 : vxfLBA== \n\n",
    ] {
        let body = format!("5\r\nhello\r\n0\r\n{tail}");
        let (data, end, d) = run(
            vec![body.into()],
            &botocore_headers(5),
            PayloadMode::UnsignedChunks,
        );
        assert_eq!((data.as_slice(), end), (&payload[..], Ok(())), "{tail:?}");
        assert_eq!(d.trailer.unwrap().1.get().unwrap(), "vxfLBA==");
    }
    // No trailer declared, none sent, and no final CRLF.
    let h = headers(&[("x-amz-decoded-content-length", "5")]);
    let (_, end, _) = run(
        vec![Bytes::from("5\r\nhello\r\n0\r\n")],
        &h,
        PayloadMode::UnsignedChunks,
    );
    assert_eq!(end, Ok(()));
}

#[test]
fn chunked_errors() {
    let h = botocore_headers(5);
    let err = |body: &str| {
        run(
            vec![Bytes::from(body.to_owned())],
            &h,
            PayloadMode::UnsignedChunks,
        )
        .1
        .unwrap_err()
    };
    let is_malformed = |body: &str| matches!(err(body), PayloadError::Malformed(_));
    assert!(is_malformed("zz\r\nhello\r\n0\r\n\r\n"));
    assert!(is_malformed("+5\r\nhello\r\n0\r\n\r\n"));
    assert!(is_malformed("\r\nhello\r\n0\r\n\r\n"));
    assert!(is_malformed("5\r\nhelloXX0\r\n\r\n"));
    assert!(is_malformed("5\r\nhello\n0\r\n\r\n"));
    assert!(is_malformed(&format!(
        "{}5\r\nhello\r\n0\r\n\r\n",
        "0".repeat(MAX_LINE)
    )));
    assert!(is_malformed(
        "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:vxfLBA==\r\n\r\ngarbage"
    ));
    assert!(is_malformed("5\r\nhello\r\n0\r\nno colon\r\n\r\n"));
    assert_eq!(err("5\r\nhello\r\n0\r\n\r\n"), malformed("missing trailer"));
    assert_eq!(
        err("5\r\nhello\r\n0\r\nx-amz-checksum-crc32c:AAAAAA==\r\n\r\n"),
        malformed("missing trailer")
    );
    // Lengths: fewer or more bytes than x-amz-decoded-content-length, or a cut-off body.
    assert_eq!(err("4\r\nhell\r\n0\r\n\r\n"), PayloadError::IncompleteBody);
    assert_eq!(
        err("6\r\nhello!\r\n0\r\n\r\n"),
        PayloadError::IncompleteBody
    );
    assert_eq!(err("ffffffffffffffff\r\n"), PayloadError::IncompleteBody);
    assert_eq!(err("5\r\nhel"), PayloadError::IncompleteBody);
    assert_eq!(err("5\r\nhello\r\n"), PayloadError::IncompleteBody);
    assert_eq!(err(""), PayloadError::IncompleteBody);
}

#[test]
fn decode_rejects_bad_headers() {
    let e = |h: &[(&str, &str)], mode| decode(body(vec![]), &headers(h), mode).err();
    assert_eq!(
        e(&[], PayloadMode::UnsignedChunks),
        Some(PayloadError::MissingContentLength)
    );
    assert!(matches!(
        e(
            &[("x-amz-decoded-content-length", "-1")],
            PayloadMode::UnsignedChunks
        ),
        Some(PayloadError::InvalidArgument(_))
    ));
    assert!(matches!(
        e(&[("content-length", "+5")], PayloadMode::Unsigned),
        Some(PayloadError::InvalidArgument(_))
    ));
    let two = [
        ("x-amz-decoded-content-length", "5"),
        ("x-amz-trailer", "x-amz-checksum-crc32, x-amz-checksum-sha1"),
    ];
    assert!(matches!(
        e(&two, PayloadMode::UnsignedChunks),
        Some(PayloadError::InvalidArgument(_))
    ));
    let untrailed = [
        ("x-amz-decoded-content-length", "66560"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
    ];
    assert!(matches!(
        e(&untrailed, aws_signer(false)),
        Some(PayloadError::InvalidRequest(_))
    ));
}

#[test]
fn plain_bodies() {
    let data = Bytes::from_static(b"Welcome to Amazon S3.");
    let hash: [u8; 32] = Sha256::digest(&data).into();
    let h = headers(&[("content-length", "21")]);
    let frames = || vec![data.slice(..3), Bytes::new(), data.slice(3..)];

    let (out, end, d) = run(frames(), &h, PayloadMode::Sha256(hash));
    assert_eq!(
        (out.as_slice(), end, d.length),
        (&data[..], Ok(()), Some(21))
    );

    let mut wrong = hash;
    wrong[0] ^= 1;
    let (out, end, _) = run(frames(), &h, PayloadMode::Sha256(wrong));
    assert_eq!(
        (out.as_slice(), end),
        (&data[..], Err(PayloadError::Sha256Mismatch))
    );

    let (_, end, _) = run(
        frames(),
        &headers(&[("content-length", "22")]),
        PayloadMode::Unsigned,
    );
    assert_eq!(end, Err(PayloadError::IncompleteBody));
    let (_, end, _) = run(
        frames(),
        &headers(&[("content-length", "20")]),
        PayloadMode::Unsigned,
    );
    assert_eq!(end, Err(PayloadError::IncompleteBody));

    // Chunked transfer without a length: the caller decides whether that is allowed.
    let (out, end, d) = run(frames(), &http::HeaderMap::new(), PayloadMode::Unsigned);
    assert_eq!((out.as_slice(), end, d.length), (&data[..], Ok(()), None));
}

#[test]
fn body_errors() {
    #[derive(Debug)]
    struct Reset;
    impl std::fmt::Display for Reset {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection reset")
        }
    }
    impl std::error::Error for Reset {}
    let failing = || {
        StreamBody::new(futures_util::stream::iter(vec![
            Ok(Frame::data(Bytes::from("5\r\nhe"))),
            Err(Reset),
        ]))
    };
    let (_, end) = drain(
        decode(
            failing(),
            &headers(&[("content-length", "9")]),
            PayloadMode::Unsigned,
        )
        .unwrap()
        .stream,
    );
    assert_eq!(end, Err(PayloadError::IncompleteBody));
    let (_, end) = drain(
        decode(failing(), &http::HeaderMap::new(), PayloadMode::Unsigned)
            .unwrap()
            .stream,
    );
    assert_eq!(end, Err(PayloadError::Transport("connection reset".into())));
    let (_, end) = drain(
        decode(failing(), &botocore_headers(5), PayloadMode::UnsignedChunks)
            .unwrap()
            .stream,
    );
    assert_eq!(end, Err(PayloadError::Transport("connection reset".into())));
}

#[test]
fn data_streams_before_the_chunk_ends() {
    let mut codec = Chunked {
        state: State::Size,
        line: Vec::new(),
        declared: 1 << 20,
        decoded: 0,
        signing: None,
        trailers_allowed: true,
        trailer: None,
        trailer_value: None,
        canonical_trailers: String::new(),
        trailer_signature: None,
        trailer_lines: 0,
    };
    let frame = Bytes::from_static(b"100000\r\nabc");
    let mut input = frame.clone();
    let piece = codec.feed(&mut input).unwrap().unwrap();
    assert_eq!(piece, "abc");
    // A slice of the incoming frame, not a copy.
    assert_eq!(piece.as_ptr(), frame[8..].as_ptr());
    assert_eq!(codec.feed(&mut input).unwrap(), None);
}

/// A random signer: the decoder must not care where the key came from.
fn signer(key: Vec<u8>) -> ChunkSigner {
    ChunkSigner {
        signing_key: key,
        amz_date: "20260101T000000Z".into(),
        scope: "20260101/eu-west-3/s3/aws4_request".into(),
        seed_signature: "00".repeat(32),
    }
}

/// Frames `payload` as an SDK does: chunks of `sizes` (the rest in one more), the final
/// empty chunk, then the trailer and, when signed with `-TRAILER`, its signature.
fn encode(
    payload: &[u8],
    sizes: &[usize],
    signer: Option<&ChunkSigner>,
    trailer: Option<&str>,
) -> Bytes {
    let mut prev = signer.map(|s| s.seed_signature.clone());
    let mut out = Vec::new();
    let mut chunk = |out: &mut Vec<u8>, data: &[u8]| {
        out.extend_from_slice(format!("{:x}", data.len()).as_bytes());
        if let (Some(s), Some(p)) = (signer, prev.as_mut()) {
            *p = s.chunk_signature(p, &Sha256::digest(data));
            out.extend_from_slice(format!(";chunk-signature={p}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !data.is_empty() {
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    };
    let mut rest = payload;
    for &n in sizes {
        if rest.is_empty() {
            break;
        }
        let n = n.clamp(1, rest.len());
        chunk(&mut out, &rest[..n]);
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        chunk(&mut out, rest);
    }
    chunk(&mut out, b"");
    if let Some(value) = trailer {
        let line = format!("x-amz-checksum-crc32:{value}");
        out.extend_from_slice(format!("{line}\r\n").as_bytes());
        if let (Some(s), Some(p)) = (signer, &prev) {
            let sig = s.trailer_signature(p, &Sha256::digest(format!("{line}\n")));
            out.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out.into()
}

fn chunked_headers(len: usize, trailer: bool) -> http::HeaderMap {
    let len = len.to_string();
    let mut h = vec![("x-amz-decoded-content-length", len.as_str())];
    if trailer {
        h.push(("x-amz-trailer", "x-amz-checksum-crc32"));
    }
    headers(&h)
}

proptest! {
    /// Random data in random chunks, framed at random, signed (with or without a trailer)
    /// or not: decoding gives back the data and the trailer value.
    #[test]
    fn chunked_round_trip(
        payload in prop::collection::vec(any::<u8>(), 0..2000),
        sizes in prop::collection::vec(1..700usize, 0..8),
        cuts in prop::collection::vec(0..2500usize, 0..12),
        key in prop::collection::vec(any::<u8>(), 0..40),
        signed in any::<bool>(),
        trailer in prop::option::of("[A-Za-z0-9+/]{1,12}={0,2}"),
    ) {
        let s = signer(key);
        let encoded = encode(&payload, &sizes, signed.then_some(&s), trailer.as_deref());
        let mode = if signed {
            PayloadMode::SignedChunks { signer: s, trailer: trailer.is_some() }
        } else {
            PayloadMode::UnsignedChunks
        };
        let (data, end, d) = run(split(&encoded, cuts), &chunked_headers(payload.len(), trailer.is_some()), mode);
        prop_assert_eq!(end, Ok(()));
        prop_assert!(data == payload);
        prop_assert_eq!(d.trailer.and_then(|(_, slot)| slot.get().cloned()), trailer);
    }

    /// A signed body cut short or with one byte changed fails, or (a change that does not
    /// matter, like the case of a hex digit) still yields exactly the data.
    #[test]
    fn damaged_signed_bodies_fail(
        payload in prop::collection::vec(any::<u8>(), 1..600),
        sizes in prop::collection::vec(1..200usize, 0..4),
        at in any::<prop::sample::Index>(),
        flip in 1..=255u8,
        truncate in any::<bool>(),
    ) {
        let s = signer(b"k".to_vec());
        let mut encoded = encode(&payload, &sizes, Some(&s), Some("AAAAAA==")).to_vec();
        let at = at.index(encoded.len());
        if truncate {
            encoded.truncate(at);
        } else {
            encoded[at] ^= flip;
        }
        let mode = PayloadMode::SignedChunks { signer: s, trailer: true };
        let (data, end, d) = run(vec![encoded.into()], &chunked_headers(payload.len(), true), mode);
        if end.is_ok() {
            prop_assert!(data == payload);
            let value = d.trailer.and_then(|(_, slot)| slot.get().cloned());
            prop_assert_eq!(value.as_deref(), Some("AAAAAA=="));
        }
    }

    #[test]
    fn signed_chunks_any_split(cuts in prop::collection::vec(0..66824usize, 0..24)) {
        let (data, end, _) = run(split(&aws_body(false), cuts), &aws_headers(false), aws_signer(false));
        prop_assert_eq!(end, Ok(()));
        prop_assert!(data == aws_payload());
    }

    #[test]
    fn signed_trailer_any_split(cuts in prop::collection::vec(0..67000usize, 0..24)) {
        let (data, end, d) = run(split(&aws_body(true), cuts), &aws_headers(true), aws_signer(true));
        prop_assert_eq!(end, Ok(()));
        prop_assert!(data == aws_payload());
        prop_assert_eq!(d.trailer.unwrap().1.get().cloned(), Some("sOO8/Q==".to_owned()));
    }

    #[test]
    fn unsigned_trailer_any_split(payload in prop::collection::vec(any::<u8>(), 120), cuts in prop::collection::vec(0..162usize, 0..40)) {
        let encoded = botocore_body(&payload);
        prop_assert_eq!(encoded.len(), 162);
        let (data, end, d) = run(split(&encoded, cuts), &botocore_headers(120), PayloadMode::UnsignedChunks);
        prop_assert_eq!(end, Ok(()));
        prop_assert_eq!(data, payload);
        prop_assert_eq!(d.trailer.unwrap().1.get().cloned(), Some("vxfLBA==".to_owned()));
    }

    /// Arbitrary bytes never panic the decoder, under any mode.
    #[test]
    fn garbage_never_panics(raw in prop::collection::vec(any::<u8>(), 0..300), cuts in prop::collection::vec(0..300usize, 0..8), signed in any::<bool>()) {
        let mode = if signed { aws_signer(true) } else { PayloadMode::UnsignedChunks };
        let (data, end, _) = run(split(&Bytes::from(raw), cuts), &botocore_headers(5), mode);
        // Never more than announced, and exactly that on a clean end.
        prop_assert!(data.len() <= 5);
        prop_assert!(end.is_err() || data.len() == 5);
    }
}
