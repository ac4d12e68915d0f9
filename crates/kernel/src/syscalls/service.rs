//! The service registry: names bound to channel endpoints, and connecting to them.

use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec;

use nebulet_abi::{Error, NAME_MAX_BYTES, Rights};

use super::Call;
use crate::budget::{Charge, Resource};
use crate::kernel::Kernel;
use crate::objects::channel::{Endpoint, Message};
use crate::objects::process::Process;

/// The most names one process may have registered at once.
pub(crate) const SERVICES_PER_PROCESS: usize = 256;

/// Bytes charged for a registration besides its name.
const SERVICE_OVERHEAD_BYTES: u64 = 64;

/// A registered name: the endpoint clients' channels are queued on, and who registered it.
#[derive(Debug)]
pub(crate) struct Service {
    endpoint: Arc<Endpoint>,
    owner: u64,
    /// The name's memory, charged to the process that registered it.
    _charge: Charge,
}

/// Removes the names `process` registered (when it ends); each removal is a lookup.
pub(crate) fn unregister_services(kernel: &Kernel, process: &Process) {
    let names = core::mem::take(&mut *process.services.lock());
    let mut services = kernel.services.lock();
    for name in names {
        if services.get(&name).is_some_and(|service| service.owner == process.koid) {
            services.remove(&name);
        }
    }
}

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
    let mut registered = call.process.services.lock();
    let mut services = call.kernel.services.lock();
    // Names this process no longer holds (removed once their server went, or taken over since)
    // do not count: at most 256 lookups.
    let koid = call.process.koid;
    registered.retain(|held| services.get(held).is_some_and(|service| service.owner == koid));
    if registered.len() >= SERVICES_PER_PROCESS {
        return Err(Error::NoResources);
    }
    let size = name.len() as u64 + SERVICE_OVERHEAD_BYTES;
    let charge = call.process.budget.charge(Resource::Memory, size)?;
    // A name whose server has gone (the registered endpoint's peer closed) is free again.
    if services.get(&name).is_some_and(|service| !service.endpoint.is_peer_closed()) {
        return Err(Error::AlreadyExists);
    }
    table.remove(channel)?;
    if !registered.contains(&name) {
        registered.push(name.clone());
    }
    let service = Service { endpoint, owner: call.process.koid, _charge: charge };
    services.insert(name, service);
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
            Some(registered) if registered.endpoint.is_peer_closed() => {
                services.remove(name);
                return Err(Error::NotFound);
            }
            Some(registered) => registered.endpoint.clone(),
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
