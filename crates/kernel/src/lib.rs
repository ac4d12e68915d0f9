//! The Nebulet kernel core: every object, handle table, system call and scheduling rule.
//!
//! It is `no_std` + `alloc` and knows nothing of the platform it runs on: a [`Platform`]
//! supplies the clock, timers, entropy, the console, the executor and the module compiler, and
//! the same core runs hosted on Linux (`nebulet-hosted`) and on bare metal (`nebulet-metal`).
//! Processes are wasm modules run by wasmtime; each process is one async task, and system calls
//! are host functions that look blocking to the program but suspend only its task.
#![no_std]
// `unsafe` is denied by the workspace; only `guest_memory` has an `expect` for it.

extern crate alloc;

mod blocking;
mod budget;
mod crossing;
mod domain;
mod futex;
mod guest_memory;
mod handles;
mod kernel;
mod objects;
mod platform;
mod prepare;
mod processors;
mod random;
mod roster;
mod runner;
mod sync;
mod syscalls;
mod threads;
pub mod vfs;
mod wait;
mod wasi;
mod watchdog;

pub use crossing::{ChannelEnd, Crossed, CrossingMessage};
pub use domain::DomainMeter;
pub use kernel::{Grant, Kernel, ProcessOptions, Stdio};
pub use objects::listener::{Connect, Connector, Listener};
pub use objects::process::{ExitStatus, ProcessRef};
pub use objects::socket::SocketEnd;
pub use platform::{
    BoxFuture, Capacity, CompileError, ConsoleStream, DomainEnd, DomainRequest, DomainStart,
    LONG_RUN_NS, Platform, RunLength, RunStart,
};
pub use prepare::{MEMORY_EXPORT, PREPARE_SOURCE, prepare_module};
pub use roster::{ProcessSummary, RunState};
pub use sync::set_yield;

/// The engine and module types of wasmtime, re-exported so platforms use the same version.
pub use wasmtime;

#[cfg(test)]
mod tests {
    /// An engine configured as the platforms configure theirs, for the core's unit tests.
    pub(crate) fn engine() -> wasmtime::Engine {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        wasmtime::Engine::new(&config).unwrap()
    }
}
