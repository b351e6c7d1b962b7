//! The policy document of an S3 POST Object (browser-based upload): parsed from its base64
//! form and checked against the form's fields, all before a byte of the file is stored.
//! Reference: <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html>.

use std::time::SystemTime;

use base64::Engine as _;
use serde_json::Value;

use super::error::{S3Error, S3ErrorCode};

/// One condition of a policy. Field names are lower case, without the `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `{"field": "value"}` or `["eq", "$field", "value"]`.
    Eq(String, String),
    /// `["starts-with", "$field", "prefix"]` (an empty prefix admits any value).
    StartsWith(String, String),
    /// `["content-length-range", min, max]`: the file's size, inclusive.
    LengthRange(u64, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub expiration: SystemTime,
    pub conditions: Vec<Condition>,
}

fn invalid(why: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        S3ErrorCode::InvalidPolicyDocument,
        format!("Invalid Policy: {why}"),
    )
}

/// `AccessDenied` with AWS's "Invalid according to Policy" wording.
pub fn denied(why: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        S3ErrorCode::AccessDenied,
        format!("Invalid according to Policy: {why}"),
    )
}

/// Form fields no condition needs to cover.
pub fn exempt(name: &str) -> bool {
    matches!(
        name,
        "x-amz-signature" | "signature" | "awsaccesskeyid" | "file" | "policy"
    ) || name.starts_with("x-ignore-")
}

impl Policy {
    /// Decodes the base64 `policy` form field.
    pub fn parse(b64: &str) -> Result<Self, S3Error> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| invalid("Invalid Base64 encoding"))?;
        let doc: Value = serde_json::from_slice(&raw).map_err(|_| invalid("Invalid JSON."))?;
        let expiration = doc
            .get("expiration")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("Policy missing expiration."))?;
        let expiration =
            time::OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
                .map_err(|_| invalid("Invalid 'expiration' value: '{expiration}'"))?
                .into();
        let list = doc
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("Policy missing conditions."))?;
        let mut conditions = Vec::with_capacity(list.len());
        for c in list {
            conditions.push(parse_condition(c)?);
        }
        Ok(Self {
            expiration,
            conditions,
        })
    }

    /// The `content-length-range` condition, if any (the last one given).
    pub fn length_range(&self) -> Option<(u64, u64)> {
        self.conditions.iter().rev().find_map(|c| match c {
            Condition::LengthRange(min, max) => Some((*min, *max)),
            _ => None,
        })
    }

    /// Checks the form against the policy: not expired, every condition met by the field it
    /// names (`bucket` is the bucket of the request), and every non-exempt field covered. The
    /// length range is left to the file stream (see `length_range`).
    pub fn check(
        &self,
        fields: &[(String, String)],
        bucket: &str,
        now: SystemTime,
    ) -> Result<(), S3Error> {
        if self.expiration < now {
            return Err(denied("Policy expired."));
        }
        let value = |name: &str| -> String {
            if name == "bucket" {
                return bucket.to_owned();
            }
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        for c in &self.conditions {
            match c {
                Condition::Eq(name, want) => {
                    if value(name) != *want {
                        return Err(denied(format!(
                            "Policy Condition failed: [\"eq\", \"${name}\", \"{want}\"]"
                        )));
                    }
                }
                Condition::StartsWith(name, prefix) => {
                    let v = value(name);
                    // Content-Type may name several types, each of which must match.
                    let ok = if name == "content-type" && !prefix.is_empty() {
                        v.split(',').all(|t| t.trim_start().starts_with(prefix))
                    } else {
                        v.starts_with(prefix.as_str())
                    };
                    if !ok {
                        return Err(denied(format!(
                            "Policy Condition failed: [\"starts-with\", \"${name}\", \"{prefix}\"]"
                        )));
                    }
                }
                Condition::LengthRange(..) => {}
            }
        }
        let covered = |name: &str| {
            self.conditions.iter().any(|c| match c {
                Condition::Eq(n, _) | Condition::StartsWith(n, _) => n == name,
                Condition::LengthRange(..) => false,
            })
        };
        let extra: Vec<&str> = fields
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !exempt(n) && !covered(n))
            .collect();
        if !extra.is_empty() {
            return Err(denied(format!("Extra input fields: {}", extra.join(", "))));
        }
        Ok(())
    }
}

