;; Grows memory 1 MiB at a time until refused, then traps (as malloc failure + abort).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (block (loop
      (br_if 1 (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
      (br 0)))
    unreachable))
