//! The call fuzzer: `fuzz [SECONDS [SEED]]` calls random `nebulet` calls (every call of
//! `nebulet_abi::calls::CALLS` but `process_exit`) with random arguments for SECONDS (default
//! 60), and panics (a trap) if a call returns anything but `OK` or one of the contract's error
//! codes. The kernel must survive it: a kernel panic aborts the whole host.
//!
//! Arguments come from a pool of handles it created (channels, events, timers, modules of tiny
//! WAT programs, processes, mostly unstarted), random numbers, 0, pointers into a scratch page
//! at the top of its memory, pointers that cross the end of memory or lie past it, and huge
//! lengths. Deadlines are 0, in the past or within a millisecond, so nothing blocks for long;
//! watchdog intervals are 0, invalid or at least 10 s. Every process it creates gets a
//! "keeper" handle outside the pool, and every one of them is killed before it exits.
//!
//! Its randomness is a SplitMix64 generator seeded with 8 bytes of `random_fill`, printed as
//! `fuzz: seed HEX`; `fuzz SECONDS HEX` replays the same choices (the kernel's handle values
//! and timing still differ). At the end it prints how often each call returned each status.

use nebulet_raw as raw;
use nebulet_raw::writable;
mod scratch;

use nebulet_abi::calls::{CALLS, Returns};
use nebulet_abi::layout::WaitItem;
use nebulet_abi::{Error, Limit, ObjectType, Rights, Signals};

use scratch::{PAGE, Scratch};

const MILLISECOND: i64 = 1_000_000;
const SECOND: i64 = 1_000 * MILLISECOND;

/// Handles the fuzzer passes to calls.
const POOL: usize = 48;
/// Process handles outside the pool, one per process created, to kill them all at the end.
const KEEPERS: usize = 128;
/// Statuses: OK, then `Error::ALL` in order.
const STATUSES: usize = 1 + Error::ALL.len();
/// The most calls the table may have.
const MAX_CALLS: usize = 64;

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

fn main() {
    let mut arguments = std::env::args().skip(1);
    let seconds: i64 = arguments.next().map_or(60, |text| text.parse().expect("SECONDS"));
    let seed = match arguments.next() {
        Some(text) => u64::from_str_radix(&text, 16).expect("SEED is 16 hex digits"),
        None => {
            let mut bytes = [0u8; 8];
            let status = raw::random_fill(&mut bytes as *mut [u8; 8] as usize as u32, 8);
            assert_eq!(status, 0, "random_fill for the seed");
            u64::from_be_bytes(bytes)
        }
    };
    println!("fuzz: seed {seed:016x}, {seconds} s");
    let mut fuzzer = Fuzzer::new(seed);
    let calls = fuzzer.run(seconds * SECOND);
    fuzzer.finish();
    fuzzer.report(calls);
    println!("fuzz: ok");
}

/// SplitMix64.
#[derive(Debug)]
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn u32(&mut self) -> u32 {
        self.next() as u32
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn below32(&mut self, bound: u32) -> u32 {
        self.below(u64::from(bound)) as u32
    }

    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An index chosen with these weights.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut pick = self.below32(total);
        for (index, weight) in weights.iter().enumerate() {
            if pick < *weight {
                return index;
            }
            pick -= weight;
        }
        weights.len() - 1
    }
}

/// The status column of a return value; `None` if it is no status of the contract.
fn column(status: i32) -> Option<usize> {
    if status == 0 {
        return Some(0);
    }
    Error::ALL.iter().position(|error| error.code() == status).map(|index| index + 1)
}

fn column_name(column: usize) -> &'static str {
    if column == 0 { "OK" } else { Error::ALL[column - 1].name() }
}

/// The object type of a handle (0 if it is none).
fn kind_of(handle: u32) -> u32 {
    let mut record = [0u8; 16];
    if raw::object_get_info(handle, 1, writable(&mut record), 16, 0) != 0 {
        return 0;
    }
    u32::from_le_bytes([record[8], record[9], record[10], record[11]])
}

