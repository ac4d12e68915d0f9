//! Watchdogs and resource limits, run by the hosted integration tests as `limits CASE`: each
//! case starts children (small WAT modules compiled with `module_compile`) that spin, block,
//! grow their memory, hoard handles, flood channels or fork, with a watchdog armed or a limit
//! set, and checks how they end. It prints `limits CASE: ok` and exits 0, or panics (a trap)
//! with the failing check.

use nebulet_raw as raw;
use nebulet_raw::{
    channel, compile, create, duplicate, event, expect, name, now, process_info, reason, writable,
    write,
};

use nebulet_abi::layout::InfoProcess;
use nebulet_abi::{
    CHANNEL_MAX_MESSAGE_BYTES, CHANNEL_MAX_QUEUED_BYTES, CHANNEL_MAX_QUEUED_MESSAGES, Error,
    ExitReason, Limit, Rights, Signals,
};

/// A handle value no process holds (values are random; a clash is a 1 in 2^32 event).
const BOGUS: u32 = 0x0bad_cafe;
const MILLISECOND: i64 = 1_000_000;
const SECOND: i64 = 1_000 * MILLISECOND;
/// The longest any child may take to end where it should end soon: not a benchmark, only a
/// bound that turns a hang into a failure.
const PATIENCE: i64 = 10 * SECOND;

fn main() {
    let case = std::env::args().nth(1).unwrap_or_default();
    match case.as_str() {
        "watchdog-spin" => watchdog_spin(),
        "watchdog-blocked" => watchdog_blocked(),
        "watchdog-alive" => watchdog_alive(),
        "memory" => memory(),
        "handles" => handles(),
        "queued" => queued(),
        "children" => children(),
        "cpu" => cpu(),
        "set-limit-errors" => set_limit_errors(),
        "flood" => flood(),
        other => panic!("unknown case `{other}`"),
    }
    println!("limits {case}: ok");
}

/// Waits for `signals` until `deadline`; the status.
fn wait_until(handle: u32, signals: Signals, deadline: i64) -> i32 {
    raw::object_wait_one(handle, signals.bits(), deadline, 0)
}

struct Read {
    status: i32,
    bytes: Vec<u8>,
}

fn read(handle: u32, byte_capacity: usize) -> Read {
    let mut bytes = vec![0u8; byte_capacity];
    let mut actual_bytes = 0u32;
    let status = raw::channel_read(
        handle,
        writable(bytes.as_mut_slice()),
        byte_capacity as u32,
        0,
        0,
        writable(&mut actual_bytes),
        0,
    );
    bytes.truncate(if status == 0 { actual_bytes as usize } else { 0 });
    Read { status, bytes }
}

fn set_limit(process: u32, limit: Limit, value: i64) {
    expect!(raw::process_set_limit(process, limit as u32, value), Ok(()));
}

/// Waits (at most `patience` nanoseconds) for a child to end and returns how it ended; a child
/// that does not end in time is killed, and the case fails.
fn ended(child: u32, what: &str, patience: i64) -> InfoProcess {
    raw::ended(child, what, now() + patience)
}

/// Asserts that a child ended with `want` (and, for "exited", with code 0).
fn assert_ended(info: &InfoProcess, want: ExitReason, what: &str) {
    assert!(
        info.exit_reason == want as u32 && (want != ExitReason::Exited || info.exit_code == 0),
        "{what}: ended {} with code {}, expected {} (code {})",
        reason(info),
        info.exit_code,
        want.word(),
        if want == ExitReason::Exited { 0 } else { -1 }
    );
}

/// Starts `source` with a watchdog-armed body, and checks it is killed by its watchdog within
/// 2 s of starting (its interval is 20 ms: generous, not a benchmark).
fn killed_by_watchdog(source: &str, what: &str) {
    let child = create(compile(source), what);
    let start = now();
    expect!(raw::process_start(child, 0), Ok(()));
    let info = ended(child, what, PATIENCE);
    let took = now() - start;
    assert_ended(&info, ExitReason::Watchdog, what);
    assert!(took < 2 * SECOND, "{what}: the watchdog took {} ms to fire", took / MILLISECOND);
    println!("limits: {what} ended by its watchdog after {} ms", took / MILLISECOND);
}

/// Arms a 20 ms watchdog, then spins without a call.
const SPINS_ARMED: &str = r#"(module
  (import "nebulet" "watchdog_setup" (func $setup (param i64) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $setup (i64.const 20000000)) (then unreachable))
    (loop $spin (br $spin))))"#;

