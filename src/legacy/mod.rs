//! The design note's own API, `/file/mpupload/{init,uppart,complete,cancel,status}`, plus the
//! user file endpoints `/file/query`, `/file/download` and `/file/delete`. It only translates:
//! every operation is a call into the same `upload::Uploads` core the S3 API uses. A legacy file
//! is an S3 object `<username>/<filename>` in the legacy bucket.
//!
//! Tables: the **user file table** is that bucket's object index under `<username>/` (name,
//! content hash in the object's metadata, size, time); the **unique file table** maps a content
//! hash to the one stored copy, so an init for known content completes at once (秒传) as a hard
//! link: one copy on disk, referenced twice.

pub mod form;
pub mod reply;

use std::collections::BTreeMap;
use std::path::Path;

use crate::http::RequestBody;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq as _;

use self::form::Form;
use self::reply::LegacyError;
use crate::app::App;
use crate::config::Credentials;
use crate::http::Body;
use crate::upload::checksum::{ChecksumAlgorithm, ContentAlgorithm, ContentHash};
use crate::upload::model::{
    FileRecord, ObjectHeaders, PartNumber, UploadId, UploadRecord, UploadState, now_millis,
};
use crate::upload::{BodyChecks, Expected, ListedPart};

pub const PREFIX: &str = "/file/";

/// Owner recorded for the legacy bucket.
const LEGACY_OWNER: &str = "mpgw-legacy";

/// Metadata names (x-amz-meta-*) the legacy API keeps on uploads and objects.
const META_HASH: &str = "filehash";
const META_SIZE: &str = "filesize";
const META_CHUNK: &str = "chunksize";

/// Legacy settings, from the config.
#[derive(Clone, Debug)]
pub struct Settings {
    pub bucket: String,
    pub chunk_size: u64,
    pub users: Users,
}

/// username → token, compared in constant time.
#[derive(Clone, Default)]
pub struct Users(BTreeMap<String, String>);

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Users {
    /// A file of `username token` lines.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut users = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (u, t) = line
                .split_once(|c: char| c == ':' || c.is_whitespace())
                .filter(|(u, t)| !u.is_empty() && !t.trim().is_empty() && !u.contains('/'))
                .ok_or_else(|| {
                    format!("{}:{}: expected `USERNAME TOKEN`", path.display(), i + 1)
                })?;
            users.insert(u.to_owned(), t.trim().to_owned());
        }
        Ok(Self(users))
    }

    /// Without a users file, each S3 access key is a user whose token is its secret key.
    pub fn from_credentials(creds: &Credentials) -> Self {
        Self(
            creds
                .access_keys()
                .map(|a| (a.to_owned(), creds.secret(a).unwrap_or_default().to_owned()))
                .collect(),
        )
    }

    fn check(&self, user: &str, token: &str) -> bool {
        // Compare against a dummy for unknown users too, so timing says nothing about names.
        let stored = self.0.get(user);
        let ok = stored
            .map_or("\u{0}", String::as_str)
            .as_bytes()
            .ct_eq(token.as_bytes());
        stored.is_some() && bool::from(ok)
    }
}

pub async fn handle(app: &App, req: Request<RequestBody>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    let result = async {
        let Some(legacy) = app.legacy.as_deref() else {
            return Err(LegacyError::not_found());
        };
        let endpoint = path.strip_prefix("/file").unwrap_or_default();
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
                | "/mpupload/uppart"
                | "/mpupload/complete"
                | "/mpupload/cancel"
                | "/mpupload/status"
                | "/query"
                | "/download"
                | "/delete"
        ) {
            return Err(LegacyError::not_found());
        }
        if !allowed {
            return Err(LegacyError::method());
        }
        let (form, file) = form::read(&parts, body, want_file).await?;
        let user = form.required("username")?.to_owned();
        if !legacy
            .users
            .check(&user, form.get("token").unwrap_or_default())
        {
            return Err(LegacyError::unauthorized());
        }
        let ctx = Ctx {
            app,
            legacy,
            user,
            form,
        };
        match endpoint {
            "/mpupload/init" => ctx.init().await,
            "/mpupload/uppart" => {
                ctx.uppart(file.ok_or_else(|| LegacyError::missing("file"))?)
                    .await
            }
            "/mpupload/complete" => ctx.complete().await,
            "/mpupload/cancel" => ctx.cancel().await,
            "/mpupload/status" => ctx.status().await,
            "/query" => ctx.query().await,
            "/download" => ctx.download(&parts).await,
            _ => ctx.delete().await,
        }
    }
    .await;
    match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::info!(code = e.code, msg = %e.msg, "legacy request refused");
            reply::error(&e)
        }
    }
}

