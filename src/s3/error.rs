//! S3 errors on the wire: every failure of the S3 front-end becomes one of these, mapped from the
//! layer errors in exactly one place each, and rendered as `<Error>` XML with the AWS status.

use hyper::StatusCode;

use super::auth::AuthError;
use super::payload::PayloadError;
use crate::store::StoreError;
use crate::upload::Error as UploadError;

#[derive(Debug)]
pub struct S3Error {
    pub code: &'static str,
    pub status: StatusCode,
    pub message: String,
    /// Extra headers (e.g. `Retry-After`, `Content-Range` on 416).
    pub headers: Vec<(&'static str, String)>,
    /// Extra elements of the `<Error>` document (e.g. `HeadersNotSigned`).
    pub details: Vec<(&'static str, String)>,
}

impl S3Error {
    pub fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
            headers: Vec::new(),
            details: Vec::new(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new("InvalidArgument", StatusCode::BAD_REQUEST, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new("InvalidRequest", StatusCode::BAD_REQUEST, message)
    }

    pub fn not_implemented(what: impl Into<String>) -> Self {
        Self::new("NotImplemented", StatusCode::NOT_IMPLEMENTED, what)
    }

    pub fn malformed_xml() -> Self {
        UploadError::MalformedXml.into()
    }

    pub fn internal() -> Self {
        Self::new(
            "InternalError",
            StatusCode::INTERNAL_SERVER_ERROR,
            "We encountered an internal error. Please try again.",
        )
    }

    fn unavailable() -> Self {
        let mut e = Self::new(
            "ServiceUnavailable",
            StatusCode::SERVICE_UNAVAILABLE,
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
        use StatusCode as S;
        let msg = e.to_string();
        let (code, status) = match e {
            UploadError::NoSuchBucket => ("NoSuchBucket", S::NOT_FOUND),
            UploadError::NoSuchKey => ("NoSuchKey", S::NOT_FOUND),
            UploadError::NoSuchUpload => ("NoSuchUpload", S::NOT_FOUND),
            UploadError::BucketAlreadyOwnedByYou => ("BucketAlreadyOwnedByYou", S::CONFLICT),
            UploadError::BucketAlreadyExists => ("BucketAlreadyExists", S::CONFLICT),
            UploadError::BucketNotEmpty => ("BucketNotEmpty", S::CONFLICT),
            UploadError::InvalidBucketName => ("InvalidBucketName", S::BAD_REQUEST),
            UploadError::KeyTooLong => ("KeyTooLongError", S::BAD_REQUEST),
            UploadError::InvalidPart(_) => ("InvalidPart", S::BAD_REQUEST),
            UploadError::InvalidPartOrder => ("InvalidPartOrder", S::BAD_REQUEST),
            UploadError::EntityTooSmall => ("EntityTooSmall", S::BAD_REQUEST),
            UploadError::EntityTooLarge => ("EntityTooLarge", S::BAD_REQUEST),
            UploadError::BadDigest(_) => ("BadDigest", S::BAD_REQUEST),
            UploadError::InvalidDigest => ("InvalidDigest", S::BAD_REQUEST),
            UploadError::IncompleteBody => ("IncompleteBody", S::BAD_REQUEST),
            UploadError::InvalidRange { size } => {
                let mut e = Self::new("InvalidRange", S::RANGE_NOT_SATISFIABLE, msg);
                e.headers.push(("content-range", format!("bytes */{size}")));
                return e;
            }
            UploadError::InvalidArgument(_) => ("InvalidArgument", S::BAD_REQUEST),
            UploadError::InvalidRequest(_) => ("InvalidRequest", S::BAD_REQUEST),
            UploadError::MalformedXml => ("MalformedXML", S::BAD_REQUEST),
            UploadError::PreconditionFailed => ("PreconditionFailed", S::PRECONDITION_FAILED),
            UploadError::NotModified => ("NotModified", S::NOT_MODIFIED),
            UploadError::AccessDenied => ("AccessDenied", S::FORBIDDEN),
            // AWS has no per-key upload cap. Ceph RGW answers quota breaches with 403
            // QuotaExceeded, which SDKs do not retry: right for a limit that lasts until the
            // caller completes or aborts an upload (503 SlowDown would be retried in vain).
            UploadError::TooManyUploads(_) => ("QuotaExceeded", S::FORBIDDEN),
            UploadError::OperationAborted => ("OperationAborted", S::CONFLICT),
            UploadError::Body(b) => return body_error(&b),
            UploadError::Store(StoreError::Unavailable(_)) => return Self::unavailable(),
            // The client sees the code only: the cause goes to the log, here, once.
            UploadError::InsufficientStorage(ref cause) => {
                tracing::warn!(%cause, "data disk full or below its reserve");
                ("InsufficientStorage", S::INSUFFICIENT_STORAGE)
            }
            UploadError::Store(
                StoreError::Corrupt(_) | StoreError::Backend(_) | StoreError::Io(_),
            )
            | UploadError::Io(_) => {
                tracing::warn!(error = %msg, "internal error");
                return Self::internal();
            }
        };
        Self::new(code, status, msg)
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
        use StatusCode as S;
        let msg = e.to_string();
        let (code, status) = match e {
            PayloadError::Sha256Mismatch => ("XAmzContentSHA256Mismatch", S::BAD_REQUEST),
            PayloadError::SignatureDoesNotMatch => ("SignatureDoesNotMatch", S::FORBIDDEN),
            PayloadError::IncompleteBody | PayloadError::Transport(_) => {
                ("IncompleteBody", S::BAD_REQUEST)
            }
            PayloadError::RequestTimeout => ("RequestTimeout", S::BAD_REQUEST),
            PayloadError::Malformed(_) => ("IncompleteBody", S::BAD_REQUEST),
            PayloadError::InvalidArgument(_) => ("InvalidArgument", S::BAD_REQUEST),
            PayloadError::InvalidRequest(_) => ("InvalidRequest", S::BAD_REQUEST),
            PayloadError::MissingContentLength => ("MissingContentLength", S::LENGTH_REQUIRED),
        };
        Self::new(code, status, msg)
    }
}

impl From<AuthError> for S3Error {
    fn from(e: AuthError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        let (code, status) = match e {
            AuthError::HeadersNotSigned(names) => {
                let mut e = Self::new("AccessDenied", S::FORBIDDEN, msg);
                e.details.push(("HeadersNotSigned", names));
                return e;
            }
            AuthError::AccessDenied(_) => ("AccessDenied", S::FORBIDDEN),
            AuthError::InvalidAccessKeyId => ("InvalidAccessKeyId", S::FORBIDDEN),
            AuthError::SignatureDoesNotMatch => ("SignatureDoesNotMatch", S::FORBIDDEN),
            AuthError::RequestTimeTooSkewed => ("RequestTimeTooSkewed", S::FORBIDDEN),
            AuthError::AuthorizationHeaderMalformed(_) => {
                ("AuthorizationHeaderMalformed", S::BAD_REQUEST)
            }
            AuthError::AuthorizationQueryParametersError(_) => {
                ("AuthorizationQueryParametersError", S::BAD_REQUEST)
            }
            AuthError::InvalidArgument(_) => ("InvalidArgument", S::BAD_REQUEST),
            AuthError::InvalidRequest(_) => ("InvalidRequest", S::BAD_REQUEST),
            AuthError::NotImplemented(_) => ("NotImplemented", S::NOT_IMPLEMENTED),
        };
        Self::new(code, status, msg)
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
            (UploadError::InvalidRange { size: 3 }, "InvalidRange", 416),
            (
                UploadError::Store(StoreError::Unavailable("x".into())),
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
            LengthError::TooLarge => "EntityTooLarge",
            LengthError::TooSmall => "EntityTooSmall",
        };
        S3Error::new(code, StatusCode::BAD_REQUEST, e.to_string())
    }
}
