//! The flags of `mpgw upload` and `mpgw download`.

use std::path::PathBuf;

use clap::Args;

use crate::units::parse_size;

/// How `upload` and `download` reach S3 and split the transfer. Endpoint, region and
/// credentials also come from the `AWS_*` variables and `~/.aws` profiles (see README).
#[derive(Args, Clone, Debug)]
pub struct TransferArgs {
    /// S3 endpoint, e.g. http://127.0.0.1:9000 (default: AWS_ENDPOINT_URL, the profile's
    /// endpoint_url, else AWS).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Signing region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's, else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// Profile of ~/.aws/credentials and ~/.aws/config (default: AWS_PROFILE, else `default`).
    #[arg(long)]
    pub profile: Option<String>,
    /// Parts in flight at once.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Part size (grown when a file would need more than 10000 parts). A resumed upload keeps
    /// the part size it started with.
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub part_size: u64,
    /// Attempts per request on transient errors (5xx, broken connections), with backoff.
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
    /// Never draw the progress bar (it is off anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Args, Clone, Debug)]
pub struct UploadArgs {
    /// The local file.
    pub file: PathBuf,
    /// s3://BUCKET/KEY (a KEY ending in `/` takes FILE's name); with --legacy, the file name on
    /// the server (default: FILE's name).
    pub target: Option<String>,
    /// Upload through the legacy /file/mpupload/* API of an mpgw at --endpoint (the server picks
    /// the chunk size).
    #[arg(long)]
    pub legacy: bool,
    /// Legacy API user.
    #[arg(long, env = "MPGW_USERNAME")]
    pub username: Option<String>,
    /// Legacy API token.
    #[arg(long, env = "MPGW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Args, Clone, Debug)]
pub struct DownloadArgs {
    /// s3://BUCKET/KEY; with --legacy, the file name on the server.
    pub source: String,
    /// The local file (in a directory: the key's last segment). Written as FILE.mpgw-part until
    /// complete.
    pub file: PathBuf,
    /// Download from the legacy /file/* API of an mpgw at --endpoint, through short-lived
    /// signed links (the token itself never goes into a URL).
    #[arg(long)]
    pub legacy: bool,
    /// Legacy API user.
    #[arg(long, env = "MPGW_USERNAME")]
    pub username: Option<String>,
    /// Legacy API token.
    #[arg(long, env = "MPGW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}
