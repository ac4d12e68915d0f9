//! `sip`: the Nebulet SDK. Safe Rust types over the `nebulet` system calls.
//!
//! A Nebulet process is a WebAssembly module (built for `wasm32-wasip1`) that imports the calls
//! of the `nebulet` module (see [`nebulet_abi::calls::CALLS`] and `docs/abi.md`). This crate
//! wraps them:
//!
//! - **Handles own kernel objects.** A [`Handle`] holds a handle value of this process and closes
//!   it when dropped. [`Channel`], [`Event`], [`Timer`], [`Module`] and [`Process`] wrap a
//!   `Handle` and add the calls of their object type. Handles move: into a channel message
//!   ([`Channel::write`]), into a child ([`Process::start`]), into the service registry
//!   ([`service::register`]). A call that fails consumes nothing, so the functions that move
//!   handles give them back inside a [`Failed`] error.
//! - **Calls look blocking.** A call that waits ([`Handle::wait_one`], [`wait_many`],
//!   [`Channel::read_blocking`], [`sleep`], ...) blocks the calling thread until a signal or its
//!   deadline; the other threads of the process and other processes keep running. Deadlines are `i64` nanoseconds on the monotonic
//!   clock ([`clock::monotonic`], [`clock::deadline_after`]); [`DEADLINE_INFINITE`] never passes
//!   and a deadline in the past polls once.
//! - **Threads** of a process run one at a time, switched at blocking calls, epoch ticks and
//!   [`thread::yield_now`]; [`thread`] has futexes and regions without preemption.
//! - **Errors are the contract's status codes**: every fallible call returns
//!   `Result<_, `[`Error`]`>`.
//! - **Starting up**: [`process::bootstrap`] gives the handle the parent passed to
//!   [`Process::start`]. For the apps `init` starts that is a channel carrying the system image
//!   ([`bootstrap::Image`]); a service writes [`nebulet_abi::bootstrap::READY`] to it once it
//!   serves.
//! - **HTTP handlers**: [`http::Request::from_bootstrap`] gives a process that `nebulet serve`
//!   started for a request its head, its body to read and its response to write.
//! - **Supervision**: a parent sets a child's resource limits ([`Process::set_limit`], with a
//!   [`Limit`]) before starting it; a process that arms its [`watchdog`] must prove it is alive
//!   within every interval, or the kernel ends it with reason "watchdog".
//!
//! std works as well: `println!` writes to WASI stdout, `std::env::args` and `std::time` work.
//!
//! ```no_run
//! // Start the app "pong" of our image and exchange one message with it.
//! use sip::{Channel, DEADLINE_INFINITE, Process, bootstrap::Image};
//!
//! fn main() -> Result<(), sip::Error> {
//!     let channel = sip::process::bootstrap_channel().ok_or(sip::Error::NotFound)?;
//!     let image = Image::receive(&channel)?;
//!     let module = image.module("pong").ok_or(sip::Error::NotFound)?;
//!     let (ours, theirs) = Channel::create()?;
//!     let pong = Process::create(module, "pong")?;
//!     pong.start(Some(theirs.into_handle()))?;
//!     let reply = ours.call(&7u64.to_le_bytes(), Vec::new(), DEADLINE_INFINITE)?;
//!     println!("pong answered {:?}", reply.bytes);
//!     drop(ours); // pong sees PEER_CLOSED and exits
//!     pong.wait_terminated(DEADLINE_INFINITE)?;
//!     Ok(())
//! }
//! ```
//!
//! Complete programs are in the repository's `apps/` directory: `init`, `echo` (a service),
//! `ping`/`pong`, `swarm`/`worker`.
//!
//! Off wasm this crate still builds (for its unit tests and docs), but every call fails with
//! [`Error::NotSupported`].
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

pub mod bootstrap;
mod channel;
pub mod clock;
pub mod debug;
mod handle;
pub mod http;
mod objects;
pub mod process;
pub mod random;
pub mod service;
mod socket;
#[allow(unsafe_code)]
mod sys;
pub mod thread;
mod wait;
pub mod watchdog;

pub use channel::{Channel, Message};
pub use clock::{sleep, sleep_until};
pub use handle::{Failed, Handle};
pub use objects::{Event, InfoProcessExt, Module, Process, Timer};
pub use socket::{Connector, Listener, Socket};
pub use wait::{WaitItem, wait_many};

/// The contract crate, for its constants and the bootstrap protocol.
pub use nebulet_abi as abi;
pub use nebulet_abi::layout::{InfoBasic, InfoProcess};
pub use nebulet_abi::{
    DEADLINE_INFINITE, Error, ExitReason, Limit, ObjectType, ProcessState, RawHandle, Rights,
    Signals,
};
