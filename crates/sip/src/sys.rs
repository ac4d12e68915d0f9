//! The raw `nebulet` imports and thin safe wrappers over them.
//!
//! This is the only module of the crate that contains `unsafe` code. Each wrapper turns slices
//! into pointer/length pairs, out-pointers into return values and the `i32` status into a
//! `Result`. The wrappers take and return raw handle values and know nothing about ownership:
//! the rest of the crate builds [`Handle`](crate::Handle) and friends on them.
//!
//! The imports are declared exactly as in [`nebulet_abi::calls::CALLS`]: every `i32` parameter
//! is a `u32` value or a pointer (both lower to wasm `i32` on wasm32), every `i64` parameter is
//! an `i64`. Off wasm (host builds, for unit tests and docs) the same functions exist as stubs
//! that fail with `ERR_NOT_SUPPORTED`, so nothing outside this module needs a `cfg`.

use core::sync::atomic::AtomicU32;

use nebulet_abi::{Error, OK, RawHandle};

#[cfg(not(target_family = "wasm"))]
use host_stubs as raw;
#[cfg(target_family = "wasm")]
use imports as raw;

/// The `nebulet` import module, one declaration per entry of `nebulet_abi::calls::CALLS`.
#[cfg(target_family = "wasm")]
mod imports {
    #[link(wasm_import_module = "nebulet")]
    unsafe extern "C" {
        pub fn handle_close(handle: u32) -> i32;
        pub fn handle_duplicate(handle: u32, rights: u32, out_handle: *mut u32) -> i32;
        pub fn handle_replace(handle: u32, rights: u32, out_handle: *mut u32) -> i32;
        pub fn object_wait_one(
            handle: u32,
            signals: u32,
            deadline: i64,
            observed_out: *mut u32,
        ) -> i32;
        pub fn object_wait_many(items: *mut u8, count: u32, deadline: i64) -> i32;
        pub fn object_signal(handle: u32, clear_mask: u32, set_mask: u32) -> i32;
        pub fn object_get_info(
            handle: u32,
            topic: u32,
            buffer: *mut u8,
            length: u32,
            actual_out: *mut u32,
        ) -> i32;
        pub fn channel_create(out0: *mut u32, out1: *mut u32) -> i32;
        pub fn channel_write(
            handle: u32,
            bytes: *const u8,
            byte_count: u32,
            handles: *const u32,
            handle_count: u32,
        ) -> i32;
        pub fn channel_read(
            handle: u32,
            bytes: *mut u8,
            byte_capacity: u32,
            handles: *mut u32,
            handle_capacity: u32,
            actual_bytes_out: *mut u32,
            actual_handles_out: *mut u32,
        ) -> i32;
        pub fn socket_create(options: u32, out0: *mut u32, out1: *mut u32) -> i32;
        pub fn socket_write(
            handle: u32,
            bytes: *const u8,
            length: u32,
            actual_out: *mut u32,
        ) -> i32;
        pub fn socket_read(handle: u32, buffer: *mut u8, length: u32, actual_out: *mut u32) -> i32;
        pub fn socket_shutdown(handle: u32, options: u32) -> i32;
        pub fn listener_create(out_listener: *mut u32, out_connector: *mut u32) -> i32;
        pub fn listener_accept(handle: u32, out_socket: *mut u32) -> i32;
        pub fn connector_connect(handle: u32, out_socket: *mut u32) -> i32;
        pub fn event_create(out_handle: *mut u32) -> i32;
        pub fn timer_create(out_handle: *mut u32) -> i32;
        pub fn timer_set(handle: u32, deadline: i64) -> i32;
        pub fn timer_cancel(handle: u32) -> i32;
        pub fn clock_monotonic() -> i64;
        pub fn nanosleep(deadline: i64) -> i32;
        pub fn module_compile(bytes: *const u8, length: u32, out_handle: *mut u32) -> i32;
        pub fn process_create(
            module: u32,
            name: *const u8,
            name_length: u32,
            out_handle: *mut u32,
        ) -> i32;
        pub fn process_create_with(
            module: u32,
            name: *const u8,
            name_length: u32,
            options: u32,
            out_handle: *mut u32,
        ) -> i32;
        pub fn process_start(process: u32, bootstrap: u32) -> i32;
        pub fn process_bootstrap(out_handle: *mut u32) -> i32;
        pub fn process_kill(process: u32) -> i32;
        pub fn process_set_limit(process: u32, limit: u32, value: i64) -> i32;
        pub fn process_exit(code: i32) -> !;
        pub fn thread_yield() -> i32;
        pub fn futex_wait(address: *const u32, expected: u32, deadline: i64) -> i32;
        pub fn futex_wake(address: *const u32, count: u32, woken_out: *mut u32) -> i32;
        pub fn sched_lock() -> i32;
        pub fn sched_unlock() -> i32;
        pub fn watchdog_setup(tick_interval: i64) -> i32;
        pub fn watchdog_alive() -> i32;
        pub fn random_fill(buffer: *mut u8, length: u32) -> i32;
        pub fn cprng_fill(buffer: *mut u8, length: u32) -> i32;
        pub fn debug_write(buffer: *const u8, length: u32) -> i32;
        pub fn service_register(name: *const u8, name_length: u32, channel: u32) -> i32;
        pub fn service_connect(name: *const u8, name_length: u32, channel: u32) -> i32;
    }
}

