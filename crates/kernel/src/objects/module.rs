//! Module objects: validated, compiled wasm modules that processes are made of.

use alloc::vec::Vec;

use crate::budget::Charge;
use crate::wait::SignalCell;

#[derive(Debug)]
pub(crate) struct ModuleObject {
    pub(crate) koid: u64,
    pub(crate) module: wasmtime::Module,
    pub(crate) signals: SignalCell,
    /// What the module's code and data take, charged to whoever compiled it (nothing for the
    /// modules the platform hands in), given back when the object goes.
    _charges: Vec<Charge>,
}

impl ModuleObject {
    pub(crate) fn new(module: wasmtime::Module, charges: Vec<Charge>) -> Self {
        Self { koid: super::new_koid(), module, signals: SignalCell::default(), _charges: charges }
    }
}
