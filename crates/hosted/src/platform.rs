//! The hosted platform: tokio, the OS clock and entropy, stdout, Cranelift and its cache.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use nebulet_kernel::vfs::Errno;
use nebulet_kernel::{
    BoxFuture, Capacity, CompileError, ConsoleStream, DomainRequest, DomainStart, Platform,
    RunLength, RunStart,
};

use crate::cache::ModuleCache;
use crate::compiled::Fingerprint;
use crate::compiler::Compiler;
use crate::console::{ConsoleInput, ConsoleWriter};
use crate::fatal;

/// Where `debug_write` and WASI stdout/stderr go.
#[derive(Debug, Clone)]
pub enum Console {
    /// The host's standard output and error, through a bounded queue: a full pipe stalls the
    /// processes that write to it, nothing else. Stdin is the host's.
    Stdout,
    /// A buffer (tests read what the system printed), written at once; stdin is empty.
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// The platform of the hosted kernel.
#[derive(Debug)]
pub struct HostedPlatform {
    start: Instant,
    runtime: tokio::runtime::Handle,
    console: Console,
    capacity: Capacity,
    /// Blocking jobs (compiles, file I/O) running at once: at most one per core, so that however
    /// many processes compile at once, the executor's workers keep most of the machine (a
    /// compile's pool has a thread per core, all at the lowered priority of blocking jobs).
    blocking: Arc<tokio::sync::Semaphore>,
    compiler: Compiler,
    /// Where compiled modules are kept between runs, if anywhere.
    cache: Option<ModuleCache>,
    /// What starts hardware protection domains, once the host installed it.
    domains: OnceLock<Arc<dyn DomainStarter>>,
    /// The fingerprint of the kernel's engine, once asked for (hashing the engine's settings
    /// took a third of loading a small compiled module).
    fingerprint: OnceLock<Fingerprint>,
}

/// What starts hardware protection domains for the kernel (`process_create_with`'s
/// `PROCESS_CREATE_ISOLATED`): `nebulet_domains`, which builds on this crate, installs one with
/// [`crate::Emulator::enable_domains`]. Without one, the platform has no domains.
pub trait DomainStarter: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a domain for `request` (within the platform's runtime, in the returned future),
    /// whose stdin, stdout and stderr are `stdio`.
    fn start(&self, request: DomainRequest, stdio: [OwnedFd; 3]) -> DomainStart;
}

impl HostedPlatform {
    /// A platform that runs tasks on `runtime` (its timer enabled), writes to `console`, and
    /// gives processes at most `capacity` in all (see [`HostedPlatform::measure_capacity`]),
    /// and keeps the modules it compiles in `cache`, if given.
    pub fn new(
        runtime: tokio::runtime::Handle,
        console: Console,
        capacity: Capacity,
        cache: Option<ModuleCache>,
    ) -> Self {
        fatal::install_location_hook();
        let blocking = Arc::new(tokio::sync::Semaphore::new(crate::cores()));
        let compiler = Compiler::new();
        Self {
            start: Instant::now(),
            runtime,
            console,
            capacity,
            blocking,
            compiler,
            cache,
            domains: OnceLock::new(),
            fingerprint: OnceLock::new(),
        }
    }

    /// The fingerprint of `engine`, the kernel's (computed once).
    pub(crate) fn fingerprint(&self, engine: &wasmtime::Engine) -> Fingerprint {
        *self.fingerprint.get_or_init(|| Fingerprint::of(engine))
    }

    /// Takes `fingerprint` as the kernel's engine's, computed beforehand (a domain's zygote
    /// computes it once, before it forks).
    pub(crate) fn set_fingerprint(&self, fingerprint: Fingerprint) {
        let _ = self.fingerprint.set(fingerprint);
    }

    /// Lets the kernel start domains with `starter`; `false` if a starter was installed already.
    pub(crate) fn enable_domains(&self, starter: Arc<dyn DomainStarter>) -> bool {
        self.domains.set(starter).is_ok()
    }

    /// The cache of compiled modules, if there is one.
    pub fn cache(&self) -> Option<&ModuleCache> {
        self.cache.as_ref()
    }

    /// What this host can give processes now, for an engine configured by `options`: the
    /// root budget, measured from `/proc` and the rlimits with a margin for the host.
    pub fn measure_capacity(options: &crate::EngineOptions) -> Capacity {
        crate::capacity::measure(options)
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
            Some(instant) => Box::pin(crate::timers::sleep_until(instant, Some(&self.runtime))),
            // Beyond what the clock can represent: never.
            None => Box::pin(std::future::pending()),
        }
    }

    fn fill_secure_random(&self, buffer: &mut [u8]) -> Result<(), nebulet_abi::Error> {
        getrandom::fill(buffer).map_err(|_| nebulet_abi::Error::Io)
    }

