//! Bucket notification configuration: Put/GetBucketNotificationConfiguration through the SDK and
//! by hand, S3's refusals (unknown destination, event or filter, overlapping rules, malformed
//! XML), ownership, and the rules kept on the bucket by the core, against both state stores.

use std::sync::Arc;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter, TopicConfiguration,
};
use mpgw::model::event::NotifyRule;
use mpgw::store::disk::DiskStore;
use mpgw::store::meta::MetaStore;
use mpgw::store::meta_embedded::EmbeddedMetaStore;
use mpgw::store::meta_redis::RedisMetaStore;
use mpgw::upload::{Error, Limits, Uploads};

use crate::harness::*;

const B: &str = "notified";
const ARN: &str = "arn:mpgw:sqs:us-east-1:hook:webhook";
const OTHER: &str = "MPGWOTHERACCESSKEY";
const OTHER_SECRET: &str = "mpgw-other-secret-0123456789";

const UNKNOWN_TARGET: &str = "Unable to validate the following destination configurations";
const EMPTY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NotificationConfiguration \
                     xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></NotificationConfiguration>";

/// Status, code and message of a failed SDK call.
#[track_caller]
fn refusal<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> (u16, String, String) {
    let e = r.expect_err("expected a refusal");
    let status = e.raw_response().expect("an HTTP answer").status().as_u16();
    (
        status,
        e.code().unwrap_or_default().to_owned(),
        e.message().unwrap_or_default().to_owned(),
    )
}

fn invalid(message: &str) -> (u16, String, String) {
    (400, "InvalidArgument".into(), message.into())
}

fn queue(id: &str, events: &[&str], filter: &[(&str, &str)]) -> QueueConfiguration {
    let mut q = QueueConfiguration::builder().id(id).queue_arn(ARN);
    for e in events {
        q = q.events(Event::from(*e));
    }
    if !filter.is_empty() {
        let mut key = S3KeyFilter::builder();
        for (name, value) in filter {
            key = key.filter_rules(
                FilterRule::builder()
                    .name(FilterRuleName::from(*name))
                    .value(*value)
                    .build(),
            );
        }
        q = q.filter(
            NotificationConfigurationFilter::builder()
                .key(key.build())
                .build(),
        );
    }
    q.build().unwrap()
}

fn queues(list: Vec<QueueConfiguration>) -> NotificationConfiguration {
    NotificationConfiguration::builder()
        .set_queue_configurations(Some(list))
        .build()
}

async fn put_config(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    config: NotificationConfiguration,
) -> Result<
    aws_sdk_s3::operation::put_bucket_notification_configuration::PutBucketNotificationConfigurationOutput,
    SdkError<
        aws_sdk_s3::operation::put_bucket_notification_configuration::PutBucketNotificationConfigurationError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
>{
    c.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(config)
        .send()
        .await
}

/// Asserts the bucket's configuration is the empty one, through the SDK and on the wire.
async fn assert_empty(gw: &TestGateway, c: &aws_sdk_s3::Client) {
    let got = c
        .get_bucket_notification_configuration()
        .bucket(B)
        .send()
        .await
        .unwrap();
    assert!(got.queue_configurations().is_empty());
    assert!(got.topic_configurations().is_empty());
    assert!(got.lambda_function_configurations().is_empty());
    assert!(got.event_bridge_configuration().is_none());
    let raw = gw.raw("GET", &format!("/{B}?notification")).send().await;
    assert_eq!(raw.status, 200);
    assert_eq!(String::from_utf8_lossy(&raw.body), EMPTY);
}

