//! WASI preview 1 rights: what each kind of descriptor may hold, what a new descriptor gets,
//! and the errno of a call made without its right.
//!
//! As in the reference implementation (wasi-common and wasmtime's preview-1 adapter):
//! - A directory holds only directory rights ([`DIRECTORY`]); a file or the console only file
//!   rights ([`FILE`]). A right that does not apply to a descriptor's kind is masked off
//!   wherever it is asked for (`path_open`, `fd_fdstat_set_rights`), never refused.
//! - A directory's inheriting rights bound every descriptor opened through it: a child
//!   directory holds its parent's inheriting directory rights and inherits the same set; a file
//!   holds its parent's inheriting file rights. `path_open`'s requested base rights choose
//!   reading and writing: a file holds `fd_read` only if it was asked for, and `fd_write`,
//!   `fd_allocate` and `fd_filestat_set_size` only if one of them was (the file is then opened
//!   for writing). Other requested rights are not a limit, as in wasmtime's adapter, which
//!   reports every right but these for a file.
//! - A preopened directory holds every directory right and inherits every right: the values
//!   wasmtime reports, `0x7b7fe00` and `0xff7ffff`.
//! - `fd_fdstat_set_rights` only drops rights: asking for one the descriptor lacks is
//!   `ENOTCAPABLE`.
//! - A call on a descriptor of the wrong kind fails as before (for example `EBADF` for
//!   `fd_seek` on a directory); on the right kind without its right, it fails with `EBADF` for
//!   reading or writing (as POSIX does on a descriptor not open for it) and `ENOTCAPABLE`
//!   otherwise (the errno preview 1 defines for insufficient capabilities).

use crate::vfs::Errno;

pub(crate) const FD_DATASYNC: u64 = 1 << 0;
pub(crate) const FD_READ: u64 = 1 << 1;
pub(crate) const FD_SEEK: u64 = 1 << 2;
pub(crate) const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
pub(crate) const FD_SYNC: u64 = 1 << 4;
pub(crate) const FD_TELL: u64 = 1 << 5;
pub(crate) const FD_WRITE: u64 = 1 << 6;
pub(crate) const FD_ADVISE: u64 = 1 << 7;
pub(crate) const FD_ALLOCATE: u64 = 1 << 8;
pub(crate) const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
pub(crate) const PATH_CREATE_FILE: u64 = 1 << 10;
pub(crate) const PATH_LINK_SOURCE: u64 = 1 << 11;
pub(crate) const PATH_LINK_TARGET: u64 = 1 << 12;
pub(crate) const PATH_OPEN: u64 = 1 << 13;
pub(crate) const FD_READDIR: u64 = 1 << 14;
pub(crate) const PATH_READLINK: u64 = 1 << 15;
pub(crate) const PATH_RENAME_SOURCE: u64 = 1 << 16;
pub(crate) const PATH_RENAME_TARGET: u64 = 1 << 17;
pub(crate) const PATH_FILESTAT_GET: u64 = 1 << 18;
pub(crate) const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
pub(crate) const FD_FILESTAT_GET: u64 = 1 << 21;
pub(crate) const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
pub(crate) const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
pub(crate) const PATH_SYMLINK: u64 = 1 << 24;
pub(crate) const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
pub(crate) const PATH_UNLINK_FILE: u64 = 1 << 26;
pub(crate) const POLL_FD_READWRITE: u64 = 1 << 27;
pub(crate) const SOCK_SHUTDOWN: u64 = 1 << 28;
pub(crate) const SOCK_ACCEPT: u64 = 1 << 29;

/// The rights a connected socket may hold: bytes both ways, polling, flags, shutdown.
pub(crate) const SOCKET: u64 =
    FD_READ | FD_WRITE | FD_FDSTAT_SET_FLAGS | FD_FILESTAT_GET | POLL_FD_READWRITE | SOCK_SHUTDOWN;

/// The rights a listening socket may hold: accepting, polling, flags.
pub(crate) const LISTENER: u64 =
    SOCK_ACCEPT | FD_FDSTAT_SET_FLAGS | FD_FILESTAT_GET | POLL_FD_READWRITE;

