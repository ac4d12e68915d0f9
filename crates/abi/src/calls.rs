//! The table of calls in the `nebulet` import module: names and wasm signatures.
//!
//! The kernel links exactly these functions, and a test checks each linked function's type
//! against this table; another checks `docs/abi.md` against it.

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
}

use ValueType::{I32, I64};

const fn status(name: &'static str, params: &'static [(&'static str, ValueType)]) -> Call {
    Call { name, params, returns: Returns::Status }
}

/// Every call the kernel provides in the `nebulet` import module.
pub const CALLS: &[Call] = &[
    status("handle_close", &[("handle", I32)]),
    status("handle_duplicate", &[("handle", I32), ("rights", I32), ("out_handle", I32)]),
    status("handle_replace", &[("handle", I32), ("rights", I32), ("out_handle", I32)]),
    status(
        "object_wait_one",
        &[("handle", I32), ("signals", I32), ("deadline", I64), ("observed_out", I32)],
    ),
    status("object_wait_many", &[("items", I32), ("count", I32), ("deadline", I64)]),
    status("object_signal", &[("handle", I32), ("clear_mask", I32), ("set_mask", I32)]),
    status(
        "object_get_info",
        &[("handle", I32), ("topic", I32), ("buffer", I32), ("length", I32), ("actual_out", I32)],
    ),
    status("channel_create", &[("out0", I32), ("out1", I32)]),
    status(
        "channel_write",
        &[
            ("handle", I32),
            ("bytes", I32),
            ("byte_count", I32),
            ("handles", I32),
            ("handle_count", I32),
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
    ),
    status("event_create", &[("out_handle", I32)]),
    status("timer_create", &[("out_handle", I32)]),
    status("timer_set", &[("handle", I32), ("deadline", I64)]),
    status("timer_cancel", &[("handle", I32)]),
    Call { name: "clock_monotonic", params: &[], returns: Returns::Time },
    status("nanosleep", &[("deadline", I64)]),
    status("module_compile", &[("bytes", I32), ("length", I32), ("out_handle", I32)]),
    status(
        "process_create",
        &[("module", I32), ("name", I32), ("name_length", I32), ("out_handle", I32)],
    ),
    status("process_start", &[("process", I32), ("bootstrap", I32)]),
    status("process_bootstrap", &[("out_handle", I32)]),
    status("process_kill", &[("process", I32)]),
    status("process_set_limit", &[("process", I32), ("limit", I32), ("value", I64)]),
    Call { name: "process_exit", params: &[("code", I32)], returns: Returns::Never },
    status("thread_yield", &[]),
    status("futex_wait", &[("address", I32), ("expected", I32), ("deadline", I64)]),
    status("futex_wake", &[("address", I32), ("count", I32), ("woken_out", I32)]),
    status("sched_lock", &[]),
    status("sched_unlock", &[]),
    status("watchdog_setup", &[("tick_interval", I64)]),
    status("watchdog_alive", &[]),
    status("random_fill", &[("buffer", I32), ("length", I32)]),
    status("cprng_fill", &[("buffer", I32), ("length", I32)]),
    status("debug_write", &[("buffer", I32), ("length", I32)]),
    status("service_register", &[("name", I32), ("name_length", I32), ("channel", I32)]),
    status("service_connect", &[("name", I32), ("name_length", I32), ("channel", I32)]),
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
}
