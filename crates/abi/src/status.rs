//! Status codes: the one failure shape of every call.

/// The status of a call that succeeded.
pub const OK: i32 = 0;

/// Why a call failed. Each call returns `OK` (0) or one of these negative codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Error {
    /// The kernel hit a condition it does not expect; a bug.
    Internal = -1,
    /// The call or this use of it is not supported on this platform.
    NotSupported = -2,
    /// A resource limit was reached (handles, processes, queue space).
    NoResources = -3,
    /// Memory could not be allocated.
    NoMemory = -4,
    /// An argument is invalid: a bad pointer, length, mask, rights or flag.
    InvalidArgs = -10,
    /// The handle value names no handle of this process.
    BadHandle = -11,
    /// The handle names an object of the wrong type for this call.
    WrongType = -12,
    /// A value is outside the range the call accepts.
    OutOfRange = -14,
    /// A buffer is too small for the result; nothing was consumed.
    BufferTooSmall = -15,
    /// The object is not in a state that allows the call.
    BadState = -20,
    /// The deadline passed.
    TimedOut = -21,
    /// The call would have to wait; try again after waiting for a signal.
    ShouldWait = -22,
    /// The wait was canceled because its handle was closed.
    Canceled = -23,
    /// The other end of the channel is closed.
    PeerClosed = -24,
    /// The name or object was not found.
    NotFound = -25,
    /// The name is taken already.
    AlreadyExists = -26,
    /// The handle lacks a right the call needs.
    AccessDenied = -30,
    /// An input or output device failed.
    Io = -40,
    /// The wasm bytes are not a valid module, or it cannot be instantiated.
    BadModule = -41,
}

impl Error {
    /// Every status code, in the order of the contract's table.
    pub const ALL: [Error; 19] = [
        Error::Internal,
        Error::NotSupported,
        Error::NoResources,
        Error::NoMemory,
        Error::InvalidArgs,
        Error::BadHandle,
        Error::WrongType,
        Error::OutOfRange,
        Error::BufferTooSmall,
        Error::BadState,
        Error::TimedOut,
        Error::ShouldWait,
        Error::Canceled,
        Error::PeerClosed,
        Error::NotFound,
        Error::AlreadyExists,
        Error::AccessDenied,
        Error::Io,
        Error::BadModule,
    ];

    /// The negative code a call returns.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The error for a code, or `None` for 0, positive and unknown codes.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|error| error.code() == code)
    }

    /// The contract's name: `"ERR_BAD_HANDLE"`, ...
    pub const fn name(self) -> &'static str {
        match self {
            Error::Internal => "ERR_INTERNAL",
            Error::NotSupported => "ERR_NOT_SUPPORTED",
            Error::NoResources => "ERR_NO_RESOURCES",
            Error::NoMemory => "ERR_NO_MEMORY",
            Error::InvalidArgs => "ERR_INVALID_ARGS",
            Error::BadHandle => "ERR_BAD_HANDLE",
            Error::WrongType => "ERR_WRONG_TYPE",
            Error::OutOfRange => "ERR_OUT_OF_RANGE",
            Error::BufferTooSmall => "ERR_BUFFER_TOO_SMALL",
            Error::BadState => "ERR_BAD_STATE",
            Error::TimedOut => "ERR_TIMED_OUT",
            Error::ShouldWait => "ERR_SHOULD_WAIT",
            Error::Canceled => "ERR_CANCELED",
            Error::PeerClosed => "ERR_PEER_CLOSED",
            Error::NotFound => "ERR_NOT_FOUND",
            Error::AlreadyExists => "ERR_ALREADY_EXISTS",
            Error::AccessDenied => "ERR_ACCESS_DENIED",
            Error::Io => "ERR_IO",
            Error::BadModule => "ERR_BAD_MODULE",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "{} ({})", self.name(), self.code())
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for error in Error::ALL {
            assert!(error.code() < 0);
            assert_eq!(Error::from_code(error.code()), Some(error));
        }
        assert_eq!(Error::from_code(OK), None);
        assert_eq!(Error::from_code(-5), None);
    }
}
