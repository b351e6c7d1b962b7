//! S3 errors on the wire: every failure of the S3 front-end becomes one of these, mapped from the
//! layer errors in exactly one place each, and rendered as `<Error>` XML with the AWS status.

use hyper::StatusCode;

use super::auth::AuthError;
use super::payload::PayloadError;
use crate::upload::Error as UploadError;
use crate::upload::error::chain;

/// Every S3 error code the gateway answers, with its HTTP status: the one place both are
/// written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3ErrorCode {
    AccessDenied,
    AccessForbidden,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BadRequest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    IncompleteBody,
    InsufficientStorage,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidPart,
    InvalidPartOrder,
    InvalidPolicyDocument,
    InvalidRange,
    InvalidRequest,
    InvalidTag,
    KeyTooLongError,
    MalformedACLError,
    MalformedPOSTRequest,
    MalformedXML,
    MaxMessageLengthExceeded,
    MaxPostPreDataLengthExceeded,
    MethodNotAllowed,
    MissingContentLength,
    MissingRequestBodyError,
    NoSuchBucket,
    NoSuchCORSConfiguration,
    NoSuchKey,
    NoSuchLifecycleConfiguration,
    NoSuchUpload,
    NotImplemented,
    NotModified,
    OperationAborted,
    PreconditionFailed,
    QuotaExceeded,
    RequestHeaderSectionTooLarge,
    RequestTimeTooSkewed,
    RequestTimeout,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    SlowDown,
    UnexpectedContent,
    XAmzContentSHA256Mismatch,
}

impl S3ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "AccessDenied",
            Self::AccessForbidden => "AccessForbidden",
            Self::AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            Self::AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            Self::BadDigest => "BadDigest",
            Self::BadRequest => "BadRequest",
            Self::BucketAlreadyExists => "BucketAlreadyExists",
            Self::BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            Self::BucketNotEmpty => "BucketNotEmpty",
            Self::EntityTooLarge => "EntityTooLarge",
            Self::EntityTooSmall => "EntityTooSmall",
            Self::IncompleteBody => "IncompleteBody",
            Self::InsufficientStorage => "InsufficientStorage",
            Self::InternalError => "InternalError",
            Self::InvalidAccessKeyId => "InvalidAccessKeyId",
            Self::InvalidArgument => "InvalidArgument",
            Self::InvalidBucketName => "InvalidBucketName",
            Self::InvalidDigest => "InvalidDigest",
            Self::InvalidPart => "InvalidPart",
            Self::InvalidPartOrder => "InvalidPartOrder",
            Self::InvalidPolicyDocument => "InvalidPolicyDocument",
            Self::InvalidRange => "InvalidRange",
            Self::InvalidRequest => "InvalidRequest",
            Self::InvalidTag => "InvalidTag",
            Self::KeyTooLongError => "KeyTooLongError",
            Self::MalformedACLError => "MalformedACLError",
            Self::MalformedPOSTRequest => "MalformedPOSTRequest",
            Self::MalformedXML => "MalformedXML",
            Self::MaxMessageLengthExceeded => "MaxMessageLengthExceeded",
            Self::MaxPostPreDataLengthExceeded => "MaxPostPreDataLengthExceeded",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::MissingContentLength => "MissingContentLength",
            Self::MissingRequestBodyError => "MissingRequestBodyError",
            Self::NoSuchBucket => "NoSuchBucket",
            Self::NoSuchCORSConfiguration => "NoSuchCORSConfiguration",
            Self::NoSuchKey => "NoSuchKey",
            Self::NoSuchLifecycleConfiguration => "NoSuchLifecycleConfiguration",
            Self::NoSuchUpload => "NoSuchUpload",
            Self::NotImplemented => "NotImplemented",
            Self::NotModified => "NotModified",
            Self::OperationAborted => "OperationAborted",
            Self::PreconditionFailed => "PreconditionFailed",
            Self::QuotaExceeded => "QuotaExceeded",
            Self::RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            Self::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Self::RequestTimeout => "RequestTimeout",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::SlowDown => "SlowDown",
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::UnexpectedContent => "UnexpectedContent",
            Self::XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::AuthorizationHeaderMalformed
            | Self::AuthorizationQueryParametersError
            | Self::BadDigest
            | Self::BadRequest
            | Self::EntityTooLarge
            | Self::EntityTooSmall
            | Self::IncompleteBody
            | Self::InvalidArgument
            | Self::InvalidBucketName
            | Self::InvalidDigest
            | Self::InvalidPart
            | Self::InvalidPartOrder
            | Self::InvalidPolicyDocument
            | Self::InvalidRequest
            | Self::InvalidTag
            | Self::KeyTooLongError
            | Self::MalformedACLError
            | Self::MalformedPOSTRequest
            | Self::MalformedXML
            | Self::MaxMessageLengthExceeded
            | Self::MaxPostPreDataLengthExceeded
            | Self::MissingRequestBodyError
            | Self::RequestHeaderSectionTooLarge
            | Self::RequestTimeout
            | Self::UnexpectedContent
            | Self::XAmzContentSHA256Mismatch => StatusCode::BAD_REQUEST,
            Self::BucketAlreadyExists
            | Self::BucketAlreadyOwnedByYou
            | Self::BucketNotEmpty
            | Self::OperationAborted => StatusCode::CONFLICT,
            Self::AccessDenied
            | Self::AccessForbidden
            | Self::InvalidAccessKeyId
            | Self::QuotaExceeded
            | Self::RequestTimeTooSkewed
            | Self::SignatureDoesNotMatch => StatusCode::FORBIDDEN,
            Self::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::MissingContentLength => StatusCode::LENGTH_REQUIRED,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NoSuchBucket
            | Self::NoSuchCORSConfiguration
            | Self::NoSuchKey
            | Self::NoSuchLifecycleConfiguration
            | Self::NoSuchUpload => StatusCode::NOT_FOUND,
            Self::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::NotModified => StatusCode::NOT_MODIFIED,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::ServiceUnavailable | Self::SlowDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Debug)]
