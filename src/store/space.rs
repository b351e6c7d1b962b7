//! Room on the data disk: the free-space reserve (`--min-free-space`) and the room that writes
//! in flight hold.
//!
//! A statvfs reading alone is a point in time: writes admitted one after another each see the
//! same free space and together go below the reserve. So every write holds room from its
//! admission until it ends (a [`Reservation`], given back when dropped), and admission counts
//! what is held: free space (statvfs) − room held by writes in flight ≥ reserve + length.
//! A write's bytes that are already on disk are in the reading's "used" too, so as a write
//! proceeds it reports them ("landed") and stops holding them: a long upload is never counted
//! twice. A body of unknown length holds more room as it streams, a step at a time, each step
//! checked like an admission.
//!
//! The ledger is per process. Gateways sharing a data dir see each other's writes only once they
//! are on disk (in the statvfs reading), not the room they hold.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one free-space reading may let writes through: a statvfs per write is cheap, but
/// once a second is cheaper still. What writes here put on disk meanwhile is subtracted from
/// it; a refusal always rests on a fresh reading, so freed space is usable at once.
const READING_TTL: Duration = Duration::from_secs(1);
/// How much more room a body takes at a time once it runs past what it holds (a body of unknown
/// length, or one longer than announced).
const GROW_STEP: u64 = 4 << 20;
/// A write reports what it has put on disk in steps of this much: one lock per step, not per
/// chunk. Until reported, its written bytes count twice (held and in the reading): on the safe
/// side.
const LAND_STEP: u64 = 1 << 20;

/// The reserve and the room held by this process's writes in flight.
#[derive(Debug)]
pub(crate) struct Space {
    reserve: u64,
    measure: Measure,
    ledger: Mutex<Ledger>,
}

#[derive(Debug)]
enum Measure {
    /// statvfs of this directory: the space left to unprivileged users.
    Statvfs(PathBuf),
    /// A free-space figure set by the test.
    #[cfg(test)]
    Fixed(Arc<AtomicU64>),
}

#[derive(Debug, Default)]
struct Ledger {
    /// Room held by writes in flight and not yet on disk (what no reading can see).
    held: u64,
    /// Bytes that writes reported on disk since the process started (only grows).
    landed: u64,
    reading: Option<Reading>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    free: u64,
    /// `Ledger::landed` when the reading was taken: what landed since is not in `free`.
    landed: u64,
}

impl Ledger {
    /// Free bytes by the reading, less what writes here put on disk since.
    fn free(&self, r: Reading) -> u64 {
        r.free.saturating_sub(self.landed - r.landed)
    }

    /// Room above the reserve, held room counted; None when already below the reserve.
    fn room(&self, r: Reading, reserve: u64) -> Option<u64> {
        self.free(r).checked_sub(self.held)?.checked_sub(reserve)
    }
}

/// A poisoned lock still guards consistent data: every critical section is a few additions.
fn lock(m: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Space {
    pub(crate) fn new(reserve: u64, dir: PathBuf) -> Self {
        Self {
            reserve,
            measure: Measure::Statvfs(dir),
            ledger: Mutex::default(),
        }
    }

    fn read_free(&self) -> std::io::Result<u64> {
        match &self.measure {
            Measure::Statvfs(dir) => {
                let st = rustix::fs::statvfs(dir)?;
                Ok(st.f_bavail.saturating_mul(st.f_frsize))
            }
            #[cfg(test)]
            Measure::Fixed(free) => Ok(free.load(Ordering::SeqCst)),
        }
    }

    /// Holds `need` bytes of room, and up to `want` if there is that much; fails with
    /// `StorageFull` when `need` would take the disk below the reserve. If the disk cannot be
    /// measured the write is let through (it will meet the real error, if any).
    fn hold(&self, need: u64, want: u64) -> std::io::Result<u64> {
        let mut l = lock(&self.ledger);
        let cached = l
            .reading
            .filter(|r| r.at.elapsed() < READING_TTL)
            .and_then(|r| l.room(r, self.reserve))
            .filter(|room| *room >= need);
        let room = match cached {
            Some(room) => room,
            None => {
                let free = match self.read_free() {
                    Ok(free) => free,
                    Err(e) => {
                        tracing::warn!(error = %e, "statvfs of the data dir failed");
                        l.held = l.held.saturating_add(want);
                        return Ok(want);
                    }
                };
                let r = Reading {
                    at: Instant::now(),
                    free,
                    landed: l.landed,
                };
                l.reading = Some(r);
                match l.room(r, self.reserve) {
                    Some(room) if room >= need => room,
                    _ => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::StorageFull,
                            format!(
                                "{free} bytes free, {} held by writes in flight, {need} to \
                                 write, reserve {} bytes",
                                l.held, self.reserve
                            ),
                        ));
                    }
                }
            }
        };
        let got = want.min(room).max(need);
        l.held = l.held.saturating_add(got);
        Ok(got)
    }

    /// `bytes` of held room are now on disk. (Saturating: only a let-through of a length near
    /// `u64::MAX` on an unmeasurable disk can make the sums overflow.)
    fn land(&self, bytes: u64) {
        let mut l = lock(&self.ledger);
        l.held = l.held.saturating_sub(bytes);
        l.landed = l.landed.saturating_add(bytes);
    }

    /// A write ended: its `unused` bytes of room go back, of which `landed` reached the disk.
    fn release(&self, unused: u64, landed: u64) {
        let mut l = lock(&self.ledger);
        l.held = l.held.saturating_sub(unused);
        l.landed = l.landed.saturating_add(landed);
    }
}

