//! Threads inside a process: the `threaded` test program (apps/tests/threaded), built for
//! wasm32-wasip1-threads, on coroutine threads.

use nebulet_abi::ExitReason;

use crate::System;

fn threaded(case: &str) -> System {
    let system = System::new();
    system.pass("threaded", &[case]);
    assert!(system.console().contains(&format!("threaded {case}: ok")));
    assert_no_leaks(&system);
    system
}

fn assert_no_leaks(system: &System) {
    let kernel = system.emulator.kernel();
    assert_eq!(
        (kernel.live_processes(), kernel.live_threads()),
        (0, 0),
        "every process and thread store is gone"
    );
}

#[test]
fn std_mutex_condvar_channels_and_join_work() {
    threaded("std");
}

#[test]
fn a_spinning_thread_does_not_starve_the_others() {
    threaded("spin");
}

#[test]
fn sched_lock_keeps_other_threads_out() {
    threaded("sched_lock");
}

#[test]
fn futex_wait_wake_and_timeouts() {
    threaded("futex");
}

#[test]
fn a_trap_in_another_thread_ends_the_process_and_frees_every_thread() {
    let system = System::new();
    for _ in 0..3 {
        let status = system.run(system.program("threaded"), "threaded", &["trap"]);
        assert_eq!((status.code, status.reason), (-1, ExitReason::Trapped), "{}", system.console());
        assert!(system.console().contains("a thread fails"));
        assert_no_leaks(&system);
    }
}

#[test]
fn process_exit_from_a_thread_ends_the_process() {
    let system = System::new();
    let status = system.run(system.program("threaded"), "threaded", &["exit"]);
    assert_eq!((status.code, status.reason), (9, ExitReason::Exited));
    assert_no_leaks(&system);
}

#[test]
fn the_threads_demo_sums_correctly() {
    let system = System::new();
    let status = system.boot("start threads\n");
    assert_eq!(status.code, 0, "{}", system.console());
    assert!(system.console().contains("threads: 4 threads summed 1..=1000000 = 500000500000"));
}

#[test]
fn killing_a_threaded_process_frees_its_threads() {
    let system = System::new();
    // `hold` starts two threads that wait forever: it ends only when killed.
    let process = system.emulator.kernel().spawn(
        system.program("threaded"),
        nebulet_hosted::ProcessOptions {
            name: "threaded".into(),
            args: vec!["hold".into()],
            ..Default::default()
        },
    );
    // Kill it once its three threads exist, so the kill, not the program, ends them.
    let kernel = system.emulator.kernel();
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while kernel.live_threads() < 3 && process.exit_status().is_none() {
        assert!(std::time::Instant::now() < patience, "the threads never started");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    process.kill();
    assert_eq!(system.wait(&process).reason, ExitReason::Killed);
    assert_no_leaks(&system);
}

#[test]
fn closing_a_handle_cancels_another_threads_wait_on_it() {
    threaded("cancel");
}
