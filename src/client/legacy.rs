//! `mpgw upload --legacy FILE [NAME]`: the same resumable upload over the design note's API,
//! `/file/mpupload/{init,uppart,complete}` (form fields, `{code, msg, data}` replies).
//!
//! The server finds a resumable upload by the file's SHA-256 (`filehash`) and says in `init`'s
//! answer which chunks it has (`ChunksPresent`) and the chunk size, with a challenge: byte
//! ranges of the file to prove it is held. The proof (`instant`) links content the server
//! already stores at once (`Instant: true`); otherwise the chunks are sent. The journal only
//! spares re-hashing an unchanged file. Chunks go as multipart/form-data, fields first and the
//! bytes in `file`, with `chunkhash=md5:<hex>` so the server refuses a damaged one; `complete`
//! checks the whole file's SHA-256 on the server side. The token travels in
//! `Authorization: Bearer`, never in a URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use hyper::{Method, Request};
use serde_json::Value;

use super::http::{self, FileRange, Http, OnChunk, read_body};
use super::journal::{self, FileIdentity, LegacyJournal};
use super::progress::Progress;
use super::s3::transfer_timeout;
use super::{Error, Plan, Result, retry};
use crate::client::args::UploadArgs;

const SHORT: Duration = Duration::from_secs(60);
/// Legacy code for "no such upload for this user".
const NO_SUCH_UPLOAD: &str = "10004";

/// A client of `/file/mpupload/*` for one user.
#[derive(Clone, Debug)]
pub struct LegacyClient {
    http: Http,
    endpoint: String,
    username: String,
    token: String,
}

/// `init`'s (or `instant`'s) answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Init {
    /// Absent when `instant`.
    pub upload_id: Option<String>,
    pub chunk_size: u64,
    pub chunk_count: u32,
    pub present: Vec<u32>,
    /// The content was stored already and the proof held: the file exists now.
    pub instant: bool,
    /// What to prove to get the stored content linked at once (`instant`).
    pub challenge: Option<Challenge>,
}

/// init's challenge: hash the nonce and these `[start, end)` ranges of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: String,
    pub ranges: Vec<(u64, u64)>,
}

/// A signed download link (`/file/link`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Absolute URL.
    pub url: String,
    /// Unix time in seconds.
    pub expires: u64,
    pub size: u64,
    pub etag: String,
}

