//! Futexes: per-process queues of threads waiting on an address of the process's memory.
//!
//! Used by `futex_wait` / `futex_wake` and by the rewritten `memory.atomic.wait` / `notify`.
//! A waiter is queued in the same system call that compared the value, before any other thread
//! of the process can run, so a wake between the compare and the wait is never lost.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
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

#[derive(Debug, Default)]
pub(crate) struct Futexes {
    queues: crate::sync::Mutex<BTreeMap<u64, VecDeque<Arc<Waiter>>>>,
}

/// A queued wait; dropping it (a timeout, a killed process) leaves the queue.
pub(crate) struct Ticket<'a> {
    futexes: &'a Futexes,
    address: u64,
    waiter: Arc<Waiter>,
}

impl Futexes {
    /// Queues the calling thread on `address`; await [`Ticket::wait`] to block.
    pub(crate) fn enqueue(&self, address: u64) -> Ticket<'_> {
        let waiter = Arc::new(Waiter::default());
        self.queues.lock().entry(address).or_default().push_back(waiter.clone());
        Ticket { futexes: self, address, waiter }
    }

    /// Wakes up to `count` waiters of `address`, oldest first; returns how many.
    pub(crate) fn wake(&self, address: u64, count: u32) -> u32 {
        let mut woken = alloc::vec::Vec::new();
        {
            let mut queues = self.queues.lock();
            if let Some(queue) = queues.get_mut(&address) {
                while woken.len() < count as usize {
                    let Some(waiter) = queue.pop_front() else { break };
                    waiter.woken.store(true, Ordering::Release);
                    woken.push(waiter);
                }
                if queue.is_empty() {
                    queues.remove(&address);
                }
            }
        }
        for waiter in &woken {
            if let Some(waker) = waiter.waker.lock().take() {
                waker.wake();
            }
        }
        woken.len() as u32
    }

    fn remove(&self, address: u64, waiter: &Arc<Waiter>) {
        let mut queues = self.queues.lock();
        if let Some(queue) = queues.get_mut(&address) {
            queue.retain(|queued| !Arc::ptr_eq(queued, waiter));
            if queue.is_empty() {
                queues.remove(&address);
            }
        }
    }
}

impl Ticket<'_> {
    /// Blocks until woken (`true`) or the deadline passes (`false`).
    pub(crate) async fn wait(&self, platform: &dyn Platform, deadline: i64) -> bool {
        let mut deadline = Deadline::new(platform, deadline);
        poll_fn(|context| {
            *self.waiter.waker.lock() = Some(context.waker().clone());
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
            self.futexes.remove(self.address, &self.waiter);
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
        assert!(futexes.queues.lock().is_empty());
    }
}