fn field_name(v: &Value) -> Result<String, S3Error> {
    v.as_str()
        .and_then(|s| s.strip_prefix('$'))
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| invalid("Condition field names must start with '$'."))
}

fn text(v: &Value) -> Result<String, S3Error> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(invalid("Condition values must be strings.")),
    }
}

fn length(v: &Value) -> Result<u64, S3Error> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid("content-length-range bounds must be non-negative integers."))
}

fn parse_condition(c: &Value) -> Result<Condition, S3Error> {
    match c {
        Value::Object(map) => {
            let mut it = map.iter();
            match (it.next(), it.next()) {
                (Some((name, v)), None) => Ok(Condition::Eq(name.to_ascii_lowercase(), text(v)?)),
                _ => Err(invalid("Each condition object must name one field.")),
            }
        }
        Value::Array(a) => {
            let op = a.first().and_then(Value::as_str).unwrap_or_default();
            match (op.to_ascii_lowercase().as_str(), a.len()) {
                ("eq", 3) => Ok(Condition::Eq(field_name(&a[1])?, text(&a[2])?)),
                ("starts-with", 3) => Ok(Condition::StartsWith(field_name(&a[1])?, text(&a[2])?)),
                ("content-length-range", 3) => {
                    let (min, max) = (length(&a[1])?, length(&a[2])?);
                    if min > max {
                        return Err(invalid("content-length-range minimum exceeds maximum."));
                    }
                    Ok(Condition::LengthRange(min, max))
                }
                _ => Err(invalid(format!("Invalid condition: {c}"))),
            }
        }
        _ => Err(invalid("Conditions must be objects or arrays.")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper::StatusCode;

    use super::*;

    fn policy(json: &str) -> Result<Policy, S3Error> {
        Policy::parse(&base64::engine::general_purpose::STANDARD.encode(json))
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    const DOC: &str = r#"{"expiration": "2030-01-01T00:00:00.000Z", "conditions": [
        {"bucket": "b"}, ["starts-with", "$key", "up/"], {"x-amz-meta-tag": "t"},
        ["starts-with", "$Content-Type", ""], ["content-length-range", 1, 10]]}"#;

    #[test]
    fn every_condition_form() {
        let p = policy(DOC).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ok = fields(&[
            ("key", "up/x"),
            ("x-amz-meta-tag", "t"),
            ("content-type", "text/plain"),
            ("policy", "..."),
            ("x-ignore-me", "1"),
        ]);
        p.check(&ok, "b", now).unwrap();
        assert_eq!(p.length_range(), Some((1, 10)));
        // The empty prefix admits a missing field too.
        assert!(p.check(&ok[..2], "b", now).is_ok());
        let e = p.check(&ok, "other", now).unwrap_err();
        assert_eq!((e.code, e.status), ("AccessDenied", StatusCode::FORBIDDEN));
        assert!(e.message.contains("$bucket"), "{}", e.message);
        let e = p.check(
            &fields(&[("key", "down/x"), ("x-amz-meta-tag", "t")]),
            "b",
            now,
        );
        assert!(e.unwrap_err().message.contains("starts-with"));
        let e = p.check(
            &fields(&[("key", "up/x"), ("x-amz-meta-tag", "u")]),
            "b",
            now,
        );
        assert!(e.unwrap_err().message.contains("x-amz-meta-tag"));
        let mut extra = ok.clone();
        extra.push(("acl".into(), "public-read".into()));
        let e = p.check(&extra, "b", now).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid according to Policy: Extra input fields: acl"
        );
        let late = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let e = p.check(&ok, "b", late).unwrap_err();
        assert_eq!(e.message, "Invalid according to Policy: Policy expired.");
    }

    #[test]
    fn malformed_documents() {
        for doc in [
            "not json",
            r#"{"conditions": []}"#,
            r#"{"expiration": "tomorrow", "conditions": []}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z"}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["eq", "key", "x"]]}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["in", "$key", "x"]]}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["content-length-range", 5, 1]]}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [{"a": "1", "b": "2"}]}"#,
        ] {
            let e = policy(doc).unwrap_err();
            assert_eq!(e.code, "InvalidPolicyDocument", "{doc}");
        }
        assert_eq!(
            Policy::parse("%%%").unwrap_err().code,
            "InvalidPolicyDocument"
        );
    }
}
