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

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt as _, TryStreamExt as _};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, Script, ScriptInvocation,
    ServerErrorKind, Value,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::meta::{AbortUpload, BeginComplete, DeleteBucket, MetaStore, PutPart, UploadCursor};
use super::{StoreError, StoreResult};
use crate::model::{
    BucketRecord, ChallengeRecord, CompletedResult, FileRecord, Millis, ObjectRecord, PartNumber,
    PartRecord, UploadId, UploadRecord, UploadState,
};

/// Largest page fetched from Redis per round trip, so no single command or script blocks the
/// (single-threaded) server for long.
const PAGE: usize = 1000;

/// Commands in flight at once when records are read one command each.
const FAN_OUT: usize = 64;

/// Timeouts and retries shared by both connection kinds: a request waiting on a dead Redis should
/// fail (503) in seconds, not queue behind the default backoff; the connection keeps reconnecting
/// in the background.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const RETRIES: u32 = 2;
const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// One Redis server, or a Redis Cluster; both reconnect by themselves.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The redis crate builds its TLS client from rustls's process-wide provider, which rustls can
/// only pick by itself when exactly one is compiled in (the AWS SDK in the tests brings a
/// second). Installing ours is idempotent: a provider already installed stays.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a `rediss://` connection presents and trusts beyond the defaults (the system's roots, no
/// client certificate). PEM bytes throughout.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// CA certificates the server's certificate must be signed by, instead of the system's.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and its key, for servers that ask for one (`tls-auth-clients`).
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisTls {
    /// The redis crate's form; `None` when nothing differs from the defaults.
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        (self.ca.is_some() || self.client.is_some()).then(|| redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca.clone(),
        })
    }
}

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

    // ---- keys ----

    fn bucket_names(&self) -> String {
        format!("{}:buckets", self.root)
    }

    /// The unique-file entry of one content hash (its own slot).
    fn file(&self, hash: &str) -> String {
        format!("{}:file:{{f:{hash}}}", self.root)
    }

    fn bucket(&self, bucket: &str) -> String {
        format!("{}:bkt:{{b:{bucket}}}", self.root)
    }

    fn objects(&self, bucket: &str) -> String {
        format!("{}:objects", self.bucket(bucket))
    }

    fn object_keys(&self, bucket: &str) -> String {
        format!("{}:okeys", self.bucket(bucket))
    }

    fn listing(&self, bucket: &str) -> String {
        format!("{}:uploads", self.bucket(bucket))
    }

    fn upload(&self, id: &UploadId) -> String {
        format!("{}:upl:{{u:{id}}}", self.root)
    }

    fn parts(&self, id: &UploadId) -> String {
        format!("{}:parts", self.upload(id))
    }

    /// The uploads counted against `owner`'s cap (its own slot: one key per owner).
    fn owned(&self, owner: &str) -> String {
        format!("{}:own:{{o:{owner}}}", self.root)
    }

    /// `owner`'s open challenges (their records, and the same nonces by expiry), one slot.
    fn challenges(&self, owner: &str) -> (String, String) {
        let key = format!("{}:chal:{{c:{owner}}}", self.root);
        let by_expiry = format!("{key}:exp");
        (key, by_expiry)
    }

    fn secret(&self, name: &str) -> String {
        format!("{}:secret:{name}", self.root)
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

// ---- scripts: each touches the keys of one hash tag only ----

/// KEYS: bucket record. ARGV: record JSON. Returns the existing record's JSON or nil.
static DELETE_FILE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
        return 1",
    )
});

static CREATE_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local old = redis.call('GET', KEYS[1])
        if not old then redis.call('SET', KEYS[1], ARGV[1]) end
        return old",
    )
});

/// KEYS: bucket record, objects, object keys, upload listing.
static DELETE_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
        if redis.call('HLEN', KEYS[2]) > 0 or redis.call('ZCARD', KEYS[3]) > 0
            or redis.call('ZCARD', KEYS[4]) > 0 then return 'busy' end
        redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
        return 'deleted'",
    )
});

/// KEYS: objects, object keys. ARGV: key, JSON. Returns the old JSON or nil.
static PUT_OBJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local old = redis.call('HGET', KEYS[1], ARGV[1])
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[2], 0, ARGV[1])
        return old",
    )
});

