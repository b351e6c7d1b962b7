//! `mpgw bench`: measures a running gateway through the crate's own S3 client (SigV4 over
//! `UNSIGNED-PAYLOAD`, bodies from memory, Content-MD5 only with `--checksums`, so the client
//! costs the machine little), and, in the same run, the machine's own limits: sequential disk
//! write (with fsync) and cold read of the data directory, single-core MD5, loopback TCP. Each
//! throughput is shown with the limit that bounds it and the fraction of it reached.
//!
//! Every size and count scales with `--scale`, so a test runs the whole thing in seconds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use http_body_util::BodyExt as _;
use md5::{Digest as _, Md5};

use crate::client::args::TransferArgs;
use crate::client::s3::S3Client;
use crate::client::settings::S3Settings;
use crate::units::parse_size;
mod events;
mod machine;
mod phases;
mod report;
mod tus;
use self::machine::{Limits, disk, loopback, md5_speed};
use self::report::{Metric, Report, table};

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// The gateway, e.g. http://127.0.0.1:9000 (default: AWS_ENDPOINT_URL, the profile's).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Signing region.
    #[arg(long)]
    pub region: Option<String>,
    /// Access key (default: AWS_ACCESS_KEY_ID or the profile's).
    #[arg(long, requires = "secret_key")]
    pub access_key: Option<String>,
    /// Secret key (default: AWS_SECRET_ACCESS_KEY or the profile's).
    #[arg(long, requires = "access_key", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Bucket to use (created if missing).
    #[arg(long, default_value = "mpgw-bench")]
    pub bucket: String,
    /// Object size for the upload, Complete and GET measurements.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Part size of the uploads.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub part_size: u64,
    /// The large object of the 64-part Complete comparison (0: skip).
    #[arg(long, default_value = "8GiB", value_parser = parse_size)]
    pub big_size: u64,
    /// Most parts of the many-part Complete and ListParts (also measured: a tenth of it). Needs
    /// the server's `--min-part-size` at or below `--tiny-part`.
    #[arg(long, default_value_t = 10_000)]
    pub parts_max: u32,
    /// Part size of the many-part uploads.
    #[arg(long, default_value = "1KiB", value_parser = parse_size)]
    pub tiny_part: u64,
    /// Uploads in flight at once, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Range size of the ranged GETs.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub range_size: u64,
    /// Ranged GETs (at --small-jobs at once).
    #[arg(long, default_value_t = 1024)]
    pub ranges: u64,
    /// Part size of the small-upload cycles (create + one part + complete).
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    pub small_part: u64,
    /// Small-upload cycles.
    #[arg(long, default_value_t = 512)]
    pub cycles: u64,
    /// Object size of the PutObject rate.
    #[arg(long, default_value = "4KiB", value_parser = parse_size)]
    pub put_size: u64,
    /// PutObjects.
    #[arg(long, default_value_t = 4096)]
    pub puts: u64,
    /// Parts uploaded all at once for the memory measurement (0: skip it).
    #[arg(long, default_value_t = 64)]
    pub wide_parts: u32,
    /// Part size of the memory measurement.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub wide_part_size: u64,
    /// Small requests in flight at once (cycles, PutObjects, ranges).
    #[arg(long, default_value_t = 16)]
    pub small_jobs: usize,
    /// Multiplies every size and count above (part counts and part sizes excepted, but parts
    /// never exceed the object), e.g. 0.01 for a quick check.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Send Content-MD5 with every body (the client then hashes, too).
    #[arg(long)]
    pub checksums: bool,
    /// The server's process: its peak RSS (VmHWM) and RSS from /proc/PID/status.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Directory whose disk bandwidth bounds uploads: the server's --data-dir (default: the
    /// system temp dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Bytes written (8 MiB blocks, then fsync) to measure the disk.
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    pub disk_size: u64,
    /// A legacy user's token: also measure tus uploads (`/_tus/`) of the object size, one
    /// stream and four (partial uploads joined by a final concatenation).
    #[arg(long, hide_env_values = true)]
    pub tus_token: Option<String>,
    /// A webhook event target of the gateway (`--notify-webhook NAME=http://ADDR/`): every
    /// object the run creates is sent there, and the delivery latency measured (with
    /// --events-listen).
    #[arg(long, requires = "events_listen")]
    pub events_target: Option<String>,
    /// Where to receive the events of --events-target (the ADDR of its URL).
    #[arg(long, requires = "events_target")]
    pub events_listen: Option<std::net::SocketAddr>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl BenchArgs {
    fn scaled(&self, v: u64, min: u64) -> u64 {
        ((v as f64 * self.scale) as u64).max(min)
    }
}

