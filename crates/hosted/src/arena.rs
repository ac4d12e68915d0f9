//! The shared placement: linear memories and fiber stacks carved from a few large reservations,
//! so that a process takes no memory mapping of its own.
//!
//! Linux caps the mappings of a process (`vm.max_map_count`, 65,530 by default). wasmtime maps
//! each linear memory and each fiber stack (with its guard page) separately, and its pooling
//! allocator puts a guard page below every stack slot, so either way a host holds some tens of
//! thousands of processes at most. Here every slot comes from a *chunk*: one anonymous
//! read-write mapping of 1 GiB or more, reserved with `MAP_NORESERVE`, whose pages cost memory
//! only once touched. A host of a million processes then has a few hundred mappings.
//!
//! Memories come in power-of-two size classes from 64 KiB; a memory that outgrows its slot moves
//! to one of the next class (wasmtime allows a memory to move when it has no reservation), and
//! only the pages that hold something are copied, so untouched pages stay untouched. A slot given
//! back is emptied (`MADV_DONTNEED`: its pages return to the host and read as zero again). Stacks
//! come from slots of one size; up to [`WARM_STACKS`] given-back stacks are kept as they are for
//! reuse, the rest are emptied.
//!
//! The price: no guard regions. Compiled code checks every load and store against the memory's
//! size (the placement needs a reservation and guard of 0), and wasm's own stack use is bounded
//! by `max_wasm_stack`; but a host call that overflowed the margin between that and the fiber
//! stack's size would write into the neighbouring stack instead of faulting. That is why this is
//! an option for systems of very many small processes, not the default.
//!
//! Written by hand because wasmtime offers only the two layouts above; the mappings are made
//! with `rustix`.

#![expect(
    unsafe_code,
    reason = "wasmtime's MemoryCreator and StackCreator traits are unsafe, and so are mmap and \
              madvise; each block has its SAFETY note"
)]

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use rustix::mm::{Advice, MapFlags, ProtFlags};
use wasmtime::{LinearMemory, MemoryCreator, MemoryType, StackCreator, StackMemory};

/// The smallest memory slot: one wasm page.
const SMALLEST_CLASS: usize = 1 << 16;
/// The largest memory slot: all a 32-bit memory can address.
const LARGEST_CLASS: usize = 1 << 32;
/// The least address space reserved at once for slots of one size.
const CHUNK_BYTES: usize = 1 << 30;
/// Slots of one size reserved at once, at least.
const CHUNK_SLOTS: usize = 8;
/// Given-back stacks kept resident for reuse; more are emptied.
const WARM_STACKS: usize = 256;
/// The host's page size (x86_64 and aarch64 Linux with 4 KiB pages).
const PAGE: usize = 4096;

/// Slots of one size, carved from chunks that are never unmapped before the arena goes.
#[derive(Debug)]
struct Slots {
    size: usize,
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// Every chunk as (address, length), for unmapping at the end.
    chunks: Vec<(usize, usize)>,
    /// Slots given back and emptied.
    free: Vec<usize>,
    /// Slots given back as they were (stacks only).
    warm: Vec<usize>,
    /// The unused end of the newest chunk.
    fresh: Range<usize>,
}

impl Slots {
    fn new(size: usize) -> Self {
        Self { size, state: Mutex::new(SlotState::default()) }
    }

    /// A slot's address, and whether it may hold old bytes (a warm stack).
    fn take(&self) -> Result<(usize, Warmth), String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(address) = state.warm.pop() {
            return Ok((address, Warmth::Used));
        }
        if let Some(address) = state.free.pop() {
            return Ok((address, Warmth::Empty));
        }
        if state.fresh.is_empty() {
            let length = (self.size * CHUNK_SLOTS).max(CHUNK_BYTES);
            let address = reserve(length)?;
            state.chunks.push((address, length));
            state.fresh = address..address + length;
        }
        let address = state.fresh.start;
        state.fresh.start += self.size;
        Ok((address, Warmth::Empty))
    }

    /// Gives a slot back, emptying its first `used` bytes, or keeping it warm while fewer than
    /// `warm` slots are.
    fn give_back(&self, address: usize, used: usize, warm: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.warm.len() < warm {
            state.warm.push(address);
            return;
        }
        drop(state);
        empty(address, used.min(self.size));
        self.state.lock().unwrap_or_else(PoisonError::into_inner).free.push(address);
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for &(address, length) in &state.chunks {
            // SAFETY: the chunk was mapped by `reserve` with this length, and every slot in it
            // holds an `Arc` of the arena that owns these slots, so none is in use any more.
            let _ = unsafe { rustix::mm::munmap(address as *mut _, length) };
        }
    }
}