/// The rights a file (or the console) may hold: those of the `fd_*` calls on bytes.
pub(crate) const FILE: u64 = FD_DATASYNC
    | FD_READ
    | FD_SEEK
    | FD_FDSTAT_SET_FLAGS
    | FD_SYNC
    | FD_TELL
    | FD_WRITE
    | FD_ADVISE
    | FD_ALLOCATE
    | FD_FILESTAT_GET
    | FD_FILESTAT_SET_SIZE
    | FD_FILESTAT_SET_TIMES
    | POLL_FD_READWRITE;

/// The rights a directory may hold. `path_filestat_set_size` is not among them (no call here
/// needs it: truncating is `path_open` with `oflags.trunc`), nor are the socket rights.
pub(crate) const DIRECTORY: u64 = PATH_CREATE_DIRECTORY
    | PATH_CREATE_FILE
    | PATH_LINK_SOURCE
    | PATH_LINK_TARGET
    | PATH_OPEN
    | FD_READDIR
    | PATH_READLINK
    | PATH_RENAME_SOURCE
    | PATH_RENAME_TARGET
    | PATH_FILESTAT_GET
    | PATH_FILESTAT_SET_TIMES
    | FD_FILESTAT_GET
    | FD_FILESTAT_SET_TIMES
    | PATH_SYMLINK
    | PATH_REMOVE_DIRECTORY
    | PATH_UNLINK_FILE;

/// The rights that need a file opened for writing.
pub(crate) const WRITING: u64 = FD_WRITE | FD_ALLOCATE | FD_FILESTAT_SET_SIZE;

/// What a descriptor holds: its base rights, and the rights descriptors opened through it may
/// get (none for a file or the console).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rights {
    pub(crate) base: u64,
    pub(crate) inheriting: u64,
}

impl Rights {
    /// A preopened directory: every directory right, and every right to pass on.
    pub(crate) const PREOPEN: Rights = Rights { base: DIRECTORY, inheriting: DIRECTORY | FILE };

    /// The console: file rights less seek and tell (wasi-libc's `isatty` looks for exactly
    /// that, with the character-device file type).
    pub(crate) const CONSOLE: Rights = Rights { base: FILE & !(FD_SEEK | FD_TELL), inheriting: 0 };

    /// A connected socket (accepted, or the standard streams of a process whose stdio the host
    /// gives as sockets).
    pub(crate) const SOCKET: Rights = Rights { base: SOCKET, inheriting: 0 };

    /// A listening socket the host grants.
    pub(crate) const LISTENER: Rights = Rights { base: LISTENER, inheriting: 0 };

    /// A directory opened through `self`.
    pub(crate) fn child_directory(self) -> Rights {
        Rights { base: self.inheriting & DIRECTORY, inheriting: self.inheriting }
    }

    /// A file opened through `self`, given what it is opened for.
    pub(crate) fn child_file(self, access: Access) -> Rights {
        let mut base = self.inheriting & FILE;
        if !access.read {
            base &= !FD_READ;
        }
        if !access.write {
            base &= !WRITING;
        } else if !access.write_bytes {
            base &= !FD_WRITE;
        }
        Rights { base, inheriting: 0 }
    }

    /// What `path_open` through `self` opens a file for, from the requested base rights: a
    /// right the directory cannot pass on is masked off first.
    pub(crate) fn access(self, requested: u64) -> Access {
        let granted = requested & self.inheriting;
        Access {
            read: granted & FD_READ != 0,
            write: granted & WRITING != 0,
            write_bytes: granted & FD_WRITE != 0,
        }
    }

    /// `fd_fdstat_set_rights`: the new rights, masked to what the descriptor's kind may hold
    /// (`applicable`, and for inheriting rights `passable`), if they add none.
    pub(crate) fn narrowed(
        self,
        base: u64,
        inheriting: u64,
        applicable: u64,
        passable: u64,
    ) -> Result<Rights, Errno> {
        let wanted = Rights { base: base & applicable, inheriting: inheriting & passable };
        if wanted.base & !self.base != 0 || wanted.inheriting & !self.inheriting != 0 {
            return Err(Errno::NOTCAPABLE);
        }
        Ok(wanted)
    }

    /// Whether `self` holds every right in `needed`, with the errno of a call that lacks one.
    pub(crate) fn require(self, needed: u64) -> Result<(), Errno> {
        let missing = needed & !self.base;
        if missing == 0 {
            Ok(())
        } else if missing & (FD_READ | FD_WRITE) != 0 {
            Err(Errno::BADF)
        } else {
            Err(Errno::NOTCAPABLE)
        }
    }
}

