//! Completion events: which writes make one (the bucket's notification rules), recording it in
//! the same store step as the write (the outbox), and the delivery rules the deliverer follows
//! (lease, back-off, dead letters). Sending is not here: the deliverer only reports outcomes.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::{Error, Result};
use super::{Uploads, millis, notify_rules};
use crate::model::event::{EventName, EventRecord, Notice, Settle};
use crate::model::{BucketRecord, ObjectRecord, now_millis};

/// The outbox holds events of one key behind a failed one; a claim looks this far for others.
const CLAIM_SCAN: usize = 1024;

/// Dead letters kept per bucket and target; older ones are dropped (and counted).
pub const DEAD_LIMIT: usize = 10_000;

/// Share of `queue_limit` at which readiness starts warning.
pub const WARN_SHARE: f64 = 0.8;

/// The server's event targets and delivery rules (`--notify-*`).
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// Target ARN → target name, for every configured target.
    pub targets: BTreeMap<String, String>,
    /// Most pending events per bucket and target; a write past it is refused (SlowDown).
    pub queue_limit: usize,
    /// Tries before an event is dead-lettered.
    pub max_tries: u32,
    /// Age (from the write) after which a failing event is dead-lettered.
    pub max_age: Duration,
    /// First retry delay; it doubles with every try up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            targets: BTreeMap::new(),
            queue_limit: 100_000,
            max_tries: 20,
            max_age: Duration::from_secs(24 * 3600),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl EventSettings {
    /// The delay before try number `tries + 1` (after `tries` failures).
    pub fn backoff_after(&self, tries: u32) -> Duration {
        let factor = 1u32
            .checked_shl(tries.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// Facts about the request behind a write that only events report. Set once per request by
/// the service (a task-local, so they need not pass through every core signature) and carried
/// into the tasks a request spawns with [`Origin::current`] and [`Origin::scope`].
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub source_ip: String,
    pub request_id: String,
}

tokio::task_local! {
    static ORIGIN: Origin;
}

impl Origin {
    /// The origin of the request this task serves (empty outside one).
    pub fn current() -> Self {
        ORIGIN.try_with(Clone::clone).unwrap_or_default()
    }

    /// Runs `f` as part of this request.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        ORIGIN.scope(self, f).await
    }
}

/// How one claimed event's delivery went.
#[derive(Clone, Debug)]
pub enum Outcome {
    Delivered,
    Failed(String),
    /// Not attempted (an earlier event of its key failed, or the batch ran out of time).
    Skipped,
}

/// What the deliverer does with one claimed event's failure (for its metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
    /// Dead letters dropped to keep the list within [`DEAD_LIMIT`].
    pub dropped: usize,
}

impl Uploads {
    pub fn event_settings(&self) -> &EventSettings {
        &self.events
    }

    /// The event a write of `name` on bucket/key makes under `bucket`'s rules, if any rule asks
    /// for it and names a configured target (a rule left from an earlier configuration of the
    /// server makes none).
    pub(super) fn event_for(
        &self,
        bucket: &BucketRecord,
        name: EventName,
        key: &str,
        principal: &str,
        obj: Option<&ObjectRecord>,
    ) -> Option<EventRecord> {
        let rule = notify_rules::matching(bucket.notification.as_deref()?, name, key)?;
        let target = self.events.targets.get(&rule.target)?;
        let origin = Origin::current();
        Some(EventRecord {
            seq: 0,
            target: target.clone(),
            rule: rule.id.clone(),
            name,
            bucket: bucket.name.clone(),
            key: key.to_owned(),
            size: obj.map(|o| o.size),
            etag: obj.map(|o| o.etag.clone()),
            time: obj.map_or_else(now_millis, |o| o.modified),
            principal: principal.to_owned(),
            bucket_owner: bucket.owner.clone(),
            source_ip: origin.source_ip,
            request_id: origin.request_id,
            tries: 0,
            due: 0,
            lease: 0,
            error: None,
        })
    }

