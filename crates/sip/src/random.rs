//! Random bytes from the kernel.

use nebulet_abi::{BUFFER_MAX_BYTES, Error};

use crate::sys;

/// Fills `buffer` with fast random bytes (not for secrets).
pub fn fill(buffer: &mut [u8]) -> Result<(), Error> {
    buffer.chunks_mut(BUFFER_MAX_BYTES as usize).try_for_each(sys::random_fill)
}

/// Fills `buffer` with cryptographically secure random bytes.
pub fn secure_fill(buffer: &mut [u8]) -> Result<(), Error> {
    buffer.chunks_mut(BUFFER_MAX_BYTES as usize).try_for_each(sys::cprng_fill)
}
