//! Faults and scheduling at the wasm level: traps, bad modules, spinning processes.

use nebulet_abi::ExitReason;

use crate::System;

#[test]
fn a_trap_ends_only_its_process_with_a_backtrace() {
    let system = System::new();
    let status = system.run(
        system.module(
            r#"(module
                (func $inner unreachable)
                (func $outer call $inner)
                (func (export "_start") call $outer))"#,
        ),
        "boom",
        &[],
    );
    assert_eq!((status.code, status.reason), (-1, ExitReason::Trapped));
    let message = status.message.expect("a trap is described");
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.contains("inner <- outer"), "the backtrace names the functions: {message}");
    assert!(!message.contains('\n'), "one line: {message}");
    // The kernel still runs processes after the trap.
    let status = system.run(system.module(r#"(module (func (export "_start")))"#), "after", &[]);
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited));
}

#[test]
fn a_module_with_an_unknown_import_does_not_start() {
    let system = System::new();
    let status = system.run(
        system.module(
            r#"(module (import "nebulet" "no_such_call" (func)) (func (export "_start")))"#,
        ),
        "unlinkable",
        &[],
    );
    assert_eq!(status.reason, ExitReason::Trapped);
    let message = status.message.unwrap();
    assert!(message.starts_with("cannot start"), "{message}");
    assert!(message.contains("no_such_call"), "{message}");
}

#[test]
fn a_module_without_start_ends_trapped() {
    let system = System::new();
    let status = system.run(system.module("(module)"), "empty", &[]);
    assert_eq!(status.reason, ExitReason::Trapped);
    assert!(status.message.unwrap().contains("_start"));
}

#[test]
fn process_exit_gives_its_code() {
    let system = System::new();
    let status = system.run(
        system.module(
            r#"(module (import "nebulet" "process_exit" (func $exit (param i32)))
                (func (export "_start") (call $exit (i32.const 42)) unreachable))"#,
        ),
        "exiter",
        &[],
    );
    assert_eq!((status.code, status.reason, status.message), (42, ExitReason::Exited, None));
}

/// More spinners than the runtime has worker threads, and yet another process runs.
#[test]
fn spinning_processes_without_calls_do_not_starve_others() {
    let system = System::new();
    let spinner = system.module(r#"(module (func (export "_start") (loop br 0)))"#);
    let kernel = system.emulator.kernel();
    let spinners: Vec<_> = (0..4)
        .map(|index| {
            kernel.spawn(
                spinner.clone(),
                nebulet_hosted::ProcessOptions {
                    name: format!("spin{index}"),
                    ..Default::default()
                },
            )
        })
        .collect();
    // Counts to a million with a call now and then: it must finish while the spinners spin.
    let worker = system.module(
        r#"(module (import "nebulet" "clock_monotonic" (func $now (result i64)))
            (func (export "_start") (local $i i32)
              (loop $again
                (drop (call $now))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $again (i32.lt_u (local.get $i) (i32.const 1000000))))))"#,
    );
    let status = system.run(worker, "worker", &[]);
    assert_eq!(status.reason, ExitReason::Exited);
    for spinner in &spinners {
        assert!(spinner.exit_status().is_none(), "spinners still spin");
        spinner.kill();
    }
    for spinner in &spinners {
        assert_eq!(system.wait(spinner).reason, ExitReason::Killed);
    }
    assert_eq!(kernel.live_processes(), 0);
}
