//! Running a process: instantiate its module, call `_start`, and end it however it ends.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::{Arc, Weak};
use alloc::task::Wake;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::sync::atomic::Ordering;
use core::task::{Context, Poll, Waker};

use nebulet_abi::ExitReason;

use crate::budget::{Charge, Resource, TABLE_ELEMENT_BYTES, TABLE_MAXIMUM_ELEMENTS};
use crate::kernel::Kernel;
use crate::objects::process::{ExitStatus, Process};
use crate::processors::Waiting;
use crate::threads::{Scheduler, ThreadEnd, ThreadFuture};

/// The data of one thread's wasmtime store: who is calling, and where its memory is.
pub(crate) struct ThreadContext {
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) process: Arc<Process>,
    /// 0 for the main thread; the wasi-threads id for the others.
    pub(crate) thread: u32,
    pub(crate) memory: Option<ProcessMemory>,
    accounting: MemoryAccounting,
}

impl Drop for ThreadContext {
    fn drop(&mut self) {
        self.kernel.live_threads.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A process's linear memory: its own (single-threaded), or shared by its threads.
#[derive(Clone)]
pub(crate) enum ProcessMemory {
    Own(wasmtime::Memory),
    #[cfg(feature = "threads")]
    Shared(wasmtime::SharedMemory),
}

/// What a new thread of a threaded process needs: the shared memory and a linker defining it.
#[cfg(feature = "threads")]
pub(crate) struct ThreadEnvironment {
    pub(crate) memory: wasmtime::SharedMemory,
    pub(crate) linker: wasmtime::Linker<ThreadContext>,
    /// The shared memory's bytes in the process's budget. Its `memory.grow` does not ask the
    /// kernel (wasmtime calls no limiter for shared memories), so the growth is charged after
    /// each run of the process, which ends if its budget cannot hold it.
    charge: crate::sync::Mutex<Charge>,
    /// Its mappings, and its address-space reservation in the root budget.
    _mappings: [Charge; 2],
}

#[cfg(feature = "threads")]
impl ThreadEnvironment {
    /// Charges what the shared memory has grown since the last charge.
    fn charge_growth(&self) -> Result<(), String> {
        let size = self.memory.data_size() as u64;
        let mut charge = self.charge.lock();
        let growth = size.saturating_sub(charge.amount());
        charge.grow(growth).map_err(|_| "shared memory grown past the memory budget".into())
    }
}

#[cfg(feature = "threads")]
impl core::fmt::Debug for ThreadEnvironment {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("ThreadEnvironment")
            .field("memory_bytes", &self.memory.data_size())
            .finish()
    }
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

/// The error a thread unwinds with when its process killed itself.
#[derive(Debug)]
pub(crate) struct ProcessKilled;

impl core::fmt::Display for ProcessKilled {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str("process killed itself")
    }
}

impl core::error::Error for ProcessKilled {}

/// What one thread holds of its process's budget: itself, its stack and their mappings.
pub(crate) struct ThreadCharges {
    _thread: Charge,
    _stack: Charge,
    _mappings: Charge,
}

impl ThreadCharges {
    /// Charges a new thread to `process`; `ERR_NO_RESOURCES` past a limit.
    pub(crate) fn take(kernel: &Kernel, process: &Process) -> Result<Self, nebulet_abi::Error> {
        let budget = &process.budget;
        Ok(Self {
            _thread: budget.charge(Resource::Threads, 1)?,
            // Stacks bound the machine, not the program: charged to the root budget only, and
            // bounded per subtree by the `threads` limit.
            _stack: kernel.root.charge(Resource::Memory, kernel.stack_bytes)?,
            _mappings: budget.charge(Resource::Mappings, kernel.thread_mappings)?,
        })
    }
}

/// Charges every memory and table a thread's instance creates or grows to its process's budget,
/// and gives it back when the thread's store goes.
struct MemoryAccounting {
    process: Arc<Process>,
    kernel: Arc<Kernel>,
    _thread: ThreadCharges,
    /// Linear memories and tables of this store.
    memory: Charge,
    mappings: Charge,
    /// Linear memories made (each reserves address space), charged to the root only.
    reservations: Charge,
    /// Set when a growth past the budget was refused.
    denied: bool,
}

impl MemoryAccounting {
    /// Charges `bytes` more, and the mappings (and, for a memory, the address-space reservation)
    /// of a new memory or table when `current` is 0.
    fn grow(&mut self, current: usize, bytes: u64, kind: Grown) -> bool {
        let (mappings, reservations) = match (current, kind) {
            (0, Grown::Memory) => (self.kernel.memory_mappings, 1),
            (0, Grown::Table) => (1, 0),
            _ => (0, 0),
        };
        let budget = &self.process.budget;
        // Each charge taken before a refused one is given back as it drops.
        let charges = self.kernel.memory_allows(bytes).then(|| -> Result<_, nebulet_abi::Error> {
            Ok([
                budget.charge(Resource::Memory, bytes)?,
                budget.charge(Resource::Mappings, mappings)?,
                self.kernel.root.charge(Resource::LinearMemories, reservations)?,
            ])
        });
        let Some(Ok([memory, mappings, reservations])) = charges else {
            self.denied = true;
            return false;
        };
        self.memory.absorb(memory);
        self.mappings.absorb(mappings);
        self.reservations.absorb(reservations);
        true
    }
}

/// What a limiter call grows.
#[derive(Clone, Copy)]
enum Grown {
    Memory,
    Table,
}

impl wasmtime::ResourceLimiter for MemoryAccounting {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Refused, memory.grow returns -1; at instantiation the process ends "out of resources".
        let growth = desired.saturating_sub(current) as u64;
        if !self.grow(current, growth, Grown::Memory) {
            return Ok(false);
        }
        self.process.memory_bytes.fetch_add(growth, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > TABLE_MAXIMUM_ELEMENTS {
            return Ok(false);
        }
        let growth = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow(current, growth, Grown::Table))
    }
}

