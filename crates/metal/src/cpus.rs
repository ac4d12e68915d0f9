//! The cores: each one's own data (found through its GS base), the application processors'
//! start (the MADT's local APIC IDs, then INIT, SIPI, SIPI to a real-mode trampoline), and the
//! wake-up IPI an idle core gets when another queues work.
//!
//! The trampoline is written by hand: no crate starts x86 application processors for a PVH
//! kernel. It is copied to `TRAMPOLINE` (below 1 MiB, where a SIPI can point), switches to
//! protected mode, then to long mode on the boot page tables of boot.rs, and calls `ap_main`
//! on a stack from the heap that the bootstrap processor left in `ap_stack_top`.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use x2apic::lapic::{LocalApic, LocalApicBuilder, TimerDivide, TimerMode, xapic_base};

use crate::clock::{now_ns, rdtsc, tsc_hz};

/// The most cores the kernel runs on.
pub const MAX_CPUS: usize = 64;
/// Interrupt vectors of the local APIC: its timer, the wake-up IPI, errors and spurious ones.
pub const TIMER_VECTOR: u8 = 0x20;
pub const WAKE_VECTOR: u8 = 0xF0;
pub const ERROR_VECTOR: u8 = 0xFE;
pub const SPURIOUS_VECTOR: u8 = 0xFF;
/// Ticks per second of every core's timer.
pub const TIMER_HZ: u64 = 1000;
/// The page the trampoline is copied to (SIPI vector 0x08: real-mode address 0x8000).
const TRAMPOLINE: u64 = 0x8000;
/// Each application processor's stack, from the heap (the boot stack is the bootstrap's).
const AP_STACK_BYTES: usize = 256 << 10;

/// One core's own data; GS base points at it (`current`).
#[repr(C)]
#[derive(Debug)]
pub struct Cpu {
    /// Itself: `gs:[0]`.
    this: *const Cpu,
    /// 0 for the bootstrap processor, then in the order they started.
    pub index: usize,
    /// Wasmtime's thread-local pointers for the code running on this core.
    pub wasmtime_tls: [AtomicPtr<u8>; 2],
    /// Timer ticks on this core.
    pub ticks: AtomicU64,
    /// Times this core halted for lack of work.
    pub halts: AtomicU64,
    /// The local APIC: used only by this core, with interrupts off (`with_apic`).
    apic: UnsafeCell<Option<LocalApic>>,
}

// SAFETY: the fields other cores read are atomics or written once before the core starts
// (`index`, `this`); `apic` is touched only by its own core, with interrupts off (`with_apic`),
// so no two accesses overlap.
unsafe impl Sync for Cpu {}
// SAFETY: as for Sync: a `Cpu` is created on the bootstrap processor and then used only through
// shared references, by the rules above.
unsafe impl Send for Cpu {}

/// Each started core's data, by index.
static CPUS: [AtomicPtr<Cpu>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
/// Each started core's local APIC ID, by index.
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static ONLINE: AtomicUsize = AtomicUsize::new(0);
/// The local APIC timer's initial count for one tick (calibrated on the bootstrap processor).
static TIMER_COUNT: AtomicU32 = AtomicU32::new(0);

/// The data of the core running this.
pub fn current() -> &'static Cpu {
    let cpu: *const Cpu;
    // SAFETY: GS base points at this core's `Cpu` from `install` on (the bootstrap processor
    // installs its own before anything calls this); `gs:[0]` is its `this` field.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) cpu, options(nostack, readonly, preserves_flags));
        &*cpu
    }
}

/// The data of every started core.
pub fn all() -> impl Iterator<Item = &'static Cpu> {
    CPUS.iter().map_while(|cpu| {
        // SAFETY: a non-null entry was stored by `install` from a leaked (never freed) `Cpu`.
        unsafe { cpu.load(Ordering::Acquire).as_ref() }
    })
}

/// The local APIC timer's initial count for one tick.
pub fn timer_count() -> u32 {
    TIMER_COUNT.load(Ordering::Relaxed)
}

/// How many cores run the executor.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire).max(1)
}

