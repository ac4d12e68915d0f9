//! Stream sockets: pairs of ends that carry bytes both ways, in order, with bounded buffers.
//!
//! As Zircon's sockets: a write takes what fits in the peer's buffer (`ERR_SHOULD_WAIT` when
//! nothing fits), a read takes what is buffered, and either end may stop writing (its peer then
//! reads to the end and sees PEER_WRITE_DISABLED) or stop reading. Bytes a process writes are
//! charged to its budget until they are read. One end may belong to the host (a TCP
//! connection's bridge), which reads and writes it with [`SocketEnd::poll_read`] and
//! [`SocketEnd::poll_write`].

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::task::{Context, Poll};

use nebulet_abi::{Error, SOCKET_MAX_BUFFERED_BYTES, Signals};

use crate::budget::Charge;
use crate::wait::{SignalCell, WaitQueue};

/// Bytes written in one call, with the writer's charges, given back when they are all read.
struct Chunk {
    bytes: Vec<u8>,
    /// How many of `bytes` were read already.
    read: usize,
    _charge: Option<[Charge; 2]>,
}

/// What one end receives, and what it may still do.
#[derive(Default)]
struct Side {
    /// Bytes written by the peer, for this end to read.
    inbound: VecDeque<Chunk>,
    buffered: usize,
    open: bool,
    /// This end may no longer write (`socket_shutdown` with WRITE).
    write_disabled: bool,
    /// This end may no longer read (`socket_shutdown` with READ): its inbound bytes are dropped.
    read_disabled: bool,
}

struct Pair {
    sides: crate::sync::Mutex<[Side; 2]>,
    /// Per end: user signals and the queue woken on any change seen from that end.
    cells: [SignalCell; 2],
    koids: [u64; 2],
}

/// One end of a socket. It closes when the last reference (a handle, a message, the host's
/// bridge) drops.
pub struct SocketEnd {
    pair: Arc<Pair>,
    side: usize,
}

impl core::fmt::Debug for SocketEnd {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.debug_struct("SocketEnd").field("koid", &self.koid()).finish()
    }
}

/// Why a read or write did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketError {
    /// Nothing to read, or no room to write, now.
    ShouldWait,
    /// The peer is closed (a write), or closed or done writing and everything is read (a read).
    PeerClosed,
    /// This end was shut down for this direction.
    Disabled,
}

impl SocketError {
    /// The status a system call returns for it.
    pub(crate) fn status(self) -> Error {
        match self {
            SocketError::ShouldWait => Error::ShouldWait,
            SocketError::PeerClosed => Error::PeerClosed,
            SocketError::Disabled => Error::BadState,
        }
    }
}

impl SocketEnd {
    /// A connected pair of ends.
    pub fn pair() -> (Arc<SocketEnd>, Arc<SocketEnd>) {
        let side = || Side { open: true, ..Side::default() };
        let pair = Arc::new(Pair {
            sides: crate::sync::Mutex::new([side(), side()]),
            cells: [SignalCell::default(), SignalCell::default()],
            koids: [super::new_koid(), super::new_koid()],
        });
        (Arc::new(SocketEnd { pair: pair.clone(), side: 0 }), Arc::new(SocketEnd { pair, side: 1 }))
    }

    fn peer(&self) -> usize {
        1 - self.side
    }

    pub(crate) fn koid(&self) -> u64 {
        self.pair.koids[self.side]
    }

    pub(crate) fn signals(&self) -> Signals {
        let sides = self.pair.sides.lock();
        let (own, peer) = (&sides[self.side], &sides[self.peer()]);
        let mut signals = self.pair.cells[self.side].get();
        if own.buffered > 0 {
            signals |= Signals::READABLE;
        }
        if !peer.open {
            signals |= Signals::PEER_CLOSED;
        } else if !own.write_disabled
            && !peer.read_disabled
            && peer.buffered < SOCKET_MAX_BUFFERED_BYTES as usize
        {
            signals |= Signals::WRITABLE;
        }
        if peer.write_disabled {
            signals |= Signals::PEER_WRITE_DISABLED;
        }
        signals
    }

    pub(crate) fn wait_queue(&self) -> &WaitQueue {
        self.pair.cells[self.side].queue()
    }

    pub(crate) fn update_user_signals(&self, clear: Signals, set: Signals) {
        self.pair.cells[self.side].update(clear, set);
    }

    /// How many bytes a write could put in the peer's buffer now.
    pub(crate) fn room(&self) -> Result<usize, SocketError> {
        self.room_in(&self.pair.sides.lock())
    }

    /// What a write could take now, seen in the locked sides.
    fn room_in(&self, sides: &[Side; 2]) -> Result<usize, SocketError> {
        let (own, peer) = (&sides[self.side], &sides[self.peer()]);
        if own.write_disabled {
            return Err(SocketError::Disabled);
        }
        if !peer.open || peer.read_disabled {
            return Err(SocketError::PeerClosed);
        }
        let room = (SOCKET_MAX_BUFFERED_BYTES as usize).saturating_sub(peer.buffered);
        if room == 0 { Err(SocketError::ShouldWait) } else { Ok(room) }
    }

