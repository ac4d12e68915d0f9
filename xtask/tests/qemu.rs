//! Nebulet on bare metal: boots the kernel and its system image under QEMU with
//! `cargo xtask qemu` and checks what the system printed on its serial port.
//!
//! Needs `qemu-system-x86_64`. Without it the tests print a note and pass, except where the
//! environment variable CI is set (`.ci/run` installs QEMU): there they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

const QEMU: &str = "qemu-system-x86_64";

/// One boot at a time: each is timed by the kernel, and the machine may have two cores.
static ONE_BOOT_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lies in the root").to_path_buf()
}

/// Whether QEMU is installed; panics if it is not where CI is set.
fn qemu_installed() -> bool {
    if Command::new(QEMU).arg("--version").output().is_ok_and(|output| output.status.success()) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{QEMU} is not installed, and CI is set: the bare-metal tests must run there \
         (.ci/run installs it: apt-get install qemu-system-x86)"
    );
    eprintln!(
        "note: {QEMU} is not installed: the bare-metal tests are skipped (on Debian or Ubuntu: \
         apt-get install qemu-system-x86)"
    );
    false
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

fn assert_printed(console: &str, lines: &[&str]) {
    for line in lines {
        assert!(console.contains(line), "the system did not print {line:?}:\n{console}");
    }
}

#[test]
fn the_demo_system_runs_on_bare_metal() {
    if !qemu_installed() {
        return;
    }
    let (output, console) = xtask_qemu(&[]);
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

#[test]
fn a_trapping_app_does_not_stop_the_bare_metal_kernel() {
    if !qemu_installed() {
        return;
    }
    let manifest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash.manifest");
    std::fs::write(&manifest, "service echo\nstart crash\nstart hello\n")
        .expect("cannot write the manifest");
    let manifest = manifest.to_str().expect("a UTF-8 path");
    let (output, console) = xtask_qemu(&["--manifest", manifest]);
    // A task failed, so init exits 1 and the kernel reports a failure to QEMU: the lines say
    // whether the kernel went on after the trap.
    assert!(!output.status.success(), "init should have exited with code 1:\n{console}");
    assert_printed(
        &console,
        &[
            "crash: about to trap",
            "init: crash ended: trapped",
            "hello from nebulet",
            "init: hello exited with code 0",
            "init: stopped service echo",
            "nebulet-metal: init exited with code 1",
            "QEMU status 35",
        ],
    );
}

/// A thousand processes do not fit in the bare-metal kernel's fixed heap: starting one more
/// than fits is refused with ERR_NO_RESOURCES, and the kernel goes on, instead of failing an
/// allocation and stopping.
#[test]
fn running_out_of_heap_is_refused_not_fatal_on_bare_metal() {
    if !qemu_installed() {
        return;
    }
    let manifest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("swarm.manifest");
    std::fs::write(&manifest, "service echo\nstart swarm\nstart hello\n")
        .expect("cannot write the manifest");
    let manifest = manifest.to_str().expect("a UTF-8 path");
    let (output, console) = xtask_qemu(&["--manifest", manifest]);
    assert!(!output.status.success(), "swarm cannot start 1,000 workers here:\n{console}");
    assert_printed(
        &console,
        &[
            "ERR_NO_RESOURCES",
            "init: swarm exited with code 1",
            "init: hello exited with code 0",
            "init: stopped service echo",
            "nebulet-metal: init exited with code 1",
        ],
    );
    assert!(!console.contains("panic"), "the kernel must not panic:\n{console}");
}
