//! A small S3 client: the calls a resumable transfer needs, one request each, no retries (the
//! caller decides). Requests are SigV4-signed with aws-sigv4 over `UNSIGNED-PAYLOAD`, so a part
//! streams from disk without being hashed for the signature first; integrity comes from
//! `Content-MD5`, which the server checks before it keeps the part.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use base64::Engine as _;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::http::{self, Body, FileRange, Http, OnChunk, read_body};
use super::settings::S3Settings;
use super::{Error, Result};
use crate::model::Checksum;
use crate::model::checksum::{ChecksumAlgorithm, ChecksumType, normalize_etag};
use crate::xml::{self, Node, Xml};

/// Calls for `mpgw bench` (bodies from memory, CreateBucket, DeleteObject).
#[path = "s3_calls.rs"]
mod calls;

/// RFC 3986 unreserved characters stay, everything else is `%XX`, as SigV4 wants.
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const PATH_SET: &AsciiSet = &QUERY_SET.remove(b'/');

/// For requests without a large body.
const SHORT: Duration = Duration::from_secs(60);
/// Completing a large upload can take AWS minutes.
const COMPLETE: Duration = Duration::from_secs(600);
/// Largest XML answer read (ListParts of 1000 parts is ~150 KB).
const MAX_XML: usize = 16 << 20;

/// Time allowed for a request carrying `len` bytes: a minute plus 64 KiB/s.
pub fn transfer_timeout(len: u64) -> Duration {
    SHORT + Duration::from_secs(len >> 16)
}

/// One part as ListParts reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPart {
    pub number: u32,
    /// Bare lower-case hex (quotes removed).
    pub etag: String,
    pub size: u64,
}

/// HeadObject's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// Bare (quotes removed).
    pub etag: String,
}

/// One part of a stored multipart object, as GetObjectAttributes lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPart {
    pub number: u32,
    pub size: u64,
    pub checksum: Option<Checksum>,
}

/// GetObjectAttributes' answer, its parts paged to the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectLayout {
    pub size: Option<u64>,
    /// Multipart objects only.
    pub parts_count: Option<u32>,
    /// Empty when the server lists none (AWS lists parts only for objects with checksums).
    pub parts: Vec<StoredPart>,
    /// The whole-object checksum (a COMPOSITE one without its `-N`).
    pub checksum: Option<(Checksum, Option<ChecksumType>)>,
}

#[derive(Clone, Debug)]
pub struct S3Client {
    http: Http,
    settings: S3Settings,
    credentials: aws_credential_types::Credentials,
}

impl S3Client {
    /// `connections`: idle connections kept for reuse (one per parallel job).
    pub fn new(settings: S3Settings, connections: usize) -> Result<Self> {
        let credentials = aws_credential_types::Credentials::new(
            &settings.access_key,
            &settings.secret_key,
            settings.session_token.clone(),
            None,
            "mpgw",
        );
        Ok(Self {
            http: Http::new(connections)?,
            settings,
            credentials,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.settings.endpoint
    }

    pub async fn create_multipart_upload(&self, bucket: &str, key: &str) -> Result<String> {
        let resp = self
            .call(
                Method::POST,
                bucket,
                key,
                &[("uploads", "")],
                vec![],
                Payload::Empty,
                SHORT,
            )
            .await?;
        let root = xml_body(resp, "CreateMultipartUpload").await?;
        root.child_text("UploadId")
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| malformed("CreateMultipartUpload", "no UploadId"))
    }

    /// Sends part `n` from `range`; returns the part's ETag (bare). With `md5`, the server
    /// refuses a part that arrives damaged (`BadDigest`).
    #[allow(clippy::too_many_arguments)] // UploadPart's own parameters, plus progress
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        n: u32,
        range: &FileRange,
        md5: Option<[u8; 16]>,
        on_chunk: Option<OnChunk>,
    ) -> Result<String> {
        let mut headers = vec![("content-length", range.len.to_string())];
        if let Some(md5) = md5 {
            headers.push((
                "content-md5",
                base64::engine::general_purpose::STANDARD.encode(md5),
            ));
        }
        let body = range.body(Bytes::new(), Bytes::new(), on_chunk).await?;
        let query = [
            ("partNumber", n.to_string()),
            ("uploadId", upload_id.to_owned()),
        ];
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = self
            .call(
                Method::PUT,
                bucket,
                key,
                &query,
                headers,
                Payload::Streamed(body),
                transfer_timeout(range.len),
            )
            .await?;
        etag_header(&resp).ok_or_else(|| malformed("UploadPart", "no ETag"))
    }