/// Host stand-ins with the signatures of [`imports`]: every call fails with
/// `ERR_NOT_SUPPORTED`, except the clock (the host's monotonic clock) and `process_exit`.
#[cfg(not(target_family = "wasm"))]
mod host_stubs {
    #![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

    const NOT_SUPPORTED: i32 = nebulet_abi::Error::NotSupported.code();

    macro_rules! stubs {
        ($($name:ident($($param:ident: $type:ty),*);)*) => {
            $(pub unsafe fn $name($(_: $type),*) -> i32 { NOT_SUPPORTED })*
        };
    }

    stubs! {
        handle_close(handle: u32);
        handle_duplicate(handle: u32, rights: u32, out_handle: *mut u32);
        handle_replace(handle: u32, rights: u32, out_handle: *mut u32);
        object_wait_one(handle: u32, signals: u32, deadline: i64, observed_out: *mut u32);
        object_wait_many(items: *mut u8, count: u32, deadline: i64);
        object_signal(handle: u32, clear_mask: u32, set_mask: u32);
        object_get_info(handle: u32, topic: u32, buffer: *mut u8, length: u32, actual_out: *mut u32);
        channel_create(out0: *mut u32, out1: *mut u32);
        channel_write(handle: u32, bytes: *const u8, byte_count: u32, handles: *const u32, handle_count: u32);
        channel_read(
            handle: u32,
            bytes: *mut u8,
            byte_capacity: u32,
            handles: *mut u32,
            handle_capacity: u32,
            actual_bytes_out: *mut u32,
            actual_handles_out: *mut u32
        );
        socket_create(options: u32, out0: *mut u32, out1: *mut u32);
        socket_write(handle: u32, bytes: *const u8, length: u32, actual_out: *mut u32);
        socket_read(handle: u32, buffer: *mut u8, length: u32, actual_out: *mut u32);
        socket_shutdown(handle: u32, options: u32);
        listener_create(out_listener: *mut u32, out_connector: *mut u32);
        listener_accept(handle: u32, out_socket: *mut u32);
        connector_connect(handle: u32, out_socket: *mut u32);
        event_create(out_handle: *mut u32);
        timer_create(out_handle: *mut u32);
        timer_set(handle: u32, deadline: i64);
        timer_cancel(handle: u32);
        nanosleep(deadline: i64);
        module_compile(bytes: *const u8, length: u32, out_handle: *mut u32);
        process_create(module: u32, name: *const u8, name_length: u32, out_handle: *mut u32);
        process_create_with(module: u32, name: *const u8, name_length: u32, options: u32, out_handle: *mut u32);
        process_start(process: u32, bootstrap: u32);
        process_bootstrap(out_handle: *mut u32);
        process_kill(process: u32);
        process_set_limit(process: u32, limit: u32, value: i64);
        thread_yield();
        futex_wait(address: *const u32, expected: u32, deadline: i64);
        futex_wake(address: *const u32, count: u32, woken_out: *mut u32);
        sched_lock();
        sched_unlock();
        watchdog_setup(tick_interval: i64);
        watchdog_alive();
        random_fill(buffer: *mut u8, length: u32);
        cprng_fill(buffer: *mut u8, length: u32);
        debug_write(buffer: *const u8, length: u32);
        service_register(name: *const u8, name_length: u32, channel: u32);
        service_connect(name: *const u8, name_length: u32, channel: u32);
    }

    pub unsafe fn clock_monotonic() -> i64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
        i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
    }

    pub unsafe fn process_exit(code: i32) -> ! {
        std::process::exit(code)
    }
}

