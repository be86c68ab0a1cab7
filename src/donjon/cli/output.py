"""Shared output helpers: JSON for scripts, check trees (✔/✗) for people.

Text that comes from a certificate, a CSR or evidence is printed through
:func:`escape` (``donjon.escape``): its author cannot start a line of ours.
JSON needs nothing more, since ``json`` escapes control characters itself.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import click

from donjon.escape import escape
from donjon.logformat import EscapingFormatter

OK = "✔"
FAIL = "✗"


def _default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def print_json(data: Any) -> None:
    """Print one JSON document on stdout, for scripts."""
    json.dump(data, sys.stdout, indent=2, default=_default, ensure_ascii=False)
    sys.stdout.write("\n")


def mark(ok: bool) -> str:
    return click.style(OK, fg="green") if ok else click.style(FAIL, fg="red")


def print_checks(rows: Iterable[tuple[int, bool, str]]) -> None:
    """Print a tree of checks: (depth, passed, text) rows; the text is escaped."""
    for depth, ok, text in rows:
        click.echo(f"{'  ' * depth}{mark(ok)} {escape(text)}")


def log_to_stderr(level: int = logging.WARNING) -> None:
    """Library warnings reach the operator as escaped ``donjon: <message>`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("donjon: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def print_fields(data: Any, *, indent: int = 0) -> None:
    """Print decoded evidence as aligned ``key  value`` lines, nested tables indented."""
    pad = "  " * indent
    if not isinstance(data, dict):
        click.echo(f"{pad}{escape(str(data))}")
        return
    width = max((len(str(k)) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{pad}{key}")
            print_fields(value, indent=indent + 1)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                click.echo(f"{pad}{key}[{i}]")
                print_fields(item, indent=indent + 1)
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            click.echo(f"{pad}{key!s:<{width}}  {escape(str(shown))}")


__all__ = [
    "FAIL",
    "OK",
    "EscapingFormatter",
    "escape",
    "log_to_stderr",
    "mark",
    "print_checks",
    "print_fields",
    "print_json",
]