    /// PutObject of a whole file range (for small objects and benchmarks).
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        range: &FileRange,
        on_chunk: Option<OnChunk>,
    ) -> Result<String> {
        let headers = vec![("content-length", range.len.to_string())];
        let body = range.body(Bytes::new(), Bytes::new(), on_chunk).await?;
        let resp = self
            .call(
                Method::PUT,
                bucket,
                key,
                &[],
                headers,
                Payload::Streamed(body),
                transfer_timeout(range.len),
            )
            .await?;
        etag_header(&resp).ok_or_else(|| malformed("PutObject", "no ETag"))
    }

    /// Every part of an upload, following `part-number-marker` across pages of 1000.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<ListedPart>> {
        let mut parts = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![("uploadId", upload_id), ("max-parts", "1000")];
            if !marker.is_empty() {
                query.push(("part-number-marker", &marker));
            }
            let resp = self
                .call(
                    Method::GET,
                    bucket,
                    key,
                    &query,
                    vec![],
                    Payload::Empty,
                    SHORT,
                )
                .await?;
            let root = xml_body(resp, "ListParts").await?;
            for p in root.children_named("Part") {
                let field = |name| p.child_text(name).map(str::trim);
                let part = (|| {
                    Some(ListedPart {
                        number: field("PartNumber")?.parse().ok()?,
                        etag: normalize_etag(field("ETag")?),
                        size: field("Size")?.parse().ok()?,
                    })
                })();
                parts.push(part.ok_or_else(|| {
                    malformed("ListParts", "a Part without number, ETag or size")
                })?);
            }
            let truncated = root
                .child_text("IsTruncated")
                .is_some_and(|t| t.trim() == "true");
            let next = root
                .child_text("NextPartNumberMarker")
                .unwrap_or_default()
                .trim();
            if !truncated {
                return Ok(parts);
            }
            if next.is_empty() || next == marker {
                return Err(malformed(
                    "ListParts",
                    "truncated without a new NextPartNumberMarker",
                ));
            }
            marker = next.to_owned();
        }
    }

    /// Completes with `parts` (number, bare ETag), in order; returns the object's ETag (bare).
    pub async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<String> {
        let mut doc = Xml::new("CompleteMultipartUpload");
        for (n, etag) in parts {
            doc.open("Part")
                .elem("PartNumber", n.to_string())
                .elem("ETag", format!("\"{etag}\""))
                .close("Part");
        }
        let body = Bytes::from(doc.finish("CompleteMultipartUpload"));
        let headers = vec![("content-length", body.len().to_string())];
        let resp = self
            .call(
                Method::POST,
                bucket,
                key,
                &[("uploadId", upload_id)],
                headers,
                Payload::Bytes(body),
                COMPLETE,
            )
            .await?;
        // S3 may answer 200 and still fail: the error then is the body.
        let root = xml_body(resp, "CompleteMultipartUpload").await?;
        root.child_text("ETag")
            .map(normalize_etag)
            .ok_or_else(|| malformed("CompleteMultipartUpload", "no ETag"))
    }

    pub async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<()> {
        self.call(
            Method::DELETE,
            bucket,
            key,
            &[("uploadId", upload_id)],
            vec![],
            Payload::Empty,
            SHORT,
        )
        .await
        .map(drop)
    }

    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        let resp = self
            .call(
                Method::HEAD,
                bucket,
                key,
                &[],
                vec![],
                Payload::Empty,
                SHORT,
            )
            .await?;
        let size = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| malformed("HeadObject", "no Content-Length"))?;
        let etag = etag_header(&resp).ok_or_else(|| malformed("HeadObject", "no ETag"))?;
        Ok(ObjectInfo { size, etag })
    }

    /// GetObjectAttributes of the object whose ETag is `if_match` (bare): its size, checksum and
    /// parts. `None` when the server does not offer it (501, or another refusal than 404 and 412:
    /// an older server, a policy allowing GetObject only, or one that ignores `?attributes`).
    pub async fn get_object_attributes(
        &self,
        bucket: &str,
        key: &str,
        if_match: &str,
    ) -> Result<Option<ObjectLayout>> {
        const OP: &str = "GetObjectAttributes";
        let mut layout = ObjectLayout::default();
        let mut marker = String::from("0");
        loop {
            let headers = vec![
                (
                    "x-amz-object-attributes",
                    "ETag,Checksum,ObjectParts,ObjectSize".to_owned(),
                ),
                ("x-amz-max-parts", "1000".to_owned()),
                ("x-amz-part-number-marker", marker.clone()),
                ("if-match", format!("\"{if_match}\"")),
            ];
            let resp = match self
                .call(
                    Method::GET,
                    bucket,
                    key,
                    &[("attributes", "")],
                    headers,
                    Payload::Empty,
                    SHORT,
                )
                .await
            {
                Ok(resp) => resp,
                Err(Error::Service { status, .. })
                    if status == 501
                        || (400..500).contains(&status) && status != 404 && status != 412 =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let xml = resp
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.contains("xml"));
            if !xml {
                return Ok(None);
            }
            let root = xml_body(resp, OP).await?;
            if root.name != "GetObjectAttributesResponse" {
                return Ok(None);
            }
            fn number<T: std::str::FromStr>(n: &Node, name: &str) -> Option<T> {
                n.child_text(name).and_then(|t| t.trim().parse().ok())
            }
            if marker == "0" {
                layout.size = number(&root, "ObjectSize");
                layout.checksum = root.child("Checksum").and_then(|c| {
                    let sum = checksum_in(c)?;
                    let typ = c.child_text("ChecksumType").and_then(ChecksumType::parse);
                    Some((sum, typ))
                });
            }
            let Some(op) = root.child("ObjectParts") else {
                return Ok(Some(layout));
            };
            layout.parts_count = number(op, "PartsCount");
            for p in op.children_named("Part") {
                let part = (|| {
                    Some(StoredPart {
                        number: number(p, "PartNumber")?,
                        size: number(p, "Size")?,
                        checksum: checksum_in(p),
                    })
                })();
                layout
                    .parts
                    .push(part.ok_or_else(|| malformed(OP, "a Part without number or size"))?);
            }
            let truncated = op
                .child_text("IsTruncated")
                .is_some_and(|t| t.trim() == "true");
            let next = op
                .child_text("NextPartNumberMarker")
                .unwrap_or_default()
                .trim();
            if !truncated {
                return Ok(Some(layout));
            }
            if next.is_empty() || next == marker {
                return Err(malformed(
                    OP,
                    "truncated without a new NextPartNumberMarker",
                ));
            }
            next.clone_into(&mut marker);
        }
    }

    /// GetObject of `range` (non-empty); `if_match` (a bare ETag) makes a changed object fail
    /// with 412 `PreconditionFailed`. The caller reads the body.
    pub async fn get_object_range(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Response<Incoming>> {
        let mut headers = vec![("range", format!("bytes={}-{}", range.start, range.end - 1))];
        if let Some(etag) = if_match {
            headers.push(("if-match", format!("\"{etag}\"")));
        }
        // The head must come within a minute; the caller times the body.
        self.call(
            Method::GET,
            bucket,
            key,
            &[],
            headers,
            Payload::Empty,
            SHORT,
        )
        .await
    }

    /// The URL of an object (with query), and its host.
    fn url(&self, bucket: &str, key: &str, query: &[(&str, &str)]) -> Result<(String, String)> {
        let endpoint: hyper::Uri = self
            .settings
            .endpoint
            .parse()
            .map_err(|e| Error::Usage(format!("endpoint {}: {e}", self.settings.endpoint)))?;
        let scheme = endpoint.scheme_str().unwrap_or("https");
        let authority = endpoint.authority().map(|a| a.as_str()).unwrap_or_default();
        let base = endpoint.path().trim_end_matches('/');
        let key = utf8_percent_encode(key, PATH_SET);
        let virtual_host = self.settings.virtual_host
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let (host, path) = if virtual_host {
            (format!("{bucket}.{authority}"), format!("{base}/{key}"))
        } else {
            (authority.to_owned(), format!("{base}/{bucket}/{key}"))
        };
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| match *v {
                "" => (*k).to_owned(),
                v => format!("{k}={}", utf8_percent_encode(v, QUERY_SET)),
            })
            .collect();
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        Ok((format!("{scheme}://{host}{path}{q}"), host))
    }

    /// Signs and sends one request; a non-2xx answer becomes `Error::Service`.
    #[allow(clippy::too_many_arguments)] // one private funnel for every call
    async fn call(
        &self,
        method: Method,
        bucket: &str,
        key: &str,
        query: &[(&str, &str)],
        mut headers: Vec<(&'static str, String)>,
        payload: Payload,
        timeout: Duration,
    ) -> Result<Response<Incoming>> {
        let (url, host) = self.url(bucket, key, query)?;
        headers.push(("host", host));
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let identity = self.credentials.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.settings.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Error::Usage(format!("signing: {e}")))?
            .into();
        let signable_body = match &payload {
            Payload::Bytes(b) => SignableBody::Bytes(b),
            Payload::Empty => SignableBody::Bytes(&[]),
            Payload::Streamed(_) => SignableBody::UnsignedPayload,
        };
        let signable = SignableRequest::new(
            method.as_str(),
            &url,
            headers.iter().map(|(n, v)| (*n, v.as_str())),
            signable_body,
        )
        .map_err(|e| Error::Usage(format!("signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Error::Usage(format!("signing: {e}")))?
            .into_parts();
        let mut req = Request::builder().method(method).uri(&url);
        for (n, v) in &headers {
            req = req.header(*n, v);
        }
        for h in instructions.into_parts().0 {
            req = req.header(h.name(), h.value());
        }
        let body = match payload {
            Payload::Empty => http::empty(),
            Payload::Bytes(b) => http::full(b),
            Payload::Streamed(b) => b,
        };
        let req = req
            .body(body)
            .map_err(|e| Error::Usage(format!("request: {e}")))?;
        let resp = self.http.send(req, timeout).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(service_error(resp).await)
        }
    }
}

enum Payload {
    Empty,
    Bytes(Bytes),
    Streamed(Body),
}

fn etag_header(resp: &Response<Incoming>) -> Option<String> {
    let v = resp.headers().get(hyper::header::ETAG)?.to_str().ok()?;
    Some(normalize_etag(v)).filter(|e| !e.is_empty())
}

/// The first `Checksum<ALG>` element of `node` with a well-formed value (a `-N` suffix dropped).
fn checksum_in(node: &Node) -> Option<Checksum> {
    ChecksumAlgorithm::ALL.into_iter().find_map(|algorithm| {
        let text = node.child_text(algorithm.xml_name())?;
        let b64 = text.trim().split('-').next().unwrap_or_default();
        Some(Checksum {
            algorithm,
            value: algorithm.decode(b64)?,
        })
    })
}

fn malformed(op: &str, why: &str) -> Error {
    Error::Integrity(format!("unexpected answer to {op}: {why}"))
}

/// The XML document of a 2xx answer; an `<Error>` document (S3 sends those with 200 for a
/// Complete that failed late) becomes `Error::Service`.
async fn xml_body(resp: Response<Incoming>, op: &str) -> Result<Node> {
    let status = resp.status().as_u16();
    let body = read_body(resp.into_body(), MAX_XML, SHORT).await?;
    let root = xml::parse(&body).map_err(|_| malformed(op, "not XML"))?;
    if root.name == "Error" {
        let text = |n| root.child_text(n).unwrap_or_default().to_owned();
        // A late failure is reported with 200; treat InternalError and friends as the 5xx they are.
        let code = text("Code");
        let status = if matches!(
            code.as_str(),
            "InternalError" | "SlowDown" | "ServiceUnavailable"
        ) {
            503
        } else {
            status
        };
        return Err(Error::Service {
            status,
            code,
            message: text("Message"),
        });
    }
    Ok(root)
}

async fn service_error(resp: Response<Incoming>) -> Error {
    let status = resp.status();
    let body = read_body(resp.into_body(), 1 << 20, SHORT)
        .await
        .unwrap_or_default();
    let root = xml::parse(&body).ok().filter(|r| r.name == "Error");
    let text = |n| {
        root.as_ref()
            .and_then(|r| r.child_text(n))
            .map(str::to_owned)
    };
    // HEAD answers have no body: name the code after the status, as the SDKs do.
    let code = text("Code").unwrap_or_else(|| match status.as_u16() {
        404 => "NotFound".into(),
        412 => "PreconditionFailed".into(),
        s => status
            .canonical_reason()
            .map_or_else(|| s.to_string(), |r| r.replace(' ', "")),
    });
    Error::Service {
        status: status.as_u16(),
        message: text("Message").unwrap_or_default(),
        code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str, virtual_host: bool) -> S3Client {
        let settings = S3Settings {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            access_key: "AK".into(),
            secret_key: "SK".into(),
            session_token: None,
            virtual_host,
        };
        S3Client::new(settings, 1).unwrap()
    }

    #[tokio::test]
    async fn urls() {
        let c = client("http://127.0.0.1:9000", false);
        let (url, host) = c
            .url(
                "b",
                "dir/a b+ü.bin",
                &[("uploadId", "x/y="), ("uploads", "")],
            )
            .unwrap();
        assert_eq!(
            url,
            "http://127.0.0.1:9000/b/dir/a%20b%2B%C3%BC.bin?uploadId=x%2Fy%3D&uploads"
        );
        assert_eq!(host, "127.0.0.1:9000");
        let c = client("https://s3.eu-west-1.amazonaws.com", true);
        let (url, host) = c.url("my-bucket", "k", &[]).unwrap();
        assert_eq!(url, "https://my-bucket.s3.eu-west-1.amazonaws.com/k");
        assert_eq!(host, "my-bucket.s3.eu-west-1.amazonaws.com");
        // Dotted names break TLS wildcard certificates: path style.
        let (url, _) = c.url("my.bucket", "k", &[]).unwrap();
        assert_eq!(url, "https://s3.eu-west-1.amazonaws.com/my.bucket/k");
    }
}
