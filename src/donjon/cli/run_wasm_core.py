"""``donjon run-wasm`` without click: its options, their checks, and the run itself.

Both starts of ``run-wasm`` end in :func:`execute`: the click command in
:mod:`donjon.cli.run_wasm` (``--help``, every usage error) and the lean start
in :mod:`donjon.cli.entry`, which reads the common command lines with
:func:`parse_argv` and imports neither click nor anything else slow. Whatever
:func:`parse_argv` is not sure about (help, an unknown option, a value that
looks like an option, a module click would refuse) it leaves to click, so
the two starts behave alike by construction.
"""

from __future__ import annotations

import os
import sys

from donjon.errors import UsageError
from donjon.escape import escape

TYPE_CHECKING = False  # ``typing`` costs milliseconds to import; mypy reads this as True
if TYPE_CHECKING:
    import socket
    from typing import NoReturn


def parse_size(text: str) -> int:
    """``65536``, ``64K``, ``256MiB``, ``1G`` -> bytes (binary units)."""
    import re  # only runs given --memory pay for it

    match = re.match(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"--memory: cannot read size {text!r} (examples: 64M, 1GiB, 65536)")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * 1024 ** "_kmgt".index(unit) if unit else number


def parse_dir(text: str) -> tuple[str, str]:
    host, sep, guest = text.partition("::")
    if not host:
        raise UsageError(f"--dir {text!r}: the host directory is empty")
    return host, guest if sep else host


def parse_env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--env {text!r}: expected KEY=VALUE")
    return key, value


def open_listener(text: str) -> socket.socket:
    import socket

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


def path_text(text: str) -> str:
    """``text`` as ``str(pathlib.Path(text))`` spells it (``a//b/`` -> ``a/b``).

    Messages and the guest's ``argv[0]`` name paths that way, as they did when
    click handed ``Path`` objects over; ``pathlib`` is loaded only for a path
    that is not already in that form.
    """
    parts = text.split("/")
    inner = parts[1:] if text.startswith("/") and not text.startswith("//") else parts
    if text and os.sep == "/" and all(p not in ("", ".") for p in inner):
        return text
    from pathlib import Path

    return str(Path(text))


class RunWasmOptions:
    """What ``donjon run-wasm`` was asked to do, as click would hand it over."""

    __slots__ = (
        "args",
        "call_timeout",
        "dirs",
        "dirs_ro",
        "envs",
        "inherit_env",
        "listens",
        "memory",
        "module",
        "no_cache",
        "timeout",
    )

    def __init__(
        self,
        module: str,
        args: tuple[str, ...] = (),
        *,
        dirs: tuple[str, ...] = (),
        dirs_ro: tuple[str, ...] = (),
        envs: tuple[str, ...] = (),
        inherit_env: bool = False,
        memory: str | None = None,
        timeout: float | None = None,
        call_timeout: float | None = None,
        no_cache: bool = False,
        listens: tuple[str, ...] = (),
    ) -> None:
        self.module = module
        self.args = args
        self.dirs = dirs
        self.dirs_ro = dirs_ro
        self.envs = envs
        self.inherit_env = inherit_env
        self.memory = memory
        self.timeout = timeout
        self.call_timeout = call_timeout
        self.no_cache = no_cache
        self.listens = listens


#: option -> attribute, for options that take one value (the ``multiple`` ones collect)
_VALUES = {
    "--dir": "dirs",
    "--dir-ro": "dirs_ro",
    "--env": "envs",
    "--listen": "listens",
    "--memory": "memory",
    "--timeout": "timeout",
    "--call-timeout": "call_timeout",
}
_FLAGS = {"--inherit-env": "inherit_env", "--no-cache": "no_cache"}
_FLOATS = ("timeout", "call_timeout")


