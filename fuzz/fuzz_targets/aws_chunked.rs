//! The aws-chunked decoder (signed and unsigned chunks, checksum trailers). Input: a request as
//! HTTP text whose `x-amz-content-sha256` picks the mode (signed ones use the key `fuzz-key`;
//! the seeds are signed with it), or, after a `#`, data to encode. Properties: any body never
//! panics, never yields more than `x-amz-decoded-content-length` (exactly that on a clean end),
//! and decodes the same whatever its framing; the decoding of an encoding of random data,
//! framed at random, is that data and its trailer value; a truncated or altered signed body
//! either fails or still yields exactly the data.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mpgw::s3::auth::{ChunkSigner, PayloadMode};
use mpgw::s3::payload;
use mpgw_fuzz::{body, drain, split};
use sha2::{Digest, Sha256};

#[derive(Arbitrary, Debug)]
struct Encoded {
    payload: Vec<u8>,
    /// Chunk sizes; what is left after them goes in one more chunk.
    sizes: Vec<u16>,
    cuts: Vec<u16>,
    mode: Mode,
    key: Vec<u8>,
    trailer: Option<u32>,
    /// Cut the body short (true) or flip bits of one byte (false), at this position.
    damage: Option<(bool, u16, u8)>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Mode {
    Unsigned,
    Signed,
    SignedTrailer,
}

const TRAILER: &str = "x-amz-checksum-crc32";

fn signer(key: &[u8]) -> ChunkSigner {
    ChunkSigner {
        signing_key: key.to_vec(),
        amz_date: "20130524T000000Z".into(),
        scope: "20130524/us-east-1/s3/aws4_request".into(),
        seed_signature: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9".into(),
    }
}

fn mode(m: Mode, key: &[u8]) -> PayloadMode {
    match m {
        Mode::Unsigned => PayloadMode::UnsignedChunks,
        Mode::Signed => PayloadMode::SignedChunks {
            signer: signer(key),
            trailer: false,
        },
        Mode::SignedTrailer => PayloadMode::SignedChunks {
            signer: signer(key),
            trailer: true,
        },
    }
}

fn headers(declared: usize, trailer: bool) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-amz-decoded-content-length", declared.into());
    if trailer {
        h.insert("x-amz-trailer", http::HeaderValue::from_static(TRAILER));
    }
    h
}

/// What an SDK sends: each chunk `HEX;chunk-signature=SIG\r\n<data>\r\n`, the final empty
/// chunk, then the trailer lines and their signature.
fn encode(payload: &[u8], sizes: &[u16], m: Mode, key: &[u8], trailer: Option<&str>) -> Vec<u8> {
    let s = signer(key);
    let mut prev = s.seed_signature.clone();
    let mut out = Vec::new();
    let mut chunk = |out: &mut Vec<u8>, data: &[u8]| {
        out.extend_from_slice(format!("{:x}", data.len()).as_bytes());
        if !matches!(m, Mode::Unsigned) {
            prev = s.chunk_signature(&prev, &Sha256::digest(data));
            out.extend_from_slice(format!(";chunk-signature={prev}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !data.is_empty() {
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    };
    let mut rest = payload;
    for &n in sizes {
        let n = usize::from(n).clamp(1, rest.len().max(1));
        if rest.is_empty() {
            break;
        }
        chunk(&mut out, &rest[..n]);
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        chunk(&mut out, rest);
    }
    chunk(&mut out, b"");
    if let Some(value) = trailer {
        let line = format!("{TRAILER}:{value}");
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        if matches!(m, Mode::SignedTrailer) {
            let canonical = format!("{line}\n");
            let sig = s.trailer_signature(&prev, &Sha256::digest(canonical.as_bytes()));
            out.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n").as_bytes());
        }
    } else if matches!(m, Mode::SignedTrailer) {
        // A signed-trailer body with no trailer still signs the empty trailer section.
        let sig = s.trailer_signature(&prev, &Sha256::digest(b""));
        out.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn run(
    frames: Vec<Bytes>,
    h: &http::HeaderMap,
    m: PayloadMode,
) -> (Vec<u8>, Result<(), String>, Option<String>) {
    let d = payload::decode(body(frames), h, m).expect("headers are valid");
    let (out, end) = drain(d.stream);
    let trailer = d.trailer.and_then(|(_, slot)| slot.get().cloned());
    (out, end, trailer)
}

fuzz_target!(|data: &[u8]| {
    if let Some(rest) = data.strip_prefix(b"#") {
        if let Ok(input) = Encoded::arbitrary_take_rest(Unstructured::new(rest)) {
            encoded(input);
        }
        return;
    }
    let Some((p, raw)) = mpgw_fuzz::request(data) else {
        return;
    };
    let m = match p
        .headers
        .get("x-amz-content-sha256")
        .map(http::HeaderValue::as_bytes)
    {
        Some(b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD") => Mode::Signed,
        Some(b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER") => Mode::SignedTrailer,
        _ => Mode::Unsigned,
    };
    let mut outcomes = Vec::new();
    for frames in [
        vec![Bytes::copy_from_slice(raw)],
        raw.chunks(3).map(Bytes::copy_from_slice).collect(),
    ] {
        let Ok(d) = payload::decode(body(frames), &p.headers, mode(m, b"fuzz-key")) else {
            return;
        };
        let declared = d.length.expect("aws-chunked declares its length");
        let (out, end) = drain(d.stream);
        assert!(out.len() as u64 <= declared);
        if end.is_ok() {
            assert_eq!(out.len() as u64, declared);
        }
        let trailer = d.trailer.and_then(|(_, slot)| slot.get().cloned());
        outcomes.push((end.map(|()| (out, trailer))).ok());
    }
    assert_eq!(outcomes[0], outcomes[1], "framing changed the outcome");
});

fn encoded(input: Encoded) {
    let Encoded {
        payload,
        sizes,
        cuts,
        mode: m,
        key,
        trailer,
        damage,
    } = input;
    // The signed variant without -TRAILER carries no trailers.
    let trailer = trailer
        .filter(|_| !matches!(m, Mode::Signed))
        .map(|v| format!("{v:08x}"));
    let mut encoded = encode(&payload, &sizes, m, &key, trailer.as_deref());
    let h = headers(payload.len(), trailer.is_some());
    let Some((truncate, at, flip)) = damage else {
        let (out, end, value) = run(split(&encoded, &cuts), &h, mode(m, &key));
        assert_eq!(end, Ok(()));
        assert!(out == payload, "decoded data differs");
        assert_eq!(value, trailer);
        return;
    };
    let at = usize::from(at) % encoded.len();
    if truncate {
        encoded.truncate(at);
    } else if flip != 0 {
        encoded[at] ^= flip;
    }
    let (out, end, value) = run(split(&encoded, &cuts), &h, mode(m, &key));
    assert!(out.len() <= payload.len());
    if end.is_ok() {
        assert_eq!(out.len(), payload.len());
        // Unsigned chunks carry no integrity: only cutting them short must be noticed.
        if truncate || !matches!(m, Mode::Unsigned) {
            assert!(out == payload, "a damaged body passed with other data");
        }
        if !matches!(m, Mode::Unsigned) {
            // A trailer value is published only once its signature checked out.
            assert_eq!(value, trailer);
        }
    }
}
