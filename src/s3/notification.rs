//! Bucket notification configuration on the wire (Put/GetBucketNotificationConfiguration on
//! `?notification`). Only `QueueConfiguration` rules are taken, their `Queue` being the ARN of
//! one of the gateway's targets; the core (`upload::notify_rules`) checks the rules as a whole.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketNotificationConfiguration.html>

use base64::Engine as _;

use super::error::S3Error;
use crate::model::event::NotifyRule;
use crate::model::random_hex;
use crate::upload::notify_rules::UNKNOWN_TARGET;
use crate::xml::{self, Xml};

/// Longest prefix or suffix S3 accepts in a filter rule.
const MAX_FILTER_VALUE: usize = 1024;

/// Parses a PutBucketNotificationConfiguration body. Topics (SNS), Lambda functions and
/// EventBridge are destinations the gateway cannot deliver to, so they are refused the way S3
/// refuses a destination it cannot validate.
pub fn parse(body: &[u8]) -> Result<Vec<NotifyRule>, S3Error> {
    let root = xml::parse(body).map_err(|_| S3Error::malformed_xml())?;
    if root.name != "NotificationConfiguration" {
        return Err(S3Error::malformed_xml());
    }
    let mut rules = Vec::new();
    for c in &root.children {
        match c.name.as_str() {
            "QueueConfiguration" => rules.push(queue(c)?),
            "TopicConfiguration" | "CloudFunctionConfiguration" | "EventBridgeConfiguration" => {
                return Err(S3Error::invalid_argument(UNKNOWN_TARGET));
            }
            _ => return Err(S3Error::malformed_xml()),
        }
    }
    Ok(rules)
}

/// One `<QueueConfiguration>`: `Id` (made up when absent, as S3 does), `Queue`, one or more
/// `Event`, and an optional `<Filter><S3Key>` of at most one prefix and one suffix rule.
fn queue(c: &xml::Node) -> Result<NotifyRule, S3Error> {
    let target = c
        .child_text("Queue")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(S3Error::malformed_xml)?
        .to_owned();
    let events: Vec<String> = c
        .children_named("Event")
        .map(|e| e.text.trim().to_owned())
        .collect();
    if events.is_empty() {
        return Err(S3Error::malformed_xml());
    }
    let id = match c.child_text("Id").map(str::trim) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => generated_id(),
    };
    let (mut prefix, mut suffix) = (None, None);
    let filter_rules = c
        .child("Filter")
        .and_then(|f| f.child("S3Key"))
        .map(|k| k.children_named("FilterRule"));
    for r in filter_rules.into_iter().flatten() {
        let name = r.child_text("Name").unwrap_or_default().trim();
        let (slot, kind) = if name.eq_ignore_ascii_case("prefix") {
            (&mut prefix, "prefix")
        } else if name.eq_ignore_ascii_case("suffix") {
            (&mut suffix, "suffix")
        } else {
            return Err(S3Error::invalid_argument(
                "filter rule name must be either prefix or suffix",
            ));
        };
        if slot.is_some() {
            return Err(S3Error::invalid_argument(format!(
                "Cannot specify more than one {kind} rule in a filter."
            )));
        }
        let value = r.child_text("Value").unwrap_or_default();
        if value.len() > MAX_FILTER_VALUE {
            return Err(S3Error::invalid_argument(
                "Size of filter rule value cannot exceed 1024 bytes in UTF-8 representation",
            ));
        }
        *slot = Some(value.to_owned());
    }
    Ok(NotifyRule {
        id,
        target,
        events,
        prefix: prefix.unwrap_or_default(),
        suffix: suffix.unwrap_or_default(),
    })
}

/// An id for a rule sent without one: like S3's, a random UUID, base64-encoded.
fn generated_id() -> String {
    let h = random_hex(16);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    base64::engine::general_purpose::STANDARD.encode(uuid)
}

