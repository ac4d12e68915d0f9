//! `module_compile`: wasm bytes from the caller's memory into a Module object.

use alloc::sync::Arc;

use nebulet_abi::{Error, Rights};
use wasmtime::Caller;

use super::with_call;
use crate::budget::{MODULE_MAPPINGS, Resource};
use crate::handles::HandleEntry;
use crate::objects::Object;
use crate::objects::module::ModuleObject;
use crate::platform::CompileError;
use crate::runner::ThreadContext;

/// Compiles on the platform's blocking threads (a large module takes seconds), with the CPU time
/// charged to the caller, who can be killed meanwhile. The memory compiling takes (about three
/// times the module's size at its peak) is charged while it runs; the module's code and data
/// (twice its size, for its data and its copy-on-write image, plus its machine code) are charged
/// for as long as the Module object lives.
pub(super) async fn compile(
    caller: &mut Caller<'_, ThreadContext>,
    bytes: u32,
    length: u32,
    out: u32,
) -> Result<(), Error> {
    let kernel = caller.data().kernel.clone();
    let process = caller.data().process.clone();
    let size = u64::from(length);
    // Charged before the copy below, which is part of the peak.
    let peak = process.budget.charge(Resource::Memory, size.saturating_mul(3))?;
    let mappings = process.budget.charge(Resource::Mappings, MODULE_MAPPINGS)?;
    let wasm = with_call(caller, |call| {
        call.memory.check(out, 1, 4)?;
        Ok::<_, Error>(call.memory.slice(bytes, length)?.to_vec())
    })?;
    let engine = kernel.engine.clone();
    let platform = kernel.platform.clone();
    let compiled = crate::blocking::run(&kernel, &process, move || {
        let compiled = platform.compile_module(&engine, &wasm);
        // Held until the compiler is done, even if the caller was killed meanwhile.
        drop(peak);
        compiled
    })
    .await
    .ok_or(Error::Internal)?;
    let module = compiled.map_err(|error| match error {
        CompileError::Invalid(_) => Error::BadModule,
        CompileError::NotSupported => Error::NotSupported,
    })?;
    let image = module.image_range();
    let code = (image.end as usize).saturating_sub(image.start as usize) as u64;
    let held =
        process.budget.charge(Resource::Memory, size.saturating_mul(2).saturating_add(code))?;
    let entry = HandleEntry::new(
        Object::Module(Arc::new(ModuleObject::new(module, alloc::vec![held, mappings]))),
        Rights::MODULE_DEFAULT,
    );
    with_call(caller, |call| {
        let value = call.process.handles.lock().insert(entry)?;
        call.memory.write_u32(out, value)
    })
}