#[derive(Debug)]
struct Fuzzer {
    seed: u64,
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
    counts: [[u64; STATUSES]; MAX_CALLS],
    /// The arguments of the current call, for the report of a bad status.
    arguments: [i64; 8],
    argument_count: usize,
    last_clock: i64,
    last_alive: i64,
    /// Calls of the table the fuzzer calls (all but `process_exit`).
    fuzzed: [bool; MAX_CALLS],
}

impl Fuzzer {
    fn new(seed: u64) -> Self {
        assert!(CALLS.len() <= MAX_CALLS, "more calls than the fuzzer has room for");
        let mut fuzzed = [false; MAX_CALLS];
        let mut unknown = Vec::new();
        for (index, call) in CALLS.iter().enumerate() {
            fuzzed[index] = call.name != "process_exit";
            if fuzzed[index] && !KNOWN.contains(&call.name) {
                unknown.push(call.name);
            }
        }
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
        // The scratch page last: nothing may allocate after it.
        let mut fuzzer = Self {
            seed,
            random: Random(seed),
            scratch: Scratch::new(),
            pool: [0; POOL],
            kinds: [0; POOL],
            keepers: [0; KEEPERS],
            keeper_count: 0,
            keeper_next: 0,
            templates,
            counts: [[0; STATUSES]; MAX_CALLS],
            arguments: [0; 8],
            argument_count: 0,
            last_clock: raw::clock_monotonic(),
            last_alive: 0,
            fuzzed,
        };
        for slot in 0..POOL {
            fuzzer.renew(slot);
        }
        fuzzer
    }

    /// Fuzzes for `duration` nanoseconds; the number of calls made.
    fn run(&mut self, duration: i64) -> u64 {
        let end = raw::clock_monotonic() + duration;
        let mut calls = 0u64;
        loop {
            let now = raw::clock_monotonic();
            if now >= end {
                return calls;
            }
            // Keep an armed watchdog (at least 10 s) from firing.
            if now - self.last_alive > SECOND {
                let _ = raw::watchdog_alive();
                self.last_alive = now;
            }
            if calls.is_multiple_of(1024) {
                self.refresh_pool();
            }
            self.scratch.check();
            let index = self.pick_call();
            self.call(index, calls);
            calls += 1;
        }
    }

    fn pick_call(&mut self) -> usize {
        loop {
            let index = self.random.below(CALLS.len() as u64) as usize;
            if !self.fuzzed[index] {
                continue;
            }
            // Processes are rarely started.
            if CALLS[index].name == "process_start" && !self.random.percent(25) {
                continue;
            }
            return index;
        }
    }

    // --- Argument generators -------------------------------------------------------------

    fn note(&mut self, arguments: &[i64]) {
        self.argument_count = arguments.len();
        self.arguments[..arguments.len()].copy_from_slice(arguments);
    }

    fn handle(&mut self) -> u32 {
        match self.random.weighted(&[70, 8, 7, 5]) {
            0 => self.pool[self.random.below(POOL as u64) as usize],
            1 => 0,
            2 => self.random.u32(),
            _ => self.pool[self.random.below(POOL as u64) as usize] ^ (1 << self.random.below(32)),
        }
    }

    /// Often a pool handle to an object of type `kind` (if the pool has one), else any handle.
    fn handle_of(&mut self, kind: ObjectType, percent: u64) -> u32 {
        if self.random.percent(percent) {
            let matches = self.kinds.iter().filter(|k| **k == kind as u32).count();
            if matches > 0 {
                let pick = self.random.below(matches as u64) as usize;
                let slot = (0..POOL).filter(|slot| self.kinds[*slot] == kind as u32).nth(pick);
                if let Some(slot) = slot {
                    return self.pool[slot];
                }
            }
        }
        self.handle()
    }

    fn rights(&mut self) -> u32 {
        match self.random.weighted(&[30, 40, 10, 20]) {
            0 => Rights::SAME_RIGHTS.bits(),
            1 => self.random.u32() & Rights::ALL.bits(),
            2 => 0,
            _ => self.random.u32(),
        }
    }

