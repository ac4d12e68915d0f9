//! Admission: at most so many handlers at once; a bounded queue of requests waiting, each for a
//! bounded time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::Statistics;

#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    timeout: Duration,
}

/// A handler slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    pub(crate) fn new(concurrency: usize, queue: usize, timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
            timeout,
        }
    }

    /// A slot now, or after waiting in the queue; `None` if the queue is full, the wait passes
    /// its timeout, or `abandon` resolves first (the server is shutting down).
    pub(crate) async fn enter(
        &self,
        statistics: &watch::Sender<Statistics>,
        abandon: impl Future<Output = ()>,
    ) -> Option<Slot> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(Slot { _permit: permit });
        }
        let claimed = self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
            (waiting < self.queue).then_some(waiting + 1)
        });
        if claimed.is_err() {
            return None;
        }
        statistics.send_modify(|statistics| statistics.queued += 1);
        let permit = tokio::select! {
            // A slot freed by a handler killed at shutdown goes to no one waiting.
            biased;
            () = abandon => None,
            permit = tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()) => {
                permit.ok().and_then(Result::ok)
            }
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        statistics.send_modify(|statistics| statistics.queued -= 1);
        permit.map(|permit| Slot { _permit: permit })
    }
}
