//! The kernel: the platform, the engine, the linked system calls, and the service registry.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use nebulet_abi::{Error, Rights, bootstrap};

use crate::handles::{DEFAULT_HANDLE_LIMIT, HandleEntry, HandleTable};
use crate::objects::Object;
use crate::objects::channel::{Endpoint, Message};
use crate::objects::process::{Process, ProcessRef};
use crate::platform::{CompileError, Platform};
use crate::random::FastRandom;
use crate::runner::{self, ThreadContext};

/// Heap the kernel keeps free for its own objects on a platform with a fixed heap: processes
/// are not started, and memories not grown, into it.
pub(crate) const KERNEL_MEMORY_MARGIN: u64 = 8 << 20;

/// What a new process (or thread) needs at least, beyond the margin: its stack and first pages.
pub(crate) const PROCESS_MEMORY_MARGIN: u64 = 4 << 20;

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
}

/// One running kernel. Platforms make one with [`Kernel::new`] and start processes on it.
pub struct Kernel {
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: wasmtime::Linker<ThreadContext>,
    pub(crate) services: spin::Mutex<BTreeMap<String, Arc<Endpoint>>>,
    pub(crate) random: FastRandom,
    live_processes: AtomicUsize,
    /// Thread stores alive (each thread of each process has one).
    pub(crate) live_threads: AtomicUsize,
}

impl core::fmt::Debug for Kernel {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("Kernel")
            .field("live_processes", &self.live_processes())
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// A kernel on this platform, running modules of this engine. The engine must have epoch
    /// interruption on; the platform increments its epoch.
    pub fn new(
        platform: Arc<dyn Platform>,
        engine: wasmtime::Engine,
    ) -> Result<Arc<Self>, wasmtime::Error> {
        let linker = crate::syscalls::linker(&engine)?;
        let random = FastRandom::new(&*platform).map_err(|error| {
            wasmtime::Error::msg(alloc::format!("no entropy to seed the kernel: {error}"))
        })?;
        Ok(Arc::new(Self {
            platform,
            engine,
            linker,
            services: spin::Mutex::new(BTreeMap::new()),
            random,
            live_processes: AtomicUsize::new(0),
            live_threads: AtomicUsize::new(0),
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

    /// How many thread stores exist (each holds an instance): for leak checks.
    pub fn live_threads(&self) -> usize {
        self.live_threads.load(Ordering::Relaxed)
    }

    pub(crate) fn new_process(
        &self,
        module: wasmtime::Module,
        options: ProcessOptions,
    ) -> Arc<Process> {
        let mut args = Vec::with_capacity(options.args.len() + 1);
        args.push(options.name.clone());
        args.extend(options.args);
        let handles = HandleTable::new(self.random.seed(), DEFAULT_HANDLE_LIMIT);
        Arc::new(Process::new(
            options.name,
            module,
            args,
            options.environment,
            options.preopens,
            handles,
        ))
    }

    /// Starts a created process's task with its bootstrap handle.
    pub(crate) fn start_process(
        self: &Arc<Self>,
        process: &Arc<Process>,
        bootstrap: Option<HandleEntry>,
    ) -> Result<(), (Error, Option<HandleEntry>)> {
        if !self.memory_allows(PROCESS_MEMORY_MARGIN) {
            return Err((Error::NoResources, bootstrap));
        }
        process.mark_started(bootstrap)?;
        self.live_processes.fetch_add(1, Ordering::Relaxed);
        self.platform.spawn(Box::pin(runner::run(self.clone(), process.clone())));
        Ok(())
    }

    /// Whether `bytes` more can be allocated and still leave [`KERNEL_MEMORY_MARGIN`] free.
    pub(crate) fn memory_allows(&self, bytes: u64) -> bool {
        self.platform
            .memory_available()
            .is_none_or(|free| free >= bytes.saturating_add(KERNEL_MEMORY_MARGIN))
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
        let process = self.new_process(module, options);
        // A new process is in Created, so starting it cannot fail.
        let _ = self.start_process(&process, None);
        ProcessRef { process }
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
            let object =
                Object::Module(Arc::new(crate::objects::module::ModuleObject::new(module)));
            send(
                [bootstrap::APP_PREFIX, name.as_bytes()].concat(),
                alloc::vec![HandleEntry::new(object, Rights::MODULE_DEFAULT)],
            )?;
        }
        send(bootstrap::END.to_vec(), Vec::new())?;
        drop(kernel_end);
        let process = self
            .new_process(init, ProcessOptions { name: "init".to_string(), ..Default::default() });
        let bootstrap = HandleEntry::new(Object::Channel(init_end), Rights::CHANNEL_DEFAULT);
        self.start_process(&process, Some(bootstrap)).map_err(|(error, _)| error)?;
        Ok(ProcessRef { process })
    }
}
