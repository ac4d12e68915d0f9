//! WASI data transfer: `fd_read`, `fd_write`, `fd_pread` and `fd_pwrite`, each bounded.
//!
//! A call takes at most [`IOV_MAX`] vectors and moves at most [`TRANSFER_MAX`] bytes (a short
//! transfer, which WASI and POSIX allow and every libc loops on). File I/O runs on the platform's
//! blocking threads with its CPU time charged to the caller, and console output waits for the
//! console to take it, so a long or stuck transfer holds up only its own process, which can
//! still be killed at any time.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use wasmtime::Caller;

use super::fds::{APPEND, Kind};
use super::rights;
use crate::guest_memory::GuestMemory;
use crate::platform::ConsoleStream;
use crate::runner::ThreadContext;
use crate::syscalls::with_call;
use crate::vfs::{Errno, File};

/// The most vectors one call takes, as Linux's `IOV_MAX`; more is `EINVAL`.
pub(crate) const IOV_MAX: u32 = 1_024;

/// The most bytes one call moves; more is a short transfer.
pub(crate) const TRANSFER_MAX: usize = 1 << 20;

/// The `(pointer, length)` pairs of an iovec array, checked against memory and cut down to
/// [`TRANSFER_MAX`] bytes in all.
pub(super) fn io_vectors(
    memory: &GuestMemory<'_>,
    iovs: u32,
    count: u32,
) -> Result<Vec<(u32, u32)>, Errno> {
    if count > IOV_MAX {
        return Err(Errno::INVAL);
    }
    let words = memory.read_u32s(iovs, count * 2)?;
    let mut vectors = Vec::with_capacity(count as usize);
    let mut room = TRANSFER_MAX;
    for pair in words.chunks_exact(2) {
        let (pointer, length) = (pair[0], pair[1]);
        memory.slice(pointer, length)?;
        let take = (length as usize).min(room);
        vectors.push((pointer, take as u32));
        room -= take;
    }
    Ok(vectors)
}

/// The bytes the vectors point at, in order.
pub(super) fn gather(memory: &GuestMemory<'_>, vectors: &[(u32, u32)]) -> Result<Vec<u8>, Errno> {
    let mut data = Vec::with_capacity(vectors.iter().map(|(_, length)| *length as usize).sum());
    for (pointer, length) in vectors {
        data.extend_from_slice(memory.slice(*pointer, *length)?);
    }
    Ok(data)
}

/// Copies `data` into the vectors, in order; returns how many bytes it copied.
pub(super) fn scatter(
    memory: &mut GuestMemory<'_>,
    vectors: &[(u32, u32)],
    data: &[u8],
) -> Result<u32, Errno> {
    let mut rest = data;
    for (pointer, length) in vectors {
        let take = rest.len().min(*length as usize);
        memory.write(*pointer, &rest[..take])?;
        rest = &rest[take..];
    }
    Ok((data.len() - rest.len()) as u32)
}

/// Where a transfer goes, found while the call holds the caller's memory.
enum Target {
    Console(ConsoleStream),
    /// A connected socket, and whether its descriptor is nonblocking.
    Socket(Arc<crate::objects::socket::SocketEnd>, bool),
    Stdin,
    /// A file at an offset, and whether the call moves the descriptor's position afterwards.
    File {
        file: Arc<dyn File>,
        offset: u64,
        moves: bool,
    },
}

/// Which transfer a call is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Read,
    Write,
}

/// Finds the target of `fd` for a transfer; `offset` is `Some` for `fd_pread`/`fd_pwrite`.
fn target(
    call: &crate::syscalls::Call<'_>,
    fd: u32,
    transfer: Transfer,
    offset: Option<i64>,
) -> Result<Target, Errno> {
    let descriptor = call.process.files.lock().get(fd)?.clone();
    match (&descriptor.kind, offset) {
        (Kind::Stdin | Kind::Stdout | Kind::Stderr | Kind::Socket { .. }, Some(_)) => {
            return Err(Errno::SPIPE);
        }
        (Kind::Listener { .. }, _) => return Err(Errno::NOTCONN),
        (Kind::Directory { .. }, _) => return Err(Errno::ISDIR),
        _ => {}
    }
    let bytes = if transfer == Transfer::Read { rights::FD_READ } else { rights::FD_WRITE };
    // At an offset also needs `fd_seek` (preview 1: `fd_read` with `fd_seek` is `fd_pread`).
    let seek = if offset.is_some() { rights::FD_SEEK } else { 0 };
    descriptor.rights.require(bytes | seek)?;
    match &descriptor.kind {
        Kind::Stdin if transfer == Transfer::Read => Ok(Target::Stdin),
        Kind::Stdout if transfer == Transfer::Write => Ok(Target::Console(ConsoleStream::Output)),
        Kind::Stderr if transfer == Transfer::Write => Ok(Target::Console(ConsoleStream::Error)),
        Kind::Socket { socket } => {
            Ok(Target::Socket(socket.clone(), descriptor.flags & super::fds::NONBLOCK != 0))
        }
        Kind::File { file } => {
            let at = match offset {
                Some(offset) => u64::try_from(offset).map_err(|_| Errno::INVAL)?,
                None if transfer == Transfer::Write && descriptor.flags & APPEND != 0 => {
                    file.metadata()?.size
                }
                None => descriptor.position,
            };
            Ok(Target::File { file: file.clone(), offset: at, moves: offset.is_none() })
        }
        _ => Err(Errno::BADF),
    }
}

