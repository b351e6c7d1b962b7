//! The HTTP `Range` header, as S3 reads it (GetObject, and the legacy API's downloads).

/// A `Range` header against `size` bytes: None for the whole object, Err when unsatisfiable,
/// else `[start, end)`.
pub fn byte_range(r: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    match parse_range(r, size) {
        RangeSpec::All => None,
        RangeSpec::Unsatisfiable => Some(Err(())),
        RangeSpec::Bytes(s, e) => Some(Ok((s, e))),
    }
}

enum RangeSpec {
    All,
    Unsatisfiable,
    Bytes(u64, u64),
}

/// `bytes=a-b | a- | -n` against an object of `size` bytes. Syntax S3 does not understand (or
/// several ranges) means the whole object, as on AWS.
fn parse_range(r: &str, size: u64) -> RangeSpec {
    let Some(spec) = r.trim().strip_prefix("bytes=") else {
        return RangeSpec::All;
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::All;
    };
    if spec.contains(',') {
        return RangeSpec::All;
    }
    // A run of digits too long for u64 is still a position, past any object's end.
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().unwrap_or(u64::MAX))
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(n) if size == 0 => RangeSpec::Unsatisfiable.then_if(n > 0),
            Some(n) => RangeSpec::Bytes(size.saturating_sub(n), size),
            None => RangeSpec::All,
        },
        (s, e) => {
            let Some(s) = num(s) else {
                return RangeSpec::All;
            };
            let e = if e.is_empty() { Some(u64::MAX) } else { num(e) };
            match e {
                None => RangeSpec::All,
                Some(e) if e < s => RangeSpec::All,
                Some(_) if s >= size => RangeSpec::Unsatisfiable,
                Some(e) => RangeSpec::Bytes(s, e.saturating_add(1).min(size)),
            }
        }
    }
}

impl RangeSpec {
    fn then_if(self, cond: bool) -> Self {
        if cond { self } else { RangeSpec::All }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(r: &str, size: u64) -> Option<(u64, u64)> {
        match parse_range(r, size) {
            RangeSpec::Bytes(s, e) => Some((s, e)),
            RangeSpec::All => None,
            RangeSpec::Unsatisfiable => Some((u64::MAX, u64::MAX)),
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(range("bytes=90-200", 100), Some((90, 100)));
        assert_eq!(range("bytes=-7", 11), Some((4, 11)));
        assert_eq!(range("bytes=5-", 11), Some((5, 11)));
        assert_eq!(range("bytes=100-", 100), Some((u64::MAX, u64::MAX)));
        assert_eq!(range("bytes=0-0", 0), Some((u64::MAX, u64::MAX)));
        assert_eq!(range("bytes=-5", 0), Some((u64::MAX, u64::MAX)));
        assert_eq!(range("bytes=9-3", 100), None);
        assert_eq!(range("bytes=a-b", 100), None);
        assert_eq!(range("bytes=0-1,3-4", 100), None);
        assert_eq!(range("items=0-1", 100), None);
        // Huge positions are still positions (RFC 9110 `1*DIGIT`): past the end, or clamped.
        assert_eq!(
            range("bytes=99999999999999999999999-", 100),
            Some((u64::MAX, u64::MAX))
        );
        assert_eq!(
            range("bytes=10-99999999999999999999999", 100),
            Some((10, 100))
        );
    }
}
