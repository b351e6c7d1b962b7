//! The state store over TLS: a private redis-server serving only TLS, with a certificate from a
//! CA made here by `openssl`. With `rediss://` and `--redis-ca-file` naming that CA a multipart
//! upload goes through and its state is in that server; without the CA (system roots) or over
//! plain `redis://` the gateway cannot connect. A server that asks for client certificates takes
//! the gateway with `--redis-cert-file`/`--redis-key-file` and refuses it without. A Redis
//! Cluster over TLS (client connections and
//! the cluster bus) passes the whole state-store conformance suite.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpgw::model::random_hex;
use mpgw::store::MetaStore;
use mpgw::store::meta_redis::{RedisMetaStore, RedisTls};

use crate::cluster::RedisCluster;

use crate::harness::*;

const B: &str = "tls";
const K: &str = "big/object";

/// A CA, and a server certificate it signed for 127.0.0.1 and localhost: `ca.pem`, `server.pem`,
/// `server.key` in `dir`.
pub(crate) fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=mpgw test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// redis-server with TLS only (no plain port), killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    /// With `auth_clients`, a client must present a certificate the CA signed.
    fn start(dir: &Path, auth_clients: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args([
                "--tls-cert-file",
                "server.pem",
                "--tls-key-file",
                "server.key",
            ])
            .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients"])
            .arg(if auth_clients { "yes" } else { "no" })
            .arg("--dir")
            .arg(dir)
            .current_dir(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start /usr/bin/redis-server");
        Self { child, port }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn trusting(ca: &[u8]) -> RedisTls {
    RedisTls {
        ca: Some(ca.to_vec()),
        client: None,
    }
}

/// The store over TLS with `tls`, once the server answers (at most 10 s).
async fn connect(url: &str, prefix: &str, tls: &RedisTls) -> RedisMetaStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match RedisMetaStore::connect(url, prefix, Some(tls)).await {
            Ok(store) => return store,
            Err(e) if Instant::now() > deadline => panic!("TLS redis-server not up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_store_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let redis = TlsRedis::start(dir.path(), false);
    let ca_file: PathBuf = dir.path().join("ca.pem");
    let ca = std::fs::read(&ca_file).unwrap();
    let prefix = format!("mpgw-tls-{:08x}", rand::random::<u32>());
    let direct = connect(&redis.url("rediss"), &prefix, &trusting(&ca)).await;

    let url = redis.url("rediss");
    let (gw_prefix, gw_ca) = (prefix.clone(), ca_file.clone());
    let gw = TestGateway::start_with(Store::Embedded, move |c| {
        c.redis_url = Some(url);
        c.redis_prefix = gw_prefix;
        c.redis_ca_file = Some(gw_ca);
        c.min_part_size = 1;
    })
    .await;
    let c = gw.bucket(B).await;
    let parts: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(200_000 + i)).collect();
    let id = create_upload(&c, B, K).await;
    let mut etags = Vec::new();
    for (n, p) in (1..).zip(&parts) {
        etags.push(upload_part(&c, B, K, &id, n, p).await);
    }
    let listed = all_parts(&c, B, K, &id).await;
    assert_eq!(listed.len(), 3);
    let named: Vec<(i32, &str)> = (1..).zip(etags.iter().map(String::as_str)).collect();
    complete(&c, B, K, &id, &named).await;
    let whole = parts.concat();
    assert_same_bytes(
        &get_bytes(&c, B, K).await,
        &whole,
        "object over a TLS state store",
    );

    // The state is in the TLS server: the bucket and the object's record.
    let buckets = direct.list_buckets().await.unwrap();
    assert!(buckets.iter().any(|b| b.name == B), "{buckets:?}");
    let object = direct
        .get_object(B, K)
        .await
        .unwrap()
        .expect("object record");
    assert_eq!(object.size, whole.len() as u64);

    // The system's roots do not know the test CA, and the TLS port speaks no plain Redis.
    let untrusted = RedisMetaStore::connect(&redis.url("rediss"), &prefix, None).await;
    assert!(untrusted.is_err(), "connected without trusting the CA");
    let plain = RedisMetaStore::connect(&redis.url("redis"), &prefix, None).await;
    assert!(
        plain.is_err(),
        "plain redis:// connected to a TLS-only port"
    );
    // A CA that did not sign the server's certificate is refused too.
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let wrong = std::fs::read(other.path().join("ca.pem")).unwrap();
    let refused =
        RedisMetaStore::connect(&redis.url("rediss"), &prefix, Some(&trusting(&wrong))).await;
    assert!(
        refused.is_err(),
        "connected with a CA that signed nothing here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let ca = std::fs::read(certs.path().join("ca.pem")).unwrap();
    let cluster = RedisCluster::start_with(Some(certs.path()));
    let seeds = cluster.seeds();
    assert!(seeds.starts_with("rediss://"), "{seeds}");
    crate::meta_conformance::all_cases(|| {
        let (seeds, ca) = (seeds.clone(), ca.clone());
        async move {
            let prefix = format!("mpgwtest:{}", random_hex(8));
            let store = RedisMetaStore::connect_cluster(&seeds, &prefix, Some(&trusting(&ca)))
                .await
                .unwrap_or_else(|e| panic!("connect to the TLS cluster at {seeds}: {e}"));
            Arc::new(store) as Arc<dyn MetaStore>
        }
    })
    .await;
    let untrusted = RedisMetaStore::connect_cluster(&seeds, "mpgwtest:untrusted", None).await;
    assert!(
        untrusted.is_err(),
        "connected to the cluster without trusting the CA"
    );
}

/// A server with `tls-auth-clients yes`: the gateway gets in with a certificate the CA signed
/// (the one made for the server carries clientAuth too) and not without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let redis = TlsRedis::start(dir.path(), true);
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let with_cert = RedisTls {
        ca: Some(ca.clone()),
        client: Some((
            std::fs::read(dir.path().join("server.pem")).unwrap(),
            std::fs::read(dir.path().join("server.key")).unwrap(),
        )),
    };
    let prefix = format!("mpgw-mtls-{:08x}", rand::random::<u32>());
    let direct = connect(&redis.url("rediss"), &prefix, &with_cert).await;
    let without =
        RedisMetaStore::connect(&redis.url("rediss"), &prefix, Some(&trusting(&ca))).await;
    assert!(without.is_err(), "connected without a client certificate");

    let url = redis.url("rediss");
    let (gw_prefix, certs) = (prefix.clone(), dir.path().to_owned());
    let gw = TestGateway::start_with(Store::Embedded, move |c| {
        c.redis_url = Some(url);
        c.redis_prefix = gw_prefix;
        c.redis_ca_file = Some(certs.join("ca.pem"));
        c.redis_cert_file = Some(certs.join("server.pem"));
        c.redis_key_file = Some(certs.join("server.key"));
    })
    .await;
    let c = gw.bucket(B).await;
    let data = random_bytes(100_000);
    put(&c, B, K, &data).await;
    assert_same_bytes(&get_bytes(&c, B, K).await, &data, "object over mutual TLS");
    let object = direct
        .get_object(B, K)
        .await
        .unwrap()
        .expect("object record");
    assert_eq!(object.size, data.len() as u64);
}
