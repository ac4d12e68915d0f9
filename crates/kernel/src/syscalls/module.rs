//! `module_compile`: wasm bytes from the caller's memory into a Module object.

use alloc::sync::Arc;

use nebulet_abi::{Error, Rights};
use wasmtime::Caller;

use super::with_call;
use crate::handles::HandleEntry;
use crate::objects::Object;
use crate::objects::module::ModuleObject;
use crate::platform::CompileError;
use crate::runner::ThreadContext;

/// Compiles on the platform's blocking threads (a large module takes seconds), with the CPU time
/// charged to the caller, who can be killed meanwhile.
pub(super) async fn compile(
    caller: &mut Caller<'_, ThreadContext>,
    bytes: u32,
    length: u32,
    out: u32,
) -> Result<(), Error> {
    let wasm = with_call(caller, |call| {
        call.memory.check(out, 1, 4)?;
        Ok::<_, Error>(call.memory.slice(bytes, length)?.to_vec())
    })?;
    let kernel = caller.data().kernel.clone();
    let process = caller.data().process.clone();
    let engine = kernel.engine.clone();
    let platform = kernel.platform.clone();
    let compiled =
        crate::blocking::run(&kernel, &process, move || platform.compile_module(&engine, &wasm))
            .await
            .ok_or(Error::Internal)?;
    let module = compiled.map_err(|error| match error {
        CompileError::Invalid(_) => Error::BadModule,
        CompileError::NotSupported => Error::NotSupported,
    })?;
    let entry = HandleEntry::new(
        Object::Module(Arc::new(ModuleObject::new(module))),
        Rights::MODULE_DEFAULT,
    );
    with_call(caller, |call| {
        call.memory.check(out, 1, 4)?;
        let value = call.process.handles.lock().insert(entry)?;
        call.memory.write_u32(out, value)
    })
}
