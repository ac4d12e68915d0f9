//! `hostile stress SECONDS SPINNERS [JAIL_MEMORY]`, run by `cargo xtask stress`: starts a spawn
//! bomb, a memory bomb, a table bomb, two long-call writers and SPINNERS spinners in a jail
//! whose memory budget is all the root budget has left but 256 MiB (or JAIL_MEMORY bytes, if
//! less), and meanwhile measures this process's own sleep lateness and a ping round trip to a
//! well-behaved child outside the jail. Then it ends the jail and prints its figures as
//! `stress: ...` lines.

use nebulet_raw as raw;
use nebulet_raw::{channel, compile, create, expect, name, now, writable, write};

use nebulet_abi::layout::InfoBudget;
use nebulet_abi::{InfoTopic, Limit, Signals};

use crate::programs;

const MICROSECOND: i64 = 1_000;
const MILLISECOND: i64 = 1_000 * MICROSECOND;
const SECOND: i64 = 1_000 * MILLISECOND;
/// The spawn bomb's last generation: at most 2^13 - 1 processes if the kernel does not bound
/// it, so that a run on a kernel without budgets stays within a few GiB.
const BOMB_LAST_GENERATION: u32 = 12;
/// Memory the jail's budget leaves to this process and pong.
const RESERVE_BYTES: u64 = 256 << 20;
/// The most threads in the jail. Their stacks are charged to the root budget, not to the jail's
/// memory, so the jail's memory limit leaves room for them too.
const JAIL_THREADS: u64 = 2_048;
/// The stack of each thread on the hosted platform (wasmtime's async stack size by default).
const STACK_BYTES: u64 = 2 << 20;

/// A child, and the other end of its bootstrap channel (on which it may report).
struct Child {
    process: u32,
    reports: u32,
}

/// Starts `source` as a child of this process, outside the jail.
fn start(source: &str, what: &str) -> Child {
    let process = create(compile(source), what);
    let (reports, theirs) = channel();
    expect!(raw::process_start(process, theirs), Ok(()));
    Child { process, reports }
}

/// Has the jail start `module` with `message` queued on its bootstrap channel; returns the
/// other end of that channel.
fn jailed(jail: u32, module: u32, what: &str, message: &[u8]) -> u32 {
    let (reports, theirs) = channel();
    if !message.is_empty() {
        expect!(write(reports, message, &[]), Ok(()));
    }
    expect!(write(jail, what.as_bytes(), &[module, theirs]), Ok(()));
    reports
}

/// The 4-byte report a child left on its channel, if any.
fn report(reports: u32) -> Option<i32> {
    let mut bytes = [0u8; 4];
    let mut actual = 0u32;
    let status =
        raw::channel_read(reports, writable(&mut bytes), 4, 0, 0, writable(&mut actual), 0);
    (status == 0 && actual == 4).then(|| i32::from_le_bytes(bytes))
}

/// What a charge of memory to `process` could still take (`memory_available` of its BUDGET).
fn memory_available(process: u32) -> Option<u64> {
    let mut bytes = [0u8; InfoBudget::SIZE];
    let topic = InfoTopic::Budget as u32;
    let status =
        raw::object_get_info(process, topic, writable(&mut bytes), InfoBudget::SIZE as u32, 0);
    // The memory entry is the first of `Limit::ALL`.
    (status == 0).then(|| InfoBudget::from_bytes(&bytes).available[0])
}

/// Median, 99th percentile and maximum of `samples` (sorted in place), in microseconds.
fn print_figures(what: &str, samples: &mut [i64]) {
    samples.sort_unstable();
    let Some(&max) = samples.last() else {
        println!("stress: {what} (us): count 0");
        return;
    };
    let count = samples.len();
    let median = samples[count / 2];
    let p99 = samples[(count * 99 / 100).min(count - 1)];
    println!(
        "stress: {what} (us): count {count} median {} p99 {} max {}",
        median / MICROSECOND,
        p99 / MICROSECOND,
        max / MICROSECOND
    );
}