/// Whether a slot's bytes are all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Warmth {
    Empty,
    Used,
}

/// Reserves `length` bytes of address space, readable and writable, committed page by page as
/// they are touched.
fn reserve(length: usize) -> Result<usize, String> {
    let flags = MapFlags::PRIVATE | MapFlags::NORESERVE;
    // SAFETY: a new anonymous mapping at an address of the kernel's choosing overlaps nothing.
    let address = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            length,
            ProtFlags::READ | ProtFlags::WRITE,
            flags,
        )
    }
    .map_err(|error| format!("cannot reserve {length} bytes of address space: {error}"))?;
    Ok(address as usize)
}

/// Returns the pages of `length` bytes at `address` (a slot's start) to the host; they read as
/// zero from then on.
fn empty(address: usize, length: usize) {
    let length = length.next_multiple_of(PAGE);
    if length == 0 {
        return;
    }
    // SAFETY: the range lies in a chunk of ours (a slot is never longer than its chunk), and
    // nothing uses the slot while it is given back. `MADV_DONTNEED` on a private anonymous
    // mapping only drops its pages.
    let result = unsafe { rustix::mm::madvise(address as *mut _, length, Advice::LinuxDontNeed) };
    // Only an invalid range fails, which the reasoning above rules out.
    debug_assert!(result.is_ok(), "madvise of a slot failed: {result:?}");
}

/// The shared placement's memories and stacks (see the module documentation).
#[derive(Debug)]
pub(crate) struct Arena {
    /// Memory slots of 64 KiB, 128 KiB, ... 4 GiB.
    classes: Vec<Slots>,
    /// Stack slots, one size per stack size asked for (an engine asks for one).
    stacks: Mutex<Vec<Arc<Slots>>>,
}

impl Arena {
    pub(crate) fn new() -> Arc<Self> {
        let classes = (SMALLEST_CLASS.trailing_zeros()..=LARGEST_CLASS.trailing_zeros())
            .map(|shift| Slots::new(1 << shift))
            .collect();
        Arc::new(Self { classes, stacks: Mutex::new(Vec::new()) })
    }

    /// The smallest class that holds `bytes`.
    fn class_of(bytes: usize) -> Option<usize> {
        let size = bytes.max(SMALLEST_CLASS).checked_next_power_of_two()?;
        (size <= LARGEST_CLASS)
            .then(|| (size.trailing_zeros() - SMALLEST_CLASS.trailing_zeros()) as usize)
    }

    fn stack_slots(&self, size: usize) -> Arc<Slots> {
        let mut stacks = self.stacks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slots) = stacks.iter().find(|slots| slots.size == size) {
            return slots.clone();
        }
        let slots = Arc::new(Slots::new(size));
        stacks.push(slots.clone());
        slots
    }
}

/// Both creators share one arena: wasmtime takes each as its own `Arc`.
#[derive(Debug, Clone)]
pub(crate) struct SharedPlacement(pub(crate) Arc<Arena>);

// SAFETY: every memory is a zero-filled slot of its own in a chunk that lives as long as the
// arena (each memory holds the arena), its accessible bytes never pass its slot, and it moves
// only to a slot of its own, as `grow_to` documents. No guard region is promised: the creator
// refuses a guard size other than 0.
unsafe impl MemoryCreator for SharedPlacement {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        if guard_size_in_bytes != 0 {
            return Err(
                "the shared placement has no guard regions (memory_guard_size must be 0)".into()
            );
        }
        // A reservation promises the memory never moves: its slot then holds the reservation.
        let reserved = reserved_size_in_bytes.unwrap_or(0);
        let class = Arena::class_of(minimum.max(reserved))
            .ok_or_else(|| format!("a memory of {minimum} bytes is larger than 4 GiB"))?;
        let (address, warmth) = self.0.classes[class].take()?;
        debug_assert_eq!(warmth, Warmth::Empty, "memory slots are never kept warm");
        Ok(Box::new(ArenaMemory {
            arena: self.0.clone(),
            class,
            address,
            size: minimum,
            maximum: maximum.unwrap_or(LARGEST_CLASS).min(LARGEST_CLASS),
            movable: reserved == 0,
        }))
    }
}

