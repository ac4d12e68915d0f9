//! Several fuzzing processes at once: the first process starts copies of itself, gives each
//! link channels shared with its own pool, and at the end adds their figures to its own.

use nebulet_abi::{ExitReason, Signals};
use nebulet_raw as raw;
use nebulet_raw::writable;

use crate::tally::REPORT_BYTES;
use crate::{Fuzzer, Options, SECOND};

/// The prefix of a copy's process name: `fuzz-copy INDEX SECONDS SEED`.
const COPY_PREFIX: &str = "fuzz-copy ";
/// Link channels per copy: one end in the copy's pool, the other in the first process's.
const LINKS: usize = 3;
/// How long the first process waits for a copy's figures after its own run.
const REPORT_PATIENCE: i64 = 300 * SECOND;

/// Which process of the fuzz this is.
#[derive(Debug)]
pub enum Role {
    /// Started by the test, with options; it starts the copies.
    First { options: Options },
    /// Started by the first process.
    Copy { index: u32 },
}

impl Role {
    pub fn is_copy(&self) -> bool {
        matches!(self, Role::Copy { .. })
    }
}

impl core::fmt::Display for Role {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Role::First { .. } => write!(formatter, "first process"),
            Role::Copy { index } => write!(formatter, "copy {index}"),
        }
    }
}

/// A copy, as the first process holds it (outside the pool).
#[derive(Debug)]
pub struct Copy {
    pub process: u32,
    /// The first process's end of the channel whose other end is the copy's bootstrap handle.
    pub control: u32,
}

/// `(index, seconds, seed)` if this process is a copy, from its name (its `args[0]`).
pub fn copy_from_name() -> Option<(u32, i64, u64)> {
    let name = std::env::args().next()?;
    let mut words = name.strip_prefix(COPY_PREFIX)?.split(' ');
    let index = words.next()?.parse().ok()?;
    let seconds = words.next()?.parse().ok()?;
    let seed = u64::from_str_radix(words.next()?, 16).ok()?;
    Some((index, seconds, seed))
}

/// In the first process: starts the copies the options ask for. Returns them and the first
/// process's ends of their link channels.
pub fn start(role: &Role, seed: u64) -> (Vec<Copy>, Vec<u32>) {
    let Role::First { options } = role else {
        return (Vec::new(), Vec::new());
    };
    if options.copies == 0 {
        return (Vec::new(), Vec::new());
    }
    let path = options.module.as_deref().expect("--copies needs --module PATH (its own module)");
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    let mut module = 0u32;
    let status =
        raw::module_compile(raw::address(&bytes[..]), bytes.len() as u32, writable(&mut module));
    assert_eq!(status, 0, "compiling {path}");
    let mut copies = Vec::new();
    let mut links = Vec::new();
    for index in 1..=options.copies {
        let (control, bootstrap) = raw::channel();
        let mut theirs = [0u32; LINKS];
        for slot in &mut theirs {
            let (mine, other) = raw::channel();
            links.push(mine);
            *slot = other;
        }
        assert_eq!(raw::write(control, b"links", &theirs), 0, "sending a copy its links");
        let copy_seed = seed ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let name = format!("{COPY_PREFIX}{index} {} {copy_seed:016x}", options.seconds);
        let process = raw::create(module, &name);
        assert_eq!(raw::process_start(process, bootstrap), 0, "starting copy {index}");
        copies.push(Copy { process, control });
    }
    // No call may ever make another copy: the module goes.
    assert_eq!(raw::handle_close(module), 0);
    (copies, links)
}

impl Fuzzer {
    /// In a copy: keeps its bootstrap handle, the channel to the first process, and puts the
    /// link channels of its first message into the pool.
    pub(crate) fn take_control(&mut self, control: u32) {
        self.control = control;
        let mut bytes = [0u8; 8];
        let mut handles = [0u32; LINKS];
        let mut count = 0u32;
        let status = raw::channel_read(
            control,
            writable(&mut bytes),
            bytes.len() as u32,
            writable(&mut handles),
            LINKS as u32,
            0,
            writable(&mut count),
        );
        assert_eq!(status, 0, "{}: reading its links", self.role);
        for link in &handles[..count as usize] {
            self.harvest(*link);
        }
    }

    /// In a copy: sends its figures to the first process.
    pub(crate) fn report_to_first(&mut self) {
        if self.control == 0 {
            // It never took its bootstrap handle while it fuzzed.
            let mut control = 0u32;
            assert_eq!(raw::process_bootstrap(writable(&mut control)), 0, "{}", self.role);
            self.take_control(control);
        }
        let report = self.tally.to_bytes();
        assert_eq!(raw::write(self.control, &report, &[]), 0, "{}: sending its figures", self.role);
    }

    /// In the first process: adds every copy's figures, and fails if a copy failed.
    pub(crate) fn collect_reports(&mut self) {
        let copies = std::mem::take(&mut self.copies);
        for (index, copy) in copies.iter().enumerate() {
            let index = index + 1;
            let deadline = raw::clock_monotonic() + REPORT_PATIENCE;
            let signals = (Signals::READABLE | Signals::PEER_CLOSED).bits();
            let status = raw::object_wait_one(copy.control, signals, deadline, 0);
            assert_eq!(status, 0, "fuzz: copy {index} sent no figures within 300 s");
            let mut report = vec![0u8; REPORT_BYTES];
            let mut length = 0u32;
            let status = raw::channel_read(
                copy.control,
                writable(report.as_mut_slice()),
                REPORT_BYTES as u32,
                0,
                0,
                writable(&mut length),
                0,
            );
            let ended = raw::object_wait_one(
                copy.process,
                Signals::TERMINATED.bits(),
                raw::clock_monotonic() + 60 * SECOND,
                0,
            );
            assert_eq!(ended, 0, "fuzz: copy {index} did not end within 60 s of its figures");
            let info = raw::process_info(copy.process);
            let reason = ExitReason::from_raw(info.exit_reason).map_or("unknown", ExitReason::word);
            assert!(
                status == 0 && self.tally.add_report(&report[..length as usize]),
                "fuzz: copy {index} failed: {reason}, exit code {} (if it panicked, the report \
                 above has a line `fuzz: copy {index} panicked`)",
                info.exit_code
            );
            assert_eq!(
                (info.exit_reason, info.exit_code),
                (ExitReason::Exited as u32, 0),
                "fuzz: copy {index} ended with {reason}, exit code {}",
                info.exit_code
            );
            assert_eq!(raw::handle_close(copy.control), 0);
            assert_eq!(raw::handle_close(copy.process), 0);
        }
    }
}