    /// Whether a read could take bytes now, seen in the locked sides.
    fn readable_in(&self, sides: &[Side; 2]) -> Result<(), SocketError> {
        let (own, peer) = (&sides[self.side], &sides[self.peer()]);
        if own.read_disabled {
            return Err(SocketError::Disabled);
        }
        if own.buffered == 0 {
            let peer_done = !peer.open || peer.write_disabled;
            return Err(if peer_done { SocketError::PeerClosed } else { SocketError::ShouldWait });
        }
        Ok(())
    }

    /// Buffers the front of `bytes` for the peer, as much as fits, with the writer's charge
    /// for them; returns how many bytes were taken.
    pub(crate) fn write(
        &self,
        bytes: &[u8],
        charge: Option<[Charge; 2]>,
    ) -> Result<usize, SocketError> {
        let taken = {
            let mut sides = self.pair.sides.lock();
            let room = self.room_in(&sides)?;
            let peer = &mut sides[self.peer()];
            let taken = bytes.len().min(room);
            if taken > 0 {
                peer.buffered += taken;
                let bytes = bytes[..taken].to_vec();
                peer.inbound.push_back(Chunk { bytes, read: 0, _charge: charge });
            }
            taken
        };
        self.pair.cells[self.peer()].queue().wake_all();
        Ok(taken)
    }

    /// Takes up to `buffer.len()` buffered bytes into `buffer`; returns how many.
    pub(crate) fn read(&self, buffer: &mut [u8]) -> Result<usize, SocketError> {
        let (count, freed) = {
            let mut sides = self.pair.sides.lock();
            self.readable_in(&sides)?;
            let own = &mut sides[self.side];
            let mut count = 0;
            // Chunks read to their end go after the lock, with their charges.
            let mut freed = Vec::new();
            while count < buffer.len()
                && let Some(chunk) = own.inbound.front_mut()
            {
                let take = (chunk.bytes.len() - chunk.read).min(buffer.len() - count);
                buffer[count..count + take].copy_from_slice(&chunk.bytes[chunk.read..][..take]);
                chunk.read += take;
                count += take;
                if chunk.read == chunk.bytes.len() {
                    freed.extend(own.inbound.pop_front());
                }
            }
            own.buffered -= count;
            (count, freed)
        };
        drop(freed);
        // The writer may wait for WRITABLE.
        self.pair.cells[self.peer()].queue().wake_all();
        Ok(count)
    }

    /// Copies up to `buffer.len()` buffered bytes into `buffer`, leaving them buffered.
    pub(crate) fn peek(&self, buffer: &mut [u8]) -> Result<usize, SocketError> {
        let sides = self.pair.sides.lock();
        self.readable_in(&sides)?;
        let mut count = 0;
        for chunk in &sides[self.side].inbound {
            let available = &chunk.bytes[chunk.read..];
            let take = available.len().min(buffer.len() - count);
            buffer[count..count + take].copy_from_slice(&available[..take]);
            count += take;
            if count == buffer.len() {
                break;
            }
        }
        Ok(count)
    }

    /// Stops this end writing (the peer reads what is buffered, then sees the end) and/or
    /// reading (what is buffered for it is dropped, and the peer's writes fail).
    pub(crate) fn shutdown(&self, write: Shutdown, read: Shutdown) {
        let dropped = {
            let mut sides = self.pair.sides.lock();
            let own = &mut sides[self.side];
            own.write_disabled |= write == Shutdown::Yes;
            if read == Shutdown::Yes {
                own.read_disabled = true;
                own.buffered = 0;
                core::mem::take(&mut own.inbound)
            } else {
                VecDeque::new()
            }
        };
        drop(dropped);
        self.pair.cells[self.side].queue().wake_all();
        self.pair.cells[self.peer()].queue().wake_all();
    }

    /// For the host's end: reads into `buffer`, or registers to be woken when it could.
    /// `Ok(0)` is the end of the stream (peer closed or done writing).
    pub fn poll_read(&self, context: &mut Context<'_>, buffer: &mut [u8]) -> Poll<usize> {
        self.wait_queue().register(context.waker());
        match self.read(buffer) {
            Ok(count) => Poll::Ready(count),
            Err(SocketError::ShouldWait) => Poll::Pending,
            Err(_) => Poll::Ready(0),
        }
    }

