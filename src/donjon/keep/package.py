"""A workload package: ``main.wasm`` plus an optional ``Donjon.toml`` or ``Enarx.toml``.

``donjon run PATH`` accepts a ``.wasm`` file or a directory. Loading reads
``main.wasm`` and the config once each: the same bytes are hashed into the
workload claims, parsed (the config) and compiled (the module), so the
certificate names exactly what runs. A file swapped on disk after loading
changes nothing in this Keep.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from donjon.attestation.packagesig import SignatureRecord
from donjon.errors import UsageError
from donjon.keep.config import (
    Config,
    ConnectFile,
    DirFile,
    ListenFile,
    check_files,
    file_label,
)
from donjon.keep.config_problems import ConfigError, ConfigProblem, from_validation
from donjon.keep.sealed import SealedModule

__all__ = [
    "ConfigError",
    "Package",
    "PackageError",
    "find",
    "load",
    "load_toml",
    "parse",
    "validate",
]

CONFIG_NAMES = ("Donjon.toml", "Enarx.toml")
WASM_NAME = "main.wasm"
_TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


class PackageError(UsageError):
    """A package path that does not hold a runnable workload."""


@dataclass(frozen=True)
class Package:
    name: str
    wasm: Path
    config: Config
    #: The config file, or ``None`` when the package has none (Enarx's defaults apply).
    config_path: Path | None
    config_bytes: bytes
    #: Relative paths in the config are resolved against this directory.
    base_dir: Path
    #: ``main.wasm`` as read once at load (or fetched and digest-checked by
    #: ``keep/source.py``): what is hashed, attested and compiled. Empty for a
    #: confidential package, whose module is ``sealed`` until attestation.
    wasm_bytes: bytes = field(repr=False)
    #: A confidential package's main.wasm: opened only after attestation, with its key.
    sealed: SealedModule | None = None
    #: SHA-256 of the OCI manifest (or the https tar) deployed; attested in the claims.
    package_sha256: bytes | None = None
    #: Where the package came from, for messages (``oci://...@sha256:...``).
    origin: str | None = None
    #: ``host[:port]/path`` of the registry repository, and the signatures it held.
    package_repository: str | None = None
    package_signatures: tuple[SignatureRecord, ...] = ()

    def wasm_sha256(self) -> bytes:
        if self.sealed is not None:
            return self.sealed.plain_sha256
        return hashlib.sha256(self.wasm_bytes).digest()

    def config_sha256(self) -> bytes:
        return hashlib.sha256(self.config_bytes).digest() if self.config_path else b""


def find(path: Path, config_override: Path | None = None) -> tuple[Path, Path | None]:
    """Locate ``(main.wasm, config or None)`` for a package path."""
    if not path.exists():
        raise PackageError(f"{path}: no such file or directory")
    if path.is_dir():
        wasm = path / WASM_NAME
        if not wasm.is_file():
            raise PackageError(f"{path}: no {WASM_NAME} in this directory")
        found = [path / n for n in CONFIG_NAMES if (path / n).is_file()]
        if len(found) > 1 and config_override is None:
            raise PackageError(
                f"{path}: has both Donjon.toml and Enarx.toml; remove one or pass --config"
            )
        config = config_override or (found[0] if found else None)
    else:
        if path.suffix != ".wasm":
            raise PackageError(f"{path}: expected a .wasm file or a package directory")
        wasm, config = path, config_override
    if config is not None and not config.is_file():
        raise PackageError(f"{config}: config file not found")
    return wasm, config


def load(path: Path, config_override: Path | None = None) -> Package:
    """Load and validate a package; every problem is one :class:`ConfigError` line."""
    wasm, config_path = find(path, config_override)
    resolved = path.resolve()
    name = (resolved.name if resolved.is_dir() else resolved.stem) or "workload"
    module = _read(wasm)
    if config_path is None:
        return Package(name, wasm, Config(), None, b"", wasm.parent, module)
    data = _read(config_path)
    config = parse(data, config_path)
    return Package(name, wasm, config, config_path, data, config_path.parent, module)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PackageError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def parse(data: bytes, where: Path) -> Config:
    """Parse config bytes; ``where`` names the file in errors and anchors relative paths."""
    return validate(load_toml(data, where), where)


def load_toml(data: bytes, where: Path) -> dict[str, Any]:
    """The TOML document of config bytes, or one :class:`ConfigError` naming ``where``."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError.one(where, f"not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_error(where, str(exc))]) from exc


def validate(raw: dict[str, Any], where: Path) -> Config:
    """Every check of a config on its TOML document; relative paths resolve beside ``where``."""
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(from_validation(where, raw, exc)) from exc
    problems = check_files(config) + _check_paths(config, where.parent)
    if problems:
        raise ConfigError(
            [
                ConfigProblem(where, None if i < 0 else file_label(i, config.files[i]), message)
                for i, message in problems
            ]
        )
    return config


def resolve(base_dir: Path, path: Path) -> Path:
    return path if path.is_absolute() else base_dir / path


def _check_paths(config: Config, base_dir: Path) -> list[tuple[int, str]]:
    problems: list[tuple[int, str]] = []
    if config.steward_ca is not None and not resolve(base_dir, config.steward_ca).is_file():
        problems.append((-1, f"steward_ca: {config.steward_ca}: file not found"))
    for index, entry in enumerate(config.files):
        if isinstance(entry, DirFile):
            host = resolve(base_dir, entry.path)
            if not host.is_dir():
                what = "is not a directory" if host.exists() else "directory does not exist"
                problems.append((index, f"path: {entry.path}: {what}"))
        elif isinstance(entry, ConnectFile):
            for field in ("ca_bundle", "pin"):
                value = getattr(entry, field)
                if value is not None and not resolve(base_dir, value).is_file():
                    problems.append((index, f"{field}: {value}: file not found"))
        elif (
            isinstance(entry, ListenFile)
            and entry.client_ca not in (None, "steward")
            and not resolve(base_dir, Path(str(entry.client_ca))).is_file()
        ):
            problems.append(
                (index, f'client_ca: {entry.client_ca}: file not found (or use "steward")')
            )
    return problems


def _toml_error(where: Path, message: str) -> ConfigProblem:
    match = _TOML_LINE.search(message)
    if match is None:
        return ConfigProblem(where, None, f"invalid TOML: {message}")
    detail = message[: match.start()].strip()
    return ConfigProblem(
        Path(f"{where}:{match.group(1)}"), None, f"invalid TOML: {detail} (column {match.group(2)})"
    )
