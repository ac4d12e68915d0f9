//! Conformance test of the `nebulet` calls, run by the hosted integration tests as
//! `syscalls CASE`: each case checks success and error paths of one family of calls and exits 0,
//! or panics (a trap) with the failing call and what it returned.

use nebulet_raw as raw;
use nebulet_raw::{
    address, channel, compile, create, duplicate, event, expect, name, now, process_info, writable,
    write,
};

use nebulet_abi::layout::{InfoBasic, WaitItem};
use nebulet_abi::{
    CHANNEL_MAX_MESSAGE_BYTES, CHANNEL_MAX_QUEUED_MESSAGES, DEADLINE_INFINITE, Error, ExitReason,
    LISTENER_BACKLOG, ObjectType, ProcessState, Rights, SOCKET_MAX_BUFFERED_BYTES,
    SOCKET_MAX_TRANSFER_BYTES, Signals,
};

/// A pointer no memory contains.
const OUT_OF_BOUNDS: u32 = u32::MAX - 3;
/// A handle value no process holds (values are random; a clash is a 1 in 2^32 event).
const BOGUS: u32 = 0x0bad_cafe;

fn main() {
    let case = std::env::args().nth(1).unwrap_or_default();
    match case.as_str() {
        "handles" => handles(),
        "signals" => signals(),
        "info" => info(),
        "channels" => channels(),
        "queue" => queue(),
        "processes" => processes(),
        "services" => services(),
        "sockets" => sockets(),
        "echo" => echo(),
        "wasi-sockets" => wasi_sockets(),
        "connect" => connect(),
        "misc" => misc(),
        "threads" => thread_calls(),
        other => panic!("unknown case `{other}`"),
    }
    println!("syscalls {case}: ok");
}

/// The first byte past the end of this program's memory.
fn memory_end() -> u32 {
    (core::arch::wasm32::memory_size(0) * 65_536) as u32
}

fn basic(handle: u32) -> InfoBasic {
    let mut buffer = [0u8; InfoBasic::SIZE];
    expect!(raw::object_get_info(handle, 1, writable(&mut buffer), buffer.len() as u32, 0), Ok(()));
    InfoBasic::from_bytes(&buffer)
}

/// The signals asserted now (a wait that polls once).
fn signals_of(handle: u32) -> Signals {
    let mut observed = 0u32;
    let result = raw::object_wait_one(handle, u32::MAX, 0, writable(&mut observed));
    assert!(result == 0 || result == Error::TimedOut.code(), "poll failed: {}", name(result));
    Signals::from_bits(observed)
}

fn wait(handle: u32, signals: Signals) -> Signals {
    let mut observed = 0u32;
    expect!(
        raw::object_wait_one(handle, signals.bits(), DEADLINE_INFINITE, writable(&mut observed)),
        Ok(())
    );
    Signals::from_bits(observed)
}

struct Read {
    status: i32,
    bytes: Vec<u8>,
    handles: Vec<u32>,
}

fn read(handle: u32, byte_capacity: usize, handle_capacity: usize) -> Read {
    let mut bytes = vec![0u8; byte_capacity];
    let mut handles = vec![0u32; handle_capacity];
    let (mut actual_bytes, mut actual_handles) = (u32::MAX, u32::MAX);
    let status = raw::channel_read(
        handle,
        writable(bytes.as_mut_slice()),
        byte_capacity as u32,
        writable(handles.as_mut_slice()),
        handle_capacity as u32,
        writable(&mut actual_bytes),
        writable(&mut actual_handles),
    );
    if status == 0 || status == Error::BufferTooSmall.code() {
        bytes.truncate(actual_bytes as usize);
        handles.truncate(actual_handles as usize);
        if status != 0 {
            // Report the sizes it needs as the lengths.
            bytes.resize(actual_bytes as usize, 0);
            handles.resize(actual_handles as usize, 0);
        }
    }
    Read { status, bytes, handles }
}

fn handles() {
    let handle = event();
    expect!(raw::handle_close(0), Ok(()));
    let copy = duplicate(handle, Rights::SAME_RIGHTS);
    assert_ne!(copy, handle);
    assert_eq!(basic(copy).koid, basic(handle).koid);
    assert_eq!(basic(copy).rights, Rights::EVENT_DEFAULT.bits());
    let mut out = 0u32;
    // Rights never grow.
    expect!(
        raw::handle_duplicate(
            handle,
            (Rights::EVENT_DEFAULT | Rights::EXECUTE).bits(),
            writable(&mut out)
        ),
        Err(Error::InvalidArgs)
    );
    expect!(
        raw::handle_duplicate(BOGUS, Rights::SAME_RIGHTS.bits(), writable(&mut out)),
        Err(Error::BadHandle)
    );
    expect!(
        raw::handle_duplicate(handle, Rights::SAME_RIGHTS.bits(), OUT_OF_BOUNDS),
        Err(Error::InvalidArgs)
    );
    expect!(
        raw::handle_duplicate(handle, Rights::SAME_RIGHTS.bits(), memory_end() - 2),
        Err(Error::InvalidArgs)
    );
    // A handle without DUPLICATE cannot be duplicated, but can be replaced.
    let weak = duplicate(handle, Rights::WAIT | Rights::INSPECT);
    assert_eq!(basic(weak).rights, (Rights::WAIT | Rights::INSPECT).bits());
    expect!(
        raw::handle_duplicate(weak, Rights::SAME_RIGHTS.bits(), writable(&mut out)),
        Err(Error::AccessDenied)
    );
    let mut replaced = 0u32;
    expect!(raw::handle_replace(weak, Rights::INSPECT.bits(), writable(&mut replaced)), Ok(()));
    expect!(raw::handle_close(weak), Err(Error::BadHandle));
    assert_eq!(basic(replaced).rights, Rights::INSPECT.bits());
    // A failed replace keeps the handle.
    expect!(
        raw::handle_replace(replaced, Rights::WAIT.bits(), writable(&mut out)),
        Err(Error::InvalidArgs)
    );
    expect!(
        raw::handle_replace(replaced, Rights::SAME_RIGHTS.bits(), OUT_OF_BOUNDS),
        Err(Error::InvalidArgs)
    );
    assert_eq!(basic(replaced).rights, Rights::INSPECT.bits());
    expect!(raw::handle_close(replaced), Ok(()));
    expect!(raw::handle_close(replaced), Err(Error::BadHandle));
    expect!(raw::handle_close(copy), Ok(()));
    expect!(raw::handle_close(handle), Ok(()));
    expect!(raw::handle_close(BOGUS), Err(Error::BadHandle));
}

