//! A GET's reads: short jobs on the I/O pool that read a bounded number of chunks ahead of the
//! client, and never wait for it.
//!
//! The chunks read go into a small channel to the response. A job reads chunks while the
//! channel has room under the current read-ahead, then parks its cursor and ends; when the
//! response takes a chunk, it restarts a parked cursor. A client that does not read therefore
//! holds a parked cursor and the chunks already read, never a thread; and no read starts before
//! the response is first polled.
//!
//! Memory per GET is bounded: at most [`AHEAD`] chunks of [`READ_CHUNK`] wait in the channel
//! (plus the one the connection is sending). A GET starts small (one [`FIRST_CHUNK`] ahead, as
//! much as before), and reads bigger chunks further ahead only once its client has taken
//! [`GROW_AFTER`] bytes: so a stalled reader costs ~1 MiB, and a fast one gets fewer, larger
//! reads with fewer stalls.

use std::collections::VecDeque;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::io::IoPool;

/// Read size until the client has taken `GROW_AFTER` bytes (one chunk ahead).
pub const FIRST_CHUNK: usize = 512 << 10;
/// Read size afterwards, large reads keep syscalls and job hand-overs few.
pub const READ_CHUNK: usize = 1 << 20;
/// Chunks read ahead afterwards.
pub const AHEAD: usize = 3;
/// Bytes a client takes before its GET reads bigger chunks further ahead.
pub const GROW_AFTER: u64 = 8 << 20;
/// Chunks one job reads before it makes way for other requests' jobs.
const JOB_CHUNKS: usize = 8;

type Item = std::io::Result<Bytes>;

/// A file being read: its path (for errors), handle, and bytes left.
struct OpenFile {
    path: PathBuf,
    file: std::fs::File,
    left: u64,
}

/// Where the reading is: the files still to read, the one open now, and the channel.
struct Cursor {
    tx: mpsc::Sender<Item>,
    plan: VecDeque<(PathBuf, u64, u64)>,
    open: Option<OpenFile>,
}

impl Cursor {
    /// Reads the next chunk of at most `size` bytes; None at the end.
    fn next_chunk(&mut self, size: usize) -> Option<Item> {
        let mut o = match self.open.take() {
            Some(o) if o.left > 0 => o,
            _ => {
                let (path, from, to) = self.plan.pop_front()?;
                let opened = std::fs::File::open(&path).and_then(|mut f| {
                    f.seek(SeekFrom::Start(from))?;
                    Ok(f)
                });
                match opened {
                    Ok(file) => OpenFile {
                        path,
                        file,
                        left: to - from,
                    },
                    Err(e) => return Some(Err(e)),
                }
            }
        };
        let want = usize::try_from(o.left.min(size as u64)).unwrap_or(size);
        // Read into spare capacity: zero-filling the buffer first cost 5.5% of a GET's
        // instructions.
        let mut buf = Vec::with_capacity(want);
        match (&mut o.file).take(want as u64).read_to_end(&mut buf) {
            Err(e) => Some(Err(e)),
            Ok(0) => Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than its record", o.path.display()),
            ))),
            Ok(n) => {
                o.left -= n as u64;
                self.open = Some(o);
                Some(Ok(Bytes::from(buf)))
            }
        }
    }
}

struct Shared {
    /// The cursor while no job runs it (None while one does, or at the end).
    parked: Mutex<Option<Cursor>>,
    /// Set once the client has taken `GROW_AFTER` bytes.
    grown: AtomicBool,
}

/// The stream of a GET's bytes; `G` (a guard) lives as long as it does.
pub struct ReadAhead<G> {
    rx: mpsc::Receiver<Item>,
    shared: Arc<Shared>,
    io: IoPool,
    taken: u64,
    _guard: G,
}

/// Reads `plan` (file, from, to), in order, on `io`.
pub fn read_ahead<G>(io: IoPool, plan: VecDeque<(PathBuf, u64, u64)>, guard: G) -> ReadAhead<G> {
    let (tx, rx) = mpsc::channel(AHEAD);
    ReadAhead {
        rx,
        shared: Arc::new(Shared {
            parked: Mutex::new(Some(Cursor {
                tx,
                plan,
                open: None,
            })),
            grown: AtomicBool::new(false),
        }),
        io,
        taken: 0,
        _guard: guard,
    }
}

