//! Many processes on one host: the shared placement (memories and stacks carved from shared
//! reservations, no mapping per process), and a million processes that each exchange a message.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};

use nebulet_abi::ExitReason;
use nebulet_hosted::{
    Console, Emulator, EngineOptions, ProcessOptions, ProcessRef, SocketEnd, Stdio,
};

use crate::PATIENCE;

/// The many-processes engine (as `cargo xtask bench`'s dense one).
fn dense() -> Emulator {
    let console = Arc::new(Mutex::new(Vec::new()));
    Emulator::with_options(Console::Buffer(console), EngineOptions::dense())
        .expect("the kernel starts")
}

/// Reads one byte from stdin, writes it back plus one on stdout, and exits 0.
const ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 1))
    (if (i32.ne (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 0))
      (then unreachable))
    (if (i32.ne (i32.load (i32.const 8)) (i32.const 1)) (then unreachable))
    (i32.store8 (i32.const 16) (i32.add (i32.load8_u (i32.const 16)) (i32.const 1)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// A started echo process and the host's ends of its stdin and stdout.
struct Echo {
    process: ProcessRef,
    input: Arc<SocketEnd>,
    output: Arc<SocketEnd>,
}

/// Starts `count` echo processes, all blocked in their read at once, then gives each a byte,
/// checks each answer and exit, and that nothing is left afterwards.
fn exchange_with(emulator: &Emulator, count: usize) {
    let module = emulator.compile(ECHO.as_bytes()).unwrap();
    let kernel = emulator.kernel();
    let mut echoes = Vec::with_capacity(count);
    for index in 0..count {
        let (input, process_input) = SocketEnd::pair();
        let (output, process_output) = SocketEnd::pair();
        let (_error, process_error) = SocketEnd::pair();
        let stdio = Stdio { input: process_input, output: process_output, error: process_error };
        let options =
            ProcessOptions { name: "echo".into(), stdio: Some(stdio), ..Default::default() };
        let process = kernel.spawn(module.clone(), options);
        echoes.push(Echo { process, input, output });
        if (index + 1) % 100_000 == 0 {
            eprintln!("scale: {} processes started", index + 1);
        }
    }
    assert_eq!(kernel.live_processes(), count, "every process is alive at once");
    for (index, echo) in echoes.iter().enumerate() {
        let byte = [index as u8];
        let written = emulator.block_on(poll_fn(|context| echo.input.poll_write(context, &byte)));
        assert_eq!(written, Some(1));
    }
    for (index, echo) in echoes.drain(..).enumerate() {
        let mut answer = [0u8; 1];
        let read = emulator.block_on(async {
            tokio::time::timeout(
                PATIENCE,
                poll_fn(|context| echo.output.poll_read(context, &mut answer)),
            )
            .await
            .expect("an answer within the patience")
        });
        assert_eq!((read, answer[0]), (1, (index as u8).wrapping_add(1)), "process {index}");
        let status = emulator.block_on(echo.process.wait());
        assert_eq!((status.reason, status.code), (ExitReason::Exited, 0), "{status:?}");
    }
    assert_eq!(kernel.live_processes(), 0);
    assert_eq!(kernel.live_threads(), 0);
    assert_eq!(kernel.scheduler_in_use(), (0, 0));
}

#[test]
fn processes_in_the_shared_placement_exchange_messages_and_leave_nothing() {
    exchange_with(&dense(), 2_000);
}

#[test]
#[ignore = "slow: a million processes (about 20 GB of memory); run with --ignored scale"]
fn a_million_processes_start_exchange_a_message_and_exit() {
    let count = std::env::var("NEBULET_SCALE_PROCESSES")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(1_000_000);
    exchange_with(&dense(), count);
}

/// Grows its memory across several slot sizes of the shared placement (1, 3, 9, 40 pages; each
/// growth past a slot moves the memory), checking after each that what it wrote (and its data
/// segment) is still there and that new pages read as zero. Exits with the number of the failed
/// check, or 0.
const GROWER: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "segment")
  (func $check (param $ok i32) (param $code i32)
    (if (i32.eqz (local.get $ok)) (then (call $exit (local.get $code)))))
  (func (export "_start")
    (i32.store (i32.const 65532) (i32.const 0x11223344))
    (drop (memory.grow (i32.const 2)))
    (call $check (i32.eq (i32.load (i32.const 65532)) (i32.const 0x11223344)) (i32.const 1))
    (call $check (i32.eq (i32.load8_u (i32.const 100)) (i32.const 115)) (i32.const 2))
    (call $check (i32.eqz (i32.load (i32.const 196604))) (i32.const 3))
    (i32.store (i32.const 196604) (i32.const 7))
    (drop (memory.grow (i32.const 6)))
    (call $check (i32.eq (i32.load (i32.const 196604)) (i32.const 7)) (i32.const 4))
    (drop (memory.grow (i32.const 31)))
    (call $check (i32.eq (memory.size) (i32.const 40)) (i32.const 5))
    (call $check (i32.eq (i32.load (i32.const 65532)) (i32.const 0x11223344)) (i32.const 6))
    (call $check (i32.eq (i32.load (i32.const 196604)) (i32.const 7)) (i32.const 7))
    (call $check (i32.eqz (i32.load (i32.const 2621436))) (i32.const 8))
    (i32.store (i32.const 2621436) (i32.const 9))
    (call $check (i32.eq (i32.load (i32.const 2621436)) (i32.const 9)) (i32.const 9))))"#;

#[test]
fn memories_in_the_shared_placement_grow_move_and_keep_their_bytes() {
    let emulator = dense();
    let module = emulator.compile(GROWER.as_bytes()).unwrap();
    // Several at once, so their slots neighbour each other and a stray write would show.
    let processes: Vec<_> = (0..8)
        .map(|_| emulator.kernel().spawn(module.clone(), ProcessOptions::default()))
        .collect();
    for process in processes {
        let status = emulator.block_on(process.wait());
        assert_eq!((status.reason, status.code), (ExitReason::Exited, 0), "{status:?}");
    }
    // An access past the end still traps: bounds are checked on every load and store.
    let past_end = r#"(module (memory (export "memory") 1)
      (func (export "_start") (drop (i32.load (i32.const 65534)))))"#;
    let module = emulator.compile(past_end.as_bytes()).unwrap();
    let status = emulator.run(module, ProcessOptions::default());
    assert_eq!(status.reason, ExitReason::Trapped, "{status:?}");
}
