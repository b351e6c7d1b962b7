//! A lane: one request's sequential work on the I/O pool (hashing its body, or writing it),
//! run by short jobs that never wait for the client.
//!
//! The request's task pushes chunks as they arrive. When the lane is idle, a push hands its
//! state to a job on the pool; the job works through every chunk queued, and when the queue is
//! empty it parks the state again and ends. So a fast client keeps one job busy without a
//! round trip per batch, and a slow one holds a parked state and queued bytes, never a thread.
//! A job also ends after [`JOB_BYTES`] and queues its sequel at the back of the pool, so one
//! fast stream cannot keep a pool thread from other requests.
//!
//! The bytes a lane may hold are bounded by the caller's budget (see `disk::IN_FLIGHT`): each
//! chunk carries its share of the budget, given back when every lane is done with it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::io::IoPool;

/// Bytes one job works through before it makes way for other requests' jobs.
const JOB_BYTES: usize = 4 << 20;

/// A body chunk shared by the lanes of one request (no copy); its budget returns to the request
/// when every lane has dropped it.
#[derive(Debug)]
pub struct Chunk {
    pub bytes: Bytes,
    pub _budget: OwnedSemaphorePermit,
}

type Work<S> = Box<dyn Fn(&mut S, &[u8]) -> std::io::Result<()> + Send + Sync>;

struct Inner<S> {
    queue: VecDeque<Arc<Chunk>>,
    /// Home while no job runs (None while one does, or after a failure).
    state: Option<S>,
    running: bool,
    failed: Option<std::io::Error>,
}

struct Shared<S> {
    inner: Mutex<Inner<S>>,
    /// Signalled when a job parks the state or fails.
    idle: Notify,
    work: Work<S>,
}

/// One request's lane. Dropping it drops the chunks still queued; a job running then stops at
/// its next look at the queue.
pub struct Lane<S: Send + 'static> {
    shared: Arc<Shared<S>>,
    io: IoPool,
}

impl<S: Send + 'static> Lane<S> {
    /// A lane that runs `work` on each chunk, in order, with `state`.
    pub fn new(
        io: IoPool,
        state: S,
        work: impl Fn(&mut S, &[u8]) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    queue: VecDeque::new(),
                    state: Some(state),
                    running: false,
                    failed: None,
                }),
                idle: Notify::new(),
                work: Box::new(work),
            }),
            io,
        }
    }

    /// Queues `chunk`, starting a job if none runs. Fails if the lane has failed.
    pub fn push(&self, chunk: Arc<Chunk>) -> std::io::Result<()> {
        let mut inner = lock(&self.shared.inner);
        if let Some(e) = inner.failed.take() {
            return Err(e);
        }
        if inner.running {
            inner.queue.push_back(chunk);
            return Ok(());
        }
        let Some(state) = inner.state.take() else {
            return Err(std::io::Error::other("I/O lane failed"));
        };
        inner.queue.push_back(chunk);
        inner.running = true;
        drop(inner);
        let (shared, io) = (self.shared.clone(), self.io.clone());
        self.io.spawn(move || drain(shared, state, io));
        Ok(())
    }

    /// Waits until every queued chunk is done; hands back the state, or the lane's error.
    pub async fn finish(&self) -> std::io::Result<S> {
        loop {
            {
                let mut inner = lock(&self.shared.inner);
                if let Some(e) = inner.failed.take() {
                    return Err(e);
                }
                if !inner.running {
                    return inner
                        .state
                        .take()
                        .ok_or_else(|| std::io::Error::other("I/O lane failed"));
                }
            }
            // A signal given between the look above and here is kept as a permit.
            self.shared.idle.notified().await;
        }
    }
}

impl<S: Send + 'static> Drop for Lane<S> {
    fn drop(&mut self) {
        lock(&self.shared.inner).queue.clear();
    }
}

/// The job: works through the queue until it is empty (parks the state), a chunk fails (keeps
/// the error), or `JOB_BYTES` are done (queues its sequel).
fn drain<S: Send + 'static>(shared: Arc<Shared<S>>, mut state: S, io: IoPool) {
    let mut done = 0usize;
    loop {
        let batch: Vec<Arc<Chunk>> = {
            let mut inner = lock(&shared.inner);
            if inner.queue.is_empty() {
                inner.state = Some(state);
                inner.running = false;
                drop(inner);
                shared.idle.notify_one();
                return;
            }
            inner.queue.drain(..).collect()
        };
        let mut batch = batch.into_iter();
        while let Some(chunk) = batch.next() {
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (shared.work)(&mut state, &chunk.bytes)
            }))
            .unwrap_or_else(|_| Err(std::io::Error::other("I/O job panicked")));
            if let Err(e) = res {
                // The rest of the batch goes first, so that its budget is back by the time
                // the caller hears of the failure.
                drop((chunk, batch));
                let mut inner = lock(&shared.inner);
                inner.failed = Some(e);
                inner.queue.clear();
                inner.running = false;
                drop(inner);
                shared.idle.notify_one();
                return;
            }
            done += chunk.bytes.len();
            // `chunk` drops here: its budget returns as soon as every lane is past it.
        }
        if done >= JOB_BYTES {
            let next = io.clone();
            io.spawn(move || drain(shared, state, next));
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    fn chunk(budget: &Arc<Semaphore>, b: &'static [u8]) -> Arc<Chunk> {
        Arc::new(Chunk {
            bytes: Bytes::from_static(b),
            _budget: budget.clone().try_acquire_owned().unwrap(),
        })
    }

    #[tokio::test]
    async fn works_in_order_and_returns_budget() {
        let budget = Arc::new(Semaphore::new(8));
        let lane = Lane::new(IoPool::new(2), Vec::new(), |v: &mut Vec<u8>, b| {
            v.extend_from_slice(b);
            Ok(())
        });
        for part in [&b"ab"[..], b"cd", b"ef"] {
            lane.push(chunk(&budget, part)).unwrap();
        }
        assert_eq!(lane.finish().await.unwrap(), b"abcdef");
        assert_eq!(budget.available_permits(), 8);
    }

    #[tokio::test]
    async fn a_failure_is_reported_and_stops_the_lane() {
        let budget = Arc::new(Semaphore::new(8));
        let lane = Lane::new(IoPool::new(2), 0usize, |n: &mut usize, _| {
            *n += 1;
            if *n == 2 {
                Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
            } else {
                Ok(())
            }
        });
        // The error comes back once: from a push made after it, or else from `finish`.
        let mut first = None;
        for _ in 0..3 {
            if let Err(e) = lane.push(chunk(&budget, b"x")) {
                first.get_or_insert(e);
            }
        }
        let e = match first {
            Some(e) => e,
            None => lane.finish().await.unwrap_err(),
        };
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        assert!(lane.finish().await.is_err());
        assert!(lane.push(chunk(&budget, b"y")).is_err());
        assert_eq!(budget.available_permits(), 8);
    }
}
