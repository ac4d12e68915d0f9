//! The kernel's service registry: names for channels.
//!
//! A service creates a channel pair, registers one end under its name and keeps the other:
//! each client connection arrives there as a message with no bytes and one handle, the
//! client's channel. See the `echo` app.

use nebulet_abi::Error;

use crate::channel::Channel;
use crate::handle::Failed;
use crate::sys;

/// Registers `channel` under `name`: the kernel keeps it and delivers each connection to
/// `name` to it, as a message carrying the new channel (its peer stays with the client).
/// The name is freed when `channel`'s peer closes. [`Error::AlreadyExists`] if the name is
/// taken; on failure the channel is given back.
pub fn register(name: &str, channel: Channel) -> Result<(), Failed<Channel>> {
    match sys::service_register(name.as_bytes(), channel.as_handle().as_raw()) {
        Ok(()) => {
            // The kernel owns it now.
            let _ = channel.into_handle().into_raw();
            Ok(())
        }
        Err(error) => Err(Failed { error, returned: channel }),
    }
}

/// Connects to the service `name`: creates a channel pair, hands one end to the service and
/// returns the other. [`Error::NotFound`] if no service has that name.
pub fn connect(name: &str) -> Result<Channel, Error> {
    let (ours, theirs) = Channel::create()?;
    connect_with(name, theirs)?;
    Ok(ours)
}

/// Hands `channel` to the service `name` (it arrives there as a one-handle message); on
/// failure the channel is given back.
pub fn connect_with(name: &str, channel: Channel) -> Result<(), Failed<Channel>> {
    match sys::service_connect(name.as_bytes(), channel.as_handle().as_raw()) {
        Ok(()) => {
            // The service owns it now.
            let _ = channel.into_handle().into_raw();
            Ok(())
        }
        Err(error) => Err(Failed { error, returned: channel }),
    }
}