    /// For the host's end: writes what fits of `bytes` (charged to nobody: the buffer bounds
    /// it), or registers to be woken when it could. `None`: the peer will never read.
    pub fn poll_write(&self, context: &mut Context<'_>, bytes: &[u8]) -> Poll<Option<usize>> {
        self.wait_queue().register(context.waker());
        match self.write(bytes, None) {
            Ok(count) => Poll::Ready(Some(count)),
            Err(SocketError::ShouldWait) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }

    /// For the host's end: no more bytes will come from it.
    pub fn shutdown_write(&self) {
        self.shutdown(Shutdown::Yes, Shutdown::No);
    }

    /// For the host's end: no more bytes will be read from it; what is buffered is dropped, and
    /// its peer's writes fail.
    pub fn shutdown_read(&self) {
        self.shutdown(Shutdown::No, Shutdown::Yes);
    }

    /// For the host's end: ready once the peer reads no more (it shut down reading, or
    /// closed), or registers to be woken when it could.
    pub fn poll_peer_stopped_reading(&self, context: &mut Context<'_>) -> Poll<()> {
        self.wait_queue().register(context.waker());
        let sides = self.pair.sides.lock();
        let peer = &sides[self.peer()];
        if !peer.open || peer.read_disabled { Poll::Ready(()) } else { Poll::Pending }
    }

    /// For the host's end: whether bytes are buffered for it to read.
    pub fn is_readable(&self) -> bool {
        self.signals().contains(Signals::READABLE)
    }

    /// For the host's end: ready once the peer has closed, or registers to be woken when it
    /// could have.
    pub fn poll_peer_closed(&self, context: &mut Context<'_>) -> Poll<()> {
        self.wait_queue().register(context.waker());
        if self.signals().contains(Signals::PEER_CLOSED) { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// Whether `shutdown` stops a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shutdown {
    Yes,
    No,
}

impl Drop for SocketEnd {
    fn drop(&mut self) {
        let unread = {
            let mut sides = self.pair.sides.lock();
            let own = &mut sides[self.side];
            own.open = false;
            own.buffered = 0;
            core::mem::take(&mut own.inbound)
        };
        drop(unread);
        self.pair.cells[self.peer()].queue().wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_and_a_full_buffer_waits() {
        let (a, b) = SocketEnd::pair();
        assert_eq!(a.signals(), Signals::WRITABLE);
        assert_eq!(a.write(b"hello ", None), Ok(6));
        assert_eq!(a.write(b"world", None), Ok(5));
        assert!(b.signals().contains(Signals::READABLE | Signals::WRITABLE));
        let mut buffer = [0u8; 8];
        assert_eq!(b.read(&mut buffer), Ok(8));
        assert_eq!(&buffer, b"hello wo");
        assert_eq!(b.read(&mut buffer), Ok(3));
        assert_eq!(&buffer[..3], b"rld");
        assert_eq!(b.read(&mut buffer), Err(SocketError::ShouldWait));
        let big = alloc::vec![7u8; SOCKET_MAX_BUFFERED_BYTES as usize + 10];
        assert_eq!(a.write(&big, None), Ok(SOCKET_MAX_BUFFERED_BYTES as usize));
        assert!(!a.signals().contains(Signals::WRITABLE));
        assert_eq!(a.write(b"x", None), Err(SocketError::ShouldWait));
        assert_eq!(b.read(&mut buffer), Ok(8));
        assert_eq!(a.write(&big, None), Ok(8), "as much as was read makes room");
    }

    #[test]
    fn shutting_down_writes_ends_the_stream_after_the_buffered_bytes() {
        let (a, b) = SocketEnd::pair();
        a.write(b"last", None).unwrap();
        a.shutdown(Shutdown::Yes, Shutdown::No);
        assert_eq!(a.write(b"more", None), Err(SocketError::Disabled));
        assert!(b.signals().contains(Signals::PEER_WRITE_DISABLED | Signals::READABLE));
        let mut buffer = [0u8; 16];
        assert_eq!(b.read(&mut buffer), Ok(4));
        assert_eq!(b.read(&mut buffer), Err(SocketError::PeerClosed), "the end of the stream");
        // The other direction still works.
        assert_eq!(b.write(b"reply", None), Ok(5));
        assert_eq!(a.read(&mut buffer), Ok(5));
    }

    #[test]
    fn shutting_down_reads_drops_the_buffer_and_fails_the_peers_writes() {
        let (a, b) = SocketEnd::pair();
        a.write(b"unread", None).unwrap();
        b.shutdown(Shutdown::No, Shutdown::Yes);
        assert_eq!(b.read(&mut [0u8; 8]), Err(SocketError::Disabled));
        assert_eq!(a.write(b"more", None), Err(SocketError::PeerClosed));
        assert!(!a.signals().contains(Signals::WRITABLE));
    }

    #[test]
    fn closing_an_end_is_seen_by_its_peer_and_gives_back_the_charges() {
        use crate::budget::{Budget, Resource};
        let root = Budget::root(&crate::platform::Capacity::default());
        let (a, b) = SocketEnd::pair();
        let charge = crate::budget::charge_message(&root, 5, 0).unwrap();
        a.write(b"bytes", Some(charge)).unwrap();
        assert!(root.used(Resource::Queued) > 0);
        let mut buffer = [0u8; 2];
        b.read(&mut buffer).unwrap();
        assert!(root.used(Resource::Queued) > 0, "held until the chunk is read to its end");
        b.read(&mut [0u8; 8]).unwrap();
        assert_eq!(root.used(Resource::Queued), 0);
        a.write(b"again", Some(crate::budget::charge_message(&root, 5, 0).unwrap())).unwrap();
        drop(b);
        assert_eq!(root.used(Resource::Queued), 0, "the closed end's buffer is dropped");
        assert!(a.signals().contains(Signals::PEER_CLOSED));
        assert_eq!(a.write(b"x", None), Err(SocketError::PeerClosed));
    }
}