fn signals() {
    let handle = event();
    let mut observed = 0u32;
    expect!(raw::object_signal(handle, 0, Signals::SIGNALED.bits()), Ok(()));
    expect!(
        raw::object_wait_one(handle, Signals::SIGNALED.bits(), 0, writable(&mut observed)),
        Ok(())
    );
    assert_eq!(observed, Signals::SIGNALED.bits());
    expect!(raw::object_signal(handle, Signals::SIGNALED.bits(), Signals::USER_3.bits()), Ok(()));
    assert_eq!(signals_of(handle), Signals::USER_3);
    // A deadline in the future passes: TIMED_OUT, with the signals at that time.
    let start = now();
    expect!(
        raw::object_wait_one(
            handle,
            Signals::SIGNALED.bits(),
            start + 2_000_000,
            writable(&mut observed)
        ),
        Err(Error::TimedOut)
    );
    assert!(now() - start >= 2_000_000, "waited the whole 2 ms");
    assert_eq!(observed, Signals::USER_3.bits());
    expect!(raw::object_wait_one(handle, Signals::USER_3.bits(), DEADLINE_INFINITE, 0), Ok(()));
    expect!(
        raw::object_wait_one(handle, Signals::SIGNALED.bits(), 0, OUT_OF_BOUNDS),
        Err(Error::InvalidArgs)
    );
    expect!(raw::object_wait_one(BOGUS, Signals::SIGNALED.bits(), 0, 0), Err(Error::BadHandle));
    // Only SIGNALED and USER_* on events; only USER_* elsewhere.
    expect!(raw::object_signal(handle, 0, Signals::READABLE.bits()), Err(Error::InvalidArgs));
    expect!(raw::object_signal(handle, Signals::TERMINATED.bits(), 0), Err(Error::InvalidArgs));
    let (first, second) = channel();
    expect!(raw::object_signal(first, 0, Signals::SIGNALED.bits()), Err(Error::InvalidArgs));
    expect!(raw::object_signal(first, 0, Signals::USER_0.bits()), Ok(()));
    assert_eq!(signals_of(first), Signals::WRITABLE | Signals::USER_0);
    // Rights: SIGNAL to signal, WAIT to wait.
    let no_signal = duplicate(handle, Rights::WAIT);
    expect!(raw::object_signal(no_signal, 0, Signals::USER_0.bits()), Err(Error::AccessDenied));
    let no_wait = duplicate(handle, Rights::SIGNAL);
    expect!(raw::object_wait_one(no_wait, Signals::USER_0.bits(), 0, 0), Err(Error::AccessDenied));
    // wait_many: fills every pending field; any item may satisfy it.
    expect!(write(second, b"ping", &[]), Ok(()));
    let mut items = [
        WaitItem { handle, wait_for: Signals::SIGNALED.bits(), pending: 0 }.to_bytes(),
        WaitItem { handle: first, wait_for: Signals::READABLE.bits(), pending: 0 }.to_bytes(),
    ];
    expect!(raw::object_wait_many(writable(&mut items), 2, DEADLINE_INFINITE), Ok(()));
    assert_eq!(WaitItem::from_bytes(&items[0]).pending, Signals::USER_3.bits());
    assert!(
        Signals::from_bits(WaitItem::from_bytes(&items[1]).pending).contains(Signals::READABLE)
    );
    let mut idle = [WaitItem { handle, wait_for: Signals::SIGNALED.bits(), pending: 0 }.to_bytes()];
    expect!(raw::object_wait_many(writable(&mut idle), 1, now() + 1_000_000), Err(Error::TimedOut));
    assert_eq!(WaitItem::from_bytes(&idle[0]).pending, Signals::USER_3.bits());
    let mut bad = [WaitItem { handle: BOGUS, wait_for: 1, pending: 0 }.to_bytes()];
    expect!(raw::object_wait_many(writable(&mut bad), 1, 0), Err(Error::BadHandle));
    expect!(raw::object_wait_many(writable(&mut items), 65, 0), Err(Error::OutOfRange));
    expect!(raw::object_wait_many(OUT_OF_BOUNDS, 2, 0), Err(Error::InvalidArgs));
    // Timers assert SIGNALED at their deadline; re-setting and canceling deassert it.
    let mut timer = 0u32;
    expect!(raw::timer_create(writable(&mut timer)), Ok(()));
    let start = now();
    expect!(raw::timer_set(timer, start + 3_000_000), Ok(()));
    // Not signaled before its deadline (on a slow machine the deadline may pass before the
    // poll: then it may be signaled).
    let signaled = signals_of(timer).contains(Signals::SIGNALED);
    assert!(!signaled || now() - start >= 3_000_000, "the timer fired before its deadline");
    wait(timer, Signals::SIGNALED);
    assert!(now() - start >= 3_000_000, "the timer fired after its deadline");
    expect!(raw::timer_set(timer, now() + 1_000_000_000), Ok(()));
    assert!(!signals_of(timer).contains(Signals::SIGNALED), "re-setting deasserts");
    expect!(raw::timer_set(timer, now() + 1_000_000), Ok(()));
    wait(timer, Signals::SIGNALED);
    expect!(raw::timer_cancel(timer), Ok(()));
    assert!(!signals_of(timer).contains(Signals::SIGNALED), "canceling deasserts");
    expect!(raw::timer_set(timer, now() + 1_000_000), Ok(()));
    expect!(raw::timer_cancel(timer), Ok(()));
    expect!(
        raw::object_wait_one(timer, Signals::SIGNALED.bits(), now() + 5_000_000, 0),
        Err(Error::TimedOut)
    );
    expect!(raw::object_signal(timer, 0, Signals::SIGNALED.bits()), Err(Error::InvalidArgs));
    expect!(raw::timer_set(handle, 0), Err(Error::WrongType));
    expect!(raw::timer_cancel(BOGUS), Err(Error::BadHandle));
    let read_only_timer = duplicate(timer, Rights::WAIT);
    expect!(raw::timer_set(read_only_timer, 0), Err(Error::AccessDenied));
    expect!(raw::timer_create(OUT_OF_BOUNDS), Err(Error::InvalidArgs));
    expect!(raw::event_create(OUT_OF_BOUNDS), Err(Error::InvalidArgs));
    // nanosleep sleeps until its deadline.
    let start = now();
    expect!(raw::nanosleep(start + 2_000_000), Ok(()));
    assert!(now() - start >= 2_000_000);
    expect!(raw::nanosleep(0), Ok(()));
}

