"""The one exception type that reaches a user as a one-line message.

Every subpackage raises subclasses of :class:`DonjonError` for bad input or a
refused operation. The CLI prints ``donjon: error: <message>`` and exits
non-zero, never a traceback. Messages say what was wrong and where.
"""

from __future__ import annotations


class DonjonError(Exception):
    """A user-facing failure with a one-line, self-explaining message."""

    exit_code: int = 1

    def __init__(
        self, message: str, *, hint: str | None = None, more: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: Further problems found in the same input, one line each (all are reported).
        self.more = more

    def __str__(self) -> str:
        return self.message


class UsageError(DonjonError):
    """Bad input given by the user: a file, a flag or a config value."""

    exit_code = 2
