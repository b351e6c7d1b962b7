//! The Lua scripts: each state transition is one script over the keys of a single hash tag
//! (cluster-safe); the KEYS/ARGV of each are documented on it.

use std::sync::LazyLock;

use redis::Script;

// ---- scripts: each touches the keys of one hash tag only ----

/// KEYS: bucket record. ARGV: record JSON. Returns the existing record's JSON or nil.
pub(super) static DELETE_FILE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
        return 1",
    )
});

pub(super) static CREATE_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local old = redis.call('GET', KEYS[1])
        if not old then redis.call('SET', KEYS[1], ARGV[1]) end
        return old",
    )
});

/// KEYS: bucket record, objects, object keys, upload listing, seal.
pub(super) static DELETE_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
        if redis.call('HLEN', KEYS[2]) > 0 or redis.call('ZCARD', KEYS[3]) > 0
            or redis.call('ZCARD', KEYS[4]) > 0 then return 'busy' end
        redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
        return 'deleted'",
    )
});

/// KEYS: bucket record, objects, seal. ARGV: sealed at (millis). Seals an existing bucket that
/// holds no object.
pub(super) static SEAL_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
        if redis.call('HLEN', KEYS[2]) > 0 then return 'busy' end
        redis.call('SET', KEYS[3], ARGV[1])
        return 'sealed'",
    )
});

/// What PUT_OBJECT answers for a sealed bucket (never a record's JSON, which starts with `{`).
pub(super) const SEALED_REPLY: &str = "!sealed";

/// What PUT_OBJECT and DELETE_OBJECT answer when the event's outbox is full (storing nothing).
pub(super) const FULL_REPLY: &str = "!full";

/// Lua: records an event in an outbox (see the schema in `mod.rs`) with the bucket's next seq,
/// which it returns. `state` is `tries due lease`; `err` '' for none. The seq is formatted with
/// `%d`, since Lua's own number formatting switches to exponents past 14 digits.
const RECORD_EVENT: &str = r"
local function record_event(seq_key, pending, records, key, json, state, err)
    local s = string.format('%d', redis.call('INCR', seq_key))
    redis.call('ZADD', pending, s, s)
    redis.call('HSET', records, s, json, s .. ':k', key, s .. ':s', state)
    if err ~= '' then redis.call('HSET', records, s .. ':e', err) end
    return s
end
";

/// KEYS: objects, object keys, seal, and with an event: event seq, pending, records. ARGV: key,
/// JSON, and with an event: its JSON, the outbox limit, its state, its error. Returns the old
/// JSON or nil; `SEALED_REPLY` while the bucket is being deleted, or `FULL_REPLY` when the
/// outbox already holds `limit` pending events (storing nothing either way; the seal wins).
pub(super) static PUT_OBJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{RECORD_EVENT}
        if redis.call('EXISTS', KEYS[3]) == 1 then return '{SEALED_REPLY}' end
        if KEYS[4] and redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[4]) then
            return '{FULL_REPLY}'
        end
        local old = redis.call('HGET', KEYS[1], ARGV[1])
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[2], 0, ARGV[1])
        if KEYS[4] then
            record_event(KEYS[4], KEYS[5], KEYS[6], ARGV[1], ARGV[3], ARGV[5], ARGV[6])
        end
        return old",
    ))
});

/// KEYS: upload listing, seal. ARGV: listing member. Adds the entry unless the bucket is being
/// deleted; returns 1 when it did, else 0.
pub(super) static LIST_UPLOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
        redis.call('ZADD', KEYS[1], 0, ARGV[1])
        return 1",
    )
});

/// KEYS: objects. ARGV: key, blob id, JSON. Sets the record only while the stored one is still
/// the object in that blob (its JSON's `blob`); returns 1 when it did, else 0.
pub(super) static UPDATE_OBJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local cur = redis.call('HGET', KEYS[1], ARGV[1])
        if not cur then return 0 end
        if cjson.decode(cur).blob ~= ARGV[2] then return 0 end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
        return 1",
    )
});

/// KEYS: objects, object keys, and with an event: event seq, pending, records. ARGV: key, and
/// with an event: as PUT_OBJECT. Returns the old JSON or nil (recording the event only when a
/// record was removed), or `FULL_REPLY`, removing nothing.
pub(super) static DELETE_OBJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{RECORD_EVENT}
        local old = redis.call('HGET', KEYS[1], ARGV[1])
        if not old then return false end
        if KEYS[3] and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[3]) then
            return '{FULL_REPLY}'
        end
        redis.call('HDEL', KEYS[1], ARGV[1])
        redis.call('ZREM', KEYS[2], ARGV[1])
        if KEYS[3] then
            record_event(KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[4], ARGV[5])
        end
        return old",
    ))
});