/// Memories at least this large in all are given back off the executor's workers when their
/// process ends.
const LARGE_TEARDOWN_BYTES: u64 = 64 << 20;

/// The task of one process: runs its threads until it ends or is killed, then closes what it
/// held.
pub(crate) async fn run(kernel: Arc<Kernel>, process: Arc<Process>) {
    let platform = kernel.platform.clone();
    let main: ThreadFuture = Box::pin(main_thread(kernel.clone(), process.clone()));
    let mut scheduler = Scheduler::new(&process.threads, main);
    // The process's threads wake this, which queues the process for a turn; the task's own
    // waker is woken only when the turn comes (or for a kill, which needs none).
    let queued = Arc::new(Queued {
        kernel: Arc::downgrade(&kernel),
        activity: process.activity.clone(),
        budget: process.budget.clone(),
        task: crate::sync::Mutex::new(None),
    });
    let waker = Waker::from(queued.clone());
    kernel.processors.start(&process.budget);
    let status = poll_fn(|context| {
        if let Some(reason) = process.poll_kill(context.waker()) {
            return Poll::Ready(ExitStatus::ended(reason, None));
        }
        let first = {
            let mut task = queued.task.lock();
            let first = task.is_none();
            // The task's waker rarely changes: clone it only when it did.
            if task.as_ref().is_none_or(|known| !known.will_wake(context.waker())) {
                *task = Some(context.waker().clone());
            }
            first
        };
        if first {
            // The first poll: the process has its first run to make. A turn given at once is
            // taken in this poll; otherwise the task is woken when its turn comes.
            if kernel.processors.ask(&process.budget, context.waker()).0 == Waiting::Fresh {
                kernel.preemption.request();
            }
        }
        let Some(_turn) = kernel.processors.begin(&process.budget, context.waker()) else {
            return Poll::Pending;
        };
        // CPU time, not wall time: time the OS takes the worker away is not the process's.
        let start = platform.run_started(process.run_length());
        process.activity.running();
        let poll = scheduler.poll(&process.threads, &mut Context::from_waker(&waker));
        process.activity.paused();
        process.charge_run(platform.run_cpu_time(start));
        if poll.is_pending()
            && let Some(message) = over_budget(&process)
        {
            return Poll::Ready(ExitStatus::ended(ExitReason::OutOfResources, Some(message)));
        }
        poll
    })
    .await;
    kernel.processors.forget(&process.budget);
    // Dropping the threads unwinds their suspended fibers and frees their stores and instances.
    // Giving a large memory back to the host frees its pages one by one (a gibibyte takes a
    // good part of a second), so that is done where it holds up no other process; the end is
    // still signaled only once it is given back, so whoever sees the end finds its budget free.
    if process.memory_bytes.load(Ordering::Relaxed) >= LARGE_TEARDOWN_BYTES {
        let spent = platform.run_blocking(Box::new(move || drop(scheduler))).await;
        process.charge_cpu(spent);
    } else {
        drop(scheduler);
    }
    // Counted out before TERMINATED is asserted, so whoever sees the end sees the count too.
    kernel.process_ended();
    crate::syscalls::unregister_services(&kernel, &process);
    process.finish(status);
}

