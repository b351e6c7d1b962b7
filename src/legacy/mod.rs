//! The design note's own API, `/file/mpupload/{init,instant,uppart,complete,cancel,status}`,
//! plus the user file endpoints `/file/query`, `/file/download`, `/file/link` and
//! `/file/delete`. It only translates: every operation, and every rule of the file table and
//! instant upload (`upload::files`), is a call into the same `upload::Uploads` core the S3 API
//! uses. A legacy file is an S3 object `<username>/<filename>` in the legacy bucket.
//!
//! Authentication: `username` plus the user's token in `Authorization: Bearer` or a form field
//! of the body. A token in the URL is refused (URLs end up in logs, histories and referrers);
//! downloads that must be plain links use a short-lived signed link (`link`) instead.

pub mod form;
pub mod link;
pub mod reply;

use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use self::form::Form;
use self::reply::LegacyError;
use crate::app::App;
use crate::body::Body;
use crate::body::{RequestBody, RequestInfo};
use crate::credentials::{LEGACY_OWNER, LegacySettings};
use crate::model::checksum::{ChecksumAlgorithm, ContentAlgorithm, ContentHash};
use crate::model::{PartNumber, UploadId, UploadRecord, UploadState};
use crate::upload::files::{Challenge, Chunks, Geometry, content_hash};
use crate::upload::{Admission, BodyChecks, Caller, Expected};

pub const PREFIX: &str = "/file/";

/// The operation name of each endpoint, for the access log and the per-op metrics.
fn op_name(endpoint: &str) -> &'static str {
    match endpoint {
        "/mpupload/init" => "LegacyInit",
        "/mpupload/instant" => "LegacyInstant",
        "/mpupload/uppart" => "LegacyUploadChunk",
        "/mpupload/complete" => "LegacyComplete",
        "/mpupload/cancel" => "LegacyCancel",
        "/mpupload/status" => "LegacyStatus",
        "/query" => "LegacyQuery",
        "/download" => "LegacyDownload",
        "/link" => "LegacyLink",
        "/delete" => "LegacyDelete",
        _ => "LegacyApi",
    }
}

/// Serves one `/file/*` request, filling `info` (operation, user, bucket, key, error code) as
/// it learns them, as the S3 front end does.
pub async fn handle(
    app: &App,
    req: Request<RequestBody>,
    info: &mut RequestInfo,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    let legacy = &*app.legacy;
    let endpoint = path.strip_prefix("/file").unwrap_or_default();
    info.op = op_name(endpoint);
    info.bucket.clone_from(&legacy.bucket);
    let result = async {
        let want_file = endpoint == "/mpupload/uppart";
        let is_get = matches!(endpoint, "/query" | "/download");
        let allowed = if is_get {
            parts.method == Method::GET || parts.method == Method::HEAD
        } else {
            parts.method == Method::POST
        };
        if !matches!(
            endpoint,
            "/mpupload/init"
                | "/mpupload/instant"
                | "/mpupload/uppart"
                | "/mpupload/complete"
                | "/mpupload/cancel"
                | "/mpupload/status"
                | "/query"
                | "/download"
                | "/link"
                | "/delete"
        ) {
            return Err(LegacyError::not_found());
        }
        if !allowed {
            return Err(LegacyError::method());
        }
        // Before anything is read: a token never travels in a URL.
        let query = parts.uri.query().unwrap_or_default().as_bytes();
        if form_urlencoded::parse(query).any(|(k, _)| k == "token") {
            return Err(LegacyError::token_in_url());
        }
        let (form, file) = form::read(&parts, body, want_file).await?;
        let user = form.required("username")?.to_owned();
        let signed_link = endpoint == "/download" && form.get("signature").is_some();
        if signed_link {
            let ok = parts.method == Method::GET
                && legacy.users.contains(&user)
                && link::verify(
                    &legacy.link_key,
                    &user,
                    form.required("filename")?,
                    form.required("expires")?,
                    form.get("signature").unwrap_or_default(),
                    link::unix_now(),
                );
            if !ok {
                return Err(LegacyError::bad_link());
            }
        } else if !legacy
            .users
            .check(&user, form.get("token").unwrap_or_default())
        {
            return Err(LegacyError::unauthorized());
        }
        info.access_key = Some(user.clone());
        if let Some(name) = form.get("filename") {
            info.key = format!("{user}/{name}");
        }
        let ctx = Ctx {
            app,
            legacy,
            user,
            form,
        };
        match endpoint {
            "/mpupload/init" => ctx.init().await,
            "/mpupload/instant" => ctx.instant().await,
            "/mpupload/uppart" => {
                ctx.uppart(file.ok_or_else(|| LegacyError::missing("file"))?)
                    .await
            }
            "/mpupload/complete" => ctx.complete().await,
            "/mpupload/cancel" => ctx.cancel().await,
            "/mpupload/status" => ctx.status().await,
            "/query" => ctx.query().await,
            "/download" => ctx.download(&parts, signed_link).await,
            "/link" => ctx.link().await,
            _ => ctx.delete().await,
        }
    }
    .await;
    match result {
        Ok(resp) => resp,
        Err(e) => {
            info.error_code = Some(e.code_name());
            if e.status.is_server_error() {
                let cause = e.cause.as_deref().unwrap_or("-");
                tracing::warn!(op = info.op, code = e.code, msg = %e.msg, cause, "legacy request failed");
            } else {
                tracing::info!(op = info.op, code = e.code, msg = %e.msg, "legacy request refused");
            }
            reply::error(&e)
        }
    }
}