    fn signals(&mut self) -> u32 {
        let known = Signals::READABLE
            | Signals::WRITABLE
            | Signals::PEER_CLOSED
            | Signals::SIGNALED
            | Signals::TERMINATED
            | Signals::USER_ALL;
        match self.random.weighted(&[60, 10, 20, 10]) {
            0 => self.random.u32() & known.bits(),
            1 => 0,
            2 => self.random.u32(),
            _ => u32::MAX,
        }
    }

    /// A deadline that passes within a millisecond (or has passed).
    fn deadline(&mut self) -> i64 {
        let now = raw::clock_monotonic();
        match self.random.weighted(&[40, 30, 10, 10, 5, 5]) {
            0 => 0,
            1 => now + MILLISECOND,
            2 => now + self.random.below(MILLISECOND as u64) as i64,
            3 => now - self.random.below(SECOND as u64) as i64,
            4 => i64::MIN,
            _ => -((self.random.next() >> 1) as i64),
        }
    }

    /// A pointer the kernel may write up to `size` bytes through: into the scratch page
    /// (possibly crossing the end of memory), past the end, wrapping around, or 0 (only when
    /// `zero` and `size` is at most 32: the first bytes of memory are never used).
    fn writable(&mut self, size: u32, zero: bool) -> u32 {
        let end = self.scratch.end();
        match self.random.weighted(&[55, 10, 10, 10, 5, 10]) {
            0 => {
                let address = self.scratch.base + self.random.below32(PAGE);
                if self.random.percent(50) { address & !3 } else { address }
            }
            1 => end - 1 - self.random.below32(16),
            2 => end + self.random.below32(64),
            3 => end + self.random.below32(u32::MAX - end),
            4 => u32::MAX - self.random.below32(16),
            _ if zero && size <= 32 => 0,
            _ => self.scratch.base + (self.random.below32(PAGE) & !3),
        }
    }

    /// A pointer the kernel only reads through: anything, including the program's own data.
    fn readable(&mut self) -> u32 {
        if self.random.percent(20) {
            self.random.below32(self.scratch.end())
        } else {
            self.writable(u32::MAX, true)
        }
    }

    fn length(&mut self) -> u32 {
        match self.random.weighted(&[15, 30, 5, 20, 10, 15, 5]) {
            0 => 0,
            1 => self.random.below32(64),
            2 => self.random.below32(4_096),
            3 => self.random.below32(65_537),
            4 => 65_536 + self.random.below32(2),
            5 => self.random.u32(),
            _ => u32::MAX,
        }
    }

    /// A place in the scratch page for `size` bytes the fuzzer writes itself.
    fn scratch_place(&mut self, size: u32) -> u32 {
        self.scratch.base + self.random.below32(PAGE - size + 1)
    }

    /// Text the fuzzer wrote into the scratch page: `(address, length)`.
    fn scratch_text(&mut self, text: &[u8]) -> (u32, u32) {
        let address = self.scratch_place(text.len() as u32);
        self.scratch.write(address, text);
        (address, text.len() as u32)
    }

    /// A name: a service name, a short valid name, random bytes, or any pointer and length.
    fn name(&mut self) -> (u32, u32) {
        match self.random.weighted(&[40, 20, 20, 20]) {
            0 => {
                let name = SERVICE_NAMES[self.random.below(SERVICE_NAMES.len() as u64) as usize];
                self.scratch_text(name)
            }
            1 => {
                let length = self.random.below32(80);
                let mut bytes = [b'n'; 80];
                for byte in &mut bytes[..length as usize] {
                    *byte = b'a' + self.random.below(26) as u8;
                }
                self.scratch_text(&bytes[..length as usize])
            }
            2 => {
                let length = self.random.below32(70);
                (self.scratch_place(length), length)
            }
            _ => (self.readable(), self.length()),
        }
    }

