//! The event deliverer: a background task of every gateway that takes events from the outboxes
//! (claimed with a lease through the core, so one gateway delivers each), sends them to their
//! targets, and reports how it went. It never blocks a request: a slow or dead target only
//! makes its outboxes wait.

pub mod message;
pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use self::target::Target;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::event::EventRecord;
use crate::model::now_millis;
use crate::upload::Uploads;
use crate::upload::events::{Outcome, WARN_SHARE};

/// Most events claimed from one outbox at a time.
const BATCH: usize = 64;
/// Keys of one batch delivered at once (events of one key go one after the other).
const PARALLEL: usize = 16;
/// A batch's tries start within this; its lease covers it plus one try's timeout.
const BATCH_WINDOW: Duration = Duration::from_secs(10);
/// Rest between rounds that found nothing to do, unless this gateway records an event (another
/// gateway's events, and retries that come due, wait for it).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// After a wake-up, the events recorded meanwhile join the batch: under load a claim takes
/// many events at once instead of a few per store round trip (10 ms cost the bench's small
/// upload cycles about 9 %; 50 ms costs nothing measurable there and adds ~20 ms of latency).
const GATHER: Duration = Duration::from_millis(50);
/// How often the outboxes are counted (pending gauge, readiness warning, forgetting the
/// outboxes of deleted buckets).
const COUNT_EVERY: Duration = Duration::from_secs(5);

/// What readiness reports about the outboxes: the targets whose undelivered events passed
/// the warning share of the queue limit in some bucket.
#[derive(Debug, Default)]
pub struct EventHealth {
    crowded: Mutex<Vec<String>>,
}

