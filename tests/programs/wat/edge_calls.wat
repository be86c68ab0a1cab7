;; Edge cases the libc hides, one per run, chosen by the first letter of argv[1].
;; Prints "before <letter>" and then, if the call returns, "returned <errno>".
;; Bad enum values and bad pointers must never succeed: wasmtime traps on most of them,
;; a runtime may instead return an errno (INVAL=28, FAULT=21, OVERFLOW=61), but never 0.
;;
;;   c  clock_time_get with clock id 7           w  fd_seek with whence 9
;;   a  fd_advise with advice 200                 o  path_open with unknown oflags bits
;;   r  path_open with unknown rights bits        f  fd_fdstat_set_flags unknown bits
;;   i  fd_write with the iovec array out of bounds
;;   b  fd_write with an iovec buffer out of bounds
;;   p  random_get past the end of memory         t  clock_time_get result out of bounds
;;   u  fd_tell result at an unaligned address    n  path_open with a path out of bounds
;;   l  fd_write with ~4 GiB of iovecs (len overflow)
;;   x  fd_read into memory past the end          e  proc_raise(SIGABRT)
;;   g  args_get with pointers out of bounds      s  path_open with invalid UTF-8
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_tell" (func $fd_tell (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_advise" (func $fd_advise (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_flags" (func $fd_fdstat_set_flags (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_raise" (func $proc_raise (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x200) "before ?\0a")
  (data (i32.const 0x210) "returned ??\0a")
  (data (i32.const 0x220) "no selector\0a")
  (data (i32.const 0x230) "hello.txt")
  (data (i32.const 0x240) "\ff\fe.txt")

  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0x10) (local.get $ptr))
    (i32.store (i32.const 0x14) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0x10) (i32.const 1) (i32.const 0x18))))

  (func $returned (param $errno i32)
    (i32.store8 (i32.const 0x219) (i32.add (i32.const 48) (i32.div_u (local.get $errno) (i32.const 10))))
    (i32.store8 (i32.const 0x21a) (i32.add (i32.const 48) (i32.rem_u (local.get $errno) (i32.const 10))))
    (call $print (i32.const 0x210) (i32.const 12)))

  ;; open hello.txt under the preopen (fd 3) for read and write; the new fd lands at 0x30
  (func $open_hello (result i32)
    (drop (call $path_open (i32.const 3) (i32.const 1) (i32.const 0x230) (i32.const 9)
      (i32.const 0) (i64.const 0x3FFFFFFF) (i64.const 0x3FFFFFFF) (i32.const 0) (i32.const 0x30)))
    (i32.load (i32.const 0x30)))

  (func $selector (result i32)
    ;; argc at 0x40, buf size at 0x44; argv pointers at 0x400, strings at 0x800
    (drop (call $args_sizes_get (i32.const 0x40) (i32.const 0x44)))
    (if (i32.lt_u (i32.load (i32.const 0x40)) (i32.const 2)) (then (return (i32.const 0))))
    (drop (call $args_get (i32.const 0x400) (i32.const 0x800)))
    (i32.load8_u (i32.load (i32.const 0x404))))

  (func (export "_start")
    (local $sel i32) (local $r i32) (local $fd i32)
    (local.set $sel (call $selector))
    (if (i32.eqz (local.get $sel))
      (then (call $print (i32.const 0x220) (i32.const 12)) (return)))
    (local.set $fd (call $open_hello))
    (i32.store8 (i32.const 0x207) (local.get $sel))
    (call $print (i32.const 0x200) (i32.const 9))
    (local.set $r (i32.const 99))
    (block $done
      (if (i32.eq (local.get $sel) (i32.const 0x63)) ;; c
        (then (local.set $r (call $clock_time_get (i32.const 7) (i64.const 1) (i32.const 0x50))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x77)) ;; w
        (then (local.set $r (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 9) (i32.const 0x50))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x61)) ;; a
        (then (local.set $r (call $fd_advise (local.get $fd) (i64.const 0) (i64.const 1) (i32.const 200))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x6f)) ;; o
        (then (local.set $r (call $path_open (i32.const 3) (i32.const 1) (i32.const 0x230) (i32.const 9)
          (i32.const 0x100) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0x50))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x72)) ;; r
        (then (local.set $r (call $path_open (i32.const 3) (i32.const 1) (i32.const 0x230) (i32.const 9)
          (i32.const 0) (i64.const -1) (i64.const 0) (i32.const 0) (i32.const 0x50))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x66)) ;; f
        (then (local.set $r (call $fd_fdstat_set_flags (local.get $fd) (i32.const 0x4000))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x69)) ;; i
        (then (local.set $r (call $fd_write (i32.const 1) (i32.const 0xFFFC) (i32.const 2) (i32.const 0x50))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x62)) ;; b
        (then
          (i32.store (i32.const 0x60) (i32.const 0xFFF0))
          (i32.store (i32.const 0x64) (i32.const 0x100))
          (local.set $r (call $fd_write (i32.const 1) (i32.const 0x60) (i32.const 1) (i32.const 0x50))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x70)) ;; p
        (then (local.set $r (call $random_get (i32.const 0xFF00) (i32.const 0x200))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x74)) ;; t
        (then (local.set $r (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 0xFFFC))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x75)) ;; u
        (then (local.set $r (call $fd_tell (local.get $fd) (i32.const 0x51))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x6e)) ;; n
        (then (local.set $r (call $path_open (i32.const 3) (i32.const 1) (i32.const 0xFFF8) (i32.const 0x100)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0x50))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x6c)) ;; l
        (then (local.set $r (call $fd_write (i32.const 1) (i32.const 0x60) (i32.const 0x20000000) (i32.const 0x50))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x78)) ;; x
        (then
          (i32.store (i32.const 0x60) (i32.const 0xFFFF))
          (i32.store (i32.const 0x64) (i32.const 0x10))
          (local.set $r (call $fd_read (local.get $fd) (i32.const 0x60) (i32.const 1) (i32.const 0x50))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x65)) ;; e
        (then (local.set $r (call $proc_raise (i32.const 6))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x67)) ;; g
        (then (local.set $r (call $args_get (i32.const 0xFFFE) (i32.const 0x800))) (br $done)))
      (if (i32.eq (local.get $sel) (i32.const 0x73)) ;; s
        (then (local.set $r (call $path_open (i32.const 3) (i32.const 1) (i32.const 0x240) (i32.const 6)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0x50))) (br $done))))
    (call $returned (local.get $r))))
