//! The browser upload page at `/ui/`: static files compiled into the binary. The page talks to
//! the legacy `/file/*` API or tus at `/_tus/` (chunked, resumable uploads with a progress bar).

use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

use crate::body::{Body, empty, full};

pub const PREFIX: &str = "/ui";

/// (path under /ui/, content type, bytes)
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("app.js"),
    ),
    (
        "sha256.js",
        "text/javascript; charset=utf-8",
        include_str!("sha256.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("style.css"),
    ),
];

pub fn handle(path: &str) -> Response<Body> {
    let rest = path.strip_prefix(PREFIX).unwrap_or_default();
    if rest.is_empty() {
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        resp.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/ui/"));
        return resp;
    }
    let name = match rest.trim_start_matches('/') {
        "" => "index.html",
        n => n,
    };
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, body)) => {
            let mut resp = Response::new(full(*body));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        None => {
            let mut resp = Response::new(full("not found"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    }
}
