//! PVH entry: the Xen ELF note, the 32-bit trampoline to long mode, and the PVH start info.
//!
//! QEMU (`-kernel`) loads the ELF at its physical addresses, finds the `XEN_ELFNOTE_PHYS32_ENTRY`
//! note and jumps to `pvh_start32` in 32-bit protected mode, paging off, with `ebx` holding the
//! physical address of a `hvm_start_info`. The trampoline records the TSC, zeroes .bss,
//! identity-maps the first 4 GiB with 2 MiB pages (the last GiB, where the LAPIC, IOAPIC and PCI
//! holes live, uncached; the 4 KiB page below the stack unmapped as a guard), enables PAE, long
//! mode (EFER.LME, NXE off), paging and SSE (CR0.EM=0, CR0.MP=1, CR4.OSFXSR, CR4.OSXMMEXCPT),
//! loads a 64-bit GDT and calls `kernel_main(start_info)` on the 512 KiB stack of `link.ld`.

use core::arch::global_asm;

global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4                     /* name size: "Xen\0" */
    .long 4                     /* descriptor size */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4
    .popsection

    .pushsection .data.boot, "aw"
    .balign 8
    .global boot_tsc
boot_tsc:
    .quad 0
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 0x08: 64-bit code, ring 0 */
    .quad 0x00CF92000000FFFF    /* 0x10: data, ring 0 */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .popsection

    .pushsection .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096
boot_guard_pt:
    .skip 4096
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx                /* start_info, kept in esi until kernel_main */
    rdtsc
    mov dword ptr [boot_tsc], eax
    mov dword ptr [boot_tsc + 4], edx

    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb

    mov eax, offset boot_pdpt
    or eax, 3                   /* present, writable */
    mov dword ptr [boot_pml4], eax
    mov eax, offset boot_pd
    or eax, 3
    xor ecx, ecx
.Lpdpt_loop:
    mov dword ptr [boot_pdpt + ecx * 8], eax
    add eax, 4096
    inc ecx
    cmp ecx, 4
    jne .Lpdpt_loop

    xor ecx, ecx
.Lpd_loop:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83                /* present, writable, 2 MiB page */
    cmp ecx, 3 * 512
    jb .Lpd_cached
    or eax, 0x18                /* 3-4 GiB: PWT | PCD (MMIO) */
.Lpd_cached:
    mov dword ptr [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 4 * 512
    jne .Lpd_loop

    /* The 2 MiB around the stack guard: 4 KiB pages, all but the guard's. A 2 MiB guard
       would waste 2 MiB of RAM, an eighth of a 16 MiB machine. */
    mov eax, offset __stack_guard
    shr eax, 21                 /* the guard's 2 MiB region */
    mov edx, eax
    shl edx, 21
    or edx, 3                   /* present, writable */
    xor ecx, ecx
.Lpt_loop:
    mov dword ptr [boot_guard_pt + ecx * 8], edx
    add edx, 4096
    inc ecx
    cmp ecx, 512
    jne .Lpt_loop
    mov edx, offset __stack_guard
    shr edx, 12
    and edx, 511
    mov dword ptr [boot_guard_pt + edx * 8], 0
    mov edx, offset boot_guard_pt
    or edx, 3
    mov dword ptr [boot_pd + eax * 8], edx

    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)     /* PAE, OSFXSR, OSXMMEXCPT */
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xC0000080                         /* EFER */
    rdmsr
    or eax, 1 << 8                              /* LME */
    and eax, ~(1 << 11)                         /* NXE off */
    wrmsr
    lgdt [boot_gdt_pointer]
    mov eax, cr0
    and eax, ~((1 << 2) | (1 << 3))             /* EM, TS off */
    or eax, (1 << 31) | (1 << 5) | (1 << 1) | 1 /* PG, NE, MP, PE */
    mov cr0, eax
    mov eax, 0x08               /* far return to 64-bit code: CS = 0x08 */
    push eax
    mov eax, offset boot_long_mode
    push eax
    retf

    .code64
boot_long_mode:
    mov eax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + __stack_top]
    fninit
    mov edi, esi
    call kernel_main
    ud2
    .popsection
    "#
);

