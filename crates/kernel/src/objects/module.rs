//! Module objects: validated, compiled wasm modules that processes are made of.

use alloc::vec::Vec;

use crate::budget::Charge;
use crate::runner::ThreadContext;
use crate::wait::SignalCell;

#[derive(Debug)]
pub(crate) struct ModuleObject {
    pub(crate) koid: u64,
    pub(crate) module: wasmtime::Module,
    pub(crate) signals: SignalCell,
    /// What the module's code and data take, charged to whoever compiled it (nothing for the
    /// modules the platform hands in), given back when the object goes.
    _charges: Vec<Charge>,
    /// The module's imports resolved against the kernel's linker, once, for every process made
    /// of it; `None` if they do not all resolve (a threaded module's shared memory, a bad
    /// import), and those processes instantiate through the linker.
    prepared: spin::Once<Option<Prepared>>,
}

impl ModuleObject {
    pub(crate) fn new(module: wasmtime::Module, charges: Vec<Charge>) -> Self {
        Self {
            koid: super::new_koid(),
            module,
            signals: SignalCell::default(),
            _charges: charges,
            prepared: spin::Once::new(),
        }
    }

    /// The module ready to instantiate with `linker` (the kernel's), if its imports resolve: a
    /// process instantiated from it skips the lookup of its imports by name, and its store
    /// shares the resolved definitions instead of keeping a copy of its own (about 600 bytes).
    pub(crate) fn prepared(&self, linker: &wasmtime::Linker<ThreadContext>) -> Option<Prepared> {
        self.prepared.call_once(|| linker.instantiate_pre(&self.module).ok().map(Prepared)).clone()
    }
}

/// A module with its imports resolved against the kernel's linker.
#[derive(Clone)]
pub(crate) struct Prepared(pub(crate) wasmtime::InstancePre<ThreadContext>);

impl core::fmt::Debug for Prepared {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.debug_struct("Prepared").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::ModuleObject;

    #[test]
    fn modules_whose_imports_all_resolve_are_prepared() {
        let engine = crate::tests::engine();
        let linker = crate::syscalls::linker(&engine).unwrap();
        let module = |text: &str| {
            ModuleObject::new(wasmtime::Module::new(&engine, text).unwrap(), Vec::new())
        };
        let sleeper =
            module(r#"(module (import "nebulet" "nanosleep" (func (param i64) (result i32))))"#);
        assert!(sleeper.prepared(&linker).is_some());
        assert!(sleeper.prepared(&linker).is_some(), "and stays prepared");
        let unknown = module(r#"(module (import "nebulet" "no_such_call" (func)))"#);
        assert!(unknown.prepared(&linker).is_none(), "its processes fail through the linker");
        let mistyped = module(r#"(module (import "nebulet" "nanosleep" (func (param i32))))"#);
        assert!(mistyped.prepared(&linker).is_none());
    }
}
