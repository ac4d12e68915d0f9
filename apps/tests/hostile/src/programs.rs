//! The hostile children, as WAT text (the hosted kernel compiles text), each with the meaning
//! of its exit codes.

/// Grows its second memory by 1 MiB at a time until refused, then tries its first.
pub const TWO_MEMORIES: &str = r#"(module
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory $zero (export "memory") 1)
  (memory $one 0)
  (func (export "_start")
    (local $grown i32)
    (block $refused
      (loop $grow
        (br_if $refused (i32.eq (memory.grow $one (i32.const 16)) (i32.const -1)))
        (local.set $grown (i32.add (local.get $grown) (i32.const 1)))
        (br_if $grow (i32.lt_u (local.get $grown) (i32.const 64)))))
    (if (i32.eqz (local.get $grown)) (then (call $exit (i32.const 1))))
    (if (i32.gt_u (i32.add (memory.size $zero) (memory.size $one)) (i32.const 256))
      (then (call $exit (i32.const 2))))
    (if (i32.ne (memory.grow $zero (i32.const 16)) (i32.const -1)) (then (call $exit (i32.const 3))))
    (call $exit (i32.const 0))))"#;
pub const TWO_MEMORIES_CODES: &str = "1: memory 1 never got 1 MiB, 2: the two memories together \
     passed the 16 MiB limit, 3: memory 0 grew by 1 MiB after memory 1 was refused";

/// A threaded module whose every thread instance has a private memory: the main thread grows
/// its own by 10 MiB, then a new thread tries to grow its own by 10 MiB.
pub const THREAD_PRIVATE_MEMORY: &str = r#"(module
  (import "env" "memory" (memory 1 16 shared))
  (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory $private 0)
  (func (export "_start")
    (if (i32.eq (memory.grow $private (i32.const 160)) (i32.const -1)) (then (call $exit (i32.const 1))))
    (if (i32.lt_s (call $spawn (i32.const 0)) (i32.const 0)) (then (call $exit (i32.const 2))))
    (loop $wait
      (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1)))
      (br_if $wait (i32.eqz (i32.atomic.load (i32.const 0)))))
    (if (i32.ne (i32.atomic.load (i32.const 4)) (i32.const -1)) (then (call $exit (i32.const 3))))
    (call $exit (i32.const 0)))
  (func (export "wasi_thread_start") (param i32 i32)
    (i32.atomic.store (i32.const 4) (memory.grow $private (i32.const 160)))
    (i32.atomic.store (i32.const 0) (i32.const 1))
    (drop (memory.atomic.notify (i32.const 0) (i32.const 1)))))"#;
pub const THREAD_PRIVATE_MEMORY_CODES: &str = "1: the main thread's private memory did not get \
     10 MiB, 2: thread-spawn failed, 3: the second thread's private memory grew by 10 MiB past \
     the 16 MiB limit";

/// Defines its own shared memory.
pub const DEFINES_SHARED_MEMORY: &str = r#"(module (memory 1 1 shared) (func (export "_start")))"#;
/// Imports its shared memory (as threaded modules do).
pub const IMPORTS_SHARED_MEMORY: &str =
    r#"(module (import "env" "memory" (memory 1 1 shared)) (func (export "_start")))"#;

/// Grows its table by 268,000,000 elements, then by 1,000.
pub const TABLE_GROWS: &str = r#"(module
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (table $table 0 funcref)
  (func (export "_start")
    (if (i32.ne (table.grow $table (ref.null func) (i32.const 268000000)) (i32.const -1))
      (then (call $exit (i32.const 1))))
    (if (i32.ne (table.grow $table (ref.null func) (i32.const 1000)) (i32.const 0))
      (then (call $exit (i32.const 2))))
    (call $exit (i32.const 0))))"#;
pub const TABLE_GROWS_CODES: &str = "1: 268,000,000 table elements were given under a 16 MiB \
     limit, 2: 1,000 elements were refused";

/// `value` as a 5-byte LEB128 (padded), in WAT string escapes.
fn padded_leb128(value: u32) -> String {
    (0..5)
        .map(|index| {
            let group = (value >> (7 * index)) & 0x7f;
            format!("\\{:02x}", if index < 4 { group | 0x80 } else { group })
        })
        .collect()
}

