//! `spinners`: starts `SPINNERS` copies of itself that spin forever (a process started without
//! a bootstrap channel spins), then, beside them, sleeps 1 ms `SLEEPS` times and measures how
//! late each sleep ends. With a core per spinner (`cargo xtask qemu --cpus 4`) the spinners
//! take every core, so the sleeper runs only if a spinning process is made to yield its core:
//! its sleeps ending at all, while the spinners still run, shows preemption across cores.
//!
//! Prints `spinners: N spinners, M sleeps of 1 ms, late p50 A us, p99 B us, max C us`, kills
//! the spinners, checks that each was still running and ends killed, and prints `spinners: ok`
//! and exits 0; otherwise prints what went wrong and exits 1.

use std::time::Duration;

use sip::bootstrap::Image;
use sip::{InfoProcessExt, Process, clock};

/// One spinner per core of the QEMU test's machine.
const SPINNERS: usize = 4;
const SLEEPS: usize = 200;
const SLEEP: Duration = Duration::from_millis(1);
/// How long the spinners have to end once killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let Some(bootstrap) = sip::process::bootstrap_channel() else { spin() };
    if let Err(message) = run(&bootstrap) {
        println!("spinners: {message}");
        sip::process::exit(1);
    }
    println!("spinners: ok");
}

/// A spinner: arithmetic forever, no system call (it never yields of its own accord).
fn spin() -> ! {
    let mut state: u64 = 1;
    loop {
        state = std::hint::black_box(state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
}

fn run(bootstrap: &sip::Channel) -> Result<(), String> {
    let image =
        Image::receive(bootstrap).map_err(|error| format!("cannot read the image: {error}"))?;
    let module = image.module("spinners").ok_or("no app spinners in the image")?;
    let mut spinners = Vec::with_capacity(SPINNERS);
    for index in 0..SPINNERS {
        let process = Process::create(module, &format!("spinner-{index}"))
            .map_err(|error| format!("cannot create spinner {index}: {error}"))?;
        if let Err(failed) = process.start(None) {
            return Err(format!("cannot start spinner {index}: {}", failed.error));
        }
        spinners.push(process);
    }
    let mut lateness: Vec<i64> = Vec::with_capacity(SLEEPS);
    for _ in 0..SLEEPS {
        let start = clock::monotonic();
        sip::sleep(SLEEP).map_err(|error| format!("sleep: {error}"))?;
        lateness.push(clock::monotonic() - start - SLEEP.as_nanos() as i64);
    }
    lateness.sort_unstable();
    let micros = |rank: usize| lateness[rank.min(SLEEPS - 1)] / 1000;
    println!(
        "spinners: {SPINNERS} spinners, {SLEEPS} sleeps of 1 ms, late p50 {} us, p99 {} us, \
         max {} us",
        micros(SLEEPS / 2),
        micros(SLEEPS * 99 / 100),
        micros(SLEEPS - 1)
    );
    let deadline = clock::deadline_after(EXIT_TIMEOUT);
    for (index, spinner) in spinners.iter().enumerate() {
        spinner.kill().map_err(|error| format!("cannot kill spinner {index}: {error}"))?;
        let info = spinner
            .wait_terminated(deadline)
            .map_err(|error| format!("spinner {index} did not end: {error}"))?;
        if info.reason() != Some(sip::abi::ExitReason::Killed) {
            return Err(format!("spinner {index} {}, not killed", info.describe()));
        }
    }
    Ok(())
}
