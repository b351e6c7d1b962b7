//! `App`: the cheap-to-clone handles every request uses, opened once at start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Config, Credentials};
use crate::credentials::LegacySettings;
use crate::metrics::Metrics;
use crate::model::{CorsRule, now_millis};
use crate::store::instrumented::InstrumentedMeta;
use crate::store::meta_embedded::EmbeddedMetaStore;
use crate::store::meta_redis::{RedisMetaStore, RedisTls};
use crate::store::{DiskStore, MetaStore};
use crate::upload::events::EventSettings;
use crate::upload::{Limits, Uploads};

/// How often the expiry janitor and the orphan sweep run (the sweep also recounts open uploads
/// for the metrics).
const SWEEP_EVERY: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct App {
    pub uploads: Uploads,
    pub credentials: Arc<Credentials>,
    pub region: Arc<str>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The gateway itself serves HTTPS (for the URLs it writes into answers).
    pub https: bool,
    /// Base domain of virtual-host-style requests.
    pub domain: Option<Arc<str>>,
    /// The server-wide CORS rule, for buckets without their own configuration.
    pub cors_default: Option<Arc<CorsRule>>,
    /// The design note's `/file/*` API.
    pub legacy: Arc<LegacySettings>,
    /// The key of tus upload URLs made for S3 keys (`?sig=`), shared by every gateway on the
    /// state store.
    pub tus_url_key: Arc<[u8]>,
    /// Where tus is served (`--tus-path`), with its trailing slash.
    pub tus_path: Arc<str>,
    /// Sizes and timeouts the listeners enforce.
    pub limits: crate::config::ConnLimits,
    /// The event deliverer's report for readiness.
    pub events: Arc<crate::notify::EventHealth>,
    /// This gateway's entry among the live gateways of the data dir, held while it runs.
    _registration: Arc<crate::store::peers::Registration>,
}

/// Name of the tus upload URLs' key in the state store's shared secrets.
const TUS_URL_SECRET_NAME: &str = "tus-upload-urls";

impl App {
    /// Opens the stores, settles Completes a crash interrupted, and starts the periodic expiry of
    /// abandoned uploads and sweep of orphan files.
    pub async fn open(cfg: &Config, credentials: Credentials) -> Result<Self, String> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
        let metrics = Arc::new(Metrics::new());
        let uploads = open_uploads(cfg, metrics.clone()).await?;
        let (users, _) = crate::credentials::Users::load(
            cfg.legacy_users.as_deref(),
            &cfg.data_dir,
            &credentials,
        )?;
        let link_key = uploads
            .shared_secret(crate::credentials::LINK_SECRET_NAME)
            .await
            .map_err(|e| format!("the download links' key: {e}"))?;
        let tus_url_key = uploads
            .shared_secret(TUS_URL_SECRET_NAME)
            .await
            .map_err(|e| format!("the tus upload URLs' key: {e}"))?;
        let legacy = LegacySettings {
            bucket: cfg.legacy_bucket.clone(),
            chunk_size: cfg.legacy_chunk_size,
            users,
            link_key: link_key.into_bytes(),
        };

        let (registration, peers) = crate::store::peers::register(&cfg.data_dir)
            .map_err(|e| format!("{}: registering the gateway: {e}", cfg.data_dir.display()))?;
        let started = Instant::now();
        tracing::info!(
            store = uploads.store_kind(),
            live_peers = peers,
            "recovery started: settling interrupted completes"
        );
        let settled = uploads
            .recover(!peers)
            .await
            .map_err(|e| format!("recovery: {e}"))?;
        let (dropped, added) = uploads
            .reconcile_counts(now_millis())
            .await
            .map_err(|e| format!("recovery: {e}"))?;
        let open = count_open(&uploads, &metrics)
            .await
            .map_err(|e| format!("recovery: {e}"))?;
        tracing::info!(
            settled,
            open_uploads = open,
            counts_dropped = dropped,
            counts_added = added,
            duration_ms = millis(started),
            "recovery done"
        );

        // With live peers, Completes younger than STALE_COMPLETE were left alone (a peer may be
        // running them); settle those a dead gateway's crash interrupted once they are stale.
        let late = uploads.clone();
        tokio::spawn(async move {
            tokio::time::sleep(crate::upload::STALE_COMPLETE + Duration::from_secs(1)).await;
            match late.recover(false).await {
                Ok(settled) => tracing::info!(settled, "late recovery done"),
                Err(error) => tracing::warn!(%error, "late recovery failed"),
            }
        });

