"""The policy in force as an operator reads it: per platform, what is pinned, what is left
open, and what the owner opted into; and the diff against the policy before it.

Sections are read through what every section shares (``pinned()``, ``rules``)
and their dataclass fields, so a new TEE's section shows up without a change
here.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

#: Values shown for a field whose setting widens what is accepted.
_WIDENING = {"if-available"}


@dataclass(frozen=True)
class Entry:
    key: str
    value: str


@dataclass
class SectionView:
    name: str
    kind: str  # "tee" | "development" | "pending"
    pinned: list[Entry] = field(default_factory=list)
    open: list[str] = field(default_factory=list)
    opted_in: list[Entry] = field(default_factory=list)
    other: list[Entry] = field(default_factory=list)
    note: str = ""


def fmt(value: Any) -> str:
    """One value as the policy file would say it (bytes as hex, sets sorted)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, frozenset | set | tuple | list):
        items = sorted(fmt(v) for v in value)
        return ", ".join(items) if items else "(none)"
    if isinstance(getattr(value, "text", None), str):
        return str(value.text)  # a requirement kept as written (abi = ">=1.51")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ", ".join(
            f"{f.name}={fmt(getattr(value, f.name))}" for f in dataclasses.fields(value)
        )
    return str(value)


def _empty(value: Any) -> bool:
    if isinstance(value, frozenset | set | tuple | list | Mapping):
        return not value
    return value is None


def _fields(obj: Any) -> list[tuple[str, str, Any]]:
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return []
    return [(f.name, str(f.type), getattr(obj, f.name)) for f in dataclasses.fields(obj)]


def _lookup(section: Any, name: str) -> Any:
    """The value of a pin ``pinned()`` names: a field, a dotted path into a nested section,
    a key of a mapping field (``digests["signer"]``, ``pcrs[0]`` as ``pcr0``), or None."""
    head, dot, rest = name.partition(".")
    if dot and hasattr(section, head):
        return _lookup(getattr(section, head), rest)
    if hasattr(section, name) and not callable(getattr(section, name)):
        return getattr(section, name)
    for field_name, _, value in _fields(section):
        if isinstance(value, Mapping):
            for key, item in value.items():
                if name in (str(key), f"{field_name.rstrip('s')}{key}"):
                    return item
    return None


def _expanded(section: Any) -> list[tuple[str, str, Any]]:
    """The section's fields, with mapping fields (digests by name, PCRs by index) one per key
    and its shared rules after them."""
    out: list[tuple[str, str, Any]] = []
    for key, declared, value in _fields(section):
        if key == "rules":
            continue
        if isinstance(value, Mapping) and value:
            singular = key.rstrip("s")
            for item_key, item in sorted(value.items(), key=lambda kv: str(kv[0])):
                label = f"{singular}{item_key}" if isinstance(item_key, int) else str(item_key)
                out.append((label, "frozenset[bytes]", item))
        else:
            out.append((key, declared, value))
    return out + _fields(getattr(section, "rules", None))


def _section(name: str, section: Any, kind: str = "tee") -> SectionView:
    view = SectionView(name, kind)
    pins = tuple(section.pinned()) if hasattr(section, "pinned") else ()
    for pin in pins:
        value = _lookup(section, pin)
        view.pinned.append(Entry(pin, "set" if value is None else fmt(value)))
    for key, declared, value in _expanded(section):
        shown = Entry(key, fmt(value))
        if key in pins:
            continue
        if key.startswith("allowed_") and key != "allowed_advisories" and value:
            view.pinned.append(shown)
        elif key == "accept_any_workload" and value:
            view.opted_in.append(Entry(key, "true: any genuine guest gets a certificate"))
        elif (value is True and key.startswith("allow")) or (key == "allowed_advisories" and value):
            view.opted_in.append(shown)
        elif key == "tcb_statuses" and value is not None:
            view.opted_in.append(Entry(key, fmt(value) + " (instead of the TEE's default)"))
        elif isinstance(value, str) and value in _WIDENING:
            view.opted_in.append(shown)
        elif _empty(value) and _pins_when_set(key, declared):
            view.open.append(key)
        elif not _empty(value) or isinstance(value, bool | int):
            view.other.append(shown)
    return view


def _pins_when_set(key: str, declared: str) -> bool:
    """A digest list that would pin the guest if it had values (not a deny list)."""
    if key.endswith(("_deny", "_blacklist")):
        return False
    return declared.replace(" ", "") == "frozenset[bytes]" or (
        key.startswith("allowed_") and key != "allowed_advisories"
    )


def describe(policy: Any) -> list[SectionView]:
    """Every platform the policy names, TEEs first, then development platforms."""
    views = [
        _section(name, section) for name, section in sorted(getattr(policy, "tees", {}).items())
    ]
    sim = getattr(policy, "sim", None)
    if sim is not None:
        view = _section("sim", getattr(sim, "snp", sim), "development")
        view.other.insert(0, Entry("trust", fmt(getattr(sim, "trust", None))))
        # The simulator publishes no CRL: "if-available" is its only mode, not an opt-in.
        forced = [e for e in view.opted_in if e.key == "crl"]
        view.opted_in = [e for e in view.opted_in if e.key != "crl"]
        view.other += [Entry(e.key, f"{e.value} (always, for the simulator)") for e in forced]
        view.note = "simulated TEE: development only, its certificates say so"
        views.append(view)
    for name in ("nil", "kvm"):
        if getattr(policy, f"{name}_allow", False):
            views.append(
                SectionView(
                    name,
                    "development",
                    opted_in=[Entry("allow", "true")],
                    note="no TEE at all: development only, its certificates say so",
                )
            )
    for name, table in sorted(getattr(policy, "pending", {}).items()):
        views.append(
            SectionView(
                name,
                "pending",
                other=[Entry(k, fmt(v)) for k, v in sorted(table.items())],
                note="loaded as written; this Donjon does not verify this platform yet",
            )
        )
    return views


def general(policy: Any) -> list[Entry]:
    """The settings outside any platform section."""
    out = [
        Entry("digest", str(getattr(policy, "digest", ""))),
        Entry("source", str(getattr(policy, "source", ""))),
        Entry("cert_lifetime", fmt(getattr(policy, "cert_lifetime", None))),
        Entry("san_dns", fmt(getattr(policy, "san_dns", ()))),
    ]
    freshness = getattr(policy, "freshness", None)
    for key, _, value in _fields(freshness):
        out.append(Entry(f"freshness.{key}", fmt(value)))
    return out


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add" | "del" | "hunk" | "ctx" | "file"
    text: str


def diff(before: str, after: str, *, before_name: str, after_name: str) -> list[DiffLine]:
    """A unified diff of two policy texts, line by line, classified for display."""
    lines: Iterable[str] = difflib.unified_diff(
        before.splitlines(), after.splitlines(), before_name, after_name, lineterm="", n=3
    )
    out = []
    for line in lines:
        if line.startswith(("---", "+++")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append(DiffLine(kind, line))
    return out