/// What a file is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    /// Reading (`fd_read`).
    pub(crate) read: bool,
    /// Writing of any kind (the host file is opened for writing).
    pub(crate) write: bool,
    /// Writing bytes (`fd_write`), not only resizing.
    pub(crate) write_bytes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preopens_hold_what_wasmtime_reports() {
        assert_eq!(Rights::PREOPEN.base, 0x7b7_fe00);
        assert_eq!(Rights::PREOPEN.inheriting, 0xff7_ffff);
        assert_eq!(DIRECTORY & FILE, FD_FILESTAT_GET | FD_FILESTAT_SET_TIMES);
    }

    #[test]
    fn children_get_what_the_parent_passes_on() {
        let directory = Rights::PREOPEN.child_directory();
        assert_eq!(directory, Rights::PREOPEN);
        let limited = Rights { base: DIRECTORY, inheriting: PATH_OPEN | FD_READ | FD_SEEK };
        assert_eq!(
            limited.child_directory(),
            Rights { base: PATH_OPEN, inheriting: limited.inheriting }
        );
        // Asking for writing through a directory that cannot pass it on opens read-only.
        let access = limited.access(FD_READ | FD_WRITE | PATH_OPEN);
        assert_eq!(access, Access { read: true, write: false, write_bytes: false });
        assert_eq!(limited.child_file(access), Rights { base: FD_READ | FD_SEEK, inheriting: 0 });
    }

    #[test]
    fn a_file_holds_reading_and_writing_only_as_asked() {
        let read_only = Rights::PREOPEN.access(FD_READ | PATH_FILESTAT_GET);
        let file = Rights::PREOPEN.child_file(read_only);
        assert_eq!(file.base & (FD_READ | WRITING | PATH_FILESTAT_GET), FD_READ);
        assert_eq!(file.base & FD_SEEK, FD_SEEK);
        let resize_only = Rights::PREOPEN.access(FD_FILESTAT_SET_SIZE);
        let file = Rights::PREOPEN.child_file(resize_only);
        assert_eq!(file.base & (FD_READ | WRITING), FD_ALLOCATE | FD_FILESTAT_SET_SIZE);
        let nothing = Rights::PREOPEN.child_file(Rights::PREOPEN.access(0));
        assert_eq!(nothing.base & (FD_READ | WRITING), 0);
        assert_eq!(nothing.inheriting, 0);
    }

    #[test]
    fn rights_are_narrowed_never_widened() {
        let file = Rights { base: FD_READ | FD_SEEK, inheriting: 0 };
        // Rights that do not apply are masked: a file inherits nothing, holds no path rights.
        let narrowed = file.narrowed(FD_SEEK | PATH_OPEN, FD_READ, FILE, 0);
        assert_eq!(narrowed, Ok(Rights { base: FD_SEEK, inheriting: 0 }));
        assert_eq!(file.narrowed(FD_SEEK | FD_WRITE, 0, FILE, 0), Err(Errno::NOTCAPABLE));
        let directory = Rights::PREOPEN;
        let narrowed =
            directory.narrowed(PATH_OPEN | FD_SEEK, FD_READ, DIRECTORY, DIRECTORY | FILE);
        assert_eq!(narrowed, Ok(Rights { base: PATH_OPEN, inheriting: FD_READ }));
        let narrowed = narrowed.unwrap();
        assert_eq!(
            narrowed.narrowed(PATH_OPEN, FD_WRITE, DIRECTORY, DIRECTORY | FILE),
            Err(Errno::NOTCAPABLE)
        );
    }

    #[test]
    fn a_missing_right_has_its_errno() {
        let rights = Rights { base: FD_SEEK, inheriting: 0 };
        assert_eq!(rights.require(FD_SEEK), Ok(()));
        assert_eq!(rights.require(FD_READ), Err(Errno::BADF));
        assert_eq!(rights.require(FD_WRITE | FD_SEEK), Err(Errno::BADF));
        assert_eq!(rights.require(FD_TELL), Err(Errno::NOTCAPABLE));
        assert_eq!(rights.require(0), Ok(()));
    }
}
