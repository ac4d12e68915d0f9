//! WASI `poll_oneoff`: clock subscriptions sleep; a socket's fd subscriptions wait for its
//! signals; others are ready at once (files are always readable and writable, and a console
//! read or write blocks only the calling thread).

use alloc::vec::Vec;

use wasmtime::Caller;

use nebulet_abi::Signals;

use super::clock_now;
use super::fds::Kind;
use crate::objects::Object;
use crate::runner::ThreadContext;
use crate::syscalls::with_call;
use crate::vfs::Errno;

const SUBSCRIPTION_SIZE: u32 = 48;
const EVENT_SIZE: u32 = 32;

/// The most subscriptions one call takes; more is `EINVAL`, as Linux's `poll` refuses more
/// descriptors than `RLIMIT_NOFILE`. Bounds the work of one call.
const SUBSCRIPTIONS_MAX: u32 = 1 << 16;

/// What the kernel holds for each subscription while the call runs (its copy, its outcome,
/// and what it waits on), charged to the caller's memory until the call returns: a poll of
/// many subscriptions on each of many threads is paid for like any other memory.
const SUBSCRIPTION_COST: u64 = 128;

/// One subscription's outcome: its userdata, its kind, its error, and for a socket whether
/// its peer hung up.
struct Ready {
    userdata: u64,
    kind: u8,
    error: u16,
    hangup: bool,
}

/// An fd subscription on a socket or listener: ready once the object asserts one of `signals`.
struct Waiting {
    userdata: u64,
    kind: u8,
    object: Object,
    signals: Signals,
}

/// What an fd subscription of `kind` (1 read, 2 write) on `fd` waits for, if it waits at all.
fn socket_signals(
    call: &crate::syscalls::Call<'_>,
    fd: u32,
    kind: u8,
) -> Option<(Object, Signals)> {
    let files = call.process.files.lock();
    let descriptor = files.get(fd).ok()?;
    let read = kind == 1;
    match &descriptor.kind {
        Kind::Socket { socket } => Some((
            Object::Socket(socket.clone()),
            if read {
                Signals::READABLE | Signals::PEER_CLOSED | Signals::PEER_WRITE_DISABLED
            } else {
                Signals::WRITABLE | Signals::PEER_CLOSED
            },
        )),
        Kind::Listener { listener } if read => {
            Some((Object::Listener(listener.clone()), Signals::READABLE | Signals::PEER_CLOSED))
        }
        _ => None,
    }
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

pub(super) async fn poll_oneoff(
    caller: &mut Caller<'_, ThreadContext>,
    subscriptions: u32,
    events: u32,
    count: u32,
    events_out: u32,
) -> Result<(), Errno> {
    if count == 0 || count > SUBSCRIPTIONS_MAX {
        return Err(Errno::INVAL);
    }
    let cost = u64::from(count) * SUBSCRIPTION_COST;
    let _held = caller
        .data()
        .process
        .budget
        .charge(crate::budget::Resource::Memory, cost)
        .map_err(|_| Errno::NOMEM)?;
    let (clocks, mut ready, sockets) = with_call(caller, |call| -> Result<_, Errno> {
        call.memory.check(events, count, EVENT_SIZE)?;
        call.memory.check(events_out, 1, 4)?;
        let length = count.checked_mul(SUBSCRIPTION_SIZE).ok_or(Errno::INVAL)?;
        let raw = call.memory.slice(subscriptions, length)?.to_vec();
        let now = call.kernel.platform.now();
        let mut clocks = Vec::new();
        let mut ready = Vec::new();
        let mut sockets = Vec::new();
        for entry in raw.chunks_exact(SUBSCRIPTION_SIZE as usize) {
            let userdata = u64_at(entry, 0);
            match entry[8] {
                0 => {
                    let clock = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]);
                    let timeout = u64_at(entry, 24).min(i64::MAX as u64) as i64;
                    let absolute = u16::from_le_bytes([entry[40], entry[41]]) & 1 != 0;
                    // Deadlines on the monotonic clock; an absolute one on another clock is
                    // converted by that clock's distance from now.
                    let deadline = match (absolute, clock) {
                        (false, _) => now.saturating_add(timeout),
                        (true, 1) => timeout,
                        (true, _) => now
                            .saturating_add(timeout.saturating_sub(clock_now(call, clock)? as i64)),
                    };
                    clocks.push((userdata, deadline));
                }
                kind @ (1 | 2) => {
                    let fd = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]);
                    if let Some((object, signals)) = socket_signals(call, fd, kind) {
                        sockets.push(Waiting { userdata, kind, object, signals });
                        continue;
                    }
                    let error = match call.process.files.lock().get(fd) {
                        Ok(_) => 0,
                        Err(errno) => errno.0,
                    };
                    ready.push(Ready { userdata, kind, error, hangup: false });
                }
                _ => return Err(Errno::INVAL),
            }
        }
        Ok((clocks, ready, sockets))
    })?;
    let platform = caller.data().kernel.platform.clone();
    let earliest = clocks.iter().map(|(_, deadline)| *deadline).min().unwrap_or(i64::MAX);
    let is_ready = |waiting: &Waiting| waiting.object.signals().intersects(waiting.signals);
    if ready.is_empty() && !sockets.iter().any(is_ready) {
        if sockets.is_empty() {
            crate::wait::sleep_until(&*platform, earliest).await;
        } else {
            let objects: Vec<(Object, Signals)> =
                sockets.iter().map(|waiting| (waiting.object.clone(), waiting.signals)).collect();
            let _ = crate::wait::wait_many(&*platform, &objects, earliest, || true).await;
        }
    }
    ready.extend(sockets.iter().filter(|waiting| is_ready(waiting)).map(|waiting| Ready {
        userdata: waiting.userdata,
        kind: waiting.kind,
        error: 0,
        hangup: waiting.object.signals().contains(Signals::PEER_CLOSED),
    }));
    let now = caller.data().kernel.platform.now();
    ready.extend(
        clocks.iter().filter(|(_, deadline)| *deadline <= now).map(|(userdata, _)| Ready {
            userdata: *userdata,
            kind: 0,
            error: 0,
            hangup: false,
        }),
    );
    with_call(caller, |call| -> Result<(), Errno> {
        for (index, event) in ready.iter().enumerate() {
            let mut record = [0u8; EVENT_SIZE as usize];
            record[0..8].copy_from_slice(&event.userdata.to_le_bytes());
            record[8..10].copy_from_slice(&event.error.to_le_bytes());
            record[10] = event.kind;
            // `fd_readwrite.flags`: `fd_readwrite_hangup`.
            record[24] = u8::from(event.hangup);
            call.memory.write(events + index as u32 * EVENT_SIZE, &record)?;
        }
        Ok(call.memory.write_u32(events_out, ready.len() as u32)?)
    })
}
