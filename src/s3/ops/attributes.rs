//! GetObjectAttributes (`GET /b/k?attributes`): HeadObject and ListParts in one answer, for the
//! attributes `x-amz-object-attributes` names.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObjectAttributes.html>
//!
//! AWS quirks kept: the ETag is unquoted; a COMPOSITE checksum carries no `-N`; `ObjectParts`
//! appears for multipart objects only, and lists its `Part`s (with their checksums and the
//! paging fields) only when the object has checksums, otherwise it holds `PartsCount` alone.

use http::request::Parts;
use hyper::header;

use crate::app::App;
use crate::model::ObjectRecord;
use crate::model::checksum::{ChecksumType, b64};
use crate::model::time::http_date;
use crate::s3::error::S3Error;
use crate::s3::request::{Res, conditional_read, set};
use crate::xml::Xml;

/// The attributes a request may name, in the order of the answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Wanted {
    etag: bool,
    checksum: bool,
    object_parts: bool,
    storage_class: bool,
    object_size: bool,
}

/// Largest `x-amz-max-parts` honoured (as ListParts).
const MAX_PARTS: u32 = 1000;

pub(super) async fn get_object_attributes(app: &App, req: &Parts, b: &str, k: &str) -> Res {
    let wanted = wanted(&req.headers)?;
    let max_parts =
        int_header(&req.headers, "x-amz-max-parts")?.map_or(MAX_PARTS, |n| n.min(MAX_PARTS));
    let marker = int_header(&req.headers, "x-amz-part-number-marker")?.unwrap_or(0);
    let rec = app.uploads.object(b, k).await?;
    if let Some(not_modified) = conditional_read(&req.headers, &rec)? {
        return Ok(not_modified);
    }
    let mut resp = crate::s3::request::xml_response(document(&rec, wanted, max_parts, marker));
    set(
        resp.headers_mut(),
        header::LAST_MODIFIED,
        &http_date(rec.modified),
    );
    Ok(resp)
}

/// The `GetObjectAttributesResponse` document.
fn document(rec: &ObjectRecord, wanted: Wanted, max_parts: u32, marker: u32) -> String {
    let mut x = Xml::new("GetObjectAttributesResponse");
    if wanted.etag {
        x.elem("ETag", &rec.etag);
    }
    if wanted.checksum
        && let Some(c) = &rec.checksum
    {
        x.open("Checksum")
            .elem(c.algorithm.xml_name(), b64(&c.value))
            .elem(
                "ChecksumType",
                rec.checksum_type
                    .unwrap_or(ChecksumType::FullObject)
                    .as_str(),
            )
            .close("Checksum");
    }
    if wanted.object_parts && rec.multipart {
        x.open("ObjectParts");
        if rec.checksum.is_some() {
            let max = usize::try_from(max_parts).unwrap_or(usize::MAX);
            let mut after = rec.parts.iter().filter(|p| u32::from(p.number) > marker);
            let page: Vec<_> = after.by_ref().take(max).collect();
            let truncated = after.next().is_some();
            x.elem("IsTruncated", truncated.to_string())
                .elem("MaxParts", max_parts.to_string());
            if let Some(last) = page.last() {
                x.elem("NextPartNumberMarker", last.number.to_string());
            }
            x.elem("PartNumberMarker", marker.to_string());
            for p in page {
                x.open("Part")
                    .elem("PartNumber", p.number.to_string())
                    .elem("Size", p.size.to_string());
                if let Some(c) = &p.checksum {
                    x.elem(c.algorithm.xml_name(), b64(&c.value));
                }
                x.close("Part");
            }
        }
        x.elem("PartsCount", rec.parts.len().to_string());
        x.close("ObjectParts");
    }
    if wanted.storage_class {
        x.elem("StorageClass", "STANDARD");
    }
    if wanted.object_size {
        x.elem("ObjectSize", rec.size.to_string());
    }
    x.finish("GetObjectAttributesResponse")
}

/// `x-amz-object-attributes`: one or more comma-separated names (in one header or several).
fn wanted(h: &http::HeaderMap) -> Result<Wanted, S3Error> {
    let mut w = Wanted::default();
    for value in h.get_all("x-amz-object-attributes") {
        let value = value.to_str().map_err(|_| bad_attribute(""))?;
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let slot = match name {
                "ETag" => &mut w.etag,
                "Checksum" => &mut w.checksum,
                "ObjectParts" => &mut w.object_parts,
                "StorageClass" => &mut w.storage_class,
                "ObjectSize" => &mut w.object_size,
                other => return Err(bad_attribute(other)),
            };
            *slot = true;
        }
    }
    if w == Wanted::default() {
        return Err(bad_attribute(""));
    }
    Ok(w)
}

fn bad_attribute(value: &str) -> S3Error {
    let mut e = S3Error::invalid_argument("Invalid attribute name specified.");
    e.details
        .push(("ArgumentName", "x-amz-object-attributes".into()));
    e.details.push(("ArgumentValue", value.to_owned()));
    e
}