fn info() {
    let handle = event();
    let record = basic(handle);
    assert_eq!(
        (record.object_type, record.rights),
        (ObjectType::Event as u32, Rights::EVENT_DEFAULT.bits())
    );
    let (first, second) = channel();
    assert_eq!(basic(first).object_type, ObjectType::Channel as u32);
    assert_ne!(basic(first).koid, basic(second).koid);
    let mut buffer = [0u8; 64];
    let mut actual = 0u32;
    expect!(
        raw::object_get_info(handle, 1, writable(&mut buffer), 8, writable(&mut actual)),
        Err(Error::BufferTooSmall)
    );
    assert_eq!(actual, InfoBasic::SIZE as u32);
    expect!(
        raw::object_get_info(handle, 1, writable(&mut buffer), 64, writable(&mut actual)),
        Ok(())
    );
    assert_eq!(actual, InfoBasic::SIZE as u32);
    expect!(raw::object_get_info(handle, 4, writable(&mut buffer), 64, 0), Err(Error::InvalidArgs));
    expect!(raw::object_get_info(handle, 2, writable(&mut buffer), 64, 0), Err(Error::WrongType));
    expect!(raw::object_get_info(handle, 3, writable(&mut buffer), 64, 0), Err(Error::WrongType));
    expect!(raw::object_get_info(handle, 1, OUT_OF_BOUNDS, 64, 0), Err(Error::InvalidArgs));
    expect!(raw::object_get_info(handle, 1, memory_end() - 8, 16, 0), Err(Error::InvalidArgs));
    expect!(
        raw::object_get_info(handle, 1, writable(&mut buffer), 64, OUT_OF_BOUNDS),
        Err(Error::InvalidArgs)
    );
    expect!(raw::object_get_info(BOGUS, 1, writable(&mut buffer), 64, 0), Err(Error::BadHandle));
    let blind = duplicate(handle, Rights::WAIT);
    expect!(raw::object_get_info(blind, 1, writable(&mut buffer), 64, 0), Err(Error::AccessDenied));
}

fn channels() {
    let (first, second) = channel();
    assert_eq!(signals_of(first), Signals::WRITABLE);
    expect!(write(first, b"hello", &[]), Ok(()));
    assert!(signals_of(second).contains(Signals::READABLE));
    // Too small: the sizes are reported and the message stays.
    let small = read(second, 2, 0);
    expect!(small.status, Err(Error::BufferTooSmall));
    assert_eq!((small.bytes.len(), small.handles.len()), (5, 0));
    let whole = read(second, 16, 0);
    expect!(whole.status, Ok(()));
    assert_eq!(whole.bytes, b"hello");
    expect!(read(second, 16, 0).status, Err(Error::ShouldWait));
    // Bad pointers and sizes change nothing.
    expect!(raw::channel_write(first, OUT_OF_BOUNDS, 4, 0, 0), Err(Error::InvalidArgs));
    expect!(raw::channel_write(first, memory_end() - 2, 4, 0, 0), Err(Error::InvalidArgs));
    expect!(
        raw::channel_write(first, 0, CHANNEL_MAX_MESSAGE_BYTES + 1, 0, 0),
        Err(Error::OutOfRange)
    );
    expect!(raw::channel_write(first, 0, 0, 0, 65), Err(Error::OutOfRange));
    expect!(raw::channel_read(second, OUT_OF_BOUNDS, 16, 0, 0, 0, 0), Err(Error::InvalidArgs));
    expect!(raw::channel_create(OUT_OF_BOUNDS, 0), Err(Error::InvalidArgs));
    expect!(read(second, 16, 0).status, Err(Error::ShouldWait));
    // A message of the largest size goes through whole.
    let big = vec![7u8; CHANNEL_MAX_MESSAGE_BYTES as usize];
    expect!(write(first, &big, &[]), Ok(()));
    assert_eq!(read(second, big.len(), 0).bytes, big);
    // Handles move with the message, keeping their object and rights.
    let moved = event();
    let koid = basic(moved).koid;
    expect!(write(first, b"gift", &[moved]), Ok(()));
    expect!(raw::handle_close(moved), Err(Error::BadHandle));
    let too_few = read(second, 16, 0);
    expect!(too_few.status, Err(Error::BufferTooSmall));
    assert_eq!(too_few.handles.len(), 1);
    let gift = read(second, 16, 4);
    expect!(gift.status, Ok(()));
    assert_eq!(gift.bytes, b"gift");
    assert_eq!(gift.handles.len(), 1);
    assert_eq!(basic(gift.handles[0]).koid, koid);
    assert_eq!(basic(gift.handles[0]).rights, Rights::EVENT_DEFAULT.bits());
    // A failed write consumes nothing.
    let kept = event();
    expect!(write(first, b"x", &[kept, BOGUS]), Err(Error::BadHandle));
    expect!(write(first, b"x", &[kept, kept]), Err(Error::InvalidArgs));
    expect!(write(first, b"x", &[first]), Err(Error::InvalidArgs));
    expect!(write(first, b"x", &[second]), Err(Error::InvalidArgs));
    let untransferable = duplicate(kept, Rights::WAIT | Rights::INSPECT);
    expect!(write(first, b"x", &[kept, untransferable]), Err(Error::AccessDenied));
    expect!(raw::channel_write(first, address(b"x"), 1, OUT_OF_BOUNDS, 1), Err(Error::InvalidArgs));
    assert_eq!(basic(kept).object_type, ObjectType::Event as u32, "still held");
    expect!(read(second, 16, 4).status, Err(Error::ShouldWait));
    // Rights and types.
    let read_only = duplicate(first, Rights::READ | Rights::WAIT);
    expect!(write(read_only, b"x", &[]), Err(Error::AccessDenied));
    let write_only = duplicate(second, Rights::WRITE);
    expect!(read(write_only, 16, 0).status, Err(Error::AccessDenied));
    expect!(write(kept, b"x", &[]), Err(Error::WrongType));
    expect!(write(BOGUS, b"x", &[]), Err(Error::BadHandle));
    // Messages are delivered in order, and what was written before the peer closed can
    // still be read; then PEER_CLOSED.
    for index in 0u32..10 {
        expect!(write(second, &index.to_le_bytes(), &[]), Ok(()));
    }
    expect!(raw::handle_close(second), Ok(()));
    expect!(raw::handle_close(write_only), Ok(()));
    assert!(signals_of(first).contains(Signals::PEER_CLOSED | Signals::READABLE));
    assert!(!signals_of(first).contains(Signals::WRITABLE));
    for index in 0u32..10 {
        assert_eq!(read(first, 4, 0).bytes, index.to_le_bytes());
    }
    expect!(read(first, 4, 0).status, Err(Error::PeerClosed));
    expect!(write(first, b"x", &[kept]), Err(Error::PeerClosed));
    assert_eq!(
        basic(kept).object_type,
        ObjectType::Event as u32,
        "a write to a closed peer keeps the handle"
    );
    // Closing a handle that is in a message closes it for good when the message is dropped.
    let (third, fourth) = channel();
    let (inner, inner_peer) = channel();
    expect!(write(third, b"", &[inner]), Ok(()));
    expect!(raw::handle_close(fourth), Ok(()));
    assert!(
        signals_of(inner_peer).contains(Signals::PEER_CLOSED),
        "unread messages close their handles"
    );
}

