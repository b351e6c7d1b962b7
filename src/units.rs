//! Units the settings are given in.

use std::time::Duration;

/// A minimum data rate: at least `bytes_per_sec` on average over each `window` of time spent
/// waiting for the client (time the gateway itself is busy does not count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

/// Parses a size such as `8MiB`, `5MB`, `1g`, `4096` (binary units for `k/m/g/t` and `*iB`,
/// decimal for `kB/MB/GB/TB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        "t" | "tib" => 1 << 40,
        "tb" => 1_000_000_000_000,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

/// Parses a duration such as `7d`, `12h`, `30m`, `45s`, `250ms`, `1w` or a combination
/// (`1d12h`); a bare number is seconds, so `0` is zero (which settings read as "never").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = text;
    let mut ms: u64 = 0;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let mult: u64 = match unit.trim() {
            "" if next.is_empty() => 1000,
            "ms" => 1,
            "s" | "sec" | "secs" => 1000,
            "m" | "min" | "mins" => 60_000,
            "h" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            "w" | "week" | "weeks" => 7 * 86_400_000,
            _ => {
                return Err(format!(
                    "invalid duration unit in {text:?} (use ms, s, m, h, d or w)"
                ));
            }
        };
        ms = n
            .checked_mul(mult)
            .and_then(|v| ms.checked_add(v))
            .ok_or_else(|| format!("duration {text:?} too large"))?;
        rest = next;
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(d("7d"), Ok(7 * 86_400));
        assert_eq!(d("12h"), Ok(12 * 3600));
        assert_eq!(d("30m"), Ok(1800));
        assert_eq!(d("45s"), Ok(45));
        assert_eq!(d("90"), Ok(90));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("1w"), Ok(7 * 86_400));
        assert_eq!(d("1d12h"), Ok(86_400 + 12 * 3600));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(d(" 2d "), Ok(2 * 86_400));
        for bad in [
            "",
            "d",
            "7x",
            "1.5h",
            "-1d",
            "12 parsecs",
            "99999999999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("5MB").unwrap(), 5_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("x").is_err());
        assert!(parse_size("5XB").is_err());
    }
}
