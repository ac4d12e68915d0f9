//! Futexes: per-process queues of threads waiting on an address of the process's memory.
//!
//! Used by `futex_wait` / `futex_wake` and by the rewritten `memory.atomic.wait` / `notify`.
//! A waiter is queued in the same system call that compared the value, before any other thread
//! of the process can run, so a wake between the compare and the wait is never lost.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Poll, Waker};

use crate::platform::Platform;
use crate::wait::Deadline;

#[derive(Debug, Default)]
struct Waiter {
    woken: AtomicBool,
    waker: crate::sync::Mutex<Option<Waker>>,
}

/// The waiting threads of one process, oldest first, each with its address: one vector for all
/// addresses. A process has few waiters at a time (at most one per thread), so scanning them
/// costs less than a map's nodes, which a wait and a wake allocated and freed each time (the
/// thread-switch benchmark's hot path).
#[derive(Debug, Default)]
pub(crate) struct Futexes {
    waiters: crate::sync::Mutex<Vec<(u64, Arc<Waiter>)>>,
}

/// A queued wait; dropping it (a timeout, a killed process) leaves the queue.
pub(crate) struct Ticket<'a> {
    futexes: &'a Futexes,
    waiter: Arc<Waiter>,
}

impl Futexes {
    /// Queues the calling thread on `address`; await [`Ticket::wait`] to block.
    pub(crate) fn enqueue(&self, address: u64) -> Ticket<'_> {
        let waiter = Arc::new(Waiter::default());
        self.waiters.lock().push((address, waiter.clone()));
        Ticket { futexes: self, waiter }
    }

    /// Wakes up to `count` waiters of `address`, oldest first; returns how many.
    pub(crate) fn wake(&self, address: u64, count: u32) -> u32 {
        // Taken out in one pass (a wake of many scans the waiters once), and woken outside the
        // lock. The first apart, so that the common wake of one allocates nothing.
        let (mut first, mut rest) = (None, Vec::new());
        {
            let mut waiters = self.waiters.lock();
            let mut left = count;
            let taken = waiters.extract_if(.., |(waiting, _)| {
                let take = left > 0 && *waiting == address;
                left -= u32::from(take);
                take
            });
            for (_, waiter) in taken {
                waiter.woken.store(true, Ordering::Release);
                match first {
                    None => first = Some(waiter),
                    Some(_) => rest.push(waiter),
                }
            }
            Self::shrink(&mut waiters);
        }
        let mut woken = 0;
        for waiter in first.into_iter().chain(rest) {
            if let Some(waker) = waiter.waker.lock().take() {
                waker.wake();
            }
            woken += 1;
        }
        woken
    }

    fn remove(&self, waiter: &Arc<Waiter>) {
        let mut waiters = self.waiters.lock();
        waiters.retain(|(_, queued)| !Arc::ptr_eq(queued, waiter));
        Self::shrink(&mut waiters);
    }

    /// Gives back the room of many waiters gone (a burst of threads), not that of a few.
    fn shrink(waiters: &mut Vec<(u64, Arc<Waiter>)>) {
        if waiters.capacity() > 16 && waiters.len() < waiters.capacity() / 4 {
            waiters.shrink_to(waiters.len() * 2);
        }
    }
}

impl Ticket<'_> {
    /// Blocks until woken (`true`) or the deadline passes (`false`).
    pub(crate) async fn wait(&self, platform: &dyn Platform, deadline: i64) -> bool {
        let mut deadline = Deadline::new(platform, deadline);
        poll_fn(|context| {
            {
                let mut waker = self.waiter.waker.lock();
                if waker.as_ref().is_none_or(|known| !known.will_wake(context.waker())) {
                    *waker = Some(context.waker().clone());
                }
            }
            if self.waiter.woken.load(Ordering::Acquire) {
                return Poll::Ready(true);
            }
            if deadline.poll_passed(context) {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.waiter.woken.load(Ordering::Acquire) {
            self.futexes.remove(&self.waiter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_are_counted_and_in_order() {
        let futexes = Futexes::default();
        let first = futexes.enqueue(8);
        let second = futexes.enqueue(8);
        let other = futexes.enqueue(16);
        assert_eq!(futexes.wake(8, 1), 1);
        assert!(first.waiter.woken.load(Ordering::Relaxed));
        assert!(!second.waiter.woken.load(Ordering::Relaxed));
        drop(second);
        assert_eq!(futexes.wake(8, 5), 0, "a dropped ticket left the queue");
        assert_eq!(futexes.wake(16, u32::MAX), 1);
        drop((first, other));
        assert!(futexes.waiters.lock().is_empty());
    }

    #[test]
    fn waiters_of_many_addresses_are_woken_by_address_and_their_room_is_given_back() {
        let futexes = Futexes::default();
        let tickets: Vec<_> = (0..1_000).map(|index| futexes.enqueue(index % 3)).collect();
        assert_eq!(futexes.wake(1, u32::MAX), 333);
        let woken = |address: u64| {
            tickets
                .iter()
                .enumerate()
                .filter(|(index, ticket)| {
                    *index as u64 % 3 == address && ticket.waiter.woken.load(Ordering::Relaxed)
                })
                .count()
        };
        assert_eq!((woken(0), woken(1), woken(2)), (0, 333, 0));
        assert_eq!(futexes.wake(0, 10), 10);
        // The oldest first.
        assert!(tickets[0].waiter.woken.load(Ordering::Relaxed));
        assert!(!tickets[30].waiter.woken.load(Ordering::Relaxed));
        drop(tickets);
        let waiters = futexes.waiters.lock();
        assert!(waiters.is_empty());
        assert!(waiters.capacity() <= 16, "{} kept", waiters.capacity());
    }
}
