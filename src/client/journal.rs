//! Journals: small JSON files that let an interrupted transfer continue where it stopped.
//!
//! - Uploads keep theirs in the state directory (`$XDG_STATE_HOME/mpgw/uploads/`, else
//!   `~/.local/state/mpgw/uploads/`), one file per (endpoint, bucket or user, key, local file),
//!   so the source directory may be read-only and one file may go to several places.
//! - Downloads keep theirs next to the target: `FILE.mpgw-part` (the data, at its final size)
//!   and `FILE.mpgw-download.json` (which parts of it are done), renamed into place at the end.
//!
//! A journal is written to a temporary file, fsynced and renamed, so a crash leaves the old or
//! the new version, never a torn one. An unreadable journal counts as none.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Error, Result};

/// What identifies a local file's content cheaply: if any of it differs, an upload of the file
/// starts over. The sample hash catches a rewrite that kept size and mtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    /// SHA-256 of the first and the last MiB, hex.
    pub sample_sha256: String,
}

const SAMPLE: u64 = 1 << 20;

impl FileIdentity {
    /// Reads the identity of `path` (absolute) on a blocking thread.
    pub async fn of(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::of_blocking(path))
            .await
            .map_err(|e| Error::Local(format!("reading the file: {e}")))?
    }

    fn of_blocking(path: PathBuf) -> Result<Self> {
        let mut file = std::fs::File::open(&path).map_err(Error::local(&path))?;
        let meta = file.metadata().map_err(Error::local(&path))?;
        if !meta.is_file() {
            return Err(Error::Usage(format!(
                "{}: not a regular file",
                path.display()
            )));
        }
        let size = meta.len();
        let mut h = Sha256::new();
        let mut buf = Vec::with_capacity(SAMPLE as usize);
        (&mut file)
            .take(SAMPLE)
            .read_to_end(&mut buf)
            .map_err(Error::local(&path))?;
        h.update(&buf);
        if size > SAMPLE {
            buf.clear();
            file.seek(SeekFrom::Start(size - SAMPLE))
                .map_err(Error::local(&path))?;
            file.take(SAMPLE)
                .read_to_end(&mut buf)
                .map_err(Error::local(&path))?;
            h.update(&buf);
        }
        Ok(Self {
            size,
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            sample_sha256: hex::encode(h.finalize()),
            path,
        })
    }
}

/// An S3 multipart upload in progress. Which parts are done is asked of the server (ListParts),
/// not kept here: the server is the truth, and a journal that missed a part costs nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadJournal {
    pub endpoint: String,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub part_size: u64,
    pub file: FileIdentity,
}

/// A legacy upload: the whole-file SHA-256 (slow to compute for a big file) and the upload id.
/// The server finds the upload again from the hash; the id is for the record and for status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LegacyJournal {
    pub endpoint: String,
    pub username: String,
    pub filename: String,
    pub filehash: String,
    pub upload_id: Option<String>,
    pub file: FileIdentity,
}

/// A download in progress into `FILE.mpgw-part`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadJournal {
    pub endpoint: String,
    pub bucket: String,
    pub key: String,
    /// The object as first seen: a different ETag or size later means start over.
    pub etag: String,
    pub size: u64,
    pub part_size: u64,
    /// Done parts as sorted, disjoint, half-open ranges of 1-based part numbers (a handful of
    /// ranges even for a huge file, since parts finish roughly in order).
    pub done: Vec<(u32, u32)>,
}

impl DownloadJournal {
    pub fn is_done(&self, n: u32) -> bool {
        self.done.iter().any(|&(a, b)| (a..b).contains(&n))
    }

    pub fn mark_done(&mut self, n: u32) {
        if self.is_done(n) {
            return;
        }
        self.done.push((n, n + 1));
        self.done.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.done.len());
        for &(a, b) in &self.done {
            match merged.last_mut() {
                Some(last) if last.1 >= a => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.done = merged;
    }
}

/// `$XDG_STATE_HOME/mpgw`, else `~/.local/state/mpgw`.
pub fn state_dir() -> Result<PathBuf> {
    let var = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_STATE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".local/state")))
        .map(|d| d.join("mpgw"))
        .ok_or_else(|| {
            Error::Usage(
                "neither XDG_STATE_HOME nor HOME is set: nowhere to keep the upload journal".into(),
            )
        })
}

/// The upload journal's path for these identifying parts (endpoint, bucket, key, file…).
pub fn upload_path(parts: &[&str]) -> Result<PathBuf> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let name = format!("{}.json", &hex::encode(h.finalize())[..32]);
    Ok(state_dir()?.join("uploads").join(name))
}

/// `FILE.<suffix>` beside `file`.
pub fn beside(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{suffix}"));
    file.with_file_name(name)
}

pub fn load<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes atomically and durably (temp file, fsync, rename, directory fsync).
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(Error::local(dir))?;
    let tmp = beside(path, "tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(Error::local(path))
}

/// Removes a journal; one that is already gone is fine.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::local(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_ranges_merge() {
        let mut j = DownloadJournal {
            endpoint: String::new(),
            bucket: String::new(),
            key: String::new(),
            etag: String::new(),
            size: 0,
            part_size: 1,
            done: Vec::new(),
        };
        for n in [3, 1, 2, 7, 5, 6, 2] {
            j.mark_done(n);
        }
        assert_eq!(j.done, vec![(1, 4), (5, 8)]);
        assert!(j.is_done(6) && !j.is_done(4) && !j.is_done(8));
        j.mark_done(4);
        assert_eq!(j.done, vec![(1, 8)]);
    }

    #[test]
    fn identity_sees_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, vec![7u8; 3 << 20]).unwrap();
        let a = FileIdentity::of_blocking(f.clone()).unwrap();
        assert_eq!(a, FileIdentity::of_blocking(f.clone()).unwrap());
        // Same size, last byte changed, mtime restored: the sample hash still differs.
        let mut data = vec![7u8; 3 << 20];
        data[(3 << 20) - 1] = 8;
        std::fs::write(&f, data).unwrap();
        let b = FileIdentity::of_blocking(f).unwrap();
        assert_ne!(a.sample_sha256, b.sample_sha256);
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.json");
        save(&p, &vec![1, 2, 3]).unwrap();
        assert_eq!(load::<Vec<u32>>(&p), Some(vec![1, 2, 3]));
        assert_eq!(beside(&p, "tmp"), dir.path().join("a/b.json.tmp"));
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(load::<Vec<u32>>(&p), None);
    }
}
