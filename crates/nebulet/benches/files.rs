//! File-system cost: a file-heavy WASI program under `nebulet run --dir` and, when it is
//! installed, under the `wasmtime` CLI, with the same wasm file and the same host directory.
//!
//! The program is `wasi-std bench DIR COUNT` (apps/tests/wasi-std): it writes COUNT files of
//! 4 KiB, reads each back and checks it, lists the directory and removes it all. Each side runs
//! it 5 times; the table shows the median wall time of the whole command (start-up and module
//! compilation included) and the median of the program's own timing of its file work (which
//! excludes them, and so is the fairer comparison: the wasmtime CLI may cache compiled code).
//!
//! Run with `cargo bench --bench files [-- COUNT]` (COUNT defaults to 2,000). Cargo builds the
//! `nebulet` binary with the bench (release) profile for it. The wasmtime CLI is not installed
//! by the build; if `wasmtime --version` fails, only Nebulet's times are shown.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const GUEST: &str = "/sandbox";

fn main() {
    let count: u32 = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(2_000);
    let work = std::env::temp_dir().join(format!("nebulet-bench-files-{}", std::process::id()));
    let sandbox = work.join("sandbox");
    std::fs::create_dir_all(&sandbox).expect("cannot create the bench directory");
    let wasm = work.join("wasi-std.wasm");
    let bytes = nebulet::image::find("wasi-std").expect("the wasi-std test program is built");
    std::fs::write(&wasm, bytes).expect("cannot write the module");
    eprintln!(
        "files benchmark: {count} files of 4 KiB written, read back, listed and removed; \
         median of {RUNS} runs"
    );

    let directory = format!("{}::{GUEST}", sandbox.display());
    let program_args = ["bench".to_string(), GUEST.to_string(), count.to_string()];
    let nebulet = measure("nebulet", &sandbox, || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nebulet"));
        command.args(["run", "--dir", &directory]).arg(&wasm).arg("--").args(&program_args);
        command
    });
    let wasmtime = wasmtime_installed().then(|| {
        measure("wasmtime", &sandbox, || {
            let mut command = Command::new("wasmtime");
            command.args(["run", "--dir", &directory]).arg(&wasm).args(&program_args);
            command
        })
    });
    let _ = std::fs::remove_dir_all(&work);

    println!("| {count} files of 4 KiB | wall time (median) | file work in the program (median) |");
    println!("|---|---|---|");
    println!("| Nebulet (`nebulet run --dir`) | {} | {} |", ms(nebulet.wall), ms(nebulet.work));
    match wasmtime {
        Some(wasmtime) => {
            println!(
                "| wasmtime CLI (`wasmtime run --dir`) | {} | {} |",
                ms(wasmtime.wall),
                ms(wasmtime.work)
            );
            println!(
                "| ratio (Nebulet / wasmtime) | {:.2}x | {:.2}x |",
                ratio(nebulet.wall, wasmtime.wall),
                ratio(nebulet.work, wasmtime.work)
            );
        }
        None => println!(
            "| wasmtime CLI | not installed (`wasmtime --version` failed): no comparison | |"
        ),
    }
}

/// Median times of one side.
struct Times {
    wall: Duration,
    work: Duration,
}

fn wasmtime_installed() -> bool {
    Command::new("wasmtime").arg("--version").output().is_ok_and(|output| output.status.success())
}

/// Runs the command RUNS times (the sandbox emptied before each) and takes the medians.
fn measure(side: &str, sandbox: &Path, command: impl Fn() -> Command) -> Times {
    let mut walls = Vec::new();
    let mut works = Vec::new();
    for _ in 0..RUNS {
        empty(sandbox);
        let mut command = command();
        let start = Instant::now();
        let output = command.output().unwrap_or_else(|error| panic!("cannot run {side}: {error}"));
        walls.push(start.elapsed());
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("wasi-std bench: ok"),
            "{side} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        works.push(program_time(&stdout));
    }
    eprintln!("{side}: wall {walls:?}");
    Times { wall: median(walls), work: median(works) }
}

/// The program's own total from "wasi-std bench: N files: write A ms, read B ms, total C ms".
fn program_time(stdout: &str) -> Duration {
    let line = stdout
        .lines()
        .find(|line| line.starts_with("wasi-std bench:") && line.contains("total"))
        .expect("the program reports its times");
    let total = line.rsplit("total ").next().and_then(|rest| rest.strip_suffix(" ms"));
    Duration::from_millis(total.and_then(|ms| ms.parse().ok()).expect("a total in ms"))
}

fn empty(directory: &Path) {
    let _ = std::fs::remove_dir_all(directory);
    std::fs::create_dir_all(directory).expect("cannot recreate the sandbox");
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(time: Duration) -> String {
    format!("{:.1} ms", time.as_secs_f64() * 1000.0)
}

fn ratio(nebulet: Duration, wasmtime: Duration) -> f64 {
    nebulet.as_secs_f64() / wasmtime.as_secs_f64().max(f64::MIN_POSITIVE)
}
