//! The host's hold on channels whose ends are in different domains: the end a bridge holds, and
//! the messages it moves across, as the host sees them.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::task::{Context, Poll};

use nebulet_abi::{Error, Rights};

use crate::handles::HandleEntry;
use crate::objects::Object;
use crate::objects::channel::{Crossing, Endpoint, Message, ReadError};
use crate::objects::socket::SocketEnd;

/// One end of a channel, held by the host (a bridge to another domain, or a test). Channels
/// made by [`ChannelEnd::crossing_pair`] carry only channel and socket handles (others fail with
/// `ERR_NOT_SUPPORTED` at the writer), since only those can be carried to another domain. A
/// clone is another reference to the same end; the end closes when the last one drops.
#[derive(Debug, Clone)]
pub struct ChannelEnd {
    endpoint: Arc<Endpoint>,
}

/// A message as the host reads and writes it: bytes, and the channel and socket ends it
/// carries, in order, with their rights.
#[derive(Debug, Default)]
pub struct CrossingMessage {
    /// The message's bytes.
    pub bytes: Vec<u8>,
    /// The ends it carries, each with the rights of its handle.
    pub handles: Vec<(Crossed, Rights)>,
}

/// An end a crossing message carries.
#[derive(Debug, Clone)]
pub enum Crossed {
    /// A channel end.
    Channel(ChannelEnd),
    /// A socket end.
    Socket(Arc<SocketEnd>),
}

impl ChannelEnd {
    /// A channel both of whose ends the host holds, that carries only channel handles.
    pub fn crossing_pair() -> (ChannelEnd, ChannelEnd) {
        let (first, second) = Endpoint::create_with(Crossing::Bridged);
        (ChannelEnd { endpoint: first }, ChannelEnd { endpoint: second })
    }

    /// A process's channel end, now held by the host to bridge it (see `crate::domain`).
    pub(crate) fn from_endpoint(endpoint: Arc<Endpoint>) -> ChannelEnd {
        ChannelEnd { endpoint }
    }

    /// The handle entry that gives this end to a process.
    pub(crate) fn into_entry(self, rights: Rights) -> HandleEntry {
        HandleEntry::new(Object::Channel(self.endpoint), rights)
    }

    /// Takes the next message, or registers to be woken when there could be one. `None`: the
    /// peer closed and every message it wrote has been read.
    pub fn poll_read(&self, context: &mut Context<'_>) -> Poll<Option<CrossingMessage>> {
        self.endpoint.wait_queue().register(context.waker());
        match self.endpoint.read(usize::MAX, usize::MAX, usize::MAX) {
            Ok(message) => Poll::Ready(Some(Self::crossing_message(message))),
            Err(ReadError::PeerClosed) => Poll::Ready(None),
            Err(_) => Poll::Pending,
        }
    }

    fn crossing_message(message: Message) -> CrossingMessage {
        let handles = message
            .handles
            .into_iter()
            .filter_map(|entry| match entry.object {
                Object::Channel(endpoint) => {
                    Some((Crossed::Channel(ChannelEnd { endpoint }), entry.rights))
                }
                Object::Socket(socket) => Some((Crossed::Socket(socket), entry.rights)),
                // A bridged channel refuses other kinds at the writer; a host-made local one
                // is never read here.
                _ => None,
            })
            .collect();
        CrossingMessage { bytes: message.bytes, handles }
    }

    /// Queues `message` for the peer if there is room, or registers to be woken when there
    /// could be and gives it back (`ERR_SHOULD_WAIT`); `ERR_PEER_CLOSED` once the peer is gone,
    /// and the errors of `channel_write` for what it carries.
    pub fn poll_write(
        &self,
        context: &mut Context<'_>,
        message: CrossingMessage,
    ) -> Result<(), (Error, CrossingMessage)> {
        self.endpoint.wait_queue().register(context.waker());
        self.try_write(message)
    }

    /// [`ChannelEnd::poll_write`] without waiting: `ERR_SHOULD_WAIT` gives the message back.
    pub fn try_write(&self, message: CrossingMessage) -> Result<(), (Error, CrossingMessage)> {
        let CrossingMessage { bytes, handles } = message;
        let handles = handles
            .into_iter()
            .map(|(end, rights)| match end {
                Crossed::Channel(end) => end.into_entry(rights),
                Crossed::Socket(socket) => HandleEntry::new(Object::Socket(socket), rights),
            })
            .collect();
        self.endpoint
            .write(Message { bytes, handles, charge: None })
            .map_err(|(error, message)| (error, Self::crossing_message(message)))
    }

    /// Whether a message waits to be read.
    pub fn is_readable(&self) -> bool {
        self.endpoint.signals().contains(nebulet_abi::Signals::READABLE)
    }

    /// Whether the peer is gone.
    pub fn is_peer_closed(&self) -> bool {
        self.endpoint.is_peer_closed()
    }

    /// Closes this end now, though other references to it may live on (the peer sees
    /// PEER_CLOSED once it has read what was written; unread messages close their handles).
    pub fn close(&self) {
        drop(self.endpoint.close());
    }
}
