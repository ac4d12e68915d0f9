//! WASI preview 1 (`wasi_snapshot_preview1`) as a personality over the kernel's processes.
//!
//! The descriptor table belongs to the process (its threads share it); files and directories
//! come from the platform through [`crate::vfs`]; stdin, stdout and stderr are the console (or
//! sockets the host gives); sockets are the kernel's, granted by the host as listeners.
//! Every function of preview 1 is linked here, in one table; each returns a WASI errno (0 on
//! success), and a pointer outside the caller's memory is `EFAULT` with no side effect.

mod fd;
pub(crate) mod fds;
mod io;
mod path;
mod poll;
mod rights;
mod socket;

use alloc::string::String;

use wasmtime::{Caller, Linker};

use crate::guest_memory::GuestMemory;
use crate::runner::{ProcessExit, ThreadContext};
use crate::syscalls::{Call, link_blocking_calls, link_calls, with_call};
use crate::vfs::Errno;

pub(crate) use fds::Descriptors;

const MODULE: &str = "wasi_snapshot_preview1";

impl From<nebulet_abi::Error> for Errno {
    fn from(_: nebulet_abi::Error) -> Self {
        // The only failures of guest-memory access are pointers outside memory.
        Errno::FAULT
    }
}

fn errno(result: Result<(), Errno>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(error) => i32::from(error.0),
    }
}

pub(crate) fn link(linker: &mut Linker<ThreadContext>) -> wasmtime::Result<()> {
    link_calls! { linker, MODULE, errno,
        args_get(pointers: u32, buffer: u32) => args_get;
        args_sizes_get(count: u32, size: u32) => args_sizes_get;
        environ_get(pointers: u32, buffer: u32) => environ_get;
        environ_sizes_get(count: u32, size: u32) => environ_sizes_get;
        clock_res_get(clock: u32, out: u32) => clock_res_get;
        clock_time_get(clock: u32, precision: i64, out: u32) => clock_time_get;
        fd_advise(fd: u32, offset: i64, length: i64, advice: u32) => fd::advise;
        fd_allocate(fd: u32, offset: i64, length: i64) => fd::allocate;
        fd_close(fd: u32) => fd::close;
        fd_datasync(fd: u32) => fd::datasync;
        fd_sync(fd: u32) => fd::sync;
        fd_fdstat_get(fd: u32, out: u32) => fd::fdstat_get;
        fd_fdstat_set_flags(fd: u32, flags: u32) => fd::fdstat_set_flags;
        fd_fdstat_set_rights(fd: u32, base: i64, inheriting: i64) => fd::fdstat_set_rights;
        fd_filestat_get(fd: u32, out: u32) => fd::filestat_get;
        fd_filestat_set_size(fd: u32, size: i64) => fd::filestat_set_size;
        fd_filestat_set_times(fd: u32, accessed: i64, modified: i64, flags: u32) => fd::filestat_set_times;
        fd_prestat_get(fd: u32, out: u32) => fd::prestat_get;
        fd_prestat_dir_name(fd: u32, buffer: u32, length: u32) => fd::prestat_dir_name;
        fd_readdir(fd: u32, buffer: u32, length: u32, cookie: i64, out: u32) => fd::readdir;
        fd_renumber(from: u32, to: u32) => fd::renumber;
        fd_seek(fd: u32, offset: i64, whence: u32, out: u32) => fd::seek;
        fd_tell(fd: u32, out: u32) => fd::tell;
        path_create_directory(fd: u32, path: u32, length: u32) => path::create_directory;
        path_filestat_get(fd: u32, flags: u32, path: u32, length: u32, out: u32) => path::filestat_get;
        path_filestat_set_times(fd: u32, flags: u32, path: u32, length: u32, accessed: i64, modified: i64,
            time_flags: u32) => path::filestat_set_times;
        path_link(old_fd: u32, old_flags: u32, old_path: u32, old_length: u32, new_fd: u32, new_path: u32,
            new_length: u32) => path::link;
        path_open(fd: u32, dirflags: u32, path: u32, length: u32, oflags: u32, rights_base: i64,
            rights_inheriting: i64, fdflags: u32, out: u32) => path::open;
        path_readlink(fd: u32, path: u32, length: u32, buffer: u32, capacity: u32, out: u32) => path::readlink;
        path_remove_directory(fd: u32, path: u32, length: u32) => path::remove_directory;
        path_rename(fd: u32, old_path: u32, old_length: u32, new_fd: u32, new_path: u32, new_length: u32)
            => path::rename;
        path_symlink(contents: u32, contents_length: u32, fd: u32, path: u32, length: u32) => path::symlink;
        path_unlink_file(fd: u32, path: u32, length: u32) => path::unlink_file;
        proc_raise(signal: u32) => proc_raise;
        sock_shutdown(fd: u32, how: u32) => socket::sock_shutdown;
    }
    link_blocking_calls! { linker, MODULE, errno,
        fd_read(fd: u32, iovs: u32, count: u32, out: u32) => fd_read;
        fd_write(fd: u32, iovs: u32, count: u32, out: u32) => fd_write;
        fd_pread(fd: u32, iovs: u32, count: u32, offset: i64, out: u32) => fd_pread;
        fd_pwrite(fd: u32, iovs: u32, count: u32, offset: i64, out: u32) => fd_pwrite;
        poll_oneoff(subscriptions: u32, events: u32, count: u32, out: u32) => poll::poll_oneoff;
        sched_yield() => sched_yield;
        sock_accept(fd: u32, flags: u32, out: u32) => socket::sock_accept;
        sock_recv(fd: u32, data: u32, count: u32, flags: u32, out_length: u32, out_flags: u32) => sock_recv;
        sock_send(fd: u32, data: u32, count: u32, flags: u32, out_length: u32) => sock_send;
        random_get(buffer: u32, length: u32) => random_get;
    }
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_caller: Caller<'_, ThreadContext>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcessExit(code)))
        },
    )?;
    Ok(())
}

