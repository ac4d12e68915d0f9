//! `cargo xtask`: the one entry point for builds beyond plain cargo.
//!
//! - `cargo xtask apps`: builds the wasm apps (`apps/`) and lists their sizes;
//! - `cargo xtask test`: runs every test (the README's test command does the same);
//! - `cargo xtask qemu`: builds the bare-metal kernel (`crates/metal`) and boots it under QEMU.

#![forbid(unsafe_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

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
    /// Builds `crates/metal` for x86_64-unknown-none and boots it under QEMU, streaming its
    /// serial output; succeeds when the kernel exits through isa-debug-exit with status 33.
    Qemu {
        /// Seconds before QEMU is stopped and the run counts as failed.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// QEMU's CPU model (`max` has RDRAND under TCG; `qemu64` has neither RDRAND nor
        /// RDSEED, to try the entropy fallback).
        #[arg(long, default_value = "max")]
        cpu: String,
        /// More QEMU arguments, after `--` (e.g. `-- -append fault=pf`).
        #[arg(last = true)]
        qemu_arguments: Vec<String>,
    },
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

fn qemu(timeout: Duration, cpu: &str, extra: &[String]) -> Result<(), String> {
    match Command::new(QEMU).arg("--version").stdout(Stdio::null()).status() {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{QEMU} is not installed (on Debian or Ubuntu: apt-get install qemu-system-x86)"
            ));
        }
        Err(error) => return Err(format!("cannot run {QEMU}: {error}")),
    }
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
    let size =
        std::fs::metadata(&elf).map_err(|error| format!("{}: {error}", elf.display()))?.len();
    println!("xtask: booting {} ({size} bytes) under {QEMU}", elf.display());

    let mut command = Command::new(QEMU);
    command
        .arg("-kernel")
        .arg(&elf)
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

fn main() -> ExitCode {
    let result = match Arguments::parse().task {
        Task::Apps => apps(),
        Task::Test => {
            let mut test = cargo();
            test.args(["test", "--workspace"]).current_dir(root());
            run(test)
        }
        Task::Qemu { timeout, cpu, qemu_arguments } => {
            qemu(Duration::from_secs(timeout), &cpu, &qemu_arguments)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