/// Builds, at the start of its memory, a wasm module with one data segment of `data_bytes`
/// zero bytes (its memory section declares enough pages for it), then compiles it: expected
/// `ERR_NO_RESOURCES`. Then it compiles an empty module (expected `OK`) and exits 0.
pub fn compiles_big_module(data_bytes: u32) -> String {
    let pages = data_bytes.div_ceil(65_536) + 1;
    // 8 header + 6 memory section (pages < 2^14: a 2-byte LEB) + 1 id + 5 size + 10 segment.
    let module_bytes = 30 + data_bytes;
    format!(
        r#"(module
  (import "nebulet" "module_compile" (func $compile (param i32 i32 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\00asm\01\00\00\00\05\04\01\00\{low:02x}\{high:02x}\0b{size}\01\00\41\00\0b{data}")
  (func (export "_start")
    (local $status i32)
    (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then (call $exit (i32.const 1))))
    ;; An empty module, far from the big one's header.
    (i64.store (i32.const 65536) (i64.const 0x000000016d736100))
    (local.set $status (call $compile (i32.const 0) (i32.const {module_bytes}) (i32.const 32768)))
    (if (i32.eqz (local.get $status)) (then (call $exit (i32.const 2))))
    (if (i32.ne (local.get $status) (i32.const -3)) (then (call $exit (i32.const 3))))
    (if (call $compile (i32.const 65536) (i32.const 8) (i32.const 32768)) (then (call $exit (i32.const 4))))
    (call $exit (i32.const 0))))"#,
        low = (pages & 0x7f) | 0x80,
        high = pages >> 7,
        size = padded_leb128(data_bytes + 10),
        data = padded_leb128(data_bytes),
    )
}
pub const COMPILES_BIG_MODULE_CODES: &str = "1: its memory could not hold the module's bytes, \
     2: the big module compiled under a 64 MiB limit, 3: the big module failed with another \
     status than ERR_NO_RESOURCES, 4: an empty module did not compile afterwards";

/// Grows its memory by 64 MiB (expected -1 inside a 32 MiB parent), then by 1 MiB.
pub const GROWS_64_MIB: &str = r#"(module
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.ne (memory.grow (i32.const 1024)) (i32.const -1)) (then (call $exit (i32.const 1))))
    (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then (call $exit (i32.const 2))))
    (call $exit (i32.const 0))))"#;
pub const GROWS_64_MIB_CODES: &str = "the relay gives its child's code: 1: the child grew by 64 \
     MiB inside a parent limited to 32 MiB, 2: the child could not grow by 1 MiB; from 100 the \
     relay failed (101 bootstrap, 102 read, 103 create, 104 start, 105 wait, 106 info), from \
     200: 200 + the child's exit reason";

/// Reads a module handle from its bootstrap channel, runs one child of it with default limits,
/// and exits with the child's exit code (200 + its exit reason if it did not exit).
pub const RELAY: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_create" (func $create (param i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_start" (func $start (param i32 i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "object_get_info" (func $info (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $bootstrap (i32.const 0)) (then (call $exit (i32.const 101))))
    (if (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 64) (i32.const 4) (i32.const 1) (i32.const 0) (i32.const 0))
      (then (call $exit (i32.const 102))))
    (if (call $create (i32.load (i32.const 4)) (i32.const 0) (i32.const 0) (i32.const 8)) (then (call $exit (i32.const 103))))
    (if (call $start (i32.load (i32.const 8)) (i32.const 0)) (then (call $exit (i32.const 104))))
    (if (call $wait (i32.load (i32.const 8)) (i32.const 16) (i64.const 0x7fffffffffffffff) (i32.const 0))
      (then (call $exit (i32.const 105))))
    (if (call $info (i32.load (i32.const 8)) (i32.const 2) (i32.const 16) (i32.const 32) (i32.const 0))
      (then (call $exit (i32.const 106))))
    (if (i32.ne (i32.load (i32.const 24)) (i32.const 1))
      (then (call $exit (i32.add (i32.const 200) (i32.load (i32.const 24))))))
    (call $exit (i32.load (i32.const 20)))))"#;