/// The GetBucketNotificationConfiguration document: an empty `<NotificationConfiguration>`
/// when the bucket has no rules.
pub fn to_xml(rules: &[NotifyRule]) -> String {
    let mut x = Xml::new("NotificationConfiguration");
    for r in rules {
        x.open("QueueConfiguration");
        x.elem("Id", &r.id);
        x.elem("Queue", &r.target);
        for e in &r.events {
            x.elem("Event", e);
        }
        if !r.prefix.is_empty() || !r.suffix.is_empty() {
            x.open("Filter").open("S3Key");
            for (name, value) in [("Prefix", &r.prefix), ("Suffix", &r.suffix)] {
                if !value.is_empty() {
                    x.open("FilterRule");
                    x.elem("Name", name).elem("Value", value);
                    x.close("FilterRule");
                }
            }
            x.close("S3Key").close("Filter");
        }
        x.close("QueueConfiguration");
    }
    x.finish("NotificationConfiguration")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:mpgw:sqs:us-east-1:hook:webhook";

    fn config(body: &str) -> String {
        format!("<NotificationConfiguration>{body}</NotificationConfiguration>")
    }

    fn queue_body(inner: &str) -> String {
        config(&format!(
            "<QueueConfiguration><Id>r</Id><Queue>{ARN}</Queue>\
             <Event>s3:ObjectCreated:*</Event>{inner}</QueueConfiguration>"
        ))
    }

    fn err(body: &str) -> (&'static str, String) {
        let e = parse(body.as_bytes()).unwrap_err();
        (e.code, e.message)
    }

    #[test]
    fn parses_a_boto3_body() {
        // What boto3's put_bucket_notification_configuration sends (QueueConfigurations with
        // Filter.Key.FilterRules), namespace and all.
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><QueueConfiguration><Id>images</Id><Queue>arn:mpgw:sqs:us-east-1:hook:webhook</Queue><Event>s3:ObjectCreated:*</Event><Event>s3:ObjectRemoved:Delete</Event><Filter><S3Key><FilterRule><Name>prefix</Name><Value>images/</Value></FilterRule><FilterRule><Name>suffix</Name><Value>.jpg</Value></FilterRule></S3Key></Filter></QueueConfiguration><QueueConfiguration><Queue>arn:mpgw:sqs:us-east-1:stream:redis</Queue><Event>s3:ObjectCreated:Put</Event></QueueConfiguration></NotificationConfiguration>"#;
        let rules = parse(body.as_bytes()).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0],
            NotifyRule {
                id: "images".into(),
                target: ARN.into(),
                events: vec![
                    "s3:ObjectCreated:*".into(),
                    "s3:ObjectRemoved:Delete".into()
                ],
                prefix: "images/".into(),
                suffix: ".jpg".into(),
            }
        );
        assert_eq!(rules[1].target, "arn:mpgw:sqs:us-east-1:stream:redis");
        assert_eq!(rules[1].events, ["s3:ObjectCreated:Put"]);
        assert_eq!(
            (rules[1].prefix.as_str(), rules[1].suffix.as_str()),
            ("", "")
        );
        // No Id: one is made up, a base64 UUID as S3 makes.
        let id = base64::engine::general_purpose::STANDARD
            .decode(&rules[1].id)
            .unwrap();
        assert_eq!(id.len(), 36);
        assert_ne!(parse(body.as_bytes()).unwrap()[1].id, rules[1].id);
    }

    #[test]
    fn empty_configurations_turn_notifications_off() {
        assert_eq!(parse(b"<NotificationConfiguration/>").unwrap(), []);
        assert_eq!(
            parse(
                br#"<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                </NotificationConfiguration>"#
            )
            .unwrap(),
            []
        );
    }

    #[test]
    fn filter_rule_names_are_case_insensitive() {
        let body = queue_body(
            "<Filter><S3Key><FilterRule><Name>Prefix</Name><Value>a/</Value></FilterRule>\
             <FilterRule><Name>SUFFIX</Name><Value>.txt</Value></FilterRule></S3Key></Filter>",
        );
        let r = &parse(body.as_bytes()).unwrap()[0];
        assert_eq!((r.prefix.as_str(), r.suffix.as_str()), ("a/", ".txt"));
    }

    #[test]
    fn refuses_bad_filters() {
        let rule = |n: &str, v: &str| {
            format!("<FilterRule><Name>{n}</Name><Value>{v}</Value></FilterRule>")
        };
        let filter = |rules: &[String]| {
            queue_body(&format!(
                "<Filter><S3Key>{}</S3Key></Filter>",
                rules.concat()
            ))
        };
        assert_eq!(
            err(&filter(&[rule("infix", "a")])),
            (
                "InvalidArgument",
                "filter rule name must be either prefix or suffix".into()
            )
        );
        assert_eq!(
            err(&filter(&[rule("prefix", "a"), rule("Prefix", "b")])),
            (
                "InvalidArgument",
                "Cannot specify more than one prefix rule in a filter.".into()
            )
        );
        assert_eq!(
            err(&filter(&[
                rule("suffix", "a"),
                rule("prefix", "p"),
                rule("suffix", "b")
            ])),
            (
                "InvalidArgument",
                "Cannot specify more than one suffix rule in a filter.".into()
            )
        );
        assert_eq!(
            err(&filter(&[rule("prefix", &"x".repeat(1025))])).0,
            "InvalidArgument"
        );
        parse(filter(&[rule("prefix", &"x".repeat(1024))]).as_bytes()).unwrap();
    }

    #[test]
    fn refuses_destinations_it_cannot_deliver_to() {
        for c in [
            "<TopicConfiguration><Topic>arn:aws:sns:us-east-1:1:t</Topic>\
             <Event>s3:ObjectCreated:*</Event></TopicConfiguration>",
            "<CloudFunctionConfiguration><CloudFunction>arn:aws:lambda:us-east-1:1:function:f\
             </CloudFunction><Event>s3:ObjectCreated:*</Event></CloudFunctionConfiguration>",
            "<EventBridgeConfiguration/>",
        ] {
            assert_eq!(
                err(&config(c)),
                ("InvalidArgument", UNKNOWN_TARGET.into()),
                "{c}"
            );
        }
    }

    #[test]
    fn refuses_malformed_bodies() {
        for body in [
            "",
            "not xml",
            "<NotificationConfiguration>",
            "<LifecycleConfiguration/>",
            &config("<Unknown/>"),
            // No Queue, an empty one, no Event.
            &config("<QueueConfiguration><Event>s3:ObjectCreated:*</Event></QueueConfiguration>"),
            &config(
                "<QueueConfiguration><Queue> </Queue><Event>s3:ObjectCreated:*</Event>\
                 </QueueConfiguration>",
            ),
            &config(&format!(
                "<QueueConfiguration><Queue>{ARN}</Queue></QueueConfiguration>"
            )),
        ] {
            assert_eq!(err(body).0, "MalformedXML", "{body}");
        }
    }

    #[test]
    fn renders_and_round_trips() {
        assert_eq!(
            to_xml(&[]),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                 <NotificationConfiguration xmlns=\"{}\"></NotificationConfiguration>",
                xml::NS
            )
        );
        let rules = vec![
            NotifyRule {
                id: "a&b".into(),
                target: ARN.into(),
                events: vec!["s3:ObjectCreated:Put".into(), "s3:ObjectRemoved:*".into()],
                prefix: "p/<x>".into(),
                suffix: String::new(),
            },
            NotifyRule {
                id: "c".into(),
                target: ARN.into(),
                events: vec!["s3:ObjectCreated:Copy".into()],
                prefix: String::new(),
                suffix: ".txt".into(),
            },
            NotifyRule {
                id: "d".into(),
                target: ARN.into(),
                events: vec!["s3:ObjectCreated:Post".into()],
                ..NotifyRule::default()
            },
        ];
        let doc = to_xml(&rules);
        assert!(doc.contains(
            "<QueueConfiguration><Id>a&amp;b</Id><Queue>arn:mpgw:sqs:us-east-1:hook:webhook</Queue>\
             <Event>s3:ObjectCreated:Put</Event><Event>s3:ObjectRemoved:*</Event><Filter><S3Key>\
             <FilterRule><Name>Prefix</Name><Value>p/&lt;x&gt;</Value></FilterRule></S3Key>\
             </Filter></QueueConfiguration>"
        ));
        assert!(doc.contains(
            "<Event>s3:ObjectCreated:Post</Event></QueueConfiguration></NotificationConfiguration>"
        ));
        assert_eq!(parse(doc.as_bytes()).unwrap(), rules);
    }
}
