(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (local $index i32)
    (memory.fill (i32.const 65536) (i32.const 46) (i32.const 65536))
    (loop $iovecs
      (i32.store (i32.shl (local.get $index) (i32.const 3)) (i32.const 65536))
      (i32.store (i32.add (i32.shl (local.get $index) (i32.const 3)) (i32.const 4)) (i32.const 65536))
      (local.set $index (i32.add (local.get $index) (i32.const 1)))
      (br_if $iovecs (i32.lt_u (local.get $index) (i32.const 1024))))
    (loop $forever
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1024) (i32.const 8192)))
      (br $forever))))
