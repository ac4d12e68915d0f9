//! The kernel: the platform, the engine, the linked system calls, and the service registry.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use nebulet_abi::{Error, ExitReason, Limit, Rights, bootstrap};

use crate::budget::{Budget, Charge, PROCESS_BYTES, Resource};
use crate::handles::{HandleEntry, HandleTable};
use crate::objects::Object;
use crate::objects::channel::{Endpoint, Message};
use crate::objects::process::{ExitStatus, Process, ProcessRef};
use crate::platform::{CompileError, Platform};
use crate::random::FastRandom;
use crate::runner::{self, ThreadContext};

/// Heap the kernel keeps free for its own objects on a platform with a fixed heap: processes
/// are not started, and memories not grown, into it. A small machine's is smaller: an eighth
/// of its capacity ([`Margins`]).
pub(crate) const KERNEL_MEMORY_MARGIN: u64 = 8 << 20;

/// What a new process (or thread) needs at least, beyond the margin: its stack and first pages.
/// A small machine's is smaller: a sixteenth of its capacity, and at least one stack.
pub(crate) const PROCESS_MEMORY_MARGIN: u64 = 4 << 20;

/// The margins of a fixed heap, scaled to the machine's capacity (a 32 MiB machine cannot keep
/// 12 MiB free).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Margins {
    kernel: u64,
    process: u64,
}

impl Margins {
    fn of(capacity: &crate::Capacity) -> Self {
        let memory = capacity.memory_bytes;
        Self {
            kernel: KERNEL_MEMORY_MARGIN.min(memory / 8),
            process: PROCESS_MEMORY_MARGIN.min((memory / 16).max(capacity.stack_bytes)),
        }
    }
}

/// What a process is started with, besides its module.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Its name, for messages and `args[0]`.
    pub name: String,
    /// Its WASI arguments after the name.
    pub args: Vec<String>,
    /// Its WASI environment, as `KEY=VALUE` strings.
    pub environment: Vec<String>,
    /// Its WASI preopened directories, as (guest path, directory).
    pub preopens: crate::vfs::Preopens,
    /// Listening sockets the host grants: its WASI descriptors from 3, before the preopened
    /// directories (as wasmtime's former `--tcplisten` gave them).
    pub listeners: Vec<Arc<crate::Listener>>,
    /// Its standard streams as sockets, whose peers the host holds (an HTTP handler's body and
    /// response); `None`: the console.
    pub stdio: Option<Stdio>,
}

/// A process's standard streams as socket ends (WASI descriptors 0, 1 and 2).
#[derive(Debug, Clone)]
pub struct Stdio {
    /// What the process reads as stdin.
    pub input: Arc<crate::SocketEnd>,
    /// Where its stdout goes.
    pub output: Arc<crate::SocketEnd>,
    /// Where its stderr goes.
    pub error: Arc<crate::SocketEnd>,
}

/// An object of the host's that a process is given a handle to.
#[derive(Debug, Clone)]
pub enum Grant {
    /// A socket end (the host holds, or bridges, its peer).
    Socket(Arc<crate::SocketEnd>),
    /// A listener the host feeds.
    Listener(Arc<crate::Listener>),
    /// A connector to an address of the host's.
    Connector(Arc<crate::Connector>),
    /// A channel end (whose peer the host holds, or bridges to another domain).
    Channel(crate::ChannelEnd),
}

impl Grant {
    fn entry(self) -> HandleEntry {
        match self {
            Grant::Socket(socket) => {
                HandleEntry::new(Object::Socket(socket), Rights::SOCKET_DEFAULT)
            }
            Grant::Listener(listener) => {
                HandleEntry::new(Object::Listener(listener), Rights::LISTENER_DEFAULT)
            }
            Grant::Connector(connector) => {
                HandleEntry::new(Object::Connector(connector), Rights::CONNECTOR_DEFAULT)
            }
            Grant::Channel(end) => end.into_entry(Rights::CHANNEL_DEFAULT),
        }
    }
}

/// One running kernel. Platforms make one with [`Kernel::new`] and start processes on it.
pub struct Kernel {
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: wasmtime::Linker<ThreadContext>,
    pub(crate) services: crate::sync::Mutex<BTreeMap<String, crate::syscalls::Service>>,
    pub(crate) random: FastRandom,
    /// What the machine can give all processes together; every process's budget is below it.
    pub(crate) root: Arc<Budget>,
    /// Bytes of stack each thread takes, charged to its process.
    pub(crate) stack_bytes: u64,
    /// Host mappings each private linear memory and each thread's stack take.
    pub(crate) memory_mappings: u64,
    pub(crate) thread_mappings: u64,
    /// Turns on the processors, shared fairly between budgets.
    pub(crate) processors: crate::processors::Processors,
    /// Makes running processes yield early, for a process that woke or a kill.
    pub(crate) preemption: Arc<crate::processors::Preemption>,
    live_processes: AtomicUsize,
    margins: Margins,
    /// The processes running now, for listings.
    pub(crate) roster: crate::roster::Roster,
    /// Thread stores alive (each thread of each process has one).
    pub(crate) live_threads: AtomicUsize,
    /// The module the platform last started a process of, prepared (see
    /// [`crate::objects::module::ModuleObject::prepared`]): a platform often starts many
    /// processes of one module (a server's requests, the bench's idle processes). The
    /// platform's modules are charged to no process, so keeping one alive here holds nobody's.
    root_module: crate::sync::Mutex<Option<Arc<crate::objects::module::ModuleObject>>>,
}

