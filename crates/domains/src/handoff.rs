//! Handing descriptors to a new domain: its stdio, listeners and preopens, passed once over its
//! socket (`SCM_RIGHTS`, with one byte) before anything else is said.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The most descriptors a domain is given: its stdio and its preopens.
pub(crate) const MAX_DESCRIPTORS: usize = 64;

/// Sends `descriptors` over `socket`, with one byte (a closed peer is an error, not a SIGPIPE).
pub(crate) fn send(socket: BorrowedFd<'_>, descriptors: &[BorrowedFd<'_>]) -> io::Result<()> {
    send_tagged(socket, 1, descriptors)
}

/// [`send`] with `tag` as the one byte (the zygote's requests say what to do with it).
pub(crate) fn send_tagged(
    socket: BorrowedFd<'_>,
    tag: u8,
    descriptors: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if descriptors.len() > MAX_DESCRIPTORS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"));
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_DESCRIPTORS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(descriptors)) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"));
    }
    rustix::net::sendmsg(socket, &[IoSlice::new(&[tag])], &mut control, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// Receives the descriptors [`send`] sent, in order.
pub(crate) fn receive(socket: impl AsFd) -> io::Result<Vec<OwnedFd>> {
    Ok(receive_tagged(socket)?.1)
}

/// Receives the byte and the descriptors [`send_tagged`] sent.
pub(crate) fn receive_tagged(socket: impl AsFd) -> io::Result<(u8, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_DESCRIPTORS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0];
    let received = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if received.bytes != 1 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no descriptors came"));
    }
    let mut descriptors = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            descriptors.extend(fds);
        }
    }
    Ok((byte[0], descriptors))
}
