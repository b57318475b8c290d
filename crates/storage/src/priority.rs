//! The CPU priority of background work while writes arrive.
//!
//! During a bulk load, index builds (the optimizer's threads and the lists of sealed
//! segments) compete for the cores with the writes themselves: every request step waits
//! behind them in the run queue, and the load runs at a fraction of its speed. None of that
//! building can finish before the load does (new segments keep arriving), so while writes
//! arrive the building threads run at a lower priority (their nice value raised by
//! [`background_nice`], as RocksDB lowers its compaction threads), and once writes have
//! paused for [`WRITES_PAUSED`] they are put back level with the requests, so that queries
//! on a collection that has stopped changing do not delay its indexing. A lower priority only
//! decides who runs first when both are ready: the builds still take every core the writes
//! leave idle.
//!
//! Linux keeps a nice value per thread, so only the registered threads change. Putting a
//! thread back up needs `CAP_SYS_NICE` or a `RLIMIT_NICE` that allows it (containers drop
//! that capability unless given it: `cap_add: [SYS_NICE]`); where the process may not, the
//! threads are never lowered, since they could not be put back. Elsewhere than Linux this
//! does nothing.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What background threads add to their nice value while writes arrive, unless told
/// otherwise: nothing. Lowering them speeds a bulk load (1.1x to 1.5x on glove-50-angular,
/// `docs/benchmarks.md`) but defers indexing work; where queries follow the load, that work
/// then competes with them and green comes later (1.2x), so it is asked for, not assumed.
/// At 10 a busy building thread gets about a tenth of a core that a request thread also
/// wants (the kernel weighs nice 0 against nice 10 as 1024 to 110).
pub const DEFAULT_BACKGROUND_NICE: i32 = 0;

/// How long writes must have paused before background threads are put back.
pub const WRITES_PAUSED: Duration = Duration::from_secs(1);

static BACKGROUND_NICE: AtomicI32 = AtomicI32::new(DEFAULT_BACKGROUND_NICE);

/// The registered threads, as (thread id, nice value when registered), and whether they are
/// lowered now; changed together under the lock.
static THREADS: Mutex<Registry> = Mutex::new(Registry {
    threads: Vec::new(),
    lowered: false,
});
/// Read without the lock on every write, to skip it when nothing is to change.
static LOWERED: AtomicBool = AtomicBool::new(false);
/// Milliseconds from [`epoch`] to the last write.
static LAST_WRITE_MS: AtomicU64 = AtomicU64::new(0);

struct Registry {
    threads: Vec<(i32, i32)>,
    lowered: bool,
}