impl<G> ReadAhead<G> {
    /// Restarts the reading if it is parked.
    fn kick(&self) {
        let parked = lock(&self.shared.parked).take();
        if let Some(cur) = parked {
            let (shared, io) = (self.shared.clone(), self.io.clone());
            self.io.spawn(move || fill(&shared, cur, &io));
        }
    }
}

impl<G: Unpin> Stream for ReadAhead<G> {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = self.get_mut();
        let polled = this.rx.poll_recv(cx);
        match &polled {
            Poll::Ready(None) => {}
            Poll::Ready(Some(item)) => {
                if let Ok(b) = item {
                    this.taken += b.len() as u64;
                    if this.taken >= GROW_AFTER {
                        this.shared.grown.store(true, Ordering::Relaxed);
                    }
                }
                // After the receive: a job that found no room parks first, under the lock.
                this.kick();
            }
            Poll::Pending => this.kick(),
        }
        polled
    }
}

/// The job: reads chunks while the channel has room under the read-ahead, then parks the
/// cursor; at the end or on an error it drops the cursor, which closes the channel.
fn fill(shared: &Arc<Shared>, mut cur: Cursor, io: &IoPool) {
    for _ in 0..JOB_CHUNKS {
        let grown = shared.grown.load(Ordering::Relaxed);
        let (ahead, size) = if grown {
            (AHEAD, READ_CHUNK)
        } else {
            (1, FIRST_CHUNK)
        };
        let permit = {
            // Deciding to park and parking are one step under the lock, which `kick` takes
            // after each receive, so a freed slot is never missed.
            let mut parked = lock(&shared.parked);
            let queued = cur.tx.max_capacity() - cur.tx.capacity();
            if queued >= ahead {
                *parked = Some(cur);
                return;
            }
            match cur.tx.clone().try_reserve_owned() {
                Ok(p) => p,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    *parked = Some(cur);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return, // the client went away
            }
        };
        match cur.next_chunk(size) {
            None => return,
            Some(Ok(b)) => {
                permit.send(Ok(b));
            }
            Some(Err(e)) => {
                permit.send(Err(e));
                return;
            }
        }
    }
    let (shared, next) = (shared.clone(), io.clone());
    io.spawn(move || fill(&shared, cur, &next));
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    fn file(dir: &std::path::Path, name: &str, len: usize, seed: u8) -> (PathBuf, Vec<u8>) {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    #[tokio::test]
    async fn reads_every_byte_in_order_past_the_growth() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ab) = file(dir.path(), "a", 5 << 20, 1);
        let (b, bb) = file(dir.path(), "b", 7 << 20, 2);
        let plan = VecDeque::from([(a, 3, 5 << 20), (b, 0, (7 << 20) - 5)]);
        let mut got = Vec::new();
        let mut s = read_ahead(IoPool::new(2), plan, ());
        while let Some(chunk) = s.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= READ_CHUNK);
            got.extend_from_slice(&chunk);
        }
        let mut want = ab[3..].to_vec();
        want.extend_from_slice(&bb[..bb.len() - 5]);
        assert!(got == want, "{} bytes against {}", got.len(), want.len());
    }

    #[tokio::test]
    async fn reads_no_further_ahead_than_allowed_while_the_client_waits() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = file(dir.path(), "a", 16 << 20, 3);
        let mut s = read_ahead(IoPool::new(2), VecDeque::from([(a, 0, 16 << 20)]), ());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(s.rx.len(), 0, "nothing is read before the first poll");
        let first = s.next().await.unwrap().unwrap();
        assert_eq!(first.len(), FIRST_CHUNK);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            s.rx.len(),
            1,
            "one chunk ahead until the client has taken more"
        );
        let mut taken = first.len() as u64;
        while taken < GROW_AFTER {
            taken += s.next().await.unwrap().unwrap().len() as u64;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(s.rx.len(), AHEAD, "further ahead once it has");
    }

    #[tokio::test]
    async fn a_short_file_is_an_error_and_ends_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = file(dir.path(), "a", 1000, 4);
        let mut s = read_ahead(IoPool::new(2), VecDeque::from([(a, 0, 2000)]), ());
        assert_eq!(s.next().await.unwrap().unwrap().len(), 1000);
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(s.next().await.is_none());
    }
}