fn args_get(call: &mut Call<'_>, pointers: u32, buffer: u32) -> Result<(), Errno> {
    strings(&mut call.memory, &call.process.args, pointers, buffer)
}

fn args_sizes_get(call: &mut Call<'_>, count: u32, size: u32) -> Result<(), Errno> {
    sizes(&mut call.memory, &call.process.args, count, size)
}

fn environ_get(call: &mut Call<'_>, pointers: u32, buffer: u32) -> Result<(), Errno> {
    strings(&mut call.memory, &call.process.environment, pointers, buffer)
}

fn environ_sizes_get(call: &mut Call<'_>, count: u32, size: u32) -> Result<(), Errno> {
    sizes(&mut call.memory, &call.process.environment, count, size)
}

fn sizes(
    memory: &mut GuestMemory<'_>,
    strings: &[String],
    count: u32,
    size: u32,
) -> Result<(), Errno> {
    let total: usize = strings.iter().map(|string| string.len() + 1).sum();
    memory.check(count, 1, 4)?;
    memory.check(size, 1, 4)?;
    memory.write_u32(count, strings.len() as u32)?;
    Ok(memory.write_u32(size, total as u32)?)
}

/// Writes NUL-terminated strings to `buffer` and their addresses to `pointers`.
fn strings(
    memory: &mut GuestMemory<'_>,
    strings: &[String],
    pointers: u32,
    buffer: u32,
) -> Result<(), Errno> {
    let total: usize = strings.iter().map(|string| string.len() + 1).sum();
    memory.check(pointers, strings.len() as u32, 4)?;
    memory.check(buffer, 1, total as u32)?;
    let mut at = buffer;
    for (index, string) in strings.iter().enumerate() {
        memory.write_u32(pointers + 4 * index as u32, at)?;
        memory.write(at, string.as_bytes())?;
        memory.write(at + string.len() as u32, &[0])?;
        at += string.len() as u32 + 1;
    }
    Ok(())
}

/// The time on a WASI clock: 0 realtime, 1 monotonic, 2 process CPU time, 3 thread CPU time
/// (threads of a process share one CPU clock here).
pub(super) fn clock_now(call: &Call<'_>, clock: u32) -> Result<u64, Errno> {
    let now = match clock {
        0 => call.kernel.platform.realtime(),
        1 => call.kernel.platform.now(),
        2 | 3 => call.process.cpu_ns.load(core::sync::atomic::Ordering::Relaxed) as i64,
        _ => return Err(Errno::INVAL),
    };
    Ok(now.max(0) as u64)
}

