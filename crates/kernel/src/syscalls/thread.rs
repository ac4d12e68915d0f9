//! Thread calls: yield, futexes, the sched lock; and the imports behind wasi-threads'
//! `thread-spawn` and the rewritten `memory.atomic.wait/notify` instructions.

use alloc::boxed::Box;

use nebulet_abi::Error;
use wasmtime::{Caller, Linker, Trap};

use super::{Call, with_call};
use crate::runner::{ProcessMemory, ThreadContext};
#[cfg(feature = "threads")]
use crate::runner::{ThreadCharges, spawned_thread};
use crate::wait::yield_once;

pub(super) async fn yield_now(_caller: &mut Caller<'_, ThreadContext>) -> Result<(), Error> {
    yield_once().await;
    Ok(())
}

/// The u32 at `address`, which must be 4-byte aligned and inside memory.
fn futex_word(call: &Call<'_>, address: u32) -> Result<u32, Error> {
    if !address.is_multiple_of(4) {
        return Err(Error::InvalidArgs);
    }
    let bytes = call.memory.slice(address, 4)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

pub(super) async fn futex_wait(
    caller: &mut Caller<'_, ThreadContext>,
    address: u32,
    expected: u32,
    deadline: i64,
) -> Result<(), Error> {
    let current = with_call(caller, |call| futex_word(call, address))?;
    if current != expected {
        return Err(Error::BadState);
    }
    let context = caller.data();
    // Queued before any other thread of the process can run: no wake is lost.
    let ticket = context.process.futexes.enqueue(u64::from(address));
    if ticket.wait(&*context.kernel.platform, deadline).await {
        Ok(())
    } else {
        Err(Error::TimedOut)
    }
}

pub(super) fn futex_wake(
    call: &mut Call<'_>,
    address: u32,
    count: u32,
    woken_out: u32,
) -> Result<(), Error> {
    futex_word(call, address)?;
    call.memory.check_optional(woken_out, 4)?;
    let woken = call.process.futexes.wake(u64::from(address), count);
    call.memory.write_optional_u32(woken_out, woken)
}

pub(super) fn sched_lock(call: &mut Call<'_>) -> Result<(), Error> {
    call.process.threads.sched_lock(call.thread);
    Ok(())
}

pub(super) fn sched_unlock(call: &mut Call<'_>) -> Result<(), Error> {
    if call.process.threads.sched_unlock(call.thread) { Ok(()) } else { Err(Error::BadState) }
}

/// `wasi` `thread-spawn` and the `nebulet:atomics` imports of rewritten modules.
pub(super) fn link_threads(linker: &mut Linker<ThreadContext>) -> wasmtime::Result<()> {
    #[cfg(feature = "threads")]
    linker.func_wrap(
        "wasi",
        "thread-spawn",
        |caller: Caller<'_, ThreadContext>, argument: i32| -> i32 {
            let context = caller.data();
            let process = &context.process;
            if process.thread_environment.get().is_none() {
                return -1;
            }
            // Charged before it is queued: a thread its budget cannot hold never starts.
            let Ok(charges) = ThreadCharges::take(&context.kernel, process) else { return -1 };
            let Some(id) = process.threads.reserve() else { return -1 };
            let kernel = context.kernel.clone();
            let thread = spawned_thread(kernel, process.clone(), (id, charges), argument);
            process.threads.spawn(id, Box::pin(thread));
            id as i32
        },
    )?;
    linker.func_wrap_async(
        crate::prepare::MODULE,
        "wait32",
        |mut caller: Caller<'_, ThreadContext>,
         (address, expected, timeout, offset): (u32, u32, i64, u32)| {
            Box::new(async move {
                atomic_wait(&mut caller, address, offset, 4, u64::from(expected), timeout).await
            })
        },
    )?;
    linker.func_wrap_async(
        crate::prepare::MODULE,
        "wait64",
        |mut caller: Caller<'_, ThreadContext>,
         (address, expected, timeout, offset): (u32, u64, i64, u32)| {
            Box::new(async move {
                atomic_wait(&mut caller, address, offset, 8, expected, timeout).await
            })
        },
    )?;
    linker.func_wrap(
        crate::prepare::MODULE,
        "notify",
        |mut caller: Caller<'_, ThreadContext>,
         address: u32,
         count: u32,
         offset: u32|
         -> wasmtime::Result<u32> {
            let address = effective_address(&mut caller, address, offset, 4)?;
            let process = &caller.data().process;
            Ok(process.futexes.wake(address, count))
        },
    )?;
    Ok(())
}

/// The address an atomic instruction uses, with the traps the instruction would raise.
fn effective_address(
    caller: &mut Caller<'_, ThreadContext>,
    address: u32,
    offset: u32,
    size: u64,
) -> wasmtime::Result<u64> {
    let effective = u64::from(address) + u64::from(offset);
    if effective % size != 0 {
        return Err(wasmtime::Error::new(Trap::HeapMisaligned));
    }
    let length = match &caller.data().memory {
        #[cfg(feature = "threads")]
        Some(ProcessMemory::Shared(memory)) => memory.data_size() as u64,
        Some(ProcessMemory::Own(memory)) => memory.data_size(&*caller) as u64,
        None => 0,
    };
    if effective + size > length {
        return Err(wasmtime::Error::new(Trap::MemoryOutOfBounds));
    }
    Ok(effective)
}

/// `memory.atomic.wait32/64`: 0 woken, 1 not equal, 2 timed out (a negative timeout never).
async fn atomic_wait(
    caller: &mut Caller<'_, ThreadContext>,
    address: u32,
    offset: u32,
    size: u64,
    expected: u64,
    timeout: i64,
) -> wasmtime::Result<u32> {
    let effective = effective_address(caller, address, offset, size)?;
    #[cfg(feature = "threads")]
    let shared = matches!(caller.data().memory, Some(ProcessMemory::Shared(_)));
    #[cfg(not(feature = "threads"))]
    let shared = false;
    if !shared {
        return Err(wasmtime::Error::new(Trap::AtomicWaitNonSharedMemory));
    }
    let current = with_call(caller, |call| -> Result<u64, Error> {
        let bytes = call.memory.slice(effective as u32, size as u32)?;
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        Ok(u64::from_le_bytes(word))
    })
    .map_err(|_| wasmtime::Error::new(Trap::MemoryOutOfBounds))?;
    if current != expected {
        return Ok(1);
    }
    let (process, platform) = (&caller.data().process, &caller.data().kernel.platform);
    let deadline = if timeout < 0 {
        nebulet_abi::DEADLINE_INFINITE
    } else {
        platform.now().saturating_add(timeout)
    };
    let ticket = process.futexes.enqueue(effective);
    const CALL: u8 = crate::roster::blocking_call("memory.atomic.wait");
    process.activity.enter(CALL);
    let woken = ticket.wait(&**platform, deadline).await;
    process.activity.leave(CALL);
    Ok(if woken { 0 } else { 2 })
}
