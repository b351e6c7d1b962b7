//! tus 1.0 (tus.io) at `/_tus/`: resumable uploads for tus-js-client, Uppy and tuspy, on the
//! same `upload::Uploads` core and stores as S3 and the note's API. It only translates: an
//! upload is an upload written in order (`upload::append`), a PATCH one append, the finished
//! file the user file `<user>/<filename>` of the legacy bucket, as the note's API makes it.
//!
//! Extensions: creation, creation-with-upload, creation-defer-length, termination, expiration,
//! checksum, concatenation. A request is the user whose legacy token it carries in
//! `Authorization: Bearer`; another user's upload answers like a missing one. Every answer
//! carries CORS headers for any origin (the token, not a cookie, is the credential), and a
//! preflight needs no token.

use std::collections::BTreeMap;

use base64::Engine as _;
use futures_util::TryStreamExt as _;
use http::request::Parts;
use http_body_util::BodyExt as _;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::body::{Body, RequestBody, RequestInfo, Signer, empty, full};
use crate::credentials::LEGACY_OWNER;
use crate::model::checksum::{ChecksumAlgorithm, ContentAlgorithm, ContentHash};
use crate::model::time::http_date;
use crate::model::{AppendInfo, ObjectHeaders, UploadId};
use crate::upload::append::AppendState;
use crate::upload::files::META_HASH;
use crate::upload::{BodyError, BodyStream, Error as UploadError};

/// Where tus is served unless `--tus-path` says otherwise: a path no bucket can have (bucket
/// names never start with `_`).
pub const DEFAULT_PATH: &str = "/_tus/";

/// Whether `path` is under the tus path `base` (`/_tus/`; `/_tus` itself too).
pub fn serves(base: &str, path: &str) -> bool {
    path.starts_with(base) || path == base.trim_end_matches('/')
}

const VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,concatenation";
const CHECKSUMS: &str = "md5,sha1,sha256,sha512,crc32,crc32c";
const OCTETS: &str = "application/offset+octet-stream";
const EXPOSE: &str = "Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, Upload-Concat, Upload-Expires, Location, Tus-Version, Tus-Resumable, Tus-Max-Size, Tus-Extension, Tus-Checksum-Algorithm";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, Upload-Concat, Upload-Checksum, Tus-Resumable, X-HTTP-Method-Override, X-Requested-With";
const ALLOW_METHODS: &str = "POST, HEAD, PATCH, DELETE, OPTIONS";
/// Most bytes of an `Upload-Metadata` header.
const MAX_METADATA: usize = 4096;

/// A refusal: its status and a short text body.
#[derive(Debug)]
struct TusError {
    status: StatusCode,
    msg: String,
    /// The offset to report (409 answers it, so a client can resume without a HEAD).
    offset: Option<u64>,
    /// What went wrong inside, for the log only.
    cause: Option<String>,
}

impl TusError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            msg: msg.into(),
            offset: None,
            cause: None,
        }
    }

    fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "upload not found")
    }
}

