//! The processes running now, for listings (`nebulet ps`): each is entered when it starts and
//! leaves when it ends.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use crate::budget::Resource;
use crate::objects::process::Process;

/// The running processes by kernel object id.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    processes: crate::sync::Mutex<BTreeMap<u64, Weak<Process>>>,
}

/// One running process as a listing shows it. Memory, handles and queued bytes are those of
/// the process and its subtree (its budget's use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSummary {
    /// Its kernel object id.
    pub koid: u64,
    /// Its name.
    pub name: String,
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
}

impl Roster {
    pub(crate) fn enter(&self, process: &Arc<Process>) {
        self.processes.lock().insert(process.koid, Arc::downgrade(process));
    }

    pub(crate) fn leave(&self, process: &Process) {
        self.processes.lock().remove(&process.koid);
    }

    /// The processes running now, by kernel object id.
    pub(crate) fn summaries(&self) -> Vec<ProcessSummary> {
        // Upgraded under the lock, read after it: reading takes other locks.
        let processes: Vec<Arc<Process>> =
            self.processes.lock().values().filter_map(Weak::upgrade).collect();
        processes
            .iter()
            .map(|process| ProcessSummary {
                koid: process.koid,
                name: process.name.clone(),
                threads: process.threads.running(),
                cpu_nanoseconds: process.budget.used(Resource::Cpu),
                memory_bytes: process.budget.used(Resource::Memory),
                handles: process.budget.used(Resource::Handles),
                queued_bytes: process.budget.used(Resource::Queued),
            })
            .collect()
    }
}
