;; proc_exit with the status given as the first byte of argv[1] minus '0', times 10,
;; plus the second digit: "7" -> 7, "99" -> 99; "x" (anything else) -> 200.
(module
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $p i32) (local $c i32) (local $n i32)
    (drop (call $args_get (i32.const 0) (i32.const 64)))
    (local.set $p (i32.load (i32.const 4)))
    (block $done
      (loop $digits
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.eqz (local.get $c)))
        (if (i32.or (i32.lt_u (local.get $c) (i32.const 48)) (i32.gt_u (local.get $c) (i32.const 57)))
          (then (call $exit (i32.const 200))))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10))
                               (i32.sub (local.get $c) (i32.const 48))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $digits)))
    (call $exit (local.get $n))))
