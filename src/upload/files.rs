//! The rules behind the design note's file API, which its front end (`legacy`) only translates:
//!
//! - the **unique file table**: content hash → the one stored copy. Only a SHA-256 that the
//!   server itself verified over the whole file at Complete keys it; MD5 and SHA-1 `filehash`es
//!   still check a Complete but never reach the table (a collision must not hand out a file).
//! - **instant upload (秒传) with proof of possession**: knowing a hash proves nothing, so init
//!   answers every SHA-256 `filehash` with a challenge (a nonce and random byte ranges inside the
//!   announced size) without reading the table, whether or not the content is stored. A caller
//!   that answers with SHA-256(nonce ‖ the bytes of those ranges) gets the stored copy linked
//!   under its own name; any other answer, and content that is not stored, get the same "send
//!   the chunks" outcome, no sooner than [`PROOF_FLOOR`] after the request. Challenges live in
//!   the state store: single use, [`CHALLENGE_TTL`], at most [`CHALLENGES_PER_OWNER`] per owner.
//! - the **stale-entry clean-up**: an entry is dropped only when its object is gone or holds
//!   other content now, never because a caller announced another size.
//! - the **resumable lookup**: a caller's open upload of the same content, found by its geometry.

use std::time::Duration;

use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{CompleteChecks, Completed, Error, ListedPart, Result, Uploads, WriteCondition};
use crate::model::checksum::{ContentAlgorithm, ContentHash};
use crate::model::{
    ChallengeRecord, FileRecord, Millis, ObjectHeaders, ObjectRecord, PartNumber, UploadRecord,
    UploadState, now_millis, random_hex,
};
use crate::store::UploadCursor;

/// Metadata names (x-amz-meta-*) kept on the file API's uploads and objects.
pub const META_HASH: &str = "filehash";
pub const META_SIZE: &str = "filesize";
pub const META_CHUNK: &str = "chunksize";

/// How long a challenge can be answered: reading a few ranges of a file takes a client moments.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(600);
/// Open challenges kept per owner; a new one beyond that replaces the one expiring first.
pub const CHALLENGES_PER_OWNER: usize = 16;
/// Ranges per challenge, and the most bytes in each.
const CHALLENGE_RANGES: usize = 3;
const CHALLENGE_RANGE_LEN: u64 = 64 << 10;
/// An answer to a proof is sent no sooner than this after the request, so that reading the
/// stored ranges (only when the content exists) does not show in the timing.
pub const PROOF_FLOOR: Duration = Duration::from_millis(100);

/// An upload's chunk geometry, from the metadata the file API's init gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub hash: ContentHash,
    pub size: u64,
    pub chunk: u64,
    pub count: u32,
}

impl Geometry {
    pub fn new(hash: ContentHash, size: u64, chunk: u64) -> Self {
        Self {
            hash,
            size,
            chunk,
            count: chunk_count(size, chunk),
        }
    }

    pub fn of(up: &UploadRecord) -> Option<Self> {
        let meta = |n: &str| {
            up.headers
                .user
                .get(n)
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        let hash = ContentHash::parse(meta(META_HASH)?)?;
        let size = meta(META_SIZE)?.parse().ok()?;
        let chunk = meta(META_CHUNK)?.parse().ok()?;
        Some(Self::new(hash, size, chunk))
    }

    /// The metadata an upload of this geometry carries (and its object keeps).
    pub fn headers(&self) -> ObjectHeaders {
        let mut headers = ObjectHeaders::default();
        let user = &mut headers.user;
        user.insert(META_HASH.into(), self.hash.canonical().into_bytes());
        user.insert(META_SIZE.into(), self.size.to_string().into_bytes());
        user.insert(META_CHUNK.into(), self.chunk.to_string().into_bytes());
        headers
    }

    /// Size of chunk `index` (1-based): every chunk but the last is exactly `chunk`.
    pub fn expected(&self, index: u32) -> u64 {
        if index < self.count {
            self.chunk
        } else {
            self.size - self.chunk * u64::from(self.count - 1)
        }
    }
}

/// Whether `name` may name a user file (`<user>/<name>` in the legacy bucket): not empty, at
/// most 512 bytes, no NUL, not starting with `/`. The note's API and tus share the rule.
pub fn valid_filename(name: &str) -> bool {
    !name.is_empty() && name.len() <= 512 && !name.contains('\0') && !name.starts_with('/')
}

pub fn chunk_count(size: u64, chunk: u64) -> u32 {
    u32::try_from(size.div_ceil(chunk).max(1)).unwrap_or(u32::MAX)
}

/// The content hash an object's metadata names.
pub fn content_hash(h: &ObjectHeaders) -> Option<ContentHash> {
    h.user
        .get(META_HASH)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(ContentHash::parse)
}

/// What a caller must prove it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: String,
    /// `[start, end)` byte ranges, in the order the proof hashes them.
    pub ranges: Vec<(u64, u64)>,
    pub expires: Millis,
}

