//! The threads of this process: yielding, futexes and regions without preemption.
//!
//! The threads of a process are coroutines: at most one of them runs at a time. A thread is
//! switched out only when it blocks in a call, at an epoch tick (about every quarter of a
//! millisecond of running wasm, also in loops without calls), or at [`yield_now`]. Threads are started through
//! the wasi-threads import `wasi` `thread-spawn` (which `std::thread::spawn` uses in programs
//! built for `wasm32-wasip1-threads`); they share the process's memory and handles.
//!
//! [`futex_wait`] and [`futex_wake`] are the building blocks of locks and condition variables
//! between these threads. They work together with the wasm instructions `memory.atomic.wait32`,
//! `memory.atomic.wait64` and `memory.atomic.notify` on the same addresses, so they also work
//! with the locks of `std` on `wasm32-wasip1-threads`. [`NoPreempt`] and [`no_preempt`] keep
//! the other threads of the process from running while the calling thread is runnable.
//!
//! Waiters are per process: a futex is an address in this process's memory, and other
//! processes cannot wake it.

use core::marker::PhantomData;
use core::sync::atomic::AtomicU32;

use nebulet_abi::Error;

use crate::sys;

/// Lets the other runnable threads of this process run, then returns.
///
/// Threads are also switched at blocking calls and epoch ticks, so a spinning thread does not
/// starve the others; this gives way sooner, e.g. in a spin-wait loop. Off Nebulet it does
/// nothing.
///
/// ```no_run
/// use core::sync::atomic::{AtomicBool, Ordering};
///
/// static DONE: AtomicBool = AtomicBool::new(false);
///
/// while !DONE.load(Ordering::Acquire) {
///     sip::thread::yield_now();
/// }
/// ```
pub fn yield_now() {
    // The call cannot fail on Nebulet; off Nebulet there is nothing to yield to.
    let _ = sys::thread_yield();
}

/// Blocks the calling thread while `word` holds `expected`, until a [`futex_wake`] on `word`
/// (or `deadline`).
///
/// The value is compared once, when the call starts, and the comparison and the start of the
/// wait happen without another thread of the process running in between, so a wake that follows
/// a store of a new value is never missed. A wake does not mean the value changed: check the
/// condition again in a loop.
///
/// Errors: [`Error::BadState`] at once if `word` does not hold `expected`;
/// [`Error::TimedOut`] if `deadline` passed first (a deadline in the past polls once).
///
/// ```no_run
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use sip::{DEADLINE_INFINITE, Error, thread};
///
/// static READY: AtomicU32 = AtomicU32::new(0);
///
/// fn wait_until_ready() -> Result<(), Error> {
///     while READY.load(Ordering::Acquire) == 0 {
///         match thread::futex_wait(&READY, 0, DEADLINE_INFINITE) {
///             // Woken, or READY changed before we blocked: check again.
///             Ok(()) | Err(Error::BadState) => {}
///             Err(error) => return Err(error),
///         }
///     }
///     Ok(())
/// }
/// # wait_until_ready().unwrap();
/// ```
pub fn futex_wait(word: &AtomicU32, expected: u32, deadline: i64) -> Result<(), Error> {
    sys::futex_wait(word, expected, deadline)
}

/// Wakes up to `count` threads of this process that wait on `word` (in [`futex_wait`] or a wasm
/// atomic wait), in the order they started waiting; returns how many were woken (0 if none
/// waited). `u32::MAX` wakes them all.
///
/// The value of `word` is neither read nor written: store the new value first, then wake.
///
/// ```no_run
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use sip::thread;
///
/// static READY: AtomicU32 = AtomicU32::new(0);
///
/// READY.store(1, Ordering::Release);
/// let woken = thread::futex_wake(&READY, u32::MAX)?;
/// println!("woke {woken} threads");
/// # Ok::<(), sip::Error>(())
/// ```
pub fn futex_wake(word: &AtomicU32, count: u32) -> Result<u32, Error> {
    sys::futex_wake(word, count)
}

/// A region in which no other thread of the process runs while the calling thread is runnable:
/// `sched_lock` when made, `sched_unlock` when dropped.
///
/// Neither epoch ticks nor [`yield_now`] switch the thread out inside the region.
/// Regions nest: each guard ends its own level, and the region ends with the outermost one.
/// They are per process: other processes keep running. A blocking call inside the region
/// ([`futex_wait`], waits, sleeps) still lets the other threads run while this one is blocked.
/// A thread that spins inside the region keeps the others from running, so keep it short. If
/// the guard is leaked (e.g. with `core::mem::forget`), the region lasts until the thread ends.
///
/// The guard belongs to the thread that made it, so it is neither `Send` nor `Sync`.
///
/// ```no_run
/// use sip::thread::NoPreempt;
///
/// let guard = NoPreempt::new()?;
/// // ... touch state shared with the other threads of this process, without calls that block ...
/// drop(guard);
/// # Ok::<(), sip::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "the region ends when the guard is dropped"]
pub struct NoPreempt {
    /// Not `Send`/`Sync`: the region belongs to the calling thread.
    _thread: PhantomData<*const ()>,
}

impl NoPreempt {
    /// Enters the region (`sched_lock`).
    ///
    /// On Nebulet this cannot fail; off Nebulet it fails with [`Error::NotSupported`].
    pub fn new() -> Result<NoPreempt, Error> {
        sys::sched_lock()?;
        Ok(NoPreempt { _thread: PhantomData })
    }
}

impl Drop for NoPreempt {
    fn drop(&mut self) {
        // Matches the `sched_lock` of `new` on this thread, so it cannot fail.
        let _ = sys::sched_unlock();
    }
}

/// Runs `f` inside a [`NoPreempt`] region and returns its result; the region ends when `f`
/// returns or panics.
///
/// Off Nebulet, where there is no region to enter, `f` simply runs.
///
/// ```no_run
/// use core::sync::atomic::{AtomicU32, Ordering};
///
/// static COUNTER: AtomicU32 = AtomicU32::new(0);
///
/// // Read and update without another thread of the process running in between.
/// let previous = sip::thread::no_preempt(|| {
///     let value = COUNTER.load(Ordering::Relaxed);
///     COUNTER.store(value + 1, Ordering::Relaxed);
///     value
/// });
/// println!("counter was {previous}");
/// ```
pub fn no_preempt<R>(f: impl FnOnce() -> R) -> R {
    // Held (if entered) until `f` has returned.
    let _region = NoPreempt::new();
    f()
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;

    #[test]
    fn off_nebulet_calls_fail_cleanly() {
        let word = AtomicU32::new(0);
        assert_eq!(futex_wait(&word, 0, 0), Err(Error::NotSupported));
        assert_eq!(futex_wake(&word, 1), Err(Error::NotSupported));
        assert_eq!(NoPreempt::new().err(), Some(Error::NotSupported));
        yield_now();
    }

    #[test]
    fn no_preempt_runs_the_closure() {
        assert_eq!(no_preempt(|| 7), 7);
    }
}