/// The waker a process's threads are polled with: a wake queues the process for a turn on a
/// processor, past as many runs as there are processors in the fair order of their budgets.
struct Queued {
    /// Weak: wakers sit in objects' wait queues, which the kernel may hold.
    kernel: Weak<Kernel>,
    budget: Arc<crate::budget::Budget>,
    /// What the process is doing, for listings: a wake makes it ready.
    activity: Arc<crate::roster::Activity>,
    /// The process's task's own waker, once it was first polled.
    task: crate::sync::Mutex<Option<Waker>>,
}

impl Wake for Queued {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.activity.woken();
        let Some(task) = self.task.lock().clone() else { return };
        let Some(kernel) = self.kernel.upgrade() else { return };
        if kernel.processors.wake(&self.budget, &task) == Waiting::Fresh {
            kernel.preemption.request();
        }
    }
}

/// Why the process must end for its budget after a run, if it must: its subtree's CPU time, or
/// a shared memory grown past what its budget holds.
fn over_budget(process: &Process) -> Option<String> {
    if process.budget.exhausted(Resource::Cpu) {
        return Some("CPU time limit passed".into());
    }
    #[cfg(feature = "threads")]
    if let Some(environment) = process.thread_environment.get() {
        return environment.charge_growth().err();
    }
    None
}

fn new_store(
    kernel: &Arc<Kernel>,
    process: &Arc<Process>,
    thread: u32,
    memory: Option<ProcessMemory>,
    charges: ThreadCharges,
) -> wasmtime::Store<ThreadContext> {
    let accounting = MemoryAccounting {
        process: process.clone(),
        kernel: kernel.clone(),
        _thread: charges,
        memory: Charge::empty(&process.budget, Resource::Memory),
        mappings: Charge::empty(&process.budget, Resource::Mappings),
        reservations: Charge::empty(&kernel.root, Resource::LinearMemories),
        denied: false,
    };
    kernel.live_threads.fetch_add(1, Ordering::Relaxed);
    let context = ThreadContext {
        kernel: kernel.clone(),
        process: process.clone(),
        thread,
        memory,
        accounting,
    };
    let mut store = wasmtime::Store::new(&kernel.engine, context);
    store.limiter(|context| &mut context.accounting);
    yield_at_next_tick(&mut store);
    store
}

/// Makes `store`'s wasm yield at the epoch's next tick (or preemption request), and at every
/// tick after. A new store's deadline is 0, already passed: without this, every new thread
/// yielded at its first function entry, which cost every process start a second turn and a
/// wake of its own task (which tokio passes to another worker).
fn yield_at_next_tick<T>(store: &mut wasmtime::Store<T>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
}

/// The shared memory a module imports, if it is threaded: `(module, name, type)`.
fn shared_memory_import(
    module: &wasmtime::Module,
) -> Option<(String, String, wasmtime::MemoryType)> {
    module.imports().find_map(|import| match import.ty() {
        wasmtime::ExternType::Memory(memory) if memory.is_shared() => {
            Some((import.module().to_string(), import.name().to_string(), memory))
        }
        _ => None,
    })
}

