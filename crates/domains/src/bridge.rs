//! The bridge: channels whose ends are in two domains, relayed over their socket.
//!
//! Each bridged channel has a wire id and, on each side, a local end that the bridge holds (its
//! peer is a process's handle). A task per channel reads the local end and sends its messages;
//! the channels a message carries are adopted under fresh ids, so they are bridged in turn.
//! Another task delivers what arrives, in order. A side sends at most
//! `CHANNEL_MAX_QUEUED_MESSAGES` messages on a channel that the other side has not yet
//! delivered (`Delivered` gives one back), so a full reader holds up its writer as a local
//! channel does, and a peer that sends more breaks the protocol. When a local end's peer closes,
//! `Closed` tells the other side to close its local end after the messages before it.
//! Sockets a message carries are bridged too (`sockets`).

mod sockets;

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use nebulet_abi::{CHANNEL_MAX_QUEUED_MESSAGES, Error, Rights};
use nebulet_kernel::{ChannelEnd, Crossed, CrossingMessage, SocketEnd};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use crate::wire::{Carried, Frame, Outgoing};

/// Messages a side may have sent on one channel and not yet seen delivered.
const CREDITS: usize = CHANNEL_MAX_QUEUED_MESSAGES as usize;

/// Which side of the socket this bridge is on: it numbers its new channels by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Even ids.
    Parent,
    /// Odd ids.
    Domain,
}

/// The other side broke the protocol (a frame it may not send): the domain must end.
#[derive(Debug)]
pub(crate) struct Violation(pub(crate) &'static str);

/// What arrives for a channel, in order.
enum Inbound {
    Message(CrossingMessage),
    Closed,
}

/// One bridged channel on this side.
struct Link {
    /// The local end (also held by the link's tasks).
    end: Arc<ChannelEnd>,
    inbound: mpsc::UnboundedSender<Inbound>,
    /// Messages that arrived and are not yet delivered.
    undelivered: Arc<AtomicUsize>,
    /// Messages this side may still send before the other side delivers some.
    credits: Arc<Semaphore>,
    /// Messages sent and not yet delivered.
    in_flight: Arc<AtomicUsize>,
    tasks: [AbortHandle; 2],
}

/// The bridged channels of one socket, on one side.
pub(crate) struct Bridge {
    side: Side,
    next_id: AtomicU64,
    outgoing: Arc<Outgoing>,
    links: Mutex<HashMap<u64, Link>>,
    sockets: Mutex<HashMap<u64, sockets::SocketLink>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Bridge").field("side", &self.side).finish_non_exhaustive()
    }
}

impl Bridge {
    /// A bridge that sends its frames to `outgoing`, running its tasks on `runtime`.
    pub(crate) fn new(
        side: Side,
        outgoing: Arc<Outgoing>,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Bridge> {
        let first = match side {
            Side::Parent => crate::wire::BOOTSTRAP + 2,
            Side::Domain => 1,
        };
        Arc::new(Bridge {
            side,
            next_id: AtomicU64::new(first),
            outgoing,
            links: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            runtime,
        })
    }

    fn links(&self) -> MutexGuard<'_, HashMap<u64, Link>> {
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the other side may name `id` for a new channel.
    fn is_theirs(&self, id: u64) -> bool {
        let odd = id % 2 == 1;
        match self.side {
            Side::Parent => odd,
            Side::Domain => !odd,
        }
    }

    /// Bridges `end` (whose peer a local process holds) as channel `id`.
    pub(crate) fn attach(self: &Arc<Self>, id: u64, end: ChannelEnd) {
        self.attach_gated(id, end, None);
    }

    /// [`Bridge::attach`], sending nothing until `gate` opens (a carried channel: not before
    /// the frame that carries it is queued).
    fn attach_gated(
        self: &Arc<Self>,
        id: u64,
        end: ChannelEnd,
        gate: Option<tokio::sync::oneshot::Receiver<()>>,
    ) {
        let end = Arc::new(end);
        let end_for_link = end.clone();
        let (inbound, receiver) = mpsc::unbounded_channel();
        let undelivered = Arc::new(AtomicUsize::new(0));
        let credits = Arc::new(Semaphore::new(CREDITS));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut links = self.links();
        let sending = self.clone().send_loop(id, end.clone(), credits.clone(), in_flight.clone());
        let sender = self.runtime.spawn(async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            sending.await;
        });
        let deliverer =
            self.runtime.spawn(self.clone().deliver_loop(id, end, receiver, undelivered.clone()));
        let tasks = [sender.abort_handle(), deliverer.abort_handle()];
        links.insert(
            id,
            Link { end: end_for_link, inbound, undelivered, credits, in_flight, tasks },
        );
    }