fn queue() {
    let (first, second) = channel();
    for index in 0..CHANNEL_MAX_QUEUED_MESSAGES {
        expect!(write(first, &index.to_le_bytes(), &[]), Ok(()));
    }
    assert!(!signals_of(first).contains(Signals::WRITABLE));
    let kept = event();
    expect!(write(first, b"more", &[kept]), Err(Error::ShouldWait));
    assert_eq!(basic(kept).object_type, ObjectType::Event as u32);
    assert_eq!(read(second, 4, 0).bytes, 0u32.to_le_bytes());
    assert!(signals_of(first).contains(Signals::WRITABLE));
    expect!(write(first, b"more", &[kept]), Ok(()));
    for index in 1..CHANNEL_MAX_QUEUED_MESSAGES {
        assert_eq!(read(second, 4, 0).bytes, index.to_le_bytes(), "in order, exactly once");
    }
    assert_eq!(read(second, 4, 1).bytes, b"more");
    expect!(read(second, 4, 0).status, Err(Error::ShouldWait));
}

/// A child that sends "hi" on its bootstrap channel, checks it cannot take the bootstrap
/// twice, then blocks forever.
const CHILD_BLOCKS: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi")
  (func (export "_start")
    (if (call $bootstrap (i32.const 0)) (then unreachable))
    (if (i32.ne (call $bootstrap (i32.const 4)) (i32.const -25)) (then unreachable))
    (if (call $write (i32.load (i32.const 0)) (i32.const 16) (i32.const 2) (i32.const 0) (i32.const 0))
      (then unreachable))
    (drop (call $sleep (i64.const 0x7fffffffffffffff)))))"#;

/// A child that writes "bye" and traps.
const CHILD_TRAPS: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "bye")
  (func (export "_start")
    (drop (call $bootstrap (i32.const 0)))
    (drop (call $write (i32.load (i32.const 0)) (i32.const 16) (i32.const 3) (i32.const 0) (i32.const 0)))
    unreachable))"#;

/// A child that receives its own process handle, kills itself, and would then say "alive".
const CHILD_KILLS_ITSELF: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_kill" (func $kill (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "alive")
  (func (export "_start")
    (drop (call $bootstrap (i32.const 0)))
    (drop (call $wait (i32.load (i32.const 0)) (i32.const 1) (i64.const 0x7fffffffffffffff) (i32.const 0)))
    (drop (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 0) (i32.const 8) (i32.const 1) (i32.const 0) (i32.const 0)))
    (drop (call $kill (i32.load (i32.const 8))))
    (drop (call $write (i32.load (i32.const 0)) (i32.const 32) (i32.const 5) (i32.const 0) (i32.const 0)))))"#;

/// A child that exits with code 7.
const CHILD_EXITS: &str = r#"(module
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (func (export "_start") (call $exit (i32.const 7))))"#;

