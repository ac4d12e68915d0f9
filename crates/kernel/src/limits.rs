//! Per-process resource limits, and the charges that hold processes to them.
//!
//! A parent sets them with `process_set_limit` before it starts the child (init does so from
//! the manifest). Memory is enforced by wasmtime's resource limiter (and, for a shared memory,
//! by its maximum size), handles by the handle table, queued bytes by a charge each message
//! carries until it is read or dropped, children by a slot each child holds until it ends, and
//! CPU time by the process task after each poll.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use nebulet_abi::{Error, Limit};

/// Defaults: generous for real programs, small enough that one process cannot take the machine.
pub(crate) const DEFAULT_MEMORY_BYTES: u64 = 1 << 30;
pub(crate) const DEFAULT_QUEUED_BYTES: u64 = 64 << 20;
pub(crate) const DEFAULT_CHILDREN: u64 = 4_096;

#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) memory_bytes: AtomicU64,
    pub(crate) cpu_ns: AtomicU64,
    /// Bytes of this process's messages queued in channels.
    pub(crate) queued: Arc<Counter>,
    /// Children created and not yet ended.
    pub(crate) children: Arc<Counter>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: AtomicU64::new(DEFAULT_MEMORY_BYTES),
            cpu_ns: AtomicU64::new(u64::MAX),
            queued: Arc::new(Counter::new(DEFAULT_QUEUED_BYTES)),
            children: Arc::new(Counter::new(DEFAULT_CHILDREN)),
        }
    }
}

/// A count with a limit, taken in amounts that are given back when their [`Charge`] drops.
#[derive(Debug)]
pub(crate) struct Counter {
    used: AtomicU64,
    limit: AtomicU64,
}

impl Counter {
    fn new(limit: u64) -> Self {
        Self { used: AtomicU64::new(0), limit: AtomicU64::new(limit) }
    }

    pub(crate) fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `amount`, or `ERR_NO_RESOURCES` if that would pass the limit.
    pub(crate) fn charge(self: &Arc<Self>, amount: u64) -> Result<Charge, Error> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(amount).filter(|total| *total <= limit)
            })
            .map_err(|_| Error::NoResources)?;
        Ok(Charge { counter: self.clone(), amount })
    }
}

/// An amount taken from a [`Counter`], given back on drop.
#[derive(Debug)]
pub(crate) struct Charge {
    counter: Arc<Counter>,
    amount: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.counter.used.fetch_sub(self.amount, Ordering::AcqRel);
    }
}

impl Limits {
    /// Sets one limit (handles are the handle table's, set by the caller).
    pub(crate) fn set(&self, limit: Limit, value: u64) {
        match limit {
            Limit::MemoryBytes => self.memory_bytes.store(value, Ordering::Relaxed),
            Limit::CpuNanoseconds => self.cpu_ns.store(value, Ordering::Relaxed),
            Limit::QueuedBytes => self.queued.set_limit(value),
            Limit::Children => self.children.set_limit(value),
            Limit::Handles => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_limited_and_given_back() {
        let counter = Arc::new(Counter::new(10));
        let first = counter.charge(6).unwrap();
        assert_eq!(counter.charge(5).unwrap_err(), Error::NoResources);
        let second = counter.charge(4).unwrap();
        assert_eq!(counter.used(), 10);
        drop(first);
        assert_eq!(counter.used(), 4);
        drop(second);
        assert_eq!(counter.used(), 0);
        assert_eq!(counter.charge(u64::MAX).unwrap_err(), Error::NoResources);
    }
}
