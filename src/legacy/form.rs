//! The legacy API's request fields: from the query string, a urlencoded body, or the text fields
//! of a multipart/form-data body, whose `file` field (the chunk) is handed on as a stream and
//! never held in memory. Text fields must come before `file` (browsers send FormData in append
//! order; the page and the CLI do so).
//!
//! Everything before the chunk is read before the token can be checked, so it is capped: at most
//! `MAX_FIELDS` bytes of field values in all, `MAX_FIELD_COUNT` fields, and `MAX_HEAD` bytes of
//! multipart framing (preamble, part headers, boundaries) plus values. A request over a cap is
//! refused as soon as it passes it, without reading further.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use http_body_util::BodyExt as _;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};

use super::reply::LegacyError;
use crate::multipart;
use crate::upload::{BodyError, BodyStream};

/// Most bytes of field values in one request (all fields together, or a urlencoded body).
const MAX_FIELDS: usize = 64 * 1024;
/// Most text fields in one multipart request (the API knows a dozen names).
const MAX_FIELD_COUNT: usize = 64;
/// Most bytes of a multipart body read before its `file` part starts (or in all, without one).
const MAX_HEAD: u64 = 2 * MAX_FIELDS as u64;

#[derive(Debug, Default)]
pub struct Form(BTreeMap<String, String>);

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, LegacyError> {
        self.get(name).ok_or_else(|| LegacyError::missing(name))
    }

    pub fn number(&self, name: &str) -> Result<u64, LegacyError> {
        self.required(name)?
            .trim()
            .parse()
            .map_err(|_| LegacyError::invalid(name, "not a non-negative integer"))
    }

    fn extend(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        for (k, v) in pairs {
            self.0.entry(k).or_insert(v);
        }
    }
}

fn body_stream<B>(body: B) -> impl Stream<Item = Result<Bytes, B::Error>> + Send + 'static
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    body.into_data_stream()
}

