//! The `nebulet` imports with plain integer parameters, for the test programs that must pass
//! what the SDK never would (bad pointers, bad handles): every call of
//! `nebulet_abi::calls::CALLS` but `process_exit`, whose callers use the SDK or WASI; and, in
//! [`wasi`], the WASI preview 1 functions.
#![allow(unsafe_code, reason = "the raw imports; every call passes integers the kernel must check")]

pub mod wasi;

mod imports {
    #[link(wasm_import_module = "nebulet")]
    unsafe extern "C" {
        pub fn handle_close(handle: u32) -> i32;
        pub fn handle_duplicate(handle: u32, rights: u32, out: u32) -> i32;
        pub fn handle_replace(handle: u32, rights: u32, out: u32) -> i32;
        pub fn object_wait_one(handle: u32, signals: u32, deadline: i64, observed: u32) -> i32;
        pub fn object_wait_many(items: u32, count: u32, deadline: i64) -> i32;
        pub fn object_signal(handle: u32, clear: u32, set: u32) -> i32;
        pub fn object_get_info(
            handle: u32,
            topic: u32,
            buffer: u32,
            length: u32,
            actual: u32,
        ) -> i32;
        pub fn channel_create(out0: u32, out1: u32) -> i32;
        pub fn channel_write(
            handle: u32,
            bytes: u32,
            count: u32,
            handles: u32,
            handle_count: u32,
        ) -> i32;
        pub fn channel_read(
            handle: u32,
            bytes: u32,
            capacity: u32,
            handles: u32,
            handle_capacity: u32,
            actual_bytes: u32,
            actual_handles: u32,
        ) -> i32;
        pub fn socket_create(options: u32, out0: u32, out1: u32) -> i32;
        pub fn socket_write(handle: u32, bytes: u32, length: u32, actual: u32) -> i32;
        pub fn socket_read(handle: u32, buffer: u32, length: u32, actual: u32) -> i32;
        pub fn socket_shutdown(handle: u32, options: u32) -> i32;
        pub fn listener_create(out_listener: u32, out_connector: u32) -> i32;
        pub fn listener_accept(handle: u32, out: u32) -> i32;
        pub fn connector_connect(handle: u32, out: u32) -> i32;
        pub fn event_create(out: u32) -> i32;
        pub fn timer_create(out: u32) -> i32;
        pub fn timer_set(handle: u32, deadline: i64) -> i32;
        pub fn timer_cancel(handle: u32) -> i32;
        pub fn clock_monotonic() -> i64;
        pub fn nanosleep(deadline: i64) -> i32;
        pub fn module_compile(bytes: u32, length: u32, out: u32) -> i32;
        pub fn process_create(module: u32, name: u32, name_length: u32, out: u32) -> i32;
        pub fn process_create_with(
            module: u32,
            name: u32,
            name_length: u32,
            options: u32,
            out: u32,
        ) -> i32;
        pub fn process_start(process: u32, bootstrap: u32) -> i32;
        pub fn process_bootstrap(out: u32) -> i32;
        pub fn process_kill(process: u32) -> i32;
        pub fn process_set_limit(process: u32, limit: u32, value: i64) -> i32;
        pub fn thread_yield() -> i32;
        pub fn futex_wait(address: u32, expected: u32, deadline: i64) -> i32;
        pub fn futex_wake(address: u32, count: u32, woken: u32) -> i32;
        pub fn sched_lock() -> i32;
        pub fn sched_unlock() -> i32;
        pub fn watchdog_setup(interval: i64) -> i32;
        pub fn watchdog_alive() -> i32;
        pub fn random_fill(buffer: u32, length: u32) -> i32;
        pub fn cprng_fill(buffer: u32, length: u32) -> i32;
        pub fn debug_write(buffer: u32, length: u32) -> i32;
        pub fn service_register(name: u32, name_length: u32, channel: u32) -> i32;
        pub fn service_connect(name: u32, name_length: u32, channel: u32) -> i32;
    }
}

