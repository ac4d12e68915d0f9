//! `debug_write`: bytes to the system console.

use nebulet_abi::{BUFFER_MAX_BYTES, Error};
use wasmtime::Caller;

use super::with_call;
use crate::platform::ConsoleStream;
use crate::runner::ThreadContext;

/// Copies the bytes and waits until the console has taken them (only this caller waits while
/// the console is backed up).
pub(super) async fn write(
    caller: &mut Caller<'_, ThreadContext>,
    buffer: u32,
    length: u32,
) -> Result<(), Error> {
    if length > BUFFER_MAX_BYTES {
        return Err(Error::OutOfRange);
    }
    let bytes =
        with_call(caller, |call| Ok::<_, Error>(call.memory.slice(buffer, length)?.to_vec()))?;
    let platform = caller.data().kernel.platform.clone();
    platform.console_write(ConsoleStream::Output, bytes).await;
    Ok(())
}
