//! `hostile stress SECONDS SPINNERS`, run by `cargo xtask stress`: starts a spawn bomb, a memory
//! bomb, a table bomb, two long-call writers and SPINNERS spinners, all with default limits
//! (so they share this process's budget), and meanwhile measures this process's own sleep
//! lateness and a ping round trip to a well-behaved child. Then it kills them all and prints
//! its figures as `stress: ...` lines.

use nebulet_raw as raw;
use nebulet_raw::{channel, compile, create, expect, name, now, writable, write};

use nebulet_abi::Signals;

use crate::programs;

const MICROSECOND: i64 = 1_000;
const MILLISECOND: i64 = 1_000 * MICROSECOND;
const SECOND: i64 = 1_000 * MILLISECOND;
/// The spawn bomb's last generation: at most 2^13 - 1 processes if the kernel does not bound
/// it, so that a run on a kernel without budgets stays within a few GiB.
const BOMB_LAST_GENERATION: u32 = 12;

/// A hostile child, and the channel it may report on.
struct Child {
    process: u32,
    reports: u32,
}

fn start(source: &str, what: &str, message: &[u8]) -> Child {
    let process = create(compile(source), what);
    let (reports, theirs) = channel();
    if !message.is_empty() {
        expect!(write(reports, message, &[]), Ok(()));
    }
    expect!(raw::process_start(process, theirs), Ok(()));
    Child { process, reports }
}

/// The 4-byte report a child left on its channel, if any.
fn report(child: &Child) -> Option<i32> {
    let mut bytes = [0u8; 4];
    let mut actual = 0u32;
    let status =
        raw::channel_read(child.reports, writable(&mut bytes), 4, 0, 0, writable(&mut actual), 0);
    (status == 0 && actual == 4).then(|| i32::from_le_bytes(bytes))
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

pub fn stress(seconds: i64, spinners: usize) {
    // Everything this process needs is allocated before the bombs take the budget.
    let mut lateness: Vec<i64> = Vec::with_capacity(seconds as usize * 1_000 + 16);
    let mut round_trips: Vec<i64> = Vec::with_capacity(seconds as usize * 100 + 16);
    let mut hostile: Vec<Child> = Vec::with_capacity(spinners + 8);
    println!("stress: {seconds} s, {spinners} spinners, 2 writers, a spawn, memory and table bomb");
    let pong = start(programs::PONG, "pong", &[]);

    hostile.push(start(programs::BOMB, "bomb", &programs::bomb_message(BOMB_LAST_GENERATION)));
    let memory_bomb = start(programs::MEMORY_BOMB, "memory-bomb", &[]);
    let table_bomb = start(programs::TABLE_BOMB, "table-bomb", &[]);
    for _ in 0..2 {
        hostile.push(start(programs::WRITES_FOREVER, "writer", &[]));
    }
    for _ in 0..spinners {
        hostile.push(start(programs::SPINNER, "spinner", &[]));
    }

    let mut failed_pings = 0u32;
    let end = now() + seconds * SECOND;
    while now() < end && lateness.len() < lateness.capacity() {
        let deadline = now() + MILLISECOND;
        expect!(raw::nanosleep(deadline), Ok(()));
        lateness.push(now() - deadline);
        if lateness.len() % 10 == 0 && round_trips.len() < round_trips.capacity() {
            let start = now();
            match ping(pong.reports) {
                Ok(()) => round_trips.push(now() - start),
                Err(status) => {
                    failed_pings += 1;
                    if failed_pings == 1 {
                        println!("stress: a ping failed: {}", name(status));
                    }
                }
            }
        }
    }

    // Printed without allocating: the bombs may have taken all the memory there is.
    match report(&memory_bomb) {
        Some(mib) => println!("stress: memory bomb got {mib} MiB"),
        None => println!("stress: memory bomb: no report"),
    }
    match report(&table_bomb) {
        Some(result) => println!("stress: table bomb: table grow returned {result}"),
        None => println!("stress: table bomb: no report"),
    }
    hostile.push(memory_bomb);
    hostile.push(table_bomb);
    for child in &hostile {
        expect!(raw::process_kill(child.process), Ok(()));
    }
    for child in &hostile {
        let ended =
            raw::object_wait_one(child.process, Signals::TERMINATED.bits(), now() + 10 * SECOND, 0);
        assert_eq!(ended, 0, "a killed child did not end within 10 s: {}", name(ended));
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
