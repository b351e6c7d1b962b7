//! Unit tests of the Redis store's key encodings and reply parsing.

use redis::Value;

use super::codec::{event_json, event_records, event_state, queue_member, queue_of};
use super::connect::parse_cluster_slots;
use super::*;

#[test]
fn prefix_ranges_are_bytewise() {
    assert_eq!(prefix_range(b""), (b"-".to_vec(), b"+".to_vec()));
    assert_eq!(prefix_range(b"a/"), (b"[a/".to_vec(), b"(a0".to_vec()));
    assert_eq!(
        prefix_range(b"a\xff\xff"),
        (b"[a\xff\xff".to_vec(), b"(b".to_vec())
    );
    assert_eq!(prefix_range(b"\xff").1, b"+".to_vec());
}

#[test]
fn cluster_slots_group_by_master() {
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let entry = |start, end, host: &str, port| {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![bulk(host), Value::Int(port), bulk("id")]),
            Value::Array(vec![bulk("10.0.0.9"), Value::Int(7000), bulk("replica")]),
        ])
    };
    let reply = Value::Array(vec![
        entry(0, 99, "10.0.0.1", 6379),
        entry(100, 16383, "10.0.0.2", 6379),
        entry(200, 300, "10.0.0.1", 6379),
    ]);
    let masters = parse_cluster_slots(reply).unwrap();
    assert_eq!(masters["10.0.0.1:6379"], [(0, 99), (200, 300)]);
    assert_eq!(masters["10.0.0.2:6379"], [(100, 16383)]);
    assert_eq!(masters.len(), 2, "replicas are not scanned");
    assert!(matches!(
        parse_cluster_slots(Value::Array(Vec::new())),
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn several_nodes_without_the_cluster_flag_are_refused() {
    let err = RedisMetaStore::connect("redis://a:1,redis://b:2", "p", None)
        .await
        .err()
        .expect("accepted");
    assert!(err.to_string().contains("--redis-cluster"), "{err}");
}

#[test]
fn listing_members_sort_by_key_then_created() {
    let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
    let (a, b, c) = (
        listing_member("k", -5, &id),
        listing_member("k", 7, &id),
        listing_member("k!", 0, &id),
    );
    assert!(a < b && b < c);
    assert_eq!(listing_id(&b).unwrap(), id);
}

#[test]
fn event_replies_carry_state_beside_the_json() {
    use crate::model::event::{EventName, EventRecord};
    let ev = EventRecord {
        seq: 0,
        target: "hook".into(),
        rule: "r".into(),
        name: EventName::Delete,
        bucket: "b".into(),
        key: "a b".into(),
        size: None,
        etag: None,
        time: 1_800_000_000_000,
        principal: "p".into(),
        bucket_owner: "o".into(),
        source_ip: "::1".into(),
        request_id: "req".into(),
        tries: 3,
        due: -5,
        lease: 9,
        error: Some("late".into()),
    };
    let json = event_json(&ev).unwrap();
    assert!(
        !json.contains("late") && !json.contains("\"seq\""),
        "{json}"
    );
    let flat = vec![
        Some("42".to_owned()),
        Some(json),
        Some(event_state(&ev)),
        Some("late".to_owned()),
    ];
    let got = event_records(flat).unwrap();
    assert_eq!(got, [EventRecord { seq: 42, ..ev }]);
    let bad = vec![
        Some("1".into()),
        Some("{}".into()),
        Some("1 2".into()),
        None,
    ];
    assert!(matches!(event_records(bad), Err(StoreError::Corrupt(_))));
    assert_eq!(
        queue_of(&queue_member("b", "t:x")).unwrap(),
        ("b".to_owned(), "t:x".to_owned())
    );
}
