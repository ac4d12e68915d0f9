//! `cargo xtask stress`: runs hostile programs on the hosted kernel and checks that the system
//! holds: the host survives, a well-behaved process keeps its sleeps on time, and the host's
//! peak RSS stays within the kernel's root budget.
//!
//! It builds `nebulet` (and with it the apps) and runs `nebulet run hostile.wasm -- stress
//! SECONDS SPINNERS` (see `apps/tests/hostile/src/stress.rs`): a spawn bomb, a memory bomb, a
//! table bomb, two writers of 1,024 aliased iovecs per `fd_write` and a spinner per core, all
//! beside the well-behaved process that measures itself. This side drains the writers' output
//! (dots) from stdout, keeps the `stress: ` lines, and samples the host's `VmHWM` (peak RSS)
//! from `/proc/PID/status` every 20 ms while it runs.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The goal for the well-behaved process's 99th percentile sleep lateness.
const LATENESS_GOAL: Duration = Duration::from_millis(5);
/// How long after its SECONDS the host may take to end before it counts as hung.
const GRACE: Duration = Duration::from_secs(60);
/// The longest output line kept (the writers' dots are dropped before lines are cut).
const LINE_MAX_BYTES: usize = 4_096;
/// How much of the host's stderr is kept.
const STDERR_MAX_BYTES: usize = 64 << 10;

/// The options of `cargo xtask stress`.
#[derive(Debug, Clone, clap::Args)]
pub struct StressArguments {
    /// How long the hostile programs run, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Build and run nebulet in release mode (a first release build of wasmtime takes
    /// minutes); the default is the dev profile, whose dependencies are optimised.
    #[arg(long)]
    release: bool,
    /// The root budget in bytes to hold the peak RSS to, when the stress program cannot read
    /// it (it prints `root budget: N bytes`, from the BUDGET of a new child).
    #[arg(long)]
    budget: Option<u64>,
    /// Caps the memory budget of the jail the hostile programs run in, in MiB (by default
    /// the jail gets all the root budget has left but 256 MiB: on a shared machine, that is
    /// most of its free memory).
    #[arg(long, value_name = "MIB")]
    jail_memory: Option<u64>,
}

/// What one run showed.
#[derive(Debug, Default)]
struct Figures {
    /// The host's exit code, or `None` if it was killed (by a signal, or by this task).
    exit_code: Option<i32>,
    hung: bool,
    peak_rss_bytes: u64,
    /// The `stress: ` lines, and any `root budget` line.
    lines: Vec<String>,
    stderr: String,
}

pub fn stress(arguments: &StressArguments) -> Result<(), String> {
    let root = crate::root();
    let mut build = crate::cargo();
    build.args(["build", "--package", "nebulet"]).current_dir(&root);
    if arguments.release {
        build.arg("--release");
    }
    crate::run(build)?;
    let profile = if arguments.release { "release" } else { "debug" };
    let nebulet = root.join("target").join(profile).join("nebulet");
    let program =
        root.join("target/wasm-apps").join(crate::WASM_TARGET).join("release/hostile.wasm");
    let spinners = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    println!(
        "stress: {} s on {spinners} cores, nebulet ({profile}) runs {}",
        arguments.seconds,
        program.display()
    );
    let mut stress_arguments = vec![arguments.seconds.to_string(), spinners.to_string()];
    if let Some(mebibytes) = arguments.jail_memory {
        stress_arguments.push((mebibytes << 20).to_string());
    }
    let figures = run_host(&nebulet, &program, arguments.seconds, &stress_arguments)?;
    report(&figures, arguments.budget)
}

/// Runs `nebulet run PROGRAM -- stress ARGUMENTS` to its end, or `seconds` + [`GRACE`].
fn run_host(
    nebulet: &Path,
    program: &Path,
    seconds: u64,
    arguments: &[String],
) -> Result<Figures, String> {
    let mut child = Command::new(nebulet)
        .arg("run")
        .args(verbose(nebulet))
        .arg(program)
        .args(["--", "stress"])
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", nebulet.display()))?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = drain(child.stdout.take().expect("piped"), lines.clone());
    let stderr_text = Arc::new(Mutex::new(Vec::new()));
    let stderr = keep(child.stderr.take().expect("piped"), stderr_text.clone());
    let mut figures = Figures::default();
    let deadline = Instant::now() + Duration::from_secs(seconds) + GRACE;
    let status = loop {
        if let Some(peak) = peak_rss(child.id()) {
            figures.peak_rss_bytes = figures.peak_rss_bytes.max(peak);
        }
        if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            figures.hung = true;
            break stop(&mut child)?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    figures.exit_code = status.code();
    let _ = stdout.join();
    let _ = stderr.join();
    figures.lines = std::mem::take(&mut *lines.lock().expect("no reader panicked"));
    figures.stderr =
        String::from_utf8_lossy(&stderr_text.lock().expect("no reader panicked")).into_owned();
    Ok(figures)
}

/// `-v`, if this `nebulet run` has it (it prints the root budget first).
fn verbose(nebulet: &Path) -> Option<&'static str> {
    let help = Command::new(nebulet).args(["run", "--help"]).output().ok()?;
    String::from_utf8_lossy(&help.stdout).contains("-v,").then_some("-v")
}

