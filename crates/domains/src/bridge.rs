//! The bridge: channels whose ends are in two domains, relayed over their socket.
//!
//! Each bridged channel has a wire id and, on each side, a local end that the bridge holds (its
//! peer is a process's handle). What a process writes is sent at once by the thread that wrote
//! it (`sending`); the channels a message carries are adopted under fresh ids, so they are
//! bridged in turn. What arrives is delivered by the reader of the socket when nothing waits
//! before it, else by a task per channel, in order. A side sends at most
//! `CHANNEL_MAX_QUEUED_MESSAGES` messages on a channel that the other side has not yet
//! delivered (`Delivered` gives some back, in batches), so a full reader holds up its writer as
//! a local channel does, and a peer that sends more breaks the protocol. When a local end's
//! peer closes, `Closed` tells the other side to close its local end after the messages before
//! it. Sockets a message carries are bridged too (`sockets`). The socket is read by a reader that
//! spins for the next frame while frames come close together (`reading`).

mod reading;
mod sending;
mod sockets;

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use nebulet_abi::{CHANNEL_MAX_QUEUED_MESSAGES, Error, Rights};
use nebulet_kernel::{ChannelEnd, Crossed, CrossingMessage, SocketEnd};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::wire::{Carried, Frame, Outgoing};
pub(crate) use reading::{SpinningReader, split};
use sending::Sending;

/// Messages a side may have sent on one channel and not yet seen delivered.
const CREDITS: usize = CHANNEL_MAX_QUEUED_MESSAGES as usize;

/// Deliveries a side tells the other about in one `Delivered` frame. A sender always has at
/// least `CREDITS - ACKNOWLEDGED_AT + 1` credits that are not merely waiting to be given back,
/// and a reader that takes every message makes the count reach this, so nothing waits for
/// ever; a message and its answer cross without a `Delivered` frame each way.
const ACKNOWLEDGED_AT: usize = CREDITS / 2;

/// What waits on a new link before it may move messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Nothing: a process's own channel (the bootstrap channel).
    Nothing,
    /// A channel this side sends away: it sends nothing before the frame that carries it.
    UntilCarried,
    /// A channel that arrived in a message: nothing is delivered to it before that message.
    UntilDelivered,
}

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
    /// A message, and the channels it carries, held until it is delivered.
    Message(CrossingMessage, Vec<Arc<Receiving>>),
    Closed,
}

/// The receiving half of one bridged channel on this side.
struct Receiving {
    /// The local end (also held by the sending half and the delivering task).
    end: Arc<ChannelEnd>,
    inbound: mpsc::UnboundedSender<Inbound>,
    /// Messages that arrived and are not yet delivered.
    undelivered: AtomicUsize,
    /// Messages delivered and not yet told to the other side.
    unacknowledged: AtomicUsize,
    /// Set for a carried channel until the message that carries it is delivered: nothing is
    /// delivered to it before. A message it carried would otherwise queue channels in the
    /// carried end, and the kernel's cycle rule (`ERR_BAD_STATE`) would refuse its carrier.
    held: AtomicBool,
    released: tokio::sync::Notify,
}

impl Receiving {
    /// Its carrier was delivered (or dropped): what waits for it may be delivered.
    fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.released.notify_one();
    }
}

/// One bridged channel on this side.
struct Link {
    sending: Arc<Sending>,
    receiving: Arc<Receiving>,
    deliverer: AbortHandle,
}

