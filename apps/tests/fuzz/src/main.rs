//! The call fuzzer: calls random `nebulet` calls (every call of `nebulet_abi::calls::CALLS` but
//! `process_exit`) and WASI preview 1 functions with random arguments, in several processes at
//! once, and fails (a trap, so a non-zero exit) on any status the contract does not allow.
//!
//! `fuzz [--seconds N] [--seed HEX] [--copies N] [--module PATH] [--min-calls N]`: the first
//! process reads its own module from PATH (in a preopened directory), starts N copies of itself
//! (default 2) and fuzzes for N seconds (default 60) beside them. Each copy learns its number,
//! duration and seed from its process name (`fuzz-copy INDEX SECONDS SEED`), and gets a channel
//! to the first process as its bootstrap handle, which it takes with a fuzzed
//! `process_bootstrap`; the first message on it carries link channels, whose other ends are in
//! the first process's pool, so handles of every kind move between the processes.
//!
//! Checks: a `nebulet` status must be `OK` or one of that call's errors in `CALLS` (never
//! `ERR_INTERNAL`); a WASI errno must be one of preview 1 (0 to 76). At the end each copy sends
//! its figures to the first process, which adds them up and fails if fewer than the minimum of
//! calls ran (default 1,000 a second per process) or if a call of the table never returned `OK`.
//!
//! Arguments come from a pool of handles (channels, events, timers, modules of tiny WAT
//! programs, processes, mostly unstarted), random numbers, 0, pointers into a scratch page at the
//! top of memory, pointers that cross the end of memory or lie past it, and huge lengths.
//! Deadlines are 0, in the past or within a millisecond, so nothing blocks for long; watchdog
//! intervals are 0, invalid or at least 10 s. Every process it creates gets a "keeper" handle
//! outside the pool, and every one of them is killed before it exits. A second thread (the
//! waker) lets some `futex_wait` calls be woken, so they return `OK`.
//!
//! Randomness is a SplitMix64 generator seeded with 8 bytes of `random_fill`, printed as
//! `fuzz: seed HEX`; `--seed HEX` replays the same choices (the kernel's handle values and the
//! timing still differ).

use nebulet_raw as raw;
use nebulet_raw::writable;

mod arguments;
mod calls;
mod copies;
mod files;
mod pool;
mod random;
mod scratch;
mod tally;
mod waker;
mod wasi;

use nebulet_abi::Signals;
use nebulet_abi::calls::{CALLS, Returns};

use copies::{Copy, Role};
use random::Random;
use scratch::Scratch;
use tally::Tally;

const MILLISECOND: i64 = 1_000_000;
const SECOND: i64 = 1_000 * MILLISECOND;

/// Handles the fuzzer passes to calls.
const POOL: usize = 48;
/// Process handles outside the pool, one per process created, to kill them all at the end.
const KEEPERS: usize = 128;
/// Calls a process must make at least, per second of fuzzing.
const MINIMUM_CALLS_PER_SECOND: u64 = 1_000;
/// The percentage of calls that are WASI functions.
const WASI_PERCENT: u64 = 35;

/// The children's programs: the fuzzer makes processes of these (and compiles them as valid
/// input to `module_compile`).
const TEMPLATES: [&str; 4] = [
    // Returns at once.
    r#"(module (func (export "_start")))"#,
    // Sleeps until killed.
    r#"(module
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (func (export "_start") (drop (call $sleep (i64.const 0x7fffffffffffffff)))))"#,
    // Takes its bootstrap handle, writes to it, and waits on it until killed.
    r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi")
  (func (export "_start")
    (drop (call $bootstrap (i32.const 0)))
    (drop (call $write (i32.load (i32.const 0)) (i32.const 16) (i32.const 2) (i32.const 0) (i32.const 0)))
    (drop (call $wait (i32.load (i32.const 0)) (i32.const 1) (i64.const 0x7fffffffffffffff) (i32.const 4)))
    (drop (call $sleep (i64.const 0x7fffffffffffffff)))))"#,
    // Traps.
    r#"(module (func (export "_start") unreachable))"#,
];

/// Service names it registers and connects to (others are random bytes).
const SERVICE_NAMES: [&[u8]; 4] = [b"fuzz-a", b"fuzz-b", b"fuzz-c", b"fuzz-d"];

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    seconds: i64,
    seed: Option<u64>,
    copies: u32,
    module: Option<String>,
    minimum_calls: Option<u64>,
}

