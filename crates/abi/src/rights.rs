//! Rights: what a handle allows its holder to do with the object.

use crate::flags::bit_set;

bit_set! {
    /// The rights of a handle (bits of a `u32`). Rights never grow: duplicating or replacing a
    /// handle may only keep or drop them.
    Rights {
        /// The handle may be duplicated.
        DUPLICATE = 1 << 0,
        /// The handle may be sent through a channel or handed to a process.
        TRANSFER = 1 << 1,
        /// Read messages from a channel.
        READ = 1 << 2,
        /// Write messages, set timers.
        WRITE = 1 << 3,
        /// Make processes of a module.
        EXECUTE = 1 << 4,
        /// Set or clear the user signals.
        SIGNAL = 1 << 5,
        /// Wait on the object's signals.
        WAIT = 1 << 6,
        /// Read the object's information.
        INSPECT = 1 << 7,
        /// Start and kill a process.
        MANAGE = 1 << 8,
    }
}

impl Rights {
    /// Argument-only value of `handle_duplicate` / `handle_replace`: keep the current rights.
    pub const SAME_RIGHTS: Rights = Rights::from_bits(1 << 31);
    /// Every right a handle can hold.
    pub const ALL: Rights = Rights::from_bits((1 << 9) - 1);
    /// The rights of each new channel endpoint.
    pub const CHANNEL_DEFAULT: Rights = Rights::from_bits(
        Rights::DUPLICATE.bits()
            | Rights::TRANSFER.bits()
            | Rights::READ.bits()
            | Rights::WRITE.bits()
            | Rights::WAIT.bits()
            | Rights::INSPECT.bits()
            | Rights::SIGNAL.bits(),
    );
    /// The rights of a new event.
    pub const EVENT_DEFAULT: Rights = Rights::from_bits(
        Rights::DUPLICATE.bits()
            | Rights::TRANSFER.bits()
            | Rights::WAIT.bits()
            | Rights::INSPECT.bits()
            | Rights::SIGNAL.bits(),
    );
    /// The rights of a new timer.
    pub const TIMER_DEFAULT: Rights = Rights::from_bits(
        Rights::DUPLICATE.bits()
            | Rights::TRANSFER.bits()
            | Rights::WRITE.bits()
            | Rights::WAIT.bits()
            | Rights::INSPECT.bits()
            | Rights::SIGNAL.bits(),
    );
    /// The rights of a new module handle.
    pub const MODULE_DEFAULT: Rights = Rights::from_bits(
        Rights::READ.bits()
            | Rights::DUPLICATE.bits()
            | Rights::TRANSFER.bits()
            | Rights::EXECUTE.bits()
            | Rights::INSPECT.bits(),
    );
    /// The rights of each new socket end.
    pub const SOCKET_DEFAULT: Rights = Rights::CHANNEL_DEFAULT;
    /// The rights of a new listener: READ is to accept.
    pub const LISTENER_DEFAULT: Rights = Rights::from_bits(
        Rights::DUPLICATE.bits()
            | Rights::TRANSFER.bits()
            | Rights::READ.bits()
            | Rights::WAIT.bits()
            | Rights::INSPECT.bits(),
    );
    /// The rights of a new connector: WRITE is to connect.
    pub const CONNECTOR_DEFAULT: Rights = Rights::from_bits(
        Rights::DUPLICATE.bits()
            | Rights::TRANSFER.bits()
            | Rights::WRITE.bits()
            | Rights::WAIT.bits()
            | Rights::INSPECT.bits(),
    );
    /// The rights of a new process handle: every right but SIGNAL.
    pub const PROCESS_DEFAULT: Rights = Rights::ALL.difference(Rights::SIGNAL);
}