/// KEYS: objects, object keys. ARGV: key. Returns the old JSON or nil.
static DELETE_OBJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local old = redis.call('HGET', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[1], ARGV[1])
        redis.call('ZREM', KEYS[2], ARGV[1])
        return old",
    )
});

/// KEYS: object keys, objects. ARGV: lex min, lex max, count. Returns `{key, JSON, …}`: one
/// consistent snapshot of a page.
static LIST_OBJECTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local keys = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYLEX', 'LIMIT', 0, ARGV[3])
        local out = {}
        for _, k in ipairs(keys) do
            out[#out + 1] = k
            out[#out + 1] = redis.call('HGET', KEYS[2], k)
        end
        return out",
    )
});

/// KEYS: upload, parts. ARGV: part number, JSON. Returns `{'ok', old JSON or nil}` or `{'closed'}`.
static PUT_PART: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {'closed'} end
        local old = redis.call('HGET', KEYS[2], ARGV[1])
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        return {'ok', old}",
    )
});

/// KEYS: parts. ARGV: after (0 for none), count, highest part number. Returns `{n, JSON, …}`
/// ascending by number. A hash no longer than a page is read whole and sorted here; a longer one
/// is read by asking for the numbers after `after` in turn, 1000 per HMGET, which for the usual
/// dense numbering reads one page per page: sorting all the keys for every page made ListParts of
/// 10 000 parts take 108 ms.
static LIST_PARTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local after, count, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
        local out = {}
        if redis.call('HLEN', KEYS[1]) <= count then
            local all, ps = redis.call('HGETALL', KEYS[1]), {}
            for i = 1, #all, 2 do
                local n = tonumber(all[i])
                if n > after then ps[#ps + 1] = {n, all[i + 1]} end
            end
            table.sort(ps, function(a, b) return a[1] < b[1] end)
            for _, p in ipairs(ps) do
                out[#out + 1] = tostring(p[1])
                out[#out + 1] = p[2]
            end
            return out
        end
        local n = after + 1
        while n <= max and #out < 2 * count do
            local hi, fields = math.min(max, n + 999), {}
            for i = n, hi do fields[#fields + 1] = tostring(i) end
            local vs = redis.call('HMGET', KEYS[1], unpack(fields))
            for i = 1, #fields do
                if vs[i] and #out < 2 * count then
                    out[#out + 1] = fields[i]
                    out[#out + 1] = vs[i]
                end
            end
            n = hi + 1
        end
        return out",
    )
});

/// KEYS: upload, parts. ARGV: now, `stale_before`.
/// Returns `{outcome, rec, state, since, done, n, JSON, …}` (parts only when `started`).
static BEGIN_COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local u = redis.call('HMGET', KEYS[1], 'rec', 'state', 'since', 'done')
        if not u[1] then return {'missing'} end
        if u[2] == 'completed' then return {'completed', u[1], u[2], u[3], u[4]} end
        if u[2] == 'completing' and u[3] and tonumber(u[3]) >= tonumber(ARGV[2]) then
            return {'busy', u[1], u[2], u[3], u[4]}
        end
        redis.call('HSET', KEYS[1], 'state', 'completing', 'since', ARGV[1])
        local out = {'started', u[1], 'completing', ARGV[1], u[4]}
        for _, v in ipairs(redis.call('HGETALL', KEYS[2])) do out[#out + 1] = v end
        return out",
    )
});

/// KEYS: upload.
static REOPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('HGET', KEYS[1], 'state') == 'completing' then
            redis.call('HSET', KEYS[1], 'state', 'open')
            redis.call('HDEL', KEYS[1], 'since')
        end
        return 0",
    )
});

/// KEYS: upload, parts. ARGV: result JSON, TTL seconds. Returns `rec` when the upload is (now)
/// Completed, so the caller can drop its listing entry, even on a retry; nil otherwise.
static FINISH_COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local u = redis.call('HMGET', KEYS[1], 'rec', 'state')
        if u[2] == 'completing' then
            redis.call('HSET', KEYS[1], 'state', 'completed', 'done', ARGV[1])
            redis.call('HDEL', KEYS[1], 'since')
            redis.call('DEL', KEYS[2])
            redis.call('EXPIRE', KEYS[1], ARGV[2])
        elseif u[2] ~= 'completed' then
            return false
        end
        return u[1]",
    )
});

