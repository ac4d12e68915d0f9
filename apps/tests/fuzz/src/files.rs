//! The WASI `fd_*` and `path_*` calls of the fuzzer, with the descriptors and paths of
//! [`crate::wasi`].

use nebulet_raw::wasi;

use crate::Fuzzer;
use crate::scratch::PAGE;
use crate::wasi::Direction;

/// WASI rights: all of preview 1's.
const ALL_RIGHTS: i64 = (1 << 29) - 1;
/// Plain files the steered `path_open` opens or creates.
const FILES: [&str; 4] = ["a", "b", "c.txt", "dir/a"];

impl Fuzzer {
    fn rights_mask(&mut self) -> i64 {
        match self.random.weighted(&[30, 10, 40, 20]) {
            0 => ALL_RIGHTS,
            1 => 0,
            2 => (self.random.next() as i64) & ALL_RIGHTS,
            _ => self.random.next() as i64,
        }
    }

    fn small_flags(&mut self, bits: u32) -> u32 {
        if self.random.percent(85) { self.random.below32(1 << bits) } else { self.random.u32() }
    }

    pub(crate) fn fd_call(&mut self, name: &str) -> i32 {
        match name {
            "fd_close" | "fd_datasync" | "fd_sync" => {
                let fd = if name == "fd_close" { self.expendable_fd() } else { self.fd() };
                self.note(&[fd.into()]);
                match name {
                    "fd_close" => wasi::fd_close(fd),
                    "fd_datasync" => wasi::fd_datasync(fd),
                    _ => wasi::fd_sync(fd),
                }
            }
            "fd_advise" | "fd_allocate" => {
                let (fd, offset, length) = (self.fd(), self.offset(), self.offset());
                let advice = self.random.below32(8);
                self.note(&[fd.into(), offset, length, advice.into()]);
                if name == "fd_advise" {
                    wasi::fd_advise(fd, offset, length, advice)
                } else {
                    wasi::fd_allocate(fd, offset, length)
                }
            }
            "fd_fdstat_get" | "fd_filestat_get" | "fd_prestat_get" | "fd_tell" => {
                let fd = self.fd();
                let out = self.writable(64, false);
                self.note(&[fd.into(), out.into()]);
                match name {
                    "fd_fdstat_get" => wasi::fd_fdstat_get(fd, out),
                    "fd_filestat_get" => wasi::fd_filestat_get(fd, out),
                    "fd_prestat_get" => wasi::fd_prestat_get(fd, out),
                    _ => wasi::fd_tell(fd, out),
                }
            }
            "fd_fdstat_set_flags" => {
                let (fd, flags) = (self.fd(), self.small_flags(5));
                self.note(&[fd.into(), flags.into()]);
                wasi::fd_fdstat_set_flags(fd, flags)
            }
            "fd_fdstat_set_rights" => {
                let fd = self.expendable_fd();
                let (base, inheriting) = (self.rights_mask(), self.rights_mask());
                self.note(&[fd.into(), base, inheriting]);
                wasi::fd_fdstat_set_rights(fd, base, inheriting)
            }
            "fd_filestat_set_size" => {
                let (fd, size) = (self.fd(), self.offset());
                self.note(&[fd.into(), size]);
                wasi::fd_filestat_set_size(fd, size)
            }
            "fd_filestat_set_times" => {
                let (fd, accessed, modified) = (self.fd(), self.time(), self.time());
                let flags = self.small_flags(4);
                self.note(&[fd.into(), accessed, modified, flags.into()]);
                wasi::fd_filestat_set_times(fd, accessed, modified, flags)
            }
            "fd_pread" | "fd_pwrite" | "fd_read" | "fd_write" => self.transfer(name),
            "fd_prestat_dir_name" => {
                let fd = self.fd();
                let length = self.random.below32(32);
                let buffer = self.writable(length, true);
                self.note(&[fd.into(), buffer.into(), length.into()]);
                wasi::fd_prestat_dir_name(fd, buffer, length)
            }
            "fd_readdir" => {
                let fd = self.fd();
                let length = match self.random.weighted(&[20, 60, 20]) {
                    0 => self.random.below32(24),
                    1 => self.random.below32(4096),
                    _ => self.length(),
                };
                let buffer = if length <= PAGE && self.random.percent(80) {
                    self.scratch_place(length)
                } else {
                    self.writable(length, false)
                };
                let cookie = if self.random.percent(80) {
                    self.random.below(8) as i64
                } else {
                    self.offset()
                };
                let out = self.writable(4, false);
                self.note(&[fd.into(), buffer.into(), length.into(), cookie, out.into()]);
                wasi::fd_readdir(fd, buffer, length, cookie, out)
            }
            "fd_renumber" => {
                let (from, to) = (self.expendable_fd(), self.expendable_fd());
                self.note(&[from.into(), to.into()]);
                wasi::fd_renumber(from, to)
            }
            "fd_seek" => {
                let (fd, offset) = (self.fd(), self.offset());
                let whence = if self.random.percent(90) {
                    self.random.below32(3)
                } else {
                    self.random.u32()
                };
                let out = self.writable(8, false);
                self.note(&[fd.into(), offset, whence.into(), out.into()]);
                wasi::fd_seek(fd, offset, whence, out)
            }
            other => unreachable!("`{other}` is not an fd_ function of the fuzzer"),
        }
    }