/// Creates channels and writes one empty message into each (keeping both ends), until a
/// write is refused or 5,000 were written.
pub const ZERO_BYTE_FLOOD: &str = r#"(module
  (import "nebulet" "channel_create" (func $channel (param i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $count i32) (local $status i32)
    (block $refused
      (loop $more
        (if (call $channel (i32.const 0) (i32.const 4)) (then (call $exit (i32.const 3))))
        (local.set $status (call $write (i32.load (i32.const 0)) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
        (br_if $refused (local.get $status))
        (local.set $count (i32.add (local.get $count) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $count) (i32.const 5000)))
        (call $exit (i32.const 1))))
    (if (i32.ne (local.get $status) (i32.const -3)) (then (call $exit (i32.const 2))))
    (if (i32.gt_u (local.get $count) (i32.const 1024)) (then (call $exit (i32.const 4))))
    (call $exit (i32.const 0))))"#;
pub const ZERO_BYTE_FLOOD_CODES: &str = "1: 5,000 empty messages were queued under a 64 KiB \
     limit, 2: a write failed with another status than ERR_NO_RESOURCES, 3: channel_create \
     failed, 4: more than 1,024 were queued before ERR_NO_RESOURCES";

/// The depth at which a replicator stops without trying to create: the kernel let the chain
/// grow this deep.
pub const REPLICATOR_GUARD: i32 = 64;
/// The exit code of the replicator at the guard.
pub const REPLICATOR_TOO_DEEP: i32 = 9000;

/// One link of a chain: reads its depth (u32) and its own module handle from its bootstrap
/// channel, creates a child of the same module one level deeper, passes both on, waits for it
/// and exits with its exit code + 1. A link whose `process_create` fails exits with
/// `-status × 1000` (3000 for ERR_NO_RESOURCES); at depth 64 a link exits 9000 without trying.
pub const REPLICATOR: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "channel_create" (func $channel (param i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "handle_duplicate" (func $duplicate (param i32 i32 i32) (result i32)))
  (import "nebulet" "process_create" (func $create (param i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_start" (func $start (param i32 i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "object_get_info" (func $info (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  ;; 0 bootstrap, 4 depth, 8 module, 12 child, 16/20 channel, 24 module copy, 32.. info
  (func (export "_start")
    (local $status i32)
    (if (call $bootstrap (i32.const 0)) (then (call $exit (i32.const 101))))
    (if (call $read (i32.load (i32.const 0)) (i32.const 4) (i32.const 4) (i32.const 8) (i32.const 1) (i32.const 0) (i32.const 0))
      (then (call $exit (i32.const 102))))
    (if (i32.ge_u (i32.load (i32.const 4)) (i32.const 64)) (then (call $exit (i32.const 9000))))
    (local.set $status (call $create (i32.load (i32.const 8)) (i32.const 0) (i32.const 0) (i32.const 12)))
    (if (local.get $status) (then (call $exit (i32.mul (i32.sub (i32.const 0) (local.get $status)) (i32.const 1000)))))
    (if (call $channel (i32.const 16) (i32.const 20)) (then (call $exit (i32.const 103))))
    (if (call $duplicate (i32.load (i32.const 8)) (i32.const 0x80000000) (i32.const 24)) (then (call $exit (i32.const 104))))
    (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1)))
    (if (call $write (i32.load (i32.const 16)) (i32.const 4) (i32.const 4) (i32.const 24) (i32.const 1))
      (then (call $exit (i32.const 105))))
    (if (call $start (i32.load (i32.const 12)) (i32.load (i32.const 20))) (then (call $exit (i32.const 106))))
    (if (call $wait (i32.load (i32.const 12)) (i32.const 16) (i64.const 0x7fffffffffffffff) (i32.const 0))
      (then (call $exit (i32.const 107))))
    (if (call $info (i32.load (i32.const 12)) (i32.const 2) (i32.const 32) (i32.const 32) (i32.const 0))
      (then (call $exit (i32.const 108))))
    (if (i32.ne (i32.load (i32.const 40)) (i32.const 1))
      (then (call $exit (i32.add (i32.const 8000) (i32.load (i32.const 40))))))
    (call $exit (i32.add (i32.load (i32.const 36)) (i32.const 1)))))"#;
pub const REPLICATOR_CODES: &str = "from 101 to 108: a link's own call failed, 1000 × -status + \
     levels: a process_create failed, 8000 + reason: a link did not exit, 9000 + levels: the \
     guard at depth 64";

/// The name [`LEAVES_A_NAME`] registers.
pub const LEFT_NAME: &str = "hostile-left-behind";

/// Registers `hostile-left-behind`, sends the server end of its channel to its parent (so that
/// endpoint outlives it) and exits 0.
pub const LEAVES_A_NAME: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_create" (func $channel (param i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "service_register" (func $register (param i32 i32 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hostile-left-behind")
  (func (export "_start")
    (if (call $bootstrap (i32.const 0)) (then (call $exit (i32.const 1))))
    (if (call $channel (i32.const 4) (i32.const 8)) (then (call $exit (i32.const 2))))
    (if (call $register (i32.const 64) (i32.const 19) (i32.load (i32.const 8))) (then (call $exit (i32.const 3))))
    (if (call $write (i32.load (i32.const 0)) (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 1))
      (then (call $exit (i32.const 4))))
    (call $exit (i32.const 0))))"#;
