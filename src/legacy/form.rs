//! The legacy API's request fields: from the query string, a urlencoded body, or the text fields
//! of a multipart/form-data body, whose `file` field (the chunk) is handed on as a stream and
//! never held in memory. Text fields must come before `file` (browsers send FormData in append
//! order; the page and the CLI do so).

use std::collections::BTreeMap;

use crate::http::RequestBody;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use http_body_util::BodyExt as _;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};

use super::reply::LegacyError;
use crate::upload::{BodyError, BodyStream};

/// Largest non-file part of a request (fields, urlencoded bodies).
const MAX_FIELDS: usize = 64 * 1024;

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

fn body_stream(
    body: RequestBody,
) -> impl Stream<Item = Result<Bytes, crate::http::BodyReadError>> + Send + 'static {
    body.into_data_stream()
}

/// Reads the fields of `req`; with `want_file`, also returns the chunk body as a stream.
pub async fn read(
    parts: &http::request::Parts,
    body: RequestBody,
    want_file: bool,
) -> Result<(Form, Option<BodyStream>), LegacyError> {
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
            let boundary = multer::parse_boundary(&content_type).map_err(LegacyError::bad_form)?;
            let mut mp = multer::Multipart::new(body_stream(body), boundary);
            while let Some(field) = mp.next_field().await.map_err(LegacyError::bad_form)? {
                let name = field.name().unwrap_or_default().to_owned();
                if name == "file" {
                    if !want_file {
                        return Err(LegacyError::bad_form("unexpected file field"));
                    }
                    let stream: BodyStream = Box::pin(field.map_err(BodyError::new));
                    return Ok((form, Some(stream)));
                }
                let mut text = Vec::new();
                let mut field = field;
                while let Some(chunk) = field.next().await {
                    text.extend_from_slice(&chunk.map_err(LegacyError::bad_form)?);
                    if text.len() > MAX_FIELDS {
                        return Err(LegacyError::bad_form(format!("field {name} too long")));
                    }
                }
                form.0
                    .insert(name, String::from_utf8_lossy(&text).into_owned());
            }
            if want_file {
                return Err(LegacyError::missing("file"));
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
