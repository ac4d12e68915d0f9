//! `module_compile`: wasm bytes from the caller's memory into a Module object.

use alloc::sync::Arc;

use nebulet_abi::{Error, Rights};

use super::Call;
use crate::handles::HandleEntry;
use crate::objects::Object;
use crate::objects::module::ModuleObject;
use crate::platform::CompileError;

pub(super) fn compile(call: &mut Call<'_>, bytes: u32, length: u32, out: u32) -> Result<(), Error> {
    call.memory.check(out, 1, 4)?;
    let wasm = call.memory.slice(bytes, length)?;
    let module = call.kernel.platform.compile_module(&call.kernel.engine, wasm).map_err(
        |error| match error {
            CompileError::Invalid(_) => Error::BadModule,
            CompileError::NotSupported => Error::NotSupported,
        },
    )?;
    let entry = HandleEntry::new(
        Object::Module(Arc::new(ModuleObject::new(module))),
        Rights::MODULE_DEFAULT,
    );
    let value = call.process.handles.lock().insert(entry)?;
    call.memory.write_u32(out, value)
}
