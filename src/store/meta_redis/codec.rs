//! Encodings between records and Redis values: JSON, the upload hash's fields, listing members
//! and lexicographic ranges.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::event::EventRecord;
use crate::model::{Millis, PartNumber, PartRecord, UploadId, UploadRecord, UploadState};
use crate::store::{StoreError, StoreResult};

pub(super) fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn corrupt(msg: impl Into<String>) -> StoreError {
    StoreError::Corrupt(msg.into())
}

pub(super) fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encoding record: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(json: &str) -> StoreResult<T> {
    serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))
}

pub(super) fn from_json_opt<T: DeserializeOwned>(json: Option<String>) -> StoreResult<Option<T>> {
    json.map(|j| from_json(&j)).transpose()
}

pub(super) fn state_name(s: UploadState) -> &'static str {
    match s {
        UploadState::Open => "open",
        UploadState::Completing => "completing",
        UploadState::Completed => "completed",
    }
}

/// Builds the record from an upload hash's `rec, state, since, done` (see the module doc).
pub(super) fn upload_record(row: Vec<Option<String>>) -> StoreResult<Option<UploadRecord>> {
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
pub(super) fn outcome_reply(
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
pub(super) fn parts(flat: &[Option<String>]) -> StoreResult<Vec<(PartNumber, PartRecord)>> {
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
pub(super) fn listing_member(key: &str, created: Millis, id: &UploadId) -> String {
    let created = created.cast_unsigned() ^ (1 << 63);
    format!("{key}\0{created:020}\0{id}")
}

pub(super) fn listing_id(member: &str) -> StoreResult<UploadId> {
    member
        .rsplit('\0')
        .next()
        .and_then(UploadId::parse)
        .ok_or_else(|| corrupt(format!("upload listing entry {member:?}")))
}

pub(super) fn inclusive(s: &[u8]) -> Vec<u8> {
    [b"[", s].concat()
}

pub(super) fn exclusive(s: &[u8]) -> Vec<u8> {
    [b"(", s].concat()
}

/// The `BYLEX` bounds of every string starting with `prefix`: `[prefix` up to (excluding) the
/// byte-wise successor of the prefix, i.e. its last non-0xff byte incremented.
pub(super) fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
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
pub(super) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An event's delivery state as the outbox scripts keep it: `tries due lease`.
pub(super) fn event_state(ev: &EventRecord) -> String {
    format!("{} {} {}", ev.tries, ev.due, ev.lease)
}

/// The immutable part of an event, as stored: its delivery state lives beside it (the scripts
/// change it without parsing JSON) and its seq is the member it is stored under.
pub(super) fn event_json(ev: &EventRecord) -> StoreResult<String> {
    to_json(&EventRecord {
        seq: 0,
        tries: 0,
        due: 0,
        lease: 0,
        error: None,
        ..ev.clone()
    })
}

/// `{seq, JSON, state, error, …}` (as the outbox scripts reply) → records.
pub(super) fn event_records(flat: Vec<Option<String>>) -> StoreResult<Vec<EventRecord>> {
    let mut out = Vec::with_capacity(flat.len() / 4);
    let mut flat = flat.into_iter();
    while let Some(seq) = flat.next() {
        let (json, state, error) = (
            flat.next().flatten(),
            flat.next().flatten(),
            flat.next().flatten(),
        );
        let seq = seq.ok_or_else(|| corrupt("nil event seq"))?;
        let json = json.ok_or_else(|| corrupt(format!("event {seq} without record")))?;
        let state = state.ok_or_else(|| corrupt(format!("event {seq} without state")))?;
        let mut ev: EventRecord = from_json(&json)?;
        ev.seq = seq
            .parse()
            .map_err(|_| corrupt(format!("event seq {seq:?}")))?;
        let mut fields = state.split(' ');
        let mut field = || {
            fields
                .next()
                .ok_or_else(|| corrupt(format!("event {seq} state {state:?}")))
        };
        let bad = |_| corrupt(format!("event {seq} state {state:?}"));
        ev.tries = field()?.parse().map_err(bad)?;
        ev.due = field()?.parse().map_err(bad)?;
        ev.lease = field()?.parse().map_err(bad)?;
        ev.error = error;
        out.push(ev);
    }
    Ok(out)
}

/// A member of the outbox index: `bucket \n target` (bucket names have no newline).
pub(super) fn queue_member(bucket: &str, target: &str) -> String {
    format!("{bucket}\n{target}")
}

pub(super) fn queue_of(member: &str) -> StoreResult<(String, String)> {
    member
        .split_once('\n')
        .map(|(b, t)| (b.to_owned(), t.to_owned()))
        .ok_or_else(|| corrupt(format!("event queue {member:?}")))
}
