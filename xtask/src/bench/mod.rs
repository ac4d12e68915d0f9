//! `cargo xtask bench`: Nebulet (hosted) against Linux, one operation at a time, in one run.
//!
//! How it runs: `cargo xtask bench` (in `main.rs`) builds xtask again in release mode with the
//! `bench` feature and runs its hidden `bench-run` task, this module, so that the code measuring
//! the Linux side and the hosted kernel itself are optimised. The Nebulet side of each operation
//! is a loop inside a wasm program (`apps/tests/bench`, or `threaded pingpong`), timed with
//! `clock_monotonic` around the loop and run by an [`Emulator`](nebulet_hosted::Emulator) in
//! this process; the Linux side is the same loop in Rust, timed with `Instant` in this process
//! (and its children). Both loops first run a tenth of their count (at least once) untimed.
//!
//! One file per family of measurements: `syscall.rs`, `switch.rs`, `message.rs`, `process.rs`,
//! `memory.rs`, `compute.rs`, `startup.rs` (real programs started by the `nebulet` command
//! against the wasmtime CLI), `serve.rs` (`nebulet serve` against `wasmtime serve`, under wrk),
//! `floor.rs` (wasmtime alone, the floor under the switch, round-trip and spawn rows);
//! `nebulet.rs` runs the wasm programs, `report.rs` prints the table and writes
//! `target/bench/results.json` and `docs/benchmarks.md`.

mod beam;
mod compute;
mod domains;
mod floor;
pub mod memory;
pub mod message;
mod nebulet;
mod process;
mod report;
mod serve;
mod startup;
mod switch;
mod syscall;

use std::path::PathBuf;
use std::time::Instant;

use nebulet_domains::Launch;
use nebulet_hosted::{EngineOptions, Placement};

use self::nebulet::Nebulet;

/// How much of everything one run measures.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A smoke run: small counts, one run of each.
    pub quick: bool,
    /// How many times each timed loop runs; the table gives the median.
    pub runs: usize,
    pub system_calls: u64,
    pub switch_round_trips: u64,
    pub message_round_trips: u64,
    pub nebulet_spawns: u64,
    pub linux_spawns: u64,
    pub compute_runs: u64,
    pub compute_limit: u64,
    /// Idle Nebulet processes per memory measurement.
    pub idle_processes: Vec<u64>,
    /// Idle Linux threads per memory measurement.
    pub idle_threads: Vec<u64>,
    /// How long wrk loads a server for each serve row.
    pub serve_seconds: u64,
}

impl Settings {
    fn new(quick: bool, idle: Option<Vec<u64>>) -> Self {
        if quick {
            Self {
                quick,
                runs: 1,
                system_calls: 1_000_000,
                switch_round_trips: 20_000,
                message_round_trips: 10_000,
                nebulet_spawns: 500,
                linux_spawns: 200,
                compute_runs: 5,
                compute_limit: 1 << 22,
                idle_processes: idle.unwrap_or_else(|| vec![1_000, 10_000]),
                idle_threads: vec![1_000],
                serve_seconds: 2,
            }
        } else {
            Self {
                quick,
                runs: 5,
                system_calls: 10_000_000,
                switch_round_trips: 200_000,
                message_round_trips: 100_000,
                nebulet_spawns: 5_000,
                linux_spawns: 2_000,
                compute_runs: 40,
                compute_limit: 1 << 22,
                idle_processes: idle.unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]),
                // Every Linux thread takes a PID: pid_max is often 32,768 (and the machine's
                // other work needs some), so 100,000 threads are not tried.
                idle_threads: vec![10_000],
                serve_seconds: 10,
            }
        }
    }
}