    /// Reads the local end and sends what it reads, while the other side has room.
    async fn send_loop(
        self: Arc<Self>,
        id: u64,
        end: Arc<ChannelEnd>,
        credits: Arc<Semaphore>,
        in_flight: Arc<AtomicUsize>,
    ) {
        loop {
            let Ok(permit) = credits.acquire().await else { return };
            permit.forget();
            let Some(message) = poll_fn(|context| end.poll_read(context)).await else { break };
            let mut gates = Vec::with_capacity(message.handles.len());
            let handles = message
                .handles
                .into_iter()
                .map(|(carried, rights)| {
                    let carried_id = self.next_id.fetch_add(2, Ordering::Relaxed);
                    let (open, gate) = tokio::sync::oneshot::channel();
                    gates.push(open);
                    let rights = rights.bits();
                    match carried {
                        Crossed::Channel(channel) => {
                            self.attach_gated(carried_id, channel, Some(gate));
                            Carried::Channel { id: carried_id, rights }
                        }
                        Crossed::Socket(socket) => {
                            self.attach_socket(carried_id, socket, Some(gate));
                            Carried::Socket { id: carried_id, rights }
                        }
                    }
                })
                .collect();
            let frame = Frame::Message { channel: id, bytes: message.bytes, handles };
            in_flight.fetch_add(1, Ordering::Relaxed);
            if self.outgoing.send(frame).is_err() {
                return;
            }
            for open in gates {
                let _ = open.send(());
            }
        }
        // The local peer is gone: nothing more is delivered here either.
        let _ = self.outgoing.send(Frame::Closed { channel: id });
        end.close();
        if let Some(link) = self.links().remove(&id) {
            link.tasks[1].abort();
        }
    }