impl core::fmt::Debug for Kernel {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("Kernel")
            .field("live_processes", &self.live_processes())
            .finish_non_exhaustive()
    }
}

/// The linker [`Kernel::prepare_linker`] made, for the next kernel made on its engine.
static PREPARED_LINKER: crate::sync::Mutex<Option<wasmtime::Linker<ThreadContext>>> =
    crate::sync::Mutex::new(None);

impl Kernel {
    /// Links every system call and WASI function for a kernel on `engine` now: the next kernel
    /// made on that engine in this process, or in each copy of it forked after this call (a
    /// domain's zygote forks each domain), takes this linker instead of linking every function
    /// again (about half a millisecond of a kernel's start); later ones link their own.
    pub fn prepare_linker(engine: &wasmtime::Engine) -> Result<(), wasmtime::Error> {
        let linker = crate::syscalls::linker(engine)?;
        *PREPARED_LINKER.lock() = Some(linker);
        Ok(())
    }

    /// A kernel on this platform, running modules of this engine. The engine must have epoch
    /// interruption on; the platform increments its epoch.
    pub fn new(
        platform: Arc<dyn Platform>,
        engine: wasmtime::Engine,
    ) -> Result<Arc<Self>, wasmtime::Error> {
        // Taken, not cloned: a clone adds a reference to each of its functions, writing to
        // memory that a forked kernel shares with the process it was forked from, so each
        // write copies a page (about a quarter of a millisecond of a domain's start).
        let prepared = {
            let mut prepared = PREPARED_LINKER.lock();
            let same = prepared
                .as_ref()
                .is_some_and(|linker| wasmtime::Engine::same(linker.engine(), &engine));
            if same { prepared.take() } else { None }
        };
        let linker = match prepared {
            Some(linker) => linker,
            None => crate::syscalls::linker(&engine)?,
        };
        let random = FastRandom::new(&*platform).map_err(|error| {
            wasmtime::Error::msg(alloc::format!("no entropy to seed the kernel: {error}"))
        })?;
        let capacity = platform.capacity();
        let processors = crate::processors::Processors::new(platform.processors());
        let preemption =
            Arc::new(crate::processors::Preemption::new(platform.clone(), engine.clone()));
        Ok(Arc::new(Self {
            platform,
            engine,
            linker,
            services: crate::sync::Mutex::new(BTreeMap::new()),
            random,
            root: Budget::root(&capacity),
            stack_bytes: capacity.stack_bytes,
            memory_mappings: capacity.memory_mappings,
            thread_mappings: capacity.thread_mappings,
            processors,
            preemption,
            live_processes: AtomicUsize::new(0),
            margins: Margins::of(&capacity),
            roster: Default::default(),
            live_threads: AtomicUsize::new(0),
            root_module: crate::sync::Mutex::new(None),
        }))
    }

    /// The wasmtime engine processes run on.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Compiles a module with the platform's compiler.
    pub fn compile(&self, bytes: &[u8]) -> Result<wasmtime::Module, CompileError> {
        self.platform.compile_module(&self.engine, bytes)
    }

    /// How many processes have started and not yet ended.
    pub fn live_processes(&self) -> usize {
        self.live_processes.load(Ordering::Relaxed)
    }

    /// The processes running now (for `nebulet ps`), by kernel object id.
    pub fn processes(&self) -> Vec<crate::ProcessSummary> {
        self.roster.summaries()
    }

    /// Turns on the processors given and not ended, and processes known to the scheduler: both
    /// 0 once every process has ended (for leak checks).
    pub fn scheduler_in_use(&self) -> (usize, usize) {
        self.processors.in_use()
    }

    /// How many thread stores exist (each holds an instance): for leak checks.
    pub fn live_threads(&self) -> usize {
        self.live_threads.load(Ordering::Relaxed)
    }

    /// What all processes together use now, as `object_get_info` BUDGET reports a budget: for
    /// leak checks (once every process has ended and its objects are gone, all but the CPU
    /// time are back to 0).
    pub fn root_budget(&self) -> nebulet_abi::layout::InfoBudget {
        self.root.info()
    }