/// The answer a holder of the content gives: hex SHA-256 of the nonce (its hex text) followed
/// by the bytes of each range in order.
pub fn proof_of(nonce: &str, ranges: impl IntoIterator<Item = impl AsRef<[u8]>>) -> String {
    let mut h = Sha256::new();
    h.update(nonce.as_bytes());
    for r in ranges {
        h.update(r.as_ref());
    }
    hex::encode(h.finalize())
}

fn random_ranges(size: u64) -> Vec<(u64, u64)> {
    if size == 0 {
        return Vec::new();
    }
    let len = size.min(CHALLENGE_RANGE_LEN);
    (0..CHALLENGE_RANGES)
        .map(|_| {
            let start = rand::random_range(0..=size - len);
            (start, start + len)
        })
        .collect()
}

/// What an init of the file API leads to: the upload to send chunks to (new, or the caller's
/// open upload of the same content, resumed), the chunks it already holds, and the challenge an
/// instant upload must answer.
#[derive(Debug)]
pub struct FileUpload {
    pub upload: UploadRecord,
    pub geometry: Geometry,
    pub present: Chunks,
    pub challenge: Option<Challenge>,
}

/// The chunks an upload holds (1-based indexes, ascending) and their bytes in all.
#[derive(Debug, Default)]
pub struct Chunks {
    pub indexes: Vec<u32>,
    pub bytes: u64,
}

impl Uploads {
    /// Starts `owner`'s upload of content `g` as bucket/key, or resumes the owner's open upload of
    /// the same content anywhere under `prefix`, and challenges it for an instant upload. The
    /// bucket is made (for `bucket_owner`) by the first start that needs it. The unique file
    /// table is not read: the answer is the same whether or not the content is stored.
    pub async fn start_file(
        &self,
        owner: &str,
        (bucket, bucket_owner): (&str, &str),
        (prefix, key): (&str, &str),
        g: Geometry,
    ) -> Result<FileUpload> {
        let max = u64::from(PartNumber::MAX);
        if g.count > u32::from(PartNumber::MAX) || g.size > self.limits.max_part_size * max {
            return Err(Error::FileTooLarge {
                size: g.size,
                chunk: g.chunk,
            });
        }
        match self.create_bucket(bucket_owner, bucket).await {
            Ok(()) | Err(Error::BucketAlreadyOwnedByYou | Error::BucketAlreadyExists) => {}
            Err(e) => return Err(e),
        }
        let (upload, present) = match self.find_open(owner, bucket, prefix, &g).await? {
            Some(up) => {
                let present = self.chunks(&up).await?;
                (up, present)
            }
            None => {
                let up = self.init(owner, bucket, key, g.headers(), None).await?;
                (up, Chunks::default())
            }
        };
        let challenge = self.challenge(owner, &upload, &g.hash, g.size).await?;
        Ok(FileUpload {
            upload,
            geometry: g,
            present,
            challenge,
        })
    }

    /// The chunks the open upload `up` holds.
    pub async fn chunks(&self, up: &UploadRecord) -> Result<Chunks> {
        let (parts, _) = self
            .list_parts(up, None, usize::from(PartNumber::MAX))
            .await?;
        Ok(Chunks {
            indexes: parts.iter().map(|(n, _)| u32::from(n.get())).collect(),
            bytes: parts.iter().map(|(_, p)| p.size).sum(),
        })
    }