        let events = Arc::new(crate::notify::EventHealth::default());
        if let Some(notifier) =
            crate::notify::Notifier::new(cfg, uploads.clone(), metrics.clone(), events.clone())?
        {
            tokio::spawn(notifier.run());
        }

        let sweeper = (uploads.clone(), metrics.clone());
        tokio::spawn(async move {
            let (uploads, metrics) = sweeper;
            // Recovery has just counted the open uploads; recounting at once could race the first
            // requests and overwrite their moves of the gauge, so the first sweep does not.
            let mut recount = false;
            loop {
                sweep(&uploads, &metrics, recount).await;
                expire(&uploads, &metrics).await;
                recount = true;
                tokio::time::sleep(SWEEP_EVERY).await;
            }
        });
        Ok(Self {
            uploads,
            credentials: Arc::new(credentials),
            region: cfg.region.as_str().into(),
            metrics,
            health: Arc::new(Health::new(
                cfg.data_dir.clone(),
                cfg.min_free_space,
                cfg.admin_listen.is_none(),
                cfg.metrics_token.clone(),
            )),
            https: cfg.tls_cert.is_some() && cfg.tls_key.is_some(),
            domain: cfg.domain.as_deref().map(Into::into),
            cors_default: CorsRule::allow_origins(&cfg.cors_allow_origins).map(Arc::new),
            legacy: Arc::new(legacy),
            tus_url_key: tus_url_key.into_bytes().into(),
            tus_path: format!("/{}/", cfg.tus_path.trim_matches('/')).into(),
            limits: crate::config::ConnLimits::from_config(cfg),
            events,
            _registration: Arc::new(registration),
        })
    }
}

/// Opens the state store and the disk store `cfg` names (what `serve` and `mpgw admin` use).
pub async fn open_uploads(cfg: &Config, metrics: Arc<Metrics>) -> Result<Uploads, String> {
    let meta: Arc<dyn MetaStore> = match &cfg.redis_url {
        Some(url) => {
            let read = |what: &str, path: &Option<PathBuf>| {
                path.as_ref()
                    .map(|p| std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display())))
                    .transpose()
            };
            let tls = RedisTls {
                ca: read("redis-ca-file", &cfg.redis_ca_file)?,
                client: read("redis-cert-file", &cfg.redis_cert_file)?
                    .zip(read("redis-key-file", &cfg.redis_key_file)?),
            };
            Arc::new(
                if cfg.redis_cluster {
                    RedisMetaStore::connect_cluster(url, &cfg.redis_prefix, Some(&tls)).await
                } else {
                    RedisMetaStore::connect(url, &cfg.redis_prefix, Some(&tls)).await
                }
                .map_err(|e| e.to_string())?,
            )
        }
        None => {
            let path = cfg.data_dir.join("state.redb");
            Arc::new(EmbeddedMetaStore::open(&path).map_err(|e| {
                format!(
                    "{}: {e} (the embedded state store can be open in only one process: \
                     is a gateway running on this data dir?)",
                    path.display()
                )
            })?)
        }
    };
    let meta: Arc<dyn MetaStore> = Arc::new(InstrumentedMeta::new(meta, metrics.clone()));
    let disk = DiskStore::open(&cfg.data_dir, cfg.fsync)
        .map_err(|e| e.to_string())?
        .with_metrics(metrics)
        .with_reserve(cfg.min_free_space)
        .with_io_threads(cfg.io_threads as usize);
    let limits = Limits {
        min_part_size: cfg.min_part_size,
        max_part_size: cfg.max_part_size,
        upload_expiry: cfg.upload_expiry,
        max_uploads_per_key: usize::try_from(cfg.max_uploads_per_key).unwrap_or(usize::MAX),
        ..Limits::default()
    };
    Ok(Uploads::new(meta, disk, limits).with_events(event_settings(cfg)?))
}

/// The event targets (by ARN) and delivery rules of `cfg`.
fn event_settings(cfg: &Config) -> Result<EventSettings, String> {
    let targets = cfg
        .notify_targets()?
        .into_iter()
        .map(|t| (cfg.notify_arn(&t), t.name))
        .collect();
    Ok(EventSettings {
        targets,
        queue_limit: usize::try_from(cfg.notify_queue_limit).unwrap_or(usize::MAX),
        max_tries: cfg.notify_max_tries,
        max_age: cfg.notify_max_age,
        backoff: cfg.notify_backoff,
        backoff_max: cfg.notify_backoff_max,
    })
}