/// KEYS: upload, parts. Returns `{'aborted', rec, state, since, done, n, JSON, …}`, `{'busy'}`
/// or `{'missing'}`.
static ABORT_UPLOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local u = redis.call('HMGET', KEYS[1], 'rec', 'state', 'since', 'done')
        if u[2] == 'completing' then return {'busy'} end
        if u[2] ~= 'open' then return {'missing'} end
        local out = {'aborted', u[1], u[2], u[3], u[4]}
        for _, v in ipairs(redis.call('HGETALL', KEYS[2])) do out[#out + 1] = v end
        redis.call('DEL', KEYS[1], KEYS[2])
        return out",
    )
});

/// KEYS: owner's counted uploads. ARGV: upload id, reserved at, limit (0: none). Returns 1 when
/// the id is (now) counted, 0 when the owner is at its limit.
static RESERVE_UPLOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
        local limit = tonumber(ARGV[3])
        if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
        redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
        return 1",
    )
});

/// KEYS: challenge records, their expiry index. ARGV: nonce, record, expires, now, limit.
/// Drops the expired, evicts the earliest-expiring beyond the limit, stores, and lets both keys
/// expire with the last challenge.
static PUT_CHALLENGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
        for _, n in ipairs(dead) do redis.call('HDEL', KEYS[1], n) end
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
        local excess = redis.call('ZCARD', KEYS[2]) + 1 - tonumber(ARGV[5])
        if excess > 0 then
            for _, n in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
                redis.call('HDEL', KEYS[1], n)
                redis.call('ZREM', KEYS[2], n)
            end
        end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
        local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
        redis.call('PEXPIREAT', KEYS[1], last)
        redis.call('PEXPIREAT', KEYS[2], last)
        return 1",
    )
});

/// KEYS: challenge records, their expiry index. ARGV: nonce, now. The record, removed, unless
/// it had expired.
static TAKE_CHALLENGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local expires = redis.call('ZSCORE', KEYS[2], ARGV[1])
        local rec = redis.call('HGET', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[1], ARGV[1])
        redis.call('ZREM', KEYS[2], ARGV[1])
        if not expires or not rec or tonumber(expires) <= tonumber(ARGV[2]) then return false end
        return rec",
    )
});

/// KEYS: upload, parts. Deletes them if the upload is Completed (a state it never leaves).
static PURGE_COMPLETED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('HGET', KEYS[1], 'state') ~= 'completed' then return 0 end
        redis.call('DEL', KEYS[1], KEYS[2])
        return 1",
    )
});

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
            .key(self.listing(name));
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
    ) -> StoreResult<Option<ObjectRecord>> {
        let mut inv = PUT_OBJECT.prepare_invoke();
        inv.key(self.objects(bucket))
            .key(self.object_keys(bucket))
            .arg(key)
            .arg(to_json(rec)?);
        from_json_opt(self.eval(&inv).await?)
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectRecord>> {
        let mut inv = DELETE_OBJECT.prepare_invoke();
        inv.key(self.objects(bucket))
            .key(self.object_keys(bucket))
            .arg(key);
        from_json_opt(self.eval(&inv).await?)
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
        // ... then the bucket's listing entry.
        let member = listing_member(&rec.key, rec.created, &rec.id);
        self.query(
            redis::cmd("ZADD")
                .arg(self.listing(&rec.bucket))
                .arg(0)
                .arg(member),
        )
        .await
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

    async fn ping(&self) -> StoreResult<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

/// Connection trouble and transient server states are "retry later"; anything else the server
/// rejected is a real fault.
fn redis_error(e: RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    if transient {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// Routes a command to the master serving `slot`.
fn at_master(slot: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )))
}

/// The cluster's masters (address → the slot ranges it serves, from `CLUSTER SLOTS`), after
/// checking on each that none of its slots is migrating or importing (which `CLUSTER NODES`
/// shows only on the nodes involved, as `[slot->-id]` / `[slot-<-id]`).
async fn masters(con: &ClusterConnection) -> StoreResult<BTreeMap<String, Vec<(u16, u16)>>> {
    let any = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
    let reply = con
        .clone()
        .route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), any)
        .await
        .map_err(redis_error)?;
    let mut masters = parse_cluster_slots(reply)?;
    for (addr, ranges) in &mut masters {
        ranges.sort_unstable();
        let nodes = con
            .clone()
            .route_command(
                redis::cmd("CLUSTER").arg("NODES").clone(),
                at_master(ranges[0].0),
            )
            .await
            .map_err(redis_error)?;
        let nodes: String = redis::from_redis_value(nodes).map_err(|e| corrupt(e.to_string()))?;
        let migrating = nodes
            .lines()
            .filter(|l| l.contains("myself"))
            .any(|l| l.contains('['));
        if migrating {
            return Err(StoreError::Unavailable(format!(
                "redis cluster: slots of {addr} are migrating; try again"
            )));
        }
    }
    Ok(masters)
}