    /// Completes the file upload `up` of content `g` once every chunk is there
    /// (`ChunksMissing` otherwise): the assembled bytes must hash to `g.hash` (`BadDigest`, and
    /// the upload stays open), and the file then enters the unique file table.
    pub async fn complete_file(&self, up: &UploadRecord, g: &Geometry) -> Result<Completed> {
        let (parts, _) = self
            .list_parts(up, None, usize::from(PartNumber::MAX))
            .await?;
        let missing: Vec<u32> = (1..=g.count)
            .filter(|i| !parts.iter().any(|(n, _)| u32::from(n.get()) == *i))
            .collect();
        if !missing.is_empty() {
            return Err(Error::ChunksMissing(missing));
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
        let cond = WriteCondition::NONE;
        let checks = CompleteChecks {
            content: Some(g.hash.clone()),
            ..CompleteChecks::default()
        };
        let done = self
            .complete(&up.id, &up.bucket, &up.key, listed, &checks, &cond)
            .await?;
        // The server has just verified the whole file against its hash.
        self.record_file(&g.hash, &up.bucket, &up.key, g.size)
            .await?;
        Ok(done)
    }

    /// The first object under `prefix` of `bucket` whose content is `hash`.
    pub async fn find_file(
        &self,
        bucket: &str,
        prefix: &str,
        hash: &ContentHash,
    ) -> Result<Option<(String, ObjectRecord)>> {
        let mut after: Option<String> = None;
        loop {
            let page = match self
                .list_objects(bucket, prefix, None, after.as_deref(), super::MAX_KEYS)
                .await
            {
                Err(Error::NoSuchBucket) => return Ok(None),
                r => r?,
            };
            if let Some((k, o)) = page
                .items
                .iter()
                .find(|(_, o)| content_hash(&o.headers).as_ref() == Some(hash))
            {
                return Ok(Some((k.clone(), o.clone())));
            }
            if !page.truncated {
                return Ok(None);
            }
            after = page.last;
        }
    }
}

impl Uploads {
    /// `owner`'s open upload under `prefix` of `bucket` with this geometry (the one to resume).
    pub async fn find_open(
        &self,
        owner: &str,
        bucket: &str,
        prefix: &str,
        want: &Geometry,
    ) -> Result<Option<UploadRecord>> {
        let mut cursor = None;
        loop {
            let page = self
                .list_uploads(bucket, prefix, None, cursor, super::MAX_KEYS)
                .await?;
            if let Some(up) = page.items.iter().find(|up| {
                up.owner == owner
                    && up.state == UploadState::Open
                    && Geometry::of(up).as_ref() == Some(want)
            }) {
                return Ok(Some(up.clone()));
            }
            match page.items.last() {
                Some(last) if page.truncated => {
                    cursor = Some(UploadCursor {
                        key: last.key.clone(),
                        upload: Some((last.created, last.id.clone())),
                    });
                }
                _ => return Ok(None),
            }
        }
    }

    /// A challenge for `owner`'s upload `up` of content `hash`, or None when the hash is not a
    /// SHA-256 (such content is never deduplicated). The unique file table is not read: the
    /// answer is the same whether or not the content is stored.
    pub async fn challenge(
        &self,
        owner: &str,
        up: &UploadRecord,
        hash: &ContentHash,
        size: u64,
    ) -> Result<Option<Challenge>> {
        if hash.algorithm != ContentAlgorithm::Sha256 {
            return Ok(None);
        }
        let now = now_millis();
        let expires = now + i64::try_from(CHALLENGE_TTL.as_millis()).unwrap_or(i64::MAX);
        let c = Challenge {
            nonce: random_hex(16),
            ranges: random_ranges(size),
            expires,
        };
        let rec = ChallengeRecord {
            hash: hash.canonical(),
            size,
            ranges: c.ranges.clone(),
            upload: up.id.clone(),
            expires,
        };
        self.meta
            .put_challenge(owner, &c.nonce, &rec, now, CHALLENGES_PER_OWNER)
            .await?;
        Ok(Some(c))
    }

    /// Instant upload: when `proof` answers `owner`'s challenge `nonce` (issued for the upload
    /// `up`) over the bytes of the stored copy of its content, links that copy to `up`'s key,
    /// ends `up`, and returns the new object. None otherwise (wrong proof, a nonce unknown, used,
    /// expired or of another upload, no such content, another size), no sooner than
    /// [`PROOF_FLOOR`] after the call began either way.
    pub async fn prove(
        &self,
        owner: &str,
        up: &UploadRecord,
        nonce: &str,
        proof: &str,
    ) -> Result<Option<ObjectRecord>> {
        let floor = tokio::time::Instant::now() + PROOF_FLOOR;
        let proven = self.proven_copy(owner, up, nonce, proof).await;
        tokio::time::sleep_until(floor).await;
        let Some(source) = proven? else {
            return Ok(None);
        };
        let linked = self
            .link_copy(owner, &source, (&up.bucket, &up.key))
            .await?;
        // The chunks are not needed any more; a Complete racing this keeps the upload (and its
        // answer), which is harmless: the file is there either way.
        if let Err(e) = self.abort(up).await {
            tracing::info!(upload = %up.id, error = %e, "upload left open after an instant upload");
        }
        Ok(Some(linked))
    }

