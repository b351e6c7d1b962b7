//! One function per S3 operation, grouped by what they act on: `object`, `attributes`, `list`,
//! `multipart` (bucket settings are answered inline in `dispatch`). Each reads headers, query and
//! XML, calls `upload::Uploads`, and builds the status, headers and XML of the answer. No storage
//! logic lives here; request intake and header codecs are in `s3::request`.

mod attributes;
mod list;
mod multipart;
mod object;
#[cfg(test)]
mod tests;

use http::request::Parts;
use hyper::header::{self, HeaderName};
use hyper::{Response, StatusCode};

use self::list::{list_buckets, list_object_versions, list_objects};
pub use self::multipart::complete_parts;
use self::multipart::{
    complete, create_multipart_upload, list_parts, list_uploads, upload_part, upload_part_copy,
};
pub use self::object::delete_request;
use self::object::{
    copy_object, delete_object_tagging, delete_objects, get_object, get_object_tagging, put_object,
    put_object_tagging,
};
use crate::app::App;
use crate::body::RequestBody;
use crate::body::empty;
use crate::s3::acl;
use crate::s3::auth::Verified;
use crate::s3::error::{S3Error, S3ErrorCode};
use crate::s3::request::{MAX_XML, Res, collect, drain, set, status, xml_response};
use crate::s3::route::{Route, S3Op};
use crate::upload::{Caller, Error as UploadError};
use crate::xml::Xml;

