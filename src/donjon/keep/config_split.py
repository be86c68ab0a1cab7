"""Which parts of a Keep config are sealed by ``push --encrypt``, and putting them back.

Sealed: ``args`` and the ``[env]`` values written in the config (names and
values): the workload's own inputs, which a user treats as secret. Everything
else stays clear, because the Keep needs it before it attests and before it has
the key: the Steward URL and its CA, ``[[files]]`` (stdio, listen and connect
entries with their TLS and peer options, dirs, the names of the secrets it will
ask for), ``{ secret = "name" }`` env references and ``[limits]``. None of it
is a value the host could use: it names things, the values stay in the Steward
(docs/secrets.md, "What the host sees").

The clear part is re-written from the parsed TOML (``tomli_w``), without the
author's comments (a comment can hold anything). The Keep merges the opened
sealed part back and runs the whole through :func:`donjon.keep.package.validate`,
the same checks as an unsealed config; a key that must stay clear, an unknown
key or a value of the wrong kind in the sealed part is one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from donjon.errors import DonjonError
from donjon.keep.config import Config
from donjon.keep.config_problems import ConfigError, ConfigProblem, unknown_key
from donjon.keep.package import load_toml, parse, validate

#: Top-level keys the sealed part may hold.
SEALED_KEYS = ("args", "env")
_STAYS_CLEAR = "the Keep reads it before it attests; only args and env values are sealed"


class ConfigSplitError(DonjonError):
    """Splitting a config into clear and sealed parts would change what it means (a bug)."""


def sealed_where(where: Path) -> Path:
    """How errors name the sealed part of the config at ``where`` (same directory)."""
    return where.with_name(f"{where.name} (sealed part)")


def split(data: bytes, where: Path) -> tuple[bytes, bytes]:
    """``(clear TOML, sealed TOML)`` of a config that validates; merging gives it back."""
    config = parse(data, where)
    raw = load_toml(data, where)
    sealed: dict[str, Any] = {}
    if "args" in raw:
        sealed["args"] = raw.pop("args")
    env = raw.pop("env", {})
    values = {k: v for k, v in env.items() if isinstance(v, str)}
    references = {k: v for k, v in env.items() if not isinstance(v, str)}
    if values:
        sealed["env"] = values
    if references:
        raw["env"] = references
    clear, part = tomli_w.dumps(raw).encode(), tomli_w.dumps(sealed).encode()
    if merge(clear, part, where) != config:
        raise ConfigSplitError(f"{where}: its clear and sealed parts do not merge back to it")
    return clear, part


def merge(clear: bytes, part: bytes, where: Path) -> Config:
    """The config of a clear part and its opened sealed part, checked as one config."""
    raw = load_toml(clear, where)
    validate(raw, where)  # the clear part alone is a config (the Keep attested with it)
    there = sealed_where(where)
    sealed = load_toml(part, there)
    problems = _sealed_problems(raw, sealed)
    if problems:
        raise ConfigError([ConfigProblem(there, None, message) for message in problems])
    merged = dict(raw)
    if "args" in sealed:
        merged["args"] = sealed["args"]
    if "env" in sealed:
        merged["env"] = {**raw.get("env", {}), **sealed["env"]}
    return validate(merged, there)


def _sealed_problems(clear: dict[str, Any], sealed: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for key in sealed:
        if key in SEALED_KEYS:
            continue
        if key in Config.model_fields:
            problems.append(f"{key}: stays in the clear config ({_STAYS_CLEAR})")
        else:
            problems.append(unknown_key(key, SEALED_KEYS))
    if "args" in sealed and "args" in clear:
        problems.append("args: also given in the clear config; a package gives it once")
    env = sealed.get("env", {})
    if not isinstance(env, dict):
        return [*problems, "env: must be a table"]
    clear_env = clear.get("env", {})
    for key, value in env.items():
        if not isinstance(value, str):
            problems.append(
                f"env.{key}: a sealed env value is a string; a {{ secret = ... }} reference "
                "stays in the clear config (the Keep asks for its secrets before it opens this)"
            )
        elif key in clear_env:
            problems.append(f"env.{key}: also given in the clear config; a package gives it once")
    return problems
