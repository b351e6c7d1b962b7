//! Calls beyond a resumable transfer's, for `mpgw bench`: bodies from memory (still
//! `UNSIGNED-PAYLOAD`, so nothing is hashed for the signature), CreateBucket, a whole-object
//! GetObject and DeleteObject, PutBucketNotificationConfiguration.
//! A child module of `s3`, so it shares that module's private request funnel.

use base64::Engine as _;
use bytes::Bytes;
use hyper::Method;

use super::{Payload, S3Client, SHORT, etag_header, malformed, transfer_timeout};
use crate::client::http;
use crate::client::{Error, Result};

impl S3Client {
    /// CreateBucket; a bucket that already exists (and is ours) is fine.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let r = self
            .call(
                Method::PUT,
                bucket,
                "",
                &[],
                vec![("content-length", "0".into())],
                Payload::Empty,
                SHORT,
            )
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(Error::Service { code, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// PutBucketNotificationConfiguration with `xml` as the document.
    pub async fn put_bucket_notification(&self, bucket: &str, xml: String) -> Result<()> {
        let body = Bytes::from(xml);
        self.call(
            Method::PUT,
            bucket,
            "",
            &[("notification", "")],
            vec![("content-length", body.len().to_string())],
            Payload::Bytes(body),
            SHORT,
        )
        .await
        .map(drop)
    }

    /// UploadPart with a body from memory; returns the part's ETag (bare).
    pub async fn upload_part_bytes(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        n: u32,
        data: Bytes,
        md5: Option<[u8; 16]>,
    ) -> Result<String> {
        let headers = body_headers(data.len(), md5);
        let query = [
            ("partNumber", n.to_string()),
            ("uploadId", upload_id.to_owned()),
        ];
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let len = data.len() as u64;
        let resp = self
            .call(
                Method::PUT,
                bucket,
                key,
                &query,
                headers,
                Payload::Streamed(http::full(data)),
                transfer_timeout(len),
            )
            .await?;
        etag_header(&resp).ok_or_else(|| malformed("UploadPart", "no ETag"))
    }

    /// PutObject with a body from memory; returns the ETag (bare).
    pub async fn put_object_bytes(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        md5: Option<[u8; 16]>,
    ) -> Result<String> {
        let headers = body_headers(data.len(), md5);
        let len = data.len() as u64;
        let resp = self
            .call(
                Method::PUT,
                bucket,
                key,
                &[],
                headers,
                Payload::Streamed(http::full(data)),
                transfer_timeout(len),
            )
            .await?;
        etag_header(&resp).ok_or_else(|| malformed("PutObject", "no ETag"))
    }

    /// GetObject of the whole object (no Range); the caller reads the body.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        self.call(Method::GET, bucket, key, &[], vec![], Payload::Empty, SHORT)
            .await
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.call(
            Method::DELETE,
            bucket,
            key,
            &[],
            vec![],
            Payload::Empty,
            SHORT,
        )
        .await
        .map(drop)
    }
}

fn body_headers(len: usize, md5: Option<[u8; 16]>) -> Vec<(&'static str, String)> {
    let mut headers = vec![("content-length", len.to_string())];
    if let Some(md5) = md5 {
        headers.push((
            "content-md5",
            base64::engine::general_purpose::STANDARD.encode(md5),
        ));
    }
    headers
}
