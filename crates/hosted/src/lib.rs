//! Nebulet hosted on Linux: the "userspace emulator" that runs the kernel core as a program.
//!
//! The kernel core runs unchanged; this crate supplies its [`Platform`]: tokio's multi-thread
//! runtime as the executor (one task per process, so processes spread over the cores), a timer
//! thread, the OS's entropy, stdout as the console, and Cranelift as the module compiler. A
//! background thread advances the wasmtime epoch every quarter of a millisecond, so a process that spins
//! without calls still yields to the others (in a domain's kernel, the thread in
//! [`Emulator::block_on`] does, see [`Emulator::with_prepared`]). A panic in any task ends the host (a kernel panic).
//! Modules compile in parallel, and may be kept compiled on disk ([`ModuleCache`]).
// Denied, not forbidden: `compiled` holds the crate's one `unsafe`, wasmtime's deserialize.
#![deny(unsafe_code)]

mod arena;
mod cache;
mod capacity;
mod compiled;
mod compiler;
mod console;
mod cpu_time;
mod domain_console;
mod fatal;
mod files;
mod handoff;
pub mod network;
mod platform;
mod source;
mod ticker;
mod timers;

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use cache::{CACHE_DIRECTORY_VARIABLE, CacheStatistics, DEFAULT_CACHE_LIMIT, ModuleCache};
pub use compiled::{Fingerprint, LoadError, is_compiled, serialize as serialize_module};
pub use files::{HostDirectory, HostFile, errno};
pub use nebulet_kernel::{
    Capacity, ChannelEnd, Connector, Crossed, CrossingMessage, DomainEnd, DomainRequest,
    DomainStart, ExitStatus, Grant, Kernel, Listener, ProcessOptions, ProcessRef, SocketEnd, Stdio,
    wasmtime,
};
pub use platform::{Console, DomainStarter, HostedPlatform};
pub use source::module_binary;

/// How often the epoch advances, and so how long a process may run before it yields: short
/// enough that a timer's or a kill's wake waits little for a worker busy with a spinner (a
/// yield costs a few microseconds, about 1% of a busy core at this rate).
pub const EPOCH_INTERVAL: Duration = Duration::from_micros(250);

/// How long dropping an [`Emulator`] waits for its workers and blocking jobs to stop; a job
/// still running then (a long compile) is left to finish on its own.
const SHUTDOWN_PATIENCE: Duration = Duration::from_millis(500);

/// The cores this process may use (`std::thread::available_parallelism`), read once: reading
/// them opens the process's cgroup files each time, which each domain's kernel did twice at its
/// start (a domain's zygote reads them before it forks, see [`PreparedKernel`]).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// What a kernel's start needs that can be made once beforehand, before the process forks
/// copies of itself that each start a kernel (a domain's zygote, `crates/domains`): the engine,
/// the system calls' linker (`Kernel::prepare_linker`), the host's facts but its available
/// memory, which each kernel reads at its start, the engine's fingerprint, which each load of
/// compiled code checks, and the cores the process may use ([`cores`]). About 1 ms of a
/// kernel's start, measured in a domain.
#[derive(Clone)]
pub struct PreparedKernel {
    engine: wasmtime::Engine,
    host: capacity::Host,
    fingerprint: Fingerprint,
}

impl PreparedKernel {
    /// Makes the engine of `options` and the rest now (starting no thread).
    pub fn new(options: &EngineOptions) -> wasmtime::Result<Self> {
        let engine = wasmtime::Engine::new(&options.config())?;
        Kernel::prepare_linker(&engine)?;
        // blake3 detects the CPU's features once per process (with `cpuid`, which a virtual
        // machine's hypervisor traps: about 5 % of a small domain's CPU time), and loading a
        // compiled module checks its checksum with blake3.
        let _ = blake3::hash(b"nebulet");
        let _ = cores();
        let fingerprint = Fingerprint::of(&engine);
        Ok(Self { engine, host: capacity::Host::facts_but_memory(), fingerprint })
    }
}

