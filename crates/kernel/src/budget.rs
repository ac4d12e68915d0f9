//! Budgets: what every process and its whole subtree may use, as Zircon's jobs bound theirs.
//!
//! Each process has a budget whose parent is its parent's, up to the root budget of the kernel,
//! whose limits come from what the machine can give ([`crate::Capacity`]). Whatever a process
//! causes is charged to its budget and to every ancestor's, so a limit bounds the whole subtree
//! and a child never gets more than any ancestor has left. A charge that would pass any limit
//! on the way up takes nothing and fails with `ERR_NO_RESOURCES`. A [`Charge`] gives its amount
//! back when it drops, so what an object holds is returned when the object goes.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use nebulet_abi::{Error, Limit};

use crate::platform::Capacity;

/// The deepest a process tree may grow (the root budget's processes are at depth 1).
pub(crate) const MAX_DEPTH: u32 = 32;

/// Bytes charged for each element of a table (wasmtime keeps a pointer and a type per element).
pub(crate) const TABLE_ELEMENT_BYTES: u64 = 16;

/// The most elements one table may hold, as in the JavaScript API's limits (browsers): growing a
/// table initialises every new element in one instruction, so this bounds what one `table.grow`
/// does (10,000,000 elements, 160 MB) whatever the budget has left.
pub(crate) const TABLE_MAXIMUM_ELEMENTS: usize = 10_000_000;

/// Bytes charged for a message besides its payload, and for each handle it carries.
pub(crate) const MESSAGE_OVERHEAD_BYTES: u64 = 64;
pub(crate) const MESSAGE_HANDLE_BYTES: u64 = 16;

/// Bytes charged for a process's own kernel state (its object, tables, descriptor table).
pub(crate) const PROCESS_BYTES: u64 = 4 << 10;

/// Memory mappings a shared linear memory takes (its reservation, accessible part and guard):
/// the platform allocates it apart from the others (see `Capacity::memory_mappings`).
#[cfg(feature = "threads")]
pub(crate) const SHARED_MEMORY_MAPPINGS: u64 = 3;
/// Memory mappings a compiled module takes (its code, executable and read-only parts).
pub(crate) const MODULE_MAPPINGS: u64 = 3;

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    /// Bytes: linear memories, tables, stacks, compiled modules, queued messages, names.
    Memory,
    /// Handles in the handle tables.
    Handles,
    /// Bytes of messages queued in channels (also counted as memory).
    Queued,
    /// Processes started below this one (descendants), not counting itself.
    Processes,
    /// Nanoseconds of CPU time; charged after the fact, so it may pass its limit once.
    Cpu,
    /// Threads (each has a store, an instance and a stack).
    Threads,
    /// Host memory mappings (only the root budget limits them).
    Mappings,
    /// Linear memories, each with its reserved address space (only the root budget limits them).
    LinearMemories,
}

const RESOURCES: usize = 8;

impl Resource {
    /// The resource a `process_set_limit` limit sets.
    pub(crate) fn of_limit(limit: Limit) -> Self {
        match limit {
            Limit::MemoryBytes => Resource::Memory,
            Limit::Handles => Resource::Handles,
            Limit::QueuedBytes => Resource::Queued,
            Limit::Children => Resource::Processes,
            Limit::CpuNanoseconds => Resource::Cpu,
            Limit::Threads => Resource::Threads,
        }
    }
}

/// The budget of one process (or the root): its subtree's use and its own limits.
#[derive(Debug)]
pub(crate) struct Budget {
    parent: Option<Arc<Budget>>,
    depth: u32,
    used: [AtomicU64; RESOURCES],
    limit: [AtomicU64; RESOURCES],
}

impl Budget {
    /// The root budget: what the machine can give all processes together.
    pub(crate) fn root(capacity: &Capacity) -> Arc<Self> {
        let budget = Self::new(None, 0);
        budget.set_limit(Resource::Memory, capacity.memory_bytes);
        // A handle costs kernel memory too: at most one per KiB of the machine's memory.
        budget.set_limit(Resource::Handles, capacity.memory_bytes / 1024);
        budget.set_limit(Resource::Threads, capacity.threads);
        budget.set_limit(Resource::Mappings, capacity.mappings);
        budget.set_limit(Resource::LinearMemories, capacity.linear_memories);
        Arc::new(budget)
    }

    /// A budget outside the tree, with no limits: for a process that never runs.
    pub(crate) fn detached() -> Arc<Self> {
        Arc::new(Self::new(None, MAX_DEPTH))
    }

