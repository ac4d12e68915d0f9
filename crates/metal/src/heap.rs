//! The global allocator: talc over every span of RAM the PVH memory map reports above the kernel
//! image (and its stack), less what the loader put there (the system image, its own tables).
//! Allocation takes a spin lock: never allocate in an interrupt handler.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use talc::{ErrOnOom, Span, Talc, Talck};

use crate::boot::{self, MEMORY_RAM, StartInfo};

const PAGE: u64 = 4096;
/// The end of the cached identity map (boot.rs maps the last GiB below 4 GiB uncached).
const CACHED_END: u64 = 3 << 30;
/// Spans smaller than this are left out (not worth an arena).
const SMALLEST_SPAN: u64 = 64 << 10;
/// The most spans the heap is made of, and the most ranges the loader may have put in RAM.
const MAX_SPANS: usize = 16;
const MAX_RESERVED: usize = 16;

#[global_allocator]
static ALLOCATOR: Counting = Counting {
    talc: Talc::new(ErrOnOom).lock(),
    used: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
};
/// Bytes the heap was given at boot.
static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);

/// talc, counting the bytes in use, so the kernel can refuse work before the heap runs out
/// (`Platform::memory_available`) instead of failing an allocation, which would stop the kernel.
struct Counting {
    talc: Talck<spin::Mutex<()>, ErrOnOom>,
    used: AtomicUsize,
    /// The most bytes ever in use at once.
    peak: AtomicUsize,
}

impl Counting {
    fn add(&self, bytes: usize) {
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(used, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to talc's GlobalAlloc with the same arguments, which the caller
// guarantees meet GlobalAlloc's contract; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received (see the impl).
        let pointer = unsafe { self.talc.alloc(layout) };
        if !pointer.is_null() {
            self.add(layout.size());
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
            self.used.fetch_sub(layout.size(), Ordering::Relaxed);
            self.add(new_size);
        }
        moved
    }
}

/// Heap bytes not in use (fragmentation aside).
pub fn free_bytes() -> u64 {
    HEAP_BYTES.load(Ordering::Relaxed).saturating_sub(ALLOCATOR.used.load(Ordering::Relaxed)) as u64
}

/// Heap bytes in use now, and the most ever in use at once.
pub fn used_bytes() -> (u64, u64) {
    (ALLOCATOR.used.load(Ordering::Relaxed) as u64, ALLOCATOR.peak.load(Ordering::Relaxed) as u64)
}

/// What `init` gave the heap.
#[derive(Debug, Default)]
pub struct Heap {
    /// Bytes of RAM the memory map reports, all regions together.
    pub ram: u64,
    /// Bytes the heap was given.
    pub bytes: u64,
    /// The spans (start, end) it was given, in address order.
    pub spans: [(u64, u64); MAX_SPANS],
    pub span_count: usize,
}

/// Gives the heap every span of RAM above the kernel's end and below `CACHED_END`, less the
/// loader's ranges (modules, the start info and what it points to), page-aligned inwards.
/// Panics if that leaves nothing.
pub fn init(info: &'static StartInfo) -> Heap {
    let kernel_end = boot::kernel_range().1 as u64;
    let mut reserved = [(0u64, 0u64); MAX_RESERVED];
    let loader = loader_ranges(info);
    let reserved_count = loader.clone().count().min(MAX_RESERVED);
    for (slot, range) in reserved.iter_mut().zip(loader) {
        *slot = (range.0 & !(PAGE - 1), range.1.next_multiple_of(PAGE));
    }
    let reserved = &mut reserved[..reserved_count];
    reserved.sort_unstable();
    let mut heap = Heap::default();
    for region in info.memory_map().iter().filter(|region| region.kind == MEMORY_RAM) {
        heap.ram += region.size;
        let start = region.addr.max(kernel_end).next_multiple_of(PAGE);
        let end = (region.addr + region.size).min(CACHED_END) & !(PAGE - 1);
        let mut cursor = start;
        // `reserved` is sorted: cut the region at each range that overlaps it.
        for &(reserved_start, reserved_end) in reserved.iter().chain([(end, end)].iter()) {
            let span_end = reserved_start.min(end);
            if span_end > cursor && span_end - cursor >= SMALLEST_SPAN {
                heap.add(cursor, span_end);
            }
            cursor = cursor.max(reserved_end);
            if cursor >= end {
                break;
            }
        }
    }
    assert!(heap.bytes > 0, "no RAM above the kernel at {kernel_end:#x} (run QEMU with -m 32M)");
    HEAP_BYTES.store(heap.bytes as usize, Ordering::Relaxed);
    heap
}

impl Heap {
    fn add(&mut self, start: u64, end: u64) {
        if self.span_count == MAX_SPANS {
            return;
        }
        // SAFETY: RAM per the memory map, above the kernel image and stack, outside every range
        // the loader put data in (`loader_ranges`), below the uncached last GiB of the identity
        // map of boot.rs, and claimed once (`init` runs once, the spans do not overlap).
        let claimed = unsafe {
            ALLOCATOR
                .talc
                .lock()
                .claim(Span::from_base_size(start as *mut u8, (end - start) as usize))
        };
        if claimed.is_ok() {
            self.spans[self.span_count] = (start, end);
            self.span_count += 1;
            self.bytes += end - start;
        }
    }
}

/// The (start, end) ranges of RAM the loader wrote: the start info, the memory map, the module
/// list, each module and its command line, and the kernel's command line.
pub fn loader_ranges(info: &'static StartInfo) -> impl Iterator<Item = (u64, u64)> + Clone {
    let range = |start: u64, size: u64| (start, start + size);
    [
        range(core::ptr::from_ref(info) as u64, size_of::<StartInfo>() as u64),
        info.memory_map_range(),
        info.module_list_range(),
        StartInfo::string_range(info.command_line_address()),
    ]
    .into_iter()
    .chain(info.modules().iter().flat_map(move |module| {
        [range(module.paddr, module.size), StartInfo::string_range(module.cmdline_paddr)]
    }))
    .filter(|(start, end)| end > start)
}