/// The result of a status code: `OK` is `Ok(())`, a known error code is that error, anything
/// else (a positive or unknown code, which the contract does not allow) is `ERR_INTERNAL`.
pub(crate) fn check(status: i32) -> Result<(), Error> {
    if status == OK { Ok(()) } else { Err(Error::from_code(status).unwrap_or(Error::Internal)) }
}

/// A slice length as the `u32` of the ABI (always fits on wasm32).
fn length(len: usize) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::InvalidArgs)
}

/// Runs a call that writes one handle through an out-pointer.
fn out_handle(call: impl FnOnce(*mut u32) -> i32) -> Result<RawHandle, Error> {
    let mut handle: RawHandle = 0;
    check(call(&raw mut handle))?;
    Ok(handle)
}

pub(crate) fn handle_close(handle: RawHandle) -> Result<(), Error> {
    // SAFETY: no pointers; the kernel validates the handle value.
    check(unsafe { raw::handle_close(handle) })
}

pub(crate) fn handle_duplicate(handle: RawHandle, rights: u32) -> Result<RawHandle, Error> {
    // SAFETY: `out` points to a live, writable `u32` for the duration of the call.
    out_handle(|out| unsafe { raw::handle_duplicate(handle, rights, out) })
}

pub(crate) fn handle_replace(handle: RawHandle, rights: u32) -> Result<RawHandle, Error> {
    // SAFETY: `out` points to a live, writable `u32` for the duration of the call.
    out_handle(|out| unsafe { raw::handle_replace(handle, rights, out) })
}

/// Waits; returns the status and the signals observed at wake-up (also on failure).
pub(crate) fn object_wait_one(
    handle: RawHandle,
    signals: u32,
    deadline: i64,
) -> (Result<(), Error>, u32) {
    let mut observed = 0u32;
    // SAFETY: `observed` is a live, writable `u32` for the duration of the call.
    let status = unsafe { raw::object_wait_one(handle, signals, deadline, &mut observed) };
    (check(status), observed)
}

/// Waits on `count` items encoded (12 bytes each, see `nebulet_abi::layout::WaitItem`) at the
/// start of `items`; the kernel fills their `pending` fields.
pub(crate) fn object_wait_many(items: &mut [u8], count: usize, deadline: i64) -> Result<(), Error> {
    let bytes = count.checked_mul(nebulet_abi::layout::WaitItem::SIZE).ok_or(Error::InvalidArgs)?;
    if bytes > items.len() {
        return Err(Error::InvalidArgs);
    }
    let count = length(count)?;
    // SAFETY: `items` is writable for `count * 12` bytes (checked above) during the call.
    check(unsafe { raw::object_wait_many(items.as_mut_ptr(), count, deadline) })
}

pub(crate) fn object_signal(
    handle: RawHandle,
    clear_mask: u32,
    set_mask: u32,
) -> Result<(), Error> {
    // SAFETY: no pointers; the kernel validates the handle and the masks.
    check(unsafe { raw::object_signal(handle, clear_mask, set_mask) })
}

/// Reads information of `topic` into `buffer`; returns the size of the record.
pub(crate) fn object_get_info(
    handle: RawHandle,
    topic: u32,
    buffer: &mut [u8],
) -> Result<usize, Error> {
    let len = length(buffer.len())?;
    let mut actual = 0u32;
    // SAFETY: `buffer` is writable for `len` bytes and `actual` is a live `u32` during the call.
    check(unsafe { raw::object_get_info(handle, topic, buffer.as_mut_ptr(), len, &mut actual) })?;
    Ok(actual as usize)
}

pub(crate) fn channel_create() -> Result<(RawHandle, RawHandle), Error> {
    let (mut first, mut second) = (0u32, 0u32);
    // SAFETY: both out-pointers are live, distinct, writable `u32`s during the call.
    check(unsafe { raw::channel_create(&mut first, &mut second) })?;
    Ok((first, second))
}

/// Makes a pair: a socket's two ends (`socket_create`), or a listener and its connector.
pub(crate) fn socket_create() -> Result<(RawHandle, RawHandle), Error> {
    let (mut first, mut second) = (0u32, 0u32);
    // SAFETY: both out-pointers are live, distinct, writable `u32`s during the call.
    check(unsafe { raw::socket_create(0, &mut first, &mut second) })?;
    Ok((first, second))
}

