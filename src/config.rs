//! Settings: clap flags, each with an `MPGW_*` environment fallback. `Config::default()` is what
//! tests start from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "mpgw", version, about = "S3-compatible multipart upload gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve(Box<Config>),
}

#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "MPGW_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Directory for part data, objects and (without Redis) the embedded state store.
    #[arg(long, env = "MPGW_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Redis URL for upload state (e.g. redis://127.0.0.1:6379/0). Unset: embedded store in the data dir.
    #[arg(long, env = "MPGW_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Key namespace in Redis, so several gateways or test runs can share one server.
    #[arg(long, env = "MPGW_REDIS_PREFIX", default_value = "mpgw")]
    pub redis_prefix: String,
    /// Region reported to clients (any region in a request's signature scope is accepted).
    #[arg(long, env = "MPGW_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Access key id; repeat together with --secret-key for several pairs.
    #[arg(long = "access-key", env = "MPGW_ACCESS_KEY", value_delimiter = ',')]
    pub access_keys: Vec<String>,
    /// Secret key matching the --access-key at the same position.
    #[arg(long = "secret-key", env = "MPGW_SECRET_KEY", value_delimiter = ',', hide_env_values = true)]
    pub secret_keys: Vec<String>,
    /// File of credential pairs, one `ACCESS_KEY SECRET_KEY` (or `ACCESS_KEY:SECRET_KEY`) per line.
    #[arg(long, env = "MPGW_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// fsync part files and their directory before acknowledging a part.
    #[arg(long, env = "MPGW_FSYNC", default_value_t = true, action = ArgAction::Set)]
    pub fsync: bool,
    /// Minimum size of every part but the last at Complete (S3: 5MiB).
    #[arg(long, env = "MPGW_MIN_PART_SIZE", default_value = "5MiB", value_parser = parse_size)]
    pub min_part_size: u64,
    /// Maximum size of one part or one PutObject (S3: 5GiB).
    #[arg(long, env = "MPGW_MAX_PART_SIZE", default_value = "5GiB", value_parser = parse_size)]
    pub max_part_size: u64,
    /// Log format: `text` or `json`.
    #[arg(long, env = "MPGW_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// How long in-flight requests may run after SIGINT/SIGTERM, in seconds.
    #[arg(long, env = "MPGW_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9000".parse().expect("static address"),
            data_dir: PathBuf::from("./data"),
            redis_url: None,
            redis_prefix: "mpgw".into(),
            region: "us-east-1".into(),
            access_keys: Vec::new(),
            secret_keys: Vec::new(),
            credentials_file: None,
            fsync: true,
            min_part_size: 5 << 20,
            max_part_size: 5 << 30,
            log_format: "text".into(),
            shutdown_timeout: 30,
        }
    }
}

impl Config {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }

    /// Loads the credential pairs from flags and the credentials file. With none configured,
    /// generates a pair on first start and keeps it in `data_dir/credentials` (never anonymous).
    /// Returns the credentials and whether they were just generated.
    pub fn load_credentials(&self) -> Result<(Credentials, bool), String> {
        if self.access_keys.len() != self.secret_keys.len() {
            return Err("--access-key and --secret-key must be given the same number of times".into());
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
        let access = format!("MPGW{}", crate::upload::model::random_hex(8).to_uppercase());
        let secret = crate::upload::model::random_hex(20);
        std::fs::create_dir_all(&self.data_dir).map_err(|e| format!("{}: {e}", self.data_dir.display()))?;
        write_private(&path, format!("{access} {secret}\n").as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        creds.insert(&access, &secret)?;
        Ok((creds, true))
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Access key id → secret key.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, String>);

impl std::fmt::Debug for Credentials {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    pub fn insert(&mut self, access: &str, secret: &str) -> Result<(), String> {
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !ok(access) || secret.is_empty() {
            return Err(format!("invalid credential pair for access key {access:?}"));
        }
        self.0.insert(access.to_owned(), secret.to_owned());
        Ok(())
    }

    pub fn secret(&self, access: &str) -> Option<&str> {
        self.0.get(access).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn access_keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    fn read_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (a, s) = line
                .split_once(|c: char| c == ':' || c.is_whitespace())
                .ok_or_else(|| format!("{}:{}: expected `ACCESS_KEY SECRET_KEY`", path.display(), i + 1))?;
            self.insert(a.trim(), s.trim())?;
        }
        Ok(())
    }
}

/// Parses a size such as `8MiB`, `5MB`, `1g`, `4096` (binary units for `k/m/g/t` and `*iB`,
/// decimal for `kB/MB/GB/TB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        "t" | "tib" => 1 << 40,
        "tb" => 1_000_000_000_000,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("5MB").unwrap(), 5_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("x").is_err());
        assert!(parse_size("5XB").is_err());
    }

    #[test]
    fn cli_parses_units_and_pairs() {
        let cli = Cli::try_parse_from([
            "mpgw", "serve", "--min-part-size", "1MiB", "--access-key", "a", "--secret-key", "s",
            "--access-key", "b", "--secret-key", "t",
        ])
        .unwrap();
        let Command::Serve(cfg) = cli.command;
        assert_eq!(cfg.min_part_size, 1 << 20);
        let (creds, generated) = cfg.load_credentials().unwrap();
        assert!(!generated);
        assert_eq!(creds.secret("b"), Some("t"));
    }

    #[test]
    fn generates_and_keeps_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        let (c1, g1) = cfg.load_credentials().unwrap();
        let (c2, g2) = cfg.load_credentials().unwrap();
        assert!(g1 && !g2);
        let a: Vec<_> = c1.access_keys().collect();
        assert_eq!(a, c2.access_keys().collect::<Vec<_>>());
    }
}