/// The bridged channels of one socket, on one side. Its locks are never held while a channel
/// is written, read or closed: a channel's waker sends at once, on the thread that woke it, and
/// takes them.
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
        let (sending, _) = self.attach_link(id, end, Hold::Nothing);
        sending.run();
    }

    /// [`Bridge::attach`] for a carried channel: it sends nothing until [`Sending::open`], once
    /// the frame that carries it is queued.
    fn attach_gated(self: &Arc<Self>, id: u64, end: ChannelEnd) -> Arc<Sending> {
        self.attach_link(id, end, Hold::UntilCarried).0
    }

    fn attach_link(
        self: &Arc<Self>,
        id: u64,
        end: ChannelEnd,
        hold: Hold,
    ) -> (Arc<Sending>, Arc<Receiving>) {
        let end = Arc::new(end);
        let (inbound, receiver) = mpsc::unbounded_channel();
        let sending = Sending::new(id, self, end.clone(), CREDITS, hold);
        let receiving = Arc::new(Receiving {
            end,
            inbound,
            undelivered: AtomicUsize::new(0),
            unacknowledged: AtomicUsize::new(0),
            held: AtomicBool::new(hold == Hold::UntilDelivered),
            released: tokio::sync::Notify::new(),
        });
        let mut links = self.links();
        let deliverer =
            self.runtime.spawn(self.clone().deliver_loop(id, receiving.clone(), receiver));
        let deliverer = deliverer.abort_handle();
        links
            .insert(id, Link { sending: sending.clone(), receiving: receiving.clone(), deliverer });
        (sending, receiving)
    }

    /// Forgets channel `id` (its end closed), stopping its delivering task; dropped outside the
    /// lock.
    fn forget_link(&self, id: u64) {
        let link = self.links().remove(&id);
        if let Some(link) = link {
            link.sending.end();
            link.deliverer.abort();
        }
    }

    /// One more message delivered on channel `id` (or dropped for a reader that is gone): the
    /// other side is told in batches.
    fn delivered(&self, id: u64, receiving: &Receiving) -> Result<(), crate::wire::Broken> {
        let count = receiving.unacknowledged.fetch_add(1, Ordering::SeqCst) + 1;
        if count < ACKNOWLEDGED_AT {
            return Ok(());
        }
        let count = receiving.unacknowledged.swap(0, Ordering::SeqCst);
        if count == 0 {
            return Ok(());
        }
        self.outgoing.send(Frame::Delivered { channel: id, count: count as u32 })
    }

    /// Delivers what arrives for channel `id` while earlier messages wait, in order.
    async fn deliver_loop(
        self: Arc<Self>,
        id: u64,
        receiving: Arc<Receiving>,
        mut receiver: mpsc::UnboundedReceiver<Inbound>,
    ) {
        let end = receiving.end.clone();
        while receiving.held.load(Ordering::SeqCst) {
            receiving.released.notified().await;
        }
        while let Some(inbound) = receiver.recv().await {
            let Inbound::Message(message, carried) = inbound else { break };
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
            carried.iter().for_each(|receiving| receiving.release());
            receiving.undelivered.fetch_sub(1, Ordering::SeqCst);
            // Delivered, or dropped for a reader that is gone (its carried channels close, and
            // their sending tells the other side): either way the sender may send again.
            let _ = written;
            if self.delivered(id, &receiving).is_err() {
                break;
            }
        }
        // The other side's end closed, or the socket did.
        end.close();
        let link = self.links().remove(&id);
        if let Some(link) = link {
            link.sending.end();
        }
    }

    /// Handles one frame from the other side.
    pub(crate) fn receive(self: &Arc<Self>, frame: Frame) -> Result<(), Violation> {
        match frame {
            Frame::Message { channel, bytes, handles } => {
                self.receive_message(channel, bytes, handles)
            }
            Frame::Delivered { channel, count } => {
                let sending = self.links().get(&channel).map(|link| link.sending.clone());
                if let Some(sending) = sending
                    && (count == 0 || !sending.delivered(count as usize))
                {
                    return Err(Violation("a delivery of nothing sent"));
                }
                Ok(())
            }
            Frame::Closed { channel } => {
                if let Some(link) = self.links().get(&channel) {
                    let _ = link.receiving.inbound.send(Inbound::Closed);
                }
                Ok(())
            }
            Frame::SocketData { .. }
            | Frame::SocketDelivered { .. }
            | Frame::SocketShutdown { .. }
            | Frame::SocketClosed { .. }
            | Frame::SocketReadShutdown { .. } => self.receive_socket(frame),
            Frame::Exit { .. } => Err(Violation("an exit frame from the parent")),
        }
    }

    /// Handles a message for channel `channel` from the other side.
    fn receive_message(
        self: &Arc<Self>,
        channel: u64,
        bytes: Vec<u8>,
        handles: Vec<Carried>,
    ) -> Result<(), Violation> {
        if bytes.len() > nebulet_abi::CHANNEL_MAX_MESSAGE_BYTES as usize
            || handles.len() > nebulet_abi::CHANNEL_MAX_MESSAGE_HANDLES as usize
        {
            return Err(Violation("a message past the limits"));
        }
        let mut carried = Vec::with_capacity(handles.len());
        let mut held = Vec::new();
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
                    let (sending, receiving) = self.attach_link(id, local, Hold::UntilDelivered);
                    sending.run();
                    held.push(receiving);
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
        let receiving = self.links().get(&channel).map(|link| link.receiving.clone());
        let Some(receiving) = receiving else {
            // The channel closed here meanwhile: what it carried closes with it.
            held.iter().for_each(|receiving| receiving.release());
            drop(carried);
            return Ok(());
        };
        let waiting = receiving.undelivered.fetch_add(1, Ordering::SeqCst);
        if waiting >= CREDITS {
            return Err(Violation("more messages than the channel's credit"));
        }
        let message = CrossingMessage { bytes, handles: carried };
        // Nothing waits before it (only this reader adds): delivered here if there is room,
        // which saves the delivering task a wake-up.
        let message = if waiting == 0 && !receiving.held.load(Ordering::SeqCst) {
            match receiving.end.try_write(message) {
                Err((Error::ShouldWait, message)) => message,
                // Delivered, or dropped for a reader that is gone.
                _ => {
                    held.iter().for_each(|receiving| receiving.release());
                    receiving.undelivered.fetch_sub(1, Ordering::SeqCst);
                    let _ = self.delivered(channel, &receiving);
                    return Ok(());
                }
            }
        } else {
            message
        };
        let _ = receiving.inbound.send(Inbound::Message(message, held));
        Ok(())
    }

    /// Whether every message written to a local end has been sent, or waits for credit (for the
    /// other side to deliver what it has): what a domain waits for after its process ended,
    /// before it ends, so that what the process wrote last still crosses.
    pub(crate) fn is_flushed(&self) -> bool {
        self.links().values().all(|link| {
            !link.sending.end.is_readable() || link.sending.credits.load(Ordering::SeqCst) == 0
        }) && self.sockets_flushed()
    }

    /// The socket is gone: every bridged channel closes here (their local peers see
    /// PEER_CLOSED once they have read what arrived).
    pub(crate) fn disconnect(&self) {
        let links: Vec<Link> = self.links().drain().map(|(_, link)| link).collect();
        for link in links {
            link.sending.end();
            let _ = link.receiving.inbound.send(Inbound::Closed);
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
        let (_reader, outgoing) = split(socket).unwrap();
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

    /// A parent's and a domain's bridge joined by a socket, each reading the other's frames,
    /// with channel 0 bridged: the two local ends of channel 0.
    pub(super) fn joined(
        runtime: &tokio::runtime::Runtime,
    ) -> (ChannelEnd, ChannelEnd, [Arc<Bridge>; 2]) {
        let (first, second) = runtime.block_on(async { tokio::net::UnixStream::pair() }).unwrap();
        let mut locals = Vec::new();
        let mut bridges = Vec::new();
        for (socket, side) in [(first, Side::Parent), (second, Side::Domain)] {
            let (reader, outgoing) = split(socket).unwrap();
            runtime.spawn(outgoing.clone().flush_loop());
            let bridge = Bridge::new(side, outgoing, runtime.handle().clone());
            let (local, bridged) = ChannelEnd::crossing_pair();
            bridge.attach(crate::wire::BOOTSTRAP, bridged);
            let receiving = bridge.clone();
            runtime.spawn(async move {
                let mut reader = tokio::io::BufReader::new(reader);
                while let Ok(Some(body)) = crate::wire::read_body(&mut reader, usize::MAX).await {
                    receiving.receive(crate::wire::decode(&body).unwrap()).unwrap();
                }
            });
            locals.push(local);
            bridges.push(bridge);
        }
        let [parent, domain] = <[_; 2]>::try_from(bridges).unwrap();
        let domain_local = locals.pop().unwrap();
        (locals.pop().unwrap(), domain_local, [parent, domain])
    }

    #[test]
    fn messages_cross_in_order_past_many_times_the_credit() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (parent, domain, _bridges) = joined(&runtime);
        let count = 3 * CREDITS as u32 + 1;
        let writing = runtime.spawn(async move {
            for index in 0..count {
                let mut pending = Some(CrossingMessage {
                    bytes: index.to_le_bytes().to_vec(),
                    handles: Vec::new(),
                });
                poll_fn(|context| match parent.poll_write(context, pending.take().unwrap()) {
                    Ok(()) => Poll::Ready(()),
                    Err((Error::ShouldWait, message)) => {
                        pending = Some(message);
                        Poll::Pending
                    }
                    Err((error, _)) => panic!("{error:?}"),
                })
                .await;
            }
            parent
        });
        for index in 0..count {
            assert_eq!(next(&runtime, &domain).bytes, index.to_le_bytes());
        }
        drop(runtime.block_on(writing).unwrap());
    }

    /// Reads the next message from `end`, waiting for it.
    fn next(runtime: &tokio::runtime::Runtime, end: &ChannelEnd) -> CrossingMessage {
        runtime.block_on(poll_fn(|context| end.poll_read(context))).expect("a message")
    }

    #[test]
    fn a_message_that_carries_a_channel_is_delivered_though_that_channel_got_channels_first() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (bridge, local, _frames) = parent(&runtime);
        let _guard = runtime.enter();
        // Nobody reads channel 0 yet: its local queue fills, and what comes next waits.
        for _ in 0..CHANNEL_MAX_QUEUED_MESSAGES {
            bridge.receive(message(0, Vec::new())).unwrap();
        }
        // A message carrying channel 1 waits; then channel 1 gets a message carrying channel 3
        // before its carrier is delivered; then a last message on channel 0.
        bridge.receive(message(0, vec![(1, Rights::CHANNEL_DEFAULT.bits())])).unwrap();
        bridge.receive(message(1, vec![(3, Rights::CHANNEL_DEFAULT.bits())])).unwrap();
        let last = Frame::Message { channel: 0, bytes: vec![2], handles: Vec::new() };
        bridge.receive(last).unwrap();
        for _ in 0..CHANNEL_MAX_QUEUED_MESSAGES {
            assert!(next(&runtime, &local).handles.is_empty());
        }
        // The carrier comes next, not the last message: it was not dropped.
        let carrier = next(&runtime, &local);
        assert_eq!(carrier.handles.len(), 1, "the message carrying channel 1 was lost");
        let Crossed::Channel(carried) = &carrier.handles[0].0 else { panic!("not a channel") };
        assert_eq!(next(&runtime, carried).handles.len(), 1, "channel 1's message carries 3");
        assert_eq!(next(&runtime, &local).bytes, vec![2]);
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
        assert!(
            bridge.receive(Frame::Delivered { channel: 0, count: 1 }).is_err(),
            "nothing was sent"
        );
    }
}
