//! WASI preview 1 (`wasi_snapshot_preview1`), the part that std programs need at start-up.
//!
//! Provided: args, environ, clocks, random, fd_write and fd_fdstat_get on stdout/stderr (to the
//! console), poll_oneoff on clocks, sched_yield, proc_exit. Every other function of preview 1
//! is linked with its exact signature and returns `ENOSYS`, so any WASI program instantiates;
//! full WASI (files, directories, sockets) is a later layer over the same process state.

use alloc::boxed::Box;
use alloc::vec::Vec;

use wasmtime::{Caller, FuncType, Linker, Val, ValType};

use crate::guest_memory::GuestMemory;
use crate::runner::{ProcessExit, ThreadContext};
use crate::syscalls::{Call, with_call};

const MODULE: &str = "wasi_snapshot_preview1";

/// WASI errno values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
enum Errno {
    Badf = 8,
    Fault = 21,
    Inval = 28,
    Nosys = 52,
    Notsup = 58,
}

impl From<nebulet_abi::Error> for Errno {
    fn from(_: nebulet_abi::Error) -> Self {
        // The only failures of guest-memory access are pointers outside memory.
        Errno::Fault
    }
}

fn errno(result: Result<(), Errno>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(error) => error as i32,
    }
}

/// The functions of preview 1 this layer does not provide yet, with their signatures
/// (`i` = i32, `I` = i64); each returns `ENOSYS`.
const NOT_YET: &[(&str, &str)] = &[
    ("fd_advise", "iIIi"),
    ("fd_allocate", "iII"),
    ("fd_close", "i"),
    ("fd_datasync", "i"),
    ("fd_fdstat_set_flags", "ii"),
    ("fd_fdstat_set_rights", "iII"),
    ("fd_filestat_get", "ii"),
    ("fd_filestat_set_size", "iI"),
    ("fd_filestat_set_times", "iIIi"),
    ("fd_pread", "iiiIi"),
    ("fd_prestat_dir_name", "iii"),
    ("fd_pwrite", "iiiIi"),
    ("fd_read", "iiii"),
    ("fd_readdir", "iiiIi"),
    ("fd_renumber", "ii"),
    ("fd_seek", "iIii"),
    ("fd_sync", "i"),
    ("fd_tell", "ii"),
    ("path_create_directory", "iii"),
    ("path_filestat_get", "iiiii"),
    ("path_filestat_set_times", "iiiiIIi"),
    ("path_link", "iiiiiii"),
    ("path_open", "iiiiiIIii"),
    ("path_readlink", "iiiiii"),
    ("path_remove_directory", "iii"),
    ("path_rename", "iiiiii"),
    ("path_symlink", "iiiii"),
    ("path_unlink_file", "iii"),
    ("proc_raise", "i"),
    ("sock_accept", "iii"),
    ("sock_recv", "iiiiii"),
    ("sock_send", "iiiii"),
    ("sock_shutdown", "ii"),
];