pub struct S3Error {
    pub code: &'static str,
    pub status: StatusCode,
    pub message: String,
    /// Extra headers (e.g. `Retry-After`, `Content-Range` on 416).
    pub headers: Vec<(&'static str, String)>,
    /// Extra elements of the `<Error>` document (e.g. `HeadersNotSigned`).
    pub details: Vec<(&'static str, String)>,
    /// What went wrong inside, for the log only (clients see the code and message).
    pub cause: Option<String>,
}

impl S3Error {
    pub fn new(code: S3ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.as_str(),
            status: code.status(),
            message: message.into(),
            headers: Vec::new(),
            details: Vec::new(),
            cause: None,
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(S3ErrorCode::InvalidArgument, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(S3ErrorCode::InvalidRequest, message)
    }

    pub fn not_implemented(what: impl Into<String>) -> Self {
        Self::new(S3ErrorCode::NotImplemented, what)
    }

    pub fn malformed_xml() -> Self {
        Self::new(
            S3ErrorCode::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema",
        )
    }

    /// 416 for a range (or copy range) that starts beyond the object's `size` bytes.
    pub fn invalid_range(size: u64) -> Self {
        let mut e = Self::new(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        );
        e.headers.push(("content-range", format!("bytes */{size}")));
        e
    }

    pub fn internal() -> Self {
        Self::new(
            S3ErrorCode::InternalError,
            "We encountered an internal error. Please try again.",
        )
    }

    fn unavailable() -> Self {
        let mut e = Self::new(
            S3ErrorCode::ServiceUnavailable,
            "Please reduce your request rate.",
        );
        e.headers.push(("retry-after", "1".into()));
        e
    }

    pub fn is_server_error(&self) -> bool {
        self.status.is_server_error()
    }
}

impl From<UploadError> for S3Error {
    fn from(e: UploadError) -> Self {
        let msg = e.to_string();
        let code = match e {
            UploadError::NoSuchBucket => S3ErrorCode::NoSuchBucket,
            UploadError::NoSuchKey => S3ErrorCode::NoSuchKey,
            UploadError::NoSuchUpload => S3ErrorCode::NoSuchUpload,
            UploadError::BucketAlreadyOwnedByYou => S3ErrorCode::BucketAlreadyOwnedByYou,
            UploadError::BucketAlreadyExists => S3ErrorCode::BucketAlreadyExists,
            UploadError::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
            UploadError::InvalidBucketName => S3ErrorCode::InvalidBucketName,
            UploadError::KeyTooLong => S3ErrorCode::KeyTooLongError,
            UploadError::InvalidPart(_) => S3ErrorCode::InvalidPart,
            UploadError::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
            UploadError::EntityTooSmall => S3ErrorCode::EntityTooSmall,
            UploadError::EntityTooLarge | UploadError::FileTooLarge { .. } => {
                S3ErrorCode::EntityTooLarge
            }
            UploadError::ChunksMissing(_) => S3ErrorCode::InvalidPart,
            UploadError::BadDigest(_) => S3ErrorCode::BadDigest,
            UploadError::IncompleteBody => S3ErrorCode::IncompleteBody,
            UploadError::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
            UploadError::InvalidRequest(_) => S3ErrorCode::InvalidRequest,
            UploadError::EmptyPartList => S3ErrorCode::MalformedXML,
            UploadError::PreconditionFailed => S3ErrorCode::PreconditionFailed,
            UploadError::OffsetMismatch(_) => S3ErrorCode::InvalidRequest,
            UploadError::UploadExpired => S3ErrorCode::NoSuchUpload,
            UploadError::AccessDenied => S3ErrorCode::AccessDenied,
            // AWS has no per-key upload cap. Ceph RGW answers quota breaches with 403
            // QuotaExceeded, which SDKs do not retry: right for a limit that lasts until the
            // caller completes or aborts an upload (503 SlowDown would be retried in vain).
            UploadError::TooManyUploads(_) => S3ErrorCode::QuotaExceeded,
            UploadError::OperationAborted => S3ErrorCode::OperationAborted,
            UploadError::Body(b) => return body_error(&b),
            UploadError::Unavailable(_) => return Self::unavailable(),
            // A bucket's event outbox is full: S3's answer to "too much at once", which SDKs
            // retry with back-off.
            UploadError::SlowDown => {
                let mut e = Self::new(S3ErrorCode::SlowDown, msg);
                e.headers.push(("retry-after", "1".into()));
                return e;
            }
            // The client sees the code only: the cause goes to the request's log line.
            UploadError::InsufficientStorage(_) => {
                let mut s = Self::new(S3ErrorCode::InsufficientStorage, msg);
                s.cause = Some(chain(&e));
                return s;
            }
            // Unavailable and BucketGone never arrive here: `From<StoreError>` maps them.
            UploadError::Store(_) | UploadError::Io(_) => {
                let mut s = Self::internal();
                s.cause = Some(chain(&e));
                return s;
            }
        };
        Self::new(code, msg)
    }
}

/// A body stream error: ours (from `payload`) carries its S3 meaning; anything else means the
/// client went away mid-body.
fn body_error(b: &crate::upload::BodyError) -> S3Error {
    if let Some(l) = b.0.downcast_ref::<LengthError>() {
        return l.clone().into();
    }
    match b.0.downcast_ref::<PayloadError>() {
        Some(p) => p.clone().into(),
        None => UploadError::IncompleteBody.into(),
    }
}

impl From<PayloadError> for S3Error {
    fn from(e: PayloadError) -> Self {
        let msg = e.to_string();
        let code = match e {
            PayloadError::Sha256Mismatch => S3ErrorCode::XAmzContentSHA256Mismatch,
            PayloadError::SignatureDoesNotMatch => S3ErrorCode::SignatureDoesNotMatch,
            PayloadError::IncompleteBody | PayloadError::Transport(_) => {
                S3ErrorCode::IncompleteBody
            }
            PayloadError::RequestTimeout => S3ErrorCode::RequestTimeout,
            PayloadError::Malformed(_) => S3ErrorCode::IncompleteBody,
            PayloadError::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
            PayloadError::InvalidRequest(_) => S3ErrorCode::InvalidRequest,
            PayloadError::MissingContentLength => S3ErrorCode::MissingContentLength,
        };
        Self::new(code, msg)
    }
}

impl From<AuthError> for S3Error {
    fn from(e: AuthError) -> Self {
        let msg = e.to_string();
        let code = match e {
            AuthError::HeadersNotSigned(names) => {
                let mut e = Self::new(S3ErrorCode::AccessDenied, msg);
                e.details.push(("HeadersNotSigned", names));
                return e;
            }
            AuthError::AccessDenied(_) => S3ErrorCode::AccessDenied,
            AuthError::InvalidAccessKeyId => S3ErrorCode::InvalidAccessKeyId,
            AuthError::SignatureDoesNotMatch => S3ErrorCode::SignatureDoesNotMatch,
            AuthError::RequestTimeTooSkewed => S3ErrorCode::RequestTimeTooSkewed,
            AuthError::AuthorizationHeaderMalformed(_) => S3ErrorCode::AuthorizationHeaderMalformed,
            AuthError::AuthorizationQueryParametersError(_) => {
                S3ErrorCode::AuthorizationQueryParametersError
            }
            AuthError::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
            AuthError::InvalidRequest(_) => S3ErrorCode::InvalidRequest,
            AuthError::NotImplemented(_) => S3ErrorCode::NotImplemented,
        };
        Self::new(code, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_pinned() {
        let cases: Vec<(UploadError, &str, u16)> = vec![
            (UploadError::NoSuchUpload, "NoSuchUpload", 404),
            (UploadError::InvalidPartOrder, "InvalidPartOrder", 400),
            (UploadError::EntityTooSmall, "EntityTooSmall", 400),
            (UploadError::KeyTooLong, "KeyTooLongError", 400),
            (UploadError::BucketNotEmpty, "BucketNotEmpty", 409),
            (UploadError::AccessDenied, "AccessDenied", 403),
            (UploadError::TooManyUploads(3), "QuotaExceeded", 403),
            (
                UploadError::Unavailable("x".into()),
                "ServiceUnavailable",
                503,
            ),
            (
                UploadError::Io(std::io::Error::other("x")),
                "InternalError",
                500,
            ),
            (
                std::io::Error::from(std::io::ErrorKind::StorageFull).into(),
                "InsufficientStorage",
                507,
            ),
            (
                std::io::Error::from(std::io::ErrorKind::QuotaExceeded).into(),
                "InsufficientStorage",
                507,
            ),
            (
                std::io::Error::from_raw_os_error(5).into(), // EIO
                "InternalError",
                500,
            ),
        ];
        for (e, code, status) in cases {
            let s = S3Error::from(e);
            assert_eq!((s.code, s.status.as_u16()), (code, status));
        }
        let e = S3Error::invalid_range(3);
        assert_eq!((e.code, e.status.as_u16()), ("InvalidRange", 416));
        assert_eq!(e.headers, [("content-range", "bytes */3".to_owned())]);
        let e = S3Error::from(UploadError::Io(std::io::Error::other("disk on fire")));
        assert_eq!(e.cause.as_deref(), Some("disk: disk on fire"));
        let e = S3Error::from(AuthError::SignatureDoesNotMatch);
        assert_eq!((e.code, e.status.as_u16()), ("SignatureDoesNotMatch", 403));
        let e = S3Error::from(PayloadError::MissingContentLength);
        assert_eq!((e.code, e.status.as_u16()), ("MissingContentLength", 411));
    }
}

/// The file's size fell outside the policy's `content-length-range`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LengthError {
    #[error("Your proposed upload exceeds the maximum allowed size")]
    TooLarge,
    #[error("Your proposed upload is smaller than the minimum allowed size")]
    TooSmall,
}

impl From<LengthError> for S3Error {
    fn from(e: LengthError) -> Self {
        let code = match e {
            LengthError::TooLarge => S3ErrorCode::EntityTooLarge,
            LengthError::TooSmall => S3ErrorCode::EntityTooSmall,
        };
        S3Error::new(code, e.to_string())
    }
}
