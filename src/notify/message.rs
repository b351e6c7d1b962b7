//! The event message as AWS writes it (event structure version 2.1), one record per message.

use serde_json::{Value, json};

use crate::model::event::EventRecord;
use crate::model::time::iso8601;

/// `{"Records":[…]}` for one event.
pub fn render(ev: &EventRecord, region: &str) -> String {
    json!({ "Records": [record(ev, region)] }).to_string()
}

fn record(ev: &EventRecord, region: &str) -> Value {
    let mut object = json!({
        "key": encode_key(&ev.key),
        "sequencer": sequencer(ev.seq),
    });
    if let Some(size) = ev.size {
        object["size"] = json!(size);
    }
    if let Some(etag) = &ev.etag {
        object["eTag"] = json!(etag);
    }
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": iso8601(ev.time),
        "eventName": ev.name.as_str(),
        "userIdentity": { "principalId": ev.principal },
        "requestParameters": { "sourceIPAddress": ev.source_ip },
        "responseElements": {
            "x-amz-request-id": ev.request_id,
            "x-amz-id-2": format!("{0}{0}", ev.request_id),
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": ev.rule,
            "bucket": {
                "name": ev.bucket,
                "ownerIdentity": { "principalId": ev.bucket_owner },
                "arn": format!("arn:aws:s3:::{}", ev.bucket),
            },
            "object": object,
        },
    })
}

/// The message's `sequencer`: fixed-width upper-case hex, so that comparing two of one key as
/// strings orders them as AWS documents.
pub fn sequencer(seq: u64) -> String {
    format!("{seq:016X}")
}

/// The key as AWS writes it in events: form-URL-encoded (a space is `+`), `/` left as it is.
pub fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|seg| form_urlencoded::byte_serialize(seg.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::EventName;

    fn event() -> EventRecord {
        EventRecord {
            seq: 42,
            target: "hook".into(),
            rule: "rule-1".into(),
            name: EventName::CompleteMultipartUpload,
            bucket: "photos".into(),
            key: "2026/red flower+ünï.jpg".into(),
            size: Some(1024),
            etag: Some("d41d8cd98f00b204e9800998ecf8427e-2".into()),
            time: 1_795_632_478_123,
            principal: "AKID".into(),
            bucket_owner: "OWNER".into(),
            source_ip: "127.0.0.1".into(),
            request_id: "0123456789ABCDEF".into(),
            tries: 3,
            due: 0,
            lease: 0,
            error: None,
        }
    }

    #[test]
    fn aws_record_shape() {
        let v: Value = serde_json::from_str(&render(&event(), "eu-west-1")).unwrap();
        let r = &v["Records"][0];
        assert_eq!(v["Records"].as_array().unwrap().len(), 1);
        assert_eq!(r["eventVersion"], "2.1");
        assert_eq!(r["eventSource"], "aws:s3");
        assert_eq!(r["awsRegion"], "eu-west-1");
        assert_eq!(r["eventTime"], "2026-11-25T18:47:58.123Z");
        assert_eq!(r["eventName"], "ObjectCreated:CompleteMultipartUpload");
        assert_eq!(r["userIdentity"]["principalId"], "AKID");
        assert_eq!(r["requestParameters"]["sourceIPAddress"], "127.0.0.1");
        assert_eq!(
            r["responseElements"]["x-amz-request-id"],
            "0123456789ABCDEF"
        );
        let s3 = &r["s3"];
        assert_eq!(s3["s3SchemaVersion"], "1.0");
        assert_eq!(s3["configurationId"], "rule-1");
        assert_eq!(s3["bucket"]["name"], "photos");
        assert_eq!(s3["bucket"]["arn"], "arn:aws:s3:::photos");
        assert_eq!(s3["bucket"]["ownerIdentity"]["principalId"], "OWNER");
        let o = &s3["object"];
        assert_eq!(o["key"], "2026/red+flower%2B%C3%BCn%C3%AF.jpg");
        assert_eq!(o["size"], 1024);
        assert_eq!(o["eTag"], "d41d8cd98f00b204e9800998ecf8427e-2");
        assert_eq!(o["sequencer"], "000000000000002A");
    }

    #[test]
    fn removal_has_no_size_or_etag() {
        let ev = EventRecord {
            name: EventName::Delete,
            size: None,
            etag: None,
            ..event()
        };
        let v: Value = serde_json::from_str(&render(&ev, "us-east-1")).unwrap();
        let o = &v["Records"][0]["s3"]["object"];
        assert_eq!(v["Records"][0]["eventName"], "ObjectRemoved:Delete");
        assert!(o.get("size").is_none() && o.get("eTag").is_none());
        assert_eq!(o["sequencer"], "000000000000002A");
    }

    #[test]
    fn sequencers_sort_as_numbers() {
        assert!(sequencer(9) < sequencer(10));
        assert!(sequencer(0xFF) < sequencer(0x100));
    }
}
