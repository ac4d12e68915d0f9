//! Hardware protection domains on the hosted platform: Nebulet processes that run in a host
//! process of their own, sandboxed, bridged to the rest over a socket (see `docs/domains.md`).
//!
//! A domain is a re-execution of the `nebulet` binary (`nebulet domain-child`). Before any
//! guest code runs, it enters new namespaces, lowers its limits, and applies Landlock and a
//! seccomp-bpf allow-list; then it boots a kernel of its own and compiles and runs the program.
//! Its bootstrap channel, and the channels and sockets sent over it, are bridged (`bridge`).
//!
//! A domain's host process is forked by a zygote (`nebulet domain-zygote`, `zygote`), started
//! once, so that a domain starts without an `exec`; its one fork (with the slot the fork
//! writes, and the forked copy's `_exit`) is this crate's only `unsafe` code (`zygote/fork.rs`).
#![deny(unsafe_code)]

mod bridge;
mod child;
mod code_cache;
mod domain;
mod handoff;
mod host_process;
mod launcher;
mod probe;
mod sandbox;
mod spare;
mod wire;
mod zygote;

pub use child::main as child_main;
pub use domain::{Domain, DomainOptions, Launch};
pub use launcher::Launcher;
pub use probe::PROBE_VARIABLE;
pub use spare::{spare_id, spare_ids};
pub use zygote::{main as zygote_main, stop_zygote_after_next_fork, zygote_id};

/// The hidden subcommand that runs a domain's side.
pub const CHILD_COMMAND: &str = "domain-child";

/// The hidden subcommand that runs the domain zygote.
pub const ZYGOTE_COMMAND: &str = "domain-zygote";
