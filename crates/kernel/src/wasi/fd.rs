//! WASI `fd_*` functions.

use alloc::vec::Vec;

use wasmtime::Caller;

use super::fds::{APPEND, Kind, rights};
use super::{io_vectors, path::set_times_arguments};
use crate::runner::ThreadContext;
use crate::syscalls::{Call, with_call};
use crate::vfs::{Errno, FileType, Metadata};

pub(super) fn advise(
    call: &mut Call<'_>,
    fd: u32,
    _offset: i64,
    _length: i64,
    advice: u32,
) -> Result<(), Errno> {
    call.process.files.lock().get(fd)?;
    // Advice is a hint; only its range of values is checked.
    if advice > 5 { Err(Errno::INVAL) } else { Ok(()) }
}

pub(super) fn allocate(
    call: &mut Call<'_>,
    fd: u32,
    offset: i64,
    length: i64,
) -> Result<(), Errno> {
    let files = call.process.files.lock();
    let Kind::File { file, writable: true, .. } = &files.get(fd)?.kind else {
        return Err(Errno::BADF);
    };
    let end = u64::try_from(offset)
        .ok()
        .zip(u64::try_from(length).ok())
        .and_then(|(a, b)| a.checked_add(b))
        .ok_or(Errno::INVAL)?;
    if file.metadata()?.size < end {
        file.set_size(end)?;
    }
    Ok(())
}

pub(super) fn close(call: &mut Call<'_>, fd: u32) -> Result<(), Errno> {
    let closed = call.process.files.lock().remove(fd)?;
    drop(closed);
    Ok(())
}

pub(super) fn sync(call: &mut Call<'_>, fd: u32) -> Result<(), Errno> {
    match &call.process.files.lock().get(fd)?.kind {
        Kind::File { file, .. } => file.sync(),
        Kind::Directory { .. } => Ok(()),
        Kind::Stdin | Kind::Stdout | Kind::Stderr => Err(Errno::INVAL),
    }
}

pub(super) fn fdstat_get(call: &mut Call<'_>, fd: u32, out: u32) -> Result<(), Errno> {
    call.memory.check(out, 1, 24)?;
    let files = call.process.files.lock();
    let descriptor = files.get(fd)?;
    let mut record = [0u8; 24];
    record[0] = descriptor.file_type() as u8;
    record[2..4].copy_from_slice(&descriptor.flags.to_le_bytes());
    record[8..16].copy_from_slice(&descriptor.rights_base.to_le_bytes());
    record[16..24].copy_from_slice(&descriptor.rights_inheriting.to_le_bytes());
    Ok(call.memory.write(out, &record)?)
}

pub(super) fn fdstat_set_flags(call: &mut Call<'_>, fd: u32, flags: u32) -> Result<(), Errno> {
    let mut files = call.process.files.lock();
    let descriptor = files.get_mut(fd)?;
    // Only APPEND is kept; the sync flags have no meaning for the backends, NONBLOCK for files.
    descriptor.flags = u16::try_from(flags).map_err(|_| Errno::INVAL)? & APPEND;
    Ok(())
}

pub(super) fn fdstat_set_rights(
    call: &mut Call<'_>,
    fd: u32,
    base: i64,
    inheriting: i64,
) -> Result<(), Errno> {
    let mut files = call.process.files.lock();
    let descriptor = files.get_mut(fd)?;
    let (base, inheriting) = (base as u64, inheriting as u64);
    // Rights only shrink.
    if base & !descriptor.rights_base != 0 || inheriting & !descriptor.rights_inheriting != 0 {
        return Err(Errno::NOTCAPABLE);
    }
    descriptor.rights_base = base;
    descriptor.rights_inheriting = inheriting;
    Ok(())
}

/// The 64-byte `filestat` record.
pub(super) fn filestat_bytes(metadata: &Metadata) -> [u8; 64] {
    let mut record = [0u8; 64];
    record[0..8].copy_from_slice(&metadata.device.to_le_bytes());
    record[8..16].copy_from_slice(&metadata.inode.to_le_bytes());
    record[16] = metadata.file_type as u8;
    record[24..32].copy_from_slice(&metadata.links.to_le_bytes());
    record[32..40].copy_from_slice(&metadata.size.to_le_bytes());
    record[40..48].copy_from_slice(&metadata.accessed.to_le_bytes());
    record[48..56].copy_from_slice(&metadata.modified.to_le_bytes());
    record[56..64].copy_from_slice(&metadata.changed.to_le_bytes());
    record
}

