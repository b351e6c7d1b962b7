//! The legacy API's request fields (query, urlencoded body, multipart/form-data with a `file`
//! field) and the field values read from them. Input: a request as HTTP text (seeds: the
//! design note's init/uppart/complete requests; a path ending in `uppart` wants the chunk), or,
//! after a `#`, fields to encode. Properties: no request panics; fields sent urlencoded or as
//! multipart parts, framed at random, read back as sent, and the `file` part streams back byte
//! for byte.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mpgw::legacy::form;
use mpgw::model::checksum::ContentHash;
use mpgw_fuzz::{block_on, body, drain, split};

#[derive(Arbitrary, Debug)]
struct Fields {
    fields: BTreeMap<String, String>,
    multipart: bool,
    file: Option<Vec<u8>>,
    cuts: Vec<u16>,
}

fn request(uri: &str, content_type: &str) -> Option<http::request::Parts> {
    let req = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", content_type)
        .body(())
        .ok()?;
    Some(req.into_parts().0)
}

const BOUNDARY: &str = "----mpgwFuzzBoundary7MA4YWxkTrZu0gW";

fn multipart(fields: &BTreeMap<String, String>, file: Option<&[u8]>) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, value) in fields {
        b.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some(data) = file {
        b.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

fuzz_target!(|data: &[u8]| {
    if let Some(rest) = data.strip_prefix(b"#") {
        if let Ok(input) = Fields::arbitrary_take_rest(Unstructured::new(rest)) {
            fields(input);
        }
        return;
    }
    let Some((p, raw)) = mpgw_fuzz::request(data) else {
        return;
    };
    let want_file = p.uri.path().ends_with("uppart");
    // Whole, then in 3-byte frames: the framing must not change the outcome.
    let mut outcomes = Vec::new();
    for frames in [
        vec![Bytes::copy_from_slice(raw)],
        raw.chunks(3).map(Bytes::copy_from_slice).collect(),
    ] {
        let outcome = match block_on(form::read(&p, body(frames), want_file)) {
            Err(_) => Err(()),
            Ok((f, file)) => {
                assert_eq!(file.is_some(), want_file);
                // What a cut-off chunk delivered before failing may depend on the framing.
                let file = file.map(drain).map(|(data, end)| end.map(|()| data));
                // The typed reads of the handlers, on whatever arrived.
                let mut seen = Vec::new();
                for name in [
                    "username",
                    "filesize",
                    "index",
                    "filehash",
                    "uploadid",
                    "chunkhash",
                ] {
                    let _ = f.number(name);
                    if let Some(v) = f.get(name) {
                        assert!(!v.is_empty());
                        if let Some(h) = ContentHash::parse(v) {
                            assert!(
                                h.hex
                                    .bytes()
                                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                            );
                        }
                    }
                    seen.push(f.get(name).map(str::to_owned));
                }
                Ok((seen, file))
            }
        };
        outcomes.push(outcome);
    }
    assert_eq!(outcomes[0], outcomes[1], "framing changed the outcome");
});

fn fields(input: Fields) {
    let Fields {
        fields,
        multipart: as_multipart,
        file,
        cuts,
    } = input;
    // Field names a form can carry; `file` is the chunk itself; `token` comes from a header.
    let fields: BTreeMap<String, String> = fields
        .into_iter()
        .filter(|(n, _)| {
            !n.is_empty()
                && n != "file"
                && n != "token"
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(n, v)| (n, v.replace(['\r', '\n'], " ")))
        .filter(|(_, v)| !as_multipart || !v.contains(BOUNDARY))
        .collect();
    let want_file = as_multipart && file.is_some();
    let (raw, content_type) = if as_multipart {
        (
            multipart(&fields, file.as_deref()),
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
    } else {
        let s = form_urlencoded_body(&fields);
        (
            s.into_bytes(),
            "application/x-www-form-urlencoded".to_owned(),
        )
    };
    let p = request("/file/mpupload/init", &content_type).unwrap();
    let (f, stream) = block_on(form::read(&p, body(split(&raw, &cuts)), want_file))
        .unwrap_or_else(|e| panic!("{e:?}"));
    for (name, value) in &fields {
        let want = Some(value.as_str()).filter(|v| !v.is_empty());
        assert_eq!(f.get(name), want, "field {name}");
    }
    if let (Some(data), Some(stream)) = (file, stream) {
        let (got, end) = drain(stream);
        assert_eq!(end, Ok(()));
        assert!(got == data, "file part differs");
    }
}

fn form_urlencoded_body(fields: &BTreeMap<String, String>) -> String {
    fields
        .iter()
        .map(|(n, v)| {
            let enc = |s: &str| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            format!("{}={}", enc(n), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}
