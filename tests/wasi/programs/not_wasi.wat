;; Imports something that is not WASI.
(module
  (import "env" "do_thing" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
