//! Channels: pairs of endpoints that carry messages of bytes and handles, in order, bounded.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use nebulet_abi::{CHANNEL_MAX_QUEUED_BYTES, CHANNEL_MAX_QUEUED_MESSAGES, Error, Signals};

use crate::handles::HandleEntry;
use crate::objects::Object;
use crate::wait::{SignalCell, WaitQueue};

/// One message: bytes and the handles moved with them.
#[derive(Debug, Default)]
pub(crate) struct Message {
    pub(crate) bytes: Vec<u8>,
    pub(crate) handles: Vec<HandleEntry>,
    /// The writer's charges (queued bytes and memory), given back when the message is read or
    /// dropped.
    #[expect(dead_code, reason = "held for its Drop, which gives the bytes back")]
    pub(crate) charge: Option<[crate::budget::Charge; 2]>,
}

impl Message {
    /// How many of its handles are channel endpoints.
    fn endpoints(&self) -> usize {
        self.handles.iter().filter(|entry| matches!(entry.object, Object::Channel(_))).count()
    }
}

/// Held while a message that carries channel endpoints is checked and queued, so that two such
/// writes cannot each pass the check and together close a cycle.
static ENDPOINT_TRANSFER: crate::sync::Mutex<()> = crate::sync::Mutex::new(());

/// Why a read found no message it could return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    Empty,
    PeerClosed,
    /// The reader's handle table has no room for the first message's handles; it stays queued.
    NoRoom,
    /// The first message needs this many bytes and handles; it stays queued.
    TooSmall {
        bytes: usize,
        handles: usize,
    },
}

#[derive(Debug)]
struct Side {
    /// Messages written by the peer, waiting for this side to read them.
    queue: VecDeque<Message>,
    queued_bytes: usize,
    /// Channel endpoints inside the queued messages.
    queued_endpoints: usize,
    open: bool,
}

impl Side {
    fn is_full(&self) -> bool {
        self.queue.len() >= CHANNEL_MAX_QUEUED_MESSAGES as usize
            || self.queued_bytes >= CHANNEL_MAX_QUEUED_BYTES as usize
    }
}

#[derive(Debug)]
struct Pair {
    sides: crate::sync::Mutex<[Side; 2]>,
    /// Per side: user signals and the queue woken on any change seen from that side.
    cells: [SignalCell; 2],
    koids: [u64; 2],
    /// Whether one end is held by a bridge to another domain, which carries only channel and
    /// socket handles: a message with any other kind fails with `ERR_NOT_SUPPORTED`. A local channel
    /// becomes bridged when one of its ends is an isolated process's bootstrap channel.
    crossing: spin::Mutex<Crossing>,
}

/// Whether a channel's messages cross into another domain (see `crate::crossing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crossing {
    Local,
    Bridged,
}

/// One end of a channel. It closes when the last reference (handle, message, registry) drops.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pair: Arc<Pair>,
    side: usize,
}

impl Endpoint {
    pub(crate) fn create() -> (Arc<Endpoint>, Arc<Endpoint>) {
        Self::create_with(Crossing::Local)
    }

    pub(crate) fn create_with(crossing: Crossing) -> (Arc<Endpoint>, Arc<Endpoint>) {
        let side =
            || Side { queue: VecDeque::new(), queued_bytes: 0, queued_endpoints: 0, open: true };
        let pair = Arc::new(Pair {
            sides: crate::sync::Mutex::new([side(), side()]),
            cells: [SignalCell::default(), SignalCell::default()],
            koids: [super::new_koid(), super::new_koid()],
            crossing: spin::Mutex::new(crossing),
        });
        (Arc::new(Endpoint { pair: pair.clone(), side: 0 }), Arc::new(Endpoint { pair, side: 1 }))
    }

    fn peer(&self) -> usize {
        1 - self.side
    }

    pub(crate) fn koid(&self) -> u64 {
        self.pair.koids[self.side]
    }

    /// Whether `other` is the other end of this channel.
    pub(crate) fn is_peer_of(&self, other: &Endpoint) -> bool {
        Arc::ptr_eq(&self.pair, &other.pair) && self.side != other.side
    }

    pub(crate) fn signals(&self) -> Signals {
        let sides = self.pair.sides.lock();
        let (own, peer) = (&sides[self.side], &sides[self.peer()]);
        let mut signals = self.pair.cells[self.side].get();
        if !own.queue.is_empty() {
            signals |= Signals::READABLE;
        }
        if !peer.open {
            signals |= Signals::PEER_CLOSED;
        } else if !peer.is_full() {
            signals |= Signals::WRITABLE;
        }
        signals
    }

