//! The system console.

use nebulet_abi::{BUFFER_MAX_BYTES, Error};

use crate::sys;

/// Writes bytes to the system console (stdout when hosted), in calls of at most
/// [`BUFFER_MAX_BYTES`]. Unlike `println!` it bypasses std's buffering and WASI.
pub fn write(bytes: &[u8]) -> Result<(), Error> {
    bytes.chunks(BUFFER_MAX_BYTES as usize).try_for_each(sys::debug_write)
}
