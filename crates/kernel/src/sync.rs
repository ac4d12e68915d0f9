//! The kernel's lock: a spin lock whose waiter lets another thread of the host run, if the
//! platform says how.
//!
//! The core is `no_std` and runs where there are no OS threads (bare metal, where a spin lock is
//! right: its holder cannot be descheduled for long). Hosted, its holder is an OS thread that
//! the OS can take the core from at any time, and some holders run at a lower priority than
//! the executor's workers (blocking jobs that finish and wake a process): a worker that spun
//! until such a holder got a core back would lose the rest of its time slice, milliseconds. So
//! after a few spins a waiter calls the platform's yield ([`set_yield`]), which lets a holder
//! waiting on the same core finish. Locks are held for a few hundred nanoseconds, so most
//! waits end within the spins.

/// The kernel's mutex.
pub(crate) type Mutex<T> = spin::mutex::Mutex<T, Relax>;

/// How long a waiter spins before it yields.
const SPINS: u32 = 16;

/// The platform's yield to another thread, once set.
static YIELD: spin::Once<fn()> = spin::Once::new();

/// Sets what a waiter for a kernel lock calls after spinning a while: on a host with threads,
/// its yield to other threads (`std::thread::yield_now`). The first call wins.
pub fn set_yield(yield_now: fn()) {
    YIELD.call_once(|| yield_now);
}

/// Spins a while, then yields if the platform said how (see the module doc).
pub(crate) struct Relax;

impl spin::RelaxStrategy for Relax {
    fn relax() {
        for _ in 0..SPINS {
            core::hint::spin_loop();
        }
        if let Some(yield_now) = YIELD.get() {
            yield_now();
        }
    }
}
