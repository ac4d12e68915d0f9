//! Handle tables: per-process maps from handle values to objects with rights.
//!
//! Handle values are drawn from a per-table random sequence, so they say nothing about the
//! values of other processes and a stale value is unlikely to name a new handle.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;

#[cfg(test)]
use nebulet_abi::ObjectType;
use nebulet_abi::{Error, RawHandle, Rights};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::budget::{Budget, Resource};
use crate::objects::Object;

/// A reference to an object with the rights it grants.
#[derive(Debug, Clone)]
pub(crate) struct HandleEntry {
    pub(crate) object: Object,
    pub(crate) rights: Rights,
}

impl HandleEntry {
    pub(crate) fn new(object: Object, rights: Rights) -> Self {
        Self { object, rights }
    }

    /// Fails with `ERR_ACCESS_DENIED` unless the handle has every right of `needed`.
    pub(crate) fn require(&self, needed: Rights) -> Result<&Self, Error> {
        if self.rights.contains(needed) { Ok(self) } else { Err(Error::AccessDenied) }
    }

    /// The typed object (`ERR_WRONG_TYPE` first), if the handle has the rights (then
    /// `ERR_ACCESS_DENIED`).
    pub(crate) fn require_typed<'a, T>(
        &'a self,
        needed: Rights,
        typed: impl FnOnce(&'a Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let object = typed(self)?;
        self.require(needed)?;
        Ok(object)
    }
}

/// Extracts a typed object from a handle entry, or fails with `ERR_WRONG_TYPE`.
macro_rules! typed_object {
    ($name:ident, $variant:ident, $type:ty) => {
        impl HandleEntry {
            pub(crate) fn $name(&self) -> Result<&Arc<$type>, Error> {
                match &self.object {
                    Object::$variant(object) => Ok(object),
                    _ => Err(Error::WrongType),
                }
            }
        }
    };
}

typed_object!(channel, Channel, crate::objects::channel::Endpoint);
typed_object!(timer, Timer, crate::objects::timer::Timer);
typed_object!(module, Module, crate::objects::module::ModuleObject);
typed_object!(process, Process, crate::objects::process::Process);
typed_object!(socket, Socket, crate::objects::socket::SocketEnd);
typed_object!(listener, Listener, crate::objects::listener::Listener);
typed_object!(connector, Connector, crate::objects::listener::Connector);

/// The handles of one process, each charged to its budget (and so to its ancestors').
#[derive(Debug)]
pub(crate) struct HandleTable {
    entries: BTreeMap<RawHandle, HandleEntry>,
    /// The seed of the sequence of values, until the first handle draws from it.
    seed: [u8; 32],
    /// The sequence, made when the first handle is added. Boxed: the generator (with its
    /// buffer, about 300 bytes) would otherwise be a quarter of every process, and many
    /// processes never hold a handle.
    values: Option<Box<ChaCha8Rng>>,
    budget: Arc<Budget>,
}

impl HandleTable {
    pub(crate) fn new(seed: [u8; 32], budget: Arc<Budget>) -> Self {
        Self { entries: BTreeMap::new(), seed, values: None, budget }
    }

    /// Whether `count` more handles fit in the budget.
    pub(crate) fn has_room(&self, count: usize) -> bool {
        self.room() >= count
    }

    /// How many more handles fit in the budget.
    pub(crate) fn room(&self) -> usize {
        usize::try_from(self.budget.available(Resource::Handles)).unwrap_or(usize::MAX)
    }

    /// Adds a handle and returns its new value; `ERR_NO_RESOURCES` past the budget.
    pub(crate) fn insert(&mut self, entry: HandleEntry) -> Result<RawHandle, Error> {
        self.budget.take(Resource::Handles, 1)?;
        let seed = self.seed;
        let values = self.values.get_or_insert_with(|| Box::new(ChaCha8Rng::from_seed(seed)));
        loop {
            let value = values.next_u32();
            if value != nebulet_abi::HANDLE_INVALID && !self.entries.contains_key(&value) {
                self.entries.insert(value, entry);
                return Ok(value);
            }
        }
    }

    pub(crate) fn get(&self, value: RawHandle) -> Result<&HandleEntry, Error> {
        self.entries.get(&value).ok_or(Error::BadHandle)
    }

    /// Removes a handle (closed or moved away). Threads of the process waiting on it are woken,
    /// so they see it is gone and return `ERR_CANCELED`.
    pub(crate) fn remove(&mut self, value: RawHandle) -> Result<HandleEntry, Error> {
        let entry = self.entries.remove(&value).ok_or(Error::BadHandle)?;
        self.budget.give(Resource::Handles, 1);
        entry.object.wait_queue().wake_all();
        Ok(entry)
    }

    /// Removes every handle; the caller drops them outside its lock.
    pub(crate) fn take_all(&mut self) -> BTreeMap<RawHandle, HandleEntry> {
        let entries = core::mem::take(&mut self.entries);
        self.budget.give(Resource::Handles, entries.len() as u64);
        entries
    }

    /// How many handles refer to objects of this type (for tests and accounting).
    #[cfg(test)]
    pub(crate) fn count_of(&self, object_type: ObjectType) -> usize {
        self.entries.values().filter(|entry| entry.object.object_type() == object_type).count()
    }
}

impl Drop for HandleTable {
    fn drop(&mut self) {
        self.budget.give(Resource::Handles, self.entries.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::event::Event;

    fn budget(handles: u64) -> Arc<Budget> {
        let budget = Budget::root(&crate::Capacity::default()).child().unwrap();
        budget.set_limit(Resource::Handles, handles);
        budget
    }

    fn event() -> HandleEntry {
        HandleEntry::new(Object::Event(Arc::new(Event::new())), Rights::EVENT_DEFAULT)
    }

    #[test]
    fn values_are_nonzero_distinct_and_differ_between_tables() {
        let mut first = HandleTable::new([1; 32], budget(100));
        let mut second = HandleTable::new([2; 32], budget(100));
        let a = first.insert(event()).unwrap();
        let b = first.insert(event()).unwrap();
        let c = second.insert(event()).unwrap();
        assert!(a != 0 && b != 0 && a != b);
        assert_ne!(a, c, "tables with different seeds give different values");
        assert_eq!(first.count_of(ObjectType::Event), 2);
        assert!(first.get(a).is_ok());
        first.remove(a).unwrap();
        assert_eq!(first.get(a).unwrap_err(), Error::BadHandle);
        assert_eq!(first.remove(a).unwrap_err(), Error::BadHandle);
    }

    #[test]
    fn the_limit_is_enforced() {
        let budget = budget(2);
        let mut table = HandleTable::new([3; 32], budget.clone());
        let first = table.insert(event()).unwrap();
        table.insert(event()).unwrap();
        assert_eq!(table.insert(event()).unwrap_err(), Error::NoResources);
        assert_eq!(table.room(), 0);
        table.remove(first).unwrap();
        assert_eq!((table.room(), budget.used(Resource::Handles)), (1, 1));
        drop(table.take_all());
        assert_eq!(budget.used(Resource::Handles), 0);
    }

    #[test]
    fn typed_access_checks_type_and_rights() {
        let entry = event();
        assert!(matches!(entry.object, Object::Event(_)));
        assert_eq!(entry.channel().unwrap_err(), Error::WrongType);
        assert!(entry.require(Rights::SIGNAL | Rights::WAIT).is_ok());
        assert_eq!(entry.require(Rights::WRITE).unwrap_err(), Error::AccessDenied);
    }
}
