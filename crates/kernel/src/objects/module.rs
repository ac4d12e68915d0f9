//! Module objects: validated, compiled wasm modules that processes are made of.

use crate::wait::SignalCell;

#[derive(Debug)]
pub(crate) struct ModuleObject {
    pub(crate) koid: u64,
    pub(crate) module: wasmtime::Module,
    pub(crate) signals: SignalCell,
}

impl ModuleObject {
    pub(crate) fn new(module: wasmtime::Module) -> Self {
        Self { koid: super::new_koid(), module, signals: SignalCell::default() }
    }
}