fn processes() {
    let mut out = 0u32;
    expect!(raw::process_bootstrap(writable(&mut out)), Err(Error::NotFound));
    let garbage = b"\0asm\x01\0\0\0\x05garbage";
    expect!(
        raw::module_compile(address(garbage), garbage.len() as u32, writable(&mut out)),
        Err(Error::BadModule)
    );
    expect!(raw::module_compile(OUT_OF_BOUNDS, 8, writable(&mut out)), Err(Error::InvalidArgs));
    let module = compile(CHILD_BLOCKS);
    let record = basic(module);
    assert_eq!(
        (record.object_type, record.rights),
        (ObjectType::Module as u32, Rights::MODULE_DEFAULT.bits())
    );
    // Creation checks its arguments.
    let long = "x".repeat(65);
    expect!(
        raw::process_create(module, address(long.as_bytes()), 65, writable(&mut out)),
        Err(Error::OutOfRange)
    );
    expect!(
        raw::process_create(module, address(b"\xff\xfe"), 2, writable(&mut out)),
        Err(Error::InvalidArgs)
    );
    expect!(
        raw::process_create(module, OUT_OF_BOUNDS, 2, writable(&mut out)),
        Err(Error::InvalidArgs)
    );
    let not_executable = duplicate(module, Rights::READ | Rights::INSPECT);
    expect!(
        raw::process_create(not_executable, address(b"x"), 1, writable(&mut out)),
        Err(Error::AccessDenied)
    );
    let not_a_module = event();
    expect!(
        raw::process_create(not_a_module, address(b"x"), 1, writable(&mut out)),
        Err(Error::WrongType)
    );
    // Create, start with a bootstrap channel, hear from it, kill it.
    let child = create(module, "blocker");
    let record = basic(child);
    assert_eq!(
        (record.object_type, record.rights),
        (ObjectType::Process as u32, Rights::PROCESS_DEFAULT.bits())
    );
    assert_eq!(process_info(child).state, ProcessState::Created as u32);
    let (ours, theirs) = channel();
    expect!(raw::process_start(child, child), Err(Error::InvalidArgs));
    let inspector = duplicate(child, Rights::INSPECT | Rights::WAIT);
    expect!(raw::process_start(inspector, theirs), Err(Error::AccessDenied));
    // Limits, before the start only (every case: apps/tests/limits `set-limit-errors`).
    expect!(raw::process_set_limit(child, 2, 1_000), Ok(()));
    expect!(raw::process_set_limit(child, 0, 1_000), Err(Error::InvalidArgs));
    expect!(raw::process_set_limit(child, 2, -1), Err(Error::OutOfRange));
    expect!(raw::process_set_limit(inspector, 2, 1_000), Err(Error::AccessDenied));
    expect!(raw::process_set_limit(BOGUS, 2, 1_000), Err(Error::BadHandle));
    expect!(raw::process_set_limit(module, 2, 1_000), Err(Error::WrongType));
    expect!(raw::process_start(child, theirs), Ok(()));
    expect!(raw::process_set_limit(child, 2, 1_000), Err(Error::BadState));
    expect!(raw::handle_close(theirs), Err(Error::BadHandle));
    expect!(raw::process_start(child, 0), Err(Error::BadState));
    wait(ours, Signals::READABLE);
    assert_eq!(read(ours, 8, 0).bytes, b"hi");
    let running = process_info(child);
    assert_eq!((running.state, running.threads), (ProcessState::Running as u32, 1));
    assert!(running.memory_bytes >= 65_536, "one page at least: {}", running.memory_bytes);
    expect!(raw::process_kill(inspector), Err(Error::AccessDenied));
    expect!(raw::process_kill(child), Ok(()));
    wait(child, Signals::TERMINATED);
    let ended = process_info(child);
    assert_eq!(
        (ended.state, ended.exit_code, ended.exit_reason),
        (ProcessState::Ended as u32, -1, ExitReason::Killed as u32)
    );
    assert!(signals_of(ours).contains(Signals::PEER_CLOSED), "the killed child's handles closed");
    expect!(raw::process_kill(child), Ok(()));
    // A trapping child ends "trapped"; its parent and peers carry on.
    let trapper = create(compile(CHILD_TRAPS), "trapper");
    let (ours, theirs) = channel();
    expect!(raw::process_start(trapper, theirs), Ok(()));
    wait(trapper, Signals::TERMINATED);
    let ended = process_info(trapper);
    assert_eq!((ended.exit_code, ended.exit_reason), (-1, ExitReason::Trapped as u32));
    assert_eq!(read(ours, 8, 0).bytes, b"bye");
    expect!(read(ours, 8, 0).status, Err(Error::PeerClosed));
    // An exit code comes back; a never-started process can be killed.
    let exiter = create(compile(CHILD_EXITS), "exiter");
    expect!(raw::process_start(exiter, 0), Ok(()));
    wait(exiter, Signals::TERMINATED);
    let ended = process_info(exiter);
    assert_eq!((ended.exit_code, ended.exit_reason), (7, ExitReason::Exited as u32));
    // A process that kills itself does not return from the call.
    let suicidal = create(compile(CHILD_KILLS_ITSELF), "suicidal");
    let (ours, theirs) = channel();
    expect!(raw::process_start(suicidal, theirs), Ok(()));
    let own_handle = duplicate(suicidal, Rights::SAME_RIGHTS);
    expect!(write(ours, b"", &[own_handle]), Ok(()));
    wait(suicidal, Signals::TERMINATED);
    assert_eq!(process_info(suicidal).exit_reason, ExitReason::Killed as u32);
    expect!(read(ours, 8, 0).status, Err(Error::PeerClosed));
    let unstarted = create(module, "unstarted");
    expect!(raw::process_kill(unstarted), Ok(()));
    assert_eq!(process_info(unstarted).exit_reason, ExitReason::Killed as u32);
    expect!(raw::process_start(unstarted, 0), Err(Error::BadState));
}

fn services() {
    let (server, registered) = channel();
    expect!(raw::service_register(address(b"conformance"), 11, registered), Ok(()));
    expect!(raw::handle_close(registered), Err(Error::BadHandle));
    let (_, spare) = channel();
    expect!(raw::service_register(address(b"conformance"), 11, spare), Err(Error::AlreadyExists));
    assert_eq!(basic(spare).object_type, ObjectType::Channel as u32, "not consumed");
    expect!(raw::service_register(address(b""), 0, spare), Err(Error::InvalidArgs));
    expect!(raw::service_register(OUT_OF_BOUNDS, 4, spare), Err(Error::InvalidArgs));
    let not_a_channel = event();
    expect!(raw::service_register(address(b"event"), 5, not_a_channel), Err(Error::WrongType));
    // Connecting hands a channel end to the server as a one-handle message.
    let (client, request) = channel();
    expect!(raw::service_connect(address(b"nothing-here"), 12, request), Err(Error::NotFound));
    expect!(raw::service_connect(address(b"conformance"), 11, request), Ok(()));
    expect!(raw::handle_close(request), Err(Error::BadHandle));
    let connection = read(server, 0, 1);
    expect!(connection.status, Ok(()));
    assert_eq!(connection.handles.len(), 1);
    expect!(write(connection.handles[0], b"welcome", &[]), Ok(()));
    assert_eq!(read(client, 16, 0).bytes, b"welcome");
    // The name is freed when the server's end closes.
    expect!(raw::handle_close(server), Ok(()));
    let (_, another) = channel();
    expect!(raw::service_connect(address(b"conformance"), 11, another), Err(Error::NotFound));
    expect!(raw::service_register(address(b"conformance"), 11, another), Ok(()));
}

fn misc() {
    let mut first = [0u8; 64];
    let mut second = [0u8; 64];
    expect!(raw::random_fill(writable(&mut first), 64), Ok(()));
    expect!(raw::random_fill(writable(&mut second), 64), Ok(()));
    assert_ne!(first, second);
    expect!(raw::cprng_fill(writable(&mut first), 64), Ok(()));
    assert_ne!(first, second);
    expect!(raw::random_fill(OUT_OF_BOUNDS, 8), Err(Error::InvalidArgs));
    expect!(raw::cprng_fill(memory_end() - 4, 8), Err(Error::InvalidArgs));
    expect!(raw::random_fill(0, 65_537), Err(Error::OutOfRange));
    expect!(raw::debug_write(address(b"conformance: debug_write\n"), 25), Ok(()));
    expect!(raw::debug_write(OUT_OF_BOUNDS, 8), Err(Error::InvalidArgs));
    let start = now();
    assert!(start > 0 && now() >= start, "the clock is monotonic");
}

