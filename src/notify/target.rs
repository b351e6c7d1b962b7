//! The two kinds of event target: a webhook (one POST per event) and a Redis Stream (one XADD).

use std::time::Duration;

use bytes::Bytes;
use hmac::{KeyInit as _, Mac as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::{NotifyKind, NotifyTarget};
use crate::upload::error::chain;

type Http = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled client for webhooks, http or https (the system's roots).
fn http_client(timeout: Duration) -> Http {
    let mut plain = HttpConnector::new();
    plain.enforce_http(false);
    plain.set_connect_timeout(Some(timeout));
    plain.set_nodelay(true);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let connector =
        match hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_native_roots(provider) {
            Ok(b) => b.https_or_http().enable_http1().wrap_connector(plain),
            // No system CA store: http targets still work, https ones fail their handshake.
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(
                    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .https_or_http()
                .enable_http1()
                .wrap_connector(plain),
        };
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Header carrying the body's HMAC-SHA256 under the target's secret: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-mpgw-signature";
/// Header naming the event (`<bucket>/<target>/<seq>`), the same on every redelivery.
pub const DELIVERY_HEADER: &str = "x-mpgw-delivery";

/// Most of a webhook's answer that is read (for the failure's log line).
const ANSWER_LIMIT: usize = 4 << 10;

pub enum Target {
    Webhook {
        url: String,
        secret: Option<String>,
        token: Option<String>,
        http: Box<Http>,
        timeout: Duration,
    },
    Stream {
        stream: String,
        url: String,
        maxlen: u64,
        conn: tokio::sync::OnceCell<ConnectionManager>,
        timeout: Duration,
    },
}

impl Target {
    pub fn new(t: &NotifyTarget, timeout: Duration, maxlen: u64) -> Result<Self, String> {
        Ok(match &t.kind {
            NotifyKind::Webhook {
                url,
                secret,
                token,
                timeout: own,
            } => Self::Webhook {
                url: url.clone(),
                secret: secret.clone(),
                token: token.clone(),
                http: Box::new(http_client(*own)),
                timeout: *own,
            },
            NotifyKind::Redis { stream, url } => Self::Stream {
                stream: stream.clone(),
                url: url
                    .clone()
                    .ok_or_else(|| format!("{}: no Redis URL", t.name))?,
                maxlen,
                conn: tokio::sync::OnceCell::new(),
                timeout,
            },
        })
    }

    /// The longest one try may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Self::Webhook { timeout, .. } | Self::Stream { timeout, .. } => *timeout,
        }
    }

    /// Sends one message; Err is the failure as the log line and the dead letter show it.
    pub async fn send(
        &self,
        delivery: &str,
        bucket: &str,
        name: &str,
        key: &str,
        body: &str,
    ) -> Result<(), String> {
        match self {
            Self::Webhook {
                url,
                secret,
                token,
                http,
                timeout,
            } => {
                let mut req = Request::post(url.as_str())
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .header(hyper::header::USER_AGENT, "mpgw-events")
                    .header(DELIVERY_HEADER, delivery);
                if let Some(secret) = secret {
                    req = req.header(SIGNATURE_HEADER, signature(secret, body.as_bytes()));
                }
                if let Some(token) = token {
                    req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
                }
                let req = req
                    .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
                    .map_err(|e| e.to_string())?;
                let exchange = async {
                    let resp = http.request(req).await.map_err(|e| chain(&e))?;
                    let status = resp.status();
                    // Read the answer so the connection can be reused (and show it on failure).
                    let answer = Limited::new(resp.into_body(), ANSWER_LIMIT)
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    Ok::<_, String>((status, answer))
                };
                let (status, answer) = tokio::time::timeout(*timeout, exchange)
                    .await
                    .map_err(|_| format!("no answer within {timeout:?}"))??;
                if status.is_success() {
                    Ok(())
                } else {
                    let text = String::from_utf8_lossy(&answer);
                    Err(format!("HTTP {}: {}", status.as_u16(), text.trim()))
                }
            }
            Self::Stream {
                stream,
                url,
                maxlen,
                conn,
                timeout,
            } => {
                let conn = conn
                    .get_or_try_init(|| async {
                        let client =
                            redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                        let cfg = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(*timeout))
                            .set_response_timeout(Some(*timeout))
                            .set_number_of_retries(1);
                        ConnectionManager::new_with_config(client, cfg)
                            .await
                            .map_err(|e| e.to_string())
                    })
                    .await?;
                let mut conn = conn.clone();
                let added: redis::RedisResult<String> = redis::cmd("XADD")
                    .arg(stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(*maxlen)
                    .arg("*")
                    .arg("event")
                    .arg(body)
                    .arg("delivery")
                    .arg(delivery)
                    .arg("bucket")
                    .arg(bucket)
                    .arg("name")
                    .arg(name)
                    .arg("key")
                    .arg(key)
                    .query_async(&mut conn)
                    .await;
                added.map(drop).map_err(|e| e.to_string())
            }
        }
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