def parse_argv(argv: list[str]) -> RunWasmOptions | None:
    """Read ``run-wasm``'s arguments the way click does, or None to let click do it.

    Only the plain forms are taken: known options before the module (``--opt
    VALUE``, ``--opt=VALUE``, flags), then the module, then the guest's
    arguments. Anything else is None: help, ``--``, an unknown or short option,
    a missing or option-like value, a value click would refuse, a module that
    is a directory or unreadable, a platform whose paths are not POSIX.
    """
    if os.sep != "/":
        return None
    found: dict[str, object] = {}
    multi: dict[str, list[str]] = {}
    index = 0
    while index < len(argv):
        token = argv[index]
        if not token.startswith("-"):
            break
        name, eq, value = token.partition("=")
        if name in _FLAGS and not eq:
            found[_FLAGS[name]] = True
            index += 1
            continue
        attribute = _VALUES.get(name)
        if attribute is None:
            return None
        if not eq:
            if index + 1 >= len(argv) or argv[index + 1].startswith("-"):
                return None
            value = argv[index + 1]
            index += 1
        index += 1
        if attribute in _FLOATS:
            try:
                found[attribute] = float(value)
            except ValueError:
                return None
        elif attribute == "memory":
            found[attribute] = value
        else:
            multi.setdefault(attribute, []).append(value)
    if index >= len(argv):
        return None  # no module: click's "Missing argument"
    module = argv[index]
    if os.path.isdir(module) or (os.path.exists(module) and not os.access(module, os.R_OK)):
        return None  # click.Path refuses these, in its own words
    options = RunWasmOptions(module, tuple(argv[index + 1 :]))
    for attribute, given in found.items():
        setattr(options, attribute, given)
    for attribute, values in multi.items():
        setattr(options, attribute, tuple(values))
    return options


def load_host() -> None:
    """Import what :func:`execute` runs (the lean start does it with the collector off)."""
    import donjon.wasi.api
    import donjon.wasi.cache
    import donjon.wasi.runner  # noqa: F401


def execute(options: RunWasmOptions) -> NoReturn:
    """Check the options, run the module and exit with its exit code."""
    from donjon.wasi.api import Limits, MemoryDir, Preopen, RunSpec
    from donjon.wasi.cache import default_cache_path
    from donjon.wasi.runner import run

    module = path_text(options.module)
    if not os.path.isfile(module):
        raise UsageError(f"{module}: no such file")
    preopens: list[Preopen | MemoryDir] = []
    for text, writable in [(d, True) for d in options.dirs] + [(d, False) for d in options.dirs_ro]:
        host, guest = parse_dir(text)
        host = path_text(host)
        if not os.path.isdir(host):
            raise UsageError(f"--dir {text}: {host} is not a directory")
        preopens.append(Preopen(host_path=host, guest_path=guest, writable=writable))
    env: dict[str, str] = dict(os.environ) if options.inherit_env else {}
    env.update(parse_env(e) for e in options.envs)
    for name, value in (("--timeout", options.timeout), ("--call-timeout", options.call_timeout)):
        if value is not None and value <= 0:
            raise UsageError(f"{name} must be a positive number of seconds")
    limits = Limits(
        memory_bytes=parse_size(options.memory) if options.memory else None,
        timeout_s=options.timeout,
        blocking_call_timeout_s=options.call_timeout,
    )
    sockets = [open_listener(text) for text in options.listens]
    spec = RunSpec(
        module=module,
        args=[os.path.basename(module), *options.args],
        env=env,
        preopens=preopens,
        streams=list(sockets),
        limits=limits,
        cache_dir=None if options.no_cache else default_cache_path(),
    )
    sys.stdout.flush()

    def progress(message: str) -> None:
        if sys.stderr.isatty():  # never mixed into a captured stderr
            _echo_err(f"donjon: {message}")

    # No SIGTERM watcher here (the Keep has one, donjon.cli.stopping): run-wasm installs no
    # handler, so SIGTERM's default action already ends it at once, and the watcher's
    # thread made every host call slower (bench/wasi_write1.py: 0.42 of wasmtime's rate
    # with it, 0.69 without, 2026-12-03).
    def warn(message: str) -> None:  # always shown: no logging is set up on this path
        _echo_err(f"donjon: {message}")

    result = run(spec, progress=progress, warn=warn)
    if result.trap:
        _echo_err(f"donjon: {result.trap}")
    sys.exit(result.exit_code)


def _echo_err(line: str) -> None:
    """One line on stderr; a module's names (in a trap) are the guest's words, so escaped."""
    sys.stderr.write(escape(line) + "\n")
    sys.stderr.flush()