impl std::fmt::Debug for PreparedKernel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PreparedKernel").finish_non_exhaustive()
    }
}

/// A booted hosted kernel: the runtime, the kernel, and the epoch ticker.
pub struct Emulator {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    kernel: Arc<Kernel>,
    platform: Arc<HostedPlatform>,
    console: Console,
    capacity: Capacity,
    ticker: Arc<ticker::Ticker>,
    ticker_thread: Option<JoinHandle<()>>,
    threads: Threads,
}

/// The threads an emulator's kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// A worker per core, and a thread of its own that advances the epoch.
    PerCore,
    /// One worker, and the epoch advanced by the thread in [`Emulator::block_on`] while it
    /// blocks there (a domain's kernel, see [`Emulator::with_prepared`]).
    OneWorker,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Emulator").field("kernel", &self.kernel).finish_non_exhaustive()
    }
}

/// Spawns `task` on the current tokio runtime as the kernel's processes are spawned: a task it
/// wakes runs next on the same worker (direct hand-off, see `handoff.rs`), and a task that
/// wakes it hands it the worker. Panics outside a runtime.
pub fn spawn_with_handoff(task: impl Future<Output = ()> + Send + 'static) {
    handoff::spawn(&tokio::runtime::Handle::current(), Box::pin(task));
}

/// The wasmtime configuration of the hosted kernel.
pub fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.wasm_threads(true);
    config.shared_memory(true);
    config
}

/// Engine settings that trade speed for memory, for systems of very many small processes.
///
/// Every field left `None` keeps wasmtime's default, so `EngineOptions::default()` is exactly
/// [`engine_config()`]. The defaults on x86_64 reserve 4 GiB of address space plus a 32 MiB
/// guard region per linear memory, which lets compiled code skip bounds checks, and give each
/// thread a 2 MiB fiber stack. Linux caps a process's mappings (`vm.max_map_count`, often
/// 65,530): with the defaults an idle process takes about five (memory, reservation, guards,
/// fiber stack and its guard page) and 4 GiB of address space, so one host process holds about
/// 13,000 of them there; with no reservation and no guard it takes three, about 22,000. Smaller
/// values cost speed: with a reservation below 4 GiB, compiled code checks bounds on every
/// load and store (measured by `cargo xtask bench`, see `docs/benchmarks.md`); a memory that
/// outgrows its reservation is copied to a new place; and a fiber stack too small for the
/// kernel's host calls aborts the host.
///
/// Threaded modules (a shared memory) are not meant for such settings: with the dense settings
/// of `cargo xtask bench` (no reservation, no guard), `threaded pingpong` starts but cannot
/// start its second thread.
///
/// ```no_run
/// use nebulet_hosted::{Console, Emulator, EngineOptions};
///
/// let options = EngineOptions {
///     memory_reservation: Some(0),
///     memory_reservation_for_growth: Some(1 << 20),
///     memory_guard_size: Some(0),
///     async_stack_size: Some(128 << 10),
///     max_wasm_stack: Some(64 << 10),
///     ..EngineOptions::default()
/// };
/// let emulator = Emulator::with_options(Console::Stdout, options).unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Address space reserved for each linear memory, in bytes
    /// ([`wasmtime::Config::memory_reservation`]). Below 4 GiB, loads and stores check bounds.
    pub memory_reservation: Option<u64>,
    /// Extra space reserved when a memory grows past its reservation and moves
    /// ([`wasmtime::Config::memory_reservation_for_growth`]).
    pub memory_reservation_for_growth: Option<u64>,
    /// Inaccessible bytes after (and before) each linear memory
    /// ([`wasmtime::Config::memory_guard_size`]); 0 for none.
    pub memory_guard_size: Option<u64>,
    /// Size of each thread's fiber stack, in bytes ([`wasmtime::Config::async_stack_size`]).
    /// It must exceed `max_wasm_stack` by the stack the kernel's host calls use.
    pub async_stack_size: Option<usize>,
    /// How much of the fiber stack wasm code may use ([`wasmtime::Config::max_wasm_stack`]).
    pub max_wasm_stack: Option<usize>,
    /// Where linear memories and fiber stacks are placed in the host's address space.
    pub placement: Placement,
    /// The root memory budget is this many times what the host can give (see
    /// [`Capacity::memory_bytes`]), on the bet that most processes touch little of what they are
    /// charged for (a memory's whole pages, a thread's whole stack), as Linux overcommits. `None`
    /// or 1: no overcommit, so the budget refuses before the host runs out. Above 1, processes
    /// that do touch everything can exhaust the host's memory.
    pub overcommit: Option<u32>,
}