    /// Module bytes: a template's text, a wasm header and garbage, or any pointer and length.
    fn module_bytes(&mut self) -> (u32, u32) {
        match self.random.weighted(&[30, 20, 50]) {
            0 => {
                let source = TEMPLATES[self.random.below(TEMPLATES.len() as u64) as usize];
                self.scratch_text(source.as_bytes())
            }
            1 => {
                let length = 8 + self.random.below32(64);
                let address = self.scratch_place(length);
                self.scratch.write(address, b"\0asm\x01\0\0\0");
                (address, length)
            }
            _ => (self.readable(), self.length()),
        }
    }

    /// An array of `count` handles the fuzzer wrote into the scratch page.
    fn handle_array(&mut self, count: u32) -> u32 {
        let address = self.scratch_place(count * 4);
        for index in 0..count {
            let handle = self.handle();
            self.scratch.write(address + index * 4, &handle.to_le_bytes());
        }
        address
    }

    fn interval(&mut self) -> i64 {
        match self.random.weighted(&[40, 30, 15, 15]) {
            0 => 0,
            1 => 10 * SECOND + self.random.below(50 * SECOND as u64) as i64,
            2 => 1 + self.random.below(MILLISECOND as u64 - 1) as i64,
            _ => -((self.random.next() >> 1) as i64) - 1,
        }
    }

    fn limit_value(&mut self) -> i64 {
        match self.random.weighted(&[30, 20, 10, 10, 10, 20]) {
            0 => self.random.below(1 << 20) as i64,
            1 => self.random.next() as i64,
            2 => 0,
            3 => -1,
            4 => i64::MAX,
            _ => self.random.below(1 << 32) as i64,
        }
    }

    // --- The pool --------------------------------------------------------------------------

    /// A new object for pool slot `slot`: a channel end, an event, a timer, a module, or an
    /// unstarted process (with its keeper).
    fn fresh_object(&mut self, slot: usize) -> u32 {
        let mut handle = 0u32;
        let status = match slot % 6 {
            0 | 1 => {
                let mut peer = 0u32;
                let status = raw::channel_create(writable(&mut handle), writable(&mut peer));
                // The other end goes to a random slot: both ends stay reachable.
                if status == 0 {
                    let other = (slot + 1 + self.random.below(POOL as u64 - 1) as usize) % POOL;
                    self.place(other, peer);
                }
                status
            }
            2 => raw::event_create(writable(&mut handle)),
            3 => raw::timer_create(writable(&mut handle)),
            4 => {
                let template = self.templates[self.random.below(TEMPLATES.len() as u64) as usize];
                raw::handle_duplicate(template, Rights::SAME_RIGHTS.bits(), writable(&mut handle))
            }
            _ => {
                let template = self.templates[self.random.below(TEMPLATES.len() as u64) as usize];
                let name = b"pool";
                let status = raw::process_create(
                    template,
                    name.as_ptr() as usize as u32,
                    name.len() as u32,
                    writable(&mut handle),
                );
                if status == 0 {
                    self.keep(handle);
                }
                status
            }
        };
        if status == 0 { handle } else { 0 }
    }

    /// Puts a new object into pool slot `slot`, closing what was there.
    fn renew(&mut self, slot: usize) {
        let handle = self.fresh_object(slot);
        self.place(slot, handle);
    }

    /// Puts `handle` into pool slot `slot`, closing what was there.
    fn place(&mut self, slot: usize, handle: u32) {
        let old = core::mem::replace(&mut self.pool[slot], handle);
        self.kinds[slot] = kind_of(handle);
        if old != handle {
            let _ = raw::handle_close(old);
        }
    }

    /// Replaces handles that are no longer valid (closed, moved into messages or processes).
    fn refresh_pool(&mut self) {
        for slot in 0..POOL {
            let mut record = [0u8; 16];
            let status = raw::object_get_info(self.pool[slot], 1, writable(&mut record), 16, 0);
            if status == Error::BadHandle.code() {
                self.renew(slot);
            } else if status == 0 {
                self.kinds[slot] =
                    u32::from_le_bytes([record[8], record[9], record[10], record[11]]);
            }
        }
    }

    /// Adds a handle a call made to the pool, closing the one it replaces.
    fn harvest(&mut self, handle: u32) {
        if handle == 0 {
            return;
        }
        let slot = self.random.below(POOL as u64) as usize;
        self.place(slot, handle);
    }

