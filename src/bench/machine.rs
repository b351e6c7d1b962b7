//! This machine's own limits, measured beside the gateway: disk write, MD5, loopback TCP.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use md5::{Digest as _, Md5};

pub(super) struct Limits {
    pub(super) disk_write: f64,
    pub(super) disk_read: f64,
    pub(super) md5: f64,
    pub(super) loopback: f64,
}

pub(super) fn disk(dir: &Path, size: u64) -> Result<(f64, f64), String> {
    const BLOCK: usize = 8 << 20;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!(".mpgw-bench-{}", std::process::id()));
    let ctx = |e: std::io::Error| format!("{}: {e}", path.display());
    let block = random(BLOCK);
    let result = (|| {
        let t = Instant::now();
        let mut f = std::fs::File::create(&path).map_err(ctx)?;
        let mut left = size;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            f.write_all(&block[..n]).map_err(ctx)?;
            left -= n as u64;
        }
        f.sync_all().map_err(ctx)?;
        let write = size as f64 / t.elapsed().as_secs_f64();
        // Drop the written pages from the cache, so the read comes from the disk.
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
        drop(f);
        let t = Instant::now();
        let mut f = std::fs::File::open(&path).map_err(ctx)?;
        let mut buf = vec![0u8; BLOCK];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(ctx)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        Ok((write, total as f64 / t.elapsed().as_secs_f64()))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

pub(super) fn md5_speed(bytes: u64) -> f64 {
    let buf = random(16 << 20);
    let t = Instant::now();
    let mut h = Md5::new();
    let mut done = 0;
    while done < bytes {
        h.update(&buf);
        done += buf.len() as u64;
    }
    std::hint::black_box(h.finalize());
    done as f64 / t.elapsed().as_secs_f64()
}

pub(super) fn loopback(bytes: u64) -> Result<f64, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    });
    let block = random(256 << 10);
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        s.write_all(&block[..n]).map_err(|e| e.to_string())?;
        left -= n as u64;
    }
    drop(s);
    let got = reader
        .join()
        .map_err(|_| "loopback reader panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(got as f64 / t.elapsed().as_secs_f64())
}

pub(super) fn random(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    rand::fill(&mut v[..]);
    Bytes::from(v)
}
