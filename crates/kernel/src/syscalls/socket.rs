//! Socket, listener and connector calls: create, write, read, shut down, accept, connect.

use alloc::sync::Arc;
use alloc::vec;

use nebulet_abi::{
    Error, Rights, SOCKET_MAX_TRANSFER_BYTES, SOCKET_SHUTDOWN_READ, SOCKET_SHUTDOWN_WRITE,
};
use wasmtime::Caller;

use super::{Call, with_call};
use crate::handles::HandleEntry;
use crate::objects::Object;
use crate::objects::listener::{Connection, Connector, Listener};
use crate::objects::socket::{Shutdown, SocketEnd};
use crate::runner::ThreadContext;

/// Puts two new objects in the caller's table and writes their handles; both or neither.
fn insert_pair(
    call: &mut Call<'_>,
    [first, second]: [(Object, Rights); 2],
    [out0, out1]: [u32; 2],
) -> Result<(), Error> {
    call.memory.check(out0, 1, 4)?;
    call.memory.check(out1, 1, 4)?;
    let mut table = call.process.handles.lock();
    if !table.has_room(2) {
        return Err(Error::NoResources);
    }
    let first = table.insert(HandleEntry::new(first.0, first.1))?;
    let second = table.insert(HandleEntry::new(second.0, second.1))?;
    call.memory.write_u32(out0, first)?;
    call.memory.write_u32(out1, second)
}

pub(super) fn create(call: &mut Call<'_>, options: u32, out0: u32, out1: u32) -> Result<(), Error> {
    if options != 0 {
        return Err(Error::InvalidArgs);
    }
    let (first, second) = SocketEnd::pair();
    let rights = Rights::SOCKET_DEFAULT;
    insert_pair(
        call,
        [(Object::Socket(first), rights), (Object::Socket(second), rights)],
        [out0, out1],
    )
}

fn socket(call: &Call<'_>, handle: u32, needed: Rights) -> Result<Arc<SocketEnd>, Error> {
    let table = call.process.handles.lock();
    Ok(table.get(handle)?.require_typed(needed, |entry| entry.socket())?.clone())
}

pub(super) fn write(
    call: &mut Call<'_>,
    handle: u32,
    bytes: u32,
    length: u32,
    actual: u32,
) -> Result<(), Error> {
    if length > SOCKET_MAX_TRANSFER_BYTES {
        return Err(Error::OutOfRange);
    }
    call.memory.check(bytes, 1, length)?;
    call.memory.check_optional(actual, 4)?;
    let end = socket(call, handle, Rights::WRITE)?;
    let count = (length as usize).min(end.room().map_err(|error| error.status())?);
    let charge = crate::budget::charge_message(&call.process.budget, count as u64, 0)?;
    let payload = call.memory.slice(bytes, count as u32)?;
    let written = end.write(payload, Some(charge)).map_err(|error| error.status())?;
    call.memory.write_optional_u32(actual, written as u32)
}

pub(super) fn read(
    call: &mut Call<'_>,
    handle: u32,
    buffer: u32,
    length: u32,
    actual: u32,
) -> Result<(), Error> {
    if length > SOCKET_MAX_TRANSFER_BYTES {
        return Err(Error::OutOfRange);
    }
    call.memory.check(buffer, 1, length)?;
    call.memory.check_optional(actual, 4)?;
    let end = socket(call, handle, Rights::READ)?;
    let mut bytes = vec![0u8; length as usize];
    let count = end.read(&mut bytes).map_err(|error| error.status())?;
    call.memory.write(buffer, &bytes[..count])?;
    call.memory.write_optional_u32(actual, count as u32)
}

pub(super) fn shutdown(call: &mut Call<'_>, handle: u32, options: u32) -> Result<(), Error> {
    let known = SOCKET_SHUTDOWN_WRITE | SOCKET_SHUTDOWN_READ;
    if options == 0 || options & !known != 0 {
        return Err(Error::InvalidArgs);
    }
    let end = socket(call, handle, Rights::WRITE)?;
    let direction = |bit| if options & bit != 0 { Shutdown::Yes } else { Shutdown::No };
    end.shutdown(direction(SOCKET_SHUTDOWN_WRITE), direction(SOCKET_SHUTDOWN_READ));
    Ok(())
}

pub(super) fn listener_create(
    call: &mut Call<'_>,
    out_listener: u32,
    out_connector: u32,
) -> Result<(), Error> {
    let listener = Listener::new();
    let connector = Connector::local(&listener);
    insert_pair(
        call,
        [
            (Object::Listener(listener), Rights::LISTENER_DEFAULT),
            (Object::Connector(connector), Rights::CONNECTOR_DEFAULT),
        ],
        [out_listener, out_connector],
    )
}

/// Puts a new socket in the caller's table (room was checked) and writes its handle.
fn insert_socket(call: &mut Call<'_>, socket: Arc<SocketEnd>, out: u32) -> Result<(), Error> {
    let mut table = call.process.handles.lock();
    let value = table.insert(HandleEntry::new(Object::Socket(socket), Rights::SOCKET_DEFAULT))?;
    call.memory.write_u32(out, value)
}

pub(super) fn accept(call: &mut Call<'_>, handle: u32, out: u32) -> Result<(), Error> {
    call.memory.check(out, 1, 4)?;
    let listener = {
        let table = call.process.handles.lock();
        let listener = table.get(handle)?.require_typed(Rights::READ, |entry| entry.listener())?;
        if !table.has_room(1) {
            return Err(Error::NoResources);
        }
        listener.clone()
    };
    let socket = listener.accept()?;
    insert_socket(call, socket, out)
}

/// Connects: at once to a kernel listener; to a host address, after the host connected (the
/// caller waits, and may be killed meanwhile).
pub(super) async fn connect(
    caller: &mut Caller<'_, ThreadContext>,
    handle: u32,
    out: u32,
) -> Result<(), Error> {
    let connection = with_call(caller, |call| {
        call.memory.check(out, 1, 4)?;
        let table = call.process.handles.lock();
        let connector =
            table.get(handle)?.require_typed(Rights::WRITE, |entry| entry.connector())?.clone();
        if !table.has_room(1) {
            return Err(Error::NoResources);
        }
        drop(table);
        connector.connect()
    })?;
    let socket = match connection {
        Connection::Made(socket) => socket,
        Connection::Host(connecting) => connecting.await?,
    };
    with_call(caller, |call| insert_socket(call, socket, out))
}
