//! Host directories as WASI file systems: [`vfs::Directory`] and [`vfs::File`] over `cap-std`.
//!
//! A [`HostDirectory`] is a capability: every path is resolved by `cap-std` relative to its
//! directory and may never leave it. `..` that climbs above it, absolute paths, and symbolic
//! links whose target lies outside are refused; `cap-std` reports such a refusal as an
//! `io::Error` of kind `PermissionDenied` that carries no OS error number (its
//! `escape_attempt`, also what `openat2`'s `RESOLVE_BENEATH` `EXDEV` is turned into), which is
//! mapped to [`Errno::PERM`], as wasi-common and wasmtime do (the official WASI test suite
//! expects it). A real `EACCES` carries its OS error number and stays [`Errno::ACCES`].

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cap_fs_ext::{
    DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt, SystemTimeSpec,
};
use cap_std::fs::{Dir, FileTypeExt, MetadataExt, OpenOptionsExt};
use nebulet_kernel::vfs::{
    self, DirectoryEntry, Errno, FileType, Follow, Metadata, Node, OpenOptions, Timestamp,
};
use rustix::fs::DirEntryExt;

/// A host directory that a process may use, and nothing outside it.
#[derive(Debug)]
pub struct HostDirectory(Dir);

/// A file opened through a [`HostDirectory`].
///
/// An open file needs no more capability checks, so it holds the plain `std` file: positioned
/// I/O with `FileExt::read_at`/`write_at` and `set_times` with `FileTimes`.
#[derive(Debug)]
pub struct HostFile(std::fs::File);

impl HostDirectory {
    /// Opens the host directory at `path` (with the program's ambient authority; everything
    /// after is relative to it).
    pub fn open(path: &Path) -> io::Result<HostDirectory> {
        Dir::open_ambient_dir(path, cap_std::ambient_authority()).map(HostDirectory)
    }

    /// The host directory open as `descriptor` (a domain's preopen, passed in by its parent).
    pub fn from_descriptor(descriptor: std::os::fd::OwnedFd) -> HostDirectory {
        HostDirectory(Dir::from_std_file(std::fs::File::from(descriptor)))
    }

    /// A directory of the same implementation as `self`, for `rename` and `hard_link`.
    fn same_kind(target: &dyn vfs::Directory) -> Result<&HostDirectory, Errno> {
        target.as_any().downcast_ref::<HostDirectory>().ok_or(Errno::XDEV)
    }
}

/// WASI errnos that `vfs::Errno` has no name for (`wasi_snapshot_preview1` numbering).
mod wasi {
    use super::Errno;
    pub const TOOBIG: Errno = Errno(1);
    pub const CANCELED: Errno = Errno(11);
    pub const DEADLK: Errno = Errno(16);
    pub const DQUOT: Errno = Errno(19);
    pub const ILSEQ: Errno = Errno(25);
    pub const INTR: Errno = Errno(27);
    pub const MLINK: Errno = Errno(34);
    pub const NFILE: Errno = Errno(41);
    pub const NODEV: Errno = Errno(43);
    pub const NOEXEC: Errno = Errno(45);
    pub const NOLCK: Errno = Errno(46);
    pub const NOTTY: Errno = Errno(59);
    pub const NXIO: Errno = Errno(60);
    pub const STALE: Errno = Errno(72);
    pub const TIMEDOUT: Errno = Errno(73);
    pub const TXTBSY: Errno = Errno(74);
}

/// Host errno → WASI errno. (`AGAIN`/`WOULDBLOCK` and `NOTSUP`/`OPNOTSUPP` are one value each
/// on Linux, so only one of each is listed.)
const ERRNOS: &[(rustix::io::Errno, Errno)] = {
    use rustix::io::Errno as Host;
    &[
        (Host::NOENT, Errno::NOENT),
        (Host::EXIST, Errno::EXIST),
        (Host::NOTDIR, Errno::NOTDIR),
        (Host::ISDIR, Errno::ISDIR),
        (Host::NOTEMPTY, Errno::NOTEMPTY),
        (Host::ACCESS, Errno::ACCES),
        (Host::PERM, Errno::PERM),
        (Host::LOOP, Errno::LOOP),
        (Host::XDEV, Errno::XDEV),
        (Host::INVAL, Errno::INVAL),
        (Host::NAMETOOLONG, Errno::NAMETOOLONG),
        (Host::NOSPC, Errno::NOSPC),
        (Host::BADF, Errno::BADF),
        (Host::ROFS, Errno::ROFS),
        (Host::MLINK, wasi::MLINK),
        (Host::AGAIN, Errno::AGAIN),
        (Host::BUSY, Errno::BUSY),
        (Host::FAULT, Errno::FAULT),
        (Host::FBIG, Errno::FBIG),
        (Host::IO, Errno::IO),
        (Host::MFILE, Errno::MFILE),
        (Host::NOMEM, Errno::NOMEM),
        (Host::NOSYS, Errno::NOSYS),
        (Host::NOTSOCK, Errno::NOTSOCK),
        (Host::NOTSUP, Errno::NOTSUP),
        (Host::OVERFLOW, Errno::OVERFLOW),
        (Host::PIPE, Errno::PIPE),
        (Host::SPIPE, Errno::SPIPE),
        (Host::TOOBIG, wasi::TOOBIG),
        (Host::CANCELED, wasi::CANCELED),
        (Host::DEADLK, wasi::DEADLK),
        (Host::DQUOT, wasi::DQUOT),
        (Host::ILSEQ, wasi::ILSEQ),
        (Host::INTR, wasi::INTR),
        (Host::NFILE, wasi::NFILE),
        (Host::NODEV, wasi::NODEV),
        (Host::NOEXEC, wasi::NOEXEC),
        (Host::NOLCK, wasi::NOLCK),
        (Host::NOTTY, wasi::NOTTY),
        (Host::NXIO, wasi::NXIO),
        (Host::STALE, wasi::STALE),
        (Host::TIMEDOUT, wasi::TIMEDOUT),
        (Host::TXTBSY, wasi::TXTBSY),
    ]
};