    fn new(parent: Option<Arc<Budget>>, depth: u32) -> Self {
        Self {
            parent,
            depth,
            used: core::array::from_fn(|_| AtomicU64::new(0)),
            limit: core::array::from_fn(|_| AtomicU64::new(u64::MAX)),
        }
    }

    /// A budget for a new process below this one, with no limits of its own yet;
    /// `ERR_NO_RESOURCES` past [`MAX_DEPTH`].
    pub(crate) fn child(self: &Arc<Self>) -> Result<Arc<Self>, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::NoResources);
        }
        Ok(Arc::new(Self::new(Some(self.clone()), self.depth + 1)))
    }

    pub(crate) fn set_limit(&self, resource: Resource, value: u64) {
        self.limit[resource as usize].store(value, Ordering::Relaxed);
    }

    pub(crate) fn used(&self, resource: Resource) -> u64 {
        self.used[resource as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self, resource: Resource) -> u64 {
        self.limit[resource as usize].load(Ordering::Relaxed)
    }

    /// The record of `object_get_info` topic BUDGET.
    pub(crate) fn info(&self) -> nebulet_abi::layout::InfoBudget {
        let mut info = nebulet_abi::layout::InfoBudget::default();
        for (index, limit) in Limit::ALL.into_iter().enumerate() {
            let resource = Resource::of_limit(limit);
            info.used[index] = self.used(resource);
            info.limit[index] = self.limit(resource);
            info.available[index] = self.available(resource);
        }
        info
    }

    /// The budget this one is part of; `None` for the root.
    pub(crate) fn parent(&self) -> Option<&Arc<Budget>> {
        self.parent.as_ref()
    }

    /// This budget and its ancestors, nearest first.
    fn chain(&self) -> impl Iterator<Item = &Budget> {
        core::iter::successors(Some(self), |budget| budget.parent.as_deref())
    }

    /// How much more of `resource` a charge here could take: the least any budget on the way
    /// up has left.
    pub(crate) fn available(&self, resource: Resource) -> u64 {
        self.chain()
            .map(|budget| budget.limit(resource).saturating_sub(budget.used(resource)))
            .min()
            .unwrap_or(0)
    }

    /// Whether any budget on the way up has used more than its limit (CPU time, which is
    /// charged after it is spent).
    pub(crate) fn exhausted(&self, resource: Resource) -> bool {
        self.chain().any(|budget| budget.used(resource) > budget.limit(resource))
    }

    /// Takes `amount` here and in every ancestor, or nothing and `ERR_NO_RESOURCES`.
    pub(crate) fn take(&self, resource: Resource, amount: u64) -> Result<(), Error> {
        if amount == 0 {
            return Ok(());
        }
        for (taken, budget) in self.chain().enumerate() {
            let limit = budget.limit(resource);
            let result = budget.used[resource as usize].fetch_update(
                Ordering::AcqRel,
                Ordering::Acquire,
                |used| used.checked_add(amount).filter(|total| *total <= limit),
            );
            if result.is_err() {
                for budget in self.chain().take(taken) {
                    budget.used[resource as usize].fetch_sub(amount, Ordering::AcqRel);
                }
                return Err(Error::NoResources);
            }
        }
        Ok(())
    }

    /// Adds `amount` here and in every ancestor whatever the limits (CPU time already spent).
    pub(crate) fn add(&self, resource: Resource, amount: u64) {
        for budget in self.chain() {
            budget.used[resource as usize].fetch_add(amount, Ordering::AcqRel);
        }
    }

    /// Gives back `amount` taken with [`Budget::take`] or [`Budget::add`].
    pub(crate) fn give(&self, resource: Resource, amount: u64) {
        // As `take`: nothing to do for nothing (a charge that never grew, a mapping charge where
        // memories and stacks take no mapping of their own), and no write to the ancestors'
        // counters, which every core's processes share.
        if amount == 0 {
            return;
        }
        for budget in self.chain() {
            budget.used[resource as usize].fetch_sub(amount, Ordering::AcqRel);
        }
    }

    /// Takes `amount` and returns it as a [`Charge`] that gives it back on drop.
    pub(crate) fn charge(
        self: &Arc<Self>,
        resource: Resource,
        amount: u64,
    ) -> Result<Charge, Error> {
        self.take(resource, amount)?;
        Ok(Charge { budget: self.clone(), resource, amount })
    }
}