/// `CLUSTER SLOTS` → master `host:port` → slot ranges. Each entry is
/// `[start, end, [host, port, id, …], replicas…]`.
fn parse_cluster_slots(reply: Value) -> StoreResult<BTreeMap<String, Vec<(u16, u16)>>> {
    let bad = || corrupt("unexpected CLUSTER SLOTS reply");
    let Value::Array(entries) = reply else {
        return Err(bad());
    };
    let mut out: BTreeMap<String, Vec<(u16, u16)>> = BTreeMap::new();
    for entry in entries {
        let Value::Array(entry) = entry else {
            return Err(bad());
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (entry.first(), entry.get(1), entry.get(2))
        else {
            return Err(bad());
        };
        let (Some(Value::BulkString(host)), Some(Value::Int(port))) =
            (master.first(), master.get(1))
        else {
            return Err(bad());
        };
        let range = (
            u16::try_from(*start).map_err(|_| bad())?,
            u16::try_from(*end).map_err(|_| bad())?,
        );
        out.entry(format!("{}:{port}", String::from_utf8_lossy(host)))
            .or_default()
            .push(range);
    }
    if out.is_empty() {
        return Err(StoreError::Unavailable(
            "redis cluster: no slots assigned".into(),
        ));
    }
    Ok(out)
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn corrupt(msg: impl Into<String>) -> StoreError {
    StoreError::Corrupt(msg.into())
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encoding record: {e}")))
}

fn from_json<T: DeserializeOwned>(json: &str) -> StoreResult<T> {
    serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))
}

fn from_json_opt<T: DeserializeOwned>(json: Option<String>) -> StoreResult<Option<T>> {
    json.map(|j| from_json(&j)).transpose()
}

fn state_name(s: UploadState) -> &'static str {
    match s {
        UploadState::Open => "open",
        UploadState::Completing => "completing",
        UploadState::Completed => "completed",
    }
}

/// Builds the record from an upload hash's `rec, state, since, done` (see the module doc).
fn upload_record(row: Vec<Option<String>>) -> StoreResult<Option<UploadRecord>> {
    let mut row = row.into_iter();
    let Some(json) = row.next().flatten() else {
        return Ok(None);
    };
    let (state, since, done) = (
        row.next().flatten(),
        row.next().flatten(),
        row.next().flatten(),
    );
    let mut rec: UploadRecord = from_json(&json)?;
    rec.state = match state.as_deref() {
        Some("open") => UploadState::Open,
        Some("completing") => UploadState::Completing,
        Some("completed") => UploadState::Completed,
        other => return Err(corrupt(format!("upload {}: state {other:?}", rec.id))),
    };
    rec.completing_since = since
        .map(|t| {
            t.parse()
                .map_err(|_| corrupt(format!("completing_since {t:?}")))
        })
        .transpose()?;
    rec.completed = done.map(|j| from_json(&j)).transpose()?;
    Ok(Some(rec))
}

/// Splits `{outcome, rec, state, since, done, rest…}` into its parts.
fn outcome_reply(
    reply: Vec<Option<String>>,
) -> StoreResult<(String, Option<UploadRecord>, Vec<Option<String>>)> {
    let mut reply = reply.into_iter();
    let outcome = reply
        .next()
        .flatten()
        .ok_or_else(|| corrupt("script reply without outcome"))?;
    let rec = upload_record(reply.by_ref().take(4).collect())?;
    Ok((outcome, rec, reply.collect()))
}

