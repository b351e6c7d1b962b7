//! Upload state in Redis: the production store, shared by every gateway that points at the same
//! server and prefix.
//!
//! # Key schema (version `v1`)
//!
//! Every key lives under `{prefix}:v1:`; a new layout bumps the version segment instead of
//! migrating in place. `{…}` is a Redis Cluster hash tag: keys sharing one live in one slot.
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `P:v1:buckets` | zset, scores 0 | every bucket name (the name index, its own slot) |
//! | `P:v1:bkt:{b:<bucket>}` | string | `BucketRecord` JSON |
//! | `P:v1:bkt:{b:<bucket>}:objects` | hash | object key → `ObjectRecord` JSON |
//! | `P:v1:bkt:{b:<bucket>}:okeys` | zset, scores 0 | object keys, for `BYLEX` range listing |
//! | `P:v1:bkt:{b:<bucket>}:uploads` | zset, scores 0 | `key \0 created \0 uploadId` of listed uploads |
//! | `P:v1:bkt:{b:<bucket>}:sealed` | string | present while the bucket is being deleted (`seal_bucket`) |
//! | `P:v1:bkt:{b:<bucket>}:evseq` | string (INCR) | the last event `seq` given in the bucket; outlives the bucket |
//! | `P:v1:bkt:{b:<bucket>}:ev:pending:<target>` | zset, score = seq | the outbox of (bucket, target): pending event seqs |
//! | `P:v1:bkt:{b:<bucket>}:ev:dead:<target>` | zset, score = seq | its dead letters |
//! | `P:v1:bkt:{b:<bucket>}:ev:rec:<target>` | hash | per event of either: `<seq>`, `<seq>:k`, `<seq>:s`, `<seq>:e` (below) |
//! | `P:v1:evqueues` | set | `bucket \n target` of every outbox that has had an event (a hint, its own slot) |
//! | `P:v1:upl:{u:<uploadId>}` | hash | `rec`, `state`, `since`, `done` (below) |
//! | `P:v1:upl:{u:<uploadId>}:parts` | hash | decimal part number → `PartRecord` JSON |
//! | `P:v1:own:{o:<owner>}` | zset, score = reserved at (millis) | upload ids counted against the owner's cap |
//! | `P:v1:file:{f:<hash>}` | string | `FileRecord` JSON: the unique file table (SHA-256 keys only) |
//! | `P:v1:chal:{c:<owner>}` | hash, with a TTL | nonce → `ChallengeRecord` JSON: open instant-upload challenges |
//! | `P:v1:chal:{c:<owner>}:exp` | zset, score = expires (millis), with a TTL | the same nonces by expiry (eviction order) |
//! | `P:v1:secret:<name>` | string | a secret every gateway shares (the legacy download links' key) |
//!
//! The upload hash keeps the record JSON as created in `rec`, and the mutable fields beside it:
//! `state` (`open`/`completing`/`completed`), `since` (`completing_since`, millis, only while
//! Completing) and `done` (`CompletedResult` JSON, only once Completed). These fields are the truth
//! and override the same-named fields of `rec` on read, so the Lua scripts check and flip state
//! without parsing JSON (cjson would round 64-bit integers through doubles).
//!
//! An outbox's record hash keeps, per event, its JSON (the event's facts, as recorded), its key
//! (`:k`, for the per-key order of claims), its delivery state (`:s`, `tries due lease`) and last
//! error (`:e`): the scripts claim and settle events without parsing JSON. The event counter and
//! outboxes are not removed with their bucket, so events of a deleted bucket are still delivered
//! and a re-created bucket's seqs carry on from the old ones.
//!
//! In the upload listing, `created` is written as `created + 2^63` in 20 zero-padded digits so that
//! byte order equals numeric order; members thus sort by (key, created, id) as `ListMultipartUploads`
//! wants. Object keys containing NUL would break that encoding; the S3 layer rejects them.
//!
//! # Atomicity without cross-slot transactions
//!
//! Each state transition is one Lua script over the keys of a single hash tag (cluster-safe). The
//! steps that span an upload and its bucket run upload slot first, bucket slot second:
//! `create_upload` writes the record, then the listing entry; `finish_complete`/`abort_upload`
//! flip or delete the record, then drop the entry. A listing entry therefore only ever outlives
//! its upload, never precedes it, and readers treat an entry whose record is missing or Completed
//! as stale: `list_uploads` and `delete_bucket` skip and remove such entries. Bucket creation and
//! deletion likewise touch the record first and the name index second (see [`RedisMetaStore::drop_bucket_name`]).
//!
//! Completed uploads get a TTL (default 24h) so Redis forgets them even if no janitor runs
//! `purge_completed`.
//!
//! # Redis Cluster
//!
//! With `--redis-cluster` the same schema runs on a cluster: every script, `MULTI` and multi-key
//! command names keys of one hash tag only, and reads of many records (one per upload or bucket)
//! are sent as separate commands, never as one cross-slot pipeline. `SCAN` sees one node's keys,
//! so keyspace scans walk every master and fail (retryably) if the slot layout changed meanwhile.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt as _, TryStreamExt as _};
use redis::aio::ConnectionManagerConfig;
use redis::cluster::ClusterClientBuilder;
use redis::{Cmd, FromRedisValue, ScriptInvocation};

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
mod codec;
mod connect;
mod events;
mod keys;
mod scripts;
use self::codec::{
    corrupt, exclusive, from_json, from_json_opt, glob_escape, inclusive, listing_id,
    listing_member, millis_u64, outcome_reply, parts, prefix_range, state_name, to_json,
    upload_record,
};
pub use self::connect::RedisTls;
use self::connect::{
    CONNECT_TIMEOUT, Connection, MAX_RETRY_DELAY, MIN_RETRY_DELAY, RESPONSE_TIMEOUT, RETRIES,
    at_master, install_crypto_provider, masters, redis_error,
};
use self::scripts::{
    ABORT_UPLOAD, APPEND_PART, BEGIN_COMPLETE, CREATE_BUCKET, DELETE_BUCKET, DELETE_FILE_IF,
    DELETE_OBJECT, FINISH_COMPLETE, FULL_REPLY, LIST_OBJECTS, LIST_PARTS, LIST_UPLOAD,
    PURGE_COMPLETED, PUT_CHALLENGE, PUT_OBJECT, PUT_PART, REOPEN, RESERVE_UPLOAD, SEAL_BUCKET,
    SEALED_REPLY, TAKE_CHALLENGE, UPDATE_OBJECT,
};