    /// Harvests the handle at `address` if the call wrote it into the scratch page.
    fn harvest_at(&mut self, address: u32) {
        if self.scratch.contains(address, 4) {
            let handle = self.scratch.read_u32(address);
            self.harvest(handle);
        }
    }

    /// Keeps a duplicate of a new process's handle outside the pool, so it can be killed at
    /// the end whatever the fuzzer does with the pool's; when full, kills the oldest.
    fn keep(&mut self, process: u32) {
        let mut keeper = 0u32;
        if raw::handle_duplicate(process, Rights::SAME_RIGHTS.bits(), writable(&mut keeper)) != 0 {
            // No room for a keeper: the process must not outlive the fuzzer.
            assert_eq!(raw::process_kill(process), 0, "killing a process without a keeper");
            return;
        }
        if self.keeper_count < KEEPERS {
            self.keepers[self.keeper_count] = keeper;
            self.keeper_count += 1;
        } else {
            let old = core::mem::replace(&mut self.keepers[self.keeper_next], keeper);
            self.keeper_next = (self.keeper_next + 1) % KEEPERS;
            assert_eq!(raw::process_kill(old), 0, "killing an old process");
            let _ = raw::handle_close(old);
        }
    }

    // --- Calls -----------------------------------------------------------------------------

    /// Makes one call of the table with random arguments and checks and counts its status.
    fn call(&mut self, index: usize, number: u64) {
        let name = CALLS[index].name;
        let status = self.dispatch(name);
        if CALLS[index].returns == Returns::Time {
            self.counts[index][0] += 1;
            return;
        }
        match column(status) {
            Some(column) => self.counts[index][column] += 1,
            None => panic!(
                "fuzz: call {number}: {name}{:?} returned {status}, which is neither OK nor an \
                 error code of the contract (seed {:016x})",
                &self.arguments[..self.argument_count],
                self.seed
            ),
        }
    }