/// The expiry janitor: aborts abandoned uploads (bucket lifecycle rules, else --upload-expiry).
pub async fn expire(uploads: &Uploads, metrics: &Metrics) {
    let started = Instant::now();
    tracing::info!("upload expiry started");
    match uploads.expire(now_millis()).await {
        Ok(r) => {
            metrics.uploads_expired(r.expired.len());
            for (bucket, key, id) in &r.expired {
                tracing::info!(%bucket, %key, upload_id = %id, "expired abandoned upload");
            }
            tracing::info!(
                checked = r.checked,
                expired = r.expired.len(),
                skipped = r.skipped,
                duration_ms = millis(started),
                "upload expiry done"
            );
        }
        Err(error) => tracing::warn!(%error, duration_ms = millis(started), "upload expiry failed"),
    }
}

async fn sweep(uploads: &Uploads, metrics: &Metrics, recount: bool) {
    let started = Instant::now();
    tracing::info!("orphan sweep started");
    let swept = uploads.sweep().await.map_err(|e| e.to_string());
    // Repairs per-owner upload counts that a crash (here or on another gateway) left off.
    match uploads.reconcile_counts(now_millis()).await {
        Ok((0, 0)) => {}
        Ok((dropped, added)) => tracing::info!(dropped, added, "upload counts reconciled"),
        Err(error) => tracing::warn!(%error, "upload count reconciliation failed"),
    }
    let open = if recount {
        count_open(uploads, metrics)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    } else {
        Ok(None)
    };
    match swept.and_then(|report| Ok((report, open?))) {
        Ok((r, open)) => tracing::info!(
            removed_blobs = r.blobs,
            removed_files = r.files,
            purged_completed = r.completed_records,
            finished_bucket_deletions = r.buckets_deleted,
            open_uploads = open,
            duration_ms = millis(started),
            "orphan sweep done"
        ),
        Err(error) => tracing::warn!(%error, duration_ms = millis(started), "orphan sweep failed"),
    }
}

/// Sets the open-uploads gauge from the state store, which other gateways may share: between
/// two counts it only follows this gateway's own creates, completes and aborts.
async fn count_open(uploads: &Uploads, metrics: &Metrics) -> crate::upload::Result<usize> {
    let open = uploads.count_open().await?;
    metrics
        .uploads_open
        .set(i64::try_from(open).unwrap_or(i64::MAX));
    Ok(open)
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What readiness checks, and whether the gateway is draining.
pub struct Health {
    pub(crate) data_dir: PathBuf,
    pub(crate) min_free_space: u64,
    /// No `--admin-listen`: the S3 listener serves these endpoints.
    pub on_main_listener: bool,
    /// `--metrics-token`: what a bearer must show on the S3 listener for the operator's view.
    metrics_token: Option<String>,
    pub(crate) draining: AtomicBool,
}

impl std::fmt::Debug for Health {
    // The token is a credential: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("data_dir", &self.data_dir)
            .field("min_free_space", &self.min_free_space)
            .field("on_main_listener", &self.on_main_listener)
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl Health {
    pub fn new(
        data_dir: PathBuf,
        min_free_space: u64,
        on_main_listener: bool,
        metrics_token: Option<String>,
    ) -> Self {
        Self {
            data_dir,
            min_free_space,
            on_main_listener,
            metrics_token: metrics_token.filter(|t| !t.is_empty()),
            draining: AtomicBool::new(false),
        }
    }

    /// Whether `headers` carry `Authorization: Bearer <metrics token>`.
    pub fn bearer(&self, headers: &hyper::header::HeaderMap) -> bool {
        let Some(token) = &self.metrics_token else {
            return false;
        };
        headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|given| {
                bool::from(subtle::ConstantTimeEq::ct_eq(
                    given.trim_ascii(),
                    token.as_bytes(),
                ))
            })
    }

    pub fn has_metrics_token(&self) -> bool {
        self.metrics_token.is_some()
    }

    /// From now on readiness fails, so load balancers stop sending new requests while in-flight
    /// ones finish.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
