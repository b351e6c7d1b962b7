//! The `Range` header against an object size. Input: `<size> <header value>` (seeds are real
//! headers); the same bytes also give two numbers for well-formed ranges. Properties: a
//! satisfiable range lies inside the object and is not empty; `bytes=a-b`, `bytes=a-` and
//! `bytes=-n` mean what RFC 9110 says.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mpgw::range::byte_range;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (size, header) = text.split_once(' ').unwrap_or(("0", &text));
    let size = size.parse::<u64>().unwrap_or(size.len() as u64);
    if let Some(Ok((start, end))) = byte_range(header, size) {
        assert!(
            start < end && end <= size,
            "{header:?} {size}: {start}..{end}"
        );
    }
    let Ok((a, b)) = <(u64, u64)>::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let (lo, hi) = (a.min(b), a.max(b));
    let want = (lo < size).then(|| (lo, hi.saturating_add(1).min(size)));
    assert_eq!(
        byte_range(&format!("bytes={lo}-{hi}"), size),
        Some(want.ok_or(()))
    );
    let want = (lo < size).then_some((lo, size));
    assert_eq!(
        byte_range(&format!("bytes={lo}-"), size),
        Some(want.ok_or(()))
    );
    let suffix = byte_range(&format!("bytes=-{a}"), size);
    if a == 0 || size == 0 {
        assert_eq!(suffix, Some(Err(())));
    } else {
        assert_eq!(suffix, Some(Ok((size.saturating_sub(a), size))));
    }
});
