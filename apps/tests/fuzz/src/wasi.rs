//! WASI preview 1 calls with random arguments: descriptors (the console, the preopened scratch
//! directory, files and directories the fuzzer opened in it, random numbers), paths in that
//! directory (escapes, symlinks, loops, bad UTF-8, long names), and pointers as for the
//! `nebulet` calls. Every errno must be one of preview 1 (0 to 76).
//!
//! The console (fds 0 to 2) and the preopen are never closed, renumbered or stripped of rights,
//! and writes to the console are at most one byte per iovec: the fuzzer still prints its report,
//! and the console gets dots, not noise. Clock waits in `poll_oneoff` end within a millisecond.

use nebulet_raw::wasi;

use crate::Fuzzer;
use crate::scratch::PAGE;

/// The WASI functions the fuzzer calls: every function of preview 1 but `proc_exit`.
pub const FUNCTIONS: [&str; 45] = [
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// Descriptors the fuzzer opened and keeps for later calls.
const OPEN: usize = 12;
/// No descriptor in a slot of [`Files::open`].
const EMPTY: u32 = u32::MAX;
/// The paths it uses, relative to a directory descriptor.
const PATHS: [&str; 20] = [
    "a",
    "b",
    "c.txt",
    "dir",
    "dir/a",
    "dir/sub",
    "dir/sub/deep",
    "link",
    "dirlink",
    "loop",
    ".",
    "..",
    "../outside",
    "/",
    "/etc/passwd",
    "dir/../a",
    "dir/../../outside",
    "a/",
    "",
    "fuzz.wasm",
];
/// The contents of the symlinks it makes.
pub(crate) const TARGETS: [&str; 9] =
    ["a", "dir", "..", "../outside", "/", "/etc", "loop", "link", "dir/../.."];
/// Offsets and sizes: small ones in a file's first MiB, and extremes.
const EXTREMES: [i64; 6] = [0, -1, i64::MIN, i64::MAX, 1 << 40, i64::MAX - 4096];

/// Whether a call reads into its iovecs' buffers or writes from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// The descriptor side of the fuzzer's WASI state.
#[derive(Debug)]
pub struct Files {
    /// The preopened scratch directory (`EMPTY` in copies, which have none).
    pub preopen: u32,
    open: [u32; OPEN],
}

impl Files {
    /// Finds the preopened directory: the first descriptor from 3 on that has a prestat.
    pub fn new() -> Self {
        let mut preopen = EMPTY;
        for fd in 3..16 {
            let mut prestat = [0u8; 8];
            if wasi::fd_prestat_get(fd, nebulet_raw::writable(&mut prestat)) == 0 {
                preopen = fd;
                break;
            }
        }
        Self { preopen, open: [EMPTY; OPEN] }
    }

    fn protected(&self, fd: u32) -> bool {
        fd <= 2 || fd == self.preopen
    }
}

impl Fuzzer {
    /// A descriptor: one it opened, the preopen, the console, a small number or any number.
    pub(crate) fn fd(&mut self) -> u32 {
        match self.random.weighted(&[45, 20, 10, 15, 10]) {
            0 => self.files.open[self.random.below(OPEN as u64) as usize],
            1 => self.files.preopen,
            2 => self.random.below32(3),
            3 => self.random.below32(24),
            _ => self.random.u32(),
        }
    }

    /// A descriptor the call may close, move or restrict: never the console or the preopen.
    pub(crate) fn expendable_fd(&mut self) -> u32 {
        let fd = self.fd();
        if self.files.protected(fd) { self.files.open[0] } else { fd }
    }

    /// A directory descriptor for a path call: mostly the preopen.
    pub(crate) fn directory_fd(&mut self) -> u32 {
        if self.random.percent(75) { self.files.preopen } else { self.fd() }
    }

    /// A path: one of `PATHS`, a long name, bad UTF-8, or any pointer and length.
    pub(crate) fn path(&mut self) -> (u32, u32) {
        match self.random.weighted(&[80, 5, 5, 10]) {
            0 => {
                let path = self.random.pick(&PATHS);
                self.scratch_text(path.as_bytes())
            }
            1 => self.scratch_text(&[b'n'; 300]),
            2 => self.scratch_text(b"a\xff\xfe"),
            _ => (self.readable(), self.length()),
        }
    }

    pub(crate) fn offset(&mut self) -> i64 {
        if self.random.percent(70) {
            self.random.below(1 << 20) as i64
        } else {
            self.random.pick(&EXTREMES)
        }
    }

    pub(crate) fn time(&mut self) -> i64 {
        match self.random.weighted(&[40, 30, 30]) {
            0 => 1_700_000_000_000_000_000 + self.random.below(1 << 40) as i64,
            1 => self.random.pick(&EXTREMES),
            _ => self.random.next() as i64,
        }
    }

    /// An iovec array for `fd`: `(address, count)`. Buffers lie in the scratch page (the kernel
    /// may write them) or outside memory. The array itself lies anywhere only for writes to
    /// files: for reads its entries would let the kernel write anywhere in the fuzzer's memory,
    /// and for the console each buffer must be at most one dot.
    pub(crate) fn io_vectors(&mut self, fd: u32, direction: Direction) -> (u32, u32) {
        let console = fd == 1 || fd == 2;
        let anywhere = direction == Direction::Write && !console;
        let count = match self.random.weighted(&[10, 75, 10, 5]) {
            0 => 0,
            1 => 1 + self.random.below32(4),
            2 => 1025 + self.random.below32(8),
            _ => self.random.u32(),
        };
        if count > 8 || self.random.percent(5) {
            let array = if anywhere {
                self.readable()
            } else {
                self.scratch.end() + self.random.below32(64)
            };
            return (array, count);
        }
        let address = self.scratch_place(count * 8);
        for index in 0..count {
            let (buffer, length) = if console {
                let (dot, _) = self.scratch_text(b".");
                (dot, self.random.below32(2))
            } else {
                let length = match self.random.weighted(&[20, 60, 20]) {
                    0 => 0,
                    1 => self.random.below32(4096),
                    _ => self.random.below32(PAGE + 1),
                };
                let buffer = if self.random.percent(90) {
                    self.scratch_place(length.min(PAGE))
                } else {
                    self.writable(length, false)
                };
                (buffer, length)
            };
            self.scratch.write(address + index * 8, &buffer.to_le_bytes());
            self.scratch.write(address + index * 8 + 4, &length.to_le_bytes());
        }
        (address, count)
    }

    /// Keeps a descriptor a call opened, closing the one it displaces.
    pub(crate) fn keep_fd(&mut self, out: u32) {
        if !self.scratch.contains(out, 4) {
            return;
        }
        let fd = self.scratch.read_u32(out);
        let slot = self.random.below(OPEN as u64) as usize;
        let old = core::mem::replace(&mut self.files.open[slot], fd);
        if old != EMPTY
            && old != fd
            && !self.files.protected(old)
            && !self.files.open.contains(&old)
        {
            let _ = wasi::fd_close(old);
        }
    }

    /// Calls WASI function `index` of [`FUNCTIONS`] with random arguments; its errno.
    pub fn wasi_call(&mut self, index: usize) -> i32 {
        let name = FUNCTIONS[index];
        match name {
            "args_get" | "environ_get" => {
                let pointers = if self.random.percent(70) {
                    self.scratch_place(64)
                } else {
                    self.writable(64, false)
                };
                let buffer = if self.random.percent(70) {
                    self.scratch_place(1024)
                } else {
                    self.writable(1024, false)
                };
                self.note(&[pointers.into(), buffer.into()]);
                if name == "args_get" {
                    wasi::args_get(pointers, buffer)
                } else {
                    wasi::environ_get(pointers, buffer)
                }
            }
            "args_sizes_get" | "environ_sizes_get" => {
                let (count, size) = (self.writable(4, true), self.writable(4, true));
                self.note(&[count.into(), size.into()]);
                if name == "args_sizes_get" {
                    wasi::args_sizes_get(count, size)
                } else {
                    wasi::environ_sizes_get(count, size)
                }
            }
            "clock_res_get" | "clock_time_get" => {
                let clock = if self.random.percent(80) {
                    self.random.below32(6)
                } else {
                    self.random.u32()
                };
                let out = self.writable(8, true);
                let precision = self.random.next() as i64;
                self.note(&[clock.into(), precision, out.into()]);
                if name == "clock_res_get" {
                    wasi::clock_res_get(clock, out)
                } else {
                    wasi::clock_time_get(clock, precision, out)
                }
            }
            "random_get" => {
                let length = self.length();
                let buffer = self.writable(length.min(PAGE), true);
                self.note(&[buffer.into(), length.into()]);
                wasi::random_get(buffer, length)
            }
            "proc_raise" => {
                let signal = self.random.below32(40);
                self.note(&[signal.into()]);
                wasi::proc_raise(signal)
            }
            "sched_yield" => {
                self.note(&[]);
                wasi::sched_yield()
            }
            "poll_oneoff" => self.poll(),
            name if name.starts_with("sock_") => self.socket_call(name),
            name if name.starts_with("path_") => self.path_call(name),
            name => self.fd_call(name),
        }
    }

    /// A `poll_oneoff` whose clock subscriptions end within a millisecond.
    fn poll(&mut self) -> i32 {
        const SIZE: u32 = 48;
        let count = match self.random.weighted(&[10, 80, 10]) {
            0 => 0,
            1 => 1 + self.random.below32(4),
            _ => self.random.u32(),
        };
        let events = self.writable(count.saturating_mul(32).min(PAGE), false);
        let out = self.writable(4, false);
        if count > 4 {
            let subscriptions = self.readable();
            self.note(&[subscriptions.into(), events.into(), count.into(), out.into()]);
            return wasi::poll_oneoff(subscriptions, events, count, out);
        }
        let subscriptions = self.scratch_place(count * SIZE);
        for index in 0..count {
            let mut entry = [0u8; SIZE as usize];
            entry[..8].copy_from_slice(&self.random.next().to_le_bytes());
            let tag = self.random.weighted(&[50, 20, 20, 10]) as u8;
            entry[8] = if tag == 3 { 3 + self.random.below(250) as u8 } else { tag };
            if tag == 0 {
                // A clock: relative, or absolute on the monotonic clock, within a millisecond;
                // or absolute at time 0 (passed) on any clock.
                let clock = if self.random.percent(80) {
                    self.random.below32(4)
                } else {
                    self.random.u32()
                };
                entry[16..20].copy_from_slice(&clock.to_le_bytes());
                let (timeout, flags) = match self.random.below(3) {
                    0 => (self.random.below(1_000_000), 0u16),
                    1 => ((nebulet_raw::now().max(0) as u64) + self.random.below(1_000_000), 1),
                    _ => (0, 1),
                };
                let clock_is_monotonic = clock == 1;
                let (timeout, flags) =
                    if flags == 1 && !clock_is_monotonic { (0, 1) } else { (timeout, flags) };
                entry[24..32].copy_from_slice(&timeout.to_le_bytes());
                entry[32..40].copy_from_slice(&self.random.next().to_le_bytes());
                entry[40..42].copy_from_slice(&flags.to_le_bytes());
            } else {
                let fd = self.fd();
                entry[16..20].copy_from_slice(&fd.to_le_bytes());
            }
            self.scratch.write(subscriptions + index * SIZE, &entry);
        }
        self.note(&[subscriptions.into(), events.into(), count.into(), out.into()]);
        wasi::poll_oneoff(subscriptions, events, count, out)
    }

    fn socket_call(&mut self, name: &str) -> i32 {
        let fd = self.fd();
        let (first, second, third) = (self.random.u32(), self.random.u32(), self.random.u32());
        let (out, other) = (self.writable(4, true), self.writable(4, true));
        self.note(&[fd.into(), first.into(), second.into(), third.into()]);
        match name {
            "sock_accept" => wasi::sock_accept(fd, first, out),
            "sock_recv" => wasi::sock_recv(fd, first, second, third, out, other),
            "sock_send" => wasi::sock_send(fd, first, second, third, out),
            _ => wasi::sock_shutdown(fd, first),
        }
    }
}