/// Where linear memories and fiber stacks are placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// Each in a mapping of its own, with guard regions (wasmtime's on-demand allocation).
    #[default]
    Separate,
    /// Carved from a few large shared reservations, without guard regions: a process takes no
    /// mapping of its own, so Linux's `vm.max_map_count` no longer bounds how many processes a
    /// host holds. Needs `memory_reservation` and `memory_guard_size` of 0 (they are set so);
    /// shared (threaded) memories are still placed apart. A host call that overflowed its
    /// stack's margin above `max_wasm_stack` would reach the neighbouring stack, not a guard page.
    Shared,
}

impl EngineOptions {
    /// The many-processes configuration: memories and fiber stacks carved from shared
    /// reservations ([`Placement::Shared`]: no mapping per process), no reservation beyond a
    /// memory's current size (so every load and store checks bounds, and a growing memory moves),
    /// no guard regions, 128 KiB fiber stacks (64 KiB of them for wasm), and a root memory budget
    /// of 16 times the host's memory: each idle process is charged a whole wasm page and a whole
    /// stack (about 200 KiB) but touches a few pages of them.
    pub fn dense() -> Self {
        Self {
            memory_reservation: Some(0),
            memory_reservation_for_growth: Some(0),
            memory_guard_size: Some(0),
            async_stack_size: Some(128 << 10),
            max_wasm_stack: Some(64 << 10),
            placement: Placement::Shared,
            overcommit: Some(16),
        }
    }

    /// [`engine_config()`] with these options applied.
    pub fn config(&self) -> wasmtime::Config {
        let mut config = engine_config();
        if let Some(bytes) = self.memory_reservation {
            config.memory_reservation(bytes);
        }
        if let Some(bytes) = self.memory_reservation_for_growth {
            config.memory_reservation_for_growth(bytes);
        }
        if let Some(bytes) = self.memory_guard_size {
            config.memory_guard_size(bytes);
        }
        if let Some(bytes) = self.async_stack_size {
            config.async_stack_size(bytes);
        }
        if let Some(bytes) = self.max_wasm_stack {
            config.max_wasm_stack(bytes);
        }
        if self.placement == Placement::Shared {
            let placement = arena::SharedPlacement(arena::Arena::new());
            config.memory_reservation(0);
            config.memory_guard_size(0);
            config.guard_before_linear_memory(false);
            // Copy-on-write images map a module's data over a memory of wasmtime's own; here
            // the data is copied into the slot at instantiation.
            config.memory_init_cow(false);
            config.with_host_memory(Arc::new(placement.clone()));
            config.with_host_stack(Arc::new(placement));
        }
        config
    }
}

impl Emulator {
    /// Starts a kernel whose console is `console`.
    pub fn new(console: Console) -> wasmtime::Result<Self> {
        Self::with_options(console, EngineOptions::default())
    }

    /// Starts a kernel whose console is `console`, with its engine configured by `options`
    /// (modules compiled by one engine run only on it). Fails if the options are inconsistent,
    /// e.g. `max_wasm_stack` above `async_stack_size`.
    pub fn with_options(console: Console, options: EngineOptions) -> wasmtime::Result<Self> {
        Self::with_cache(console, options, None)
    }

    /// [`Emulator::with_options`], keeping the modules it compiles (the first program's, the
    /// apps', and those processes compile with `module_compile`) in `cache`, if given.
    pub fn with_cache(
        console: Console,
        options: EngineOptions,
        cache: Option<ModuleCache>,
    ) -> wasmtime::Result<Self> {
        let config = options.config();
        Self::with_config(console, &options, config, cache)
    }