/// Arms the shortest watchdog, 1 ms (traps if it is refused), then spins without a call.
const SPINS_ARMED_SHORTEST: &str = r#"(module
  (import "nebulet" "watchdog_setup" (func $setup (param i64) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $setup (i64.const 1000000)) (then unreachable))
    (loop $spin (br $spin))))"#;

/// Arms a 20 ms watchdog, then sleeps forever (exits 3 if the sleep ever returns).
const BLOCKS_ARMED: &str = r#"(module
  (import "nebulet" "watchdog_setup" (func $setup (param i64) (result i32)))
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $setup (i64.const 20000000)) (then unreachable))
    (drop (call $sleep (i64.const 0x7fffffffffffffff)))
    (call $exit (i32.const 3))))"#;

/// Arms a 20 ms watchdog, then waits forever for an event no one signals (exits 3 if the wait
/// ever returns).
const WAITS_ARMED: &str = r#"(module
  (import "nebulet" "watchdog_setup" (func $setup (param i64) (result i32)))
  (import "nebulet" "event_create" (func $event (param i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $event (i32.const 0)) (then unreachable))
    (if (call $setup (i64.const 20000000)) (then unreachable))
    (drop (call $wait (i32.load (i32.const 0)) (i32.const 8) (i64.const 0x7fffffffffffffff) (i32.const 0)))
    (call $exit (i32.const 3))))"#;

/// Arms a 1 s watchdog and calls `watchdog_alive` every 5 ms for 1.5 s (past the interval, so
/// only the calls keep it alive), then exits 0 with the watchdog still armed. The margin, 200
/// times the 5 ms step, keeps it from firing on a loaded machine, where a sleep can come back
/// hundreds of milliseconds late. Other exit codes name the call that failed.
const KEEPS_ALIVE: &str = r#"(module
  (import "nebulet" "watchdog_setup" (func $setup (param i64) (result i32)))
  (import "nebulet" "watchdog_alive" (func $alive (result i32)))
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (import "nebulet" "clock_monotonic" (func $now (result i64)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $end i64)
    (if (call $setup (i64.const 1000000000)) (then (call $exit (i32.const 1))))
    (local.set $end (i64.add (call $now) (i64.const 1500000000)))
    (loop $tick
      (if (call $alive) (then (call $exit (i32.const 2))))
      (if (call $sleep (i64.add (call $now) (i64.const 5000000))) (then (call $exit (i32.const 3))))
      (br_if $tick (i64.lt_s (call $now) (local.get $end))))
    (call $exit (i32.const 0))))"#;

fn watchdog_spin() {
    killed_by_watchdog(SPINS_ARMED, "spinner");
}

fn watchdog_blocked() {
    killed_by_watchdog(BLOCKS_ARMED, "sleeper");
    killed_by_watchdog(WAITS_ARMED, "waiter");
}

fn watchdog_alive() {
    // This process's own watchdog: not armed, too short an interval, disarming.
    expect!(raw::watchdog_alive(), Err(Error::BadState));
    expect!(raw::watchdog_setup(500_000), Err(Error::InvalidArgs));
    expect!(raw::watchdog_setup(1), Err(Error::InvalidArgs));
    expect!(raw::watchdog_setup(-1), Err(Error::InvalidArgs));
    // A refused setup does not arm.
    expect!(raw::watchdog_alive(), Err(Error::BadState));
    expect!(raw::watchdog_setup(0), Ok(()));
    expect!(raw::watchdog_alive(), Err(Error::BadState));
    // Armed with a long interval, alive works; disarmed, it does not.
    expect!(raw::watchdog_setup(30 * SECOND), Ok(()));
    expect!(raw::watchdog_alive(), Ok(()));
    expect!(raw::watchdog_setup(0), Ok(()));
    expect!(raw::watchdog_alive(), Err(Error::BadState));
    // The shortest interval is accepted (by a child that it then ends: arming it here would race
    // with the next call on a loaded machine).
    killed_by_watchdog(SPINS_ARMED_SHORTEST, "shortest");

    let child = create(compile(KEEPS_ALIVE), "keeper");
    let start = now();
    expect!(raw::process_start(child, 0), Ok(()));
    let info = ended(child, "keeper", PATIENCE);
    assert!(
        info.exit_reason == ExitReason::Exited as u32 && info.exit_code == 0,
        "keeper: ended {} with code {} (1: setup failed, 2: alive failed, 3: sleep failed)",
        reason(&info),
        info.exit_code
    );
    assert!(now() - start >= 1_500 * MILLISECOND, "keeper ran its 1.5 s");
    // Its armed watchdog cannot change how it ended.
    expect!(raw::nanosleep(now() + 50 * MILLISECOND), Ok(()));
    let later = process_info(child);
    assert_eq!((later.exit_reason, later.exit_code), (ExitReason::Exited as u32, 0));
    // A disarmed watchdog does not fire while this process sleeps past the old interval (1 s:
    // long enough that disarming it in time never races on a loaded machine).
    expect!(raw::watchdog_setup(SECOND), Ok(()));
    expect!(raw::watchdog_setup(0), Ok(()));
    expect!(raw::nanosleep(now() + 1_100 * MILLISECOND), Ok(()));
}