impl EventHealth {
    pub fn warnings(&self) -> Vec<String> {
        self.crowded.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// A target that failed: its next round waits, and then tries a single event.
struct Failing {
    failures: u32,
    until: Instant,
}

pub struct Notifier {
    uploads: Uploads,
    targets: BTreeMap<String, Target>,
    metrics: Arc<Metrics>,
    health: Arc<EventHealth>,
    region: String,
}

impl Notifier {
    /// The deliverer for `cfg`'s targets; None when there are none.
    pub fn new(
        cfg: &Config,
        uploads: Uploads,
        metrics: Arc<Metrics>,
        health: Arc<EventHealth>,
    ) -> Result<Option<Self>, String> {
        let mut targets = BTreeMap::new();
        for t in cfg.notify_targets()? {
            let target = Target::new(&t, cfg.notify_timeout, cfg.notify_redis_maxlen)?;
            targets.insert(t.name, target);
        }
        if targets.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            uploads,
            targets,
            metrics,
            health,
            region: cfg.region.clone(),
        }))
    }

    /// Runs until the process ends.
    pub async fn run(self) {
        let mut failing: HashMap<String, Failing> = HashMap::new();
        let mut counted = Instant::now() - COUNT_EVERY;
        loop {
            let queues = match self.uploads.event_queues().await {
                Ok(q) => q,
                Err(error) => {
                    tracing::warn!(%error, "events: listing the outboxes failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if counted.elapsed() >= COUNT_EVERY {
                counted = Instant::now();
                self.count(&queues).await;
            }
            let mut more = false;
            for (bucket, name) in &queues {
                let Some(target) = self.targets.get(name) else {
                    continue;
                };
                let probe = match failing.get(name) {
                    Some(f) if f.until > Instant::now() => continue,
                    Some(_) => true,
                    None => false,
                };
                match self.round(bucket, name, target, probe).await {
                    Ok(Round::Idle) => {}
                    Ok(Round::Delivered(full)) => {
                        failing.remove(name);
                        more |= full;
                    }
                    Ok(Round::Failed) => {
                        let f = failing.entry(name.clone()).or_insert(Failing {
                            failures: 0,
                            until: Instant::now(),
                        });
                        f.failures += 1;
                        f.until = Instant::now()
                            + self.uploads.event_settings().backoff_after(f.failures);
                    }
                    Err(error) => {
                        tracing::warn!(%bucket, target = %name, %error, "events: outbox unavailable");
                    }
                }
            }
            if !more
                && tokio::time::timeout(IDLE_POLL, self.uploads.event_recorded())
                    .await
                    .is_ok()
            {
                tokio::time::sleep(GATHER).await;
            }
        }
    }

    /// One batch of one outbox.
    async fn round(
        &self,
        bucket: &str,
        name: &str,
        target: &Target,
        probe: bool,
    ) -> crate::upload::Result<Round> {
        let limit = if probe { 1 } else { BATCH };
        let lease = BATCH_WINDOW + target.timeout() + Duration::from_secs(5);
        let claimed = self
            .uploads
            .claim_events(bucket, name, lease, limit)
            .await?;
        if claimed.is_empty() {
            return Ok(Round::Idle);
        }
        let full = claimed.len() == limit;
        let results = self.deliver(target, claimed).await;
        let delivered = results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Delivered))
            .count();
        let failed = results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
            .count();
        let now = now_millis();
        for (ev, outcome) in &results {
            match outcome {
                Outcome::Delivered => {
                    let secs = (now - ev.time).max(0) as f64 / 1000.0;
                    self.metrics.event_delivered_after(name, secs);
                }
                Outcome::Failed(error) => tracing::warn!(
                    target = %name,
                    %bucket,
                    key = %ev.key,
                    seq = ev.seq,
                    tries = ev.tries + 1,
                    %error,
                    "event delivery failed"
                ),
                Outcome::Skipped => {}
            }
        }
        let settled = self.uploads.settle_events(bucket, name, &results).await?;
        self.metrics.events(name, "delivered", settled.delivered);
        self.metrics.events(name, "retried", settled.retried);
        self.metrics.events(name, "dead", settled.dead);
        self.metrics.events(name, "dropped", settled.dropped);
        if settled.dead > 0 {
            tracing::warn!(target = %name, %bucket, dead = settled.dead, "events dead-lettered");
        }
        Ok(if delivered == 0 && failed > 0 {
            Round::Failed
        } else {
            Round::Delivered(full)
        })
    }

    /// Delivers a batch: keys in parallel, the events of one key in order, stopping at its
    /// first failure (the rest wait for that one's retry).
    async fn deliver(
        &self,
        target: &Target,
        claimed: Vec<EventRecord>,
    ) -> Vec<(EventRecord, Outcome)> {
        let deadline = Instant::now() + BATCH_WINDOW;
        let mut by_key: BTreeMap<String, Vec<EventRecord>> = BTreeMap::new();
        for ev in claimed {
            by_key.entry(ev.key.clone()).or_default().push(ev);
        }
        let runs = by_key.into_values().map(|events| async move {
            let mut out = Vec::with_capacity(events.len());
            let mut stop = false;
            for ev in events {
                if stop || Instant::now() > deadline {
                    out.push((ev, Outcome::Skipped));
                    continue;
                }
                let body = message::render(&ev, &self.region);
                let delivery = format!("{}/{}/{}", ev.bucket, ev.target, ev.seq);
                let outcome = match target
                    .send(&delivery, &ev.bucket, ev.name.as_str(), &ev.key, &body)
                    .await
                {
                    Ok(()) => Outcome::Delivered,
                    Err(e) => {
                        stop = true;
                        Outcome::Failed(e)
                    }
                };
                out.push((ev, outcome));
            }
            out
        });
        futures_util::stream::iter(runs)
            .buffer_unordered(PARALLEL)
            .flat_map(futures_util::stream::iter)
            .collect()
            .await
    }

    /// Counts the undelivered events per target (gauge, readiness warning) and forgets the
    /// empty outboxes of deleted buckets.
    async fn count(&self, queues: &[(String, String)]) {
        let mut pending: BTreeMap<&str, usize> =
            self.targets.keys().map(|t| (t.as_str(), 0)).collect();
        let limit = self.uploads.event_settings().queue_limit;
        let mut crowded = Vec::new();
        for (bucket, name) in queues {
            match self.uploads.count_events(bucket, name).await {
                Ok((0, 0)) => {
                    if let Err(error) = self.uploads.forget_event_queue(bucket, name).await {
                        tracing::debug!(%bucket, target = %name, %error, "events: forgetting an outbox failed");
                    }
                }
                Ok((n, _)) => {
                    if let Some(p) = pending.get_mut(name.as_str()) {
                        *p += n;
                    }
                    if n as f64 >= limit as f64 * WARN_SHARE {
                        crowded.push(format!(
                            "events: {n} undelivered for target {name} in bucket {bucket} (limit {limit})"
                        ));
                    }
                }
                Err(error) => {
                    tracing::debug!(%bucket, target = %name, %error, "events: counting failed");
                }
            }
        }
        for (name, n) in pending {
            self.metrics.events_pending(name, n);
        }
        if let Ok(mut c) = self.health.crowded.lock() {
            *c = crowded;
        }
    }
}

enum Round {
    /// Nothing was due.
    Idle,
    /// Something was delivered (true: the batch was full, there may be more).
    Delivered(bool),
    /// Every try failed: the target is treated as down.
    Failed,
}