pub(super) fn filestat_get(call: &mut Call<'_>, fd: u32, out: u32) -> Result<(), Errno> {
    call.memory.check(out, 1, 64)?;
    let metadata = match &call.process.files.lock().get(fd)?.kind {
        Kind::File { file, .. } => file.metadata()?,
        Kind::Directory { directory, .. } => directory.own_metadata()?,
        Kind::Stdin | Kind::Stdout | Kind::Stderr => Metadata {
            device: 0,
            inode: 0,
            file_type: FileType::CharacterDevice,
            links: 1,
            size: 0,
            accessed: 0,
            modified: 0,
            changed: 0,
        },
    };
    Ok(call.memory.write(out, &filestat_bytes(&metadata))?)
}

pub(super) fn filestat_set_size(call: &mut Call<'_>, fd: u32, size: i64) -> Result<(), Errno> {
    let files = call.process.files.lock();
    match &files.get(fd)?.kind {
        Kind::File { file, writable: true, .. } => {
            file.set_size(u64::try_from(size).map_err(|_| Errno::INVAL)?)
        }
        Kind::Directory { .. } => Err(Errno::ISDIR),
        _ => Err(Errno::BADF),
    }
}

pub(super) fn filestat_set_times(
    call: &mut Call<'_>,
    fd: u32,
    accessed: i64,
    modified: i64,
    flags: u32,
) -> Result<(), Errno> {
    let (accessed, modified) = set_times_arguments(accessed, modified, flags)?;
    match &call.process.files.lock().get(fd)?.kind {
        Kind::File { file, .. } => file.set_times(accessed, modified),
        Kind::Directory { directory, .. } => {
            directory.set_times(".", crate::vfs::Follow::Symlinks, accessed, modified)
        }
        _ => Err(Errno::BADF),
    }
}

/// Reads from a file at `offset` into the vectors; returns the bytes read.
fn read_file(
    call: &mut Call<'_>,
    file: &alloc::sync::Arc<dyn crate::vfs::File>,
    vectors: &[(u32, u32)],
    offset: u64,
) -> Result<u64, Errno> {
    let mut total: u64 = 0;
    for (pointer, length) in vectors {
        let buffer = call.memory.slice_mut(*pointer, *length)?;
        let count = file.read_at(buffer, offset + total)?;
        total += count as u64;
        if count < *length as usize {
            break;
        }
    }
    Ok(total)
}

/// Writes the vectors to a file at `offset`; returns the bytes written.
fn write_file(
    call: &mut Call<'_>,
    file: &alloc::sync::Arc<dyn crate::vfs::File>,
    vectors: &[(u32, u32)],
    offset: u64,
) -> Result<u64, Errno> {
    let mut total: u64 = 0;
    for (pointer, length) in vectors {
        let data = call.memory.slice(*pointer, *length)?;
        let count = file.write_at(data, offset + total)?;
        total += count as u64;
        if count < data.len() {
            break;
        }
    }
    Ok(total)
}

/// Which way a positioned transfer goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

/// `fd_pread` and `fd_pwrite`: a transfer at `offset` that leaves the position alone.
fn transfer_at(
    call: &mut Call<'_>,
    direction: Direction,
    (fd, iovs, count, offset, out): (u32, u32, u32, i64, u32),
) -> Result<(), Errno> {
    call.memory.check(out, 1, 4)?;
    let vectors = io_vectors(&call.memory, iovs, count)?;
    let file = match &call.process.files.lock().get(fd)?.kind {
        Kind::File { file, readable, writable } => {
            let allowed = if direction == Direction::Read { *readable } else { *writable };
            if !allowed {
                return Err(Errno::BADF);
            }
            file.clone()
        }
        Kind::Directory { .. } => return Err(Errno::ISDIR),
        Kind::Stdin | Kind::Stdout | Kind::Stderr => return Err(Errno::SPIPE),
    };
    let offset = u64::try_from(offset).map_err(|_| Errno::INVAL)?;
    let total = match direction {
        Direction::Read => read_file(call, &file, &vectors, offset)?,
        Direction::Write => write_file(call, &file, &vectors, offset)?,
    };
    Ok(call.memory.write_u32(out, total as u32)?)
}

