//! Kernel panics: a panic in any task or job the platform runs ends the host, loudly.
//!
//! tokio catches a panic in a spawned task and keeps it in the task's handle, which nobody
//! holds: the process would just vanish, its waiters would hang, and nobody would know. So every
//! task and blocking job is polled under `catch_unwind`, and a panic prints
//! `nebulet: kernel panic: MESSAGE at FILE:LINE:COLUMN` and aborts. The location is only known
//! to a panic hook: the hook installed here records it for the current thread and then calls the
//! hook that was there before (so it aborts nothing itself: a test's failed assertion still
//! fails only its test).

use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    /// Where the last panic on this thread happened.
    static LAST_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the hook that records where panics happen (once per host process).
pub(crate) fn install_location_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(ToString::to_string);
            // `try_with`: a panic while the thread's locals are being destroyed records nothing.
            let _ = LAST_LOCATION.try_with(|last| *last.borrow_mut() = location);
            previous(info);
        }));
    });
}

/// Runs `work`; if it panics, the host ends (see the module doc).
pub(crate) fn or_abort<R>(work: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|payload| abort(payload.as_ref()))
}

/// `task`, polled so that a panic in it ends the host (see the module doc). Each poll first
/// wakes the sleepers that are due (see `timers`).
pub(crate) fn guarded<F: Future + Unpin>(mut task: F) -> impl Future<Output = F::Output> {
    std::future::poll_fn(move |context: &mut Context<'_>| -> Poll<F::Output> {
        crate::timers::wake_due();
        or_abort(|| Pin::new(&mut task).poll(context))
    })
}

fn abort(payload: &(dyn std::any::Any + Send)) -> ! {
    let message = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into());
    let location = LAST_LOCATION
        .try_with(|last| last.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_else(|| "an unknown location".into());
    // Straight to stderr: a test harness captures `eprintln!`, and would lose it in the abort.
    let _ = writeln!(std::io::stderr(), "nebulet: kernel panic: {message} at {location}");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebulet_kernel::Platform;
    use std::os::unix::process::ExitStatusExt;

    /// Set in the copy of this test binary that is to panic: to "task" or "blocking".
    const PANIC_IN: &str = "NEBULET_TEST_PANIC_IN";

    /// Runs this test binary's test `name` in a process of its own, set to panic in `place`;
    /// returns its stderr, asserting it aborted.
    fn aborted(name: &str, place: &str) -> String {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env(PANIC_IN, place)
            .output()
            .unwrap();
        assert_eq!(output.status.signal(), Some(6), "SIGABRT: {output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    #[test]
    fn a_panic_in_a_task_aborts_the_host_with_its_message_and_place() {
        if std::env::var_os(PANIC_IN).is_some() {
            install_location_hook();
            let runtime = tokio::runtime::Builder::new_multi_thread().build().unwrap();
            let (sender, receiver) = std::sync::mpsc::channel::<()>();
            runtime.spawn(guarded(Box::pin(async move {
                let _sender = sender;
                panic!("the kernel broke");
            })));
            // Never returns: the panic aborts the process first.
            let _ = receiver.recv();
            unreachable!("the host survived a kernel panic");
        }
        let stderr = aborted(
            "fatal::tests::a_panic_in_a_task_aborts_the_host_with_its_message_and_place",
            "task",
        );
        assert!(
            stderr
                .contains("nebulet: kernel panic: the kernel broke at crates/hosted/src/fatal.rs:"),
            "{stderr}"
        );
    }

    #[test]
    fn a_panic_in_blocking_work_aborts_the_host() {
        if std::env::var_os(PANIC_IN).is_some() {
            let runtime = tokio::runtime::Builder::new_multi_thread().build().unwrap();
            let console = crate::Console::Buffer(Default::default());
            let platform = crate::HostedPlatform::new(
                runtime.handle().clone(),
                console,
                Default::default(),
                None,
            );
            let spent = runtime.block_on(platform.run_blocking(Box::new(|| panic!("a job broke"))));
            unreachable!("the host survived a panic in blocking work ({spent} ns)");
        }
        let stderr = aborted("fatal::tests::a_panic_in_blocking_work_aborts_the_host", "blocking");
        assert!(
            stderr.contains("nebulet: kernel panic: a job broke at crates/hosted/src/fatal.rs:"),
            "{stderr}"
        );
    }
}
