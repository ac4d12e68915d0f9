//! Processes: a module instance with its handle table, its life stage and how it ended.

#[cfg(feature = "threads")]
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use nebulet_abi::layout::InfoProcess;
use nebulet_abi::{Error, ExitReason, ProcessState, Signals};

use crate::budget::{Budget, Charge, Resource};
use crate::futex::Futexes;
use crate::handles::{HandleEntry, HandleTable};
use crate::platform::{LONG_RUN_NS, RunLength};
use crate::threads::Threads;
use crate::wait::{SignalCell, WaitQueue};

/// How many of its latest children a process's new child is compared with to tell a restart
/// (see [`Process::restarts`]): bounded, so a parent of many children creates in constant time.
const RESTART_LOOKBACK: usize = 64;

/// Short runs in a row after which a process's runs count as short again.
pub(crate) const SHORT_RUNS_BEFORE_SHORT: u32 = 16;

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code: the program's own for "exited", -1 otherwise.
    pub code: i32,
    /// Why it ended.
    pub reason: ExitReason,
    /// For a trap or a failure to start: what happened, on one line, with the wasm backtrace.
    pub message: Option<String>,
}

impl ExitStatus {
    pub(crate) fn exited(code: i32) -> Self {
        Self { code, reason: ExitReason::Exited, message: None }
    }

    pub(crate) fn ended(reason: ExitReason, message: Option<String>) -> Self {
        Self { code: -1, reason, message }
    }
}

#[derive(Debug)]
struct Lifecycle {
    state: ProcessState,
    bootstrap: Option<HandleEntry>,
    /// Set by `process_kill` (or a watchdog) while running: the task ends at its next poll.
    kill: Option<ExitReason>,
    exit: Option<ExitStatus>,
}

#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) koid: u64,
    pub(crate) name: String,
    pub(crate) module: wasmtime::Module,
    /// The module with its imports resolved, when it was made from a module object (see
    /// [`super::module::ModuleObject::prepared`]); set once, before it starts.
    pub(crate) prepared: spin::Once<super::module::Prepared>,
    pub(crate) args: Vec<String>,
    pub(crate) environment: Vec<String>,
    pub(crate) signals: SignalCell,
    pub(crate) handles: crate::sync::Mutex<HandleTable>,
    lifecycle: crate::sync::Mutex<Lifecycle>,
    /// Woken when a kill is requested, so the running task notices.
    kill_queue: WaitQueue,
    pub(crate) memory_bytes: AtomicU64,
    pub(crate) cpu_ns: AtomicU64,
    /// Runs in a row shorter than [`LONG_RUN_NS`] (see [`Process::run_length`]).
    short_runs: AtomicU32,
    pub(crate) threads: Threads,
    /// What this process and its subtree may use, part of its parent's budget.
    pub(crate) budget: Arc<Budget>,
    pub(crate) watchdog: crate::watchdog::Watchdog,
    /// What the process holds until it ends: its place among its parent's descendants, the
    /// memory of its kernel state.
    held: crate::sync::Mutex<Vec<Charge>>,
    /// The service names it has registered, removed from the registry when it ends.
    pub(crate) services: crate::sync::Mutex<Vec<String>>,
    /// The processes it created: they end when it ends, as a job's processes end with the job.
    children: crate::sync::Mutex<Vec<Weak<Process>>>,
    /// The WASI descriptor table.
    pub(crate) files: crate::sync::Mutex<crate::wasi::Descriptors>,
    pub(crate) futexes: Futexes,
    /// Whether it runs in a hardware protection domain of its own: this object then stands for
    /// the domain's first process (see `crate::domain`).
    isolated: AtomicBool,
    /// The shared memory and linker of a threaded process, set when its main thread starts.
    /// Boxed: most processes are not threaded, and it is larger than the rest of a process.
    #[cfg(feature = "threads")]
    pub(crate) thread_environment: spin::Once<Box<crate::runner::ThreadEnvironment>>,
    /// What it is doing now, for listings (shared with the waker its threads are polled with).
    pub(crate) activity: Arc<crate::roster::Activity>,
    /// How many times its parent restarted it (see [`Process::restarts`]).
    restarts: AtomicU32,
}