    /// The bucket's record when this server has event targets (else no write makes an event,
    /// and the write needs no extra read).
    pub(super) async fn notifying_bucket(&self, bucket: &str) -> Result<Option<BucketRecord>> {
        if self.events.targets.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.bucket(bucket).await?))
    }

    pub(super) fn notice<'a>(&self, event: Option<&'a EventRecord>) -> Option<Notice<'a>> {
        event.map(|event| Notice {
            event,
            limit: self.events.queue_limit,
        })
    }

    /// Resolves when this gateway has recorded an event since the last call (or at once if it
    /// did before anyone waited).
    pub async fn event_recorded(&self) {
        self.recorded.notified().await;
    }

    /// Every (bucket, target) outbox that has had an event.
    pub async fn event_queues(&self) -> Result<Vec<(String, String)>> {
        Ok(self.meta.event_queues().await?)
    }

    /// Claims up to `limit` events of one outbox for delivery by this gateway until `lease`
    /// from now (see `MetaStore::claim_events`: in order per key, never two deliverers at once).
    pub async fn claim_events(
        &self,
        bucket: &str,
        target: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        let now = now_millis();
        Ok(self
            .meta
            .claim_events(bucket, target, now, now + millis(lease), CLAIM_SCAN, limit)
            .await?)
    }

    /// Records how claimed events went: delivered ones leave the outbox; a failed one is tried
    /// again after the back-off for its try count, or dead-lettered once it has used its tries
    /// or is older than the maximum age.
    pub async fn settle_events(
        &self,
        bucket: &str,
        target: &str,
        results: &[(EventRecord, Outcome)],
    ) -> Result<Settled> {
        let now = now_millis();
        let mut out = Settled::default();
        let outcomes: Vec<(u64, Settle)> = results
            .iter()
            .map(|(ev, outcome)| {
                let settle = match outcome {
                    Outcome::Delivered => {
                        out.delivered += 1;
                        Settle::Delivered
                    }
                    Outcome::Skipped => Settle::Release,
                    Outcome::Failed(error) => {
                        let tries = ev.tries + 1;
                        let old = now - ev.time > millis(self.events.max_age);
                        if tries >= self.events.max_tries || old {
                            out.dead += 1;
                            Settle::Dead {
                                error: error.clone(),
                            }
                        } else {
                            out.retried += 1;
                            Settle::Retry {
                                due: now + millis(self.events.backoff_after(tries)),
                                error: error.clone(),
                            }
                        }
                    }
                };
                (ev.seq, settle)
            })
            .collect();
        out.dropped = self
            .meta
            .settle_events(bucket, target, &outcomes, DEAD_LIMIT)
            .await?;
        Ok(out)
    }

    /// Pending (or dead-lettered) events of one outbox after `after`, for `mpgw admin events`.
    pub async fn list_events(
        &self,
        bucket: &str,
        target: &str,
        dead: bool,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        Ok(self
            .meta
            .list_events(bucket, target, dead, after, limit)
            .await?)
    }

    /// (pending, dead-lettered) events of one outbox.
    pub async fn count_events(&self, bucket: &str, target: &str) -> Result<(usize, usize)> {
        Ok(self.meta.count_events(bucket, target).await?)
    }

    /// Puts dead letters (all when `seqs` is empty) back in the outbox with fresh tries.
    pub async fn retry_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
    ) -> Result<usize> {
        Ok(self
            .meta
            .retry_dead_events(bucket, target, seqs, now_millis())
            .await?)
    }

    /// Deletes dead letters (all when `seqs` is empty).
    pub async fn drop_dead_events(
        &self,
        bucket: &str,
        target: &str,
        seqs: &[u64],
    ) -> Result<usize> {
        Ok(self.meta.drop_dead_events(bucket, target, seqs).await?)
    }

    /// Stops polling an outbox of a deleted bucket once it holds nothing; true when it did.
    pub async fn forget_event_queue(&self, bucket: &str, target: &str) -> Result<bool> {
        match self.bucket(bucket).await {
            Err(Error::NoSuchBucket) => {}
            Ok(_) => return Ok(false),
            Err(e) => return Err(e),
        }
        if self.meta.count_events(bucket, target).await? != (0, 0) {
            return Ok(false);
        }
        self.meta.forget_event_queue(bucket, target).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let s = EventSettings {
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            ..EventSettings::default()
        };
        let secs: Vec<u64> = (1..=6).map(|t| s.backoff_after(t).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
        assert_eq!(s.backoff_after(200), Duration::from_secs(10));
    }
}
