;; Asks for 200 pages (12.5 MiB) at start.
(module (memory (export "memory") 200) (func (export "_start")))
