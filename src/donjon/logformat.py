"""Log lines whose quotes cannot start lines of their own, for every donjon process.

A log line may quote a request, a peer's certificate or evidence (a refused
client's reason, a secret name from a request's path). Every process that
logs for an operator, the Steward's spawned workers too, formats through
:class:`EscapingFormatter`, so such a quote stays on its line.
"""

from __future__ import annotations

import logging

from donjon.escape import escape


class EscapingFormatter(logging.Formatter):
    """Escapes the formatted message (``donjon.escape``): one record, one line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


__all__ = ["EscapingFormatter"]
