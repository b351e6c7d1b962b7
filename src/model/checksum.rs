//! ETag and flexible-checksum rules: the one place that knows how S3 derives them.
//!
//! - part / single-object ETag: hex(md5(bytes))
//! - multipart ETag: hex(md5(md5_1 || … || md5_N)) + "-N"
//! - COMPOSITE checksum: H(digest_1 || … || digest_N) (the wire adds "-N")
//! - FULL_OBJECT CRC: the CRC of the whole object, combined from part CRCs and lengths
//!
//! Algorithms: the CRCs, SHA1 and SHA256, and those S3 added in 2026 (MD5, SHA512, XXHASH64,
//! XXHASH3, XXHASH128; no FULL_OBJECT type). Every digest travels as base64 of its big-endian
//! bytes (xxHash's canonical form). Stored records name the algorithm by variant, so variants
//! are only ever added: an old record still decodes.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
    Md5,
    Sha512,
    Xxhash64,
    /// XXH3, 64-bit.
    Xxhash3,
    /// XXH3, 128-bit.
    Xxhash128,
}

impl ChecksumAlgorithm {
    pub const ALL: [Self; 10] = [
        Self::Crc32,
        Self::Crc32c,
        Self::Crc64Nvme,
        Self::Sha1,
        Self::Sha256,
        Self::Md5,
        Self::Sha512,
        Self::Xxhash64,
        Self::Xxhash3,
        Self::Xxhash128,
    ];

    /// From the wire name (`CRC32`, `crc32c`, …), case-insensitive.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Md5 => "MD5",
            Self::Sha512 => "SHA512",
            Self::Xxhash64 => "XXHASH64",
            Self::Xxhash3 => "XXHASH3",
            Self::Xxhash128 => "XXHASH128",
        }
    }

    /// `x-amz-checksum-crc32` etc.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
            Self::Md5 => "x-amz-checksum-md5",
            Self::Sha512 => "x-amz-checksum-sha512",
            Self::Xxhash64 => "x-amz-checksum-xxhash64",
            Self::Xxhash3 => "x-amz-checksum-xxhash3",
            Self::Xxhash128 => "x-amz-checksum-xxhash128",
        }
    }

    /// Element name in XML (`ChecksumCRC32`).
    pub fn xml_name(self) -> &'static str {
        match self {
            Self::Crc32 => "ChecksumCRC32",
            Self::Crc32c => "ChecksumCRC32C",
            Self::Crc64Nvme => "ChecksumCRC64NVME",
            Self::Sha1 => "ChecksumSHA1",
            Self::Sha256 => "ChecksumSHA256",
            Self::Md5 => "ChecksumMD5",
            Self::Sha512 => "ChecksumSHA512",
            Self::Xxhash64 => "ChecksumXXHASH64",
            Self::Xxhash3 => "ChecksumXXHASH3",
            Self::Xxhash128 => "ChecksumXXHASH128",
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme | Self::Xxhash64 | Self::Xxhash3 => 8,
            Self::Md5 | Self::Xxhash128 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Self::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Self::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Self::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Self::Sha1
            | Self::Sha256
            | Self::Md5
            | Self::Sha512
            | Self::Xxhash64
            | Self::Xxhash3
            | Self::Xxhash128 => None,
        }
    }

    /// The type S3 uses when Create names none.
    pub fn default_type(self) -> ChecksumType {
        match self {
            Self::Crc64Nvme => ChecksumType::FullObject,
            _ => ChecksumType::Composite,
        }
    }

    /// Supported (algorithm, type) pairs per the S3 docs.
    pub fn supports(self, t: ChecksumType) -> bool {
        match t {
            ChecksumType::Composite => self != Self::Crc64Nvme,
            ChecksumType::FullObject => self.crc().is_some(),
        }
    }

    /// Decodes a base64 wire value, checking its length.
    pub fn decode(self, b64: &str) -> Option<Vec<u8>> {
        let v = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        (v.len() == self.digest_len()).then_some(v)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumType {
    Composite,
    FullObject,
}

impl ChecksumType {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            x if x.eq_ignore_ascii_case("COMPOSITE") => Some(Self::Composite),
            x if x.eq_ignore_ascii_case("FULL_OBJECT") => Some(Self::FullObject),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Composite => "COMPOSITE",
            Self::FullObject => "FULL_OBJECT",
        }
    }
}