/// Grows its one page by one (gets 1), then by one more (gets -1: over 2 pages), and exits 0;
/// other codes name the check that failed.
const GROWS: &str = r#"(module
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.ne (memory.grow (i32.const 1)) (i32.const 1)) (then (call $exit (i32.const 1))))
    (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1)) (then (call $exit (i32.const 2))))
    (if (i32.ne (memory.size) (i32.const 2)) (then (call $exit (i32.const 3))))
    (if (i32.ne (memory.grow (i32.const 0)) (i32.const 2)) (then (call $exit (i32.const 4))))
    (i32.store (i32.const 131068) (i32.const 7))
    (call $exit (i32.const 0))))"#;

/// Declares 4 pages: more than a 2-page limit.
const BIG_MEMORY: &str = r#"(module
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 4)
  (func (export "_start") (call $exit (i32.const 0))))"#;

fn memory() {
    let grower = create(compile(GROWS), "grower");
    set_limit(grower, Limit::MemoryBytes, 2 * 65_536);
    expect!(raw::process_start(grower, 0), Ok(()));
    let info = ended(grower, "grower", PATIENCE);
    assert!(
        info.exit_reason == ExitReason::Exited as u32 && info.exit_code == 0,
        "grower: ended {} with code {} (1: the first grow failed, 2: the grow past the limit \
         did not return -1, 3: the size changed, 4: grow 0 failed)",
        reason(&info),
        info.exit_code
    );
    let big = create(compile(BIG_MEMORY), "big");
    set_limit(big, Limit::MemoryBytes, 2 * 65_536);
    expect!(raw::process_start(big, 0), Ok(()));
    let info = ended(big, "big", PATIENCE);
    assert_ended(&info, ExitReason::OutOfResources, "a module whose memory passes the limit");
    // The same module without the limit runs.
    let unlimited = create(compile(BIG_MEMORY), "unlimited");
    expect!(raw::process_start(unlimited, 0), Ok(()));
    assert_ended(&ended(unlimited, "unlimited", PATIENCE), ExitReason::Exited, "no limit");
}

/// Takes its bootstrap handle if it has one, then creates events until a call fails: exits
/// with the number created when the failure is ERR_NO_RESOURCES. Then closing one makes room
/// for exactly one more. Codes from 100 name a check that failed.
const HOARDS_HANDLES: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "event_create" (func $event (param i32) (result i32)))
  (import "nebulet" "handle_close" (func $close (param i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $count i32) (local $status i32)
    (local.set $status (call $bootstrap (i32.const 0)))
    (if (i32.and (i32.ne (local.get $status) (i32.const 0)) (i32.ne (local.get $status) (i32.const -25)))
      (then (call $exit (i32.const 100))))
    (block $done
      (loop $more
        (local.set $status (call $event (i32.add (i32.const 16) (i32.shl (local.get $count) (i32.const 2)))))
        (br_if $done (local.get $status))
        (local.set $count (i32.add (local.get $count) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $count) (i32.const 1000)))))
    (if (i32.ne (local.get $status) (i32.const -3))
      (then (call $exit (i32.sub (i32.const 200) (local.get $status)))))
    (if (i32.eqz (local.get $count)) (then (call $exit (i32.const 101))))
    (if (call $close (i32.load (i32.const 16))) (then (call $exit (i32.const 102))))
    (if (call $event (i32.const 16)) (then (call $exit (i32.const 103))))
    (if (i32.ne (call $event (i32.const 8)) (i32.const -3)) (then (call $exit (i32.const 104))))
    (call $exit (local.get $count))))"#;

fn handles() {
    let module = compile(HOARDS_HANDLES);
    // No bootstrap handle: all 8 are events.
    let hoarder = create(module, "hoarder");
    set_limit(hoarder, Limit::Handles, 8);
    expect!(raw::process_start(hoarder, 0), Ok(()));
    let info = ended(hoarder, "hoarder", PATIENCE);
    assert!(
        info.exit_reason == ExitReason::Exited as u32 && info.exit_code == 8,
        "hoarder (8 handles, no bootstrap): ended {} with code {}, expected 8 events \
         (from 100: a check failed; from 200: 200 + the error of the failing create)",
        reason(&info),
        info.exit_code
    );
    // With a bootstrap handle: it takes one of the 8.
    let hoarder = create(module, "hoarder-bootstrap");
    set_limit(hoarder, Limit::Handles, 8);
    let (_ours, theirs) = channel();
    expect!(raw::process_start(hoarder, theirs), Ok(()));
    let info = ended(hoarder, "hoarder with a bootstrap handle", PATIENCE);
    assert!(
        info.exit_reason == ExitReason::Exited as u32 && info.exit_code == 7,
        "hoarder (8 handles, with bootstrap): ended {} with code {}, expected 7 events",
        reason(&info),
        info.exit_code
    );
}

