//! The hosted platform: tokio, the OS clock and entropy, stdout, Cranelift.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nebulet_kernel::{BoxFuture, CompileError, Platform};

/// Where `debug_write` and WASI stdout/stderr go.
#[derive(Debug, Clone)]
pub enum Console {
    /// The process's standard output.
    Stdout,
    /// A buffer (tests read what the system printed).
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// The platform of the hosted kernel.
#[derive(Debug)]
pub struct HostedPlatform {
    start: Instant,
    runtime: tokio::runtime::Handle,
    console: Console,
}

impl HostedPlatform {
    /// A platform that runs tasks on `runtime` and writes to `console`.
    pub fn new(runtime: tokio::runtime::Handle, console: Console) -> Self {
        Self { start: Instant::now(), runtime, console }
    }
}

impl Platform for HostedPlatform {
    fn now(&self) -> i64 {
        i64::try_from(self.start.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    fn realtime(&self) -> i64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
    }

    fn sleep_until(&self, deadline: i64) -> BoxFuture<()> {
        let after_start = Duration::from_nanos(u64::try_from(deadline).unwrap_or(0));
        match self.start.checked_add(after_start) {
            Some(instant) => Box::pin(tokio::time::sleep_until(instant.into())),
            // Beyond what the clock can represent: never.
            None => Box::pin(std::future::pending()),
        }
    }

    fn fill_secure_random(&self, buffer: &mut [u8]) {
        // The OS's entropy never fails on Linux once booted; a failure is a broken machine.
        getrandom::fill(buffer).expect("the operating system's random source failed");
    }

    fn console_write(&self, bytes: &[u8]) {
        match &self.console {
            Console::Stdout => {
                let mut stdout = std::io::stdout().lock();
                // A closed stdout (a pipe whose reader left) must not take the kernel down.
                let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
            }
            Console::Buffer(buffer) => {
                buffer
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend_from_slice(bytes);
            }
        }
    }

    fn spawn(&self, task: BoxFuture<()>) {
        self.runtime.spawn(task);
    }

    fn compile_module(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
    ) -> Result<wasmtime::Module, CompileError> {
        // Text is a hosted convenience; the kernel's rewrite of atomic waits works on binaries.
        let binary =
            wat::parse_bytes(bytes).map_err(|error| CompileError::Invalid(error.to_string()))?;
        let prepared = nebulet_kernel::prepare_module(&binary).map_err(CompileError::Invalid)?;
        wasmtime::Module::new(engine, &prepared)
            .map_err(|error| CompileError::Invalid(format!("{error:#}")))
    }
}
