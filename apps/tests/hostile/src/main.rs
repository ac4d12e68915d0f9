//! Hostile children under subtree budgets, run by the hosted integration tests as
//! `hostile CASE`: each case starts children (WAT modules from `programs.rs`, compiled with
//! `module_compile`) that try to take more than their budget (memories, tables, compiles, deep
//! trees, zero-byte floods, service names, long writes), sets the limit that should stop them,
//! and checks how they end. It prints `hostile CASE: ok` and exits 0, or panics (a trap) with
//! the failing check. The case `bomb` starts a spawn bomb and waits to be killed; the case
//! `stress SECONDS SPINNERS` is the program of `cargo xtask stress` (see `stress.rs`).

mod programs;
mod stress;

use nebulet_raw as raw;
use nebulet_raw::{
    address, channel, compile, create, expect, name, now, process_info, reason, writable, write,
};

use nebulet_abi::layout::InfoProcess;
use nebulet_abi::{Error, ExitReason, Limit, Signals};

const MILLISECOND: i64 = 1_000_000;
const SECOND: i64 = 1_000 * MILLISECOND;
const MIB: i64 = 1 << 20;
/// The longest any child may take to end: not a benchmark, only a bound that turns a hang
/// into a failure.
const PATIENCE: i64 = 60 * SECOND;

fn main() {
    let case = std::env::args().nth(1).unwrap_or_default();
    match case.as_str() {
        "memories" => memories(),
        "thread-memories" => thread_memories(),
        "shared-memory" => shared_memory(),
        "table" => table(),
        "compile" => compile_charge(),
        "subtree" => subtree(),
        "zero-byte" => zero_byte(),
        "depth" => depth(),
        "descendants" => descendants(),
        "services" => services(),
        "cpu-writer" => cpu_writer(),
        "threads" => threads(),
        "bomb" => bomb(),
        "stress" => {
            let number = |index: usize| {
                std::env::args().nth(index).map(|text| {
                    text.parse::<u64>().unwrap_or_else(|_| panic!("`{text}` is not a number"))
                })
            };
            stress::stress(
                number(2).unwrap_or(30) as i64,
                number(3).unwrap_or(2) as usize,
                number(4),
            );
        }
        other => panic!("unknown case `{other}`"),
    }
    println!("hostile {case}: ok");
}

fn set_limit(process: u32, limit: Limit, value: i64) {
    expect!(raw::process_set_limit(process, limit as u32, value), Ok(()));
}

/// Waits (at most [`PATIENCE`]) for a child to end and returns how it ended; a child that does
/// not end in time is killed, and the case fails.
fn ended(child: u32, what: &str) -> InfoProcess {
    raw::ended(child, what, now() + PATIENCE)
}

/// Starts `source` with `limits` (and `bootstrap`, 0 for none) and returns how it ended.
fn run(source: &str, what: &str, limits: &[(Limit, i64)], bootstrap: u32) -> InfoProcess {
    let child = create(compile(source), what);
    for &(limit, value) in limits {
        set_limit(child, limit, value);
    }
    expect!(raw::process_start(child, bootstrap), Ok(()));
    ended(child, what)
}

/// Asserts that a child exited with `code`; `meanings` explains the codes it may exit with.
fn assert_exited(info: &InfoProcess, code: i32, what: &str, meanings: &str) {
    assert!(
        info.exit_reason == ExitReason::Exited as u32 && info.exit_code == code,
        "{what}: ended {} with code {}, expected exited with code {code} ({meanings})",
        reason(info),
        info.exit_code
    );
}

/// A module with two memories: growing the second counts against the same budget as the first.
fn memories() {
    let info = run(programs::TWO_MEMORIES, "two-memories", &[(Limit::MemoryBytes, 16 * MIB)], 0);
    assert_exited(&info, 0, "two memories", programs::TWO_MEMORIES_CODES);
}

/// A threaded module with a private memory in each thread instance.
fn thread_memories() {
    let info = run(
        programs::THREAD_PRIVATE_MEMORY,
        "thread-memories",
        &[(Limit::MemoryBytes, 16 * MIB)],
        0,
    );
    assert_exited(&info, 0, "private memory per thread", programs::THREAD_PRIVATE_MEMORY_CODES);
}

/// A module that defines (rather than imports) a shared memory does not compile.
fn shared_memory() {
    let mut module = 0u32;
    let source = programs::DEFINES_SHARED_MEMORY;
    expect!(
        raw::module_compile(address(source.as_bytes()), source.len() as u32, writable(&mut module)),
        Err(Error::BadModule)
    );
    // Importing one is how threaded modules get theirs: that compiles.
    compile(programs::IMPORTS_SHARED_MEMORY);
}

fn table() {
    let info = run(programs::TABLE_GROWS, "table", &[(Limit::MemoryBytes, 16 * MIB)], 0);
    assert_exited(&info, 0, "table.grow", programs::TABLE_GROWS_CODES);
}

/// `module_compile` is charged to its caller: 40 MiB of data (the bytes twice, and the code)
/// do not fit in a 64 MiB budget that already holds the 40 MiB of bytes in linear memory.
fn compile_charge() {
    let source = programs::compiles_big_module(40 << 20);
    let info = run(&source, "compiler", &[(Limit::MemoryBytes, 64 * MIB)], 0);
    assert_exited(&info, 0, "compiler", programs::COMPILES_BIG_MODULE_CODES);
}

/// A parent limited to 32 MiB: its child (default limits) cannot grow to 64 MiB.
fn subtree() {
    let (ours, theirs) = channel();
    expect!(write(ours, b"child", &[compile(programs::GROWS_64_MIB)]), Ok(()));
    let info = run(programs::RELAY, "relay", &[(Limit::MemoryBytes, 32 * MIB)], theirs);
    assert_exited(&info, 0, "relay of a 64 MiB child", programs::GROWS_64_MIB_CODES);
}