/// Reads the two events its parent sent ([8] "full", [12] "drained") from its bootstrap channel
/// ([0]), writes 4 KiB messages into it until a write fails (16 under a limit that holds 16 with
/// their overhead, then ERR_NO_RESOURCES), signals "full" (SIGNALED), waits for "drained", and writes until a write
/// fails again (4 more: the parent read 4); signals "full" again (USER_0) and waits for its
/// parent to close its end, which drops the 16 unread messages: then 16 more fit into a channel
/// of its own. Exits 0; from 10000: 10000 + the first count, from 20000: 20000 + the second,
/// from 30000: 30000 + the third; from 1000: 1000 - the unexpected error; 1..6: a call failed.
const FLOODS_BYTES: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_create" (func $channel (param i32 i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "object_signal" (func $signal (param i32 i32 i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  ;; Writes 4 KiB messages into $handle until one fails; the count (exits unless the failure
  ;; is ERR_NO_RESOURCES).
  (func $fill (param $handle i32) (result i32)
    (local $count i32) (local $status i32)
    (block $done
      (loop $more
        (local.set $status
          (call $write (local.get $handle) (i32.const 4096) (i32.const 4096) (i32.const 0) (i32.const 0)))
        (br_if $done (local.get $status))
        (local.set $count (i32.add (local.get $count) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $count) (i32.const 100)))))
    (if (i32.ne (local.get $status) (i32.const -3))
      (then (call $exit (i32.sub (i32.const 1000) (local.get $status)))))
    (local.get $count))
  (func (export "_start")
    (local $written i32)
    (if (call $bootstrap (i32.const 0)) (then (call $exit (i32.const 1))))
    (if (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 64) (i32.const 8) (i32.const 2)
          (i32.const 0) (i32.const 0))
      (then (call $exit (i32.const 2))))
    (local.set $written (call $fill (i32.load (i32.const 0))))
    (if (i32.ne (local.get $written) (i32.const 16))
      (then (call $exit (i32.add (i32.const 10000) (local.get $written)))))
    ;; SIGNALED is 8.
    (if (call $signal (i32.load (i32.const 8)) (i32.const 0) (i32.const 8)) (then (call $exit (i32.const 3))))
    (if (call $wait (i32.load (i32.const 12)) (i32.const 8) (i64.const 0x7fffffffffffffff) (i32.const 0))
      (then (call $exit (i32.const 4))))
    (local.set $written (call $fill (i32.load (i32.const 0))))
    (if (i32.ne (local.get $written) (i32.const 4))
      (then (call $exit (i32.add (i32.const 20000) (local.get $written)))))
    ;; USER_0 is 1 << 24; PEER_CLOSED is 4.
    (if (call $signal (i32.load (i32.const 8)) (i32.const 0) (i32.const 0x1000000)) (then (call $exit (i32.const 5))))
    (if (call $wait (i32.load (i32.const 0)) (i32.const 4) (i64.const 0x7fffffffffffffff) (i32.const 0))
      (then (call $exit (i32.const 6))))
    (if (call $channel (i32.const 32) (i32.const 36)) (then (call $exit (i32.const 7))))
    (local.set $written (call $fill (i32.load (i32.const 32))))
    (if (i32.ne (local.get $written) (i32.const 16))
      (then (call $exit (i32.add (i32.const 30000) (local.get $written)))))
    (call $exit (i32.const 0))))"#;