    fn dispatch(&mut self, name: &str) -> i32 {
        match name {
            "handle_close" => {
                let handle = self.handle();
                self.note(&[handle.into()]);
                raw::handle_close(handle)
            }
            "handle_duplicate" | "handle_replace" => {
                let (handle, rights, out) = (self.handle(), self.rights(), self.writable(4, false));
                self.note(&[handle.into(), rights.into(), out.into()]);
                let status = if name == "handle_duplicate" {
                    raw::handle_duplicate(handle, rights, out)
                } else {
                    raw::handle_replace(handle, rights, out)
                };
                if status == 0 {
                    self.harvest_at(out);
                }
                status
            }
            "object_wait_one" => {
                let (handle, signals, deadline) = (self.handle(), self.signals(), self.deadline());
                let observed = self.writable(4, true);
                self.note(&[handle.into(), signals.into(), deadline, observed.into()]);
                raw::object_wait_one(handle, signals, deadline, observed)
            }
            "object_wait_many" => {
                let count = match self.random.weighted(&[70, 15, 15]) {
                    0 => self.random.below32(9),
                    1 => 60 + self.random.below32(10),
                    _ => self.random.u32(),
                };
                let items = if count <= 80 && self.random.percent(70) {
                    let address = self.scratch_place(count * WaitItem::SIZE as u32);
                    for item in 0..count {
                        let bytes = WaitItem {
                            handle: self.handle(),
                            wait_for: self.signals(),
                            pending: 0,
                        }
                        .to_bytes();
                        self.scratch.write(address + item * WaitItem::SIZE as u32, &bytes);
                    }
                    address
                } else {
                    self.writable(count.saturating_mul(WaitItem::SIZE as u32), true)
                };
                let deadline = self.deadline();
                self.note(&[items.into(), count.into(), deadline]);
                raw::object_wait_many(items, count, deadline)
            }
            "object_signal" => {
                let (handle, clear, set) = (self.handle(), self.signals(), self.signals());
                self.note(&[handle.into(), clear.into(), set.into()]);
                raw::object_signal(handle, clear, set)
            }
            "object_get_info" => {
                let handle = self.handle();
                let topic = match self.random.weighted(&[40, 40, 10, 10]) {
                    0 => 1,
                    1 => 2,
                    2 => self.random.below32(5),
                    _ => self.random.u32(),
                };
                let length = match self.random.weighted(&[50, 30, 20]) {
                    0 => [16, 32][self.random.below(2) as usize],
                    1 => self.random.below32(40),
                    _ => self.length(),
                };
                let buffer = self.writable(length.min(32), true);
                let actual = self.writable(4, true);
                self.note(&[
                    handle.into(),
                    topic.into(),
                    buffer.into(),
                    length.into(),
                    actual.into(),
                ]);
                raw::object_get_info(handle, topic, buffer, length, actual)
            }
            "channel_create" => {
                let (first, second) = (self.writable(4, false), self.writable(4, false));
                self.note(&[first.into(), second.into()]);
                let status = raw::channel_create(first, second);
                if status == 0 {
                    // Read both before either goes back into the pool's bookkeeping.
                    let (one, other) = (self.read_scratch(first), self.read_scratch(second));
                    self.harvest(one);
                    self.harvest(other);
                }
                status
            }
            "channel_write" => {
                let handle = self.handle_of(ObjectType::Channel, 60);
                let (bytes, count) = if self.random.percent(70) {
                    let count = self.random.below32(512);
                    (self.scratch_place(count), count)
                } else {
                    (self.readable(), self.length())
                };
                let handle_count = match self.random.weighted(&[50, 30, 10, 10]) {
                    0 => 0,
                    1 => 1 + self.random.below32(4),
                    2 => 60 + self.random.below32(8),
                    _ => self.random.u32(),
                };
                let handles = if handle_count <= 80 && self.random.percent(80) {
                    self.handle_array(handle_count)
                } else {
                    self.readable()
                };
                self.note(&[
                    handle.into(),
                    bytes.into(),
                    count.into(),
                    handles.into(),
                    handle_count.into(),
                ]);
                raw::channel_write(handle, bytes, count, handles, handle_count)
            }
            "channel_read" => {
                let handle = self.handle_of(ObjectType::Channel, 60);
                // Mostly reads that fit the scratch page, to receive messages and handles.
                let fitting = self.random.percent(60);
                let capacity = if fitting {
                    [0, 4, 64, 512, 65_536][self.random.below(5) as usize]
                } else {
                    self.length()
                };
                let bytes = if fitting {
                    self.scratch_place(capacity)
                } else {
                    self.writable(capacity.min(65_536), true)
                };
                let handle_capacity = match self.random.weighted(&[40, 40, 20]) {
                    0 => 0,
                    1 => 1 + self.random.below32(64),
                    _ if fitting => self.random.below32(65),
                    _ => self.random.u32(),
                };
                // Zeroed first, so the handles it receives can be told from old bytes.
                let zeroed = handle_capacity <= 64 && (fitting || self.random.percent(80));
                let handles = if zeroed {
                    let address = self.scratch_place(handle_capacity * 4);
                    self.scratch.zero(address, handle_capacity * 4);
                    address
                } else {
                    self.writable(handle_capacity.saturating_mul(4).min(256), false)
                };
                let (actual_bytes, actual_handles) = if fitting {
                    (self.scratch_place(4), self.scratch_place(4))
                } else {
                    (self.writable(4, true), self.writable(4, true))
                };
                self.note(&[
                    handle.into(),
                    bytes.into(),
                    capacity.into(),
                    handles.into(),
                    handle_capacity.into(),
                    actual_bytes.into(),
                    actual_handles.into(),
                ]);
                let status = raw::channel_read(
                    handle,
                    bytes,
                    capacity,
                    handles,
                    handle_capacity,
                    actual_bytes,
                    actual_handles,
                );
                if status == 0 && zeroed {
                    // Every handle it received.
                    for index in 0..handle_capacity {
                        let address = handles.wrapping_add(index * 4);
                        if self.scratch.contains(address, 4) {
                            let handle = self.scratch.read_u32(address);
                            self.harvest(handle);
                        }
                    }
                }
                status
            }
            "event_create" | "timer_create" => {
                let out = self.writable(4, false);
                self.note(&[out.into()]);
                let status = if name == "event_create" {
                    raw::event_create(out)
                } else {
                    raw::timer_create(out)
                };
                if status == 0 {
                    self.harvest_at(out);
                }
                status
            }
            "timer_set" => {
                let handle = self.handle_of(ObjectType::Timer, 50);
                let deadline = if self.random.percent(70) {
                    self.deadline()
                } else {
                    self.random.next() as i64
                };
                self.note(&[handle.into(), deadline]);
                raw::timer_set(handle, deadline)
            }
            "timer_cancel" => {
                let handle = self.handle_of(ObjectType::Timer, 50);
                self.note(&[handle.into()]);
                raw::timer_cancel(handle)
            }
            "clock_monotonic" => {
                self.note(&[]);
                let now = raw::clock_monotonic();
                assert!(
                    now >= self.last_clock,
                    "the clock went back: {} after {}",
                    now,
                    self.last_clock
                );
                self.last_clock = now;
                0
            }
            "nanosleep" => {
                let deadline = self.deadline();
                self.note(&[deadline]);
                raw::nanosleep(deadline)
            }
            "module_compile" => {
                let (bytes, length) = self.module_bytes();
                let out = self.writable(4, false);
                self.note(&[bytes.into(), length.into(), out.into()]);
                let status = raw::module_compile(bytes, length, out);
                if status == 0 {
                    self.harvest_at(out);
                }
                status
            }
            "process_create" => {
                let module = if self.random.percent(30) {
                    self.templates[self.random.below(TEMPLATES.len() as u64) as usize]
                } else {
                    self.handle_of(ObjectType::Module, 40)
                };
                let (name, name_length) = self.name();
                let out = self.writable(4, false);
                self.note(&[module.into(), name.into(), name_length.into(), out.into()]);
                let status = raw::process_create(module, name, name_length, out);
                if status == 0 {
                    let process = self.read_scratch(out);
                    assert_ne!(process, 0, "process_create wrote no handle");
                    self.keep(process);
                    self.harvest(process);
                }
                status
            }
            "process_start" => {
                let process = self.handle_of(ObjectType::Process, 30);
                let bootstrap = if self.random.percent(50) { 0 } else { self.handle() };
                self.note(&[process.into(), bootstrap.into()]);
                raw::process_start(process, bootstrap)
            }
            "process_bootstrap" => {
                let out = self.writable(4, false);
                self.note(&[out.into()]);
                let status = raw::process_bootstrap(out);
                if status == 0 {
                    self.harvest_at(out);
                }
                status
            }
            "process_kill" => {
                // Never its own handle: it holds none.
                let process = self.handle_of(ObjectType::Process, 50);
                self.note(&[process.into()]);
                raw::process_kill(process)
            }
            "process_set_limit" => {
                let process = self.handle_of(ObjectType::Process, 50);
                let limit = match self.random.weighted(&[80, 10, 10]) {
                    0 => Limit::ALL[self.random.below(Limit::ALL.len() as u64) as usize] as u32,
                    1 => [0, 6][self.random.below(2) as usize],
                    _ => self.random.u32(),
                };
                let value = self.limit_value();
                self.note(&[process.into(), limit.into(), value]);
                raw::process_set_limit(process, limit, value)
            }
            "thread_yield" => {
                self.note(&[]);
                raw::thread_yield()
            }
            "futex_wait" => {
                let address = if self.random.percent(70) {
                    let address = self.scratch.base + self.random.below32(PAGE);
                    if self.random.percent(80) { address & !3 } else { address }
                } else {
                    self.readable()
                };
                let expected = if self.scratch.contains(address, 4) && self.random.percent(50) {
                    self.scratch.read_u32(address)
                } else {
                    self.random.u32() & 3
                };
                let deadline = self.deadline();
                self.note(&[address.into(), expected.into(), deadline]);
                raw::futex_wait(address, expected, deadline)
            }
            "futex_wake" => {
                let address = if self.random.percent(50) {
                    self.scratch.base + (self.random.below32(PAGE) & !3)
                } else {
                    self.readable()
                };
                let count = if self.random.percent(50) {
                    self.random.below32(4)
                } else {
                    self.random.u32()
                };
                let woken = self.writable(4, true);
                self.note(&[address.into(), count.into(), woken.into()]);
                raw::futex_wake(address, count, woken)
            }
            "sched_lock" => {
                self.note(&[]);
                raw::sched_lock()
            }
            "sched_unlock" => {
                self.note(&[]);
                raw::sched_unlock()
            }
            "watchdog_setup" => {
                let interval = self.interval();
                self.note(&[interval]);
                raw::watchdog_setup(interval)
            }
            "watchdog_alive" => {
                self.note(&[]);
                raw::watchdog_alive()
            }
            "random_fill" | "cprng_fill" => {
                let length = self.length();
                let buffer = self.writable(length.min(65_536), true);
                self.note(&[buffer.into(), length.into()]);
                if name == "random_fill" {
                    raw::random_fill(buffer, length)
                } else {
                    raw::cprng_fill(buffer, length)
                }
            }
            "debug_write" => {
                // Valid writes are one dot at most: the console is not for noise.
                let (buffer, length) = if self.random.percent(50) {
                    let (address, _) = self.scratch_text(b".");
                    (address, self.random.below32(2))
                } else {
                    let buffer = self.writable(u32::MAX, false);
                    let length = self.length();
                    if self.scratch.contains(buffer, length) {
                        (buffer, 0)
                    } else {
                        (buffer, length)
                    }
                };
                self.note(&[buffer.into(), length.into()]);
                raw::debug_write(buffer, length)
            }
            "service_register" | "service_connect" => {
                let (name_address, name_length) = self.name();
                let channel = self.handle_of(ObjectType::Channel, 50);
                self.note(&[name_address.into(), name_length.into(), channel.into()]);
                if name == "service_register" {
                    raw::service_register(name_address, name_length, channel)
                } else {
                    raw::service_connect(name_address, name_length, channel)
                }
            }
            other => unreachable!("`{other}` is checked against KNOWN at start"),
        }
    }

