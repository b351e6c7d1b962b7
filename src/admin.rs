//! Operator endpoints: `/health/live`, `/health/ready` and `/metrics`.
//!
//! `--admin-listen` serves them all, without authentication (it belongs on an operator network).
//! Without it the S3 listener answers them itself, but only for a GET of exactly those paths with
//! no query string (`on_main_listener`), and says nothing there a stranger could use: liveness
//! and a bare `ready`/`not ready`. The metrics and the readiness reasons (which name the data
//! dir and its free space) need `Authorization: Bearer <--metrics-token>`; without a token set,
//! `/metrics` is not served there at all and reaches S3 like any other path. S3 clients always
//! send a query when listing, so only a bare GET of object `live`/`ready` in a bucket `health`
//! (or, with a token, a v1 listing of a bucket `metrics` without parameters) is shadowed.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::{Method, Request, Response, StatusCode, header};

use crate::app::App;
use crate::body::{Body, full};
use crate::model::random_hex;

pub const LIVE: &str = "/health/live";
pub const READY: &str = "/health/ready";
pub const METRICS: &str = "/metrics";

/// A state store that takes longer than this to answer a ping is as good as down for clients.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Who is asking: the operator (the admin listener, or a bearer of the metrics token on the S3
/// listener) sees everything; anyone else only liveness and a bare readiness answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Operator,
    Public,
}

/// A GET of exactly one of these paths, without a query string.
fn is_admin_request<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req.uri().query().is_none()
        && matches!(req.uri().path(), LIVE | READY | METRICS)
}

/// Whether a request that reached the S3 listener is for these endpoints instead, and for whom.
pub fn on_main_listener<B>(app: &App, req: &Request<B>) -> Option<Audience> {
    let health = &app.health;
    let served = health.on_main_listener
        && is_admin_request(req)
        && (req.uri().path() != METRICS || health.has_metrics_token());
    served.then(|| {
        if health.bearer(req.headers()) {
            Audience::Operator
        } else {
            Audience::Public
        }
    })
}

/// Answers an admin request (404 for other paths, 405 for other methods).
pub async fn handle<B>(app: &App, req: &Request<B>, audience: Audience) -> Response<Body> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        LIVE => text(StatusCode::OK, "live\n".into()),
        READY => match readiness(app).await {
            // Ready, but an event outbox is filling up (a target is down): say so to the
            // operator while still taking uploads.
            Ok(()) => match (app.events.warnings(), audience) {
                (w, Audience::Operator) if !w.is_empty() => text(
                    StatusCode::OK,
                    format!("ready; warning: {}\n", w.join("; ")),
                ),
                _ => text(StatusCode::OK, "ready\n".into()),
            },
            Err(reasons) => {
                tracing::warn!(reasons = %reasons.join("; "), "not ready");
                let body = match audience {
                    Audience::Operator => format!("not ready: {}\n", reasons.join("; ")),
                    Audience::Public => "not ready\n".into(),
                };
                text(StatusCode::SERVICE_UNAVAILABLE, body)
            }
        },
        METRICS if audience == Audience::Public => {
            let mut resp = text(StatusCode::UNAUTHORIZED, "unauthorized\n".into());
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"mpgw metrics\""),
            );
            resp
        }
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
        match tokio::time::timeout(PING_TIMEOUT, app.uploads.ping()).await {
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
    use std::path::PathBuf;

    use super::*;
    use crate::app::Health;

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
    fn bearer_token() {
        let health =
            |token: Option<&str>| Health::new(PathBuf::new(), 0, true, token.map(str::to_owned));
        let headers = |auth: &str| {
            let mut h = header::HeaderMap::new();
            h.insert(header::AUTHORIZATION, auth.parse().unwrap());
            h
        };
        let h = health(Some("s3cr3t"));
        assert!(h.bearer(&headers("Bearer s3cr3t")));
        for wrong in [
            "Bearer s3cr3",
            "Bearer s3cr3t2",
            "bearer",
            "Basic s3cr3t",
            "s3cr3t",
        ] {
            assert!(!h.bearer(&headers(wrong)), "{wrong}");
        }
        assert!(!h.bearer(&header::HeaderMap::new()));
        // No token (or an empty one) means no bearer is ever the operator.
        for h in [health(None), health(Some(""))] {
            assert!(!h.bearer(&headers("Bearer ")));
            assert!(!format!("{h:?}").contains("s3cr3t"));
        }
        assert!(!format!("{:?}", health(Some("s3cr3t"))).contains("s3cr3t"));
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
