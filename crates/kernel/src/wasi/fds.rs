//! The WASI file-descriptor table of a process, shared by its threads.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::rights::{self, Rights};
use crate::kernel::Stdio;
use crate::objects::listener::Listener;
use crate::objects::socket::SocketEnd;
use crate::vfs::{Directory, Errno, File, FileType, Preopens};

/// `fdflags`: `append`, `dsync`, `nonblock`, `rsync` and `sync`.
pub(super) const APPEND: u16 = 1;
pub(super) const DSYNC: u16 = 2;
pub(super) const NONBLOCK: u16 = 4;
pub(super) const RSYNC: u16 = 8;
pub(super) const SYNC: u16 = 16;

/// What a descriptor refers to.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Stdin,
    Stdout,
    Stderr,
    File {
        file: Arc<dyn File>,
    },
    Directory {
        directory: Arc<dyn Directory>,
        preopen: Option<String>,
    },
    /// A connected stream socket.
    Socket {
        socket: Arc<SocketEnd>,
    },
    /// A listening socket: `sock_accept` takes its connections.
    Listener {
        listener: Arc<Listener>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Descriptor {
    pub(super) kind: Kind,
    pub(super) position: u64,
    pub(super) flags: u16,
    pub(super) rights: Rights,
    /// A directory's listing, read when `fd_readdir` starts at cookie 0 and reused for the
    /// cookies after it, so reading a directory in pieces does not list it again each time.
    pub(super) listing: Option<Arc<Vec<(String, FileType, u64)>>>,
}

impl Descriptor {
    fn new(kind: Kind, rights: Rights) -> Self {
        Self { kind, position: 0, flags: 0, rights, listing: None }
    }

    /// The rights this kind of descriptor may hold, and may pass on (see [`super::rights`]).
    pub(super) fn applicable_rights(&self) -> (u64, u64) {
        match self.kind {
            Kind::Directory { .. } => (rights::DIRECTORY, rights::DIRECTORY | rights::FILE),
            Kind::Socket { .. } => (rights::SOCKET, 0),
            Kind::Listener { .. } => (rights::LISTENER, 0),
            _ => (rights::FILE, 0),
        }
    }

    /// The descriptor, if it holds every right in `needed` (see [`Rights::require`]).
    pub(super) fn with_rights(&self, needed: u64) -> Result<&Self, Errno> {
        self.rights.require(needed)?;
        Ok(self)
    }

    pub(super) fn file_type(&self) -> FileType {
        match &self.kind {
            Kind::Stdin | Kind::Stdout | Kind::Stderr => FileType::CharacterDevice,
            Kind::File { file, .. } => {
                file.metadata().map_or(FileType::RegularFile, |metadata| metadata.file_type)
            }
            Kind::Directory { .. } => FileType::Directory,
            Kind::Socket { .. } | Kind::Listener { .. } => FileType::SocketStream,
        }
    }

    pub(super) fn directory(&self) -> Result<&Arc<dyn Directory>, Errno> {
        match &self.kind {
            Kind::Directory { directory, .. } => Ok(directory),
            _ => Err(Errno::NOTDIR),
        }
    }

    /// The directory, if this is one that holds every right in `needed`.
    pub(super) fn directory_with(&self, needed: u64) -> Result<&Arc<dyn Directory>, Errno> {
        let directory = self.directory()?;
        self.rights.require(needed)?;
        Ok(directory)
    }
}

/// The most descriptors a process may hold open.
const DESCRIPTOR_LIMIT: usize = 4_096;

#[derive(Debug)]
pub(crate) struct Descriptors {
    /// Sorted by number. A vector, not a map: most processes hold only the three standard
    /// descriptors, which a map's smallest node (room for eleven, 936 bytes) holds at more than
    /// three times the size, in every idle process.
    table: Vec<(u32, Descriptor)>,
}

impl Descriptors {
    /// Stdin, stdout and stderr as 0, 1 and 2 (the console, or the sockets of `stdio`), then
    /// the listeners from 3 in order, then the preopens.
    pub(crate) fn new(
        stdio: Option<Stdio>,
        listeners: Vec<Arc<Listener>>,
        preopens: Preopens,
    ) -> Self {
        let mut table = Vec::with_capacity(3 + listeners.len() + preopens.len());
        match stdio {
            None => {
                for (fd, kind) in [(0, Kind::Stdin), (1, Kind::Stdout), (2, Kind::Stderr)] {
                    table.push((fd, Descriptor::new(kind, Rights::CONSOLE)));
                }
            }
            Some(Stdio { input, output, error }) => {
                for (fd, socket) in [(0, input), (1, output), (2, error)] {
                    table.push((fd, Descriptor::new(Kind::Socket { socket }, Rights::SOCKET)));
                }
            }
        }
        let granted =
            listeners.into_iter().map(|listener| (Kind::Listener { listener }, Rights::LISTENER));
        let directories = preopens.into_iter().map(|(name, directory)| {
            (Kind::Directory { directory, preopen: Some(name) }, Rights::PREOPEN)
        });
        for (index, (kind, rights)) in granted.chain(directories).enumerate() {
            table.push((3 + index as u32, Descriptor::new(kind, rights)));
        }
        Self { table }
    }

    /// Where `fd` is in the table, or where it would go.
    fn position(&self, fd: u32) -> Result<usize, usize> {
        self.table.binary_search_by_key(&fd, |(number, _)| *number)
    }

    pub(super) fn get(&self, fd: u32) -> Result<&Descriptor, Errno> {
        let index = self.position(fd).map_err(|_| Errno::BADF)?;
        Ok(&self.table[index].1)
    }

    pub(super) fn get_mut(&mut self, fd: u32) -> Result<&mut Descriptor, Errno> {
        let index = self.position(fd).map_err(|_| Errno::BADF)?;
        Ok(&mut self.table[index].1)
    }

    /// Takes every descriptor out, to close them (at the process's end).
    pub(crate) fn take_all(&mut self) -> Vec<(u32, Descriptor)> {
        core::mem::take(&mut self.table)
    }

    /// Whether one more descriptor fits.
    pub(super) fn has_room(&self) -> bool {
        self.table.len() < DESCRIPTOR_LIMIT
    }

    /// Adds a descriptor at the lowest free number.
    pub(super) fn insert(&mut self, kind: Kind, flags: u16, rights: Rights) -> Result<u32, Errno> {
        if self.table.len() >= DESCRIPTOR_LIMIT {
            return Err(Errno::MFILE);
        }
        // Numbers are sorted and distinct: the first place whose number is not its index is
        // where the lowest free number goes (the end if there is none).
        let index = self
            .table
            .iter()
            .enumerate()
            .position(|(index, (fd, _))| *fd as usize != index)
            .unwrap_or(self.table.len());
        let fd = u32::try_from(index).map_err(|_| Errno::MFILE)?;
        let mut descriptor = Descriptor::new(kind, rights);
        descriptor.flags = flags;
        self.table.insert(index, (fd, descriptor));
        Ok(fd)
    }

    pub(super) fn remove(&mut self, fd: u32) -> Result<Descriptor, Errno> {
        let index = self.position(fd).map_err(|_| Errno::BADF)?;
        Ok(self.table.remove(index).1)
    }

    /// Moves `from` to `to`, closing what `to` was; both must be open.
    pub(super) fn renumber(&mut self, from: u32, to: u32) -> Result<(), Errno> {
        if self.position(to).is_err() {
            return Err(Errno::BADF);
        }
        let descriptor = self.remove(from)?;
        match self.position(to) {
            // What `to` was is closed as it drops.
            Ok(index) => self.table[index].1 = descriptor,
            // `from` was `to`: it goes back.
            Err(index) => self.table.insert(index, (to, descriptor)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(descriptors: &Descriptors) -> Vec<u32> {
        descriptors.table.iter().map(|(fd, _)| *fd).collect()
    }

    #[test]
    fn new_descriptors_take_the_lowest_free_number_and_renumbering_closes_the_target() {
        let mut descriptors = Descriptors::new(None, Vec::new(), Vec::new());
        assert_eq!(numbers(&descriptors), [0, 1, 2]);
        assert_eq!(descriptors.insert(Kind::Stdout, 7, Rights::CONSOLE), Ok(3));
        assert_eq!(descriptors.insert(Kind::Stderr, 0, Rights::CONSOLE), Ok(4));
        descriptors.remove(1).unwrap();
        assert_eq!(descriptors.remove(1).err(), Some(Errno::BADF));
        assert_eq!(descriptors.insert(Kind::Stdin, 0, Rights::CONSOLE), Ok(1), "the gap first");
        assert_eq!(descriptors.insert(Kind::Stdin, 0, Rights::CONSOLE), Ok(5));
        // 3 (flags 7) replaces 0, and 3 is free again.
        descriptors.renumber(3, 0).unwrap();
        assert_eq!(numbers(&descriptors), [0, 1, 2, 4, 5]);
        assert_eq!(descriptors.get(0).unwrap().flags, 7);
        assert_eq!(descriptors.get(3).err(), Some(Errno::BADF));
        // Onto itself: nothing changes; onto a closed number: refused, nothing changes.
        descriptors.renumber(4, 4).unwrap();
        assert_eq!(descriptors.renumber(4, 3), Err(Errno::BADF));
        assert_eq!(numbers(&descriptors), [0, 1, 2, 4, 5]);
        assert_eq!(descriptors.take_all().len(), 5);
        assert_eq!(descriptors.insert(Kind::Stdin, 0, Rights::CONSOLE), Ok(0));
    }
}
