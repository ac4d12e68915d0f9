//! Leaving QEMU, and the symbols wasmtime's `custom` platform (no_std) asks the embedder for.

use core::sync::atomic::{AtomicPtr, Ordering};

use x86_64::instructions::port::Port;

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

/// Wasmtime's one pointer of thread-local state. Single core, one kernel thread: a global.
/// (Wasmtime saves and restores it itself around fiber switches.)
static WASMTIME_TLS: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());

/// Called by wasmtime (`runtime/vm/sys/custom/capi.rs`); starts out null.
#[unsafe(no_mangle)]
pub extern "C" fn wasmtime_tls_get() -> *mut u8 {
    WASMTIME_TLS.load(Ordering::Relaxed)
}

/// Called by wasmtime (`runtime/vm/sys/custom/capi.rs`).
#[unsafe(no_mangle)]
pub extern "C" fn wasmtime_tls_set(pointer: *mut u8) {
    WASMTIME_TLS.store(pointer, Ordering::Relaxed);
}
