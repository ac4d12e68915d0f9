//! WASI sockets: `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown`, and the byte moves
//! that `fd_read` and `fd_write` share with them, over the kernel's sockets and listeners.
//!
//! A blocking call waits on the socket's signals (only its thread waits); with `nonblock` it
//! gives `EAGAIN` instead. Bytes a process sends are charged to its budget until they are read.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use nebulet_abi::{DEADLINE_INFINITE, Signals};
use wasmtime::Caller;

use super::fds::{Kind, NONBLOCK};
use super::io::{io_vectors, scatter};
use super::rights::{self, Rights};
use crate::kernel::Kernel;
use crate::objects::Object;
use crate::objects::socket::{Shutdown, SocketEnd, SocketError};
use crate::runner::ThreadContext;
use crate::syscalls::with_call;
use crate::vfs::Errno;

/// `riflags`: `recv_peek` and `recv_waitall`.
const RECV_PEEK: u32 = 1;
const RECV_WAITALL: u32 = 2;
/// `sdflags`: `rd` and `wr`.
const SHUT_RD: u32 = 1;
const SHUT_WR: u32 = 2;

/// Waits until `object` asserts one of `signals` (the thread's only wait; a kill drops it).
async fn wait(kernel: &Kernel, object: Object, signals: Signals) {
    let objects = [(object, signals)];
    let _ = crate::wait::wait_many(&*kernel.platform, &objects, DEADLINE_INFINITE, || true).await;
}

/// Receives up to `wanted` bytes; empty at the end of the stream. `peek` leaves them buffered;
/// `all` waits for `wanted` bytes (or the end).
pub(super) async fn receive(
    kernel: &Kernel,
    socket: &Arc<SocketEnd>,
    wanted: usize,
    nonblocking: bool,
    (peek, all): (bool, bool),
) -> Result<Vec<u8>, Errno> {
    let mut data = vec![0u8; wanted];
    let mut count = 0;
    while count < wanted {
        let result =
            if peek { socket.peek(&mut data[count..]) } else { socket.read(&mut data[count..]) };
        match result {
            Ok(read) => {
                count += read;
                if !all || peek {
                    break;
                }
            }
            // Only `all` comes back here with bytes already read.
            Err(SocketError::ShouldWait) if nonblocking && count > 0 => break,
            Err(SocketError::ShouldWait) if nonblocking => return Err(Errno::AGAIN),
            Err(SocketError::ShouldWait) => {
                let signals =
                    Signals::READABLE | Signals::PEER_CLOSED | Signals::PEER_WRITE_DISABLED;
                wait(kernel, Object::Socket(socket.clone()), signals).await;
            }
            // The end of the stream (the peer closed or stopped writing, or this end stopped
            // reading): what came, possibly nothing.
            Err(SocketError::PeerClosed | SocketError::Disabled) => break,
        }
    }
    data.truncate(count);
    Ok(data)
}

/// Sends `data`, all of it unless `nonblocking` (then what fits, `EAGAIN` if nothing does);
/// how many bytes went. `EPIPE` if the peer will never read and nothing went.
pub(super) async fn send(
    kernel: &Kernel,
    process: &crate::objects::process::Process,
    socket: &Arc<SocketEnd>,
    data: &[u8],
    nonblocking: bool,
) -> Result<usize, Errno> {
    let mut sent = 0;
    while sent < data.len() {
        let room = match socket.room() {
            Ok(room) => room,
            Err(SocketError::ShouldWait) if sent > 0 && nonblocking => break,
            Err(SocketError::ShouldWait) if nonblocking => return Err(Errno::AGAIN),
            Err(SocketError::ShouldWait) => {
                wait(
                    kernel,
                    Object::Socket(socket.clone()),
                    Signals::WRITABLE | Signals::PEER_CLOSED,
                )
                .await;
                continue;
            }
            Err(_) if sent > 0 => break,
            Err(_) => return Err(Errno::PIPE),
        };
        let chunk = &data[sent..][..room.min(data.len() - sent)];
        let charge = crate::budget::charge_message(&process.budget, chunk.len() as u64, 0)
            .map_err(|_| Errno::NOBUFS)?;
        match socket.write(chunk, Some(charge)) {
            Ok(written) => sent += written,
            Err(SocketError::ShouldWait) => {}
            Err(_) if sent > 0 => break,
            Err(_) => return Err(Errno::PIPE),
        }
    }
    Ok(sent)
}

/// The socket of `fd`, holding `needed`; `ENOTSOCK` for a descriptor that is no socket,
/// `ENOTCONN` for a listening one.
fn connected(
    call: &crate::syscalls::Call<'_>,
    fd: u32,
    needed: u64,
) -> Result<(Arc<SocketEnd>, bool), Errno> {
    let files = call.process.files.lock();
    let descriptor = files.get(fd)?;
    match &descriptor.kind {
        Kind::Socket { socket } => {
            descriptor.rights.require(needed)?;
            Ok((socket.clone(), descriptor.flags & NONBLOCK != 0))
        }
        Kind::Listener { .. } => Err(Errno::NOTCONN),
        _ => Err(Errno::NOTSOCK),
    }
}

