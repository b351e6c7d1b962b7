//! End-to-end tests: one test binary, one module per area.

mod harness;

mod bench;
mod checksums;
mod client;
mod cluster;
mod crash;
mod durability;
mod events;
mod expiry;
mod faults;
mod hostile;
mod legacy;
mod limits;
mod meta_conformance;
mod ops;
mod ownership;
mod post;
mod redis_aof;
mod redis_tls;
mod reserve;
mod s3_attributes;
mod s3_compat;
mod s3_errors;
mod s3_listings;
mod s3_multipart;
mod s3_notification;
mod s3_objects;
mod s3_tagging;
mod soak;
mod tus;
mod upload_core;
