//! Process calls: create, start, bootstrap, kill, exit.

use alloc::string::ToString;

use nebulet_abi::{
    Error, ExitReason, HANDLE_INVALID, NAME_MAX_BYTES, PROCESS_CREATE_ISOLATED, Rights,
};
use wasmtime::Caller;

use alloc::sync::Arc;

use super::{Call, with_call};
use crate::handles::HandleEntry;
use crate::kernel::ProcessOptions;
use crate::objects::Object;
use crate::runner::{ProcessExit, ProcessKilled, ThreadContext};

pub(super) fn create(
    call: &mut Call<'_>,
    module: u32,
    name: u32,
    name_length: u32,
    out: u32,
) -> Result<(), Error> {
    create_with(call, module, name, name_length, 0, out)
}

/// `process_create` with options: `PROCESS_CREATE_ISOLATED` makes the process run in a domain
/// of its own when it starts (see `crate::domain`).
pub(super) fn create_with(
    call: &mut Call<'_>,
    module: u32,
    name: u32,
    name_length: u32,
    options: u32,
    out: u32,
) -> Result<(), Error> {
    call.memory.check(out, 1, 4)?;
    if options & !PROCESS_CREATE_ISOLATED != 0 {
        return Err(Error::InvalidArgs);
    }
    let isolated = options & PROCESS_CREATE_ISOLATED != 0;
    if isolated && !call.kernel.platform.has_domains() {
        return Err(Error::NotSupported);
    }
    let name = call.memory.str(name, name_length, NAME_MAX_BYTES)?.to_string();
    let mut table = call.process.handles.lock();
    let module = table.get(module)?.require_typed(Rights::EXECUTE, |entry| entry.module())?.clone();
    if !table.has_room(1) {
        return Err(Error::NoResources);
    }
    let options = ProcessOptions { name, ..Default::default() };
    let child = call.kernel.new_process(module.module.clone(), options, &call.process.budget)?;
    if let Some(prepared) = module.prepared(&call.kernel.linker) {
        child.prepared.call_once(|| prepared);
    }
    call.process.count_restart(&child);
    if isolated {
        child.isolate();
    }
    call.process.adopt(&child);
    let value = table.insert(HandleEntry::new(Object::Process(child), Rights::PROCESS_DEFAULT))?;
    call.memory.write_u32(out, value)
}

pub(super) fn start(call: &mut Call<'_>, process: u32, bootstrap: u32) -> Result<(), Error> {
    let mut table = call.process.handles.lock();
    let child = table.get(process)?.require_typed(Rights::MANAGE, |entry| entry.process())?.clone();
    let handed = if bootstrap == HANDLE_INVALID {
        None
    } else {
        if bootstrap == process {
            return Err(Error::InvalidArgs);
        }
        Some(table.get(bootstrap)?.require(Rights::TRANSFER)?.clone())
    };
    call.kernel.start_process(&child, handed).map_err(|(error, _)| error)?;
    if bootstrap != HANDLE_INVALID {
        table.remove(bootstrap)?;
    }
    Ok(())
}

pub(super) fn bootstrap(call: &mut Call<'_>, out: u32) -> Result<(), Error> {
    call.memory.check(out, 1, 4)?;
    let mut table = call.process.handles.lock();
    if !table.has_room(1) {
        return Err(Error::NoResources);
    }
    let entry = call.process.take_bootstrap().ok_or(Error::NotFound)?;
    let value = table.insert(entry)?;
    call.memory.write_u32(out, value)
}

/// Ends the target with reason "killed". A process killing itself does not return: its calling
/// thread unwinds at once, as with `process_exit`.
pub(super) fn kill(mut caller: Caller<'_, ThreadContext>, process: u32) -> wasmtime::Result<i32> {
    let target = with_call(&mut caller, |call| {
        let table = call.process.handles.lock();
        Ok(table.get(process)?.require_typed(Rights::MANAGE, |entry| entry.process())?.clone())
    });
    let target = match target {
        Ok(target) => target,
        Err(error) => return Ok(super::status(Err(error))),
    };
    target.kill(ExitReason::Killed);
    // The target may be running on another processor: it notices at its next loop or call.
    caller.data().kernel.preemption.request();
    if Arc::ptr_eq(&target, &caller.data().process) {
        return Err(wasmtime::Error::new(ProcessKilled));
    }
    Ok(nebulet_abi::OK)
}

/// Unwinds the calling thread with [`ProcessExit`]; the runner turns it into the exit code.
pub(super) fn exit(_caller: Caller<'_, ThreadContext>, code: i32) -> wasmtime::Result<()> {
    Err(wasmtime::Error::new(ProcessExit(code)))
}

/// Sets one resource limit of a process that has not started.
pub(super) fn set_limit(
    call: &mut Call<'_>,
    process: u32,
    limit: u32,
    value: i64,
) -> Result<(), Error> {
    let limit = nebulet_abi::Limit::from_raw(limit).ok_or(Error::InvalidArgs)?;
    let value = u64::try_from(value).map_err(|_| Error::OutOfRange)?;
    let table = call.process.handles.lock();
    let target =
        table.get(process)?.require_typed(Rights::MANAGE, |entry| entry.process())?.clone();
    drop(table);
    target.set_limit(limit, value)
}