    /// The u32 a call wrote at `address` (0 if it is not in the scratch page).
    fn read_scratch(&self, address: u32) -> u32 {
        if self.scratch.contains(address, 4) { self.scratch.read_u32(address) } else { 0 }
    }

    // --- The end ---------------------------------------------------------------------------

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
        println!("fuzz: killed the {} processes it kept", self.keeper_count);
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

    fn report(&self, calls: u64) {
        let mut pairs = 0;
        for (index, call) in CALLS.iter().enumerate() {
            if !self.fuzzed[index] {
                continue;
            }
            let counts = &self.counts[index];
            let total: u64 = counts.iter().sum();
            let statuses: Vec<String> = (0..STATUSES)
                .filter(|column| counts[*column] > 0)
                .map(|column| format!("{} {}", column_name(column), counts[column]))
                .collect();
            pairs += statuses.len();
            println!("fuzz: {:<18} {:>8}: {}", call.name, total, statuses.join(", "));
        }
        println!("fuzz: {calls} calls, {pairs} distinct (call, status) pairs");
    }
}

/// The calls the fuzzer knows how to call.
const KNOWN: &[&str] = &[
    "handle_close",
    "handle_duplicate",
    "handle_replace",
    "object_wait_one",
    "object_wait_many",
    "object_signal",
    "object_get_info",
    "channel_create",
    "channel_write",
    "channel_read",
    "event_create",
    "timer_create",
    "timer_set",
    "timer_cancel",
    "clock_monotonic",
    "nanosleep",
    "module_compile",
    "process_create",
    "process_start",
    "process_bootstrap",
    "process_kill",
    "process_set_limit",
    "thread_yield",
    "futex_wait",
    "futex_wake",
    "sched_lock",
    "sched_unlock",
    "watchdog_setup",
    "watchdog_alive",
    "random_fill",
    "cprng_fill",
    "debug_write",
    "service_register",
    "service_connect",
];
