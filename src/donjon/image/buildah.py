"""``buildah``, run with its storage in a directory of ours, so a build leaves nothing behind.

Only the steps that need no container runtime: ``from scratch`` (or from an image
in that storage), ``copy``, ``config``, ``commit``, ``push`` to an archive. No ``RUN``:
the root filesystem is made on the build machine. The ``overlay`` driver is used
when the kernel lets buildah mount it (a quick probe); ``vfs`` works everywhere, but
copies every layer in full for each image and container, which costs about a minute.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from donjon.errors import DonjonError


class BuildahError(DonjonError):
    """buildah is missing or one of its steps failed."""


@dataclass(frozen=True)
class ImageConfig:
    """What ``buildah config`` sets: the runtime half of an OCI image config."""

    user: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    workingdir: str
    ports: tuple[str, ...] = ()


def available() -> bool:
    return shutil.which("buildah") is not None


class Buildah:
    """One build's storage (under ``storage``) and the containers made in it."""

    def __init__(self, storage: Path, driver: str = "auto") -> None:
        if not available():
            raise BuildahError(
                "buildah is not installed (Debian: apt-get install buildah; "
                "or run scripts/install-system-deps as root)"
            )
        self.storage = storage
        self.containers: list[str] = []
        self.images: list[str] = []
        if driver == "auto":
            driver = "overlay" if self._works("overlay") else "vfs"
        self.driver = driver
        self.flags = self._flags(driver)

    def _flags(self, driver: str) -> list[str]:
        where = self.storage / driver
        return ["--root", str(where / "root"), "--runroot", str(where / "run"),
                "--storage-driver", driver]  # fmt: skip

    def _works(self, driver: str) -> bool:
        """Whether ``driver`` can make and mount a container here (it needs kernel support)."""
        base = ["buildah", *self._flags(driver)]
        made = subprocess.run([*base, "from", "--quiet", "scratch"], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        if made.returncode != 0:
            return False
        container = made.stdout.strip().splitlines()[-1]
        mounted = subprocess.run([*base, "mount", container], capture_output=True, timeout=120)
        subprocess.run([*base, "rm", container], capture_output=True, timeout=120)
        return mounted.returncode == 0

    def _run(self, *args: str) -> str:
        cmd = ["buildah", *self.flags, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildahError(f"buildah {args[0]} failed: {last}")
        return done.stdout.strip()

    def from_image(self, image: str) -> str:
        container = self._run("from", "--pull=never", "--quiet", image).splitlines()[-1]
        self.containers.append(container)
        return container

    def copy(self, container: str, src: Path, dest: str, chown: str | None = None) -> None:
        own = ["--chown", chown] if chown else []
        self._run("copy", "--quiet", *own, container, str(src), dest)

    def config(self, container: str, config: ImageConfig) -> None:
        args = ["--user", config.user, "--workingdir", config.workingdir,
                "--entrypoint", _json_list(config.entrypoint),
                "--cmd", _json_list(config.cmd)]  # fmt: skip
        for key, value in config.env:
            args += ["--env", f"{key}={value}"]
        for key, value in config.labels:
            args += ["--label", f"{key}={value}"]
        for port in config.ports:
            args += ["--port", port]
        self._run("config", *args, container)

    def commit(self, container: str, name: str, timestamp: int) -> None:
        """Into this storage; ``timestamp`` fixes every date in it (reproducible digests)."""
        self._run("commit", "--quiet", "--timestamp", str(timestamp), container, name)
        self.images.append(name)

    def push_archive(self, name: str, archive: Path, ref: str) -> None:
        """An ``oci-archive`` with gzip layers, ``ref`` its image name."""
        self._run("push", "--quiet", "--compression-format", "gzip", "--format", "oci",
                  name, f"oci-archive:{archive}:{ref}")  # fmt: skip

    def remove_all(self) -> None:
        """Containers and images (which unmounts overlay layers), so the storage can go."""
        if self.containers:
            self._run("rm", *self.containers)
            self.containers.clear()
        if self.images:
            self._run("rmi", "--force", *reversed(self.images))
            self.images.clear()


def _json_list(items: tuple[str, ...]) -> str:
    return json.dumps(list(items))
