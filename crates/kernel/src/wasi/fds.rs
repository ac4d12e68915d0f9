//! The WASI file-descriptor table of a process, shared by its threads.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::rights::{self, Rights};
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
    File { file: Arc<dyn File> },
    Directory { directory: Arc<dyn Directory>, preopen: Option<String> },
}

#[derive(Debug, Clone)]
pub(super) struct Descriptor {
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
    table: BTreeMap<u32, Descriptor>,
}

impl Descriptors {
    /// Stdin, stdout and stderr as 0, 1 and 2, then the preopens from 3 in order.
    pub(crate) fn new(preopens: Preopens) -> Self {
        let mut table = BTreeMap::new();
        for (fd, kind) in [(0, Kind::Stdin), (1, Kind::Stdout), (2, Kind::Stderr)] {
            table.insert(fd, Descriptor::new(kind, Rights::CONSOLE));
        }
        for (index, (name, directory)) in preopens.into_iter().enumerate() {
            let kind = Kind::Directory { directory, preopen: Some(name) };
            table.insert(3 + index as u32, Descriptor::new(kind, Rights::PREOPEN));
        }
        Self { table }
    }

    pub(super) fn get(&self, fd: u32) -> Result<&Descriptor, Errno> {
        self.table.get(&fd).ok_or(Errno::BADF)
    }

    pub(super) fn get_mut(&mut self, fd: u32) -> Result<&mut Descriptor, Errno> {
        self.table.get_mut(&fd).ok_or(Errno::BADF)
    }

    /// Adds a descriptor at the lowest free number.
    pub(super) fn insert(&mut self, kind: Kind, flags: u16, rights: Rights) -> Result<u32, Errno> {
        if self.table.len() >= DESCRIPTOR_LIMIT {
            return Err(Errno::MFILE);
        }
        let fd = (0..).find(|fd| !self.table.contains_key(fd)).ok_or(Errno::MFILE)?;
        let mut descriptor = Descriptor::new(kind, rights);
        descriptor.flags = flags;
        self.table.insert(fd, descriptor);
        Ok(fd)
    }

    pub(super) fn remove(&mut self, fd: u32) -> Result<Descriptor, Errno> {
        self.table.remove(&fd).ok_or(Errno::BADF)
    }

    /// Moves `from` to `to`, closing what `to` was; both must be open.
    pub(super) fn renumber(&mut self, from: u32, to: u32) -> Result<(), Errno> {
        if !self.table.contains_key(&to) {
            return Err(Errno::BADF);
        }
        let descriptor = self.remove(from)?;
        self.table.insert(to, descriptor);
        Ok(())
    }
}