/// Runs a Linux measurement unpinned and then pinned to one core (this thread, and the threads
/// and processes it starts, which inherit the pinning), and keeps the faster: on these virtual
/// machines Linux hands a turn from one thread to another in about 1.6 µs when the other core
/// is busy but 15 µs when it is idle, so one unpinned number is not a fair baseline.
pub fn faster_pinned_or_not(
    mut measure: impl FnMut() -> Result<(u64, f64), String>,
) -> Result<(u64, f64), String> {
    let per_operation =
        |(operations, nanoseconds): (u64, f64)| nanoseconds / operations.max(1) as f64;
    let unpinned = measure()?;
    let Ok(allowed) = rustix::thread::sched_getaffinity(None) else { return Ok(unpinned) };
    let Some(core) = (0..rustix::thread::CpuSet::MAX_CPU).find(|&cpu| allowed.is_set(cpu)) else {
        return Ok(unpinned);
    };
    let mut one = rustix::thread::CpuSet::new();
    one.set(core);
    if rustix::thread::sched_setaffinity(None, &one).is_err() {
        return Ok(unpinned);
    }
    let pinned = measure();
    let _ = rustix::thread::sched_setaffinity(None, &allowed);
    let pinned = pinned?;
    Ok(if per_operation(pinned) < per_operation(unpinned) { pinned } else { unpinned })
}

/// A one-line description of an engine configuration, for the table.
pub fn describe_options(options: &EngineOptions) -> String {
    if *options == EngineOptions::default() {
        return "default engine (4 GiB reservation + 32 MiB guards, 2 MiB fiber stacks)".into();
    }
    let kib = |bytes: u64| format!("{} KiB", bytes >> 10);
    let field = |value: Option<u64>| value.map_or("default".into(), kib);
    let placement = match options.placement {
        Placement::Separate => "",
        Placement::Shared => ", shared placement",
    };
    let overcommit = options.overcommit.map(|ratio| format!(", overcommit {ratio}x"));
    format!(
        "reservation {}, growth reservation {}, guard {}, fiber stack {} (wasm {}){placement}{}",
        field(options.memory_reservation),
        field(options.memory_reservation_for_growth),
        field(options.memory_guard_size),
        field(options.async_stack_size.map(|bytes| bytes as u64)),
        field(options.max_wasm_stack.map(|bytes| bytes as u64)),
        overcommit.unwrap_or_default(),
    )
}

/// What a system reaches for one operation: what was timed and the nanoseconds per operation
/// of each run.
#[derive(Debug, Clone)]
pub struct Side {
    pub what: String,
    pub operations: u64,
    pub samples: Vec<f64>,
}

impl Side {
    /// Runs `measure` (which returns the operations done and the nanoseconds they took)
    /// `runs` times, reporting each run on stderr.
    pub fn measure(
        what: impl Into<String>,
        runs: usize,
        mut measure: impl FnMut() -> Result<(u64, f64), String>,
    ) -> Result<Side, String> {
        let what = what.into();
        let mut side = Side { what, operations: 0, samples: Vec::new() };
        for run in 1..=runs {
            let (operations, nanoseconds) = measure()?;
            let per_operation = nanoseconds / operations as f64;
            progress(&format!(
                "  {} (run {run}/{runs}): {operations} ops, {per_operation:.1} ns/op",
                side.what
            ));
            side.operations = operations;
            side.samples.push(per_operation);
        }
        Ok(side)
    }

    /// The fastest and the slowest run, in nanoseconds per operation.
    pub fn range(&self) -> (f64, f64) {
        let minimum = self.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let maximum = self.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (minimum, maximum)
    }

    /// The median of the runs, in nanoseconds per operation.
    pub fn nanoseconds(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        }
    }
}

/// The goal the issue sets for Nebulet's side of one operation.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// At most this many nanoseconds per operation.
    AtMost(f64),
    /// At most this many times Linux's (native) time.
    WithinOfNative(f64),
}

impl Goal {
    pub fn text(self) -> String {
        match self {
            Goal::AtMost(nanoseconds) if nanoseconds >= 1_000.0 => {
                format!("≤ {} µs", nanoseconds / 1_000.0)
            }
            Goal::AtMost(nanoseconds) => format!("≤ {nanoseconds} ns"),
            Goal::WithinOfNative(factor) => format!("≤ {factor}x native"),
        }
    }

