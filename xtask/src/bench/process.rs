//! Process create + start + exit, waited for by the parent. Nebulet: `process_create`,
//! `process_start` and a wait for `TERMINATED` of a tiny module (one page of memory, an empty
//! `_start`, compiled once with `module_compile`), in a loop inside a wasm parent. Linux:
//! `std::process::Command::status()` (posix_spawn + waitpid) of a tiny static C binary whose
//! `main` returns 0, built here with `gcc -static -Os`; `/bin/true` if that fails.

use std::path::PathBuf;
use std::process::Command;

use super::nebulet::Nebulet;
use super::{Comparison, Goal, Settings, Side, output_directory, progress, root, time_loop};

const TINY_C: &str = "int main(void) {\n    return 0;\n}\n";

/// What the default engine's spawn row times.
pub const DEFAULT_SPAWNS: &str =
    "Nebulet: create+start+wait of a 1-page module with an empty `_start`";
/// What the dense engine's spawn row times.
pub const DENSE_SPAWNS: &str =
    "Nebulet: the same, dense engine (memories and stacks from shared reservations)";

/// Nebulet's side: `count` spawns in each of `runs` runs, by the engine of `nebulet`.
pub fn nebulet_spawns(nebulet: &Nebulet, settings: &Settings, what: &str) -> Result<Side, String> {
    let count = settings.nebulet_spawns;
    Side::measure(what, settings.runs, || nebulet.bench_case(&["spawn", &count.to_string()]))
}

/// The comparisons of the default and the dense engine (measured each with only its own
/// emulator alive: another's epoch ticker keeps the process's address space active on every
/// core, so every unmapping of the default engine interrupts them all to flush their TLBs),
/// against the same Linux runs; and what the Linux side spawned (for the table's notes).
pub fn spawn(
    default: Side,
    dense: Side,
    settings: &Settings,
) -> Result<(Vec<Comparison>, String), String> {
    let (linux, what) = linux_spawns(settings)?;
    let comparisons = vec![
        Comparison {
            operation: "process create+start+exit",
            nebulet: default,
            linux: linux.clone(),
            goal: Some(Goal::AtMost(5_000.0)),
        },
        Comparison {
            operation: "process create+start+exit, dense engine",
            nebulet: dense,
            linux,
            goal: Some(Goal::AtMost(5_000.0)),
        },
    ];
    Ok((comparisons, what))
}

/// Linux's side: `Command::status()` of a tiny program; and what it spawned.
pub fn linux_spawns(settings: &Settings) -> Result<(Side, String), String> {
    let (program, what) = tiny_program()?;
    progress(&format!("  Linux spawns {what}"));
    let count = settings.linux_spawns;
    let linux = Side::measure(
        format!(
            "Linux: `Command::status()` of `{}`",
            program.strip_prefix(root()).unwrap_or(&program).display()
        ),
        settings.runs,
        || {
            Ok(time_loop(count, || {
                let status = Command::new(&program).status().expect("the tiny program starts");
                assert!(status.success(), "the tiny program exits 0");
            }))
        },
    )?;
    Ok((linux, what))
}

/// `target/bench/tiny` built from `TINY_C`, or `/bin/true`; and a description.
fn tiny_program() -> Result<(PathBuf, String), String> {
    let directory = output_directory()?;
    let source = directory.join("tiny.c");
    let binary = directory.join("tiny");
    std::fs::write(&source, TINY_C).map_err(|error| format!("{}: {error}", source.display()))?;
    let built =
        Command::new("gcc").args(["-static", "-Os", "-s", "-o"]).arg(&binary).arg(&source).output();
    match built {
        Ok(output) if output.status.success() => {
            let size = std::fs::metadata(&binary).map(|metadata| metadata.len()).unwrap_or(0);
            let what = format!(
                "a static C binary whose `main` returns 0 (`gcc -static -Os -s`, glibc, {} KiB)",
                size >> 10
            );
            Ok((binary, what))
        }
        failed => {
            let reason = match failed {
                Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
                Err(error) => error.to_string(),
            };
            progress(&format!("  gcc -static failed ({reason}): spawning /bin/true instead"));
            Ok((
                "/bin/true".into(),
                format!("`/bin/true`, dynamically linked (`gcc -static` failed: {reason})"),
            ))
        }
    }
}
