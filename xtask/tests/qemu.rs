//! Nebulet on bare metal: boots the kernel and its system image under QEMU with
//! `cargo xtask qemu` and checks what the system printed on its serial port.
//!
//! The image and the kernel are built once, before the first boot, with their build's output
//! shown (it takes minutes on a clean tree); each boot then reuses them (xtask caches the
//! precompiled apps). Needs `qemu-system-x86_64`: without it each test says on the terminal
//! that it is skipped, and passes, except where the environment variable CI is set (`.ci/run`
//! installs QEMU): there they fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock, PoisonError};

const QEMU: &str = "qemu-system-x86_64";

/// The smallest machine the tests boot: 16 MiB, a little above the demo's floor (14 MiB,
/// docs/metal.md), so that the processes' timing cannot decide whether the demo fits.
const SMALL_MACHINE: &str = "16M";

/// One boot at a time: each is timed by the kernel, and the machine may have two cores.
static ONE_BOOT_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lies in the root").to_path_buf()
}

/// Writes straight to the terminal: the test harness captures `eprintln!`, not this.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Whether QEMU is installed (panics if it is not where CI is set), and, the first time it
/// is, builds the image and the kernel with their output shown.
fn ready(test: &str) -> bool {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let installed =
        Command::new(QEMU).arg("--version").output().is_ok_and(|output| output.status.success());
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "{QEMU} is not installed, and CI is set: the bare-metal tests must run there \
             (.ci/run installs it: apt-get install qemu-system-x86)"
        );
        say(&format!(
            "note: {test} SKIPPED: {QEMU} is not installed (on Debian or Ubuntu: \
             apt-get install qemu-system-x86)"
        ));
        return false;
    }
    let built = BUILT.get_or_init(|| {
        let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        say("note: building the bare-metal image and kernel once for the QEMU tests");
        Command::new(env!("CARGO"))
            .args(["run", "--quiet", "--package", "xtask", "--", "qemu", "--build-only"])
            .current_dir(root())
            .status()
            .is_ok_and(|status| status.success())
    });
    assert!(built, "cargo xtask qemu --build-only failed (its output is above)");
    true
}

/// `cargo xtask qemu ARGUMENTS...` from the repository root: its exit status and everything it
/// printed (the build steps and the kernel's serial output).
fn xtask_qemu(arguments: &[&str]) -> (Output, String) {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let output = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--package", "xtask", "--", "qemu"])
        .args(arguments)
        .current_dir(root())
        .output()
        .expect("cannot run cargo");
    let console = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, console)
}

/// A manifest file for one test, in the test's scratch folder.
fn manifest(name: &str, text: &str) -> String {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.manifest"));
    std::fs::write(&path, text).expect("cannot write the manifest");
    path.to_str().expect("a UTF-8 path").to_string()
}

fn assert_printed(console: &str, lines: &[&str]) {
    for line in lines {
        assert!(console.contains(line), "the system did not print {line:?}:\n{console}");
    }
}

/// The demo, on a machine of 16 MiB: the heap is sized from the memory map, the apps run in
/// place from the image.
#[test]
fn the_demo_system_runs_on_a_small_bare_metal_machine() {
    if !ready("the_demo_system_runs_on_a_small_bare_metal_machine") {
        return;
    }
    let (output, console) = xtask_qemu(&["--memory", SMALL_MACHINE]);
    assert!(output.status.success(), "cargo xtask qemu failed ({}):\n{console}", output.status);
    assert_printed(
        &console,
        &[
            "init: started service echo",
            "hello from nebulet",
            "ping: 1000 round trips",
            "init: hang ended: watchdog",
            "init: all",
            "nebulet-metal: init exited with code 0",
        ],
    );
}

/// On the small machine, an app that traps ends alone, and a thousand processes that do not
/// fit are refused with ERR_NO_RESOURCES instead of failing an allocation and stopping the
/// kernel: the other apps run on.
#[test]
fn a_trap_and_running_out_of_heap_do_not_stop_the_bare_metal_kernel() {
    if !ready("a_trap_and_running_out_of_heap_do_not_stop_the_bare_metal_kernel") {
        return;
    }
    let manifest = manifest("crash", "service echo\nstart crash\nstart swarm\nstart hello\n");
    let (output, console) = xtask_qemu(&["--memory", SMALL_MACHINE, "--manifest", &manifest]);
    // Tasks failed, so init exits 1 and the kernel reports a failure to QEMU: the lines say
    // whether the kernel went on after the trap and the refusal.
    assert!(!output.status.success(), "init should have exited with code 1:\n{console}");
    assert_printed(
        &console,
        &[
            "crash: about to trap",
            "init: crash ended: trapped",
            "ERR_NO_RESOURCES",
            "init: swarm exited with code 1",
            "hello from nebulet",
            "init: hello exited with code 0",
            "init: stopped service echo",
            "nebulet-metal: init exited with code 1",
            "QEMU status 35",
        ],
    );
    assert!(!console.contains("panic"), "the kernel must not panic:\n{console}");
}

/// On four cores (multi-threaded TCG) with 1 GiB: the demo, a spinner per core beside a
/// process that sleeps 1 ms 200 times (its sleeps end while the spinners hold every core, so
/// spinning processes are made to yield on every core), and the swarm's thousand processes,
/// which the heap holds.
#[test]
fn the_demo_spinners_and_a_thousand_processes_run_on_four_cores() {
    if !ready("the_demo_spinners_and_a_thousand_processes_run_on_four_cores") {
        return;
    }
    let manifest = manifest(
        "cores",
        "service echo\nservice hang restart=always restarts=2/10s\nstart hello\nstart ping\n\
         start uptime\nstart spinners\nstart swarm\n",
    );
    let arguments = ["--cpus", "4", "--memory", "1G", "--manifest", &manifest, "--timeout", "120"];
    let (output, console) = xtask_qemu(&arguments);
    assert!(output.status.success(), "cargo xtask qemu failed ({}):\n{console}", output.status);
    assert_printed(
        &console,
        &[
            "cpus: 4 online",
            "hello from nebulet",
            "ping: 1000 round trips",
            "init: hang ended: watchdog",
            "spinners: 4 spinners, 200 sleeps of 1 ms",
            "spinners: ok",
            "swarm: 1000 workers, 10000 messages, 0 lost, 0 duplicated",
            "nebulet-metal: init exited with code 0",
        ],
    );
}