/// The thread calls in a process of one thread: `thread_yield`, the futexes' argument checks,
/// values and timeouts, and `sched_lock`/`sched_unlock` nesting. (Waking another thread is
/// tested by the threaded program, apps/tests/threaded.)
fn thread_calls() {
    expect!(raw::thread_yield(), Ok(()));

    let word = Box::new(core::sync::atomic::AtomicU32::new(7));
    let at = address(&*word);
    assert_eq!(at % 4, 0);
    // Pointer checks: misaligned, outside memory, straddling the end.
    for bad in [at + 1, at + 2, OUT_OF_BOUNDS, memory_end(), memory_end() - 2] {
        expect!(raw::futex_wait(bad, 7, 0), Err(Error::InvalidArgs));
        expect!(raw::futex_wake(bad, 1, 0), Err(Error::InvalidArgs));
    }
    // A value other than `expected` returns at once; the expected one waits until the deadline.
    expect!(raw::futex_wait(at, 8, DEADLINE_INFINITE), Err(Error::BadState));
    expect!(raw::futex_wait(at, 7, 0), Err(Error::TimedOut));
    let start = now();
    expect!(raw::futex_wait(at, 7, start + 2_000_000), Err(Error::TimedOut));
    assert!(now() >= start + 2_000_000, "futex_wait returned before its deadline");
    // Waking nobody: OK with 0 woken; `woken_out` is optional, and checked when given.
    let mut woken = u32::MAX;
    expect!(raw::futex_wake(at, u32::MAX, writable(&mut woken)), Ok(()));
    assert_eq!(woken, 0);
    expect!(raw::futex_wake(at, 1, 0), Ok(()));
    expect!(raw::futex_wake(at, 1, OUT_OF_BOUNDS), Err(Error::InvalidArgs));
    expect!(raw::futex_wake(at, 1, memory_end() - 3), Err(Error::InvalidArgs));
    assert_eq!(word.load(core::sync::atomic::Ordering::Relaxed), 7, "the futex calls left it");

    // sched_unlock without a lock is refused; regions nest, one unlock per lock.
    expect!(raw::sched_unlock(), Err(Error::BadState));
    expect!(raw::sched_lock(), Ok(()));
    expect!(raw::sched_lock(), Ok(()));
    expect!(raw::thread_yield(), Ok(()));
    expect!(raw::sched_unlock(), Ok(()));
    expect!(raw::sched_unlock(), Ok(()));
    expect!(raw::sched_unlock(), Err(Error::BadState));
    // A blocking call inside a region works (and keeps the region).
    expect!(raw::sched_lock(), Ok(()));
    expect!(raw::nanosleep(now()), Ok(()));
    expect!(raw::sched_unlock(), Ok(()));
    expect!(raw::sched_unlock(), Err(Error::BadState));

    // The watchdog of this process: not armed, bad intervals, armed, disarmed. (Its kills are
    // tested by the limits program, apps/tests/limits.)
    expect!(raw::watchdog_alive(), Err(Error::BadState));
    expect!(raw::watchdog_setup(999_999), Err(Error::InvalidArgs));
    expect!(raw::watchdog_setup(-1_000_000), Err(Error::InvalidArgs));
    expect!(raw::watchdog_alive(), Err(Error::BadState));
    expect!(raw::watchdog_setup(0), Ok(()));
    expect!(raw::watchdog_setup(60_000_000_000), Ok(()));
    expect!(raw::watchdog_alive(), Ok(()));
    expect!(raw::watchdog_setup(0), Ok(()));
    expect!(raw::watchdog_alive(), Err(Error::BadState));
}

/// Two new handles from a pair-making call.
fn pair(make: fn(u32, u32) -> i32) -> (u32, u32) {
    let (mut first, mut second) = (0u32, 0u32);
    expect!(make(writable(&mut first), writable(&mut second)), Ok(()));
    (first, second)
}

/// `socket_write` of `bytes`; the status and how many were taken.
fn socket_write(handle: u32, bytes: &[u8]) -> (i32, u32) {
    let mut actual = u32::MAX;
    let status = raw::socket_write(
        handle,
        bytes.as_ptr() as usize as u32,
        bytes.len() as u32,
        writable(&mut actual),
    );
    (status, actual)
}

/// `socket_read` of up to `length` bytes; the status and the bytes.
fn socket_read(handle: u32, length: usize) -> (i32, Vec<u8>) {
    let mut buffer = vec![0u8; length];
    let mut actual = 0u32;
    let status =
        raw::socket_read(handle, writable(buffer.as_mut_slice()), length as u32, writable(&mut actual));
    buffer.truncate(if status == 0 { actual as usize } else { 0 });
    (status, buffer)
}

