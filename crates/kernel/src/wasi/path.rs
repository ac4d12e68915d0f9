//! WASI `path_*` functions: paths relative to a directory descriptor.

use alloc::sync::Arc;

use super::fd::filestat_bytes;
use super::fds::{DSYNC, Kind, RSYNC, SYNC};
use super::path_argument;
use super::rights;
use crate::syscalls::Call;
use crate::vfs::{Directory, Errno, Follow, Node, OpenOptions, Timestamp};

/// `lookupflags.symlink_follow`.
const SYMLINK_FOLLOW: u32 = 1;

fn follow(flags: u32) -> Follow {
    if flags & SYMLINK_FOLLOW != 0 { Follow::Symlinks } else { Follow::Nothing }
}

/// The directory of `fd`, which must hold the rights in `needed`, and the path argument.
fn at(
    call: &Call<'_>,
    fd: u32,
    needed: u64,
    (path, length): (u32, u32),
) -> Result<(Arc<dyn Directory>, alloc::string::String), Errno> {
    let path = path_argument(&call.memory, path, length)?;
    let directory = call.process.files.lock().get(fd)?.directory_with(needed)?.clone();
    Ok((directory, path))
}

/// `fstflags` to the two timestamps (setting a time and "now" for the same one is `EINVAL`).
pub(super) fn set_times_arguments(
    accessed: i64,
    modified: i64,
    flags: u32,
) -> Result<(Timestamp, Timestamp), Errno> {
    let one = |time: i64, set: u32, now: u32| match (flags & set != 0, flags & now != 0) {
        (true, true) => Err(Errno::INVAL),
        (true, false) => Ok(Timestamp::At(time as u64)),
        (false, true) => Ok(Timestamp::Now),
        (false, false) => Ok(Timestamp::Unchanged),
    };
    Ok((one(accessed, 1, 2)?, one(modified, 4, 8)?))
}

pub(super) fn create_directory(
    call: &mut Call<'_>,
    fd: u32,
    path: u32,
    length: u32,
) -> Result<(), Errno> {
    let (directory, path) = at(call, fd, rights::PATH_CREATE_DIRECTORY, (path, length))?;
    directory.create_directory(&path)
}

pub(super) fn filestat_get(
    call: &mut Call<'_>,
    fd: u32,
    flags: u32,
    path: u32,
    length: u32,
    out: u32,
) -> Result<(), Errno> {
    call.memory.check(out, 1, 64)?;
    let (directory, path) = at(call, fd, rights::PATH_FILESTAT_GET, (path, length))?;
    let metadata = directory.metadata(&path, follow(flags))?;
    Ok(call.memory.write(out, &filestat_bytes(&metadata))?)
}

#[expect(clippy::too_many_arguments, reason = "the WASI function's seven arguments")]
pub(super) fn filestat_set_times(
    call: &mut Call<'_>,
    fd: u32,
    flags: u32,
    path: u32,
    length: u32,
    accessed: i64,
    modified: i64,
    time_flags: u32,
) -> Result<(), Errno> {
    let (accessed, modified) = set_times_arguments(accessed, modified, time_flags)?;
    let (directory, path) = at(call, fd, rights::PATH_FILESTAT_SET_TIMES, (path, length))?;
    directory.set_times(&path, follow(flags), accessed, modified)
}

#[expect(clippy::too_many_arguments, reason = "the WASI function's seven arguments")]
pub(super) fn link(
    call: &mut Call<'_>,
    old_fd: u32,
    old_flags: u32,
    old_path: u32,
    old_length: u32,
    new_fd: u32,
    new_path: u32,
    new_length: u32,
) -> Result<(), Errno> {
    let (source, from) = at(call, old_fd, rights::PATH_LINK_SOURCE, (old_path, old_length))?;
    let (target, to) = at(call, new_fd, rights::PATH_LINK_TARGET, (new_path, new_length))?;
    // As wasi-common: links are made to what the path names, never through a final symlink.
    if old_flags & SYMLINK_FOLLOW != 0 {
        return Err(Errno::INVAL);
    }
    source.hard_link(&from, &*target, &to)
}

