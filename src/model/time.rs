//! Timestamps as the wire formats write them.

use std::time::{Duration, UNIX_EPOCH};

use super::Millis;

/// `2026-11-25T18:27:58.123Z`
pub fn iso8601(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// `Wed, 25 Nov 2026 18:27:58 GMT`
pub fn http_date(ms: Millis) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(1_795_632_478_123), "2026-11-25T18:47:58.123Z");
        assert_eq!(
            http_date(1_795_632_478_123),
            "Wed, 25 Nov 2026 18:47:58 GMT"
        );
    }
}
