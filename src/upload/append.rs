//! Uploads written in order from offset 0 (tus): every write appends a part, so the upload's
//! offset is the sum of its parts and resuming is "ask the offset, send the rest". A write
//! whose body is cut off keeps the bytes that arrived (written, fsynced, recorded), so the next
//! offset is exactly what is durable. Small writes are merged into the last part as they come,
//! so that many tiny writes do not make a manifest of thousands of tiny files.
//!
//! Two writers of one upload never both win: a write records its part only if the part table
//! is still as it read it (`MetaStore::append_part`); the loser's file is removed and it is
//! told the offset moved. No lock is held while a body streams.

use futures_util::StreamExt as _;

use super::error::{Error, Result};
use super::{Admission, CompleteChecks, Completed, ListedPart, Uploads, WriteCondition};
use crate::model::checksum::ChecksumAlgorithm;
use crate::model::{
    AppendInfo, BodyError, BodyStream, Checksum, Millis, ObjectHeaders, ObjectPart, PartNumber,
    PartRecord, UploadId, UploadRecord, UploadState, now_millis, random_hex,
};
use crate::store::AppendPart;
use crate::upload::files::content_hash;

/// A last part smaller than this takes the next write's bytes into a new file with its own
/// (a bounded copy of a small part) instead of a new part beside it.
const MERGE_BELOW: u64 = 1 << 20;

/// Where an upload written in order stands.
#[derive(Clone, Debug)]
pub struct AppendState {
    pub upload: UploadRecord,
    /// Bytes stored so far.
    pub offset: u64,
    /// The whole length, once known.
    pub length: Option<u64>,
    /// When it expires (None: never).
    pub expires: Option<Millis>,
    /// Completed: offset equals length and the file is published.
    pub done: bool,
    /// The part table as read (empty once completed): a write checks its offset against it,
    /// and `MetaStore::append_part` records only while it is still so.
    parts: Vec<(PartNumber, PartRecord)>,
}

/// The outcome of one write.
#[derive(Debug)]
pub struct Appended {
    pub offset: u64,
    /// Set when this write completed the upload (or a final concatenation).
    pub completed: Option<Completed>,
}

impl Uploads {
    /// Starts an upload written in order: `info.length` bytes (unless deferred) for
    /// bucket/key, owned by `owner`.
    /// With `make` Some(bucket owner), the bucket is made for that owner by the first upload
    /// that needs it (the legacy bucket); with None it must exist and be `owner`'s own.
    pub async fn init_append(
        &self,
        owner: &str,
        (bucket, make): (&str, Option<&str>),
        key: &str,
        headers: ObjectHeaders,
        info: AppendInfo,
    ) -> Result<UploadRecord> {
        if info.length.is_some_and(|l| l > self.append_max_size()) {
            return Err(Error::EntityTooLarge);
        }
        match make {
            Some(bucket_owner) => match self.create_bucket(bucket_owner, bucket).await {
                Ok(()) | Err(Error::BucketAlreadyOwnedByYou | Error::BucketAlreadyExists) => {}
                Err(e) => return Err(e),
            },
            None if self.bucket(bucket).await?.owner != owner => return Err(Error::AccessDenied),
            None => {}
        }
        self.init_with(owner, bucket, key, headers, None, Some(info))
            .await
    }

    /// The largest upload written in order: 10,000 parts of the largest part size, and at most
    /// S3's 5 TiB.
    pub fn append_max_size(&self) -> u64 {
        self.limits
            .max_part_size
            .saturating_mul(u64::from(PartNumber::MAX))
            .min(5 << 40)
    }

    /// When the upload `up` expires: its bucket's lifecycle rule for its key, else the
    /// server-wide `--upload-expiry` (None: never), as the expiry janitor decides.
    async fn append_expiry(&self, up: &UploadRecord) -> Result<Option<Millis>> {
        let rules = self
            .find_bucket(&up.bucket)
            .await?
            .and_then(|b| b.lifecycle);
        let limit = super::expiry::age_limit(rules.as_deref(), &up.key, self.limits.upload_expiry);
        Ok(limit.map(|l| up.created.saturating_add(l)))
    }

    /// `owner`'s upload `id` written in order (None: whoever's; the caller holds the upload's
    /// own capability), open or completed (a completed one answers with
    /// offset = length while its record is kept). Another owner's, or any other kind of upload,
    /// is `NoSuchUpload`; one past its expiry is `UploadExpired`. An open upload that holds all
    /// its bytes (a crash came between its last write and its completion) is completed here.
    pub async fn append_state(&self, id: &UploadId, owner: Option<&str>) -> Result<AppendState> {
        let up = self
            .meta
            .get_upload(id)
            .await?
            .filter(|u| owner.is_none_or(|o| u.owner == o) && u.append.is_some())
            .ok_or(Error::NoSuchUpload)?;
        let state = self.state_of(up).await?;
        if !state.done
            && state.length == Some(state.offset)
            && !state.upload.append.as_ref().is_some_and(|a| a.partial)
        {
            self.finish_append(&state.upload).await?;
            return Ok(AppendState {
                done: true,
                ..state
            });
        }
        Ok(state)
    }

