//! Bucket lifecycle configuration (Put/Get/DeleteBucketLifecycle on `?lifecycle`), limited to
//! the one action a multipart gateway acts on: `AbortIncompleteMultipartUpload`. Rules with any
//! other action are refused with 501, so that nobody believes objects expire here.

use super::error::S3Error;
use crate::model::LifecycleRule;
use crate::xml::{self, Xml};

const MAX_RULES: usize = 1000;
const MAX_ID: usize = 255;
/// Actions S3 knows that this gateway does not carry out.
const UNSUPPORTED_ACTIONS: &[&str] = &[
    "Expiration",
    "Transition",
    "Transitions",
    "NoncurrentVersionExpiration",
    "NoncurrentVersionTransition",
    "NoncurrentVersionTransitions",
];

/// Parses a PutBucketLifecycleConfiguration body.
pub fn parse(body: &[u8]) -> Result<Vec<LifecycleRule>, S3Error> {
    let root = xml::parse(body).map_err(|_| S3Error::malformed_xml())?;
    if root.name != "LifecycleConfiguration" {
        return Err(S3Error::malformed_xml());
    }
    let mut rules: Vec<LifecycleRule> = Vec::new();
    for r in root.children_named("Rule") {
        if let Some(a) = UNSUPPORTED_ACTIONS.iter().find(|a| r.child(a).is_some()) {
            return Err(S3Error::not_implemented(format!(
                "Lifecycle action {a} is not implemented; only AbortIncompleteMultipartUpload is supported"
            )));
        }
        let enabled = match r.child_text("Status").map(str::trim) {
            Some("Enabled") => true,
            Some("Disabled") => false,
            _ => return Err(S3Error::malformed_xml()),
        };
        let id = r
            .child_text("ID")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if id.as_ref().is_some_and(|id| id.len() > MAX_ID) {
            return Err(S3Error::invalid_argument(
                "ID length should not exceed allowed limit of 255",
            ));
        }
        let prefix = rule_prefix(r)?;
        let action = r.child("AbortIncompleteMultipartUpload").ok_or_else(|| {
            S3Error::invalid_request("At least one action needs to be specified in a rule")
        })?;
        let days: u32 = action
            .child_text("DaysAfterInitiation")
            .ok_or_else(S3Error::malformed_xml)?
            .trim()
            .parse()
            .map_err(|_| S3Error::malformed_xml())?;
        if days == 0 {
            return Err(S3Error::invalid_argument(
                "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer",
            ));
        }
        if let Some(id) = &id
            && rules.iter().any(|o| o.id.as_ref() == Some(id))
        {
            return Err(S3Error::invalid_argument(
                "Rule ID must be unique. Found same ID for more than one rule",
            ));
        }
        rules.push(LifecycleRule {
            id,
            enabled,
            prefix,
            days,
        });
    }
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(S3Error::malformed_xml());
    }
    Ok(rules)
}

/// The key prefix of a rule: `<Filter><Prefix>`, `<Filter><And><Prefix>`, an empty `<Filter>`,
/// or the legacy top-level `<Prefix>` (not both).
fn rule_prefix(r: &xml::Node) -> Result<String, S3Error> {
    let text = |n: Option<&xml::Node>| n.map(|n| n.text.clone()).unwrap_or_default();
    match (r.child("Filter"), r.child("Prefix")) {
        (Some(_), Some(_)) => Err(S3Error::malformed_xml()),
        (None, legacy) => Ok(text(legacy)),
        (Some(f), None) => {
            let inner = f.child("And").unwrap_or(f);
            if inner.child("Tag").is_some() {
                return Err(S3Error::invalid_request(
                    "AbortIncompleteMultipartUpload cannot be specified with Tags.",
                ));
            }
            if inner.child("ObjectSizeGreaterThan").is_some()
                || inner.child("ObjectSizeLessThan").is_some()
            {
                return Err(S3Error::not_implemented(
                    "Object size filters are not implemented",
                ));
            }
            Ok(text(inner.child("Prefix")))
        }
    }
}

