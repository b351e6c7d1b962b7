//! The sub-resources S3 has and this gateway does not implement: each routes to the operation it
//! names (for the access log and the metrics) and is answered 501.

use hyper::Method;

use super::S3Op;

/// Sub-resources we do not implement: answered 501 rather than mistaken for object operations.
/// Each names the operations it selects, for the access log: `[GET, PUT, DELETE, POST]` on a
/// bucket, then on an object ("" where S3 has none).
pub(super) const UNSUPPORTED: &[(&str, [&str; 4], [&str; 4])] = &[
    (
        "accelerate",
        [
            "GetBucketAccelerateConfiguration",
            "PutBucketAccelerateConfiguration",
            "",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "analytics",
        [
            "GetBucketAnalyticsConfiguration",
            "PutBucketAnalyticsConfiguration",
            "DeleteBucketAnalyticsConfiguration",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "attributes",
        ["", "", "", ""],
        ["GetObjectAttributes", "", "", ""],
    ),
    (
        "encryption",
        [
            "GetBucketEncryption",
            "PutBucketEncryption",
            "DeleteBucketEncryption",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "intelligent-tiering",
        [
            "GetBucketIntelligentTieringConfiguration",
            "PutBucketIntelligentTieringConfiguration",
            "DeleteBucketIntelligentTieringConfiguration",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "inventory",
        [
            "GetBucketInventoryConfiguration",
            "PutBucketInventoryConfiguration",
            "DeleteBucketInventoryConfiguration",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "legal-hold",
        ["", "", "", ""],
        ["GetObjectLegalHold", "PutObjectLegalHold", "", ""],
    ),
    (
        "logging",
        ["GetBucketLogging", "PutBucketLogging", "", ""],
        ["", "", "", ""],
    ),
    (
        "metrics",
        [
            "GetBucketMetricsConfiguration",
            "PutBucketMetricsConfiguration",
            "DeleteBucketMetricsConfiguration",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "object-lock",
        [
            "GetObjectLockConfiguration",
            "PutObjectLockConfiguration",
            "",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "ownershipControls",
        [
            "GetBucketOwnershipControls",
            "PutBucketOwnershipControls",
            "DeleteBucketOwnershipControls",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "policy",
        [
            "GetBucketPolicy",
            "PutBucketPolicy",
            "DeleteBucketPolicy",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "policyStatus",
        ["GetBucketPolicyStatus", "", "", ""],
        ["", "", "", ""],
    ),
    (
        "publicAccessBlock",
        [
            "GetPublicAccessBlock",
            "PutPublicAccessBlock",
            "DeletePublicAccessBlock",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "replication",
        [
            "GetBucketReplication",
            "PutBucketReplication",
            "DeleteBucketReplication",
            "",
        ],
        ["", "", "", ""],
    ),
    (
        "requestPayment",
        ["GetBucketRequestPayment", "PutBucketRequestPayment", "", ""],
        ["", "", "", ""],
    ),
    ("restore", ["", "", "", ""], ["", "", "", "RestoreObject"]),
    (
        "retention",
        ["", "", "", ""],
        ["GetObjectRetention", "PutObjectRetention", "", ""],
    ),
    (
        "select",
        ["", "", "", ""],
        ["", "", "", "SelectObjectContent"],
    ),
    (
        "tagging",
        [
            "GetBucketTagging",
            "PutBucketTagging",
            "DeleteBucketTagging",
            "",
        ],
        [
            "GetObjectTagging",
            "PutObjectTagging",
            "DeleteObjectTagging",
            "",
        ],
    ),
    (
        "torrent",
        ["", "", "", ""],
        ["GetObjectTorrent", "", "", ""],
    ),
    (
        "website",
        [
            "GetBucketWebsite",
            "PutBucketWebsite",
            "DeleteBucketWebsite",
            "",
        ],
        ["", "", "", ""],
    ),
];

/// The operation a request for an unimplemented sub-resource asks for: the name S3 gives it,
/// or, for a method S3 has no operation for, the sub-resource's first one.
pub(super) fn unsupported(sub: &'static str, method: &Method, object: bool) -> S3Op {
    let Some((_, bucket_ops, object_ops)) = UNSUPPORTED.iter().find(|(s, ..)| *s == sub) else {
        let name = if sub == "versioning" {
            "PutBucketVersioning"
        } else {
            "Unknown"
        };
        return S3Op::Unsupported { name, sub };
    };
    let ops = if object { object_ops } else { bucket_ops };
    let slot = match *method {
        Method::PUT => 1,
        Method::DELETE => 2,
        Method::POST => 3,
        _ => 0,
    };
    let name = Some(ops[slot])
        .filter(|n| !n.is_empty())
        .or_else(|| {
            ops.iter()
                .chain(bucket_ops)
                .chain(object_ops)
                .copied()
                .find(|n| !n.is_empty())
        })
        .unwrap_or("Unknown");
    S3Op::Unsupported { name, sub }
}
