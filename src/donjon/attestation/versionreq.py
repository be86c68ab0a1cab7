"""A small semver requirement (Cargo syntax) for the SNP ABI version, as Enarx policies use.

``abi = ">=1.51"`` in a Steward policy is a Rust ``semver::VersionReq``;
Donjon keeps the syntax: comma-separated comparators ``>= > <= < = ^ ~`` and
a bare version meaning ``^``. Wildcard ``*`` matches anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int, int]

_COMPARATOR = re.compile(r"^\s*(>=|<=|>|<|=|\^|~)?\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$")


@dataclass(frozen=True)
class _Bound:
    op: str
    version: Version


@dataclass(frozen=True)
class VersionReq:
    text: str
    bounds: tuple[_Bound, ...]

    @classmethod
    def parse(cls, text: str) -> VersionReq:
        """Parse a requirement; raises ``ValueError`` naming the bad comparator."""
        text = text.strip()
        if text in ("*", ""):
            return cls(text or "*", ())
        bounds: list[_Bound] = []
        for part in text.split(","):
            match = _COMPARATOR.match(part)
            if match is None:
                raise ValueError(f"bad version requirement {part.strip()!r}")
            op = match.group(1) or "^"
            numbers = [match.group(i) for i in (2, 3, 4)]
            given = sum(n is not None for n in numbers)
            major, minor, patch = (int(n) if n is not None else 0 for n in numbers)
            bounds.extend(_expand(op, (major, minor, patch), given))
        return cls(text, tuple(bounds))

    def matches(self, version: Version) -> bool:
        return all(_holds(bound, version) for bound in self.bounds)

    def __str__(self) -> str:
        return self.text


def _expand(op: str, v: Version, given: int) -> list[_Bound]:
    major, minor, _patch = v
    if op in (">=", ">", "<", "<=") and given == 3:
        return [_Bound(op, v)]
    if op == ">=":
        return [_Bound(">=", v)]
    if op == "<":
        return [_Bound("<", v)]
    if op == ">":  # >1.51 means >=1.52.0 when the patch is left out
        upper = (major + 1, 0, 0) if given == 1 else (major, minor + 1, 0)
        return [_Bound(">=", upper)]
    if op == "<=":
        upper = (major + 1, 0, 0) if given == 1 else (major, minor + 1, 0)
        return [_Bound("<", upper)]
    if op == "=":
        if given == 3:
            return [_Bound(">=", v), _Bound("<=", v)]
        upper = (major + 1, 0, 0) if given == 1 else (major, minor + 1, 0)
        return [_Bound(">=", v), _Bound("<", upper)]
    if op == "~":
        upper = (major + 1, 0, 0) if given == 1 else (major, minor + 1, 0)
        return [_Bound(">=", v), _Bound("<", upper)]
    # caret: compatible with the left-most non-zero component
    if major > 0 or given == 1:
        upper = (major + 1, 0, 0)
    elif minor > 0 or given == 2:
        upper = (0, minor + 1, 0)
    else:
        upper = (0, 0, v[2] + 1)
    return [_Bound(">=", v), _Bound("<", upper)]


def _holds(bound: _Bound, version: Version) -> bool:
    if bound.op == ">=":
        return version >= bound.version
    if bound.op == ">":
        return version > bound.version
    if bound.op == "<=":
        return version <= bound.version
    return version < bound.version