/// Zero-byte messages cost their overhead against the `queued` limit.
fn zero_byte() {
    let info = run(programs::ZERO_BYTE_FLOOD, "zero-byte", &[(Limit::QueuedBytes, 64 << 10)], 0);
    assert_exited(&info, 0, "zero-byte flood", programs::ZERO_BYTE_FLOOD_CODES);
}

/// Starts the chain of replicators (see [`programs::REPLICATOR`]) below this process, with
/// `limits` on its first link; returns the depth of the process whose `process_create` failed
/// and the status it got.
fn chain(limits: &[(Limit, i64)]) -> (i32, i32) {
    let (ours, theirs) = channel();
    // This process is at depth 1 (the kernel started it); the first link is at depth 2.
    expect!(write(ours, &2u32.to_le_bytes(), &[compile(programs::REPLICATOR)]), Ok(()));
    let info = run(programs::REPLICATOR, "link", limits, theirs);
    assert!(
        info.exit_reason == ExitReason::Exited as u32,
        "the chain's first link ended {} with code {}",
        reason(&info),
        info.exit_code
    );
    let code = info.exit_code;
    assert!(
        code != programs::REPLICATOR_TOO_DEEP + programs::REPLICATOR_GUARD - 2,
        "the chain grew to depth {} (the guard): nothing stopped it",
        programs::REPLICATOR_GUARD
    );
    assert!(
        (1000..8000).contains(&code),
        "the chain failed with code {code} ({})",
        programs::REPLICATOR_CODES
    );
    (2 + code % 1000, -(code / 1000))
}

/// The process tree is at most 32 levels deep: the process at depth 32 cannot create one.
fn depth() {
    let (depth, status) = chain(&[]);
    println!("hostile depth: process_create failed at depth {depth}: {}", name(status));
    assert_eq!((depth, name(status)), (32, name(Error::NoResources.code())));
}

/// `children` counts all live descendants: a chain under a link limited to 3 children stops
/// when the link has 3 descendants (at depth 5).
fn descendants() {
    let (depth, status) = chain(&[(Limit::Children, 3)]);
    println!("hostile descendants: process_create failed at depth {depth}: {}", name(status));
    assert_eq!((depth, name(status)), (5, name(Error::NoResources.code())));
}

fn register(service: &str) -> i32 {
    // The first end stays open (it is never closed), so the name's service is still there.
    let (_kept, registered) = channel();
    raw::service_register(address(service.as_bytes()), service.len() as u32, registered)
}

/// A process's service names go when it ends, and it holds at most 256.
fn services() {
    // A child registers a name and sends us the server end (so the endpoint stays open), then
    // ends: its name goes with it.
    let (ours, theirs) = channel();
    let info = run(programs::LEAVES_A_NAME, "leaves-a-name", &[], theirs);
    assert_exited(&info, 0, "leaves-a-name", programs::LEAVES_A_NAME_CODES);
    let mut server = 0u32;
    let mut count = 0u32;
    expect!(
        raw::channel_read(ours, 0, 0, writable(&mut server), 1, 0, writable(&mut count)),
        Ok(())
    );
    assert_eq!(count, 1, "the child sent its server end");
    let (_client, peer) = channel();
    let service = programs::LEFT_NAME;
    let connected = raw::service_connect(address(service.as_bytes()), service.len() as u32, peer);
    assert_eq!(name(connected), name(Error::NotFound.code()), "connect to the ended child's name");
    expect!(register(service), Ok(()));
    // 256 names per process (this one holds 1 now), then ERR_NO_RESOURCES.
    for index in 1..256 {
        let status = register(&format!("hostile-{index}"));
        assert_eq!(status, 0, "name {} of 256: {}", index + 1, name(status));
    }
    expect!(register("hostile-257"), Err(Error::NoResources));
}

/// A writer of 64 MiB calls under a 10 ms CPU limit ends "out of resources".
fn cpu_writer() {
    let info = run(
        programs::WRITES_FOREVER,
        "cpu-writer",
        &[(Limit::CpuNanoseconds, 10 * MILLISECOND)],
        0,
    );
    assert!(
        info.exit_reason == ExitReason::OutOfResources as u32,
        "cpu-writer: ended {} with code {}",
        reason(&info),
        info.exit_code
    );
}

/// The `threads` limit (6) bounds the threads of the subtree: with 2, the second
/// `thread-spawn` fails.
fn threads() {
    let child = create(compile(programs::SPAWNS_THREADS), "threads");
    expect!(raw::process_set_limit(child, Limit::Threads as u32, 2), Ok(()));
    expect!(raw::process_start(child, 0), Ok(()));
    assert_exited(&ended(child, "threads"), 0, "threads", programs::SPAWNS_THREADS_CODES);
}

/// Starts a spawn bomb with a memory and children budget, and waits to be killed: the test
/// watches the console, runs a sibling, and kills this process.
fn bomb() {
    let root = create(compile(programs::BOMB), "bomb");
    set_limit(root, Limit::MemoryBytes, 256 * MIB);
    set_limit(root, Limit::Children, 64);
    let (ours, theirs) = channel();
    // Generations 0 to 9: at most 1,023 processes if the kernel does not bound it.
    let message = programs::bomb_message(9);
    expect!(write(ours, &message, &[]), Ok(()));
    expect!(raw::process_start(root, theirs), Ok(()));
    println!("hostile bomb: started");
    let result = raw::object_wait_one(root, Signals::TERMINATED.bits(), i64::MAX, 0);
    panic!("the bomb's root ended ({}): {}", name(result), reason(&process_info(root)));
}