    pub(crate) fn wait_queue(&self) -> &WaitQueue {
        self.pair.cells[self.side].queue()
    }

    pub(crate) fn update_user_signals(&self, clear: Signals, set: Signals) {
        self.pair.cells[self.side].update(clear, set);
    }

    pub(crate) fn is_peer_closed(&self) -> bool {
        !self.pair.sides.lock()[self.peer()].open
    }

    /// Makes the channel carry only channel and socket handles from now on, as a bridged one does;
    /// `ERR_NOT_SUPPORTED` if a message queued in it already carries another kind.
    pub(crate) fn bridge(&self) -> Result<(), Error> {
        // Sides first, then the crossing, as `write` takes them.
        let sides = self.pair.sides.lock();
        let mut crossing = self.pair.crossing.lock();
        let foreign = sides
            .iter()
            .flat_map(|side| &side.queue)
            .any(|message| message.handles.iter().any(|entry| !entry.object.crosses_domains()));
        if foreign {
            return Err(Error::NotSupported);
        }
        *crossing = Crossing::Bridged;
        Ok(())
    }

    /// Whether messages queued for this end carry channel endpoints.
    fn holds_endpoints(&self) -> bool {
        self.pair.sides.lock()[self.side].queued_endpoints > 0
    }

    /// Queues a message for the peer, or gives it back with the reason it was not queued.
    ///
    /// An endpoint is kept alive by a message that carries it, so endpoints carried in each
    /// other's queues would keep each other alive after every handle to them is gone. Such a
    /// cycle cannot form: a message may not carry an endpoint of this channel
    /// (`ERR_INVALID_ARGS`), nor an endpoint whose own queue holds endpoints (`ERR_BAD_STATE`).
    /// The last write that would close any cycle is always of the second kind.
    pub(crate) fn write(&self, message: Message) -> Result<(), (Error, Message)> {
        let endpoints = message.endpoints();
        let foreign = message.handles.iter().any(|entry| !entry.object.crosses_domains());
        if foreign && *self.pair.crossing.lock() == Crossing::Bridged {
            return Err((Error::NotSupported, message));
        }
        let _transfer = (endpoints > 0).then(|| ENDPOINT_TRANSFER.lock());
        for entry in &message.handles {
            if let Object::Channel(carried) = &entry.object {
                if Arc::ptr_eq(&carried.pair, &self.pair) {
                    return Err((Error::InvalidArgs, message));
                }
                if carried.holds_endpoints() {
                    return Err((Error::BadState, message));
                }
            }
        }
        {
            let mut sides = self.pair.sides.lock();
            // Again under the lock: the channel may have been bridged meanwhile.
            if foreign && *self.pair.crossing.lock() == Crossing::Bridged {
                return Err((Error::NotSupported, message));
            }
            let peer = &mut sides[self.peer()];
            if !peer.open {
                return Err((Error::PeerClosed, message));
            }
            if peer.is_full() {
                return Err((Error::ShouldWait, message));
            }
            peer.queued_bytes += message.bytes.len();
            peer.queued_endpoints += endpoints;
            peer.queue.push_back(message);
        }
        self.pair.cells[self.peer()].queue().wake_all();
        Ok(())
    }

    /// Takes the first message if it fits in the given capacities and the reader has `room` for
    /// its handles; otherwise leaves it queued.
    pub(crate) fn read(
        &self,
        byte_capacity: usize,
        handle_capacity: usize,
        room: usize,
    ) -> Result<Message, ReadError> {
        let message = {
            let mut sides = self.pair.sides.lock();
            let peer_open = sides[self.peer()].open;
            let own = &mut sides[self.side];
            let Some(first) = own.queue.front() else {
                return Err(if peer_open { ReadError::Empty } else { ReadError::PeerClosed });
            };
            if first.bytes.len() > byte_capacity || first.handles.len() > handle_capacity {
                return Err(ReadError::TooSmall {
                    bytes: first.bytes.len(),
                    handles: first.handles.len(),
                });
            }
            if first.handles.len() > room {
                return Err(ReadError::NoRoom);
            }
            let message = own.queue.pop_front().unwrap_or_default();
            own.queued_bytes -= message.bytes.len();
            own.queued_endpoints -= message.endpoints();
            message
        };
        // The writer may wait for WRITABLE.
        self.pair.cells[self.peer()].queue().wake_all();
        Ok(message)
    }
}

