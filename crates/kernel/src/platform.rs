//! The platform trait: the few services the kernel core asks of the machine it runs on.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;

/// A boxed future the platform runs or the kernel awaits.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The console's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleStream {
    /// Standard output (`debug_write`, WASI fd 1).
    Output,
    /// Standard error (WASI fd 2).
    Error,
}

/// What the machine can give all processes together: the limits of the root budget, which
/// every process's budget is part of. The kernel refuses (`ERR_NO_RESOURCES`, `memory.grow`
/// returning -1) before the machine runs out, so platforms leave a margin for themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Bytes of memory processes may take in all: linear memories, tables, stacks, compiled
    /// code, queued messages.
    pub memory_bytes: u64,
    /// Memory mappings processes may cause in all (hosted: Linux's `vm.max_map_count`, less
    /// what the host uses and a margin); `u64::MAX` where mappings are not limited.
    pub mappings: u64,
    /// Linear memories that may exist in all: each reserves address space beyond its size
    /// (hosted: the engine's reservation and guards, 4 GiB + 64 MiB by default), and only so
    /// many reservations fit; `u64::MAX` where memories reserve nothing beyond their size.
    pub linear_memories: u64,
    /// Threads (each has a stack) that may exist in all.
    pub threads: u64,
    /// Bytes of stack each thread takes (wasmtime's async stack size on this platform).
    pub stack_bytes: u64,
    /// Mappings each private linear memory takes (its reservation, accessible part and
    /// guard); 0 where memories are carved from shared reservations.
    pub memory_mappings: u64,
    /// Mappings each thread's stack takes (the stack and its guard page); 0 where stacks are
    /// carved from shared reservations.
    pub thread_mappings: u64,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            memory_bytes: u64::MAX,
            mappings: u64::MAX,
            linear_memories: u64::MAX,
            threads: u64::MAX,
            stack_bytes: 0,
            memory_mappings: 0,
            thread_mappings: 0,
        }
    }
}

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

    /// Queues bytes for a console stream (`debug_write`, WASI stdout and stderr). The future
    /// completes once the console has taken them. While the console cannot keep up (a full pipe
    /// nobody reads), it stays pending: back-pressure stalls only the processes that write to
    /// the console, never the executor.
    fn console_write(&self, stream: ConsoleStream, bytes: Vec<u8>) -> BoxFuture<()>;

    /// Reads up to `max` bytes from the console's input (WASI stdin); empty at its end. Bytes
    /// are never lost: if the future is dropped (the reader was killed or its wait canceled),
    /// whatever the platform already read goes to the next reader.
    fn console_read(&self, max: usize) -> BoxFuture<Result<Vec<u8>, crate::vfs::Errno>>;

    /// CPU time, in nanoseconds, that the calling OS thread has used so far. The kernel reads it
    /// around each run of a process to charge its CPU time; where the platform has no per-thread
    /// CPU clock, the monotonic clock stands in.
    fn thread_cpu_time(&self) -> i64 {
        self.now()
    }

    /// Starts measuring a run of a process on the calling OS thread; [`Platform::run_cpu_time`]
    /// gives what it used. `length` is how the process's recent runs went, so a platform whose
    /// thread CPU clock is costly may read it only for runs that are likely long. The default
    /// reads it at both ends.
    fn run_started(&self, length: RunLength) -> RunStart {
        let _ = length;
        RunStart { wall: self.now(), cpu: Some(self.thread_cpu_time()) }
    }

    /// The CPU time, in nanoseconds, of the run that `start` began on this OS thread.
    fn run_cpu_time(&self, start: RunStart) -> i64 {
        let end = self.thread_cpu_time();
        end.saturating_sub(start.cpu.unwrap_or(end))
    }

    /// Runs `work` where it cannot hold up other processes (hosted: a thread of its own, not an
    /// executor worker), for calls that may take long: compiling, file I/O. The future completes
    /// with the CPU time `work` used, in nanoseconds, which the kernel charges to the caller. If
    /// the future is dropped, `work` still runs to its end. The default runs it at once.
    fn run_blocking(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<i64> {
        let start = self.thread_cpu_time();
        work();
        let spent = self.thread_cpu_time().saturating_sub(start);
        Box::pin(async move { spent })
    }

    /// How many processes may run at once: the executor's worker threads (hosted) or cores.
    /// Past that, processes take turns by the fair share of their budgets.
    fn processors(&self) -> usize {
        1
    }

    /// What the machine can give the kernel: the root of every process's budget.
    fn capacity(&self) -> Capacity {
        Capacity::default()
    }

    /// Bytes the kernel may still allocate, where the platform's memory is a fixed heap (bare
    /// metal); `None` where it is not the kernel's to count (hosted: the OS's virtual memory).
    /// The kernel starts no process and grows no memory that would leave less than a margin.
    fn memory_available(&self) -> Option<u64> {
        None
    }

    /// Runs a task (a process, a timer) to completion in the background.
    fn spawn(&self, task: BoxFuture<()>);

    /// Whether [`Platform::start_domain`] can start hardware protection domains here (hosted,
    /// when the host installed a way to start them; never on bare metal).
    fn has_domains(&self) -> bool {
        false
    }

    /// Starts a process in a hardware protection domain of its own (`process_create_with`'s
    /// `PROCESS_CREATE_ISOLATED`, see `docs/domains.md`). The domain itself starts inside the
    /// returned future, which the kernel spawns; `ERR_NOT_SUPPORTED` where there are no domains.
    fn start_domain(&self, request: DomainRequest) -> Result<DomainStart, nebulet_abi::Error> {
        let _ = request;
        Err(nebulet_abi::Error::NotSupported)
    }

    /// Validates and compiles wasm bytes (or text, where the platform accepts it) into a module.
    /// The binary must go through [`crate::prepare_module`] first (the rewrite of atomic waits
    /// that threads need).
    fn compile_module(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
    ) -> Result<wasmtime::Module, CompileError>;
}

