//! Prometheus metrics, and `InstrumentedMeta`, the state-store decorator that feeds them.
//!
//! One registry per `App`, no globals: gateways started in one process (the tests) count apart.
//! `admin` serves the registry as Prometheus text at `/metrics`. Where each number comes from:
//! requests and their latency from `http` (when the response body ends), connections and bytes
//! on the wire from `server`, write and fsync latency from `store::disk`, and state-store latency,
//! errors, parts and upload transitions from `InstrumentedMeta`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: &'static str,
    kind: &'static str,
}

/// What happened to an upload; `Created` opens one, the others close it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadEvent {
    Created,
    Completed,
    Aborted,
    /// Aborted by the expiry janitor (also counted as `aborted`: see `Metrics::uploads_expired`).
    Expired,
}

impl UploadEvent {
    const ALL: [Self; 4] = [Self::Created, Self::Completed, Self::Aborted, Self::Expired];

    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Expired => "expired",
        }
    }
}

/// What an fsync made durable.
#[derive(Clone, Copy, Debug)]
pub enum Fsync {
    /// A part or object file's bytes.
    File,
    /// A directory entry (the rename of a committed file).
    Dir,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Why the gateway gave up on a client (see `server` and `http`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// TLS handshake not done within --header-timeout.
    Tls,
    /// Request head not complete within --header-timeout.
    Header,
    /// No request for --idle-timeout.
    Idle,
    /// Request body stalled for --body-timeout.
    Body,
    /// Response not read by the client for --body-timeout.
    Send,
    /// Request body slower than --min-body-rate over --body-rate-window.
    BodyRate,
    /// Response read by the client slower than --min-body-rate over --body-rate-window.
    SendRate,
}

impl Timeout {
    const ALL: [Self; 7] = [
        Self::Tls,
        Self::Header,
        Self::Idle,
        Self::Body,
        Self::Send,
        Self::BodyRate,
        Self::SendRate,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Header => "header",
            Self::Idle => "idle",
            Self::Body => "body",
            Self::Send => "send",
            Self::BodyRate => "body_rate",
            Self::SendRate => "send_rate",
        }
    }
}

/// Per-listener connection counters. `Default` gives detached ones, counted nowhere (the admin
/// listener, so that scrapes do not show up as traffic).
#[derive(Clone, Debug, Default)]
pub struct ConnectionMetrics {
    pub open: Gauge,
    pub accepted: Counter,
    /// On the wire, request and response heads included.
    pub received_bytes: Counter,
    pub sent_bytes: Counter,
    /// Times the accept loop reached --max-connections and paused.
    pub limited: Counter,
    timeouts: Family<KindLabels, Counter>,
}

impl ConnectionMetrics {
    pub fn timeout(&self, kind: Timeout) {
        self.timeouts
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<OpLabels, Histogram>,
    pub connections: ConnectionMetrics,
    pub parts_written: Counter,
    uploads: Family<EventLabels, Counter>,
    pub uploads_open: Gauge,
    part_write_duration: Histogram,
    fsync_duration: Family<TargetLabels, Histogram>,
    store_duration: Family<MethodLabels, Histogram>,
    store_errors: Family<ErrorLabels, Counter>,
    events: Family<DeliveryLabels, Counter>,
    event_latency: Family<NameLabels, Histogram>,
    events_pending: Family<NameLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    target: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    target: String,
}

/// 1 ms to 33 s: requests, including the transfer of large bodies.
fn slow_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// 0.1 ms to 3.3 s: single disk or state-store operations.
fn fast_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("mpgw"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(slow_buckets),
            connections: ConnectionMetrics::default(),
            parts_written: Counter::default(),
            uploads: Family::default(),
            uploads_open: Gauge::default(),
            part_write_duration: slow_buckets(),
            fsync_duration: Family::new_with_constructor(fast_buckets),
            store_duration: Family::new_with_constructor(fast_buckets),
            store_errors: Family::default(),
            events: Family::default(),
            event_latency: Family::new_with_constructor(slow_buckets),
            events_pending: Family::default(),
        };
        // Every event series exists from the start, so rates work before the first one happens.
        for e in UploadEvent::ALL {
            drop(m.uploads.get_or_create(&EventLabels { event: e.as_str() }));
        }
        for t in Timeout::ALL {
            drop(
                m.connections
                    .timeouts
                    .get_or_create(&KindLabels { kind: t.as_str() }),
            );
        }
        let r = &mut m.registry;
        r.register(
            "requests",
            "S3 requests by operation and HTTP status",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "S3 request latency by operation, until the last response byte",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register(
            "connections_open",
            "Open client connections",
            m.connections.open.clone(),
        );
        r.register(
            "connections",
            "Accepted client connections",
            m.connections.accepted.clone(),
        );
        r.register(
            "connections_limited",
            "Times --max-connections was reached and accepting paused",
            m.connections.limited.clone(),
        );
        r.register(
            "timeouts",
            "Connections or requests ended by a timeout, by kind (tls, header, idle, body, send)",
            m.connections.timeouts.clone(),
        );
        r.register_with_unit(
            "received",
            "Bytes received from clients (heads included)",
            Unit::Bytes,
            m.connections.received_bytes.clone(),
        );
        r.register_with_unit(
            "sent",
            "Bytes sent to clients (heads included)",
            Unit::Bytes,
            m.connections.sent_bytes.clone(),
        );
        r.register(
            "parts_written",
            "Parts recorded by UploadPart",
            m.parts_written.clone(),
        );
        r.register(
            "uploads",
            "Multipart upload transitions by event",
            m.uploads.clone(),
        );
        r.register(
            "uploads_open",
            "Open multipart uploads (recounted from the state store at start-up and every orphan sweep)",
            m.uploads_open.clone(),
        );
        r.register_with_unit(
            "part_write_duration",
            "Time spent writing one part or object file, excluding waits for the client and the fsync",
            Unit::Seconds,
            m.part_write_duration.clone(),
        );
        r.register_with_unit(
            "fsync_duration",
            "fsync latency by target",
            Unit::Seconds,
            m.fsync_duration.clone(),
        );
        r.register_with_unit(
            "store_duration",
            "State store call latency by method",
            Unit::Seconds,
            m.store_duration.clone(),
        );
        r.register(
            "store_errors",
            "Failed state store calls by method and kind",
            m.store_errors.clone(),
        );
        r.register(
            "events",
            "Completion events by target and outcome (queued, delivered, retried, dead, dropped)",
            m.events.clone(),
        );
        r.register_with_unit(
            "event_delivery",
            "Time from an object write to the delivery of its event, by target",
            Unit::Seconds,
            m.event_latency.clone(),
        );
        r.register(
            "events_pending",
            "Undelivered events by target (all buckets), as last counted by the deliverer",
            m.events_pending.clone(),
        );
        m
    }