pub fn run(args: &BenchArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mpgw: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(report) => {
            print!("{}", table(&report));
            if let Some(path) = &args.json {
                let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                if let Err(e) = std::fs::write(path, text + "\n") {
                    eprintln!("mpgw: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mpgw: bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn client(args: &BenchArgs, connections: usize) -> Result<S3Client, String> {
    let transfer = TransferArgs {
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        profile: None,
        jobs: 1,
        part_size: args.part_size,
        retries: 1,
        no_progress: true,
    };
    let mut settings = match (&args.access_key, &args.secret_key) {
        (Some(a), Some(s)) => {
            let mut t = transfer.clone();
            // Keys given: resolve only endpoint and region (no credentials lookup needed).
            t.profile = None;
            S3Settings {
                endpoint: match &t.endpoint {
                    Some(e) => crate::client::settings::check_endpoint(e).map_err(err)?,
                    None => return Err("--endpoint is required with --access-key".into()),
                },
                region: t.region.unwrap_or_else(|| "us-east-1".into()),
                access_key: a.clone(),
                secret_key: s.clone(),
                session_token: None,
                virtual_host: false,
            }
        }
        _ => S3Settings::resolve(&transfer).map_err(err)?,
    };
    settings.virtual_host = false;
    S3Client::new(settings, connections).map_err(err)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Disk write (+fsync) and cold read of `dir`, MD5 on one core, loopback TCP: bytes/s each.
async fn machine_limits(args: &BenchArgs, dir: &Path) -> Result<Limits, String> {
    let disk_size = args.scaled(args.disk_size, 8 << 20);
    let dir = dir.to_owned();
    let md5_bytes = args.scaled(1 << 30, 64 << 20);
    let loop_bytes = args.scaled(4 << 30, 256 << 20);
    tokio::task::spawn_blocking(move || -> Result<Limits, String> {
        let (disk_write, disk_read) = disk(&dir, disk_size)?;
        Ok(Limits {
            disk_write,
            disk_read,
            md5: md5_speed(md5_bytes),
            loopback: loopback(loop_bytes)?,
        })
    })
    .await
    .map_err(err)?
}

async fn bench(args: &BenchArgs) -> Result<Report, String> {
    let started = Instant::now();
    let mut run = Bench::setup(args).await?;
    let events = match (&args.events_target, args.events_listen) {
        (Some(target), Some(listen)) => Some(run.start_events(target, listen).await?),
        _ => None,
    };
    let complete_64 = run.uploads().await?;
    if let Some(token) = &args.tus_token {
        run.tus_uploads(token).await?;
    }
    run.complete_64(&complete_64).await?;
    if run.big_size > 0 {
        run.big_upload().await?;
    }
    run.many_parts().await?;
    run.get_whole().await?;
    run.get_ranges().await?;
    let peak_before_wide = if args.wide_parts > 0 {
        run.wide().await?
    } else {
        None
    };
    let cycles = run.small_cycles().await?;
    let puts = run.put_objects().await?;
    if let Some(receiver) = events {
        run.finish_events(receiver).await?;
    }
    run.clean_up(cycles, puts).await?;
    run.server_memory(peak_before_wide);
    run.machine_metrics();
    Ok(run.report(started))
}

/// One run: its client, the scaled sizes, the machine's limits and the metrics so far.
struct Bench<'a> {
    args: &'a BenchArgs,
    c: S3Client,
    bucket: &'a str,
    cores: usize,
    max_c: usize,
    size: u64,
    part_size: u64,
    big_size: u64,
    data_dir: PathBuf,
    limits: Limits,
    m: Vec<Metric>,
}

impl<'a> Bench<'a> {
    /// The client (enough connections for the widest phase), the bucket, the scaled sizes and
    /// the machine's limits.
    async fn setup(args: &'a BenchArgs) -> Result<Bench<'a>, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
        let c = client(
            args,
            max_c
                .max(args.small_jobs)
                .max(args.wide_parts as usize)
                .max(16),
        )?;
        let bucket = args.bucket.as_str();
        c.create_bucket(bucket).await.map_err(err)?;

        let size = args.scaled(args.size, 1);
        let part_size = args.part_size.min(size).max(1);
        let big_size = if args.big_size == 0 {
            0
        } else {
            args.scaled(args.big_size, 64)
        };
        let data_dir = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);

        eprintln!("mpgw bench: machine limits");
        let limits = machine_limits(args, &data_dir).await?;
        Ok(Bench {
            args,
            c,
            bucket,
            cores,
            max_c,
            size,
            part_size,
            big_size,
            data_dir,
            limits,
            m: Vec::new(),
        })
    }

    /// The report of the run, started at `started`.
    fn report(self, started: Instant) -> Report {
        Report {
            endpoint: self.c.endpoint().to_owned(),
            cores: self.cores,
            size: self.size,
            part_size: self.part_size,
            big_size: self.big_size,
            parts_max: self.args.parts_max,
            checksums: self.args.checksums,
            data_dir: self.data_dir.display().to_string(),
            elapsed_s: started.elapsed().as_secs_f64(),
            metrics: self.m,
        }
    }
}

struct Uploaded {
    parts: u32,
    upload: Duration,
    complete: Duration,
}

/// Uploads `size` bytes as `key` in parts of `buf.len()`, `jobs` at once. `upload` covers
/// create, parts and Complete; `complete` the Complete call alone.
async fn multipart(
    c: &S3Client,
    args: &BenchArgs,
    bucket: &str,
    key: &str,
    size: u64,
    buf: &Bytes,
    jobs: usize,
) -> Result<Uploaded, String> {
    let ps = buf.len() as u64;
    let n = size.div_ceil(ps) as u32;
    let md5_full = args.checksums.then(|| md5_of(buf));
    let t = Instant::now();
    let id = c.create_multipart_upload(bucket, key).await.map_err(err)?;
    let parts: Vec<(u32, String)> = stream::iter(1..=n)
        .map(|i| {
            let len = (size - u64::from(i - 1) * ps).min(ps);
            let data = buf.slice(..len as usize);
            let md5 = if len == ps {
                md5_full
            } else {
                args.checksums.then(|| md5_of(&data))
            };
            let id = &id;
            async move {
                c.upload_part_bytes(bucket, key, id, i, data, md5)
                    .await
                    .map(|e| (i, e))
            }
        })
        .buffered(jobs.max(1))
        .try_collect()
        .await
        .map_err(err)?;
    let tc = Instant::now();
    c.complete_multipart_upload(bucket, key, &id, &parts)
        .await
        .map_err(err)?;
    Ok(Uploaded {
        parts: n,
        complete: tc.elapsed(),
        upload: t.elapsed(),
    })
}

/// GETs a range (`0..u64::MAX`: the whole object, without Range) and counts (and drops) its
/// bytes.
async fn get(
    c: &S3Client,
    bucket: &str,
    key: &str,
    range: std::ops::Range<u64>,
) -> Result<u64, String> {
    let resp = if range.start == 0 && range.end == u64::MAX {
        c.get_object(bucket, key).await
    } else {
        c.get_object_range(bucket, key, range, None).await
    }
    .map_err(err)?;
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.map_err(err)?.into_data() {
            n += d.len() as u64;
        }
    }
    Ok(n)
}

/// A `kB` field of /proc/PID/status.
fn read_status_kib(pid: Option<u32>, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn md5_of(b: &[u8]) -> [u8; 16] {
    Md5::digest(b).into()
}

#[cfg(test)]
mod tests {
    use super::report::human;

    #[test]
    fn humans() {
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(64 << 10), "64 KiB");
        assert_eq!(human(3 << 29), "1536 MiB");
        assert_eq!(human((3 << 29) + 1), "1.5 GiB");
        assert_eq!(human(10), "10 B");
    }
}
