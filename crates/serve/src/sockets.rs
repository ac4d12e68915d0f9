//! The host's side of a handler's sockets, as futures.

use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

use nebulet_hosted::SocketEnd;

/// Reads what is buffered, waiting for bytes; 0 at the end of the stream.
pub(crate) async fn read(end: &SocketEnd, buffer: &mut [u8]) -> usize {
    poll_fn(|context| end.poll_read(context, buffer)).await
}

/// Reads what is buffered without waiting: `None` if nothing is, `Some(0)` at the end.
pub(crate) fn read_now(end: &SocketEnd, buffer: &mut [u8]) -> Option<usize> {
    match end.poll_read(&mut Context::from_waker(Waker::noop()), buffer) {
        Poll::Ready(count) => Some(count),
        Poll::Pending => None,
    }
}

/// Writes all of `bytes`, waiting for room; `false` if the peer will never read them.
pub(crate) async fn write_all(end: &SocketEnd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match poll_fn(|context| end.poll_write(context, bytes)).await {
            Some(written) => bytes = &bytes[written..],
            None => return false,
        }
    }
    true
}
