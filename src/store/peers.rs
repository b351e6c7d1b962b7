//! Which gateway processes share this data dir right now.
//!
//! Each gateway holds an exclusive `flock` on its own file under `<data>/gateways/` for as long
//! as it runs; the kernel drops the lock when the process dies, SIGKILL included. At start-up
//! this tells recovery whether a Complete left half-done can only be this data dir's previous
//! (dead) gateway's, and so be settled at once, or may still be running on a live peer.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::model::random_hex;

/// This gateway's registration; dropping it releases the lock and removes the file.
#[derive(Debug)]
pub struct Registration {
    file: File,
    path: std::path::PathBuf,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = flock(&self.file, FlockOperation::Unlock);
    }
}

/// Registers this gateway and reports whether any other live gateway uses `data_dir`. Files of
/// dead gateways are removed on the way. Two gateways starting together both see each other.
pub fn register(data_dir: &Path) -> std::io::Result<(Registration, bool)> {
    let dir = data_dir.join("gateways");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.lock", random_hex(8)));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    flock(&file, FlockOperation::NonBlockingLockExclusive)?;
    let me = Registration { file, path };
    let mut others = false;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path == me.path {
            continue;
        }
        let Ok(other) = File::open(&path) else {
            continue; // removed meanwhile: its gateway stopped
        };
        match flock(&other, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // Nobody holds it: a gateway that died without cleaning up.
                let _ = std::fs::remove_file(&path);
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => others = true,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((me, others))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_peers_are_seen_and_dead_ones_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let (first, others) = register(dir.path()).unwrap();
        assert!(!others, "alone at first");
        let (second, others) = register(dir.path()).unwrap();
        assert!(others, "the first gateway holds its lock");
        drop(first);
        let (third, others) = register(dir.path()).unwrap();
        assert!(others, "the second is still alive");
        drop((second, third));
        // A file left by a gateway that died (no lock held) does not count, and is removed.
        let stale = dir.path().join("gateways").join("dead.lock");
        std::fs::write(&stale, b"").unwrap();
        let (_me, others) = register(dir.path()).unwrap();
        assert!(!others);
        assert!(!stale.exists());
    }
}
