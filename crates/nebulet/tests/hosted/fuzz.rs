//! The call fuzzer `fuzz` (apps/tests/fuzz): random `nebulet` and WASI calls with random
//! arguments, in the fuzzer and copies of itself at once. Every status must be one the contract
//! allows for that call, every call must return `OK` sometimes, the kernel must not panic or
//! hang, nothing may escape the preopened directory, and afterwards the kernel must still run
//! processes, with none left over.
//!
//! `NEBULET_FUZZ_SECONDS` (default 30; CI's `.ci/run` sets 60), `NEBULET_FUZZ_COPIES` (default
//! 2) and `NEBULET_FUZZ_SEED` (16 hex digits) change the run, for long runs and replays. The
//! default is half a minute because this test is the last of the hosted tests to end: its run
//! is most of their wall time, and each run draws a fresh seed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nebulet_abi::ExitReason;
use nebulet_hosted::{HostDirectory, ProcessOptions};
use nebulet_kernel::vfs::Directory;

use crate::System;

/// A child that exits 7: the kernel still runs processes after the fuzzing.
const EXITS_7: &str = r#"(module
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (func (export "_start") (call $exit (i32.const 7))))"#;

/// What the file beside the preopened directory holds; the fuzzer must not reach it.
const OUTSIDE: &[u8] = b"outside the sandbox\n";

/// A setting from the environment, or its default.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A fresh host directory: `sandbox/` (preopened, holding the fuzzer's own module) and the file
/// `outside` beside it; removed at the end.
struct Playground {
    path: PathBuf,
}

impl Playground {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("nebulet-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("sandbox")).expect("cannot create the sandbox");
        let module = nebulet::image::find("fuzz").expect("no program fuzz");
        std::fs::write(path.join("sandbox/fuzz.wasm"), module).expect("cannot write fuzz.wasm");
        std::fs::write(path.join("outside"), OUTSIDE).expect("cannot write the outside file");
        Self { path }
    }

    /// The entries beside the sandbox, and what `outside` holds.
    fn outside(&self) -> (Vec<String>, Vec<u8>) {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .expect("the playground is listable")
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        (names, std::fs::read(self.path.join("outside")).unwrap_or_default())
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[test]
fn random_calls_with_random_arguments_in_several_processes() {
    let seconds: u64 = setting("NEBULET_FUZZ_SECONDS", "30").parse().expect("a number of seconds");
    let copies = setting("NEBULET_FUZZ_COPIES", "2");
    let playground = Playground::new();
    let system = System::new();
    let mut args: Vec<String> = ["--seconds", &seconds.to_string(), "--copies", &copies]
        .into_iter()
        .chain(["--module", "/scratch/fuzz.wasm"])
        .map(String::from)
        .collect();
    if let Ok(seed) = std::env::var("NEBULET_FUZZ_SEED") {
        args.extend(["--seed".to_owned(), seed]);
    }
    let sandbox = HostDirectory::open(&playground.path.join("sandbox")).expect("the sandbox opens");
    let options = ProcessOptions {
        name: "fuzz".into(),
        args,
        environment: vec!["FUZZ=yes".into()],
        preopens: vec![("/scratch".into(), Arc::new(sandbox) as Arc<dyn Directory>)],
        ..Default::default()
    };
    let started = Instant::now();
    let process = system.emulator.kernel().spawn(system.program("fuzz"), options);
    // The run, the copies' ends (they kill their children) and their reports, with room.
    let patience = Duration::from_secs(seconds + 300);
    let status = system
        .emulator
        .block_on(async { tokio::time::timeout(patience, process.wait()).await })
        .unwrap_or_else(|_| panic!("the fuzzer did not end within {patience:?}"));
    let console = system.console();
    // Its own lines (dots from debug_write and fd_write may precede them on a line).
    let report: Vec<&str> =
        console.lines().filter_map(|line| line.find("fuzz:").map(|at| &line[at..])).collect();
    let tail: Vec<&str> =
        console.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
    assert_eq!(
        (status.code, status.reason),
        (0, ExitReason::Exited),
        "the fuzzer failed: {:?}\n--- its report ---\n{}\n--- the end of the console ---\n{}",
        status.message,
        report.join("\n"),
        tail.join("\n")
    );
    assert!(report.contains(&"fuzz: ok"), "{}", report.join("\n"));
    assert!(
        report
            .iter()
            .any(|line| line.contains(" calls in ")
                && line.contains("distinct (call, status) pairs")),
        "{}",
        report.join("\n")
    );
    eprintln!("{}\nfuzz: {:.0?} in all", report.join("\n"), started.elapsed());

    // Nothing outside the preopened directory changed.
    let (names, outside) = playground.outside();
    assert_eq!(names, ["outside", "sandbox"], "entries appeared beside the sandbox");
    assert_eq!(outside, OUTSIDE, "the file beside the sandbox changed");

    // The kernel still runs a process.
    let after = system.run(system.module(EXITS_7), "after-fuzz", &[]);
    assert_eq!((after.code, after.reason), (7, ExitReason::Exited), "{after:?}");

    // The fuzzers killed every process they started before they ended: none is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while system.emulator.kernel().live_processes() != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(system.emulator.kernel().live_processes(), 0, "processes outlived the fuzzer");
    // And no turn on the processors was lost along the way.
    assert_eq!(system.emulator.kernel().scheduler_in_use(), (0, 0), "turns left given");
}