impl Registry {
    fn set_lowered(&mut self, lowered: bool) {
        self.lowered = lowered;
        LOWERED.store(lowered, Ordering::Release);
        let nice = if lowered { background_nice() } else { 0 };
        for &(tid, base) in &self.threads {
            set_nice(tid, (base + nice).min(19));
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// Sets what background threads add to their nice value while writes arrive (0 to 19; 0:
/// they stay level with the requests).
pub fn set_background_nice(nice: i32) {
    BACKGROUND_NICE.store(nice.clamp(0, 19), Ordering::Relaxed);
}

/// The value [`set_background_nice`] set.
pub fn background_nice() -> i32 {
    BACKGROUND_NICE.load(Ordering::Relaxed)
}

/// Whether background threads run lowered now (writes arrived within [`WRITES_PAUSED`]).
pub fn lowered() -> bool {
    LOWERED.load(Ordering::Acquire)
}

/// Registers the calling thread as one that builds in the background: called first thing on
/// each such thread, which must call [`unregister_this_thread`] before it ends (a thread id
/// is reused once its thread is gone). The nice value it starts with is the one it is put
/// back to, so it must be started from a thread that is not lowered itself (today: request,
/// `bg-` and start-up threads, none registered).
pub(crate) fn register_this_thread() {
    let Some(tid) = this_thread() else { return };
    let mut registry = THREADS.lock();
    let base = own_nice();
    registry.threads.push((tid, base));
    if registry.lowered {
        set_nice(tid, (base + background_nice()).min(19));
    }
}

/// Takes the calling thread off the register, its nice value as it was registered.
pub(crate) fn unregister_this_thread() {
    let Some(tid) = this_thread() else { return };
    let mut registry = THREADS.lock();
    if let Some(k) = registry.threads.iter().position(|&(t, _)| t == tid) {
        let (_, base) = registry.threads.swap_remove(k);
        set_nice(tid, base);
    }
}

/// Called on every write: lowers the background threads if they are not already, and
/// starts the watcher that puts them back once writes pause.
pub(crate) fn write_arrived() {
    // `fetch_max`: writers racing must not move the time back.
    LAST_WRITE_MS.fetch_max(now_ms(), Ordering::AcqRel);
    if lowered() || background_nice() == 0 || !may_lower() {
        return;
    }
    let mut registry = THREADS.lock();
    if registry.lowered {
        return;
    }
    let watcher = std::thread::Builder::new()
        .name("priority-watch".into())
        .spawn(watch_for_pause);
    match watcher {
        Ok(_) => registry.set_lowered(true),
        // Without a watcher nothing would put them back: leave them as they are.
        Err(e) => tracing::warn!(error = %e, "background threads keep their priority"),
    }
}

/// Puts the threads back once no write has arrived for [`WRITES_PAUSED`], then ends.
fn watch_for_pause() {
    loop {
        std::thread::sleep(WRITES_PAUSED / 4);
        let mut registry = THREADS.lock();
        let idle = now_ms().saturating_sub(LAST_WRITE_MS.load(Ordering::Acquire));
        if idle >= WRITES_PAUSED.as_millis() as u64 {
            registry.set_lowered(false);
            return;
        }
    }
}

/// Whether this process may lower its background threads: whether it may put a lowered
/// thread back, tried once, on a thread of its own.
pub fn may_lower() -> bool {
    static MAY: OnceLock<bool> = OnceLock::new();
    *MAY.get_or_init(|| {
        let tried = std::thread::spawn(|| {
            let Some(tid) = this_thread() else {
                return false;
            };
            let base = own_nice();
            base < 19 && try_nice(tid, base + 1).is_ok() && try_nice(tid, base).is_ok()
        })
        .join()
        .unwrap_or(false);
        if !tried && cfg!(target_os = "linux") {
            tracing::info!(
                "background index builds keep their priority while writes arrive: this process \
                 may not raise a thread's priority back (CAP_SYS_NICE or RLIMIT_NICE)"
            );
        }
        tried
    })
}

#[cfg(target_os = "linux")]
fn this_thread() -> Option<i32> {
    // SAFETY: `gettid` takes nothing and returns the calling thread's id.
    Some(unsafe { libc::gettid() })
}

#[cfg(not(target_os = "linux"))]
fn this_thread() -> Option<i32> {
    None
}

#[cfg(target_os = "linux")]
fn own_nice() -> i32 {
    // SAFETY: `getpriority` with `who` 0 reads the calling thread's nice value; it takes
    // integers and touches no memory of ours. It cannot fail for the calling thread.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[cfg(not(target_os = "linux"))]
fn own_nice() -> i32 {
    0
}

/// Sets thread `tid`'s nice value. A failure leaves the thread as it was (the work is the
/// same, only scheduled differently), so it is logged, not returned.
fn set_nice(tid: i32, nice: i32) {
    if let Err(e) = try_nice(tid, nice) {
        tracing::warn!(thread = tid, nice, error = %e, "cannot change a background thread's priority");
    }
}

/// `tid` must be the calling thread or a registered one (threads unregister before they end,
/// so the id names no other thread).
#[cfg(target_os = "linux")]
fn try_nice(tid: i32, nice: i32) -> std::io::Result<()> {
    // SAFETY: `setpriority` takes integers and touches no memory of ours.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn try_nice(_tid: i32, _nice: i32) -> std::io::Result<()> {
    Err(std::io::Error::other("not Linux"))
}
