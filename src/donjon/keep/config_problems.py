"""Every problem of a config file, each in Donjon's words, with the nearest valid key.

Pydantic stops a ``[[files]]`` entry at its missing ``kind`` tag, so a misspelt
```kindd = "stdin"`` would read as "missing field 'kind'". Here the raw TOML is
read as well: a key that no model knows is reported as an unknown field, with
the nearest valid one, and every problem of the file is listed, not just the first.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from donjon.errors import UsageError
from donjon.keep.config import Config, file_label

KINDS = "null, stdin, stdout, stderr, dir, listen, connect or secret"


@dataclass(frozen=True)
class ConfigProblem:
    """One problem: the file, the entry (``[[files]] #2 ...``, or None), the text."""

    file: Path
    entry: str | None
    message: str

    @property
    def line(self) -> str:
        where = f"{self.file}: {self.entry}: " if self.entry else f"{self.file}: "
        return where + self.message

    def to_json(self) -> dict[str, Any]:
        return {"file": str(self.file), "entry": self.entry, "message": self.message}


class ConfigError(UsageError):
    """A config file that is not valid TOML or not a valid Donjon/Enarx config.

    ``problems`` holds every problem found; the message is the first, ``more`` the rest.
    """

    def __init__(self, problems: list[ConfigProblem]) -> None:
        lines = [p.line for p in problems]
        super().__init__(lines[0], more=tuple(lines[1:]))
        self.problems = tuple(problems)

    @classmethod
    def one(cls, file: Path, message: str) -> ConfigError:
        return cls([ConfigProblem(file, None, message)])


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, list, unions)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, dict):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _keys(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    args = get_args(field.annotation) if field is not None else ()
    return str(args[0]) if args else None


def _model_at(loc: Iterable[Any]) -> type[BaseModel] | None:
    """The model holding the key at the end of a pydantic error location."""
    model: type[BaseModel] = Config
    choices: list[type[BaseModel]] = []
    for part in loc:
        if choices:
            if isinstance(part, int):
                continue
            picked = [m for m in choices if _tag(m) == part]
            if picked:
                model, choices = picked[0], []
                continue
            if len(choices) != 1:
                return None
            model, choices = choices[0], []
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        found = _models(model.model_fields[part].annotation)
        if not found:
            return None
        choices = found
    if choices:
        return choices[0] if len(choices) == 1 else None
    return model


def unknown_key(key: str, valid: Iterable[str]) -> str:
    """``unknown field 'kindd' (did you mean 'kind'?)``, or the valid ones when none is near."""
    ordered = sorted(valid)
    near = difflib.get_close_matches(key, ordered, n=1, cutoff=0.6)
    if near:
        return f"unknown field {key!r} (did you mean {near[0]!r}?)"
    return f"unknown field {key!r} (valid: {', '.join(ordered)})"


def _untagged_entry(entry: dict[str, Any]) -> list[str]:
    """Problems of a ``[[files]]`` entry without ``kind``: misspelt keys first."""
    from donjon.keep.config import FileEntry

    kinds = _models(FileEntry)
    every = set().union(*(_keys(m) for m in kinds))
    problems = [unknown_key(key, every) for key in entry if key not in every]
    if not any("'kind'?" in p for p in problems):
        problems.append(f"missing field 'kind' ({KINDS})")
    return problems


def from_validation(where: Path, raw: dict[str, Any], exc: ValidationError) -> list[ConfigProblem]:
    """Every pydantic error of the file as a :class:`ConfigProblem`, in file order."""
    problems: list[ConfigProblem] = []
    seen: set[tuple[str | None, str]] = set()

    def add(entry: str | None, message: str) -> None:
        if (entry, message) not in seen:
            seen.add((entry, message))
            problems.append(ConfigProblem(where, entry, message))

    entries = raw.get("files")
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        label: str | None = None
        entry: Any = {}
        rel = loc
        if len(loc) >= 2 and loc[0] == "files" and isinstance(loc[1], int):
            index = loc[1]
            entry = entries[index] if isinstance(entries, list) and index < len(entries) else {}
            label = file_label(index, entry if isinstance(entry, dict) else {})
            # Drop the discriminator step pydantic inserts ("listen", "connect", ...).
            tagged = len(loc) > 2 and isinstance(entry, dict) and loc[2] == entry.get("kind")
            rel = loc[3:] if tagged else loc[2:]
        field = ".".join(str(part) for part in rel)
        kind = error["type"]
        if kind == "extra_forbidden":
            model = _model_at(loc[:-1])
            key = str(loc[-1])
            add(label, unknown_key(key, _keys(model)) if model else f"unknown field {field!r}")
        elif kind == "missing":
            add(label, f"missing required field {field!r}")
        elif kind == "union_tag_not_found" and isinstance(entry, dict):
            for message in _untagged_entry(entry):
                add(label, message)
        elif kind == "union_tag_invalid":
            given = error["input"].get("kind") if isinstance(error["input"], dict) else None
            add(label, f"unknown kind {given!r} (expected {KINDS})")
        elif kind == "model_type" and label is not None and not rel:
            add(label, "must be a table ([[files]] with key = value lines)")
        else:
            msg = _plain(kind, error.get("ctx") or {}) or str(error["msg"])
            msg = msg.removeprefix("Value error, ")
            add(label, f"{field}: {msg}" if field else msg)
    problems.sort(key=lambda p: p.entry is not None)  # the file's own keys first
    return problems


def _plain(kind: str, ctx: dict[str, Any]) -> str | None:
    """Donjon's words for pydantic's common value errors (None: keep pydantic's)."""
    words = {
        "less_than_equal": "must be at most {le}",
        "less_than": "must be less than {lt}",
        "greater_than_equal": "must be at least {ge}",
        "greater_than": "must be more than {gt}",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "string_type": "must be a string",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "list_type": "must be a list (an array: [...])",
        "dict_type": "must be a table",
        "model_type": "must be a table",
        "enum": "must be one of {expected}",
        "literal_error": "must be {expected}",
    }
    template = words.get(kind)
    if template is None:
        return None
    try:
        return template.format(**ctx)
    except (KeyError, IndexError):
        return None
