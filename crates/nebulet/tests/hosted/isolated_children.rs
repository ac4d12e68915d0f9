//! Children in domains of their own: `process_create_with(PROCESS_CREATE_ISOLATED)` and
//! `domain=isolated` on a manifest line (see `docs/domains.md`). A parent (a wat program) starts
//! an isolated child and talks to it over its bridged bootstrap channel; the child's process
//! object here stands for the domain's first process.

use std::path::PathBuf;
use std::sync::Arc;

use nebulet_abi::{Error, ExitReason, Limit, PROCESS_CREATE_ISOLATED};
use nebulet_hosted::ProcessOptions;

use crate::System;

/// A system whose processes can start domains (re-executions of the `nebulet` binary).
fn system_with_domains() -> System {
    probed_system_with_domains(None)
}

/// [`system_with_domains`], whose domains run `probe` once sandboxed (see `PROBE_VARIABLE`).
fn probed_system_with_domains(probe: Option<String>) -> System {
    let system = System::new();
    let executable = PathBuf::from(env!("CARGO_BIN_EXE_nebulet"));
    let launcher = nebulet_domains::Launcher::new(executable).with_probe(probe);
    assert!(system.emulator.enable_domains(Arc::new(launcher)));
    system
}

/// The exit code a parent below exits with when a call fails with `error`.
fn failed(error: Error) -> i32 {
    100 - error as i32
}

/// `bytes` as the inside of a wat string.
fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("\\{byte:02x}")).collect()
}