/// A non-negative integer header (`x-amz-max-parts`, `x-amz-part-number-marker`).
fn int_header(h: &http::HeaderMap, name: &'static str) -> Result<Option<u32>, S3Error> {
    let Some(v) = h.get(name) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim();
    let n = text
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            let mut e = S3Error::invalid_argument(format!(
                "Provided {name} not an integer or within integer range"
            ));
            e.details.push(("ArgumentName", name.into()));
            e.details.push(("ArgumentValue", text.to_owned()));
            e
        })?;
    Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checksum::ChecksumAlgorithm;
    use crate::model::{Checksum, ObjectHeaders, ObjectPart, UploadId};

    fn rec(checksums: bool) -> ObjectRecord {
        let sum = |v: u8| {
            checksums.then(|| Checksum {
                algorithm: ChecksumAlgorithm::Crc32,
                value: vec![v; 4],
            })
        };
        let part = |number: u16, size| ObjectPart {
            number,
            md5: String::new(),
            file: String::new(),
            size,
            checksum: sum(u8::try_from(number).unwrap()),
        };
        ObjectRecord {
            blob: UploadId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            parts: vec![part(1, 5), part(2, 5), part(4, 3)],
            size: 13,
            etag: "abc-3".into(),
            modified: 0,
            owner: String::new(),
            headers: ObjectHeaders::default(),
            checksum: sum(9),
            checksum_type: checksums.then_some(ChecksumType::Composite),
            multipart: true,
        }
    }

    const ALL: Wanted = Wanted {
        etag: true,
        checksum: true,
        object_parts: true,
        storage_class: true,
        object_size: true,
    };

    #[test]
    fn golden_with_checksums() {
        let head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetObjectAttributesResponse xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
        assert_eq!(
            document(&rec(true), ALL, 2, 0),
            format!(
                "{head}<ETag>abc-3</ETag><Checksum><ChecksumCRC32>CQkJCQ==</ChecksumCRC32>\
                 <ChecksumType>COMPOSITE</ChecksumType></Checksum><ObjectParts>\
                 <IsTruncated>true</IsTruncated><MaxParts>2</MaxParts>\
                 <NextPartNumberMarker>2</NextPartNumberMarker><PartNumberMarker>0</PartNumberMarker>\
                 <Part><PartNumber>1</PartNumber><Size>5</Size><ChecksumCRC32>AQEBAQ==</ChecksumCRC32></Part>\
                 <Part><PartNumber>2</PartNumber><Size>5</Size><ChecksumCRC32>AgICAg==</ChecksumCRC32></Part>\
                 <PartsCount>3</PartsCount></ObjectParts><StorageClass>STANDARD</StorageClass>\
                 <ObjectSize>13</ObjectSize></GetObjectAttributesResponse>"
            )
        );
        let page2 = document(&rec(true), ALL, 2, 2);
        assert!(page2.contains("<IsTruncated>false</IsTruncated><MaxParts>2</MaxParts><NextPartNumberMarker>4</NextPartNumberMarker><PartNumberMarker>2</PartNumberMarker><Part><PartNumber>4</PartNumber><Size>3</Size>"), "{page2}");
    }

    #[test]
    fn without_checksums_only_the_parts_count() {
        let doc = document(&rec(false), ALL, 1000, 0);
        assert!(
            doc.contains("<ETag>abc-3</ETag><ObjectParts><PartsCount>3</PartsCount></ObjectParts><StorageClass>"),
            "{doc}"
        );
        let mut single = rec(false);
        single.multipart = false;
        let only = Wanted {
            object_parts: true,
            ..Wanted::default()
        };
        assert!(document(&single, only, 1000, 0).ends_with("<GetObjectAttributesResponse xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></GetObjectAttributesResponse>"));
    }

    #[test]
    fn attribute_names() {
        let mut h = http::HeaderMap::new();
        assert!(wanted(&h).is_err());
        h.append(
            "x-amz-object-attributes",
            "ETag, ObjectSize".parse().unwrap(),
        );
        h.append("x-amz-object-attributes", "StorageClass".parse().unwrap());
        assert_eq!(
            wanted(&h).unwrap(),
            Wanted {
                etag: true,
                object_size: true,
                storage_class: true,
                ..Wanted::default()
            }
        );
        h.insert("x-amz-object-attributes", "etag".parse().unwrap());
        assert_eq!(wanted(&h).unwrap_err().code, "InvalidArgument");
        h.insert("x-amz-object-attributes", " , ".parse().unwrap());
        assert_eq!(wanted(&h).unwrap_err().code, "InvalidArgument");
        h.insert("x-amz-max-parts", "-1".parse().unwrap());
        assert_eq!(
            int_header(&h, "x-amz-max-parts").unwrap_err().code,
            "InvalidArgument"
        );
        h.insert("x-amz-max-parts", "99999999999".parse().unwrap());
        assert_eq!(int_header(&h, "x-amz-max-parts").unwrap(), Some(u32::MAX));
    }
}