struct Ctx<'a> {
    app: &'a App,
    legacy: &'a LegacySettings,
    user: String,
    form: Form,
}

/// What init (and an instant upload that did not happen) answers: the upload to send chunks to.
fn upload_answer(
    up: &UploadRecord,
    g: &Geometry,
    filename: &str,
    present: Chunks,
    challenge: Option<&Challenge>,
) -> Value {
    let Chunks {
        indexes: present,
        bytes: received,
    } = present;
    let mut v = json!({
        "UploadID": up.id.as_str(), "FileHash": g.hash.canonical(), "FileSize": g.size, "FileName": filename,
        "ChunkSize": g.chunk, "ChunkCount": g.count, "Resumed": !present.is_empty(), "ChunksPresent": present,
        "BytesReceived": received, "Instant": false,
    });
    if let Some(c) = challenge {
        let ranges: Vec<Value> = c
            .ranges
            .iter()
            .map(|&(s, e)| json!({ "Offset": s, "Length": e - s }))
            .collect();
        v["Challenge"] = json!({
            "Nonce": c.nonce, "Ranges": ranges,
            "ExpiresIn": ((c.expires - crate::model::now_millis()) / 1000).max(0),
        });
    }
    v
}

impl Ctx<'_> {
    fn key(&self, filename: &str) -> String {
        format!("{}/{filename}", self.user)
    }

    fn filename(&self) -> Result<&str, LegacyError> {
        let name = self.form.required("filename")?;
        if !crate::upload::files::valid_filename(name) {
            return Err(LegacyError::invalid(
                "filename",
                "empty, too long, or starting with /",
            ));
        }
        Ok(name)
    }

    /// The name of `key` in the user's file table.
    fn name_of<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(&format!("{}/", self.user)).unwrap_or(key)
    }

    fn hash(&self) -> Result<ContentHash, LegacyError> {
        ContentHash::parse(self.form.required("filehash")?).ok_or_else(|| {
            LegacyError::invalid(
                "filehash",
                "expected hex SHA-256, or sha1:<hex> / md5:<hex>",
            )
        })
    }

    /// The caller's own upload `uploadid` (another user's answers exactly like a missing one).
    async fn upload(&self) -> Result<(UploadRecord, Geometry), LegacyError> {
        let id = UploadId::parse(self.form.required("uploadid")?)
            .ok_or_else(LegacyError::no_such_upload)?;
        let up = self
            .app
            .uploads
            .open_upload(&id, &self.legacy.bucket, None, Caller::User(&self.user))
            .await?;
        let geometry = Geometry::of(&up).ok_or_else(LegacyError::no_such_upload)?;
        Ok((up, geometry))
    }

    /// Starts (or resumes) the caller's upload of this content and, for a SHA-256 `filehash`,
    /// challenges it to prove it holds the content (`instant`). The file table is not read
    /// here: the answer is the same whether or not the content is stored.
    async fn init(&self) -> Result<Response<Body>, LegacyError> {
        let hash = self.hash()?;
        let size = self.form.number("filesize")?;
        let filename = self.filename()?.to_owned();
        let prefix = format!("{}/", self.user);
        let started = self
            .app
            .uploads
            .start_file(
                &self.user,
                (&self.legacy.bucket, LEGACY_OWNER),
                (&prefix, &self.key(&filename)),
                Geometry::new(hash, size, self.legacy.chunk_size),
            )
            .await?;
        Ok(reply::ok(upload_answer(
            &started.upload,
            &started.geometry,
            &filename,
            started.present,
            started.challenge.as_ref(),
        )))
    }

    /// The answer to init's challenge: with a right proof over the stored content, the file is
    /// linked under the upload's name at once (`Instant: true`, the upload ends); otherwise the
    /// same answer as init's, without a challenge: send the chunks.
    async fn instant(&self) -> Result<Response<Body>, LegacyError> {
        let (up, g) = self.upload().await?;
        let nonce = self.form.required("nonce")?;
        let proof = self.form.required("proof")?;
        let filename = self.name_of(&up.key).to_owned();
        match self
            .app
            .uploads
            .prove(&self.user, &up, nonce, proof)
            .await?
        {
            Some(obj) => Ok(reply::ok(json!({
                "FileHash": g.hash.canonical(), "FileSize": obj.size, "FileName": filename, "ETag": obj.etag,
                "Instant": true, "ChunkSize": g.chunk, "ChunkCount": g.count, "ChunksPresent": [],
            }))),
            None => {
                let present = self.app.uploads.chunks(&up).await?;
                Ok(reply::ok(upload_answer(&up, &g, &filename, present, None)))
            }
        }
    }

    async fn uppart(
        &self,
        mut body: crate::upload::BodyStream,
    ) -> Result<Response<Body>, LegacyError> {
        match self.part_checks().await {
            Ok((up, n, expected, checks, admitted)) => {
                self.store_part(&up, n, expected, checks, admitted, body)
                    .await
            }
            Err(e) => {
                // Read (and drop) the refused chunk so the client gets this answer, not a reset.
                let drain = async {
                    while let Some(Ok(_)) = futures_util::StreamExt::next(&mut body).await {}
                };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
                Err(e)
            }
        }
    }

    /// Everything `uppart` can refuse before reading the chunk; the chunk's admission.
    async fn part_checks(
        &self,
    ) -> Result<(UploadRecord, PartNumber, u64, BodyChecks, Admission), LegacyError> {
        let (up, g) = self.upload().await?;
        let raw_index = self.form.required("index")?;
        let index = raw_index
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|i| (1..=g.count).contains(i))
            .ok_or_else(|| LegacyError::bad_index(raw_index, g.count))?;
        let n = PartNumber::new(index).ok_or_else(|| LegacyError::bad_index(raw_index, g.count))?;
        let expected = g.expected(index);
        let admitted = self.app.uploads.admit(Some(expected))?;
        let mut checks = BodyChecks {
            length: Some(expected),
            ..BodyChecks::default()
        };
        if let Some(h) = self.form.get("chunkhash") {
            let alg = self.form.get("chunkhashalg").map(str::to_owned);
            let text = match alg {
                Some(a) if !h.contains(':') => format!("{a}:{h}"),
                _ => h.to_owned(),
            };
            let ch = ContentHash::parse(&text).ok_or_else(|| {
                LegacyError::invalid(
                    "chunkhash",
                    "expected hex SHA-256, or sha1:<hex> / md5:<hex>",
                )
            })?;
            let raw =
                hex::decode(&ch.hex).map_err(|_| LegacyError::invalid("chunkhash", "not hex"))?;
            match ch.algorithm {
                ContentAlgorithm::Md5 => checks.content_md5 = raw.try_into().ok(),
                ContentAlgorithm::Sha256 => {
                    checks.checksum = Some((ChecksumAlgorithm::Sha256, Expected::Given(raw)))
                }
                ContentAlgorithm::Sha1 => {
                    checks.checksum = Some((ChecksumAlgorithm::Sha1, Expected::Given(raw)))
                }
            }
        }
        Ok((up, n, expected, checks, admitted))
    }

    async fn store_part(
        &self,
        up: &UploadRecord,
        n: PartNumber,
        expected: u64,
        checks: BodyChecks,
        admitted: Admission,
        body: crate::upload::BodyStream,
    ) -> Result<Response<Body>, LegacyError> {
        let index = n.get();
        let part = match self
            .app
            .uploads
            .put_part(up, n, body, checks, admitted)
            .await
        {
            Err(crate::upload::Error::IncompleteBody | crate::upload::Error::EntityTooLarge) => {
                return Err(LegacyError::size_mismatch(expected));
            }
            r => r?,
        };
        Ok(reply::ok(
            json!({ "UploadID": up.id.as_str(), "Index": index, "Size": part.size, "ETag": hex::encode(part.md5) }),
        ))
    }

    async fn complete(&self) -> Result<Response<Body>, LegacyError> {
        let (up, g) = self.upload().await?;
        let hash = self.hash()?;
        if hash != g.hash || self.form.number("filesize")? != g.size {
            return Err(LegacyError::invalid(
                "filehash/filesize",
                "differ from those given at init",
            ));
        }
        let done = match self.app.uploads.complete_file(&up, &g).await {
            Err(crate::upload::Error::BadDigest(_)) => {
                return Err(LegacyError::hash_mismatch("file"));
            }
            r => r?,
        };
        Ok(reply::ok(
            json!({ "FileHash": g.hash.canonical(), "FileSize": g.size, "FileName": self.name_of(&up.key), "ETag": done.etag }),
        ))
    }

    async fn cancel(&self) -> Result<Response<Body>, LegacyError> {
        let (up, _) = self.upload().await?;
        self.app.uploads.abort(&up).await?;
        Ok(reply::ok(
            json!({ "UploadID": up.id.as_str(), "State": "cancelled" }),
        ))
    }

    async fn status(&self) -> Result<Response<Body>, LegacyError> {
        let (up, g) = self.upload().await?;
        let present = self.app.uploads.chunks(&up).await?;
        let state = match up.state {
            UploadState::Open => "open",
            UploadState::Completing => "completing",
            UploadState::Completed => "completed",
        };
        Ok(reply::ok(json!({
            "UploadID": up.id.as_str(), "FileHash": g.hash.canonical(), "FileSize": g.size, "ChunkSize": g.chunk,
            "ChunkCount": g.count, "ChunksPresent": present.indexes, "BytesReceived": present.bytes, "State": state,
        })))
    }

    /// The user file table: the user's objects in the legacy bucket.
    async fn query(&self) -> Result<Response<Body>, LegacyError> {
        let prefix = format!("{}/", self.user);
        let limit = self
            .form
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(1000)
            .min(1000);
        let page = match self
            .app
            .uploads
            .list_objects(&self.legacy.bucket, &prefix, None, None, limit)
            .await
        {
            Err(crate::upload::Error::NoSuchBucket) => crate::upload::Listing::default(),
            r => r?,
        };
        let files: Vec<_> = page
            .items
            .iter()
            .map(|(key, o)| {
                json!({
                    "FileName": key.strip_prefix(&prefix).unwrap_or(key),
                    "FileHash": content_hash(&o.headers).map(|h| h.canonical()),
                    "FileSize": o.size,
                    "UploadAt": crate::model::time::iso8601(o.modified),
                })
            })
            .collect();
        Ok(reply::ok(
            json!({ "Files": files, "Truncated": page.truncated }),
        ))
    }

    /// The user's object with `filename`, or with content `filehash`.
    async fn find_file(&self) -> Result<(String, crate::model::ObjectRecord), LegacyError> {
        let uploads = &self.app.uploads;
        if let Some(name) = self.form.get("filename") {
            let key = self.key(name);
            let o = uploads
                .object(&self.legacy.bucket, &key)
                .await
                .map_err(|_| LegacyError::no_such_file())?;
            return Ok((key, o));
        }
        let hash = self.hash()?;
        let prefix = format!("{}/", self.user);
        uploads
            .find_file(&self.legacy.bucket, &prefix, &hash)
            .await?
            .ok_or_else(LegacyError::no_such_file)
    }

    /// A signed download link to one of the user's files (`link`), for `expires` seconds.
    async fn link(&self) -> Result<Response<Body>, LegacyError> {
        let ttl = match self.form.get("expires") {
            None => link::DEFAULT_TTL.as_secs(),
            Some(_) => self
                .form
                .number("expires")
                .ok()
                .filter(|s| (1..=link::MAX_TTL.as_secs()).contains(s))
                .ok_or_else(|| {
                    LegacyError::invalid(
                        "expires",
                        &format!("seconds, 1 to {}", link::MAX_TTL.as_secs()),
                    )
                })?,
        };
        let (key, o) = self.find_file().await?;
        let filename = self.name_of(&key);
        let expires = link::unix_now() + ttl;
        Ok(reply::ok(json!({
            "URL": link::sign(&self.legacy.link_key, &self.user, filename, expires),
            "Expires": expires, "FileName": filename, "FileSize": o.size, "ETag": o.etag,
        })))
    }

    async fn download(
        &self,
        parts: &http::request::Parts,
        signed_link: bool,
    ) -> Result<Response<Body>, LegacyError> {
        // A link names its file by `filename` only (the one it was signed for).
        let (key, o) = if signed_link {
            let key = self.key(self.form.required("filename")?);
            let o = self
                .app
                .uploads
                .object(&self.legacy.bucket, &key)
                .await
                .map_err(|_| LegacyError::no_such_file())?;
            (key, o)
        } else {
            self.find_file().await?
        };
        let range = parts
            .headers
            .get(hyper::header::RANGE)
            .and_then(|v| v.to_str().ok());
        let (start, end, partial) = match range.and_then(|r| crate::range::byte_range(r, o.size)) {
            None => (0, o.size, false),
            Some(Err(())) => return Err(LegacyError::range(o.size)),
            Some(Ok((s, e))) => (s, e, true),
        };
        let body = if parts.method == Method::HEAD || start == end {
            crate::body::empty()
        } else {
            crate::body::stream(self.app.uploads.read(&o, start, end))
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = if partial {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let name = key.rsplit('/').next().unwrap_or(&key).replace('"', "");
        let h = resp.headers_mut();
        let mut set = |n: hyper::header::HeaderName, v: String| {
            if let Ok(v) = v.parse() {
                h.insert(n, v);
            }
        };
        set(hyper::header::CONTENT_LENGTH, (end - start).to_string());
        set(
            hyper::header::CONTENT_TYPE,
            "application/octet-stream".into(),
        );
        set(hyper::header::ACCEPT_RANGES, "bytes".into());
        set(
            hyper::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        );
        set(hyper::header::ETAG, format!("\"{}\"", o.etag));
        // A link's URL carries its signature: keep it out of referrers and shared caches.
        set(hyper::header::REFERRER_POLICY, "no-referrer".into());
        set(hyper::header::CACHE_CONTROL, "private, no-store".into());
        if partial {
            set(
                hyper::header::CONTENT_RANGE,
                format!("bytes {start}-{}/{}", end - 1, o.size),
            );
        }
        Ok(resp)
    }

    /// Deletes one user's file; the same content linked for another user stays.
    async fn delete(&self) -> Result<Response<Body>, LegacyError> {
        let (key, o) = self.find_file().await?;
        self.app
            .uploads
            .delete_file(&self.legacy.bucket, &key, &o)
            .await?;
        Ok(reply::ok(
            json!({ "FileName": self.name_of(&key), "Deleted": true }),
        ))
    }
}