pub(super) async fn sock_recv(
    caller: &mut Caller<'_, ThreadContext>,
    (fd, iovs, count, flags, out_length, out_flags): (u32, u32, u32, u32, u32, u32),
) -> Result<(), Errno> {
    let (socket, nonblocking, vectors) = with_call(caller, |call| -> Result<_, Errno> {
        call.memory.check(out_length, 1, 4)?;
        call.memory.check(out_flags, 1, 2)?;
        let vectors = io_vectors(&call.memory, iovs, count)?;
        if flags & !(RECV_PEEK | RECV_WAITALL) != 0 {
            return Err(Errno::INVAL);
        }
        let (socket, nonblocking) = connected(call, fd, rights::FD_READ)?;
        Ok((socket, nonblocking, vectors))
    })?;
    let wanted: usize = vectors.iter().map(|(_, length)| *length as usize).sum();
    let kernel = caller.data().kernel.clone();
    let options = (flags & RECV_PEEK != 0, flags & RECV_WAITALL != 0);
    let data = receive(&kernel, &socket, wanted, nonblocking, options).await?;
    with_call(caller, |call| {
        let copied = scatter(&mut call.memory, &vectors, &data)?;
        call.memory.write_u32(out_length, copied)?;
        Ok(call.memory.write(out_flags, &0u16.to_le_bytes())?)
    })
}

pub(super) async fn sock_send(
    caller: &mut Caller<'_, ThreadContext>,
    (fd, iovs, count, flags, out_length): (u32, u32, u32, u32, u32),
) -> Result<(), Errno> {
    let (socket, nonblocking, data) = with_call(caller, |call| -> Result<_, Errno> {
        call.memory.check(out_length, 1, 4)?;
        let vectors = io_vectors(&call.memory, iovs, count)?;
        // Preview 1 defines no send flags.
        if flags != 0 {
            return Err(Errno::INVAL);
        }
        let (socket, nonblocking) = connected(call, fd, rights::FD_WRITE)?;
        Ok((socket, nonblocking, super::io::gather(&call.memory, &vectors)?))
    })?;
    let kernel = caller.data().kernel.clone();
    let process = caller.data().process.clone();
    let sent = send(&kernel, &process, &socket, &data, nonblocking).await?;
    with_call(caller, |call| Ok(call.memory.write_u32(out_length, sent as u32)?))
}

pub(super) fn sock_shutdown(
    call: &mut crate::syscalls::Call<'_>,
    fd: u32,
    how: u32,
) -> Result<(), Errno> {
    if how == 0 || how & !(SHUT_RD | SHUT_WR) != 0 {
        return Err(Errno::INVAL);
    }
    let (socket, _) = connected(call, fd, rights::SOCK_SHUTDOWN)?;
    let direction = |bit| if how & bit != 0 { Shutdown::Yes } else { Shutdown::No };
    socket.shutdown(direction(SHUT_WR), direction(SHUT_RD));
    Ok(())
}

pub(super) async fn sock_accept(
    caller: &mut Caller<'_, ThreadContext>,
    fd: u32,
    flags: u32,
    out: u32,
) -> Result<(), Errno> {
    let (listener, nonblocking) = with_call(caller, |call| -> Result<_, Errno> {
        call.memory.check(out, 1, 4)?;
        if flags & !u32::from(NONBLOCK) != 0 {
            return Err(Errno::INVAL);
        }
        let files = call.process.files.lock();
        let descriptor = files.get(fd)?;
        match &descriptor.kind {
            Kind::Listener { listener } => {
                descriptor.rights.require(rights::SOCK_ACCEPT)?;
                Ok((listener.clone(), descriptor.flags & NONBLOCK != 0))
            }
            Kind::Socket { .. } => Err(Errno::INVAL),
            _ => Err(Errno::NOTSOCK),
        }
    })?;
    let kernel = caller.data().kernel.clone();
    let socket = loop {
        // A connection is taken only when the table has room for it, so none is lost.
        if !caller.data().process.files.lock().has_room() {
            return Err(Errno::MFILE);
        }
        match listener.accept() {
            Ok(socket) => break socket,
            Err(nebulet_abi::Error::ShouldWait) if nonblocking => return Err(Errno::AGAIN),
            Err(nebulet_abi::Error::ShouldWait) => {
                let signals = Signals::READABLE | Signals::PEER_CLOSED;
                wait(&kernel, Object::Listener(listener.clone()), signals).await;
            }
            Err(_) => return Err(Errno::CONNABORTED),
        }
    };
    with_call(caller, |call| {
        let kind = Kind::Socket { socket };
        let fdflags = (flags as u16) & NONBLOCK;
        let new = call.process.files.lock().insert(kind, fdflags, Rights::SOCKET)?;
        Ok(call.memory.write_u32(out, new)?)
    })
}