/// Safe wrappers: the kernel checks every argument, so no value passed here can make the call
/// undefined behaviour for this program, except a write through a pointer into memory this
/// program uses for something else; the fuzzer passes writable pointers only into its scratch
/// pages (which nothing else uses), the first bytes of memory (never used), or outside memory.
macro_rules! wrap {
    ($($name:ident($($argument:ident: $type:ty),*) -> $result:ty;)*) => {$(
        pub fn $name($($argument: $type),*) -> $result {
            // SAFETY: see above: the kernel checks every argument against this memory.
            unsafe { imports::$name($($argument),*) }
        }
    )*};
}

wrap! {
    handle_close(handle: u32) -> i32;
    handle_duplicate(handle: u32, rights: u32, out: u32) -> i32;
    handle_replace(handle: u32, rights: u32, out: u32) -> i32;
    object_wait_one(handle: u32, signals: u32, deadline: i64, observed: u32) -> i32;
    object_wait_many(items: u32, count: u32, deadline: i64) -> i32;
    object_signal(handle: u32, clear: u32, set: u32) -> i32;
    object_get_info(handle: u32, topic: u32, buffer: u32, length: u32, actual: u32) -> i32;
    channel_create(out0: u32, out1: u32) -> i32;
    channel_write(handle: u32, bytes: u32, count: u32, handles: u32, handle_count: u32) -> i32;
    channel_read(handle: u32, bytes: u32, capacity: u32, handles: u32, handle_capacity: u32, actual_bytes: u32, actual_handles: u32) -> i32;
    socket_create(options: u32, out0: u32, out1: u32) -> i32;
    socket_write(handle: u32, bytes: u32, length: u32, actual: u32) -> i32;
    socket_read(handle: u32, buffer: u32, length: u32, actual: u32) -> i32;
    socket_shutdown(handle: u32, options: u32) -> i32;
    listener_create(out_listener: u32, out_connector: u32) -> i32;
    listener_accept(handle: u32, out: u32) -> i32;
    connector_connect(handle: u32, out: u32) -> i32;
    event_create(out: u32) -> i32;
    timer_create(out: u32) -> i32;
    timer_set(handle: u32, deadline: i64) -> i32;
    timer_cancel(handle: u32) -> i32;
    clock_monotonic() -> i64;
    nanosleep(deadline: i64) -> i32;
    module_compile(bytes: u32, length: u32, out: u32) -> i32;
    process_create(module: u32, name: u32, name_length: u32, out: u32) -> i32;
    process_create_with(module: u32, name: u32, name_length: u32, options: u32, out: u32) -> i32;
    process_start(process: u32, bootstrap: u32) -> i32;
    process_bootstrap(out: u32) -> i32;
    process_kill(process: u32) -> i32;
    process_set_limit(process: u32, limit: u32, value: i64) -> i32;
    thread_yield() -> i32;
    futex_wait(address: u32, expected: u32, deadline: i64) -> i32;
    futex_wake(address: u32, count: u32, woken: u32) -> i32;
    sched_lock() -> i32;
    sched_unlock() -> i32;
    watchdog_setup(interval: i64) -> i32;
    watchdog_alive() -> i32;
    random_fill(buffer: u32, length: u32) -> i32;
    cprng_fill(buffer: u32, length: u32) -> i32;
    debug_write(buffer: u32, length: u32) -> i32;
    service_register(name: u32, name_length: u32, channel: u32) -> i32;
    service_connect(name: u32, name_length: u32, channel: u32) -> i32;
}

/// The status a call returns for `result`: 0 or the error's code.
pub fn status(result: Result<(), nebulet_abi::Error>) -> i32 {
    result.map_or_else(nebulet_abi::Error::code, |()| 0)
}

/// A status's name in the contract: `OK`, `ERR_BAD_HANDLE`, ..., or the number if unknown.
pub fn name(code: i32) -> String {
    if code == 0 {
        "OK".into()
    } else {
        nebulet_abi::Error::from_code(code).map_or(format!("{code}"), |error| error.name().into())
    }
}

