//! Unit tests of the S3 operations' parsers and codecs.

use super::multipart::*;
use super::object::*;
use crate::model::checksum::ChecksumAlgorithm;
use crate::range::byte_range;
use crate::s3::request::*;
use crate::xml::Xml;

#[test]
fn copy_ranges_are_strict() {
    assert_eq!(parse_copy_range("bytes=0-2"), Some((0, 2)));
    for bad in [
        "0-2",
        "bytes=0",
        "bytes=hello-world",
        "bytes=0-bar",
        "bytes=hello-",
        "bytes=0-2,3-5",
        "bytes=3-1",
    ] {
        assert_eq!(parse_copy_range(bad), None, "{bad}");
    }
}

#[test]
fn url_encoding_matches_botocore_expectations() {
    assert_eq!(url_encode("foo+1/bar"), "foo%2B1/bar");
    assert_eq!(url_encode("quux ab/"), "quux%20ab/");
    assert_eq!(url_encode("ä"), "%C3%A4");
}

/// Part number, ETag, and a checksum (index into `ChecksumAlgorithm::ALL`, value).
type PartSpec = (u16, String, Option<(usize, String)>);

/// A Complete body as SDKs write it.
fn complete_body(parts: &[PartSpec]) -> String {
    let mut x = Xml::new("CompleteMultipartUpload");
    for (n, etag, checksum) in parts {
        x.open("Part")
            .elem("PartNumber", n.to_string())
            .elem("ETag", etag);
        if let Some((alg, v)) = checksum {
            x.elem(ChecksumAlgorithm::ALL[*alg].xml_name(), v);
        }
        x.close("Part");
    }
    x.finish("CompleteMultipartUpload")
}

proptest::proptest! {
    /// Any Range value: no panic, and what is served lies inside the object and is not empty.
    #[test]
    fn ranges_stay_inside_the_object(r in "(bytes=)?[0-9 ]{0,21}-?[0-9 ,]{0,21}|[ -~]{0,30}", size in proptest::prelude::any::<u64>()) {
        if let Some(Ok((s, e))) = byte_range(&r, size) {
            proptest::prop_assert!(s < e && e <= size, "{r} {size}: {s}..{e}");
        }
    }

    /// `bytes=a-b`, `bytes=a-` and `bytes=-n` mean what RFC 9110 says.
    #[test]
    fn range_forms(a in 0..1000u64, b in 0..1000u64, size in 0..1000u64) {
        let (lo, hi) = (a.min(b), a.max(b));
        let want = |r: (u64, u64)| Some(if lo < size { Ok(r) } else { Err(()) });
        proptest::prop_assert_eq!(byte_range(&format!("bytes={lo}-{hi}"), size), want((lo, (hi + 1).min(size))));
        proptest::prop_assert_eq!(byte_range(&format!("bytes={lo}-"), size), want((lo, size)));
        let suffix = if a == 0 || size == 0 { Err(()) } else { Ok((size.saturating_sub(a), size)) };
        proptest::prop_assert_eq!(byte_range(&format!("bytes=-{a}"), size), Some(suffix));
        // Reversed ranges are ignored (the whole object), as on AWS.
        if lo < hi {
            proptest::prop_assert_eq!(byte_range(&format!("bytes={hi}-{lo}"), size), None);
        }
    }

    /// The parts a Complete body lists come back in order, ETags and checksums verbatim.
    #[test]
    fn complete_bodies_round_trip(parts in proptest::collection::vec(
        (1..=10000u16, "[ -~]{0,40}", proptest::option::of((0..5usize, "[A-Za-z0-9+/=]{0,12}"))),
        0..20,
    )) {
        let listed = complete_parts(complete_body(&parts).as_bytes()).unwrap();
        proptest::prop_assert_eq!(listed.len(), parts.len());
        for (got, (n, etag, checksum)) in listed.iter().zip(&parts) {
            proptest::prop_assert_eq!(got.number.get(), *n);
            proptest::prop_assert_eq!(&got.etag, etag);
            let want = checksum.as_ref().map(|(a, v)| (ChecksumAlgorithm::ALL[*a], v.clone()));
            proptest::prop_assert_eq!(&got.checksum, &want);
        }
    }

    /// Part numbers outside 1..=10000 (or not numbers) are refused as InvalidPart.
    #[test]
    fn complete_refuses_bad_part_numbers(n in "[0-9]{1,7}|-[0-9]{1,3}|[a-z]{1,3}") {
        let body = format!("<CompleteMultipartUpload><Part><PartNumber>{n}</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>");
        let accepted = complete_parts(body.as_bytes()).is_ok();
        // At most five digits (so "000001" is refused too), value 1..=10000.
        let valid = n.len() <= 5 && n.parse::<u32>().is_ok_and(|n| (1..=10000).contains(&n));
        proptest::prop_assert_eq!(accepted, valid);
    }

    /// DeleteObjects: keys (any text) and version ids come back in order; 1..=1000 objects.
    #[test]
    fn delete_bodies_round_trip(
        objects in proptest::collection::vec((proptest::prelude::any::<String>(), proptest::option::of("[A-Za-z0-9.]{0,10}")), 0..12),
        quiet in proptest::prelude::any::<bool>(),
    ) {
        let mut x = Xml::new("Delete");
        if quiet {
            x.elem("Quiet", "true");
        }
        for (key, version) in &objects {
            x.open("Object").elem("Key", key).opt("VersionId", version.as_ref()).close("Object");
        }
        let parsed = delete_request(x.finish("Delete").as_bytes());
        if objects.is_empty() {
            proptest::prop_assert_eq!(parsed.unwrap_err().code, "MalformedXML");
        } else {
            proptest::prop_assert_eq!(parsed.unwrap(), (quiet, objects));
        }
    }
}
