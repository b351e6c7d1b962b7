//! Object tags: a set of at most 10 key/value pairs, checked against S3's rules once, where a
//! request brings them (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html>).

use serde::{Deserialize, Serialize};

/// One tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// The tags of an object, in the order the request gave them (S3 returns them in that order).
/// Built only through [`TagSet::new`], so every set held is one S3 would accept; a record read
/// back from a store is trusted as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TagSet(Vec<Tag>);

/// Why a tag set is refused, in the order the rules are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagError {
    /// Empty, longer than 128 characters, or a character outside the allowed ones.
    InvalidKey(String),
    /// Keys starting with `aws:` (in any case) are S3's own.
    SystemKey(String),
    /// Longer than 256 characters, or a character outside the allowed ones.
    InvalidValue {
        key: String,
        value: String,
    },
    DuplicateKey(String),
    TooMany,
}

impl TagSet {
    pub const MAX_TAGS: usize = 10;
    pub const MAX_KEY_CHARS: usize = 128;
    pub const MAX_VALUE_CHARS: usize = 256;

    /// Checks each pair in order (key, then value, then whether the key repeats), then the
    /// count. Lengths are counted in Unicode characters, not bytes.
    pub fn new(pairs: Vec<(String, String)>) -> Result<Self, TagError> {
        let mut tags: Vec<Tag> = Vec::with_capacity(pairs.len().min(Self::MAX_TAGS + 1));
        for (key, value) in pairs {
            if !valid_text(&key, 1, Self::MAX_KEY_CHARS) {
                return Err(TagError::InvalidKey(key));
            }
            if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
                return Err(TagError::SystemKey(key));
            }
            if !valid_text(&value, 0, Self::MAX_VALUE_CHARS) {
                return Err(TagError::InvalidValue { key, value });
            }
            if tags.iter().any(|t| t.key == key) {
                return Err(TagError::DuplicateKey(key));
            }
            tags.push(Tag { key, value });
        }
        if tags.len() > Self::MAX_TAGS {
            return Err(TagError::TooMany);
        }
        Ok(Self(tags))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }
}

/// S3's tag alphabet: Unicode letters, digits and spaces, and `+ - = . _ : / @`.
fn valid_text(s: &str, min: usize, max: usize) -> bool {
    let n = s.chars().count();
    (min..=max).contains(&n)
        && s.chars()
            .all(|c| c.is_alphanumeric() || is_space_separator(c) || "+-=._:/@".contains(c))
}

/// Unicode's separators (`\p{Z}`): spaces, line and paragraph separators; not tabs or newlines.
fn is_space_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Result<TagSet, TagError> {
        TagSet::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn accepts_what_s3_accepts() {
        let long_key = "𝒜".repeat(128);
        let long_value = "文".repeat(256);
        let t = set(&[
            ("b c+d-e=f.g_h:i/j@k", "2 + 2 = 4"),
            ("empty", ""),
            (&long_key, &long_value),
            ("ü", "é"),
        ])
        .unwrap();
        assert_eq!(t.len(), 4);
        // Order as given.
        assert_eq!(t.iter().next().unwrap().key, "b c+d-e=f.g_h:i/j@k");
        let ten: Vec<_> = (0..10).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(TagSet::new(ten).unwrap().len(), 10);
        assert!(set(&[]).unwrap().is_empty());
    }

    #[test]
    fn refuses_what_s3_refuses() {
        let e = |k: &str| TagError::InvalidKey(k.to_owned());
        assert_eq!(set(&[("", "v")]), Err(e("")));
        let k129 = "k".repeat(129);
        assert_eq!(set(&[(&k129, "")]), Err(e(&k129)));
        for bad in [
            "a,b", "a;b", "a?b", "a!b", "a*b", "a#b", "a%b", "a(b)", "a\tb", "😀",
        ] {
            assert_eq!(set(&[(bad, "v")]), Err(e(bad)), "{bad}");
            assert_eq!(
                set(&[("k", bad)]),
                Err(TagError::InvalidValue {
                    key: "k".into(),
                    value: bad.into()
                }),
                "{bad}"
            );
        }
        let v257 = "v".repeat(257);
        assert!(matches!(
            set(&[("k", &v257)]),
            Err(TagError::InvalidValue { .. })
        ));
        for k in ["aws:cost", "AWS:cost", "Aws:x"] {
            assert_eq!(set(&[(k, "v")]), Err(TagError::SystemKey(k.into())));
        }
        assert_eq!(
            set(&[("a", "1"), ("a", "2")]),
            Err(TagError::DuplicateKey("a".into()))
        );
        let eleven: Vec<_> = (0..11).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(TagSet::new(eleven), Err(TagError::TooMany));
    }

    #[test]
    fn serializes_as_a_list() {
        let t = set(&[("a", "1")]).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"[{"key":"a","value":"1"}]"#);
        assert_eq!(serde_json::from_str::<TagSet>(&json).unwrap(), t);
    }
}