fn queued() {
    let child = create(compile(FLOODS_BYTES), "byte-flooder");
    // Room for exactly 16 messages of 4 KiB, each charged its bytes plus 64 bytes of overhead.
    set_limit(child, Limit::QueuedBytes, 16 * (4096 + 64));
    let (ours, theirs) = channel();
    let (full, drained) = (event(), event());
    expect!(
        write(
            ours,
            b"events",
            &[duplicate(full, Rights::SAME_RIGHTS), duplicate(drained, Rights::SAME_RIGHTS)]
        ),
        Ok(())
    );
    expect!(raw::process_start(child, theirs), Ok(()));
    let explain = "10000 + N: N writes succeeded at first, 20000 + N: N after 4 reads, 30000 + N: \
                   N after the unread messages were dropped; 1000 - E: error E instead of \
                   ERR_NO_RESOURCES";
    let result = wait_until(full, Signals::SIGNALED, now() + PATIENCE);
    if result != 0 {
        let info = ended(child, "byte-flooder", PATIENCE);
        panic!(
            "byte-flooder did not fill its limit ({}): it ended {} with code {} ({explain})",
            name(result),
            reason(&info),
            info.exit_code
        );
    }
    // Reading gives the bytes back: 4 messages make room for 4 more.
    for _ in 0..4 {
        let message = read(ours, 4096);
        expect!(message.status, Ok(()));
        assert_eq!(message.bytes.len(), 4096);
    }
    expect!(raw::object_signal(drained, 0, Signals::SIGNALED.bits()), Ok(()));
    let result = wait_until(full, Signals::USER_0, now() + PATIENCE);
    if result != 0 {
        let info = ended(child, "byte-flooder", PATIENCE);
        panic!(
            "byte-flooder did not fill its limit again ({}): it ended {} with code {} ({explain})",
            name(result),
            reason(&info),
            info.exit_code
        );
    }
    // Dropping the unread messages gives their bytes back too.
    expect!(raw::handle_close(ours), Ok(()));
    let info = ended(child, "byte-flooder", PATIENCE);
    assert!(
        info.exit_reason == ExitReason::Exited as u32 && info.exit_code == 0,
        "byte-flooder: ended {} with code {} ({explain})",
        reason(&info),
        info.exit_code
    );
}

/// Sleeps forever.
const SLEEPS: &str = r#"(module
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (func (export "_start") (drop (call $sleep (i64.const 0x7fffffffffffffff)))))"#;

/// A fork bomb under a limit: reads a module from its bootstrap channel and creates and starts
/// processes of it until that fails; then checks an ended child frees its slot and that
/// created, unstarted children count too; kills every child it started (children outlive their
/// parent) and exits with the number it could start at first. Codes from 100 name a check that
/// failed; from 1000: 1000 - the error of the failing create.
const FORKS: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_create" (func $create (param i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_start" (func $start (param i32 i32) (result i32)))
  (import "nebulet" "process_kill" (func $kill (param i32) (result i32)))
  (import "nebulet" "handle_close" (func $close (param i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "bomb")
  ;; [0] bootstrap channel, [8] module; the children's handles from 256, 4 bytes each.
  (func $slot (param $index i32) (result i32)
    (i32.add (i32.const 256) (i32.shl (local.get $index) (i32.const 2))))
  (func $spawn (param $index i32) (param $run i32) (result i32)
    (local $status i32)
    (local.set $status
      (call $create (i32.load (i32.const 8)) (i32.const 32) (i32.const 4) (call $slot (local.get $index))))
    (if (i32.or (local.get $status) (i32.eqz (local.get $run))) (then (return (local.get $status))))
    (call $start (i32.load (call $slot (local.get $index))) (i32.const 0)))
  ;; Spawns from index 0 until a spawn fails; the count, or exits if the failure is not NO_RESOURCES.
  (func $bomb (param $run i32) (result i32)
    (local $count i32) (local $status i32)
    (block $done
      (loop $more
        (local.set $status (call $spawn (local.get $count) (local.get $run)))
        (br_if $done (local.get $status))
        (local.set $count (i32.add (local.get $count) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $count) (i32.const 100)))))
    (if (i32.ne (local.get $status) (i32.const -3))
      (then (call $exit (i32.sub (i32.const 1000) (local.get $status)))))
    (local.get $count))
  ;; Kills child $index and waits for its end (TERMINATED is 16).
  (func $end (param $index i32)
    (if (call $kill (i32.load (call $slot (local.get $index)))) (then (call $exit (i32.const 110))))
    (if (call $wait (i32.load (call $slot (local.get $index))) (i32.const 16) (i64.const 0x7fffffffffffffff) (i32.const 0))
      (then (call $exit (i32.const 111)))))
  (func (export "_start")
    (local $started i32) (local $index i32)
    (if (call $bootstrap (i32.const 0)) (then (call $exit (i32.const 100))))
    (if (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 64) (i32.const 8) (i32.const 1)
          (i32.const 0) (i32.const 0))
      (then (call $exit (i32.const 101))))
    (local.set $started (call $bomb (i32.const 1)))
    (if (i32.eqz (local.get $started)) (then (call $exit (i32.const 102))))
    ;; An ended child gives its slot back: one more, and no more.
    (call $end (i32.const 0))
    (if (call $spawn (i32.const 0) (i32.const 1)) (then (call $exit (i32.const 103))))
    (if (i32.ne (call $spawn (local.get $started) (i32.const 1)) (i32.const -3)) (then (call $exit (i32.const 104))))
    ;; Kill them all: created-but-unstarted children count as well.
    (loop $all
      (call $end (local.get $index))
      (if (call $close (i32.load (call $slot (local.get $index)))) (then (call $exit (i32.const 105))))
      (local.set $index (i32.add (local.get $index) (i32.const 1)))
      (br_if $all (i32.lt_u (local.get $index) (local.get $started))))
    (if (i32.ne (call $bomb (i32.const 0)) (local.get $started)) (then (call $exit (i32.const 106))))
    (call $exit (local.get $started))))"#;