pub(crate) fn link(linker: &mut Linker<ThreadContext>) -> wasmtime::Result<()> {
    for (name, params) in NOT_YET {
        let params =
            params.chars().map(|kind| if kind == 'I' { ValType::I64 } else { ValType::I32 });
        let ty = FuncType::new(linker.engine(), params, [ValType::I32]);
        linker.func_new(
            MODULE,
            name,
            ty,
            |_caller: Caller<'_, ThreadContext>, _params: &[Val], results: &mut [Val]| {
                results[0] = Val::I32(Errno::Nosys as i32);
                Ok(())
            },
        )?;
    }
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut caller: Caller<'_, ThreadContext>, count: u32, size: u32| {
            errno(with_call(&mut caller, |call| {
                let args = call.process.args.clone();
                sizes(call, &args, count, size)
            }))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_get",
        |mut caller: Caller<'_, ThreadContext>, pointers: u32, buffer: u32| {
            errno(with_call(&mut caller, |call| {
                let args = call.process.args.clone();
                strings(&mut call.memory, &args, pointers, buffer)
            }))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut caller: Caller<'_, ThreadContext>, count: u32, size: u32| {
            errno(with_call(&mut caller, |call| {
                let environment = call.process.environment.clone();
                sizes(call, &environment, count, size)
            }))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_get",
        |mut caller: Caller<'_, ThreadContext>, pointers: u32, buffer: u32| {
            errno(with_call(&mut caller, |call| {
                let environment = call.process.environment.clone();
                strings(&mut call.memory, &environment, pointers, buffer)
            }))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut caller: Caller<'_, ThreadContext>, clock: u32, out: u32| {
            errno(with_call(&mut caller, |call| {
                if clock > 3 {
                    return Err(Errno::Inval);
                }
                Ok(call.memory.write_u64(out, 1)?)
            }))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut caller: Caller<'_, ThreadContext>, clock: u32, _precision: i64, out: u32| {
            errno(with_call(&mut caller, |call| {
                let now = clock_now(call, clock)?;
                Ok(call.memory.write_u64(out, now)?)
            }))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut caller: Caller<'_, ThreadContext>, buffer: u32, length: u32| {
            errno(with_call(&mut caller, |call| {
                let bytes = call.memory.slice_mut(buffer, length)?;
                call.kernel.platform.fill_secure_random(bytes);
                Ok(())
            }))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, ThreadContext>,
         fd: u32,
         iovs: u32,
         iov_count: u32,
         written_out: u32| {
            errno(with_call(&mut caller, |call| fd_write(call, fd, iovs, iov_count, written_out)))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut caller: Caller<'_, ThreadContext>, fd: u32, out: u32| {
            errno(with_call(&mut caller, |call| {
                if fd > 2 {
                    return Err(Errno::Badf);
                }
                // filetype character_device (2), no flags, every right.
                let mut record = [0u8; 24];
                record[0] = 2;
                record[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
                record[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
                Ok(call.memory.write(out, &record)?)
            }))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_get",
        |_caller: Caller<'_, ThreadContext>, _fd: u32, _out: u32| {
            // No preopened directories (yet): the end of the list.
            Errno::Badf as i32
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_caller: Caller<'_, ThreadContext>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcessExit(code)))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "sched_yield",
        |_caller: Caller<'_, ThreadContext>, (): ()| {
            Box::new(async move {
                crate::wait::yield_once().await;
                0i32
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "poll_oneoff",
        |mut caller: Caller<'_, ThreadContext>,
         (subscriptions, events, count, events_out): (u32, u32, u32, u32)| {
            Box::new(async move {
                errno(poll_oneoff(&mut caller, subscriptions, events, count, events_out).await)
            })
        },
    )?;
    Ok(())
}

fn clock_now(call: &Call<'_>, clock: u32) -> Result<u64, Errno> {
    let now = match clock {
        0 => call.kernel.platform.realtime(),
        1 => call.kernel.platform.now(),
        2 | 3 => call.process.cpu_ns.load(core::sync::atomic::Ordering::Relaxed) as i64,
        _ => return Err(Errno::Inval),
    };
    Ok(now.max(0) as u64)
}

fn sizes(
    call: &mut Call<'_>,
    strings: &[alloc::string::String],
    count: u32,
    size: u32,
) -> Result<(), Errno> {
    let total: usize = strings.iter().map(|string| string.len() + 1).sum();
    call.memory.check(count, 1, 4)?;
    call.memory.check(size, 1, 4)?;
    call.memory.write_u32(count, strings.len() as u32)?;
    Ok(call.memory.write_u32(size, total as u32)?)
}

/// Writes NUL-terminated strings to `buffer` and their addresses to `pointers`.
fn strings(
    memory: &mut GuestMemory<'_>,
    strings: &[alloc::string::String],
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

fn fd_write(
    call: &mut Call<'_>,
    fd: u32,
    iovs: u32,
    iov_count: u32,
    written_out: u32,
) -> Result<(), Errno> {
    if fd != 1 && fd != 2 {
        return Err(Errno::Badf);
    }
    call.memory.check(written_out, 1, 4)?;
    let vectors = call.memory.read_u32s(iovs, iov_count.checked_mul(2).ok_or(Errno::Inval)?)?;
    // Check every vector first (a bad one writes nothing), then write each where it lies.
    for pair in vectors.chunks_exact(2) {
        call.memory.slice(pair[0], pair[1])?;
    }
    let mut written: u32 = 0;
    for pair in vectors.chunks_exact(2) {
        call.kernel.platform.console_write(call.memory.slice(pair[0], pair[1])?);
        written = written.saturating_add(pair[1]);
    }
    Ok(call.memory.write_u32(written_out, written)?)
}

const SUBSCRIPTION_SIZE: u32 = 48;
const EVENT_SIZE: u32 = 32;

/// One subscription's outcome: its userdata, its kind, and its error.
struct Ready {
    userdata: u64,
    kind: u8,
    error: u16,
}

/// `poll_oneoff` for clock subscriptions; fd subscriptions answer `ENOTSUP` at once for now.
async fn poll_oneoff(
    caller: &mut Caller<'_, ThreadContext>,
    subscriptions: u32,
    events: u32,
    count: u32,
    events_out: u32,
) -> Result<(), Errno> {
    if count == 0 {
        return Err(Errno::Inval);
    }
    let (clocks, immediate) = with_call(caller, |call| -> Result<_, Errno> {
        call.memory.check(events, count, EVENT_SIZE)?;
        call.memory.check(events_out, 1, 4)?;
        let raw = call
            .memory
            .slice(subscriptions, count.checked_mul(SUBSCRIPTION_SIZE).ok_or(Errno::Inval)?)?
            .to_vec();
        let now = call.kernel.platform.now();
        let mut clocks = Vec::new();
        let mut immediate = Vec::new();
        for entry in raw.chunks_exact(SUBSCRIPTION_SIZE as usize) {
            let userdata = u64::from_le_bytes(entry[0..8].try_into().map_err(|_| Errno::Inval)?);
            let kind = entry[8];
            if kind == 0 {
                let timeout =
                    u64::from_le_bytes(entry[24..32].try_into().map_err(|_| Errno::Inval)?);
                let flags = u16::from_le_bytes([entry[40], entry[41]]);
                let absolute = flags & 1 != 0;
                let clock = u32::from_le_bytes(entry[16..20].try_into().map_err(|_| Errno::Inval)?);
                let timeout = timeout.min(i64::MAX as u64) as i64;
                // Deadlines on the monotonic clock; an absolute one on another clock is
                // converted by that clock's distance from now.
                let deadline = match (absolute, clock) {
                    (false, _) => now.saturating_add(timeout),
                    (true, 1) => timeout,
                    (true, _) => {
                        now.saturating_add(timeout.saturating_sub(clock_now(call, clock)? as i64))
                    }
                };
                clocks.push((userdata, deadline));
            } else {
                immediate.push(Ready { userdata, kind, error: Errno::Notsup as u16 });
            }
        }
        Ok((clocks, immediate))
    })?;
    let mut ready = immediate;
    if ready.is_empty() {
        let platform = caller.data().kernel.platform.clone();
        let earliest = clocks.iter().map(|(_, deadline)| *deadline).min().unwrap_or(i64::MAX);
        crate::wait::sleep_until(&*platform, earliest).await;
        let now = platform.now();
        ready.extend(
            clocks.iter().filter(|(_, deadline)| *deadline <= now).map(|(userdata, _)| Ready {
                userdata: *userdata,
                kind: 0,
                error: 0,
            }),
        );
    }
    with_call(caller, |call| -> Result<(), Errno> {
        for (index, event) in ready.iter().enumerate() {
            let mut record = [0u8; EVENT_SIZE as usize];
            record[0..8].copy_from_slice(&event.userdata.to_le_bytes());
            record[8..10].copy_from_slice(&event.error.to_le_bytes());
            record[10] = event.kind;
            call.memory.write(events + index as u32 * EVENT_SIZE, &record)?;
        }
        Ok(call.memory.write_u32(events_out, ready.len() as u32)?)
    })
}