/// The main thread's store and instance, or how the process ends if it cannot start.
async fn instantiate_main(
    kernel: &Arc<Kernel>,
    process: &Arc<Process>,
) -> Result<(wasmtime::Store<ThreadContext>, wasmtime::Instance), ThreadEnd> {
    let Ok(charges) = ThreadCharges::take(kernel, process) else {
        let message = "cannot start: its budget has no room for its main thread".into();
        return Err(ThreadEnd::Process(ExitStatus::ended(
            ExitReason::OutOfResources,
            Some(message),
        )));
    };
    let mut store = new_store(kernel, process, 0, None, charges);
    let instance = match shared_memory_import(&process.module) {
        #[cfg(feature = "threads")]
        Some((module, name, memory_type)) => {
            // memory.grow of a shared memory never reaches the limiter: cap its maximum at what
            // the budget has left, and charge its growth after each run.
            let available_pages = process.budget.available(Resource::Memory) / 65_536;
            let minimum = memory_type.minimum();
            let charges = (minimum <= available_pages)
                .then(|| {
                    let budget = &process.budget;
                    Some((
                        budget.charge(Resource::Memory, minimum * 65_536).ok()?,
                        budget
                            .charge(Resource::Mappings, crate::budget::SHARED_MEMORY_MAPPINGS)
                            .ok()?,
                        kernel.root.charge(Resource::LinearMemories, 1).ok()?,
                    ))
                })
                .flatten();
            let Some((charge, mappings, reservation)) = charges else {
                let message = alloc::format!(
                    "cannot start: {minimum} pages of shared memory pass the memory budget"
                );
                return Err(ThreadEnd::Process(ExitStatus::ended(
                    ExitReason::OutOfResources,
                    Some(message),
                )));
            };
            let maximum = memory_type.maximum().unwrap_or(65_536).min(available_pages);
            let memory_type = wasmtime::MemoryType::shared(minimum as u32, maximum as u32);
            let memory = match wasmtime::SharedMemory::new(&kernel.engine, memory_type) {
                Ok(memory) => memory,
                Err(error) => return Err(ThreadEnd::Process(ending(error, "cannot start"))),
            };
            let mut linker = kernel.linker.clone();
            if let Err(error) = linker.define(&store, &module, &name, memory.clone()) {
                return Err(ThreadEnd::Process(ending(error, "cannot start")));
            }
            store.data_mut().memory = Some(ProcessMemory::Shared(memory.clone()));
            let environment = process.thread_environment.call_once(|| {
                Box::new(ThreadEnvironment {
                    memory,
                    linker,
                    charge: crate::sync::Mutex::new(charge),
                    _mappings: [mappings, reservation],
                })
            });
            environment.linker.instantiate_async(&mut store, &process.module).await
        }
        #[cfg(not(feature = "threads"))]
        Some(_) => {
            let message = "cannot start: this platform runs no threaded modules (shared memory)";
            return Err(ThreadEnd::Process(ExitStatus::ended(
                ExitReason::Trapped,
                Some(message.into()),
            )));
        }
        None => match process.prepared.get() {
            Some(prepared) => prepared.0.instantiate_async(&mut store).await,
            None => kernel.linker.instantiate_async(&mut store, &process.module).await,
        },
    };
    match instance {
        Ok(instance) => Ok((store, instance)),
        Err(error) if store.data().accounting.denied => {
            let message = describe(&error, "memory limit passed at start");
            Err(ThreadEnd::Process(ExitStatus::ended(ExitReason::OutOfResources, Some(message))))
        }
        Err(error) => Err(ThreadEnd::Process(ending(error, "cannot start"))),
    }
}

async fn main_thread(kernel: Arc<Kernel>, process: Arc<Process>) -> ThreadEnd {
    // Boxed, and so freed once done: instantiation's state is larger than the rest of this
    // future's, which lives as long as the process (1.6 KiB of every idle process before).
    let (mut store, instance) = match Box::pin(instantiate_main(&kernel, &process)).await {
        Ok(started) => started,
        Err(end) => return end,
    };
    if store.data().memory.is_none() {
        // Pointers name memory 0, which `prepare_module` made sure is exported by one of these.
        let memory = instance
            .get_memory(&mut store, crate::prepare::MEMORY_EXPORT)
            .or_else(|| instance.get_memory(&mut store, "memory"));
        store.data_mut().memory = memory.map(ProcessMemory::Own);
    }
    let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
        Ok(start) => start,
        Err(error) => {
            // Say what `_start` should be, rather than wasmtime's "expected 0 types, found 1".
            let message = match instance.get_func(&mut store, "_start") {
                Some(start) => {
                    let found = start.ty(&store).to_string();
                    // FuncType's Display is `(type (func ...))`.
                    let found = found
                        .strip_prefix("(type ")
                        .and_then(|rest| rest.strip_suffix(')'))
                        .unwrap_or(&found);
                    format!(
                        "cannot start: `_start` must take no parameters and return nothing, \
                         but it is `{found}`"
                    )
                }
                None => describe(&error, "cannot start"),
            };
            return ThreadEnd::Process(ExitStatus::ended(ExitReason::Trapped, Some(message)));
        }
    };
    ThreadEnd::Process(match start.call_async(&mut store, ()).await {
        Ok(()) => ExitStatus::exited(0),
        Err(error) => ending(error, "trapped"),
    })
}