    /// A new process below `parent` (the root budget for the processes the platform starts),
    /// charged to it as one more descendant, and to the root budget for its kernel state.
    /// `ERR_NO_RESOURCES` past a limit of the parent's budget or past the deepest tree.
    pub(crate) fn new_process(
        &self,
        module: wasmtime::Module,
        options: ProcessOptions,
        parent: &Arc<Budget>,
    ) -> Result<Arc<Process>, Error> {
        let budget = parent.child()?;
        let held: Vec<Charge> = alloc::vec![
            parent.charge(Resource::Processes, 1)?,
            // Kernel state bounds the machine, not the program: charged to the root budget only.
            self.root.charge(Resource::Memory, PROCESS_BYTES)?,
        ];
        let mut args = Vec::with_capacity(options.args.len() + 1);
        args.push(options.name.clone());
        args.extend(options.args);
        let handles = HandleTable::new(self.random.seed(), budget.clone());
        let options = ProcessOptions { args, ..options };
        Ok(Arc::new(Process::new(module, options, handles, (budget, held))))
    }

    /// A process of the platform's (below the root budget) that is started, or, if the machine
    /// has no room for it, ended with reason "out of resources".
    fn start_root_process(
        self: &Arc<Self>,
        module: wasmtime::Module,
        options: ProcessOptions,
        bootstrap: Option<HandleEntry>,
    ) -> ProcessRef {
        self.start_limited_root_process(module, options, &[], bootstrap)
    }

    /// [`Kernel::start_root_process`] with resource limits set before it starts, as
    /// `process_set_limit` sets them.
    fn start_limited_root_process(
        self: &Arc<Self>,
        module: wasmtime::Module,
        options: ProcessOptions,
        limits: &[(Limit, u64)],
        bootstrap: Option<HandleEntry>,
    ) -> ProcessRef {
        let name = options.name.clone();
        let process = match self.new_process(module.clone(), options, &self.root) {
            Ok(process) => {
                if let Some(prepared) = self.prepared_root_module(&module) {
                    process.prepared.call_once(|| prepared);
                }
                for &(limit, value) in limits {
                    // A created process takes any limit.
                    let _ = process.set_limit(limit, value);
                }
                process
            }
            Err(error) => {
                // The machine is full: a process with no budget of its own, ended at once.
                let budget = Budget::detached();
                let handles = HandleTable::new(self.random.seed(), budget.clone());
                let options = ProcessOptions { name, ..Default::default() };
                let process =
                    Arc::new(Process::new(module, options, handles, (budget, Vec::new())));
                process.finish(ExitStatus::ended(
                    ExitReason::OutOfResources,
                    Some(alloc::format!("cannot start: {error}")),
                ));
                return ProcessRef { process };
            }
        };
        if let Err((error, _)) = self.start_process(&process, bootstrap) {
            process.finish(ExitStatus::ended(
                ExitReason::OutOfResources,
                Some(alloc::format!("cannot start: {error}")),
            ));
        }
        ProcessRef { process }
    }

    /// `module` prepared, through the one the platform last started a process of.
    fn prepared_root_module(
        &self,
        module: &wasmtime::Module,
    ) -> Option<crate::objects::module::Prepared> {
        let object = {
            let mut last = self.root_module.lock();
            match &*last {
                Some(object) if wasmtime::Module::same(&object.module, module) => object.clone(),
                _ => {
                    let object = Arc::new(crate::objects::module::ModuleObject::new(
                        module.clone(),
                        Vec::new(),
                    ));
                    *last = Some(object.clone());
                    object
                }
            }
        };
        object.prepared(&self.linker)
    }

    /// Starts a created process's task with its bootstrap handle.
    pub(crate) fn start_process(
        self: &Arc<Self>,
        process: &Arc<Process>,
        bootstrap: Option<HandleEntry>,
    ) -> Result<(), (Error, Option<HandleEntry>)> {
        if process.is_isolated() {
            return crate::domain::start(self, process, bootstrap);
        }
        if !self.memory_allows(self.margins.process) {
            return Err((Error::NoResources, bootstrap));
        }
        process.mark_started(bootstrap)?;
        self.process_started(process);
        self.platform.spawn(Box::pin(runner::run(self.clone(), process.clone())));
        Ok(())
    }

    /// Counts a process that has started, and lists it.
    pub(crate) fn process_started(&self, process: &Arc<Process>) {
        self.live_processes.fetch_add(1, Ordering::Relaxed);
        self.roster.enter(process);
    }

    /// Whether `bytes` more can be allocated and still leave the kernel's margin free.
    pub(crate) fn memory_allows(&self, bytes: u64) -> bool {
        self.platform
            .memory_available()
            .is_none_or(|free| free >= bytes.saturating_add(self.margins.kernel))
    }

