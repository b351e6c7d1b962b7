//! The tus phase of `mpgw bench` (with `--tus-token`): the same object size sent through
//! `/_tus/` in PATCHes of the part size, as one stream and as `jobs` partial uploads joined by a
//! final concatenation (what tus-js-client's `parallelUploads` does), next to the S3 uploads.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::try_join_all;
use hyper::{Method, Request, StatusCode};

use super::report::{human, throughput};
use super::{Bench, err};
use crate::client::http::{Http, empty, full};

const TIMEOUT: Duration = Duration::from_secs(600);

struct Tus<'a> {
    http: Http,
    endpoint: &'a str,
    token: &'a str,
}

impl Tus<'_> {
    fn request(&self, method: Method, url: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(url)
            .header("tus-resumable", "1.0.0")
            .header("authorization", format!("Bearer {}", self.token))
    }

    /// Creates an upload of `len` bytes; returns its URL.
    async fn create(&self, headers: &[(&str, String)]) -> Result<String, String> {
        let mut req = self.request(Method::POST, &format!("{}/_tus/", self.endpoint));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = self
            .http
            .send(req.body(empty()).map_err(err)?, TIMEOUT)
            .await
            .map_err(err)?;
        if resp.status() != StatusCode::CREATED {
            return Err(format!("tus create: {}", resp.status()));
        }
        resp.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| "tus create: no Location".to_owned())
    }

    /// Sends `len` bytes to `url` in PATCHes of `buf.len()`.
    async fn send_all(&self, url: &str, len: u64, buf: &Bytes) -> Result<(), String> {
        let mut offset = 0u64;
        while offset < len {
            let n = (len - offset).min(buf.len() as u64);
            let req = self
                .request(Method::PATCH, url)
                .header("content-type", "application/offset+octet-stream")
                .header("upload-offset", offset.to_string())
                .body(full(buf.slice(..n as usize)))
                .map_err(err)?;
            let resp = self.http.send(req, TIMEOUT).await.map_err(err)?;
            if resp.status() != StatusCode::NO_CONTENT {
                return Err(format!("tus PATCH at {offset}: {}", resp.status()));
            }
            offset += n;
        }
        Ok(())
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Bench<'_> {
    /// tus uploads of the object size, one stream and four.
    pub(super) async fn tus_uploads(&mut self, token: &str) -> Result<(), String> {
        let (size, part_size) = (self.size, self.part_size);
        let buf = super::machine::random(part_size as usize);
        let endpoint = self.c.endpoint().trim_end_matches('/').to_owned();
        let tus = Tus {
            http: Http::new(4).map_err(err)?,
            endpoint: &endpoint,
            token,
        };
        for jobs in [1u64, 4] {
            eprintln!(
                "mpgw bench: tus upload {} in PATCHes of {}, {jobs} stream(s)",
                human(size),
                human(part_size)
            );
            let name = format!("bench-tus-{jobs}.bin");
            let meta = format!("filename {}", b64(&name));
            let t = Instant::now();
            if jobs == 1 {
                let url = tus
                    .create(&[
                        ("upload-length", size.to_string()),
                        ("upload-metadata", meta),
                    ])
                    .await?;
                tus.send_all(&url, size, &buf).await?;
            } else {
                let share = size.div_ceil(jobs);
                let lens: Vec<u64> = (0..jobs)
                    .map(|i| share.min(size - (i * share).min(size)))
                    .collect();
                let urls = try_join_all(lens.iter().map(|&len| {
                    let (tus, buf) = (&tus, &buf);
                    async move {
                        let url = tus
                            .create(&[
                                ("upload-length", len.to_string()),
                                ("upload-concat", "partial".into()),
                            ])
                            .await?;
                        tus.send_all(&url, len, buf).await?;
                        Ok::<_, String>(url)
                    }
                }))
                .await?;
                tus.create(&[
                    ("upload-concat", format!("final;{}", urls.join(" "))),
                    ("upload-metadata", meta),
                ])
                .await?;
            }
            let (bn, bv) = self.upload_bound(jobs as usize);
            self.m.push(throughput(
                &format!("tus_c{jobs}"),
                &format!(
                    "tus upload, {} in PATCHes of {}, {jobs} stream(s)",
                    human(size),
                    human(part_size)
                ),
                size,
                t.elapsed(),
                Some((bn, bv)),
            ));
        }
        Ok(())
    }
}