    /// Delivers what arrives for channel `id` to the local end, in order.
    async fn deliver_loop(
        self: Arc<Self>,
        id: u64,
        end: Arc<ChannelEnd>,
        mut receiver: mpsc::UnboundedReceiver<Inbound>,
        undelivered: Arc<AtomicUsize>,
    ) {
        while let Some(inbound) = receiver.recv().await {
            let Inbound::Message(message) = inbound else { break };
            let mut pending = Some(message);
            let written = poll_fn(|context| {
                let Some(message) = pending.take() else { return Poll::Ready(Ok(())) };
                match end.poll_write(context, message) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err((Error::ShouldWait, message)) => {
                        pending = Some(message);
                        Poll::Pending
                    }
                    Err((error, _)) => Poll::Ready(Err(error)),
                }
            })
            .await;
            undelivered.fetch_sub(1, Ordering::Relaxed);
            // Delivered, or dropped for a reader that is gone (its carried channels close, and
            // their send loops tell the other side): either way the sender may send again.
            let _ = written;
            if self.outgoing.send(Frame::Delivered { channel: id }).is_err() {
                break;
            }
        }
        // The other side's end closed, or the socket did.
        end.close();
        if let Some(link) = self.links().remove(&id) {
            link.tasks[0].abort();
        }
    }

    /// Handles one frame from the other side.
    pub(crate) fn receive(self: &Arc<Self>, frame: Frame) -> Result<(), Violation> {
        match frame {
            Frame::Message { channel, bytes, handles } => {
                if bytes.len() > nebulet_abi::CHANNEL_MAX_MESSAGE_BYTES as usize
                    || handles.len() > nebulet_abi::CHANNEL_MAX_MESSAGE_HANDLES as usize
                {
                    return Err(Violation("a message past the limits"));
                }
                let mut carried = Vec::with_capacity(handles.len());
                for &handle in &handles {
                    let (Carried::Channel { id, .. } | Carried::Socket { id, .. }) = handle;
                    if !self.is_theirs(id)
                        || self.links().contains_key(&id)
                        || self.socket_links().contains_key(&id)
                    {
                        return Err(Violation("a channel or socket id that is not new"));
                    }
                    carried.push(match handle {
                        Carried::Channel { id, rights } => {
                            let (local, delivered) = ChannelEnd::crossing_pair();
                            self.attach(id, local);
                            let rights = Rights::from_bits(rights) & Rights::CHANNEL_DEFAULT;
                            (Crossed::Channel(delivered), rights)
                        }
                        Carried::Socket { id, rights } => {
                            let (local, delivered) = SocketEnd::pair();
                            self.attach_socket(id, local, None);
                            let rights = Rights::from_bits(rights) & Rights::SOCKET_DEFAULT;
                            (Crossed::Socket(delivered), rights)
                        }
                    });
                }
                let links = self.links();
                let Some(link) = links.get(&channel) else {
                    // The channel closed here meanwhile: what it carried closes with it.
                    drop(links);
                    drop(carried);
                    return Ok(());
                };
                let waiting = link.undelivered.fetch_add(1, Ordering::Relaxed);
                if waiting >= CREDITS {
                    return Err(Violation("more messages than the channel's credit"));
                }
                let message = CrossingMessage { bytes, handles: carried };
                // Nothing waits before it (only this reader adds): delivered here if there is
                // room, which saves the delivering task a wake-up.
                let message = if waiting == 0 {
                    match link.end.try_write(message) {
                        Err((Error::ShouldWait, message)) => message,
                        // Delivered, or dropped for a reader that is gone.
                        _ => {
                            link.undelivered.fetch_sub(1, Ordering::Relaxed);
                            let _ = self.outgoing.send(Frame::Delivered { channel });
                            return Ok(());
                        }
                    }
                } else {
                    message
                };
                let _ = link.inbound.send(Inbound::Message(message));
                Ok(())
            }
            Frame::Delivered { channel } => {
                if let Some(link) = self.links().get(&channel) {
                    let less = |count: usize| count.checked_sub(1);
                    if link
                        .in_flight
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less)
                        .is_err()
                    {
                        return Err(Violation("a delivery of nothing sent"));
                    }
                    link.credits.add_permits(1);
                }
                Ok(())
            }
            Frame::Closed { channel } => {
                if let Some(link) = self.links().get(&channel) {
                    let _ = link.inbound.send(Inbound::Closed);
                }
                Ok(())
            }
            Frame::SocketData { .. }
            | Frame::SocketDelivered { .. }
            | Frame::SocketShutdown { .. }
            | Frame::SocketClosed { .. } => self.receive_socket(frame),
            Frame::Exit { .. } => Err(Violation("an exit frame from the parent")),
        }
    }

    /// Whether every message written to a local end has been sent, or waits for credit (for the
    /// other side to deliver what it has): what a domain waits for after its process ended,
    /// before it ends, so that what the process wrote last still crosses.
    pub(crate) fn is_flushed(&self) -> bool {
        self.links()
            .values()
            .all(|link| !link.end.is_readable() || link.credits.available_permits() == 0)
            && self.sockets_flushed()
    }

    /// The socket is gone: every bridged channel closes here (their local peers see
    /// PEER_CLOSED once they have read what arrived).
    pub(crate) fn disconnect(&self) {
        for (_, link) in self.links().drain() {
            let _ = link.inbound.send(Inbound::Closed);
            link.tasks[0].abort();
        }
        self.disconnect_sockets();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parent's bridge with channel 0 attached, its local peer, and the other end of its
    /// socket (where its frames go).
    fn parent(
        runtime: &tokio::runtime::Runtime,
    ) -> (Arc<Bridge>, ChannelEnd, tokio::net::UnixStream) {
        let (socket, other) = runtime.block_on(async { tokio::net::UnixStream::pair() }).unwrap();
        let (_reader, writer) = socket.into_split();
        let outgoing = Outgoing::new(writer);
        runtime.spawn(outgoing.clone().flush_loop());
        let bridge = Bridge::new(Side::Parent, outgoing, runtime.handle().clone());
        let (local, bridged) = ChannelEnd::crossing_pair();
        bridge.attach(0, bridged);
        (bridge, local, other)
    }

    fn message(channel: u64, channels: Vec<(u64, u32)>) -> Frame {
        let handles = channels.into_iter().map(|(id, rights)| Carried::Channel { id, rights });
        Frame::Message { channel, bytes: vec![1], handles: handles.collect() }
    }

    #[test]
    fn a_domain_may_not_name_a_channel_the_parent_numbers_or_one_that_exists() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (bridge, _local, _frames) = parent(&runtime);
        let _guard = runtime.enter();
        assert!(bridge.receive(message(0, vec![(2, 0)])).is_err(), "an even id is the parent's");
        assert!(bridge.receive(message(0, vec![(1, 0)])).is_ok());
        assert!(bridge.receive(message(0, vec![(1, 0)])).is_err(), "1 exists");
        assert!(bridge.receive(Frame::Exit { code: 0, reason: 1, message: None }).is_err());
    }

    #[test]
    fn a_domain_may_not_send_past_its_credit_or_acknowledge_what_was_not_sent() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (bridge, _local, _frames) = parent(&runtime);
        let _guard = runtime.enter();
        // Nobody reads the local end: what arrives stays undelivered past the local queue.
        let mut outcome = Ok(());
        for _ in 0..=2 * CREDITS {
            outcome = bridge.receive(message(0, Vec::new()));
            if outcome.is_err() {
                break;
            }
        }
        assert!(outcome.is_err(), "more than the credit breaks the protocol");
        assert!(bridge.receive(Frame::Delivered { channel: 0 }).is_err(), "nothing was sent");
    }
}
