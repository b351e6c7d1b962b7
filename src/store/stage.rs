//! One stage of a body's way to disk (hashing it, or writing it): a job on the I/O pool that
//! takes the chunks queued for it until none is left, then ends and leaves its state for the
//! next job. The request's task queues chunks as they arrive, so a thread works only while
//! bytes are there (never waiting for the client), and a stage that has a backlog keeps its
//! thread: no hand-off between chunks, which cost a thread wake-up and a task wake-up each.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use super::io::IoPool;

/// What a stage does with one chunk.
pub(super) type Work<S> = fn(&mut S, &Bytes) -> std::io::Result<()>;

pub(super) struct Stage<S> {
    inner: Arc<Mutex<Inner<S>>>,
    io: IoPool,
    work: Work<S>,
    /// Told each time the stage finishes a chunk, goes idle or fails.
    wake: Arc<Notify>,
}

struct Inner<S> {
    queue: VecDeque<Bytes>,
    /// Home while no job runs; gone for good after a failure.
    state: Option<S>,
    /// Bytes the stage has finished with.
    done: u64,
    failed: Option<std::io::Error>,
}

impl<S: Send + 'static> Stage<S> {
    pub(super) fn new(io: IoPool, state: S, work: Work<S>, wake: Arc<Notify>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                queue: VecDeque::new(),
                state: Some(state),
                done: 0,
                failed: None,
            })),
            io,
            work,
            wake,
        }
    }

    /// Queues `chunk`, starting a job when none runs.
    pub(super) fn push(&self, chunk: Bytes) {
        let idle = {
            let mut g = lock(&self.inner);
            g.queue.push_back(chunk);
            g.state.take()
        };
        if let Some(state) = idle {
            let (inner, work, wake) = (self.inner.clone(), self.work, self.wake.clone());
            self.io.spawn(move || run(&inner, state, work, &wake));
        }
    }

    /// The bytes finished so far, or the stage's failure.
    pub(super) fn progress(&self) -> std::io::Result<u64> {
        let mut g = lock(&self.inner);
        match g.failed.take() {
            Some(e) => {
                g.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
            None => Ok(g.done),
        }
    }

    /// The state, once every queued chunk is done.
    pub(super) fn finish(&self) -> Option<S> {
        let mut g = lock(&self.inner);
        if g.queue.is_empty() {
            g.state.take()
        } else {
            None
        }
    }
}

fn run<S>(inner: &Mutex<Inner<S>>, mut state: S, work: Work<S>, wake: &Notify) {
    // A panicking `work` must still tell the task, or it would wait for this stage forever.
    let mut alarm = Alarm {
        inner,
        wake,
        armed: true,
    };
    let mut finished = 0u64;
    loop {
        let next = {
            let mut g = lock(inner);
            g.done += finished;
            match g.queue.pop_front() {
                Some(c) => c,
                None => {
                    g.state = Some(state);
                    drop(g);
                    alarm.armed = false;
                    wake.notify_one();
                    return;
                }
            }
        };
        if finished > 0 {
            wake.notify_one();
        }
        if let Err(e) = work(&mut state, &next) {
            let mut g = lock(inner);
            g.failed = Some(e);
            g.queue.clear();
            drop(g);
            alarm.armed = false;
            wake.notify_one();
            return;
        }
        finished = next.len() as u64;
    }
}

struct Alarm<'a, S> {
    inner: &'a Mutex<Inner<S>>,
    wake: &'a Notify,
    armed: bool,
}

impl<S> Drop for Alarm<'_, S> {
    fn drop(&mut self) {
        if self.armed {
            let mut g = lock(self.inner);
            g.failed = Some(std::io::Error::other("I/O job panicked"));
            g.queue.clear();
            drop(g);
            self.wake.notify_one();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