impl Endpoint {
    /// Marks this side closed and takes the messages nobody can read any more.
    pub(crate) fn close(&self) -> VecDeque<Message> {
        let unread = {
            let mut sides = self.pair.sides.lock();
            let own = &mut sides[self.side];
            own.open = false;
            own.queued_bytes = 0;
            own.queued_endpoints = 0;
            core::mem::take(&mut own.queue)
        };
        self.pair.cells[self.peer()].queue().wake_all();
        unread
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Unread messages close their handles, outside the lock since that may close other
        // channels. Iteratively: a program can nest endpoints in messages in endpoints any
        // number of levels deep, and recursive drops would overflow the kernel's stack. An
        // endpoint we hold the last reference to is emptied here before it is dropped.
        let mut unread: Vec<Message> = self.close().into();
        while let Some(message) = unread.pop() {
            for entry in message.handles {
                if let Object::Channel(endpoint) = &entry.object
                    && Arc::strong_count(endpoint) == 1
                {
                    unread.extend(endpoint.close());
                }
                drop(entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(bytes: &[u8]) -> Message {
        Message { bytes: bytes.to_vec(), handles: Vec::new(), charge: None }
    }

    #[test]
    fn messages_arrive_in_order_and_signals_follow() {
        let (a, b) = Endpoint::create();
        assert_eq!(a.signals(), Signals::WRITABLE);
        a.write(message(b"one")).unwrap();
        a.write(message(b"two")).unwrap();
        assert!(b.signals().contains(Signals::READABLE));
        assert_eq!(b.read(3, 0, 0).unwrap().bytes, b"one");
        assert_eq!(b.read(2, 0, 0).unwrap_err(), ReadError::TooSmall { bytes: 3, handles: 0 });
        assert_eq!(b.read(3, 0, 0).unwrap().bytes, b"two");
        assert_eq!(b.read(3, 0, 0).unwrap_err(), ReadError::Empty);
        drop(a);
        assert_eq!(b.signals(), Signals::PEER_CLOSED);
        assert_eq!(b.read(3, 0, 0).unwrap_err(), ReadError::PeerClosed);
        let (error, back) = b.write(message(b"x")).unwrap_err();
        assert_eq!((error, back.bytes.as_slice()), (Error::PeerClosed, b"x".as_slice()));
    }

    #[test]
    fn the_queue_is_bounded() {
        let (a, b) = Endpoint::create();
        for index in 0..CHANNEL_MAX_QUEUED_MESSAGES {
            a.write(message(&index.to_le_bytes())).unwrap();
        }
        assert!(!a.signals().contains(Signals::WRITABLE));
        assert_eq!(a.write(message(b"more")).unwrap_err().0, Error::ShouldWait);
        b.read(4, 0, 0).unwrap();
        assert!(a.signals().contains(Signals::WRITABLE));
        a.write(message(b"more")).unwrap();
    }

    fn carrying(endpoint: Arc<Endpoint>) -> Message {
        use crate::handles::HandleEntry;
        let entry =
            HandleEntry::new(Object::Channel(endpoint), nebulet_abi::Rights::CHANNEL_DEFAULT);
        Message { bytes: Vec::new(), handles: alloc::vec![entry], charge: None }
    }

    #[test]
    fn endpoints_cannot_keep_each_other_alive() {
        let (a, b) = Endpoint::create();
        let (c, d) = Endpoint::create();
        // Either end of the channel itself: refused.
        assert_eq!(a.write(carrying(b.clone())).unwrap_err().0, Error::InvalidArgs);
        assert_eq!(a.write(carrying(a.clone())).unwrap_err().0, Error::InvalidArgs);
        // c into b's queue: fine.
        a.write(carrying(c.clone())).unwrap();
        // b (whose queue holds c) into c's queue would close the cycle b -> c -> b.
        let (error, back) = d.write(carrying(b.clone())).unwrap_err();
        assert_eq!((error, back.handles.len()), (Error::BadState, 1));
        // Once b's queue no longer holds endpoints, b may travel.
        let read = b.read(0, 1, 1).unwrap();
        assert_eq!(read.handles.len(), 1);
        d.write(carrying(b.clone())).unwrap();
    }

    #[test]
    fn closing_an_end_closes_the_endpoints_its_queue_holds() {
        let (witness, carried) = Endpoint::create();
        let (near, far) = Endpoint::create();
        near.write(carrying(carried)).unwrap();
        assert!(!witness.is_peer_closed());
        drop(far);
        assert!(witness.is_peer_closed(), "the carried end closed with the queue that held it");
        drop(near);
    }

    #[test]
    fn peers_know_each_other() {
        let (a, b) = Endpoint::create();
        let (c, _d) = Endpoint::create();
        assert!(a.is_peer_of(&b) && b.is_peer_of(&a));
        assert!(!a.is_peer_of(&a) && !a.is_peer_of(&c));
        assert_ne!(a.koid(), b.koid());
    }
}
