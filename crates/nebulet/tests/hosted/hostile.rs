//! Hostile programs against subtree budgets and bounded calls: inline WAT for single
//! processes, and the `hostile` test program (apps/tests/hostile) for parents that set limits
//! on hostile children. After each test every process and thread store is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nebulet_abi::ExitReason;
use nebulet_hosted::{ExitStatus, HostDirectory, ProcessOptions};
use nebulet_kernel::vfs::Directory;

use crate::{PATIENCE, System};

/// WASI's `EINVAL`.
const EINVAL: i32 = 28;
/// WASI's `ENOMEM`.
const ENOMEM: i32 = 48;
/// The most one `fd_write` may transfer.
const WRITE_MAX_BYTES: i32 = 1 << 20;

/// Asserts that no process or thread store is left.
fn assert_all_gone(system: &System) {
    let kernel = system.emulator.kernel();
    assert_eq!(
        (kernel.live_processes(), kernel.live_threads()),
        (0, 0),
        "every process and thread store is gone:\n{}",
        system.console()
    );
    assert_eq!(kernel.scheduler_in_use(), (0, 0), "no turn on the processors is left given");
}

/// Polls `condition` every 10 ms until it holds; fails after [`PATIENCE`] (a safety net: the
/// conditions waited for are events with no signal of their own, such as console output).
fn eventually(system: &System, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?} ({} processes live)",
            system.emulator.kernel().live_processes()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `hostile CASE`, asserts it passed, and that everything it started is gone.
fn hostile(case: &str) {
    let system = System::new();
    system.pass("hostile", &[case]);
    let console = system.console();
    assert!(console.contains(&format!("hostile {case}: ok")), "{console}");
    eventually(&system, "every child ends", || system.emulator.kernel().live_processes() == 0);
    assert_all_gone(&system);
}

/// Runs an inline module and returns how it ended.
fn run(system: &System, source: &str, name: &str) -> ExitStatus {
    system.run(system.module(source), name, &[])
}

fn assert_exited(status: &ExitStatus, code: i32, meanings: &str, system: &System) {
    assert_eq!(
        (status.reason, status.code),
        (ExitReason::Exited, code),
        "{meanings}; message {:?}\n--- console ---\n{}",
        status.message,
        system.console()
    );
}

#[test]
fn memory_grow_of_any_memory_counts_against_the_process() {
    hostile("memories");
}

#[test]
fn the_private_memory_of_each_thread_counts_against_the_process() {
    hostile("thread-memories");
}

#[test]
fn a_module_that_defines_a_shared_memory_does_not_compile() {
    hostile("shared-memory");
}

