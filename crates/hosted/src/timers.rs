//! Timers: one thread of their own that wakes each sleeper at its deadline, and a check of the
//! earliest deadline before each poll of a task, by the worker about to poll it.
//!
//! Why not tokio's timer: its driver runs on the executor's workers, between polls, and only
//! every few dozen polls while they are busy, so with a spinning process on every core sleeps
//! came back 60 to 100 ms late. A dedicated current-thread tokio runtime would fix that, but its
//! timer wheel rounds every deadline up to a whole millisecond, half the lateness allowed (2 ms
//! at the median). This thread waits on a condition variable until the earliest deadline, which
//! the OS ends within its timer slack (about 50 µs), and wakes the sleepers' tasks, which the
//! executor then picks up from its global queue.
//!
//! But while every core is busy, the OS lets the woken timer thread wait for a core: 1.4 ms on
//! average and up to 9 ms in `cargo xtask stress` (`perf sched latency`), since it competes with
//! the workers it would wake. So each worker also wakes the due sleepers itself before each
//! poll of a task ([`wake_due`]: one atomic load while nothing is due), and a busy worker polls
//! at least every epoch tick. The timer thread then serves the times when no worker polls.
//!
//! A sleep on a runtime also sets tokio's timer, and ends at whichever fires first: while the
//! workers are idle, tokio's timer wakes the parked worker itself, one OS wakeup where this
//! thread takes two (itself, then the worker), which counts when other programs load the host.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// A sleeper's place: its deadline, then a number that tells sleepers of one deadline apart.
type Key = (Instant, u64);

#[derive(Default)]
struct State {
    sleepers: BTreeMap<Key, Waker>,
    next_number: u64,
}

struct Timers {
    state: Mutex<State>,
    /// The earliest deadline, in nanoseconds after `origin` (`u64::MAX` for none): read without
    /// the lock by [`wake_due`]. It may be earlier than the first sleeper's (one that left), never
    /// later.
    earliest: AtomicU64,
    origin: Instant,
    /// Notified when a sleeper with an earlier deadline than all others arrives.
    earlier: Condvar,
}

/// The host process's timers, once the first sleeper came.
static TIMERS: OnceLock<Timers> = OnceLock::new();

impl Timers {
    /// The host process's timer thread, started on first use.
    fn get() -> &'static Timers {
        TIMERS.get_or_init(|| {
            std::thread::Builder::new()
                .name("nebulet-timers".into())
                .spawn(|| crate::fatal::or_abort(|| Timers::get().run()))
                .expect("the host can start the timer thread");
            Timers::new()
        })
    }

    fn new() -> Self {
        Timers {
            state: Mutex::default(),
            earliest: AtomicU64::new(u64::MAX),
            origin: Instant::now(),
            earlier: Condvar::new(),
        }
    }

    /// `instant` in nanoseconds after the origin (0 before it).
    fn nanoseconds(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes the sleepers due at `now` out of `state`, and notes the new earliest deadline.
    fn take_due(&self, state: &mut State, now: Instant) -> Vec<Waker> {
        let mut due = Vec::new();
        while let Some(entry) = state.sleepers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        let earliest = state.sleepers.first_key_value().map(|((deadline, _), _)| *deadline);
        self.earliest
            .store(earliest.map_or(u64::MAX, |at| self.nanoseconds(at)), Ordering::Relaxed);
        due
    }

    /// Wakes the sleepers due at `now`, taking the lock only if one may be.
    fn wake_due(&self, now: Instant) {
        if self.earliest.load(Ordering::Relaxed) > self.nanoseconds(now) {
            return;
        }
        let due = self.take_due(&mut self.lock(), now);
        due.into_iter().for_each(Waker::wake);
    }

    /// Adds a sleeper until `deadline`; returns its key, and whether it is now the earliest
    /// (for the timer thread to notice).
    fn add(&self, state: &mut State, deadline: Instant, waker: Waker) -> (Key, bool) {
        let key = (deadline, state.next_number);
        state.next_number += 1;
        state.sleepers.insert(key, waker);
        let first = state.sleepers.first_key_value().is_some_and(|(first, _)| *first == key);
        if first {
            self.earliest.store(self.nanoseconds(deadline), Ordering::Relaxed);
        }
        (key, first)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across anything that can panic; a poisoned one is still whole.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self) -> ! {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            let due = self.take_due(&mut state, now);
            if !due.is_empty() {
                drop(state);
                due.into_iter().for_each(Waker::wake);
                state = self.lock();
                continue;
            }
            state = match state.sleepers.first_key_value() {
                Some(((deadline, _), _)) => {
                    let timeout = deadline.saturating_duration_since(now);
                    self.earlier
                        .wait_timeout(state, timeout)
                        .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state)
                }
                None => self.earlier.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
        }
    }
}

