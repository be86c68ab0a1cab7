;; A library, not a command: no _start.
(module (memory (export "memory") 1) (func (export "main")))