struct Ctx<'a> {
    app: &'a App,
    legacy: &'a Settings,
    user: String,
    form: Form,
}

/// An upload's legacy geometry, from its metadata.
struct Geometry {
    hash: ContentHash,
    size: u64,
    chunk: u64,
    count: u32,
}

impl Geometry {
    fn of(up: &UploadRecord) -> Option<Self> {
        let meta = |n: &str| {
            up.headers
                .user
                .get(n)
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        let hash = ContentHash::parse(meta(META_HASH)?)?;
        let size = meta(META_SIZE)?.parse().ok()?;
        let chunk = meta(META_CHUNK)?.parse().ok()?;
        Some(Self {
            hash,
            size,
            chunk,
            count: chunk_count(size, chunk),
        })
    }

    /// Size of chunk `index` (1-based): every chunk but the last is exactly `chunk`.
    fn expected(&self, index: u32) -> u64 {
        if index < self.count {
            self.chunk
        } else {
            self.size - self.chunk * u64::from(self.count - 1)
        }
    }
}

fn chunk_count(size: u64, chunk: u64) -> u32 {
    u32::try_from(size.div_ceil(chunk).max(1)).unwrap_or(u32::MAX)
}

impl Ctx<'_> {
    fn key(&self, filename: &str) -> String {
        format!("{}/{filename}", self.user)
    }

    fn filename(&self) -> Result<&str, LegacyError> {
        let name = self.form.required("filename")?;
        if name.len() > 512 || name.contains('\0') || name.starts_with('/') {
            return Err(LegacyError::invalid(
                "filename",
                "empty, too long, or starting with /",
            ));
        }
        Ok(name)
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
            .meta()
            .get_upload(&id)
            .await
            .map_err(crate::upload::Error::from)?;
        let up = up
            .filter(|u| {
                u.bucket == self.legacy.bucket
                    && u.owner == self.user
                    && u.state != UploadState::Completed
            })
            .ok_or_else(LegacyError::no_such_upload)?;
        let geometry = Geometry::of(&up).ok_or_else(LegacyError::no_such_upload)?;
        Ok((up, geometry))
    }

    async fn present(&self, id: &UploadId) -> Result<(Vec<u32>, u64), LegacyError> {
        let (_, parts, _) = self
            .app
            .uploads
            .list_parts_any(id, usize::from(PartNumber::MAX))
            .await?;
        Ok((
            parts.iter().map(|(n, _)| u32::from(n.get())).collect(),
            parts.iter().map(|(_, p)| p.size).sum(),
        ))
    }

    async fn init(&self) -> Result<Response<Body>, LegacyError> {
        let hash = self.hash()?;
        let size = self.form.number("filesize")?;
        let filename = self.filename()?.to_owned();
        let chunk = self.legacy.chunk_size;
        let count = chunk_count(size, chunk);
        if count > u32::from(PartNumber::MAX)
            || size > self.app.uploads.limits().max_part_size * u64::from(PartNumber::MAX)
        {
            return Err(LegacyError::too_large(format!(
                "{size} bytes do not fit in 10000 chunks of {chunk}"
            )));
        }
        let key = self.key(&filename);
        let uploads = &self.app.uploads;
        // The legacy files' bucket is made by the first init that needs it.
        match uploads
            .create_bucket(LEGACY_OWNER, &self.legacy.bucket)
            .await
        {
            Ok(())
            | Err(
                crate::upload::Error::BucketAlreadyOwnedByYou
                | crate::upload::Error::BucketAlreadyExists,
            ) => {}
            Err(e) => return Err(e.into()),
        }
        // Instant upload: this content is stored already; link it under the user's name.
        if let Some(file) = uploads
            .meta()
            .get_file(&hash.canonical())
            .await
            .map_err(crate::upload::Error::from)?
        {
            let stored = uploads.object(&file.bucket, &file.key).await.ok();
            if stored
                .is_some_and(|o| o.size == size && meta_hash(&o.headers).as_ref() == Some(&hash))
            {
                uploads
                    .copy_object(
                        &self.user,
                        (&file.bucket, &file.key),
                        (&self.legacy.bucket, &key),
                        None,
                    )
                    .await?;
                return Ok(reply::ok(json!({
                    "FileHash": hash.canonical(), "FileSize": size, "FileName": filename, "Instant": true,
                    "ChunkSize": chunk, "ChunkCount": count, "ChunksPresent": [],
                })));
            }
            // Stale entry (its object was deleted or overwritten): forget it.
            uploads
                .meta()
                .delete_file(&hash.canonical(), &file)
                .await
                .map_err(crate::upload::Error::from)?;
        }
        // Resume: the same user already has an open upload of this content.
        if let Some(up) = self.find_open(&hash, size).await? {
            let (present, received) = self.present(&up.id).await?;
            return Ok(reply::ok(json!({
                "UploadID": up.id.as_str(), "FileHash": hash.canonical(), "FileSize": size, "FileName": filename,
                "ChunkSize": chunk, "ChunkCount": count, "ChunksPresent": present, "BytesReceived": received,
                "Instant": false, "Resumed": true,
            })));
        }
        let mut headers = ObjectHeaders::default();
        headers
            .user
            .insert(META_HASH.into(), hash.canonical().into_bytes());
        headers
            .user
            .insert(META_SIZE.into(), size.to_string().into_bytes());
        headers
            .user
            .insert(META_CHUNK.into(), chunk.to_string().into_bytes());
        let up = uploads
            .init(&self.user, &self.legacy.bucket, &key, headers, None)
            .await?;
        Ok(reply::ok(json!({
            "UploadID": up.id.as_str(), "FileHash": hash.canonical(), "FileSize": size, "FileName": filename,
            "ChunkSize": chunk, "ChunkCount": count, "ChunksPresent": [], "BytesReceived": 0,
            "Instant": false, "Resumed": false,
        })))
    }

