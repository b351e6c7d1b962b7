//! Settings: clap flags, each with an `MPGW_*` environment fallback, optionally over a TOML
//! config file whose keys are the flag names. `Config::default()` is what tests start from.
//!
//! Precedence: flag > environment variable > config file > default. clap tells an explicit
//! value (flag or env) from a default through `ArgMatches::value_source`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use serde::Deserialize;

pub use crate::credentials::Credentials;
use crate::units::{MinRate, parse_duration, parse_size};

/// The example config file: every key with its default (`mpgw config example` prints it).
pub const EXAMPLE: &str = include_str!("mpgw.example.toml");

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting. In the config file the keys are the flag names (`data-dir`, `access-key`…);
/// unknown keys are refused.
#[derive(Args, Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Address to serve S3 on.
    #[arg(long, env = "MPGW_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Address for /health/live, /health/ready and /metrics. Unset: served on --listen, at those
    /// exact paths: liveness and a bare readiness to anyone, /metrics and the readiness reasons
    /// only with --metrics-token.
    #[arg(long, env = "MPGW_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Without --admin-listen: /metrics and the detailed /health/ready on --listen answer
    /// `Authorization: Bearer <token>`. Unset: not served there.
    #[arg(long, env = "MPGW_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Directory for part data, objects and (without Redis) the embedded state store.
    #[arg(long, env = "MPGW_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Free space the data dir must keep: writes that would go below are refused (507) and
    /// /health/ready answers 503.
    #[arg(long, env = "MPGW_MIN_FREE_SPACE", default_value = "256MiB", value_parser = parse_size)]
    #[serde(deserialize_with = "size")]
    pub min_free_space: u64,
    /// Redis URL for upload state (e.g. redis://127.0.0.1:6379/0). Unset: embedded store in the data dir.
    #[arg(long, env = "MPGW_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Key namespace in Redis, so several gateways or test runs can share one server.
    #[arg(long, env = "MPGW_REDIS_PREFIX", default_value = "mpgw")]
    pub redis_prefix: String,
    /// --redis-url names a Redis Cluster: one or more comma-separated seed nodes.
    #[arg(long, env = "MPGW_REDIS_CLUSTER", action = ArgAction::SetTrue)]
    pub redis_cluster: bool,
    /// PEM CA certificates that a `rediss://` (TLS) Redis must be signed by, instead of the
    /// system's roots.
    #[arg(long, env = "MPGW_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// PEM client certificate chain to present to a `rediss://` Redis that asks for one
    /// (with --redis-key-file).
    #[arg(long, env = "MPGW_REDIS_CERT_FILE", requires = "redis_key_file")]
    pub redis_cert_file: Option<PathBuf>,
    /// PEM private key for --redis-cert-file.
    #[arg(long, env = "MPGW_REDIS_KEY_FILE", requires = "redis_cert_file")]
    pub redis_key_file: Option<PathBuf>,
    /// Region reported to clients (any region in a request's signature scope is accepted).
    #[arg(long, env = "MPGW_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Access key id; repeat together with --secret-key for several pairs.
    #[arg(long = "access-key", env = "MPGW_ACCESS_KEY", value_delimiter = ',')]
    #[serde(rename = "access-key")]
    pub access_keys: Vec<String>,
    /// Secret key matching the --access-key at the same position.
    #[arg(
        long = "secret-key",
        env = "MPGW_SECRET_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(rename = "secret-key")]
    pub secret_keys: Vec<String>,
    /// File of credential pairs, one `ACCESS_KEY SECRET_KEY` (or `ACCESS_KEY:SECRET_KEY`) per line.
    #[arg(long, env = "MPGW_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// fsync part files and their directory before acknowledging a part.
    #[arg(long, env = "MPGW_FSYNC", default_value_t = true, action = ArgAction::Set)]
    pub fsync: bool,
    /// Minimum size of every part but the last at Complete (S3: 5MiB).
    #[arg(long, env = "MPGW_MIN_PART_SIZE", default_value = "5MiB", value_parser = parse_size)]
    #[serde(deserialize_with = "size")]
    pub min_part_size: u64,
    /// Maximum size of one part or one PutObject (S3: 5GiB).
    #[arg(long, env = "MPGW_MAX_PART_SIZE", default_value = "5GiB", value_parser = parse_size)]
    #[serde(deserialize_with = "size")]
    pub max_part_size: u64,
    /// Log format; verbosity comes from MPGW_LOG (e.g. `debug`, `info,mpgw::access=off`).
    #[arg(long, env = "MPGW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How long in-flight requests may run after SIGINT/SIGTERM, in seconds.
    #[arg(long, env = "MPGW_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Largest request head (request line and header fields). A bigger one is answered 400
    /// RequestHeaderSectionTooLarge; one over twice this is cut off by the HTTP layer (431).
    #[arg(long, env = "MPGW_MAX_HEADER_SIZE", default_value = "16KiB", value_parser = parse_size)]
    #[serde(deserialize_with = "size")]
    pub max_header_size: u64,
    /// Time a client has to send a whole request head (and a TLS handshake) once it started
    /// one or connected: slow-loris clients are disconnected (`0` = no limit).
    #[arg(long, env = "MPGW_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this long (`0` =
    /// never).
    #[arg(long, env = "MPGW_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// A request body that sends no data (or a response the client does not read) for this long
    /// fails: 400 RequestTimeout, nothing stored (`0` = no limit).
    #[arg(long, env = "MPGW_BODY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// Slowest data rate, in bytes per second, a request body or a response reader may keep up
    /// over `--body-rate-window`; a slower one is cut: 400 RequestTimeout, nothing stored (`0` =
    /// no minimum). Time the gateway itself is busy does not count.
    #[arg(long, env = "MPGW_MIN_BODY_RATE", default_value = "1KiB", value_parser = parse_size)]
    #[serde(deserialize_with = "size")]
    pub min_body_rate: u64,
    /// The span over which `--min-body-rate` is averaged.
    #[arg(long, env = "MPGW_BODY_RATE_WINDOW", default_value = "30s", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub body_rate_window: Duration,
    /// Threads that hash, write and read body bytes: each runs short jobs while bytes are
    /// there, never waiting for a client.
    #[arg(long, env = "MPGW_IO_THREADS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub io_threads: u32,
    /// Most client connections open at once; beyond it new ones wait in the listen backlog until
    /// one closes (`0` = no limit).
    #[arg(long, env = "MPGW_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Most concurrent requests (streams) on one HTTP/2 connection.
    #[arg(long, env = "MPGW_HTTP2_MAX_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_streams: u32,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, env = "MPGW_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "MPGW_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Base domain for virtual-host-style requests (`<bucket>.<domain>`); path style always works.
    #[arg(long, env = "MPGW_DOMAIN")]
    pub domain: Option<String>,
    /// Origins allowed by the server-wide CORS rule (comma-separated, `*` for any); buckets with
    /// their own CORS configuration use that instead. Empty: no server-wide rule.
    #[arg(long, env = "MPGW_CORS_ALLOW_ORIGINS", value_delimiter = ',')]
    pub cors_allow_origins: Vec<String>,
    /// Bucket that holds the files of the legacy `/file/*` API, as `<username>/<filename>`.
    #[arg(long, env = "MPGW_LEGACY_BUCKET", default_value = "files")]
    pub legacy_bucket: String,
    /// Where tus 1.0 is served on the S3 listener: a path whose first segment can never be a
    /// bucket name (the default starts with `_`).
    #[arg(long, env = "MPGW_TUS_PATH", default_value = "/_tus/")]
    pub tus_path: String,
    /// Users of the legacy API, one `USERNAME TOKEN` per line. Unset: each S3 access key is a
    /// user whose token is its secret key.
    #[arg(long, env = "MPGW_LEGACY_USERS")]
    pub legacy_users: Option<PathBuf>,
    /// Chunk size the legacy API's init hands out (at least --min-part-size).
    #[arg(long, env = "MPGW_LEGACY_CHUNK_SIZE", default_value = "5MiB", value_parser = parse_size)]
    #[serde(deserialize_with = "size")]
    pub legacy_chunk_size: u64,
    /// Age at which an open multipart upload counts as abandoned and is aborted (`7d`, `12h`,
    /// `30m`, `0` = never). Bucket lifecycle rules (AbortIncompleteMultipartUpload) override it.
    #[arg(long, env = "MPGW_UPLOAD_EXPIRY", default_value = "7d", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub upload_expiry: Duration,
    /// Most open multipart uploads one access key (or legacy user) may have at a time; further
    /// CreateMultipartUpload calls are refused until one completes or is aborted. 0 = no limit.
    #[arg(long, env = "MPGW_MAX_UPLOADS_PER_KEY", default_value_t = 10_000)]
    pub max_uploads_per_key: u64,
    /// A webhook event target `NAME=URL` (repeatable): completion events of buckets whose
    /// notification rules name `arn:mpgw:sqs:<region>:NAME:webhook` are POSTed there as JSON.
    #[arg(long, env = "MPGW_NOTIFY_WEBHOOK", value_delimiter = ',')]
    pub notify_webhook: Vec<String>,
    /// `NAME=SECRET`: sign the webhook NAME's bodies with HMAC-SHA256 (`X-Mpgw-Signature:
    /// sha256=<hex>`).
    #[arg(
        long,
        env = "MPGW_NOTIFY_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub notify_webhook_secret: Vec<String>,
    /// `NAME=TOKEN`: send `Authorization: Bearer TOKEN` to the webhook NAME.
    #[arg(
        long,
        env = "MPGW_NOTIFY_WEBHOOK_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub notify_webhook_token: Vec<String>,
    /// How long a webhook may take to answer one event before the try counts as failed.
    #[arg(long, env = "MPGW_NOTIFY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub notify_timeout: Duration,
    /// `NAME=DURATION`: --notify-timeout for the webhook NAME alone.
    #[arg(long, env = "MPGW_NOTIFY_WEBHOOK_TIMEOUT", value_delimiter = ',')]
    pub notify_webhook_timeout: Vec<String>,
    /// A Redis Stream event target `NAME=STREAM_KEY` (repeatable), ARN
    /// `arn:mpgw:sqs:<region>:NAME:redis`: events are XADDed there.
    #[arg(long, env = "MPGW_NOTIFY_REDIS", value_delimiter = ',')]
    pub notify_redis: Vec<String>,
    /// `NAME=redis://…`: the Redis of stream target NAME. Unset: the gateway's own --redis-url
    /// (required with the embedded store).
    #[arg(
        long,
        env = "MPGW_NOTIFY_REDIS_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub notify_redis_url: Vec<String>,
    /// Approximate most entries a stream target keeps (`XADD MAXLEN ~`).
    #[arg(long, env = "MPGW_NOTIFY_REDIS_MAXLEN", default_value_t = 100_000)]
    pub notify_redis_maxlen: u64,
    /// Tries of an event before it is dead-lettered (see `mpgw admin events`).
    #[arg(long, env = "MPGW_NOTIFY_MAX_TRIES", default_value_t = 20)]
    pub notify_max_tries: u32,
    /// Age after which a failing event is dead-lettered.
    #[arg(long, env = "MPGW_NOTIFY_MAX_AGE", default_value = "24h", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub notify_max_age: Duration,
    /// Delay before an event's second try; it doubles with every failure up to
    /// --notify-backoff-max.
    #[arg(long, env = "MPGW_NOTIFY_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub notify_backoff: Duration,
    #[arg(long, env = "MPGW_NOTIFY_BACKOFF_MAX", default_value = "5m", value_parser = parse_duration)]
    #[serde(deserialize_with = "duration")]
    pub notify_backoff_max: Duration,
    /// Most undelivered events per bucket and target; a write that would add one more is
    /// refused (503) until some are delivered. Readiness warns at 80 %.
    #[arg(long, env = "MPGW_NOTIFY_QUEUE_LIMIT", default_value_t = 100_000)]
    pub notify_queue_limit: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9000".parse().expect("static address"),
            admin_listen: None,
            metrics_token: None,
            data_dir: PathBuf::from("./data"),
            min_free_space: 256 << 20,
            redis_url: None,
            redis_prefix: "mpgw".into(),
            redis_cluster: false,
            redis_ca_file: None,
            redis_cert_file: None,
            redis_key_file: None,
            region: "us-east-1".into(),
            access_keys: Vec::new(),
            secret_keys: Vec::new(),
            credentials_file: None,
            fsync: true,
            min_part_size: 5 << 20,
            max_part_size: 5 << 30,
            log_format: LogFormat::Text,
            shutdown_timeout: 30,
            max_header_size: 16 << 10,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            min_body_rate: 1024,
            body_rate_window: Duration::from_secs(30),
            io_threads: 32,
            max_connections: 4096,
            http2_max_streams: 128,
            tls_cert: None,
            tls_key: None,
            domain: None,
            cors_allow_origins: Vec::new(),
            legacy_bucket: "files".into(),
            tus_path: "/_tus/".into(),
            legacy_users: None,
            legacy_chunk_size: 5 << 20,
            upload_expiry: Duration::from_secs(7 * 24 * 3600),
            max_uploads_per_key: 10_000,
            notify_webhook: Vec::new(),
            notify_webhook_secret: Vec::new(),
            notify_webhook_token: Vec::new(),
            notify_timeout: Duration::from_secs(5),
            notify_webhook_timeout: Vec::new(),
            notify_redis: Vec::new(),
            notify_redis_url: Vec::new(),
            notify_redis_maxlen: 100_000,
            notify_max_tries: 20,
            notify_max_age: Duration::from_secs(24 * 3600),
            notify_backoff: Duration::from_secs(1),
            notify_backoff_max: Duration::from_secs(300),
            notify_queue_limit: 100_000,
        }
    }
}

