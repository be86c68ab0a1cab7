"""How the ``donjon`` command reports a failure: one line on stderr and an exit code.

Shared by the full command (:mod:`donjon.cli.main`) and the lean ``run-wasm``
start (:mod:`donjon.cli.entry`), so both say the same thing for the same
failure. It imports nothing until something failed: ``click`` (which prints the
lines, as the rest of the command does) is loaded only then.
"""

from __future__ import annotations

import os

from donjon.errors import DonjonError
from donjon.escape import escape

#: exit codes that are not a DonjonError's own
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_OS_ERROR = 1
EXIT_INTERNAL = 70


def report(exc: BaseException) -> int:
    """Print ``exc`` as one or two lines, never a traceback, and return the exit code.

    An unexpected exception is re-raised when ``DONJON_DEBUG`` is set, to show
    its traceback.
    """
    lines: list[str] = []
    if isinstance(exc, DonjonError):
        # Messages may quote a peer's certificate or a CSR: one line, whatever they hold.
        lines.append(f"donjon: error: {escape(exc.message)}")
        if exc.hint:
            lines.append(f"donjon: hint: {escape(exc.hint)}")
        code = exc.exit_code
    elif isinstance(exc, KeyboardInterrupt):
        lines.append("donjon: interrupted")
        code = EXIT_INTERRUPTED
    elif isinstance(exc, BrokenPipeError):
        code = EXIT_BROKEN_PIPE
    elif isinstance(exc, OSError):
        # A full disk, a closed socket, a permission problem: say which and where.
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        lines.append(f"donjon: error: {exc.strerror or exc}{where}")
        code = EXIT_OS_ERROR
    else:
        # A bug of ours, not the user's input: still one line, with the way to see more.
        if os.environ.get("DONJON_DEBUG"):
            raise exc
        lines.append(
            f"donjon: internal error: {type(exc).__name__}: {exc} "
            "(set DONJON_DEBUG=1 for the traceback, and please report it)"
        )
        code = EXIT_INTERNAL
    if lines:
        import click

        for line in lines:
            click.echo(line, err=True)
    return code