pub const LEAVES_A_NAME_CODES: &str =
    "1: bootstrap, 2: channel_create, 3: service_register, 4: channel_write failed";

/// Writes 1,024 iovecs that alias one 64 KiB buffer to stdout, forever.
pub const WRITES_FOREVER: &str = include_str!("writes_forever.wat");

/// Spawns a thread that waits for a flag, then a second one; releases the first and exits.
pub const SPAWNS_THREADS: &str = r#"(module
  (import "env" "memory" (memory 1 1 shared))
  (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (func (export "_start")
    (local $second i32)
    (if (i32.lt_s (call $spawn (i32.const 0)) (i32.const 0)) (then (call $exit (i32.const 1))))
    (local.set $second (call $spawn (i32.const 0)))
    (i32.atomic.store (i32.const 0) (i32.const 1))
    (drop (memory.atomic.notify (i32.const 0) (i32.const 2)))
    (if (i32.ge_s (local.get $second) (i32.const 0)) (then (call $exit (i32.const 2))))
    (call $exit (i32.const 0)))
  (func (export "wasi_thread_start") (param i32 i32)
    (loop $wait
      (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1)))
      (br_if $wait (i32.eqz (i32.atomic.load (i32.const 0)))))))"#;
pub const SPAWNS_THREADS_CODES: &str = "1: the first thread-spawn failed, 2: a third thread \
     started under a limit of 2 threads";