impl LegacyClient {
    pub fn new(endpoint: &str, username: &str, token: &str, connections: usize) -> Result<Self> {
        Ok(Self {
            http: Http::new(connections)?,
            endpoint: super::settings::check_endpoint(endpoint)?,
            username: username.to_owned(),
            token: token.to_owned(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub async fn init(&self, filehash: &str, filesize: u64, filename: &str) -> Result<Init> {
        let size = filesize.to_string();
        let data = self
            .post(
                "mpupload/init",
                &[
                    ("filehash", filehash),
                    ("filesize", &size),
                    ("filename", filename),
                ],
            )
            .await?;
        parse_init("init", &data)
    }

    /// Answers init's challenge with `proof`: the file is then stored at once (`instant`), or
    /// the answer is init's again (send the chunks).
    pub async fn instant(&self, upload_id: &str, nonce: &str, proof: &str) -> Result<Init> {
        let fields = [("uploadid", upload_id), ("nonce", nonce), ("proof", proof)];
        let data = self.post("mpupload/instant", &fields).await?;
        parse_init("instant", &data)
    }

    /// A signed link to download `filename`, valid for `ttl` seconds (the server's default when
    /// None).
    pub async fn link(&self, filename: &str, ttl: Option<u64>) -> Result<Link> {
        let ttl = ttl.map(|t| t.to_string());
        let mut fields = vec![("filename", filename)];
        if let Some(t) = &ttl {
            fields.push(("expires", t));
        }
        let data = self.post("link", &fields).await?;
        let (Some(path), Some(expires), Some(size)) = (
            data["URL"].as_str(),
            data["Expires"].as_u64(),
            data["FileSize"].as_u64(),
        ) else {
            return Err(Error::Integrity(format!("link: unexpected answer {data}")));
        };
        Ok(Link {
            url: format!("{}{path}", self.endpoint),
            expires,
            size,
            etag: data["ETag"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// GET of `range` (non-empty) through a signed link; the caller reads the body.
    pub async fn get_range(
        &self,
        url: &str,
        range: std::ops::Range<u64>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(
                hyper::header::RANGE,
                format!("bytes={}-{}", range.start, range.end - 1),
            )
            .body(http::full(Bytes::new()))
            .map_err(|e| Error::Usage(format!("request: {e}")))?;
        let resp = self.http.send(req, SHORT).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let bytes = read_body(resp.into_body(), 1 << 20, SHORT).await?;
        Err(service_error(status, &bytes))
    }

    /// Sends chunk `index` (1-based) from `range`; returns the server's MD5 of it (hex).
    pub async fn uppart(
        &self,
        upload_id: &str,
        index: u32,
        range: &FileRange,
        md5: Option<[u8; 16]>,
        on_chunk: Option<OnChunk>,
    ) -> Result<String> {
        let boundary = format!("mpgw-{}", crate::model::random_hex(12));
        let mut fields = vec![
            ("username", self.username.clone()),
            ("uploadid", upload_id.to_owned()),
            ("index", index.to_string()),
        ];
        if let Some(md5) = md5 {
            fields.push(("chunkhash", format!("md5:{}", hex::encode(md5))));
        }
        let mut head = String::new();
        for (k, v) in &fields {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
            ));
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"chunk-{index}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        let len = head.len() as u64 + range.len + tail.len() as u64;
        let body = range
            .body(Bytes::from(head), Bytes::from(tail), on_chunk)
            .await?;
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let data = self
            .send(
                "mpupload/uppart",
                content_type,
                len,
                body,
                transfer_timeout(range.len),
            )
            .await?;
        Ok(data["ETag"].as_str().unwrap_or_default().to_owned())
    }

    /// Completes; returns the file's ETag.
    pub async fn complete(
        &self,
        upload_id: &str,
        filehash: &str,
        filesize: u64,
        filename: &str,
    ) -> Result<String> {
        let size = filesize.to_string();
        let fields = [
            ("uploadid", upload_id),
            ("filehash", filehash),
            ("filesize", &size),
            ("filename", filename),
        ];
        let data = self.post("mpupload/complete", &fields).await?;
        Ok(data["ETag"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn cancel(&self, upload_id: &str) -> Result<()> {
        self.post("mpupload/cancel", &[("uploadid", upload_id)])
            .await
            .map(drop)
    }

    /// `status`'s `data` as is (ChunksPresent, BytesReceived, State…).
    pub async fn status(&self, upload_id: &str) -> Result<Value> {
        self.post("mpupload/status", &[("uploadid", upload_id)])
            .await
    }

    /// A form POST (urlencoded) with the user name.
    async fn post(&self, op: &str, fields: &[(&str, &str)]) -> Result<Value> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", &self.username)
            .extend_pairs(fields)
            .finish();
        let len = body.len() as u64;
        self.send(
            op,
            "application/x-www-form-urlencoded".into(),
            len,
            http::full(body),
            SHORT,
        )
        .await
    }

    /// Sends to `/file/<op>` with the token in `Authorization: Bearer`; the envelope's `data`
    /// on code 0, else `Error::Service` with the legacy code as text.
    async fn send(
        &self,
        op: &str,
        content_type: String,
        len: u64,
        body: http::Body,
        timeout: Duration,
    ) -> Result<Value> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/file/{op}", self.endpoint))
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::CONTENT_LENGTH, len)
            .body(body)
            .map_err(|e| Error::Usage(format!("request: {e}")))?;
        let resp = self.http.send(req, timeout).await?;
        let status = resp.status().as_u16();
        let bytes = read_body(resp.into_body(), 16 << 20, SHORT).await?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(reply) if reply["code"].as_i64() == Some(0) && status < 300 => {
                Ok(reply["data"].clone())
            }
            _ => Err(service_error(status, &bytes)),
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An error answer: the envelope's code and msg, or (not the envelope: a proxy's or a dying
/// server's page) the HTTP status and the start of the body.
fn service_error(status: u16, bytes: &[u8]) -> Error {
    let Ok(reply) = serde_json::from_slice::<Value>(bytes) else {
        let message = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        return Error::Service {
            status,
            code: format!("HTTP{status}"),
            message,
        };
    };
    let code = reply["code"].as_i64();
    Error::Service {
        status,
        code: code.map_or_else(|| format!("HTTP{status}"), |c| c.to_string()),
        message: reply["msg"].as_str().unwrap_or_default().to_owned(),
    }
}

fn parse_init(op: &str, data: &Value) -> Result<Init> {
    let chunk_size = data["ChunkSize"].as_u64().filter(|c| *c > 0);
    let chunk_count = data["ChunkCount"]
        .as_u64()
        .and_then(|c| u32::try_from(c).ok());
    let (Some(chunk_size), Some(chunk_count)) = (chunk_size, chunk_count) else {
        return Err(Error::Integrity(format!(
            "{op}: no ChunkSize/ChunkCount in {data}"
        )));
    };
    let present = data["ChunksPresent"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| u32::try_from(v.as_u64()?).ok())
                .collect()
        })
        .unwrap_or_default();
    let instant = data["Instant"].as_bool() == Some(true);
    let upload_id = data["UploadID"].as_str().map(str::to_owned);
    if upload_id.is_none() && !instant {
        return Err(Error::Integrity(format!("{op}: no UploadID in {data}")));
    }
    let challenge = data["Challenge"]["Nonce"].as_str().map(|nonce| Challenge {
        nonce: nonce.to_owned(),
        ranges: data["Challenge"]["Ranges"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| {
                        let (o, l) = (r["Offset"].as_u64()?, r["Length"].as_u64()?);
                        Some((o, o.checked_add(l)?))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    });
    Ok(Init {
        upload_id,
        chunk_size,
        chunk_count,
        present,
        instant,
        challenge,
    })
}

/// The proof for `challenge` over the local file: the bytes of its ranges, read in place.
async fn prove_file(path: &std::path::Path, challenge: &Challenge) -> Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(Error::local(path))?;
    let mut ranges = Vec::with_capacity(challenge.ranges.len());
    for &(start, end) in &challenge.ranges {
        let len = usize::try_from(end.saturating_sub(start))
            .ok()
            .filter(|l| *l <= 1 << 20)
            .ok_or_else(|| Error::Integrity(format!("challenge range {start}..{end}")))?;
        let mut buf = vec![0; len];
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(Error::local(path))?;
        file.read_exact(&mut buf)
            .await
            .map_err(Error::local(path))?;
        ranges.push(buf);
    }
    Ok(crate::upload::files::proof_of(&challenge.nonce, &ranges))
}

/// init, then the proof when init asks for one: the answer that says what to send.
async fn start(
    client: &LegacyClient,
    path: &std::path::Path,
    filehash: &str,
    size: u64,
    filename: &str,
) -> Result<Init> {
    let init = client.init(filehash, size, filename).await?;
    match (&init.challenge, &init.upload_id) {
        (Some(c), Some(id)) => {
            // A file that changed since it was hashed cannot prove anything: send the chunks.
            let Ok(proof) = prove_file(path, c).await else {
                return Ok(init);
            };
            client.instant(id, &c.nonce, &proof).await
        }
        _ => Ok(init),
    }
}

/// Uploads over the legacy API; returns the file's ETag.
pub async fn upload(args: &UploadArgs, progress: &Progress) -> Result<String> {
    let t = &args.transfer;
    let endpoint = t
        .endpoint
        .clone()
        .or_else(|| {
            std::env::var("AWS_ENDPOINT_URL")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .ok_or_else(|| Error::Usage("--legacy needs --endpoint (the mpgw server)".into()))?;
    let (Some(username), Some(token)) = (&args.username, &args.token) else {
        return Err(Error::Usage(
            "--legacy needs --username and --token (or MPGW_USERNAME and MPGW_TOKEN)".into(),
        ));
    };
    let filename = match &args.target {
        Some(t) if t.starts_with("s3://") => {
            return Err(Error::Usage(
                "with --legacy the target is a file name on the server, not s3://…".into(),
            ));
        }
        Some(t) => t.clone(),
        None => args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::Usage("no file name".into()))?,
    };
    let client = LegacyClient::new(&endpoint, username, token, usize::from(t.jobs))?;
    let path = std::path::absolute(&args.file).map_err(Error::local(&args.file))?;
    let file = FileIdentity::of(&path).await?;
    let journal_path = journal::upload_path(&[
        "legacy",
        client.endpoint(),
        username,
        &filename,
        &path.to_string_lossy(),
    ])?;
    let attempts = t.retries.max(1);

    // The whole-file hash names the upload; an unchanged file keeps the one computed before.
    let mut j = match journal::load::<LegacyJournal>(&journal_path) {
        Some(j) if j.file == file => j,
        _ => {
            progress.start("hashing", file.size);
            let bar = progress.clone();
            let filehash = http::sha256_file(&path, Arc::new(move |n| bar.inc(n))).await?;
            let j = LegacyJournal {
                endpoint: client.endpoint().to_owned(),
                username: username.clone(),
                filename: filename.clone(),
                filehash,
                upload_id: None,
                file,
            };
            journal::save(&journal_path, &j)?;
            j
        }
    };
    let size = j.file.size;
    let init = retry(attempts, "init", progress, async || {
        start(&client, &path, &j.filehash, size, &filename).await
    })
    .await?;
    let name = format!("{filename} (legacy, user {username})");
    if init.instant {
        journal::remove(&journal_path)?;
        progress.finish();
        progress.note(&format!(
            "{name}: stored at once, the server had the same content"
        ));
        return Ok(String::new());
    }
    let id = init.upload_id.clone().unwrap_or_default();
    if j.upload_id.as_deref() != Some(&id) {
        j.upload_id = Some(id.clone());
        journal::save(&journal_path, &j)?;
    }
    let plan = Plan {
        size,
        part_size: init.chunk_size,
    };
    if plan.count() != init.chunk_count {
        return Err(Error::Integrity(format!(
            "init: {} chunks of {} for {size} bytes?",
            init.chunk_count, init.chunk_size
        )));
    }

    progress.start("uploading", size);
    let present: std::collections::HashSet<u32> = init
        .present
        .iter()
        .copied()
        .filter(|n| (1..=plan.count()).contains(n))
        .collect();
    progress.skip(present.iter().map(|n| plan.range(*n).1).sum());
    let missing: Vec<u32> = (1..=plan.count())
        .filter(|n| !present.contains(n))
        .collect();
    stream::iter(missing)
        .map(|n| {
            let (client, path, id) = (&client, &path, id.as_str());
            async move {
                let (offset, len) = plan.range(n);
                let range = FileRange {
                    path: path.clone(),
                    offset,
                    len,
                };
                let md5 = range.md5().await?;
                retry(attempts, &format!("chunk {n}"), progress, async || {
                    let sent = Arc::new(AtomicU64::new(0));
                    let r = client
                        .uppart(
                            id,
                            n,
                            &range,
                            Some(md5),
                            Some(progress.on_chunk(sent.clone())),
                        )
                        .await;
                    if r.is_err() {
                        progress.dec(sent.load(Ordering::Relaxed));
                    }
                    r
                })
                .await
            }
        })
        .buffer_unordered(usize::from(t.jobs))
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| match e.code() {
            Some(NO_SUCH_UPLOAD) => Error::Usage(format!(
                "{e}: the upload was cancelled or expired; run again to start over"
            )),
            _ => e,
        })?;

    let etag = match retry(attempts, "complete", progress, async || {
        client.complete(&id, &j.filehash, size, &filename).await
    })
    .await
    {
        Ok(etag) => etag,
        // An earlier attempt may have completed it and lost the answer: then the content is
        // stored, and init says so.
        Err(e) if e.code() == Some(NO_SUCH_UPLOAD) => {
            match start(&client, &path, &j.filehash, size, &filename).await {
                Ok(again) if again.instant => String::new(),
                Ok(again) => {
                    // Not stored after all: drop the upload that this init started.
                    if let Some(id) = again.upload_id {
                        let _ = client.cancel(&id).await;
                    }
                    return Err(e);
                }
                Err(_) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    journal::remove(&journal_path)?;
    progress.summary("uploaded", &name);
    Ok(etag)
}