async fn configuration(store: Store) {
    let gw = TestGateway::start(store).await;
    let c = gw.bucket(B).await;

    // A bucket never configured has the empty configuration; setting it is accepted.
    assert_empty(&gw, &c).await;
    put_config(&c, B, NotificationConfiguration::builder().build())
        .await
        .unwrap();
    assert_empty(&gw, &c).await;
    let raw = gw
        .raw("PUT", &format!("/{B}?notification"))
        .body("<NotificationConfiguration/>")
        .send()
        .await;
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
    assert_empty(&gw, &c).await;

    // No target is configured: every destination is one S3 could not validate.
    let created = ["s3:ObjectCreated:*"];
    assert_eq!(
        refusal(put_config(&c, B, queues(vec![queue("a", &created, &[])])).await),
        invalid(UNKNOWN_TARGET)
    );
    let topic = TopicConfiguration::builder()
        .topic_arn("arn:aws:sns:us-east-1:123456789012:t")
        .events(Event::from("s3:ObjectCreated:*"))
        .build()
        .unwrap();
    assert_eq!(
        refusal(
            put_config(
                &c,
                B,
                NotificationConfiguration::builder()
                    .topic_configurations(topic)
                    .build()
            )
            .await
        ),
        invalid(UNKNOWN_TARGET)
    );

    // The configuration's own mistakes are reported before its destinations.
    assert_eq!(
        refusal(
            put_config(
                &c,
                B,
                queues(vec![queue("a", &["s3:ObjectRestore:Post"], &[])])
            )
            .await
        ),
        invalid("The event is not supported for notifications")
    );
    assert_eq!(
        refusal(put_config(&c, B, queues(vec![queue("a", &created, &[("infix", "x")])])).await),
        invalid("filter rule name must be either prefix or suffix")
    );
    assert_eq!(
        refusal(
            put_config(
                &c,
                B,
                queues(vec![queue(
                    "a",
                    &created,
                    &[("prefix", "a/"), ("prefix", "b/")]
                )])
            )
            .await
        ),
        invalid("Cannot specify more than one prefix rule in a filter.")
    );
    assert_eq!(
        refusal(
            put_config(
                &c,
                B,
                queues(vec![queue(
                    "a",
                    &created,
                    &[("suffix", ".a"), ("Suffix", ".b")]
                )])
            )
            .await
        ),
        invalid("Cannot specify more than one suffix rule in a filter.")
    );
    assert_eq!(
        refusal(
            put_config(
                &c,
                B,
                queues(vec![
                    queue("a", &created, &[]),
                    queue("b", &["s3:ObjectCreated:Put"], &[]),
                ])
            )
            .await
        ),
        invalid(
            "Configurations overlap. Configurations on the same bucket cannot share a common event type."
        )
    );
    assert_eq!(
        refusal(
            put_config(
                &c,
                B,
                queues(vec![
                    queue("a", &created, &[("prefix", "images/")]),
                    queue("b", &created, &[("suffix", ".jpg")]),
                ])
            )
            .await
        ),
        invalid(
            "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same event type."
        )
    );
    assert_eq!(
        refusal(
            put_config(
                &c,
                B,
                queues(vec![
                    queue("a", &created, &[("prefix", "a/")]),
                    queue("a", &created, &[("prefix", "b/")]),
                ])
            )
            .await
        ),
        invalid("Same ID used for multiple configurations. IDs must be unique.")
    );

    // Not XML, or not this document.
    for body in [
        "<NotificationConfiguration><QueueConfiguration>",
        "<NotificationConfiguration><QueueConfiguration><Event>s3:ObjectCreated:*</Event>\
         </QueueConfiguration></NotificationConfiguration>",
        "<CORSConfiguration/>",
    ] {
        gw.raw("PUT", &format!("/{B}?notification"))
            .body(body)
            .send()
            .await
            .assert_error(400, "MalformedXML");
    }

    // Nothing refused was stored.
    assert_empty(&gw, &c).await;

    // S3 has no DeleteBucketNotification; a missing bucket is NoSuchBucket.
    gw.raw("DELETE", &format!("/{B}?notification"))
        .send()
        .await
        .assert_error(405, "MethodNotAllowed");
    assert_eq!(
        refusal(put_config(&c, "nope", NotificationConfiguration::builder().build()).await).0,
        404
    );
    assert_err(
        c.get_bucket_notification_configuration()
            .bucket("nope")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
}
both!(configuration, configuration);

async fn ownership(store: Store) {
    let gw = TestGateway::start_with(store, |cfg| {
        cfg.access_keys.push(OTHER.into());
        cfg.secret_keys.push(OTHER_SECRET.into());
    })
    .await;
    let owner = gw.bucket("mine").await;
    let other = gw.client_with(OTHER, OTHER_SECRET);
    assert_err(
        other
            .get_bucket_notification_configuration()
            .bucket("mine")
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        put_config(&other, "mine", NotificationConfiguration::builder().build()).await,
        403,
        "AccessDenied",
    );
    // The owner still can.
    put_config(&owner, "mine", NotificationConfiguration::builder().build())
        .await
        .unwrap();
    owner
        .get_bucket_notification_configuration()
        .bucket("mine")
        .send()
        .await
        .unwrap();
}
both!(ownership, ownership);

/// The core keeps what it accepted: rules with a known target, and an empty list as `Some`.
async fn stored_rules(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let (meta, prefix): (Arc<dyn MetaStore>, Option<String>) = match store {
        Store::Embedded => (
            Arc::new(EmbeddedMetaStore::open(&dir.path().join("state.redb")).unwrap()),
            None,
        ),
        Store::Redis => {
            let prefix = format!("mpgw-notify-{:016x}", rand::random::<u64>());
            let meta = RedisMetaStore::connect(&redis_url(), &prefix, None)
                .await
                .unwrap();
            (Arc::new(meta), Some(prefix))
        }
    };
    let disk = DiskStore::open(dir.path(), false).unwrap();
    let events = mpgw::upload::events::EventSettings {
        targets: [(ARN.to_owned(), "hook".to_owned())].into(),
        ..Default::default()
    };
    let up = Uploads::new(meta, disk, Limits::default()).with_events(events);
    up.create_bucket("me", B).await.unwrap();

    assert_eq!(up.bucket(B).await.unwrap().notification, None);
    let rules = vec![
        NotifyRule {
            id: "jpg".into(),
            target: ARN.into(),
            events: vec!["s3:ObjectCreated:*".into()],
            prefix: "images/".into(),
            suffix: ".jpg".into(),
        },
        NotifyRule {
            id: "gone".into(),
            target: ARN.into(),
            events: vec!["s3:ObjectRemoved:Delete".into()],
            ..NotifyRule::default()
        },
    ];
    up.set_bucket_notification(B, rules.clone()).await.unwrap();
    assert_eq!(
        up.bucket(B).await.unwrap().notification,
        Some(rules.clone())
    );

    // A refused configuration leaves the stored one alone.
    let mut unknown = rules.clone();
    unknown[1].target = "arn:mpgw:sqs:us-east-1:nobody:webhook".into();
    assert!(matches!(
        up.set_bucket_notification(B, unknown).await,
        Err(Error::InvalidArgument(m)) if m == UNKNOWN_TARGET
    ));
    assert_eq!(up.bucket(B).await.unwrap().notification, Some(rules));

    up.set_bucket_notification(B, Vec::new()).await.unwrap();
    assert_eq!(up.bucket(B).await.unwrap().notification, Some(Vec::new()));
    assert!(matches!(
        up.set_bucket_notification("nope", Vec::new()).await,
        Err(Error::NoSuchBucket)
    ));

    if let Some(p) = prefix {
        delete_prefix(&redis_url(), &p).unwrap();
    }
}
both!(stored_rules, stored_rules);
