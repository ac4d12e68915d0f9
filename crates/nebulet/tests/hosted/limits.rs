//! The watchdog and resource-limit program `limits` (apps/tests/limits): children that spin,
//! block, grow, hoard handles, flood channels and fork under a watchdog or a limit, one case
//! per test.

use crate::System;

fn limits(case: &str) {
    let system = System::new();
    system.pass("limits", &[case]);
    let console = system.console();
    assert!(console.contains(&format!("limits {case}: ok")), "{console}");
    assert_eq!(system.emulator.kernel().live_processes(), 0, "every child ended:\n{console}");
}

#[test]
fn a_spinning_process_is_ended_by_its_watchdog() {
    limits("watchdog-spin");
}

#[test]
fn a_blocked_process_is_ended_by_its_watchdog() {
    limits("watchdog-blocked");
}

#[test]
fn a_process_that_keeps_its_watchdog_alive_runs_on() {
    limits("watchdog-alive");
}

#[test]
fn memory_growth_stops_at_the_memory_limit() {
    limits("memory");
}

#[test]
fn handle_creation_stops_at_the_handle_limit() {
    limits("handles");
}

#[test]
fn queued_bytes_stop_writes_until_messages_are_read_or_dropped() {
    limits("queued");
}

#[test]
fn a_fork_bomb_stops_at_the_children_limit() {
    limits("children");
}

#[test]
fn a_spinning_process_ends_at_its_cpu_limit() {
    limits("cpu");
}

#[test]
fn process_set_limit_errors() {
    limits("set-limit-errors");
}

#[test]
fn a_flooded_channel_stays_bounded_and_resumes_after_reads() {
    limits("flood");
}
