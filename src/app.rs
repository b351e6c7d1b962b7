//! `App`: the cheap-to-clone handles every request uses, opened once at start-up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admin::Health;
use crate::config::{Config, Credentials};
use crate::legacy;
use crate::metrics::{InstrumentedMeta, Metrics};
use crate::store::meta_embedded::EmbeddedMetaStore;
use crate::store::meta_redis::RedisMetaStore;
use crate::store::{DiskStore, MetaStore};
use crate::upload::model::{CorsRule, UploadState};
use crate::upload::{Limits, Uploads};

/// How often the orphan sweep runs (it also recounts open uploads for the metrics).
const SWEEP_EVERY: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct App {
    pub uploads: Uploads,
    pub credentials: Arc<Credentials>,
    pub region: Arc<str>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Set when serving HTTPS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Base domain of virtual-host-style requests.
    pub domain: Option<Arc<str>>,
    /// The server-wide CORS rule, for buckets without their own configuration.
    pub cors_default: Option<Arc<CorsRule>>,
    /// The design note's `/file/*` API.
    pub legacy: Option<Arc<legacy::Settings>>,
}

impl App {
    /// Opens the stores, settles Completes a crash interrupted, and starts the periodic sweep of
    /// orphan files.
    pub async fn open(cfg: &Config, credentials: Credentials) -> Result<Self, String> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
        let metrics = Arc::new(Metrics::new());
        let meta: Arc<dyn MetaStore> = match &cfg.redis_url {
            Some(url) => Arc::new(
                RedisMetaStore::connect(url, &cfg.redis_prefix)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            None => Arc::new(
                EmbeddedMetaStore::open(&cfg.data_dir.join("state.redb"))
                    .map_err(|e| e.to_string())?,
            ),
        };
        let meta: Arc<dyn MetaStore> = Arc::new(InstrumentedMeta::new(meta, metrics.clone()));
        let disk = DiskStore::open(&cfg.data_dir, cfg.fsync)
            .map_err(|e| e.to_string())?
            .with_metrics(metrics.clone());
        let limits = Limits {
            min_part_size: cfg.min_part_size,
            max_part_size: cfg.max_part_size,
            ..Limits::default()
        };
        let uploads = Uploads::new(meta, disk, limits);
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(crate::server::tls_acceptor(cert, key)?),
            _ => None,
        };
        let users = match &cfg.legacy_users {
            Some(path) => legacy::Users::from_file(path)?,
            None => legacy::Users::from_credentials(&credentials),
        };
        let legacy = legacy::Settings {
            bucket: cfg.legacy_bucket.clone(),
            chunk_size: cfg.legacy_chunk_size,
            users,
        };

        let started = Instant::now();
        tracing::info!(
            store = uploads.meta().kind(),
            "recovery started: settling interrupted completes"
        );
        let settled = uploads
            .recover()
            .await
            .map_err(|e| format!("recovery: {e}"))?;
        let open = count_open(&uploads, &metrics)
            .await
            .map_err(|e| format!("recovery: {e}"))?;
        tracing::info!(
            settled,
            open_uploads = open,
            duration_ms = millis(started),
            "recovery done"
        );

        let sweeper = (uploads.clone(), metrics.clone());
        tokio::spawn(async move {
            let (uploads, metrics) = sweeper;
            loop {
                sweep(&uploads, &metrics).await;
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
            )),
            tls,
            domain: cfg.domain.as_deref().map(Into::into),
            cors_default: crate::s3::cors::default_rule(&cfg.cors_allow_origins).map(Arc::new),
            legacy: Some(Arc::new(legacy)),
        })
    }
}

async fn sweep(uploads: &Uploads, metrics: &Metrics) {
    let started = Instant::now();
    tracing::info!("orphan sweep started");
    let swept = uploads.sweep().await.map_err(|e| e.to_string());
    let open = count_open(uploads, metrics)
        .await
        .map_err(|e| e.to_string());
    match swept.and_then(|report| Ok((report, open?))) {
        Ok((r, open)) => tracing::info!(
            removed_blobs = r.blobs,
            removed_files = r.files,
            purged_completed = r.completed_records,
            open_uploads = open,
            duration_ms = millis(started),
            "orphan sweep done"
        ),
        Err(error) => tracing::warn!(%error, duration_ms = millis(started), "orphan sweep failed"),
    }
}

/// Sets the open-uploads gauge from the state store, which other gateways may share: between
/// two counts it only follows this gateway's own creates, completes and aborts.
async fn count_open(uploads: &Uploads, metrics: &Metrics) -> crate::store::StoreResult<usize> {
    let all = uploads.meta().all_uploads().await?;
    let open = all
        .iter()
        .filter(|u| u.state != UploadState::Completed)
        .count();
    metrics
        .uploads_open
        .set(i64::try_from(open).unwrap_or(i64::MAX));
    Ok(open)
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