fn stop(child: &mut Child) -> Result<std::process::ExitStatus, String> {
    child.kill().map_err(|error| format!("cannot stop the hung host: {error}"))?;
    child.wait().map_err(|error| error.to_string())
}

/// The host's peak resident set (`VmHWM`), in bytes, while it runs.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reads the host's stdout to its end, dropping the writers' dots, and keeps the lines that
/// carry figures.
fn drain(mut stdout: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 1 << 20];
        let mut line = Vec::new();
        while let Ok(count) = stdout.read(&mut buffer) {
            if count == 0 {
                break;
            }
            for &byte in buffer[..count].iter().filter(|byte| **byte != b'.') {
                if byte == b'\n' {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if text.contains("stress") || text.contains("root budget") {
                        println!("{text}");
                        lines.lock().expect("the main thread does not panic").push(text);
                    }
                    line.clear();
                } else if line.len() < LINE_MAX_BYTES {
                    line.push(byte);
                }
            }
        }
    })
}

/// Reads the host's stderr to its end, keeping the first [`STDERR_MAX_BYTES`].
fn keep(mut stderr: impl Read + Send + 'static, text: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(count) = stderr.read(&mut buffer) {
            if count == 0 {
                break;
            }
            let mut kept = text.lock().expect("the main thread does not panic");
            let room = STDERR_MAX_BYTES.saturating_sub(kept.len()).min(count);
            kept.extend_from_slice(&buffer[..room]);
        }
    })
}

/// The number after `word` in the first line that contains `key`.
fn figure(lines: &[String], key: &str, word: &str) -> Option<u64> {
    let line = lines.iter().find(|line| line.contains(key))?;
    let mut words = line.split_whitespace();
    words.find(|candidate| *candidate == word)?;
    words.next()?.parse().ok()
}

/// Prints the figures and the goals; an error names the goals missed.
fn report(figures: &Figures, budget: Option<u64>) -> Result<(), String> {
    let mebibytes = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let budget = budget.or_else(|| figure(&figures.lines, "root budget", "budget:"));
    // `nebulet run -v` prints the root budget too; its lines are shown as they are.
    for line in figures.stderr.lines().filter(|line| line.contains("budget")) {
        println!("stress: nebulet says: {line}");
    }
    println!("stress: host peak RSS {:.0} MiB", mebibytes(figures.peak_rss_bytes));
    match budget {
        Some(bytes) => println!("stress: root budget {:.0} MiB", mebibytes(bytes)),
        None => println!("stress: root budget unknown (nebulet printed no `root budget` line)"),
    }
    if !figures.stderr.is_empty() {
        println!("stress: host stderr:\n{}", figures.stderr.trim_end());
    }
    let mut missed = Vec::new();
    let finished = figures.lines.iter().any(|line| line.contains("hostile stress: ok"));
    if figures.hung {
        missed.push(format!("the host did not exit within {GRACE:?} of the end"));
    } else if figures.exit_code != Some(0) || !finished {
        missed.push(format!(
            "the host did not survive: exit code {:?}, figures {}",
            figures.exit_code,
            if finished { "complete" } else { "incomplete" }
        ));
    }
    let goal = LATENESS_GOAL.as_micros() as u64;
    match figure(&figures.lines, "sleep 1 ms lateness", "p99") {
        Some(p99) if p99 <= goal => {}
        Some(p99) => missed.push(format!("p99 sleep lateness {p99} us > {goal} us")),
        None => missed.push("no sleep lateness was measured".into()),
    }
    match budget {
        Some(bytes) if figures.peak_rss_bytes <= bytes => {}
        Some(bytes) => missed.push(format!(
            "peak RSS {:.0} MiB > root budget {:.0} MiB",
            mebibytes(figures.peak_rss_bytes),
            mebibytes(bytes)
        )),
        None => missed.push("the root budget is unknown, so peak RSS cannot be checked".into()),
    }
    if missed.is_empty() {
        println!("stress: all goals met");
        Ok(())
    } else {
        Err(format!("stress goals missed:\n  {}", missed.join("\n  ")))
    }
}