/// The options of the first process. Hand-parsed: five flags do not need a parser crate in
/// a program that must not allocate while it fuzzes.
fn options() -> Options {
    let mut options =
        Options { seconds: 60, seed: None, copies: 2, module: None, minimum_calls: None };
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let value = arguments.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => options.seconds = value.parse().expect("--seconds N"),
            "--seed" => options.seed = Some(u64::from_str_radix(&value, 16).expect("--seed HEX")),
            "--copies" => options.copies = value.parse().expect("--copies N"),
            "--module" => options.module = Some(value),
            "--min-calls" => options.minimum_calls = Some(value.parse().expect("--min-calls N")),
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    assert_eq!(raw::random_fill(writable(&mut bytes), 8), 0, "random_fill for the seed");
    u64::from_be_bytes(bytes)
}

fn main() {
    let (role, seconds, seed) = match copies::copy_from_name() {
        Some((index, seconds, seed)) => {
            println!("fuzz: copy {index}: seed {seed:016x}, {seconds} s");
            (Role::Copy { index }, seconds, seed)
        }
        None => {
            let options = options();
            let seed = options.seed.unwrap_or_else(random_seed);
            let seconds = options.seconds;
            println!("fuzz: seed {seed:016x}, {seconds} s, {} copies", options.copies);
            (Role::First { options }, seconds, seed)
        }
    };
    // One line per panic, marked like the report, so the test shows it with the figures.
    let label = role.to_string();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("fuzz: {label} panicked: {}", info.to_string().replace('\n', " "));
    }));
    let waker = waker::start();
    let mut fuzzer = Fuzzer::new(seed, role);
    let start = raw::clock_monotonic();
    fuzzer.run(seconds * SECOND);
    let elapsed = (raw::clock_monotonic() - start) / SECOND;
    fuzzer.finish();
    waker::stop(waker);
    fuzzer.conclude(elapsed);
}

#[derive(Debug)]
struct Fuzzer {
    seed: u64,
    role: Role,
    random: Random,
    scratch: Scratch,
    pool: [u32; POOL],
    /// The object type of each pool handle when it was added (0: none or unknown).
    kinds: [u32; POOL],
    keepers: [u32; KEEPERS],
    keeper_count: usize,
    keeper_next: usize,
    /// One module of each template, never passed to calls.
    templates: [u32; TEMPLATES.len()],
    /// The copies a first process started (empty in a copy).
    copies: Vec<Copy>,
    /// A copy's channel to the first process, once its bootstrap handle is taken (else 0).
    control: u32,
    files: wasi::Files,
    tally: Box<Tally>,
    /// The arguments of the current call, for the report of a bad status.
    arguments: [i64; 8],
    argument_count: usize,
    last_clock: i64,
    last_alive: i64,
}

impl Fuzzer {
    fn new(seed: u64, role: Role) -> Self {
        let unknown: Vec<&str> = CALLS
            .iter()
            .filter(|call| call.returns != Returns::Never && !calls::KNOWN.contains(&call.name))
            .map(|call| call.name)
            .collect();
        assert!(unknown.is_empty(), "calls the fuzzer does not know (add them): {unknown:?}");
        let mut templates = [0u32; TEMPLATES.len()];
        for (slot, source) in templates.iter_mut().zip(TEMPLATES) {
            let status = raw::module_compile(
                source.as_ptr() as usize as u32,
                source.len() as u32,
                writable(slot),
            );
            assert_eq!(status, 0, "compiling a template: {source}");
        }
        let (copies, links) = copies::start(&role, seed);
        let mut fuzzer = Self {
            seed,
            role,
            random: Random(seed),
            // The scratch page last: nothing may allocate after it.
            scratch: Scratch::new(),
            pool: [0; POOL],
            kinds: [0; POOL],
            keepers: [0; KEEPERS],
            keeper_count: 0,
            keeper_next: 0,
            templates,
            copies,
            control: 0,
            files: wasi::Files::new(),
            tally: Box::new(Tally::new()),
            arguments: [0; 8],
            argument_count: 0,
            last_clock: raw::clock_monotonic(),
            last_alive: 0,
        };
        for slot in 0..POOL {
            fuzzer.renew(slot);
        }
        for link in links {
            fuzzer.harvest(link);
        }
        fuzzer
    }