/// The WASI errno of a host I/O error.
///
/// An OS error maps by its number. An error without one is `cap-std`'s own: `PermissionDenied`
/// is its refusal of a path that leads outside the directory (`PERM`); the rest map by
/// kind, falling back to `IO`.
pub fn errno(error: &io::Error) -> Errno {
    if let Some(host) = rustix::io::Errno::from_io_error(error) {
        return ERRNOS
            .iter()
            .find(|(known, _)| *known == host)
            .map_or(Errno::IO, |&(_, wasi)| wasi);
    }
    match error.kind() {
        io::ErrorKind::PermissionDenied => Errno::PERM,
        io::ErrorKind::NotFound => Errno::NOENT,
        io::ErrorKind::AlreadyExists => Errno::EXIST,
        io::ErrorKind::NotADirectory => Errno::NOTDIR,
        io::ErrorKind::IsADirectory => Errno::ISDIR,
        io::ErrorKind::DirectoryNotEmpty => Errno::NOTEMPTY,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => Errno::INVAL,
        io::ErrorKind::InvalidFilename => Errno::NAMETOOLONG,
        io::ErrorKind::ReadOnlyFilesystem => Errno::ROFS,
        io::ErrorKind::StorageFull => Errno::NOSPC,
        io::ErrorKind::CrossesDevices => Errno::XDEV,
        io::ErrorKind::TooManyLinks => wasi::MLINK,
        io::ErrorKind::FileTooLarge => Errno::FBIG,
        io::ErrorKind::Unsupported => Errno::NOTSUP,
        io::ErrorKind::OutOfMemory => Errno::NOMEM,
        io::ErrorKind::WouldBlock => Errno::AGAIN,
        io::ErrorKind::Interrupted => wasi::INTR,
        io::ErrorKind::BrokenPipe => Errno::PIPE,
        io::ErrorKind::NotSeekable => Errno::SPIPE,
        io::ErrorKind::ResourceBusy => Errno::BUSY,
        _ => Errno::IO,
    }
}

fn map<T>(result: io::Result<T>) -> Result<T, Errno> {
    result.map_err(|error| errno(&error))
}

fn file_type(file_type: cap_std::fs::FileType) -> FileType {
    if file_type.is_dir() {
        FileType::Directory
    } else if file_type.is_file() {
        FileType::RegularFile
    } else if file_type.is_symlink() {
        FileType::SymbolicLink
    } else if file_type.is_char_device() {
        FileType::CharacterDevice
    } else if file_type.is_block_device() {
        FileType::BlockDevice
    } else {
        // FIFOs, and sockets whose kind (stream or datagram) a stat does not tell.
        FileType::Unknown
    }
}

/// Seconds and nanoseconds since the epoch as nanoseconds (0 before the epoch, saturating).
fn nanoseconds(seconds: i64, nanoseconds: i64) -> u64 {
    let seconds = u64::try_from(seconds).unwrap_or(0);
    let nanoseconds = u64::try_from(nanoseconds).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanoseconds)
}

fn metadata(metadata: &cap_std::fs::Metadata) -> Metadata {
    Metadata {
        device: metadata.dev(),
        inode: metadata.ino(),
        file_type: file_type(metadata.file_type()),
        links: metadata.nlink(),
        size: metadata.len(),
        accessed: nanoseconds(metadata.atime(), metadata.atime_nsec()),
        modified: nanoseconds(metadata.mtime(), metadata.mtime_nsec()),
        changed: nanoseconds(metadata.ctime(), metadata.ctime_nsec()),
    }
}

fn system_time(nanoseconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanoseconds)
}