/// A linear memory in a slot of the arena.
#[derive(Debug)]
struct ArenaMemory {
    arena: Arc<Arena>,
    class: usize,
    address: usize,
    size: usize,
    maximum: usize,
    movable: bool,
}

impl ArenaMemory {
    fn capacity(&self) -> usize {
        self.arena.classes[self.class].size
    }

    /// Moves to a slot of the class that holds `new_size`, copying the pages that hold
    /// anything (reading an untouched page maps nothing), and gives the old slot back.
    fn move_to_hold(&mut self, new_size: usize) -> wasmtime::Result<()> {
        let class = Arena::class_of(new_size)
            .ok_or_else(|| wasmtime::format_err!("a memory cannot grow past 4 GiB"))?;
        let (address, _) =
            self.arena.classes[class].take().map_err(|error| wasmtime::format_err!(error))?;
        for offset in (0..self.size).step_by(PAGE) {
            let length = PAGE.min(self.size - offset);
            // SAFETY: both slots are ours alone (the old one until it is given back below, the
            // new one since `take`), they do not overlap, and `offset + length` lies within
            // `self.size`, which is within both slots.
            let (from, to) = unsafe {
                (
                    std::slice::from_raw_parts((self.address + offset) as *const u8, length),
                    std::slice::from_raw_parts_mut((address + offset) as *mut u8, length),
                )
            };
            if from.iter().any(|&byte| byte != 0) {
                to.copy_from_slice(from);
            }
        }
        self.arena.classes[self.class].give_back(self.address, self.size, 0);
        self.class = class;
        self.address = address;
        Ok(())
    }
}

// SAFETY: see `MemoryCreator for SharedPlacement`; `as_ptr` is the slot's start, and the first
// `byte_size` bytes of the slot are the memory, zero-filled where never written.
unsafe impl LinearMemory for ArenaMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.capacity()
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.maximum {
            wasmtime::bail!("a memory cannot grow past its maximum of {} bytes", self.maximum);
        }
        if new_size > self.capacity() {
            if !self.movable {
                wasmtime::bail!("a memory cannot grow past its reservation");
            }
            self.move_to_hold(new_size)?;
        }
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.address as *mut u8
    }
}

impl Drop for ArenaMemory {
    fn drop(&mut self) {
        self.arena.classes[self.class].give_back(self.address, self.size, 0);
    }
}

// SAFETY: every stack is a slot of its own, page-aligned and a whole number of pages long, in a
// chunk that lives as long as the arena (each stack holds its slots). Zeroing is honoured: a
// warm stack is given only when zeroing is not asked for. It has no guard page (see the module
// documentation): its guard range is empty.
unsafe impl StackCreator for SharedPlacement {
    fn new_stack(&self, size: usize, zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let size = size.next_multiple_of(PAGE);
        let slots = self.0.stack_slots(size);
        let (address, warmth) = slots.take().map_err(|error| wasmtime::format_err!(error))?;
        if zeroed && warmth == Warmth::Used {
            empty(address, size);
        }
        Ok(Box::new(ArenaStack { slots, address }))
    }
}

/// A fiber stack in a slot of the arena.
#[derive(Debug)]
struct ArenaStack {
    slots: Arc<Slots>,
    address: usize,
}

// SAFETY: see `StackCreator for SharedPlacement`.
unsafe impl StackMemory for ArenaStack {
    fn top(&self) -> *mut u8 {
        (self.address + self.slots.size) as *mut u8
    }

    fn range(&self) -> Range<usize> {
        self.address..self.address + self.slots.size
    }

    fn guard_range(&self) -> Range<*mut u8> {
        let bottom = self.address as *mut u8;
        bottom..bottom
    }
}