impl Process {
    /// A process in state Created. `options.args` are its whole WASI arguments, its name first.
    pub(crate) fn new(
        module: wasmtime::Module,
        options: crate::kernel::ProcessOptions,
        handles: HandleTable,
        (budget, held): (Arc<Budget>, Vec<Charge>),
    ) -> Self {
        let crate::kernel::ProcessOptions { name, args, environment, preopens, listeners, stdio } =
            options;
        Self {
            koid: super::new_koid(),
            name,
            module,
            prepared: spin::Once::new(),
            args,
            environment,
            signals: SignalCell::default(),
            handles: crate::sync::Mutex::new(handles),
            lifecycle: crate::sync::Mutex::new(Lifecycle {
                state: ProcessState::Created,
                bootstrap: None,
                kill: None,
                exit: None,
            }),
            kill_queue: WaitQueue::default(),
            memory_bytes: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            // A new process counts as short: its first long run is still measured (see
            // `Platform::run_cpu_time`), and a process that only starts and ends costs no reading.
            short_runs: AtomicU32::new(SHORT_RUNS_BEFORE_SHORT),
            threads: Threads::default(),
            budget,
            watchdog: Default::default(),
            held: crate::sync::Mutex::new(held),
            services: crate::sync::Mutex::new(Vec::new()),
            children: crate::sync::Mutex::new(Vec::new()),
            files: crate::sync::Mutex::new(crate::wasi::Descriptors::new(
                stdio, listeners, preopens,
            )),
            futexes: Futexes::default(),
            isolated: AtomicBool::new(false),
            #[cfg(feature = "threads")]
            thread_environment: spin::Once::new(),
            activity: Arc::default(),
            restarts: AtomicU32::new(0),
        }
    }

    /// How many times its parent restarted it: a process counts as a restart when its parent
    /// creates it with the name and module of the latest of its last [`RESTART_LOOKBACK`]
    /// children of that name and module, and that one has ended (as a supervisor such as
    /// `init` restarts an app); it then counts that one's restarts plus one. Inferred by the
    /// kernel, so every supervisor's restarts are counted, with no call to report them.
    pub(crate) fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The protection domain it runs in, for listings: `isolated` for a process that stands for
    /// a domain of its own, else `local`.
    pub(crate) fn domain(&self) -> &str {
        if self.is_isolated() { "isolated" } else { "local" }
    }

    /// Records a process it is creating, `child`, as a restart if it is one (see
    /// [`Process::restarts`]).
    pub(crate) fn count_restart(&self, child: &Process) {
        let children = self.children.lock();
        let previous = children.iter().rev().take(RESTART_LOOKBACK).filter_map(Weak::upgrade).find(
            |earlier| {
                earlier.name == child.name && wasmtime::Module::same(&earlier.module, &child.module)
            },
        );
        if let Some(previous) = previous
            && previous.exit_status().is_some()
        {
            child.restarts.store(previous.restarts().saturating_add(1), Ordering::Relaxed);
        }
    }

    /// Adds CPU time the process used (in a run of its task, or in work done for it elsewhere)
    /// to its own count and to its subtree's budgets.
    /// Charges a run's CPU time, and notes how long it was (see [`Process::run_length`]).
    pub(crate) fn charge_run(&self, nanoseconds: i64) {
        let short_runs = self.short_runs.load(Ordering::Relaxed);
        let short_runs = if nanoseconds < LONG_RUN_NS { short_runs.saturating_add(1) } else { 0 };
        self.short_runs.store(short_runs, Ordering::Relaxed);
        self.charge_cpu(nanoseconds);
    }

    /// How its recent runs went: long if any of the last [`SHORT_RUNS_BEFORE_SHORT`] was.
    pub(crate) fn run_length(&self) -> RunLength {
        if self.short_runs.load(Ordering::Relaxed) >= SHORT_RUNS_BEFORE_SHORT {
            RunLength::Short
        } else {
            RunLength::Long
        }
    }

    pub(crate) fn charge_cpu(&self, nanoseconds: i64) {
        let nanoseconds = u64::try_from(nanoseconds).unwrap_or(0);
        self.cpu_ns.fetch_add(nanoseconds, Ordering::Relaxed);
        self.budget.add(Resource::Cpu, nanoseconds);
    }

    /// Sets a resource limit of its subtree; `ERR_BAD_STATE` once started.
    pub(crate) fn set_limit(&self, limit: nebulet_abi::Limit, value: u64) -> Result<(), Error> {
        let lifecycle = self.lifecycle.lock();
        if lifecycle.state != ProcessState::Created {
            return Err(Error::BadState);
        }
        self.budget.set_limit(Resource::of_limit(limit), value);
        Ok(())
    }

    /// Makes it run in a domain of its own when it starts (before the start only).
    pub(crate) fn isolate(&self) {
        self.isolated.store(true, Ordering::Relaxed);
    }