impl From<UploadError> for TusError {
    fn from(e: UploadError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            UploadError::NoSuchUpload | UploadError::NoSuchBucket | UploadError::NoSuchKey => {
                Self::not_found()
            }
            UploadError::UploadExpired => Self::new(S::GONE, "upload expired"),
            UploadError::OffsetMismatch(at) => Self {
                offset: Some(at),
                ..Self::new(
                    S::CONFLICT,
                    format!("Upload-Offset mismatch: the upload is at {at}"),
                )
            },
            UploadError::BadDigest(_) => Self::new(checksum_mismatch(), "checksum mismatch"),
            UploadError::EntityTooLarge | UploadError::FileTooLarge { .. } => {
                Self::new(S::PAYLOAD_TOO_LARGE, msg)
            }
            UploadError::TooManyUploads(_) | UploadError::AccessDenied => {
                Self::new(S::FORBIDDEN, msg)
            }
            UploadError::OperationAborted => Self::new(S::CONFLICT, msg),
            UploadError::Unavailable(_) => {
                Self::new(S::SERVICE_UNAVAILABLE, "state store unavailable; retry")
            }
            UploadError::SlowDown => Self::new(
                S::SERVICE_UNAVAILABLE,
                "completion events are backing up; retry later",
            ),
            UploadError::InsufficientStorage(_) => Self {
                cause: Some(crate::upload::error::chain(&e)),
                ..Self::new(
                    S::INSUFFICIENT_STORAGE,
                    "not enough free space on the data disk",
                )
            },
            UploadError::Body(b) => Self {
                cause: Some(b.to_string()),
                ..Self::new(S::BAD_REQUEST, "request body cut short")
            },
            UploadError::Io(_) | UploadError::Store(_) => Self {
                cause: Some(crate::upload::error::chain(&e)),
                ..Self::new(S::INTERNAL_SERVER_ERROR, "internal error")
            },
            UploadError::BucketAlreadyOwnedByYou
            | UploadError::BucketAlreadyExists
            | UploadError::BucketNotEmpty
            | UploadError::InvalidBucketName
            | UploadError::KeyTooLong
            | UploadError::InvalidPart(_)
            | UploadError::InvalidPartOrder
            | UploadError::EntityTooSmall
            | UploadError::IncompleteBody
            | UploadError::InvalidArgument(_)
            | UploadError::InvalidRequest(_)
            | UploadError::EmptyPartList
            | UploadError::PreconditionFailed
            | UploadError::ChunksMissing(_) => Self::bad(msg),
        }
    }
}

/// tus's "460 Checksum Mismatch".
fn checksum_mismatch() -> StatusCode {
    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The operation name of a request, for the access log and the per-op metrics.
fn op_name(method: &Method, on_upload: bool) -> &'static str {
    match (method.as_str(), on_upload) {
        ("OPTIONS", _) => "TusOptions",
        ("POST", false) => "TusCreate",
        ("HEAD", true) => "TusHead",
        ("PATCH", true) => "TusPatch",
        ("DELETE", true) => "TusDelete",
        _ => "TusUnknown",
    }
}

/// Serves one request under the tus path (see [`serves`]), filling `info` as it learns who and what.
pub async fn handle(
    app: &App,
    req: Request<RequestBody>,
    signer: Option<Signer>,
    info: &mut RequestInfo,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // A client that cannot send PATCH or DELETE sends POST with the method it means.
    let method = match parts.headers.get("x-http-method-override") {
        Some(m) if parts.method == Method::POST => {
            Method::from_bytes(m.as_bytes()).unwrap_or(Method::POST)
        }
        _ => parts.method.clone(),
    };
    let rest = parts
        .uri
        .path()
        .strip_prefix(&*app.tus_path)
        .unwrap_or_default();
    let on_upload = !rest.is_empty();
    info.op = op_name(&method, on_upload);
    info.bucket.clone_from(&app.legacy.bucket);
    let result = async {
        if method == Method::OPTIONS {
            return Ok(options(app, &parts.headers));
        }
        if parts
            .headers
            .get("tus-resumable")
            .map(HeaderValue::as_bytes)
            != Some(VERSION.as_bytes())
        {
            return Err(TusError::new(
                StatusCode::PRECONDITION_FAILED,
                "Tus-Resumable 1.0.0 required",
            ));
        }
        let who = authenticate(app, &parts, rest, signer)?;
        info.access_key = match &who {
            Who::User(u) => Some(u.clone()),
            Who::Key { access_key, .. } => Some(access_key.clone()),
            Who::Url => None,
        };
        let ctx = Ctx {
            app,
            parts: &parts,
            who,
        };
        match (method.clone(), on_upload) {
            (Method::POST, false) => ctx.create(body, info).await,
            (Method::HEAD, true) => ctx.head(&upload_id(rest)?).await,
            (Method::PATCH, true) => ctx.patch(&upload_id(rest)?, body).await,
            (Method::DELETE, true) => ctx.delete(&upload_id(rest)?).await,
            _ => Err(TusError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
            )),
        }
    }
    .await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            info.error_code = Some(code_name(e.status));
            if e.status.is_server_error() {
                let cause = e.cause.as_deref().unwrap_or("-");
                tracing::warn!(op = info.op, status = e.status.as_u16(), msg = %e.msg, cause, "tus request failed");
            } else {
                tracing::info!(op = info.op, status = e.status.as_u16(), msg = %e.msg, "tus request refused");
            }
            error_response(&e)
        }
    };
    decorate(resp.headers_mut(), &parts.headers);
    resp
}