fn sockets() {
    let code = |error: Error| error.code();
    // socket_create: options, pointers, types.
    let (mut first, mut second) = (0u32, 0u32);
    expect!(raw::socket_create(1, writable(&mut first), writable(&mut second)), Err(Error::InvalidArgs));
    expect!(raw::socket_create(0, OUT_OF_BOUNDS, writable(&mut second)), Err(Error::InvalidArgs));
    let (a, b) = pair(|x, y| raw::socket_create(0, x, y));
    assert_eq!(basic(a).object_type, ObjectType::Socket as u32);
    assert_eq!(signals_of(a), Signals::WRITABLE);
    // Bytes arrive in order, as a stream.
    assert_eq!(socket_write(a, b"hello "), (0, 6));
    assert_eq!(socket_write(a, b"world"), (0, 5));
    assert!(signals_of(b).contains(Signals::READABLE));
    assert_eq!(socket_read(b, 8), (0, b"hello wo".to_vec()));
    assert_eq!(socket_read(b, 8), (0, b"rld".to_vec()));
    assert_eq!(socket_read(b, 8).0, code(Error::ShouldWait));
    // Errors in their order.
    let big = vec![1u8; SOCKET_MAX_TRANSFER_BYTES as usize + 1];
    assert_eq!(socket_write(a, &big).0, code(Error::OutOfRange));
    expect!(raw::socket_write(a, OUT_OF_BOUNDS, 8, 0), Err(Error::InvalidArgs));
    assert_eq!(socket_write(BOGUS, b"x").0, code(Error::BadHandle));
    let event = event();
    assert_eq!(socket_write(event, b"x").0, code(Error::WrongType));
    let read_only = duplicate(a, Rights::READ | Rights::WAIT);
    assert_eq!(socket_write(read_only, b"x").0, code(Error::AccessDenied));
    let write_only = duplicate(a, Rights::WRITE);
    assert_eq!(socket_read(write_only, 1).0, code(Error::AccessDenied));
    // A full buffer takes what fits, then waits.
    let chunk = vec![7u8; SOCKET_MAX_TRANSFER_BYTES as usize];
    let mut buffered = 0;
    while buffered < SOCKET_MAX_BUFFERED_BYTES {
        let (status, taken) = socket_write(a, &chunk);
        assert_eq!(status, 0);
        buffered += taken;
    }
    assert_eq!(buffered, SOCKET_MAX_BUFFERED_BYTES);
    assert!(!signals_of(a).contains(Signals::WRITABLE));
    assert_eq!(socket_write(a, b"x").0, code(Error::ShouldWait));
    assert_eq!(socket_read(b, 10).1.len(), 10);
    assert_eq!(socket_write(a, &chunk), (0, 10), "as much as was read");
    // Shutdown: options, then the stream's end after the buffered bytes.
    expect!(raw::socket_shutdown(a, 0), Err(Error::InvalidArgs));
    expect!(raw::socket_shutdown(a, 4), Err(Error::InvalidArgs));
    expect!(raw::socket_shutdown(read_only, 1), Err(Error::AccessDenied));
    expect!(raw::socket_shutdown(a, 1), Ok(()));
    assert_eq!(socket_write(a, b"x").0, code(Error::BadState));
    assert!(signals_of(b).contains(Signals::PEER_WRITE_DISABLED | Signals::READABLE));
    let mut drained = 0;
    loop {
        let (status, bytes) = socket_read(b, SOCKET_MAX_TRANSFER_BYTES as usize);
        if status != 0 {
            assert_eq!(status, code(Error::PeerClosed), "the end of the stream");
            break;
        }
        drained += bytes.len() as u32;
    }
    assert_eq!(drained, SOCKET_MAX_BUFFERED_BYTES);
    // The other way still works; then shutting down reads drops and fails the writer.
    assert_eq!(socket_write(b, b"back"), (0, 4));
    assert_eq!(socket_read(a, 8), (0, b"back".to_vec()));
    expect!(raw::socket_shutdown(a, 2), Ok(()));
    assert_eq!(socket_read(a, 1).0, code(Error::BadState));
    assert_eq!(socket_write(b, b"x").0, code(Error::PeerClosed));
    // Closing an end: its peer sees PEER_CLOSED.
    expect!(raw::handle_close(a), Ok(()));
    expect!(raw::handle_close(read_only), Ok(()));
    assert!(!signals_of(b).contains(Signals::PEER_CLOSED), "an end closes with its last handle");
    expect!(raw::handle_close(write_only), Ok(()));
    assert!(signals_of(b).contains(Signals::PEER_CLOSED));
    expect!(raw::handle_close(b), Ok(()));

    // Listeners and connectors.
    let (listener, connector) = pair(raw::listener_create);
    assert_eq!(basic(listener).object_type, ObjectType::Listener as u32);
    assert_eq!(basic(connector).object_type, ObjectType::Connector as u32);
    let mut out = 0u32;
    expect!(raw::listener_accept(listener, writable(&mut out)), Err(Error::ShouldWait));
    expect!(raw::listener_accept(listener, OUT_OF_BOUNDS), Err(Error::InvalidArgs));
    expect!(raw::listener_accept(connector, writable(&mut out)), Err(Error::WrongType));
    expect!(raw::connector_connect(listener, writable(&mut out)), Err(Error::WrongType));
    expect!(raw::connector_connect(duplicate(connector, Rights::WAIT), writable(&mut out)), Err(Error::AccessDenied));
    let mut client = 0u32;
    expect!(raw::connector_connect(connector, writable(&mut client)), Ok(()));
    assert!(wait(listener, Signals::READABLE).contains(Signals::READABLE));
    let mut server = 0u32;
    expect!(raw::listener_accept(listener, writable(&mut server)), Ok(()));
    assert_eq!(socket_write(client, b"ping"), (0, 4));
    assert_eq!(socket_read(server, 4), (0, b"ping".to_vec()));
    // The backlog is bounded.
    let mut waiting = Vec::new();
    for _ in 0..LISTENER_BACKLOG {
        let mut socket = 0u32;
        expect!(raw::connector_connect(connector, writable(&mut socket)), Ok(()));
        waiting.push(socket);
    }
    expect!(raw::connector_connect(connector, writable(&mut out)), Err(Error::ShouldWait));
    // A connector whose listener is gone.
    expect!(raw::handle_close(listener), Ok(()));
    assert!(signals_of(connector).contains(Signals::PEER_CLOSED));
    expect!(raw::connector_connect(connector, writable(&mut out)), Err(Error::PeerClosed));
    for socket in waiting {
        assert!(signals_of(socket).contains(Signals::PEER_CLOSED), "dropped with the listener");
    }
}

/// `syscalls echo`: takes a listener from its bootstrap message, and echoes the bytes of each
/// connection it accepts back to it until the connection ends; ends when the listener does.
fn echo() {
    let mut bootstrap = 0u32;
    expect!(raw::process_bootstrap(writable(&mut bootstrap)), Ok(()));
    wait(bootstrap, Signals::READABLE);
    let message = read(bootstrap, 64, 1);
    assert_eq!((message.status, message.bytes.as_slice()), (0, b"listener".as_slice()));
    let listener = message.handles[0];
    loop {
        let mut socket = 0u32;
        match raw::listener_accept(listener, writable(&mut socket)) {
            0 => {}
            status if status == Error::ShouldWait.code() => {
                wait(listener, Signals::READABLE | Signals::PEER_CLOSED);
                continue;
            }
            status if status == Error::PeerClosed.code() => return,
            status => panic!("listener_accept: {}", name(status)),
        }
        loop {
            let (status, bytes) = socket_read(socket, 4096);
            if status == Error::ShouldWait.code() {
                wait(socket, Signals::READABLE | Signals::PEER_CLOSED | Signals::PEER_WRITE_DISABLED);
                continue;
            }
            if status == Error::PeerClosed.code() {
                break;
            }
            assert_eq!(status, 0, "socket_read: {}", name(status));
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let (status, taken) = socket_write(socket, rest);
                if status == Error::ShouldWait.code() {
                    wait(socket, Signals::WRITABLE | Signals::PEER_CLOSED);
                    continue;
                }
                assert_eq!(status, 0, "socket_write: {}", name(status));
                rest = &rest[taken as usize..];
            }
        }
        expect!(raw::socket_shutdown(socket, 1), Ok(()));
        expect!(raw::handle_close(socket), Ok(()));
    }
}

/// A WASI `iovec` array of one buffer, in `storage`.
fn iovec(storage: &mut [u32; 2], buffer: &mut [u8]) -> u32 {
    *storage = [writable(buffer), buffer.len() as u32];
    writable(storage)
}