/// Reads the fields of `req`; with `want_file`, also returns the chunk body as a stream.
/// Generic over the body so that tests and fuzz targets can feed it bytes from memory.
pub async fn read<B>(
    parts: &http::request::Parts,
    body: B,
    want_file: bool,
) -> Result<(Form, Option<BodyStream>), LegacyError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut form = Form::default();
    form.extend(
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()).into_owned(),
    );
    if let Some(token) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        form.0.insert("token".into(), token.trim().to_owned());
    }
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "multipart/form-data" => {
            let caps = multipart::Caps {
                values: MAX_FIELDS,
                count: MAX_FIELD_COUNT,
                head: MAX_HEAD,
            };
            let (fields, file) = multipart::read(&content_type, body, caps, |n| n == "file")
                .await
                .map_err(LegacyError::bad_form)?;
            for (name, value) in fields {
                form.0.insert(name, value);
            }
            match file {
                Some(_) if !want_file => {
                    return Err(LegacyError::bad_form("unexpected file field"));
                }
                Some(f) => return Ok((form, Some(f.stream))),
                None if want_file => return Err(LegacyError::missing("file")),
                None => {}
            }
        }
        "application/x-www-form-urlencoded" => {
            let mut raw = Vec::new();
            let mut stream = body_stream(body);
            while let Some(chunk) = stream.next().await {
                raw.extend_from_slice(&chunk.map_err(LegacyError::bad_form)?);
                if raw.len() > MAX_FIELDS {
                    return Err(LegacyError::bad_form("form too long"));
                }
            }
            let fields: Vec<(String, String)> = form_urlencoded::parse(&raw).into_owned().collect();
            form.0.extend(fields);
            if want_file {
                return Err(LegacyError::missing("file"));
            }
        }
        // Anything else: the body itself is the chunk (`curl --data-binary @chunk`), fields in the query.
        _ if want_file => {
            return Ok((
                form,
                Some(Box::pin(body_stream(body).map_err(BodyError::new))),
            ));
        }
        _ => {}
    }
    Ok((form, None))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::task::{Context, Poll, Waker};

    use http_body::Frame;
    use http_body_util::StreamBody;
    use proptest::prelude::*;

    use super::*;

    /// Runs `read` on an in-memory body (cut into `frames`), which never pends.
    fn read_now(
        uri: &str,
        content_type: &str,
        frames: Vec<Vec<u8>>,
        want_file: bool,
    ) -> Result<(Form, Option<Vec<u8>>), LegacyError> {
        let parts = http::Request::post(uri)
            .header(CONTENT_TYPE, content_type)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = frames
            .into_iter()
            .map(|f| Ok(Frame::data(Bytes::from(f))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let mut cx = Context::from_waker(Waker::noop());
        let fut = std::pin::pin!(async {
            let (form, file) = read(&parts, body, want_file).await?;
            let file = match file {
                None => None,
                Some(s) => Some(
                    s.try_fold(Vec::new(), |mut v, b| async move {
                        v.extend_from_slice(&b);
                        Ok(v)
                    })
                    .await
                    .map_err(|e| LegacyError::bad_form(e.0))?,
                ),
            };
            Ok((form, file))
        });
        match fut.poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("in-memory bodies never pend"),
        }
    }

    fn cut(data: &[u8], mut at: Vec<usize>) -> Vec<Vec<u8>> {
        at.push(data.len());
        at.iter_mut().for_each(|a| *a = (*a).min(data.len()));
        at.sort_unstable();
        let mut start = 0;
        at.into_iter()
            .map(|end| {
                let f = data[start..end].to_vec();
                start = end;
                f
            })
            .collect()
    }

    const BOUNDARY: &str = "XyZmpgwBoundary";

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
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c\"\r\n\r\n"
                )
                .as_bytes(),
            );
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        b
    }

    fn fields() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map("[a-z]{1,10}", "[^\r\n]{0,20}", 0..6)
            .prop_map(|m| m.into_iter().filter(|(k, _)| k != "file").collect())
    }

    fn assert_fields(form: &Form, fields: &BTreeMap<String, String>) {
        for (name, value) in fields {
            let want = Some(value.as_str()).filter(|v| !v.is_empty());
            assert_eq!(form.get(name), want, "{name}");
        }
    }

    #[test]
    fn text_fields_must_come_before_the_file() {
        let mut body = multipart(&BTreeMap::new(), Some(b"chunk"));
        body.truncate(body.len() - format!("--{BOUNDARY}--\r\n").len());
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"index\"\r\n\r\n1\r\n--{BOUNDARY}--\r\n")
                .as_bytes(),
        );
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        let (form, file) = read_now("/u", &ct, vec![body], true).unwrap();
        assert_eq!(file.as_deref(), Some(&b"chunk"[..]));
        assert_eq!(form.get("index"), None);
    }

    #[test]
    fn oversized_or_missing_parts_are_refused() {
        let big = format!("username={}", "a".repeat(MAX_FIELDS));
        let urlencoded = "application/x-www-form-urlencoded";
        let err = read_now("/u", urlencoded, vec![big.into_bytes()], false).unwrap_err();
        assert_eq!(err.code, 10014);
        let mut fields = BTreeMap::new();
        fields.insert("username".to_owned(), "a".repeat(MAX_FIELDS + 1));
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        let err = read_now("/u", &ct, vec![multipart(&fields, None)], false).unwrap_err();
        assert_eq!(err.code, 10014);
        // An upload without its chunk, and a chunk where none belongs.
        let err = read_now("/u", urlencoded, vec![b"index=1".to_vec()], true).unwrap_err();
        assert_eq!(err.code, 10001);
        let err = read_now(
            "/u",
            &ct,
            vec![multipart(&BTreeMap::new(), Some(b"x"))],
            false,
        );
        assert_eq!(err.unwrap_err().code, 10014);
    }

    #[test]
    fn fields_are_capped_in_all_before_the_token_is_known() {
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        // Many small fields, each under the cap, together over it.
        let many: BTreeMap<String, String> = (0..40)
            .map(|i| (format!("f{i:02}"), "x".repeat(2000)))
            .collect();
        let err = read_now("/u", &ct, vec![multipart(&many, None)], false).unwrap_err();
        assert_eq!(err.code, 10014, "{err:?}");
        assert!(err.msg.contains("in all"), "{err:?}");
        // More fields than any request needs.
        let many: BTreeMap<String, String> = (0..=MAX_FIELD_COUNT)
            .map(|i| (format!("f{i:03}"), String::new()))
            .collect();
        let err = read_now("/u", &ct, vec![multipart(&many, None)], true).unwrap_err();
        assert!(err.msg.contains("fields"), "{err:?}");
        // A preamble (or part headers) that never ends: refused once the head cap is read,
        // whatever follows in later frames.
        let frames = vec![vec![b'a'; 32 << 10]; 8];
        let err = read_now("/u", &ct, frames, false).unwrap_err();
        assert!(err.msg.contains("before the file part"), "{err:?}");
        let mut head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\nX: ")
            .into_bytes();
        head.resize(200 << 10, b'x');
        let err = read_now("/u", &ct, cut(&head, vec![1000, 70_000, 140_000]), false).unwrap_err();
        assert!(err.msg.contains("before the file part"), "{err:?}");
    }

    #[test]
    fn a_large_chunk_right_after_the_fields_is_not_the_fields() {
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        let mut fields = BTreeMap::new();
        fields.insert("username".to_owned(), "alice".to_owned());
        let data: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        let body = multipart(&fields, Some(&data));
        // In one frame, and in many frames that the parser reads ahead greedily.
        for frames in [
            vec![body.clone()],
            body.chunks(16 << 10).map(<[u8]>::to_vec).collect(),
        ] {
            let (form, file) = read_now("/u", &ct, frames, true).unwrap();
            assert_eq!(form.get("username"), Some("alice"));
            assert!(file.as_deref() == Some(&data[..]));
        }
    }

    proptest! {
        /// Multipart fields and the file part, framed at random, read back as sent.
        #[test]
        fn multipart_round_trip(
            fields in fields(),
            file in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
            cuts in prop::collection::vec(0..1000usize, 0..8),
        ) {
            let body = multipart(&fields, file.as_deref());
            let ct = format!("multipart/form-data; boundary={BOUNDARY}");
            let (form, got) = read_now("/u?q=1", &ct, cut(&body, cuts), file.is_some()).unwrap();
            assert_fields(&form, &fields);
            prop_assert_eq!(got, file);
        }

        /// Urlencoded bodies and query strings read back as sent.
        #[test]
        fn urlencoded_round_trip(fields in fields(), cuts in prop::collection::vec(0..300usize, 0..4)) {
            let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
            let (form, _) = read_now("/u", "application/x-www-form-urlencoded", cut(body.as_bytes(), cuts), false).unwrap();
            assert_fields(&form, &fields);
            let (form, _) = read_now(&format!("/u?{body}"), "text/plain", vec![], false).unwrap();
            assert_fields(&form, &fields);
        }

        /// Arbitrary bodies under each content type: fields or a form error, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(
            ct in "multipart/form-data; boundary=[a-zA-Z0-9]{1,10}|application/x-www-form-urlencoded|[ -~]{0,30}",
            body in prop::collection::vec(any::<u8>(), 0..400),
            want_file in any::<bool>(),
        ) {
            if let Ok((form, file)) = read_now("/u", &ct, vec![body], want_file) {
                prop_assert_eq!(file.is_some(), want_file);
                let _ = form.number("filesize");
            }
        }
    }
}
