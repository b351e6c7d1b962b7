//! Connecting: one server or a cluster, TLS, timeouts and retries, and walking the cluster's
//! masters for keyspace scans.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use super::codec::corrupt;
use crate::store::{StoreError, StoreResult};

/// Timeouts and retries shared by both connection kinds: a request waiting on a dead Redis should
/// fail (503) in seconds, not queue behind the default backoff; the connection keeps reconnecting
/// in the background.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const RETRIES: u32 = 2;
pub(super) const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);
pub(super) const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// One Redis server, or a Redis Cluster; both reconnect by themselves.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The redis crate builds its TLS client from rustls's process-wide provider, which rustls can
/// only pick by itself when exactly one is compiled in (the AWS SDK in the tests brings a
/// second). Installing ours is idempotent: a provider already installed stays.
pub(super) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a `rediss://` connection presents and trusts beyond the defaults (the system's roots, no
/// client certificate). PEM bytes throughout.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// CA certificates the server's certificate must be signed by, instead of the system's.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and its key, for servers that ask for one (`tls-auth-clients`).
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisTls {
    /// The redis crate's form; `None` when nothing differs from the defaults.
    pub(super) fn certificates(&self) -> Option<redis::TlsCertificates> {
        (self.ca.is_some() || self.client.is_some()).then(|| redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca.clone(),
        })
    }
}

/// Connection trouble and transient server states are "retry later"; anything else the server
/// rejected is a real fault.
pub(super) fn redis_error(e: RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    if transient {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// Routes a command to the master serving `slot`.
pub(super) fn at_master(slot: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )))
}

/// The cluster's masters (address → the slot ranges it serves, from `CLUSTER SLOTS`), after
/// checking on each that none of its slots is migrating or importing (which `CLUSTER NODES`
/// shows only on the nodes involved, as `[slot->-id]` / `[slot-<-id]`).
pub(super) async fn masters(
    con: &ClusterConnection,
) -> StoreResult<BTreeMap<String, Vec<(u16, u16)>>> {
    let any = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
    let reply = con
        .clone()
        .route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), any)
        .await
        .map_err(redis_error)?;
    let mut masters = parse_cluster_slots(reply)?;
    for (addr, ranges) in &mut masters {
        ranges.sort_unstable();
        let nodes = con
            .clone()
            .route_command(
                redis::cmd("CLUSTER").arg("NODES").clone(),
                at_master(ranges[0].0),
            )
            .await
            .map_err(redis_error)?;
        let nodes: String = redis::from_redis_value(nodes).map_err(|e| corrupt(e.to_string()))?;
        let migrating = nodes
            .lines()
            .filter(|l| l.contains("myself"))
            .any(|l| l.contains('['));
        if migrating {
            return Err(StoreError::Unavailable(format!(
                "redis cluster: slots of {addr} are migrating; try again"
            )));
        }
    }
    Ok(masters)
}

/// `CLUSTER SLOTS` → master `host:port` → slot ranges. Each entry is
/// `[start, end, [host, port, id, …], replicas…]`.
pub(super) fn parse_cluster_slots(reply: Value) -> StoreResult<BTreeMap<String, Vec<(u16, u16)>>> {
    let bad = || corrupt("unexpected CLUSTER SLOTS reply");
    let Value::Array(entries) = reply else {
        return Err(bad());
    };
    let mut out: BTreeMap<String, Vec<(u16, u16)>> = BTreeMap::new();
    for entry in entries {
        let Value::Array(entry) = entry else {
            return Err(bad());
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (entry.first(), entry.get(1), entry.get(2))
        else {
            return Err(bad());
        };
        let (Some(Value::BulkString(host)), Some(Value::Int(port))) =
            (master.first(), master.get(1))
        else {
            return Err(bad());
        };
        let range = (
            u16::try_from(*start).map_err(|_| bad())?,
            u16::try_from(*end).map_err(|_| bad())?,
        );
        out.entry(format!("{}:{port}", String::from_utf8_lossy(host)))
            .or_default()
            .push(range);
    }
    if out.is_empty() {
        return Err(StoreError::Unavailable(
            "redis cluster: no slots assigned".into(),
        ));
    }
    Ok(out)
}
