//! What a domain and its parent say to each other over their socket: the frames, and how one
//! is read and written (a little-endian `u32` length, then the frame in `postcard`).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use rustix::net::SendFlags;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, Interest};

/// The largest frame a parent reads from a domain: a channel message of the most bytes and
/// handles, and room for the rest. Anything longer breaks the protocol.
pub(crate) const MAX_FRAME_BYTES: usize = nebulet_abi::CHANNEL_MAX_MESSAGE_BYTES as usize
    + 24 * nebulet_abi::CHANNEL_MAX_MESSAGE_HANDLES as usize
    + 4096;

/// The largest setup a domain reads from its parent (the module is in it).
pub(crate) const MAX_SETUP_BYTES: usize = 1 << 30;

/// What the parent tells a new domain, after the descriptors: its stdin, stdout and stderr,
/// then its listening sockets, then one per preopen.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    pub(crate) environment: Vec<String>,
    /// How many listening sockets it is given (WASI descriptors from 3, before the preopens).
    pub(crate) listeners: usize,
    /// The preopens' guest paths, in the order of their descriptors.
    pub(crate) preopens: Vec<String>,
    /// The module's bytes: `.wasm` or `.wat`, compiled inside the sandbox, or, if `compiled`,
    /// a module the parent's kernel compiled (a compiled-module file of this build).
    #[serde(with = "byte_string")]
    pub(crate) module: Vec<u8>,
    /// Whether `module` is compiled already (`process_create_with`: the creator's kernel
    /// compiled it, so compiling it again inside would add no wall).
    pub(crate) compiled: bool,
    /// The limits of the first process's budget (`Limit` values and amounts).
    pub(crate) limits: Vec<(u32, u64)>,
    /// Whether the process gets a bootstrap channel (wire id [`BOOTSTRAP`]).
    pub(crate) bootstrap: bool,
    /// A test's probe of the sandbox (see `probe`).
    pub(crate) probe: Option<String>,
    /// Whether the domain sends the code it compiles back, before the process starts, for
    /// later domains of the same module: its first body is then that code (empty if it has none
    /// to give), a compiled-module file, not a frame.
    pub(crate) share_code: bool,
}

/// A `Vec<u8>` field as one byte string: postcard writes its length and then its bytes, the
/// same bytes as serde's `Vec<u8>` (a sequence of `u8`, each one byte), but copies them at once
/// instead of one element at a time, which took about 0.1 ms of a domain's start to decode a
/// small module's compiled code. Written here (the `serde_bytes` crate's few lines) because
/// that crate is not in the build.
mod byte_string {
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Vec<u8>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a byte string")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }

            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// The wire id of the bootstrap channel. The parent numbers the channels it sends from 0 up in
/// even numbers, the domain in odd ones, so their ids never meet.
pub(crate) const BOOTSTRAP: u64 = 0;

/// An end a message carries, under a fresh wire id, with the rights of its handle. Channels
/// and sockets share the ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Carried {
    Channel { id: u64, rights: u32 },
    Socket { id: u64, rights: u32 },
}

/// One frame after the setup, either way.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// A message for channel `channel`, carrying new channels and sockets, in order.
    Message { channel: u64, bytes: Vec<u8>, handles: Vec<Carried> },
    /// `count` messages on `channel` were delivered to the local end (or dropped for a reader
    /// that is gone): the sender may send as many more.
    Delivered { channel: u64, count: u32 },
    /// The sender's end of `channel` closed: after the messages before this, the peer is gone.
    Closed { channel: u64 },
    /// Bytes written to socket `socket` (at most a socket transfer's worth).
    SocketData { socket: u64, bytes: Vec<u8> },
    /// `bytes` of socket `socket` were delivered to the local end: the sender may send as many
    /// more.
    SocketDelivered { socket: u64, bytes: u64 },
    /// The sender's side of `socket` writes no more (after the bytes before this).
    SocketShutdown { socket: u64 },
    /// The sender's side of `socket` closed: after the bytes before this, the peer is gone.
    SocketClosed { socket: u64 },
    /// The process on the sender's side reads `socket` no more (it shut down reading, or
    /// closed its end): the receiver's side stops reading too, so its writer's writes fail.
    SocketReadShutdown { socket: u64 },
    /// (Domain to parent.) The domain's first process ended so; the domain ends next.
    Exit { code: i32, reason: u32, message: Option<String> },
}

/// Encodes a frame, length first.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![0; 4];
    // Serializing our own types into a Vec cannot fail.
    let body = postcard::to_stdvec(value).unwrap_or_default();
    bytes[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend(body);
    bytes
}

