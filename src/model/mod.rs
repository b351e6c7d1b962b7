//! Domain types shared by both front-ends and the stores. Parsed once at the edge; after that,
//! nothing re-checks strings.

pub mod body;
pub mod checksum;
pub mod event;
pub mod tags;
pub mod time;

pub use self::body::{BodyError, BodyStream};

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use self::checksum::{ChecksumAlgorithm, ChecksumType};
use self::tags::TagSet;

/// Opaque, unguessable, URL-safe upload id (also used as the blob directory name of the object
/// it becomes). 32 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UploadId(String);

impl UploadId {
    pub fn generate() -> Self {
        Self(random_hex(16))
    }

    /// Accepts only ids we could have generated, so a hostile id can never reach a file path.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Name of a directory under `blobs/` holding the files of one upload or one stored object.
/// An upload's blob id is its upload id, so Complete needs no renames.
pub type BlobId = UploadId;

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// A part number, 1..=10000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartNumber(u16);

impl PartNumber {
    pub const MAX: u16 = 10_000;
    pub const FIRST: Self = Self(1);

    pub fn new(n: u32) -> Option<Self> {
        (1..=u32::from(Self::MAX))
            .contains(&n)
            .then(|| Self(u16::try_from(n).expect("checked range")))
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().and_then(Self::new)
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// The number after this one, unless this is the last.
    pub fn next(self) -> Option<Self> {
        Self::new(u32::from(self.0) + 1)
    }
}

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Unix time in milliseconds.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A stored checksum: algorithm plus the raw digest bytes (base64 only on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
}

/// Headers that S3 keeps with an object and returns on GET/HEAD. Values are kept as raw bytes:
/// user metadata may hold any UTF-8 (or not), and must come back exactly as sent. The object's
/// tags (`x-amz-tagging`) travel with them, from the upload to the object it becomes; GET/HEAD
/// return only their count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<String>,
    /// `x-amz-meta-*` with the prefix stripped, lower-case names, raw byte values (hex-serialized).
    #[serde(with = "hex_map")]
    pub user: BTreeMap<String, Vec<u8>>,
    /// Absent from records written before tags existed: those have none.
    #[serde(default, skip_serializing_if = "TagSet::is_empty")]
    pub tags: TagSet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    Open,
    /// A Complete is running (or crashed while running; see `completing_since`).
    Completing,
    Completed,
}

/// One multipart upload as the state store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: UploadId,
    pub bucket: String,
    pub key: String,
    pub created: Millis,
    /// Access key (or legacy user) that created it.
    pub owner: String,
    pub headers: ObjectHeaders,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    pub checksum_type: Option<ChecksumType>,
    pub state: UploadState,
    /// When the current Complete began (state Completing); a stale value means its gateway died.
    pub completing_since: Option<Millis>,
    /// Set once completed: what a repeated Complete with the same part list replays.
    pub completed: Option<CompletedResult>,
    /// Set for an upload written in order from offset 0 (tus); absent for S3 and the note's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<AppendInfo>,
}

/// What an upload written in order (tus) was created with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendInfo {
    /// The whole length; None while deferred (a later write declares it, see
    /// `PartRecord::length`).
    pub length: Option<u64>,
    /// The client's metadata as it sent it (tus `Upload-Metadata`), answered back on HEAD.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    /// A partial upload of a concatenation: never published on its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The final upload of a concatenation: the partial uploads' URLs as the client listed
    /// them. It takes no writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concat: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedResult {
    pub etag: String,
    /// md5 over the canonical (number, etag) list the Complete named; a replay must match it.
    pub parts_digest: String,
    pub checksum: Option<Checksum>,
    pub checksum_type: Option<ChecksumType>,
    pub at: Millis,
}

/// One uploaded part as the state store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub size: u64,
    /// Raw MD5 of the part bytes (the ETag is its quoted hex).
    #[serde(with = "hex_array16")]
    pub md5: [u8; 16],
    /// File name inside the upload's blob directory (unique per attempt).
    pub file: String,
    pub modified: Millis,
    pub checksum: Option<Checksum>,
    /// The whole upload's length, declared with this part (a tus upload created with its
    /// length deferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

/// One piece of a stored object: a file in the object's blob directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectPart {
    /// The part number it had in its upload (1 for a single PUT).
    pub number: u16,
    /// Hex MD5 of the part bytes.
    pub md5: String,
    pub file: String,
    pub size: u64,
    pub checksum: Option<Checksum>,
}

/// A stored object: a manifest of part files in one blob directory, never a concatenation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub blob: BlobId,
    pub parts: Vec<ObjectPart>,
    pub size: u64,
    /// Unquoted: hex md5, or hex md5-of-md5s + "-N" for multipart objects.
    pub etag: String,
    pub modified: Millis,
    pub owner: String,
    pub headers: ObjectHeaders,
    /// Whole-object checksum (COMPOSITE carries its `-N` in `checksum_type`).
    pub checksum: Option<Checksum>,
    pub checksum_type: Option<ChecksumType>,
    /// True when made by CompleteMultipartUpload (GET `partNumber` addresses its parts).
    pub multipart: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub created: Millis,
    pub owner: String,
    /// PutBucketCors configuration; None when the bucket has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Vec<CorsRule>>,
    /// PutBucketLifecycleConfiguration rules (only AbortIncompleteMultipartUpload is supported);
    /// None when the bucket has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Vec<LifecycleRule>>,
    /// PutBucketNotificationConfiguration rules; None when the bucket never had any (an empty
    /// list once it had: its outboxes may still hold events to deliver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Vec<event::NotifyRule>>,
}

