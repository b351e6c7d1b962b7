//! Operator endpoints, without authentication: `/health/live`, `/health/ready` and `/metrics`.
//!
//! Served on `--admin-listen` when set. Otherwise the S3 listener answers them itself, but only
//! for a GET of exactly those paths with no query string (`is_admin_request`): S3 clients always
//! send a query when listing, so only a bare GET of object `live`/`ready` in a bucket `health`, or
//! a v1 listing of a bucket `metrics` without parameters, is shadowed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::{Method, Request, Response, StatusCode, header};

use crate::app::App;
use crate::http::{Body, full};
use crate::upload::model::random_hex;

pub const LIVE: &str = "/health/live";
pub const READY: &str = "/health/ready";
pub const METRICS: &str = "/metrics";

/// A state store that takes longer than this to answer a ping is as good as down for clients.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What readiness checks, and whether the gateway is draining.
#[derive(Debug)]
pub struct Health {
    data_dir: PathBuf,
    min_free_space: u64,
    /// No `--admin-listen`: the S3 listener serves these endpoints.
    pub on_main_listener: bool,
    draining: AtomicBool,
}

impl Health {
    pub fn new(data_dir: PathBuf, min_free_space: u64, on_main_listener: bool) -> Self {
        Self {
            data_dir,
            min_free_space,
            on_main_listener,
            draining: AtomicBool::new(false),
        }
    }

    /// From now on readiness fails, so load balancers stop sending new requests while in-flight
    /// ones finish.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Whether a request that reached the S3 listener is for these endpoints instead.
pub fn is_admin_request<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req.uri().query().is_none()
        && matches!(req.uri().path(), LIVE | READY | METRICS)
}

/// Answers an admin request (404 for other paths, 405 for other methods).
pub async fn handle<B>(app: &App, req: &Request<B>) -> Response<Body> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        LIVE => text(StatusCode::OK, "live\n".into()),
        READY => match readiness(app).await {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reasons) => {
                tracing::warn!(reasons = %reasons.join("; "), "not ready");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {}\n", reasons.join("; ")),
                )
            }
        },
        METRICS => {
            let mut resp = Response::new(full(app.metrics.encode()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                ),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Every reason the gateway cannot serve uploads right now: draining, state store unreachable,
/// data dir not writable or below its free-space reserve.
async fn readiness(app: &App) -> Result<(), Vec<String>> {
    let health = &app.health;
    let store = async {
        match tokio::time::timeout(PING_TIMEOUT, app.uploads.meta().ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("state store: {e}")),
            Err(_) => Some(format!("state store: no answer within {PING_TIMEOUT:?}")),
        }
    };
    let (dir, reserve) = (health.data_dir.clone(), health.min_free_space);
    let disk = async move {
        match tokio::task::spawn_blocking(move || check_disk(&dir, reserve)).await {
            Ok(r) => r.err(),
            Err(e) => Some(format!("disk check: {e}")),
        }
    };
    let (store, disk) = tokio::join!(store, disk);
    let draining = health
        .draining
        .load(Ordering::Relaxed)
        .then(|| "shutting down".to_owned());
    let reasons: Vec<String> = [draining, store, disk].into_iter().flatten().collect();
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Writes and removes a probe file (a read-only remount or a failing disk shows here first),
/// then compares the space left to unprivileged users with the reserve.
fn check_disk(dir: &Path, reserve: u64) -> Result<(), String> {
    let probe = dir.join(format!(".ready-{}", random_hex(4)));
    let written = std::fs::write(&probe, b"ready");
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| format!("data dir {} is not writable: {e}", dir.display()))?;
    let st = rustix::fs::statvfs(dir)
        .map_err(|e| format!("data dir {}: statvfs: {e}", dir.display()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < reserve {
        return Err(format!(
            "data dir {}: {free} bytes free, below the min-free-space reserve of {reserve} bytes",
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_are_exact() {
        let req = |m: Method, uri: &str| Request::builder().method(m).uri(uri).body(()).unwrap();
        assert!(is_admin_request(&req(Method::GET, "/metrics")));
        assert!(is_admin_request(&req(Method::GET, "/health/ready")));
        assert!(!is_admin_request(&req(Method::GET, "/metrics?list-type=2")));
        assert!(!is_admin_request(&req(Method::PUT, "/metrics")));
        assert!(!is_admin_request(&req(Method::GET, "/health")));
        assert!(!is_admin_request(&req(Method::GET, "/health/live/x")));
    }

    #[test]
    fn disk_reserve() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_disk(dir.path(), 0), Ok(()));
        let e = check_disk(dir.path(), u64::MAX).unwrap_err();
        assert!(e.contains("min-free-space"), "{e}");
        assert!(
            check_disk(&dir.path().join("missing"), 0)
                .unwrap_err()
                .contains("not writable")
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "probe file left behind"
        );
    }
}