fn children() {
    let bomb = create(compile(FORKS), "bomb");
    set_limit(bomb, Limit::Children, 5);
    let (ours, theirs) = channel();
    expect!(write(ours, b"module", &[compile(SLEEPS)]), Ok(()));
    expect!(raw::process_start(bomb, theirs), Ok(()));
    let info = ended(bomb, "bomb", PATIENCE);
    assert!(
        info.exit_reason == ExitReason::Exited as u32 && info.exit_code == 5,
        "bomb (5 children): ended {} with code {}, expected 5 children (from 100: a check \
         failed; from 1000: 1000 - the error of the failing create)",
        reason(&info),
        info.exit_code
    );
}

/// Spins without a call.
const SPINS: &str = r#"(module
  (func (export "_start") (loop $spin (br $spin))))"#;

/// Sleeps 100 ms, then exits 0.
const NAPS: &str = r#"(module
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (import "nebulet" "clock_monotonic" (func $now (result i64)))
  (func (export "_start")
    (drop (call $sleep (i64.add (call $now) (i64.const 100000000))))))"#;

fn cpu() {
    let spinner = create(compile(SPINS), "cpu-spinner");
    set_limit(spinner, Limit::CpuNanoseconds, 50 * MILLISECOND);
    let start = now();
    expect!(raw::process_start(spinner, 0), Ok(()));
    let info = ended(spinner, "cpu-spinner", PATIENCE);
    let took = now() - start;
    assert_ended(&info, ExitReason::OutOfResources, "cpu-spinner");
    assert!(
        info.cpu_ns >= 50 * MILLISECOND as u64,
        "cpu-spinner ended after only {} ns of CPU time",
        info.cpu_ns
    );
    println!(
        "limits: cpu-spinner ended after {} ms ({} ms of CPU time)",
        took / MILLISECOND,
        info.cpu_ns / MILLISECOND as u64
    );
    // Time asleep is not CPU time.
    let napper = create(compile(NAPS), "napper");
    set_limit(napper, Limit::CpuNanoseconds, 50 * MILLISECOND);
    expect!(raw::process_start(napper, 0), Ok(()));
    assert_ended(&ended(napper, "napper", PATIENCE), ExitReason::Exited, "napper (100 ms asleep)");
}

fn set_limit_errors() {
    let module = compile(SLEEPS);
    let child = create(module, "limited");
    // Every limit takes any value from 0 up before the start.
    for limit in Limit::ALL {
        expect!(raw::process_set_limit(child, limit as u32, i64::MAX), Ok(()));
        expect!(raw::process_set_limit(child, limit as u32, 0), Ok(()));
        expect!(raw::process_set_limit(child, limit as u32, 1 << 40), Ok(()));
        expect!(raw::process_set_limit(child, limit as u32, -1), Err(Error::OutOfRange));
        expect!(raw::process_set_limit(child, limit as u32, i64::MIN), Err(Error::OutOfRange));
    }
    for bad in [0, 7, 8, 255, 0x8000_0001, u32::MAX] {
        expect!(raw::process_set_limit(child, bad, 1), Err(Error::InvalidArgs));
    }
    // MANAGE is needed; handles must be processes.
    let watcher = duplicate(child, Rights::INSPECT | Rights::WAIT | Rights::DUPLICATE);
    expect!(raw::process_set_limit(watcher, Limit::Handles as u32, 8), Err(Error::AccessDenied));
    expect!(raw::process_set_limit(BOGUS, Limit::Handles as u32, 8), Err(Error::BadHandle));
    expect!(raw::process_set_limit(0, Limit::Handles as u32, 8), Err(Error::BadHandle));
    let not_a_process = event();
    expect!(raw::process_set_limit(not_a_process, Limit::Handles as u32, 8), Err(Error::WrongType));
    expect!(raw::process_set_limit(module, Limit::Handles as u32, 8), Err(Error::WrongType));
    // Once started, limits are fixed; and after the end too.
    let runner = create(module, "runner");
    set_limit(runner, Limit::Handles, 8);
    expect!(raw::process_start(runner, 0), Ok(()));
    for limit in Limit::ALL {
        expect!(raw::process_set_limit(runner, limit as u32, 1 << 20), Err(Error::BadState));
    }
    expect!(raw::process_kill(runner), Ok(()));
    ended(runner, "runner", PATIENCE);
    expect!(raw::process_set_limit(runner, Limit::Handles as u32, 1), Err(Error::BadState));
    // A killed, never-started process has ended: no limits either.
    expect!(raw::process_kill(child), Ok(()));
    expect!(raw::process_set_limit(child, Limit::Handles as u32, 1), Err(Error::BadState));
    // The parent's own limits are not this call's business: it holds no handle to itself.
    expect!(raw::handle_close(watcher), Ok(()));
}