    pub fn met(self, comparison: &Comparison) -> bool {
        let nebulet = comparison.nebulet.nanoseconds();
        match self {
            Goal::AtMost(nanoseconds) => nebulet <= nanoseconds,
            Goal::WithinOfNative(factor) => nebulet <= factor * comparison.linux.nanoseconds(),
        }
    }
}

/// One operation measured on both systems.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub operation: &'static str,
    pub nebulet: Side,
    pub linux: Side,
    pub goal: Option<Goal>,
}

/// Progress on stderr (the table goes to stdout).
pub fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// Times `count` calls of `body` after a tenth as many (at least one) untimed ones, as the
/// wasm side does: `(count, nanoseconds)`.
pub fn time_loop(count: u64, mut body: impl FnMut()) -> (u64, f64) {
    for _ in 0..count.div_ceil(10) {
        body();
    }
    let start = Instant::now();
    for _ in 0..count {
        body();
    }
    (count, start.elapsed().as_nanos() as f64)
}

/// The repository root.
pub fn root() -> PathBuf {
    crate::root()
}

/// `target/bench`, created.
pub fn output_directory() -> Result<PathBuf, String> {
    let directory = root().join("target/bench");
    std::fs::create_dir_all(&directory)
        .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
    Ok(directory)
}

/// Prints rows measured alone (`--only`), each against its baseline and goal.
fn print_rows(rows: &[Comparison]) {
    for row in rows {
        println!(
            "{}: Nebulet {:.1} µs, baseline {:.1} µs ({:.2}x), goal {}: {}",
            row.operation,
            row.nebulet.nanoseconds() / 1000.0,
            row.linux.nanoseconds() / 1000.0,
            row.nebulet.nanoseconds() / row.linux.nanoseconds(),
            row.goal.map_or("none".into(), |goal| goal.text()),
            if row.goal.is_some_and(|goal| goal.met(row)) { "met" } else { "not met" }
        );
    }
}

