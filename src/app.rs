//! `App`: the cheap-to-clone handles every request uses, opened once at start-up.

use std::sync::Arc;

use crate::config::{Config, Credentials};
use crate::store::meta_embedded::EmbeddedMetaStore;
use crate::store::meta_redis::RedisMetaStore;
use crate::store::{DiskStore, MetaStore};
use crate::upload::{Limits, Uploads};

#[derive(Clone)]
pub struct App {
    pub uploads: Uploads,
    pub credentials: Arc<Credentials>,
    pub region: Arc<str>,
}

impl App {
    /// Opens the stores, settles Completes a crash interrupted, and starts the periodic sweep of
    /// orphan files.
    pub async fn open(cfg: &Config, credentials: Credentials) -> Result<Self, String> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
        let meta: Arc<dyn MetaStore> = match &cfg.redis_url {
            Some(url) => Arc::new(RedisMetaStore::connect(url, &cfg.redis_prefix).await.map_err(|e| e.to_string())?),
            None => Arc::new(EmbeddedMetaStore::open(&cfg.data_dir.join("state.redb")).map_err(|e| e.to_string())?),
        };
        let disk = DiskStore::open(&cfg.data_dir, cfg.fsync).map_err(|e| e.to_string())?;
        let limits = Limits {
            min_part_size: cfg.min_part_size,
            max_part_size: cfg.max_part_size,
            ..Limits::default()
        };
        let uploads = Uploads::new(meta, disk, limits);
        let settled = uploads.recover().await.map_err(|e| format!("recovery: {e}"))?;
        if settled > 0 {
            tracing::info!(settled, "settled interrupted completes");
        }
        let sweeper = uploads.clone();
        tokio::spawn(async move {
            loop {
                let started = std::time::Instant::now();
                match sweeper.sweep().await {
                    Ok(r) => tracing::info!(
                        blobs = r.blobs, files = r.files, completed_records = r.completed_records,
                        ms = started.elapsed().as_millis() as u64, "orphan sweep done"
                    ),
                    Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
            }
        });
        Ok(Self { uploads, credentials: Arc::new(credentials), region: cfg.region.as_str().into() })
    }
}