/// KEYS: object keys, objects. ARGV: lex min, lex max, count. Returns `{key, JSON, …}`: one
/// consistent snapshot of a page.
pub(super) static LIST_OBJECTS: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static PUT_PART: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {'closed'} end
        local old = redis.call('HGET', KEYS[2], ARGV[1])
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        return {'ok', old}",
    )
});

/// KEYS: upload, parts. ARGV: part number, JSON, the file of the part it replaces ('' when it
/// appends). Records the part only while the upload is Open and the table is as the caller read
/// it (see `MetaStore::append_part`); cjson reads only the old part's file name.
pub(super) static APPEND_PART: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {'closed'} end
        local n = tonumber(ARGV[1])
        if redis.call('HEXISTS', KEYS[2], tostring(n + 1)) == 1 then return {'moved'} end
        local old = redis.call('HGET', KEYS[2], ARGV[1])
        if ARGV[3] == '' then
            if old then return {'moved'} end
            if n > 1 and redis.call('HEXISTS', KEYS[2], tostring(n - 1)) == 0 then
                return {'moved'}
            end
        elseif not old or cjson.decode(old).file ~= ARGV[3] then
            return {'moved'}
        end
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        return {'ok', old}",
    )
});

/// KEYS: parts. ARGV: after (0 for none), count, highest part number. Returns `{n, JSON, …}`
/// ascending by number. A hash no longer than a page is read whole and sorted here; a longer one
/// is read by asking for the numbers after `after` in turn, 1000 per HMGET, which for the usual
/// dense numbering reads one page per page: sorting all the keys for every page made ListParts of
/// 10 000 parts take 108 ms.
pub(super) static LIST_PARTS: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static BEGIN_COMPLETE: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static REOPEN: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static FINISH_COMPLETE: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static ABORT_UPLOAD: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static RESERVE_UPLOAD: LazyLock<Script> = LazyLock::new(|| {
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
/// expire with the last challenge. A challenge expiring no later than the latest one is indexed
/// 1 ms after it, so challenges made in the same millisecond still go in the order they came
/// (the index alone decides expiry; the record keeps what it was given).
pub(super) static PUT_CHALLENGE: LazyLock<Script> = LazyLock::new(|| {
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
        local expires = tonumber(ARGV[3])
        local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
        if top and tonumber(top) >= expires then expires = tonumber(top) + 1 end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[2], string.format('%d', expires), ARGV[1])
        local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
        redis.call('PEXPIREAT', KEYS[1], last)
        redis.call('PEXPIREAT', KEYS[2], last)
        return 1",
    )
});

/// KEYS: challenge records, their expiry index. ARGV: nonce, now. The record, removed, unless
/// it had expired.
pub(super) static TAKE_CHALLENGE: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static PURGE_COMPLETED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('HGET', KEYS[1], 'state') ~= 'completed' then return 0 end
        redis.call('DEL', KEYS[1], KEYS[2])
        return 1",
    )
});

// ---- event outboxes: every key of one (bucket, target) outbox is in the bucket's slot ----

/// Lua: an event's delivery state `tries due lease` split into its three fields (strings).
const EVENT_STATE: &str = r"
local function event_state(records, s)
    local st = redis.call('HGET', records, s .. ':s')
    local t, d, l = string.match(st or '', '^(%d+) (%-?%d+) (%-?%d+)$')
    if not t then error('corrupt delivery state of event ' .. s) end
    return t, d, l
end
local function forget_event(records, s)
    redis.call('HDEL', records, s, s .. ':k', s .. ':s', s .. ':e')
end
";

