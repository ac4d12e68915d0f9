//! The scratch page: a page of linear memory this program grows for itself at the top of its
//! memory, which the allocator never hands out. The fuzzer points every writable argument into
//! it (or outside memory), so whatever the kernel writes lands there; near-end pointers in it
//! make ranges that cross the end of memory.
#![allow(unsafe_code, reason = "reads and writes of the scratch page, which no Rust value owns")]

use core::arch::wasm32;

/// The size of a wasm page.
pub const PAGE: u32 = 65_536;

/// The scratch page: `base` is its first byte, `base + PAGE` the end of memory (as long as
/// nothing grows memory after it: [`Scratch::check`]).
#[derive(Debug, Clone, Copy)]
pub struct Scratch {
    pub base: u32,
    pages: usize,
}

impl Scratch {
    /// Grows memory by one page and takes it.
    pub fn new() -> Self {
        let before = wasm32::memory_grow(0, 1);
        assert_ne!(before, usize::MAX, "cannot grow memory for the scratch page");
        Self { base: (before as u32) * PAGE, pages: before + 1 }
    }

    /// The first byte past memory.
    pub fn end(&self) -> u32 {
        self.base + PAGE
    }

    /// Panics if memory grew since: the scratch page would no longer be its top.
    pub fn check(&self) {
        assert_eq!(
            wasm32::memory_size(0),
            self.pages,
            "the fuzzer's memory grew while it fuzzed (a fuzzer bug: it must not allocate)"
        );
    }

    /// Whether `[address, address + length)` lies inside the page.
    pub fn contains(&self, address: u32, length: u32) -> bool {
        address >= self.base && u64::from(address) + u64::from(length) <= u64::from(self.end())
    }

    /// Copies bytes into the page.
    pub fn write(&self, address: u32, bytes: &[u8]) {
        assert!(self.contains(address, bytes.len() as u32), "scratch write out of the page");
        // SAFETY: the range is inside the scratch page, which is memory no Rust value owns.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                core::ptr::with_exposed_provenance_mut::<u8>(address as usize),
                bytes.len(),
            );
        }
    }

    /// Fills a range of the page with zeros.
    pub fn zero(&self, address: u32, length: u32) {
        assert!(self.contains(address, length), "scratch write out of the page");
        // SAFETY: as in `write`.
        unsafe {
            core::ptr::write_bytes(
                core::ptr::with_exposed_provenance_mut::<u8>(address as usize),
                0,
                length as usize,
            );
        }
    }

    /// The little-endian u32 at `address` (inside the page).
    pub fn read_u32(&self, address: u32) -> u32 {
        assert!(self.contains(address, 4), "scratch read out of the page");
        let mut bytes = [0u8; 4];
        // SAFETY: the range is inside the scratch page, which the kernel may have written.
        unsafe {
            core::ptr::copy_nonoverlapping(
                core::ptr::with_exposed_provenance::<u8>(address as usize),
                bytes.as_mut_ptr(),
                4,
            );
        }
        u32::from_le_bytes(bytes)
    }
}