/// The access log's error field for a status.
fn code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "TusBadRequest",
        401 => "TusUnauthorized",
        403 => "TusForbidden",
        404 => "TusNotFound",
        405 => "TusMethodNotAllowed",
        409 => "TusOffsetMismatch",
        410 => "TusGone",
        412 => "TusVersion",
        413 => "TusTooLarge",
        415 => "TusContentType",
        460 => "TusChecksumMismatch",
        503 => "TusUnavailable",
        507 => "TusInsufficientStorage",
        _ => "TusError",
    }
}

fn error_response(e: &TusError) -> Response<Body> {
    let mut resp = Response::new(full(format!("{}\n", e.msg)));
    *resp.status_mut() = e.status;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(at) = e.offset {
        h.insert("upload-offset", HeaderValue::from(at));
    }
    if e.status == StatusCode::UNAUTHORIZED {
        h.insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

/// What every answer carries: the protocol version, and CORS for the request's origin.
fn decorate(h: &mut HeaderMap, req: &HeaderMap) {
    h.insert("tus-resumable", HeaderValue::from_static(VERSION));
    h.insert("tus-version", HeaderValue::from_static(VERSION));
    if let Some(origin) = req.get(hyper::header::ORIGIN) {
        h.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(hyper::header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            hyper::header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE),
        );
    }
}

/// OPTIONS: what this server supports, and the CORS preflight (no token needed).
fn options(app: &App, req: &HeaderMap) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    h.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static(CHECKSUMS),
    );
    h.insert(
        "tus-max-size",
        HeaderValue::from(app.uploads.append_max_size()),
    );
    if req.contains_key(hyper::header::ORIGIN) {
        h.insert(
            hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            hyper::header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    resp
}

/// Who a request acts for.
enum Who {
    /// A legacy user, by the Bearer token.
    User(String),
    /// An S3 key that signed a creation with SigV4.
    Key {
        access_key: String,
        signed: Vec<String>,
        payload: Option<[u8; 32]>,
    },
    /// Whoever holds the upload URL made for an S3 key's upload (its `sig` is checked).
    Url,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The `sig` of the upload URL of upload `id` made for an S3 key: an HMAC of the id under
/// the gateways' shared key, so the URL is the capability (as a presigned URL is).
fn url_sig(key: &[u8], id: &UploadId) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"tus-upload-url\n");
    mac.update(id.as_str().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Who the request is: a signed S3 key (creation only), the holder of an upload URL with its
/// `sig`, or the legacy user whose token is in `Authorization: Bearer`.
fn authenticate(
    app: &App,
    parts: &Parts,
    rest: &str,
    signer: Option<Signer>,
) -> Result<Who, TusError> {
    match signer {
        Some(Err(msg)) => return Err(TusError::new(StatusCode::FORBIDDEN, msg)),
        Some(Ok((access_key, signed, payload))) => {
            return Ok(Who::Key {
                access_key,
                signed,
                payload,
            });
        }
        None => {}
    }
    let sig = form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned());
    if let Some(sig) = sig {
        use subtle::ConstantTimeEq as _;
        let ok = UploadId::parse(rest.trim_end_matches('/')).is_some_and(|id| {
            bool::from(
                url_sig(&app.tus_url_key, &id)
                    .as_bytes()
                    .ct_eq(sig.as_bytes()),
            )
        });
        return if ok {
            Ok(Who::Url)
        } else {
            Err(TusError::not_found())
        };
    }
    let token = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    token
        .and_then(|t| app.legacy.users.by_token(t))
        .map(|u| Who::User(u.to_owned()))
        .ok_or_else(|| {
            TusError::new(
                StatusCode::UNAUTHORIZED,
                "a valid Authorization: Bearer token is required",
            )
        })
}

/// The upload id of a path's last segment (no id parses as a missing upload).
fn upload_id(rest: &str) -> Result<UploadId, TusError> {
    UploadId::parse(rest.trim_end_matches('/')).ok_or_else(TusError::not_found)
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn number(h: &HeaderMap, name: &str) -> Result<Option<u64>, TusError> {
    header(h, name)
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| TusError::bad(format!("invalid {name}")))
        })
        .transpose()
}