/// Room on the data disk held for one write, from its admission until it ends: dropping it
/// (committed, failed or cancelled) gives back what the write holds.
#[derive(Debug)]
#[must_use = "the room is given back when dropped"]
pub struct Reservation {
    space: Option<Arc<Space>>,
    /// Room held, bytes already on disk included.
    held: u64,
    /// Of `held`, the bytes the ledger already counts as on disk.
    landed: u64,
    /// Bytes the writer has put in the file: set by the writer, read here.
    written: Arc<AtomicU64>,
}

impl Reservation {
    pub(crate) fn hold(space: Option<&Arc<Space>>, len: u64) -> std::io::Result<Self> {
        let held = match space {
            Some(s) => s.hold(len, len)?,
            None => 0,
        };
        Ok(Self {
            space: space.cloned(),
            held,
            landed: 0,
            written: Arc::default(),
        })
    }

    /// The counter the writer adds the bytes it has written to.
    pub(crate) fn written(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// Makes the room held cover `received` bytes of body before they go to the disk, taking
    /// more (`GROW_STEP` at a time) when it does not; fails with `StorageFull`, the answer of a
    /// full disk, when the disk has no more room above the reserve. Also reports what the
    /// writer has put on disk so far.
    pub(crate) fn cover(&mut self, received: u64) -> std::io::Result<()> {
        let Some(space) = &self.space else {
            return Ok(());
        };
        let on_disk = self.written.load(Ordering::Relaxed).min(self.held);
        if on_disk - self.landed >= LAND_STEP {
            space.land(on_disk - self.landed);
            self.landed = on_disk;
        }
        if received > self.held {
            let need = received - self.held;
            self.held = self
                .held
                .saturating_add(space.hold(need, need.max(GROW_STEP))?);
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(space) = &self.space {
            let on_disk = self.written.load(Ordering::Relaxed).min(self.held);
            space.release(self.held - self.landed, on_disk - self.landed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A space whose free bytes the test sets, with an 8 MiB reserve.
    fn space(free: u64) -> (Arc<Space>, Arc<AtomicU64>) {
        let f = Arc::new(AtomicU64::new(free));
        let s = Space {
            reserve: 8 * MIB,
            measure: Measure::Fixed(f.clone()),
            ledger: Mutex::default(),
        };
        (Arc::new(s), f)
    }

    fn held(s: &Space) -> u64 {
        lock(&s.ledger).held
    }

    fn full(r: std::io::Result<Reservation>) -> bool {
        r.is_err_and(|e| e.kind() == std::io::ErrorKind::StorageFull)
    }

    #[test]
    fn no_space_no_refusal() {
        let mut r = Reservation::hold(None, u64::MAX).unwrap();
        r.cover(u64::MAX).unwrap();
    }

    /// Admissions add up: writes that each fit but not together are refused once the room is
    /// held, and dropping one gives its room back.
    #[test]
    fn holds_add_up_and_go_back() {
        let (s, _) = space(32 * MIB);
        let a = Reservation::hold(Some(&s), 10 * MIB).unwrap();
        let b = Reservation::hold(Some(&s), 10 * MIB).unwrap();
        assert!(full(Reservation::hold(Some(&s), 10 * MIB)));
        assert!(Reservation::hold(Some(&s), 4 * MIB).is_ok(), "4 MiB fit");
        assert_eq!(held(&s), 20 * MIB);
        drop(a);
        assert!(Reservation::hold(Some(&s), 10 * MIB).is_ok());
        drop(b);
        assert_eq!(held(&s), 0);
        // Below the reserve even an empty write is refused (CopyObject, unknown lengths).
        let (low, _) = space(7 * MIB);
        assert!(full(Reservation::hold(Some(&low), 0)));
        let (edge, _) = space(8 * MIB);
        assert!(Reservation::hold(Some(&edge), 0).is_ok());
    }

    /// A write's bytes on disk leave the held room once reported, so a fresh reading (which
    /// sees them as used) does not count them twice; a cached reading is lowered by them.
    #[test]
    fn written_bytes_count_once() {
        let (s, free) = space(32 * MIB);
        let mut w = Reservation::hold(Some(&s), 20 * MIB).unwrap();
        // 16 MiB written: the disk shows them, the write reports them.
        w.written().fetch_add(16 * MIB, Ordering::Relaxed);
        free.store(16 * MIB, Ordering::SeqCst);
        w.cover(16 * MIB).unwrap();
        assert_eq!(held(&s), 4 * MIB);
        // The cached reading (32 MiB) less 16 landed, less 4 held, less the reserve: 4 MiB.
        assert!(Reservation::hold(Some(&s), 4 * MIB).is_ok());
        assert!(
            full(Reservation::hold(Some(&s), 5 * MIB)),
            "fresh: 16 - 4 - 8"
        );
        drop(w);
        assert_eq!(held(&s), 0);
        assert!(Reservation::hold(Some(&s), 8 * MIB).is_ok(), "16 - 8");
    }

    /// A body of unknown length takes room as it streams and is refused at the reserve.
    #[test]
    fn unknown_length_grows_then_refuses() {
        let (s, free) = space(20 * MIB);
        let mut w = Reservation::hold(Some(&s), 0).unwrap();
        w.cover(MIB / 2).unwrap();
        assert_eq!(held(&s), GROW_STEP, "a step at a time");
        let other = Reservation::hold(Some(&s), 6 * MIB).unwrap();
        // Room left: 20 - 8 - 6 = 6 MiB, of which this write holds 4 MiB.
        w.cover(5 * MIB).unwrap();
        assert_eq!(held(&s), 12 * MIB, "the rest only");
        w.written().fetch_add(6 * MIB, Ordering::Relaxed);
        free.store(14 * MIB, Ordering::SeqCst);
        let e = w.cover(6 * MIB + 1).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        drop(other);
        w.cover(6 * MIB + 1).unwrap();
        drop(w);
        assert_eq!(held(&s), 0);
    }
}
