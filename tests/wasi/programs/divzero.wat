;; Traps with "integer divide by zero" inside a function named foo.
(module
  (memory (export "memory") 1)
  (func $foo (param i32) (result i32) (i32.div_s (i32.const 1) (local.get 0)))
  (func (export "_start") (drop (call $foo (i32.const 0)))))
