//! Sockets whose ends are in two domains, relayed over the bridge's socket like its channels.
//!
//! A socket a message carries gets a wire id, and on each side a local end that the bridge
//! holds (its peer is a process's handle). A task per socket reads the local end and sends its
//! bytes (`SocketData`); another writes what arrives into the local end, in order. A side sends
//! at most a socket's buffer (`SOCKET_MAX_BUFFERED_BYTES`) that the other side has not yet
//! written into its local end (`SocketDelivered` gives bytes back), so a reader that does not
//! read holds up its writer, as a local socket does. When the local peer stops writing,
//! `SocketShutdown` makes the other side's local end stop writing too (its peer sees
//! `PEER_WRITE_DISABLED` after the bytes before it); when the local peer closes,
//! `SocketClosed` closes the other side's local end (its peer sees `PEER_CLOSED`). When the
//! local peer stops reading (or closes), `SocketReadShutdown` makes the other side's local end
//! stop reading, so that its writer's writes fail as they would locally.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};

use nebulet_abi::{SOCKET_MAX_BUFFERED_BYTES, SOCKET_MAX_TRANSFER_BYTES};
use nebulet_kernel::SocketEnd;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use super::{Bridge, Violation};
use crate::wire::Frame;

/// Bytes a side may have sent on one socket and not yet seen delivered: a socket's buffer.
const CREDITS: usize = SOCKET_MAX_BUFFERED_BYTES as usize;

/// The most bytes one `SocketData` frame carries.
const CHUNK: usize = SOCKET_MAX_TRANSFER_BYTES as usize;

/// What arrives for a socket, in order.
enum Inbound {
    Data(Vec<u8>),
    Shutdown,
    Closed,
}

/// One bridged socket on this side.
pub(super) struct SocketLink {
    /// The local end (also held by the link's tasks).
    end: Arc<SocketEnd>,
    inbound: mpsc::UnboundedSender<Inbound>,
    /// Bytes that arrived and are not yet delivered.
    undelivered: Arc<AtomicUsize>,
    /// Bytes this side may still send before the other side delivers some.
    credits: Arc<Semaphore>,
    /// Bytes sent and not yet delivered.
    in_flight: Arc<AtomicUsize>,
    /// Set once the other side's reader stopped reading: the end of this side's stream is then
    /// not a shutdown of its writer.
    reader_gone: Arc<AtomicBool>,
    tasks: [AbortHandle; 2],
}

