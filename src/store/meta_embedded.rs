//! Upload state in an embedded redb database in the data dir: the default when no Redis is
//! configured, so one gateway runs on a fresh machine with nothing else installed. Every trait
//! method is one redb write transaction (serializable, fsynced on commit), which gives the
//! atomicity the contract asks for. Records are stored as the same JSON the Redis store keeps.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase as _, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::meta::{
    AbortUpload, AppendPart, BeginComplete, DeleteBucket, MetaStore, PutPart, SealBucket,
    UploadCursor,
};
use super::{StoreError, StoreResult};
use crate::model::event::{EventRecord, Notice, Settle};
use crate::model::{
    BucketRecord, ChallengeRecord, CompletedResult, FileRecord, Millis, ObjectRecord, PartNumber,
    PartRecord, UploadId, UploadRecord, UploadState,
};

mod events;

use self::events::{DEAD_EVENTS, EVENT_QUEUES, EVENT_SEQ, EVENTS};

const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets_v1");
/// (bucket, key) → ObjectRecord
const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects_v1");
/// upload id → UploadRecord
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads_v1");
/// (upload id, part number) → PartRecord
const PARTS: TableDefinition<(&str, u16), &[u8]> = TableDefinition::new("parts_v1");
/// (bucket, key, created, upload id) for Open and Completing uploads: the ListMultipartUploads order.
const UPLOAD_INDEX: TableDefinition<(&str, &str, i64, &str), ()> =
    TableDefinition::new("upload_index_v1");
/// content hash → FileRecord (the unique file table)
const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files_v1");
/// (owner, upload id) → reserved at: the uploads counted against each owner's cap.
const OWNER_UPLOADS: TableDefinition<(&str, &str), i64> = TableDefinition::new("owner_uploads_v1");
/// (owner, nonce) → ChallengeRecord: open instant-upload challenges.
const CHALLENGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("challenges_v1");
/// bucket name → sealed at (millis): buckets being deleted (`seal_bucket`).
const SEALED: TableDefinition<&str, i64> = TableDefinition::new("sealed_buckets_v1");
/// name → secret shared by every gateway on this store.
const SECRETS: TableDefinition<&str, &str> = TableDefinition::new("secrets_v1");

pub struct EmbeddedMetaStore {
    db: Arc<Database>,
}

