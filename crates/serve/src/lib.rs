//! `nebulet serve`: an HTTP/1.1 server whose every request runs in a fresh process of one app.
//!
//! The app's module is compiled once; each request instantiates it anew as a root process with
//! its own budget (memory, CPU time) and a wall-time deadline, so requests are isolated from each
//! other and a handler that traps, spins or grows past its memory costs one answer (500 or 504),
//! never the server. Two handler conventions exist (see [`Convention`]): WAGI, for any WASI
//! program (CGI variables in the environment, the body on stdin, a CGI response on stdout), and
//! native, for `sip` programs (the request head in the bootstrap message, with sockets for both
//! bodies). `docs/abi.md` ("HTTP handlers") is the contract.
//!
//! hyper serves the connections; this crate adds the limits, the handler processes, the access
//! log and the graceful shutdown.
#![forbid(unsafe_code)]

mod admission;
mod arguments;
mod body;
mod connection;
mod environment;
mod handler;
mod log;
mod metrics;
mod response;
mod server;
mod sockets;
mod supervisor;

use std::time::Duration;

pub use arguments::{ServeArgs, run, run_with};
pub use log::Log;
pub use server::{App, Server, Statistics};

/// How a handler receives its request and gives its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Convention {
    /// WAGI (CGI for WASI programs): the request in CGI environment variables, its body on
    /// stdin; a CGI response (headers, a blank line, the body) on stdout.
    Wagi,
    /// For `sip` programs: the request head as the bootstrap message, with a socket to read the
    /// body from and one to write a CGI response to; both bodies stream.
    Native,
}

/// What each request may use, and how long clients and handlers may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Memory of one handler process (linear memory, tables, queued messages), in bytes.
    pub memory_bytes: u64,
    /// CPU time of one handler process: past it the process ends and the answer is 504.
    pub cpu_time: Duration,
    /// Wall time of one handler process, from its start: past it, it is killed (504).
    pub wall_time: Duration,
    /// The largest request body: past it, 413.
    pub body_bytes: u64,
    /// The largest request head (request line and headers): past it, 431.
    pub header_bytes: usize,
    /// The whole request head must arrive within this time after the server starts waiting for
    /// it (408); an idle keep-alive connection is closed after it.
    pub header_timeout: Duration,
    /// Handler processes running at once.
    pub concurrency: usize,
    /// Requests waiting for a handler slot; past it, 503.
    pub queue: usize,
    /// How long a request waits for a handler slot before 503.
    pub queue_timeout: Duration,
    /// After a shutdown signal: how long requests already read may take before their handlers
    /// are killed (503) and the server ends.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            memory_bytes: 128 << 20,
            cpu_time: Duration::from_secs(1),
            wall_time: Duration::from_secs(30),
            body_bytes: 16 << 20,
            header_bytes: 64 << 10,
            header_timeout: Duration::from_secs(10),
            concurrency: 4 * cores,
            queue: 1024,
            queue_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// wasmtime's pooling allocator sized for serving within `limits`: slots for four times as many
/// instances as handlers may run at once (a handler's threads take more; at least 16), each
/// linear memory at most the memory limit. A process's instance, memory and fiber stack are then
/// reset and reused, not mapped and unmapped for every request (see
/// `nebulet_hosted::Emulator::with_pooling`). The first [`KEEP_RESIDENT`] bytes of a memory are
/// reset in place (only the pages the last request dirtied) rather than given back to the OS:
/// giving them back costs every core a TLB flush and the next request its page faults.
pub fn pooling(limits: &Limits) -> nebulet_hosted::wasmtime::PoolingAllocationConfig {
    let slots = u32::try_from(limits.concurrency.saturating_mul(4).max(16)).unwrap_or(u32::MAX);
    let memory = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
    let mut pooling = nebulet_hosted::wasmtime::PoolingAllocationConfig::default();
    pooling
        .total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .total_stacks(slots)
        .max_memory_size(memory)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT / 16)
        // Finds the dirtied pages (Linux 6.7 and later; elsewhere the low pages are reset).
        .pagemap_scan(nebulet_hosted::wasmtime::Enabled::Auto);
    pooling
}

/// Bytes of each pooled linear memory kept resident between requests (a small program's whole
/// memory).
pub const KEEP_RESIDENT: usize = 4 << 20;