/// KEYS: pending, records. ARGV: now, lease until, scan, limit. Claims as
/// `MetaStore::claim_events` says: of the first `scan` pending events, those due and not leased
/// whose key has no earlier event left unclaimed, up to `limit`. Returns
/// `{seq, JSON, state, error, …}` of the claimed, with their new lease.
pub(super) static CLAIM_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{EVENT_STATE}
        local now, scan, limit = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
        local out, blocked, claimed = {{}}, {{}}, 0
        if scan < 1 or limit < 1 then return out end
        for _, s in ipairs(redis.call('ZRANGE', KEYS[1], 0, scan - 1)) do
            local key = redis.call('HGET', KEYS[2], s .. ':k') or ''
            local t, d, l = event_state(KEYS[2], s)
            if not blocked[key] and tonumber(d) <= now and tonumber(l) <= now then
                local st = t .. ' ' .. d .. ' ' .. ARGV[2]
                redis.call('HSET', KEYS[2], s .. ':s', st)
                local f = redis.call('HMGET', KEYS[2], s, s .. ':e')
                out[#out + 1] = s
                out[#out + 1] = f[1]
                out[#out + 1] = st
                out[#out + 1] = f[2]
                claimed = claimed + 1
                if claimed >= limit then break end
            else
                blocked[key] = true
            end
        end
        return out",
    ))
});

/// KEYS: pending, dead, records. ARGV: dead limit, then per outcome: seq, `delivered` | `retry`
/// | `dead` | `release`, due, error. Events no longer pending are skipped. Returns how many of
/// the oldest (lowest seq) dead letters were dropped to keep the newest `dead limit`.
pub(super) static SETTLE_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{EVENT_STATE}
        for i = 2, #ARGV, 4 do
            local s, what = ARGV[i], ARGV[i + 1]
            if redis.call('ZSCORE', KEYS[1], s) then
                if what == 'delivered' then
                    redis.call('ZREM', KEYS[1], s)
                    forget_event(KEYS[3], s)
                else
                    local t, d = event_state(KEYS[3], s)
                    if what == 'retry' then
                        t, d = string.format('%d', tonumber(t) + 1), ARGV[i + 2]
                        redis.call('HSET', KEYS[3], s .. ':e', ARGV[i + 3])
                    elseif what == 'dead' then
                        t = string.format('%d', tonumber(t) + 1)
                        redis.call('ZREM', KEYS[1], s)
                        redis.call('ZADD', KEYS[2], s, s)
                        redis.call('HSET', KEYS[3], s .. ':e', ARGV[i + 3])
                    end
                    redis.call('HSET', KEYS[3], s .. ':s', t .. ' ' .. d .. ' 0')
                end
            end
        end
        local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[1])
        if excess <= 0 then return 0 end
        for _, s in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
            forget_event(KEYS[3], s)
        end
        redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
        return excess",
    ))
});

/// KEYS: pending or dead, records. ARGV: after (seq), count. Returns `{seq, JSON, state, error,
/// …}` ascending: one consistent snapshot of a page.
pub(super) static LIST_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local out = {}
        local seqs = redis.call('ZRANGE', KEYS[1], '(' .. ARGV[1], '+inf', 'BYSCORE', 'LIMIT', 0,
            ARGV[2])
        for _, s in ipairs(seqs) do
            local f = redis.call('HMGET', KEYS[2], s, s .. ':s', s .. ':e')
            out[#out + 1] = s
            out[#out + 1] = f[1]
            out[#out + 1] = f[2]
            out[#out + 1] = f[3]
        end
        return out",
    )
});

/// KEYS: pending, dead, records. ARGV: now, then the seqs (none: every dead letter). Moves those
/// dead letters back to pending, due at `now`, tries 0, not leased; returns how many.
pub(super) static RETRY_DEAD_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local seqs = {}
        if #ARGV == 1 then
            seqs = redis.call('ZRANGE', KEYS[2], 0, -1)
        else
            for i = 2, #ARGV do seqs[#seqs + 1] = ARGV[i] end
        end
        local n = 0
        for _, s in ipairs(seqs) do
            if redis.call('ZREM', KEYS[2], s) == 1 then
                redis.call('ZADD', KEYS[1], s, s)
                redis.call('HSET', KEYS[3], s .. ':s', '0 ' .. ARGV[1] .. ' 0')
                n = n + 1
            end
        end
        return n",
    )
});

/// KEYS: dead, records. ARGV: the seqs (none: every dead letter). Deletes those dead letters;
/// returns how many.
pub(super) static DROP_DEAD_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{EVENT_STATE}
        local seqs = ARGV
        if #ARGV == 0 then seqs = redis.call('ZRANGE', KEYS[1], 0, -1) end
        local n = 0
        for _, s in ipairs(seqs) do
            if redis.call('ZREM', KEYS[1], s) == 1 then
                forget_event(KEYS[2], s)
                n = n + 1
            end
        end
        return n",
    ))
});
