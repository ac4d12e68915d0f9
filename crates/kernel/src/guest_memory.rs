//! Guest memory: the one place where the kernel reads and writes a process's linear memory.
//!
//! It is also the one module of the kernel core with `unsafe`: the memory of a threaded process
//! is a wasmtime `SharedMemory`, handed out as `UnsafeCell` bytes; see [`GuestMemory::shared`].
//!
//! Every guest pointer is an allegation until checked here against the caller's own memory:
//! a pointer/length pair that does not lie entirely inside it is `ERR_INVALID_ARGS`. Checks use
//! 64-bit arithmetic, so no pointer plus length can wrap around.

use alloc::vec::Vec;
#[cfg(feature = "threads")]
use core::cell::UnsafeCell;

use nebulet_abi::Error;

/// The linear memory of the calling process, for the length of one system call.
#[derive(Debug)]
pub(crate) struct GuestMemory<'a> {
    bytes: &'a mut [u8],
}

impl<'a> GuestMemory<'a> {
    pub(crate) fn new(bytes: &'a mut [u8]) -> Self {
        Self { bytes }
    }

    /// The memory of a process whose threads share it, for the length of one system call.
    #[cfg(feature = "threads")]
    #[expect(unsafe_code, reason = "shared wasm memory is only reachable as UnsafeCell bytes")]
    pub(crate) fn shared(cells: &'a [UnsafeCell<u8>]) -> Self {
        let start = UnsafeCell::raw_get(cells.as_ptr());
        // SAFETY: `cells` is the process's shared linear memory, valid for `cells.len()` bytes for
        // 'a (wasmtime never moves or shrinks a shared memory). Nothing else reads or writes those
        // bytes during 'a: only the process's own threads and the kernel on their behalf touch
        // them, and all of them run on the process's one task, which is inside this system call
        // (threads are coroutines: no wasm of the process runs during a host call of it). So
        // this is the only reference to the bytes while it lives, as `&mut` requires.
        let bytes = unsafe { core::slice::from_raw_parts_mut(start, cells.len()) };
        Self { bytes }
    }

    /// The byte range of `pointer..pointer + length`, if it lies inside the memory.
    fn range(&self, pointer: u32, length: u64) -> Result<core::ops::Range<usize>, Error> {
        let start = u64::from(pointer);
        let end = start.checked_add(length).ok_or(Error::InvalidArgs)?;
        if end > self.bytes.len() as u64 {
            return Err(Error::InvalidArgs);
        }
        Ok(start as usize..end as usize)
    }

    /// Fails unless `count` items of `size` bytes at `pointer` lie inside the memory.
    pub(crate) fn check(&self, pointer: u32, count: u32, size: u32) -> Result<(), Error> {
        self.range(pointer, u64::from(count) * u64::from(size)).map(drop)
    }

    /// Fails unless an out-pointer for a `u32` is inside memory; 0 means "not wanted" and passes.
    pub(crate) fn check_optional(&self, pointer: u32, size: u32) -> Result<(), Error> {
        if pointer == 0 { Ok(()) } else { self.check(pointer, 1, size) }
    }

    pub(crate) fn slice(&self, pointer: u32, length: u32) -> Result<&[u8], Error> {
        let range = self.range(pointer, u64::from(length))?;
        Ok(&self.bytes[range])
    }

    pub(crate) fn slice_mut(&mut self, pointer: u32, length: u32) -> Result<&mut [u8], Error> {
        let range = self.range(pointer, u64::from(length))?;
        Ok(&mut self.bytes[range])
    }

    /// Reads `count` little-endian `u32`s.
    pub(crate) fn read_u32s(&self, pointer: u32, count: u32) -> Result<Vec<u32>, Error> {
        let length = count.checked_mul(4).ok_or(Error::InvalidArgs)?;
        let bytes = self.slice(pointer, length)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|word| u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
            .collect())
    }

    pub(crate) fn write(&mut self, pointer: u32, data: &[u8]) -> Result<(), Error> {
        let length = u32::try_from(data.len()).map_err(|_| Error::InvalidArgs)?;
        self.slice_mut(pointer, length)?.copy_from_slice(data);
        Ok(())
    }

    pub(crate) fn write_u32(&mut self, pointer: u32, value: u32) -> Result<(), Error> {
        self.write(pointer, &value.to_le_bytes())
    }

    pub(crate) fn write_u64(&mut self, pointer: u32, value: u64) -> Result<(), Error> {
        self.write(pointer, &value.to_le_bytes())
    }

    /// Writes a `u32` unless the pointer is 0 ("not wanted").
    pub(crate) fn write_optional_u32(&mut self, pointer: u32, value: u32) -> Result<(), Error> {
        if pointer == 0 { Ok(()) } else { self.write_u32(pointer, value) }
    }

    /// A UTF-8 string of at most `max` bytes: too long is `ERR_OUT_OF_RANGE`, not UTF-8 is
    /// `ERR_INVALID_ARGS`.
    pub(crate) fn str(&self, pointer: u32, length: u32, max: u32) -> Result<&str, Error> {
        if length > max {
            return Err(Error::OutOfRange);
        }
        let bytes = self.slice(pointer, length)?;
        core::str::from_utf8(bytes).map_err(|_| Error::InvalidArgs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_outside_memory_are_refused() {
        let mut backing = [0u8; 16];
        let mut memory = GuestMemory::new(&mut backing);
        assert!(memory.check(12, 1, 4).is_ok());
        assert_eq!(memory.check(13, 1, 4), Err(Error::InvalidArgs));
        assert_eq!(memory.check(u32::MAX, 1, 4), Err(Error::InvalidArgs));
        assert_eq!(memory.check(0, u32::MAX, u32::MAX), Err(Error::InvalidArgs));
        assert_eq!(memory.write_u32(14, 1), Err(Error::InvalidArgs));
        assert_eq!(backing_unchanged(&memory), [0u8; 16]);
        memory.write_u32(12, 0x0403_0201).unwrap();
        assert_eq!(memory.slice(12, 4).unwrap(), [1, 2, 3, 4]);
        assert_eq!(memory.read_u32s(12, 1).unwrap(), [0x0403_0201]);
        assert!(memory.write_optional_u32(0, 7).is_ok());
        assert!(memory.check_optional(0, 4).is_ok());
    }

    fn backing_unchanged(memory: &GuestMemory<'_>) -> [u8; 16] {
        let mut copy = [0u8; 16];
        copy.copy_from_slice(memory.slice(0, 16).unwrap());
        copy
    }

    #[test]
    fn strings_are_checked() {
        let mut backing = *b"service\xff";
        let memory = GuestMemory::new(&mut backing);
        assert_eq!(memory.str(0, 7, 64), Ok("service"));
        assert_eq!(memory.str(0, 8, 64), Err(Error::InvalidArgs));
        assert_eq!(memory.str(0, 7, 3), Err(Error::OutOfRange));
        assert_eq!(memory.str(4, 8, 64), Err(Error::InvalidArgs));
        assert_eq!(memory.str(4, 80, 64), Err(Error::OutOfRange), "the limit is checked first");
    }
}
