"""One log format for a long-running command: Donjon's lines and uvicorn's alike.

uvicorn installs its own handlers (``INFO:     Started server process``) unless told
not to; the Steward passes ``log_config=None`` so that uvicorn's records, access
lines included, reach the root handler set up here. ``--log-format json`` writes
one JSON object a line, for log shippers. The Steward's ``--workers`` processes
set up the same handler, and add their process id (``name[pid]``, ``"pid"``).

Log lines quote what others sent (a Keep's package name, a refused client's
reason): every message is escaped to one line (:mod:`donjon.escape`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from donjon.escape import escape

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The same, for one of several worker processes.
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"

#: Libraries whose INFO lines describe their own internals (Alembic's "setup plugin
#: ...", "Context impl SQLiteImpl."): shown from WARNING on, unless the level is DEBUG.
QUIET_BELOW_WARNING = ("alembic",)

#: uvicorn's logger names, as this project names them in its logs.
RENAMED = {"uvicorn.error": "donjon.steward.server", "uvicorn.access": "donjon.steward.access"}


class _Rename(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.name = RENAMED.get(record.name, record.name)
        return True


class EscapingFormatter(logging.Formatter):
    """A log line may quote a peer's certificate (a refused client's reason): escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}`` (and ``"pid"`` for a worker); access
    lines add client, method, path, status."""

    def __init__(self, *, with_pid: bool = False) -> None:
        super().__init__()
        self.with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": escape(record.getMessage()),
        }
        if self.with_pid:
            entry["pid"] = record.process
        args = record.args
        if record.name == RENAMED["uvicorn.access"] and isinstance(args, tuple) and len(args) == 5:
            client, method, path, version, status = args
            entry.update(client=client, method=method, path=path, http=version, status=status)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, ensure_ascii=False, default=str)


@contextlib.contextmanager
def configured(level: str = "info", fmt: str = "text", *, worker: bool = False) -> Iterator[None]:
    """Route every logger to stderr in one format (``text`` or ``json``) while the block runs.

    ``worker``: this is one of several processes, whose lines carry its pid. Other
    handlers stay; everything is put back afterwards, so an in-process caller (a
    test) keeps its own logging.
    """
    handler = _StderrHandler()
    handler.addFilter(_Rename())
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(with_pid=worker)
    else:
        formatter = EscapingFormatter(WORKER_TEXT_FORMAT if worker else TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    saved_level = root.level
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg, lg.handlers, lg.propagate) for lg in uvicorn_loggers]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for logger in uvicorn_loggers:
        logger.handlers = []
        logger.propagate = True
    quiet = [logging.getLogger(name) for name in QUIET_BELOW_WARNING]
    quiet_levels = [lg.level for lg in quiet]
    if root.level > logging.DEBUG:
        for logger in quiet:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
        for logger, quiet_level in zip(quiet, quiet_levels, strict=True):
            logger.setLevel(quiet_level)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)