/// Decodes a frame body.
pub(crate) fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> io::Result<T> {
    postcard::from_bytes(body).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Reads the next frame body: `None` at a clean end of the stream.
pub(crate) async fn read_body(
    reader: &mut (impl AsyncReadExt + Unpin),
    limit: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_le_bytes(length) as usize;
    if length > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Reads one frame body from a blocking stream (the domain's setup, before its runtime).
pub(crate) fn read_body_blocking(reader: &mut impl io::Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut length = [0; 4];
    reader.read_exact(&mut length)?;
    let length = u32::from_le_bytes(length) as usize;
    if length > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// The socket has failed: nothing more can be sent.
#[derive(Debug)]
pub(crate) struct Broken;

/// Registers `socket` with the runtime's poller for `interest`, for as long as the registration
/// is kept. A bridge's socket is registered only while a side waits for it: a registration that
/// includes reading wakes a worker asleep in the poller at every frame that arrives, and one
/// that includes writing at every frame the other side reads, even while nothing waits.
pub(crate) fn register(
    socket: &Arc<OwnedFd>,
    interest: Interest,
) -> io::Result<AsyncFd<Arc<OwnedFd>>> {
    #[expect(
        deprecated,
        reason = "sound for an owned descriptor the registration holds (an `Arc<OwnedFd>`): it \
                  stays open and unchanged while registered, which the replacement, `unsafe` \
                  `register_with_interest`, asks the caller to promise"
    )]
    AsyncFd::with_interest(socket.clone(), interest)
}

/// The sending half of the socket, shared by every task that sends frames. A frame is written at
/// once if nothing waits before it and the socket has room (most are: no task wakes for it);
/// the rest waits in a buffer, in order, that [`Outgoing::flush_loop`] writes out.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// The socket (non-blocking), a descriptor of its own: registered only while the buffer
    /// waits for room (see [`register`]).
    socket: Arc<OwnedFd>,
    buffer: Mutex<Option<Vec<u8>>>,
    pending: tokio::sync::Notify,
    /// Held while a task waits for room: one registration of the socket at a time.
    flushing: tokio::sync::Mutex<()>,
}

impl Outgoing {
    /// Sends into `socket`, a non-blocking stream socket.
    pub(crate) fn new(socket: OwnedFd) -> Arc<Outgoing> {
        Arc::new(Outgoing {
            socket: Arc::new(socket),
            buffer: Mutex::new(Some(Vec::new())),
            pending: tokio::sync::Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    /// Writes what the socket takes of `bytes` now (a closed peer is an error, not a SIGPIPE).
    fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
        loop {
            match rustix::net::send(&*self.socket, bytes, flags) {
                Err(rustix::io::Errno::INTR) => {}
                written => return written.map_err(io::Error::from),
            }
        }
    }

    /// Sends `frame` after every frame sent before it.
    pub(crate) fn send(&self, frame: Frame) -> Result<(), Broken> {
        let bytes = encode(&frame);
        let mut guard = self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let buffer = guard.as_mut().ok_or(Broken)?;
        if !buffer.is_empty() {
            buffer.extend(bytes);
            return Ok(());
        }
        match self.write(&bytes) {
            Ok(written) if written == bytes.len() => return Ok(()),
            Ok(written) => buffer.extend_from_slice(&bytes[written..]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => buffer.extend(bytes),
            Err(_) => {
                *guard = None;
                return Err(Broken);
            }
        }
        drop(guard);
        self.pending.notify_one();
        Ok(())
    }

    /// Writes what waits in the buffer, as far as the socket takes it: whether it is empty.
    fn write_buffered(&self) -> Result<bool, Broken> {
        let mut guard = self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let buffer = guard.as_mut().ok_or(Broken)?;
        if buffer.is_empty() {
            return Ok(true);
        }
        match self.write(buffer) {
            Ok(written) => {
                buffer.drain(..written);
                Ok(buffer.is_empty())
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(_) => {
                *guard = None;
                Err(Broken)
            }
        }
    }

    /// Writes out the buffer whenever frames wait in it, until the socket breaks.
    pub(crate) async fn flush_loop(self: Arc<Self>) {
        loop {
            self.pending.notified().await;
            if self.flushed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until every frame sent so far is written.
    pub(crate) async fn flushed(&self) -> Result<(), Broken> {
        let _flushing = self.flushing.lock().await;
        let mut registered = None;
        while !self.write_buffered()? {
            let registration = match &mut registered {
                Some(registration) => registration,
                None => registered
                    .insert(register(&self.socket, Interest::WRITABLE).map_err(|_| Broken)?),
            };
            registration.writable().await.map_err(|_| Broken)?.clear_ready();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_string_is_encoded_as_a_sequence_of_bytes_and_decoded_whole() {
        #[derive(Serialize, Deserialize)]
        struct Whole(#[serde(with = "byte_string")] Vec<u8>);
        let bytes: Vec<u8> = (0..=255).cycle().take(70_000).collect();
        let encoded = postcard::to_stdvec(&Whole(bytes.clone())).unwrap();
        assert_eq!(encoded, postcard::to_stdvec(&bytes).unwrap());
        assert_eq!(postcard::from_bytes::<Whole>(&encoded).unwrap().0, bytes);
        // Cut short: an error, not a shorter module.
        assert!(postcard::from_bytes::<Whole>(&encoded[..encoded.len() - 1]).is_err());
    }

    #[test]
    fn frames_past_what_the_socket_holds_wait_in_order_and_are_written_once_it_has_room() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        mine.set_nonblocking(true).unwrap();
        let _guard = runtime.enter();
        let outgoing = Outgoing::new(OwnedFd::from(mine));
        runtime.spawn(outgoing.clone().flush_loop());
        // Far more than a socket's buffer, sent before anybody reads.
        let count = 2_000_u64;
        for channel in 0..count {
            let frame = Frame::Message { channel, bytes: vec![7; 4096], handles: Vec::new() };
            outgoing.send(frame).unwrap();
        }
        let reading = std::thread::spawn(move || {
            let mut theirs = theirs;
            (0..count)
                .map(|_| match decode(&read_body_blocking(&mut theirs, 1 << 20).unwrap()) {
                    Ok(Frame::Message { channel, bytes, .. }) if bytes.len() == 4096 => channel,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        });
        runtime.block_on(outgoing.flushed()).unwrap();
        assert_eq!(reading.join().unwrap(), (0..count).collect::<Vec<_>>());
    }
}