/// A `Timestamp` for `cap-fs-ext`'s `set_times` (`None` leaves the time as it is).
fn time_spec(timestamp: Timestamp) -> Option<SystemTimeSpec> {
    match timestamp {
        Timestamp::Unchanged => None,
        Timestamp::Now => Some(SystemTimeSpec::SymbolicNow),
        Timestamp::At(nanoseconds) => Some(SystemTimeSpec::Absolute(
            cap_std::time::SystemTime::from_std(system_time(nanoseconds)),
        )),
    }
}

fn follow_symlinks(follow: bool) -> FollowSymlinks {
    if follow { FollowSymlinks::Yes } else { FollowSymlinks::No }
}

fn directory_node(dir: Dir) -> Node {
    Node::Directory(Arc::new(HostDirectory(dir)))
}

impl HostDirectory {
    /// Opens `path` as a file (or a directory read as one) with host options for `options`.
    fn open_file(&self, path: &Path, options: &OpenOptions) -> io::Result<cap_std::fs::File> {
        // The host needs write access to truncate (as POSIX does) and, unlike POSIX, to create;
        // WASI asks for neither. The fd layer keeps the rights the program asked for.
        let write = options.write || options.truncate || options.create;
        let mut host = cap_std::fs::OpenOptions::new();
        host.read(options.read || !write)
            .write(write)
            .truncate(options.truncate)
            .follow(follow_symlinks(options.follow))
            .maybe_dir(true)
            .custom_flags(NONBLOCKING_OPEN | sync_flags(options));
        if options.create && options.exclusive {
            host.create_new(true);
        } else if options.create {
            host.create(true);
        }
        let result = self.0.open_with(path, &host);
        let added_write = write && !options.write && !options.truncate;
        let file = match result {
            // `O_CREAT` without write access opens an existing read-only file on POSIX.
            Err(error)
                if added_write
                    && !options.exclusive
                    && matches!(errno(&error), Errno::ACCES | Errno::PERM | Errno::ROFS) =>
            {
                let mut read_only = cap_std::fs::OpenOptions::new();
                read_only
                    .read(true)
                    .follow(follow_symlinks(options.follow))
                    .maybe_dir(true)
                    .custom_flags(NONBLOCKING_OPEN | sync_flags(options));
                self.0.open_with(path, &read_only).map_err(|_| error)
            }
            result => result,
        }?;
        blocking_again(file)
    }
}

/// Opens never wait: opening a FIFO (or some devices) would wait for its other end, on an
/// executor worker, since opens are quick calls. I/O then waits as usual, off the workers.
const NONBLOCKING_OPEN: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;

/// The host's `O_DSYNC` and `O_SYNC` for the WASI sync flags.
fn sync_flags(options: &OpenOptions) -> i32 {
    let mut flags = rustix::fs::OFlags::empty();
    if options.sync_data {
        flags |= rustix::fs::OFlags::DSYNC;
    }
    if options.sync_all {
        flags |= rustix::fs::OFlags::SYNC;
    }
    flags.bits() as i32
}

/// `file` with the non-blocking flag of its open taken off again.
fn blocking_again(file: cap_std::fs::File) -> io::Result<cap_std::fs::File> {
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(file)
}

impl vfs::Directory for HostDirectory {
    fn open(&self, path: &str, options: &OpenOptions) -> Result<Node, Errno> {
        let path = Path::new(path);
        if options.directory {
            if options.create || options.exclusive || options.truncate {
                return Err(Errno::INVAL);
            }
            let dir = map(if options.follow {
                self.0.open_dir(path)
            } else {
                self.0.open_dir_nofollow(path)
            })?;
            // A directory is not written as bytes (`open(2)` gives `EISDIR` too).
            if options.write {
                return Err(Errno::ISDIR);
            }
            return Ok(directory_node(dir));
        }
        let file = map(self.open_file(path, options))?;
        if map(file.metadata())?.is_dir() {
            // Opened read-only (a directory opened for writing fails with `EISDIR` above).
            return Ok(directory_node(Dir::from_std_file(file.into_std())));
        }
        Ok(Node::File(Arc::new(HostFile(file.into_std()))))
    }

    fn create_directory(&self, path: &str) -> Result<(), Errno> {
        map(self.0.create_dir(path))
    }

    fn remove_directory(&self, path: &str) -> Result<(), Errno> {
        // `dir/` names `dir`, as `rmdir(2)` takes it; `cap-std` would look for an entry named
        // `.` in it instead (`EINVAL`). Only directories are removed, so `file/` is `ENOTDIR`.
        let trimmed = path.trim_end_matches('/');
        map(self.0.remove_dir(if trimmed.is_empty() { path } else { trimmed }))
    }

    fn remove_file(&self, path: &str) -> Result<(), Errno> {
        map(self.0.remove_file(path))
    }

    fn rename(&self, from: &str, target: &dyn vfs::Directory, to: &str) -> Result<(), Errno> {
        let target = Self::same_kind(target)?;
        map(self.0.rename(from, &target.0, to))
    }