/// Wakes the sleepers whose deadline has passed, if any; called by a worker before each poll of
/// a task (see the module doc). While none is due, one atomic load and a clock read.
pub(crate) fn wake_due() {
    if let Some(timers) = TIMERS.get() {
        timers.wake_due(Instant::now());
    }
}

/// A future that completes at `deadline`, also set on the timer of `runtime` if given (see the
/// module doc; the runtime must have its timer enabled).
pub(crate) fn sleep_until(deadline: Instant, runtime: Option<&tokio::runtime::Handle>) -> Sleep {
    let runtime_timer = runtime.map(|runtime| {
        let _inside = runtime.enter();
        Box::pin(tokio::time::sleep_until(deadline.into()))
    });
    Sleep { deadline, key: None, runtime_timer }
}

#[derive(Debug)]
pub(crate) struct Sleep {
    deadline: Instant,
    /// Set while the timer thread holds this sleeper's waker.
    key: Option<Key>,
    runtime_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let runtime_fired = self
            .runtime_timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(context).is_ready());
        if runtime_fired || Instant::now() >= self.deadline {
            self.cancel();
            return Poll::Ready(());
        }
        let timers = Timers::get();
        let mut state = timers.lock();
        match self.key {
            Some(key) => match state.sleepers.get_mut(&key) {
                Some(waker) => waker.clone_from(context.waker()),
                // The timer thread takes a sleeper out only once its deadline has passed.
                None => {
                    self.key = None;
                    return Poll::Ready(());
                }
            },
            None => {
                let (key, first) = timers.add(&mut state, self.deadline, context.waker().clone());
                if first {
                    timers.earlier.notify_one();
                }
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Sleep {
    fn cancel(&mut self) {
        if let Some(key) = self.key.take() {
            Timers::get().lock().sleepers.remove(&key);
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sleepers_wake_in_deadline_order_and_not_before() {
        let start = Instant::now();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for milliseconds in [30, 10, 20] {
                let order = order.clone();
                tasks.spawn(async move {
                    let deadline = start + Duration::from_millis(milliseconds);
                    sleep_until(deadline, None).await;
                    assert!(Instant::now() >= deadline);
                    order.lock().unwrap().push(milliseconds);
                });
            }
            tasks.join_all().await;
        });
        assert_eq!(*order.lock().unwrap(), [10, 20, 30]);
    }

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_worker_wakes_exactly_the_due_sleepers_and_notes_the_next_deadline() {
        // A table of its own, with no thread: only `wake_due` wakes anyone here.
        let timers = Timers::new();
        let count = std::sync::Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let base = Instant::now() + Duration::from_secs(60);
        let later = base + Duration::from_millis(5);
        for deadline in [later, base, base] {
            timers.add(&mut timers.lock(), deadline, waker.clone());
        }
        assert_eq!(timers.earliest.load(Ordering::Relaxed), timers.nanoseconds(base));
        timers.wake_due(base - Duration::from_micros(1));
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "nothing is due yet");
        timers.wake_due(base);
        assert_eq!(count.0.load(Ordering::Relaxed), 2, "both sleepers of the first deadline");
        assert_eq!(timers.earliest.load(Ordering::Relaxed), timers.nanoseconds(later));
        timers.wake_due(later);
        assert_eq!(count.0.load(Ordering::Relaxed), 3);
        assert_eq!(timers.earliest.load(Ordering::Relaxed), u64::MAX, "none left");
        assert!(timers.lock().sleepers.is_empty());
    }

    #[test]
    fn a_dropped_sleeper_leaves_nothing_behind() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let far = Instant::now() + Duration::from_secs(3600);
        runtime.block_on(async {
            let mut sleep = Box::pin(sleep_until(far, None));
            std::future::poll_fn(|context| {
                assert!(sleep.as_mut().poll(context).is_pending());
                Poll::Ready(())
            })
            .await;
            let key = sleep.key.expect("registered");
            assert!(Timers::get().lock().sleepers.contains_key(&key));
            drop(sleep);
            assert!(!Timers::get().lock().sleepers.contains_key(&key));
        });
    }
}