/// The charges of a message of `bytes` payload bytes and `handles` handles: queued bytes and
/// memory, each its payload plus the overheads.
pub(crate) fn charge_message(
    budget: &Arc<Budget>,
    bytes: u64,
    handles: u64,
) -> Result<[Charge; 2], Error> {
    let amount = bytes + MESSAGE_OVERHEAD_BYTES + MESSAGE_HANDLE_BYTES * handles;
    Ok([budget.charge(Resource::Queued, amount)?, budget.charge(Resource::Memory, amount)?])
}

/// An amount taken from a budget (and its ancestors), given back on drop.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Budget>,
    resource: Resource,
    amount: u64,
}

impl Charge {
    /// An empty charge, to grow later.
    pub(crate) fn empty(budget: &Arc<Budget>, resource: Resource) -> Self {
        Self { budget: budget.clone(), resource, amount: 0 }
    }

    /// Takes `more`, or nothing and `ERR_NO_RESOURCES`.
    #[cfg_attr(
        not(any(test, feature = "threads")),
        expect(dead_code, reason = "only shared memories grow a charge in place")
    )]
    pub(crate) fn grow(&mut self, more: u64) -> Result<(), Error> {
        self.budget.take(self.resource, more)?;
        self.amount += more;
        Ok(())
    }

    /// Takes over what `other` holds (of the same budget and resource), to give it back with
    /// this charge.
    pub(crate) fn absorb(&mut self, mut other: Charge) {
        debug_assert!(Arc::ptr_eq(&self.budget, &other.budget) && self.resource == other.resource);
        self.amount += core::mem::take(&mut other.amount);
    }

    #[cfg_attr(
        not(any(test, feature = "threads")),
        expect(dead_code, reason = "only shared memories read it")
    )]
    pub(crate) fn amount(&self) -> u64 {
        self.amount
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give(self.resource, self.amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(memory: u64) -> Arc<Budget> {
        Budget::root(&Capacity { memory_bytes: memory, ..Capacity::default() })
    }

    #[test]
    fn a_charge_counts_in_every_ancestor_and_is_given_back() {
        let root = root(100);
        let parent = root.child().unwrap();
        let child = parent.child().unwrap();
        let charge = child.charge(Resource::Memory, 60).unwrap();
        assert_eq!([child.used(Resource::Memory), parent.used(Resource::Memory)], [60, 60]);
        assert_eq!(root.used(Resource::Memory), 60);
        drop(charge);
        assert_eq!([child.used(Resource::Memory), root.used(Resource::Memory)], [0, 0]);
    }

    #[test]
    fn a_limit_bounds_the_whole_subtree_and_a_failed_charge_takes_nothing() {
        let root = root(1_000);
        let parent = root.child().unwrap();
        parent.set_limit(Resource::Memory, 50);
        let first = parent.child().unwrap();
        let second = parent.child().unwrap();
        let _held = first.charge(Resource::Memory, 30).unwrap();
        assert_eq!(second.available(Resource::Memory), 20);
        assert_eq!(second.charge(Resource::Memory, 21).unwrap_err(), Error::NoResources);
        assert_eq!([second.used(Resource::Memory), root.used(Resource::Memory)], [0, 30]);
        let mut growing = Charge::empty(&second, Resource::Memory);
        growing.grow(20).unwrap();
        assert_eq!(growing.grow(1), Err(Error::NoResources));
        assert_eq!(growing.amount(), 20);
        // The root's limit (the machine) bounds everyone.
        let other = root.child().unwrap();
        assert_eq!(other.available(Resource::Memory), 1_000 - 50);
    }

    #[test]
    fn cpu_time_is_added_after_the_fact_and_exhausts_the_subtree() {
        let root = root(u64::MAX);
        let parent = root.child().unwrap();
        parent.set_limit(Resource::Cpu, 10);
        let child = parent.child().unwrap();
        child.add(Resource::Cpu, 10);
        assert!(!child.exhausted(Resource::Cpu));
        child.add(Resource::Cpu, 1);
        assert!(child.exhausted(Resource::Cpu) && parent.exhausted(Resource::Cpu));
        assert!(!root.exhausted(Resource::Cpu));
    }

    #[test]
    fn trees_are_at_most_max_depth_deep() {
        let mut budget = root(u64::MAX);
        for _ in 0..MAX_DEPTH {
            budget = budget.child().unwrap();
        }
        assert_eq!(budget.child().unwrap_err(), Error::NoResources);
    }
}
