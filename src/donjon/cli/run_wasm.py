"""``donjon run-wasm``: run a WASI preview1 module directly, outside any Keep.

Flags follow the wasmtime CLI where they overlap, so the same test programs run
under both: arguments after the module go to the guest, ``--dir HOST::GUEST``
maps a folder, ``--env K=V`` sets one variable, ``--listen`` pre-opens a
listening TCP socket after the directories (as wasmtime's ``-S tcplisten``).
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import click

from donjon.cli.options import FILE
from donjon.errors import UsageError

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``65536``, ``64K``, ``256MiB``, ``1G`` -> bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"--memory: cannot read size {text!r} (examples: 64M, 1GiB, 65536)")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * 1024 ** "_kmgt".index(unit) if unit else number


def parse_dir(text: str) -> tuple[Path, str]:
    host, sep, guest = text.partition("::")
    if not host:
        raise UsageError(f"--dir {text!r}: the host directory is empty")
    return Path(host), guest if sep else host


def parse_env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--env {text!r}: expected KEY=VALUE")
    return key, value


def open_listener(text: str) -> socket.socket:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--listen {text!r}: expected ADDR:PORT, e.g. 127.0.0.1:8080")
    if int(port) > 65535:
        raise UsageError(f"--listen {text!r}: port {port} is out of range (0-65535)")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"--listen {text}: {exc.strerror or exc}") from exc
    return sock


@click.command(
    "run-wasm",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("module", type=FILE)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--dir",
    "dirs",
    multiple=True,
    metavar="HOST[::GUEST]",
    help="Give the guest a host directory (at GUEST, or at HOST's own path).",
)
@click.option(
    "--dir-ro",
    "dirs_ro",
    multiple=True,
    metavar="HOST[::GUEST]",
    help="Like --dir, read-only for the guest (placed after the --dir ones).",
)
@click.option("--env", "envs", multiple=True, metavar="K=V", help="Set one variable for the guest.")
@click.option("--inherit-env", is_flag=True, help="Pass this process's whole environment.")
@click.option("--memory", metavar="SIZE", help="Limit linear memory (e.g. 64M); exit 137 at it.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Wall-clock limit; exit 124 at it.")
@click.option(
    "--call-timeout",
    type=float,
    metavar="SECONDS",
    help="Limit for one blocking host call (accept, recv, read on a pipe).",
)
@click.option("--no-cache", is_flag=True, help="Compile every time; skip the module cache.")
@click.option(
    "--listen",
    "listens",
    multiple=True,
    metavar="ADDR:PORT",
    help="Pre-open a listening TCP socket (fd after the directories).",
)
def run_wasm(
    module: Path,
    args: tuple[str, ...],
    dirs: tuple[str, ...],
    dirs_ro: tuple[str, ...],
    envs: tuple[str, ...],
    inherit_env: bool,
    memory: str | None,
    timeout: float | None,
    call_timeout: float | None,
    no_cache: bool,
    listens: tuple[str, ...],
) -> None:
    """Run MODULE, a WASI preview1 command, with ARGS; exit with its exit code.

    The guest sees only what you give it: its arguments (argv[0] is the
    module's file name), the variables set with --env, and the directories
    given with --dir. Compiled modules are cached in ~/.cache/donjon/modules
    ($DONJON_CACHE_DIR or $XDG_CACHE_HOME move it).

    Exit codes: the guest's own; 134 on a trap; 124 at --timeout; 137 when
    the guest fails at its --memory limit; 1 or 2 for donjon's own errors.

    \b
    Examples:
      donjon run-wasm hello.wasm
      donjon run-wasm --dir ./data::/data --env LANG=C wc.wasm /data/words.txt
      donjon run-wasm --dir . cat.wasm README.md
      donjon run-wasm --memory 64M --timeout 10 compute.wasm
      donjon run-wasm --listen 127.0.0.1:8080 server.wasm
    """
    from donjon.wasi.api import Limits, MemoryDir, Preopen, RunSpec
    from donjon.wasi.cache import default_cache_dir
    from donjon.wasi.runner import run

    if not module.is_file():
        raise UsageError(f"{module}: no such file")
    preopens: list[Preopen | MemoryDir] = []
    for text, writable in [(d, True) for d in dirs] + [(d, False) for d in dirs_ro]:
        host, guest = parse_dir(text)
        if not host.is_dir():
            raise UsageError(f"--dir {text}: {host} is not a directory")
        preopens.append(Preopen(host_path=host, guest_path=guest, writable=writable))
    env: dict[str, str] = dict(os.environ) if inherit_env else {}
    env.update(parse_env(e) for e in envs)
    for name, value in (("--timeout", timeout), ("--call-timeout", call_timeout)):
        if value is not None and value <= 0:
            raise UsageError(f"{name} must be a positive number of seconds")
    limits = Limits(
        memory_bytes=parse_size(memory) if memory else None,
        timeout_s=timeout,
        blocking_call_timeout_s=call_timeout,
    )
    sockets = [open_listener(text) for text in listens]
    spec = RunSpec(
        module=module,
        args=[module.name, *args],
        env=env,
        preopens=preopens,
        streams=list(sockets),
        limits=limits,
        cache_dir=None if no_cache else default_cache_dir(),
    )
    sys.stdout.flush()

    def progress(message: str) -> None:
        if sys.stderr.isatty():  # never mixed into a captured stderr
            click.echo(f"donjon: {message}", err=True)

    result = run(spec, progress=progress)
    if result.trap:
        click.echo(f"donjon: {result.trap}", err=True)
    sys.exit(result.exit_code)
