//! Completion events under load: the bench bucket's writes are sent to a webhook target of the
//! gateway that points at a receiver run here, which times each event from its `eventTime` to
//! its arrival (delivery latency, p50 and p99).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::report::Metric;
use super::{Bench, err};

/// How long the run waits for the last events once no new one has arrived.
const SETTLE: Duration = Duration::from_secs(3);

/// The receiver: delivery latencies in ms, in arrival order.
pub(super) struct Receiver {
    latencies: Arc<Mutex<Vec<f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(addr: SocketAddr) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("events receiver on {addr}: {e}"))?;
        let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
        let got = latencies.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let got = got.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let got = got.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let now = crate::model::now_millis();
                        if let Some(at) = body.ok().as_deref().and_then(event_time) {
                            got.lock().expect("not poisoned").push((now - at) as f64);
                        }
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Ok(Self { latencies, task })
    }

    fn count(&self) -> usize {
        self.latencies.lock().expect("not poisoned").len()
    }
}

/// The `eventTime` of an event message, in Unix ms.
fn event_time(body: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = v["Records"][0]["eventTime"].as_str()?;
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

impl Bench<'_> {
    /// Starts the receiver and sends every object created in the bench bucket to the
    /// gateway's webhook target `target` (which must point at `listen`).
    pub(super) async fn start_events(
        &self,
        target: &str,
        listen: SocketAddr,
    ) -> Result<Receiver, String> {
        let receiver = Receiver::start(listen).await?;
        let region = self.args.region.as_deref().unwrap_or("us-east-1");
        let xml = format!(
            "<NotificationConfiguration><QueueConfiguration><Id>bench</Id>\
             <Queue>arn:mpgw:sqs:{region}:{target}:webhook</Queue>\
             <Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>"
        );
        self.c
            .put_bucket_notification(self.bucket, xml)
            .await
            .map_err(err)?;
        Ok(receiver)
    }

    /// Waits for the events still on their way, then reports the delivery latency.
    pub(super) async fn finish_events(&mut self, receiver: Receiver) -> Result<(), String> {
        eprintln!("mpgw bench: waiting for the last events");
        let mut seen = receiver.count();
        let mut quiet = Instant::now();
        while quiet.elapsed() < SETTLE {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let n = receiver.count();
            if n != seen {
                seen = n;
                quiet = Instant::now();
            }
        }
        receiver.task.abort();
        self.c
            .put_bucket_notification(self.bucket, "<NotificationConfiguration/>".to_owned())
            .await
            .map_err(err)?;
        let mut ms = receiver.latencies.lock().expect("not poisoned").clone();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
                .copied()
        };
        let metric = |name: &str, what: String, value: Option<f64>, unit| Metric {
            name: name.into(),
            what,
            value,
            unit,
            bound: None,
            bound_value: None,
            fraction: None,
        };
        self.m.push(metric(
            "events_delivered",
            "completion events received by the webhook".into(),
            Some(ms.len() as f64),
            "events",
        ));
        self.m.push(metric(
            "event_latency_p50",
            "write to webhook arrival, median".into(),
            at(0.5),
            "ms",
        ));
        self.m.push(metric(
            "event_latency_p99",
            "write to webhook arrival, 99th percentile".into(),
            at(0.99),
            "ms",
        ));
        Ok(())
    }
}