    /// [`Emulator::with_options`] with wasmtime's pooling allocator: instances, linear
    /// memories, tables and fiber stacks come from pools reserved once and are reset for reuse,
    /// instead of being mapped and unmapped for every process. For many short processes (`nebulet
    /// serve` runs one per request); a process that finds the pools full cannot start (it ends
    /// "trapped").
    pub fn with_pooling(
        console: Console,
        options: EngineOptions,
        pooling: wasmtime::PoolingAllocationConfig,
    ) -> wasmtime::Result<Self> {
        let mut config = options.config();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
        Self::with_config(console, &options, config, None)
    }

    /// [`Emulator::with_options`] with what `prepared` made beforehand (from the same
    /// `options`): a domain's zygote makes it once, before it forks (making it starts no
    /// thread), so that each domain it forks does not.
    ///
    /// Unlike the others, this emulator runs its processes on one worker thread, not one per
    /// core: a domain's processes run on one CPU at a time, as one process does, and more
    /// domains use more CPUs. Each worker thread cost a small domain about 0.15 ms of its start
    /// and more of its CPU time (its stack, its allocator's heap, and the pages it touches
    /// first, measured on 2026-12-02). And its epoch advances only while a thread is in
    /// [`Emulator::block_on`] (the first thread to call it), on that thread, instead of on a
    /// thread of its own: one thread fewer again (about 0.07 ms of a domain's start, and
    /// 0.1 ms of its CPU time). A process that spins without calls is interrupted only then,
    /// so its user runs everything inside `block_on`, as a domain does.
    pub fn with_prepared(
        console: Console,
        options: &EngineOptions,
        prepared: &PreparedKernel,
    ) -> wasmtime::Result<Self> {
        let capacity = capacity::measure_with(&prepared.host, options);
        let engine = prepared.engine.clone();
        let emulator =
            Self::with_parts(console, options, engine, None, Some(capacity), Threads::OneWorker)?;
        emulator.platform.set_fingerprint(prepared.fingerprint);
        Ok(emulator)
    }

    /// The emulator of an engine configured by `config` (made from `options`).
    fn with_config(
        console: Console,
        options: &EngineOptions,
        config: wasmtime::Config,
        cache: Option<ModuleCache>,
    ) -> wasmtime::Result<Self> {
        let engine = wasmtime::Engine::new(&config)?;
        Self::with_parts(console, options, engine, cache, None, Threads::PerCore)
    }