    pub(crate) fn process_ended(&self) {
        self.live_processes.fetch_sub(1, Ordering::Relaxed);
    }

    /// Starts a process of `module` with no bootstrap handle (`nebulet run`).
    pub fn spawn(
        self: &Arc<Self>,
        module: wasmtime::Module,
        options: ProcessOptions,
    ) -> ProcessRef {
        self.start_root_process(module, options, None)
    }

    /// Starts a process of `module` whose bootstrap channel holds one message: `bytes`, and
    /// handles to the objects of `grants` (the host's sockets, listeners and connectors), with
    /// their default rights. The host keeps no end of the channel: the process reads the
    /// message, then sees PEER_CLOSED. `ERR_OUT_OF_RANGE` past the limits of a message.
    pub fn spawn_with_message(
        self: &Arc<Self>,
        module: wasmtime::Module,
        options: ProcessOptions,
        bytes: Vec<u8>,
        grants: Vec<Grant>,
    ) -> Result<ProcessRef, Error> {
        self.spawn_with_limits(module, options, &[], Some((bytes, grants)))
    }

    /// Starts a process of `module` with resource limits on its budget, set before it starts as
    /// `process_set_limit` sets them (a process past its CPU time, or failing to start within its
    /// memory, ends "out of resources"), and, if `message` is given, a bootstrap channel holding
    /// that one message (as [`Kernel::spawn_with_message`]).
    pub fn spawn_with_limits(
        self: &Arc<Self>,
        module: wasmtime::Module,
        options: ProcessOptions,
        limits: &[(Limit, u64)],
        message: Option<(Vec<u8>, Vec<Grant>)>,
    ) -> Result<ProcessRef, Error> {
        let Some((bytes, grants)) = message else {
            return Ok(self.start_limited_root_process(module, options, limits, None));
        };
        if bytes.len() > nebulet_abi::CHANNEL_MAX_MESSAGE_BYTES as usize
            || grants.len() > nebulet_abi::CHANNEL_MAX_MESSAGE_HANDLES as usize
        {
            return Err(Error::OutOfRange);
        }
        let (host_end, process_end) = Endpoint::create();
        let handles = grants.into_iter().map(Grant::entry).collect();
        host_end.write(Message { bytes, handles, charge: None }).map_err(|(error, _)| error)?;
        drop(host_end);
        let bootstrap = HandleEntry::new(Object::Channel(process_end), Rights::CHANNEL_DEFAULT);
        Ok(self.start_limited_root_process(module, options, limits, Some(bootstrap)))
    }

    /// Boots a system image: starts `init` with a bootstrap channel that carries the manifest
    /// and one Module handle per app, by the protocol of [`nebulet_abi::bootstrap`].
    pub fn boot(
        self: &Arc<Self>,
        init: wasmtime::Module,
        manifest: &str,
        apps: Vec<(String, wasmtime::Module)>,
    ) -> Result<ProcessRef, Error> {
        let (kernel_end, init_end) = Endpoint::create();
        let send = |bytes: Vec<u8>, handles: Vec<HandleEntry>| {
            kernel_end.write(Message { bytes, handles, charge: None }).map_err(|(error, _)| error)
        };
        send([bootstrap::MANIFEST_PREFIX, manifest.as_bytes()].concat(), Vec::new())?;
        for (name, module) in apps {
            let object = Object::Module(Arc::new(crate::objects::module::ModuleObject::new(
                module,
                Vec::new(),
            )));
            send(
                [bootstrap::APP_PREFIX, name.as_bytes()].concat(),
                alloc::vec![HandleEntry::new(object, Rights::MODULE_DEFAULT)],
            )?;
        }
        send(bootstrap::END.to_vec(), Vec::new())?;
        drop(kernel_end);
        let bootstrap = HandleEntry::new(Object::Channel(init_end), Rights::CHANNEL_DEFAULT);
        let options = ProcessOptions { name: "init".to_string(), ..Default::default() };
        Ok(self.start_root_process(init, options, Some(bootstrap)))
    }

    /// Starts a process of `module` with resource limits on its budget (as
    /// [`Kernel::spawn_with_limits`]) whose bootstrap handle, if any, is `bootstrap` (with the
    /// default rights of a channel): a domain's first process, whose bootstrap channel is
    /// bridged.
    pub fn spawn_with_bootstrap(
        self: &Arc<Self>,
        module: wasmtime::Module,
        options: ProcessOptions,
        limits: &[(Limit, u64)],
        bootstrap: Option<crate::ChannelEnd>,
    ) -> ProcessRef {
        let entry = bootstrap.map(|end| end.into_entry(Rights::CHANNEL_DEFAULT));
        self.start_limited_root_process(module, options, limits, entry)
    }
}