/// Largest page fetched from Redis per round trip, so no single command or script blocks the
/// (single-threaded) server for long.
const PAGE: usize = 1000;

/// Commands in flight at once when records are read one command each.
const FAN_OUT: usize = 64;

pub struct RedisMetaStore {
    con: Connection,
    /// `{prefix}:v1`
    root: String,
    completed_ttl: Duration,
}

impl RedisMetaStore {
    /// Connects (with a reconnecting `ConnectionManager`) and namespaces every key under `prefix`.
    /// A `rediss://` URL is TLS, with the roots and client certificate of `tls` when given.
    ///
    /// # Errors
    /// `Unavailable` within a few seconds if Redis cannot be reached; `Backend` for a bad URL or
    /// a server that rejects the connection (e.g. authentication, an untrusted certificate).
    pub async fn connect(url: &str, prefix: &str, tls: Option<&RedisTls>) -> StoreResult<Self> {
        if url.contains(',') {
            return Err(StoreError::Backend(
                "redis url: several comma-separated nodes name a Redis Cluster: add --redis-cluster"
                    .into(),
            ));
        }
        install_crypto_provider();
        let client = match tls.and_then(RedisTls::certificates) {
            None => redis::Client::open(url),
            Some(certs) => redis::Client::build_with_tls(url, certs),
        }
        .map_err(|e| StoreError::Backend(format!("redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RETRIES.try_into().unwrap_or(usize::MAX))
            .set_min_delay(MIN_RETRY_DELAY)
            .set_max_delay(MAX_RETRY_DELAY);
        let con = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(redis_error)?;
        Self::with_connection(Connection::Single(con), prefix).await
    }

    /// Connects to a Redis Cluster through `seeds` (comma-separated `redis://` or `rediss://` URLs
    /// of one or more of its nodes; the rest are discovered), with the same key schema and TLS
    /// roots as [`Self::connect`].
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub async fn connect_cluster(
        seeds: &str,
        prefix: &str,
        tls: Option<&RedisTls>,
    ) -> StoreResult<Self> {
        let seeds: Vec<&str> = seeds
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        install_crypto_provider();
        let mut builder = ClusterClientBuilder::new(seeds)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(RETRIES)
            .min_retry_wait(millis_u64(MIN_RETRY_DELAY))
            .max_retry_wait(millis_u64(MAX_RETRY_DELAY));
        if let Some(certs) = tls.and_then(RedisTls::certificates) {
            builder = builder.certs(certs);
        }
        let client = builder
            .build()
            .map_err(|e| StoreError::Backend(format!("redis cluster seeds: {e}")))?;
        let con = client.get_async_connection().await.map_err(redis_error)?;
        Self::with_connection(Connection::Cluster(con), prefix).await
    }

    async fn with_connection(con: Connection, prefix: &str) -> StoreResult<Self> {
        let store = Self {
            con,
            root: format!("{prefix}:v1"),
            completed_ttl: Duration::from_hours(24),
        };
        store.ping().await?;
        Ok(store)
    }

    /// How long Redis keeps a Completed upload (for Complete replays) before expiring it itself.
    #[must_use]
    pub fn with_completed_ttl(mut self, ttl: Duration) -> Self {
        self.completed_ttl = ttl;
        self
    }

    // ---- plumbing ----

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> StoreResult<T> {
        cmd.query_async(&mut self.con.clone())
            .await
            .map_err(redis_error)
    }

    async fn eval<T: FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> StoreResult<T> {
        inv.invoke_async(&mut self.con.clone())
            .await
            .map_err(redis_error)
    }

    /// The replies to `cmds`, in order. Each names keys of its own slot, so they go as separate
    /// commands (a pipeline must stay in one slot on a cluster); a bounded number is in flight at
    /// once, which the multiplexed connections pipeline on the wire anyway.
    async fn query_each<T: FromRedisValue + Send>(&self, cmds: Vec<Cmd>) -> StoreResult<Vec<T>> {
        futures_util::stream::iter(cmds)
            .map(|cmd| async move { self.query::<T>(&cmd).await })
            .buffered(FAN_OUT)
            .try_collect()
            .await
    }

    /// Every key matching `pattern` (SCAN, so the server is never blocked); duplicates removed.
    /// On a cluster every master is scanned; if the slot layout changed during the walk (a
    /// failover, or keys migrating) some keys may have been missed, and the scan fails as
    /// Unavailable instead: the orphan sweep must never mistake a live blob for an orphan.
    async fn scan(&self, pattern: &str) -> StoreResult<Vec<String>> {
        let (mut seen, mut keys) = (HashSet::new(), Vec::new());
        match &self.con {
            Connection::Single(_) => self.scan_node(None, pattern, &mut seen, &mut keys).await?,
            Connection::Cluster(con) => {
                let before = masters(con).await?;
                for slot in before.values().map(|ranges| ranges[0].0) {
                    self.scan_node(Some(slot), pattern, &mut seen, &mut keys)
                        .await?;
                }
                if masters(con).await? != before {
                    return Err(StoreError::Unavailable(
                        "redis cluster slots moved during a key scan; try again".into(),
                    ));
                }
            }
        }
        Ok(keys)
    }

    /// SCANs one node: the server, or on a cluster the master serving `slot`.
    async fn scan_node(
        &self,
        slot: Option<u16>,
        pattern: &str,
        seen: &mut HashSet<String>,
        keys: &mut Vec<String>,
    ) -> StoreResult<()> {
        let mut cursor = 0u64;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(PAGE);
            let (next, batch): (u64, Vec<String>) = match (slot, &self.con) {
                (Some(slot), Connection::Cluster(con)) => {
                    let value = con
                        .clone()
                        .route_command(cmd, at_master(slot))
                        .await
                        .map_err(redis_error)?;
                    redis::from_redis_value(value).map_err(|e| corrupt(e.to_string()))?
                }
                _ => self.query(&cmd).await?,
            };
            keys.extend(batch.into_iter().filter(|k| seen.insert(k.clone())));
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Upload records for `ids`; None where the record is gone.
    async fn uploads(&self, ids: &[UploadId]) -> StoreResult<Vec<Option<UploadRecord>>> {
        let cmds = ids
            .iter()
            .map(|id| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(self.upload(id))
                    .arg(&["rec", "state", "since", "done"]);
                cmd
            })
            .collect();
        let rows: Vec<Vec<Option<String>>> = self.query_each(cmds).await?;
        rows.into_iter().map(upload_record).collect()
    }

    /// Removes `name` from the bucket index unless its record exists (again). Re-checking after the
    /// removal closes the race with a concurrent `create_bucket`, which writes the record first
    /// and the name second.
    async fn drop_bucket_name(&self, name: &str) -> StoreResult<()> {
        self.query::<()>(redis::cmd("ZREM").arg(self.bucket_names()).arg(name))
            .await?;
        if self
            .query::<bool>(redis::cmd("EXISTS").arg(self.bucket(name)))
            .await?
        {
            self.query::<()>(redis::cmd("ZADD").arg(self.bucket_names()).arg(0).arg(name))
                .await?;
        }
        Ok(())
    }

    /// Drops the upload's entry from its bucket's listing (the bucket-slot second step).
    async fn unlist(&self, rec: &UploadRecord) -> StoreResult<()> {
        let member = listing_member(&rec.key, rec.created, &rec.id);
        self.query(
            redis::cmd("ZREM")
                .arg(self.listing(&rec.bucket))
                .arg(member),
        )
        .await
    }

    /// Live (Open or Completing) uploads of `bucket` in listing order within the lex range
    /// `min..max`, at most `limit`. Entries whose record is gone or Completed are the leftovers
    /// of an interrupted second step (see the module doc) and are removed on the way.
    async fn live_uploads(
        &self,
        bucket: &str,
        mut min: Vec<u8>,
        max: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<UploadRecord>> {
        let listing = self.listing(bucket);
        let mut out = Vec::new();
        while out.len() < limit {
            let batch = (limit - out.len()).min(PAGE);
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(&listing)
                .arg(&min)
                .arg(max)
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(batch);
            let members: Vec<String> = self.query(&cmd).await?;
            let Some(last) = members.last() else { break };
            min = exclusive(last.as_bytes());
            let ids = members
                .iter()
                .map(|m| listing_id(m))
                .collect::<StoreResult<Vec<_>>>()?;
            let mut stale = Vec::new();
            for (member, rec) in members.iter().zip(self.uploads(&ids).await?) {
                match rec {
                    Some(rec) if rec.state != UploadState::Completed => out.push(rec),
                    _ => stale.push(member),
                }
            }
            if !stale.is_empty() {
                self.query::<()>(redis::cmd("ZREM").arg(&listing).arg(stale))
                    .await?;
            }
            if members.len() < batch {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl MetaStore for RedisMetaStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn create_bucket(&self, rec: &BucketRecord) -> StoreResult<Option<BucketRecord>> {
        let found = self
            .eval(CREATE_BUCKET.key(self.bucket(&rec.name)).arg(to_json(rec)?))
            .await?;
        // Record first, name second (also when it already existed: repairs an interrupted create).
        self.query::<()>(
            redis::cmd("ZADD")
                .arg(self.bucket_names())
                .arg(0)
                .arg(&rec.name),
        )
        .await?;
        from_json_opt(found)
    }

    async fn get_bucket(&self, name: &str) -> StoreResult<Option<BucketRecord>> {
        from_json_opt(self.query(redis::cmd("GET").arg(self.bucket(name))).await?)
    }

    async fn update_bucket(&self, rec: &BucketRecord) -> StoreResult<bool> {
        // XX: only an existing bucket's record is replaced (one key, so atomic by itself).
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.bucket(&rec.name))
                    .arg(to_json(rec)?)
                    .arg("XX"),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn list_buckets(&self) -> StoreResult<Vec<BucketRecord>> {
        let names: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(self.bucket_names()).arg(0).arg(-1))
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let cmds = names
            .iter()
            .map(|name| {
                let mut cmd = redis::cmd("GET");
                cmd.arg(self.bucket(name));
                cmd
            })
            .collect();
        let recs: Vec<Option<String>> = self.query_each(cmds).await?;
        let mut out = Vec::with_capacity(names.len());
        for (name, rec) in names.iter().zip(recs) {
            match rec {
                Some(json) => out.push(from_json(&json)?),
                None => self.drop_bucket_name(name).await?,
            }
        }
        Ok(out)
    }

    async fn delete_bucket(&self, name: &str) -> StoreResult<DeleteBucket> {
        if self.get_bucket(name).await?.is_none() {
            return Ok(DeleteBucket::NotFound);
        }
        // Prunes stale listing entries, so the script's "listing is empty" check counts only
        // live uploads (and any created since, which is the safe side).
        if !self
            .live_uploads(name, b"-".to_vec(), b"+", 1)
            .await?
            .is_empty()
        {
            return Ok(DeleteBucket::NotEmpty);
        }
        let mut inv = DELETE_BUCKET.prepare_invoke();
        inv.key(self.bucket(name))
            .key(self.objects(name))
            .key(self.object_keys(name))
            .key(self.listing(name))
            .key(self.seal(name));
        let outcome: String = self.eval(&inv).await?;
        match outcome.as_str() {
            "missing" => Ok(DeleteBucket::NotFound),
            "busy" => Ok(DeleteBucket::NotEmpty),
            _ => {
                self.drop_bucket_name(name).await?;
                Ok(DeleteBucket::Deleted)
            }
        }
    }

    async fn seal_bucket(&self, name: &str, at: Millis) -> StoreResult<SealBucket> {
        let mut inv = SEAL_BUCKET.prepare_invoke();
        inv.key(self.bucket(name))
            .key(self.objects(name))
            .key(self.seal(name))
            .arg(at);
        let outcome: String = self.eval(&inv).await?;
        Ok(match outcome.as_str() {
            "missing" => SealBucket::NotFound,
            "busy" => SealBucket::NotEmpty,
            _ => SealBucket::Sealed,
        })
    }

    async fn sealed_buckets(&self) -> StoreResult<Vec<(String, Millis)>> {
        // Seal keys are rare and short-lived: a keyspace scan (every master) finds them.
        let keys = self.scan(&self.seal_pattern()).await?;
        let names: Vec<String> = keys.iter().filter_map(|k| self.sealed_name(k)).collect();
        let cmds = names
            .iter()
            .map(|n| {
                let mut cmd = redis::cmd("GET");
                cmd.arg(self.seal(n));
                cmd
            })
            .collect();
        let times: Vec<Option<String>> = self.query_each(cmds).await?;
        Ok(names
            .into_iter()
            .zip(times)
            .filter_map(|(n, t)| Some((n, t?.parse().unwrap_or(0))))
            .collect())
    }

    async fn unseal_bucket(&self, name: &str) -> StoreResult<()> {
        self.query(redis::cmd("DEL").arg(self.seal(name))).await
    }

    async fn get_object(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectRecord>> {
        from_json_opt(
            self.query(redis::cmd("HGET").arg(self.objects(bucket)).arg(key))
                .await?,
        )
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>> {
        let mut inv = PUT_OBJECT.prepare_invoke();
        inv.key(self.objects(bucket))
            .key(self.object_keys(bucket))
            .key(self.seal(bucket))
            .arg(key)
            .arg(to_json(rec)?);
        if let Some(notice) = notice {
            self.with_notice(&mut inv, bucket, notice).await?;
        }
        let old: Option<String> = self.eval(&inv).await?;
        match old.as_deref() {
            Some(SEALED_REPLY) => Err(StoreError::BucketGone),
            Some(FULL_REPLY) => Err(StoreError::OutboxFull),
            _ => from_json_opt(old),
        }
    }

    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        blob: &UploadId,
        rec: &ObjectRecord,
    ) -> StoreResult<bool> {
        let mut inv = UPDATE_OBJECT.prepare_invoke();
        inv.key(self.objects(bucket))
            .arg(key)
            .arg(blob.as_str())
            .arg(to_json(rec)?);
        let done: i64 = self.eval(&inv).await?;
        Ok(done == 1)
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        notice: Option<Notice<'_>>,
    ) -> StoreResult<Option<ObjectRecord>> {
        let mut inv = DELETE_OBJECT.prepare_invoke();
        inv.key(self.objects(bucket))
            .key(self.object_keys(bucket))
            .arg(key);
        if let Some(notice) = notice {
            self.with_notice(&mut inv, bucket, notice).await?;
        }
        let old: Option<String> = self.eval(&inv).await?;
        if old.as_deref() == Some(FULL_REPLY) {
            return Err(StoreError::OutboxFull);
        }
        from_json_opt(old)
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, ObjectRecord)>> {
        let (mut min, max) = prefix_range(prefix.as_bytes());
        if let Some(after) = after.filter(|a| *a >= prefix) {
            min = exclusive(after.as_bytes());
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let batch = (limit - out.len()).min(PAGE);
            let mut inv = LIST_OBJECTS.prepare_invoke();
            inv.key(self.object_keys(bucket))
                .key(self.objects(bucket))
                .arg(&min)
                .arg(&max)
                .arg(batch);
            let flat: Vec<Option<String>> = self.eval(&inv).await?;
            let got = flat.len() / 2;
            for pair in flat.chunks_exact(2) {
                let key = pair[0].clone().ok_or_else(|| corrupt("nil object key"))?;
                min = exclusive(key.as_bytes());
                // Both structures change in one script, so a missing record is corruption.
                let json = pair[1]
                    .as_deref()
                    .ok_or_else(|| corrupt("indexed object without record"))?;
                out.push((key, from_json(json)?));
            }
            if got < batch {
                break;
            }
        }
        Ok(out)
    }

    async fn object_blobs(&self) -> StoreResult<Vec<UploadId>> {
        // The keyspace, not the bucket index: the orphan sweep must never miss a live blob, even
        // of a bucket whose name an interrupted create/delete left out of the index.
        let pattern = format!("{}:bkt:{{b:*}}:objects", glob_escape(&self.root));
        let mut blobs = Vec::new();
        for hash in self.scan(&pattern).await? {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("HSCAN");
                cmd.arg(&hash).arg(cursor).arg("COUNT").arg(PAGE);
                let (next, flat): (u64, Vec<String>) = self.query(&cmd).await?;
                for json in flat.iter().skip(1).step_by(2) {
                    blobs.push(from_json::<ObjectRecord>(json)?.blob);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        // HSCAN may repeat fields; callers want a set.
        blobs.sort();
        blobs.dedup();
        Ok(blobs)
    }

    async fn create_upload(&self, rec: &UploadRecord) -> StoreResult<()> {
        let key = self.upload(&rec.id);
        let mut fields = vec![
            ("rec", to_json(rec)?),
            ("state", state_name(rec.state).to_owned()),
        ];
        fields.extend(rec.completing_since.map(|t| ("since", t.to_string())));
        if let Some(done) = &rec.completed {
            fields.push(("done", to_json(done)?));
        }
        // Upload slot first (atomic: a retried create never merges with an older hash) ...
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&key)
            .ignore()
            .hset_multiple(&key, &fields)
            .ignore();
        pipe.query_async::<()>(&mut self.con.clone())
            .await
            .map_err(redis_error)?;
        // ... then the bucket's listing entry, unless the bucket is being deleted: then the
        // record goes again (a crash before that leaves an unlisted record, which the sweep's
        // expiry treats like any other upload).
        let member = listing_member(&rec.key, rec.created, &rec.id);
        let mut inv = LIST_UPLOAD.prepare_invoke();
        inv.key(self.listing(&rec.bucket))
            .key(self.seal(&rec.bucket))
            .arg(member);
        let listed: i64 = self.eval(&inv).await?;
        if listed == 0 {
            self.query::<()>(redis::cmd("DEL").arg(&key)).await?;
            return Err(StoreError::BucketGone);
        }
        Ok(())
    }

    async fn get_upload(&self, id: &UploadId) -> StoreResult<Option<UploadRecord>> {
        let row: Vec<Option<String>> = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.upload(id))
                    .arg(&["rec", "state", "since", "done"]),
            )
            .await?;
        upload_record(row)
    }

    async fn put_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
    ) -> StoreResult<PutPart> {
        let mut inv = PUT_PART.prepare_invoke();
        inv.key(self.upload(id))
            .key(self.parts(id))
            .arg(n.get())
            .arg(to_json(part)?);
        let reply: Vec<Option<String>> = self.eval(&inv).await?;
        if reply.first().and_then(Option::as_deref) != Some("ok") {
            return Ok(PutPart::NotOpen);
        }
        let old = reply.into_iter().nth(1).flatten();
        Ok(PutPart::Recorded(from_json_opt(old)?))
    }

    async fn append_part(
        &self,
        id: &UploadId,
        n: PartNumber,
        part: &PartRecord,
        replaces: Option<&str>,
    ) -> StoreResult<AppendPart> {
        let mut inv = APPEND_PART.prepare_invoke();
        inv.key(self.upload(id))
            .key(self.parts(id))
            .arg(n.get())
            .arg(to_json(part)?)
            .arg(replaces.unwrap_or_default());
        let reply: Vec<Option<String>> = self.eval(&inv).await?;
        match reply.first().and_then(Option::as_deref) {
            Some("ok") => {
                let old = reply.into_iter().nth(1).flatten();
                Ok(AppendPart::Recorded(from_json_opt(old)?))
            }
            Some("moved") => Ok(AppendPart::Moved),
            _ => Ok(AppendPart::NotOpen),
        }
    }

    async fn list_parts(
        &self,
        id: &UploadId,
        after: Option<PartNumber>,
        limit: usize,
    ) -> StoreResult<Vec<(PartNumber, PartRecord)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // An upload has at most 10 000 parts: one snapshot, no paging needed.
        let count = limit.min(usize::from(PartNumber::MAX));
        let mut inv = LIST_PARTS.prepare_invoke();
        inv.key(self.parts(id))
            .arg(after.map_or(0, PartNumber::get))
            .arg(count)
            .arg(PartNumber::MAX);
        parts(&self.eval::<Vec<_>>(&inv).await?)
    }

    async fn begin_complete(
        &self,
        id: &UploadId,
        now: Millis,
        stale_before: Millis,
    ) -> StoreResult<BeginComplete> {
        let mut inv = BEGIN_COMPLETE.prepare_invoke();
        inv.key(self.upload(id))
            .key(self.parts(id))
            .arg(now)
            .arg(stale_before);
        let (outcome, rec, rest) = outcome_reply(self.eval(&inv).await?)?;
        Ok(match (outcome.as_str(), rec) {
            ("started", Some(rec)) => BeginComplete::Started(rec, parts(&rest)?),
            ("busy", Some(rec)) => BeginComplete::Busy(rec),
            ("completed", Some(rec)) => BeginComplete::Completed(rec),
            _ => BeginComplete::NotFound,
        })
    }

    async fn reopen(&self, id: &UploadId) -> StoreResult<()> {
        self.eval(&REOPEN.key(self.upload(id))).await
    }

    async fn finish_complete(&self, id: &UploadId, result: &CompletedResult) -> StoreResult<()> {
        let ttl = self.completed_ttl.as_secs().max(1);
        let mut inv = FINISH_COMPLETE.prepare_invoke();
        inv.key(self.upload(id))
            .key(self.parts(id))
            .arg(to_json(result)?)
            .arg(ttl);
        // Bucket slot second: the listing entry of a (now) Completed upload.
        match from_json_opt(self.eval(&inv).await?)? {
            Some(rec) => self.unlist(&rec).await,
            None => Ok(()),
        }
    }

    async fn abort_upload(&self, id: &UploadId) -> StoreResult<AbortUpload> {
        let mut inv = ABORT_UPLOAD.prepare_invoke();
        inv.key(self.upload(id)).key(self.parts(id));
        let (outcome, rec, rest) = outcome_reply(self.eval(&inv).await?)?;
        match (outcome.as_str(), rec) {
            ("aborted", Some(rec)) => {
                self.unlist(&rec).await?;
                Ok(AbortUpload::Aborted(rec, parts(&rest)?))
            }
            ("busy", _) => Ok(AbortUpload::Busy),
            _ => Ok(AbortUpload::NotFound),
        }
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&UploadCursor>,
        limit: usize,
    ) -> StoreResult<Vec<UploadRecord>> {
        let (mut min, max) = prefix_range(prefix.as_bytes());
        if let Some(cursor) = after {
            let bound = match &cursor.upload {
                // Every member of `key` is `key \0 …`; the next key starts at `key \x01` or later.
                None => [cursor.key.as_bytes(), b"\x01"].concat(),
                Some((created, id)) => listing_member(&cursor.key, *created, id).into_bytes(),
            };
            if bound.as_slice() >= prefix.as_bytes() {
                min = if cursor.upload.is_some() {
                    exclusive(&bound)
                } else {
                    inclusive(&bound)
                };
            }
        }
        self.live_uploads(bucket, min, &max, limit).await
    }

    async fn all_uploads(&self) -> StoreResult<Vec<UploadRecord>> {
        let pattern = format!("{}:upl:{{u:*}}", glob_escape(&self.root));
        let tag = format!("{}:upl:{{u:", self.root);
        let ids: Vec<UploadId> = self
            .scan(&pattern)
            .await?
            .iter()
            .filter_map(|k| {
                k.strip_prefix(&tag)?
                    .strip_suffix('}')
                    .and_then(UploadId::parse)
            })
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(PAGE) {
            // Records that vanished since the scan (aborted, purged, expired) are simply gone.
            out.extend(self.uploads(chunk).await?.into_iter().flatten());
        }
        Ok(out)
    }

    async fn purge_completed(&self, before: Millis) -> StoreResult<usize> {
        let mut purged = 0;
        for rec in self.all_uploads().await? {
            if rec.completed.as_ref().is_some_and(|c| c.at < before) {
                let mut inv = PURGE_COMPLETED.prepare_invoke();
                inv.key(self.upload(&rec.id)).key(self.parts(&rec.id));
                purged += self.eval::<usize>(&inv).await?;
            }
        }
        Ok(purged)
    }

    async fn reserve_upload(
        &self,
        owner: &str,
        id: &UploadId,
        at: Millis,
        limit: usize,
    ) -> StoreResult<bool> {
        let mut inv = RESERVE_UPLOAD.prepare_invoke();
        inv.key(self.owned(owner))
            .arg(id.as_str())
            .arg(at)
            .arg(limit);
        self.eval(&inv).await
    }

    async fn release_upload(&self, owner: &str, id: &UploadId) -> StoreResult<()> {
        self.query(redis::cmd("ZREM").arg(self.owned(owner)).arg(id.as_str()))
            .await
    }

    async fn reserved_uploads(&self) -> StoreResult<Vec<(String, UploadId, Millis)>> {
        let pattern = format!("{}:own:{{o:*}}", glob_escape(&self.root));
        let tag = format!("{}:own:{{o:", self.root);
        let mut out = Vec::new();
        for key in self.scan(&pattern).await? {
            let Some(owner) = key.strip_prefix(&tag).and_then(|k| k.strip_suffix('}')) else {
                continue;
            };
            let members: Vec<(String, Millis)> = self
                .query(
                    redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES"),
                )
                .await?;
            for (id, at) in members {
                let id = UploadId::parse(&id)
                    .ok_or_else(|| corrupt(format!("counted upload id {id:?}")))?;
                out.push((owner.to_owned(), id, at));
            }
        }
        Ok(out)
    }

    async fn get_file(&self, hash: &str) -> StoreResult<Option<FileRecord>> {
        from_json_opt(self.query(redis::cmd("GET").arg(self.file(hash))).await?)
    }

    async fn put_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()> {
        self.query::<()>(redis::cmd("SET").arg(self.file(hash)).arg(to_json(rec)?))
            .await
    }

    async fn delete_file(&self, hash: &str, rec: &FileRecord) -> StoreResult<()> {
        // Compare-and-delete in one step, so a newer entry for the same content survives.
        self.eval::<i64>(DELETE_FILE_IF.key(self.file(hash)).arg(to_json(rec)?))
            .await
            .map(drop)
    }

    async fn put_challenge(
        &self,
        owner: &str,
        nonce: &str,
        rec: &ChallengeRecord,
        now: Millis,
        limit: usize,
    ) -> StoreResult<()> {
        let (key, by_expiry) = self.challenges(owner);
        let mut inv = PUT_CHALLENGE.prepare_invoke();
        inv.key(key)
            .key(by_expiry)
            .arg(nonce)
            .arg(to_json(rec)?)
            .arg(rec.expires)
            .arg(now)
            .arg(limit.max(1));
        self.eval::<i64>(&inv).await.map(drop)
    }

    async fn take_challenge(
        &self,
        owner: &str,
        nonce: &str,
        now: Millis,
    ) -> StoreResult<Option<ChallengeRecord>> {
        let (key, by_expiry) = self.challenges(owner);
        let mut inv = TAKE_CHALLENGE.prepare_invoke();
        inv.key(key).key(by_expiry).arg(nonce).arg(now);
        from_json_opt(self.eval(&inv).await?)
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        // SET NX then GET: whichever gateway set it first, all read the same value.
        let key = self.secret(name);
        self.query::<Option<String>>(redis::cmd("SET").arg(&key).arg(candidate).arg("NX"))
            .await?;
        self.query::<Option<String>>(redis::cmd("GET").arg(&key))
            .await?
            .ok_or_else(|| StoreError::Backend(format!("secret {name} vanished after SET NX")))
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
        self.outbox_claim(bucket, target, now, lease_until, scan, limit)
            .await
    }

    async fn settle_events(
        &self,
        bucket: &str,
        target: &str,
        outcomes: &[(u64, Settle)],
        dead_limit: usize,
    ) -> StoreResult<usize> {
        self.outbox_settle(bucket, target, outcomes, dead_limit)
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
        self.outbox_list(bucket, target, dead, after, limit).await
    }

    async fn count_events(&self, bucket: &str, target: &str) -> StoreResult<(usize, usize)> {
        self.outbox_count(bucket, target).await
    }

    async fn retry_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
        now: Millis,
    ) -> StoreResult<usize> {
        self.outbox_retry_dead(bucket, target, seqs, now).await
    }

    async fn drop_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
    ) -> StoreResult<usize> {
        self.outbox_drop_dead(bucket, target, seqs).await
    }

    async fn event_queues(&self) -> StoreResult<Vec<(String, String)>> {
        self.outbox_queues().await
    }

    async fn forget_event_queue(&self, bucket: &str, target: &str) -> StoreResult<()> {
        self.outbox_forget(bucket, target).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

#[cfg(test)]
mod tests;
