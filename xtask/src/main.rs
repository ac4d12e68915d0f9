//! `cargo xtask`: the one entry point for builds beyond plain cargo.
//!
//! - `cargo xtask apps`: builds the wasm apps (`apps/`) and lists their sizes;
//! - `cargo xtask test`: runs every test (the README's test command does the same).

#![forbid(unsafe_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

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
}

const WASM_TARGET: &str = "wasm32-wasip1";

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

fn main() -> ExitCode {
    let result = match Arguments::parse().task {
        Task::Apps => apps(),
        Task::Test => {
            let mut test = cargo();
            test.args(["test", "--workspace"]).current_dir(root());
            run(test)
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
