//! The command-line client: `mpgw upload` and `mpgw download`, resumable parallel transfers
//! against any S3 endpoint (or, with `--legacy`, the design note's `/file/mpupload/*` API).
//!
//! ```text
//! run_upload / run_download (runtime, Ctrl-C → exit 130, summary line)
//!   → upload / legacy / download (the transfer: plan, journal, resume, parallel parts)
//!     → s3::S3Client / legacy::LegacyClient (one request each, signed, streamed bodies)
//!       → http (hyper-util client, rustls, file-range bodies)
//! ```
//!
//! Resume state lives in small journals (see `journal`); the server's own answers (ListParts,
//! init's `ChunksPresent`) decide what is already there. Nothing here imports the server side
//! except the shared ETag and XML helpers.

pub mod args;
pub mod download;
pub mod http;
pub mod journal;
pub mod legacy;
pub mod progress;
pub mod s3;
pub mod settings;
pub mod upload;

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::args::{DownloadArgs, TransferArgs, UploadArgs};
use progress::Progress;

/// What went wrong in a transfer; `is_transient` says whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or settings.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read or written.
    #[error("{0}")]
    Local(String),
    /// The connection failed or broke (refused, reset, closed early).
    #[error("{0}")]
    Transport(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an error.
    #[error("{code} (HTTP {status}){}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// The server's answer contradicts what was sent (a part or object ETag, a length).
    #[error("{0}")]
    Integrity(String),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) | Self::Timeout(_) => true,
            Self::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        code.as_str(),
                        "RequestTimeout" | "SlowDown" | "InternalError"
                    )
            }
            Self::Usage(_) | Self::Local(_) | Self::Integrity(_) | Self::Interrupted => false,
        }
    }

    /// The S3 error code (or legacy code as text), if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Wraps an I/O error on a local file.
    pub fn local(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |e| Self::Local(format!("{}: {e}", path.display()))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exponential backoff with jitter: 0.25 s, 0.5 s, 1 s … capped at 8 s.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250) * 2u32.saturating_pow(attempt.min(5));
    base.min(Duration::from_secs(8))
        .mul_f64(0.75 + rand::random::<f64>() / 2.0)
}

/// Runs `op` until it succeeds, fails for good, or `attempts` tries failed transiently. Each
/// retry is announced through `progress` (so it shows above the bar, or on plain stderr).
pub async fn retry<T>(
    attempts: u32,
    what: &str,
    progress: &Progress,
    mut op: impl AsyncFnMut() -> Result<T>,
) -> Result<T> {
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < attempts => {
                let delay = backoff(attempt - 1);
                progress.note(&format!(
                    "{what}: {e}; retrying in {:.1}s ({attempt}/{attempts})",
                    delay.as_secs_f64()
                ));
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            // Out of attempts: say what was being tried, and for how long.
            Err(e @ (Error::Transport(_) | Error::Timeout(_))) if attempts > 1 => {
                return Err(Error::Transport(format!(
                    "{what}: {e} (gave up after {attempts} attempts)"
                )));
            }
            r => return r,
        }
    }
}

/// How a file is cut into parts: every part but the last is `part_size` long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub size: u64,
    pub part_size: u64,
}

impl Plan {
    /// S3 allows 10000 parts: a larger file gets larger parts (whole MiB).
    pub fn new(size: u64, wanted_part_size: u64) -> Self {
        let min = size.div_ceil(10_000).next_multiple_of(1 << 20);
        Self {
            size,
            part_size: wanted_part_size.max(min).max(1),
        }
    }

    /// Number of parts; an empty file is one empty part.
    pub fn count(&self) -> u32 {
        u32::try_from(self.size.div_ceil(self.part_size).max(1)).unwrap_or(u32::MAX)
    }

    /// Offset and length of part `n` (1-based).
    pub fn range(&self, n: u32) -> (u64, u64) {
        let offset = u64::from(n - 1) * self.part_size;
        (offset, self.part_size.min(self.size - offset))
    }
}

/// `s3://BUCKET/KEY` → (bucket, key). The key may be empty or end in `/` (a "folder").
pub fn parse_s3_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| Error::Usage(format!("{url}: expected s3://BUCKET/KEY")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Usage(format!("{url}: no bucket")));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
const EXIT_INTERRUPTED: u8 = 130;

/// `mpgw upload`: runs the transfer on its own runtime; the ETag goes to stdout.
pub fn run_upload(args: &UploadArgs) -> ExitCode {
    run(&args.transfer, async |progress| {
        if args.legacy {
            legacy::upload(args, progress).await
        } else {
            upload::upload(args, progress).await
        }
    })
}

/// `mpgw download`.
pub fn run_download(args: &DownloadArgs) -> ExitCode {
    run(&args.transfer, async |progress| {
        download::download(args, progress).await
    })
}

fn run(
    transfer: &TransferArgs,
    transfer_fn: impl AsyncFnOnce(&Progress) -> Result<String>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mpgw: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let show_bar = !transfer.no_progress && std::io::stderr().is_terminal();
    let progress = Progress::new(show_bar);
    let result = runtime.block_on(async {
        tokio::select! {
            r = transfer_fn(&progress) => r,
            // Dropping the transfer abandons in-flight requests; the journal stays for a re-run.
            _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
        }
    });
    progress.finish();
    // In-flight blocking reads (hashing) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(Error::Interrupted) => {
            eprintln!("mpgw: interrupted; run the same command again to resume");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(e) => {
            eprintln!("mpgw: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let p = Plan::new(11 << 20, 5 << 20);
        assert_eq!(p.count(), 3);
        assert_eq!(p.range(1), (0, 5 << 20));
        assert_eq!(p.range(3), (10 << 20, 1 << 20));
        assert_eq!(Plan::new(0, 8 << 20).count(), 1);
        assert_eq!(Plan::new(0, 8 << 20).range(1), (0, 0));
        // 100 GiB in 8 MiB parts would be 12800 parts: the part size grows to stay within 10000.
        let big = Plan::new(100 << 30, 8 << 20);
        assert!(big.count() <= 10_000 && big.part_size.is_multiple_of(1 << 20));
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://b/k/x").unwrap(),
            ("b".into(), "k/x".into())
        );
        assert_eq!(parse_s3_url("s3://b").unwrap(), ("b".into(), String::new()));
        assert!(parse_s3_url("b/k").is_err());
        assert!(parse_s3_url("s3:///k").is_err());
    }

    #[test]
    fn transient_errors() {
        let svc = |status, code: &str| Error::Service {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(svc(503, "SlowDown").is_transient());
        assert!(svc(500, "InternalError").is_transient());
        assert!(!svc(404, "NoSuchUpload").is_transient());
        assert!(!svc(403, "SignatureDoesNotMatch").is_transient());
        assert!(Error::Transport("reset".into()).is_transient());
    }
}
