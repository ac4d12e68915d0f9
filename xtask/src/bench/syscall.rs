//! The cheapest system call of each system, and a clock read.
//!
//! Nebulet: `handle_close(0)`, which only checks its argument (0 is "no handle" and returns
//! OK), called through its wasm import in a loop. Linux: `getppid()` through
//! `std::os::unix::process::parent_id`, which does nothing but enter and leave the kernel
//! (glibc does not cache it). The clock read is `clock_monotonic` against `Instant::now()`
//! (`clock_gettime` through the vDSO, without entering the kernel).

use std::hint::black_box;
use std::time::Instant;

use super::nebulet::Nebulet;
use super::{Comparison, Goal, Settings, Side, time_loop};

pub fn system_call(nebulet: &Nebulet, settings: &Settings) -> Result<Comparison, String> {
    let count = settings.system_calls;
    let nebulet =
        Side::measure("Nebulet: `handle_close(0)` in a wasm loop", settings.runs, || {
            nebulet.bench_case(&["syscall", &count.to_string()])
        })?;
    let linux = Side::measure("Linux: `getppid()` in a loop", settings.runs, || {
        Ok(time_loop(count, || {
            black_box(std::os::unix::process::parent_id());
        }))
    })?;
    Ok(Comparison { operation: "system call", nebulet, linux, goal: Some(Goal::AtMost(30.0)) })
}

pub fn clock_read(nebulet: &Nebulet, settings: &Settings) -> Result<Comparison, String> {
    let count = settings.system_calls;
    let nebulet =
        Side::measure("Nebulet: `clock_monotonic` in a wasm loop", settings.runs, || {
            nebulet.bench_case(&["clock", &count.to_string()])
        })?;
    let linux = Side::measure("Linux: `Instant::now()` (vDSO) in a loop", settings.runs, || {
        Ok(time_loop(count, || {
            black_box(Instant::now());
        }))
    })?;
    Ok(Comparison { operation: "clock read", nebulet, linux, goal: None })
}