pub(crate) fn listener_create() -> Result<(RawHandle, RawHandle), Error> {
    let (mut first, mut second) = (0u32, 0u32);
    // SAFETY: both out-pointers are live, distinct, writable `u32`s during the call.
    check(unsafe { raw::listener_create(&mut first, &mut second) })?;
    Ok((first, second))
}

/// Writes the front of `bytes` (at most `SOCKET_MAX_TRANSFER_BYTES`); how many were taken.
pub(crate) fn socket_write(handle: RawHandle, bytes: &[u8]) -> Result<usize, Error> {
    let length = length(bytes.len().min(nebulet_abi::SOCKET_MAX_TRANSFER_BYTES as usize))?;
    let mut actual = 0u32;
    // SAFETY: `bytes` is readable for `length` bytes and `actual` is a live `u32`.
    check(unsafe { raw::socket_write(handle, bytes.as_ptr(), length, &mut actual) })?;
    Ok(actual as usize)
}

/// Reads into `buffer` (at most `SOCKET_MAX_TRANSFER_BYTES`); how many bytes came.
pub(crate) fn socket_read(handle: RawHandle, buffer: &mut [u8]) -> Result<usize, Error> {
    let length = length(buffer.len().min(nebulet_abi::SOCKET_MAX_TRANSFER_BYTES as usize))?;
    let mut actual = 0u32;
    // SAFETY: `buffer` is writable for `length` bytes and `actual` is a live `u32`.
    check(unsafe { raw::socket_read(handle, buffer.as_mut_ptr(), length, &mut actual) })?;
    Ok(actual as usize)
}

pub(crate) fn socket_shutdown(handle: RawHandle, options: u32) -> Result<(), Error> {
    // SAFETY: integers only.
    check(unsafe { raw::socket_shutdown(handle, options) })
}

/// `listener_accept` or `connector_connect`: a new socket end.
pub(crate) fn listener_accept(handle: RawHandle) -> Result<RawHandle, Error> {
    let mut socket = 0u32;
    // SAFETY: the out-pointer is a live, writable `u32` during the call.
    check(unsafe { raw::listener_accept(handle, &mut socket) })?;
    Ok(socket)
}

pub(crate) fn connector_connect(handle: RawHandle) -> Result<RawHandle, Error> {
    let mut socket = 0u32;
    // SAFETY: the out-pointer is a live, writable `u32` during the call.
    check(unsafe { raw::connector_connect(handle, &mut socket) })?;
    Ok(socket)
}

/// Writes a message. The handles move to the message only if this returns `Ok`.
pub(crate) fn channel_write(
    handle: RawHandle,
    bytes: &[u8],
    handles: &[RawHandle],
) -> Result<(), Error> {
    let byte_count = length(bytes.len())?;
    let handle_count = length(handles.len())?;
    // SAFETY: both slices are readable for their lengths during the call; the kernel only reads.
    check(unsafe {
        raw::channel_write(handle, bytes.as_ptr(), byte_count, handles.as_ptr(), handle_count)
    })
}

/// What one `channel_read` reported.
#[derive(Debug)]
pub(crate) struct ReadOutcome {
    /// The status of the call.
    pub(crate) status: Result<(), Error>,
    /// The message's byte count (set on `Ok` and on `ERR_BUFFER_TOO_SMALL`).
    pub(crate) bytes: u32,
    /// The message's handle count (set on `Ok` and on `ERR_BUFFER_TOO_SMALL`).
    pub(crate) handles: u32,
}

/// Reads one message: its bytes into `bytes` (cleared first; up to its capacity), its handles
/// into the start of `handles`.
pub(crate) fn channel_read(
    handle: RawHandle,
    bytes: &mut Vec<u8>,
    handles: &mut [RawHandle],
) -> ReadOutcome {
    bytes.clear();
    let (Ok(byte_capacity), Ok(handle_capacity)) =
        (length(bytes.capacity()), length(handles.len()))
    else {
        return ReadOutcome { status: Err(Error::InvalidArgs), bytes: 0, handles: 0 };
    };
    let (mut actual_bytes, mut actual_handles) = (0u32, 0u32);
    let spare = bytes.spare_capacity_mut();
    // SAFETY: `spare` is writable for `byte_capacity` bytes (the whole capacity, as the vector
    // is empty), `handles` for `handle_capacity` values, and both actuals are live `u32`s.
    // The kernel writes only inside those ranges.
    let status = check(unsafe {
        raw::channel_read(
            handle,
            spare.as_mut_ptr().cast::<u8>(),
            byte_capacity,
            handles.as_mut_ptr(),
            handle_capacity,
            &mut actual_bytes,
            &mut actual_handles,
        )
    });
    if status.is_ok() {
        if actual_bytes > byte_capacity || actual_handles > handle_capacity {
            return ReadOutcome {
                status: Err(Error::Internal),
                bytes: actual_bytes,
                handles: actual_handles,
            };
        }
        // SAFETY: on OK the kernel has written the message's `actual_bytes` bytes to the start
        // of the spare capacity, and `actual_bytes <= capacity` was checked just above.
        unsafe { bytes.set_len(actual_bytes as usize) };
    }
    ReadOutcome { status, bytes: actual_bytes, handles: actual_handles }
}

