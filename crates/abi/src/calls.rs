//! The table of calls in the `nebulet` import module: names, wasm signatures and errors.
//!
//! The kernel links exactly these functions, and a test checks each linked function's type
//! against this table; another checks `docs/abi.md` against it, error lists included; the
//! fuzzer (`apps/tests/fuzz`) checks every status the kernel returns against them.

/// A wasm value type of a parameter or result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `i32`: statuses, handles, pointers, lengths, masks.
    I32,
    /// `i64`: deadlines, durations and times.
    I64,
}

/// What a call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    /// An `i32` status: `OK` (0) or a negative error code.
    Status,
    /// An `i64` value (only `clock_monotonic`).
    Time,
    /// Nothing: the call does not return (only `process_exit`).
    Never,
}

/// One call of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The import name.
    pub name: &'static str,
    /// The parameter names and types, in order.
    pub params: &'static [(&'static str, ValueType)],
    /// What it returns.
    pub returns: Returns,
    /// The errors it may return, in the order they are checked, as its `Errors:` list in
    /// `docs/abi.md` gives them: an error appears once for each place in that order (so
    /// `ERR_INVALID_ARGS` may appear twice). Empty for calls that cannot fail.
    pub errors: &'static [Error],
}

impl Call {
    /// Whether the contract lets this call return `status`: `OK` or one of its errors. A call
    /// that returns no status (`clock_monotonic`, `process_exit`) has none to allow.
    pub fn allows(&self, status: i32) -> bool {
        self.returns == Returns::Status
            && (status == OK || self.errors.iter().any(|error| error.code() == status))
    }
}

use crate::{Error, OK};
use Error::{
    AccessDenied, AlreadyExists, BadHandle, BadModule, BadState, BufferTooSmall, Canceled,
    InvalidArgs, Io, NoResources, NotFound, NotSupported, OutOfRange, PeerClosed, ShouldWait,
    TimedOut, WrongType,
};
use ValueType::{I32, I64};

const fn status(
    name: &'static str,
    params: &'static [(&'static str, ValueType)],
    errors: &'static [Error],
) -> Call {
    Call { name, params, returns: Returns::Status, errors }
}

