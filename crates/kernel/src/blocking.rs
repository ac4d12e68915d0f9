//! Long work away from the executor: run on the platform's blocking threads, CPU charged.

use alloc::boxed::Box;
use alloc::sync::Arc;

use crate::kernel::Kernel;
use crate::objects::process::Process;

/// Runs `work` with [`crate::Platform::run_blocking`] and charges the CPU time it used to
/// `process`. `None` only if the platform broke its promise to run the work.
pub(crate) async fn run<R: Send + 'static>(
    kernel: &Kernel,
    process: &Process,
    work: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    let result = Arc::new(crate::sync::Mutex::new(None));
    let slot = result.clone();
    let spent = kernel.platform.run_blocking(Box::new(move || *slot.lock() = Some(work()))).await;
    process.charge_cpu(spent);
    result.lock().take()
}
