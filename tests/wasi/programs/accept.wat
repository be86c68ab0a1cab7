;; sock_accept on fd 3 (the first stream), then proc_exit with the errno it returned.
(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (call $accept (i32.const 3) (i32.const 0) (i32.const 16)))))
