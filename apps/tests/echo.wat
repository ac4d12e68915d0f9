;; Echoes every message on its bootstrap channel, handles included, until the peer closes;
;; waits for room when the peer's queue is full. The domain tests and the domain bench run it.
(module
    (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
    (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
    (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
    (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 2)
    (func (export "_start") (local $h i32) (local $status i32)
      (drop (call $bootstrap (i32.const 0)))
      (local.set $h (i32.load (i32.const 0)))
      (loop $next
        (drop (call $wait (local.get $h) (i32.const 5) (i64.const 0x7fffffffffffffff) (i32.const 4)))
        (local.set $status (call $read (local.get $h) (i32.const 1024) (i32.const 65536)
          (i32.const 16) (i32.const 64) (i32.const 8) (i32.const 12)))
        (if (i32.eq (local.get $status) (i32.const -24)) (then (return)))
        (if (i32.eqz (local.get $status)) (then
          (loop $send
            (local.set $status (call $write (local.get $h) (i32.const 1024) (i32.load (i32.const 8))
              (i32.const 16) (i32.load (i32.const 12))))
            (if (i32.eq (local.get $status) (i32.const -22)) (then
              (drop (call $wait (local.get $h) (i32.const 6) (i64.const 0x7fffffffffffffff) (i32.const 4)))
              (br $send))))
          (if (local.get $status) (then unreachable))))
        (br $next)))
    )
