//! mpgw: an S3-compatible multipart-upload gateway. Upload state lives in Redis (or an embedded
//! store); part data on local disk. Completed objects are manifests of their part files.
//!
//! The data path of an UploadPart, module by module:
//!
//! ```text
//! server (accept, graceful shutdown)
//!   → http (request id, span, front-end choice)
//!     → s3::route (S3Op) → s3::auth (SigV4 → Verified) → s3::payload (verified byte stream)
//!       → s3::access::authorize (the caller's own upload: ownership, no extra store read)
//!       → s3::ops::upload_part
//!         → upload::Uploads::admit (size, and room on the disk held until the write ends)
//!         → upload::Uploads::put_part
//!            → store::DiskStore (tmp file, md5 while writing, fsync, rename)
//!            → store::MetaStore::put_part (atomic "only if open")
//!       ← ETag
//!     ← s3::error renders any failure as S3 XML, once
//! ```
//!
//! `legacy` (the design note's `/file/mpupload/*`) calls the same `upload::Uploads`; the rules of
//! its unique-file table and instant upload live in `upload::files`, its users in `credentials`.
//!
//! `client` is the other side: `mpgw upload` / `mpgw download`, resumable parallel transfers
//! against any S3 endpoint (or the legacy API); of the server it uses only the ETag and XML
//! helpers.
//!
//! Beside the data path: `admin` (health and `/metrics`, on `--admin-listen` or at exact paths
//! of the S3 listener) and `metrics` (the registry; `InstrumentedMeta` wraps the state store).

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
pub mod range;
pub mod s3;
pub mod server;
pub mod service;
pub mod store;
pub mod ui;
pub mod units;
pub mod upload;
pub mod xml;

pub use app::App;
pub use config::Config;
