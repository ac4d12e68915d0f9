//! The machine's TCP connections behind the kernel's listener objects, as
//! `crates/hosted/src/network.rs` bridges the host's: each connection becomes a socket pair,
//! whose one end is offered to the kernel `Listener` (a process accepts it) while a task copies
//! bytes between the other end and the connection, each way waiting while the other side is
//! full, so nothing is buffered beyond the two sockets' bounded buffers.

use alloc::sync::Arc;
use alloc::vec;
use core::future::poll_fn;
use core::task::Poll;

use nebulet_abi::SOCKET_MAX_TRANSFER_BYTES;
use nebulet_kernel::{Listener, SocketEnd};

use super::{Connection, Network};
use crate::executor;

/// How long a finished connection may take to deliver its last bytes and close.
const CLOSE_PATIENCE_NS: u64 = 5_000_000_000;

/// A kernel listener fed with the connections made to `port`, to grant to a process.
pub fn listener(network: Arc<Network>, port: u16) -> Arc<Listener> {
    let listener = Listener::new();
    let weak = Arc::downgrade(&listener);
    executor::spawn(network.listen(port, move |connection| {
        let weak = weak.clone();
        async move {
            let (process_end, host_end) = SocketEnd::pair();
            let mut offered = Some(process_end);
            let accepted = poll_fn(|context| match weak.upgrade() {
                Some(listener) => listener.poll_offer(context, &mut offered),
                None => Poll::Ready(false),
            })
            .await;
            if accepted {
                copy(connection, host_end).await;
            }
        }
    }))
    .detach();
    listener
}

/// Copies both ways between `connection` and `host_end` until both directions have ended.
async fn copy(connection: Connection, host_end: Arc<SocketEnd>) {
    let size = SOCKET_MAX_TRANSFER_BYTES as usize;
    let (mut inbound, mut outbound) = (vec![0u8; size], vec![0u8; size]);
    // Bytes read and not yet passed on, each way: (buffer range start, end).
    let (mut inbound_held, mut outbound_held) = ((0, 0), (0, 0));
    let (mut inbound_done, mut outbound_done) = (false, false);
    poll_fn(|context| {
        // The client's bytes to the process.
        while !inbound_done {
            if inbound_held.0 == inbound_held.1 {
                match connection.poll_read(context, &mut inbound) {
                    Poll::Ready(0) => {
                        host_end.shutdown_write();
                        inbound_done = true;
                    }
                    Poll::Ready(count) => inbound_held = (0, count),
                    Poll::Pending => break,
                }
                continue;
            }
            match host_end.poll_write(context, &inbound[inbound_held.0..inbound_held.1]) {
                Poll::Ready(Some(count)) => inbound_held.0 += count,
                // The process will never read: stop reading the connection.
                Poll::Ready(None) => inbound_done = true,
                Poll::Pending => break,
            }
        }
        // The process's bytes to the client.
        while !outbound_done {
            if outbound_held.0 == outbound_held.1 {
                match host_end.poll_read(context, &mut outbound) {
                    // The process wrote its last byte (or closed its end): FIN, below.
                    Poll::Ready(0) => outbound_done = true,
                    Poll::Ready(count) => outbound_held = (0, count),
                    Poll::Pending => break,
                }
                continue;
            }
            match connection.poll_write(context, &outbound[outbound_held.0..outbound_held.1]) {
                Poll::Ready(Some(count)) => outbound_held.0 += count,
                Poll::Ready(None) => outbound_done = true,
                Poll::Pending => break,
            }
        }
        if outbound_done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    // Closing sends FIN after what is queued; the client's remaining bytes are not read.
    connection.close(CLOSE_PATIENCE_NS).await;
}
