//! Completion-event outboxes in Redis (see the key schema in `mod.rs`): the pending and
//! dead-lettered events of one (bucket, target) and their records live in the bucket's slot,
//! beside its objects, so an event is recorded by the same script as its object write.

use redis::ScriptInvocation;

use super::PAGE;
use super::RedisMetaStore;
use super::codec::{event_json, event_records, event_state, queue_member, queue_of};
use super::connect::redis_error;
use super::scripts::{
    CLAIM_EVENTS, DROP_DEAD_EVENTS, LIST_EVENTS, RETRY_DEAD_EVENTS, SETTLE_EVENTS,
};
use crate::model::Millis;
use crate::model::event::{EventRecord, Notice, Settle};
use crate::store::StoreResult;

impl RedisMetaStore {
    /// Adds the notice's keys (event seq, pending, records) and arguments (JSON, limit, state,
    /// error) to a PUT_OBJECT or DELETE_OBJECT invocation, after listing its outbox in the
    /// index: a hint for the deliverers, written first so no recorded event goes unlisted.
    pub(super) async fn with_notice(
        &self,
        inv: &mut ScriptInvocation<'_>,
        bucket: &str,
        notice: Notice<'_>,
    ) -> StoreResult<()> {
        let ev = notice.event;
        self.query::<()>(
            redis::cmd("SADD")
                .arg(self.event_queues())
                .arg(queue_member(bucket, &ev.target)),
        )
        .await?;
        let outbox = self.outbox(bucket, &ev.target);
        inv.key(self.event_seq(bucket))
            .key(outbox.pending)
            .key(outbox.records)
            .arg(event_json(ev)?)
            .arg(notice.limit)
            .arg(event_state(ev))
            .arg(ev.error.as_deref().unwrap_or_default());
        Ok(())
    }

    pub(super) async fn outbox_claim(
        &self,
        bucket: &str,
        target: &str,
        now: Millis,
        lease_until: Millis,
        scan: usize,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        let outbox = self.outbox(bucket, target);
        let mut inv = CLAIM_EVENTS.prepare_invoke();
        inv.key(outbox.pending)
            .key(outbox.records)
            .arg(now)
            .arg(lease_until)
            .arg(scan)
            .arg(limit);
        event_records(self.eval(&inv).await?)
    }

    pub(super) async fn outbox_settle(
        &self,
        bucket: &str,
        target: &str,
        outcomes: &[(u64, Settle)],
        dead_limit: usize,
    ) -> StoreResult<usize> {
        let outbox = self.outbox(bucket, target);
        let mut inv = SETTLE_EVENTS.prepare_invoke();
        inv.key(outbox.pending)
            .key(outbox.dead)
            .key(outbox.records)
            .arg(dead_limit);
        for (seq, outcome) in outcomes {
            let (what, due, error) = match outcome {
                Settle::Delivered => ("delivered", 0, ""),
                Settle::Retry { due, error } => ("retry", *due, error.as_str()),
                Settle::Dead { error } => ("dead", 0, error.as_str()),
                Settle::Release => ("release", 0, ""),
            };
            inv.arg(seq).arg(what).arg(due).arg(error);
        }
        self.eval(&inv).await
    }

    pub(super) async fn outbox_list(
        &self,
        bucket: &str,
        target: &str,
        dead: bool,
        mut after: u64,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        let outbox = self.outbox(bucket, target);
        let list = if dead { outbox.dead } else { outbox.pending };
        let mut out = Vec::new();
        while out.len() < limit {
            let batch = (limit - out.len()).min(PAGE);
            let mut inv = LIST_EVENTS.prepare_invoke();
            inv.key(&list).key(&outbox.records).arg(after).arg(batch);
            let page = event_records(self.eval(&inv).await?)?;
            let got = page.len();
            if let Some(last) = page.last() {
                after = last.seq;
            }
            out.extend(page);
            if got < batch {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn outbox_count(
        &self,
        bucket: &str,
        target: &str,
    ) -> StoreResult<(usize, usize)> {
        let outbox = self.outbox(bucket, target);
        // Both keys in one slot: one atomic read.
        let mut pipe = redis::pipe();
        pipe.atomic().zcard(&outbox.pending).zcard(&outbox.dead);
        pipe.query_async(&mut self.con.clone())
            .await
            .map_err(redis_error)
    }

    pub(super) async fn outbox_retry_dead(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
        now: Millis,
    ) -> StoreResult<usize> {
        let outbox = self.outbox(bucket, target);
        let mut inv = RETRY_DEAD_EVENTS.prepare_invoke();
        inv.key(outbox.pending)
            .key(outbox.dead)
            .key(outbox.records)
            .arg(now)
            .arg(seqs);
        self.eval(&inv).await
    }

    pub(super) async fn outbox_drop_dead(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
    ) -> StoreResult<usize> {
        let outbox = self.outbox(bucket, target);
        let mut inv = DROP_DEAD_EVENTS.prepare_invoke();
        inv.key(outbox.dead).key(outbox.records).arg(seqs);
        self.eval(&inv).await
    }

    pub(super) async fn outbox_queues(&self) -> StoreResult<Vec<(String, String)>> {
        let members: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.event_queues()))
            .await?;
        let mut out = members
            .iter()
            .map(|m| queue_of(m))
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    pub(super) async fn outbox_forget(&self, bucket: &str, target: &str) -> StoreResult<()> {
        if self.outbox_count(bucket, target).await? != (0, 0) {
            return Ok(());
        }
        self.query(
            redis::cmd("SREM")
                .arg(self.event_queues())
                .arg(queue_member(bucket, target)),
        )
        .await
    }
}
