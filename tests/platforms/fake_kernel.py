"""A fake guest kernel: a temporary directory laid out like configfs-tsm, with a provider.

``FakeConfigfs`` implements :class:`donjon.keep.platforms.configfs.TsmFs` on top of
real files: ``mkdir`` populates an entry with the attributes the kernel creates,
writes bump ``generation`` as the kernel does (``drivers/virt/coco/tsm.c``), and
reading ``outblob`` asks the provider for a report over ``inblob``.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path

Provider = Callable[[bytes], tuple[bytes, bytes]]  # inblob -> (outblob, auxblob)

ATTRIBUTES = ("inblob", "outblob", "auxblob", "provider", "generation", "privlevel")


class FakeConfigfs:
    def __init__(self, root: Path, provider_name: str, provider: Provider) -> None:
        self.root = root / "sys" / "kernel" / "config" / "tsm" / "report"
        self.root.mkdir(parents=True)
        self.provider_name = provider_name
        self.provider = provider
        #: Called after outblob is produced: lets a test play "another process".
        self.after_outblob: Callable[[Path], None] | None = None
        self.entries_made = 0
        self.requests: list[bytes] = []

    # --- TsmFs --------------------------------------------------------------------------
    def mkdir(self, path: Path) -> None:
        path.mkdir()
        self.entries_made += 1
        for name in ATTRIBUTES:
            (path / name).write_bytes(b"")
        (path / "provider").write_text(self.provider_name + "\n")
        (path / "generation").write_text("0\n")

    def rmdir(self, path: Path) -> None:
        shutil.rmtree(path)

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def write(self, path: Path, data: bytes) -> None:
        if path.name not in ("inblob", "privlevel"):
            raise PermissionError(errno.EACCES, "read-only attribute", str(path))
        if path.name == "inblob" and len(data) > 64:
            raise OSError(errno.EINVAL, "inblob larger than 64 bytes", str(path))
        path.write_bytes(data)
        self.bump(path.parent)

    def read(self, path: Path) -> bytes:
        if path.name == "outblob":
            inblob = (path.parent / "inblob").read_bytes()
            self.requests.append(inblob)
            outblob, auxblob = self.provider(inblob)
            path.write_bytes(outblob)
            (path.parent / "auxblob").write_bytes(auxblob)
            if self.after_outblob is not None:
                self.after_outblob(path.parent)
        return path.read_bytes()

    # --- helpers ------------------------------------------------------------------------
    @staticmethod
    def bump(entry: Path) -> None:
        generation = int((entry / "generation").read_text())
        (entry / "generation").write_text(f"{generation + 1}\n")

    def leftover_entries(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir())
