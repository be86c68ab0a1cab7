"""``donjon run`` as a child process, with its output collected while it runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) \((tls|tcp)\)")


def donjon_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "donjon.cli.main", *args]


def make_package(root: Path, name: str, wasm: Path, config: str) -> Path:
    """``root/name`` holding ``main.wasm`` and ``Donjon.toml``: a package ``donjon run`` takes."""
    pkg = root / name
    pkg.mkdir()
    shutil.copyfile(wasm, pkg / "main.wasm")
    (pkg / "Donjon.toml").write_text(config)
    return pkg


def collect_lines(stream: Iterable[str] | None, lines: list[str]) -> threading.Thread:
    """Append each line of ``stream`` to ``lines`` on a daemon thread, until EOF."""

    def read() -> None:
        for line in stream or ():
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def wait_for_output(
    lines: list[str], text: str, proc: subprocess.Popen[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in list(lines)):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared on stdout: {''.join(lines)}")


class KeepProcess:
    """A ``donjon run`` server whose stdout and stderr are collected as they arrive."""

    def __init__(self, pkg: Path | str, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            donjon_cmd("run", str(pkg), *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.err: list[str] = []
        self.out: list[str] = []
        self._readers = [
            collect_lines(self.proc.stderr, self.err),
            collect_lines(self.proc.stdout, self.out),
        ]

    def port(self, timeout: float = 60) -> int:
        """The port from the Keep's "listening on" line, once it is listening."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.err):
                if match := LISTENING.search(line):
                    return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"the Keep did not start listening: {''.join(self.err)}")

    def wait_for_stdout(self, text: str, timeout: float = 10) -> None:
        wait_for_output(self.out, text, self.proc, timeout)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        """Wait for the exit: (exit code, all stdout, all stderr)."""
        code = self.proc.wait(timeout=timeout)
        self._join()
        return code, "".join(self.out), "".join(self.err)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._join()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)


@contextmanager
def keep_starter(env: dict[str, str]) -> Iterator[Callable[..., KeepProcess]]:
    """``start(pkg, *args)`` runs a Keep server; every one started is stopped on exit."""
    started: list[KeepProcess] = []

    def start(pkg: Path, *args: str) -> KeepProcess:
        keep = KeepProcess(pkg, *args, env=env)
        started.append(keep)
        return keep

    try:
        yield start
    finally:
        for keep in started:
            keep.stop()
