//! Access control lists, as far as the gateway has them: every bucket and object is `private`
//! (its owner has FULL_CONTROL, nobody else anything), and stays so.
//!
//! GetBucketAcl / GetObjectAcl answer that one grant. PutBucketAcl / PutObjectAcl accept what
//! leaves it unchanged (the `private` canned ACL, or a policy granting only the owner
//! FULL_CONTROL) and refuse a public grant the way AWS refuses it on a bucket that blocks public
//! ACLs (`AccessDenied`); other grants (to other accounts, to the log-delivery group) cannot be
//! kept and are answered 501. A canned ACL S3 does not know is `400 InvalidArgument` on every
//! operation that takes `x-amz-acl`.
//!
//! See <https://docs.aws.amazon.com/AmazonS3/latest/userguide/acl-overview.html>.

use hyper::HeaderMap;

use super::error::{S3Error, S3ErrorCode};
use crate::upload::Error as UploadError;
use crate::xml::{self, Xml};

/// The canned ACLs S3 defines (`x-amz-acl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canned {
    Private,
    PublicRead,
    PublicReadWrite,
    AwsExecRead,
    AuthenticatedRead,
    BucketOwnerRead,
    BucketOwnerFullControl,
    LogDeliveryWrite,
}

impl Canned {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "private" => Self::Private,
            "public-read" => Self::PublicRead,
            "public-read-write" => Self::PublicReadWrite,
            "aws-exec-read" => Self::AwsExecRead,
            "authenticated-read" => Self::AuthenticatedRead,
            "bucket-owner-read" => Self::BucketOwnerRead,
            "bucket-owner-full-control" => Self::BucketOwnerFullControl,
            "log-delivery-write" => Self::LogDeliveryWrite,
            _ => return None,
        })
    }
}

/// The grant headers of PutBucketAcl / PutObjectAcl (and of the writes that take an ACL).
const GRANT_HEADERS: [&str; 5] = [
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write",
    "x-amz-grant-write-acp",
];

/// The groups whose grants make a resource public (AWS's "Block Public Access" definition).
const PUBLIC_GROUPS: [&str; 2] = [
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
];

/// The `x-amz-acl` header, checked: a name S3 does not know is `400 InvalidArgument`.
pub fn canned(h: &HeaderMap) -> Result<Option<Canned>, S3Error> {
    let Some(v) = h.get("x-amz-acl") else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default();
    Canned::parse(s).map(Some).ok_or_else(|| {
        let mut e = S3Error::invalid_argument(format!("Invalid canned ACL: {s}"));
        e.details.push(("ArgumentName", "x-amz-acl".into()));
        e.details.push(("ArgumentValue", s.into()));
        e
    })
}

/// What PutBucketAcl / PutObjectAcl asks for, from its headers or its `AccessControlPolicy`
/// body; `Ok` when it is the one ACL the gateway has: the owner's FULL_CONTROL.
pub fn check_put(h: &HeaderMap, body: &[u8], owner: &str) -> Result<(), S3Error> {
    let canned = canned(h)?;
    let grants: Vec<(&str, &str)> = GRANT_HEADERS
        .iter()
        .filter_map(|n| Some((*n, h.get(*n)?.to_str().unwrap_or_default())))
        .collect();
    let has_body = !body.iter().all(u8::is_ascii_whitespace);
    if has_body && (canned.is_some() || !grants.is_empty()) {
        return Err(S3Error::new(
            S3ErrorCode::UnexpectedContent,
            "This request does not support content",
        ));
    }
    if let Some(c) = canned {
        if !grants.is_empty() {
            return Err(S3Error::invalid_request(
                "Specifying both Canned ACLs and Header Grants is not allowed",
            ));
        }
        return match c {
            // The bucket owner is the object's owner here: these are `private`.
            Canned::Private | Canned::BucketOwnerRead | Canned::BucketOwnerFullControl => Ok(()),
            Canned::PublicRead | Canned::PublicReadWrite | Canned::AuthenticatedRead => {
                Err(UploadError::AccessDenied.into())
            }
            Canned::AwsExecRead | Canned::LogDeliveryWrite => Err(only_private()),
        };
    }
    if !grants.is_empty() {
        let mut only_owner = true;
        for (name, value) in &grants {
            for grantee in value.split(',').map(str::trim) {
                let (kind, who) = grantee.split_once('=').unwrap_or((grantee, ""));
                let who = who.trim().trim_matches('"');
                match kind.trim().to_ascii_lowercase().as_str() {
                    "uri" if PUBLIC_GROUPS.contains(&who) => {
                        return Err(UploadError::AccessDenied.into());
                    }
                    "id" if who == owner && *name == "x-amz-grant-full-control" => {}
                    "id" | "uri" | "emailaddress" => only_owner = false,
                    _ => return Err(S3Error::invalid_argument("Invalid id")),
                }
            }
        }
        return if only_owner {
            Ok(())
        } else {
            Err(only_private())
        };
    }
    if !has_body {
        return Err(malformed_acl());
    }
    check_policy(body, owner)
}

