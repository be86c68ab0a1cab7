"""The ``donjon`` command's entry point: a lean start for ``run-wasm``, else the full CLI.

``donjon run-wasm hello.wasm`` should start about as fast as Python itself
(``bench/wasi_startup.py``). The full command imports click and every option
type first; this entry reads a plain ``run-wasm`` command line itself
(:func:`donjon.cli.run_wasm_core.parse_argv`) and runs it with only the WASI
host loaded. Anything else, and any ``run-wasm`` line the lean reader is not
sure about (``--help``, a usage error), goes to :func:`donjon.cli.main.main`,
which answers exactly as before.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # ``typing`` costs milliseconds to import; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run-wasm"]:
        import gc

        # Start-up creates thousands of objects that live as long as the process;
        # collecting while importing finds nothing, and frozen they are never
        # scanned again (the collector ran a tenth of the start-up instructions).
        gc.disable()
        try:
            from donjon.cli import run_wasm_core

            options = run_wasm_core.parse_argv(args[1:])
            if options is not None:
                run_wasm_core.load_host()
        finally:
            gc.freeze()
            gc.enable()
        if options is not None:
            try:
                run_wasm_core.execute(options)
            except (Exception, KeyboardInterrupt) as exc:
                from donjon.cli import failure

                sys.exit(failure.report(exc))
    from donjon.cli.main import main as full

    return full(argv)
