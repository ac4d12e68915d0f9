//! The conformance program `syscalls` (apps/tests/syscalls): every call's success and error
//! paths, through raw imports, one family per test.

use crate::System;

fn conformance(case: &str) {
    let system = System::new();
    system.pass("syscalls", &[case]);
    assert!(system.console().contains(&format!("syscalls {case}: ok")));
    assert_eq!(system.emulator.kernel().live_processes(), 0, "every child ended");
}

#[test]
fn handle_calls() {
    conformance("handles");
}

#[test]
fn signal_wait_timer_and_sleep_calls() {
    conformance("signals");
}

#[test]
fn object_get_info() {
    conformance("info");
}

#[test]
fn channel_calls() {
    conformance("channels");
}

#[test]
fn channel_queues_are_bounded() {
    conformance("queue");
}

#[test]
fn process_calls_kill_and_trap_isolation() {
    conformance("processes");
}

#[test]
fn service_registry() {
    conformance("services");
}

#[test]
fn socket_listener_and_connector_calls() {
    conformance("sockets");
}

#[test]
fn thread_futex_sched_and_watchdog_calls() {
    conformance("threads");
}

#[test]
fn random_debug_and_clock() {
    let system = System::new();
    system.pass("syscalls", &["misc"]);
    assert!(system.console().contains("conformance: debug_write\n"));
}