/// Asserts a call's status, naming the call and both statuses if it differs.
#[macro_export]
macro_rules! expect {
    ($call:expr, $want:expr) => {{
        let got = $call;
        let want = $crate::status($want);
        assert!(
            got == want,
            "line {}: `{}` returned {}, expected {}",
            line!(),
            stringify!($call),
            $crate::name(got),
            $crate::name(want)
        );
    }};
}

/// The address of data the kernel only reads.
pub fn address<T: ?Sized>(value: &T) -> u32 {
    value as *const T as *const u8 as usize as u32
}

/// The address of a buffer the kernel may write (derived from `&mut`, so the write is allowed).
pub fn writable<T: ?Sized>(value: &mut T) -> u32 {
    value as *mut T as *mut u8 as usize as u32
}

// Helpers the test programs share: each makes one call and asserts it succeeded.

/// The monotonic clock, in nanoseconds.
pub fn now() -> i64 {
    clock_monotonic()
}

/// A new event (asserting the call succeeds).
pub fn event() -> u32 {
    let mut handle = 0u32;
    crate::expect!(event_create(writable(&mut handle)), Ok(()));
    handle
}

/// A new channel pair (asserting the call succeeds).
pub fn channel() -> (u32, u32) {
    let (mut first, mut second) = (0u32, 0u32);
    crate::expect!(channel_create(writable(&mut first), writable(&mut second)), Ok(()));
    (first, second)
}

/// A duplicate of `handle` with `rights` (asserting the call succeeds).
pub fn duplicate(handle: u32, rights: nebulet_abi::Rights) -> u32 {
    let mut copy = 0u32;
    crate::expect!(handle_duplicate(handle, rights.bits(), writable(&mut copy)), Ok(()));
    copy
}

/// The PROCESS information of a process handle (asserting the call succeeds).
pub fn process_info(handle: u32) -> nebulet_abi::layout::InfoProcess {
    let mut buffer = [0u8; nebulet_abi::layout::InfoProcess::SIZE];
    crate::expect!(
        object_get_info(handle, 2, writable(&mut buffer), buffer.len() as u32, 0),
        Ok(())
    );
    nebulet_abi::layout::InfoProcess::from_bytes(&buffer)
}

/// Waits until `deadline` for a child to end and returns how it ended; a child that has not
/// ended by then is killed, and the caller panics naming `what`.
pub fn ended(child: u32, what: &str, deadline: i64) -> nebulet_abi::layout::InfoProcess {
    let terminated = nebulet_abi::Signals::TERMINATED.bits();
    let result = object_wait_one(child, terminated, deadline, 0);
    if result != 0 {
        let _ = process_kill(child);
        panic!("{what}: did not end in time: {}", name(result));
    }
    let info = process_info(child);
    assert_eq!(info.state, nebulet_abi::ProcessState::Ended as u32, "{what}");
    info
}

/// How a process ended, as a word for messages ("exited", "killed", ...).
pub fn reason(info: &nebulet_abi::layout::InfoProcess) -> String {
    nebulet_abi::ExitReason::from_raw(info.exit_reason)
        .map_or(format!("reason {}", info.exit_reason), |reason| reason.word().into())
}

/// A module compiled from wasm or (hosted) WAT text (asserting the call succeeds).
pub fn compile(source: &str) -> u32 {
    let mut module = 0u32;
    crate::expect!(
        module_compile(address(source.as_bytes()), source.len() as u32, writable(&mut module)),
        Ok(())
    );
    module
}

/// A new, not yet started process of `module` (asserting the call succeeds).
pub fn create(module: u32, name: &str) -> u32 {
    let mut process = 0u32;
    crate::expect!(
        process_create(module, address(name.as_bytes()), name.len() as u32, writable(&mut process)),
        Ok(())
    );
    process
}

/// Writes a message; returns the status.
pub fn write(handle: u32, bytes: &[u8], handles: &[u32]) -> i32 {
    channel_write(
        handle,
        address(bytes),
        bytes.len() as u32,
        address(handles),
        handles.len() as u32,
    )
}