pub fn stress(seconds: i64, spinners: usize, jail_memory: Option<u64>) {
    // Everything this process needs is allocated before the bombs start.
    let mut lateness: Vec<i64> = Vec::with_capacity(seconds as usize * 1_000 + 16);
    let mut round_trips: Vec<i64> = Vec::with_capacity(seconds as usize * 100 + 16);
    println!("stress: {seconds} s, {spinners} spinners, 2 writers, a spawn, memory and table bomb");
    let pong = start(programs::PONG, "pong");
    let available = memory_available(pong.process);
    match available {
        Some(bytes) => println!("stress: root budget: {bytes} bytes available to a new child"),
        None => println!("stress: root budget: unknown (no BUDGET topic)"),
    }
    // The hostile programs run in a jail whose budget leaves this process and pong room, with
    // every module compiled before the bombs start (a compile needs room in the budget).
    let jail = create(compile(programs::JAIL), "jail");
    let stacks = JAIL_THREADS * STACK_BYTES;
    let limit = [available.map(|bytes| bytes.saturating_sub(RESERVE_BYTES + stacks)), jail_memory]
        .into_iter()
        .flatten()
        .min();
    if let Some(bytes) = limit {
        println!("stress: jail memory limit: {bytes} bytes, {JAIL_THREADS} threads");
        expect!(raw::process_set_limit(jail, Limit::MemoryBytes as u32, bytes as i64), Ok(()));
    }
    expect!(raw::process_set_limit(jail, Limit::Threads as u32, JAIL_THREADS as i64), Ok(()));
    let bomb = compile(programs::BOMB);
    let bombs = [compile(programs::MEMORY_BOMB), compile(programs::TABLE_BOMB)];
    let writers = [compile(programs::WRITES_FOREVER), compile(programs::WRITES_FOREVER)];
    let spinning: Vec<u32> = (0..spinners).map(|_| compile(programs::SPINNER)).collect();
    let (cell, theirs) = channel();
    expect!(raw::process_start(jail, theirs), Ok(()));
    jailed(cell, bomb, "bomb", &programs::bomb_message(BOMB_LAST_GENERATION));
    let memory_bomb = jailed(cell, bombs[0], "memory-bomb", &[]);
    let table_bomb = jailed(cell, bombs[1], "table-bomb", &[]);
    for writer in writers {
        jailed(cell, writer, "writer", &[]);
    }
    for spinner in spinning {
        jailed(cell, spinner, "spinner", &[]);
    }

    let mut failed_pings = 0u32;
    let end = now() + seconds * SECOND;
    // Each deadline is 1 ms after the last wake, so lateness also counts the time this process
    // waited for a worker while running its own code between two sleeps.
    let mut deadline = now() + MILLISECOND;
    while deadline < end && lateness.len() < lateness.capacity() {
        expect!(raw::nanosleep(deadline), Ok(()));
        let woke = now();
        lateness.push(woke - deadline);
        deadline = woke + MILLISECOND;
        if lateness.len().is_multiple_of(10) && round_trips.len() < round_trips.capacity() {
            let start = now();
            let result = ping(pong.reports);
            deadline = now() + MILLISECOND;
            match result {
                Ok(()) => round_trips.push(deadline - MILLISECOND - start),
                Err(status) => {
                    failed_pings += 1;
                    if failed_pings == 1 {
                        println!("stress: a ping failed: {}", name(status));
                    }
                }
            }
        }
    }

    match report(memory_bomb) {
        Some(mib) => println!("stress: memory bomb got {mib} MiB"),
        None => println!("stress: memory bomb: no report"),
    }
    match report(table_bomb) {
        Some(result) => println!("stress: table bomb: table grow returned {result}"),
        None => println!("stress: table bomb: no report"),
    }
    // Closing the jail's channel makes it kill its children and exit.
    expect!(raw::handle_close(cell), Ok(()));
    let ended = raw::object_wait_one(jail, Signals::TERMINATED.bits(), now() + 10 * SECOND, 0);
    if ended != 0 {
        println!("stress: the jail did not end within 10 s: {}", name(ended));
        expect!(raw::process_kill(jail), Ok(()));
    }
    print_figures("sleep 1 ms lateness", &mut lateness);
    print_figures("ping round trip", &mut round_trips);
    println!("stress: failed pings {failed_pings}");
}

/// One round trip of 8 bytes to the pong child.
fn ping(channel: u32) -> Result<(), i32> {
    let status = write(channel, &now().to_le_bytes(), &[]);
    if status != 0 {
        return Err(status);
    }
    let status = raw::object_wait_one(
        channel,
        (Signals::READABLE | Signals::PEER_CLOSED).bits(),
        now() + 10 * SECOND,
        0,
    );
    if status != 0 {
        return Err(status);
    }
    let mut bytes = [0u8; 8];
    match raw::channel_read(channel, writable(&mut bytes), 8, 0, 0, 0, 0) {
        0 => Ok(()),
        status => Err(status),
    }
}