/// `syscalls wasi-sockets`: WASI preview 1 on sockets through the raw functions, with a
/// listening socket at fd 3 and an idle one at fd 4. A client connects to fd 3, sends `abc`,
/// reads to the end (it gets `xyz`), then closes.
fn wasi_sockets() {
    use nebulet_raw::wasi;
    const EAGAIN: i32 = 6;
    const EINVAL: i32 = 28;
    const ENOTCONN: i32 = 53;
    const ENOTSOCK: i32 = 57;
    const NONBLOCK: u32 = 4;
    const RECV_WAITALL: u32 = 2;
    // fdstat: a listening socket is a stream socket that may accept.
    let mut stat = [0u8; 24];
    assert_eq!(wasi::fd_fdstat_get(3, writable(&mut stat)), 0);
    assert_eq!(stat[0], 6, "SOCKET_STREAM");
    let base = u64::from_le_bytes(stat[8..16].try_into().unwrap());
    assert_ne!(base & (1 << 29), 0, "the sock_accept right");
    // Errors: not a socket, bad flags, not connected.
    let mut fd = 0u32;
    assert_eq!(wasi::sock_accept(1, 0, writable(&mut fd)), ENOTSOCK, "stdout is no socket");
    assert_eq!(wasi::sock_accept(3, 1, writable(&mut fd)), EINVAL, "unknown accept flags");
    assert_eq!(wasi::sock_shutdown(3, 2), ENOTCONN, "a listener has no connection");
    assert_eq!(wasi::sock_shutdown(1, 2), ENOTSOCK);
    // A nonblocking listener with nothing waiting.
    assert_eq!(wasi::fd_fdstat_set_flags(4, NONBLOCK), 0);
    assert_eq!(wasi::sock_accept(4, 0, writable(&mut fd)), EAGAIN);
    // The connection, accepted nonblocking.
    assert_eq!(wasi::sock_accept(3, NONBLOCK, writable(&mut fd)), 0);
    let mut stat = [0u8; 24];
    assert_eq!(wasi::fd_fdstat_get(fd, writable(&mut stat)), 0);
    assert_eq!((stat[0], stat[2] as u32), (6, NONBLOCK), "a nonblocking stream socket");
    assert_eq!(wasi::sock_shutdown(fd, 0), EINVAL);
    // Wait for `abc` with poll_oneoff FD_READ, then read it all at once.
    let mut subscription = [0u8; 48];
    subscription[0..8].copy_from_slice(&7u64.to_le_bytes());
    subscription[8] = 1;
    subscription[16..20].copy_from_slice(&fd.to_le_bytes());
    let (mut event, mut count) = ([0u8; 32], 0u32);
    let mut got = [0u8; 3];
    let mut vector = [0u32; 2];
    let mut length = 0u32;
    let mut flags = 0u16;
    loop {
        assert_eq!(wasi::poll_oneoff(writable(&mut subscription), writable(&mut event), 1, writable(&mut count)), 0);
        assert_eq!((count, event[10]), (1, 1), "FD_READ ready");
        let iovs = iovec(&mut vector, &mut got[length as usize..]);
        match wasi::sock_recv(fd, iovs, 1, 0, writable(&mut length), writable(&mut flags)) {
            0 if length == 3 => break,
            0 => {}
            EAGAIN => {}
            errno => panic!("sock_recv: errno {errno}"),
        }
    }
    assert_eq!(&got, b"abc");
    // Nothing more comes until the client has its answer: a nonblocking read would block.
    let mut more = [0u8; 8];
    let iovs = iovec(&mut vector, &mut more);
    assert_eq!(wasi::sock_recv(fd, iovs, 1, 0, writable(&mut length), writable(&mut flags)), EAGAIN);
    assert_eq!(wasi::sock_recv(fd, iovs, 1, 4, writable(&mut length), writable(&mut flags)), EINVAL);
    // FD_WRITE is ready at once; send `xyz` and end the stream.
    subscription[8] = 2;
    assert_eq!(wasi::poll_oneoff(writable(&mut subscription), writable(&mut event), 1, writable(&mut count)), 0);
    assert_eq!((count, event[10]), (1, 2), "FD_WRITE ready");
    let mut answer = *b"xyz";
    let iovs = iovec(&mut vector, &mut answer);
    assert_eq!(wasi::sock_send(fd, iovs, 1, 1, writable(&mut length)), EINVAL, "no send flags");
    assert_eq!(wasi::sock_send(fd, iovs, 1, 0, writable(&mut length)), 0);
    assert_eq!(length, 3);
    assert_eq!(wasi::sock_shutdown(fd, 2), 0);
    // The client closes: blocking, WAITALL reads to the end, which comes with nothing.
    assert_eq!(wasi::fd_fdstat_set_flags(fd, 0), 0);
    let iovs = iovec(&mut vector, &mut more);
    assert_eq!(wasi::sock_recv(fd, iovs, 1, RECV_WAITALL, writable(&mut length), writable(&mut flags)), 0);
    assert_eq!(length, 0, "the end of the stream");
    assert_eq!(wasi::fd_close(fd), 0);
}

/// `syscalls connect`: takes a connector from its bootstrap message, connects, sends `hello`,
/// ends its stream, and prints what came back.
fn connect() {
    let mut bootstrap = 0u32;
    expect!(raw::process_bootstrap(writable(&mut bootstrap)), Ok(()));
    wait(bootstrap, Signals::READABLE);
    let message = read(bootstrap, 64, 1);
    assert_eq!((message.status, message.bytes.as_slice()), (0, b"connector".as_slice()));
    let connector = message.handles[0];
    assert_eq!(basic(connector).object_type, ObjectType::Connector as u32);
    let mut socket = 0u32;
    expect!(raw::connector_connect(connector, writable(&mut socket)), Ok(()));
    assert_eq!(socket_write(socket, b"hello"), (0, 5));
    expect!(raw::socket_shutdown(socket, 1), Ok(()));
    let mut answer = Vec::new();
    loop {
        match socket_read(socket, 64) {
            (0, bytes) => answer.extend(bytes),
            (status, _) if status == Error::ShouldWait.code() => {
                wait(socket, Signals::READABLE | Signals::PEER_CLOSED | Signals::PEER_WRITE_DISABLED);
            }
            (status, _) => {
                assert_eq!(status, Error::PeerClosed.code(), "the end of the stream");
                break;
            }
        }
    }
    println!("answer: {}", String::from_utf8_lossy(&answer));
    // A second connection to an address nobody listens on any more fails with ERR_IO.
    expect!(raw::connector_connect(connector, writable(&mut socket)), Err(Error::Io));
}
