//! mpgw: an S3-compatible multipart-upload gateway. Upload state lives in Redis (or an embedded
//! store); part data on local disk. Completed objects are manifests of their part files.
//!
//! The two upload paths, module by module:
//!
//! ```text
//! S3 UploadPart                                    legacy /file/mpupload/uppart
//! server (accept, limits, graceful shutdown)       server
//!   → service (request id, span, access log)         → service
//!     → s3::route → s3::auth → s3::payload             → legacy (form fields, chunk stream)
//!     → s3::access (ownership)                          → upload::Uploads::open_upload (Caller::User)
//!       → upload::Uploads::open_upload (Caller::BucketOwner)  → ::admit, ::put_part
//!     → s3::ops::multipart::upload_part                   → store::DiskStore, store::MetaStore
//!       → upload::Uploads::admit, ::put_part            ← legacy::reply renders any failure, once
//!         → store::DiskStore (tmp file, md5 while writing, fsync, rename)
//!         → store::MetaStore::put_part (atomic "only if open")
//!     ← s3::error renders any failure as S3 XML, once
//! ```
//!
//! The layer rule: a module imports only from the rows below its own, never a sibling in its row.
//!
//! | row | modules | may import |
//! | --- | --- | --- |
//! | 9 | `cli` (with `main.rs`) | everything below |
//! | 8 | `service`, `bench` | the front ends, `app`, `body`; `bench`: `client` |
//! | 7 | `s3`, `legacy`, `tus`, `admin`, `ui`; `server`; `client` | `app`, `upload`, `body` and below (`server`: `body`, `config`, `metrics` only) |
//! | 6 | `app` (composition root: stores, core, settings, background tasks) | `notify`, `upload`, `store`, `config`, `credentials`, `metrics`, `model` |
//! | 5 | `notify` (delivers completion events: webhooks, Redis Streams) | `upload`, `config`, `metrics`, `model` |
//! | 4 | `upload` (the core: every rule), `body` (HTTP plumbing) | `upload`: `store`, `model`; `body`: `metrics`, `units` |
//! | 3 | `store` (state: Redis or embedded; parts: disk), `config` | `model`, `metrics`; `config`: `credentials`, `units` |
//! | 2 | `credentials` | `model` |
//! | 1 | `model` (the vocabulary), `metrics`, `units`, `range`, `xml`, `multipart` | nothing of the crate |
//!
//! tus (`/_tus/`) takes the legacy path's shape: `tus` → `upload::Uploads::append_state`,
//! `::admit`, `::append` (`upload::append`: one part per PATCH, `MetaStore::append_part`).
//!
//! `upload/` and `store/` import no front end and no HTTP type; only `upload/` reads the stores.
//! `client` is the other side: `mpgw upload` / `mpgw download`, resumable parallel transfers
//! against any S3 endpoint (or the legacy API).

pub mod admin;
pub mod app;
pub mod bench;
pub mod body;
pub mod cli;
pub mod client;
pub mod config;
pub mod credentials;
pub mod legacy;
pub mod metrics;
pub mod model;
pub mod multipart;
pub mod notify;
pub mod range;
pub mod s3;
pub mod server;
pub mod service;
pub mod store;
pub mod tus;
pub mod ui;
pub mod units;
pub mod upload;
pub mod xml;

pub use app::App;
pub use config::Config;