/// A thread started by `thread-spawn`: runs `wasi_thread_start(id, argument)`.
#[cfg(feature = "threads")]
pub(crate) async fn spawned_thread(
    kernel: Arc<Kernel>,
    process: Arc<Process>,
    (id, charges): (u32, ThreadCharges),
    argument: i32,
) -> ThreadEnd {
    let Some(environment) = process.thread_environment.get() else {
        return ThreadEnd::Process(ExitStatus::ended(
            ExitReason::Trapped,
            Some("thread without shared memory".into()),
        ));
    };
    let memory = Some(ProcessMemory::Shared(environment.memory.clone()));
    let mut store = new_store(&kernel, &process, id, memory, charges);
    let instance = match environment.linker.instantiate_async(&mut store, &process.module).await {
        Ok(instance) => instance,
        Err(error) => return ThreadEnd::Process(ending(error, "cannot start a thread")),
    };
    let start = match instance.get_typed_func::<(i32, i32), ()>(&mut store, "wasi_thread_start") {
        Ok(start) => start,
        Err(error) => return ThreadEnd::Process(ending(error, "cannot start a thread")),
    };
    match start.call_async(&mut store, (id as i32, argument)).await {
        Ok(()) => ThreadEnd::Returned,
        Err(error) => ThreadEnd::Process(ending(error, "trapped")),
    }
}

/// How an error ends the process: a deliberate exit, or a trap described on one line.
fn ending(error: wasmtime::Error, what: &str) -> ExitStatus {
    if let Some(exit) = error.downcast_ref::<ProcessExit>() {
        return ExitStatus::exited(exit.0);
    }
    if error.is::<ProcessKilled>() {
        return ExitStatus::ended(ExitReason::Killed, None);
    }
    ExitStatus::ended(ExitReason::Trapped, Some(describe(&error, what)))
}

/// wasmtime's "types incompatible: expected type `A`, found type `B`" for an import, where `A`
/// is the module's import and `B` what the kernel provides, said in those words.
fn import_mismatch(text: &str) -> Option<String> {
    let rest = text.strip_prefix("types incompatible: expected type `")?;
    let (imported, rest) = rest.split_once("`, found type `")?;
    let provided = rest.strip_suffix('`')?;
    Some(format!("the module imports it as `{imported}`, but it is `{provided}`"))
}

/// `what: reason; wasm backtrace: f <- g <- _start`, on one line.
pub(crate) fn describe(error: &wasmtime::Error, what: &str) -> String {
    let reason = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        // The whole chain, as "incompatible import type for `MODULE::NAME`: types incompatible:
        // ...", without the backtrace wasmtime attaches as context (its frames follow below).
        None => error
            .chain()
            .map(ToString::to_string)
            .filter(|text| !text.starts_with("error while executing at wasm backtrace"))
            .map(|text| import_mismatch(&text).unwrap_or(text))
            .collect::<Vec<_>>()
            .join(": "),
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

#[cfg(test)]
mod tests {
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};

    /// Polls `future` once with a waker that does nothing.
    fn poll_once<F: Future>(future: core::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_new_thread_runs_without_yielding_until_the_next_tick_and_yields_after_it() {
        let engine = crate::tests::engine();
        let module = wasmtime::Module::new(
            &engine,
            r#"(module (func (export "count") (local i32)
                 (loop (br_if 0 (i32.lt_u (local.tee 0 (i32.add (local.get 0) (i32.const 1)))
                                          (i32.const 1000))))))"#,
        )
        .unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        super::yield_at_next_tick(&mut store);
        let instance = {
            let instance = pin!(wasmtime::Instance::new_async(&mut store, &module, &[]));
            let Poll::Ready(instance) = poll_once(instance) else {
                panic!("instantiation yielded")
            };
            instance.unwrap()
        };
        let count = instance.get_typed_func::<(), ()>(&mut store, "count").unwrap();
        {
            let first = pin!(count.call_async(&mut store, ()));
            let first = poll_once(first);
            assert!(matches!(first, Poll::Ready(Ok(()))), "the first run yields before any tick");
        }
        // A tick (or a preemption request) makes the next entry yield, once per tick.
        engine.increment_epoch();
        let mut second = pin!(count.call_async(&mut store, ()));
        assert!(poll_once(second.as_mut()).is_pending(), "a run after a tick yields");
        assert!(matches!(poll_once(second), Poll::Ready(Ok(()))));
    }
}