    async fn state_of(&self, up: UploadRecord) -> Result<AppendState> {
        let info = up.append.clone().unwrap_or_default();
        let expires = self.append_expiry(&up).await?;
        if up.state == UploadState::Completed {
            // Its parts are the object's now: the length is what was declared, or the object's
            // size while the object is still this upload's.
            let length = match info.length {
                Some(l) => Some(l),
                None => self
                    .meta
                    .get_object(&up.bucket, &up.key)
                    .await?
                    .filter(|o| o.blob == up.id)
                    .map(|o| o.size),
            };
            let length = length.ok_or(Error::NoSuchUpload)?;
            return Ok(AppendState {
                upload: up,
                offset: length,
                length: Some(length),
                expires,
                done: true,
                parts: Vec::new(),
            });
        }
        if expires.is_some_and(|e| e <= now_millis()) {
            return Err(Error::UploadExpired);
        }
        let parts = self.meta.list_parts(&up.id, None, PART_PAGE).await?;
        let offset = parts.iter().map(|(_, p)| p.size).sum();
        let length = info
            .length
            .or_else(|| parts.iter().find_map(|(_, p)| p.length));
        Ok(AppendState {
            upload: up,
            offset,
            length,
            expires,
            done: false,
            parts,
        })
    }

    /// Appends `body` at `offset` to the open upload `up` (which `append_state` returned).
    /// `checksum` is what the client says the body's digest is: checked before anything is
    /// recorded (`BadDigest`), and then a cut-off body keeps nothing. `declare` is the whole
    /// length of an upload created with its length deferred. When the upload then holds all
    /// its bytes, it is completed (published), unless it is a partial upload. The final upload
    /// of a concatenation takes no writes (`AccessDenied`).
    ///
    /// It runs in a task of its own: a client that hangs up once its body has gone out (before
    /// reading the answer) still gets its bytes stored, and the next HEAD reports them.
    pub async fn append(
        &self,
        state: &AppendState,
        offset: u64,
        body: BodyStream,
        checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
        declare: Option<u64>,
        admitted: Admission,
    ) -> Result<Appended> {
        let (this, state) = (self.clone(), state.clone());
        let origin = super::events::Origin::current();
        tokio::spawn(origin.scope(async move {
            this.run_append(&state, offset, body, checksum, declare, admitted)
                .await
        }))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    async fn run_append(
        &self,
        state: &AppendState,
        offset: u64,
        body: BodyStream,
        checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
        declare: Option<u64>,
        admitted: Admission,
    ) -> Result<Appended> {
        let up = &state.upload;
        let id = &up.id;
        if up.append.as_ref().is_some_and(|a| a.concat.is_some()) {
            return Err(Error::AccessDenied);
        }
        if state.done {
            return Err(Error::OffsetMismatch(state.offset));
        }
        let length = match (state.length, declare) {
            (Some(l), Some(d)) if l != d => {
                return Err(Error::InvalidArgument(
                    "Upload-Length cannot be changed once set".into(),
                ));
            }
            (Some(l), _) => Some(l),
            (None, Some(d)) if d < state.offset || d > self.append_max_size() => {
                return Err(Error::InvalidArgument(format!(
                    "Upload-Length {d} is below the offset or above the maximum size"
                )));
            }
            (None, d) => d,
        };
        let parts = &state.parts;
        let stored = state.offset;
        if offset != stored {
            return Err(Error::OffsetMismatch(stored));
        }
        let room = length.map_or(u64::MAX, |l| l - stored);
        let last = parts.last();
        // Merge into a small last part; a checksummed write stays a part of its own, so that
        // its digest covers exactly its bytes.
        let merge = last.filter(|(n, p)| {
            (p.size < MERGE_BELOW && checksum.is_none()) || n.get() == PartNumber::MAX
        });
        if merge.is_some() && checksum.is_some() {
            // Only the 10,000th part merges a checksummed write, and a digest of the merged
            // file would not be the body's: refuse rather than answer a false mismatch.
            return Err(Error::InvalidArgument(
                "The upload has 10,000 parts: further writes cannot carry Upload-Checksum.".into(),
            ));
        }
        let (n, prefix) = match merge {
            Some((n, p)) => (*n, p.size),
            None => (
                last.map_or(Some(PartNumber::FIRST), |(n, _)| n.next())
                    .ok_or(Error::EntityTooLarge)?,
                0,
            ),
        };
        let max = self.limits.max_part_size.min(room.saturating_add(prefix));
        let alg = checksum.as_ref().map(|c| c.0);
        let stream: BodyStream = match merge {
            Some((_, p)) => {
                let old = ObjectPart {
                    number: n.get(),
                    md5: String::new(),
                    file: p.file.clone(),
                    size: p.size,
                    checksum: None,
                };
                let read = self
                    .disk
                    .read(id, &[old], 0, p.size)
                    .map(|r| r.map_err(|e| BodyError::new(StoredPartUnreadable(e))));
                Box::pin(read.chain(body))
            }
            None => body,
        };
        let by_length = room.saturating_add(prefix) < self.limits.max_part_size;
        // A checksummed body keeps nothing when cut: its digest is over the whole of it.
        let keep_prefix = checksum.is_none();
        let mut staged = match self
            .write_with(id, stream, max, alg, admitted, keep_prefix)
            .await
        {
            Err(Error::Io(e)) => return Err(self.gone_or(id, Error::Io(e)).await),
            Err(Error::EntityTooLarge) if by_length => return Err(past_length()),
            r => r?,
        };
        let cut = staged.cut.take();
        if staged.size < prefix {
            // The old bytes could not all be read again (another write replaced them, or the
            // disk failed): nothing is recorded, they stay as they are.
            let now = self.meta.list_parts(id, None, PART_PAGE).await?;
            if now.last().map(|(_, p)| &p.file) != last.map(|(_, p)| &p.file) {
                return Err(Error::OffsetMismatch(now.iter().map(|(_, p)| p.size).sum()));
            }
            return Err(cut.map_or(Error::IncompleteBody, Error::Body));
        }
        let new_offset = stored - prefix + staged.size;
        if new_offset == stored && (declare.is_none() || state.length.is_some()) {
            // Nothing new to record.
            return match cut {
                Some(e) => Err(Error::Body(e)),
                None => self.appended(up, stored, length).await,
            };
        }
        if let Some((_, want)) = &checksum
            && staged.checksum.as_ref() != Some(want)
        {
            return Err(Error::BadDigest(
                "The body does not match the Upload-Checksum given.".into(),
            ));
        }
        if length.is_some_and(|l| new_offset > l) {
            return Err(past_length());
        }
        let file = format!("{}.{}", n.get(), random_hex(6));
        let part = PartRecord {
            size: staged.size,
            md5: staged.md5,
            file: file.clone(),
            modified: now_millis(),
            checksum: alg
                .zip(staged.checksum.clone())
                .map(|(algorithm, value)| Checksum { algorithm, value }),
            length: declare.or_else(|| merge.and_then(|(_, p)| p.length)),
        };
        if let Err(e) = staged.commit(&file).await {
            return Err(self.gone_or(id, e.into()).await);
        }
        let replaces = merge.map(|(_, p)| p.file.as_str());
        let recorded = self.meta.append_part(id, n, &part, replaces).await;
        if !matches!(recorded, Ok(AppendPart::Recorded(_))) {
            let _ = self.disk.remove_file(id, &file).await;
        }
        match recorded? {
            AppendPart::Recorded(old) => {
                if let Some(old) = old
                    && let Err(e) = self.disk.remove_file(id, &old.file).await
                {
                    tracing::warn!(upload = %id, file = %old.file, error = %e, "merged part file left for the sweep");
                }
            }
            AppendPart::NotOpen => return Err(Error::NoSuchUpload),
            AppendPart::Moved => {
                let now = self.meta.list_parts(id, None, PART_PAGE).await?;
                return Err(Error::OffsetMismatch(now.iter().map(|(_, p)| p.size).sum()));
            }
        }
        match cut {
            Some(e) => Err(Error::Body(e)),
            None => self.appended(up, new_offset, length).await,
        }
    }

    /// Publishes the concatenation of `owner`'s finished partial uploads `partials`, in order
    /// (`concat`: the list as the client gave it, answered back on HEAD),
    /// as bucket/key without copying a byte: their part files are linked into a new upload
    /// (written in order, its length their sum), which is completed; the partial uploads then
    /// end. A partial upload of another owner is `NoSuchUpload`, like a missing one.
    pub async fn concat_append(
        &self,
        owner: &str,
        bucket: &str,
        key: &str,
        headers: ObjectHeaders,
        metadata: String,
        (partials, concat): (&[UploadId], &str),
    ) -> Result<(UploadRecord, Completed)> {
        let mut sources = Vec::with_capacity(partials.len());
        let mut length = 0u64;
        for id in partials {
            let st = self.append_state(id, Some(owner)).await?;
            if st.done || !st.upload.append.as_ref().is_some_and(|a| a.partial) {
                return Err(Error::InvalidArgument(format!(
                    "{id} is not an unfinished partial upload"
                )));
            }
            if st.length != Some(st.offset) {
                return Err(Error::InvalidArgument(format!(
                    "the partial upload {id} is not finished"
                )));
            }
            length += st.offset;
            sources.push((st.upload, st.parts));
        }
        let count: usize = sources.iter().map(|(_, p)| p.len()).sum();
        if count > usize::from(PartNumber::MAX) || length > self.append_max_size() {
            return Err(Error::EntityTooLarge);
        }
        let info = AppendInfo {
            length: Some(length),
            metadata,
            partial: false,
            concat: Some(concat.to_owned()),
        };
        let up = self
            .init_with(owner, bucket, key, headers, None, Some(info))
            .await?;
        let linked = async {
            let mut n = PartNumber::FIRST;
            for (src, parts) in &sources {
                let mut names = Vec::with_capacity(parts.len());
                let mut records = Vec::with_capacity(parts.len());
                for (_, p) in parts {
                    let file = format!("{}.{}", n.get(), random_hex(6));
                    names.push((p.file.clone(), file.clone()));
                    records.push((
                        n,
                        PartRecord {
                            file,
                            length: None,
                            ..p.clone()
                        },
                    ));
                    n = n.next().unwrap_or(n);
                }
                self.disk.link_as(&src.id, &names, &up.id).await?;
                for (n, rec) in &records {
                    if self.meta.append_part(&up.id, *n, rec, None).await?
                        != AppendPart::Recorded(None)
                    {
                        return Err(Error::NoSuchUpload);
                    }
                }
            }
            self.finish_append(&up).await
        }
        .await;
        let done = match linked {
            Ok(done) => done,
            Err(e) => {
                let _ = self.abort(&up).await;
                return Err(e);
            }
        };
        for (src, _) in &sources {
            if let Err(e) = self.abort(src).await {
                tracing::warn!(upload = %src.id, error = %e, "concatenated partial upload left for expiry");
            }
        }
        Ok((up, done))
    }

    async fn appended(
        &self,
        up: &UploadRecord,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Appended> {
        let partial = up.append.as_ref().is_some_and(|a| a.partial);
        let completed = if length == Some(offset) && !partial {
            Some(self.finish_append(up).await?)
        } else {
            None
        };
        Ok(Appended { offset, completed })
    }

    /// Publishes the open upload `up` written in order, all its parts in order. When it was
    /// created with the content's SHA-256 (`filehash`), the assembled bytes must match it and
    /// the file then enters the unique file table, as a file of the note's API does.
    pub(super) async fn finish_append(&self, up: &UploadRecord) -> Result<Completed> {
        let mut parts = self.meta.list_parts(&up.id, None, PART_PAGE).await?;
        if parts.is_empty() {
            // An empty file (Upload-Length: 0) is one empty part: an object has at least one.
            parts.push(self.empty_part(&up.id).await?);
        }
        let listed = parts
            .iter()
            .map(|(n, p)| ListedPart {
                number: *n,
                etag: hex::encode(p.md5),
                checksum: None,
            })
            .collect();
        let hash = content_hash(&up.headers);
        let checks = CompleteChecks {
            content: hash.clone(),
            ..CompleteChecks::default()
        };
        let done = self
            .complete(
                &up.id,
                &up.bucket,
                &up.key,
                listed,
                &checks,
                &WriteCondition::NONE,
            )
            .await?;
        if let Some(hash) = &hash {
            let size = parts.iter().map(|(_, p)| p.size).sum();
            self.record_file(hash, &up.bucket, &up.key, size).await?;
        }
        Ok(done)
    }
}

impl Uploads {
    /// Records an empty part 1 for the upload `id`, which has none.
    async fn empty_part(&self, id: &UploadId) -> Result<(PartNumber, PartRecord)> {
        let body: BodyStream = Box::pin(futures_util::stream::empty());
        let staged = self
            .write_with(id, body, 0, None, self.admit(Some(0))?, false)
            .await?;
        let file = format!("1.{}", random_hex(6));
        let part = PartRecord {
            size: 0,
            md5: staged.md5,
            file: file.clone(),
            modified: now_millis(),
            checksum: None,
            length: None,
        };
        staged.commit(&file).await?;
        match self
            .meta
            .append_part(id, PartNumber::FIRST, &part, None)
            .await?
        {
            AppendPart::Recorded(_) => Ok((PartNumber::FIRST, part)),
            AppendPart::NotOpen => Err(Error::NoSuchUpload),
            AppendPart::Moved => Err(Error::OffsetMismatch(0)),
        }
    }
}

fn past_length() -> Error {
    Error::InvalidArgument("The body goes past the upload's length.".into())
}

/// A part's own file could not be read back to merge it with the next write.
#[derive(Debug, thiserror::Error)]
#[error("reading the last part to merge it: {0}")]
struct StoredPartUnreadable(std::io::Error);

/// Enough for every part of an upload (10,000).
const PART_PAGE: usize = 10_000;