fn clock_res_get(call: &mut Call<'_>, clock: u32, out: u32) -> Result<(), Errno> {
    clock_now(call, clock)?;
    Ok(call.memory.write_u64(out, 1)?)
}

fn clock_time_get(call: &mut Call<'_>, clock: u32, _precision: i64, out: u32) -> Result<(), Errno> {
    call.memory.check(out, 1, 8)?;
    let now = clock_now(call, clock)?;
    Ok(call.memory.write_u64(out, now)?)
}

/// Fills the buffer 64 KiB at a time, yielding in between: a buffer of gigabytes is bounded work
/// per run of the process, which can be killed or run out of CPU time meanwhile.
async fn random_get(
    caller: &mut Caller<'_, ThreadContext>,
    buffer: u32,
    length: u32,
) -> Result<(), Errno> {
    const CHUNK: u32 = 1 << 16;
    with_call(caller, |call| Ok::<_, Errno>(call.memory.check(buffer, 1, length)?))?;
    let mut done = 0;
    while done < length {
        let size = (length - done).min(CHUNK);
        with_call(caller, |call| {
            let bytes = call.memory.slice_mut(buffer + done, size)?;
            call.kernel.platform.fill_secure_random(bytes).map_err(|_| Errno::IO)
        })?;
        done += size;
        if done < length {
            crate::wait::yield_once().await;
        }
    }
    Ok(())
}

fn proc_raise(_call: &mut Call<'_>, _signal: u32) -> Result<(), Errno> {
    // Signals do not exist here (and WASI removed proc_raise after preview 1).
    Err(Errno::NOSYS)
}

async fn fd_read(
    caller: &mut Caller<'_, ThreadContext>,
    fd: u32,
    iovs: u32,
    count: u32,
    out: u32,
) -> Result<(), Errno> {
    io::read(caller, (fd, iovs, count, None, out)).await
}

async fn fd_write(
    caller: &mut Caller<'_, ThreadContext>,
    fd: u32,
    iovs: u32,
    count: u32,
    out: u32,
) -> Result<(), Errno> {
    io::write(caller, (fd, iovs, count, None, out)).await
}

async fn fd_pread(
    caller: &mut Caller<'_, ThreadContext>,
    fd: u32,
    iovs: u32,
    count: u32,
    offset: i64,
    out: u32,
) -> Result<(), Errno> {
    io::read(caller, (fd, iovs, count, Some(offset), out)).await
}

async fn fd_pwrite(
    caller: &mut Caller<'_, ThreadContext>,
    fd: u32,
    iovs: u32,
    count: u32,
    offset: i64,
    out: u32,
) -> Result<(), Errno> {
    io::write(caller, (fd, iovs, count, Some(offset), out)).await
}

async fn sched_yield(_caller: &mut Caller<'_, ThreadContext>) -> Result<(), Errno> {
    crate::wait::yield_once().await;
    Ok(())
}

async fn sock_recv(
    caller: &mut Caller<'_, ThreadContext>,
    fd: u32,
    data: u32,
    count: u32,
    flags: u32,
    length: u32,
    out_flags: u32,
) -> Result<(), Errno> {
    socket::sock_recv(caller, (fd, data, count, flags, length, out_flags)).await
}

async fn sock_send(
    caller: &mut Caller<'_, ThreadContext>,
    fd: u32,
    data: u32,
    count: u32,
    flags: u32,
    length: u32,
) -> Result<(), Errno> {
    socket::sock_send(caller, (fd, data, count, flags, length)).await
}

/// A path argument: UTF-8 inside memory.
pub(super) fn path_argument(
    memory: &GuestMemory<'_>,
    pointer: u32,
    length: u32,
) -> Result<String, Errno> {
    let bytes = memory.slice(pointer, length)?;
    core::str::from_utf8(bytes).map(String::from).map_err(|_| Errno(25))
}
