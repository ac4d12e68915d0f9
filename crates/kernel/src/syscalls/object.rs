//! Object calls that work on any object: wait, signal, get_info.

use alloc::vec::Vec;

use nebulet_abi::layout::{InfoBasic, WaitItem};
use nebulet_abi::{Error, InfoTopic, Rights, Signals, WAIT_MANY_MAX_ITEMS};
use wasmtime::Caller;

use super::{Call, with_call};
use crate::objects::Object;
use crate::runner::ThreadContext;
use crate::wait;

/// The object behind `handle` if the handle may wait on it.
fn waitable(call: &Call<'_>, handle: u32) -> Result<Object, Error> {
    Ok(call.process.handles.lock().get(handle)?.require(Rights::WAIT)?.object.clone())
}

pub(super) async fn wait_one(
    caller: &mut Caller<'_, ThreadContext>,
    handle: u32,
    signals: u32,
    deadline: i64,
    observed_out: u32,
) -> Result<(), Error> {
    let object = with_call(caller, |call| {
        call.memory.check_optional(observed_out, 4)?;
        waitable(call, handle)
    })?;
    let platform = caller.data().kernel.platform.clone();
    let process = caller.data().process.clone();
    let held = || holds(&process, handle, &object);
    let waits = [(object.clone(), Signals::from_bits(signals))];
    let (result, observed) = wait::wait_many(&*platform, &waits, deadline, held).await;
    if result == Err(Error::Canceled) {
        return result;
    }
    with_call(caller, |call| call.memory.write_optional_u32(observed_out, observed[0].bits()))?;
    result
}

pub(super) async fn wait_many(
    caller: &mut Caller<'_, ThreadContext>,
    items: u32,
    count: u32,
    deadline: i64,
) -> Result<(), Error> {
    let waits = with_call(caller, |call| {
        if count > WAIT_MANY_MAX_ITEMS {
            return Err(Error::OutOfRange);
        }
        let bytes = call.memory.slice(items, count * WaitItem::SIZE as u32)?;
        bytes
            .chunks_exact(WaitItem::SIZE)
            .map(|chunk| {
                let item = WaitItem::from_bytes(chunk.try_into().map_err(|_| Error::Internal)?);
                Ok((waitable(call, item.handle)?, Signals::from_bits(item.wait_for)))
            })
            .collect::<Result<Vec<_>, Error>>()
    })?;
    let platform = caller.data().kernel.platform.clone();
    let process = caller.data().process.clone();
    let handles = with_call(caller, |call| call.memory.read_u32s(items, count * 3))?;
    let held = || {
        let mut items = waits.iter().zip(handles.chunks_exact(3));
        items.all(|((object, _), item)| holds(&process, item[0], object))
    };
    let (result, observed) = wait::wait_many(&*platform, &waits, deadline, held).await;
    if result == Err(Error::Canceled) {
        return result;
    }
    with_call(caller, |call| {
        for (index, signals) in observed.iter().enumerate() {
            let pending_at = items + (index * WaitItem::SIZE + 8) as u32;
            call.memory.write_u32(pending_at, signals.bits())?;
        }
        Ok(())
    })?;
    result
}

/// Whether `handle` still names `object` in the process's table.
fn holds(process: &crate::objects::process::Process, handle: u32, object: &Object) -> bool {
    process.handles.lock().get(handle).is_ok_and(|entry| entry.object.koid() == object.koid())
}

pub(super) fn signal(call: &mut Call<'_>, handle: u32, clear: u32, set: u32) -> Result<(), Error> {
    let table = call.process.handles.lock();
    let entry = table.get(handle)?.require(Rights::SIGNAL)?;
    let (clear, set) = (Signals::from_bits(clear), Signals::from_bits(set));
    let settable = entry.object.settable_signals();
    if !settable.contains(clear) || !settable.contains(set) {
        return Err(Error::InvalidArgs);
    }
    entry.object.update_user_signals(clear, set);
    Ok(())
}

pub(super) fn get_info(
    call: &mut Call<'_>,
    handle: u32,
    topic: u32,
    buffer: u32,
    length: u32,
    actual_out: u32,
) -> Result<(), Error> {
    call.memory.check(buffer, 1, length)?;
    call.memory.check_optional(actual_out, 4)?;
    let entry = call.process.handles.lock().get(handle)?.require(Rights::INSPECT)?.clone();
    let record = match topic {
        topic if topic == InfoTopic::Basic as u32 => InfoBasic {
            koid: entry.object.koid(),
            object_type: entry.object.object_type() as u32,
            rights: entry.rights.bits(),
        }
        .to_bytes()
        .to_vec(),
        topic if topic == InfoTopic::Process as u32 => entry.process()?.info().to_bytes().to_vec(),
        topic if topic == InfoTopic::Budget as u32 => {
            entry.process()?.budget.info().to_bytes().to_vec()
        }
        _ => return Err(Error::InvalidArgs),
    };
    let needed = record.len() as u32;
    call.memory.write_optional_u32(actual_out, needed)?;
    if length < needed {
        return Err(Error::BufferTooSmall);
    }
    call.memory.write(buffer, &record)
}