    /// `fd_read`, `fd_write`, `fd_pread` and `fd_pwrite`.
    fn transfer(&mut self, name: &str) -> i32 {
        let fd = self.fd();
        let direction = if name.ends_with("read") { Direction::Read } else { Direction::Write };
        let (iovs, count) = self.io_vectors(fd, direction);
        let offset = self.offset();
        let out = self.writable(4, false);
        self.note(&[fd.into(), iovs.into(), count.into(), offset, out.into()]);
        match name {
            "fd_pread" => wasi::fd_pread(fd, iovs, count, offset, out),
            "fd_pwrite" => wasi::fd_pwrite(fd, iovs, count, offset, out),
            "fd_read" => wasi::fd_read(fd, iovs, count, out),
            _ => wasi::fd_write(fd, iovs, count, out),
        }
    }

    pub(crate) fn path_call(&mut self, name: &str) -> i32 {
        let fd = self.directory_fd();
        let (path, length) = self.path();
        match name {
            "path_create_directory" | "path_remove_directory" | "path_unlink_file" => {
                self.note(&[fd.into(), path.into(), length.into()]);
                match name {
                    "path_create_directory" => wasi::path_create_directory(fd, path, length),
                    "path_remove_directory" => wasi::path_remove_directory(fd, path, length),
                    _ => wasi::path_unlink_file(fd, path, length),
                }
            }
            "path_filestat_get" => {
                let flags = self.small_flags(1);
                let out = self.writable(64, false);
                self.note(&[fd.into(), flags.into(), path.into(), length.into(), out.into()]);
                wasi::path_filestat_get(fd, flags, path, length, out)
            }
            "path_filestat_set_times" => {
                let flags = self.small_flags(1);
                let (accessed, modified, time_flags) =
                    (self.time(), self.time(), self.small_flags(4));
                self.note(&[
                    fd.into(),
                    flags.into(),
                    path.into(),
                    length.into(),
                    accessed,
                    modified,
                ]);
                wasi::path_filestat_set_times(
                    fd, flags, path, length, accessed, modified, time_flags,
                )
            }
            "path_link" | "path_rename" => {
                let other_fd = self.directory_fd();
                let (other, other_length) = self.path();
                let flags = self.small_flags(1);
                self.note(&[fd.into(), path.into(), length.into(), other_fd.into(), other.into()]);
                if name == "path_link" {
                    wasi::path_link(fd, flags, path, length, other_fd, other, other_length)
                } else {
                    wasi::path_rename(fd, path, length, other_fd, other, other_length)
                }
            }
            "path_open" => self.open(fd, path, length),
            "path_readlink" => {
                let capacity = self.random.below32(64);
                let buffer = self.writable(capacity, true);
                let out = self.writable(4, false);
                self.note(&[fd.into(), path.into(), length.into(), buffer.into(), capacity.into()]);
                wasi::path_readlink(fd, path, length, buffer, capacity, out)
            }
            "path_symlink" => {
                let (contents, contents_length) = if self.random.percent(85) {
                    let target = self.random.pick(&crate::wasi::TARGETS);
                    self.scratch_text(target.as_bytes())
                } else {
                    self.path()
                };
                self.note(&[contents.into(), contents_length.into(), fd.into(), path.into()]);
                wasi::path_symlink(contents, contents_length, fd, path, length)
            }
            other => unreachable!("`{other}` is not a path_ function of the fuzzer"),
        }
    }

    fn open(&mut self, fd: u32, path: u32, length: u32) -> i32 {
        let (mut fd, mut path, mut length) = (fd, path, length);
        let dirflags = self.small_flags(1);
        let (mut oflags, mut base, mut inheriting) =
            (self.small_flags(4), self.rights_mask(), self.rights_mask());
        let mut fdflags = self.small_flags(5);
        let mut out = self.writable(4, false);
        if self.random.percent(40) {
            // Steered: a plain file in the preopen, created if need be, with every right, so
            // the calls on descriptors have files to work on.
            fd = self.files.preopen;
            let file = self.random.pick(&FILES);
            (path, length) = self.scratch_text(file.as_bytes());
            (oflags, base, inheriting, fdflags) = (1, ALL_RIGHTS, ALL_RIGHTS, 0);
            out = self.scratch_place(4);
        }
        self.note(&[fd.into(), dirflags.into(), path.into(), oflags.into(), base, fdflags.into()]);
        let errno =
            wasi::path_open(fd, dirflags, path, length, oflags, base, inheriting, fdflags, out);
        if errno == 0 {
            self.keep_fd(out);
        }
        errno
    }
}
