//! GDT with a TSS (a separate stack for #DF), the IDT, the remapped legacy PIC and the PIT at
//! 1000 Hz. Handlers are assembly stubs calling Rust (`extern "x86-interrupt"` is nightly-only).
//! Interrupts arrive on the current stack (ring 0, no IST except #DF): every stack the kernel
//! runs on, fiber stacks included, needs ~256 bytes of headroom for them.

use core::arch::global_asm;
use core::fmt::Write;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::instructions::port::Port;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;

use crate::platform::{EXIT_FAILURE, exit};
use crate::serial::Serial;

pub const TIMER_HZ: u64 = 1000;
const PIC_OFFSET: u8 = 32;
const PIT_HZ: u64 = 1_193_182;

static TICKS: AtomicU64 = AtomicU64::new(0);
/// A `fn()` run on every timer tick (null: none).
static TICK_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// The #DF handler's stack (IST 1); only the CPU touches it.
static mut DOUBLE_FAULT_STACK: [u8; DOUBLE_FAULT_STACK_SIZE] = [0; DOUBLE_FAULT_STACK_SIZE];
const DOUBLE_FAULT_STACK_SIZE: usize = 16 * 1024;
static TSS: spin::Once<TaskStateSegment> = spin::Once::new();
static GDT: spin::Once<GlobalDescriptorTable> = spin::Once::new();
static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

global_asm!(
    r#"
    .pushsection .text.metal_interrupts, "ax"
    .global metal_de, metal_ud, metal_df, metal_gp, metal_pf, metal_timer, metal_spurious
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
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11                    /* 5 + 9 words pushed: rsp is 16-byte aligned again */
    cld
    call metal_timer_tick
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq

metal_spurious:                 /* IRQ 7: the master PIC's spurious vector, no EOI */
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
    fn metal_spurious();
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

#[unsafe(no_mangle)]
extern "C" fn metal_timer_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    let hook = TICK_HOOK.load(Ordering::Acquire);
    if !hook.is_null() {
        // SAFETY: only `set_tick_hook` stores into TICK_HOOK, and it stores a `fn()`.
        let hook: fn() = unsafe { core::mem::transmute::<*mut (), fn()>(hook) };
        hook();
    }
    // SAFETY: end of interrupt to the master PIC (IRQ 0); touches no memory.
    unsafe { Port::<u8>::new(0x20).write(0x20) };
}

/// Timer ticks (1 ms each) since `init`.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Runs `hook` on every timer tick, in the interrupt handler: it must not block, take locks
/// that the interrupted code may hold, or allocate (e.g. wasmtime's `Engine::increment_epoch`).
pub fn set_tick_hook(hook: fn()) {
    TICK_HOOK.store(hook as *mut (), Ordering::Release);
}

fn load_gdt() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let stack = &raw mut DOUBLE_FAULT_STACK;
        let top = VirtAddr::from_ptr(stack) + DOUBLE_FAULT_STACK_SIZE as u64;
        tss.interrupt_stack_table[0] = top.align_down(16u64);
        tss
    });
    let mut selectors = None;
    let gdt = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        selectors = Some((code, data, tss));
        gdt
    });
    gdt.load();
    let (code, data, tss) = selectors.expect("the GDT is loaded once");
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
            idt[PIC_OFFSET].set_handler_addr(stub(metal_timer));
            idt[PIC_OFFSET + 7].set_handler_addr(stub(metal_spurious));
        }
        idt
    });
    idt.load();
}

/// Loads the GDT, TSS and IDT, remaps the PIC (IRQ 0-15 to vectors 32-47, all masked but the
/// timer), starts the PIT at `TIMER_HZ` and enables interrupts.
pub fn init() {
    load_gdt();
    load_idt();
    // SAFETY: the PIC and PIT are programmed once, here, with interrupts still disabled; the
    // only unmasked line (IRQ 0) has its handler in the IDT.
    unsafe {
        let mut pics = pic8259::ChainedPics::new(PIC_OFFSET, PIC_OFFSET + 8);
        pics.initialize();
        pics.write_masks(0xFE, 0xFF);
        let divisor = (PIT_HZ + TIMER_HZ / 2) / TIMER_HZ;
        Port::<u8>::new(0x43).write(0x34); // channel 0, lobyte/hibyte, mode 2 (rate generator)
        Port::<u8>::new(0x40).write(divisor as u8);
        Port::<u8>::new(0x40).write((divisor >> 8) as u8);
    }
    x86_64::instructions::interrupts::enable();
}