unsafe extern "C" {
    /// The TSC at `pvh_start32`, written once by the trampoline before any Rust code runs.
    static boot_tsc: u64;
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// The TSC value read by the first instructions of the kernel.
pub fn entry_tsc() -> u64 {
    // SAFETY: written by the trampoline before Rust runs, never written again.
    unsafe { boot_tsc }
}

/// The physical (= virtual) range of the image, its guard and its stack.
pub fn kernel_range() -> (usize, usize) {
    (&raw const __kernel_start as usize, &raw const __kernel_end as usize)
}

/// `struct hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`), version 1.
#[repr(C)]
#[derive(Debug)]
pub struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// One entry of the PVH memory map (E820 types: 1 is usable RAM).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MemoryRegion {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    reserved: u32,
}

/// One module (`-initrd` under QEMU): physical address, size and command line.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Module {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    reserved: u64,
}

pub const MEMORY_RAM: u32 = 1;
const START_INFO_MAGIC: u32 = 0x336e_c578;

impl StartInfo {
    /// Checks the pointer handed over by the loader. The kernel trusts the loader: the structure
    /// and what it points to lie in identity-mapped memory below 4 GiB that nothing else uses.
    pub fn from_pointer(pointer: *const StartInfo) -> Option<&'static StartInfo> {
        // SAFETY: the loader passes a valid, identity-mapped, never-freed structure (or null);
        // the magic number is checked before the rest is trusted.
        let info = unsafe { pointer.as_ref()? };
        (info.magic == START_INFO_MAGIC).then_some(info)
    }

    /// The memory map (empty before version 1 of the structure).
    pub fn memory_map(&self) -> &'static [MemoryRegion] {
        if self.version < 1 || self.memmap_paddr == 0 {
            return &[];
        }
        // SAFETY: the loader's memory map: `memmap_entries` entries at `memmap_paddr`.
        unsafe {
            core::slice::from_raw_parts(
                self.memmap_paddr as *const MemoryRegion,
                self.memmap_entries as usize,
            )
        }
    }

    /// The modules (`-initrd` files).
    pub fn modules(&self) -> &'static [Module] {
        if self.modlist_paddr == 0 {
            return &[];
        }
        // SAFETY: the loader's module list: `nr_modules` entries at `modlist_paddr`.
        unsafe {
            core::slice::from_raw_parts(
                self.modlist_paddr as *const Module,
                self.nr_modules as usize,
            )
        }
    }

    /// The kernel command line (`-append`), if any and valid UTF-8.
    pub fn command_line(&self) -> Option<&'static str> {
        if self.cmdline_paddr == 0 {
            return None;
        }
        // SAFETY: the loader's NUL-terminated command line.
        let bytes = unsafe { core::ffi::CStr::from_ptr(self.cmdline_paddr as *const _) };
        bytes.to_str().ok()
    }

    /// Where the memory map lies (start, end).
    pub fn memory_map_range(&self) -> (u64, u64) {
        let size = size_of::<MemoryRegion>() as u64 * u64::from(self.memmap_entries);
        (self.memmap_paddr, self.memmap_paddr + size)
    }

    /// Where the module list lies (start, end).
    pub fn module_list_range(&self) -> (u64, u64) {
        let size = size_of::<Module>() as u64 * u64::from(self.nr_modules);
        (self.modlist_paddr, self.modlist_paddr + size)
    }

    /// Where a NUL-terminated string the loader wrote lies (start, end; empty for address 0).
    pub fn string_range(address: u64) -> (u64, u64) {
        if address == 0 {
            return (0, 0);
        }
        // SAFETY: the loader's NUL-terminated string (the kernel's or a module's command line).
        let bytes = unsafe { core::ffi::CStr::from_ptr(address as *const _) };
        (address, address + bytes.count_bytes() as u64 + 1)
    }

    /// The kernel command line's address (0 if none).
    pub fn command_line_address(&self) -> u64 {
        self.cmdline_paddr
    }

    /// The ACPI RSDP's physical address (0 if none).
    pub fn rsdp(&self) -> u64 {
        self.rsdp_paddr
    }
}