/// The number of messages the flooder writes after the first bound.
const FLOOD_MESSAGES: u32 = 20_000;

/// A writer that floods its bootstrap channel ([0]) with 4-byte sequence numbers. First no one
/// reads: exactly `CHANNEL_MAX_QUEUED_MESSAGES` writes succeed, then ERR_SHOULD_WAIT, which
/// stays (and WRITABLE is off); it signals "full" ([8]) and waits for "drained" ([12]). Then it
/// writes sequence numbers up to 20000, waiting for WRITABLE at each ERR_SHOULD_WAIT, and ends
/// with an 8-byte message: 0xffffffff and how many times it had to wait. Exits 0; from 10000:
/// 10000 + the count before the first SHOULD_WAIT; 1000 - E / 2000 - E: an unexpected error E.
const FLOODS_MESSAGES: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "object_signal" (func $signal (param i32 i32 i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func $send (param $value i32) (param $length i32) (result i32)
    (i32.store (i32.const 1024) (local.get $value))
    (call $write (i32.load (i32.const 0)) (i32.const 1024) (local.get $length) (i32.const 0) (i32.const 0)))
  ;; Sends until it succeeds, waiting for WRITABLE (2) at each SHOULD_WAIT; counts the waits at [16].
  (func $send_patiently (param $value i32) (param $length i32)
    (local $status i32)
    (loop $again
      (local.set $status (call $send (local.get $value) (local.get $length)))
      (if (i32.eq (local.get $status) (i32.const -22))
        (then
          (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (i32.const 1)))
          (if (call $wait (i32.load (i32.const 0)) (i32.const 2) (i64.const 0x7fffffffffffffff) (i32.const 0))
            (then (call $exit (i32.const 5))))
          (br $again))))
    (if (local.get $status) (then (call $exit (i32.sub (i32.const 2000) (local.get $status))))))
  (func (export "_start")
    (local $sequence i32) (local $status i32) (local $tries i32)
    (if (call $bootstrap (i32.const 0)) (then (call $exit (i32.const 1))))
    (if (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 64) (i32.const 8) (i32.const 2)
          (i32.const 0) (i32.const 0))
      (then (call $exit (i32.const 2))))
    (block $done
      (loop $more
        (local.set $status (call $send (local.get $sequence) (i32.const 4)))
        (br_if $done (local.get $status))
        (local.set $sequence (i32.add (local.get $sequence) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $sequence) (i32.const 100000)))))
    (if (i32.ne (local.get $status) (i32.const -22))
      (then (call $exit (i32.sub (i32.const 1000) (local.get $status)))))
    (if (i32.ne (local.get $sequence) (i32.const 1024))
      (then (call $exit (i32.add (i32.const 10000) (local.get $sequence)))))
    ;; The bound holds: more writes are refused, and WRITABLE is off (a poll times out: -21).
    (loop $refused
      (if (i32.ne (call $send (local.get $sequence) (i32.const 4)) (i32.const -22)) (then (call $exit (i32.const 6))))
      (local.set $tries (i32.add (local.get $tries) (i32.const 1)))
      (br_if $refused (i32.lt_u (local.get $tries) (i32.const 100))))
    (if (i32.ne (call $wait (i32.load (i32.const 0)) (i32.const 2) (i64.const 0) (i32.const 0)) (i32.const -21))
      (then (call $exit (i32.const 7))))
    ;; SIGNALED is 8.
    (if (call $signal (i32.load (i32.const 8)) (i32.const 0) (i32.const 8)) (then (call $exit (i32.const 3))))
    (if (call $wait (i32.load (i32.const 12)) (i32.const 8) (i64.const 0x7fffffffffffffff) (i32.const 0))
      (then (call $exit (i32.const 4))))
    (loop $flood
      (call $send_patiently (local.get $sequence) (i32.const 4))
      (local.set $sequence (i32.add (local.get $sequence) (i32.const 1)))
      (br_if $flood (i32.lt_u (local.get $sequence) (i32.const 21024))))
    (i32.store (i32.const 1028) (i32.load (i32.const 16)))
    (call $send_patiently (i32.const -1) (i32.const 8))
    (call $exit (i32.const 0))))"#;

