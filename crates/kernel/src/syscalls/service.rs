//! The service registry: names bound to channel endpoints, and connecting to them.

use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec;

use nebulet_abi::{Error, NAME_MAX_BYTES, Rights};

use super::Call;
use crate::objects::channel::Message;

fn name<'a>(call: &'a Call<'_>, pointer: u32, length: u32) -> Result<&'a str, Error> {
    let name = call.memory.str(pointer, length, NAME_MAX_BYTES)?;
    if name.is_empty() { Err(Error::InvalidArgs) } else { Ok(name) }
}

pub(super) fn register(
    call: &mut Call<'_>,
    name_pointer: u32,
    name_length: u32,
    channel: u32,
) -> Result<(), Error> {
    let name = name(call, name_pointer, name_length)?.to_string();
    let mut table = call.process.handles.lock();
    let endpoint =
        table.get(channel)?.require_typed(Rights::TRANSFER, |entry| entry.channel())?.clone();
    if endpoint.is_peer_closed() {
        return Err(Error::PeerClosed);
    }
    let mut services = call.kernel.services.lock();
    // A name whose server has gone (the registered endpoint's peer closed) is free again.
    services.retain(|_, registered| !registered.is_peer_closed());
    if services.contains_key(&name) {
        return Err(Error::AlreadyExists);
    }
    services.insert(name, endpoint);
    table.remove(channel)?;
    Ok(())
}

pub(super) fn connect(
    call: &mut Call<'_>,
    name_pointer: u32,
    name_length: u32,
    channel: u32,
) -> Result<(), Error> {
    let name = name(call, name_pointer, name_length)?;
    let mut table = call.process.handles.lock();
    let entry = table.get(channel)?;
    let client = entry.require_typed(Rights::TRANSFER, |entry| entry.channel())?.clone();
    let entry = entry.clone();
    let service = {
        let mut services = call.kernel.services.lock();
        match services.get(name) {
            Some(registered) if registered.is_peer_closed() => {
                services.remove(name);
                return Err(Error::NotFound);
            }
            Some(registered) => registered.clone(),
            None => return Err(Error::NotFound),
        }
    };
    if client.is_peer_of(&service) || Arc::ptr_eq(&client, &service) {
        // The server's own end in its own queue could never be closed: refuse the cycle.
        return Err(Error::InvalidArgs);
    }
    match service.write(Message { bytes: vec![], handles: vec![entry], charge: None }) {
        Ok(()) => {
            table.remove(channel)?;
            Ok(())
        }
        Err((Error::PeerClosed, _)) => Err(Error::NotFound),
        Err((error, _)) => Err(error),
    }
}