pub(crate) fn event_create() -> Result<RawHandle, Error> {
    // SAFETY: `out` points to a live, writable `u32` for the duration of the call.
    out_handle(|out| unsafe { raw::event_create(out) })
}

pub(crate) fn timer_create() -> Result<RawHandle, Error> {
    // SAFETY: `out` points to a live, writable `u32` for the duration of the call.
    out_handle(|out| unsafe { raw::timer_create(out) })
}

pub(crate) fn timer_set(handle: RawHandle, deadline: i64) -> Result<(), Error> {
    // SAFETY: no pointers; the kernel validates the handle.
    check(unsafe { raw::timer_set(handle, deadline) })
}

pub(crate) fn timer_cancel(handle: RawHandle) -> Result<(), Error> {
    // SAFETY: no pointers; the kernel validates the handle.
    check(unsafe { raw::timer_cancel(handle) })
}

pub(crate) fn clock_monotonic() -> i64 {
    // SAFETY: no arguments, no memory access.
    unsafe { raw::clock_monotonic() }
}

pub(crate) fn nanosleep(deadline: i64) -> Result<(), Error> {
    // SAFETY: no pointers.
    check(unsafe { raw::nanosleep(deadline) })
}

pub(crate) fn module_compile(bytes: &[u8]) -> Result<RawHandle, Error> {
    let len = length(bytes.len())?;
    // SAFETY: `bytes` is readable for `len` bytes and `out` is a live `u32` during the call.
    out_handle(|out| unsafe { raw::module_compile(bytes.as_ptr(), len, out) })
}

pub(crate) fn process_create(module: RawHandle, name: &[u8]) -> Result<RawHandle, Error> {
    let len = length(name.len())?;
    // SAFETY: `name` is readable for `len` bytes and `out` is a live `u32` during the call.
    out_handle(|out| unsafe { raw::process_create(module, name.as_ptr(), len, out) })
}

pub(crate) fn process_create_with(
    module: RawHandle,
    name: &[u8],
    options: u32,
) -> Result<RawHandle, Error> {
    let len = length(name.len())?;
    // SAFETY: `name` is readable for `len` bytes and `out` is a live `u32` during the call.
    out_handle(|out| unsafe { raw::process_create_with(module, name.as_ptr(), len, options, out) })
}

pub(crate) fn process_start(process: RawHandle, bootstrap: RawHandle) -> Result<(), Error> {
    // SAFETY: no pointers; the kernel validates both handles.
    check(unsafe { raw::process_start(process, bootstrap) })
}

pub(crate) fn process_bootstrap() -> Result<RawHandle, Error> {
    // SAFETY: `out` points to a live, writable `u32` for the duration of the call.
    out_handle(|out| unsafe { raw::process_bootstrap(out) })
}

pub(crate) fn process_kill(process: RawHandle) -> Result<(), Error> {
    // SAFETY: no pointers; the kernel validates the handle.
    check(unsafe { raw::process_kill(process) })
}

/// Sets one resource limit (`limit` a raw `nebulet_abi::Limit`) of a process not yet started.
pub(crate) fn process_set_limit(process: RawHandle, limit: u32, value: i64) -> Result<(), Error> {
    // SAFETY: no pointers; the kernel validates the handle, the limit and the value.
    check(unsafe { raw::process_set_limit(process, limit, value) })
}

pub(crate) fn process_exit(code: i32) -> ! {
    // SAFETY: no pointers; the call ends the process.
    unsafe { raw::process_exit(code) }
}

pub(crate) fn thread_yield() -> Result<(), Error> {
    // SAFETY: no arguments, no memory access.
    check(unsafe { raw::thread_yield() })
}

/// Blocks while `word` holds `expected` (see `futex_wait` in `docs/abi.md`).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: i64) -> Result<(), Error> {
    // SAFETY: `word` is a live `u32` (4-byte aligned, as `AtomicU32` always is) for the duration
    // of the call, and the kernel only reads it.
    check(unsafe { raw::futex_wait(word.as_ptr(), expected, deadline) })
}