/// `fd_write` (`offset` `None`) and `fd_pwrite`.
pub(super) async fn write(
    caller: &mut Caller<'_, ThreadContext>,
    (fd, iovs, count, offset, out): (u32, u32, u32, Option<i64>, u32),
) -> Result<(), Errno> {
    let (target, data) = with_call(caller, |call| -> Result<_, Errno> {
        call.memory.check(out, 1, 4)?;
        let vectors = io_vectors(&call.memory, iovs, count)?;
        let target = target(call, fd, Transfer::Write, offset)?;
        Ok((target, gather(&call.memory, &vectors)?))
    })?;
    let kernel = caller.data().kernel.clone();
    let process = caller.data().process.clone();
    let written = match target {
        Target::Console(stream) => {
            let length = data.len();
            kernel.platform.console_write(stream, data).await;
            length
        }
        Target::Socket(socket, nonblocking) => {
            super::socket::send(&kernel, &process, &socket, &data, nonblocking).await?
        }
        Target::File { file, offset, moves } => {
            let written =
                crate::blocking::run(&kernel, &process, move || file.write_at(&data, offset))
                    .await
                    .ok_or(Errno::IO)??;
            if moves {
                advance(caller, fd, offset, written);
            }
            written
        }
        Target::Stdin => return Err(Errno::BADF),
    };
    with_call(caller, |call| Ok(call.memory.write_u32(out, written as u32)?))
}

/// `fd_read` (`offset` `None`) and `fd_pread`.
pub(super) async fn read(
    caller: &mut Caller<'_, ThreadContext>,
    (fd, iovs, count, offset, out): (u32, u32, u32, Option<i64>, u32),
) -> Result<(), Errno> {
    let (target, vectors) = with_call(caller, |call| -> Result<_, Errno> {
        call.memory.check(out, 1, 4)?;
        let vectors = io_vectors(&call.memory, iovs, count)?;
        Ok((target(call, fd, Transfer::Read, offset)?, vectors))
    })?;
    let wanted: usize = vectors.iter().map(|(_, length)| *length as usize).sum();
    let kernel = caller.data().kernel.clone();
    let process = caller.data().process.clone();
    let data = match target {
        _ if wanted == 0 => Vec::new(),
        Target::Stdin => kernel.platform.console_read(wanted).await?,
        Target::Socket(socket, nonblocking) => {
            super::socket::receive(&kernel, &socket, wanted, nonblocking, (false, false)).await?
        }
        Target::File { file, offset, moves } => {
            let data = crate::blocking::run(&kernel, &process, move || {
                let mut buffer = vec![0; wanted];
                let count = file.read_at(&mut buffer, offset)?;
                buffer.truncate(count);
                Ok::<_, Errno>(buffer)
            })
            .await
            .ok_or(Errno::IO)??;
            if moves {
                advance(caller, fd, offset, data.len());
            }
            data
        }
        Target::Console(_) => return Err(Errno::BADF),
    };
    with_call(caller, |call| {
        let copied = scatter(&mut call.memory, &vectors, &data)?;
        Ok(call.memory.write_u32(out, copied)?)
    })
}

/// Sets the position of `fd` after a transfer of `count` bytes at `offset`.
fn advance(caller: &mut Caller<'_, ThreadContext>, fd: u32, offset: u64, count: usize) {
    // The descriptor may have been closed or renumbered while the transfer ran: then there is
    // no position to move.
    if let Ok(descriptor) = caller.data().process.files.lock().get_mut(fd) {
        descriptor.position = offset + count as u64;
    }
}