/// `Upload-Metadata`: `key base64value` pairs separated by commas (a value may be absent).
fn parse_metadata(raw: &str) -> Result<BTreeMap<String, Vec<u8>>, TusError> {
    let mut out = BTreeMap::new();
    if raw.len() > MAX_METADATA {
        return Err(TusError::bad("Upload-Metadata too long"));
    }
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = pair.split(' ').filter(|s| !s.is_empty());
        let key = it.next().unwrap_or_default();
        let value = it.next().unwrap_or_default();
        if it.next().is_some() || key.is_empty() {
            return Err(TusError::bad("invalid Upload-Metadata"));
        }
        let value = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| TusError::bad(format!("Upload-Metadata {key}: invalid base64")))?;
        if out.insert(key.to_owned(), value).is_some() {
            return Err(TusError::bad(format!("Upload-Metadata {key} given twice")));
        }
    }
    Ok(out)
}

/// Whether a metadata key can be an S3 user-metadata name.
fn metadata_name(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
fn parse_checksum(raw: &str) -> Result<(ChecksumAlgorithm, Vec<u8>), TusError> {
    let (name, value) = raw
        .split_once(' ')
        .ok_or_else(|| TusError::bad("invalid Upload-Checksum"))?;
    let alg = ChecksumAlgorithm::parse(name)
        .filter(|a| {
            CHECKSUMS
                .split(',')
                .any(|n| a.as_str().eq_ignore_ascii_case(n))
        })
        .ok_or_else(|| TusError::bad(format!("unsupported checksum algorithm {name}")))?;
    let digest = alg
        .decode(value.trim())
        .ok_or_else(|| TusError::bad("invalid Upload-Checksum digest"))?;
    Ok((alg, digest))
}

struct Ctx<'a> {
    app: &'a App,
    parts: &'a Parts,
    who: Who,
}