    fn hard_link(&self, from: &str, target: &dyn vfs::Directory, to: &str) -> Result<(), Errno> {
        let target = Self::same_kind(target)?;
        map(self.0.hard_link(from, &target.0, to))
    }

    fn symlink(&self, contents: &str, link: &str) -> Result<(), Errno> {
        // `cap-std` refuses absolute contents (`PERM`): they could never be followed here.
        map(self.0.symlink(contents, link))
    }

    fn read_link(&self, path: &str) -> Result<String, Errno> {
        // `cap-std` refuses to read absolute contents (`PERM`), not to reveal host paths.
        let contents = map(self.0.read_link(path))?;
        Ok(contents.to_string_lossy().into_owned())
    }

    fn metadata(&self, path: &str, follow: Follow) -> Result<Metadata, Errno> {
        let host = match follow {
            Follow::Symlinks => self.0.metadata(path),
            Follow::Nothing => self.0.symlink_metadata(path),
        };
        map(host).map(|host| metadata(&host))
    }

    fn set_times(
        &self,
        path: &str,
        follow: Follow,
        accessed: Timestamp,
        modified: Timestamp,
    ) -> Result<(), Errno> {
        let (accessed, modified) = (time_spec(accessed), time_spec(modified));
        map(match follow {
            Follow::Symlinks => self.0.set_times(path, accessed, modified),
            Follow::Nothing => self.0.set_symlink_times(path, accessed, modified),
        })
    }

    fn own_metadata(&self) -> Result<Metadata, Errno> {
        map(self.0.dir_metadata()).map(|host| metadata(&host))
    }

    fn entries(&self) -> Result<Vec<DirectoryEntry>, Errno> {
        let mut entries = Vec::new();
        for entry in map(self.0.entries())? {
            let entry = map(entry)?;
            entries.push(DirectoryEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                file_type: map(entry.file_type()).map_or(FileType::Unknown, file_type),
                inode: entry.ino(),
            });
        }
        // Sorted by name, so the index of an entry (the `fd_readdir` cookie) is stable.
        entries.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(entries)
    }

    fn as_any(&self) -> &dyn core::any::Any {
        self
    }
}

impl vfs::File for HostFile {
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> Result<usize, Errno> {
        map(std::os::unix::fs::FileExt::read_at(&self.0, buffer, offset))
    }

    fn write_at(&self, data: &[u8], offset: u64) -> Result<usize, Errno> {
        map(std::os::unix::fs::FileExt::write_at(&self.0, data, offset))
    }

    fn metadata(&self) -> Result<Metadata, Errno> {
        map(cap_std::fs::Metadata::from_file(&self.0)).map(|host| metadata(&host))
    }

    fn set_size(&self, size: u64) -> Result<(), Errno> {
        map(self.0.set_len(size))
    }

    fn set_times(&self, accessed: Timestamp, modified: Timestamp) -> Result<(), Errno> {
        let time = |timestamp| match timestamp {
            Timestamp::Unchanged => None,
            Timestamp::Now => Some(SystemTime::now()),
            Timestamp::At(nanoseconds) => Some(system_time(nanoseconds)),
        };
        let mut times = std::fs::FileTimes::new();
        if let Some(accessed) = time(accessed) {
            times = times.set_accessed(accessed);
        }
        if let Some(modified) = time(modified) {
            times = times.set_modified(modified);
        }
        map(self.0.set_times(times))
    }