impl Drop for ArenaStack {
    fn drop(&mut self) {
        self.slots.give_back(self.address, self.slots.size, WARM_STACKS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement() -> SharedPlacement {
        SharedPlacement(Arena::new())
    }

    fn memory(placement: &SharedPlacement, minimum: usize) -> Box<dyn LinearMemory> {
        let ty = MemoryType::new(0, None);
        placement.new_memory(ty, minimum, None, Some(0), 0).unwrap()
    }

    fn bytes(memory: &dyn LinearMemory) -> &[u8] {
        // SAFETY (test): the memory's first `byte_size` bytes are its own and readable.
        unsafe { std::slice::from_raw_parts(memory.as_ptr(), memory.byte_size()) }
    }

    fn write(memory: &mut dyn LinearMemory, offset: usize, byte: u8) {
        assert!(offset < memory.byte_size());
        // SAFETY (test): in bounds, checked above, and the memory is ours.
        unsafe { memory.as_ptr().add(offset).write(byte) };
    }

    #[test]
    fn classes_are_powers_of_two_from_one_page_to_four_gibibytes() {
        assert_eq!(Arena::class_of(0), Some(0));
        assert_eq!(Arena::class_of(65_536), Some(0));
        assert_eq!(Arena::class_of(65_537), Some(1));
        assert_eq!(Arena::class_of(1 << 32), Some(16));
        assert_eq!(Arena::class_of((1 << 32) + 1), None);
    }

    #[test]
    fn memories_are_zeroed_and_separate_and_keep_their_bytes_when_they_move() {
        let placement = placement();
        let mut first = memory(&placement, 65_536);
        let mut second = memory(&placement, 65_536);
        assert!(bytes(&*first).iter().all(|&byte| byte == 0));
        write(&mut *first, 10, 7);
        write(&mut *first, 65_535, 9);
        assert_eq!(bytes(&*second)[10], 0, "another memory does not see the write");
        let before = first.as_ptr();
        first.grow_to(5 * 65_536).unwrap();
        assert_ne!(first.as_ptr(), before, "a memory outgrowing its slot moves");
        assert_eq!(first.byte_capacity(), 8 * 65_536);
        let contents = bytes(&*first);
        assert_eq!((contents[10], contents[65_535]), (7, 9));
        assert!(contents[65_536..].iter().all(|&byte| byte == 0));
        // The emptied slot is reused, zeroed, by the next memory of its class.
        let third = memory(&placement, 65_536);
        assert_eq!(third.as_ptr(), before);
        assert!(bytes(&*third).iter().all(|&byte| byte == 0));
        write(&mut *second, 0, 1);
    }

    #[test]
    fn a_reserved_memory_never_moves_and_maxima_hold() {
        let placement = placement();
        let ty = MemoryType::new(0, None);
        let mut fixed = placement.new_memory(ty.clone(), 65_536, None, Some(1 << 20), 0).unwrap();
        let start = fixed.as_ptr();
        fixed.grow_to(1 << 20).unwrap();
        assert_eq!(fixed.as_ptr(), start);
        assert!(fixed.grow_to((1 << 20) + 65_536).is_err());
        let mut bounded = placement.new_memory(ty.clone(), 0, Some(65_536), Some(0), 0).unwrap();
        assert!(bounded.grow_to(2 * 65_536).is_err());
        assert_eq!(bounded.byte_size(), 0, "a refused growth changes nothing");
        assert!(placement.new_memory(ty, 0, None, Some(0), 4096).is_err(), "no guard regions");
    }

    #[test]
    fn stacks_are_whole_pages_of_one_chunk_and_reused() {
        let placement = placement();
        let first = placement.new_stack(100_000, false).unwrap();
        let range = first.range();
        assert_eq!(range.len(), 102_400);
        assert_eq!(first.top() as usize, range.end);
        assert_eq!(range.start % PAGE, 0);
        let second = placement.new_stack(100_000, false).unwrap();
        assert_eq!(second.range().start, range.end, "slots are carved one after another");
        drop(first);
        let again = placement.new_stack(100_000, true).unwrap();
        assert_eq!(again.range(), range, "a given-back stack is reused");
    }
}