fn be(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

fn enc<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn dec<T: DeserializeOwned>(v: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// redb's own page cache. Its default (1 GiB) lets the gateway's memory grow with its state up to
/// that much; the file's pages stay in the OS page cache anyway, so a small cache of the hot
/// pages (tree roots and branches) costs little speed and keeps the resident size flat. Measured
/// (release `mpgw bench`, 2 cores): 4 MiB made Complete of 10000 parts ~25% slower than 16 MiB
/// (42–53 ms against 38–42); 8 MiB is within noise of 16 (40–45 ms) and fills sooner, so the soak
/// test's RSS rose 15 MiB after warm-up instead of 21.
const CACHE_SIZE: usize = 8 << 20;

impl EmbeddedMetaStore {
    pub fn open(path: &Path) -> StoreResult<Self> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_SIZE)
            .create(path)
            .map_err(be)?;
        // Create every table up front so read transactions never meet a missing one.
        let tx = db.begin_write().map_err(be)?;
        {
            tx.open_table(BUCKETS).map_err(be)?;
            tx.open_table(OBJECTS).map_err(be)?;
            tx.open_table(UPLOADS).map_err(be)?;
            tx.open_table(PARTS).map_err(be)?;
            tx.open_table(UPLOAD_INDEX).map_err(be)?;
            tx.open_table(FILES).map_err(be)?;
            tx.open_table(OWNER_UPLOADS).map_err(be)?;
            tx.open_table(CHALLENGES).map_err(be)?;
            tx.open_table(SECRETS).map_err(be)?;
            tx.open_table(SEALED).map_err(be)?;
            tx.open_table(EVENTS).map_err(be)?;
            tx.open_table(DEAD_EVENTS).map_err(be)?;
            tx.open_table(EVENT_SEQ).map_err(be)?;
            tx.open_table(EVENT_QUEUES).map_err(be)?;
        }
        tx.commit().map_err(be)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` in one write transaction on a blocking thread; commits when it returns Ok.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(be)?;
            let out = f(&tx)?;
            tx.commit().map_err(be)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    /// `write` without waiting for the disk: what it changes may be lost with a crash until
    /// the next ordinary write commits. For the deliverer's claims and settlements, where a
    /// lost change only means an event is sent again (at least once), so that delivering
    /// events costs the object writes no fsyncs.
    async fn write_lazy<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut tx = db.begin_write().map_err(be)?;
            tx.set_durability(redb::Durability::None).map_err(be)?;
            let out = f(&tx)?;
            tx.commit().map_err(be)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(be)?;
            f(&tx)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

/// Every record of a table, decoded.
fn decode_all<K: redb::Key + 'static, T: DeserializeOwned>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<K, &'static [u8]>,
) -> StoreResult<Vec<T>> {
    let t = tx.open_table(table).map_err(be)?;
    let mut out = Vec::new();
    for item in t.iter().map_err(be)? {
        out.push(dec(item.map_err(be)?.1.value())?);
    }
    Ok(out)
}

fn get_upload_in(tx: &WriteTransaction, id: &str) -> StoreResult<Option<UploadRecord>> {
    let t = tx.open_table(UPLOADS).map_err(be)?;
    let v = t.get(id).map_err(be)?;
    v.map(|g| dec(g.value())).transpose()
}

fn put_upload_in(tx: &WriteTransaction, rec: &UploadRecord) -> StoreResult<()> {
    let mut t = tx.open_table(UPLOADS).map_err(be)?;
    t.insert(rec.id.as_str(), enc(rec)?.as_slice())
        .map_err(be)?;
    Ok(())
}

fn parts_in(tx: &WriteTransaction, id: &str) -> StoreResult<Vec<(PartNumber, PartRecord)>> {
    let t = tx.open_table(PARTS).map_err(be)?;
    let mut out = Vec::new();
    for item in t.range((id, 0u16)..=(id, u16::MAX)).map_err(be)? {
        let (k, v) = item.map_err(be)?;
        let n = PartNumber::new(u32::from(k.value().1))
            .ok_or_else(|| StoreError::Corrupt("part number".into()))?;
        out.push((n, dec(v.value())?));
    }
    Ok(out)
}

fn drop_parts_in(tx: &WriteTransaction, id: &str) -> StoreResult<()> {
    let mut t = tx.open_table(PARTS).map_err(be)?;
    t.retain_in((id, 0u16)..=(id, u16::MAX), |_, _| false)
        .map_err(be)?;
    Ok(())
}

/// Refuses a write into a bucket being deleted.
fn check_unsealed(tx: &WriteTransaction, bucket: &str) -> StoreResult<()> {
    let t = tx.open_table(SEALED).map_err(be)?;
    if t.get(bucket).map_err(be)?.is_some() {
        return Err(StoreError::BucketGone);
    }
    Ok(())
}

/// Whether `bucket` holds an object.
fn has_objects(tx: &WriteTransaction, bucket: &str) -> StoreResult<bool> {
    let objects = tx.open_table(OBJECTS).map_err(be)?;
    Ok(objects
        .range((bucket, "")..)
        .map_err(be)?
        .next()
        .transpose()
        .map_err(be)?
        .is_some_and(|(k, _)| k.value().0 == bucket))
}

fn unindex_in(tx: &WriteTransaction, rec: &UploadRecord) -> StoreResult<()> {
    let mut t = tx.open_table(UPLOAD_INDEX).map_err(be)?;
    t.remove((
        rec.bucket.as_str(),
        rec.key.as_str(),
        rec.created,
        rec.id.as_str(),
    ))
    .map_err(be)?;
    Ok(())
}

#[async_trait]
impl MetaStore for EmbeddedMetaStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn create_bucket(&self, rec: &BucketRecord) -> StoreResult<Option<BucketRecord>> {
        let rec = rec.clone();
        self.write(move |tx| {
            let mut t = tx.open_table(BUCKETS).map_err(be)?;
            if let Some(old) = t.get(rec.name.as_str()).map_err(be)? {
                return Ok(Some(dec(old.value())?));
            }
            t.insert(rec.name.as_str(), enc(&rec)?.as_slice())
                .map_err(be)?;
            Ok(None)
        })
        .await
    }

    async fn get_bucket(&self, name: &str) -> StoreResult<Option<BucketRecord>> {
        let name = name.to_owned();
        self.read(move |tx| {
            let t = tx.open_table(BUCKETS).map_err(be)?;
            let v = t.get(name.as_str()).map_err(be)?;
            v.map(|g| dec(g.value())).transpose()
        })
        .await
    }

    async fn update_bucket(&self, rec: &BucketRecord) -> StoreResult<bool> {
        let rec = rec.clone();
        self.write(move |tx| {
            let mut t = tx.open_table(BUCKETS).map_err(be)?;
            if t.get(rec.name.as_str()).map_err(be)?.is_none() {
                return Ok(false);
            }
            t.insert(rec.name.as_str(), enc(&rec)?.as_slice())
                .map_err(be)?;
            Ok(true)
        })
        .await
    }

    async fn list_buckets(&self) -> StoreResult<Vec<BucketRecord>> {
        self.read(|tx| decode_all(tx, BUCKETS)).await
    }

    async fn delete_bucket(&self, name: &str) -> StoreResult<DeleteBucket> {
        let name = name.to_owned();
        self.write(move |tx| {
            let mut buckets = tx.open_table(BUCKETS).map_err(be)?;
            if buckets.get(name.as_str()).map_err(be)?.is_none() {
                return Ok(DeleteBucket::NotFound);
            }
            if has_objects(tx, &name)? {
                return Ok(DeleteBucket::NotEmpty);
            }
            let index = tx.open_table(UPLOAD_INDEX).map_err(be)?;
            let first = index
                .range((name.as_str(), "", i64::MIN, "")..)
                .map_err(be)?
                .next()
                .transpose()
                .map_err(be)?;
            if first.is_some_and(|(k, _)| k.value().0 == name) {
                return Ok(DeleteBucket::NotEmpty);
            }
            buckets.remove(name.as_str()).map_err(be)?;
            tx.open_table(SEALED)
                .map_err(be)?
                .remove(name.as_str())
                .map_err(be)?;
            Ok(DeleteBucket::Deleted)
        })
        .await
    }

    async fn seal_bucket(&self, name: &str, at: Millis) -> StoreResult<SealBucket> {
        let name = name.to_owned();
        self.write(move |tx| {
            let buckets = tx.open_table(BUCKETS).map_err(be)?;
            if buckets.get(name.as_str()).map_err(be)?.is_none() {
                return Ok(SealBucket::NotFound);
            }
            if has_objects(tx, &name)? {
                return Ok(SealBucket::NotEmpty);
            }
            tx.open_table(SEALED)
                .map_err(be)?
                .insert(name.as_str(), at)
                .map_err(be)?;
            Ok(SealBucket::Sealed)
        })
        .await
    }

    async fn sealed_buckets(&self) -> StoreResult<Vec<(String, Millis)>> {
        self.read(move |tx| {
            let t = tx.open_table(SEALED).map_err(be)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(be)? {
                let (k, v) = row.map_err(be)?;
                out.push((k.value().to_owned(), v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn unseal_bucket(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.write(move |tx| {
            tx.open_table(SEALED)
                .map_err(be)?
                .remove(name.as_str())
                .map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn get_object(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectRecord>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.read(move |tx| {
            let t = tx.open_table(OBJECTS).map_err(be)?;
            let v = t.get((bucket.as_str(), key.as_str())).map_err(be)?;
            v.map(|g| dec(g.value())).transpose()
        })
        .await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>> {
        let (bucket, key, rec) = (bucket.to_owned(), key.to_owned(), rec.clone());
        let notice = notice.map(|n| (n.event.clone(), n.limit));
        self.write(move |tx| {
            check_unsealed(tx, &bucket)?;
            if let Some((event, limit)) = &notice {
                // Before the object: an error drops the whole transaction anyway.
                let notice = Notice {
                    event,
                    limit: *limit,
                };
                events::record_in(tx, &bucket, notice)?;
            }
            let mut t = tx.open_table(OBJECTS).map_err(be)?;
            let old = t
                .insert((bucket.as_str(), key.as_str()), enc(&rec)?.as_slice())
                .map_err(be)?;
            old.map(|g| dec(g.value())).transpose()
        })
        .await
    }

    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        blob: &UploadId,
        rec: &ObjectRecord,
    ) -> StoreResult<bool> {
        let (bucket, key, blob, rec) =
            (bucket.to_owned(), key.to_owned(), blob.clone(), rec.clone());
        self.write(move |tx| {
            let mut t = tx.open_table(OBJECTS).map_err(be)?;
            let current: Option<ObjectRecord> = t
                .get((bucket.as_str(), key.as_str()))
                .map_err(be)?
                .map(|g| dec(g.value()))
                .transpose()?;
            if current.is_none_or(|c| c.blob != blob) {
                return Ok(false);
            }
            t.insert((bucket.as_str(), key.as_str()), enc(&rec)?.as_slice())
                .map_err(be)?;
            Ok(true)
        })
        .await
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let notice = notice.map(|n| (n.event.clone(), n.limit));
        self.write(move |tx| {
            let mut t = tx.open_table(OBJECTS).map_err(be)?;
            let old = t.remove((bucket.as_str(), key.as_str())).map_err(be)?;
            let old: Option<ObjectRecord> = old.map(|g| dec(g.value())).transpose()?;
            if let (Some(_), Some((event, limit))) = (&old, &notice) {
                // OutboxFull drops the transaction: the record stays.
                let notice = Notice {
                    event,
                    limit: *limit,
                };
                events::record_in(tx, &bucket, notice)?;
            }
            Ok(old)
        })
        .await
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, ObjectRecord)>> {
        let (bucket, prefix, after) = (
            bucket.to_owned(),
            prefix.to_owned(),
            after.map(str::to_owned),
        );
        self.read(move |tx| {
            let t = tx.open_table(OBJECTS).map_err(be)?;
            let start = match &after {
                Some(a) if a.as_str() > prefix.as_str() => a.as_str(),
                _ => prefix.as_str(),
            };
            let mut out = Vec::new();
            for item in t.range((bucket.as_str(), start)..).map_err(be)? {
                let (k, v) = item.map_err(be)?;
                let (b, key) = k.value();
                if b != bucket || !key.starts_with(prefix.as_str()) || out.len() >= limit {
                    break;
                }
                if after.as_deref().is_some_and(|a| key <= a) {
                    continue;
                }
                out.push((key.to_owned(), dec(v.value())?));
            }
            Ok(out)
        })
        .await
    }

    async fn object_blobs(&self) -> StoreResult<Vec<UploadId>> {
        let objects: Vec<ObjectRecord> = self.read(|tx| decode_all(tx, OBJECTS)).await?;
        Ok(objects.into_iter().map(|o| o.blob).collect())
    }

    async fn create_upload(&self, rec: &UploadRecord) -> StoreResult<()> {
        let rec = rec.clone();
        self.write(move |tx| {
            check_unsealed(tx, &rec.bucket)?;
            put_upload_in(tx, &rec)?;
            let mut t = tx.open_table(UPLOAD_INDEX).map_err(be)?;
            t.insert(
                (
                    rec.bucket.as_str(),
                    rec.key.as_str(),
                    rec.created,
                    rec.id.as_str(),
                ),
                (),
            )
            .map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn get_upload(&self, id: &UploadId) -> StoreResult<Option<UploadRecord>> {
        let id = id.clone();
        self.read(move |tx| {
            let t = tx.open_table(UPLOADS).map_err(be)?;
            let v = t.get(id.as_str()).map_err(be)?;
            v.map(|g| dec(g.value())).transpose()
        })
        .await
    }

    async fn put_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
    ) -> StoreResult<PutPart> {
        let (id, part) = (id.clone(), part.clone());
        self.write(move |tx| {
            match get_upload_in(tx, id.as_str())? {
                Some(u) if u.state == UploadState::Open => {}
                _ => return Ok(PutPart::NotOpen),
            }
            let mut t = tx.open_table(PARTS).map_err(be)?;
            let old = t
                .insert((id.as_str(), n.get()), enc(&part)?.as_slice())
                .map_err(be)?;
            Ok(PutPart::Recorded(old.map(|g| dec(g.value())).transpose()?))
        })
        .await
    }

    async fn append_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
        replaces: Option<&str>,
    ) -> StoreResult<AppendPart> {
        let (id, part) = (id.clone(), part.clone());
        let replaces = replaces.map(str::to_owned);
        self.write(move |tx| {
            match get_upload_in(tx, id.as_str())? {
                Some(u) if u.state == UploadState::Open => {}
                _ => return Ok(AppendPart::NotOpen),
            }
            let mut t = tx.open_table(PARTS).map_err(be)?;
            let get =
                |t: &redb::Table<(&str, u16), &[u8]>, k: u16| -> StoreResult<Option<PartRecord>> {
                    t.get((id.as_str(), k))
                        .map_err(be)?
                        .map(|g| dec(g.value()))
                        .transpose()
                };
            if n.get() < u16::MAX && get(&t, n.get() + 1)?.is_some() {
                return Ok(AppendPart::Moved);
            }
            let old = get(&t, n.get())?;
            let in_place = match (&replaces, &old) {
                (None, None) => n.get() == 1 || get(&t, n.get() - 1)?.is_some(),
                (Some(file), Some(o)) => &o.file == file,
                _ => false,
            };
            if !in_place {
                return Ok(AppendPart::Moved);
            }
            t.insert((id.as_str(), n.get()), enc(&part)?.as_slice())
                .map_err(be)?;
            Ok(AppendPart::Recorded(old))
        })
        .await
    }

    async fn list_parts(
        &self,
        id: &UploadId,
        after: Option<PartNumber>,
        limit: usize,
    ) -> StoreResult<Vec<(PartNumber, PartRecord)>> {
        let id = id.clone();
        self.read(move |tx| {
            let t = tx.open_table(PARTS).map_err(be)?;
            let from = after.map_or(0, |n| n.get().saturating_add(1));
            let mut out = Vec::new();
            for item in t
                .range((id.as_str(), from)..=(id.as_str(), u16::MAX))
                .map_err(be)?
                .take(limit)
            {
                let (k, v) = item.map_err(be)?;
                let n = PartNumber::new(u32::from(k.value().1))
                    .ok_or_else(|| StoreError::Corrupt("part number".into()))?;
                out.push((n, dec(v.value())?));
            }
            Ok(out)
        })
        .await
    }

    async fn begin_complete(
        &self,
        id: &UploadId,
        now: Millis,
        stale_before: Millis,
    ) -> StoreResult<BeginComplete> {
        let id = id.clone();
        self.write(move |tx| {
            let Some(mut rec) = get_upload_in(tx, id.as_str())? else {
                return Ok(BeginComplete::NotFound);
            };
            match rec.state {
                UploadState::Completed => return Ok(BeginComplete::Completed(rec)),
                UploadState::Completing
                    if rec.completing_since.is_some_and(|t| t >= stale_before) =>
                {
                    return Ok(BeginComplete::Busy(rec));
                }
                UploadState::Open | UploadState::Completing => {}
            }
            rec.state = UploadState::Completing;
            rec.completing_since = Some(now);
            put_upload_in(tx, &rec)?;
            let parts = parts_in(tx, id.as_str())?;
            Ok(BeginComplete::Started(rec, parts))
        })
        .await
    }

    async fn reopen(&self, id: &UploadId) -> StoreResult<()> {
        let id = id.clone();
        self.write(move |tx| {
            if let Some(mut rec) = get_upload_in(tx, id.as_str())?
                && rec.state == UploadState::Completing
            {
                rec.state = UploadState::Open;
                rec.completing_since = None;
                put_upload_in(tx, &rec)?;
            }
            Ok(())
        })
        .await
    }

    async fn finish_complete(&self, id: &UploadId, result: &CompletedResult) -> StoreResult<()> {
        let (id, result) = (id.clone(), result.clone());
        self.write(move |tx| {
            let Some(mut rec) = get_upload_in(tx, id.as_str())? else {
                return Ok(());
            };
            if rec.state != UploadState::Completing {
                return Ok(());
            }
            rec.state = UploadState::Completed;
            rec.completing_since = None;
            rec.completed = Some(result);
            put_upload_in(tx, &rec)?;
            drop_parts_in(tx, id.as_str())?;
            unindex_in(tx, &rec)
        })
        .await
    }

    async fn abort_upload(&self, id: &UploadId) -> StoreResult<AbortUpload> {
        let id = id.clone();
        self.write(move |tx| {
            let rec = match get_upload_in(tx, id.as_str())? {
                None => return Ok(AbortUpload::NotFound),
                Some(r) => r,
            };
            match rec.state {
                UploadState::Completed => return Ok(AbortUpload::NotFound),
                UploadState::Completing => return Ok(AbortUpload::Busy),
                UploadState::Open => {}
            }
            let parts = parts_in(tx, id.as_str())?;
            drop_parts_in(tx, id.as_str())?;
            unindex_in(tx, &rec)?;
            tx.open_table(UPLOADS)
                .map_err(be)?
                .remove(id.as_str())
                .map_err(be)?;
            Ok(AbortUpload::Aborted(rec, parts))
        })
        .await
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&UploadCursor>,
        limit: usize,
    ) -> StoreResult<Vec<UploadRecord>> {
        let (bucket, prefix, after) = (bucket.to_owned(), prefix.to_owned(), after.cloned());
        self.read(move |tx| {
            let index = tx.open_table(UPLOAD_INDEX).map_err(be)?;
            let uploads = tx.open_table(UPLOADS).map_err(be)?;
            let start = match &after {
                Some(c) if c.key.as_str() > prefix.as_str() => c.key.as_str(),
                _ => prefix.as_str(),
            };
            let mut out = Vec::new();
            for item in index
                .range((bucket.as_str(), start, i64::MIN, "")..)
                .map_err(be)?
            {
                let (k, _) = item.map_err(be)?;
                let (b, key, created, id) = k.value();
                if b != bucket || !key.starts_with(prefix.as_str()) || out.len() >= limit {
                    break;
                }
                if let Some(c) = &after {
                    let past = match &c.upload {
                        None => key > c.key.as_str(),
                        Some((t, uid)) => (key, created, id) > (c.key.as_str(), *t, uid.as_str()),
                    };
                    if !past {
                        continue;
                    }
                }
                if let Some(v) = uploads.get(id).map_err(be)? {
                    out.push(dec(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn all_uploads(&self) -> StoreResult<Vec<UploadRecord>> {
        self.read(|tx| decode_all(tx, UPLOADS)).await
    }

    async fn purge_completed(&self, before: Millis) -> StoreResult<usize> {
        self.write(move |tx| {
            let mut t = tx.open_table(UPLOADS).map_err(be)?;
            let mut n = 0;
            t.retain(|_, v| {
                let old = serde_json::from_slice::<UploadRecord>(v)
                    .ok()
                    .and_then(|r| r.completed)
                    .is_some_and(|c| c.at < before);
                n += usize::from(old);
                !old
            })
            .map_err(be)?;
            Ok(n)
        })
        .await
    }

    async fn reserve_upload(
        &self,
        owner: &str,
        id: &UploadId,
        at: Millis,
        limit: usize,
    ) -> StoreResult<bool> {
        let (owner, id) = (owner.to_owned(), id.clone());
        // One write transaction: count and insert are serialized with every other reservation.
        self.write(move |tx| {
            let mut t = tx.open_table(OWNER_UPLOADS).map_err(be)?;
            if t.get((owner.as_str(), id.as_str())).map_err(be)?.is_some() {
                return Ok(true);
            }
            if limit > 0 {
                // Upload ids are lowercase hex, so every id of `owner` sorts below "g".
                let counted = t
                    .range((owner.as_str(), "")..(owner.as_str(), "g"))
                    .map_err(be)?
                    .take(limit)
                    .count();
                if counted >= limit {
                    return Ok(false);
                }
            }
            t.insert((owner.as_str(), id.as_str()), at).map_err(be)?;
            Ok(true)
        })
        .await
    }

    async fn release_upload(&self, owner: &str, id: &UploadId) -> StoreResult<()> {
        let (owner, id) = (owner.to_owned(), id.clone());
        self.write(move |tx| {
            let mut t = tx.open_table(OWNER_UPLOADS).map_err(be)?;
            t.remove((owner.as_str(), id.as_str())).map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn reserved_uploads(&self) -> StoreResult<Vec<(String, UploadId, Millis)>> {
        self.read(|tx| {
            let t = tx.open_table(OWNER_UPLOADS).map_err(be)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(be)? {
                let (k, v) = item.map_err(be)?;
                let (owner, id) = k.value();
                let id = UploadId::parse(id)
                    .ok_or_else(|| StoreError::Corrupt(format!("counted upload id {id:?}")))?;
                out.push((owner.to_owned(), id, v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn get_file(&self, hash: &str) -> StoreResult<Option<FileRecord>> {
        let hash = hash.to_owned();
        self.read(move |tx| {
            let t = tx.open_table(FILES).map_err(be)?;
            let v = t.get(hash.as_str()).map_err(be)?;
            v.map(|g| dec(g.value())).transpose()
        })
        .await
    }

    async fn put_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()> {
        let (hash, rec) = (hash.to_owned(), rec.clone());
        self.write(move |tx| {
            tx.open_table(FILES)
                .map_err(be)?
                .insert(hash.as_str(), enc(&rec)?.as_slice())
                .map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn delete_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()> {
        let (hash, rec) = (hash.to_owned(), rec.clone());
        self.write(move |tx| {
            let mut t = tx.open_table(FILES).map_err(be)?;
            let current: Option<FileRecord> = t
                .get(hash.as_str())
                .map_err(be)?
                .map(|g| dec(g.value()))
                .transpose()?;
            if current.as_ref() == Some(&rec) {
                t.remove(hash.as_str()).map_err(be)?;
            }
            Ok(())
        })
        .await
    }

    async fn put_challenge(
        &self,
        owner: &str,
        nonce: &str,
        rec: &ChallengeRecord,
        now: Millis,
        limit: usize,
    ) -> StoreResult<()> {
        let (owner, nonce, rec) = (owner.to_owned(), nonce.to_owned(), rec.clone());
        self.write(move |tx| {
            let mut t = tx.open_table(CHALLENGES).map_err(be)?;
            // The owner's live challenges by expiry; expired ones go.
            let mut live: Vec<(Millis, String)> = Vec::new();
            let mut dead: Vec<String> = Vec::new();
            for item in t.range((owner.as_str(), "")..).map_err(be)? {
                let (k, v) = item.map_err(be)?;
                let (o, n) = k.value();
                if o != owner {
                    break;
                }
                let c: ChallengeRecord = dec(v.value())?;
                if c.expires <= now {
                    dead.push(n.to_owned());
                } else {
                    live.push((c.expires, n.to_owned()));
                }
            }
            live.sort();
            // Expiring no later than the latest: 1 ms after it, so that challenges made in the
            // same millisecond still go in the order they came.
            let mut rec = rec;
            if let Some((latest, _)) = live.last() {
                rec.expires = rec.expires.max(latest + 1);
            }
            let excess = (live.len() + 1).saturating_sub(limit.max(1));
            dead.extend(live.into_iter().take(excess).map(|(_, n)| n));
            for n in dead {
                t.remove((owner.as_str(), n.as_str())).map_err(be)?;
            }
            t.insert((owner.as_str(), nonce.as_str()), enc(&rec)?.as_slice())
                .map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn take_challenge(
        &self,
        owner: &str,
        nonce: &str,
        now: Millis,
    ) -> StoreResult<Option<ChallengeRecord>> {
        let (owner, nonce) = (owner.to_owned(), nonce.to_owned());
        self.write(move |tx| {
            let mut t = tx.open_table(CHALLENGES).map_err(be)?;
            let taken = t
                .remove((owner.as_str(), nonce.as_str()))
                .map_err(be)?
                .map(|g| dec::<ChallengeRecord>(g.value()))
                .transpose()?;
            Ok(taken.filter(|c| c.expires > now))
        })
        .await
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.write(move |tx| {
            let mut t = tx.open_table(SECRETS).map_err(be)?;
            if let Some(v) = t.get(name.as_str()).map_err(be)? {
                return Ok(v.value().to_owned());
            }
            t.insert(name.as_str(), candidate.as_str()).map_err(be)?;
            Ok(candidate)
        })
        .await
    }

    async fn claim_events(
        &self,
        bucket: &str,
        target: &str,
        now: Millis,
        lease_until: Millis,
        scan: usize,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        let (bucket, target) = (bucket.to_owned(), target.to_owned());
        let (b, t) = (bucket.clone(), target.clone());
        if !self
            .read(move |tx| events::claimable_in(tx, &b, &t, now, scan))
            .await?
        {
            return Ok(Vec::new());
        }
        self.write_lazy(move |tx| {
            events::claim_in(tx, &bucket, &target, now, lease_until, scan, limit)
        })
        .await
    }

    async fn settle_events(
        &self,
        bucket: &str,
        target: &str,
        outcomes: &[(u64, Settle)],
        dead_limit: usize,
    ) -> StoreResult<usize> {
        let (bucket, target, outcomes) = (bucket.to_owned(), target.to_owned(), outcomes.to_vec());
        self.write_lazy(move |tx| events::settle_in(tx, &bucket, &target, &outcomes, dead_limit))
            .await
    }

    async fn list_events(
        &self,
        bucket: &str,
        target: &str,
        dead: bool,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        let (bucket, target) = (bucket.to_owned(), target.to_owned());
        self.read(move |tx| events::list_in(tx, &bucket, &target, dead, after, limit))
            .await
    }

    async fn count_events(&self, bucket: &str, target: &str) -> StoreResult<(usize, usize)> {
        let (bucket, target) = (bucket.to_owned(), target.to_owned());
        self.read(move |tx| events::count_in(tx, &bucket, &target))
            .await
    }

    async fn retry_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
        now: Millis,
    ) -> StoreResult<usize> {
        let (bucket, target, seqs) = (bucket.to_owned(), target.to_owned(), seqs.to_vec());
        self.write(move |tx| events::retry_dead_in(tx, &bucket, &target, &seqs, now))
            .await
    }

    async fn drop_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
    ) -> StoreResult<usize> {
        let (bucket, target, seqs) = (bucket.to_owned(), target.to_owned(), seqs.to_vec());
        self.write(move |tx| events::drop_dead_in(tx, &bucket, &target, &seqs))
            .await
    }

    async fn event_queues(&self) -> StoreResult<Vec<(String, String)>> {
        self.read(events::queues_in).await
    }

    async fn forget_event_queue(&self, bucket: &str, target: &str) -> StoreResult<()> {
        let (bucket, target) = (bucket.to_owned(), target.to_owned());
        self.write(move |tx| events::forget_in(tx, &bucket, &target))
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|tx| tx.open_table(BUCKETS).map(drop).map_err(be))
            .await
    }
}
