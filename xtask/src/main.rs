//! `cargo xtask`: the one entry point for builds beyond plain cargo.
//!
//! - `cargo xtask apps`: builds the wasm apps (`apps/`) and lists their sizes;
//! - `cargo xtask test`: runs every test (the README's test command does the same);
//! - `cargo xtask qemu`: builds the apps into a bare-metal system image (precompiled for
//!   x86_64-unknown-none, `target/metal/image.bin`) and the bare-metal kernel (`crates/metal`),
//!   and boots them under QEMU;
//! - `cargo xtask bench`: measures Nebulet against Linux (see `src/bench/mod.rs` and
//!   `docs/benchmarks.md`); `--metal`: the bare-metal kernel under QEMU (`src/metal_bench.rs`,
//!   `docs/metal.md`);
//! - `cargo xtask stress`: runs hostile programs on the hosted kernel and checks that it holds
//!   (see `src/stress.rs` and `docs/stress.md`).

#![forbid(unsafe_code)]
use std::path::{Path, PathBuf};

/// The allocator the `nebulet` binary ships with, for the bench's in-process Nebulet.
#[cfg(feature = "bench")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "bench")]
mod bench;
mod metal_bench;
mod stress;
mod targets;

#[derive(Debug, Parser)]
#[command(about = "Nebulet's build tasks")]
struct Arguments {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Builds the apps in `apps/` (for wasm32-wasip1, the threaded ones for
    /// wasm32-wasip1-threads) and lists them with their sizes.
    Apps,
    /// Runs every test of the workspace.
    Test,
    /// Builds the system image (the apps of `apps/`, precompiled for x86_64-unknown-none, with
    /// a manifest) and `crates/metal`, and boots them under QEMU (the image as its initrd),
    /// streaming the serial output; succeeds when the kernel exits through isa-debug-exit with
    /// status 33, which it does when init (or the `--run` program) exits with code 0.
    Qemu {
        /// Seconds before QEMU is stopped and the run counts as failed (default 60; with
        /// `--serve`, none: it runs until interrupted).
        #[arg(long)]
        timeout: Option<u64>,
        /// Boots a server instead of the demo: precompiles this WASI program into the image and
        /// answers HTTP with it, a fresh process per request (the WAGI convention of `nebulet
        /// serve`), on the machine's network (QEMU user networking, a virtio-net device).
        #[arg(long, value_name = "APP.wasm")]
        serve: Option<PathBuf>,
        /// With `--serve`: the host port forwarded to the server's port 80.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Boots one program instead of the demo, as `nebulet run` does: precompiles this WASI
        /// program into the image, runs it, and succeeds when it exits with code 0.
        #[arg(long, value_name = "APP.wasm", conflicts_with = "serve")]
        run: Option<PathBuf>,
        /// With `--run`: gives the program a TCP socket listening on the machine's network, as
        /// WASI descriptor 3, the next at 4, and so on; the host's PORT is forwarded to it
        /// (repeatable).
        #[arg(long, value_name = "PORT", requires = "run")]
        listen: Vec<u16>,
        /// With `--run`: one argument of the program (repeatable; no spaces).
        #[arg(long = "arg", value_name = "ARGUMENT", requires = "run")]
        program_arguments: Vec<String>,
        /// The manifest init runs (default `apps/image.manifest`). Lines that start a threaded
        /// app are dropped: bare metal runs single-threaded modules only.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// QEMU's CPU model (`max` has RDRAND under TCG). The apps are compiled for SSE4.2, so
        /// the CPU needs SSSE3 and SSE4.1/4.2: to try the entropy fallback (no RDRAND nor
        /// RDSEED) use `qemu64,+ssse3,+sse4.1,+sse4.2` (plain `qemu64` lacks them).
        #[arg(long, default_value = "max")]
        cpu: String,
        /// The machine's RAM, in QEMU's `-m` syntax (`32M`, `1G`): the kernel sizes its heap
        /// from the memory map and gives processes what is left.
        #[arg(long, default_value = "1G")]
        memory: String,
        /// The machine's cores (QEMU's `-smp`, with one host thread per core: multi-threaded
        /// TCG); the kernel starts every one and runs processes on all of them.
        #[arg(long, default_value_t = 1)]
        cpus: u32,
        /// Only these apps go into the image (comma-separated; default: every app of `apps/`):
        /// a smaller image leaves more of a small machine's RAM to processes.
        #[arg(long, value_delimiter = ',')]
        apps: Option<Vec<String>>,
        /// Builds the image and the kernel, and boots nothing.
        #[arg(long)]
        build_only: bool,
        /// The cargo profile of the kernel's build: `release`, or `quick` (crates/metal's
        /// Cargo.toml: less optimised, built in about a third of the time; the QEMU tests use
        /// it). Measurements (`bench --metal`) use `release`.
        #[arg(long, value_enum, default_value_t = KernelProfile::Release)]
        profile: KernelProfile,
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
        /// `nebulet-default`, `nebulet-dense`, `wasmtime-dense` or `linux-threads`.
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
    /// 10000,100000,1000000; --quick 1000,10000).
    #[arg(long, value_delimiter = ',')]
    idle: Option<Vec<u64>>,
    /// Measures one family alone: `serve` (`nebulet serve` against `wasmtime serve` under
    /// wrk); a full run rewrites only its section of `docs/benchmarks.md`.
    #[arg(long, value_enum)]
    only: Option<BenchFamily>,
    /// Measures the bare-metal kernel under QEMU instead (emulated: TCG): boot to init's first
    /// line, round trip, spawn, sleep lateness beside spinners on 4 cores, and the RAM floor;
    /// a full run rewrites its section of `docs/metal.md`.
    #[arg(long)]
    metal: bool,
}

/// A family of measurements `cargo xtask bench --only` runs alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchFamily {
    Serve,
    /// The hardware protection domains' rows (printed only).
    Domains,
    /// Thread switch, message round trip and process create+start+exit, default and dense
    /// engines (printed only): the rows to watch while working on the scheduler.
    Processes,
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

/// `cargo xtask apps`: builds every program of the apps workspace, the threaded ones (their
/// Cargo.toml names wasm32-wasip1-threads, as `crates/nebulet/build.rs` reads it) for that
/// target and the others for wasm32-wasip1, and lists the modules with their sizes.
fn apps() -> Result<(), String> {
    targets::require(&[WASM_TARGET, THREADS_TARGET])?;
    let root = root();
    let apps = root.join("apps");
    let target_dir = root.join("target/wasm-apps");
    let (_, mut threaded) = metal_apps(&apps)?;
    threaded.extend(metal_apps(&apps.join("tests"))?.1);
    let build = |target: &str, packages: Vec<String>| {
        let mut build = cargo();
        build
            .args(["build", "--release", "--target", target, "--manifest-path"])
            .arg(apps.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .args(packages)
            // Flags meant for a host build must not reach the wasm build.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET");
        run(build)
    };
    let mut plain = vec!["--workspace".to_string()];
    plain.extend(threaded.iter().flat_map(|name| ["--exclude".to_string(), name.clone()]));
    build(WASM_TARGET, plain)?;
    if !threaded.is_empty() {
        build(
            THREADS_TARGET,
            threaded.iter().flat_map(|name| ["-p".into(), name.clone()]).collect(),
        )?;
    }
    let mut modules = Vec::new();
    for target in [WASM_TARGET, THREADS_TARGET] {
        let built = target_dir.join(target).join("release");
        modules.extend(
            std::fs::read_dir(&built)
                .map_err(|error| format!("cannot list {}: {error}", built.display()))?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    let name = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or("");
                    // Only this target's programs: the other target's build may have left
                    // a stale copy here.
                    path.extension().is_some_and(|extension| extension == "wasm")
                        && threaded.iter().any(|app| app == name) == (target == THREADS_TARGET)
                }),
        );
    }
    modules.sort_by_key(|path| path.file_name().map(ToOwned::to_owned));
    for module in modules {
        let size = std::fs::metadata(&module).map_err(|error| error.to_string())?.len();
        let shown = module.strip_prefix(&root).unwrap_or(&module);
        println!("{:<56} {size:>8} bytes", shown.display());
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
fn metal_image(
    manifest: Option<&Path>,
    only: Option<&[String]>,
    output: &Path,
) -> Result<(), String> {
    let root = root();
    let apps_dir = root.join("apps");
    let (mut apps, threaded) = metal_apps(&apps_dir)?;
    if let Some(only) = only {
        if let Some(unknown) = only.iter().find(|app| !apps.contains(app)) {
            return Err(format!("--apps: no app {unknown} in {}", apps_dir.display()));
        }
        apps.retain(|app| only.contains(app));
    }
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
    let cache = root.join("target/metal/precompiled");
    // One thread per app: Cranelift compiles each module on one core.
    type Compiled = (String, usize, Vec<u8>);
    let compiled: Vec<Result<Compiled, String>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = apps
            .iter()
            .map(|app| {
                let (engine, wasm) = (&engine, built.join(format!("{app}.wasm")));
                let cache = cache.as_path();
                scope.spawn(move || {
                    let bytes = std::fs::read(&wasm)
                        .map_err(|error| format!("cannot read {}: {error}", wasm.display()))?;
                    let compile = |wasm: &[u8]| {
                        nebulet_metal_image::precompile_with(engine, wasm)
                            .map_err(|error| format!("cannot precompile {app}: {error:#}"))
                    };
                    let code = precompiled(compile, app, &bytes, cache)?;
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

/// `app`'s code precompiled for the bare-metal kernel, from `cache` when this xtask already
/// compiled these wasm bytes (each boot of the QEMU tests would otherwise spend 1.5 s in
/// Cranelift). The key is a hash of the bytes and of this executable's size and time, so a
/// rebuilt xtask (another wasmtime, other engine settings) compiles afresh.
fn precompiled(
    compile: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
    app: &str,
    wasm: &[u8],
    cache: &Path,
) -> Result<Vec<u8>, String> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    wasm.hash(&mut hasher);
    let executable = std::env::current_exe().and_then(std::fs::metadata).ok();
    executable.map(|metadata| (metadata.len(), metadata.modified().ok())).hash(&mut hasher);
    let path = cache.join(format!("{app}-{:016x}.cwasm", hasher.finish()));
    if let Ok(code) = std::fs::read(&path) {
        return Ok(code);
    }
    let code = compile(wasm)?;
    // The cache is an optimisation: failing to write it changes nothing but the next run's time.
    let _ = std::fs::create_dir_all(cache);
    if let Ok(entries) = std::fs::read_dir(cache) {
        let stale = |name: &str| name.strip_prefix(app).is_some_and(|rest| rest.len() == 23);
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_str().is_some_and(stale) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let partial = path.with_extension("partial");
    let _ = std::fs::write(&partial, &code).and_then(|()| std::fs::rename(&partial, &path));
    Ok(code)
}

/// The demo's image: the default manifest's is `image.bin`; another manifest's is named after
/// it, so that runs with different manifests (the tests) do not overwrite each other's.
fn demo_image(manifest: Option<&Path>, only: Option<&[String]>) -> Result<PathBuf, String> {
    let mut name = match manifest {
        None => "image".to_string(),
        Some(path) => format!(
            "image-{}",
            path.file_stem().map_or_else(|| "manifest".into(), |stem| stem.to_string_lossy())
        ),
    };
    if let Some(only) = only {
        name.push_str(&format!("-{}-apps", only.len()));
    }
    let image = root().join("target/metal").join(format!("{name}.bin"));
    metal_image(manifest, only, &image)?;
    Ok(image)
}

/// QEMU's user network with a virtio-net device, host port `ports[i]` forwarded to the
/// machine's port 80 + i.
fn network_arguments(ports: &[u16]) -> Vec<String> {
    let forwards: String = ports
        .iter()
        .enumerate()
        .map(|(index, port)| format!(",hostfwd=tcp:127.0.0.1:{port}-:{}", 80 + index))
        .collect();
    ["-device", "virtio-net-pci,netdev=net0", "-netdev", &format!("user,id=net0{forwards}")]
        .iter()
        .map(|argument| argument.to_string())
        .collect()
}

/// The image of `--serve` and `--run`: the one app, named after its file, and no manifest; its
/// path and the app's name.
fn single_app_image(app: &Path) -> Result<(PathBuf, String), String> {
    let wasm =
        std::fs::read(app).map_err(|error| format!("cannot read {}: {error}", app.display()))?;
    let name: String = app
        .file_stem()
        .map(|stem| {
            let keep =
                |character: &char| character.is_ascii_alphanumeric() || "-_".contains(*character);
            stem.to_string_lossy().chars().filter(keep).collect()
        })
        .filter(|name: &String| !name.is_empty())
        .unwrap_or_else(|| "handler".to_string());
    let engine = nebulet_metal_image::precompile_engine()
        .map_err(|error| format!("cannot make the precompiling engine: {error:#}"))?;
    let compile = |wasm: &[u8]| {
        nebulet_metal_image::precompile_with(&engine, wasm)
            .map_err(|error| format!("cannot precompile {}: {error:#}", app.display()))
    };
    let code = precompiled(compile, &name, &wasm, &root().join("target/metal/precompiled"))?;
    let image = nebulet_metal_image::write("", &[(name.as_str(), code.as_slice())])
        .map_err(|error| format!("cannot write the image: {error}"))?;
    let output = root().join("target/metal/single.bin");
    std::fs::create_dir_all(output.parent().expect("a folder"))
        .and_then(|()| std::fs::write(&output, image))
        .map_err(|error| format!("cannot write {}: {error}", output.display()))?;
    Ok((output, name))
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

/// How `qemu` boots: the machine QEMU emulates, and for how long.
#[derive(Debug)]
struct Machine {
    /// `None`: until interrupted.
    timeout: Option<Duration>,
    cpu: String,
    memory: String,
    cpus: u32,
    build_only: bool,
    /// The kernel's cargo profile.
    profile: KernelProfile,
}

/// The cargo profile of the bare-metal kernel's build (crates/metal/Cargo.toml).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KernelProfile {
    /// Optimised, as measurements need.
    Release,
    /// Less optimised and without debug information, built faster (for the QEMU tests).
    Quick,
}

impl KernelProfile {
    /// Its name for cargo's `--profile`, which is also its folder in the target directory.
    fn name(self) -> &'static str {
        match self {
            KernelProfile::Release => "release",
            KernelProfile::Quick => "quick",
        }
    }
}

/// What `qemu` boots.
#[derive(Debug)]
enum System {
    /// `init` with a manifest (default `apps/image.manifest`) and the apps of `apps/` (or only
    /// those named).
    Demo { manifest: Option<PathBuf>, only: Option<Vec<String>> },
    /// A server answering HTTP with one app, reached through a forwarded host port.
    Serve { app: PathBuf, port: u16 },
    /// One app, with arguments and listening sockets reached through forwarded host ports.
    Run { app: PathBuf, listen: Vec<u16>, arguments: Vec<String> },
}

fn qemu(machine: &Machine, system: &System, extra: &[String]) -> Result<(), String> {
    // Checked before the build, which takes minutes on a clean tree; not needed to build only.
    match Command::new(QEMU).arg("--version").stdout(Stdio::null()).status() {
        _ if machine.build_only => {}
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{QEMU} is not installed (on Debian or Ubuntu: apt-get install qemu-system-x86)"
            ));
        }
        Err(error) => return Err(format!("cannot run {QEMU}: {error}")),
    }
    targets::require(&[WASM_TARGET, METAL_TARGET])?;
    let (image, system_arguments) = match system {
        System::Demo { manifest, only } => {
            (demo_image(manifest.as_deref(), only.as_deref())?, vec![])
        }
        System::Serve { app, port } => {
            let (image, name) = single_app_image(app)?;
            let mut arguments = network_arguments(&[*port]);
            arguments.extend(["-append".to_string(), format!("serve={name}")]);
            println!("xtask: serving {} at http://127.0.0.1:{port}/ (Ctrl-C stops)", app.display());
            (image, arguments)
        }
        System::Run { app, listen, arguments: program } => {
            let (image, name) = single_app_image(app)?;
            if let Some(bad) =
                program.iter().find(|argument| argument.contains(char::is_whitespace))
            {
                return Err(format!("--arg {bad:?}: the kernel command line takes no spaces"));
            }
            let mut line = vec![format!("run={name}")];
            line.extend((0..listen.len()).map(|index| format!("listen={}", 80 + index)));
            line.extend(program.iter().map(|argument| format!("arg={argument}")));
            let mut arguments = if listen.is_empty() { vec![] } else { network_arguments(listen) };
            arguments.extend(["-append".to_string(), line.join(" ")]);
            (image, arguments)
        }
    };

    // Built from its own directory, so that its `.cargo/config.toml` (rustflags) applies.
    let metal = root().join("crates/metal");
    let target_dir = metal.join("target");
    let mut build = cargo();
    build
        .args(["build", "--profile", machine.profile.name(), "--target", METAL_TARGET])
        .arg("--manifest-path")
        .arg(metal.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&metal);
    run(build)?;
    let elf = target_dir.join(METAL_TARGET).join(machine.profile.name()).join("nebulet-metal");
    let bytes = std::fs::read(&elf).map_err(|error| format!("{}: {error}", elf.display()))?;
    let kernel = format!(
        "{} ({} KiB loaded; {} KiB with debug information)",
        elf.display(),
        loaded_size(&bytes).div_ceil(1024),
        bytes.len().div_ceil(1024)
    );
    if machine.build_only {
        println!("xtask: built {kernel}");
        return Ok(());
    }
    println!(
        "xtask: booting {kernel} under {QEMU} with {} of RAM and {} cores",
        machine.memory, machine.cpus
    );

    let mut command = Command::new(QEMU);
    command
        .arg("-kernel")
        .arg(&elf)
        .arg("-initrd")
        .arg(&image)
        .args(["-m", &machine.memory, "-cpu", &machine.cpu])
        .args(["-smp", &machine.cpus.to_string(), "-accel", "tcg,thread=multi"])
        .args(["-nodefaults", "-no-reboot", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(&system_arguments)
        .args(extra)
        .stdin(Stdio::null());
    let mut child = command.spawn().map_err(|error| format!("cannot run {QEMU}: {error}"))?;
    let deadline = machine.timeout.map(|timeout| Instant::now() + timeout);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
            break status;
        }
        if let (Some(deadline), Some(timeout)) = (deadline, machine.timeout)
            && Instant::now() >= deadline
        {
            let _ = child.kill();
            let _ = child.wait();
            let seconds = timeout.as_secs();
            return Err(format!("QEMU did not exit within {seconds} s; stopped it"));
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
        // A server runs until it is interrupted: that is its normal end.
        None if matches!(system, System::Serve { .. }) => {
            println!("xtask: the server was stopped ({status})");
            Ok(())
        }
        None => Err(format!("QEMU was stopped by a signal ({status})")),
    }
}

/// `cargo xtask bench`: the measuring code must be optimised (the Linux loops are timed in
/// this process, and the hosted kernel runs here), so this builds xtask again in release mode
/// with the `bench` feature (which brings the hosted kernel and the apps' image) and runs its
/// hidden `bench-run` task.
fn bench_in_release(arguments: &BenchArguments) -> Result<(), String> {
    if arguments.metal {
        return metal_bench::bench(arguments.quick);
    }
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
    if let Some(name) = arguments.only.and_then(|only| only.to_possible_value()) {
        command.arg(format!("--only={}", name.get_name()));
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
        Task::Qemu {
            timeout,
            serve,
            port,
            run,
            listen,
            program_arguments,
            cpu,
            memory,
            cpus,
            apps,
            build_only,
            profile,
            manifest,
            qemu_arguments,
        } => {
            let timeout = match (timeout, &serve) {
                (Some(seconds), _) => Some(Duration::from_secs(seconds)),
                (None, Some(_)) => None,
                (None, None) => Some(Duration::from_secs(60)),
            };
            let machine = Machine { timeout, cpu, memory, cpus, build_only, profile };
            let system = match (serve, run) {
                (Some(app), _) => System::Serve { app, port },
                (None, Some(app)) => System::Run { app, listen, arguments: program_arguments },
                (None, None) => System::Demo { manifest, only: apps },
            };
            qemu(&machine, &system, &qemu_arguments)
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
