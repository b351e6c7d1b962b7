//! The measured phases of one `mpgw bench` run, in the order `bench()` calls them. Each phase
//! pushes its measurements onto the run's metric list.

use std::time::Instant;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};

use super::machine::random;
use super::report::{MB, Metric, human, latency, rate, throughput};
use super::{Bench, err, get, md5_of, multipart, read_status_kib};

/// The object uploaded at each concurrency and read back by the GETs.
const OBJECT: &str = "bench/object";

impl Bench<'_> {
    /// What bounds `jobs` uploads at once: the disk's write speed or MD5 on that many cores.
    pub(super) fn upload_bound(&self, jobs: usize) -> (String, f64) {
        let limits = &self.limits;
        let md5 = jobs.min(self.cores) as f64 * limits.md5;
        if limits.disk_write < md5 {
            ("disk write".to_owned(), limits.disk_write)
        } else {
            (format!("{}×MD5", jobs.min(self.cores)), md5)
        }
    }

    /// Uploads of `size` at each concurrency; the last one stays for the GETs. Returns the
    /// Complete times of those cut in 64 parts.
    pub(super) async fn uploads(&mut self) -> Result<Vec<std::time::Duration>, String> {
        let (args, bucket, size, part_size) = (self.args, self.bucket, self.size, self.part_size);
        let buf = random(part_size as usize);
        let mut complete_64 = Vec::new();
        for &jobs in &args.concurrency {
            eprintln!(
                "mpgw bench: upload {} in {} parts, {jobs} at once",
                human(size),
                human(part_size)
            );
            let r = multipart(&self.c, args, bucket, OBJECT, size, &buf, jobs).await?;
            let (bn, bv) = self.upload_bound(jobs);
            self.m.push(throughput(
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
        Ok(complete_64)
    }

    /// Complete of 64 parts: the best of the uploads cut in 64, else an upload of that shape.
    pub(super) async fn complete_64(
        &mut self,
        complete_64: &[std::time::Duration],
    ) -> Result<(), String> {
        let (args, bucket, size) = (self.args, self.bucket, self.size);
        if let Some(best) = complete_64.iter().min() {
            self.m.push(latency(
                "complete_64p",
                &format!("Complete, 64 parts, {}", human(size)),
                *best,
            ));
        } else {
            // The object was not cut in 64: measure that shape on its own.
            let ps = size.div_ceil(64).max(1);
            let b = random(ps as usize);
            let r = multipart(
                &self.c,
                args,
                bucket,
                "bench/object-64",
                size,
                &b,
                self.max_c,
            )
            .await?;
            self.m.push(latency(
                "complete_64p",
                &format!("Complete, {} parts, {}", r.parts, human(size)),
                r.complete,
            ));
            self.c
                .delete_object(bucket, "bench/object-64")
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// The large object in 64 parts: its Complete and its upload.
    pub(super) async fn big_upload(&mut self) -> Result<(), String> {
        let (args, bucket, big_size, max_c) = (self.args, self.bucket, self.big_size, self.max_c);
        eprintln!("mpgw bench: upload {} in 64 parts", human(big_size));
        let ps = big_size.div_ceil(64);
        let b = random(ps as usize);
        let r = multipart(&self.c, args, bucket, "bench/big", big_size, &b, max_c).await?;
        self.m.push(latency(
            "complete_64p_big",
            &format!("Complete, {} parts, {}", r.parts, human(big_size)),
            r.complete,
        ));
        let (bn, bv) = self.upload_bound(max_c);
        self.m.push(throughput(
            "upload_big",
            &format!("multipart upload, {}, {max_c} at once", human(big_size)),
            big_size,
            r.upload,
            Some((bn, bv)),
        ));
        self.c
            .delete_object(bucket, "bench/big")
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Many tiny parts: Complete (and ListParts of the largest) alone.
    pub(super) async fn many_parts(&mut self) -> Result<(), String> {
        let (args, bucket) = (self.args, self.bucket);
        let c = &self.c;
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
                    let (c, id, key, tiny) = (c, &id, &key, tiny.clone());
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
                self.m.push(latency(
                    &format!("list_parts_{n}p"),
                    &format!("ListParts, {n} parts, every page"),
                    d,
                ));
            }
            let t = Instant::now();
            c.complete_multipart_upload(bucket, &key, &id, &parts)
                .await
                .map_err(err)?;
            self.m.push(latency(
                &format!("complete_{n}p"),
                &format!("Complete, {n} parts, {}", human(total)),
                t.elapsed(),
            ));
            c.delete_object(bucket, &key).await.map_err(err)?;
        }
        Ok(())
    }

    /// A GET is bounded by reading the data dir or by the socket, whichever is slower.
    fn get_bound(&self) -> (String, f64) {
        let limits = &self.limits;
        if limits.disk_read < limits.loopback {
            ("disk read".to_owned(), limits.disk_read)
        } else {
            ("loopback".to_owned(), limits.loopback)
        }
    }

    /// A GET of the whole uploaded object.
    pub(super) async fn get_whole(&mut self) -> Result<(), String> {
        let size = self.size;
        eprintln!("mpgw bench: GET");
        let t = Instant::now();
        let got = get(&self.c, self.bucket, OBJECT, 0..u64::MAX).await?;
        if got != size {
            return Err(format!("GET returned {got} of {size} bytes"));
        }
        self.m.push(throughput(
            "get",
            &format!("GetObject, {}", human(size)),
            size,
            t.elapsed(),
            Some(self.get_bound()),
        ));
        Ok(())
    }

    /// Ranged GETs of the uploaded object at random offsets, then the object is deleted.
    pub(super) async fn get_ranges(&mut self) -> Result<(), String> {
        let (args, bucket, size) = (self.args, self.bucket, self.size);
        let c = &self.c;
        let range = args.range_size.min(size).max(1);
        let nranges = args.scaled(args.ranges, 16);
        let slots = (size / range).max(1);
        let t = Instant::now();
        let total: u64 = stream::iter(0..nranges)
            .map(|_| {
                let start = rand::random_range(0..slots) * range;
                let end = (start + range).min(size);
                get(c, bucket, OBJECT, start..end)
            })
            .buffer_unordered(args.small_jobs.max(1))
            .try_fold(0, |a, n| async move { Ok(a + n) })
            .await?;
        let d = t.elapsed();
        let get_bound = self.get_bound();
        self.m.push(throughput(
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
        self.m.push(rate(
            "get_range_ops",
            &format!("GetObject, {} ranges", human(range)),
            nranges,
            d,
            "ops/s",
        ));
        self.c.delete_object(bucket, OBJECT).await.map_err(err)?;
        Ok(())
    }

    /// Memory under many large parts at once: the server's peak RSS during just this upload
    /// (writing 5 to /proc/PID/clear_refs resets VmHWM; the server must be ours to do that).
    /// Returns the server's peak before it.
    pub(super) async fn wide(&mut self) -> Result<Option<f64>, String> {
        let (args, bucket) = (self.args, self.bucket);
        let ps = args.scaled(args.wide_part_size, 1 << 10);
        let total = ps * u64::from(args.wide_parts);
        eprintln!(
            "mpgw bench: {} parts of {} at once",
            args.wide_parts,
            human(ps)
        );
        let peak_before_wide = read_status_kib(args.server_pid, "VmHWM:");
        let reset = args
            .server_pid
            .is_some_and(|pid| std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok());
        let b = random(ps as usize);
        let r = multipart(
            &self.c,
            args,
            bucket,
            "bench/wide",
            total,
            &b,
            args.wide_parts as usize,
        )
        .await?;
        drop(b);
        let (bn, bv) = self.upload_bound(args.wide_parts as usize);
        self.m.push(throughput(
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
        self.m.push(Metric {
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
        self.c
            .delete_object(bucket, "bench/wide")
            .await
            .map_err(err)?;
        Ok(peak_before_wide)
    }

    /// Small uploads: create + one part + complete, over and over. Returns how many.
    pub(super) async fn small_cycles(&mut self) -> Result<u64, String> {
        let (args, bucket) = (self.args, self.bucket);
        let c = &self.c;
        eprintln!("mpgw bench: small uploads");
        let small = random(args.small_part.max(1) as usize);
        let cycles = args.scaled(args.cycles, 16);
        let small_md5 = args.checksums.then(|| md5_of(&small));
        let t = Instant::now();
        stream::iter(0..cycles)
            .map(|i| {
                let (c, small) = (c, small.clone());
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
        self.m.push(rate(
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
        Ok(cycles)
    }

    /// Small PutObjects. Returns how many.
    pub(super) async fn put_objects(&mut self) -> Result<u64, String> {
        let (args, bucket) = (self.args, self.bucket);
        let c = &self.c;
        let obj = random(args.put_size.max(1) as usize);
        let puts = args.scaled(args.puts, 32);
        let obj_md5 = args.checksums.then(|| md5_of(&obj));
        let t = Instant::now();
        stream::iter(0..puts)
            .map(|i| {
                let (c, obj) = (c, obj.clone());
                async move {
                    c.put_object_bytes(bucket, &format!("bench/put/{i}"), obj, obj_md5)
                        .await
                }
            })
            .buffer_unordered(args.small_jobs.max(1))
            .try_collect::<Vec<_>>()
            .await
            .map_err(err)?;
        self.m.push(rate(
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
        Ok(puts)
    }

    /// Clean up (not timed), so runs do not pile up objects.
    pub(super) async fn clean_up(&self, cycles: u64, puts: u64) -> Result<(), String> {
        let (bucket, c) = (self.bucket, &self.c);
        let keys = (0..cycles)
            .map(|i| format!("bench/small/{i}"))
            .chain((0..puts).map(|i| format!("bench/put/{i}")));
        stream::iter(keys)
            .map(|k| async move { c.delete_object(bucket, &k).await })
            .buffer_unordered(self.args.small_jobs.max(1))
            .try_collect::<Vec<_>>()
            .await
            .map_err(err)?;
        Ok(())
    }

    /// The server's memory, read after the cleanup. VmHWM restarted at the memory measurement,
    /// so the run's peak is the larger of the peak before it and the one since.
    pub(super) fn server_memory(&mut self, peak_before_wide: Option<f64>) {
        let pid = self.args.server_pid;
        let peak = read_status_kib(pid, "VmHWM:")
            .map(|now| peak_before_wide.map_or(now, |before: f64| before.max(now)));
        for (name, value, what) in [
            ("server_peak_rss", peak, "server peak RSS (VmHWM)"),
            (
                "server_rss",
                read_status_kib(pid, "VmRSS:"),
                "server RSS at the end",
            ),
        ] {
            self.m.push(Metric {
                name: name.into(),
                what: what.into(),
                value: value.map(|k| k / 1024.0),
                unit: "MiB",
                bound: None,
                bound_value: None,
                fraction: None,
            });
        }
    }

    /// The machine's limits themselves, in MB/s.
    pub(super) fn machine_metrics(&mut self) {
        let limits = &self.limits;
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
            self.m.push(Metric {
                name: name.into(),
                what: what.into(),
                value: Some(v / MB),
                unit: "MB/s",
                bound: None,
                bound_value: None,
                fraction: None,
            });
        }
    }
}