    fn console_write(&self, stream: ConsoleStream, bytes: Vec<u8>) -> BoxFuture<()> {
        match &self.console {
            Console::Stdout => Box::pin(ConsoleWriter::get(stream).write(bytes)),
            Console::Buffer(buffer) => {
                buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(bytes);
                Box::pin(std::future::ready(()))
            }
        }
    }

    fn console_read(&self, max: usize) -> BoxFuture<Result<Vec<u8>, Errno>> {
        match &self.console {
            Console::Stdout => Box::pin(ConsoleInput::get().read(max)),
            // A captured console has no input: end of file at once.
            Console::Buffer(_) => Box::pin(async { Ok(Vec::new()) }),
        }
    }

    fn thread_cpu_time(&self) -> i64 {
        thread_cpu_ns()
    }

    fn run_started(&self, length: RunLength) -> RunStart {
        crate::cpu_time::run_started(self.now(), length, thread_cpu_ns)
    }

    fn run_cpu_time(&self, start: RunStart) -> i64 {
        crate::cpu_time::run_cpu_time(start, self.now(), thread_cpu_ns)
    }

    fn run_blocking(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<i64> {
        let (runtime, blocking) = (self.runtime.clone(), self.blocking.clone());
        Box::pin(async move {
            // The semaphore is never closed, so this waits for a turn and never fails.
            let Ok(turn) = blocking.acquire_owned().await else { return 0 };
            let job = runtime.spawn_blocking(move || {
                fatal::or_abort(|| {
                    lower_priority();
                    let start = thread_cpu_ns();
                    crate::compiler::take_helpers_cpu();
                    work();
                    drop(turn);
                    // What this thread spent, and what compile threads spent for it.
                    let helpers = crate::compiler::take_helpers_cpu();
                    thread_cpu_ns().saturating_sub(start).saturating_add(helpers)
                })
            });
            // A job never panics (that aborts); it fails only if the runtime shut down first.
            job.await.unwrap_or(0)
        })
    }

    fn capacity(&self) -> Capacity {
        self.capacity
    }

    fn processors(&self) -> usize {
        self.runtime.metrics().num_workers()
    }

    fn spawn(&self, task: BoxFuture<()>) {
        crate::handoff::spawn(&self.runtime, task);
    }

    fn has_domains(&self) -> bool {
        self.domains.get().is_some()
    }

    fn start_domain(&self, request: DomainRequest) -> Result<DomainStart, nebulet_abi::Error> {
        let starter = self.domains.get().ok_or(nebulet_abi::Error::NotSupported)?;
        let (stdio, forwarded) =
            crate::domain_console::stdio(&self.console).map_err(|_| nebulet_abi::Error::Io)?;
        let DomainStart { ended, kill } = starter.start(request, stdio);
        // What the domain printed is in the console before its end is seen.
        let ended = Box::pin(async move {
            let end = ended.await;
            if let Some(forwarded) = forwarded {
                let _ = forwarded.await;
            }
            end
        });
        Ok(DomainStart { ended, kill })
    }

    fn compile_module(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
    ) -> Result<wasmtime::Module, CompileError> {
        // Text is a hosted convenience; the kernel's rewrite of atomic waits works on binaries.
        let binary = crate::source::to_binary(bytes).map_err(CompileError::Invalid)?;
        // Keyed by the binary before the rewrite (which the fingerprint covers), so that a hit
        // skips the rewrite too.
        let cached = self.cache.as_ref().map(|cache| {
            let fingerprint = self.fingerprint(engine);
            (cache, fingerprint, fingerprint.key(&binary))
        });
        if let Some((cache, fingerprint, key)) = &cached
            && let Some(module) = cache.load(engine, *fingerprint, key)
        {
            return Ok(module);
        }
        let prepared = nebulet_kernel::prepare_module(&binary).map_err(CompileError::Invalid)?;
        let module = self.compiler.compile(engine, &prepared).map_err(|error| {
            CompileError::Invalid(crate::source::one_line(&format!("{error:#}")))
        })?;
        if let Some((cache, _, key)) = &cached {
            cache.store(engine, key, &module);
        }
        Ok(module)
    }
}

/// Makes the calling blocking thread yield the CPU to the executor's workers: a compile or a
/// file transfer done for one process must not take time from every other process's
/// wake-ups. Once per thread (tokio reuses its blocking threads); a refusal leaves it as it was.
pub(crate) fn lower_priority() {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !LOWERED.replace(true) {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
    }
}

/// The CPU time the calling OS thread has used, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> i64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    time.tv_sec.saturating_mul(1_000_000_000).saturating_add(time.tv_nsec)
}
