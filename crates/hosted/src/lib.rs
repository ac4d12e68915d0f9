//! Nebulet hosted on Linux: the "userspace emulator" that runs the kernel core as a program.
//!
//! The kernel core runs unchanged; this crate supplies its [`Platform`]: tokio's multi-thread
//! runtime as the executor (one task per process, so processes spread over the cores), tokio
//! timers, the OS's entropy, stdout as the console, and Cranelift as the module compiler. A
//! background thread advances the wasmtime epoch every millisecond, so a process that spins
//! without calls still yields to the others.
#![forbid(unsafe_code)]

mod files;
mod platform;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use files::{HostDirectory, HostFile, errno};
pub use nebulet_kernel::{ExitStatus, Kernel, ProcessOptions, ProcessRef, wasmtime};
pub use platform::{Console, HostedPlatform};

/// How often the epoch advances, and so how long a process may run before it yields.
pub const EPOCH_INTERVAL: Duration = Duration::from_millis(1);

/// A booted hosted kernel: the runtime, the kernel, and the epoch ticker.
pub struct Emulator {
    runtime: tokio::runtime::Runtime,
    kernel: Arc<Kernel>,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Emulator").field("kernel", &self.kernel).finish_non_exhaustive()
    }
}

/// The wasmtime configuration of the hosted kernel.
pub fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.wasm_threads(true);
    config.shared_memory(true);
    config
}

impl Emulator {
    /// Starts a kernel whose console is `console`.
    pub fn new(console: Console) -> wasmtime::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_time()
            .thread_name("nebulet-cpu")
            .build()
            .map_err(wasmtime::Error::new)?;
        let engine = wasmtime::Engine::new(&engine_config())?;
        let platform = Arc::new(HostedPlatform::new(runtime.handle().clone(), console));
        let kernel = Kernel::new(platform, engine.clone())?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticker = std::thread::Builder::new()
            .name("nebulet-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_INTERVAL);
                    engine.increment_epoch();
                }
            })
            .map_err(wasmtime::Error::new)?;
        Ok(Self { runtime, kernel, ticker_stop, ticker: Some(ticker) })
    }

    /// The kernel.
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// Compiles a `.wasm` or `.wat` module.
    pub fn compile(&self, bytes: &[u8]) -> Result<wasmtime::Module, String> {
        self.kernel.compile(bytes).map_err(|error| match error {
            nebulet_kernel::CompileError::Invalid(reason) => reason,
            nebulet_kernel::CompileError::NotSupported => "compiling is not supported".into(),
        })
    }

    /// Runs `future` on the kernel's runtime until it completes.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Starts a process of `module` and waits until it ends.
    pub fn run(&self, module: wasmtime::Module, options: ProcessOptions) -> ExitStatus {
        let process = self.kernel.spawn(module, options);
        self.block_on(process.wait())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}