/// A run of a process at least this long (50 µs, a fifth of the hosted epoch tick) is long: the
/// process computes, so its next runs are [`RunLength::Long`]; a platform may charge a shorter
/// run its wall time (see [`Platform::run_cpu_time`]).
pub const LONG_RUN_NS: i64 = 50_000;

/// How a process's recent runs went, for [`Platform::run_started`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLength {
    /// Its runs have been short (under [`LONG_RUN_NS`]): it mostly waits or passes messages.
    Short,
    /// One of its recent runs was long: it computes.
    Long,
}

/// Where a run of a process began (see [`Platform::run_started`]).
#[derive(Debug, Clone, Copy)]
pub struct RunStart {
    /// The monotonic clock then, in nanoseconds.
    pub wall: i64,
    /// The OS thread's CPU clock then, if it was read.
    pub cpu: Option<i64>,
}

/// What a domain's first process is started with (see [`Platform::start_domain`]).
#[derive(Debug)]
pub struct DomainRequest {
    /// The process's name.
    pub name: String,
    /// Its module, compiled by this kernel's engine.
    pub module: wasmtime::Module,
    /// Its bootstrap channel, to be bridged: the end the bridge holds, whose peer the creator
    /// holds.
    pub bootstrap: Option<crate::ChannelEnd>,
    /// The limits of its budget in the domain, as `process_set_limit` sets them. The memory
    /// limit is always there: it is what the creator's budget holds for the domain.
    pub limits: Vec<(nebulet_abi::Limit, u64)>,
    /// Where the platform reports the CPU time and memory the domain uses while it runs.
    pub meter: crate::domain::DomainMeter,
}

/// A domain being started: how it ends, and how to end it.
pub struct DomainStart {
    /// Starts the domain, and completes when it has ended, with how its first process ended.
    pub ended: BoxFuture<DomainEnd>,
    /// Kills the domain (its host process), whether it has started yet or not; `ended` then
    /// completes soon after.
    pub kill: Box<dyn FnOnce() + Send>,
}

impl core::fmt::Debug for DomainStart {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.debug_struct("DomainStart").finish_non_exhaustive()
    }
}

/// How a domain ended.
#[derive(Debug, Clone)]
pub struct DomainEnd {
    /// How its first process ended ("domain fault" if the domain died under it).
    pub status: crate::ExitStatus,
    /// The CPU time the domain's host process used, in nanoseconds, charged to the creator.
    pub cpu_ns: i64,
}