/// A spawn bomb: reads its generation (u32), the last generation (u32) and its own WAT text
/// from its bootstrap channel, compiles the text, and keeps two children of it alive (one
/// generation deeper) forever, starting a new one whenever one ends; after a failed call it
/// prints `bomb: ERR_NO_RESOURCES` once (if that was the status) and retries 5 ms later. A
/// process of the last generation only sleeps: a guard that bounds the bomb (2^(last + 1) - 1
/// processes) when the kernel does not.
pub const BOMB: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "channel_create" (func $channel (param i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "module_compile" (func $compile (param i32 i32 i32) (result i32)))
  (import "nebulet" "process_create" (func $create (param i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_start" (func $start (param i32 i32) (result i32)))
  (import "nebulet" "handle_close" (func $close (param i32) (result i32)))
  (import "nebulet" "object_wait_many" (func $wait_many (param i32 i32 i64) (result i32)))
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (import "nebulet" "clock_monotonic" (func $now (result i64)))
  (import "nebulet" "debug_write" (func $debug (param i32 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  ;; 0 bootstrap, 4 message length, 8 module, 12/16 channel, 20 new process,
  ;; 32.. two wait items (handle, signals, pending) whose handle is 0 when the slot is free,
  ;; 64 the report, 65536 the message: generation, last generation, then this module's text.
  (data (i32.const 64) "bomb: ERR_NO_RESOURCES\n")
  (global $reported (mut i32) (i32.const 0))
  (func $failed (param $status i32)
    (if (i32.and (i32.eq (local.get $status) (i32.const -3)) (i32.eqz (global.get $reported)))
      (then
        (global.set $reported (i32.const 1))
        (drop (call $debug (i32.const 64) (i32.const 23)))))
    (drop (call $sleep (i64.add (call $now) (i64.const 5000000)))))
  (func $spawn (param $slot i32) (result i32)
    (local $status i32)
    (if (i32.eqz (i32.load (i32.const 8)))
      (then
        (local.set $status (call $compile (i32.const 65544) (i32.sub (i32.load (i32.const 4)) (i32.const 8)) (i32.const 8)))
        (if (local.get $status) (then (return (local.get $status))))))
    (local.set $status (call $create (i32.load (i32.const 8)) (i32.const 64) (i32.const 4) (i32.const 20)))
    (if (local.get $status) (then (return (local.get $status))))
    (local.set $status (call $channel (i32.const 12) (i32.const 16)))
    (if (local.get $status)
      (then (drop (call $close (i32.load (i32.const 20)))) (return (local.get $status))))
    (i32.store (i32.const 65536) (i32.add (i32.load (i32.const 65536)) (i32.const 1)))
    (local.set $status (call $write (i32.load (i32.const 12)) (i32.const 65536) (i32.load (i32.const 4)) (i32.const 0) (i32.const 0)))
    (i32.store (i32.const 65536) (i32.sub (i32.load (i32.const 65536)) (i32.const 1)))
    (drop (call $close (i32.load (i32.const 12))))
    (if (i32.eqz (local.get $status))
      (then (local.set $status (call $start (i32.load (i32.const 20)) (i32.load (i32.const 16))))))
    (if (local.get $status)
      (then
        (drop (call $close (i32.load (i32.const 16))))
        (drop (call $close (i32.load (i32.const 20))))
        (return (local.get $status))))
    (i32.store (local.get $slot) (i32.load (i32.const 20)))
    (i32.store (i32.add (local.get $slot) (i32.const 4)) (i32.const 16))
    (i32.const 0))
  (func (export "_start")
    (local $slot i32) (local $status i32)
    (if (call $bootstrap (i32.const 0)) (then (call $exit (i32.const 1))))
    (if (call $read (i32.load (i32.const 0)) (i32.const 65536) (i32.const 65536) (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 0))
      (then (call $exit (i32.const 2))))
    (drop (call $close (i32.load (i32.const 0))))
    (if (i32.ge_u (i32.load (i32.const 65536)) (i32.load (i32.const 65540)))
      (then (drop (call $sleep (i64.const 0x7fffffffffffffff)))))
    (loop $forever
      (local.set $slot (i32.const 0))
      (if (i32.eqz (i32.load (i32.const 44))) (then (local.set $slot (i32.const 44))))
      (if (i32.eqz (i32.load (i32.const 32))) (then (local.set $slot (i32.const 32))))
      (if (local.get $slot)
        (then
          (local.set $status (call $spawn (local.get $slot)))
          (if (local.get $status) (then (call $failed (local.get $status)))))
        (else
          (local.set $status (call $wait_many (i32.const 32) (i32.const 2) (i64.const 0x7fffffffffffffff)))
          (if (local.get $status) (then (call $failed (local.get $status))))
          (if (i32.and (i32.load (i32.const 40)) (i32.const 16))
            (then (drop (call $close (i32.load (i32.const 32)))) (i32.store (i32.const 32) (i32.const 0))))
          (if (i32.and (i32.load (i32.const 52)) (i32.const 16))
            (then (drop (call $close (i32.load (i32.const 44)))) (i32.store (i32.const 44) (i32.const 0))))))
      (br $forever))))"#;

/// The bootstrap message of a bomb's root: generation 0, the last generation, the text.
pub fn bomb_message(last_generation: u32) -> Vec<u8> {
    let mut message = 0u32.to_le_bytes().to_vec();
    message.extend_from_slice(&last_generation.to_le_bytes());
    message.extend_from_slice(BOMB.as_bytes());
    message
}

/// A memory bomb: grows its four memories by 1 MiB in turn, touching every byte, until all
/// four are refused; then writes the MiB it got (u32) to its bootstrap channel and sleeps.
pub const MEMORY_BOMB: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (memory $zero (export "memory") 1)
  (memory $one 0)
  (memory $two 0)
  (memory $three 0)
  (func (export "_start")
    (local $got i32) (local $page i32) (local $refused i32)
    (loop $grow
      (local.set $refused (i32.const 0))
      (local.set $page (memory.grow $zero (i32.const 16)))
      (if (i32.eq (local.get $page) (i32.const -1))
        (then (local.set $refused (i32.add (local.get $refused) (i32.const 1))))
        (else (local.set $got (i32.add (local.get $got) (i32.const 1)))
              (memory.fill $zero (i32.shl (local.get $page) (i32.const 16)) (i32.const 1) (i32.const 1048576))))
      (local.set $page (memory.grow $one (i32.const 16)))
      (if (i32.eq (local.get $page) (i32.const -1))
        (then (local.set $refused (i32.add (local.get $refused) (i32.const 1))))
        (else (local.set $got (i32.add (local.get $got) (i32.const 1)))
              (memory.fill $one (i32.shl (local.get $page) (i32.const 16)) (i32.const 1) (i32.const 1048576))))
      (local.set $page (memory.grow $two (i32.const 16)))
      (if (i32.eq (local.get $page) (i32.const -1))
        (then (local.set $refused (i32.add (local.get $refused) (i32.const 1))))
        (else (local.set $got (i32.add (local.get $got) (i32.const 1)))
              (memory.fill $two (i32.shl (local.get $page) (i32.const 16)) (i32.const 1) (i32.const 1048576))))
      (local.set $page (memory.grow $three (i32.const 16)))
      (if (i32.eq (local.get $page) (i32.const -1))
        (then (local.set $refused (i32.add (local.get $refused) (i32.const 1))))
        (else (local.set $got (i32.add (local.get $got) (i32.const 1)))
              (memory.fill $three (i32.shl (local.get $page) (i32.const 16)) (i32.const 1) (i32.const 1048576))))
      (br_if $grow (i32.lt_u (local.get $refused) (i32.const 4))))
    (i32.store (i32.const 8) (local.get $got))
    (if (i32.eqz (call $bootstrap (i32.const 0)))
      (then (drop (call $write (i32.load (i32.const 0)) (i32.const 8) (i32.const 4) (i32.const 0) (i32.const 0)))))
    (drop (call $sleep (i64.const 0x7fffffffffffffff)))))"#;

/// A table bomb: grows its table by 268,000,000 elements, writes what `table.grow` returned
/// (i32) to its bootstrap channel, and sleeps.
pub const TABLE_BOMB: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
  (memory (export "memory") 1)
  (table $table 0 funcref)
  (func (export "_start")
    (i32.store (i32.const 8) (table.grow $table (ref.null func) (i32.const 268000000)))
    (if (i32.eqz (call $bootstrap (i32.const 0)))
      (then (drop (call $write (i32.load (i32.const 0)) (i32.const 8) (i32.const 4) (i32.const 0) (i32.const 0)))))
    (drop (call $sleep (i64.const 0x7fffffffffffffff)))))"#;

/// Spins without a call.
pub const SPINNER: &str = r#"(module (func (export "_start") (loop $spin (br $spin))))"#;

/// Echoes every message on its bootstrap channel until the peer closes.
pub const PONG: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $bootstrap (i32.const 0)) (then (call $exit (i32.const 1))))
    (loop $serve
      (drop (call $wait (i32.load (i32.const 0)) (i32.const 5) (i64.const 0x7fffffffffffffff) (i32.const 0)))
      (if (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 64) (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 0))
        (then (call $exit (i32.const 0))))
      (drop (call $write (i32.load (i32.const 0)) (i32.const 64) (i32.load (i32.const 4)) (i32.const 0) (i32.const 0)))
      (br $serve))))"#;