    fn sync(&self) -> Result<(), Errno> {
        map(self.0.sync_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use vfs::Directory as _;

    /// A fresh host directory under the temporary directory, removed when dropped.
    struct Scratch {
        path: PathBuf,
        directory: HostDirectory,
    }

    impl Scratch {
        fn new() -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "nebulet-files-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(path.join("inside")).unwrap();
            let directory = HostDirectory::open(&path.join("inside")).unwrap();
            Scratch { path, directory }
        }

        /// The host path of `name` inside the directory.
        fn host(&self, name: &str) -> PathBuf {
            self.path.join("inside").join(name)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    const READ: OpenOptions = OpenOptions {
        read: true,
        write: false,
        create: false,
        exclusive: false,
        truncate: false,
        directory: false,
        follow: true,
        sync_data: false,
        sync_all: false,
    };
    const WRITE: OpenOptions = OpenOptions { write: true, ..READ };
    const CREATE: OpenOptions = OpenOptions { create: true, ..WRITE };
    const DIRECTORY: OpenOptions = OpenOptions { directory: true, ..READ };

    fn file(node: Node) -> Arc<dyn vfs::File> {
        match node {
            Node::File(file) => file,
            Node::Directory(directory) => panic!("expected a file, got {directory:?}"),
        }
    }

    fn directory(node: Node) -> Arc<dyn vfs::Directory> {
        match node {
            Node::Directory(directory) => directory,
            Node::File(file) => panic!("expected a directory, got {file:?}"),
        }
    }

    fn read_all(file: &dyn vfs::File) -> Vec<u8> {
        let mut buffer = vec![0; 256];
        let count = file.read_at(&mut buffer, 0).unwrap();
        buffer.truncate(count);
        buffer
    }

    #[test]
    fn files_are_created_read_and_written_at_offsets() {
        let scratch = Scratch::new();
        let dir = &scratch.directory;
        let created = file(dir.open("a.txt", &OpenOptions { read: true, ..CREATE }).unwrap());
        assert_eq!(created.write_at(b"hello", 0).unwrap(), 5);
        assert_eq!(created.write_at(b"world", 10).unwrap(), 5);
        let mut buffer = [0xff; 8];
        assert_eq!(created.read_at(&mut buffer, 8).unwrap(), 7);
        assert_eq!(&buffer[..7], b"\0\0world");
        assert_eq!(created.read_at(&mut buffer, 15).unwrap(), 0);
        let stat = created.metadata().unwrap();
        assert_eq!((stat.file_type, stat.size, stat.links), (FileType::RegularFile, 15, 1));
        assert_ne!(stat.inode, 0);
        assert_eq!(std::fs::read(scratch.host("a.txt")).unwrap(), b"hello\0\0\0\0\0world");

        created.set_size(3).unwrap();
        created.sync().unwrap();
        assert_eq!(read_all(&*file(dir.open("a.txt", &READ).unwrap())), b"hel");

        // `exclusive` fails on an existing file; `create` alone opens it.
        let exclusive = OpenOptions { exclusive: true, ..CREATE };
        assert_eq!(dir.open("a.txt", &exclusive).unwrap_err(), Errno::EXIST);
        assert_eq!(read_all(&*file(dir.open("a.txt", &CREATE).unwrap())), b"hel");
        assert_eq!(dir.metadata("a.txt", Follow::Symlinks).unwrap().size, 3);
        // `create` without write access (WASI allows it) creates and opens.
        let read_create = OpenOptions { create: true, ..READ };
        assert_eq!(file(dir.open("b.txt", &read_create).unwrap()).metadata().unwrap().size, 0);
        assert_eq!(dir.open("b.txt", &exclusive).unwrap_err(), Errno::EXIST);

        // `truncate` empties it.
        let truncate = OpenOptions { truncate: true, ..WRITE };
        assert_eq!(file(dir.open("a.txt", &truncate).unwrap()).metadata().unwrap().size, 0);

        assert_eq!(dir.open("missing", &READ).unwrap_err(), Errno::NOENT);
        assert_eq!(dir.open("missing/a", &CREATE).unwrap_err(), Errno::NOENT);
        assert_eq!(dir.open("a.txt", &DIRECTORY).unwrap_err(), Errno::NOTDIR);
        assert_eq!(dir.open("a.txt/x", &READ).unwrap_err(), Errno::NOTDIR);
        let write_only = file(dir.open("a.txt", &OpenOptions { read: false, ..WRITE }).unwrap());
        assert_eq!(write_only.read_at(&mut buffer, 0).unwrap_err(), Errno::BADF);
    }

    #[test]
    fn directories_are_opened_as_directories() {
        let scratch = Scratch::new();
        let dir = &scratch.directory;
        dir.create_directory("sub").unwrap();
        assert_eq!(dir.create_directory("sub").unwrap_err(), Errno::EXIST);
        // With or without `directory`, a directory path opens a directory.
        let sub = directory(dir.open("sub", &DIRECTORY).unwrap());
        let same = directory(dir.open("sub", &READ).unwrap());
        file(sub.open("inner.txt", &CREATE).unwrap());
        assert_eq!(
            same.metadata("inner.txt", Follow::Nothing).unwrap().file_type,
            FileType::RegularFile
        );
        assert_eq!(sub.own_metadata().unwrap().file_type, FileType::Directory);
        assert_eq!(dir.metadata("sub", Follow::Nothing).unwrap().file_type, FileType::Directory);
        assert_eq!(dir.own_metadata().unwrap().file_type, FileType::Directory);
        let dot = directory(dir.open(".", &DIRECTORY).unwrap());
        assert_eq!(dot.own_metadata().unwrap().inode, dir.own_metadata().unwrap().inode);
        // A directory is not written, nor created or truncated with `directory`.
        assert_eq!(dir.open("sub", &WRITE).unwrap_err(), Errno::ISDIR);
        assert_eq!(
            dir.open("sub", &OpenOptions { write: true, ..DIRECTORY }).unwrap_err(),
            Errno::ISDIR
        );
        assert_eq!(
            dir.open("new", &OpenOptions { create: true, ..DIRECTORY }).unwrap_err(),
            Errno::INVAL
        );
        assert_eq!(
            dir.open("sub", &OpenOptions { exclusive: true, ..CREATE }).unwrap_err(),
            Errno::EXIST
        );

        assert_eq!(dir.remove_directory("sub").unwrap_err(), Errno::NOTEMPTY);
        assert_eq!(dir.remove_file("sub").unwrap_err(), Errno::ISDIR);
        assert_eq!(dir.remove_directory("sub/inner.txt").unwrap_err(), Errno::NOTDIR);
        dir.remove_file("sub/inner.txt").unwrap();
        dir.remove_directory("sub").unwrap();
        assert_eq!(dir.metadata("sub", Follow::Nothing).unwrap_err(), Errno::NOENT);
        assert_eq!(dir.remove_directory("sub").unwrap_err(), Errno::NOENT);
        assert!(!scratch.host("sub").exists());
    }

    #[test]
    fn entries_are_sorted_without_dot_entries() {
        let scratch = Scratch::new();
        let dir = &scratch.directory;
        assert_eq!(dir.entries().unwrap(), []);
        for name in ["b", "a", "c"] {
            file(dir.open(name, &CREATE).unwrap());
        }
        dir.create_directory("ab").unwrap();
        dir.symlink("a", "z").unwrap();
        let entries = dir.entries().unwrap();
        let names: Vec<_> = entries.iter().map(|entry| entry.name.as_str()).collect();
        assert_eq!(names, ["a", "ab", "b", "c", "z"]);
        let types: Vec<_> = entries.iter().map(|entry| entry.file_type).collect();
        assert_eq!(types[..2], [FileType::RegularFile, FileType::Directory]);
        assert_eq!(types[4], FileType::SymbolicLink);
        assert_eq!(entries[0].inode, dir.metadata("a", Follow::Nothing).unwrap().inode);
        assert_eq!(dir.entries().unwrap(), entries);
    }

    #[test]
    fn rename_and_hard_link_between_host_directories() {
        let scratch = Scratch::new();
        let dir = &scratch.directory;
        file(dir.open("a", &CREATE).unwrap()).write_at(b"data", 0).unwrap();
        dir.rename("a", dir, "b").unwrap();
        assert_eq!(dir.metadata("a", Follow::Nothing).unwrap_err(), Errno::NOENT);
        dir.create_directory("sub").unwrap();
        let sub = directory(dir.open("sub", &DIRECTORY).unwrap());
        dir.rename("b", &*sub, "c").unwrap();
        assert_eq!(read_all(&*file(sub.open("c", &READ).unwrap())), b"data");
        sub.hard_link("c", dir, "linked").unwrap();
        assert_eq!(dir.metadata("linked", Follow::Nothing).unwrap().links, 2);
        assert_eq!(read_all(&*file(dir.open("linked", &READ).unwrap())), b"data");
        assert_eq!(dir.rename("missing", dir, "x").unwrap_err(), Errno::NOENT);
        assert_eq!(dir.hard_link("linked", dir, "sub/c").unwrap_err(), Errno::EXIST);
        // Out of the directory through either name: refused.
        assert_eq!(dir.rename("linked", dir, "../out").unwrap_err(), Errno::PERM);
        assert_eq!(dir.hard_link("../inside/linked", dir, "x").unwrap_err(), Errno::PERM);
        assert!(!scratch.path.join("out").exists());
        // Another implementation: cross-device.
        assert_eq!(dir.rename("linked", &Foreign, "x").unwrap_err(), Errno::XDEV);
        assert_eq!(dir.hard_link("linked", &Foreign, "x").unwrap_err(), Errno::XDEV);
    }

    #[test]
    fn symlinks_are_read_and_reported() {
        let scratch = Scratch::new();
        let dir = &scratch.directory;
        file(dir.open("target", &CREATE).unwrap()).write_at(b"abc", 0).unwrap();
        dir.symlink("target", "link").unwrap();
        dir.create_directory("sub").unwrap();
        dir.symlink("../target", "sub/up").unwrap();
        assert_eq!(dir.read_link("link").unwrap(), "target");
        assert_eq!(dir.read_link("sub/up").unwrap(), "../target");
        assert_eq!(dir.read_link("target").unwrap_err(), Errno::INVAL);
        let link = dir.metadata("link", Follow::Nothing).unwrap();
        assert_eq!(link.file_type, FileType::SymbolicLink);
        let target = dir.metadata("link", Follow::Symlinks).unwrap();
        assert_eq!((target.file_type, target.size), (FileType::RegularFile, 3));
        assert_ne!(link.inode, target.inode);
        // Followed when asked; a link inside that stays inside is fine.
        assert_eq!(read_all(&*file(dir.open("link", &READ).unwrap())), b"abc");
        assert_eq!(read_all(&*file(dir.open("sub/up", &READ).unwrap())), b"abc");
        let nofollow = OpenOptions { follow: false, ..READ };
        assert_eq!(dir.open("link", &nofollow).unwrap_err(), Errno::LOOP);
        dir.symlink("sub", "sublink").unwrap();
        let no_follow_dir = OpenOptions { follow: false, ..DIRECTORY };
        assert!(matches!(
            dir.open("sublink", &no_follow_dir).unwrap_err(),
            Errno::LOOP | Errno::NOTDIR
        ));
        directory(dir.open("sublink", &DIRECTORY).unwrap());
        // A dangling link.
        dir.symlink("nowhere", "dangling").unwrap();
        assert_eq!(
            dir.metadata("dangling", Follow::Nothing).unwrap().file_type,
            FileType::SymbolicLink
        );
        assert_eq!(dir.metadata("dangling", Follow::Symlinks).unwrap_err(), Errno::NOENT);
        assert_eq!(dir.symlink("target", "link").unwrap_err(), Errno::EXIST);
        // Removing the link leaves the target.
        dir.remove_file("link").unwrap();
        assert_eq!(dir.metadata("target", Follow::Nothing).unwrap().size, 3);
    }

    #[test]
    fn times_are_set_in_nanoseconds() {
        let scratch = Scratch::new();
        let dir = &scratch.directory;
        let opened = file(dir.open("a", &CREATE).unwrap());
        let at = 1_000_000_000_123_456_789;
        dir.set_times("a", Follow::Symlinks, Timestamp::At(at), Timestamp::Unchanged).unwrap();
        let stat = dir.metadata("a", Follow::Symlinks).unwrap();
        assert_eq!(stat.accessed, at);
        assert_ne!(stat.modified, at);
        let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let before = now() - 1_000_000_000;
        dir.set_times("a", Follow::Symlinks, Timestamp::Unchanged, Timestamp::Now).unwrap();
        let stat = dir.metadata("a", Follow::Symlinks).unwrap();
        assert_eq!(stat.accessed, at);
        assert!(stat.modified >= before && stat.modified <= now() + 1_000_000_000);

        opened.set_times(Timestamp::Unchanged, Timestamp::At(at + 1)).unwrap();
        let stat = opened.metadata().unwrap();
        assert_eq!((stat.accessed, stat.modified), (at, at + 1));
        opened.set_times(Timestamp::Now, Timestamp::Unchanged).unwrap();
        let stat = opened.metadata().unwrap();
        assert!(stat.accessed >= before);
        assert_eq!(stat.modified, at + 1);
        assert!(stat.changed >= before);

        // On the link itself, not its target.
        dir.symlink("a", "link").unwrap();
        dir.set_times("link", Follow::Nothing, Timestamp::At(at), Timestamp::At(at)).unwrap();
        assert_eq!(dir.metadata("link", Follow::Nothing).unwrap().modified, at);
        assert_eq!(dir.metadata("a", Follow::Nothing).unwrap().modified, at + 1);
    }

    #[test]
    fn escapes_are_refused_as_not_permitted() {
        let scratch = Scratch::new();
        let dir = &scratch.directory;
        std::fs::write(scratch.path.join("secret"), b"outside").unwrap();
        dir.create_directory("sub").unwrap();
        for path in ["../secret", "/etc/passwd", "sub/../../secret", "..", "/", "sub/../.."] {
            assert_eq!(dir.open(path, &READ).unwrap_err(), Errno::PERM, "{path}");
            assert_eq!(dir.metadata(path, Follow::Symlinks).unwrap_err(), Errno::PERM, "{path}");
        }
        assert_eq!(dir.open("../secret", &CREATE).unwrap_err(), Errno::PERM);
        assert_eq!(dir.open("../new", &CREATE).unwrap_err(), Errno::PERM);
        assert_eq!(dir.open("..", &DIRECTORY).unwrap_err(), Errno::PERM);
        assert_eq!(dir.create_directory("../made").unwrap_err(), Errno::PERM);
        assert_eq!(dir.remove_file("../secret").unwrap_err(), Errno::PERM);
        assert_eq!(dir.symlink("/etc/passwd", "absolute").unwrap_err(), Errno::PERM);
        assert_eq!(
            dir.set_times("../secret", Follow::Symlinks, Timestamp::Now, Timestamp::Now)
                .unwrap_err(),
            Errno::PERM
        );
        // `..` that stays inside is fine.
        file(dir.open("sub/../a", &CREATE).unwrap());

        // Links made on the host (cap-std would not make the absolute one) that point out.
        std::os::unix::fs::symlink("/", scratch.host("root")).unwrap();
        std::os::unix::fs::symlink("..", scratch.host("up")).unwrap();
        std::os::unix::fs::symlink("../../secret", scratch.host("sub/deep")).unwrap();
        for path in ["root", "root/etc/passwd", "up", "up/secret", "sub/deep"] {
            assert_eq!(dir.open(path, &READ).unwrap_err(), Errno::PERM, "{path}");
            assert_eq!(dir.metadata(path, Follow::Symlinks).unwrap_err(), Errno::PERM, "{path}");
        }
        for path in ["root", "up"] {
            assert_eq!(dir.open(path, &DIRECTORY).unwrap_err(), Errno::PERM, "{path}");
        }
        assert_eq!(dir.open("up/new", &CREATE).unwrap_err(), Errno::PERM);
        assert_eq!(dir.create_directory("up/made").unwrap_err(), Errno::PERM);
        // The links themselves are there; an absolute target is not revealed.
        assert_eq!(
            dir.metadata("root", Follow::Nothing).unwrap().file_type,
            FileType::SymbolicLink
        );
        assert_eq!(dir.read_link("root").unwrap_err(), Errno::PERM);
        assert_eq!(dir.read_link("up").unwrap(), "..");
        assert!(!scratch.path.join("new").exists() && !scratch.path.join("made").exists());
        assert_eq!(std::fs::read(scratch.path.join("secret")).unwrap(), b"outside");
    }

    #[test]
    fn host_errors_map_to_wasi_errnos() {
        let os =
            |host: rustix::io::Errno| errno(&io::Error::from_raw_os_error(host.raw_os_error()));
        assert_eq!(os(rustix::io::Errno::ACCESS), Errno::ACCES);
        assert_eq!(os(rustix::io::Errno::PERM), Errno::PERM);
        assert_eq!(os(rustix::io::Errno::MLINK), Errno(34));
        assert_eq!(os(rustix::io::Errno::NOTEMPTY), Errno::NOTEMPTY);
        assert_eq!(os(rustix::io::Errno::XDEV), Errno::XDEV);
        assert_eq!(os(rustix::io::Errno::RANGE), Errno::IO);
        // cap-std's refusal: `PermissionDenied` without an OS error.
        let escape =
            io::Error::new(io::ErrorKind::PermissionDenied, "a path led outside of the filesystem");
        assert_eq!(errno(&escape), Errno::PERM);
        assert_eq!(errno(&io::Error::other("?")), Errno::IO);

        // A real permission error stays `ACCES` (unless running as root, who passes anyway).
        let scratch = Scratch::new();
        std::fs::write(scratch.host("locked"), b"").unwrap();
        std::fs::set_permissions(
            scratch.host("locked"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        if std::fs::File::open(scratch.host("locked")).is_err() {
            assert_eq!(scratch.directory.open("locked", &READ).unwrap_err(), Errno::ACCES);
        }
    }

    /// A directory of another implementation.
    #[derive(Debug)]
    struct Foreign;

    impl vfs::Directory for Foreign {
        fn open(&self, _: &str, _: &OpenOptions) -> Result<Node, Errno> {
            Err(Errno::NOSYS)
        }
        fn create_directory(&self, _: &str) -> Result<(), Errno> {
            Err(Errno::NOSYS)
        }
        fn remove_directory(&self, _: &str) -> Result<(), Errno> {
            Err(Errno::NOSYS)
        }
        fn remove_file(&self, _: &str) -> Result<(), Errno> {
            Err(Errno::NOSYS)
        }
        fn rename(&self, _: &str, _: &dyn vfs::Directory, _: &str) -> Result<(), Errno> {
            Err(Errno::NOSYS)
        }
        fn hard_link(&self, _: &str, _: &dyn vfs::Directory, _: &str) -> Result<(), Errno> {
            Err(Errno::NOSYS)
        }
        fn symlink(&self, _: &str, _: &str) -> Result<(), Errno> {
            Err(Errno::NOSYS)
        }
        fn read_link(&self, _: &str) -> Result<String, Errno> {
            Err(Errno::NOSYS)
        }
        fn metadata(&self, _: &str, _: Follow) -> Result<Metadata, Errno> {
            Err(Errno::NOSYS)
        }
        fn set_times(&self, _: &str, _: Follow, _: Timestamp, _: Timestamp) -> Result<(), Errno> {
            Err(Errno::NOSYS)
        }
        fn own_metadata(&self) -> Result<Metadata, Errno> {
            Err(Errno::NOSYS)
        }
        fn entries(&self) -> Result<Vec<DirectoryEntry>, Errno> {
            Err(Errno::NOSYS)
        }
        fn as_any(&self) -> &dyn core::any::Any {
            self
        }
    }

    #[test]
    fn opening_a_fifo_does_not_wait_for_its_writer() {
        let scratch = Scratch::new();
        let mode = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
        let fifo = rustix::fs::FileType::Fifo;
        rustix::fs::mknodat(rustix::fs::CWD, scratch.host("pipe"), fifo, mode, 0).unwrap();
        let directory = HostDirectory::open(&scratch.host("")).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        // On a thread: if the open waited for a writer, it would wait forever.
        std::thread::spawn(move || {
            let _ = sender
                .send(directory.open("pipe", &READ).map(|node| matches!(node, Node::File(_))));
        });
        let opened = receiver.recv_timeout(Duration::from_secs(10));
        assert_eq!(opened, Ok(Ok(true)), "opened at once, as a file");
    }
}
