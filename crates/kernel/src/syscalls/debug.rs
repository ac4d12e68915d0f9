//! `debug_write`: bytes to the system console.

use nebulet_abi::{BUFFER_MAX_BYTES, Error};

use super::Call;

pub(super) fn write(call: &mut Call<'_>, buffer: u32, length: u32) -> Result<(), Error> {
    if length > BUFFER_MAX_BYTES {
        return Err(Error::OutOfRange);
    }
    let bytes = call.memory.slice(buffer, length)?;
    call.kernel.platform.console_write(bytes);
    Ok(())
}
