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
        "init: started service hang",
        "uptime: up",
        "init: all 3 tasks done",
    ] {
        assert!(console.contains(line), "missing `{line}` in:\n{console}");
    }
    // Whether `hang` is killed and restarted before `uptime` ends depends on timing: the
    // restarts are checked by the next test, where init waits for them.
}

/// `hang` as a task: init waits for its final run, so the watchdog kill, the restart and the
/// giving up all happen before init ends, however slow the machine.
#[test]
fn init_restarts_an_app_its_watchdog_killed_then_gives_up() {
    let system = System::new();
    let status = system.boot("start hang restart=always restarts=1/10s\n");
    let console = system.console();
    assert_eq!((status.code, status.reason), (1, ExitReason::Exited), "{console}");
    let lines = [
        "init: hang ended: watchdog (code -1)",
        "init: restarting hang (restart 1)",
        "init: hang ended: watchdog (code -1)",
        "init: hang restarted 1 time in 10s, giving up",
        "init: all 1 task done",
        "init: 1 of 1 task failed",
    ];
    let mut rest = console.as_str();
    for line in lines {
        let at =
            rest.find(line).unwrap_or_else(|| panic!("missing `{line}` (in order) in:\n{console}"));
        rest = &rest[at + line.len()..];
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
    // A bad option is blamed on the option, not on the directive.
    let system = System::new();
    let status = system.boot("start hello\nstart hello memory=lots\n");
    assert_eq!(status.code, 1);
    assert!(
        system.console().contains("init: manifest line 2: `memory=lots`: expected a SIZE"),
        "{}",
        system.console()
    );
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