    async fn proven_copy(
        &self,
        owner: &str,
        up: &UploadRecord,
        nonce: &str,
        proof: &str,
    ) -> Result<Option<(String, String, ObjectRecord)>> {
        let Some(c) = self.meta.take_challenge(owner, nonce, now_millis()).await? else {
            return Ok(None);
        };
        let Some(hash) = ContentHash::parse(&c.hash) else {
            return Ok(None);
        };
        if c.upload != up.id || hash.algorithm != ContentAlgorithm::Sha256 {
            return Ok(None);
        }
        let Some((entry, obj)) = self.stored_file(&hash).await? else {
            return Ok(None);
        };
        if obj.size != c.size || c.ranges.iter().any(|&(s, e)| s > e || e > obj.size) {
            return Ok(None);
        }
        // proof_of, over the stored bytes read in place.
        let mut h = Sha256::new();
        h.update(nonce.as_bytes());
        for &(start, end) in &c.ranges {
            let mut bytes = self.read(&obj, start, end);
            while let Some(chunk) = bytes.next().await {
                h.update(&chunk?);
            }
        }
        let want = hex::encode(h.finalize());
        let ok: bool = want
            .as_bytes()
            .ct_eq(proof.trim().to_ascii_lowercase().as_bytes())
            .into();
        Ok(ok.then_some((entry.bucket, entry.key, obj)))
    }

    /// Links a proven copy under `dst` for `owner` (hard links: one copy on disk).
    async fn link_copy(
        &self,
        owner: &str,
        source: &(String, String, ObjectRecord),
        dst: (&str, &str),
    ) -> Result<ObjectRecord> {
        self.copy_object(owner, (&source.0, &source.1), dst, None, None)
            .await
    }

    /// The table's entry for `hash` and its object, if that object still holds this content.
    /// An entry whose object is gone or holds other content now is dropped (only if it is still
    /// the same entry: a newer one stays).
    async fn stored_file(&self, hash: &ContentHash) -> Result<Option<(FileRecord, ObjectRecord)>> {
        let key = hash.canonical();
        let Some(entry) = self.meta.get_file(&key).await? else {
            return Ok(None);
        };
        let current = match self.object(&entry.bucket, &entry.key).await {
            Ok(o) => Some(o),
            Err(Error::NoSuchKey | Error::NoSuchBucket) => None,
            Err(e) => return Err(e),
        };
        match current {
            Some(o) if o.size == entry.size && content_hash(&o.headers).as_ref() == Some(hash) => {
                Ok(Some((entry, o)))
            }
            _ => {
                self.meta.delete_file(&key, &entry).await?;
                Ok(None)
            }
        }
    }

    /// Records the object at bucket/key, just completed with its whole-file `hash` verified by
    /// the server, as the stored copy of that content. Only SHA-256 keys the table.
    pub async fn record_file(
        &self,
        hash: &ContentHash,
        bucket: &str,
        key: &str,
        size: u64,
    ) -> Result<()> {
        if hash.algorithm != ContentAlgorithm::Sha256 {
            return Ok(());
        }
        let rec = FileRecord {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size,
            created: now_millis(),
        };
        Ok(self.meta.put_file(&hash.canonical(), &rec).await?)
    }

    /// Deletes the object at bucket/key and forgets it in the file table if the table named it
    /// (other copies linked from it stay; the next proof finds no entry and the content is
    /// uploaded again, which records it again).
    pub async fn delete_file(&self, bucket: &str, key: &str, obj: &ObjectRecord) -> Result<()> {
        self.delete_object(&obj.owner, bucket, key).await?;
        let Some(hash) = content_hash(&obj.headers) else {
            return Ok(());
        };
        let table_key = hash.canonical();
        if let Some(entry) = self.meta.get_file(&table_key).await?
            && entry.bucket == bucket
            && entry.key == key
        {
            self.meta.delete_file(&table_key, &entry).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_geometry() {
        assert_eq!(chunk_count(0, 5), 1);
        assert_eq!(chunk_count(10, 5), 2);
        assert_eq!(chunk_count(11, 5), 3);
        let g = Geometry::new(ContentHash::parse(&"0".repeat(64)).unwrap(), 11, 5);
        assert_eq!(g.count, 3);
        assert_eq!((g.expected(1), g.expected(2), g.expected(3)), (5, 5, 1));
    }

    #[test]
    fn challenge_ranges_lie_inside_the_content() {
        assert!(random_ranges(0).is_empty());
        for size in [1, 100, 64 << 10, (64 << 10) + 1, 5 << 30] {
            let r = random_ranges(size);
            assert_eq!(r.len(), CHALLENGE_RANGES);
            for (s, e) in r {
                assert!(s < e && e <= size && e - s == size.min(CHALLENGE_RANGE_LEN));
            }
        }
        // Unpredictable: two challenges for a large file differ.
        assert_ne!(random_ranges(1 << 40), random_ranges(1 << 40));
    }

    #[test]
    fn proof_is_sha256_of_nonce_then_ranges() {
        let p = proof_of("ab", [&b"cd"[..], b"e"]);
        assert_eq!(p, hex::encode(Sha256::digest(b"abcde")));
    }
}
