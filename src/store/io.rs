//! The disk I/O pool (`--io-threads`): a fixed number of threads that run short jobs for the
//! data path (hash and write one batch of body bytes, read one chunk of a GET). A job is handed
//! over only once its bytes are there, so no thread ever waits for a client's next bytes or for
//! a client to read: a slow client holds buffers, never a thread. The pool is separate from
//! tokio's blocking pool, which the embedded state store uses, so state-store calls never queue
//! behind body I/O.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
struct Shared {
    queue: mpsc::Sender<Job>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// Threads started, and how many of them wait for a job now.
    threads: Mutex<(usize, usize)>,
    max: usize,
}

/// A bounded pool of I/O threads, started on demand up to `max`. Cloning shares it.
#[derive(Clone, Debug)]
pub struct IoPool {
    shared: Arc<Shared>,
}

/// Default of `--io-threads`.
pub const DEFAULT_THREADS: usize = 32;

impl IoPool {
    pub fn new(max: usize) -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            shared: Arc::new(Shared {
                queue: tx,
                jobs: Arc::new(Mutex::new(rx)),
                threads: Mutex::new((0, 0)),
                max: max.max(1),
            }),
        }
    }

    /// Runs `f` on the pool; the result comes back to the awaiting task. An error means the
    /// job did not run to its end (it panicked).
    pub async fn run<R, F>(&self, f: F) -> std::io::Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.submit(job);
        rx.await
            .map_err(|_| std::io::Error::other("I/O job did not finish"))
    }

    /// Runs `f` on the pool, without waiting for it.
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        self.submit(Box::new(f));
    }

    fn submit(&self, job: Job) {
        {
            let mut t = lock(&self.shared.threads);
            if t.1 == 0 && t.0 < self.shared.max {
                t.0 += 1;
                t.1 += 1;
                let jobs = self.shared.jobs.clone();
                let weak = Arc::downgrade(&self.shared);
                let spawned = std::thread::Builder::new()
                    .name("mpgw-io".into())
                    .spawn(move || worker(&jobs, &weak));
                if spawned.is_err() {
                    t.0 -= 1;
                    t.1 -= 1;
                }
            }
        }
        let _ = self.shared.queue.send(job);
    }
}

impl Default for IoPool {
    fn default() -> Self {
        Self::new(DEFAULT_THREADS)
    }
}

/// A worker takes jobs until the pool is gone. It holds only the receiving end and a weak
/// reference, so dropping the last `IoPool` (and with it the sender) ends every worker.
fn worker(jobs: &Mutex<mpsc::Receiver<Job>>, weak: &std::sync::Weak<Shared>) {
    loop {
        let job = lock(jobs).recv();
        let Ok(job) = job else { return };
        if let Some(s) = weak.upgrade() {
            lock(&s.threads).1 -= 1;
        }
        // A panicking job drops its result sender: its caller sees an error, the worker goes on.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        if let Some(s) = weak.upgrade() {
            lock(&s.threads).1 += 1;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_at_most_max_threads() {
        let pool = IoPool::new(2);
        let names: Vec<_> = futures_util::future::join_all((0..16).map(|_| {
            pool.run(|| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                std::thread::current().id()
            })
        }))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
        let distinct: std::collections::HashSet<_> = names.into_iter().collect();
        assert!(distinct.len() <= 2, "{distinct:?}");
        assert!(pool.run(|| panic!("boom")).await.is_err());
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
