//! Channel calls: create, write, read.

use alloc::vec::Vec;

use nebulet_abi::{CHANNEL_MAX_MESSAGE_BYTES, CHANNEL_MAX_MESSAGE_HANDLES, Error, Rights};

use super::Call;
use crate::handles::HandleEntry;
use crate::objects::Object;
use crate::objects::channel::{Endpoint, Message, ReadError};

pub(super) fn create(call: &mut Call<'_>, out0: u32, out1: u32) -> Result<(), Error> {
    call.memory.check(out0, 1, 4)?;
    call.memory.check(out1, 1, 4)?;
    let mut table = call.process.handles.lock();
    if !table.has_room(2) {
        return Err(Error::NoResources);
    }
    let (first, second) = Endpoint::create();
    let first = table.insert(HandleEntry::new(Object::Channel(first), Rights::CHANNEL_DEFAULT))?;
    let second =
        table.insert(HandleEntry::new(Object::Channel(second), Rights::CHANNEL_DEFAULT))?;
    call.memory.write_u32(out0, first)?;
    call.memory.write_u32(out1, second)
}

pub(super) fn write(
    call: &mut Call<'_>,
    handle: u32,
    bytes: u32,
    byte_count: u32,
    handles: u32,
    handle_count: u32,
) -> Result<(), Error> {
    if byte_count > CHANNEL_MAX_MESSAGE_BYTES || handle_count > CHANNEL_MAX_MESSAGE_HANDLES {
        return Err(Error::OutOfRange);
    }
    let payload = call.memory.slice(bytes, byte_count)?;
    let values = call.memory.read_u32s(handles, handle_count)?;
    let mut table = call.process.handles.lock();
    let endpoint =
        table.get(handle)?.require_typed(Rights::WRITE, |entry| entry.channel())?.clone();
    // Check every handle before moving any, so a failed write consumes nothing.
    for (index, value) in values.iter().enumerate() {
        if *value == handle || values[..index].contains(value) {
            return Err(Error::InvalidArgs);
        }
        let entry = table.get(*value)?.require(Rights::TRANSFER)?;
        if let Object::Channel(other) = &entry.object
            && other.is_peer_of(&endpoint)
        {
            // A channel's own peer in its queue could never be closed: refuse the cycle.
            return Err(Error::InvalidArgs);
        }
    }
    let moved: Vec<HandleEntry> =
        values.iter().map(|value| table.get(*value).cloned()).collect::<Result<_, _>>()?;
    let charge = Some(crate::budget::charge_message(
        &call.process.budget,
        u64::from(byte_count),
        u64::from(handle_count),
    )?);
    let message = Message { bytes: payload.to_vec(), handles: moved, charge };
    match endpoint.write(message) {
        Ok(()) => {
            for value in values {
                table.remove(value)?;
            }
            Ok(())
        }
        Err((error, unsent)) => {
            drop(table);
            drop(unsent);
            Err(error)
        }
    }
}

#[expect(clippy::too_many_arguments, reason = "the call's seven wasm arguments")]
pub(super) fn read(
    call: &mut Call<'_>,
    handle: u32,
    bytes: u32,
    byte_capacity: u32,
    handles: u32,
    handle_capacity: u32,
    actual_bytes: u32,
    actual_handles: u32,
) -> Result<(), Error> {
    call.memory.check(bytes, 1, byte_capacity)?;
    call.memory.check(handles, handle_capacity, 4)?;
    call.memory.check_optional(actual_bytes, 4)?;
    call.memory.check_optional(actual_handles, 4)?;
    let mut table = call.process.handles.lock();
    let endpoint = table.get(handle)?.require_typed(Rights::READ, |entry| entry.channel())?.clone();
    let room = table.room();
    let message = match endpoint.read(byte_capacity as usize, handle_capacity as usize, room) {
        Ok(message) => message,
        Err(ReadError::Empty) => return Err(Error::ShouldWait),
        Err(ReadError::PeerClosed) => return Err(Error::PeerClosed),
        Err(ReadError::NoRoom) => return Err(Error::NoResources),
        Err(ReadError::TooSmall { bytes, handles }) => {
            call.memory.write_optional_u32(actual_bytes, bytes as u32)?;
            call.memory.write_optional_u32(actual_handles, handles as u32)?;
            return Err(Error::BufferTooSmall);
        }
    };
    call.memory.write(bytes, &message.bytes)?;
    call.memory.write_optional_u32(actual_bytes, message.bytes.len() as u32)?;
    call.memory.write_optional_u32(actual_handles, message.handles.len() as u32)?;
    for (index, entry) in message.handles.into_iter().enumerate() {
        let value = table.insert(entry)?;
        call.memory.write_u32(handles + 4 * index as u32, value)?;
    }
    Ok(())
}
