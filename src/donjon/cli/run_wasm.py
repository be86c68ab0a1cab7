"""``donjon run-wasm``: run a WASI preview1 module directly, outside any Keep.

Flags follow the wasmtime CLI where they overlap, so the same test programs run
under both: arguments after the module go to the guest, ``--dir HOST::GUEST``
maps a folder, ``--env K=V`` sets one variable, ``--listen`` pre-opens a
listening TCP socket after the directories (as wasmtime's ``-S tcplisten``).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from donjon.cli.options import FILE
from donjon.cli.run_wasm_core import RunWasmOptions, execute
from donjon.cli.run_wasm_core import open_listener as open_listener
from donjon.cli.run_wasm_core import parse_dir as parse_dir
from donjon.cli.run_wasm_core import parse_env as parse_env
from donjon.cli.run_wasm_core import parse_size as parse_size


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
    execute(
        RunWasmOptions(
            os.fspath(module),
            args,
            dirs=dirs,
            dirs_ro=dirs_ro,
            envs=envs,
            inherit_env=inherit_env,
            memory=memory,
            timeout=timeout,
            call_timeout=call_timeout,
            no_cache=no_cache,
            listens=listens,
        )
    )