    async fn find_open(
        &self,
        hash: &ContentHash,
        size: u64,
    ) -> Result<Option<UploadRecord>, LegacyError> {
        let prefix = format!("{}/", self.user);
        let mut cursor = None;
        loop {
            let page = self
                .app
                .uploads
                .list_uploads(&self.legacy.bucket, &prefix, None, cursor, 1000)
                .await?;
            for up in &page.items {
                if up.owner == self.user
                    && up.state == UploadState::Open
                    && Geometry::of(up).is_some_and(|g| {
                        &g.hash == hash && g.size == size && g.chunk == self.legacy.chunk_size
                    })
                {
                    return Ok(Some(up.clone()));
                }
            }
            match page.items.last() {
                Some(last) if page.truncated => {
                    cursor = Some(crate::store::UploadCursor {
                        key: last.key.clone(),
                        upload: Some((last.created, last.id.clone())),
                    });
                }
                _ => return Ok(None),
            }
        }
    }

    async fn uppart(
        &self,
        mut body: crate::upload::BodyStream,
    ) -> Result<Response<Body>, LegacyError> {
        match self.part_checks().await {
            Ok((up, n, expected, checks)) => self.store_part(&up, n, expected, checks, body).await,
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

    /// Everything `uppart` can refuse before reading the chunk.
    async fn part_checks(
        &self,
    ) -> Result<(UploadRecord, PartNumber, u64, BodyChecks), LegacyError> {
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
        self.app.uploads.check_space(Some(expected))?;
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
        Ok((up, n, expected, checks))
    }

    async fn store_part(
        &self,
        up: &UploadRecord,
        n: PartNumber,
        expected: u64,
        checks: BodyChecks,
        body: crate::upload::BodyStream,
    ) -> Result<Response<Body>, LegacyError> {
        let index = n.get();
        let part = match self.app.uploads.put_part(up, n, body, checks).await {
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
        let (_, parts, _) = self
            .app
            .uploads
            .list_parts_any(&up.id, usize::from(PartNumber::MAX))
            .await?;
        let missing: Vec<u32> = (1..=g.count)
            .filter(|i| !parts.iter().any(|(n, _)| u32::from(n.get()) == *i))
            .collect();
        if !missing.is_empty() {
            return Err(LegacyError::chunks_missing(&missing));
        }
        let listed = parts
            .iter()
            .filter(|(n, _)| u32::from(n.get()) <= g.count)
            .map(|(n, p)| ListedPart {
                number: *n,
                etag: hex::encode(p.md5),
                checksum: None,
            })
            .collect();
        let done = match self
            .app
            .uploads
            .complete_verified(
                &up.id,
                &up.bucket,
                &up.key,
                listed,
                Some(&g.hash),
                &Default::default(),
            )
            .await
        {
            Err(crate::upload::Error::BadDigest(_)) => {
                return Err(LegacyError::hash_mismatch("file"));
            }
            r => r?,
        };
        let file = FileRecord {
            bucket: up.bucket.clone(),
            key: up.key.clone(),
            size: g.size,
            created: now_millis(),
        };
        self.app
            .uploads
            .meta()
            .put_file(&g.hash.canonical(), &file)
            .await
            .map_err(crate::upload::Error::from)?;
        let filename = up
            .key
            .strip_prefix(&format!("{}/", self.user))
            .unwrap_or(&up.key);
        Ok(reply::ok(
            json!({ "FileHash": g.hash.canonical(), "FileSize": g.size, "FileName": filename, "ETag": done.etag }),
        ))
    }

    async fn cancel(&self) -> Result<Response<Body>, LegacyError> {
        let (up, _) = self.upload().await?;
        self.app.uploads.abort(&up.id, &up.bucket, &up.key).await?;
        Ok(reply::ok(
            json!({ "UploadID": up.id.as_str(), "State": "cancelled" }),
        ))
    }

    async fn status(&self) -> Result<Response<Body>, LegacyError> {
        let (up, g) = self.upload().await?;
        let (present, received) = self.present(&up.id).await?;
        let state = match up.state {
            UploadState::Open => "open",
            UploadState::Completing => "completing",
            UploadState::Completed => "completed",
        };
        Ok(reply::ok(json!({
            "UploadID": up.id.as_str(), "FileHash": g.hash.canonical(), "FileSize": g.size, "ChunkSize": g.chunk,
            "ChunkCount": g.count, "ChunksPresent": present, "BytesReceived": received, "State": state,
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
                    "FileHash": meta_hash(&o.headers).map(|h| h.canonical()),
                    "FileSize": o.size,
                    "UploadAt": crate::s3::ops::iso8601(o.modified),
                })
            })
            .collect();
        Ok(reply::ok(
            json!({ "Files": files, "Truncated": page.truncated }),
        ))
    }

    /// The user's object with `filename`, or with content `filehash`.
    async fn find_file(&self) -> Result<(String, crate::upload::model::ObjectRecord), LegacyError> {
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
        let mut after: Option<String> = None;
        loop {
            let page = uploads
                .list_objects(&self.legacy.bucket, &prefix, None, after.as_deref(), 1000)
                .await
                .map_err(|e| match e {
                    crate::upload::Error::NoSuchBucket => LegacyError::no_such_file(),
                    e => e.into(),
                })?;
            if let Some((k, o)) = page
                .items
                .iter()
                .find(|(_, o)| meta_hash(&o.headers).as_ref() == Some(&hash))
            {
                return Ok((k.clone(), o.clone()));
            }
            if !page.truncated {
                return Err(LegacyError::no_such_file());
            }
            after = page.last;
        }
    }

    async fn download(&self, parts: &http::request::Parts) -> Result<Response<Body>, LegacyError> {
        let (key, o) = self.find_file().await?;
        let range = parts
            .headers
            .get(hyper::header::RANGE)
            .and_then(|v| v.to_str().ok());
        let (start, end, partial) = match range.and_then(|r| crate::s3::ops::byte_range(r, o.size))
        {
            None => (0, o.size, false),
            Some(Err(())) => return Err(LegacyError::range(o.size)),
            Some(Ok((s, e))) => (s, e, true),
        };
        let body = if parts.method == Method::HEAD || start == end {
            crate::http::empty()
        } else {
            crate::http::stream(self.app.uploads.read(&o, start, end))
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
        let uploads = &self.app.uploads;
        uploads.delete_object(&self.legacy.bucket, &key).await?;
        if let Some(hash) = meta_hash(&o.headers) {
            let entry = FileRecord {
                bucket: self.legacy.bucket.clone(),
                key: key.clone(),
                size: o.size,
                created: 0,
            };
            if let Some(f) = uploads
                .meta()
                .get_file(&hash.canonical())
                .await
                .map_err(crate::upload::Error::from)?
                && f.bucket == entry.bucket
                && f.key == entry.key
            {
                uploads
                    .meta()
                    .delete_file(&hash.canonical(), &f)
                    .await
                    .map_err(crate::upload::Error::from)?;
            }
        }
        let filename = key.strip_prefix(&format!("{}/", self.user)).unwrap_or(&key);
        Ok(reply::ok(json!({ "FileName": filename, "Deleted": true })))
    }
}

fn meta_hash(h: &ObjectHeaders) -> Option<ContentHash> {
    h.user
        .get(META_HASH)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(ContentHash::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_geometry() {
        assert_eq!(chunk_count(0, 5), 1);
        assert_eq!(chunk_count(10, 5), 2);
        assert_eq!(chunk_count(11, 5), 3);
        let g = Geometry {
            hash: ContentHash::parse(&"0".repeat(64)).unwrap(),
            size: 11,
            chunk: 5,
            count: 3,
        };
        assert_eq!((g.expected(1), g.expected(2), g.expected(3)), (5, 5, 1));
    }

    #[test]
    fn users_compare_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("users");
        std::fs::write(&f, "# users\nalice s3cret\nbob:tok\n").unwrap();
        let u = Users::from_file(&f).unwrap();
        assert!(u.check("alice", "s3cret"));
        assert!(u.check("bob", "tok"));
        assert!(!u.check("alice", "tok"));
        assert!(!u.check("carol", ""));
        std::fs::write(&f, "nouser\n").unwrap();
        assert!(Users::from_file(&f).is_err());
    }
}