#[test]
fn nebulet_run_refuses_a_module_that_defines_a_shared_memory_on_one_line() {
    let directory = std::env::temp_dir().join(format!("nebulet-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("shared.wat");
    std::fs::write(&path, r#"(module (memory 1 1 shared) (func (export "_start")))"#).unwrap();
    let output = super::nebulet_command().arg("run").arg(&path).output().unwrap();
    let _ = std::fs::remove_dir_all(&directory);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stderr.starts_with("nebulet: cannot load"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn table_grow_stops_at_the_memory_budget() {
    hostile("table");
}

#[test]
fn a_table_holds_at_most_10_million_elements_whatever_the_budget() {
    let system = System::new();
    let source = r#"(module
      (import "nebulet" "process_exit" (func $exit (param i32)))
      (table $table 0 funcref)
      (func (export "_start")
        (if (i32.ne (table.grow $table (ref.null func) (i32.const 10000001)) (i32.const -1))
          (then (call $exit (i32.const 1))))
        (if (i32.ne (table.grow $table (ref.null func) (i32.const 9999999)) (i32.const 0))
          (then (call $exit (i32.const 2))))
        (if (i32.ne (table.grow $table (ref.null func) (i32.const 2)) (i32.const -1))
          (then (call $exit (i32.const 3))))
        (if (i32.ne (table.grow $table (ref.null func) (i32.const 1)) (i32.const 9999999))
          (then (call $exit (i32.const 4))))
        (call $exit (i32.const 0))))"#;
    let status = run(&system, source, "tables");
    let meanings = "1: 10,000,001 elements given, 2: 9,999,999 refused, 3: growth past 10,000,000 \
                    given, 4: the last element refused";
    assert_exited(&status, 0, meanings, &system);
    assert_all_gone(&system);
}

#[test]
fn module_compile_is_charged_to_its_caller() {
    hostile("compile");
}

#[test]
fn a_parent_limit_bounds_its_child() {
    hostile("subtree");
}

#[test]
fn zero_byte_messages_count_against_the_queued_limit() {
    hostile("zero-byte");
}

#[test]
fn the_process_tree_is_at_most_32_levels_deep() {
    hostile("depth");
}

#[test]
fn the_children_limit_counts_all_descendants() {
    hostile("descendants");
}

#[test]
fn service_names_go_with_their_process_and_are_capped_per_process() {
    hostile("services");
}

#[test]
fn a_writer_of_long_calls_ends_at_its_cpu_limit() {
    hostile("cpu-writer");
}

#[test]
fn the_threads_limit_bounds_thread_spawn() {
    hostile("threads");
}

/// Two channels `(a, b)` and `(c, d)`: `c` travels to `b`'s queue; `b`, which now holds an
/// endpoint in its queue, cannot travel (that is how a cycle would start).
const CYCLE: &str = r#"(module
  (import "nebulet" "channel_create" (func $channel (param i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func $expect (param $status i32) (param $want i32) (param $code i32)
    (if (i32.ne (local.get $status) (local.get $want)) (then (call $exit (local.get $code)))))
  (func (export "_start")
    (call $expect (call $channel (i32.const 0) (i32.const 4)) (i32.const 0) (i32.const 1))
    (call $expect (call $channel (i32.const 8) (i32.const 12)) (i32.const 0) (i32.const 1))
    ;; a carrying a itself, or its peer b: ERR_INVALID_ARGS.
    (call $expect (call $write (i32.load (i32.const 0)) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1)) (i32.const -10) (i32.const 2))
    (call $expect (call $write (i32.load (i32.const 0)) (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 1)) (i32.const -10) (i32.const 3))
    ;; c into b's queue.
    (call $expect (call $write (i32.load (i32.const 0)) (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 1)) (i32.const 0) (i32.const 4))
    ;; b (holding c) into c's peer d's channel: refused.
    (call $expect (call $write (i32.load (i32.const 12)) (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 1)) (i32.const -20) (i32.const 5))
    (call $exit (i32.const 0))))"#;

#[test]
fn an_endpoint_with_endpoints_in_its_queue_cannot_travel() {
    let system = System::new();
    let status = run(&system, CYCLE, "cycle");
    assert_exited(
        &status,
        0,
        "1: channel_create failed, 2: write(a, [a]) or 3: write(a, [b]) was not \
         ERR_INVALID_ARGS, 4: write(a, [c]) failed, 5: write(d, [b]) with c queued at b was not \
         ERR_BAD_STATE",
        &system,
    );
    assert_all_gone(&system);
}

/// Sets a timer to a deadline already past and polls it once.
const PAST_TIMER: &str = r#"(module
  (import "nebulet" "timer_create" (func $timer (param i32) (result i32)))
  (import "nebulet" "timer_set" (func $set (param i32 i64) (result i32)))
  (import "nebulet" "clock_monotonic" (func $now (result i64)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $timer (i32.const 0)) (then (call $exit (i32.const 1))))
    (if (call $set (i32.load (i32.const 0)) (i64.sub (call $now) (i64.const 1))) (then (call $exit (i32.const 2))))
    (if (call $wait (i32.load (i32.const 0)) (i32.const 8) (i64.const 0) (i32.const 4)) (then (call $exit (i32.const 3))))
    (call $exit (i32.const 0))))"#;

#[test]
fn a_timer_set_in_the_past_is_signaled_at_once() {
    let system = System::new();
    let status = run(&system, PAST_TIMER, "past-timer");
    assert_exited(
        &status,
        0,
        "1: timer_create, 2: timer_set failed, 3: SIGNALED was not asserted at once",
        &system,
    );
    assert_all_gone(&system);
}

/// A module whose memory 0 holds "from memory zero" and whose other memory holds something
/// else; `export` names which memory (if any) is exported as "memory". debug_write,
/// channel_create, channel_write and channel_read all use memory 0.
fn memory_zero_module(export: &str) -> String {
    format!(
        r#"(module
  (import "nebulet" "debug_write" (func $debug (param i32 i32) (result i32)))
  (import "nebulet" "channel_create" (func $channel (param i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory $zero 1)
  (memory $other 1)
  {export}
  (data (memory $zero) (i32.const 16) "from memory zero\n")
  (data (memory $other) (i32.const 16) "from the other!!\n")
  (func (export "_start")
    (if (call $debug (i32.const 16) (i32.const 17)) (then (call $exit (i32.const 1))))
    (if (call $channel (i32.const 0) (i32.const 4)) (then (call $exit (i32.const 2))))
    (if (i32.eqz (i32.load (i32.const 0))) (then (call $exit (i32.const 3))))
    (if (call $write (i32.load (i32.const 0)) (i32.const 16) (i32.const 17) (i32.const 0) (i32.const 0))
      (then (call $exit (i32.const 4))))
    (if (call $read (i32.load (i32.const 4)) (i32.const 64) (i32.const 64) (i32.const 0) (i32.const 0) (i32.const 128) (i32.const 0))
      (then (call $exit (i32.const 5))))
    (if (i32.ne (i32.load (i32.const 128)) (i32.const 17)) (then (call $exit (i32.const 6))))
    (if (i64.ne (i64.load (i32.const 64)) (i64.load (i32.const 16))) (then (call $exit (i32.const 7))))
    (call $exit (i32.const 0))))"#
    )
}

fn pointers_name_memory_zero(export: &str) {
    let system = System::new();
    let status = run(&system, &memory_zero_module(export), "memory-zero");
    assert_exited(
        &status,
        0,
        "1: debug_write failed, 2: channel_create failed, 3: the handles were not written to \
         memory 0, 4: channel_write failed, 5: channel_read failed, 6: the length or 7: the \
         bytes read are not in memory 0",
        &system,
    );
    let console = system.console();
    assert!(console.contains("from memory zero"), "{console}");
    assert!(!console.contains("from the other"), "{console}");
    assert_all_gone(&system);
}

#[test]
fn pointers_name_memory_zero_when_it_is_not_exported() {
    pointers_name_memory_zero("");
}

#[test]
fn pointers_name_memory_zero_when_another_memory_is_exported_as_memory() {
    pointers_name_memory_zero(r#"(export "memory" (memory $other))"#);
}

/// Opens `file` in its preopened directory (fd 3), then calls fd_write (stdout and the file),
/// fd_read, fd_pwrite and fd_pread with 1,025 iovecs; each must be EINVAL. Then 1,024 work.
const TOO_MANY_IOVECS: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pread" (func $pread (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "file")
  (func $expect (param $errno i32) (param $want i32) (param $code i32)
    (if (i32.ne (local.get $errno) (local.get $want)) (then (call $exit (local.get $code)))))
  (func (export "_start")
    (local $index i32) (local $fd i32)
    ;; 1,025 iovecs of 1 byte each at 1024, all naming byte 100.
    (loop $iovecs
      (i32.store (i32.add (i32.const 1024) (i32.shl (local.get $index) (i32.const 3))) (i32.const 100))
      (i32.store (i32.add (i32.const 1028) (i32.shl (local.get $index) (i32.const 3))) (i32.const 1))
      (local.set $index (i32.add (local.get $index) (i32.const 1)))
      (br_if $iovecs (i32.lt_u (local.get $index) (i32.const 1025))))
    (call $expect (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 1) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 8)) (i32.const 0) (i32.const 1))
    (local.set $fd (i32.load (i32.const 8)))
    (call $expect (call $write (i32.const 1) (i32.const 1024) (i32.const 1025) (i32.const 12)) (i32.const 28) (i32.const 2))
    (call $expect (call $write (local.get $fd) (i32.const 1024) (i32.const 1025) (i32.const 12)) (i32.const 28) (i32.const 3))
    (call $expect (call $read (local.get $fd) (i32.const 1024) (i32.const 1025) (i32.const 12)) (i32.const 28) (i32.const 4))
    (call $expect (call $pwrite (local.get $fd) (i32.const 1024) (i32.const 1025) (i64.const 0) (i32.const 12)) (i32.const 28) (i32.const 5))
    (call $expect (call $pread (local.get $fd) (i32.const 1024) (i32.const 1025) (i64.const 0) (i32.const 12)) (i32.const 28) (i32.const 6))
    (call $expect (call $write (local.get $fd) (i32.const 1024) (i32.const 1024) (i32.const 12)) (i32.const 0) (i32.const 7))
    (if (i32.ne (i32.load (i32.const 12)) (i32.const 1024)) (then (call $exit (i32.const 8))))
    (call $exit (i32.const 0))))"#;

#[test]
fn wasi_calls_with_more_than_1024_iovecs_are_einval() {
    assert_eq!(EINVAL, 28);
    let directory = std::env::temp_dir().join(format!("nebulet-iovecs-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let preopen = HostDirectory::open(&directory).expect("the directory opens");
    let system = System::new();
    let options = ProcessOptions {
        name: "iovecs".into(),
        preopens: vec![("/scratch".into(), Arc::new(preopen) as Arc<dyn Directory>)],
        ..Default::default()
    };
    let status = system.run_with(system.module(TOO_MANY_IOVECS), options);
    let written = std::fs::read(directory.join("file"));
    let _ = std::fs::remove_dir_all(&directory);
    assert_exited(
        &status,
        0,
        "1: path_open failed; not EINVAL with 1,025 iovecs: 2 fd_write to stdout, 3 fd_write, \
         4 fd_read, 5 fd_pwrite, 6 fd_pread; 7: fd_write with 1,024 failed, 8: it wrote other \
         than 1,024 bytes",
        &system,
    );
    assert_eq!(written.expect("the file was made").len(), 1024);
    assert!(system.console().is_empty(), "nothing reached stdout: {}", system.console());
    assert_all_gone(&system);
}

/// One fd_write of 1,024 iovecs that alias one 64 KiB buffer (64 MiB) to stdout; exits with
/// the bytes written, or 1000 + errno.
const ALIASED_WRITE: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (local $index i32) (local $errno i32)
    (memory.fill (i32.const 65536) (i32.const 46) (i32.const 65536))
    (loop $iovecs
      (i32.store (i32.shl (local.get $index) (i32.const 3)) (i32.const 65536))
      (i32.store (i32.add (i32.shl (local.get $index) (i32.const 3)) (i32.const 4)) (i32.const 65536))
      (local.set $index (i32.add (local.get $index) (i32.const 1)))
      (br_if $iovecs (i32.lt_u (local.get $index) (i32.const 1024))))
    (local.set $errno (call $write (i32.const 1) (i32.const 0) (i32.const 1024) (i32.const 8192)))
    (if (local.get $errno) (then (call $exit (i32.add (i32.const 1000) (local.get $errno)))))
    (call $exit (i32.load (i32.const 8192)))))"#;

#[test]
fn one_fd_write_transfers_at_most_1_mib() {
    let system = System::new();
    let status = run(&system, ALIASED_WRITE, "aliased");
    assert_eq!(status.reason, ExitReason::Exited, "{:?}", status.message);
    let written = status.code;
    assert!(
        (1..=WRITE_MAX_BYTES).contains(&written),
        "fd_write of 64 MiB reported {written} bytes written (from 1000: 1000 + errno)"
    );
    let console = system.console();
    assert_eq!(console.len(), written as usize, "the console holds what was reported");
    assert!(console.bytes().all(|byte| byte == b'.'));
    assert_all_gone(&system);
}

#[test]
fn process_kill_ends_a_process_inside_long_writes() {
    let system = System::new();
    let kernel = system.emulator.kernel();
    let writer = kernel.spawn(
        system.module(WRITES_FOREVER),
        ProcessOptions { name: "writer".into(), ..Default::default() },
    );
    eventually(&system, "the writer writes", || system.console_bytes() > 0);
    writer.kill();
    let status = system.wait(&writer);
    assert_eq!(status.reason, ExitReason::Killed, "{:?}", status.message);
    assert_all_gone(&system);
}

/// Writes 1,024 iovecs aliasing one 64 KiB buffer to stdout, forever (the stress run's writer).
const WRITES_FOREVER: &str = include_str!("../../../../apps/tests/hostile/src/writes_forever.wat");

/// Sleeps 10 ms ten times, then exits 0.
const SLEEPS_TEN_TIMES: &str = r#"(module
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (import "nebulet" "clock_monotonic" (func $now (result i64)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (func (export "_start")
    (local $count i32)
    (loop $again
      (if (call $sleep (i64.add (call $now) (i64.const 10000000))) (then (call $exit (i32.const 1))))
      (local.set $count (i32.add (local.get $count) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $count) (i32.const 10))))
    (call $exit (i32.const 0))))"#;

#[test]
fn a_spawn_bomb_is_contained_and_ends_with_its_root() {
    let system = System::new();
    let kernel = system.emulator.kernel();
    let baseline = (kernel.live_processes(), kernel.live_threads());
    let bomb = kernel.spawn(
        system.program("hostile"),
        ProcessOptions { name: "hostile".into(), args: vec!["bomb".into()], ..Default::default() },
    );
    eventually(&system, "the bomb starts", || system.console().contains("hostile bomb: started"));
    eventually(&system, "the bomb's calls fail with ERR_NO_RESOURCES", || {
        system.console().contains("bomb: ERR_NO_RESOURCES")
    });
    // A sibling still gets its sleeps back while the bomb presses on its budget.
    let status = run(&system, SLEEPS_TEN_TIMES, "sibling");
    assert_exited(&status, 0, "1: a sleep failed", &system);
    assert!(bomb.exit_status().is_none(), "the bomb's root still runs:\n{}", system.console());
    bomb.kill();
    assert_eq!(system.wait(&bomb).reason, ExitReason::Killed);
    eventually(&system, "every bomb process ends with its root", || {
        (kernel.live_processes(), kernel.live_threads()) == baseline
    });
}

#[test]
fn bytes_buffered_in_sockets_count_against_the_writers_queued_limit() {
    let system = System::new();
    // Writes 64 KiB at a time into a socket nobody reads: the second write would take the
    // queued bytes past the 100 KiB limit, and the socket's buffer alone would take four.
    let source = r#"(module
      (import "nebulet" "socket_create" (func $create (param i32 i32 i32) (result i32)))
      (import "nebulet" "socket_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "nebulet" "process_exit" (func $exit (param i32)))
      (memory (export "memory") 2)
      (func (export "_start")
        (if (call $create (i32.const 0) (i32.const 0) (i32.const 4)) (then (call $exit (i32.const 101))))
        (if (call $write (i32.load (i32.const 0)) (i32.const 1024) (i32.const 65536) (i32.const 8))
          (then (call $exit (i32.const 102))))
        (if (i32.ne (i32.load (i32.const 8)) (i32.const 65536)) (then (call $exit (i32.const 103))))
        (call $exit (i32.sub (i32.const 0)
          (call $write (i32.load (i32.const 0)) (i32.const 1024) (i32.const 65536) (i32.const 8))))))"#;
    let options = ProcessOptions { name: "socket-flood".into(), ..Default::default() };
    let limits = [(nebulet_abi::Limit::QueuedBytes, 100 << 10)];
    let process = system
        .emulator
        .kernel()
        .spawn_with_limits(system.module(source), options, &limits, None)
        .unwrap();
    let status = system.wait(&process);
    let meanings = "101-103: the setup failed; 0: the second write was taken past the limit; \
                    3 (ERR_NO_RESOURCES): refused";
    assert_exited(&status, -nebulet_abi::Error::NoResources.code(), meanings, &system);
    assert_all_gone(&system);
}

/// One `poll_oneoff` of 65,537 clock subscriptions (which must be `EINVAL`), then one of 65,536,
/// each ready at once; exits with the second call's errno, or 1000 + the first's if it was not
/// `EINVAL`.
const MANY_SUBSCRIPTIONS: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 84)
  (func (export "_start")
    (local $errno i32)
    ;; Zeroed subscriptions at 0: relative realtime clocks with a timeout of 0.
    (local.set $errno (call $poll (i32.const 0) (i32.const 3200000) (i32.const 65537) (i32.const 5400000)))
    (if (i32.ne (local.get $errno) (i32.const 28))
      (then (call $exit (i32.add (i32.const 1000) (local.get $errno)))))
    (call $exit (call $poll (i32.const 0) (i32.const 3200000) (i32.const 65536) (i32.const 5400000)))))"#;

/// Runs [`MANY_SUBSCRIPTIONS`] with `limits`; returns its exit status.
fn many_subscriptions(system: &System, limits: &[(nebulet_abi::Limit, u64)]) -> ExitStatus {
    let options = ProcessOptions { name: "subscriptions".into(), ..Default::default() };
    let process = system
        .emulator
        .kernel()
        .spawn_with_limits(system.module(MANY_SUBSCRIPTIONS), options, limits, None)
        .unwrap();
    system.wait(&process)
}

#[test]
fn poll_oneoff_takes_at_most_65536_subscriptions_and_charges_what_it_holds() {
    let system = System::new();
    let meanings = "1000 + errno: 65,537 subscriptions were not EINVAL; else the errno of 65,536";
    assert_exited(&many_subscriptions(&system, &[]), 0, meanings, &system);
    // The process's memory (84 pages) and 3 MiB more: not the 8 MiB that 65,536 take.
    let memory = 84 * 65_536 + (3 << 20);
    let status = many_subscriptions(&system, &[(nebulet_abi::Limit::MemoryBytes, memory)]);
    assert_exited(&status, ENOMEM, meanings, &system);
    assert_all_gone(&system);
}
