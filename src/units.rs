//! Units the settings are given in.

use std::time::Duration;

/// A minimum data rate: at least `bytes_per_sec` on average over each `window` of time spent
/// waiting for the client (time the gateway itself is busy does not count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}