/// Every call the kernel provides in the `nebulet` import module.
pub const CALLS: &[Call] = &[
    status("handle_close", &[("handle", I32)], &[BadHandle]),
    status(
        "handle_duplicate",
        &[("handle", I32), ("rights", I32), ("out_handle", I32)],
        &[InvalidArgs, BadHandle, AccessDenied, InvalidArgs, NoResources],
    ),
    status(
        "handle_replace",
        &[("handle", I32), ("rights", I32), ("out_handle", I32)],
        &[InvalidArgs, BadHandle, InvalidArgs],
    ),
    status(
        "object_wait_one",
        &[("handle", I32), ("signals", I32), ("deadline", I64), ("observed_out", I32)],
        &[InvalidArgs, BadHandle, AccessDenied, Canceled, TimedOut],
    ),
    status(
        "object_wait_many",
        &[("items", I32), ("count", I32), ("deadline", I64)],
        &[OutOfRange, InvalidArgs, BadHandle, AccessDenied, Canceled, TimedOut],
    ),
    status(
        "object_signal",
        &[("handle", I32), ("clear_mask", I32), ("set_mask", I32)],
        &[BadHandle, AccessDenied, InvalidArgs],
    ),
    status(
        "object_get_info",
        &[("handle", I32), ("topic", I32), ("buffer", I32), ("length", I32), ("actual_out", I32)],
        &[InvalidArgs, BadHandle, AccessDenied, InvalidArgs, WrongType, BufferTooSmall],
    ),
    status("channel_create", &[("out0", I32), ("out1", I32)], &[InvalidArgs, NoResources]),
    status(
        "channel_write",
        &[
            ("handle", I32),
            ("bytes", I32),
            ("byte_count", I32),
            ("handles", I32),
            ("handle_count", I32),
        ],
        &[
            OutOfRange,
            InvalidArgs,
            BadHandle,
            WrongType,
            AccessDenied,
            InvalidArgs,
            BadHandle,
            AccessDenied,
            InvalidArgs,
            NoResources,
            NotSupported,
            BadState,
            PeerClosed,
            ShouldWait,
        ],
    ),
    status(
        "channel_read",
        &[
            ("handle", I32),
            ("bytes", I32),
            ("byte_capacity", I32),
            ("handles", I32),
            ("handle_capacity", I32),
            ("actual_bytes_out", I32),
            ("actual_handles_out", I32),
        ],
        &[
            InvalidArgs,
            BadHandle,
            WrongType,
            AccessDenied,
            ShouldWait,
            PeerClosed,
            BufferTooSmall,
            NoResources,
        ],
    ),
    status(
        "socket_create",
        &[("options", I32), ("out0", I32), ("out1", I32)],
        &[InvalidArgs, InvalidArgs, NoResources],
    ),
    status(
        "socket_write",
        &[("handle", I32), ("bytes", I32), ("length", I32), ("actual_out", I32)],
        &[
            OutOfRange,
            InvalidArgs,
            BadHandle,
            WrongType,
            AccessDenied,
            BadState,
            PeerClosed,
            ShouldWait,
            NoResources,
        ],
    ),
    status(
        "socket_read",
        &[("handle", I32), ("buffer", I32), ("length", I32), ("actual_out", I32)],
        &[
            OutOfRange,
            InvalidArgs,
            BadHandle,
            WrongType,
            AccessDenied,
            BadState,
            PeerClosed,
            ShouldWait,
        ],
    ),
    status(
        "socket_shutdown",
        &[("handle", I32), ("options", I32)],
        &[InvalidArgs, BadHandle, WrongType, AccessDenied],
    ),
    status(
        "listener_create",
        &[("out_listener", I32), ("out_connector", I32)],
        &[InvalidArgs, NoResources],
    ),
    status(
        "listener_accept",
        &[("handle", I32), ("out_socket", I32)],
        &[InvalidArgs, BadHandle, WrongType, AccessDenied, NoResources, ShouldWait, PeerClosed],
    ),
    status(
        "connector_connect",
        &[("handle", I32), ("out_socket", I32)],
        &[InvalidArgs, BadHandle, WrongType, AccessDenied, NoResources, ShouldWait, PeerClosed, Io],
    ),
    status("event_create", &[("out_handle", I32)], &[InvalidArgs, NoResources]),
    status("timer_create", &[("out_handle", I32)], &[InvalidArgs, NoResources]),
    status(
        "timer_set",
        &[("handle", I32), ("deadline", I64)],
        &[BadHandle, WrongType, AccessDenied],
    ),
    status("timer_cancel", &[("handle", I32)], &[BadHandle, WrongType, AccessDenied]),
    Call { name: "clock_monotonic", params: &[], returns: Returns::Time, errors: &[] },
    status("nanosleep", &[("deadline", I64)], &[]),
    status(
        "module_compile",
        &[("bytes", I32), ("length", I32), ("out_handle", I32)],
        &[InvalidArgs, NotSupported, NoResources, BadModule, NoResources],
    ),
    status(
        "process_create",
        &[("module", I32), ("name", I32), ("name_length", I32), ("out_handle", I32)],
        &[
            InvalidArgs,
            OutOfRange,
            InvalidArgs,
            BadHandle,
            WrongType,
            AccessDenied,
            NoResources,
            NoResources,
        ],
    ),
    status(
        "process_create_with",
        &[
            ("module", I32),
            ("name", I32),
            ("name_length", I32),
            ("options", I32),
            ("out_handle", I32),
        ],
        &[
            InvalidArgs,
            InvalidArgs,
            NotSupported,
            OutOfRange,
            InvalidArgs,
            BadHandle,
            WrongType,
            AccessDenied,
            NoResources,
            NoResources,
        ],
    ),
    status(
        "process_start",
        &[("process", I32), ("bootstrap", I32)],
        &[
            BadHandle,
            WrongType,
            AccessDenied,
            InvalidArgs,
            BadHandle,
            AccessDenied,
            NotSupported,
            NoResources,
            NoResources,
            BadState,
        ],
    ),
    status("process_bootstrap", &[("out_handle", I32)], &[InvalidArgs, NoResources, NotFound]),
    status("process_kill", &[("process", I32)], &[BadHandle, WrongType, AccessDenied]),
    status(
        "process_set_limit",
        &[("process", I32), ("limit", I32), ("value", I64)],
        &[InvalidArgs, OutOfRange, BadHandle, WrongType, AccessDenied, BadState],
    ),
    Call { name: "process_exit", params: &[("code", I32)], returns: Returns::Never, errors: &[] },
    status("thread_yield", &[], &[]),
    status(
        "futex_wait",
        &[("address", I32), ("expected", I32), ("deadline", I64)],
        &[InvalidArgs, BadState, TimedOut],
    ),
    status("futex_wake", &[("address", I32), ("count", I32), ("woken_out", I32)], &[InvalidArgs]),
    status("sched_lock", &[], &[]),
    status("sched_unlock", &[], &[BadState]),
    status("watchdog_setup", &[("tick_interval", I64)], &[InvalidArgs]),
    status("watchdog_alive", &[], &[BadState]),
    status("random_fill", &[("buffer", I32), ("length", I32)], &[OutOfRange, InvalidArgs]),
    status("cprng_fill", &[("buffer", I32), ("length", I32)], &[OutOfRange, InvalidArgs, Io]),
    status("debug_write", &[("buffer", I32), ("length", I32)], &[OutOfRange, InvalidArgs]),
    status(
        "service_register",
        &[("name", I32), ("name_length", I32), ("channel", I32)],
        &[
            OutOfRange,
            InvalidArgs,
            BadHandle,
            WrongType,
            AccessDenied,
            PeerClosed,
            NoResources,
            AlreadyExists,
        ],
    ),
    status(
        "service_connect",
        &[("name", I32), ("name_length", I32), ("channel", I32)],
        &[
            OutOfRange,
            InvalidArgs,
            BadHandle,
            WrongType,
            AccessDenied,
            NotFound,
            InvalidArgs,
            BadState,
            ShouldWait,
        ],
    ),
];

/// The call with this import name.
pub fn find(name: &str) -> Option<&'static Call> {
    CALLS.iter().find(|call| call.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (index, call) in CALLS.iter().enumerate() {
            assert!(
                CALLS[index + 1..].iter().all(|other| other.name != call.name),
                "{}",
                call.name
            );
            assert_eq!(find(call.name), Some(call));
        }
        assert_eq!(find("no_such_call"), None);
    }

    #[test]
    fn error_lists_never_name_internal_and_only_status_calls_have_them() {
        for call in CALLS {
            assert!(!call.errors.contains(&Error::Internal), "{} lists ERR_INTERNAL", call.name);
            assert!(
                call.returns == Returns::Status || call.errors.is_empty(),
                "{} returns no status but lists errors",
                call.name
            );
            assert!(!call.allows(Error::Internal.code()), "{}", call.name);
        }
    }

    #[test]
    fn allows_ok_and_listed_errors_only() {
        let close = find("handle_close").unwrap();
        assert!(close.allows(OK));
        assert!(close.allows(BadHandle.code()));
        assert!(!close.allows(InvalidArgs.code()));
        assert!(!close.allows(1));
        let clock = find("clock_monotonic").unwrap();
        assert!(!clock.allows(OK), "a call without a status allows none");
    }
}
