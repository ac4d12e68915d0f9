//! Random calls: fast (a kernel ChaCha8 stream) and cryptographic (the platform's entropy).

use nebulet_abi::{BUFFER_MAX_BYTES, Error};

use super::Call;

pub(super) fn fill(call: &mut Call<'_>, buffer: u32, length: u32) -> Result<(), Error> {
    if length > BUFFER_MAX_BYTES {
        return Err(Error::OutOfRange);
    }
    let bytes = call.memory.slice_mut(buffer, length)?;
    call.kernel.random.fill(bytes);
    Ok(())
}

pub(super) fn secure_fill(call: &mut Call<'_>, buffer: u32, length: u32) -> Result<(), Error> {
    if length > BUFFER_MAX_BYTES {
        return Err(Error::OutOfRange);
    }
    call.memory.check(buffer, 1, length)?;
    // Filled aside, so a failing entropy source leaves the caller's buffer as it was.
    let mut bytes = alloc::vec![0u8; length as usize];
    call.kernel.platform.fill_secure_random(&mut bytes)?;
    call.memory.write(buffer, &bytes)
}