pub async fn dispatch(
    app: &App,
    req: &Parts,
    body: RequestBody,
    route: Route,
    auth: Verified,
) -> Res {
    let owner = auth.access_key.clone();
    let granted = match crate::s3::access::authorize(app, req, &route, &owner).await {
        Ok(g) => g,
        Err(e) => {
            drain(req, body).await;
            return Err(e);
        }
    };
    // A canned ACL S3 does not know is refused wherever `x-amz-acl` is read (see `acl`).
    if matches!(
        route.op,
        S3Op::CreateBucket | S3Op::PutObject | S3Op::CopyObject | S3Op::CreateMultipartUpload
    ) && let Err(e) = acl::canned(&req.headers)
    {
        drain(req, body).await;
        return Err(e);
    }
    let Route {
        op,
        bucket,
        key,
        query,
    } = route;
    let (b, k) = (bucket.as_str(), key.as_str());
    match op {
        S3Op::ListBuckets => list_buckets(app, &owner, &query).await,
        S3Op::CreateBucket => {
            let _ = collect(req, body, &auth, MAX_XML).await?;
            if b == "file" {
                // Path-style `/file/...` belongs to the design note's API (see `legacy`).
                return Err(S3Error::new(
                    S3ErrorCode::InvalidBucketName,
                    "The bucket name `file` is reserved for the /file/* API.",
                ));
            }
            match app.uploads.create_bucket(&owner, b).await {
                // us-east-1 answers 200 to its owner and changes nothing (AWS keeps this legacy
                // behaviour there only); every other region answers 409.
                Err(UploadError::BucketAlreadyOwnedByYou) if &*app.region == "us-east-1" => {}
                r => r?,
            }
            let mut resp = Response::new(empty());
            set(resp.headers_mut(), header::LOCATION, &format!("/{b}"));
            Ok(resp)
        }
        S3Op::HeadBucket => {
            app.uploads.bucket(b).await?;
            let mut resp = Response::new(empty());
            set(
                resp.headers_mut(),
                HeaderName::from_static("x-amz-bucket-region"),
                &app.region,
            );
            Ok(resp)
        }
        S3Op::DeleteBucket => {
            let legacy = app.legacy.bucket == b;
            app.uploads.delete_bucket(b, !legacy).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::GetBucketLocation => {
            app.uploads.bucket(b).await?;
            let region = if &*app.region == "us-east-1" {
                ""
            } else {
                &app.region
            };
            Ok(xml_response(Xml::text_document(
                "LocationConstraint",
                region,
            )))
        }
        S3Op::GetBucketVersioning => {
            app.uploads.bucket(b).await?;
            Ok(xml_response(
                Xml::new("VersioningConfiguration").finish("VersioningConfiguration"),
            ))
        }
        S3Op::ListObjectVersions => list_object_versions(app, b, &query).await,
        S3Op::PutBucketCors => {
            let body = collect(req, body, &auth, MAX_XML).await?;
            app.uploads
                .set_bucket_cors(b, Some(crate::s3::cors::parse(&body)?))
                .await?;
            Ok(Response::new(empty()))
        }
        S3Op::GetBucketCors => match app.uploads.bucket(b).await?.cors {
            Some(rules) => Ok(xml_response(crate::s3::cors::to_xml(&rules))),
            None => Err(S3Error::new(
                S3ErrorCode::NoSuchCORSConfiguration,
                "The CORS configuration does not exist",
            )),
        },
        S3Op::DeleteBucketCors => {
            app.uploads.set_bucket_cors(b, None).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::PutBucketLifecycle => {
            let body = collect(req, body, &auth, MAX_XML).await?;
            app.uploads
                .set_bucket_lifecycle(b, Some(crate::s3::lifecycle::parse(&body)?))
                .await?;
            Ok(Response::new(empty()))
        }
        S3Op::GetBucketLifecycle => match app.uploads.bucket(b).await?.lifecycle {
            Some(rules) => Ok(xml_response(crate::s3::lifecycle::to_xml(&rules))),
            None => Err(S3Error::new(
                S3ErrorCode::NoSuchLifecycleConfiguration,
                "The lifecycle configuration does not exist",
            )),
        },
        S3Op::DeleteBucketLifecycle => {
            app.uploads.set_bucket_lifecycle(b, None).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::PutBucketNotification => {
            let body = collect(req, body, &auth, MAX_XML).await?;
            let rules = crate::s3::notification::parse(&body)?;
            app.uploads.set_bucket_notification(b, rules).await?;
            Ok(Response::new(empty()))
        }
        S3Op::GetBucketNotification => {
            let rules = app.uploads.bucket(b).await?.notification;
            Ok(xml_response(crate::s3::notification::to_xml(
                rules.as_deref().unwrap_or_default(),
            )))
        }
        S3Op::ListObjects { v2 } => list_objects(app, b, &query, v2).await,
        S3Op::ListMultipartUploads => list_uploads(app, b, &query).await,
        S3Op::DeleteObjects => delete_objects(app, req, body, &auth, b).await,
        S3Op::PostObject => {
            // A form upload authenticates by its policy (see `mod.rs`); signed like any other
            // request, it is not a form upload S3 knows.
            drain(req, body).await;
            Err(S3Error::new(
                S3ErrorCode::MethodNotAllowed,
                "The specified method is not allowed against this resource.",
            ))
        }
        S3Op::PutObject => put_object(app, req, body, &auth, b, k).await,
        S3Op::CopyObject => copy_object(app, req, &owner, b, k).await,
        S3Op::GetObject => get_object(app, req, &query, b, k, false).await,
        S3Op::HeadObject => get_object(app, req, &query, b, k, true).await,
        S3Op::GetObjectAttributes => attributes::get_object_attributes(app, req, b, k).await,
        S3Op::DeleteObject => {
            app.uploads.delete_object(&owner, b, k).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::PutObjectTagging => put_object_tagging(app, req, body, &auth, b, k).await,
        S3Op::GetObjectTagging => get_object_tagging(app, b, k).await,
        S3Op::DeleteObjectTagging => delete_object_tagging(app, b, k).await,
        S3Op::CreateMultipartUpload => create_multipart_upload(app, req, &owner, b, k).await,
        S3Op::UploadPart { part_number, .. } => {
            upload_part(app, req, body, &auth, granted.upload()?, part_number).await
        }
        S3Op::UploadPartCopy {
            upload_id,
            part_number,
        } => upload_part_copy(app, req, b, k, &upload_id, part_number).await,
        S3Op::CompleteMultipartUpload { upload_id } => {
            complete(app, req, body, &auth, b, k, &upload_id).await
        }
        S3Op::AbortMultipartUpload { upload_id } => {
            // An upload of a deleted bucket is gone with it: NoSuchUpload, as before buckets
            // could be deleted with uploads in them (clients cleaning up expect it).
            let up = match app
                .uploads
                .open_upload(&upload_id, b, Some(k), Caller::Anyone)
                .await
            {
                Err(UploadError::NoSuchBucket) => Err(UploadError::NoSuchUpload),
                r => r,
            }?;
            app.uploads.abort(&up).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        S3Op::ListParts { upload_id } => list_parts(app, &query, b, k, &upload_id).await,
        S3Op::GetBucketAcl => {
            let bucket = app.uploads.bucket(b).await?;
            Ok(xml_response(acl::to_xml(&bucket.owner)))
        }
        S3Op::PutBucketAcl => {
            let body = collect(req, body, &auth, MAX_XML).await?;
            let bucket = app.uploads.bucket(b).await?;
            acl::check_put(&req.headers, &body, &bucket.owner)?;
            Ok(Response::new(empty()))
        }
        S3Op::GetObjectAcl => {
            let rec = app.uploads.object(b, k).await?;
            Ok(xml_response(acl::to_xml(&rec.owner)))
        }
        S3Op::PutObjectAcl => {
            let body = collect(req, body, &auth, MAX_XML).await?;
            let rec = app.uploads.object(b, k).await?;
            acl::check_put(&req.headers, &body, &rec.owner)?;
            Ok(Response::new(empty()))
        }
        S3Op::Unsupported { sub, .. } => {
            drain(req, body).await;
            Err(S3Error::not_implemented(format!(
                "The '{sub}' sub-resource is not implemented"
            )))
        }
    }
}
