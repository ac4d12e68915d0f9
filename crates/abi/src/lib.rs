//! The Nebulet system-call contract, shared by the kernel, the SDK and the tests.
//!
//! Every name and number a wasm program and the kernel must agree on lives here: status codes,
//! rights, signals, object types, the layouts of structures passed through memory, limits,
//! the table of calls with their wasm signatures, and the bootstrap protocol of `init`.
//! `docs/abi.md` documents the same contract in prose; a test checks the two against each other.
//! This crate has no dependencies and no `unsafe`, and builds for every target.
#![forbid(unsafe_code)]
#![no_std]
#![deny(missing_docs)]

pub mod bootstrap;
pub mod calls;
mod flags;
pub mod layout;
mod rights;
mod signals;
mod status;

pub use bootstrap::Limit;
pub use rights::Rights;
pub use signals::Signals;
pub use status::{Error, OK};

/// A handle value as a program sees it: per process, never 0 when valid.
pub type RawHandle = u32;

/// The value that is never a valid handle.
pub const HANDLE_INVALID: RawHandle = 0;

/// The deadline that never passes (nanoseconds on the monotonic clock).
pub const DEADLINE_INFINITE: i64 = i64::MAX;

/// The name of the wasm import module that holds the Nebulet calls.
pub const IMPORT_MODULE: &str = "nebulet";

/// The largest message payload a channel carries, in bytes.
pub const CHANNEL_MAX_MESSAGE_BYTES: u32 = 65_536;

/// The most handles one channel message carries.
pub const CHANNEL_MAX_MESSAGE_HANDLES: u32 = 64;

/// The most messages queued at one channel endpoint before writers get `ERR_SHOULD_WAIT`.
pub const CHANNEL_MAX_QUEUED_MESSAGES: u32 = 1_024;

/// The most bytes queued at one channel endpoint before writers get `ERR_SHOULD_WAIT`.
pub const CHANNEL_MAX_QUEUED_BYTES: u32 = 1 << 20;

/// The most items one `object_wait_many` call waits on.
pub const WAIT_MANY_MAX_ITEMS: u32 = 64;

/// The longest process or service name, in bytes.
pub const NAME_MAX_BYTES: u32 = 64;

/// The most bytes one `random_fill`, `cprng_fill` or `debug_write` call takes.
pub const BUFFER_MAX_BYTES: u32 = 65_536;

/// The most bytes buffered at one socket end before writers get `ERR_SHOULD_WAIT`.
pub const SOCKET_MAX_BUFFERED_BYTES: u32 = 256 << 10;

/// The most bytes one `socket_write` or `socket_read` call moves.
pub const SOCKET_MAX_TRANSFER_BYTES: u32 = 65_536;

/// The most connections waiting at one listener to be accepted.
pub const LISTENER_BACKLOG: u32 = 128;

/// `socket_shutdown` option: this end writes no more; its peer reads to the end, then sees it.
pub const SOCKET_SHUTDOWN_WRITE: u32 = 1 << 0;

/// `socket_shutdown` option: this end reads no more; what is buffered for it is dropped, and
/// its peer's writes fail.
pub const SOCKET_SHUTDOWN_READ: u32 = 1 << 1;

/// `process_create_with` option: the process runs in a hardware protection domain of its own
/// (hosted: a sandboxed host process; see `docs/domains.md`).
pub const PROCESS_CREATE_ISOLATED: u32 = 1 << 0;

/// The kinds of kernel object a handle can refer to (`object_get_info` BASIC `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ObjectType {
    /// One endpoint of a channel.
    Channel = 1,
    /// An event: a bare set of signals.
    Event = 2,
    /// A timer that asserts SIGNALED at its deadline.
    Timer = 3,
    /// A validated, compiled wasm module.
    Module = 4,
    /// A process.
    Process = 5,
    /// One end of a stream socket.
    Socket = 6,
    /// A listener: where connections wait to be accepted as sockets.
    Listener = 7,
    /// A connector: the capability to open connections to one listener or one host address.
    Connector = 8,
}

/// How a process ended (`object_get_info` PROCESS `exit_reason`; 0 while it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitReason {
    /// It called `process_exit` or returned from `_start`.
    Exited = 1,
    /// It was killed with `process_kill` (by another process, or itself through its own handle),
    /// or the process that created it ended.
    Killed = 2,
    /// It trapped (a wasm fault, or a failure to instantiate).
    Trapped = 3,
    /// Its watchdog interval passed without `watchdog_alive`.
    Watchdog = 4,
    /// It went over one of its resource limits.
    OutOfResources = 5,
    /// The hardware protection domain it ran in ended under it: the domain's host process
    /// crashed, was killed, or broke its sandbox's system-call policy (see `docs/domains.md`).
    DomainFault = 6,
}

impl ExitReason {
    /// The reason for a raw value, if the value names one.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Exited),
            2 => Some(Self::Killed),
            3 => Some(Self::Trapped),
            4 => Some(Self::Watchdog),
            5 => Some(Self::OutOfResources),
            6 => Some(Self::DomainFault),
            _ => None,
        }
    }

    /// A lower-case word for messages: "exited", "killed", "trapped", ...
    pub const fn word(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Killed => "killed",
            Self::Trapped => "trapped",
            Self::Watchdog => "watchdog",
            Self::OutOfResources => "out of resources",
            Self::DomainFault => "domain fault",
        }
    }
}

/// The life stage of a process (`object_get_info` PROCESS `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ProcessState {
    /// Created, not yet started.
    Created = 0,
    /// Started and not yet ended.
    Running = 1,
    /// Ended; `exit_code` and `exit_reason` are final.
    Ended = 2,
}

/// The `topic` argument of `object_get_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum InfoTopic {
    /// [`layout::InfoBasic`].
    Basic = 1,
    /// [`layout::InfoProcess`].
    Process = 2,
    /// [`layout::InfoBudget`].
    Budget = 3,
}
