//! The hosted platform: tokio, the OS clock and entropy, stdout, Cranelift.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nebulet_kernel::vfs::Errno;
use nebulet_kernel::{BoxFuture, CompileError, ConsoleStream, Platform};

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

    fn fill_secure_random(&self, buffer: &mut [u8]) -> Result<(), nebulet_abi::Error> {
        getrandom::fill(buffer).map_err(|_| nebulet_abi::Error::Io)
    }

    fn console_write(&self, stream: ConsoleStream, bytes: Vec<u8>) -> BoxFuture<()> {
        match (&self.console, stream) {
            (Console::Stdout, ConsoleStream::Output) => write_all(std::io::stdout().lock(), &bytes),
            (Console::Stdout, ConsoleStream::Error) => write_all(std::io::stderr().lock(), &bytes),
            (Console::Buffer(buffer), _) => append(buffer, &bytes),
        }
        Box::pin(std::future::ready(()))
    }

    fn thread_cpu_time(&self) -> i64 {
        thread_cpu_ns()
    }

    fn run_blocking(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<i64> {
        let job = self.runtime.spawn_blocking(move || {
            let start = thread_cpu_ns();
            work();
            thread_cpu_ns().saturating_sub(start)
        });
        Box::pin(async move { job.await.unwrap_or(0) })
    }

    fn console_read(&self, max: usize) -> BoxFuture<Result<Vec<u8>, Errno>> {
        match &self.console {
            // Reading stdin blocks: on a thread of its own, not on a worker of the executor.
            Console::Stdout => Box::pin(async move {
                let read = tokio::task::spawn_blocking(move || {
                    let mut buffer = vec![0; max.min(1 << 16)];
                    let count = std::io::stdin().lock().read(&mut buffer)?;
                    buffer.truncate(count);
                    Ok::<_, std::io::Error>(buffer)
                });
                match read.await {
                    Ok(Ok(bytes)) => Ok(bytes),
                    _ => Err(Errno::IO),
                }
            }),
            // A captured console has no input: end of file at once.
            Console::Buffer(_) => Box::pin(async { Ok(Vec::new()) }),
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

/// The CPU time the calling OS thread has used, in nanoseconds.
fn thread_cpu_ns() -> i64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    time.tv_sec.saturating_mul(1_000_000_000).saturating_add(time.tv_nsec)
}

fn write_all(mut stream: impl Write, bytes: &[u8]) {
    // A closed stream (a pipe whose reader left) must not take the kernel down.
    let _ = stream.write_all(bytes).and_then(|()| stream.flush());
}

fn append(buffer: &Mutex<Vec<u8>>, bytes: &[u8]) {
    buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(bytes);
}
