//! End-to-end tests: one test binary, one module per area.

mod harness;

mod bench;
mod client;
mod crash;
mod durability;
mod expiry;
mod legacy;
mod meta_conformance;
mod ops;
mod s3_compat;
mod s3_errors;
mod s3_multipart;
mod s3_objects;
