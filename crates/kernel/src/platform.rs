//! The platform trait: the few services the kernel core asks of the machine it runs on.

use alloc::boxed::Box;
use alloc::string::String;
use core::future::Future;
use core::pin::Pin;

/// A boxed future the platform runs or the kernel awaits.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a module could not be made from bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// The bytes are not a valid module; the text says why.
    Invalid(String),
    /// This platform cannot compile modules (bare metal: modules come precompiled).
    NotSupported,
}

/// What the kernel core needs from the machine: clock, timers, entropy, console, executor and
/// compiler. Hosted on Linux it is tokio and the OS; on bare metal, the kernel's own drivers.
pub trait Platform: Send + Sync + 'static {
    /// Nanoseconds on the monotonic clock since the kernel started.
    fn now(&self) -> i64;

    /// Nanoseconds since 1970-01-01 UTC on the wall clock (0 where the platform has none).
    fn realtime(&self) -> i64;

    /// A future that completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: i64) -> BoxFuture<()>;

    /// Fills `buffer` with cryptographically secure random bytes.
    /// `ERR_IO` if the entropy source failed (the buffer's contents are then unspecified).
    fn fill_secure_random(&self, buffer: &mut [u8]) -> Result<(), nebulet_abi::Error>;

    /// Writes bytes to the system console as they are (`debug_write`, WASI stdout).
    fn console_write(&self, bytes: &[u8]);

    /// Writes bytes to the console's error stream (WASI stderr).
    fn console_write_error(&self, bytes: &[u8]);

    /// Reads up to `max` bytes from the console's input (WASI stdin); empty at its end.
    fn console_read(&self, max: usize)
    -> BoxFuture<Result<alloc::vec::Vec<u8>, crate::vfs::Errno>>;

    /// Bytes the kernel may still allocate, where the platform's memory is a fixed heap (bare
    /// metal); `None` where it is not the kernel's to count (hosted: the OS's virtual memory).
    /// The kernel starts no process and grows no memory that would leave less than a margin.
    fn memory_available(&self) -> Option<u64> {
        None
    }

    /// Runs a task (a process, a timer) to completion in the background.
    fn spawn(&self, task: BoxFuture<()>);

    /// Validates and compiles wasm bytes (or text, where the platform accepts it) into a module.
    /// The binary must go through [`crate::prepare_module`] first (the rewrite of atomic waits
    /// that threads need).
    fn compile_module(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
    ) -> Result<wasmtime::Module, CompileError>;
}
