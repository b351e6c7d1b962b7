//! A bucket's notification rules: the checks S3 makes before it stores a notification
//! configuration (PutBucketNotificationConfiguration), and which rule an event on a key falls
//! under. Pure functions over `NotifyRule`; the S3 front-end parses and renders the XML.
//!
//! S3 answers 400 `InvalidArgument` to every configuration it refuses here. Rules are checked as
//! a whole and the destinations last (S3 validates them by contacting each one), so that a
//! configuration's own mistakes are reported before an unknown target.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-filtering.html>

use super::error::{Error, Result};
use crate::model::event::{EventName, NotifyRule};

/// Most rules one configuration may hold.
pub const MAX_RULES: usize = 100;

/// The event types a rule may name: those the gateway produces, and their wildcards.
pub const EVENTS: &[&str] = &[
    CREATED_ANY,
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    REMOVED_ANY,
    "s3:ObjectRemoved:Delete",
];

const CREATED_ANY: &str = "s3:ObjectCreated:*";
const REMOVED_ANY: &str = "s3:ObjectRemoved:*";

pub const UNKNOWN_TARGET: &str = "Unable to validate the following destination configurations";
pub const UNKNOWN_EVENT: &str = "The event is not supported for notifications";
/// Two rules with a common event and no filter at all.
pub const OVERLAP: &str =
    "Configurations overlap. Configurations on the same bucket cannot share a common event type.";
/// Two rules with a common event whose filters both match some key.
pub const AMBIGUOUS: &str = "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same event type.";
pub const DUPLICATE_ID: &str = "Same ID used for multiple configurations. IDs must be unique.";
pub const NO_EVENT: &str = "At least one event must be specified in a notification configuration";
pub const TOO_MANY: &str =
    "Too many configurations submitted. The maximum number of configurations is 100";

/// Refuses (`InvalidArgument`) a configuration S3 would refuse: more than [`MAX_RULES`] rules,
/// a rule without events or naming one not in [`EVENTS`], two rules with the same `id`, two
/// rules that could both match one event (see [`overlap`]), or a target `known_target` does
/// not know. An empty configuration (notifications off) is valid.
pub fn validate(rules: &[NotifyRule], known_target: impl Fn(&str) -> bool) -> Result<()> {
    let refuse = |msg: &str| Err(Error::InvalidArgument(msg.to_owned()));
    if rules.len() > MAX_RULES {
        return refuse(TOO_MANY);
    }
    for r in rules {
        if r.events.is_empty() {
            return refuse(NO_EVENT);
        }
        if r.events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
            return refuse(UNKNOWN_EVENT);
        }
    }
    for (i, a) in rules.iter().enumerate() {
        for b in &rules[..i] {
            if a.id == b.id {
                return refuse(DUPLICATE_ID);
            }
            if overlap(a, b) {
                let unfiltered = |r: &NotifyRule| r.prefix.is_empty() && r.suffix.is_empty();
                return refuse(if unfiltered(a) && unfiltered(b) {
                    OVERLAP
                } else {
                    AMBIGUOUS
                });
            }
        }
    }
    if rules.iter().any(|r| !known_target(&r.target)) {
        return refuse(UNKNOWN_TARGET);
    }
    Ok(())
}

/// Whether one event could match both rules: they share an event type (a wildcard stands for
/// every type it covers), and some key has both prefixes (one is a prefix of the other, the
/// empty one of every one) and both suffixes (likewise).
pub fn overlap(a: &NotifyRule, b: &NotifyRule) -> bool {
    let common = a
        .events
        .iter()
        .flat_map(|e| expand(e))
        .any(|x| b.events.iter().flat_map(|e| expand(e)).any(|y| x == y));
    common
        && (a.prefix.starts_with(&b.prefix) || b.prefix.starts_with(&a.prefix))
        && (a.suffix.ends_with(&b.suffix) || b.suffix.ends_with(&a.suffix))
}

/// The rule an event `name` on `key` goes by: the one naming its type (exactly or by its
/// wildcard) whose prefix and suffix the key has. [`validate`] lets at most one match.
pub fn matching<'a>(rules: &'a [NotifyRule], name: EventName, key: &str) -> Option<&'a NotifyRule> {
    rules.iter().find(|r| {
        r.events.iter().any(|e| expand(e).contains(&name))
            && key.starts_with(&r.prefix)
            && key.ends_with(&r.suffix)
    })
}

