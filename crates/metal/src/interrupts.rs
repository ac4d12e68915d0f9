//! Each core's GDT with its TSS (its own stack for #DF), the IDT all cores share, the legacy
//! PIC (remapped, then masked: the local APICs' timers tick instead, `cpus`), and the handlers
//! of the local APIC's vectors. Handlers are assembly stubs calling Rust (`extern
//! "x86-interrupt"` is nightly-only). Interrupts arrive on the current stack (ring 0, no IST
//! except #DF): every stack the kernel runs on, fiber stacks included, needs ~256 bytes of
//! headroom for them.

use core::arch::global_asm;
use core::fmt::Write;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use alloc::boxed::Box;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;

use crate::platform::{EXIT_FAILURE, exit};
use crate::serial::Serial;

use crate::cpus::{self, ERROR_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR, WAKE_VECTOR};

const PIC_OFFSET: u8 = 32;

/// Ticks of the bootstrap processor's timer.
static TICKS: AtomicU64 = AtomicU64::new(0);
/// A `fn()` run on every tick of the bootstrap processor's timer (null: none).
static TICK_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

const DOUBLE_FAULT_STACK_SIZE: usize = 16 * 1024;
static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

global_asm!(
    r#"
    .pushsection .text.metal_interrupts, "ax"
    .global metal_de, metal_ud, metal_df, metal_gp, metal_pf, metal_timer, metal_wake
    .global metal_spurious, metal_apic_spurious
metal_de:   push 0
            push 0
            jmp metal_exception_common
metal_ud:   push 0
            push 6
            jmp metal_exception_common
metal_df:   push 8
            jmp metal_exception_common
metal_gp:   push 13
            jmp metal_exception_common
metal_pf:   push 14
            jmp metal_exception_common
metal_exception_common:
    mov rdi, rsp                /* &ExceptionFrame */
    and rsp, -16
    cld
    call metal_exception
    ud2

metal_timer:
    push rdi
    mov edi, 1                  /* a tick */
    jmp metal_apic_common
metal_wake:
    push rdi
    xor edi, edi                /* a wake-up IPI or an APIC error: EOI only */
metal_apic_common:
    push rax
    push rcx
    push rdx
    push rsi
    push r8
    push r9
    push r10
    push r11                    /* 5 + 9 words pushed: rsp is 16-byte aligned again */
    cld
    call metal_apic_interrupt
    pop r11
    pop r10
    pop r9
    pop r8
    pop rsi
    pop rdx
    pop rcx
    pop rax
    pop rdi
    iretq

metal_spurious:                 /* IRQ 7: the master PIC's spurious vector, no EOI */
metal_apic_spurious:            /* the local APIC's spurious vector, no EOI */
    iretq
    .popsection
    "#
);

unsafe extern "C" {
    fn metal_de();
    fn metal_ud();
    fn metal_df();
    fn metal_gp();
    fn metal_pf();
    fn metal_timer();
    fn metal_wake();
    fn metal_spurious();
    fn metal_apic_spurious();
}