/// An `AccessControlPolicy` document: only the owner's FULL_CONTROL is kept as it is.
fn check_policy(body: &[u8], owner: &str) -> Result<(), S3Error> {
    let root = xml::parse(body).map_err(|_| malformed_acl())?;
    if root.name != "AccessControlPolicy" {
        return Err(malformed_acl());
    }
    let list = root.child("AccessControlList").ok_or_else(malformed_acl)?;
    let mut owner_full = false;
    let mut others = false;
    for grant in list.children_named("Grant") {
        let grantee = grant.child("Grantee").ok_or_else(malformed_acl)?;
        let permission = grant
            .child_text("Permission")
            .map(str::trim)
            .ok_or_else(malformed_acl)?;
        if !matches!(
            permission,
            "FULL_CONTROL" | "READ" | "WRITE" | "READ_ACP" | "WRITE_ACP"
        ) {
            return Err(malformed_acl());
        }
        if let Some(uri) = grantee.child_text("URI").map(str::trim) {
            if PUBLIC_GROUPS.contains(&uri) {
                return Err(UploadError::AccessDenied.into());
            }
            others = true;
        } else if let Some(id) = grantee.child_text("ID").map(str::trim) {
            if id == owner && permission == "FULL_CONTROL" {
                owner_full = true;
            } else if id != owner {
                others = true;
            }
        } else if grantee.child("EmailAddress").is_some() {
            others = true;
        } else {
            return Err(malformed_acl());
        }
    }
    if owner_full && !others {
        Ok(())
    } else {
        Err(only_private())
    }
}

/// The ACL of every bucket and object: its owner's FULL_CONTROL.
pub fn to_xml(owner: &str) -> String {
    const GRANTEE: &str =
        r#"Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser""#;
    let mut x = Xml::new("AccessControlPolicy");
    super::request::owner(&mut x, "Owner", owner);
    x.open("AccessControlList")
        .open("Grant")
        .open(GRANTEE)
        .elem("ID", owner)
        .elem("DisplayName", owner)
        .close("Grantee")
        .elem("Permission", "FULL_CONTROL")
        .close("Grant")
        .close("AccessControlList");
    x.finish("AccessControlPolicy")
}

fn malformed_acl() -> S3Error {
    S3Error::new(
        S3ErrorCode::MalformedACLError,
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

fn only_private() -> S3Error {
    S3Error::not_implemented("Only the private ACL (the owner's FULL_CONTROL) is supported")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, v.parse().unwrap());
        }
        h
    }

    fn code(r: Result<(), S3Error>) -> &'static str {
        r.map_or_else(|e| e.code, |()| "ok")
    }

    fn policy(grants: &str) -> String {
        format!(
            r#"<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>me</ID></Owner><AccessControlList>{grants}</AccessControlList></AccessControlPolicy>"#
        )
    }

    const OWNER_FULL: &str = r#"<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>me</ID></Grantee><Permission>FULL_CONTROL</Permission></Grant>"#;
    const ALL_READ: &str = r#"<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee><Permission>READ</Permission></Grant>"#;

    #[test]
    fn canned_names() {
        assert_eq!(canned(&headers(&[])).unwrap(), None);
        assert_eq!(
            canned(&headers(&[("x-amz-acl", "private")])).unwrap(),
            Some(Canned::Private)
        );
        let e = canned(&headers(&[("x-amz-acl", "public-fullcontrol")])).unwrap_err();
        assert_eq!((e.code, e.status.as_u16()), ("InvalidArgument", 400));
    }

    #[test]
    fn put_acl() {
        let put = |h: &[(&'static str, &str)], body: &str| {
            code(check_put(&headers(h), body.as_bytes(), "me"))
        };
        assert_eq!(put(&[("x-amz-acl", "private")], ""), "ok");
        assert_eq!(put(&[("x-amz-acl", "bucket-owner-full-control")], ""), "ok");
        assert_eq!(put(&[("x-amz-acl", "public-read")], ""), "AccessDenied");
        assert_eq!(
            put(&[("x-amz-acl", "authenticated-read")], ""),
            "AccessDenied"
        );
        assert_eq!(
            put(&[("x-amz-acl", "log-delivery-write")], ""),
            "NotImplemented"
        );
        assert_eq!(put(&[("x-amz-acl", "nope")], ""), "InvalidArgument");
        assert_eq!(put(&[("x-amz-grant-full-control", "id=me")], ""), "ok");
        assert_eq!(
            put(&[("x-amz-grant-read", "id=other")], ""),
            "NotImplemented"
        );
        assert_eq!(
            put(
                &[(
                    "x-amz-grant-read",
                    r#"uri="http://acs.amazonaws.com/groups/global/AllUsers""#
                )],
                ""
            ),
            "AccessDenied"
        );
        assert_eq!(
            put(
                &[("x-amz-acl", "private"), ("x-amz-grant-read", "id=me")],
                ""
            ),
            "InvalidRequest"
        );
        assert_eq!(put(&[], ""), "MalformedACLError");
        assert_eq!(put(&[], "<nope"), "MalformedACLError");
        assert_eq!(put(&[], &policy(OWNER_FULL)), "ok");
        assert_eq!(
            put(&[], &policy(&format!("{OWNER_FULL}{ALL_READ}"))),
            "AccessDenied"
        );
        assert_eq!(put(&[], &policy("")), "NotImplemented");
        assert_eq!(
            put(&[("x-amz-acl", "private")], &policy(OWNER_FULL)),
            "UnexpectedContent"
        );
    }

    #[test]
    fn owner_full_control_document() {
        let doc = to_xml("me");
        let root = xml::parse(doc.as_bytes()).unwrap();
        let grant = root
            .child("AccessControlList")
            .unwrap()
            .child("Grant")
            .unwrap();
        assert_eq!(grant.child("Grantee").unwrap().child_text("ID"), Some("me"));
        assert_eq!(grant.child_text("Permission"), Some("FULL_CONTROL"));
        assert!(doc.contains(r#"xsi:type="CanonicalUser""#));
    }
}