pub(super) fn pread(
    call: &mut Call<'_>,
    fd: u32,
    iovs: u32,
    count: u32,
    offset: i64,
    out: u32,
) -> Result<(), Errno> {
    transfer_at(call, Direction::Read, (fd, iovs, count, offset, out))
}

pub(super) fn pwrite(
    call: &mut Call<'_>,
    fd: u32,
    iovs: u32,
    count: u32,
    offset: i64,
    out: u32,
) -> Result<(), Errno> {
    transfer_at(call, Direction::Write, (fd, iovs, count, offset, out))
}

/// `fd_read`: files at their position; stdin through the platform's console, which may block.
pub(super) async fn read(
    caller: &mut Caller<'_, ThreadContext>,
    fd: u32,
    iovs: u32,
    count: u32,
    out: u32,
) -> Result<(), Errno> {
    let (vectors, stdin) = with_call(caller, |call| -> Result<_, Errno> {
        call.memory.check(out, 1, 4)?;
        let vectors = io_vectors(&call.memory, iovs, count)?;
        let stdin = matches!(call.process.files.lock().get(fd)?.kind, Kind::Stdin);
        Ok((vectors, stdin))
    })?;
    if stdin {
        let wanted: usize = vectors.iter().map(|(_, length)| *length as usize).sum();
        let platform = caller.data().kernel.platform.clone();
        let bytes = if wanted == 0 { Vec::new() } else { platform.console_read(wanted).await? };
        return with_call(caller, |call| -> Result<(), Errno> {
            let mut rest = bytes.as_slice();
            for (pointer, length) in &vectors {
                let take = rest.len().min(*length as usize);
                call.memory.write(*pointer, &rest[..take])?;
                rest = &rest[take..];
            }
            Ok(call.memory.write_u32(out, bytes.len() as u32)?)
        });
    }
    with_call(caller, |call| {
        let (file, position) = {
            let files = call.process.files.lock();
            let descriptor = files.get(fd)?;
            match &descriptor.kind {
                Kind::File { file, readable: true, .. } => (file.clone(), descriptor.position),
                Kind::Directory { .. } => return Err(Errno::ISDIR),
                _ => return Err(Errno::BADF),
            }
        };
        let total = read_file(call, &file, &vectors, position)?;
        call.process.files.lock().get_mut(fd)?.position = position + total;
        Ok(call.memory.write_u32(out, total as u32)?)
    })
}

pub(super) fn write(
    call: &mut Call<'_>,
    fd: u32,
    iovs: u32,
    count: u32,
    out: u32,
) -> Result<(), Errno> {
    call.memory.check(out, 1, 4)?;
    let vectors = io_vectors(&call.memory, iovs, count)?;
    let target = call.process.files.lock().get(fd)?.clone();
    let total = match &target.kind {
        Kind::Stdout | Kind::Stderr => {
            let mut total: u64 = 0;
            for (pointer, length) in &vectors {
                let data = call.memory.slice(*pointer, *length)?;
                if matches!(target.kind, Kind::Stdout) {
                    call.kernel.platform.console_write(data);
                } else {
                    call.kernel.platform.console_write_error(data);
                }
                total += u64::from(*length);
            }
            total
        }
        Kind::File { file, writable: true, .. } => {
            let position =
                if target.flags & APPEND != 0 { file.metadata()?.size } else { target.position };
            let total = write_file(call, file, &vectors, position)?;
            call.process.files.lock().get_mut(fd)?.position = position + total;
            total
        }
        Kind::Directory { .. } => return Err(Errno::ISDIR),
        _ => return Err(Errno::BADF),
    };
    Ok(call.memory.write_u32(out, total as u32)?)
}

pub(super) fn prestat_get(call: &mut Call<'_>, fd: u32, out: u32) -> Result<(), Errno> {
    call.memory.check(out, 1, 8)?;
    let files = call.process.files.lock();
    let Kind::Directory { preopen: Some(name), .. } = &files.get(fd)?.kind else {
        return Err(Errno::BADF);
    };
    let mut record = [0u8; 8];
    record[4..8].copy_from_slice(&(name.len() as u32).to_le_bytes());
    Ok(call.memory.write(out, &record)?)
}