/// A child that reads one message from its bootstrap channel, answers "pong", then runs `then`.
fn child(then: &str) -> String {
    format!(
        r#"(module
          (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
          (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
          (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
          (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
          (import "nebulet" "process_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "pong")
          (func (export "_start") (local $spin i32)
            (if (call $bootstrap (i32.const 0)) (then unreachable))
            (if (call $wait (i32.load (i32.const 0)) (i32.const 5) (i64.const 0x7fffffffffffffff) (i32.const 4))
              (then unreachable))
            (if (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 64) (i32.const 0) (i32.const 0)
                  (i32.const 8) (i32.const 12))
              (then unreachable))
            (if (call $write (i32.load (i32.const 0)) (i32.const 16) (i32.const 4) (i32.const 0) (i32.const 0))
              (then unreachable))
            {then}))"#
    )
}

/// The child ends with exit code 7.
const EXITS: &str = "(call $exit (i32.const 7))";

/// The child waits until its parent closes its channel (which it never does).
const WAITS: &str = "(drop (call $wait (i32.load (i32.const 0)) (i32.const 4) \
                     (i64.const 0x7fffffffffffffff) (i32.const 4)))";

/// The child computes for a while (300 million loop turns), then exits 7.
const COMPUTES: &str = "(loop $again
                          (local.set $spin (i32.add (local.get $spin) (i32.const 1)))
                          (br_if $again (i32.lt_u (local.get $spin) (i32.const 300000000))))
                        (i32.store (i32.const 32) (local.get $spin))
                        (call $exit (i32.const 7))";

/// The child spins for ever, without calls.
const SPINS: &str = "(loop $again (br $again))";

/// A parent that compiles `child`, creates it with `options` (its handle at 12), runs `setup`,
/// starts it with a channel (its own end at 0), sends "ping", checks the answer "pong", then
/// runs `after`. A failed call exits with [`failed`] of its status; the process's info goes to
/// 300 (`$info`).
fn parent(child: &str, options: u32, setup: &str, after: &str) -> String {
    let length = child.len();
    let pages = (4096 + length) / 65_536 + 1;
    format!(
        r#"(module
          (import "nebulet" "channel_create" (func $channel (param i32 i32) (result i32)))
          (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
          (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
          (import "nebulet" "module_compile" (func $compile (param i32 i32 i32) (result i32)))
          (import "nebulet" "process_create_with" (func $create (param i32 i32 i32 i32 i32) (result i32)))
          (import "nebulet" "process_set_limit" (func $set_limit (param i32 i32 i64) (result i32)))
          (import "nebulet" "process_start" (func $start (param i32 i32) (result i32)))
          (import "nebulet" "process_kill" (func $kill (param i32) (result i32)))
          (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
          (import "nebulet" "object_get_info" (func $get_info (param i32 i32 i32 i32 i32) (result i32)))
          (import "nebulet" "process_exit" (func $exit (param i32)))
          (memory (export "memory") {pages})
          (data (i32.const 64) "child")
          (data (i32.const 96) "ping")
          (data (i32.const 100) "pong")
          (data (i32.const 4096) "{text}")
          (func $check (param $status i32)
            (if (local.get $status) (then (call $exit (i32.sub (i32.const 100) (local.get $status))))))
          ;; Waits for `signals` on `handle`.
          (func $await (param $handle i32) (param $signals i32)
            (call $check (call $wait (local.get $handle) (local.get $signals)
              (i64.const 0x7fffffffffffffff) (i32.const 16))))
          ;; Reads process `handle`'s info to 300.
          (func $info (param $handle i32)
            (call $check (call $get_info (local.get $handle) (i32.const 2) (i32.const 300) (i32.const 32)
              (i32.const 400))))
          (func (export "_start")
            (call $check (call $compile (i32.const 4096) (i32.const {length}) (i32.const 8)))
            (call $check (call $channel (i32.const 0) (i32.const 4)))
            (call $check (call $create (i32.load (i32.const 8)) (i32.const 64) (i32.const 5)
              (i32.const {options}) (i32.const 12)))
            {setup}
            (call $check (call $start (i32.load (i32.const 12)) (i32.load (i32.const 4))))
            (call $check (call $write (i32.load (i32.const 0)) (i32.const 96) (i32.const 4) (i32.const 0) (i32.const 0)))
            (call $await (i32.load (i32.const 0)) (i32.const 5))
            (call $check (call $read (i32.load (i32.const 0)) (i32.const 128) (i32.const 64) (i32.const 0)
              (i32.const 0) (i32.const 20) (i32.const 24)))
            (if (i32.ne (i32.load (i32.const 128)) (i32.load (i32.const 100))) (then (call $exit (i32.const 90))))
            {after}))"#,
        text = escaped(child.as_bytes())
    )
}

/// After the exchange: waits for the child's end and exits with its exit code (90 + 1 if it
/// did not end "exited").
const EXIT_CODE: &str = "(call $await (i32.load (i32.const 12)) (i32.const 16))
                         (call $info (i32.load (i32.const 12)))
                         (if (i32.ne (i32.load (i32.const 308)) (i32.const 1)) (then (call $exit (i32.const 91))))
                         (call $exit (i32.load (i32.const 304)))";

fn run_parent(system: &System, parent: &str) -> nebulet_hosted::ExitStatus {
    system.run(system.module(parent), "parent", &[])
}

#[test]
fn an_isolated_child_talks_over_its_bootstrap_channel_and_its_exit_code_comes_back() {
    let system = system_with_domains();
    let status =
        run_parent(&system, &parent(&child(EXITS), PROCESS_CREATE_ISOLATED, "", EXIT_CODE));
    assert_eq!((status.code, status.reason), (7, ExitReason::Exited), "{status:?}");
}

#[test]
fn killing_an_isolated_child_closes_its_channel_and_ends_it_killed() {
    let system = system_with_domains();
    let after = "(call $check (call $kill (i32.load (i32.const 12))))
                 (call $await (i32.load (i32.const 0)) (i32.const 4))
                 (call $await (i32.load (i32.const 12)) (i32.const 16))
                 (call $info (i32.load (i32.const 12)))
                 (if (i32.ne (i32.load (i32.const 308)) (i32.const 2)) (then (call $exit (i32.const 91))))
                 (if (i32.ne (i32.load (i32.const 304)) (i32.const -1)) (then (call $exit (i32.const 92))))
                 (call $exit (i32.const 0))";
    let status = run_parent(&system, &parent(&child(WAITS), PROCESS_CREATE_ISOLATED, "", after));
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
}

#[test]
fn an_isolated_child_is_listed_in_domain_isolated_and_its_parent_in_local() {
    let system = system_with_domains();
    // After the exchange the parent waits for its child, which waits for ever.
    let after = "(call $await (i32.load (i32.const 12)) (i32.const 16)) (call $exit (i32.const 0))";
    let source = parent(&child(WAITS), PROCESS_CREATE_ISOLATED, "", after);
    let kernel = system.emulator.kernel();
    let options = ProcessOptions { name: "parent".into(), ..Default::default() };
    let parent = kernel.spawn(system.module(&source), options);
    let deadline = std::time::Instant::now() + crate::PATIENCE;
    let domains = loop {
        let listed = kernel.processes();
        let domain = |name: &str| {
            listed.iter().find(|process| process.name == name).map(|process| process.domain.clone())
        };
        if let (Some(parent), Some(child)) = (domain("parent"), domain("child")) {
            break (parent, child);
        }
        assert!(std::time::Instant::now() < deadline, "never listed: {listed:?}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert_eq!(domains, ("local".to_string(), "isolated".to_string()));
    // The child ends with its parent's subtree.
    parent.kill();
    assert_eq!(system.wait(&parent).reason, ExitReason::Killed);
}

#[test]
fn without_domains_the_option_is_not_supported_and_unknown_options_are_invalid() {
    let system = System::new();
    let status =
        run_parent(&system, &parent(&child(EXITS), PROCESS_CREATE_ISOLATED, "", EXIT_CODE));
    assert_eq!((status.code, status.reason), (failed(Error::NotSupported), ExitReason::Exited));
    let status = run_parent(&system, &parent(&child(EXITS), 2, "", EXIT_CODE));
    assert_eq!((status.code, status.reason), (failed(Error::InvalidArgs), ExitReason::Exited));
    // Without the option, the same child runs here.
    let status = run_parent(&system, &parent(&child(EXITS), 0, "", EXIT_CODE));
    assert_eq!((status.code, status.reason), (7, ExitReason::Exited), "{status:?}");
}

#[test]
fn an_isolated_childs_memory_is_set_aside_from_its_creators_budget() {
    let system = system_with_domains();
    // The parent may use 32 MiB. Its first child's domain takes 8 MiB of it for its life, so a
    // second one of 24 MiB does not fit until the first has ended.
    let setup = "(call $check (call $set_limit (i32.load (i32.const 12)) (i32.const 1) (i64.const 0x800000)))
                 (call $check (call $create (i32.load (i32.const 8)) (i32.const 64) (i32.const 5)
                   (i32.const 1) (i32.const 40)))
                 (call $check (call $set_limit (i32.load (i32.const 40)) (i32.const 1) (i64.const 0x1800000)))";
    let after = format!(
        "(if (i32.ne (call $start (i32.load (i32.const 40)) (i32.const 0)) (i32.const {no_resources}))
           (then (call $exit (i32.const 93))))
         (call $await (i32.load (i32.const 12)) (i32.const 16))
         (call $check (call $start (i32.load (i32.const 40)) (i32.const 0)))
         (call $await (i32.load (i32.const 40)) (i32.const 16))
         (call $exit (i32.const 0))",
        no_resources = Error::NoResources as i32
    );
    let status =
        run_limited_parent(&system, &parent(&child(EXITS), PROCESS_CREATE_ISOLATED, setup, &after));
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    // Without a memory limit of its own, a domain takes 64 MiB, more than this parent has.
    let status =
        run_limited_parent(&system, &parent(&child(EXITS), PROCESS_CREATE_ISOLATED, "", EXIT_CODE));
    assert_eq!((status.code, status.reason), (failed(Error::NoResources), ExitReason::Exited));
}

/// Runs `parent` with a memory limit of 32 MiB; returns how it ended.
fn run_limited_parent(system: &System, parent: &str) -> nebulet_hosted::ExitStatus {
    let options = ProcessOptions { name: "parent".into(), ..Default::default() };
    let process = system
        .emulator
        .kernel()
        .spawn_with_limits(system.module(parent), options, &[(Limit::MemoryBytes, 32 << 20)], None)
        .unwrap();
    system.wait(&process)
}

#[test]
fn an_isolated_childs_cpu_time_is_charged_to_its_creator() {
    let system = system_with_domains();
    // 300 million loop turns take far more than 20 ms of CPU time on any machine; a domain
    // whose time were not counted would show 0.
    let after = "(call $await (i32.load (i32.const 12)) (i32.const 16))
                 (call $info (i32.load (i32.const 12)))
                 (if (i64.lt_u (i64.load (i32.const 324)) (i64.const 20000000)) (then (call $exit (i32.const 94))))
                 (call $exit (i32.load (i32.const 304)))";
    let module = system.module(parent(&child(COMPUTES), PROCESS_CREATE_ISOLATED, "", after));
    let options = ProcessOptions { name: "parent".into(), ..Default::default() };
    let process = system.emulator.kernel().spawn(module, options);
    let status = system.wait(&process);
    assert_eq!((status.code, status.reason), (7, ExitReason::Exited), "{status:?}");
    let charged = system.emulator.kernel().root_budget().used[Limit::CpuNanoseconds as usize - 1];
    assert!(charged >= 20_000_000, "the root budget was charged only {charged} ns");
}

#[test]
fn an_isolated_child_ends_once_its_creators_cpu_time_is_used_up() {
    let system = system_with_domains();
    // The child spins for ever in its domain; its creator, whose subtree may use 200 ms of CPU
    // time, waits for it and exits with the reason it ended for.
    let after = "(call $await (i32.load (i32.const 12)) (i32.const 16))
                 (call $info (i32.load (i32.const 12)))
                 (call $exit (i32.load (i32.const 308)))";
    let module = system.module(parent(&child(SPINS), PROCESS_CREATE_ISOLATED, "", after));
    let options = ProcessOptions { name: "parent".into(), ..Default::default() };
    let limits = [(Limit::CpuNanoseconds, 200_000_000)];
    let process =
        system.emulator.kernel().spawn_with_limits(module, options, &limits, None).unwrap();
    // Without the domain's time charged while it runs, the child would spin for ever and this
    // wait would fail. With it, the subtree runs out: the child is ended "out of resources",
    // and the parent either exits with that reason or, if it runs once more before (woken by
    // the kill), is ended for its subtree's CPU time itself.
    let status = system.wait(&process);
    let child_ended = (ExitReason::OutOfResources as i32, ExitReason::Exited);
    let parent_ended = status.reason == ExitReason::OutOfResources
        && status.message.as_deref() == Some("CPU time limit passed");
    assert!(parent_ended || (status.code, status.reason) == child_ended, "{status:?}");
    let charged = system.emulator.kernel().root_budget().used[Limit::CpuNanoseconds as usize - 1];
    assert!(charged >= 200_000_000, "the root budget was charged only {charged} ns");
}

#[test]
fn the_memory_of_a_domains_host_process_is_charged_to_its_creator() {
    let system = system_with_domains();
    let memory = Limit::MemoryBytes as usize - 1;
    let before = system.emulator.kernel().root_budget().used[memory];
    // The child may use 256 KiB in its domain, which is all that is set aside for it; its host
    // process holds more than that (its runtime and compiled code) while the child waits.
    let setup = format!(
        "(call $check (call $set_limit (i32.load (i32.const 12)) (i32.const {}) (i64.const {})))",
        Limit::MemoryBytes as i32,
        256 << 10
    );
    let after = "(call $await (i32.load (i32.const 12)) (i32.const 16)) (call $exit (i32.const 0))";
    let module = system.module(parent(&child(WAITS), PROCESS_CREATE_ISOLATED, &setup, after));
    let options = ProcessOptions { name: "parent".into(), ..Default::default() };
    let parent = system.emulator.kernel().spawn(module, options);
    // Without the host process's memory, the parent and the 256 KiB set aside hold about
    // 2.5 MB here; with it, about 4.3 MB (the host process holds about 2.1 MB of its own, on
    // 2026-12-02: 10 MB before its runtime had one worker and its allocator committed its
    // arenas as it used them).
    let expected = 3584 << 10;
    let deadline = std::time::Instant::now() + crate::PATIENCE;
    loop {
        let held = system.emulator.kernel().root_budget().used[memory] - before;
        if held >= expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {held} bytes were ever charged");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    parent.kill();
    assert_eq!(system.wait(&parent).reason, ExitReason::Killed);
    // Everything the domain was charged is given back once it has ended too (its end follows
    // its parent's: the domain's host process is killed and waited for).
    loop {
        let after = system.emulator.kernel().root_budget().used[memory];
        if after <= before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{after} bytes stay charged, {before} before"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_manifest_app_with_domain_isolated_runs_sandboxed_in_a_kernel_of_its_own() {
    // A file this process (and so any local app's host) can open; the isolated app's host
    // process, sandboxed, cannot.
    let secret = std::env::temp_dir()
        .join(format!("nebulet-isolated-children-{}-secret", std::process::id()));
    std::fs::write(&secret, "secret").unwrap();
    let probe = format!("open:{}", secret.display());
    let system = probed_system_with_domains(Some(probe.clone()));
    let status = system.boot("start hello domain=isolated\n");
    let console = system.console();
    std::fs::remove_file(&secret).unwrap();
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{console}");
    assert!(
        console.contains(&format!("nebulet domain probe: {probe}: Permission denied")),
        "{console}"
    );
    // hello printed through its domain's stdout, which the system's console shows.
    assert!(console.contains("init: hello exited with code 0"), "{console}");
    assert!(console.contains("hello from nebulet"), "{console}");

    // An isolated service gets ready over its bridged channel, but it registers its name in its
    // domain's kernel: ping, in init's kernel, does not find it.
    let system = system_with_domains();
    let status = system.boot("service echo domain=isolated\nstart ping\n");
    let console = system.console();
    assert!(console.contains("init: started service echo"), "{console}");
    assert!(console.contains("ping: cannot connect to echo: "), "{console}");
    assert_eq!((status.code, status.reason), (1, ExitReason::Exited), "{console}");
}
