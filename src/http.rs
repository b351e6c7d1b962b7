//! The single service function: request id, tracing span, then the front-end that owns the
//! path. Also the response body type shared by the front-ends.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt as _};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tracing::Instrument as _;

use crate::app::App;
use crate::upload::model::random_hex;

pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never: Infallible| match never {}).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn stream<S>(s: S) -> Body
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
{
    BoxBody::new(StreamBody::new(s.map_ok(Frame::data)))
}

pub async fn handle(app: App, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let request_id = random_hex(8).to_uppercase();
    let span = tracing::info_span!("req", id = %request_id, method = %req.method(), path = %req.uri().path());
    async move {
        let started = std::time::Instant::now();
        let mut resp = crate::s3::handle(&app, req, &request_id).await;
        let headers = resp.headers_mut();
        if let Ok(v) = request_id.parse() {
            headers.insert("x-amz-request-id", v);
        }
        if let Ok(v) = format!("{request_id}{request_id}").parse() {
            headers.insert("x-amz-id-2", v);
        }
        headers.insert(hyper::header::SERVER, hyper::header::HeaderValue::from_static("mpgw"));
        tracing::info!(status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "done");
        Ok(resp)
    }
    .instrument(span)
    .await
}