/// `{n, JSON, …}` (any order) → part table ascending by number.
fn parts(flat: &[Option<String>]) -> StoreResult<Vec<(PartNumber, PartRecord)>> {
    let mut out = flat
        .chunks_exact(2)
        .map(|pair| {
            let (Some(n), Some(json)) = (&pair[0], &pair[1]) else {
                return Err(corrupt("nil in part table"));
            };
            let n = PartNumber::parse(n).ok_or_else(|| corrupt(format!("part number {n:?}")))?;
            Ok((n, from_json(json)?))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// `key \0 created \0 id`, with `created` shifted by 2^63 and zero-padded so that byte order is
/// numeric order for every i64.
fn listing_member(key: &str, created: Millis, id: &UploadId) -> String {
    let created = created.cast_unsigned() ^ (1 << 63);
    format!("{key}\0{created:020}\0{id}")
}

fn listing_id(member: &str) -> StoreResult<UploadId> {
    member
        .rsplit('\0')
        .next()
        .and_then(UploadId::parse)
        .ok_or_else(|| corrupt(format!("upload listing entry {member:?}")))
}

fn inclusive(s: &[u8]) -> Vec<u8> {
    [b"[", s].concat()
}

fn exclusive(s: &[u8]) -> Vec<u8> {
    [b"(", s].concat()
}

/// The `BYLEX` bounds of every string starting with `prefix`: `[prefix` up to (excluding) the
/// byte-wise successor of the prefix, i.e. its last non-0xff byte incremented.
fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let min = if prefix.is_empty() {
        b"-".to_vec()
    } else {
        inclusive(prefix)
    };
    let max = match prefix.iter().rposition(|&b| b != 0xff) {
        Some(i) => exclusive(&[&prefix[..i], &[prefix[i] + 1]].concat()),
        None => b"+".to_vec(),
    };
    (min, max)
}

/// Escapes SCAN glob metacharacters, so any prefix matches literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_are_bytewise() {
        assert_eq!(prefix_range(b""), (b"-".to_vec(), b"+".to_vec()));
        assert_eq!(prefix_range(b"a/"), (b"[a/".to_vec(), b"(a0".to_vec()));
        assert_eq!(
            prefix_range(b"a\xff\xff"),
            (b"[a\xff\xff".to_vec(), b"(b".to_vec())
        );
        assert_eq!(prefix_range(b"\xff").1, b"+".to_vec());
    }

    #[test]
    fn cluster_slots_group_by_master() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |start, end, host: &str, port| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![bulk(host), Value::Int(port), bulk("id")]),
                Value::Array(vec![bulk("10.0.0.9"), Value::Int(7000), bulk("replica")]),
            ])
        };
        let reply = Value::Array(vec![
            entry(0, 99, "10.0.0.1", 6379),
            entry(100, 16383, "10.0.0.2", 6379),
            entry(200, 300, "10.0.0.1", 6379),
        ]);
        let masters = parse_cluster_slots(reply).unwrap();
        assert_eq!(masters["10.0.0.1:6379"], [(0, 99), (200, 300)]);
        assert_eq!(masters["10.0.0.2:6379"], [(100, 16383)]);
        assert_eq!(masters.len(), 2, "replicas are not scanned");
        assert!(matches!(
            parse_cluster_slots(Value::Array(Vec::new())),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn several_nodes_without_the_cluster_flag_are_refused() {
        let err = RedisMetaStore::connect("redis://a:1,redis://b:2", "p", None)
            .await
            .err()
            .expect("accepted");
        assert!(err.to_string().contains("--redis-cluster"), "{err}");
    }

    #[test]
    fn listing_members_sort_by_key_then_created() {
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let (a, b, c) = (
            listing_member("k", -5, &id),
            listing_member("k", 7, &id),
            listing_member("k!", 0, &id),
        );
        assert!(a < b && b < c);
        assert_eq!(listing_id(&b).unwrap(), id);
    }
}
