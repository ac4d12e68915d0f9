//! Waiting on signals: wait queues of wakers, and the futures that wait with a deadline.

use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use nebulet_abi::{DEADLINE_INFINITE, Error, Signals};

use crate::objects::Object;
use crate::platform::{BoxFuture, Platform};

/// The wakers of the tasks waiting for an object's signals to change.
#[derive(Debug, Default)]
pub(crate) struct WaitQueue {
    wakers: crate::sync::Mutex<Vec<Waker>>,
}

impl WaitQueue {
    /// Adds the waker (once) so the next [`Self::wake_all`] wakes it.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock();
        if !wakers.iter().any(|known| known.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    /// Forgets the waker, for a wait that ends before the queue is woken.
    pub(crate) fn unregister(&self, waker: &Waker) {
        self.wakers.lock().retain(|known| !known.will_wake(waker));
    }

    /// Wakes and forgets every registered waker; a waiter that still waits registers again.
    pub(crate) fn wake_all(&self) {
        let wakers = core::mem::take(&mut *self.wakers.lock());
        for waker in wakers {
            waker.wake();
        }
    }
}

/// Signals stored in the object itself (events, timers, user signals) with their wait queue.
#[derive(Debug, Default)]
pub(crate) struct SignalCell {
    bits: crate::sync::Mutex<Signals>,
    queue: WaitQueue,
}

impl SignalCell {
    pub(crate) fn get(&self) -> Signals {
        *self.bits.lock()
    }

    /// Clears then sets bits, and wakes the waiters if anything changed.
    pub(crate) fn update(&self, clear: Signals, set: Signals) {
        let changed = {
            let mut bits = self.bits.lock();
            let new = bits.difference(clear).union(set);
            let changed = new != *bits;
            *bits = new;
            changed
        };
        if changed {
            self.queue.wake_all();
        }
    }

    pub(crate) fn queue(&self) -> &WaitQueue {
        &self.queue
    }
}

/// A deadline to race a wait against: none, already passed, or a platform sleep.
pub(crate) enum Deadline {
    Never,
    Passed,
    At(BoxFuture<()>),
}

impl Deadline {
    pub(crate) fn new(platform: &dyn Platform, deadline: i64) -> Self {
        if deadline == DEADLINE_INFINITE {
            Deadline::Never
        } else if deadline <= platform.now() {
            Deadline::Passed
        } else {
            Deadline::At(platform.sleep_until(deadline))
        }
    }

    pub(crate) fn poll_passed(&mut self, context: &mut core::task::Context<'_>) -> bool {
        match self {
            Deadline::Never => false,
            Deadline::Passed => true,
            Deadline::At(sleep) => {
                if sleep.as_mut().poll(context).is_ready() {
                    *self = Deadline::Passed;
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// Waits until one of `objects[i]` asserts any signal of `masks[i]`, or the deadline passes.
/// Returns the signals of every object when it returned, and `ERR_TIMED_OUT` at the deadline;
/// `ERR_CANCELED` once `held()` says the waiter no longer holds its handles (closing a handle
/// wakes its object's waiters, so they look).
pub(crate) async fn wait_many(
    platform: &dyn Platform,
    objects: &[(Object, Signals)],
    deadline: i64,
    held: impl Fn() -> bool,
) -> (Result<(), Error>, Vec<Signals>) {
    let mut deadline = Deadline::new(platform, deadline);
    // Leaves the queues however the wait ends, also when a killed process drops it.
    let mut registration = Registration { objects, waker: None };
    let result = poll_fn(|context| {
        if registration.waker.as_ref().is_none_or(|waker| !waker.will_wake(context.waker())) {
            registration.waker = Some(context.waker().clone());
        }
        // Register before looking, so a signal raised in between still wakes this task.
        for (object, _) in objects {
            object.wait_queue().register(context.waker());
        }
        if !held() {
            return Poll::Ready(Err(Error::Canceled));
        }
        if objects.iter().any(|(object, mask)| object.signals().intersects(*mask)) {
            return Poll::Ready(Ok(()));
        }
        if deadline.poll_passed(context) {
            return Poll::Ready(Err(Error::TimedOut));
        }
        Poll::Pending
    })
    .await;
    drop(registration);
    let observed = objects.iter().map(|(object, _)| object.signals()).collect();
    (result, observed)
}

struct Registration<'a> {
    objects: &'a [(Object, Signals)],
    waker: Option<Waker>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(waker) = &self.waker {
            for (object, _) in self.objects {
                object.wait_queue().unregister(waker);
            }
        }
    }
}

/// Sleeps until the deadline.
pub(crate) async fn sleep_until(platform: &dyn Platform, deadline: i64) {
    let mut deadline = Deadline::new(platform, deadline);
    poll_fn(|context| if deadline.poll_passed(context) { Poll::Ready(()) } else { Poll::Pending })
        .await
}

/// Returns `Pending` once (waking itself at once), so the other threads and tasks get a turn.
pub(crate) async fn yield_once() {
    let mut yielded = false;
    poll_fn(|context| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            context.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
