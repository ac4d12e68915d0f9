//! `cargo xtask`: the one entry point for builds beyond plain cargo.
//!
//! - `cargo xtask apps`: builds the wasm apps (`apps/`) and lists their sizes;
//! - `cargo xtask test`: runs every test (the README's test command does the same);
//! - `cargo xtask qemu`: builds the apps into a bare-metal system image (precompiled for
//!   x86_64-unknown-none, `target/metal/image.bin`) and the bare-metal kernel (`crates/metal`),
//!   and boots them under QEMU;
//! - `cargo xtask bench`: measures Nebulet against Linux (see `src/bench/mod.rs` and
//!   `docs/benchmarks.md`);
//! - `cargo xtask stress`: runs hostile programs on the hosted kernel and checks that it holds
//!   (see `src/stress.rs` and `docs/stress.md`).

#![forbid(unsafe_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[cfg(feature = "bench")]
mod bench;
mod stress;

#[derive(Debug, Parser)]
#[command(about = "Nebulet's build tasks")]
struct Arguments {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Builds the apps in `apps/` for wasm32-wasip1 and lists their sizes.
    Apps,
    /// Runs every test of the workspace.
    Test,
    /// Builds the system image (the apps of `apps/`, precompiled for x86_64-unknown-none, with
    /// a manifest) and `crates/metal`, and boots them under QEMU (the image as its initrd),
    /// streaming the serial output; succeeds when the kernel exits through isa-debug-exit with
    /// status 33, which it does when init exits with code 0.
    Qemu {
        /// Seconds before QEMU is stopped and the run counts as failed.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// The manifest init runs (default `apps/image.manifest`). Lines that start a threaded
        /// app are dropped: bare metal runs single-threaded modules only.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// QEMU's CPU model (`max` has RDRAND under TCG). The apps are compiled for SSE4.2, so
        /// the CPU needs SSSE3 and SSE4.1/4.2: to try the entropy fallback (no RDRAND nor
        /// RDSEED) use `qemu64,+ssse3,+sse4.1,+sse4.2` (plain `qemu64` lacks them).
        #[arg(long, default_value = "max")]
        cpu: String,
        /// More QEMU arguments, after `--` (e.g. `-- -append fault=pf`).
        #[arg(last = true)]
        qemu_arguments: Vec<String>,
    },
    /// Measures system calls, thread switches, message round trips, process spawns, memory per
    /// idle process and compute on Nebulet (hosted) and on Linux, and prints a table. Builds
    /// the measuring code in release mode and runs it (`bench-run`); writes
    /// `target/bench/results.json`, and a full run rewrites `docs/benchmarks.md`.
    Bench(BenchArguments),
    /// Runs a spawn bomb, a memory bomb, a table bomb, long-call writers and a spinner per core
    /// on `nebulet run` for SECONDS, beside a well-behaved process that measures its sleep
    /// lateness and a ping round trip; prints those, the host's peak RSS and the root budget,
    /// and fails if the host dies or hangs, p99 lateness passes 5 ms, or peak RSS passes the
    /// root budget.
    Stress(stress::StressArguments),
    /// `cargo xtask bench` once built in release with the `bench` feature: the measurements.
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    BenchRun(BenchArguments),
    /// The Linux side of the message round trip: echoes 8-byte numbers + 1 on stdin/stdout.
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    BenchEcho,
    /// One idle-memory measurement, alone in a fresh process; prints one JSON line.
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    BenchMemory {
        /// `nebulet-default`, `nebulet-dense` or `linux-threads`.
        system: String,
        /// How many idle processes (or threads) to start.
        count: u64,
    },
}

/// The options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
struct BenchArguments {
    /// A smoke run: small counts, one run each; writes `target/bench/` only, not the docs.
    #[arg(long)]
    quick: bool,
    /// How many idle Nebulet processes to measure memory with, comma-separated (default
    /// 10000,100000; --quick 1000,10000).
    #[arg(long, value_delimiter = ',')]
    idle: Option<Vec<u64>>,
    /// Measures one family alone: `serve` (`nebulet serve` against `wasmtime serve` under
    /// wrk); a full run rewrites only its section of `docs/benchmarks.md`.
    #[arg(long, value_enum)]
    only: Option<BenchFamily>,
}

