//! Sending a bridged channel's messages: from whichever thread wakes its local end, at once.
//!
//! A process's write to a bridged channel wakes the bridge's local end. Its waker does not wake
//! a task: it reads the message and writes its frame to the socket itself, on the writer's own
//! thread, so a message crosses without a thread switch on this side. One waker runs the
//! sending at a time (the others leave it a note to run again), so frames keep their order.
//! The work is bounded by the channel's credit (usually it is the one message just written),
//! each message a non-blocking write or a copy into the socket's buffer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};

use nebulet_kernel::{ChannelEnd, Crossed};

use super::{Bridge, Hold};
use crate::wire::{Carried, Frame};

/// The sending half of one bridged channel on this side.
pub(super) struct Sending {
    id: u64,
    bridge: Weak<Bridge>,
    /// The local end (its peer is a process's handle).
    pub(super) end: Arc<ChannelEnd>,
    /// Messages this side may still send before the other side delivers some.
    pub(super) credits: AtomicUsize,
    /// Messages sent and not yet delivered.
    pub(super) in_flight: AtomicUsize,
    /// Set until the frame that carries this channel is queued: nothing is sent before it.
    gated: AtomicBool,
    /// Set once nothing more is to be sent (the local peer closed, the other side's end did,
    /// or the socket broke).
    ended: AtomicBool,
    /// Set while a thread runs [`Sending::pump`].
    running: AtomicBool,
    /// Set when there may be more to do than the running pump has seen.
    again: AtomicBool,
    waker: Waker,
}

/// The local end's waker: runs the sending it belongs to, if that still exists.
struct Wakeup(Weak<Sending>);

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(sending) = self.0.upgrade() {
            sending.run();
        }
    }
}

impl Sending {
    /// The sending of channel `id`, whose local end is `end`, with `credits` to spend; for a
    /// carried channel (`Hold::UntilCarried`), nothing is sent until [`Sending::open`].
    pub(super) fn new(
        id: u64,
        bridge: &Arc<Bridge>,
        end: Arc<ChannelEnd>,
        credits: usize,
        hold: Hold,
    ) -> Arc<Sending> {
        Arc::new_cyclic(|weak| Sending {
            id,
            bridge: Arc::downgrade(bridge),
            end,
            credits: AtomicUsize::new(credits),
            in_flight: AtomicUsize::new(0),
            gated: AtomicBool::new(hold == Hold::UntilCarried),
            ended: AtomicBool::new(false),
            running: AtomicBool::new(false),
            again: AtomicBool::new(false),
            waker: Waker::from(Arc::new(Wakeup(weak.clone()))),
        })
    }

    /// Sends what waits, now, on this thread; or, if another thread is sending, leaves it a
    /// note to look again.
    pub(super) fn run(&self) {
        self.again.store(true, Ordering::SeqCst);
        loop {
            if self.running.swap(true, Ordering::SeqCst) {
                return;
            }
            while self.again.swap(false, Ordering::SeqCst) {
                self.pump();
            }
            self.running.store(false, Ordering::SeqCst);
            if !self.again.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Lets a carried channel send, once the frame that carries it is queued.
    pub(super) fn open(self: Arc<Self>, runtime: &tokio::runtime::Handle) {
        self.gated.store(false, Ordering::SeqCst);
        // What its peer wrote meanwhile is sent by a task, not here: a chain of channels, each
        // queued in the one before, would otherwise nest one call per link on this stack.
        runtime.spawn(async move { self.run() });
    }

    /// Stops sending (the other side closed its end, or the socket broke).
    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    /// Gives back `count` credits (the other side delivered as many): false if fewer were sent.
    pub(super) fn delivered(&self, count: usize) -> bool {
        let less = |sent: usize| sent.checked_sub(count);
        if self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, less).is_err() {
            return false;
        }
        self.credits.fetch_add(count, Ordering::SeqCst);
        self.run();
        true
    }

    /// Sends messages while there is credit and something to read.
    fn pump(&self) {
        let Some(bridge) = self.bridge.upgrade() else { return };
        let mut context = Context::from_waker(&self.waker);
        loop {
            if self.gated.load(Ordering::SeqCst)
                || self.ended.load(Ordering::SeqCst)
                || self.credits.load(Ordering::SeqCst) == 0
            {
                return;
            }
            let message = match self.end.poll_read(&mut context) {
                Poll::Pending => return,
                Poll::Ready(message) => message,
            };
            let Some(message) = message else {
                // The local peer is gone: nothing more is delivered here either.
                self.ended.store(true, Ordering::SeqCst);
                let _ = bridge.outgoing.send(Frame::Closed { channel: self.id });
                self.end.close();
                let (bridge, id) = (bridge.clone(), self.id);
                bridge.runtime.clone().spawn(async move { bridge.forget_link(id) });
                return;
            };
            self.credits.fetch_sub(1, Ordering::SeqCst);
            let mut opened = Vec::with_capacity(message.handles.len());
            let mut gates = Vec::new();
            let handles = message
                .handles
                .into_iter()
                .map(|(carried, rights)| {
                    let carried_id = bridge.next_id.fetch_add(2, Ordering::Relaxed);
                    let rights = rights.bits();
                    match carried {
                        Crossed::Channel(channel) => {
                            opened.push(bridge.attach_gated(carried_id, channel));
                            Carried::Channel { id: carried_id, rights }
                        }
                        Crossed::Socket(socket) => {
                            let (open, gate) = tokio::sync::oneshot::channel();
                            gates.push(open);
                            bridge.attach_socket(carried_id, socket, Some(gate));
                            Carried::Socket { id: carried_id, rights }
                        }
                    }
                })
                .collect();
            let frame = Frame::Message { channel: self.id, bytes: message.bytes, handles };
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            if bridge.outgoing.send(frame).is_err() {
                self.ended.store(true, Ordering::SeqCst);
                return;
            }
            for sending in opened {
                sending.open(&bridge.runtime);
            }
            for open in gates {
                let _ = open.send(());
            }
        }
    }
}
