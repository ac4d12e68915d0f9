//! The WASI file-descriptor table of a process, shared by its threads.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::vfs::{Directory, Errno, File, FileType, Preopens};

/// WASI rights bits this layer looks at.
pub(super) mod rights {
    pub(crate) const FD_READ: u64 = 1 << 1;
    pub(crate) const FD_SEEK: u64 = 1 << 2;
    pub(crate) const FD_TELL: u64 = 1 << 5;
    pub(crate) const FD_WRITE: u64 = 1 << 6;
    pub(crate) const FD_ALLOCATE: u64 = 1 << 8;
    pub(crate) const FD_READDIR: u64 = 1 << 14;
    pub(crate) const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    /// Every right preview 1 defines (bits 0..=29).
    pub(crate) const ALL: u64 = (1 << 30) - 1;
}

/// `fdflags.append`.
pub(super) const APPEND: u16 = 1;

/// What a descriptor refers to.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Stdin,
    Stdout,
    Stderr,
    File { file: Arc<dyn File>, readable: bool, writable: bool },
    Directory { directory: Arc<dyn Directory>, preopen: Option<String> },
}

#[derive(Debug, Clone)]
pub(super) struct Descriptor {
    pub(super) kind: Kind,
    pub(super) position: u64,
    pub(super) flags: u16,
    pub(super) rights_base: u64,
    pub(super) rights_inheriting: u64,
    /// A directory's listing, read when `fd_readdir` starts at cookie 0 and reused for the
    /// cookies after it, so reading a directory in pieces does not list it again each time.
    pub(super) listing: Option<Arc<Vec<(String, FileType, u64)>>>,
}

impl Descriptor {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            position: 0,
            flags: 0,
            rights_base: rights::ALL,
            rights_inheriting: rights::ALL,
            listing: None,
        }
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
            let mut console = Descriptor::new(kind);
            // A terminal cannot seek: wasi-libc's isatty() looks for exactly this.
            console.rights_base &= !(rights::FD_SEEK | rights::FD_TELL);
            table.insert(fd, console);
        }
        for (index, (name, directory)) in preopens.into_iter().enumerate() {
            table.insert(
                3 + index as u32,
                Descriptor::new(Kind::Directory { directory, preopen: Some(name) }),
            );
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
    pub(super) fn insert(
        &mut self,
        kind: Kind,
        flags: u16,
        rights_base: u64,
        rights_inheriting: u64,
    ) -> Result<u32, Errno> {
        if self.table.len() >= DESCRIPTOR_LIMIT {
            return Err(Errno::MFILE);
        }
        let fd = (0..).find(|fd| !self.table.contains_key(fd)).ok_or(Errno::MFILE)?;
        let mut descriptor = Descriptor::new(kind);
        descriptor.flags = flags;
        descriptor.rights_base = rights_base;
        descriptor.rights_inheriting = rights_inheriting;
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