/// A configured event target (`--notify-webhook`, `--notify-redis`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyTarget {
    pub name: String,
    pub kind: NotifyKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyKind {
    Webhook {
        url: String,
        secret: Option<String>,
        token: Option<String>,
        /// How long one try may take.
        timeout: Duration,
    },
    Redis {
        stream: String,
        url: Option<String>,
    },
}

impl NotifyKind {
    /// The ARN's last field.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Redis { .. } => "redis",
        }
    }
}

/// A size in the config file: a number of bytes or a string with a unit (`"8MiB"`).
fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a size such as 8MiB or 4096"))?
    {
        Size::Bytes(n) => Ok(n),
        Size::Text(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

/// A duration in the config file: a number of seconds or a string with a unit (`"7d"`).
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Dur {
        Secs(u64),
        Text(String),
    }
    match Dur::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a duration such as 7d, 12h or 30m"))?
    {
        Dur::Secs(n) => Ok(Duration::from_secs(n)),
        Dur::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

impl Config {
    /// Reads a config file. Unknown keys and bad values are refused with the key's name.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let cfg = Self::read_file(path)?;
        cfg.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Reads a config file without the cross-setting rules, which apply once flags are merged in.
    pub(crate) fn read_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses config file text; unset keys keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            // toml points at the offending value or key; name the key in the message itself.
            let line = e
                .span()
                .map_or(0, |s| text[..s.start].matches('\n').count());
            let key = text
                .lines()
                .nth(line)
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim());
            match key {
                Some(key) if !e.message().contains(&format!("`{key}`")) => {
                    format!("line {}: key `{key}`: {}", line + 1, e.message())
                }
                _ => format!("line {}: {}", line + 1, e.message()),
            }
        })
    }

    /// Rules that involve several settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.access_keys.len() != self.secret_keys.len() {
            return Err("access-key and secret-key must be given the same number of times".into());
        }
        if self.min_part_size > self.max_part_size {
            return Err("min-part-size must not exceed max-part-size".into());
        }
        if self.redis_cluster && self.redis_url.is_none() {
            return Err("redis-cluster needs redis-url (the cluster's seed nodes)".into());
        }
        if self.redis_cert_file.is_some() != self.redis_key_file.is_some() {
            return Err("redis-cert-file and redis-key-file must be given together".into());
        }
        if (self.redis_ca_file.is_some() || self.redis_cert_file.is_some())
            && !self.redis_url.as_deref().is_some_and(|u| {
                u.split(',')
                    .all(|node| node.trim().starts_with("rediss://"))
            })
        {
            return Err(
                "redis-ca-file and redis-cert-file need a rediss:// (TLS) redis-url".into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls-cert and tls-key must be given together".into());
        }
        if !crate::model::valid_bucket_name(&self.legacy_bucket) {
            return Err(format!(
                "legacy-bucket: {:?} is not a valid bucket name",
                self.legacy_bucket
            ));
        }
        let tus = self.tus_path.trim_matches('/');
        if !self.tus_path.starts_with('/')
            || tus.is_empty()
            || tus.contains(['?', '#', '%'])
            || crate::model::valid_bucket_name(tus.split('/').next().unwrap_or_default())
            || ["file", "ui", "health", "metrics"]
                .contains(&tus.split('/').next().unwrap_or_default())
        {
            return Err(format!(
                "tus-path: {:?} must be an absolute path whose first segment is not a bucket name (e.g. /_tus/)",
                self.tus_path
            ));
        }
        if self.legacy_chunk_size < self.min_part_size
            || self.legacy_chunk_size > self.max_part_size
        {
            return Err(
                "legacy-chunk-size must lie between min-part-size and max-part-size".into(),
            );
        }
        if !(1 << 10..=1 << 20).contains(&self.max_header_size) {
            return Err("max-header-size must lie between 1KiB and 1MiB".into());
        }
        if self.http2_max_streams == 0 {
            return Err("http2-max-streams must be at least 1".into());
        }
        if self.admin_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err("admin-listen must differ from listen".into());
        }
        if self
            .metrics_token
            .as_deref()
            .is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err("metrics-token must be non-empty visible ASCII (no spaces)".into());
        }
        self.notify_targets()?;
        Ok(())
    }

    /// The event targets the `notify-*` settings name, checked: names unique among all
    /// targets (letters, digits, `-`, `_`), URLs well formed, every secret, token and Redis URL
    /// naming a target of its kind, a stream target on the embedded store given its URL.
    pub fn notify_targets(&self) -> Result<Vec<NotifyTarget>, String> {
        let mut out: Vec<NotifyTarget> = Vec::new();
        let pairs = |flag: &str, list: &[String]| -> Result<Vec<(String, String)>, String> {
            list.iter()
                .map(|item| {
                    let (name, value) = item
                        .split_once('=')
                        .ok_or_else(|| format!("{flag}: {item:?} is not NAME=VALUE"))?;
                    if name.is_empty()
                        || name.len() > 64
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        return Err(format!(
                            "{flag}: target name {name:?} must be 1-64 letters, digits, '-' or '_'"
                        ));
                    }
                    Ok((name.to_owned(), value.to_owned()))
                })
                .collect()
        };
        for (name, url) in pairs("notify-webhook", &self.notify_webhook)? {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("notify-webhook: {name}: {url:?}: {e}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(format!(
                    "notify-webhook: {name}: {url:?} must be an http:// or https:// URL"
                ));
            }
            out.push(NotifyTarget {
                name,
                kind: NotifyKind::Webhook {
                    url,
                    secret: None,
                    token: None,
                    timeout: self.notify_timeout,
                },
            });
        }
        for (name, stream) in pairs("notify-redis", &self.notify_redis)? {
            if stream.is_empty() {
                return Err(format!("notify-redis: {name}: the stream key is empty"));
            }
            out.push(NotifyTarget {
                name,
                kind: NotifyKind::Redis {
                    stream,
                    url: self.redis_url.clone(),
                },
            });
        }
        for (i, t) in out.iter().enumerate() {
            if out[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("event target {:?} is defined twice", t.name));
            }
        }
        let find = |out: &mut Vec<NotifyTarget>, flag: &str, name: &str| {
            out.iter_mut()
                .position(|t| t.name == name)
                .ok_or_else(|| format!("{flag}: no event target named {name:?}"))
        };
        for (flag, list) in [
            ("notify-webhook-secret", &self.notify_webhook_secret),
            ("notify-webhook-token", &self.notify_webhook_token),
            ("notify-webhook-timeout", &self.notify_webhook_timeout),
            ("notify-redis-url", &self.notify_redis_url),
        ] {
            for (name, value) in pairs(flag, list)? {
                let i = find(&mut out, flag, &name)?;
                match (&mut out[i].kind, flag) {
                    (NotifyKind::Webhook { secret, .. }, "notify-webhook-secret") => {
                        *secret = Some(value);
                    }
                    (NotifyKind::Webhook { token, .. }, "notify-webhook-token") => {
                        *token = Some(value);
                    }
                    (NotifyKind::Webhook { timeout, .. }, "notify-webhook-timeout") => {
                        *timeout = parse_duration(&value)
                            .ok()
                            .filter(|t| !t.is_zero())
                            .ok_or_else(|| {
                                format!("{flag}: {name}: {value:?} is not a duration above zero")
                            })?;
                    }
                    (NotifyKind::Redis { url, .. }, "notify-redis-url") => {
                        if !value.starts_with("redis://") && !value.starts_with("rediss://") {
                            return Err(format!("{flag}: {name}: {value:?} is not a redis:// URL"));
                        }
                        *url = Some(value);
                    }
                    _ => return Err(format!("{flag}: {name:?} is not a target of that kind")),
                }
            }
        }
        for t in &out {
            if let NotifyKind::Redis { url, .. } = &t.kind {
                match url {
                    None => {
                        return Err(format!(
                            "notify-redis: {}: needs notify-redis-url {}=redis://… (the state store is not Redis)",
                            t.name, t.name
                        ));
                    }
                    Some(u) if self.redis_cluster && Some(u) == self.redis_url.as_ref() => {
                        return Err(format!(
                            "notify-redis: {}: needs notify-redis-url (a stream on the Redis Cluster of the state store is not supported)",
                            t.name
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        if self.notify_max_tries == 0 {
            return Err("notify-max-tries must be at least 1".into());
        }
        if self.notify_queue_limit == 0 {
            return Err("notify-queue-limit must be at least 1".into());
        }
        if self.notify_timeout.is_zero() || self.notify_backoff.is_zero() {
            return Err("notify-timeout and notify-backoff must be above zero".into());
        }
        Ok(out)
    }

    /// The ARN of event target `name` of `kind` (`webhook`, `redis`) on this server.
    pub fn notify_arn(&self, t: &NotifyTarget) -> String {
        format!(
            "arn:mpgw:sqs:{}:{}:{}",
            self.region,
            t.name,
            t.kind.as_str()
        )
    }

    /// `self` (from flags and environment) over `file`: each setting given explicitly wins.
    pub(crate) fn over(self, file: Config, explicit: impl Fn(&str) -> bool) -> Config {
        macro_rules! merge {
            ($($field:ident),* $(,)?) => {{
                // Destructured without `..`: a new setting not listed here does not compile.
                let Config { $($field),* } = self;
                Config { $($field: if explicit(stringify!($field)) { $field } else { file.$field }),* }
            }};
        }
        merge!(
            listen,
            admin_listen,
            metrics_token,
            data_dir,
            min_free_space,
            redis_url,
            redis_prefix,
            redis_cluster,
            redis_ca_file,
            redis_cert_file,
            redis_key_file,
            region,
            access_keys,
            secret_keys,
            credentials_file,
            fsync,
            min_part_size,
            max_part_size,
            log_format,
            shutdown_timeout,
            max_header_size,
            header_timeout,
            idle_timeout,
            body_timeout,
            min_body_rate,
            body_rate_window,
            io_threads,
            max_connections,
            http2_max_streams,
            tls_cert,
            tls_key,
            domain,
            cors_allow_origins,
            legacy_bucket,
            tus_path,
            legacy_users,
            legacy_chunk_size,
            upload_expiry,
            max_uploads_per_key,
            notify_webhook,
            notify_webhook_secret,
            notify_webhook_token,
            notify_timeout,
            notify_webhook_timeout,
            notify_redis,
            notify_redis_url,
            notify_redis_maxlen,
            notify_max_tries,
            notify_max_age,
            notify_backoff,
            notify_backoff_max,
            notify_queue_limit,
        )
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }

    /// Loads the credential pairs from flags and the credentials file. With none configured,
    /// generates a pair on first start and keeps it in `data_dir/credentials` (never anonymous).
    /// Returns the credentials and whether they were just generated.
    pub fn load_credentials(&self) -> Result<(Credentials, bool), String> {
        if self.access_keys.len() != self.secret_keys.len() {
            return Err(
                "--access-key and --secret-key must be given the same number of times".into(),
            );
        }
        let mut creds = Credentials::default();
        for (a, s) in self.access_keys.iter().zip(&self.secret_keys) {
            creds.insert(a, s)?;
        }
        if let Some(path) = &self.credentials_file {
            creds.read_file(path)?;
        }
        if !creds.is_empty() {
            return Ok((creds, false));
        }
        let path = self.data_dir.join("credentials");
        if path.exists() {
            creds.read_file(&path)?;
            if !creds.is_empty() {
                return Ok((creds, false));
            }
        }
        let access = format!("MPGW{}", crate::model::random_hex(8).to_uppercase());
        let secret = crate::model::random_hex(20);
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| format!("{}: {e}", self.data_dir.display()))?;
        match write_private(&path, format!("{access} {secret}\n").as_bytes()) {
            Ok(()) => {}
            // Another gateway sharing the data dir got there first: use its pair.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Self::read_generated(&path).map(|c| (c, false));
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        creds.insert(&access, &secret)?;
        Ok((creds, true))
    }

    /// Reads a credentials file another process is writing right now (for up to 5 s).
    fn read_generated(path: &Path) -> Result<Credentials, String> {
        let mut last = String::new();
        for _ in 0..50 {
            let mut creds = Credentials::default();
            match creds.read_file(path) {
                Ok(()) if !creds.is_empty() => return Ok(creds),
                Ok(()) => {}
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(if last.is_empty() {
            format!("{}: still empty after 5 s", path.display())
        } else {
            last
        })
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_file() {
        assert_eq!(
            Config::from_toml("upload-expiry = \"12h\"\n")
                .unwrap()
                .upload_expiry,
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            Config::from_toml("upload-expiry = 0\n")
                .unwrap()
                .upload_expiry,
            Duration::ZERO
        );
        let e = Config::from_toml("upload-expiry = \"soon\"\n").unwrap_err();
        assert!(e.contains("`upload-expiry`"), "{e}");
    }

    #[test]
    fn example_file_is_the_defaults_with_every_key() {
        assert_eq!(Config::from_toml(EXAMPLE).unwrap(), Config::default());
        let cmd = Config::augment_args(clap::Command::new("t"));
        for long in cmd.get_arguments().filter_map(clap::Arg::get_long) {
            let listed = EXAMPLE.lines().any(|l| {
                l.trim_start_matches("# ")
                    .starts_with(&format!("{long} = "))
            });
            assert!(listed, "{long} is missing from the example config");
        }
    }

    #[test]
    fn file_errors_name_the_key() {
        let e = Config::from_toml("listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap_err();
        assert!(e.contains("`bogus`") && e.contains("line 2"), "{e}");
        let e = Config::from_toml("min-part-size = \"5 parsecs\"\n").unwrap_err();
        assert!(e.contains("`min-part-size`"), "{e}");
        let e = Config::from_toml("fsync = \"yes\"\n").unwrap_err();
        assert!(e.contains("`fsync`"), "{e}");
        let e = Config::from_toml("log-format = \"xml\"\n").unwrap_err();
        assert!(e.contains("`log-format`"), "{e}");
    }

    #[test]
    fn tus_path_is_never_a_bucket() {
        for ok in ["/_tus/", "/_up/tus", "/-/tus/"] {
            let cfg = Config {
                tus_path: ok.into(),
                ..Config::default()
            };
            assert_eq!(cfg.validate(), Ok(()), "{ok}");
        }
        for bad in ["/tus/", "_tus/", "/", "/file/", "/ui/x", "/_t%75s/"] {
            let cfg = Config {
                tus_path: bad.into(),
                ..Config::default()
            };
            assert!(cfg.validate().unwrap_err().contains("tus-path"), "{bad}");
        }
    }

    #[test]
    fn event_targets_are_checked() {
        let base = || Config {
            notify_webhook: vec!["hook=http://127.0.0.1:8000/h".into()],
            notify_redis: vec!["feed=mpgw:events".into()],
            notify_redis_url: vec!["feed=redis://127.0.0.1:6379".into()],
            notify_webhook_timeout: vec!["hook=250ms".into()],
            ..Config::default()
        };
        let targets = base().notify_targets().unwrap();
        assert_eq!(
            targets
                .iter()
                .map(|t| base().notify_arn(t))
                .collect::<Vec<_>>(),
            [
                "arn:mpgw:sqs:us-east-1:hook:webhook",
                "arn:mpgw:sqs:us-east-1:feed:redis"
            ]
        );
        assert!(matches!(
            &targets[0].kind,
            NotifyKind::Webhook { timeout, .. } if *timeout == Duration::from_millis(250)
        ));
        let refused = |tweak: &dyn Fn(&mut Config), want: &str| {
            let mut cfg = base();
            tweak(&mut cfg);
            let e = cfg.validate().unwrap_err();
            assert!(e.contains(want), "{e}");
        };
        refused(
            &|c| c.notify_webhook.push("hook=http://x/".into()),
            "defined twice",
        );
        refused(&|c| c.notify_redis.push("hook=s".into()), "defined twice");
        refused(
            &|c| c.notify_webhook = vec!["bad name=http://x/".into()],
            "target name",
        );
        refused(
            &|c| c.notify_webhook = vec!["hook=ftp://x/".into()],
            "http:// or https://",
        );
        refused(&|c| c.notify_webhook = vec!["hook".into()], "NAME=VALUE");
        refused(
            &|c| c.notify_webhook_secret = vec!["nope=s".into()],
            "no event target",
        );
        refused(
            &|c| c.notify_webhook_token = vec!["feed=t".into()],
            "not a target of that kind",
        );
        refused(
            &|c| c.notify_webhook_timeout = vec!["hook=0".into()],
            "above zero",
        );
        refused(&|c| c.notify_redis_url.clear(), "needs notify-redis-url");
        refused(
            &|c| c.notify_redis_url = vec!["feed=http://x".into()],
            "not a redis:// URL",
        );
    }

    #[test]
    fn redis_cluster_needs_a_url() {
        let cfg = Config {
            redis_cluster: true,
            ..Config::default()
        };
        assert!(cfg.validate().unwrap_err().contains("redis-url"));
        let cfg = Config {
            redis_url: Some("redis://127.0.0.1:7000".into()),
            ..cfg
        };
        assert_eq!(cfg.validate(), Ok(()));
    }

    /// A CA file only means something for TLS: every node of the URL must be `rediss://`.
    #[test]
    fn redis_ca_file_needs_tls_urls() {
        let with = |url: Option<&str>| Config {
            redis_url: url.map(str::to_owned),
            redis_ca_file: Some("/etc/ca.pem".into()),
            ..Config::default()
        };
        for bad in [
            None,
            Some("redis://127.0.0.1:6379"),
            Some("rediss://10.0.0.1:7000,redis://10.0.0.2:7000"),
        ] {
            assert!(
                with(bad).validate().unwrap_err().contains("rediss://"),
                "{bad:?}"
            );
        }
        assert_eq!(with(Some("rediss://127.0.0.1:6380")).validate(), Ok(()));
        let client_cert = |url: &str, key: Option<&str>| Config {
            redis_url: Some(url.into()),
            redis_cert_file: Some("/etc/client.pem".into()),
            redis_key_file: key.map(Into::into),
            ..Config::default()
        };
        assert!(
            client_cert("rediss://h:1", None)
                .validate()
                .unwrap_err()
                .contains("together")
        );
        assert!(
            client_cert("redis://h:1", Some("/k"))
                .validate()
                .unwrap_err()
                .contains("rediss://")
        );
        assert_eq!(client_cert("rediss://h:1", Some("/k")).validate(), Ok(()));
        assert_eq!(
            with(Some("rediss://10.0.0.1:7000, rediss://10.0.0.2:7000")).validate(),
            Ok(())
        );
    }

    #[test]
    fn generates_and_keeps_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let (c1, g1) = cfg.load_credentials().unwrap();
        let (c2, g2) = cfg.load_credentials().unwrap();
        assert!(g1 && !g2);
        let a: Vec<_> = c1.access_keys().collect();
        assert_eq!(a, c2.access_keys().collect::<Vec<_>>());
    }
}

/// What a listener allows a client (README "Operating": limits). `None` = no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Largest request head; a bigger one is answered by `http` (RequestHeaderSectionTooLarge).
    pub max_header_size: usize,
    /// From accept, or from the first byte of a request head, to the whole head (TLS handshake
    /// included).
    pub header_timeout: Option<Duration>,
    /// With no request in progress and no new one started.
    pub idle_timeout: Option<Duration>,
    /// Longest stall of a request body (in `http`) or of a response write.
    pub body_timeout: Option<Duration>,
    /// Slowest request body or response reader (`--min-body-rate` over `--body-rate-window`).
    pub min_rate: Option<MinRate>,
    pub max_connections: Option<usize>,
    pub http2_max_streams: u32,
}

impl ConnLimits {
    pub fn from_config(cfg: &Config) -> Self {
        let opt = |d: Duration| (!d.is_zero()).then_some(d);
        Self {
            max_header_size: usize::try_from(cfg.max_header_size).unwrap_or(usize::MAX),
            header_timeout: opt(cfg.header_timeout),
            idle_timeout: opt(cfg.idle_timeout),
            body_timeout: opt(cfg.body_timeout),
            min_rate: (cfg.min_body_rate > 0 && !cfg.body_rate_window.is_zero()).then_some(
                MinRate {
                    bytes_per_sec: cfg.min_body_rate,
                    window: cfg.body_rate_window,
                },
            ),
            max_connections: (cfg.max_connections > 0).then_some(cfg.max_connections),
            http2_max_streams: cfg.http2_max_streams,
        }
    }
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}