/// What the exception stubs leave on the stack.
#[repr(C)]
#[derive(Debug)]
struct ExceptionFrame {
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

#[unsafe(no_mangle)]
extern "C" fn metal_exception(frame: &ExceptionFrame) -> ! {
    let name = match frame.vector {
        0 => "#DE divide error",
        6 => "#UD invalid opcode",
        8 => "#DF double fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        _ => "exception",
    };
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let _ = writeln!(
        Serial,
        "\nnebulet-metal: {name} (vector {}) at rip {:#x}, error code {:#x}, rsp {:#x}, cr2 {cr2:#x}",
        frame.vector, frame.rip, frame.error_code, frame.rsp
    );
    exit(EXIT_FAILURE)
}

/// A local APIC interrupt: a timer tick (`tick` 1) or a wake-up IPI or an error (0). Every
/// core's timer ends its `hlt`; only the bootstrap processor's advances the epoch (wasmtime's
/// epoch is one counter for all cores: a process spinning on any core sees it move and yields).
#[unsafe(no_mangle)]
extern "C" fn metal_apic_interrupt(tick: u64) {
    if tick == 1 {
        let cpu = cpus::current();
        cpu.ticks.fetch_add(1, Ordering::Relaxed);
        if cpu.index == 0 {
            TICKS.fetch_add(1, Ordering::Relaxed);
            let hook = TICK_HOOK.load(Ordering::Acquire);
            if !hook.is_null() {
                // SAFETY: only `set_tick_hook` stores into TICK_HOOK, and it stores a `fn()`.
                let hook: fn() = unsafe { core::mem::transmute::<*mut (), fn()>(hook) };
                hook();
            }
        }
    }
    cpus::end_of_interrupt();
}

/// Timer ticks (1 ms each) of the bootstrap processor since `init`.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Runs `hook` on every timer tick, in the interrupt handler: it must not block, take locks
/// that the interrupted code may hold, or allocate (e.g. wasmtime's `Engine::increment_epoch`).
pub fn set_tick_hook(hook: fn()) {
    TICK_HOOK.store(hook as *mut (), Ordering::Release);
}

/// One core's GDT, TSS and #DF stack (IST 1; only the CPU touches it).
struct CoreTables {
    double_fault_stack: [u8; DOUBLE_FAULT_STACK_SIZE],
    tss: TaskStateSegment,
}

/// Makes this core's GDT and TSS (from the heap, never freed) and loads them.
fn load_gdt() {
    let tables = Box::leak(Box::new(CoreTables {
        double_fault_stack: [0; DOUBLE_FAULT_STACK_SIZE],
        tss: TaskStateSegment::new(),
    }));
    let top = VirtAddr::from_ptr(tables.double_fault_stack.as_ptr_range().end);
    tables.tss.interrupt_stack_table[0] = top.align_down(16u64);
    let tss: &'static TaskStateSegment = &tables.tss;
    let gdt = Box::leak(Box::new(GlobalDescriptorTable::new()));
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = gdt;
    gdt.load();
    // SAFETY: the selectors name the descriptors just loaded; the TSS is 'static.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss);
    }
}

fn stub(entry: unsafe extern "C" fn()) -> VirtAddr {
    VirtAddr::new(entry as usize as u64)
}

fn load_idt() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        // SAFETY: each address is an assembly stub above, written for exactly that vector
        // (with or without a CPU-pushed error code); IST 0 is the #DF stack set in the TSS.
        unsafe {
            idt.divide_error.set_handler_addr(stub(metal_de));
            idt.invalid_opcode.set_handler_addr(stub(metal_ud));
            idt.double_fault.set_handler_addr(stub(metal_df)).set_stack_index(0);
            idt.general_protection_fault.set_handler_addr(stub(metal_gp));
            idt.page_fault.set_handler_addr(stub(metal_pf));
            idt[TIMER_VECTOR].set_handler_addr(stub(metal_timer));
            idt[PIC_OFFSET + 7].set_handler_addr(stub(metal_spurious));
            idt[WAKE_VECTOR].set_handler_addr(stub(metal_wake));
            idt[ERROR_VECTOR].set_handler_addr(stub(metal_wake));
            idt[SPURIOUS_VECTOR].set_handler_addr(stub(metal_apic_spurious));
        }
        idt
    });
    idt.load();
}

/// Sets up the bootstrap processor: its GDT and TSS, the IDT, the legacy PIC (remapped to
/// vectors 32-47 and masked), its local APIC and timer (`cpus`), and enables interrupts.
pub fn init() {
    load_gdt();
    load_idt();
    // SAFETY: the PIC is programmed once, here, with interrupts still disabled, and left with
    // every line masked: the local APICs' timers replace the PIT's IRQ 0.
    unsafe {
        let mut pics = pic8259::ChainedPics::new(PIC_OFFSET, PIC_OFFSET + 8);
        pics.initialize();
        pics.write_masks(0xFF, 0xFF);
    }
    cpus::init_bootstrap();
    x86_64::instructions::interrupts::enable();
}

/// Sets up an application processor's GDT and TSS and loads the shared IDT (interrupts stay
/// off; the caller enables them once its local APIC is set up).
pub fn init_core() {
    load_gdt();
    load_idt();
}