/// Wakes up to `count` threads waiting on `word`; returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) -> Result<u32, Error> {
    let mut woken = 0u32;
    // SAFETY: `word` is a live, 4-byte aligned `u32` that the kernel does not access (it only
    // uses the address), and `woken` is a live, writable `u32` for the duration of the call.
    check(unsafe { raw::futex_wake(word.as_ptr(), count, &mut woken) })?;
    Ok(woken)
}

pub(crate) fn sched_lock() -> Result<(), Error> {
    // SAFETY: no arguments, no memory access.
    check(unsafe { raw::sched_lock() })
}

pub(crate) fn sched_unlock() -> Result<(), Error> {
    // SAFETY: no arguments, no memory access.
    check(unsafe { raw::sched_unlock() })
}

/// Arms the calling process's watchdog for `interval` nanoseconds (0 disarms it).
pub(crate) fn watchdog_setup(interval: i64) -> Result<(), Error> {
    // SAFETY: no pointers; the kernel validates the interval.
    check(unsafe { raw::watchdog_setup(interval) })
}

pub(crate) fn watchdog_alive() -> Result<(), Error> {
    // SAFETY: no arguments, no memory access.
    check(unsafe { raw::watchdog_alive() })
}

pub(crate) fn random_fill(buffer: &mut [u8]) -> Result<(), Error> {
    let len = length(buffer.len())?;
    // SAFETY: `buffer` is writable for `len` bytes during the call.
    check(unsafe { raw::random_fill(buffer.as_mut_ptr(), len) })
}

pub(crate) fn cprng_fill(buffer: &mut [u8]) -> Result<(), Error> {
    let len = length(buffer.len())?;
    // SAFETY: `buffer` is writable for `len` bytes during the call.
    check(unsafe { raw::cprng_fill(buffer.as_mut_ptr(), len) })
}

pub(crate) fn debug_write(buffer: &[u8]) -> Result<(), Error> {
    let len = length(buffer.len())?;
    // SAFETY: `buffer` is readable for `len` bytes during the call; the kernel only reads.
    check(unsafe { raw::debug_write(buffer.as_ptr(), len) })
}

/// Registers a service name. The channel handle moves to the kernel only if this returns `Ok`.
pub(crate) fn service_register(name: &[u8], channel: RawHandle) -> Result<(), Error> {
    let len = length(name.len())?;
    // SAFETY: `name` is readable for `len` bytes during the call; the kernel only reads.
    check(unsafe { raw::service_register(name.as_ptr(), len, channel) })
}

/// Connects to a service. The channel handle moves to the service only if this returns `Ok`.
pub(crate) fn service_connect(name: &[u8], channel: RawHandle) -> Result<(), Error> {
    let len = length(name.len())?;
    // SAFETY: `name` is readable for `len` bytes during the call; the kernel only reads.
    check(unsafe { raw::service_connect(name.as_ptr(), len, channel) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_errors() {
        assert_eq!(check(OK), Ok(()));
        assert_eq!(check(-11), Err(Error::BadHandle));
        assert_eq!(check(-5), Err(Error::Internal));
        assert_eq!(check(7), Err(Error::Internal));
    }

    #[cfg(not(target_family = "wasm"))]
    #[test]
    fn host_stubs_fail_cleanly() {
        assert_eq!(handle_close(1), Err(Error::NotSupported));
        let mut bytes = Vec::with_capacity(8);
        let outcome = channel_read(1, &mut bytes, &mut [0; 4]);
        assert_eq!(outcome.status, Err(Error::NotSupported));
        assert!(bytes.is_empty());
        assert!(clock_monotonic() >= 0);
        let word = AtomicU32::new(0);
        assert_eq!(futex_wait(&word, 0, 0), Err(Error::NotSupported));
        assert_eq!(futex_wake(&word, 1), Err(Error::NotSupported));
        assert_eq!(thread_yield(), Err(Error::NotSupported));
        assert_eq!(sched_lock(), Err(Error::NotSupported));
        assert_eq!(sched_unlock(), Err(Error::NotSupported));
        assert_eq!(process_set_limit(1, 1, 0), Err(Error::NotSupported));
        assert_eq!(watchdog_setup(1_000_000), Err(Error::NotSupported));
        assert_eq!(watchdog_alive(), Err(Error::NotSupported));
    }
}
