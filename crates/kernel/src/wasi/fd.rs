//! WASI `fd_*` functions.

use alloc::vec::Vec;

use super::fds::{APPEND, DSYNC, Kind, NONBLOCK, RSYNC, SYNC};
use super::path::set_times_arguments;
use super::rights;
use crate::syscalls::Call;
use crate::vfs::{Errno, FileType, Metadata};

pub(super) fn advise(
    call: &mut Call<'_>,
    fd: u32,
    _offset: i64,
    _length: i64,
    advice: u32,
) -> Result<(), Errno> {
    // Advice is a hint; only its range of values is checked.
    if advice > 5 {
        return Err(Errno::INVAL);
    }
    match call.process.files.lock().get(fd)?.with_rights(rights::FD_ADVISE)?.kind {
        Kind::Directory { .. } => Err(Errno::BADF),
        _ => Ok(()),
    }
}

pub(super) fn allocate(
    call: &mut Call<'_>,
    fd: u32,
    offset: i64,
    length: i64,
) -> Result<(), Errno> {
    let files = call.process.files.lock();
    let descriptor = files.get(fd)?;
    let Kind::File { file } = &descriptor.kind else {
        return Err(Errno::BADF);
    };
    descriptor.rights.require(rights::FD_ALLOCATE)?;
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

/// `fd_sync` (`needed` is `fd_sync`) and `fd_datasync` (`fd_datasync`).
fn sync_with(call: &mut Call<'_>, fd: u32, needed: u64) -> Result<(), Errno> {
    let files = call.process.files.lock();
    let descriptor = files.get(fd)?;
    match &descriptor.kind {
        Kind::File { file } => {
            descriptor.rights.require(needed)?;
            file.sync()
        }
        Kind::Directory { .. } => Ok(()),
        Kind::Stdin | Kind::Stdout | Kind::Stderr => Err(Errno::INVAL),
        Kind::Socket { .. } | Kind::Listener { .. } => Err(Errno::INVAL),
    }
}

pub(super) fn sync(call: &mut Call<'_>, fd: u32) -> Result<(), Errno> {
    sync_with(call, fd, rights::FD_SYNC)
}

pub(super) fn datasync(call: &mut Call<'_>, fd: u32) -> Result<(), Errno> {
    sync_with(call, fd, rights::FD_DATASYNC)
}

pub(super) fn fdstat_get(call: &mut Call<'_>, fd: u32, out: u32) -> Result<(), Errno> {
    call.memory.check(out, 1, 24)?;
    let files = call.process.files.lock();
    let descriptor = files.get(fd)?;
    let mut record = [0u8; 24];
    record[0] = descriptor.file_type() as u8;
    record[2..4].copy_from_slice(&descriptor.flags.to_le_bytes());
    record[8..16].copy_from_slice(&descriptor.rights.base.to_le_bytes());
    record[16..24].copy_from_slice(&descriptor.rights.inheriting.to_le_bytes());
    Ok(call.memory.write(out, &record)?)
}

pub(super) fn fdstat_set_flags(call: &mut Call<'_>, fd: u32, flags: u32) -> Result<(), Errno> {
    let mut files = call.process.files.lock();
    let descriptor = files.get_mut(fd)?;
    if matches!(descriptor.kind, Kind::Directory { .. }) {
        return Err(Errno::BADF);
    }
    descriptor.rights.require(rights::FD_FDSTAT_SET_FLAGS)?;
    // As wasmtime: `append` and `nonblock` change; the sync flags are chosen at `path_open` and
    // cannot be set afterwards (`EINVAL`); they are kept as they were.
    let flags = u16::try_from(flags).ok().filter(|flags| *flags < 32).ok_or(Errno::INVAL)?;
    if flags & (DSYNC | RSYNC | SYNC) != 0 {
        return Err(Errno::INVAL);
    }
    descriptor.flags = descriptor.flags & (DSYNC | RSYNC | SYNC) | flags & (APPEND | NONBLOCK);
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
    let (applicable, passable) = descriptor.applicable_rights();
    descriptor.rights =
        descriptor.rights.narrowed(base as u64, inheriting as u64, applicable, passable)?;
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
    let files = call.process.files.lock();
    let metadata = match &files.get(fd)?.with_rights(rights::FD_FILESTAT_GET)?.kind {
        Kind::File { file } => file.metadata()?,
        Kind::Directory { directory, .. } => directory.own_metadata()?,
        kind @ (Kind::Stdin
        | Kind::Stdout
        | Kind::Stderr
        | Kind::Socket { .. }
        | Kind::Listener { .. }) => Metadata {
            device: 0,
            inode: 0,
            file_type: if matches!(kind, Kind::Socket { .. } | Kind::Listener { .. }) {
                FileType::SocketStream
            } else {
                FileType::CharacterDevice
            },
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
    let descriptor = files.get(fd)?;
    match &descriptor.kind {
        Kind::File { file } => {
            descriptor.rights.require(rights::FD_FILESTAT_SET_SIZE)?;
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
    let files = call.process.files.lock();
    let descriptor = files.get(fd)?;
    if matches!(
        descriptor.kind,
        Kind::Stdin | Kind::Stdout | Kind::Stderr | Kind::Socket { .. } | Kind::Listener { .. }
    ) {
        return Err(Errno::BADF);
    }
    match &descriptor.with_rights(rights::FD_FILESTAT_SET_TIMES)?.kind {
        Kind::File { file } => file.set_times(accessed, modified),
        Kind::Directory { directory, .. } => {
            directory.set_times(".", crate::vfs::Follow::Symlinks, accessed, modified)
        }
        _ => Err(Errno::BADF),
    }
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
        let directory = descriptor.directory_with(rights::FD_READDIR)?.clone();
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
    let Kind::File { file } = &descriptor.kind else {
        return Err(if matches!(descriptor.kind, Kind::Directory { .. }) {
            Errno::BADF
        } else {
            Errno::SPIPE
        });
    };
    // Asking where it is needs `fd_tell`; moving needs `fd_seek` (which implies `fd_tell`).
    descriptor.rights.require(if (offset, whence) == (0, 1) {
        tell_right(descriptor.rights)
    } else {
        rights::FD_SEEK
    })?;
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
            Kind::File { .. } => {
                descriptor.rights.require(tell_right(descriptor.rights))?;
                descriptor.position
            }
            Kind::Directory { .. } => return Err(Errno::BADF),
            _ => return Err(Errno::SPIPE),
        }
    };
    Ok(call.memory.write_u64(out, position)?)
}

/// The right that allows `fd_tell`: `fd_tell`, or `fd_seek`, which implies it.
fn tell_right(held: rights::Rights) -> u64 {
    if held.base & rights::FD_SEEK != 0 { rights::FD_SEEK } else { rights::FD_TELL }
}