impl Ctx<'_> {
    /// Whose uploads this request may touch: a user's or a key's own; None for the holder of an
    /// upload URL (its `sig` names the upload).
    fn owner(&self) -> Result<Option<&str>, TusError> {
        match &self.who {
            Who::User(u) => Ok(Some(u)),
            Who::Url => Ok(None),
            Who::Key { .. } => Err(TusError::bad(
                "an S3 key signs the creation only: use the upload URL it returned",
            )),
        }
    }

    /// The legacy user of a Bearer request (creation by anyone else is refused).
    fn user(&self) -> Result<&str, TusError> {
        match &self.who {
            Who::User(u) => Ok(u),
            Who::Key { .. } => Err(TusError::bad(
                "concatenation needs a legacy user's Bearer token",
            )),
            Who::Url => Err(TusError::new(
                StatusCode::UNAUTHORIZED,
                "a valid Authorization: Bearer token is required",
            )),
        }
    }

    async fn state(&self, id: &UploadId) -> Result<AppendState, TusError> {
        Ok(self.app.uploads.append_state(id, self.owner()?).await?)
    }

    /// The upload's URL as the client reached this server.
    fn location(&self, id: &UploadId) -> String {
        let host = header(&self.parts.headers, "host")
            .map(str::to_owned)
            .or_else(|| self.parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let scheme = if self.app.https { "https" } else { "http" };
        match self.who {
            Who::Key { .. } => format!(
                "{scheme}://{host}{}{id}?sig={}",
                self.app.tus_path,
                url_sig(&self.app.tus_url_key, id)
            ),
            _ => format!("{scheme}://{host}{}{id}", self.app.tus_path),
        }
    }

    fn filename(meta: &BTreeMap<String, Vec<u8>>) -> Result<String, TusError> {
        let name = meta
            .get("filename")
            .ok_or_else(|| TusError::bad("Upload-Metadata must name a filename"))?;
        let name =
            String::from_utf8(name.clone()).map_err(|_| TusError::bad("filename is not UTF-8"))?;
        if !crate::upload::files::valid_filename(&name) {
            return Err(TusError::bad(
                "filename empty, too long, or starting with /",
            ));
        }
        Ok(name)
    }

    /// The object headers of the finished file: `filetype` the Content-Type, `sha256` (hex)
    /// the content hash it must match, other keys user metadata.
    fn headers(meta: &BTreeMap<String, Vec<u8>>) -> Result<ObjectHeaders, TusError> {
        let mut headers = ObjectHeaders::default();
        for (k, v) in meta {
            match k.as_str() {
                "filename" => {}
                "filetype" => {
                    let t = String::from_utf8(v.clone())
                        .ok()
                        .filter(|t| HeaderValue::from_str(t).is_ok())
                        .ok_or_else(|| TusError::bad("invalid filetype"))?;
                    headers.content_type = Some(t);
                }
                "sha256" => {
                    let hash = std::str::from_utf8(v)
                        .ok()
                        .and_then(ContentHash::parse)
                        .filter(|h| h.algorithm == ContentAlgorithm::Sha256)
                        .ok_or_else(|| TusError::bad("sha256 metadata: expected 64 hex digits"))?;
                    headers
                        .user
                        .insert(META_HASH.into(), hash.canonical().into_bytes());
                }
                k if metadata_name(k) => {
                    headers.user.insert(k.to_ascii_lowercase(), v.clone());
                }
                _ => {}
            }
        }
        Ok(headers)
    }

    /// A creation signed by an S3 key must have its signature cover every header that
    /// shapes the upload (its length, metadata naming bucket and key, concatenation), and a
    /// body only without a signed payload hash (it is not hashed here).
    fn check_signed(&self, signed: &[String], payload: Option<[u8; 32]>) -> Result<(), TusError> {
        let unsigned: Vec<&str> = self
            .parts
            .headers
            .keys()
            .map(hyper::header::HeaderName::as_str)
            .filter(|n| n.starts_with("upload-") || *n == "x-http-method-override")
            .filter(|n| !signed.iter().any(|s| s == n))
            .collect();
        if !unsigned.is_empty() {
            return Err(TusError::new(
                StatusCode::FORBIDDEN,
                format!("headers not signed: {}", unsigned.join(", ")),
            ));
        }
        let empty = number(&self.parts.headers, "content-length")?.unwrap_or(0) == 0;
        if payload.is_some() && !empty {
            return Err(TusError::bad(
                "a SigV4-signed creation with a body must use UNSIGNED-PAYLOAD",
            ));
        }
        Ok(())
    }

    /// POST: creation (with an optional first body), or a final concatenation.
    async fn create(
        &self,
        body: RequestBody,
        info: &mut RequestInfo,
    ) -> Result<Response<Body>, TusError> {
        let h = &self.parts.headers;
        let raw_meta = header(h, "upload-metadata").unwrap_or_default().to_owned();
        let meta = parse_metadata(&raw_meta)?;
        let concat = header(h, "upload-concat");
        let partial = concat == Some("partial");
        if let Some(list) = concat.filter(|_| !partial) {
            let list = list
                .strip_prefix("final;")
                .ok_or_else(|| TusError::bad("Upload-Concat must be partial or final;<urls>"))?;
            return self.concatenate(list, &raw_meta, &meta, info).await;
        }
        let length = number(h, "upload-length")?;
        let deferred = header(h, "upload-defer-length");
        match (length, deferred) {
            (Some(_), Some(_)) => {
                return Err(TusError::bad(
                    "Upload-Length and Upload-Defer-Length both given",
                ));
            }
            (None, None) => {
                return Err(TusError::bad(
                    "Upload-Length or Upload-Defer-Length: 1 required",
                ));
            }
            (None, Some(d)) if d != "1" => {
                return Err(TusError::bad("Upload-Defer-Length must be 1"));
            }
            _ => {}
        }
        if length.is_some_and(|l| l > self.app.uploads.append_max_size()) {
            return Err(TusError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Upload-Length exceeds Tus-Max-Size",
            ));
        }
        let (owner, bucket, key, make_bucket) = match &self.who {
            Who::User(u) => {
                let key = if partial {
                    format!("{u}/.tus-partial/{}", crate::model::random_hex(8))
                } else {
                    format!("{u}/{}", Self::filename(&meta)?)
                };
                (
                    u.as_str(),
                    self.app.legacy.bucket.clone(),
                    key,
                    Some(LEGACY_OWNER),
                )
            }
            Who::Key {
                access_key,
                signed,
                payload,
            } => {
                self.check_signed(signed, *payload)?;
                if partial {
                    return Err(TusError::bad(
                        "concatenation needs a legacy user's Bearer token",
                    ));
                }
                let text = |k: &str| {
                    meta.get(k)
                        .and_then(|v| String::from_utf8(v.clone()).ok())
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| TusError::bad(format!("Upload-Metadata must name the {k}")))
                };
                (access_key.as_str(), text("bucket")?, text("key")?, None)
            }
            Who::Url => {
                return Err(TusError::new(
                    StatusCode::UNAUTHORIZED,
                    "a valid Authorization: Bearer token is required",
                ));
            }
        };
        info.bucket.clone_from(&bucket);
        info.key.clone_from(&key);
        let mut headers = Self::headers(&meta)?;
        if let Who::Key { .. } = self.who {
            headers.user.remove("bucket");
            headers.user.remove("key");
        }
        let append = AppendInfo {
            length,
            metadata: raw_meta,
            partial,
            concat: None,
        };
        let up = self
            .app
            .uploads
            .init_append(owner, (&bucket, make_bucket), &key, headers, append)
            .await?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::CREATED;
        let location = self.location(&up.id);
        // creation-with-upload: the body is the first bytes. Whatever happens to them, the
        // upload exists: answer 201 with the offset that is stored.
        let with_body = header(h, "content-type") == Some(OCTETS)
            && number(h, "content-length").ok().flatten() != Some(0);
        let state = self.app.uploads.append_state(&up.id, Some(owner)).await?;
        let mut offset = 0;
        if with_body {
            match self.write(&state, 0, body).await {
                Ok(o) => offset = o,
                Err(e) => {
                    tracing::info!(upload = %up.id, msg = %e.msg, "tus creation-with-upload body not stored whole");
                    offset = self
                        .app
                        .uploads
                        .append_state(&up.id, Some(owner))
                        .await
                        .map_or(0, |s| s.offset);
                }
            }
        }
        let rh = resp.headers_mut();
        rh.insert(hyper::header::LOCATION, value(&location));
        rh.insert("upload-offset", HeaderValue::from(offset));
        if let Some(at) = state.expires {
            rh.insert("upload-expires", value(&http_date(at)));
        }
        Ok(resp)
    }

    /// POST with `Upload-Concat: final;<urls>`: the file made of the caller's partial uploads.
    async fn concatenate(
        &self,
        list: &str,
        raw_meta: &str,
        meta: &BTreeMap<String, Vec<u8>>,
        info: &mut RequestInfo,
    ) -> Result<Response<Body>, TusError> {
        let ids = list
            .split(' ')
            .filter(|u| !u.is_empty())
            .map(|u| {
                let base = &*self.app.tus_path;
                let path = u.find(base).map_or(u, |i| &u[i + base.len()..]);
                UploadId::parse(path.trim_end_matches('/'))
                    .ok_or_else(|| TusError::bad(format!("not an upload URL: {u}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Err(TusError::bad("Upload-Concat final names no upload"));
        }
        let user = self.user()?;
        let key = format!("{user}/{}", Self::filename(meta)?);
        info.key.clone_from(&key);
        let headers = Self::headers(meta)?;
        let (up, _) = self
            .app
            .uploads
            .concat_append(
                user,
                &self.app.legacy.bucket,
                &key,
                headers,
                raw_meta.to_owned(),
                (&ids, list),
            )
            .await?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::CREATED;
        resp.headers_mut()
            .insert(hyper::header::LOCATION, value(&self.location(&up.id)));
        Ok(resp)
    }

    async fn head(&self, id: &UploadId) -> Result<Response<Body>, TusError> {
        let st = self.state(id).await?;
        let mut resp = Response::new(empty());
        let h = resp.headers_mut();
        h.insert("upload-offset", HeaderValue::from(st.offset));
        match st.length {
            Some(l) => h.insert("upload-length", HeaderValue::from(l)),
            None => h.insert("upload-defer-length", HeaderValue::from_static("1")),
        };
        let info = st.upload.append.clone().unwrap_or_default();
        if !info.metadata.is_empty()
            && let Ok(v) = HeaderValue::from_str(&info.metadata)
        {
            h.insert("upload-metadata", v);
        }
        if info.partial {
            h.insert("upload-concat", HeaderValue::from_static("partial"));
        }
        if let Some(list) = &info.concat {
            h.insert("upload-concat", value(&format!("final;{list}")));
        }
        if let (false, Some(at)) = (st.done, st.expires) {
            h.insert("upload-expires", value(&http_date(at)));
        }
        h.insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        Ok(resp)
    }

    async fn patch(&self, id: &UploadId, body: RequestBody) -> Result<Response<Body>, TusError> {
        let h = &self.parts.headers;
        if header(h, "content-type") != Some(OCTETS) {
            return Err(TusError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be {OCTETS}"),
            ));
        }
        let offset =
            number(h, "upload-offset")?.ok_or_else(|| TusError::bad("Upload-Offset required"))?;
        let st = self.state(id).await?;
        let new = self.write(&st, offset, body).await?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let rh = resp.headers_mut();
        rh.insert("upload-offset", HeaderValue::from(new));
        if let Some(at) = st.expires {
            rh.insert("upload-expires", value(&http_date(at)));
        }
        Ok(resp)
    }

    /// Appends the request body at `offset`; returns the new offset.
    async fn write(
        &self,
        st: &AppendState,
        offset: u64,
        body: RequestBody,
    ) -> Result<u64, TusError> {
        let h = &self.parts.headers;
        let checksum = header(h, "upload-checksum")
            .map(parse_checksum)
            .transpose()?;
        let declare = number(h, "upload-length")?;
        let admitted = self.app.uploads.admit(number(h, "content-length")?)?;
        let stream: BodyStream = Box::pin(body.into_data_stream().map_err(BodyError::new));
        let done = self
            .app
            .uploads
            .append(st, offset, stream, checksum, declare, admitted)
            .await?;
        Ok(done.offset)
    }

    async fn delete(&self, id: &UploadId) -> Result<Response<Body>, TusError> {
        let st = self.state(id).await?;
        if st.done {
            return Err(TusError::not_found());
        }
        self.app.uploads.abort(&st.upload).await?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        Ok(resp)
    }
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}
