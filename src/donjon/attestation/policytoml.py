"""Readers for policy TOML values, shared by every section's parser.

Each reader refuses a value of the wrong type or size with the file, the
section and the key named, because a typo in a security policy must not
silently widen it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from donjon.attestation.errors import PolicyError, ProductMismatchError


class SectionReader:
    """Where a value comes from (file and section), to name it in errors."""

    def __init__(
        self,
        source: str,
        section: str,
        base_dir: Path | None = None,
        files: dict[str, str] | None = None,
    ) -> None:
        self.source = source
        self.section = section
        #: Where relative paths in the section are resolved (the policy file's directory).
        self.base_dir = base_dir
        #: Every file the policy names (key file, roots, reference values) -> SHA-256 of its
        #: bytes at load, shared by a policy's readers: they go into the policy id.
        self.files: dict[str, str] = files if files is not None else {}

    def child(self, section: str) -> SectionReader:
        """A reader for a sub-section, sharing this one's base directory and file record."""
        return SectionReader(self.source, section, self.base_dir, self.files)

    def referenced(self, path: Path) -> None:
        """Record a file the policy names, so that changing its bytes changes the policy id.

        An unreadable file is recorded as such; whoever reads it reports the error."""
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            digest = f"unreadable: {exc.strerror or exc}"
        base = self.base_dir
        name = str(path.relative_to(base)) if base and path.is_relative_to(base) else str(path)
        self.files[name] = digest

    def fail(self, key: str, message: str) -> PolicyError:
        where = f"[{self.section}] {key}" if self.section else key
        return PolicyError(f"{self.source}: {where}: {message}")

    def only(self, table: Mapping[str, Any], known: set[str] | frozenset[str]) -> None:
        """Refuse any key the section does not define."""
        for key in table:
            if key not in known:
                raise self.fail(key, f"unknown key (known: {', '.join(sorted(known))})")

    def boolean(self, table: Mapping[str, Any], key: str, default: bool = False) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def digests(self, value: Any, size: int | tuple[int, ...], key: str) -> set[bytes]:
        """A hex digest or a list of them, each exactly ``size`` bytes (or one of the sizes)."""
        sizes = size if isinstance(size, tuple) else (size,)
        items = value if isinstance(value, list) else [value]
        out = set()
        for item in items:
            if not isinstance(item, str):
                raise self.fail(key, "must be a list of hex strings")
            try:
                digest = bytes.fromhex(item)
            except ValueError as exc:
                raise self.fail(key, f"{item!r} is not hex") from exc
            if len(digest) not in sizes:
                want = " or ".join(str(n) for n in sizes)
                raise self.fail(key, f"{item[:16]}... is {len(digest)} bytes, expected {want}")
            out.add(digest)
        return out

    def flags(self, value: Any, names: Mapping[str, int], key: str) -> int:
        """Flag names, as a list or ``"A | B"``, OR-ed into one integer."""
        if isinstance(value, str):
            items = [part.strip() for part in value.split("|")]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = list(value)
        else:
            raise self.fail(key, "must be a flag name or a list of flag names")
        bits = 0
        for item in items:
            if item not in names:
                raise self.fail(key, f"unknown flag {item!r} (known: {', '.join(names)})")
            bits |= names[item]
        return bits

    def names(self, value: Any, key: str, convert: Callable[[str], Any]) -> list[Any]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of names")
        try:
            return [convert(v) for v in value]
        except (ValueError, ProductMismatchError) as exc:
            raise self.fail(key, str(exc)) from exc

    def strings(self, value: Any, key: str) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        return frozenset(value)

    def paths(self, value: Any, key: str) -> list[Path]:
        """A path or a list of paths, relative to the policy file's directory."""
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) and v for v in items):
            raise self.fail(key, "must be a path or a list of paths")
        base = self.base_dir or Path.cwd()
        paths = [(base / v).resolve() for v in items]
        for path in paths:
            self.referenced(path)
        return paths

    def integer(self, value: Any, key: str, low: int, high: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(key, f"must be an integer {low}..{high}")
        return value

    def choice(self, value: Any, key: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            wanted = " or ".join(f'"{a}"' for a in allowed)
            raise self.fail(key, f"must be {wanted}, got {value!r}")
        return str(value)

    def duration(
        self, value: Any, key: str, *, low: timedelta, high: timedelta, example: str
    ) -> timedelta:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise self.fail(key, f'expected a duration such as "{example}", got {value!r}')
        # Compared as an integer first: timedelta overflows (OverflowError) on a huge count.
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        if not low.total_seconds() <= seconds <= high.total_seconds():
            raise self.fail(key, f"must be between {_say(low)} and {_say(high)}")
        return timedelta(seconds=seconds)


def table_of(doc: Mapping[str, Any], name: str, reader: SectionReader) -> Mapping[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise reader.fail(name, "must be a table")
    return value


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _say(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for size, word in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {word}" + ("" if count == 1 else "s")
    return f"{seconds} seconds"
