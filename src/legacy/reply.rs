//! The legacy JSON envelope `{"code": .., "msg": .., "data": ..}` and the one mapping from
//! domain errors to legacy codes. Code 0 is success; every failure has its own stable code and
//! the matching HTTP status.

use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::body::{Body, full};
use crate::upload::Error as UploadError;
use crate::upload::error::chain;

#[derive(Debug)]
pub struct LegacyError {
    pub status: StatusCode,
    pub code: u32,
    pub msg: String,
    pub data: Value,
    /// What went wrong inside, for the log only.
    pub cause: Option<String>,
}

impl LegacyError {
    /// The code as the access log's error field.
    pub fn code_name(&self) -> &'static str {
        const NAMES: [&str; 21] = [
            "10000", "10001", "10002", "10003", "10004", "10005", "10006", "10007", "10008",
            "10009", "10010", "10011", "10012", "10013", "10014", "10015", "10016", "10017",
            "10018", "10019", "10020",
        ];
        self.code
            .checked_sub(10000)
            .and_then(|i| NAMES.get(usize::try_from(i).ok()?))
            .copied()
            .unwrap_or("legacy")
    }

    fn new(status: StatusCode, code: u32, msg: impl Into<String>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
            data: Value::Null,
            cause: None,
        }
    }

    pub fn missing(field: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            10001,
            format!("missing field: {field}"),
        )
    }

    pub fn invalid(field: &str, why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            10002,
            format!("invalid {field}: {why}"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            10003,
            "unknown username or wrong token",
        )
    }

    /// A token in the query string: refused whatever its value (it is never logged either).
    pub fn token_in_url() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            10003,
            "tokens are not accepted in URLs: send Authorization: Bearer TOKEN or a form field",
        )
    }

    pub fn bad_link() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            10020,
            "invalid or expired download link",
        )
    }

    pub fn no_such_upload() -> Self {
        Self::new(StatusCode::NOT_FOUND, 10004, "no such upload for this user")
    }

    pub fn bad_index(index: &str, count: u32) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            10005,
            format!("index {index} is not in 1..={count}"),
        )
    }

    pub fn size_mismatch(expected: u64) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            10006,
            format!("chunk size mismatch: expected {expected} bytes"),
        );
        e.data = json!({ "expected": expected });
        e
    }

    pub fn hash_mismatch(what: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            10007,
            format!("{what} hash mismatch"),
        )
    }

    pub fn chunks_missing(missing: &[u32]) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            10008,
            format!("{} chunk(s) missing", missing.len()),
        );
        e.data = json!({ "missing": missing });
        e
    }

    pub fn too_large(why: String) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, 10009, why)
    }

    pub fn no_such_file() -> Self {
        Self::new(StatusCode::NOT_FOUND, 10010, "no such file for this user")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 10011, "no such endpoint")
    }

    pub fn method() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, 10012, "method not allowed")
    }

    pub fn range(size: u64) -> Self {
        let mut e = Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            10013,
            "range not satisfiable",
        );
        e.data = json!({ "size": size });
        e
    }

    pub fn bad_form(why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            10014,
            format!("malformed request body: {why}"),
        )
    }
}

impl From<UploadError> for LegacyError {
    fn from(e: UploadError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            UploadError::NoSuchUpload | UploadError::UploadExpired => Self::no_such_upload(),
            UploadError::NoSuchKey => Self::no_such_file(),
            UploadError::BadDigest(_) => Self::hash_mismatch("chunk"),
            UploadError::IncompleteBody | UploadError::Body(_) => Self::new(
                S::BAD_REQUEST,
                10006,
                "chunk size mismatch or body cut short",
            ),
            UploadError::EntityTooLarge | UploadError::FileTooLarge { .. } => Self::too_large(msg),
            UploadError::ChunksMissing(missing) => Self::chunks_missing(&missing),
            UploadError::TooManyUploads(_) => Self::new(S::FORBIDDEN, 10019, msg),
            UploadError::OperationAborted => {
                Self::new(S::CONFLICT, 10015, "the upload is being completed; retry")
            }
            UploadError::Unavailable(_) => Self::new(
                S::SERVICE_UNAVAILABLE,
                10016,
                "state store unavailable; retry",
            ),
            UploadError::SlowDown => Self::new(
                S::SERVICE_UNAVAILABLE,
                10016,
                "completion events are backing up; retry later",
            ),
            UploadError::NoSuchBucket
            | UploadError::BucketAlreadyOwnedByYou
            | UploadError::BucketAlreadyExists
            | UploadError::BucketNotEmpty
            | UploadError::InvalidBucketName
            | UploadError::KeyTooLong
            | UploadError::InvalidPart(_)
            | UploadError::InvalidPartOrder
            | UploadError::EntityTooSmall
            | UploadError::InvalidArgument(_)
            | UploadError::InvalidRequest(_)
            | UploadError::EmptyPartList
            | UploadError::OffsetMismatch(_)
            | UploadError::PreconditionFailed
            | UploadError::AccessDenied => Self::new(S::BAD_REQUEST, 10002, msg),
            UploadError::InsufficientStorage(_) => Self {
                cause: Some(chain(&e)),
                ..Self::new(
                    S::INSUFFICIENT_STORAGE,
                    10018,
                    "not enough free space on the gateway's disk for this chunk",
                )
            },
            // Unavailable and BucketGone never arrive here: `From<StoreError>` maps them.
            UploadError::Store(_) | UploadError::Io(_) => Self {
                cause: Some(chain(&e)),
                ..Self::new(S::INTERNAL_SERVER_ERROR, 10017, "internal error")
            },
        }
    }
}

fn envelope(status: StatusCode, code: u32, msg: &str, data: Value) -> Response<Body> {
    let body = json!({ "code": code, "msg": msg, "data": data });
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn ok(data: Value) -> Response<Body> {
    envelope(StatusCode::OK, 0, "OK", data)
}

pub fn error(e: &LegacyError) -> Response<Body> {
    envelope(e.status, e.code, &e.msg, e.data.clone())
}
