//! Completion-event outboxes in the embedded store: pending and dead-lettered events keyed
//! (bucket, target, seq), a per-bucket seq counter, and per outbox its two counts (so the limit
//! check of every object write does not walk the outbox). Each step runs inside the caller's
//! write transaction, so an event is recorded with its object write or not at all.

use std::collections::HashSet;

use redb::{ReadableTable as _, Table, TableDefinition, WriteTransaction};

use super::{be, dec, enc};
use crate::model::Millis;
use crate::model::event::{EventRecord, Notice, Settle};
use crate::store::{StoreError, StoreResult};

/// (bucket, target, seq) → EventRecord: the pending events of each outbox.
pub(super) const EVENTS: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("events_v1");
/// (bucket, target, seq) → EventRecord: the dead letters of each outbox.
pub(super) const DEAD_EVENTS: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("dead_events_v1");
/// bucket → the last seq given. Kept when the bucket is deleted, so a re-created bucket never
/// reuses a seq its old outboxes may still hold.
pub(super) const EVENT_SEQ: TableDefinition<&str, u64> = TableDefinition::new("event_seq_v1");
/// (bucket, target) → (pending, dead-lettered) counts of every outbox that has had an event,
/// until forgotten.
pub(super) const EVENT_QUEUES: TableDefinition<(&str, &str), (u64, u64)> =
    TableDefinition::new("event_queues_v1");

type Events<'t> = Table<'t, (&'static str, &'static str, u64), &'static [u8]>;
type Queues<'t> = Table<'t, (&'static str, &'static str), (u64, u64)>;

fn counts(queues: &Queues<'_>, bucket: &str, target: &str) -> StoreResult<(u64, u64)> {
    Ok(queues
        .get((bucket, target))
        .map_err(be)?
        .map_or((0, 0), |g| g.value()))
}