fn flood() {
    // Bytes: 16 messages of the largest size fill an endpoint's 1 MiB; then SHOULD_WAIT.
    let (first, second) = channel();
    let big = vec![5u8; CHANNEL_MAX_MESSAGE_BYTES as usize];
    let fits = CHANNEL_MAX_QUEUED_BYTES / CHANNEL_MAX_MESSAGE_BYTES;
    for _ in 0..fits {
        expect!(write(first, &big, &[]), Ok(()));
    }
    expect!(write(first, &big, &[]), Err(Error::ShouldWait));
    expect!(write(first, b"x", &[]), Err(Error::ShouldWait));
    assert_eq!(read(second, big.len()).bytes.len(), big.len());
    expect!(write(first, &big, &[]), Ok(()));
    expect!(write(first, &big, &[]), Err(Error::ShouldWait));
    for _ in 0..fits {
        assert_eq!(read(second, big.len()).bytes.len(), big.len());
    }
    expect!(read(second, big.len()).status, Err(Error::ShouldWait));

    // Messages: a writer process floods a slow reader.
    let writer = create(compile(FLOODS_MESSAGES), "flooder");
    let (ours, theirs) = channel();
    let (full, drained) = (event(), event());
    expect!(
        write(
            ours,
            b"events",
            &[duplicate(full, Rights::SAME_RIGHTS), duplicate(drained, Rights::SAME_RIGHTS)]
        ),
        Ok(())
    );
    expect!(raw::process_start(writer, theirs), Ok(()));
    let result = wait_until(full, Signals::SIGNALED, now() + PATIENCE);
    if result != 0 {
        let info = ended(writer, "flooder", PATIENCE);
        panic!(
            "flooder did not fill the queue ({}): it ended {} with code {} (10000 + N: N \
             writes before SHOULD_WAIT; 1000 - E: error E; 6: a write past the bound did not \
             get SHOULD_WAIT; 7: WRITABLE stayed on)",
            name(result),
            reason(&info),
            info.exit_code
        );
    }
    // Exactly the bound is queued, in order: nothing grew past it.
    for index in 0..CHANNEL_MAX_QUEUED_MESSAGES {
        let message = read(ours, 8);
        expect!(message.status, Ok(()));
        assert_eq!(message.bytes, index.to_le_bytes(), "message {index}");
    }
    expect!(read(ours, 8).status, Err(Error::ShouldWait));
    expect!(raw::object_signal(drained, 0, Signals::SIGNALED.bits()), Ok(()));
    // A slow reader: a millisecond's nap every 64 messages. The writer must wait, and every
    // message arrives once, in order.
    let mut expected = CHANNEL_MAX_QUEUED_MESSAGES;
    let deadline = now() + 60 * SECOND;
    let waits = loop {
        let message = read(ours, 8);
        if message.status == Error::ShouldWait.code() {
            assert!(now() < deadline, "the flood did not end; {expected} messages read");
            let result = wait_until(ours, Signals::READABLE | Signals::PEER_CLOSED, deadline);
            assert!(result == 0, "waiting for the flood: {}", name(result));
            continue;
        }
        expect!(message.status, Ok(()));
        if message.bytes.len() == 8 {
            assert_eq!(&message.bytes[..4], &u32::MAX.to_le_bytes(), "the last message");
            break u32::from_le_bytes(message.bytes[4..].try_into().unwrap());
        }
        assert_eq!(message.bytes, expected.to_le_bytes(), "in order, exactly once");
        expected += 1;
        if expected.is_multiple_of(64) {
            expect!(raw::nanosleep(now() + MILLISECOND), Ok(()));
        }
    };
    assert_eq!(expected, CHANNEL_MAX_QUEUED_MESSAGES + FLOOD_MESSAGES);
    let info = ended(writer, "flooder", PATIENCE);
    assert!(
        info.exit_reason == ExitReason::Exited as u32 && info.exit_code == 0,
        "flooder: ended {} with code {}",
        reason(&info),
        info.exit_code
    );
    assert!(waits > 0, "the slow reader never made the writer wait");
    expect!(read(ours, 8).status, Err(Error::PeerClosed));
    println!("limits: the flooder waited {waits} times for a slow reader");
}