/// The concrete event types an S3 event type name stands for (none for an unknown one).
fn expand(event: &str) -> &'static [EventName] {
    use EventName::{CompleteMultipartUpload, Copy, Delete, Post, Put};
    match event {
        CREATED_ANY => &[Put, Post, Copy, CompleteMultipartUpload],
        "s3:ObjectCreated:Put" => &[Put],
        "s3:ObjectCreated:Post" => &[Post],
        "s3:ObjectCreated:Copy" => &[Copy],
        "s3:ObjectCreated:CompleteMultipartUpload" => &[CompleteMultipartUpload],
        REMOVED_ANY | "s3:ObjectRemoved:Delete" => &[Delete],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "arn:mpgw:sqs:us-east-1:hook:webhook";

    fn rule(id: &str, events: &[&str], prefix: &str, suffix: &str) -> NotifyRule {
        NotifyRule {
            id: id.into(),
            target: Q.into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            prefix: prefix.into(),
            suffix: suffix.into(),
        }
    }

    fn refused(rules: &[NotifyRule]) -> String {
        match validate(rules, |t| t == Q) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn every_event_name_has_a_supported_type() {
        for e in EVENTS {
            assert!(!expand(e).is_empty(), "{e}");
        }
        for name in [
            EventName::Put,
            EventName::Post,
            EventName::Copy,
            EventName::CompleteMultipartUpload,
            EventName::Delete,
        ] {
            let exact = format!("s3:{}", name.as_str());
            assert!(EVENTS.contains(&exact.as_str()));
            assert_eq!(expand(&exact), [name]);
        }
    }

    #[test]
    fn accepts_disjoint_rules_and_the_empty_configuration() {
        validate(&[], |_| false).unwrap();
        validate(
            &[
                rule("a", &["s3:ObjectCreated:*"], "images/", ".jpg"),
                rule("b", &["s3:ObjectCreated:*"], "images/", ".png"),
                rule("c", &["s3:ObjectCreated:*"], "videos/", ".jpg"),
                rule("d", &["s3:ObjectRemoved:*"], "", ""),
                rule("e", &["s3:ObjectCreated:Put"], "", ".txt"),
                rule("f", &["s3:ObjectCreated:Copy"], "", ".txt"),
            ],
            |t| t == Q,
        )
        .unwrap();
    }

    #[test]
    fn refuses_unknown_targets_last() {
        let r = rule("a", &["s3:ObjectCreated:*"], "", "");
        assert_eq!(
            validate(std::slice::from_ref(&r), |_| false)
                .unwrap_err()
                .to_string(),
            UNKNOWN_TARGET
        );
        let bad = rule("b", &["s3:ObjectRestore:Post"], "", "");
        assert_eq!(
            validate(&[r, bad], |_| false).unwrap_err().to_string(),
            UNKNOWN_EVENT
        );
    }

    #[test]
    fn refuses_bad_events_ids_and_counts() {
        for e in ["s3:ObjectCreated:put", "ObjectCreated:Put", "s3:*", ""] {
            assert_eq!(refused(&[rule("a", &[e], "", "")]), UNKNOWN_EVENT, "{e}");
        }
        assert_eq!(refused(&[rule("a", &[], "", "")]), NO_EVENT);
        assert_eq!(
            refused(&[
                rule("a", &["s3:ObjectCreated:*"], "x/", ""),
                rule("a", &["s3:ObjectRemoved:*"], "y/", ""),
            ]),
            DUPLICATE_ID
        );
        let many: Vec<_> = (0..=MAX_RULES)
            .map(|i| {
                rule(
                    &i.to_string(),
                    &["s3:ObjectCreated:*"],
                    &format!("{i}/"),
                    "",
                )
            })
            .collect();
        assert_eq!(refused(&many), TOO_MANY);
        validate(&many[..MAX_RULES], |t| t == Q).unwrap();
    }

    #[test]
    fn refuses_overlapping_rules() {
        let cases = [
            // Same event, no filter: S3's "Configurations overlap".
            (
                ("s3:ObjectCreated:*", "", ""),
                ("s3:ObjectCreated:*", "", ""),
                OVERLAP,
            ),
            (
                ("s3:ObjectCreated:*", "", ""),
                ("s3:ObjectCreated:Put", "", ""),
                OVERLAP,
            ),
            (
                ("s3:ObjectRemoved:Delete", "", ""),
                ("s3:ObjectRemoved:*", "", ""),
                OVERLAP,
            ),
            // Filters that some key satisfies both of.
            (
                ("s3:ObjectCreated:*", "a/", ""),
                ("s3:ObjectCreated:Put", "a/b/", ""),
                AMBIGUOUS,
            ),
            (
                ("s3:ObjectCreated:*", "", ".jpg"),
                ("s3:ObjectCreated:Put", "", "x.jpg"),
                AMBIGUOUS,
            ),
            (
                ("s3:ObjectCreated:*", "a/", ""),
                ("s3:ObjectCreated:*", "", ".jpg"),
                AMBIGUOUS,
            ),
            (
                ("s3:ObjectCreated:*", "a/", ".jpg"),
                ("s3:ObjectCreated:*", "", ""),
                AMBIGUOUS,
            ),
        ];
        for ((e1, p1, s1), (e2, p2, s2), msg) in cases {
            let (a, b) = (rule("a", &[e1], p1, s1), rule("b", &[e2], p2, s2));
            assert_eq!(refused(&[a.clone(), b.clone()]), msg, "{a:?} {b:?}");
            assert_eq!(refused(&[b, a]), msg);
        }
        // A common event among several.
        assert_eq!(
            refused(&[
                rule(
                    "a",
                    &["s3:ObjectRemoved:*", "s3:ObjectCreated:Copy"],
                    "",
                    ""
                ),
                rule(
                    "b",
                    &["s3:ObjectCreated:Put", "s3:ObjectCreated:Copy"],
                    "",
                    ""
                ),
            ]),
            OVERLAP
        );
    }

    #[test]
    fn overlap_is_symmetric_and_needs_every_part() {
        let base = rule("a", &["s3:ObjectCreated:Put"], "a/", ".jpg");
        let others = [
            (rule("b", &["s3:ObjectCreated:Post"], "a/", ".jpg"), false),
            (rule("b", &["s3:ObjectRemoved:*"], "", ""), false),
            (rule("b", &["s3:ObjectCreated:*"], "b/", ""), false),
            (rule("b", &["s3:ObjectCreated:*"], "a", ".png"), false),
            (rule("b", &["s3:ObjectCreated:*"], "a", "g"), true),
            (rule("b", &["s3:ObjectCreated:Put"], "a/x", ".jpg"), true),
        ];
        for (other, expected) in others {
            assert_eq!(overlap(&base, &other), expected, "{other:?}");
            assert_eq!(overlap(&other, &base), expected, "{other:?}");
        }
    }

    #[test]
    fn matching_picks_the_rule_of_the_event_and_key() {
        let rules = [
            rule("jpg", &["s3:ObjectCreated:*"], "images/", ".jpg"),
            rule("put", &["s3:ObjectCreated:Put"], "docs/", ""),
            rule("gone", &["s3:ObjectRemoved:*"], "", ""),
        ];
        let id = |name, key| matching(&rules, name, key).map(|r| r.id.as_str());
        assert_eq!(id(EventName::Put, "images/a.jpg"), Some("jpg"));
        assert_eq!(
            id(EventName::CompleteMultipartUpload, "images/a.jpg"),
            Some("jpg")
        );
        assert_eq!(id(EventName::Copy, "images/.jpg"), Some("jpg"));
        assert_eq!(id(EventName::Put, "images/a.png"), None);
        assert_eq!(id(EventName::Put, "other/a.jpg"), None);
        assert_eq!(id(EventName::Put, "docs/x"), Some("put"));
        assert_eq!(id(EventName::Post, "docs/x"), None);
        assert_eq!(id(EventName::Delete, "images/a.jpg"), Some("gone"));
        assert_eq!(id(EventName::Delete, ""), Some("gone"));
        assert_eq!(matching(&[], EventName::Put, "k"), None);
        // A name S3 does not know matches nothing.
        let odd = [rule("x", &["s3:ObjectCreated:Put:*"], "", "")];
        assert_eq!(matching(&odd, EventName::Put, "k"), None);
    }
}