/// Makes the data of core `index` and points this core's GS base at it.
fn install(index: usize) -> &'static Cpu {
    let cpu = Box::leak(Box::new(Cpu {
        this: core::ptr::null(),
        index,
        wasmtime_tls: [const { AtomicPtr::new(core::ptr::null_mut()) }; 2],
        ticks: AtomicU64::new(0),
        halts: AtomicU64::new(0),
        apic: UnsafeCell::new(None),
    }));
    cpu.this = &raw const *cpu;
    let cpu: &'static Cpu = cpu;
    CPUS[index].store(core::ptr::from_ref(cpu).cast_mut(), Ordering::Release);
    x86_64::registers::model_specific::GsBase::write(x86_64::VirtAddr::from_ptr(cpu));
    cpu
}

/// Runs `action` on this core's local APIC, with interrupts off.
pub fn with_apic<T>(action: impl FnOnce(&mut LocalApic) -> T) -> Option<T> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        // SAFETY: only this core touches its `apic`, and only here or in an interrupt handler
        // (`end_of_interrupt`), which cannot run now: interrupts are off.
        let apic = unsafe { &mut *current().apic.get() };
        apic.as_mut().map(action)
    })
}

/// Signals the end of an interrupt to this core's local APIC. Interrupt handlers only.
pub fn end_of_interrupt() {
    // SAFETY: called in an interrupt handler (interrupts off), on the core that owns the APIC:
    // nothing else touches it meanwhile (see `with_apic`).
    let apic = unsafe { &mut *current().apic.get() };
    if let Some(apic) = apic.as_mut() {
        // SAFETY: the EOI register of this core's own local APIC.
        unsafe { apic.end_of_interrupt() };
    }
}

/// Sets up the bootstrap processor: its data, its local APIC and its timer (calibrated here
/// against the TSC). Interrupts must be off; `clock::init` must have run.
pub fn init_bootstrap() -> &'static Cpu {
    let cpu = install(0);
    let mut apic = local_apic(u32::MAX);
    // SAFETY: this core's own local APIC, set up once; its vectors have handlers in the IDT.
    let count = unsafe {
        apic.enable();
        apic.set_timer_mode(TimerMode::OneShot);
        apic.set_timer_initial(u32::MAX);
        let start = rdtsc();
        let wait = tsc_hz() / 100; // 10 ms
        while rdtsc() - start < wait {
            core::hint::spin_loop();
        }
        let elapsed = u32::MAX - apic.timer_current();
        let count = (u64::from(elapsed) * 100 / TIMER_HZ).clamp(1, u64::from(u32::MAX)) as u32;
        apic.set_timer_mode(TimerMode::Periodic);
        apic.set_timer_initial(count);
        count
    };
    TIMER_COUNT.store(count, Ordering::Relaxed);
    // SAFETY: reads the APIC ID register of this core's own APIC (xAPIC: the ID in bits 24-31).
    let raw_id = unsafe { apic.id() };
    APIC_IDS[0].store(if x2apic_mode() { raw_id } else { raw_id >> 24 }, Ordering::Relaxed);
    // SAFETY: interrupts are off; nothing else uses this core's APIC yet.
    unsafe { *cpu.apic.get() = Some(apic) };
    ONLINE.store(1, Ordering::Release);
    cpu
}

/// Whether the local APICs run in x2APIC mode: `x2apic` chooses it when cpuid has it.
fn x2apic_mode() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0
}

/// What `x2apic` must be given as an IPI's destination for the core of `apic_id`: in xAPIC mode
/// the ID goes in bits 24-31 of the ICR's high half, which the crate (0.5) leaves to its caller.
fn destination(apic_id: u32) -> u32 {
    if x2apic_mode() { apic_id } else { apic_id << 24 }
}

fn local_apic(initial: u32) -> LocalApic {
    // SAFETY: reads IA32_APIC_BASE, which every x86_64 CPU with a local APIC has.
    let base = unsafe { xapic_base() };
    LocalApicBuilder::new()
        .timer_vector(usize::from(TIMER_VECTOR))
        .error_vector(usize::from(ERROR_VECTOR))
        .spurious_vector(usize::from(SPURIOUS_VECTOR))
        .timer_mode(TimerMode::Periodic)
        .timer_divide(TimerDivide::Div16)
        .timer_initial(initial)
        // The local APIC page lies in the identity-mapped, uncached last GiB below 4 GiB.
        .set_xapic_base(base)
        .build()
        .expect("the local APIC builder has every vector")
}

