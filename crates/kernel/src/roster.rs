//! The processes of this kernel, for listings (`nebulet ps`): each is entered when it starts and
//! stays listed while anything holds it (an ended one as "exited", as a Unix zombie stays until
//! it is reaped); with each, what it is doing now ([`Activity`]).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

use nebulet_abi::ProcessState;

use crate::budget::Resource;
use crate::objects::process::Process;

/// The processes by kernel object id.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    processes: crate::sync::Mutex<BTreeMap<u64, Weak<Process>>>,
}

/// What a process is doing, as a listing shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// One of its threads runs on a processor now.
    Running,
    /// It can run and waits for a turn on a processor.
    Ready,
    /// Every thread waits in a call (for a signal, a message, a timer...).
    Blocked,
    /// It has ended; it stays listed while a handle to it is open.
    Exited,
}

impl RunState {
    /// Its name in listings: `running`, `ready`, `blocked` or `exited`.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Ready => "ready",
            RunState::Blocked => "blocked",
            RunState::Exited => "exited",
        }
    }
}

/// One process as a listing shows it. Memory, handles and queued bytes are those of
/// the process and its subtree (its budget's use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSummary {
    /// Its kernel object id.
    pub koid: u64,
    /// Its name.
    pub name: String,
    /// What it is doing.
    pub state: RunState,
    /// When blocked: the kind of call it waits in (`wait`, `sleep`, `read`, `futex`...), if known.
    pub blocked_on: Option<&'static str>,
    /// Threads running.
    pub threads: u32,
    /// CPU time used, in nanoseconds.
    pub cpu_nanoseconds: u64,
    /// Bytes of memory used.
    pub memory_bytes: u64,
    /// Handles held.
    pub handles: u64,
    /// Bytes of messages queued and not yet read.
    pub queued_bytes: u64,
    /// How many times its parent restarted it (see `Process::restarts`).
    pub restarts: u32,
    /// The protection domain it runs in: `local` (this kernel), or `isolated` for a process
    /// that stands for a hardware protection domain of its own (`PROCESS_CREATE_ISOLATED`).
    pub domain: String,
}

impl Roster {
    pub(crate) fn enter(&self, process: &Arc<Process>) {
        let mut processes = self.processes.lock();
        // Forget the ones nobody holds now and then: amortized, the map stays about as long as
        // the processes held.
        if processes.len().is_power_of_two() {
            processes.retain(|_, process| process.strong_count() > 0);
        }
        processes.insert(process.koid, Arc::downgrade(process));
    }

    /// The processes held now, by kernel object id.
    pub(crate) fn summaries(&self) -> Vec<ProcessSummary> {
        // Upgraded under the lock, read after it: reading takes other locks.
        let processes: Vec<Arc<Process>> =
            self.processes.lock().values().filter_map(Weak::upgrade).collect();
        processes.iter().map(|process| summary(process)).collect()
    }
}

fn summary(process: &Process) -> ProcessSummary {
    let info = process.info();
    let state = if info.state == ProcessState::Ended as u32 {
        RunState::Exited
    } else {
        process.activity.state()
    };
    ProcessSummary {
        koid: process.koid,
        name: process.name.clone(),
        state,
        blocked_on: if state == RunState::Blocked { process.activity.blocked_on() } else { None },
        threads: info.threads,
        cpu_nanoseconds: process.budget.used(Resource::Cpu),
        memory_bytes: process.budget.used(Resource::Memory),
        handles: process.budget.used(Resource::Handles),
        queued_bytes: process.budget.used(Resource::Queued),
        restarts: process.restarts(),
        domain: process.domain().into(),
    }
}

/// The calls a thread may wait in, with the kind of wait a listing shows for each.
const BLOCKING_CALLS: &[(&str, &str)] = &[
    ("object_wait_one", "wait"),
    ("object_wait_many", "wait"),
    ("nanosleep", "sleep"),
    ("debug_write", "write"),
    ("module_compile", "compile"),
    ("connector_connect", "connect"),
    ("thread_yield", "yield"),
    ("futex_wait", "futex"),
    ("memory.atomic.wait", "futex"),
    ("fd_read", "read"),
    ("fd_write", "write"),
    ("fd_pread", "read"),
    ("fd_pwrite", "write"),
    ("poll_oneoff", "poll"),
    ("sched_yield", "yield"),
    ("sock_accept", "accept"),
    ("sock_recv", "read"),
    ("sock_send", "write"),
    ("random_get", "random"),
];

/// The number of call `name` in [`BLOCKING_CALLS`] (from 1), for [`Activity::enter`]; evaluated
/// at compile time by the linker's macros, which then fail to build for a call not listed.
pub(crate) const fn blocking_call(name: &str) -> u8 {
    let mut index = 0;
    while index < BLOCKING_CALLS.len() {
        let (listed, _) = BLOCKING_CALLS[index];
        if bytes_equal(listed.as_bytes(), name.as_bytes()) {
            return index as u8 + 1;
        }
        index += 1;
    }
    panic!("a call that may block is missing from roster::BLOCKING_CALLS")
}

const fn bytes_equal(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let mut index = 0;
    while index < left.len() {
        if left[index] != right[index] {
            return false;
        }
        index += 1;
    }
    true
}

const READY: u8 = 0;
const RUNNING: u8 = 1;
const BLOCKED: u8 = 2;

/// What a process is doing, kept by its task (running, then blocked unless woken meanwhile),
/// the waker its threads are polled with (ready), and the calls that may block (which one).
#[derive(Debug, Default)]
pub(crate) struct Activity {
    state: AtomicU8,
    /// The [`blocking_call`] number of the call a thread last entered and has not left, or 0.
    call: AtomicU8,
}

impl Activity {
    /// Its task is about to run its threads.
    pub(crate) fn running(&self) {
        self.state.store(RUNNING, Ordering::Relaxed);
    }

    /// Its task's run ended with no thread done: blocked, unless a wake came during the run.
    pub(crate) fn paused(&self) {
        let _ = self.state.compare_exchange(RUNNING, BLOCKED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A thread was woken: the process waits for a turn.
    pub(crate) fn woken(&self) {
        self.state.store(READY, Ordering::Relaxed);
    }

    /// A thread enters call number `call` (of [`blocking_call`]), which may block.
    pub(crate) fn enter(&self, call: u8) {
        self.call.store(call, Ordering::Relaxed);
    }

    /// A thread leaves call number `call`: forgotten, unless another thread entered one since.
    pub(crate) fn leave(&self, call: u8) {
        let _ = self.call.compare_exchange(call, 0, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn state(&self) -> RunState {
        match self.state.load(Ordering::Relaxed) {
            RUNNING => RunState::Running,
            BLOCKED => RunState::Blocked,
            _ => RunState::Ready,
        }
    }

    fn blocked_on(&self) -> Option<&'static str> {
        let call = usize::from(self.call.load(Ordering::Relaxed));
        call.checked_sub(1).and_then(|index| BLOCKING_CALLS.get(index)).map(|&(_, kind)| kind)
    }
}