    /// Counts `n` events of `target` with `outcome` (`queued`, `delivered`, `retried`, `dead`,
    /// `dropped`).
    pub fn events(&self, target: &str, outcome: &'static str, n: usize) {
        if n > 0 {
            self.events
                .get_or_create(&DeliveryLabels {
                    target: target.to_owned(),
                    outcome,
                })
                .inc_by(n as u64);
        }
    }

    /// One delivery of `target`, `secs` after its write.
    pub fn event_delivered_after(&self, target: &str, secs: f64) {
        self.event_latency
            .get_or_create(&NameLabels {
                target: target.to_owned(),
            })
            .observe(secs);
    }

    pub fn events_pending(&self, target: &str, n: usize) {
        self.events_pending
            .get_or_create(&NameLabels {
                target: target.to_owned(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn request(&self, op: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { op, status })
            .inc();
        self.request_duration
            .get_or_create(&OpLabels { op })
            .observe(elapsed.as_secs_f64());
    }

    pub fn upload(&self, event: UploadEvent) {
        self.uploads
            .get_or_create(&EventLabels {
                event: event.as_str(),
            })
            .inc();
        match event {
            UploadEvent::Created => self.uploads_open.inc(),
            UploadEvent::Completed | UploadEvent::Aborted | UploadEvent::Expired => {
                self.uploads_open.dec()
            }
        };
    }

    /// Counts `n` uploads the expiry janitor aborted. Their abort already went through the state
    /// store (counted as `aborted`, open gauge decremented), so only the `expired` series moves.
    pub fn uploads_expired(&self, n: usize) {
        self.uploads
            .get_or_create(&EventLabels {
                event: UploadEvent::Expired.as_str(),
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub fn part_write(&self, elapsed: Duration) {
        self.part_write_duration.observe(elapsed.as_secs_f64());
    }

    pub fn fsync(&self, target: Fsync, elapsed: Duration) {
        let target = match target {
            Fsync::File => "file",
            Fsync::Dir => "dir",
        };
        self.fsync_duration
            .get_or_create(&TargetLabels { target })
            .observe(elapsed.as_secs_f64());
    }

    /// One state-store call: its time, and the kind of its error if it failed.
    pub fn store_call(&self, method: &'static str, elapsed: Duration, error: Option<&'static str>) {
        self.store_duration
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            self.store_errors
                .get_or_create(&ErrorLabels { method, kind })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.request("UploadPart", 200, Duration::from_millis(3));
        m.upload(UploadEvent::Created);
        m.fsync(Fsync::Dir, Duration::from_micros(50));
        m.connections.received_bytes.inc_by(10);
        let text = m.encode();
        for want in [
            "mpgw_requests_total{op=\"UploadPart\",status=\"200\"} 1",
            "mpgw_request_duration_seconds_count{op=\"UploadPart\"} 1",
            "mpgw_uploads_total{event=\"created\"} 1",
            "mpgw_uploads_total{event=\"expired\"} 0",
            "mpgw_uploads_open 1",
            "mpgw_fsync_duration_seconds_count{target=\"dir\"} 1",
            "mpgw_received_bytes_total 10",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