pub(super) fn prestat_dir_name(
    call: &mut Call<'_>,
    fd: u32,
    buffer: u32,
    length: u32,
) -> Result<(), Errno> {
    let name = {
        let files = call.process.files.lock();
        let Kind::Directory { preopen: Some(name), .. } = &files.get(fd)?.kind else {
            return Err(Errno::BADF);
        };
        name.clone()
    };
    if (length as usize) < name.len() {
        return Err(Errno::NAMETOOLONG);
    }
    Ok(call.memory.write(buffer, name.as_bytes())?)
}

/// `fd_readdir`: `.` and `..`, then the entries; the cookie is the index of the next entry.
pub(super) fn readdir(
    call: &mut Call<'_>,
    fd: u32,
    buffer: u32,
    length: u32,
    cookie: i64,
    out: u32,
) -> Result<(), Errno> {
    call.memory.check(buffer, 1, length)?;
    call.memory.check(out, 1, 4)?;
    let start = usize::try_from(cookie).map_err(|_| Errno::INVAL)?;
    let entries = {
        let mut files = call.process.files.lock();
        let descriptor = files.get_mut(fd)?;
        let directory = descriptor.directory()?.clone();
        match &descriptor.listing {
            Some(listing) if start != 0 => listing.clone(),
            _ => {
                let own = directory.own_metadata()?;
                let mut entries = alloc::vec![
                    (alloc::string::String::from("."), FileType::Directory, own.inode),
                    (alloc::string::String::from(".."), FileType::Directory, 0),
                ];
                entries.extend(
                    directory
                        .entries()?
                        .into_iter()
                        .map(|entry| (entry.name, entry.file_type, entry.inode)),
                );
                let listing = alloc::sync::Arc::new(entries);
                descriptor.listing = Some(listing.clone());
                listing
            }
        }
    };
    let mut bytes = Vec::new();
    for (index, (name, file_type, inode)) in entries.iter().enumerate().skip(start) {
        let mut header = [0u8; 24];
        header[0..8].copy_from_slice(&(index as u64 + 1).to_le_bytes());
        header[8..16].copy_from_slice(&inode.to_le_bytes());
        header[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
        header[20] = *file_type as u8;
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(name.as_bytes());
        if bytes.len() >= length as usize {
            break;
        }
    }
    // A full buffer (used == length) tells the program there may be more.
    bytes.truncate(length as usize);
    call.memory.write(buffer, &bytes)?;
    Ok(call.memory.write_u32(out, bytes.len() as u32)?)
}

pub(super) fn renumber(call: &mut Call<'_>, from: u32, to: u32) -> Result<(), Errno> {
    call.process.files.lock().renumber(from, to)
}

pub(super) fn seek(
    call: &mut Call<'_>,
    fd: u32,
    offset: i64,
    whence: u32,
    out: u32,
) -> Result<(), Errno> {
    call.memory.check(out, 1, 8)?;
    let mut files = call.process.files.lock();
    let descriptor = files.get_mut(fd)?;
    let Kind::File { file, .. } = &descriptor.kind else {
        return Err(if matches!(descriptor.kind, Kind::Directory { .. }) {
            Errno::BADF
        } else {
            Errno::SPIPE
        });
    };
    let base = match whence {
        0 => 0,
        1 => descriptor.position as i64,
        2 => file.metadata()?.size as i64,
        _ => return Err(Errno::INVAL),
    };
    let position =
        base.checked_add(offset).filter(|position| *position >= 0).ok_or(Errno::INVAL)?;
    descriptor.position = position as u64;
    Ok(call.memory.write_u64(out, position as u64)?)
}

pub(super) fn tell(call: &mut Call<'_>, fd: u32, out: u32) -> Result<(), Errno> {
    call.memory.check(out, 1, 8)?;
    let position = {
        let files = call.process.files.lock();
        let descriptor = files.get(fd)?;
        match descriptor.kind {
            Kind::File { .. } => descriptor.position,
            _ => return Err(Errno::SPIPE),
        }
    };
    Ok(call.memory.write_u64(out, position)?)
}

/// What `path_open` asks for, in rights: reading and writing.
pub(super) fn wants(rights_base: u64) -> (bool, bool) {
    let read = rights_base & (rights::FD_READ | rights::FD_READDIR) != 0;
    let write =
        rights_base & (rights::FD_WRITE | rights::FD_ALLOCATE | rights::FD_FILESTAT_SET_SIZE) != 0;
    (read, write)
}