pub fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// Streaming hasher for one flexible-checksum algorithm.
pub enum Hasher {
    Crc(ChecksumAlgorithm, crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Md5(Md5),
    Sha512(sha2::Sha512),
    Xxh64(xxhash_rust::xxh64::Xxh64),
    /// XXH3's state serves both widths: `wide` picks the 128-bit digest. (Boxed: it is large.)
    Xxh3 {
        state: Box<xxhash_rust::xxh3::Xxh3>,
        wide: bool,
    },
}

impl Hasher {
    pub fn new(alg: ChecksumAlgorithm) -> Self {
        if let Some(c) = alg.crc() {
            return Self::Crc(alg, crc_fast::Digest::new(c));
        }
        match alg {
            ChecksumAlgorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Md5 => Self::Md5(Md5::new()),
            ChecksumAlgorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
            ChecksumAlgorithm::Xxhash64 => Self::Xxh64(xxhash_rust::xxh64::Xxh64::new(0)),
            ChecksumAlgorithm::Xxhash3 | ChecksumAlgorithm::Xxhash128 => Self::Xxh3 {
                state: Box::default(),
                wide: alg == ChecksumAlgorithm::Xxhash128,
            },
            ChecksumAlgorithm::Sha256
            | ChecksumAlgorithm::Crc32
            | ChecksumAlgorithm::Crc32c
            | ChecksumAlgorithm::Crc64Nvme => Self::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc(_, d) => d.update(data),
            Self::Sha1(h) => sha1::Digest::update(h, data),
            Self::Sha256(h) => sha2::Digest::update(h, data),
            Self::Md5(h) => md5::Digest::update(h, data),
            Self::Sha512(h) => sha2::Digest::update(h, data),
            Self::Xxh64(h) => h.update(data),
            Self::Xxh3 { state, .. } => state.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Crc(alg, d) => crc_bytes(alg, d.finalize()),
            Self::Sha1(h) => sha1::Digest::finalize(h).to_vec(),
            Self::Sha256(h) => sha2::Digest::finalize(h).to_vec(),
            Self::Md5(h) => md5::Digest::finalize(h).to_vec(),
            Self::Sha512(h) => sha2::Digest::finalize(h).to_vec(),
            Self::Xxh64(h) => h.digest().to_be_bytes().to_vec(),
            Self::Xxh3 { state, wide: false } => state.digest().to_be_bytes().to_vec(),
            Self::Xxh3 { state, wide: true } => state.digest128().to_be_bytes().to_vec(),
        }
    }
}

fn crc_bytes(alg: ChecksumAlgorithm, v: u64) -> Vec<u8> {
    if alg.digest_len() == 4 {
        u32::try_from(v & 0xffff_ffff)
            .unwrap_or_default()
            .to_be_bytes()
            .to_vec()
    } else {
        v.to_be_bytes().to_vec()
    }
}

fn crc_value(v: &[u8]) -> u64 {
    v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Computes one checksum of a whole buffer (tests and small bodies).
pub fn checksum_of(alg: ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(alg);
    h.update(data);
    h.finish()
}

pub fn md5_of(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// ETag of a multipart object from its parts' raw MD5s, unquoted.
pub fn multipart_etag<'a>(md5s: impl IntoIterator<Item = &'a [u8; 16]>) -> String {
    let mut h = Md5::new();
    let mut n = 0usize;
    for m in md5s {
        h.update(m);
        n += 1;
    }
    format!("{}-{n}", hex::encode(h.finalize()))
}

/// Whole-object checksum of a multipart object from its parts' checksums and sizes.
/// Returns None when a part lacks the checksum.
pub fn combine_parts(
    alg: ChecksumAlgorithm,
    t: ChecksumType,
    parts: &[(Option<&[u8]>, u64)],
) -> Option<Vec<u8>> {
    match t {
        ChecksumType::Composite => {
            let mut h = Hasher::new(alg);
            for (c, _) in parts {
                h.update(c.as_ref()?);
            }
            Some(h.finish())
        }
        ChecksumType::FullObject => {
            let crc = alg.crc()?;
            let mut acc: Option<u64> = None;
            for (c, len) in parts {
                let v = crc_value(c.as_ref()?);
                acc = Some(match acc {
                    None => v,
                    Some(a) => crc_fast::checksum_combine(crc, a, v, *len),
                });
            }
            Some(crc_bytes(
                alg,
                acc.unwrap_or_else(|| crc_value(&checksum_of(alg, b""))),
            ))
        }
    }
}

/// A whole-file content hash named by a client (`sha256:<hex>`, `sha1:<hex>`, `md5:<hex>`, or
/// bare hex meaning SHA-256), as the legacy API's `filehash` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentHash {
    pub algorithm: ContentAlgorithm,
    /// Lower-case hex digest.
    pub hex: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentAlgorithm {
    Sha256,
    Sha1,
    Md5,
}

impl ContentHash {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (algorithm, hex) = match s.split_once(':') {
            None => (ContentAlgorithm::Sha256, s),
            Some((a, h)) => (
                match a.to_ascii_lowercase().replace('-', "").as_str() {
                    "sha256" => ContentAlgorithm::Sha256,
                    "sha1" => ContentAlgorithm::Sha1,
                    "md5" => ContentAlgorithm::Md5,
                    _ => return None,
                },
                h,
            ),
        };
        let len = match algorithm {
            ContentAlgorithm::Sha256 => 64,
            ContentAlgorithm::Sha1 => 40,
            ContentAlgorithm::Md5 => 32,
        };
        (hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Self {
            algorithm,
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// Canonical text, `sha256:<hex>`: the key of the unique file table.
    pub fn canonical(&self) -> String {
        let name = match self.algorithm {
            ContentAlgorithm::Sha256 => "sha256",
            ContentAlgorithm::Sha1 => "sha1",
            ContentAlgorithm::Md5 => "md5",
        };
        format!("{name}:{}", self.hex)
    }

    pub fn hasher(&self) -> ContentHasher {
        match self.algorithm {
            ContentAlgorithm::Sha256 => ContentHasher::Sha256(sha2::Sha256::new()),
            ContentAlgorithm::Sha1 => ContentHasher::Sha1(sha1::Sha1::new()),
            ContentAlgorithm::Md5 => ContentHasher::Md5(Md5::new()),
        }
    }
}

pub enum ContentHasher {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
    Md5(Md5),
}

impl ContentHasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => sha2::Digest::update(h, data),
            Self::Sha1(h) => sha1::Digest::update(h, data),
            Self::Md5(h) => md5::Digest::update(h, data),
        }
    }

    pub fn finish_hex(self) -> String {
        match self {
            Self::Sha256(h) => hex::encode(sha2::Digest::finalize(h)),
            Self::Sha1(h) => hex::encode(sha1::Digest::finalize(h)),
            Self::Md5(h) => hex::encode(md5::Digest::finalize(h)),
        }
    }
}

/// Normalizes an ETag from a client (quoted, unquoted, entity-escaped, padded) to bare lower hex.
pub fn normalize_etag(s: &str) -> String {
    s.trim()
        .replace("&quot;", "")
        .replace("&#34;", "")
        .trim_matches('"')
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(c: u8) -> Vec<u8> {
        vec![c; 5 * 1024 * 1024]
    }

    #[test]
    fn multipart_etag_vector() {
        // s3-tests test_multipart_reupload_checksum_and_etag: 5 MiB of A, B, C.
        let md5s: Vec<[u8; 16]> = [b'A', b'B', b'C']
            .iter()
            .map(|c| md5_of(&part(*c)))
            .collect();
        assert_eq!(multipart_etag(&md5s), "b2add96cc9702bbf4efb0ccdfc6b7747-3");
    }

    #[test]
    fn checksum_vectors() {
        let parts: Vec<Vec<u8>> = [b'A', b'B', b'C'].iter().map(|c| part(*c)).collect();
        let cases = [
            (
                ChecksumAlgorithm::Sha256,
                ChecksumType::Composite,
                "uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4=",
            ),
            (
                ChecksumAlgorithm::Sha1,
                ChecksumType::Composite,
                "sizjvY4eud3MrcHdZM3cQ/ol39o=",
            ),
            (
                ChecksumAlgorithm::Crc32,
                ChecksumType::FullObject,
                "WgDhBQ==",
            ),
            (
                ChecksumAlgorithm::Crc32,
                ChecksumType::Composite,
                "Z+ry2Q==",
            ),
            (
                ChecksumAlgorithm::Crc32c,
                ChecksumType::FullObject,
                "xU+Krw==",
            ),
            (
                ChecksumAlgorithm::Crc64Nvme,
                ChecksumType::FullObject,
                "i+6LR0y3eFo=",
            ),
        ];
        for (alg, t, want) in cases {
            let sums: Vec<Vec<u8>> = parts.iter().map(|p| checksum_of(alg, p)).collect();
            let input: Vec<(Option<&[u8]>, u64)> = sums
                .iter()
                .zip(&parts)
                .map(|(s, p)| (Some(s.as_slice()), p.len() as u64))
                .collect();
            assert_eq!(
                b64(&combine_parts(alg, t, &input).unwrap()),
                want,
                "{alg:?} {t:?}"
            );
        }
        assert_eq!(
            b64(&checksum_of(ChecksumAlgorithm::Crc32, &parts[0])),
            "JRTCyQ=="
        );
        assert_eq!(
            hex::encode(checksum_of(ChecksumAlgorithm::Crc64Nvme, b"123456789")),
            "ae8b14860a799888"
        );
    }

    /// The 2026 algorithms: published empty-input vectors, big-endian bytes, and composites as
    /// the same hash over the part digests.
    #[test]
    fn added_algorithm_vectors() {
        let empty = [
            (ChecksumAlgorithm::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            (
                ChecksumAlgorithm::Sha512,
                "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
            ),
            (ChecksumAlgorithm::Xxhash64, "ef46db3751d8e999"),
            (ChecksumAlgorithm::Xxhash3, "2d06800538d394c2"),
            (
                ChecksumAlgorithm::Xxhash128,
                "99aa06d3014798d86001c324468d497f",
            ),
        ];
        for (alg, want) in empty {
            let got = checksum_of(alg, b"");
            assert_eq!(hex::encode(&got), want, "{alg:?}");
            assert_eq!(got.len(), alg.digest_len(), "{alg:?}");
            assert_eq!(
                ChecksumAlgorithm::parse(&alg.as_str().to_lowercase()),
                Some(alg)
            );
            assert_eq!(alg.decode(&b64(&got)), Some(got), "{alg:?}");
            assert_eq!(alg.default_type(), ChecksumType::Composite);
            assert!(!alg.supports(ChecksumType::FullObject), "{alg:?}");
            assert_eq!(
                alg.header_name(),
                format!("x-amz-checksum-{}", alg.as_str().to_lowercase())
            );
            assert_eq!(alg.xml_name(), format!("Checksum{}", alg.as_str()));
        }
        // Streaming in pieces gives the one-shot digest (XXH3 switches code paths past 240 bytes).
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for alg in ChecksumAlgorithm::ALL {
            let mut h = Hasher::new(alg);
            for piece in data.chunks(333) {
                h.update(piece);
            }
            assert_eq!(h.finish(), checksum_of(alg, &data), "{alg:?}");
        }
        assert_eq!(
            checksum_of(ChecksumAlgorithm::Xxhash64, &data),
            xxhash_rust::xxh64::xxh64(&data, 0).to_be_bytes()
        );
        assert_eq!(
            checksum_of(ChecksumAlgorithm::Xxhash128, &data),
            xxhash_rust::xxh3::xxh3_128(&data).to_be_bytes()
        );
        let sums = [
            checksum_of(ChecksumAlgorithm::Xxhash3, b"a"),
            checksum_of(ChecksumAlgorithm::Xxhash3, b"b"),
        ];
        let input: Vec<(Option<&[u8]>, u64)> =
            sums.iter().map(|s| (Some(s.as_slice()), 1)).collect();
        assert_eq!(
            combine_parts(ChecksumAlgorithm::Xxhash3, ChecksumType::Composite, &input),
            Some(checksum_of(ChecksumAlgorithm::Xxhash3, &sums.concat()))
        );
        assert_eq!(
            combine_parts(ChecksumAlgorithm::Xxhash3, ChecksumType::FullObject, &input),
            None
        );
    }

    /// Records name algorithms by variant: the old names still decode, and the new ones are new.
    #[test]
    fn algorithm_record_names() {
        for (alg, name) in [
            (ChecksumAlgorithm::Crc32, "\"Crc32\""),
            (ChecksumAlgorithm::Crc64Nvme, "\"Crc64Nvme\""),
            (ChecksumAlgorithm::Sha256, "\"Sha256\""),
            (ChecksumAlgorithm::Xxhash128, "\"Xxhash128\""),
        ] {
            assert_eq!(serde_json::to_string(&alg).unwrap(), name);
            assert_eq!(
                serde_json::from_str::<ChecksumAlgorithm>(name).unwrap(),
                alg
            );
        }
    }

    #[test]
    fn content_hashes() {
        let h = ContentHash::parse(&"AB".repeat(32)).unwrap();
        assert_eq!(h.canonical(), format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(
            ContentHash::parse(&format!("SHA-1:{}", "0".repeat(40)))
                .unwrap()
                .algorithm,
            ContentAlgorithm::Sha1
        );
        assert!(ContentHash::parse(&"a".repeat(40)).is_none());
        assert!(ContentHash::parse("crc9:00").is_none());
        let mut x = ContentHash::parse(&format!("md5:{}", "0".repeat(32)))
            .unwrap()
            .hasher();
        x.update(b"bar");
        assert_eq!(x.finish_hex(), "37b51d194a7513e45b56f6524f2d51f2");
    }

    #[test]
    fn etag_normalization() {
        for s in [
            "\"abc\"",
            "abc",
            "&#34;abc&#34;",
            "&quot;abc&quot;",
            " \"ABC\" ",
        ] {
            assert_eq!(normalize_etag(s), "abc");
        }
    }
}
