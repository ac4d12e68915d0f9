//! Signals: the bits of an object's state that a program can wait for.

use crate::flags::bit_set;

bit_set! {
    /// The signals of an object (bits of a `u32`).
    Signals {
        /// A channel endpoint has a message to read, a socket end has bytes to read, or a
        /// listener has a connection to accept.
        READABLE = 1 << 0,
        /// A channel endpoint's peer has room for a message, or a socket end's peer has room
        /// for bytes.
        WRITABLE = 1 << 1,
        /// A channel endpoint's or socket end's peer is closed, a listener will have no more
        /// connections, or a connector's listener is gone.
        PEER_CLOSED = 1 << 2,
        /// An event was signaled, or a timer's deadline passed.
        SIGNALED = 1 << 3,
        /// A process has ended.
        TERMINATED = 1 << 4,
        /// A socket end's peer writes no more (`socket_shutdown` with WRITE): once READABLE is
        /// clear, the stream has ended.
        PEER_WRITE_DISABLED = 1 << 5,
        /// User signal 0.
        USER_0 = 1 << 24,
        /// User signal 1.
        USER_1 = 1 << 25,
        /// User signal 2.
        USER_2 = 1 << 26,
        /// User signal 3.
        USER_3 = 1 << 27,
        /// User signal 4.
        USER_4 = 1 << 28,
        /// User signal 5.
        USER_5 = 1 << 29,
        /// User signal 6.
        USER_6 = 1 << 30,
        /// User signal 7.
        USER_7 = 1 << 31,
    }
}

impl Signals {
    /// All eight user signals.
    pub const USER_ALL: Signals = Signals::from_bits(0xff00_0000);
    /// The signals `object_signal` may set or clear on an event (other objects: only `USER_*`).
    pub const EVENT_SETTABLE: Signals = Signals::USER_ALL.union(Signals::SIGNALED);
}