    /// Fuzzes for `duration` nanoseconds.
    fn run(&mut self, duration: i64) {
        let end = raw::clock_monotonic() + duration;
        let mut number = 0u64;
        while raw::clock_monotonic() < end {
            let now = raw::clock_monotonic();
            // Keep an armed watchdog (at least 10 s) from firing.
            if now - self.last_alive > SECOND {
                let _ = raw::watchdog_alive();
                self.last_alive = now;
            }
            if number.is_multiple_of(1024) {
                self.refresh_pool();
            }
            self.scratch.check();
            if self.random.percent(WASI_PERCENT) {
                let index = self.random.below(wasi::FUNCTIONS.len() as u64) as usize;
                let errno = self.wasi_call(index);
                if !self.tally.wasi(index, errno) {
                    let errno = format!("errno {errno}");
                    self.fail(number, wasi::FUNCTIONS[index], &errno, "a WASI preview 1 errno");
                }
            } else {
                let index = self.pick_call();
                self.call(index, number);
            }
            number += 1;
        }
    }

    fn pick_call(&mut self) -> usize {
        loop {
            let index = self.random.below(CALLS.len() as u64) as usize;
            if CALLS[index].returns == Returns::Never {
                continue;
            }
            // Processes are rarely started.
            if CALLS[index].name == "process_start" && !self.random.percent(25) {
                continue;
            }
            return index;
        }
    }

    /// Makes one call of the table with random arguments, and checks and counts its status.
    fn call(&mut self, index: usize, number: u64) {
        let name = CALLS[index].name;
        let status = if CALLS[index].returns == Returns::Time {
            self.note(&[]);
            let now = raw::clock_monotonic();
            assert!(now >= self.last_clock, "the clock went back: {now} after {}", self.last_clock);
            self.last_clock = now;
            0
        } else {
            self.dispatch(name)
        };
        if !self.tally.nebulet(index, status) {
            let status = raw::name(status);
            self.fail(number, name, &status, "OK or an error the contract lists for this call");
        }
    }

    fn fail(&self, number: u64, name: &str, status: &str, allowed: &str) -> ! {
        panic!(
            "fuzz: call {number}: {name}{:?} returned {status}, which is not {allowed} \
             ({}, seed {:016x})",
            &self.arguments[..self.argument_count],
            self.role,
            self.seed
        )
    }

    /// Disarms the watchdog, leaves any sched_lock region, kills every process it created and
    /// waits for their ends, and checks the kernel still serves a simple exchange.
    fn finish(&mut self) {
        assert_eq!(raw::watchdog_setup(0), 0, "disarming the watchdog");
        let mut unlocks = 0u64;
        while raw::sched_unlock() == 0 {
            unlocks += 1;
            assert!(unlocks < 100_000_000, "sched_unlock never reports the region left");
        }
        for index in 0..self.keeper_count {
            let keeper = self.keepers[index];
            assert_eq!(raw::process_kill(keeper), 0, "killing a child at the end");
            let status = raw::object_wait_one(
                keeper,
                Signals::TERMINATED.bits(),
                raw::clock_monotonic() + 10 * SECOND,
                0,
            );
            assert_eq!(status, 0, "a killed child did not end within 10 s");
            assert_eq!(raw::handle_close(keeper), 0);
        }
        println!("fuzz: {}: killed the {} processes it kept", self.role, self.keeper_count);
        self.keeper_count = 0;
        // The kernel still works: a message goes through a new channel.
        let (mut first, mut second) = (0u32, 0u32);
        assert_eq!(raw::channel_create(writable(&mut first), writable(&mut second)), 0);
        let message = *b"still alive";
        assert_eq!(raw::channel_write(first, message.as_ptr() as usize as u32, 11, 0, 0), 0);
        let mut buffer = [0u8; 16];
        let mut actual = 0u32;
        assert_eq!(
            raw::channel_read(second, writable(&mut buffer), 16, 0, 0, writable(&mut actual), 0),
            0
        );
        assert_eq!(&buffer[..actual as usize], &message);
    }

    /// A copy sends its figures to the first process; the first process adds up everyone's,
    /// prints them and checks the minimum of calls and an `OK` for every call.
    fn conclude(&mut self, seconds: i64) {
        println!("fuzz: {}: {} calls", self.role, self.tally.calls);
        let Role::First { options } = &self.role else {
            self.report_to_first();
            return;
        };
        let processes = 1 + options.copies as u64;
        let minimum = options.minimum_calls.unwrap_or(
            MINIMUM_CALLS_PER_SECOND * processes * u64::try_from(options.seconds).unwrap_or(0),
        );
        self.collect_reports();
        self.tally.print(seconds);
        let total = self.tally.calls;
        assert!(total >= minimum, "fuzz: only {total} calls ran; at least {minimum} must");
        let never = self.tally.never_ok();
        assert!(never.is_empty(), "fuzz: these calls never returned OK: {never:?}");
        println!("fuzz: ok");
    }
}
