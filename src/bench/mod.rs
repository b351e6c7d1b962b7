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
mod machine;
mod report;
use self::machine::{Limits, disk, loopback, md5_speed, random};
use self::report::{MB, Metric, Report, human, latency, rate, table, throughput};

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
    let mut m = Vec::new();
    let upload_bound = |jobs: usize| {
        let md5 = jobs.min(cores) as f64 * limits.md5;
        if limits.disk_write < md5 {
            ("disk write".to_owned(), limits.disk_write)
        } else {
            (format!("{}×MD5", jobs.min(cores)), md5)
        }
    };

    // Uploads of `size` at each concurrency; the last one stays for the GETs.
    let buf = random(part_size as usize);
    let mut complete_64 = Vec::new();
    for &jobs in &args.concurrency {
        eprintln!(
            "mpgw bench: upload {} in {} parts, {jobs} at once",
            human(size),
            human(part_size)
        );
        let r = multipart(&c, args, bucket, "bench/object", size, &buf, jobs).await?;
        let (bn, bv) = upload_bound(jobs);
        m.push(throughput(
            &format!("upload_c{jobs}"),
            &format!(
                "multipart upload, {} in {} parts, {jobs} at once",
                human(size),
                r.parts
            ),
            size,
            r.upload,
            Some((bn, bv)),
        ));
        if r.parts == 64 {
            complete_64.push(r.complete);
        }
    }
    if let Some(best) = complete_64.iter().min() {
        m.push(latency(
            "complete_64p",
            &format!("Complete, 64 parts, {}", human(size)),
            *best,
        ));
    } else {
        // The object was not cut in 64: measure that shape on its own.
        let ps = size.div_ceil(64).max(1);
        let b = random(ps as usize);
        let r = multipart(&c, args, bucket, "bench/object-64", size, &b, max_c).await?;
        m.push(latency(
            "complete_64p",
            &format!("Complete, {} parts, {}", r.parts, human(size)),
            r.complete,
        ));
        c.delete_object(bucket, "bench/object-64")
            .await
            .map_err(err)?;
    }
    if big_size > 0 {
        eprintln!("mpgw bench: upload {} in 64 parts", human(big_size));
        let ps = big_size.div_ceil(64);
        let b = random(ps as usize);
        let r = multipart(&c, args, bucket, "bench/big", big_size, &b, max_c).await?;
        m.push(latency(
            "complete_64p_big",
            &format!("Complete, {} parts, {}", r.parts, human(big_size)),
            r.complete,
        ));
        let (bn, bv) = upload_bound(max_c);
        m.push(throughput(
            "upload_big",
            &format!("multipart upload, {}, {max_c} at once", human(big_size)),
            big_size,
            r.upload,
            Some((bn, bv)),
        ));
        c.delete_object(bucket, "bench/big").await.map_err(err)?;
    }

    // Many tiny parts: Complete (and ListParts of the largest) alone.
    let tiny = random(args.tiny_part.max(1) as usize);
    let mut counts = vec![(args.parts_max / 10).max(1), args.parts_max.max(1)];
    counts.dedup();
    for n in counts {
        eprintln!("mpgw bench: {n} parts of {} bytes", tiny.len());
        let key = format!("bench/parts-{n}");
        let total = n as u64 * tiny.len() as u64;
        let id = c.create_multipart_upload(bucket, &key).await.map_err(err)?;
        let md5 = args.checksums.then(|| md5_of(&tiny));
        let parts: Vec<(u32, String)> = stream::iter(1..=n)
            .map(|i| {
                let (c, id, key, tiny) = (&c, &id, &key, tiny.clone());
                async move {
                    c.upload_part_bytes(bucket, key, id, i, tiny, md5)
                        .await
                        .map(|e| (i, e))
                }
            })
            .buffered(args.small_jobs.max(1))
            .try_collect()
            .await
            .map_err(err)?;
        if n == args.parts_max.max(1) {
            let t = Instant::now();
            let listed = c.list_parts(bucket, &key, &id).await.map_err(err)?;
            let d = t.elapsed();
            if listed.len() != n as usize {
                return Err(format!("ListParts returned {} of {n} parts", listed.len()));
            }
            m.push(latency(
                &format!("list_parts_{n}p"),
                &format!("ListParts, {n} parts, every page"),
                d,
            ));
        }
        let t = Instant::now();
        c.complete_multipart_upload(bucket, &key, &id, &parts)
            .await
            .map_err(err)?;
        m.push(latency(
            &format!("complete_{n}p"),
            &format!("Complete, {n} parts, {}", human(total)),
            t.elapsed(),
        ));
        c.delete_object(bucket, &key).await.map_err(err)?;
    }

    // GETs of the uploaded object.
    let key = "bench/object";
    eprintln!("mpgw bench: GET");
    let t = Instant::now();
    let got = get(&c, bucket, key, 0..u64::MAX).await?;
    if got != size {
        return Err(format!("GET returned {got} of {size} bytes"));
    }
    // A GET is bounded by reading the data dir or by the socket, whichever is slower.
    let get_bound = if limits.disk_read < limits.loopback {
        ("disk read".to_owned(), limits.disk_read)
    } else {
        ("loopback".to_owned(), limits.loopback)
    };
    m.push(throughput(
        "get",
        &format!("GetObject, {}", human(size)),
        size,
        t.elapsed(),
        Some(get_bound.clone()),
    ));
    let range = args.range_size.min(size).max(1);
    let nranges = args.scaled(args.ranges, 16);
    let slots = (size / range).max(1);
    let t = Instant::now();
    let total: u64 = stream::iter(0..nranges)
        .map(|_| {
            let start = rand::random_range(0..slots) * range;
            let end = (start + range).min(size);
            get(&c, bucket, key, start..end)
        })
        .buffer_unordered(args.small_jobs.max(1))
        .try_fold(0, |a, n| async move { Ok(a + n) })
        .await?;
    let d = t.elapsed();
    m.push(throughput(
        "get_range",
        &format!(
            "GetObject, {} ranges, {} at once",
            human(range),
            args.small_jobs
        ),
        total,
        d,
        Some(get_bound),
    ));
    m.push(rate(
        "get_range_ops",
        &format!("GetObject, {} ranges", human(range)),
        nranges,
        d,
        "ops/s",
    ));
    c.delete_object(bucket, key).await.map_err(err)?;

    // Memory under many large parts at once: the server's peak RSS during just this upload
    // (writing 5 to /proc/PID/clear_refs resets VmHWM; the server must be ours to do that).
    let mut peak_before_wide = None;
    if args.wide_parts > 0 {
        let ps = args.scaled(args.wide_part_size, 1 << 10);
        let total = ps * u64::from(args.wide_parts);
        eprintln!(
            "mpgw bench: {} parts of {} at once",
            args.wide_parts,
            human(ps)
        );
        peak_before_wide = read_status_kib(args.server_pid, "VmHWM:");
        let reset = args
            .server_pid
            .is_some_and(|pid| std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok());
        let b = random(ps as usize);
        let r = multipart(
            &c,
            args,
            bucket,
            "bench/wide",
            total,
            &b,
            args.wide_parts as usize,
        )
        .await?;
        drop(b);
        let (bn, bv) = upload_bound(args.wide_parts as usize);
        m.push(throughput(
            "upload_wide",
            &format!(
                "multipart upload, {} parts of {} at once",
                r.parts,
                human(ps)
            ),
            total,
            r.upload,
            Some((bn, bv)),
        ));
        let peak = if reset {
            read_status_kib(args.server_pid, "VmHWM:").map(|k| k / 1024.0)
        } else {
            None
        };
        m.push(Metric {
            name: "server_peak_rss_wide".into(),
            what: format!(
                "server peak RSS during {} parts of {} at once",
                args.wide_parts,
                human(ps)
            ),
            value: peak,
            unit: "MiB",
            bound: None,
            bound_value: None,
            fraction: None,
        });
        c.delete_object(bucket, "bench/wide").await.map_err(err)?;
    }

    // Small uploads.
    eprintln!("mpgw bench: small uploads");
    let small = random(args.small_part.max(1) as usize);
    let cycles = args.scaled(args.cycles, 16);
    let small_md5 = args.checksums.then(|| md5_of(&small));
    let t = Instant::now();
    stream::iter(0..cycles)
        .map(|i| {
            let (c, small) = (&c, small.clone());
            async move {
                let key = format!("bench/small/{i}");
                let id = c.create_multipart_upload(bucket, &key).await?;
                let e = c
                    .upload_part_bytes(bucket, &key, &id, 1, small, small_md5)
                    .await?;
                c.complete_multipart_upload(bucket, &key, &id, &[(1, e)])
                    .await
            }
        })
        .buffer_unordered(args.small_jobs.max(1))
        .try_collect::<Vec<_>>()
        .await
        .map_err(err)?;
    m.push(rate(
        "small_cycles",
        &format!(
            "create + one {} part + complete, {} at once",
            human(small.len() as u64),
            args.small_jobs
        ),
        cycles,
        t.elapsed(),
        "cycles/s",
    ));
    let obj = random(args.put_size.max(1) as usize);
    let puts = args.scaled(args.puts, 32);
    let obj_md5 = args.checksums.then(|| md5_of(&obj));
    let t = Instant::now();
    stream::iter(0..puts)
        .map(|i| {
            let (c, obj) = (&c, obj.clone());
            async move {
                c.put_object_bytes(bucket, &format!("bench/put/{i}"), obj, obj_md5)
                    .await
            }
        })
        .buffer_unordered(args.small_jobs.max(1))
        .try_collect::<Vec<_>>()
        .await
        .map_err(err)?;
    m.push(rate(
        "put_small",
        &format!(
            "PutObject, {}, {} at once",
            human(obj.len() as u64),
            args.small_jobs
        ),
        puts,
        t.elapsed(),
        "ops/s",
    ));

    // Clean up (not timed), so runs do not pile up objects.
    let keys = (0..cycles)
        .map(|i| format!("bench/small/{i}"))
        .chain((0..puts).map(|i| format!("bench/put/{i}")));
    stream::iter(keys)
        .map(|k| {
            let c = &c;
            async move { c.delete_object(bucket, &k).await }
        })
        .buffer_unordered(args.small_jobs.max(1))
        .try_collect::<Vec<_>>()
        .await
        .map_err(err)?;

    // The server's memory, read after the cleanup. VmHWM restarted at the memory measurement,
    // so the run's peak is the larger of the peak before it and the one since.
    let peak = read_status_kib(args.server_pid, "VmHWM:")
        .map(|now| peak_before_wide.map_or(now, |before: f64| before.max(now)));
    for (name, value, what) in [
        ("server_peak_rss", peak, "server peak RSS (VmHWM)"),
        (
            "server_rss",
            read_status_kib(args.server_pid, "VmRSS:"),
            "server RSS at the end",
        ),
    ] {
        m.push(Metric {
            name: name.into(),
            what: what.into(),
            value: value.map(|k| k / 1024.0),
            unit: "MiB",
            bound: None,
            bound_value: None,
            fraction: None,
        });
    }

    for (name, what, v) in [
        (
            "limit_disk_write",
            "machine: sequential write + fsync of the data dir",
            limits.disk_write,
        ),
        (
            "limit_disk_read",
            "machine: sequential cold read of the data dir",
            limits.disk_read,
        ),
        ("limit_md5", "machine: MD5, one core", limits.md5),
        (
            "limit_loopback",
            "machine: loopback TCP, one stream",
            limits.loopback,
        ),
    ] {
        m.push(Metric {
            name: name.into(),
            what: what.into(),
            value: Some(v / MB),
            unit: "MB/s",
            bound: None,
            bound_value: None,
            fraction: None,
        });
    }

    Ok(Report {
        endpoint: c.endpoint().to_owned(),
        cores,
        size,
        part_size,
        big_size,
        parts_max: args.parts_max,
        checksums: args.checksums,
        data_dir: data_dir.display().to_string(),
        elapsed_s: started.elapsed().as_secs_f64(),
        metrics: m,
    })
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
    use super::*;

    #[test]
    fn humans() {
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(64 << 10), "64 KiB");
        assert_eq!(human(3 << 29), "1536 MiB");
        assert_eq!(human((3 << 29) + 1), "1.5 GiB");
        assert_eq!(human(10), "10 B");
    }
}
