//! Whole systems: the demo image, and a thousand processes exchanging messages.

use nebulet_abi::ExitReason;

use crate::System;

#[test]
fn the_demo_system_runs_its_services_and_tasks() {
    let system = System::new();
    let status = system.boot(nebulet::image::MANIFEST);
    let console = system.console();
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{console}");
    for line in [
        "init: started service echo",
        "hello from nebulet",
        "ping: 1000 round trips",
        "ping: echo answered",
        "init: hang ended: watchdog (code -1)",
        "init: restarting hang (restart 1)",
        "uptime: up",
        "init: all 3 tasks done",
    ] {
        assert!(console.contains(line), "missing `{line}` in:\n{console}");
    }
}

#[test]
fn a_thousand_processes_exchange_messages_with_none_lost_or_duplicated() {
    let system = System::new();
    let status = system.boot("start swarm\n");
    let console = system.console();
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{console}");
    assert!(
        console.contains("swarm: 1000 workers, 10000 messages, 0 lost, 0 duplicated"),
        "{console}"
    );
    assert_eq!(system.emulator.kernel().live_processes(), 0);
}

#[test]
fn a_crashing_task_is_reported_and_the_system_goes_on() {
    let system = System::new();
    let status = system.boot("service echo\nstart crash\nstart hello\n");
    let console = system.console();
    // init reports the trap and exits 1 because a task failed; hello still ran.
    assert_eq!((status.code, status.reason), (1, ExitReason::Exited), "{console}");
    assert!(console.contains("init: crash ended: trapped (code -1)"), "{console}");
    assert!(console.contains("hello from nebulet"), "{console}");
}

#[test]
fn a_bad_manifest_is_reported_by_init() {
    let system = System::new();
    let status = system.boot("launch everything\n");
    assert_eq!(status.code, 1);
    assert!(system.console().contains("manifest line 1"), "{}", system.console());
}

#[test]
fn a_service_that_never_gets_ready_is_given_up_after_its_restarts() {
    let system = System::new();
    let status = system.boot("service crash restart=always restarts=3/100s\nstart hello\n");
    let console = system.console();
    assert_eq!(status.code, 1, "a service that never gets ready fails the system:\n{console}");
    assert!(console.contains("init: restarting crash (restart 3)"), "{console}");
    assert!(
        console.contains("init: crash did not get ready in 3 restarts, giving up"),
        "{console}"
    );
    assert!(!console.contains("restart 4"), "{console}");
}