/// A family of measurements `cargo xtask bench --only` runs alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchFamily {
    Serve,
    /// The hardware protection domains' rows (printed only).
    Domains,
}

const WASM_TARGET: &str = "wasm32-wasip1";
const METAL_TARGET: &str = "x86_64-unknown-none";
const QEMU: &str = "qemu-system-x86_64";
/// QEMU's exit status when the kernel writes 0x10 (success) or 0x11 (failure) to isa-debug-exit.
const QEMU_SUCCESS: i32 = 33;
const QEMU_FAILURE: i32 = 35;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lies in the repository root")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(mut command: Command) -> Result<(), String> {
    let status = command.status().map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if status.success() { Ok(()) } else { Err(format!("{command:?} failed: {status}")) }
}

fn apps() -> Result<(), String> {
    let root = root();
    let target_dir = root.join("target/wasm-apps");
    let mut build = cargo();
    build
        .args(["build", "--release", "--target", WASM_TARGET, "--manifest-path"])
        .arg(root.join("apps/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    run(build)?;
    let built = target_dir.join(WASM_TARGET).join("release");
    let mut modules: Vec<_> = std::fs::read_dir(&built)
        .map_err(|error| format!("cannot list {}: {error}", built.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "wasm"))
        .collect();
    modules.sort();
    for module in modules {
        let size = std::fs::metadata(&module).map_err(|error| error.to_string())?.len();
        println!("{:<40} {size:>8} bytes", module.display());
    }
    Ok(())
}

/// Apps whose Cargo.toml says this are built for wasm32-wasip1-threads (as in
/// `crates/nebulet/build.rs`); bare metal cannot run them (shared memories need wasmtime's std).
const THREADS_TARGET: &str = "wasm32-wasip1-threads";

/// The apps of the bare-metal image: every app folder of `apps/` (not `apps/tests`), sorted,
/// with the threaded ones apart.
fn metal_apps(apps: &Path) -> Result<(Vec<String>, Vec<String>), String> {
    let entries = std::fs::read_dir(apps)
        .map_err(|error| format!("cannot list {}: {error}", apps.display()))?;
    let (mut plain, mut threaded) = (Vec::new(), Vec::new());
    for entry in entries.filter_map(Result::ok) {
        let Ok(cargo_toml) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else {
            continue;
        };
        let Ok(name) = entry.file_name().into_string() else { continue };
        if cargo_toml.contains(THREADS_TARGET) { &mut threaded } else { &mut plain }.push(name);
    }
    plain.sort();
    threaded.sort();
    Ok((plain, threaded))
}

/// The `image` step of `qemu`: builds the apps for wasm32-wasip1, precompiles each for the
/// bare-metal kernel (`nebulet_metal_image::precompile`), and writes them with the manifest as
/// a system image at `output`.
fn metal_image(manifest: Option<&Path>, output: &Path) -> Result<(), String> {
    let root = root();
    let apps_dir = root.join("apps");
    let (apps, threaded) = metal_apps(&apps_dir)?;
    let manifest_path = manifest.map_or_else(|| apps_dir.join("image.manifest"), Path::to_path_buf);
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .map_err(|error| format!("cannot read {}: {error}", manifest_path.display()))?;
    // A threaded app cannot run on bare metal: its lines go, said aloud.
    let mut manifest = String::new();
    for line in manifest_text.lines() {
        let mut words = line.split_whitespace();
        let starts = matches!(words.next(), Some("service" | "start"));
        if let Some(app) = words.next().filter(|app| starts && threaded.iter().any(|t| t == app)) {
            println!("xtask: image: dropping `{line}` from the manifest ({app} is threaded)");
            continue;
        }
        manifest.push_str(line);
        manifest.push('\n');
    }

    println!("xtask: image: building {} apps for {WASM_TARGET}", apps.len());
    let target_dir = root.join("target/wasm-apps");
    let mut build = cargo();
    build
        .args(["build", "--release", "--target", WASM_TARGET, "--manifest-path"])
        .arg(apps_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .args(apps.iter().flat_map(|app| ["--package", app.as_str()]))
        // Flags meant for a host build must not reach the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    run(build)?;

    let started = Instant::now();
    let engine = nebulet_metal_image::precompile_engine()
        .map_err(|error| format!("cannot make the precompiling engine: {error:#}"))?;
    let built = target_dir.join(WASM_TARGET).join("release");
    // One thread per app: Cranelift compiles each module on one core.
    type Compiled = (String, usize, Vec<u8>);
    let compiled: Vec<Result<Compiled, String>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = apps
            .iter()
            .map(|app| {
                let (engine, wasm) = (&engine, built.join(format!("{app}.wasm")));
                scope.spawn(move || {
                    let bytes = std::fs::read(&wasm)
                        .map_err(|error| format!("cannot read {}: {error}", wasm.display()))?;
                    let code = nebulet_metal_image::precompile_with(engine, &bytes)
                        .map_err(|error| format!("cannot precompile {app}: {error:#}"))?;
                    Ok((app.clone(), bytes.len(), code))
                })
            })
            .collect();
        jobs.into_iter()
            .map(|job| job.join().unwrap_or_else(|_| Err("a precompiling thread panicked".into())))
            .collect()
    });
    let compiled = compiled.into_iter().collect::<Result<Vec<_>, _>>()?;
    for (app, wasm, code) in &compiled {
        println!(
            "xtask: image: precompiled {app:<8} {:>5} KiB wasm -> {:>5} KiB x86_64",
            wasm.div_ceil(1024),
            code.len().div_ceil(1024)
        );
    }
    let entries: Vec<(&str, &[u8])> =
        compiled.iter().map(|(app, _, code)| (app.as_str(), code.as_slice())).collect();
    let image = nebulet_metal_image::write(&manifest, &entries)
        .map_err(|error| format!("cannot write the image: {error}"))?;
    let directory = output.parent().expect("the image path has a folder");
    std::fs::create_dir_all(directory)
        .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
    // Written beside, then renamed: a QEMU reading the previous image never sees half of this.
    let partial = output.with_extension("partial");
    std::fs::write(&partial, &image)
        .and_then(|()| std::fs::rename(&partial, output))
        .map_err(|error| format!("cannot write {}: {error}", output.display()))?;
    println!(
        "xtask: image: wrote {} ({} KiB: {} apps, manifest {}) in {:.1} s",
        output.display(),
        image.len().div_ceil(1024),
        compiled.len(),
        manifest_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The bytes an ELF64 file loads (the file sizes of its PT_LOAD segments): the kernel's size
/// without its debug information. 0 if the file is not an ELF64 file.
fn loaded_size(elf: &[u8]) -> usize {
    let field = |at: usize, width: usize| -> usize {
        elf.get(at..at + width).map_or(0, |bytes| {
            bytes.iter().rev().fold(0, |value, &byte| value << 8 | usize::from(byte))
        })
    };
    if !elf.starts_with(b"\x7fELF\x02") {
        return 0;
    }
    let (offset, entry_size, count) = (field(0x20, 8), field(0x36, 2), field(0x38, 2));
    (0..count)
        .map(|index| offset + index * entry_size)
        .filter(|&header| field(header, 4) == 1)
        .map(|header| field(header + 0x20, 8))
        .sum()
}

fn qemu(
    timeout: Duration,
    cpu: &str,
    manifest: Option<&Path>,
    extra: &[String],
) -> Result<(), String> {
    match Command::new(QEMU).arg("--version").stdout(Stdio::null()).status() {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{QEMU} is not installed (on Debian or Ubuntu: apt-get install qemu-system-x86)"
            ));
        }
        Err(error) => return Err(format!("cannot run {QEMU}: {error}")),
    }
    // The default manifest's image is `image.bin`; another manifest's is named after it, so
    // that runs with different manifests (the tests) do not overwrite each other's.
    let image = root().join("target/metal").join(match manifest {
        None => "image.bin".to_string(),
        Some(path) => format!(
            "image-{}.bin",
            path.file_stem().map_or_else(|| "manifest".into(), |stem| stem.to_string_lossy())
        ),
    });
    metal_image(manifest, &image)?;

    // Built from its own directory, so that its `.cargo/config.toml` (rustflags) applies.
    let metal = root().join("crates/metal");
    let target_dir = metal.join("target");
    let mut build = cargo();
    build
        .args(["build", "--release", "--target", METAL_TARGET, "--manifest-path"])
        .arg(metal.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&metal);
    run(build)?;
    let elf = target_dir.join(METAL_TARGET).join("release/nebulet-metal");
    let bytes = std::fs::read(&elf).map_err(|error| format!("{}: {error}", elf.display()))?;
    println!(
        "xtask: booting {} ({} KiB loaded; {} KiB with debug information) under {QEMU}",
        elf.display(),
        loaded_size(&bytes).div_ceil(1024),
        bytes.len().div_ceil(1024)
    );

    let mut command = Command::new(QEMU);
    command
        .arg("-kernel")
        .arg(&elf)
        .arg("-initrd")
        .arg(&image)
        .args(["-m", "1G", "-cpu", cpu, "-nodefaults", "-no-reboot", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(extra)
        .stdin(Stdio::null());
    let mut child = command.spawn().map_err(|error| format!("cannot run {QEMU}: {error}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("QEMU did not exit within {} s; stopped it", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    match status.code() {
        Some(QEMU_SUCCESS) => {
            println!("xtask: the kernel exited with success (QEMU status {QEMU_SUCCESS})");
            Ok(())
        }
        Some(QEMU_FAILURE) => {
            Err(format!("the kernel reported a failure (QEMU status {QEMU_FAILURE})"))
        }
        Some(0) => Err("QEMU exited with status 0: the machine reset (a triple fault?)".into()),
        Some(code) => Err(format!("QEMU exited with status {code}, not {QEMU_SUCCESS}")),
        None => Err(format!("QEMU was stopped by a signal ({status})")),
    }
}

/// `cargo xtask bench`: the measuring code must be optimised (the Linux loops are timed in
/// this process, and the hosted kernel runs here), so this builds xtask again in release mode
/// with the `bench` feature (which brings the hosted kernel and the apps' image) and runs its
/// hidden `bench-run` task.
fn bench_in_release(arguments: &BenchArguments) -> Result<(), String> {
    eprintln!("xtask: building the benchmark in release mode, then running it");
    // The `nebulet` command too, for the start-up rows (the same features as xtask's build).
    let mut build = cargo();
    build
        .args(["build", "--release", "--package", "xtask", "--package", "nebulet"])
        .args(["--features", "xtask/bench"])
        .current_dir(root());
    run(build)?;
    let mut command = cargo();
    command
        .args(["run", "--release", "--package", "xtask", "--features", "bench", "--", "bench-run"])
        .current_dir(root());
    if arguments.quick {
        command.arg("--quick");
    }
    if let Some(idle) = &arguments.idle {
        let counts: Vec<String> = idle.iter().map(u64::to_string).collect();
        command.arg(format!("--idle={}", counts.join(",")));
    }
    if arguments.only == Some(BenchFamily::Domains) {
        command.arg("--only=domains");
    }
    if arguments.only == Some(BenchFamily::Serve) {
        command.arg("--only=serve");
    }
    run(command)
}

fn main() -> ExitCode {
    let result = match Arguments::parse().task {
        Task::Apps => apps(),
        Task::Test => {
            let mut test = cargo();
            test.args(["test", "--workspace"]).current_dir(root());
            run(test)
        }
        Task::Qemu { timeout, cpu, manifest, qemu_arguments } => {
            qemu(Duration::from_secs(timeout), &cpu, manifest.as_deref(), &qemu_arguments)
        }
        Task::Bench(arguments) => bench_in_release(&arguments),
        Task::Stress(arguments) => stress::stress(&arguments),
        #[cfg(feature = "bench")]
        Task::BenchRun(arguments) => bench::run(arguments.quick, arguments.idle, arguments.only),
        #[cfg(feature = "bench")]
        Task::BenchEcho => bench::message::echo(),
        #[cfg(feature = "bench")]
        Task::BenchMemory { system, count } => bench::memory::measure_here(&system, count),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
