//! The system calls: one dispatch table that links every call of `nebulet_abi::calls::CALLS`.
//!
//! Every call has one shape: a function of the family's file that takes a [`Call`] and its
//! arguments and returns `Result<(), Error>` (the one success and the one failure shape), which
//! the table turns into the `i32` status. Calls that may block are `async` and use the same
//! [`with_call`] to reach memory before and after they wait.

mod channel;
mod clock;
mod debug;
mod event;
mod handle;
mod module;
mod object;
mod process;
mod random;
mod service;
mod socket;
mod thread;
mod timer;

use alloc::sync::Arc;

#[cfg(test)]
use alloc::vec::Vec;
#[cfg(test)]
use nebulet_abi::calls::{Returns, ValueType};
use nebulet_abi::{Error, IMPORT_MODULE, OK};
use wasmtime::{Caller, Linker};

pub(crate) use service::{Service, unregister_services};

use crate::guest_memory::GuestMemory;
use crate::kernel::Kernel;
use crate::objects::process::Process;
use crate::runner::{ProcessMemory, ThreadContext};

/// What a system call works with: the kernel, the calling process and its memory.
pub(crate) struct Call<'a> {
    pub(crate) kernel: &'a Arc<Kernel>,
    pub(crate) process: &'a Arc<Process>,
    /// The calling thread (0 is the main thread).
    pub(crate) thread: u32,
    pub(crate) memory: GuestMemory<'a>,
}

/// Runs `body` with the caller's kernel, process and memory.
pub(crate) fn with_call<R, E>(
    caller: &mut Caller<'_, ThreadContext>,
    body: impl FnOnce(&mut Call<'_>) -> Result<R, E>,
) -> Result<R, E> {
    // Borrowed, not cloned: a shared memory's clone is two atomic counts up and down per call.
    let memory = match &caller.data().memory {
        Some(ProcessMemory::Own(memory)) => *memory,
        #[cfg(feature = "threads")]
        Some(ProcessMemory::Shared(memory)) => {
            return body(&mut Call::new(caller.data(), GuestMemory::shared(memory.data())));
        }
        None => return body(&mut Call::new(caller.data(), GuestMemory::new(&mut []))),
    };
    let (bytes, context) = memory.data_and_store_mut(caller);
    body(&mut Call::new(context, GuestMemory::new(bytes)))
}

impl<'a> Call<'a> {
    fn new(context: &'a ThreadContext, memory: GuestMemory<'a>) -> Self {
        Self { kernel: &context.kernel, process: &context.process, thread: context.thread, memory }
    }
}

fn watchdog_setup(call: &mut Call<'_>, interval: i64) -> Result<(), Error> {
    let kernel = call.kernel;
    call.process.watchdog.setup(call.process, &kernel.platform, &kernel.preemption, interval)
}

fn watchdog_alive(call: &mut Call<'_>) -> Result<(), Error> {
    call.process.watchdog.alive(call.kernel.platform.now())
}

/// The `i32` a call returns for its result.
pub(crate) fn status(result: Result<(), Error>) -> i32 {
    match result {
        Ok(()) => OK,
        Err(error) => error.code(),
    }
}

/// Links functions of import module `$module` whose bodies never block; `$result` turns each
/// body's result into the `i32` the guest gets. Serves the system calls and WASI alike.
macro_rules! link_calls {
    ($linker:ident, $module:expr, $result:path, $( $name:ident ( $($argument:ident : $type:ty),* ) => $function:path ;)*) => {$(
        $linker.func_wrap(
            $module,
            stringify!($name),
            |mut caller: ::wasmtime::Caller<'_, $crate::runner::ThreadContext>, $($argument: $type),*| -> i32 {
                $result($crate::syscalls::with_call(&mut caller, |call| $function(call, $($argument),*)))
            },
        )?;
    )*};
}
pub(crate) use link_calls;

/// [`link_calls!`] for functions that may block: each body is an async function of the caller, and
/// the process shows as blocked in it while it runs.
macro_rules! link_blocking_calls {
    ($linker:ident, $module:expr, $result:path, $( $name:ident ( $($argument:ident : $type:ty),* ) => $function:path ;)*) => {$(
        $linker.func_wrap_async(
            $module,
            stringify!($name),
            |mut caller: ::wasmtime::Caller<'_, $crate::runner::ThreadContext>, ($($argument,)*): ($($type,)*)| {
                ::alloc::boxed::Box::new(async move {
                    const CALL: u8 = $crate::roster::blocking_call(stringify!($name));
                    caller.data().process.activity.enter(CALL);
                    let result = $function(&mut caller, $($argument),*).await;
                    caller.data().process.activity.leave(CALL);
                    $result(result)
                })
            },
        )?;
    )*};
}
pub(crate) use link_blocking_calls;

