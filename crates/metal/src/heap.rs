//! The global allocator: talc over 256 MiB of RAM right after the kernel image (and its stack),
//! checked against the PVH memory map. Allocation takes a spin lock: never allocate in an
//! interrupt handler.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use talc::{ErrOnOom, Span, Talc, Talck};

use crate::boot::{self, MEMORY_RAM, StartInfo};

pub const HEAP_SIZE: usize = 256 << 20;
const ALIGN: usize = 2 << 20;

#[global_allocator]
static ALLOCATOR: Counting =
    Counting { talc: Talc::new(ErrOnOom).lock(), used: AtomicUsize::new(0) };

/// talc, counting the bytes in use, so the kernel can refuse work before the heap runs out
/// (`Platform::memory_available`) instead of failing an allocation, which would stop the kernel.
struct Counting {
    talc: Talck<spin::Mutex<()>, ErrOnOom>,
    used: AtomicUsize,
}

// SAFETY: every method forwards to talc's GlobalAlloc with the same arguments, which the caller
// guarantees meet GlobalAlloc's contract; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received (see the impl).
        let pointer = unsafe { self.talc.alloc(layout) };
        if !pointer.is_null() {
            self.used.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received (see the impl).
        unsafe { self.talc.dealloc(pointer, layout) };
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received (see the impl).
        let moved = unsafe { self.talc.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            self.used.fetch_add(new_size, Ordering::Relaxed);
            self.used.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

/// Heap bytes not in use (fragmentation aside).
pub fn free_bytes() -> u64 {
    (HEAP_SIZE.saturating_sub(ALLOCATOR.used.load(Ordering::Relaxed))) as u64
}

/// Claims the heap; returns its range. Panics if the memory map has no RAM there, or if a
/// module (`-initrd`) lies inside it.
pub fn init(info: &StartInfo) -> core::ops::Range<usize> {
    let start = boot::kernel_range().1.next_multiple_of(ALIGN);
    let end = start + HEAP_SIZE;
    let in_ram = info.memory_map().iter().any(|region| {
        region.kind == MEMORY_RAM
            && region.addr <= start as u64
            && region.addr + region.size >= end as u64
    });
    assert!(in_ram, "no {} MiB of RAM at {start:#x} (run QEMU with -m 1G)", HEAP_SIZE >> 20);
    for module in info.modules() {
        let overlaps = module.paddr < end as u64 && module.paddr + module.size > start as u64;
        assert!(!overlaps, "a module at {:#x} overlaps the heap", module.paddr);
    }
    // SAFETY: RAM per the memory map, above the kernel image and stack, below any module,
    // identity-mapped by boot.rs, and claimed once.
    unsafe {
        ALLOCATOR
            .talc
            .lock()
            .claim(Span::from_base_size(start as *mut u8, HEAP_SIZE))
            .expect("talc accepts a 256 MiB heap");
    }
    start..end
}