/// `bench-run`: every measurement (or the one family `only`), then the report.
pub fn run(
    quick: bool,
    idle: Option<Vec<u64>>,
    only: Option<crate::BenchFamily>,
) -> Result<(), String> {
    let settings = Settings::new(quick, idle);
    if only == Some(crate::BenchFamily::Domains) {
        progress("the domain rows alone (printed, not written to the docs)");
        let nebulet = Nebulet::new(EngineOptions::default())?;
        let linux_spawn = process::linux_spawns(&settings)?.0;
        let linux_pipes = message::round_trip(&nebulet, &settings)?.linux;
        let mut rows = domains::spawns(&nebulet, &settings, &linux_spawn)?;
        rows.extend([
            domains::spawn_compiled(&nebulet, &settings, linux_spawn.clone(), Launch::Zygote)?,
            domains::spawn_compiled(&nebulet, &settings, linux_spawn, Launch::Execute)?,
            domains::round_trip(&nebulet, &settings, linux_pipes)?,
            domains::compute(&nebulet, &settings)?,
        ]);
        print_rows(&rows);
        return Ok(());
    }
    if only == Some(crate::BenchFamily::Processes) {
        progress("thread switch, round trip and spawn alone (printed, not written to the docs)");
        let nebulet = Nebulet::new(EngineOptions::default())?;
        let mut rows = vec![
            switch::thread_switch(&nebulet, &settings)?,
            message::round_trip(&nebulet, &settings)?,
        ];
        let default_spawns = process::nebulet_spawns(&nebulet, &settings, process::DEFAULT_SPAWNS)?;
        drop(nebulet);
        let dense = Nebulet::new(EngineOptions::dense())?;
        let dense_spawns = process::nebulet_spawns(&dense, &settings, process::DENSE_SPAWNS)?;
        drop(dense);
        rows.extend(process::spawn(default_spawns, dense_spawns, &settings)?.0);
        print_rows(&rows);
        let floor = floor::Floor::measure(&settings)?;
        for (name, side) in floor.rows() {
            println!("{name}: wasmtime alone {:.1} µs", side.nanoseconds() / 1000.0);
        }
        return Ok(());
    }
    if only == Some(crate::BenchFamily::Serve) {
        progress("the serve rows alone: nebulet serve against wasmtime serve, under wrk");
        return serve::ServeResults::measure(settings.serve_seconds)?.write_alone(&settings);
    }
    let machine = report::Machine::read();
    progress(&format!(
        "{} run on {} ({} cores, {} MHz), load average {}",
        if quick { "quick" } else { "full" },
        machine.model,
        machine.cores,
        machine.mhz,
        machine.load_at_start
    ));
    let started = Instant::now();
    let cpu_at_start = report::CpuTime::sample();

    let mut comparisons = Vec::new();
    let nebulet = Nebulet::new(EngineOptions::default())?;
    progress("system call");
    comparisons.push(syscall::system_call(&nebulet, &settings)?);
    progress("clock read");
    comparisons.push(syscall::clock_read(&nebulet, &settings)?);
    progress("thread switch");
    comparisons.push(switch::thread_switch(&nebulet, &settings)?);
    progress("message round trip");
    comparisons.push(message::round_trip(&nebulet, &settings)?);
    progress("process create+start+exit");
    let default_spawns = process::nebulet_spawns(&nebulet, &settings, process::DEFAULT_SPAWNS)?;
    progress("compute");
    let native = compute::native(&settings)?;
    let compute = compute::compare(&nebulet, &settings, native.clone(), "compute")?;
    drop(nebulet);
    // One emulator at a time (see `process::spawn`).
    let dense = Nebulet::new(EngineOptions::dense())?;
    let dense_spawns = process::nebulet_spawns(&dense, &settings, process::DENSE_SPAWNS)?;
    let dense_compute = compute::compare(&dense, &settings, native, "compute, dense engine")?;
    drop(dense);
    let (spawns, spawn_note) = process::spawn(default_spawns, dense_spawns, &settings)?;
    let linux_spawn = spawns[0].linux.clone();
    comparisons.extend(spawns);
    comparisons.push(compute);
    comparisons.push(dense_compute);
    let linux_pipes = comparisons
        .iter()
        .find(|comparison| comparison.operation == "message round trip")
        .map(|comparison| comparison.linux.clone())
        .ok_or("no message round trip")?;
    progress("domains: isolated create+start+exit, cross-domain round trip, compute");
    let nebulet = Nebulet::new(EngineOptions::default())?;
    comparisons.extend(domains::spawns(&nebulet, &settings, &linux_spawn)?);
    comparisons.push(domains::round_trip(&nebulet, &settings, linux_pipes)?);
    comparisons.push(domains::compute(&nebulet, &settings)?);
    drop(nebulet);

    progress("wasmtime alone: switch, round trip, spawn (the floor under Nebulet's rows)");
    let floor = floor::Floor::measure(&settings)?;

    progress("memory per idle process (each count in a fresh process)");
    let idle = memory::measure(&settings)?;

    progress("BEAM (Erlang) beside them: spawn, round trip, idle processes");
    let largest_idle = settings.idle_processes.iter().copied().max().unwrap_or(10_000);
    let beam = beam::Beam::measure(
        settings.runs,
        settings.nebulet_spawns * 20,
        settings.message_round_trips,
        largest_idle,
    );

    progress("start-up of real programs, nebulet run against wasmtime run");
    let (startup, startup_note) = startup::measure(settings.runs)?;

    progress("HTTP serving, nebulet serve against wasmtime serve, under wrk");
    let serve = serve::ServeResults::measure(settings.serve_seconds)?;

    let (other_cores, steal) =
        report::CpuTime::other_work(cpu_at_start, report::CpuTime::sample(), machine.cores);
    let results = report::Results {
        settings,
        machine,
        comparisons,
        beam,
        floor,
        idle,
        startup,
        startup_note,
        serve,
        spawn_note,
        dense: describe_options(&EngineOptions::dense()),
        seconds: started.elapsed().as_secs_f64(),
        other_cores,
        steal,
    };
    report::write(&results)
}
