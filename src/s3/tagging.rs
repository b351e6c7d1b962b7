//! Object tags on the wire: the `<Tagging>` document of Put/GetObjectTagging (and of a POST
//! form's `tagging` field), the `x-amz-tagging` header of PutObject, CreateMultipartUpload and
//! CopyObject, and AWS's answers to a tag set it refuses
//! (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectTagging.html>).

use hyper::header::{HeaderMap, HeaderValue};
use percent_encoding::percent_decode;

use super::error::{S3Error, S3ErrorCode};
use crate::model::tags::{TagError, TagSet};
use crate::xml::{self, Xml};

/// Parses a `<Tagging><TagSet><Tag><Key/><Value/></Tag>…</TagSet></Tagging>` document. A
/// missing `TagSet`, `Key` or `Value` is `MalformedXML`, as on AWS; an empty body is the
/// caller's to refuse (`missing_body`), since a POST form's empty field means no tags.
pub fn parse(body: &[u8]) -> Result<TagSet, S3Error> {
    let root = xml::parse(body).map_err(|_| S3Error::malformed_xml())?;
    if root.name != "Tagging" {
        return Err(S3Error::malformed_xml());
    }
    let set = root.child("TagSet").ok_or_else(S3Error::malformed_xml)?;
    let pairs = set
        .children_named("Tag")
        .map(|t| match (t.child_text("Key"), t.child_text("Value")) {
            (Some(k), Some(v)) => Ok((k.to_owned(), v.to_owned())),
            _ => Err(S3Error::malformed_xml()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    TagSet::new(pairs).map_err(refused)
}

/// The answer to a PutObjectTagging without a document.
pub fn missing_body() -> S3Error {
    S3Error::new(
        S3ErrorCode::MissingRequestBodyError,
        "Request Body is empty.",
    )
}

/// `x-amz-tagging`: URL query parameters (`a=1&b=`, `+` a space), UTF-8 once decoded; no
/// header is no tags.
pub fn from_headers(h: &HeaderMap) -> Result<TagSet, S3Error> {
    match h.get("x-amz-tagging") {
        None => Ok(TagSet::default()),
        Some(v) => from_header(v),
    }
}

fn from_header(v: &HeaderValue) -> Result<TagSet, S3Error> {
    let raw = v.as_bytes();
    let bad = || {
        let mut e = S3Error::invalid_argument(
            "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.",
        );
        e.details.push(("ArgumentName", "x-amz-tagging".into()));
        e.details
            .push(("ArgumentValue", String::from_utf8_lossy(raw).into_owned()));
        e
    };
    let decode = |s: &[u8]| -> Result<String, S3Error> {
        let plus: Vec<u8> = s
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_decode(&plus)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad())
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        };
        let (k, v) = (decode(k)?, decode(v)?);
        if k.is_empty() || pairs.iter().any(|(seen, _)| *seen == k) {
            return Err(bad());
        }
        pairs.push((k, v));
    }
    TagSet::new(pairs).map_err(refused)
}

/// `x-amz-tagging-directive` of CopyObject: true for REPLACE (the request's tags), false for
/// COPY, the default (the source's tags).
pub fn replace_directive(h: &HeaderMap) -> Result<bool, S3Error> {
    match h.get("x-amz-tagging-directive").map(HeaderValue::as_bytes) {
        None | Some(b"COPY") => Ok(false),
        Some(b"REPLACE") => Ok(true),
        Some(other) => {
            let mut e = S3Error::invalid_argument("Unknown tagging directive.");
            e.details
                .push(("ArgumentName", "x-amz-tagging-directive".into()));
            e.details
                .push(("ArgumentValue", String::from_utf8_lossy(other).into_owned()));
            Err(e)
        }
    }
}

/// The GetObjectTagging document.
pub fn to_xml(tags: &TagSet) -> String {
    let mut x = Xml::new("Tagging");
    x.open("TagSet");
    for t in tags.iter() {
        x.open("Tag")
            .elem("Key", &t.key)
            .elem("Value", &t.value)
            .close("Tag");
    }
    x.close("TagSet");
    x.finish("Tagging")
}

/// AWS's code, message and details for each rule a tag set breaks. Too many tags is
/// `BadRequest` on AWS, not `InvalidTag`.
fn refused(e: TagError) -> S3Error {
    let invalid = |message: &str, details: Vec<(&'static str, String)>| {
        let mut e = S3Error::new(S3ErrorCode::InvalidTag, message);
        e.details = details;
        e
    };
    match e {
        TagError::InvalidKey(k) => invalid(
            "The TagKey you have provided is invalid",
            vec![("TagKey", k)],
        ),
        TagError::SystemKey(k) => invalid(
            "System tags cannot be added/updated by requester",
            vec![("TagKey", k)],
        ),
        TagError::InvalidValue { key, value } => invalid(
            "The TagValue you have provided is invalid",
            vec![("TagKey", key), ("TagValue", value)],
        ),
        TagError::DuplicateKey(k) => invalid(
            "Cannot provide multiple Tags with the same key",
            vec![("TagKey", k)],
        ),
        TagError::TooMany => S3Error::new(
            S3ErrorCode::BadRequest,
            "Object tags cannot be greater than 10",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str) -> Result<TagSet, S3Error> {
        let mut h = HeaderMap::new();
        h.insert("x-amz-tagging", HeaderValue::from_str(v).unwrap());
        from_headers(&h)
    }

    fn pairs(t: &TagSet) -> Vec<(&str, &str)> {
        t.iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect()
    }

    #[test]
    fn header_tags() {
        assert!(from_headers(&HeaderMap::new()).unwrap().is_empty());
        assert!(header("").unwrap().is_empty());
        let cases: [(&str, &[(&str, &str)]); 4] = [
            ("a=1&b=2", &[("a", "1"), ("b", "2")]),
            ("a&b=", &[("a", ""), ("b", "")]),
            ("a%20b=c%2Bd&e+f=g=h", &[("a b", "c+d"), ("e f", "g=h")]),
            ("%C3%BC=%E6%96%87", &[("ü", "文")]),
        ];
        for (h, want) in cases {
            assert_eq!(pairs(&header(h).unwrap()), want, "{h}");
        }
        for bad in ["a=1&a=2", "=1", "a=%FF"] {
            let e = header(bad).unwrap_err();
            assert_eq!(e.code, "InvalidArgument", "{bad}");
            assert_eq!(
                e.details,
                vec![
                    ("ArgumentName", "x-amz-tagging".into()),
                    ("ArgumentValue", bad.into())
                ]
            );
        }
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=")).collect();
        let e = header(&eleven.join("&")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            ("BadRequest", "Object tags cannot be greater than 10")
        );
        let e = header("a,b=1").unwrap_err();
        assert_eq!(e.code, "InvalidTag");
        assert_eq!(e.details, vec![("TagKey", "a,b".into())]);
    }

    #[test]
    fn documents() {
        let doc = r#"<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet><Tag><Key>a</Key><Value>1 + 2</Value></Tag><Tag><Key>b</Key><Value></Value></Tag></TagSet></Tagging>"#;
        let t = parse(doc.as_bytes()).unwrap();
        assert_eq!(pairs(&t), [("a", "1 + 2"), ("b", "")]);
        assert_eq!(
            to_xml(&t),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet><Tag><Key>a</Key><Value>1 + 2</Value></Tag><Tag><Key>b</Key><Value></Value></Tag></TagSet></Tagging>"
        );
        assert!(parse(b"<Tagging><TagSet/></Tagging>").unwrap().is_empty());
        for bad in [
            "<Tagging><TagSet>",
            "<Tagging></Tagging>",
            "<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>",
            "<Tags><TagSet></TagSet></Tags>",
            "",
        ] {
            assert_eq!(
                parse(bad.as_bytes()).unwrap_err().code,
                "MalformedXML",
                "{bad}"
            );
        }
        let dup = "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>a</Key><Value>2</Value></Tag></TagSet></Tagging>";
        let e = parse(dup.as_bytes()).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                "InvalidTag",
                "Cannot provide multiple Tags with the same key"
            )
        );
        let e =
            parse(b"<Tagging><TagSet><Tag><Key>k</Key><Value>a;b</Value></Tag></TagSet></Tagging>")
                .unwrap_err();
        assert_eq!(
            e.details,
            vec![("TagKey", "k".into()), ("TagValue", "a;b".into())]
        );
    }

    #[test]
    fn directives() {
        let mut h = HeaderMap::new();
        assert!(!replace_directive(&h).unwrap());
        h.insert(
            "x-amz-tagging-directive",
            HeaderValue::from_static("REPLACE"),
        );
        assert!(replace_directive(&h).unwrap());
        h.insert("x-amz-tagging-directive", HeaderValue::from_static("COPY"));
        assert!(!replace_directive(&h).unwrap());
        h.insert("x-amz-tagging-directive", HeaderValue::from_static("MERGE"));
        let e = replace_directive(&h).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            ("InvalidArgument", "Unknown tagging directive.")
        );
    }
}