pub fn to_xml(rules: &[LifecycleRule]) -> String {
    let mut x = Xml::new("LifecycleConfiguration");
    for r in rules {
        x.open("Rule");
        x.opt("ID", r.id.as_deref());
        x.open("Filter");
        x.elem("Prefix", &r.prefix);
        x.close("Filter");
        x.elem("Status", if r.enabled { "Enabled" } else { "Disabled" });
        x.open("AbortIncompleteMultipartUpload");
        x.elem("DaysAfterInitiation", r.days.to_string());
        x.close("AbortIncompleteMultipartUpload");
        x.close("Rule");
    }
    x.finish("LifecycleConfiguration")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rule(body: &str) -> String {
        format!("<LifecycleConfiguration>{body}</LifecycleConfiguration>")
    }

    #[test]
    fn parses_abort_rules_and_round_trips() {
        let body = rule(
            "<Rule><ID>a</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status>\
             <AbortIncompleteMultipartUpload><DaysAfterInitiation>3</DaysAfterInitiation>\
             </AbortIncompleteMultipartUpload></Rule>\
             <Rule><Prefix>old/</Prefix><Status>Disabled</Status>\
             <AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>\
             </AbortIncompleteMultipartUpload></Rule>",
        );
        let rules = parse(body.as_bytes()).unwrap();
        assert_eq!(
            rules,
            vec![
                LifecycleRule {
                    id: Some("a".into()),
                    enabled: true,
                    prefix: "tmp/".into(),
                    days: 3
                },
                LifecycleRule {
                    id: None,
                    enabled: false,
                    prefix: "old/".into(),
                    days: 1
                },
            ]
        );
        assert_eq!(parse(to_xml(&rules).as_bytes()).unwrap(), rules);
    }

    #[test]
    fn refuses_other_actions_and_bad_documents() {
        let abort = "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>";
        let code = |body: String| parse(body.as_bytes()).unwrap_err().code;
        assert_eq!(
            code(rule(&format!(
                "<Rule><Status>Enabled</Status><Filter/><Expiration><Days>1</Days></Expiration>{abort}</Rule>"
            ))),
            "NotImplemented"
        );
        assert_eq!(code("<Nope/>".into()), "MalformedXML");
        assert_eq!(code("<LifecycleConfiguration>".into()), "MalformedXML");
        assert_eq!(code(rule("")), "MalformedXML");
        assert_eq!(
            code(rule(&format!("<Rule><Status>On</Status>{abort}</Rule>"))),
            "MalformedXML"
        );
        assert_eq!(
            code(rule(
                "<Rule><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>x</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>"
            )),
            "MalformedXML"
        );
        assert_eq!(
            code(rule(
                "<Rule><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>0</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>"
            )),
            "InvalidArgument"
        );
    }

    fn rules() -> impl Strategy<Value = Vec<LifecycleRule>> {
        let rule = (
            prop::option::of("[ -~]{0,20}".prop_map(|s| s.trim().to_owned())),
            any::<bool>(),
            any::<String>(),
            1..=u32::MAX,
        )
            .prop_map(|(id, enabled, prefix, days)| LifecycleRule {
                id: id.filter(|id| !id.is_empty()),
                enabled,
                prefix,
                days,
            });
        prop::collection::vec(rule, 1..5).prop_map(|mut rules| {
            // IDs are unique within a configuration.
            let mut seen = std::collections::HashSet::new();
            for r in &mut rules {
                if r.id.as_ref().is_some_and(|id| !seen.insert(id.clone())) {
                    r.id = None;
                }
            }
            rules
        })
    }

    proptest! {
        /// GetBucketLifecycleConfiguration answers what was stored, prefixes byte for byte.
        #[test]
        fn rules_round_trip(rules in rules()) {
            prop_assert_eq!(parse(to_xml(&rules).as_bytes()).unwrap(), rules);
        }

        #[test]
        fn arbitrary_bodies(body in "(<LifecycleConfiguration>(<Rule>(<ID>[ -~]{0,4}</ID>|<Status>(Enabled|Disabled|x)</Status>|<Prefix>[ -~]{0,4}</Prefix>|<Filter>(<Prefix>a</Prefix>|<And><Tag/></And>)?</Filter>|<AbortIncompleteMultipartUpload><DaysAfterInitiation>[0-9-]{0,11}</DaysAfterInitiation></AbortIncompleteMultipartUpload>)*</Rule>)*</LifecycleConfiguration>|[ -~]{0,100})") {
            if let Ok(rules) = parse(body.as_bytes()) {
                prop_assert!((1..=MAX_RULES).contains(&rules.len()));
                prop_assert!(rules.iter().all(|r| r.days >= 1));
            }
        }
    }
}