/// Sends the wake-up IPI to core `index` (an idle one: it leaves `hlt` and looks for work).
pub fn wake(index: usize) {
    let target = destination(APIC_IDS[index].load(Ordering::Relaxed));
    // SAFETY: a fixed IPI to a started core, whose handler for WAKE_VECTOR only signals EOI.
    with_apic(|apic| unsafe { apic.send_ipi(WAKE_VECTOR, target) });
}

global_asm!(
    r#"
    .pushsection .text.ap_trampoline, "ax"
    .global ap_trampoline_start, ap_trampoline_end
    .code16
ap_trampoline_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl 0x8000 + (ap_gdt_pointer - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(0x8000 + (ap_protected - ap_trampoline_start))

    .code32
ap_protected:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax    /* PAE, OSFXSR, OSXMMEXCPT */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx                          /* EFER */
    rdmsr
    orl $(1 << 8), %eax                             /* LME */
    andl $~(1 << 11), %eax                          /* NXE off */
    wrmsr
    movl %cr0, %eax
    andl $~((1 << 2) | (1 << 3)), %eax              /* EM, TS off */
    orl $((1 << 31) | (1 << 5) | (1 << 1) | 1), %eax /* PG, NE, MP, PE */
    movl %eax, %cr0
    ljmpl $0x18, $ap_long_mode

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF    /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: data */
    .quad 0x00AF9A000000FFFF    /* 0x18: 64-bit code */
ap_gdt_pointer:
    .word ap_gdt_pointer - ap_gdt - 1
    .long 0x8000 + (ap_gdt - ap_trampoline_start)
ap_trampoline_end:

    .code64
ap_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movq ap_stack_top(%rip), %rsp
    fninit
    movq ap_index(%rip), %rdi
    call ap_main
    ud2
    .popsection

    .pushsection .data.ap, "aw"
    .balign 8
    .global ap_stack_top, ap_index
ap_stack_top:
    .quad 0
ap_index:
    .quad 0
    .popsection
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static mut ap_stack_top: u64;
    static mut ap_index: u64;
}

/// Set by an application processor once it runs Rust code on its own stack.
static AP_STARTED: AtomicBool = AtomicBool::new(false);

/// The enabled cores' local APIC IDs, from the MADT (the bootstrap processor's included); just
/// the bootstrap processor's when there is no MADT.
fn apic_ids(rsdp: u64) -> Vec<u32> {
    use acpi::madt::{Madt, MadtEntry};
    let Some(tables) = (rsdp != 0)
        // SAFETY: the RSDP address the loader gave; `IdentityMapped` maps nothing (all RAM and
        // the firmware's tables below 4 GiB are identity-mapped), and the tables are never
        // written.
        .then(|| unsafe { acpi::AcpiTables::from_rsdp(IdentityMapped, rsdp as usize) })
        .and_then(Result::ok)
    else {
        return Vec::new();
    };
    let Ok(madt) = tables.find_table::<Madt>() else { return Vec::new() };
    madt.get()
        .entries()
        .filter_map(|entry| match entry {
            // Bit 0: enabled; bit 1: online capable (may be enabled later, not now).
            MadtEntry::LocalApic(entry) if entry.flags & 1 != 0 => Some(u32::from(entry.apic_id)),
            MadtEntry::LocalX2Apic(entry) if entry.flags & 1 != 0 => Some(entry.x2apic_id),
            _ => None,
        })
        .collect()
}

/// `acpi`'s access to physical memory: identity-mapped, so a mapping is the address itself.
#[derive(Debug, Clone, Copy)]
struct IdentityMapped;

impl acpi::AcpiHandler for IdentityMapped {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> acpi::PhysicalMapping<Self, T> {
        let pointer = core::ptr::NonNull::new(physical_address as *mut T)
            .expect("the ACPI tables do not lie at address 0");
        // SAFETY: identity-mapped memory (boot.rs maps the first 4 GiB): the virtual address is
        // the physical one, and the whole region is mapped.
        unsafe { acpi::PhysicalMapping::new(physical_address, pointer, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &acpi::PhysicalMapping<Self, T>) {}
}

/// Starts up to `wanted - 1` application processors (all the MADT lists if `wanted` is 0),
/// one at a time; returns how many cores run now. `reserved` is where the loader put data, which
/// the trampoline page must not overwrite.
pub fn start_application_processors(rsdp: u64, wanted: usize, reserved: &[(u64, u64)]) -> usize {
    let own = APIC_IDS[0].load(Ordering::Relaxed);
    let others: Vec<u32> = apic_ids(rsdp).into_iter().filter(|&id| id != own).collect();
    let limit = if wanted == 0 { MAX_CPUS } else { wanted.min(MAX_CPUS) };
    if others.is_empty() || limit < 2 {
        return online();
    }
    let page = (TRAMPOLINE, TRAMPOLINE + 4096);
    if reserved.iter().any(|&(start, end)| start < page.1 && end > page.0) {
        crate::println!("cpus: the trampoline page {TRAMPOLINE:#x} holds the loader's data");
        return online();
    }
    let start = &raw const ap_trampoline_start;
    let length = &raw const ap_trampoline_end as usize - start as usize;
    assert!(length <= 4096, "the trampoline fits in its page");
    // SAFETY: the trampoline's bytes to the page at TRAMPOLINE: conventional RAM below 1 MiB,
    // identity-mapped, outside the heap (which starts above the kernel) and outside the
    // loader's data (checked above); nothing else uses it.
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, length) };
    for apic_id in others.into_iter().take(limit - 1) {
        let index = online();
        let stack: &'static mut [u8] =
            Box::leak(alloc::vec![0u8; AP_STACK_BYTES].into_boxed_slice());
        let top = (stack.as_ptr_range().end as u64) & !15;
        AP_STARTED.store(false, Ordering::Release);
        // SAFETY: read by the one application processor being started, after the SIPI below;
        // no other is starting meanwhile (one at a time, each waited for).
        unsafe {
            ap_stack_top = top;
            ap_index = index as u64;
        }
        APIC_IDS[index].store(apic_id, Ordering::Relaxed);
        // INIT, then two SIPIs to vector 0x08 (TRAMPOLINE >> 12), as Intel's MP start-up
        // sequence says, to a core the MADT lists as enabled and not started.
        let target = destination(apic_id);
        let vector = (TRAMPOLINE >> 12) as u8;
        // SAFETY: an INIT IPI to that core (not this one: `destination` encodes its ID).
        with_apic(|apic| unsafe { apic.send_init_ipi(target) });
        spin_for_ns(10_000_000);
        for _ in 0..2 {
            if AP_STARTED.load(Ordering::Acquire) {
                break;
            }
            // SAFETY: a start-up IPI to that core, at the trampoline copied above.
            with_apic(|apic| unsafe { apic.send_sipi(vector, target) });
            spin_for_ns(200_000);
        }
        let deadline = now_ns() + 1_000_000_000;
        while !AP_STARTED.load(Ordering::Acquire) && now_ns() < deadline {
            core::hint::spin_loop();
        }
        if !AP_STARTED.load(Ordering::Acquire) {
            crate::println!("cpus: the core of local APIC ID {apic_id} did not start");
            break;
        }
    }
    online()
}

fn spin_for_ns(ns: u64) {
    let deadline = now_ns() + ns;
    while now_ns() < deadline {
        core::hint::spin_loop();
    }
}

/// An application processor's first Rust code: its data, tables and timer, then the executor.
#[unsafe(no_mangle)]
extern "C" fn ap_main(index: usize) -> ! {
    let cpu = install(index);
    crate::interrupts::init_core();
    let mut apic = local_apic(TIMER_COUNT.load(Ordering::Relaxed));
    // SAFETY: this core's own local APIC, set up once, interrupts off; its vectors have
    // handlers in the (shared) IDT.
    unsafe {
        apic.enable();
        *cpu.apic.get() = Some(apic);
    }
    ONLINE.fetch_add(1, Ordering::AcqRel);
    AP_STARTED.store(true, Ordering::Release);
    x86_64::instructions::interrupts::enable();
    crate::executor::run_forever()
}