impl Bridge {
    pub(super) fn socket_links(
        &self,
    ) -> MutexGuard<'_, std::collections::HashMap<u64, SocketLink>> {
        self.sockets.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bridges `end` (whose peer a local process holds) as socket `id`, sending nothing until
    /// `gate` opens, if given.
    pub(super) fn attach_socket(
        self: &Arc<Self>,
        id: u64,
        end: Arc<SocketEnd>,
        gate: Option<tokio::sync::oneshot::Receiver<()>>,
    ) {
        let (inbound, receiver) = mpsc::unbounded_channel();
        let undelivered = Arc::new(AtomicUsize::new(0));
        let credits = Arc::new(Semaphore::new(CREDITS));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let reader_gone = Arc::new(AtomicBool::new(false));
        let mut sockets = self.socket_links();
        let sending = self.clone().socket_send_loop(
            id,
            end.clone(),
            credits.clone(),
            in_flight.clone(),
            reader_gone.clone(),
        );
        let sender = self.runtime.spawn(async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            sending.await;
        });
        let deliverer = self.runtime.spawn(self.clone().socket_deliver_loop(
            id,
            end.clone(),
            receiver,
            undelivered.clone(),
        ));
        let tasks = [sender.abort_handle(), deliverer.abort_handle()];
        let link = SocketLink { end, inbound, undelivered, credits, in_flight, reader_gone, tasks };
        sockets.insert(id, link);
    }

    /// Reads the local end and sends what it reads while the other side has room; then says
    /// that the local peer stopped writing, and, once it closes, that it closed.
    async fn socket_send_loop(
        self: Arc<Self>,
        id: u64,
        end: Arc<SocketEnd>,
        credits: Arc<Semaphore>,
        in_flight: Arc<AtomicUsize>,
        reader_gone: Arc<AtomicBool>,
    ) {
        let mut buffer = vec![0; CHUNK];
        loop {
            let Ok(permit) = credits.acquire_many(CHUNK as u32).await else { return };
            permit.forget();
            let count = poll_fn(|context| end.poll_read(context, &mut buffer)).await;
            credits.add_permits(CHUNK - count);
            if count == 0 {
                break;
            }
            in_flight.fetch_add(count, Ordering::Relaxed);
            let frame = Frame::SocketData { socket: id, bytes: buffer[..count].to_vec() };
            if self.outgoing.send(frame).is_err() {
                return;
            }
        }
        // The end of the stream: the local peer writes no more, or is gone (or the other side
        // reads no more, and its peer knows it).
        if !reader_gone.load(Ordering::SeqCst)
            && self.outgoing.send(Frame::SocketShutdown { socket: id }).is_err()
        {
            return;
        }
        poll_fn(|context| end.poll_peer_closed(context)).await;
        let _ = self.outgoing.send(Frame::SocketClosed { socket: id });
        if let Some(link) = self.socket_links().remove(&id) {
            link.tasks[1].abort();
        }
    }

    /// Writes what arrives for socket `id` into the local end, in order; bytes for a reader
    /// that is gone are dropped (and still given back as credit).
    async fn socket_deliver_loop(
        self: Arc<Self>,
        id: u64,
        end: Arc<SocketEnd>,
        mut receiver: mpsc::UnboundedReceiver<Inbound>,
        undelivered: Arc<AtomicUsize>,
    ) {
        let mut watching = true;
        loop {
            let inbound = if watching {
                tokio::select! {
                    inbound = receiver.recv() => inbound,
                    () = poll_fn(|context| end.poll_peer_stopped_reading(context)) => {
                        watching = false;
                        let frame = Frame::SocketReadShutdown { socket: id };
                        if self.outgoing.send(frame).is_err() {
                            break;
                        }
                        continue;
                    }
                }
            } else {
                receiver.recv().await
            };
            let Some(inbound) = inbound else { break };
            match inbound {
                Inbound::Data(bytes) => {
                    let mut written = 0;
                    while written < bytes.len() {
                        match poll_fn(|context| end.poll_write(context, &bytes[written..])).await {
                            Some(count) => written += count,
                            None => break,
                        }
                    }
                    undelivered.fetch_sub(bytes.len(), Ordering::Relaxed);
                    let frame = Frame::SocketDelivered { socket: id, bytes: bytes.len() as u64 };
                    if self.outgoing.send(frame).is_err() {
                        break;
                    }
                }
                Inbound::Shutdown => end.shutdown_write(),
                Inbound::Closed => break,
            }
        }
        // The other side's peer closed, or the socket to the domain did: the local end closes
        // once both tasks have let go of it.
        if let Some(link) = self.socket_links().remove(&id) {
            link.tasks[0].abort();
        }
    }

    /// Handles a socket frame from the other side.
    pub(super) fn receive_socket(&self, frame: Frame) -> Result<(), Violation> {
        let sockets = self.socket_links();
        match frame {
            Frame::SocketData { socket, bytes } => {
                if bytes.is_empty() || bytes.len() > CHUNK {
                    return Err(Violation("socket bytes past the limits"));
                }
                // Closed here meanwhile: dropped.
                let Some(link) = sockets.get(&socket) else { return Ok(()) };
                let waiting = link.undelivered.fetch_add(bytes.len(), Ordering::Relaxed);
                if waiting + bytes.len() > CREDITS {
                    return Err(Violation("more bytes than the socket's credit"));
                }
                let _ = link.inbound.send(Inbound::Data(bytes));
            }
            Frame::SocketDelivered { socket, bytes } => {
                if let Some(link) = sockets.get(&socket) {
                    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
                    let less = |count: usize| count.checked_sub(bytes);
                    if link
                        .in_flight
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less)
                        .is_err()
                    {
                        return Err(Violation("a delivery of socket bytes not sent"));
                    }
                    link.credits.add_permits(bytes);
                }
            }
            Frame::SocketShutdown { socket } => {
                if let Some(link) = sockets.get(&socket) {
                    let _ = link.inbound.send(Inbound::Shutdown);
                }
            }
            Frame::SocketClosed { socket } => {
                if let Some(link) = sockets.get(&socket) {
                    let _ = link.inbound.send(Inbound::Closed);
                }
            }
            Frame::SocketReadShutdown { socket } => {
                if let Some(link) = sockets.get(&socket) {
                    link.reader_gone.store(true, Ordering::SeqCst);
                    link.end.shutdown_read();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether every byte written to a local end has been sent, or waits for credit.
    pub(super) fn sockets_flushed(&self) -> bool {
        self.socket_links()
            .values()
            .all(|link| !link.end.is_readable() || link.credits.available_permits() < CHUNK)
    }

    /// The socket to the domain is gone: every bridged socket closes here, after what arrived.
    pub(super) fn disconnect_sockets(&self) {
        for (_, link) in self.socket_links().drain() {
            let _ = link.inbound.send(Inbound::Closed);
            link.tasks[0].abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::Side;
    use crate::wire::Carried;

    /// A socket whose far end is in the domain: `stop` makes the far end stop reading, and the
    /// near end's writes must then fail, as they would locally.
    fn far_reader_stops(stop: impl FnOnce(Arc<SocketEnd>)) {
        use nebulet_kernel::{Crossed, CrossingMessage};
        use std::future::poll_fn;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (parent, domain, _bridges) = crate::bridge::tests::joined(&runtime);
        let (near, far) = SocketEnd::pair();
        let handles = vec![(Crossed::Socket(far), nebulet_abi::Rights::SOCKET_DEFAULT)];
        parent.try_write(CrossingMessage { bytes: Vec::new(), handles }).unwrap();
        runtime.block_on(async {
            let arrived = poll_fn(|context| domain.poll_read(context)).await.unwrap();
            let Some((Crossed::Socket(far), _)) = arrived.handles.into_iter().next() else {
                panic!("no socket")
            };
            // Bytes cross while the far end reads.
            assert_eq!(poll_fn(|context| near.poll_write(context, b"hi")).await, Some(2));
            let mut buffer = [0; 8];
            assert_eq!(poll_fn(|context| far.poll_read(context, &mut buffer)).await, 2);
            stop(far);
            // The near end learns that its peer reads no more, and its writes fail.
            let learned = poll_fn(|context| near.poll_peer_stopped_reading(context));
            let waited = tokio::time::timeout(std::time::Duration::from_secs(60), learned).await;
            assert!(waited.is_ok(), "the near end never learned that the far reader stopped");
            assert_eq!(poll_fn(|context| near.poll_write(context, b"more")).await, None);
        });
    }

    #[test]
    fn a_far_reader_that_shuts_down_reading_makes_the_near_writes_fail() {
        far_reader_stops(|far| far.shutdown_read());
    }

    #[test]
    fn a_far_reader_that_closes_makes_the_near_writes_fail() {
        far_reader_stops(drop);
    }

    #[test]
    fn a_domain_may_not_send_socket_bytes_past_its_credit_or_acknowledge_what_was_not_sent() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _guard = runtime.enter();
        let (socket, _other) = runtime.block_on(async { tokio::net::UnixStream::pair() }).unwrap();
        let (_reader, outgoing) = crate::bridge::split(socket).unwrap();
        let bridge = Bridge::new(Side::Parent, outgoing, runtime.handle().clone());
        let (_local, bridged) = nebulet_kernel::ChannelEnd::crossing_pair();
        bridge.attach(0, bridged);
        let handles = vec![Carried::Socket { id: 1, rights: 0 }];
        bridge.receive(Frame::Message { channel: 0, bytes: Vec::new(), handles }).unwrap();
        // Nobody reads the socket: past its buffer and the credit, the domain broke the rules.
        let mut outcome = Ok(());
        for _ in 0..=2 * CREDITS / CHUNK {
            outcome = bridge.receive(Frame::SocketData { socket: 1, bytes: vec![1; CHUNK] });
            if outcome.is_err() {
                break;
            }
        }
        assert!(outcome.is_err(), "more than the credit breaks the protocol");
        let delivered = Frame::SocketDelivered { socket: 1, bytes: 1 };
        assert!(bridge.receive(delivered).is_err(), "nothing was sent");
        let empty = Frame::SocketData { socket: 1, bytes: Vec::new() };
        assert!(bridge.receive(empty).is_err(), "an empty frame is not allowed");
    }
}
