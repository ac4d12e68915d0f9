//! The kernel core's `Platform` on bare metal, leaving QEMU, and the symbols wasmtime's `custom`
//! platform (no_std) asks the embedder for.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use nebulet_kernel::vfs::Errno;
use nebulet_kernel::{BoxFuture, Capacity, CompileError, ConsoleStream, Platform};

/// Heap the kernel keeps for itself, outside every process's budget (its own objects, message
/// copies, wasmtime's stores and instances): a sixteenth of the free heap, at least 1 MiB and at
/// most 16 MiB.
fn heap_margin(free: u64) -> u64 {
    (free / 16).clamp(1 << 20, 16 << 20)
}
use x86_64::instructions::port::Port;

use crate::clock::now_ns;
use crate::{entropy, executor, rtc, serial};

/// `exit` code that QEMU turns into its exit status 33 (`(code << 1) | 1`): success.
pub const EXIT_SUCCESS: u32 = 0x10;
/// `exit` code that QEMU turns into its exit status 35: failure.
pub const EXIT_FAILURE: u32 = 0x11;

/// Stops the machine through QEMU's `isa-debug-exit` device (port 0xf4): QEMU exits with status
/// `(code << 1) | 1`. Without the device, halts forever with interrupts off.
pub fn exit(code: u32) -> ! {
    // SAFETY: port 0xf4 is the isa-debug-exit device (or nothing); writing it touches no memory.
    unsafe { Port::<u32>::new(0xf4).write(code) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// The services of this machine to the kernel core: its cores, the TSC clock, the CMOS wall
/// clock, the executor's timers and tasks, the CPU's entropy, and COM1 as the console (no input). It
/// compiles nothing: apps come precompiled in the boot image.
#[derive(Debug)]
pub struct MetalPlatform;

/// When the console was first written (ns since kernel entry; 0: not yet).
static FIRST_WRITE_NS: AtomicU64 = AtomicU64::new(0);

/// The time of the first console write by the kernel core (a process's first line), if any.
pub fn first_console_write_ns() -> Option<u64> {
    Some(FIRST_WRITE_NS.load(Ordering::Relaxed)).filter(|&ns| ns != 0)
}

fn console(bytes: &[u8]) {
    let _ = FIRST_WRITE_NS.compare_exchange(0, now_ns(), Ordering::Relaxed, Ordering::Relaxed);
    serial::write_bytes(bytes);
}

impl Platform for MetalPlatform {
    fn memory_available(&self) -> Option<u64> {
        Some(crate::heap::free_bytes())
    }

    fn capacity(&self) -> Capacity {
        // The heap sized from the memory map, less what the kernel holds now (its image's
        // modules, the engine) and its margin; no mappings (one address space, no mmap), and
        // as many threads as stacks fit.
        let free = crate::heap::free_bytes();
        let memory_bytes = free.saturating_sub(heap_margin(free));
        let stack_bytes = nebulet_metal_image::STACK_BYTES;
        Capacity {
            memory_bytes,
            mappings: u64::MAX,
            linear_memories: u64::MAX,
            threads: memory_bytes / stack_bytes,
            stack_bytes,
            memory_mappings: 0,
            thread_mappings: 0,
        }
    }

    fn processors(&self) -> usize {
        crate::cpus::online()
    }

    fn now(&self) -> i64 {
        i64::try_from(now_ns()).unwrap_or(i64::MAX)
    }

    fn realtime(&self) -> i64 {
        rtc::realtime_ns()
    }

    fn sleep_until(&self, deadline: i64) -> BoxFuture<()> {
        // A deadline before boot has passed: 0 completes at once.
        Box::pin(executor::sleep_until(u64::try_from(deadline).unwrap_or(0)))
    }

    fn fill_secure_random(&self, buffer: &mut [u8]) -> Result<(), nebulet_abi::Error> {
        // RDSEED, RDRAND or the documented fallback: one of them always answers.
        entropy::fill_secure_random(buffer);
        Ok(())
    }

    fn console_write(&self, _stream: ConsoleStream, bytes: Vec<u8>) -> BoxFuture<()> {
        // One serial line carries both streams; the UART takes the bytes at once.
        console(&bytes);
        Box::pin(core::future::ready(()))
    }

    fn console_read(&self, _max: usize) -> BoxFuture<Result<Vec<u8>, Errno>> {
        // The serial port is output only here: standard input is at its end.
        Box::pin(async { Ok(Vec::new()) })
    }

    fn spawn(&self, task: BoxFuture<()>) {
        // Nobody joins a process's task: the kernel learns its end through the process.
        executor::spawn(task).detach();
    }

    fn compile_module(
        &self,
        _engine: &wasmtime::Engine,
        _bytes: &[u8],
    ) -> Result<wasmtime::Module, CompileError> {
        Err(CompileError::NotSupported)
    }
}

/// Wasmtime's thread-local pointers (slot 0: the runtime's state; slot 1: component-model
/// async, unused here) are each core's own (`cpus::Cpu`), as a thread's are hosted: a task runs
/// on one core for a whole poll, and wasmtime saves and restores them itself around fiber
/// switches, so a fiber resumed on another core finds its state there. Interrupt handlers never
/// touch them.
fn wasmtime_tls() -> &'static [AtomicPtr<u8>; 2] {
    &crate::cpus::current().wasmtime_tls
}

/// Called by wasmtime (`runtime/vm/sys/custom/capi.rs`); every slot starts out null.
#[unsafe(no_mangle)]
pub extern "C" fn wasmtime_tls_get(slot: usize) -> *mut u8 {
    wasmtime_tls().get(slot).map_or(core::ptr::null_mut(), |cell| cell.load(Ordering::Relaxed))
}

/// Called by wasmtime (`runtime/vm/sys/custom/capi.rs`) with slot 0 or 1.
#[unsafe(no_mangle)]
pub extern "C" fn wasmtime_tls_set(slot: usize, pointer: *mut u8) {
    if let Some(cell) = wasmtime_tls().get(slot) {
        cell.store(pointer, Ordering::Relaxed);
    }
}