/// One lifecycle `<Rule>` with an `<AbortIncompleteMultipartUpload>` action: open uploads whose
/// key starts with `prefix` are aborted `days` days after initiation (when enabled).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    pub id: Option<String>,
    pub enabled: bool,
    pub prefix: String,
    /// `DaysAfterInitiation`, at least 1.
    pub days: u32,
}

/// One `<CORSRule>`: who may call from a browser, with which methods and headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_seconds: Option<u32>,
}

impl CorsRule {
    /// The methods a CORS rule may allow.
    pub const METHODS: [&'static str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];
    /// Headers a browser needs to read from our answers to finish an upload (`Location`: where
    /// a POST Object form stored its file).
    pub const EXPOSE_DEFAULT: &'static [&'static str] = &[
        "ETag",
        "Location",
        "x-amz-request-id",
        "x-amz-checksum-crc32",
        "x-amz-checksum-crc32c",
        "x-amz-checksum-crc64nvme",
        "x-amz-checksum-sha1",
        "x-amz-checksum-sha256",
        "x-amz-checksum-md5",
        "x-amz-checksum-sha512",
        "x-amz-checksum-xxhash64",
        "x-amz-checksum-xxhash3",
        "x-amz-checksum-xxhash128",
        "x-amz-checksum-type",
    ];

    /// The rule the `--cors-allow-origins` setting stands for.
    pub fn allow_origins(origins: &[String]) -> Option<Self> {
        (!origins.is_empty()).then(|| Self {
            allowed_origins: origins.to_vec(),
            allowed_methods: Self::METHODS.iter().map(|m| (*m).to_owned()).collect(),
            allowed_headers: vec!["*".into()],
            expose_headers: Self::EXPOSE_DEFAULT
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            max_age_seconds: Some(3600),
        })
    }
}

/// An entry of the unique file table: where the one stored copy of some content lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub created: Millis,
}

/// An instant-upload challenge (the legacy API's proof of possession), kept in the state store
/// under its owner and nonce until it is answered or expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    /// The content claimed (`sha256:<hex>`) and its announced size.
    pub hash: String,
    pub size: u64,
    /// Byte ranges `[start, end)` of the content whose bytes the proof covers, in order.
    pub ranges: Vec<(u64, u64)>,
    /// The caller's upload that the same init started (or resumed).
    pub upload: UploadId,
    pub expires: Millis,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

mod hex_array16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

mod hex_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        v: &BTreeMap<String, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let m: BTreeMap<&str, String> = v
            .iter()
            .map(|(k, v)| (k.as_str(), hex::encode(v)))
            .collect();
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        m.into_iter()
            .map(|(k, v)| {
                hex::decode(v)
                    .map(|v| (k, v))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

/// S3 bucket naming rules: 3–63 of `[a-z0-9.-]`, starting and ending with a letter or digit, no
/// `..`, `.-`, `-.`, not an IPv4 address.
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && !name.contains(".-")
        && !name.contains("-.")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "a-b.c", "123", "a".repeat(63).as_str()] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "_x",
            "a",
            "aa",
            "192.168.5.123",
            "foo_bar",
            "foo-",
            "foo..bar",
            "foo.-bar",
            "foo-.bar",
            "Abc",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn part_numbers() {
        assert!(PartNumber::parse("0").is_none());
        assert!(PartNumber::parse("10001").is_none());
        assert!(PartNumber::parse("-1").is_none());
        assert!(PartNumber::parse("abc").is_none());
        assert!(PartNumber::parse("").is_none());
        assert_eq!(PartNumber::parse("1").unwrap().get(), 1);
        assert_eq!(PartNumber::parse("10000").unwrap().get(), 10000);
        assert_eq!(PartNumber::parse("00007").unwrap().get(), 7);
    }

    /// Records written before tags existed have no `tags` field: they read as no tags, and a
    /// record without tags is written as before.
    #[test]
    fn records_without_tags() {
        let old = r#"{"content_type":"text/plain","cache_control":null,"content_disposition":null,"content_encoding":null,"content_language":null,"expires":null,"user":{"a":"6869"}}"#;
        let h: ObjectHeaders = serde_json::from_str(old).unwrap();
        assert!(h.tags.is_empty());
        assert_eq!(h.user["a"], b"hi");
        assert_eq!(serde_json::to_string(&h).unwrap(), old);
        let mut tagged = h.clone();
        tagged.tags = tags::TagSet::new(vec![("k".into(), "v".into())]).unwrap();
        let json = serde_json::to_string(&tagged).unwrap();
        assert!(
            json.ends_with(r#","tags":[{"key":"k","value":"v"}]}"#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<ObjectHeaders>(&json).unwrap(),
            tagged
        );
    }

    #[test]
    fn upload_ids_are_path_safe() {
        let id = UploadId::generate();
        assert_eq!(UploadId::parse(id.as_str()), Some(id));
        assert!(UploadId::parse("../../etc/passwd00000000000000000").is_none());
        assert!(UploadId::parse("ABCDEF00000000000000000000000000").is_none());
    }
}
