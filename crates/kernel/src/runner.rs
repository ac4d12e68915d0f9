//! Running a process: instantiate its module, call `_start`, and end it however it ends.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::sync::atomic::Ordering;
use core::task::Poll;

use nebulet_abi::ExitReason;

use crate::kernel::Kernel;
use crate::objects::process::{ExitStatus, Process};

/// The data of one thread's wasmtime store: who is calling, and where its memory is.
pub(crate) struct ThreadContext {
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) process: Arc<Process>,
    pub(crate) memory: Option<wasmtime::Memory>,
    accounting: MemoryAccounting,
}

/// The error a thread unwinds with when its process exits on purpose.
#[derive(Debug)]
pub(crate) struct ProcessExit(pub(crate) i32);

impl core::fmt::Display for ProcessExit {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "process exited with code {}", self.0)
    }
}

impl core::error::Error for ProcessExit {}

/// Keeps the process's memory size current as it grows.
struct MemoryAccounting {
    process: Arc<Process>,
}

impl wasmtime::ResourceLimiter for MemoryAccounting {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.process
            .memory_bytes
            .store(desired as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// The task of one process: runs it until it ends or is killed, then closes what it held.
pub(crate) async fn run(kernel: Arc<Kernel>, process: Arc<Process>) {
    let platform = kernel.platform.clone();
    let mut main = Box::pin(run_main(kernel.clone(), process.clone()));
    let status = poll_fn(|context| {
        if let Some(reason) = process.poll_kill(context.waker()) {
            return Poll::Ready(ExitStatus::ended(reason, None));
        }
        let start = platform.now();
        let poll = main.as_mut().poll(context);
        let spent = platform.now().saturating_sub(start);
        process.cpu_ns.fetch_add(spent as u64, Ordering::Relaxed);
        poll
    })
    .await;
    // Dropping the call unwinds a suspended fiber and frees the store and instance.
    drop(main);
    // Counted out before TERMINATED is asserted, so whoever sees the end sees the count too.
    kernel.process_ended();
    process.finish(status);
}

async fn run_main(kernel: Arc<Kernel>, process: Arc<Process>) -> ExitStatus {
    let accounting = MemoryAccounting {
        process: process.clone(),
    };
    let context = ThreadContext {
        kernel: kernel.clone(),
        process: process.clone(),
        memory: None,
        accounting,
    };
    let mut store = wasmtime::Store::new(&kernel.engine, context);
    store.limiter(|context| &mut context.accounting);
    store.epoch_deadline_async_yield_and_update(1);
    let instance = match kernel
        .linker
        .instantiate_async(&mut store, &process.module)
        .await
    {
        Ok(instance) => instance,
        Err(error) => return ending(error, "cannot start"),
    };
    let memory = instance.get_memory(&mut store, "memory");
    if let Some(memory) = memory {
        process
            .memory_bytes
            .store(memory.data_size(&store) as u64, Ordering::Relaxed);
    }
    store.data_mut().memory = memory;
    let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
        Ok(start) => start,
        Err(error) => return ending(error, "cannot start"),
    };
    match start.call_async(&mut store, ()).await {
        Ok(()) => ExitStatus::exited(0),
        Err(error) => ending(error, "trapped"),
    }
}

/// How an error ends the process: a deliberate exit, or a trap described on one line.
fn ending(error: wasmtime::Error, what: &str) -> ExitStatus {
    if let Some(exit) = error.downcast_ref::<ProcessExit>() {
        return ExitStatus::exited(exit.0);
    }
    ExitStatus::ended(ExitReason::Trapped, Some(describe(&error, what)))
}

/// `what: reason; wasm backtrace: f <- g <- _start`, on one line.
pub(crate) fn describe(error: &wasmtime::Error, what: &str) -> String {
    let reason = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    let reason = reason.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let frames: Vec<String> = error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|backtrace| {
            backtrace
                .frames()
                .iter()
                .map(|frame| match frame.func_name() {
                    // `{:#}` leaves out the hash of Rust symbols.
                    Some(name) => format!("{:#}", rustc_demangle::demangle(name)),
                    None => format!("func[{}]", frame.func_index()),
                })
                .collect()
        })
        .unwrap_or_default();
    if frames.is_empty() {
        format!("{what}: {reason}")
    } else {
        format!("{what}: {reason}; wasm backtrace: {}", frames.join(" <- "))
    }
}
