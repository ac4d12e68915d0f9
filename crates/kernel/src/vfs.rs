//! The file system WASI runs on: directories and files that a platform provides.
//!
//! The kernel core implements WASI preview 1 (fd tables, paths, rights) on these two traits;
//! the hosted platform implements them with `cap-std` over host directories, so a path can
//! never leave its directory (`..`, absolute paths and escaping symlinks are refused there).
//! Bare metal can plug in its own file store behind the same traits. Errors are WASI errnos.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// A WASI errno (`wasi_snapshot_preview1` numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u16);

#[expect(missing_docs, reason = "the names are WASI's errno names")]
impl Errno {
    pub const ACCES: Errno = Errno(2);
    pub const AGAIN: Errno = Errno(6);
    pub const BADF: Errno = Errno(8);
    pub const BUSY: Errno = Errno(10);
    pub const CONNABORTED: Errno = Errno(13);
    pub const EXIST: Errno = Errno(20);
    pub const FAULT: Errno = Errno(21);
    pub const FBIG: Errno = Errno(22);
    pub const INVAL: Errno = Errno(28);
    pub const IO: Errno = Errno(29);
    pub const ISDIR: Errno = Errno(31);
    pub const LOOP: Errno = Errno(32);
    pub const MFILE: Errno = Errno(33);
    pub const NAMETOOLONG: Errno = Errno(37);
    pub const NOENT: Errno = Errno(44);
    pub const NOBUFS: Errno = Errno(42);
    pub const NOMEM: Errno = Errno(48);
    pub const NOSPC: Errno = Errno(51);
    pub const NOSYS: Errno = Errno(52);
    pub const NOTCONN: Errno = Errno(53);
    pub const NOTDIR: Errno = Errno(54);
    pub const NOTEMPTY: Errno = Errno(55);
    pub const NOTSOCK: Errno = Errno(57);
    pub const NOTSUP: Errno = Errno(58);
    pub const OVERFLOW: Errno = Errno(61);
    pub const PERM: Errno = Errno(63);
    pub const PIPE: Errno = Errno(64);
    pub const ROFS: Errno = Errno(69);
    pub const SPIPE: Errno = Errno(70);
    pub const XDEV: Errno = Errno(75);
    pub const NOTCAPABLE: Errno = Errno(76);
}

/// WASI's `filetype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FileType {
    /// Not known.
    Unknown = 0,
    /// A block device.
    BlockDevice = 1,
    /// A character device (the console).
    CharacterDevice = 2,
    /// A directory.
    Directory = 3,
    /// A regular file.
    RegularFile = 4,
    /// A datagram socket.
    SocketDatagram = 5,
    /// A stream socket.
    SocketStream = 6,
    /// A symbolic link.
    SymbolicLink = 7,
}

/// WASI's `filestat`, less what the fd layer fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// The device id.
    pub device: u64,
    /// The inode number.
    pub inode: u64,
    /// The kind of file.
    pub file_type: FileType,
    /// The number of hard links.
    pub links: u64,
    /// The size in bytes.
    pub size: u64,
    /// Last access, nanoseconds since the Unix epoch.
    pub accessed: u64,
    /// Last modification, nanoseconds since the Unix epoch.
    pub modified: u64,
    /// Last status change, nanoseconds since the Unix epoch.
    pub changed: u64,
}

/// Whether a path's last component, if a symbolic link, is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Follow it (WASI `lookupflags.symlink_follow`).
    Symlinks,
    /// Act on the link itself.
    Nothing,
}

/// How `Directory::open` opens a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Create the file if it does not exist (`oflags.creat`).
    pub create: bool,
    /// Fail if it exists (`oflags.excl`, with `create`).
    pub exclusive: bool,
    /// Truncate it to 0 bytes (`oflags.trunc`).
    pub truncate: bool,
    /// It must be a directory (`oflags.directory`).
    pub directory: bool,
    /// Follow a symbolic link in the last component.
    pub follow: bool,
    /// Writes reach storage, data only, before they return (`fdflags.dsync`).
    pub sync_data: bool,
    /// Writes reach storage, data and metadata, before they return (`fdflags.sync` and
    /// `fdflags.rsync`).
    pub sync_all: bool,
}

/// A new time for `set_times`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// Leave it as it is.
    Unchanged,
    /// The current time.
    Now,
    /// Nanoseconds since the Unix epoch.
    At(u64),
}

/// What `Directory::open` opened.
#[derive(Debug, Clone)]
pub enum Node {
    /// A regular file (or anything read and written as bytes).
    File(Arc<dyn File>),
    /// A directory.
    Directory(Arc<dyn Directory>),
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The name within the directory.
    pub name: String,
    /// The kind of file.
    pub file_type: FileType,
    /// The inode number (0 if unknown).
    pub inode: u64,
}

/// A directory: every path is relative to it and must stay inside it.
pub trait Directory: Send + Sync + core::fmt::Debug {
    /// Opens (or creates) the file or directory at `path`.
    fn open(&self, path: &str, options: &OpenOptions) -> Result<Node, Errno>;
    /// Creates a directory.
    fn create_directory(&self, path: &str) -> Result<(), Errno>;
    /// Removes an empty directory.
    fn remove_directory(&self, path: &str) -> Result<(), Errno>;
    /// Removes a file or symbolic link.
    fn remove_file(&self, path: &str) -> Result<(), Errno>;
    /// Moves `from` to `to` inside `target` (which may be `self`). A `target` of another
    /// implementation gives `EXDEV`.
    fn rename(&self, from: &str, target: &dyn Directory, to: &str) -> Result<(), Errno>;
    /// Makes `to` inside `target` a hard link to `from`.
    fn hard_link(&self, from: &str, target: &dyn Directory, to: &str) -> Result<(), Errno>;
    /// Creates a symbolic link at `link` whose contents are `contents`.
    fn symlink(&self, contents: &str, link: &str) -> Result<(), Errno>;
    /// The contents of the symbolic link at `path`.
    fn read_link(&self, path: &str) -> Result<String, Errno>;
    /// The metadata of `path`.
    fn metadata(&self, path: &str, follow: Follow) -> Result<Metadata, Errno>;
    /// Sets the access and modification times of `path`.
    fn set_times(
        &self,
        path: &str,
        follow: Follow,
        accessed: Timestamp,
        modified: Timestamp,
    ) -> Result<(), Errno>;
    /// The metadata of the directory itself.
    fn own_metadata(&self) -> Result<Metadata, Errno>;
    /// The entries of the directory, without `.` and `..`, in a stable order.
    fn entries(&self) -> Result<Vec<DirectoryEntry>, Errno>;
    /// For `rename` and `hard_link` between two directories of the same implementation.
    fn as_any(&self) -> &dyn core::any::Any;
}

/// An open file: positioned reads and writes (the fd layer keeps the position).
pub trait File: Send + Sync + core::fmt::Debug {
    /// Reads at `offset`; 0 at the end.
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> Result<usize, Errno>;
    /// Writes at `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> Result<usize, Errno>;
    /// The file's metadata.
    fn metadata(&self) -> Result<Metadata, Errno>;
    /// Truncates or extends the file.
    fn set_size(&self, size: u64) -> Result<(), Errno>;
    /// Sets the access and modification times.
    fn set_times(&self, accessed: Timestamp, modified: Timestamp) -> Result<(), Errno>;
    /// Flushes data and metadata to storage.
    fn sync(&self) -> Result<(), Errno>;
}

/// The directories a process starts with, by the name it sees them under (WASI preopens).
pub type Preopens = Vec<(String, Arc<dyn Directory>)>;