/// The linker with every system call and the WASI functions defined.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<ThreadContext>> {
    let mut linker = Linker::new(engine);
    link_calls! { linker, IMPORT_MODULE, status,
        handle_close(handle: u32) => handle::close;
        handle_duplicate(handle: u32, rights: u32, out: u32) => handle::duplicate;
        handle_replace(handle: u32, rights: u32, out: u32) => handle::replace;
        object_signal(handle: u32, clear: u32, set: u32) => object::signal;
        object_get_info(handle: u32, topic: u32, buffer: u32, length: u32, actual: u32) => object::get_info;
        channel_create(out0: u32, out1: u32) => channel::create;
        channel_write(handle: u32, bytes: u32, byte_count: u32, handles: u32, handle_count: u32) => channel::write;
        channel_read(handle: u32, bytes: u32, byte_capacity: u32, handles: u32, handle_capacity: u32,
            actual_bytes: u32, actual_handles: u32) => channel::read;
        socket_create(options: u32, out0: u32, out1: u32) => socket::create;
        socket_write(handle: u32, bytes: u32, length: u32, actual: u32) => socket::write;
        socket_read(handle: u32, buffer: u32, length: u32, actual: u32) => socket::read;
        socket_shutdown(handle: u32, options: u32) => socket::shutdown;
        listener_create(out_listener: u32, out_connector: u32) => socket::listener_create;
        listener_accept(handle: u32, out: u32) => socket::accept;
        event_create(out: u32) => event::create;
        timer_create(out: u32) => timer::create;
        timer_set(handle: u32, deadline: i64) => timer::set;
        timer_cancel(handle: u32) => timer::cancel;
        process_create(module: u32, name: u32, name_length: u32, out: u32) => process::create;
        process_create_with(module: u32, name: u32, name_length: u32, options: u32, out: u32) => process::create_with;
        process_start(process: u32, bootstrap: u32) => process::start;
        process_bootstrap(out: u32) => process::bootstrap;
        futex_wake(address: u32, count: u32, woken: u32) => thread::futex_wake;
        sched_lock() => thread::sched_lock;
        process_set_limit(process: u32, limit: u32, value: i64) => process::set_limit;
        watchdog_setup(interval: i64) => watchdog_setup;
        watchdog_alive() => watchdog_alive;
        sched_unlock() => thread::sched_unlock;
        random_fill(buffer: u32, length: u32) => random::fill;
        cprng_fill(buffer: u32, length: u32) => random::secure_fill;
        service_register(name: u32, name_length: u32, channel: u32) => service::register;
        service_connect(name: u32, name_length: u32, channel: u32) => service::connect;
    }
    link_blocking_calls! { linker, IMPORT_MODULE, status,
        object_wait_one(handle: u32, signals: u32, deadline: i64, observed: u32) => object::wait_one;
        object_wait_many(items: u32, count: u32, deadline: i64) => object::wait_many;
        nanosleep(deadline: i64) => clock::nanosleep;
        debug_write(buffer: u32, length: u32) => debug::write;
        module_compile(bytes: u32, length: u32, out: u32) => module::compile;
        connector_connect(handle: u32, out: u32) => socket::connect;
        thread_yield() => thread::yield_now;
        futex_wait(address: u32, expected: u32, deadline: i64) => thread::futex_wait;
    }
    thread::link_threads(&mut linker)?;
    linker.func_wrap(IMPORT_MODULE, "clock_monotonic", |caller: Caller<'_, ThreadContext>| {
        caller.data().kernel.platform.now()
    })?;
    linker.func_wrap(IMPORT_MODULE, "process_exit", process::exit)?;
    linker.func_wrap(IMPORT_MODULE, "process_kill", process::kill)?;
    crate::wasi::link(&mut linker)?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::String;

    use super::*;
    use nebulet_abi::calls::CALLS;

    fn wat_type(value: ValueType) -> &'static str {
        match value {
            ValueType::I32 => "i32",
            ValueType::I64 => "i64",
        }
    }

    /// A module importing one call with the signature the contract gives (plus `extra` params).
    fn importer(call: &nebulet_abi::calls::Call, extra: &str) -> String {
        let params: Vec<&str> = call.params.iter().map(|(_, value)| wat_type(*value)).collect();
        let result = match call.returns {
            Returns::Status => "(result i32)",
            Returns::Time => "(result i64)",
            Returns::Never => "",
        };
        format!(
            "(module (import \"{IMPORT_MODULE}\" \"{}\" (func (param {} {extra}) {result})))",
            call.name,
            params.join(" ")
        )
    }

    #[test]
    fn every_call_of_the_contract_is_linked_with_its_signature() {
        let engine = crate::tests::engine();
        let linker = linker(&engine).unwrap();
        for call in CALLS {
            let module = wasmtime::Module::new(&engine, importer(call, "")).unwrap();
            if let Err(error) = linker.instantiate_pre(&module) {
                panic!("`{}` does not link as the contract says: {error}", call.name);
            }
            let wrong = wasmtime::Module::new(&engine, importer(call, "i32")).unwrap();
            assert!(
                linker.instantiate_pre(&wrong).is_err(),
                "`{}` links with a wrong type",
                call.name
            );
        }
    }
}