fn set_counts(
    queues: &mut Queues<'_>,
    bucket: &str,
    target: &str,
    counts: (u64, u64),
) -> StoreResult<()> {
    queues.insert((bucket, target), counts).map_err(be)?;
    Ok(())
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The events of one outbox in `table`, in seq order, at most `limit`.
fn events_of(
    table: &impl redb::ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    bucket: &str,
    target: &str,
    after: u64,
    limit: usize,
) -> StoreResult<Vec<EventRecord>> {
    let mut out = Vec::new();
    if after == u64::MAX {
        return Ok(out);
    }
    for item in table
        .range((bucket, target, after + 1)..=(bucket, target, u64::MAX))
        .map_err(be)?
        .take(limit)
    {
        let (k, v) = item.map_err(be)?;
        let mut ev: EventRecord = dec(v.value())?;
        ev.seq = k.value().2;
        out.push(ev);
    }
    Ok(out)
}

/// Records the notice's event in its outbox with the bucket's next seq, unless the outbox
/// already holds `limit` pending events (`OutboxFull`: the caller's transaction is dropped).
pub(super) fn record_in(
    tx: &WriteTransaction,
    bucket: &str,
    notice: Notice<'_>,
) -> StoreResult<()> {
    let target = notice.event.target.as_str();
    let mut queues = tx.open_table(EVENT_QUEUES).map_err(be)?;
    let (pending, dead) = counts(&queues, bucket, target)?;
    if usize_of(pending) >= notice.limit {
        return Err(StoreError::OutboxFull);
    }
    let mut seqs = tx.open_table(EVENT_SEQ).map_err(be)?;
    let seq = seqs.get(bucket).map_err(be)?.map_or(0, |g| g.value()) + 1;
    seqs.insert(bucket, seq).map_err(be)?;
    let ev = EventRecord {
        seq,
        ..notice.event.clone()
    };
    tx.open_table(EVENTS)
        .map_err(be)?
        .insert((bucket, target, seq), enc(&ev)?.as_slice())
        .map_err(be)?;
    set_counts(&mut queues, bucket, target, (pending + 1, dead))
}

/// `MetaStore::claim_events` in one write transaction.
/// Whether a claim would take anything: checked in a read transaction first, so that a
/// deliverer polling an outbox with nothing due never commits (and fsyncs) an empty write.
pub(super) fn claimable_in(
    tx: &redb::ReadTransaction,
    bucket: &str,
    target: &str,
    now: Millis,
    scan: usize,
) -> StoreResult<bool> {
    let events = match tx.open_table(EVENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
        Err(e) => return Err(be(e)),
    };
    let mut blocked = HashSet::new();
    for ev in events_of(&events, bucket, target, 0, scan)? {
        if blocked.contains(&ev.key) || ev.due > now || ev.lease > now {
            blocked.insert(ev.key);
            continue;
        }
        return Ok(true);
    }
    Ok(false)
}

pub(super) fn claim_in(
    tx: &WriteTransaction,
    bucket: &str,
    target: &str,
    now: Millis,
    lease_until: Millis,
    scan: usize,
    limit: usize,
) -> StoreResult<Vec<EventRecord>> {
    let mut events = tx.open_table(EVENTS).map_err(be)?;
    let scanned = events_of(&events, bucket, target, 0, scan)?;
    let (mut blocked, mut claimed) = (HashSet::new(), Vec::new());
    for mut ev in scanned {
        if claimed.len() >= limit {
            break;
        }
        if blocked.contains(&ev.key) || ev.due > now || ev.lease > now {
            // Not claimable now: later events of its key wait for it.
            blocked.insert(ev.key);
            continue;
        }
        ev.lease = lease_until;
        events
            .insert((bucket, target, ev.seq), enc(&ev)?.as_slice())
            .map_err(be)?;
        claimed.push(ev);
    }
    Ok(claimed)
}

/// `MetaStore::settle_events` in one write transaction.
pub(super) fn settle_in(
    tx: &WriteTransaction,
    bucket: &str,
    target: &str,
    outcomes: &[(u64, Settle)],
    dead_limit: usize,
) -> StoreResult<usize> {
    let mut events = tx.open_table(EVENTS).map_err(be)?;
    let mut dead = tx.open_table(DEAD_EVENTS).map_err(be)?;
    let mut queues = tx.open_table(EVENT_QUEUES).map_err(be)?;
    let (mut n_pending, mut n_dead) = counts(&queues, bucket, target)?;
    for (seq, outcome) in outcomes {
        let key = (bucket, target, *seq);
        let Some(mut ev) = get_event(&events, key)? else {
            continue;
        };
        ev.lease = 0;
        match outcome {
            Settle::Delivered => {
                events.remove(key).map_err(be)?;
                n_pending = n_pending.saturating_sub(1);
            }
            Settle::Retry { due, error } => {
                ev.tries += 1;
                ev.due = *due;
                ev.error = Some(error.clone());
                events.insert(key, enc(&ev)?.as_slice()).map_err(be)?;
            }
            Settle::Dead { error } => {
                ev.tries += 1;
                ev.error = Some(error.clone());
                events.remove(key).map_err(be)?;
                dead.insert(key, enc(&ev)?.as_slice()).map_err(be)?;
                n_pending = n_pending.saturating_sub(1);
                n_dead += 1;
            }
            Settle::Release => {
                events.insert(key, enc(&ev)?.as_slice()).map_err(be)?;
            }
        }
    }
    // The oldest (lowest seq) dead letters go first.
    let excess = usize_of(n_dead).saturating_sub(dead_limit);
    if excess > 0 {
        let oldest: Vec<u64> = events_of(&dead, bucket, target, 0, excess)?
            .iter()
            .map(|ev| ev.seq)
            .collect();
        for seq in oldest {
            dead.remove((bucket, target, seq)).map_err(be)?;
        }
        n_dead = n_dead.saturating_sub(u64_of(excess));
    }
    set_counts(&mut queues, bucket, target, (n_pending, n_dead))?;
    Ok(excess)
}

fn get_event(events: &Events<'_>, key: (&str, &str, u64)) -> StoreResult<Option<EventRecord>> {
    let found = events.get(key).map_err(be)?;
    found
        .map(|g| {
            let mut ev: EventRecord = dec(g.value())?;
            ev.seq = key.2;
            Ok(ev)
        })
        .transpose()
}

/// The dead letters `seqs` of an outbox (all when empty), in seq order.
fn dead_of(
    dead: &Events<'_>,
    bucket: &str,
    target: &str,
    seqs: &[u64],
) -> StoreResult<Vec<EventRecord>> {
    if seqs.is_empty() {
        return events_of(dead, bucket, target, 0, usize::MAX);
    }
    let mut out = Vec::new();
    let unique: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
    for seq in unique {
        out.extend(get_event(dead, (bucket, target, seq))?);
    }
    Ok(out)
}

/// `MetaStore::retry_dead_events` in one write transaction.
pub(super) fn retry_dead_in(
    tx: &WriteTransaction,
    bucket: &str,
    target: &str,
    seqs: &[u64],
    now: Millis,
) -> StoreResult<usize> {
    let mut events = tx.open_table(EVENTS).map_err(be)?;
    let mut dead = tx.open_table(DEAD_EVENTS).map_err(be)?;
    let mut queues = tx.open_table(EVENT_QUEUES).map_err(be)?;
    let moved = dead_of(&dead, bucket, target, seqs)?;
    for mut ev in moved.iter().cloned() {
        let key = (bucket, target, ev.seq);
        dead.remove(key).map_err(be)?;
        (ev.tries, ev.due, ev.lease) = (0, now, 0);
        events.insert(key, enc(&ev)?.as_slice()).map_err(be)?;
    }
    let (pending, n_dead) = counts(&queues, bucket, target)?;
    let n = u64_of(moved.len());
    set_counts(
        &mut queues,
        bucket,
        target,
        (pending + n, n_dead.saturating_sub(n)),
    )?;
    Ok(moved.len())
}

/// `MetaStore::drop_dead_events` in one write transaction.
pub(super) fn drop_dead_in(
    tx: &WriteTransaction,
    bucket: &str,
    target: &str,
    seqs: &[u64],
) -> StoreResult<usize> {
    let mut dead = tx.open_table(DEAD_EVENTS).map_err(be)?;
    let mut queues = tx.open_table(EVENT_QUEUES).map_err(be)?;
    let dropped = dead_of(&dead, bucket, target, seqs)?;
    for ev in &dropped {
        dead.remove((bucket, target, ev.seq)).map_err(be)?;
    }
    let (pending, n_dead) = counts(&queues, bucket, target)?;
    set_counts(
        &mut queues,
        bucket,
        target,
        (pending, n_dead.saturating_sub(u64_of(dropped.len()))),
    )?;
    Ok(dropped.len())
}

/// `MetaStore::list_events` in a read transaction.
pub(super) fn list_in(
    tx: &redb::ReadTransaction,
    bucket: &str,
    target: &str,
    dead: bool,
    after: u64,
    limit: usize,
) -> StoreResult<Vec<EventRecord>> {
    let table = tx
        .open_table(if dead { DEAD_EVENTS } else { EVENTS })
        .map_err(be)?;
    events_of(&table, bucket, target, after, limit)
}

pub(super) fn count_in(
    tx: &redb::ReadTransaction,
    bucket: &str,
    target: &str,
) -> StoreResult<(usize, usize)> {
    let queues = tx.open_table(EVENT_QUEUES).map_err(be)?;
    let found = queues.get((bucket, target)).map_err(be)?;
    let (pending, dead) = found.map_or((0, 0), |g| g.value());
    Ok((usize_of(pending), usize_of(dead)))
}

pub(super) fn queues_in(tx: &redb::ReadTransaction) -> StoreResult<Vec<(String, String)>> {
    let queues = tx.open_table(EVENT_QUEUES).map_err(be)?;
    let mut out = Vec::new();
    for item in queues.iter().map_err(be)? {
        let (k, _) = item.map_err(be)?;
        let (bucket, target) = k.value();
        out.push((bucket.to_owned(), target.to_owned()));
    }
    Ok(out)
}

/// Removes an outbox from the index if it holds nothing.
pub(super) fn forget_in(tx: &WriteTransaction, bucket: &str, target: &str) -> StoreResult<()> {
    let mut queues = tx.open_table(EVENT_QUEUES).map_err(be)?;
    if counts(&queues, bucket, target)? == (0, 0) {
        queues.remove((bucket, target)).map_err(be)?;
    }
    Ok(())
}