#[expect(clippy::too_many_arguments, reason = "the WASI function's nine arguments")]
pub(super) fn open(
    call: &mut Call<'_>,
    fd: u32,
    dirflags: u32,
    path: u32,
    length: u32,
    oflags: u32,
    rights_base: i64,
    _rights_inheriting: i64,
    fdflags: u32,
    out: u32,
) -> Result<(), Errno> {
    call.memory.check(out, 1, 4)?;
    let create = oflags & 1 != 0;
    let needed =
        if create { rights::PATH_OPEN | rights::PATH_CREATE_FILE } else { rights::PATH_OPEN };
    let (directory, path) = at(call, fd, needed, (path, length))?;
    let parent = call.process.files.lock().get(fd)?.rights;
    let flags = u16::try_from(fdflags).ok().filter(|flags| *flags < 32).ok_or(Errno::INVAL)?;
    // Reading and writing as asked, less what the directory cannot pass on; the rest of the
    // requested rights (and the requested inheriting rights) are no limit (see `rights`).
    let access = parent.access(rights_base as u64);
    let options = OpenOptions {
        read: access.read,
        write: access.write,
        create,
        directory: oflags & 2 != 0,
        exclusive: oflags & 4 != 0,
        truncate: oflags & 8 != 0,
        follow: dirflags & SYMLINK_FOLLOW != 0,
        sync_data: flags & DSYNC != 0,
        sync_all: flags & (RSYNC | SYNC) != 0,
    };
    let (kind, rights, flags) = match directory.open(&path, &options)? {
        Node::File(file) => (Kind::File { file }, parent.child_file(access), flags),
        // A directory keeps no flags (`append` and the sync flags are about writing bytes).
        Node::Directory(directory) => {
            (Kind::Directory { directory, preopen: None }, parent.child_directory(), 0)
        }
    };
    let new_fd = call.process.files.lock().insert(kind, flags, rights)?;
    Ok(call.memory.write_u32(out, new_fd)?)
}

pub(super) fn readlink(
    call: &mut Call<'_>,
    fd: u32,
    path: u32,
    length: u32,
    buffer: u32,
    capacity: u32,
    out: u32,
) -> Result<(), Errno> {
    call.memory.check(buffer, 1, capacity)?;
    call.memory.check(out, 1, 4)?;
    let (directory, path) = at(call, fd, rights::PATH_READLINK, (path, length))?;
    let contents = directory.read_link(&path)?;
    // Truncated to the buffer, as readlink(2) does.
    let used = contents.len().min(capacity as usize);
    call.memory.write(buffer, &contents.as_bytes()[..used])?;
    Ok(call.memory.write_u32(out, used as u32)?)
}

pub(super) fn remove_directory(
    call: &mut Call<'_>,
    fd: u32,
    path: u32,
    length: u32,
) -> Result<(), Errno> {
    let (directory, path) = at(call, fd, rights::PATH_REMOVE_DIRECTORY, (path, length))?;
    directory.remove_directory(&path)
}

pub(super) fn rename(
    call: &mut Call<'_>,
    fd: u32,
    old_path: u32,
    old_length: u32,
    new_fd: u32,
    new_path: u32,
    new_length: u32,
) -> Result<(), Errno> {
    let (source, from) = at(call, fd, rights::PATH_RENAME_SOURCE, (old_path, old_length))?;
    let (target, to) = at(call, new_fd, rights::PATH_RENAME_TARGET, (new_path, new_length))?;
    source.rename(&from, &*target, &to)
}

pub(super) fn symlink(
    call: &mut Call<'_>,
    contents: u32,
    contents_length: u32,
    fd: u32,
    path: u32,
    length: u32,
) -> Result<(), Errno> {
    let contents = path_argument(&call.memory, contents, contents_length)?;
    let (directory, path) = at(call, fd, rights::PATH_SYMLINK, (path, length))?;
    directory.symlink(&contents, &path)
}

pub(super) fn unlink_file(
    call: &mut Call<'_>,
    fd: u32,
    path: u32,
    length: u32,
) -> Result<(), Errno> {
    let (directory, path) = at(call, fd, rights::PATH_UNLINK_FILE, (path, length))?;
    directory.remove_file(&path)
}