/// A jail: starts a child for every message on its bootstrap channel, whose handles are a
/// module and, if there is a second, the child's bootstrap handle; once that channel's peer
/// closes, it kills every child it started and exits. Its budget bounds them all.
pub const JAIL: &str = r#"(module
  (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
  (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
  (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_create" (func $create (param i32 i32 i32 i32) (result i32)))
  (import "nebulet" "process_start" (func $start (param i32 i32) (result i32)))
  (import "nebulet" "process_kill" (func $kill (param i32) (result i32)))
  (import "nebulet" "handle_close" (func $close (param i32) (result i32)))
  (import "nebulet" "process_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  ;; 0 bootstrap, 8 name length, 12 handle count, 16/20 handles, 24 new process,
  ;; 64.. the name, 1024.. the children's handles
  (func (export "_start")
    (local $children i32) (local $index i32)
    (if (call $bootstrap (i32.const 0)) (then (call $exit (i32.const 1))))
    (block $closed
      (loop $serve
        (drop (call $wait (i32.load (i32.const 0)) (i32.const 5) (i64.const 0x7fffffffffffffff) (i32.const 0)))
        (br_if $closed (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 64) (i32.const 16) (i32.const 2) (i32.const 8) (i32.const 12)))
        (if (i32.eqz (call $create (i32.load (i32.const 16)) (i32.const 64) (i32.load (i32.const 8)) (i32.const 24)))
          (then
            (if (i32.eqz (call $start (i32.load (i32.const 24))
                  (select (i32.load (i32.const 20)) (i32.const 0) (i32.eq (i32.load (i32.const 12)) (i32.const 2)))))
              (then
                (i32.store (i32.add (i32.const 1024) (i32.shl (local.get $children) (i32.const 2))) (i32.load (i32.const 24)))
                (local.set $children (i32.add (local.get $children) (i32.const 1)))))))
        (drop (call $close (i32.load (i32.const 16))))
        (br_if $serve (i32.lt_u (local.get $children) (i32.const 256)))))
    (loop $kill
      (if (i32.lt_u (local.get $index) (local.get $children))
        (then
          (drop (call $kill (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $index) (i32.const 2))))))
          (local.set $index (i32.add (local.get $index) (i32.const 1)))
          (br $kill))))
    (call $exit (i32.const 0))))"#;
