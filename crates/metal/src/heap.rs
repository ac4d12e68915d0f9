//! The global allocator: talc over 256 MiB of RAM right after the kernel image (and its stack),
//! checked against the PVH memory map. Allocation takes a spin lock: never allocate in an
//! interrupt handler.

use talc::{ErrOnOom, Span, Talc, Talck};

use crate::boot::{self, MEMORY_RAM, StartInfo};

pub const HEAP_SIZE: usize = 256 << 20;
const ALIGN: usize = 2 << 20;

#[global_allocator]
static ALLOCATOR: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

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
            .lock()
            .claim(Span::from_base_size(start as *mut u8, HEAP_SIZE))
            .expect("talc accepts a 256 MiB heap");
    }
    start..end
}