    /// The emulator of `engine` (made from `options`), whose capacity is `capacity` if measured
    /// already, on the threads `threads` says.
    fn with_parts(
        console: Console,
        options: &EngineOptions,
        engine: wasmtime::Engine,
        cache: Option<ModuleCache>,
        capacity: Option<Capacity>,
        threads: Threads,
    ) -> wasmtime::Result<Self> {
        // tokio's timer serves only the host's own waits (tests' timeouts); processes' timers
        // are the timer thread's (see `timers`).
        // Kernel locks are held by OS threads here, which the OS may deschedule (see the kernel's `sync` module).
        nebulet_kernel::set_yield(std::thread::yield_now);
        let workers = match threads {
            Threads::PerCore => cores(),
            Threads::OneWorker => 1,
        };
        let ticker = ticker::Ticker::new(workers);
        let (parks, unparks) = (ticker.clone(), ticker.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            // The epoch ticker sleeps while every worker does (see `ticker`).
            .on_thread_park(move || parks.worker_parks())
            .on_thread_unpark(move || unparks.worker_unparks())
            .enable_time()
            // The network's listeners and connectors (see `network`).
            .enable_io()
            // Woken processes (a timer, a message from another core) wait in the global queue;
            // a worker busy with a spinning process looks there between every two polls (each
            // at most an epoch tick long), not every few dozen.
            .global_queue_interval(1)
            .thread_name("nebulet-cpu")
            .build()
            .map_err(wasmtime::Error::new)?;
        let capacity = capacity.unwrap_or_else(|| HostedPlatform::measure_capacity(options));
        let platform = Arc::new(HostedPlatform::new(
            runtime.handle().clone(),
            console.clone(),
            capacity,
            cache,
        ));
        let kernel = Kernel::new(platform.clone(), engine.clone())?;
        let ticker_thread = match threads {
            Threads::PerCore => Some(ticker.start(engine).map_err(wasmtime::Error::new)?),
            Threads::OneWorker => None,
        };
        Ok(Self {
            runtime: Some(runtime),
            kernel,
            platform,
            console,
            capacity,
            ticker,
            ticker_thread,
            threads,
        })
    }

    /// Lets processes start children in hardware protection domains (`process_create_with`'s
    /// `PROCESS_CREATE_ISOLATED`), started by `starter`; without it they get
    /// `ERR_NOT_SUPPORTED`. `false` if domains were enabled already.
    pub fn enable_domains(&self, starter: Arc<dyn DomainStarter>) -> bool {
        self.platform.enable_domains(starter)
    }

    /// The root budget: what this host gives all processes together.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Waits until everything processes wrote to the console so far is written out (stdout and
    /// stderr take the bytes; a pipe nobody reads holds this up as it would any program).
    pub fn flush_console(&self) {
        if let Console::Stdout = self.console {
            console::ConsoleWriter::flush_all();
        }
    }

    /// The cache of compiled modules, if this emulator has one.
    pub fn cache(&self) -> Option<&ModuleCache> {
        self.platform.cache()
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

    /// The runtime processes and the network's tasks run on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("the runtime runs until the emulator is dropped").handle()
    }

    /// Listens on a TCP address of the host (port 0: any free port) for a process to accept
    /// connections from: the listener to grant, and the address it is bound to.
    pub fn listen(
        &self,
        address: std::net::SocketAddr,
    ) -> std::io::Result<(Arc<Listener>, std::net::SocketAddr)> {
        network::listen(self.runtime(), address)
    }

    /// Compiles a `.wasm` or `.wat` module (through the cache, if there is one) and returns it as
    /// a compiled-module file that [`Emulator::load_precompiled`] loads on an engine like this
    /// one: of this nebulet version and engine configuration, on a CPU with the same features.
    pub fn precompile(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let module = self.compile(bytes)?;
        compiled::serialize(self.kernel.engine(), &module)
    }

    /// The module of a compiled-module file (see [`Emulator::precompile`]). The file must be
    /// one that `precompile` wrote, as wasmtime's `--allow-precompiled` asks: its header and
    /// checksum catch a damaged file or one of another engine, not a forged one.
    pub fn load_precompiled(&self, bytes: &[u8]) -> Result<wasmtime::Module, LoadError> {
        let engine = self.kernel.engine();
        compiled::load(engine, self.platform.fingerprint(engine), bytes)
    }

    /// Runs `future` on the kernel's runtime until it completes (advancing the epoch meanwhile,
    /// for an emulator made [`Emulator::with_prepared`]).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let runtime =
            self.runtime.as_ref().expect("the runtime runs until the emulator is dropped");
        match self.threads {
            Threads::PerCore => runtime.block_on(future),
            Threads::OneWorker => {
                let _entered = runtime.enter();
                self.ticker.tick_until(self.kernel.engine(), future)
            }
        }
    }

    /// Starts a process of `module` and waits until it ends.
    pub fn run(&self, module: wasmtime::Module, options: ProcessOptions) -> ExitStatus {
        let process = self.kernel.spawn(module, options);
        self.block_on(process.wait())
    }
}

impl Drop for Emulator {
    /// Stops whatever still runs: the runtime drops every task (a process ends at its next
    /// yield, which the still running epoch ticker brings within a tick), then the ticker stops.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(SHUTDOWN_PATIENCE);
        }
        self.ticker.stop();
        if let Some(ticker) = self.ticker_thread.take() {
            let _ = ticker.join();
        }
    }
}