    /// Whether it runs in a domain of its own.
    pub(crate) fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::Relaxed)
    }

    /// Holds `charge` until the process ends.
    pub(crate) fn hold(&self, charge: Charge) {
        self.held.lock().push(charge);
    }

    /// Records a process it created, to end with it.
    pub(crate) fn adopt(&self, child: &Arc<Process>) {
        let mut children = self.children.lock();
        // Forget the ended ones now and then: amortized, the list stays as long as the live ones.
        if children.len().is_power_of_two() {
            children.retain(|child| child.strong_count() > 0);
        }
        children.push(Arc::downgrade(child));
    }

    /// Moves from Created to Running with its bootstrap handle; `ERR_BAD_STATE` otherwise.
    pub(crate) fn mark_started(
        &self,
        bootstrap: Option<HandleEntry>,
    ) -> Result<(), (Error, Option<HandleEntry>)> {
        let mut lifecycle = self.lifecycle.lock();
        if lifecycle.state != ProcessState::Created {
            return Err((Error::BadState, bootstrap));
        }
        lifecycle.state = ProcessState::Running;
        lifecycle.bootstrap = bootstrap;
        Ok(())
    }

    /// The bootstrap handle, once.
    pub(crate) fn take_bootstrap(&self) -> Option<HandleEntry> {
        self.lifecycle.lock().bootstrap.take()
    }

    /// Ends the process with `reason`: at once if it never started, else at its task's next poll.
    pub(crate) fn kill(&self, reason: ExitReason) {
        let end_now = {
            let mut lifecycle = self.lifecycle.lock();
            match lifecycle.state {
                ProcessState::Created => true,
                ProcessState::Running => {
                    lifecycle.kill.get_or_insert(reason);
                    false
                }
                ProcessState::Ended => return,
            }
        };
        if end_now {
            self.finish(ExitStatus::ended(reason, None));
        } else {
            self.kill_queue.wake_all();
        }
    }

    /// The kill reason, if a kill was requested; registers the waker to hear of one.
    pub(crate) fn poll_kill(&self, waker: &core::task::Waker) -> Option<ExitReason> {
        self.kill_queue.register(waker);
        self.lifecycle.lock().kill
    }

    /// Records the end, closes every handle (peers see PEER_CLOSED) and asserts TERMINATED.
    pub(crate) fn finish(&self, status: ExitStatus) {
        let bootstrap = {
            let mut lifecycle = self.lifecycle.lock();
            if lifecycle.state == ProcessState::Ended {
                return;
            }
            lifecycle.state = ProcessState::Ended;
            lifecycle.exit = Some(status);
            lifecycle.bootstrap.take()
        };
        let handles = self.handles.lock().take_all();
        // Its files and sockets close now, not when the last handle to the process goes: a
        // peer waiting for the end of a stream sees it.
        let files = self.files.lock().take_all();
        let held = core::mem::take(&mut *self.held.lock());
        let children = core::mem::take(&mut *self.children.lock());
        // Outside the locks: closing handles wakes and may free other objects, and the
        // subtree ends with its root (at most 32 levels deep, so the recursion is bounded).
        drop(handles);
        drop(files);
        drop(bootstrap);
        drop(held);
        for child in children.iter().filter_map(Weak::upgrade) {
            child.kill(ExitReason::Killed);
        }
        self.signals.update(Signals::NONE, Signals::TERMINATED);
    }

    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        self.lifecycle.lock().exit.clone()
    }

    fn memory_bytes(&self) -> u64 {
        #[cfg(feature = "threads")]
        if let Some(environment) = self.thread_environment.get() {
            return environment.memory.data_size() as u64;
        }
        self.memory_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn info(&self) -> InfoProcess {
        let lifecycle = self.lifecycle.lock();
        let (exit_code, exit_reason) = match &lifecycle.exit {
            Some(status) => (status.code, status.reason as u32),
            None => (0, 0),
        };
        InfoProcess {
            state: lifecycle.state as u32,
            exit_code,
            exit_reason,
            threads: if lifecycle.state == ProcessState::Running {
                self.threads.running()
            } else {
                0
            },
            memory_bytes: self.memory_bytes(),
            cpu_ns: self.cpu_ns.load(Ordering::Relaxed),
        }
    }
}

/// A process as the platform sees it: to wait for its end, kill it, or read how it ended.
#[derive(Debug, Clone)]
pub struct ProcessRef {
    pub(crate) process: Arc<Process>,
}

impl ProcessRef {
    /// The name it was created with.
    pub fn name(&self) -> &str {
        &self.process.name
    }

    /// Its kernel object id.
    pub fn koid(&self) -> u64 {
        self.process.koid
    }

    /// Waits until it has ended and returns how.
    pub async fn wait(&self) -> ExitStatus {
        core::future::poll_fn(|context| {
            self.process.signals.queue().register(context.waker());
            match self.process.exit_status() {
                Some(status) => core::task::Poll::Ready(status),
                None => core::task::Poll::Pending,
            }
        })
        .await
    }

    /// How it ended, if it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.process.exit_status()
    }

    /// Ends it with reason "killed".
    pub fn kill(&self) {
        self.process.kill(ExitReason::Killed);
    }

    /// Whether its subtree has used more CPU time than a limit of its budget allows (so a
    /// process that ended "out of resources" ended for its CPU time, not its memory).
    pub fn over_cpu_limit(&self) -> bool {
        self.process.budget.exhausted(Resource::Cpu)
    }
}
