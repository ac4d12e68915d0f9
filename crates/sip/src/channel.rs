//! [`Channel`]: one endpoint of a bidirectional message pipe; [`Message`]: what it carries.

use nebulet_abi::{CHANNEL_MAX_MESSAGE_HANDLES, Error, RawHandle, Signals};

use crate::handle::{Failed, Handle, typed_handle};
use crate::sys;

typed_handle! {
    /// One endpoint of a channel: messages (bytes and handles) written to it are read, in order,
    /// whole and exactly once, from its peer.
    ///
    /// Signals: [`Signals::READABLE`] while a message is queued, [`Signals::WRITABLE`] while the
    /// peer's queue has room, [`Signals::PEER_CLOSED`] once the peer is closed.
    Channel
}

/// One message: its bytes and the handles it carried (now owned by the reader).
#[derive(Debug, Default)]
pub struct Message {
    /// The payload.
    pub bytes: Vec<u8>,
    /// The handles, in the order they were written.
    pub handles: Vec<Handle>,
}

impl Message {
    /// An empty message (a reusable buffer for [`Channel::read_into`]).
    pub fn new() -> Message {
        Message::default()
    }
}

/// The byte capacity a read starts with when the buffer has none.
const INITIAL_CAPACITY: usize = 256;

impl Channel {
    /// A new channel: two endpoints, each the other's peer.
    pub fn create() -> Result<(Channel, Channel), Error> {
        let (first, second) = sys::channel_create()?;
        // Own both before checking either, so neither leaks.
        let (first, second) = (Handle::from_raw(first), Handle::from_raw(second));
        match (first, second) {
            (Some(first), Some(second)) => Ok((Channel(first), Channel(second))),
            _ => Err(Error::Internal),
        }
    }

    /// Writes a message without waiting. The handles move into the message on success; on
    /// failure (for instance [`Error::ShouldWait`] when the peer's queue is full,
    /// [`Error::PeerClosed`]) nothing was sent and they are given back.
    pub fn write(&self, bytes: &[u8], handles: Vec<Handle>) -> Result<(), Failed<Vec<Handle>>> {
        let raw: Vec<RawHandle> = handles.iter().map(Handle::as_raw).collect();
        match sys::channel_write(self.as_handle().as_raw(), bytes, &raw) {
            Ok(()) => {
                // They now belong to the message.
                handles.into_iter().for_each(|handle| {
                    let _ = handle.into_raw();
                });
                Ok(())
            }
            Err(error) => Err(Failed { error, returned: handles }),
        }
    }

    /// Writes a message of bytes only; see [`Channel::write`].
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<(), Error> {
        self.write(bytes, Vec::new()).map_err(Error::from)
    }

    /// Writes a message, waiting for [`Signals::WRITABLE`] while the peer's queue is full, up
    /// to `deadline`. On failure the handles are given back.
    pub fn write_blocking(
        &self,
        bytes: &[u8],
        handles: Vec<Handle>,
        deadline: i64,
    ) -> Result<(), Failed<Vec<Handle>>> {
        let mut handles = handles;
        loop {
            match self.write(bytes, handles) {
                Err(Failed { error: Error::ShouldWait, returned }) => {
                    handles = returned;
                    if let Err(error) =
                        self.wait_one(Signals::WRITABLE | Signals::PEER_CLOSED, deadline)
                    {
                        return Err(Failed { error, returned: handles });
                    }
                }
                done => return done,
            }
        }
    }

    /// Reads the next message without waiting: [`Error::ShouldWait`] if none is queued,
    /// [`Error::PeerClosed`] if none is queued and the peer is closed.
    pub fn read(&self) -> Result<Message, Error> {
        let mut message = Message::new();
        self.read_into(&mut message)?;
        Ok(message)
    }

    /// Like [`Channel::read`], into `message` (replacing its contents, reusing its buffer,
    /// which grows as needed for large messages).
    pub fn read_into(&self, message: &mut Message) -> Result<(), Error> {
        message.handles.clear();
        if message.bytes.capacity() == 0 {
            message.bytes.reserve(INITIAL_CAPACITY);
        }
        let mut raw = [0 as RawHandle; CHANNEL_MAX_MESSAGE_HANDLES as usize];
        loop {
            let outcome =
                sys::channel_read(self.as_handle().as_raw(), &mut message.bytes, &mut raw);
            match outcome.status {
                Ok(()) => {
                    let count = (outcome.handles as usize).min(raw.len());
                    message.handles.reserve(count);
                    // Every value is owned now; wrap them all before reporting a bad one.
                    let mut bad = false;
                    for &value in &raw[..count] {
                        match Handle::from_raw(value) {
                            Some(handle) => message.handles.push(handle),
                            None => bad = true,
                        }
                    }
                    return if bad { Err(Error::Internal) } else { Ok(()) };
                }
                Err(Error::BufferTooSmall) if outcome.handles as usize <= raw.len() => {
                    // The message stays queued: grow the buffer and read again. (Another thread
                    // may read it first; then the next message is read instead.)
                    message.bytes.reserve(outcome.bytes as usize);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads the next message, waiting for one up to `deadline` ([`Error::TimedOut`]);
    /// [`Error::PeerClosed`] once no message is queued and the peer is closed.
    pub fn read_blocking(&self, deadline: i64) -> Result<Message, Error> {
        let mut message = Message::new();
        self.read_blocking_into(&mut message, deadline)?;
        Ok(message)
    }

    /// Like [`Channel::read_blocking`], into `message`; see [`Channel::read_into`].
    pub fn read_blocking_into(&self, message: &mut Message, deadline: i64) -> Result<(), Error> {
        loop {
            match self.read_into(message) {
                Err(Error::ShouldWait) => {
                    self.wait_one(Signals::READABLE | Signals::PEER_CLOSED, deadline)?;
                }
                done => return done,
            }
        }
    }

    /// Writes a request (waiting while the peer's queue is full) and then waits for the next
    /// message, up to `deadline`. Meant for protocols with one outstanding request at a time:
    /// replies are not matched to requests. On failure the handles are closed.
    pub fn call(
        &self,
        bytes: &[u8],
        handles: Vec<Handle>,
        deadline: i64,
    ) -> Result<Message, Error> {
        self.write_blocking(bytes, handles, deadline)?;
        self.read_blocking(deadline)
    }
}
