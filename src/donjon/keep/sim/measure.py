"""The simulated launch measurement: a SHA-384 digest of the Keep runtime.

On real SEV-SNP the firmware measures the guest's initial memory. The simulator
has no such firmware, so it measures what would be loaded: every file of the
installed ``donjon`` package. A Steward can then pin the runtime version by
``measurement`` exactly as it would pin a real launch digest.

Definition (stable, documented in ``docs/sim.md``)::

    SHA-384( "donjon-sim-measurement-v1\\n" ||
             for each file, sorted by its '/'-separated path relative to the package:
                 u32be(len(path)) || path (UTF-8) || u64be(len(data)) || data )

Byte-code caches (``__pycache__``, ``*.pyc``) are left out: they depend on the
interpreter, not on the code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

DOMAIN = b"donjon-sim-measurement-v1\n"


def package_root() -> Path:
    import donjon

    return Path(donjon.__file__).resolve().parent


def runtime_files(root: Path) -> list[tuple[str, Path]]:
    """(relative path, file) pairs in measurement order."""
    found: list[tuple[str, Path]] = []
    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        found.append((rel, path))
    found.sort(key=lambda item: item[0].encode())
    return found


def _walk(directory: Path) -> Iterator[Path]:
    for entry in directory.iterdir():
        if entry.name == "__pycache__" or entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry)
        elif entry.is_file() and entry.suffix not in (".pyc", ".pyo"):
            yield entry


def measure_tree(root: Path) -> bytes:
    """The 48-byte measurement of the files under ``root``."""
    digest = hashlib.sha384(DOMAIN)
    for rel, path in runtime_files(root):
        name = rel.encode()
        data = path.read_bytes()
        digest.update(len(name).to_bytes(4, "big") + name)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.digest()


def runtime_measurement() -> bytes:
    """The measurement of this Donjon installation."""
    return measure_tree(package_root())
