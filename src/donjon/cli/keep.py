"""``donjon run``, ``donjon config`` and ``donjon platform``: the Keep's commands.

The logic lives in :mod:`donjon.keep`; this module parses flags and prints.
Status lines go to stderr with a ``donjon:`` prefix, so the workload's own
stdout stays clean for pipes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from donjon.atomicfile import write_text
from donjon.cli.options import DIRECTORY, FILE
from donjon.cli.output import escape, log_to_stderr, mark, print_checks, print_json
from donjon.errors import UsageError

CONFIG_TEMPLATE = """\
# Donjon workload configuration: a superset of Enarx's Enarx.toml.
# An Enarx.toml works here unchanged. See docs/config.md for every field.

# Arguments after argv[0] ("main.wasm").
# args = ["--verbose"]

# A Steward (attestation CA) that issues this Keep's certificate. Without one,
# the certificate is self-signed and marked UNATTESTED.
# steward = "https://steward.example.com"
# steward_ca = "steward-ca.pem"      # Donjon: trust for the Steward's HTTPS

# Tables come after the plain keys above (TOML puts any key after a [table] in it).
# Environment variables. FD_COUNT and FD_NAMES are set by the Keep.
# [env]
# LANG = "C"

# [limits]                            # Donjon
# memory = "256MiB"
# timeout = 60                        # seconds

# File descriptors: fd = position in this list. fds 0-2 are stdio.
[[files]]
kind = "stdin"                        # or "null"

[[files]]
kind = "stdout"

[[files]]
kind = "stderr"

# Donjon: a host directory for the guest. Directories must come before sockets.
# [[files]]
# kind = "dir"
# name = "/data"                      # where the guest sees it
# path = "data"                       # host path, relative to this file
# writable = false

# A listening socket; TLS is done by the Keep, the guest sees plaintext.
# [[files]]
# kind = "listen"
# name = "LISTEN"
# prot = "tls"                        # or "tcp"
# port = 8443
# addr = "::"
# client_ca = "steward"               # Donjon: require client certificates from our Steward;
#                                     # revoked, nil/sim and debug clients are refused
# Donjon: accept only clients running this workload (sha256sum of their main.wasm)
# expect_client_workload = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# An outgoing connection, made before the workload starts.
# [[files]]
# kind = "connect"
# host = "peer.example.com"
# port = 8443
# prot = "tls"
# trust = "steward"                   # Donjon: steward | system | bundle | pin; steward
#                                     # refuses revoked, nil/sim and debug peers
# client_cert = true                  # Donjon: present this Keep's certificate
# Donjon: connect only to a peer Keep attested to run this workload on this platform
# expect_workload = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# expect_platform = "snp"
"""


def _say(line: str) -> None:
    click.echo(f"donjon: {escape(line)}", err=True)


_STATE_DIR = click.option(
    "--state-dir", type=DIRECTORY, help="Where platforms keep local state ($DONJON_STATE_DIR)."
)


@click.command("run")
@click.argument("path")
@click.option(
    "--config",
    "config_file",
    type=FILE,
    help="Use this config instead of the package's Donjon.toml/Enarx.toml.",
)
@click.option(
    "--platform",
    "platform_name",
    metavar="NAME",
    help="sgx, snp, tdx, sim or nil (default: $DONJON_PLATFORM, else the first available).",
)
@_STATE_DIR
@click.option(
    "--export-cert",
    type=FILE,
    help="Write the Keep's certificate (public, PEM) here, for a peer to pin.",
)
@click.option("--memory", metavar="SIZE", help="Memory limit, e.g. 256MiB (overrides [limits]).")
@click.option(
    "--timeout", type=float, metavar="SECONDS", help="Wall-clock limit (overrides [limits])."
)
@click.option("--no-cache", is_flag=True, help="Compile every time; skip the module cache.")
@click.option(
    "--allow-tag", is_flag=True, help="Accept oci://...:TAG without a digest (logged; tags move)."
)
@click.option(
    "--registry-ca", type=FILE, help="PEM that signed the registry's (or URL's) HTTPS certificate."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and the UNATTESTED warning.")
def run(
    path: str,
    config_file: Path | None,
    platform_name: str | None,
    state_dir: Path | None,
    export_cert: Path | None,
    memory: str | None,
    timeout: float | None,
    no_cache: bool,
    allow_tag: bool,
    registry_ca: Path | None,
    quiet: bool,
) -> None:
    """Run the workload package PATH in a Keep; exit with its exit code.

    PATH is a directory holding main.wasm and, optionally, Donjon.toml or
    Enarx.toml, or a single .wasm file; or a package in an OCI registry,
    oci://HOST[:PORT]/REPO@sha256:<digest>; or https://.../pkg.tar#sha256=<hex>.
    Remote packages are checked digest by digest before anything runs, and the
    Keep attests their manifest (or tar) digest. The Keep picks a TEE platform, makes a
    fresh key, gets a certificate from the config's Steward (or signs its own,
    marked UNATTESTED), opens the sockets in [[files]] with TLS done for the
    guest, then runs main.wasm.

    \b
    Examples:
      donjon run examples/hello
      donjon run ./echo --platform sim
      donjon run app.wasm --config Enarx.toml --timeout 60
      donjon run ./server --export-cert server.pem   # a peer can pin it
      donjon run oci://registry.example/team/app@sha256:9c1e...
      donjon run https://files.example/app.tar#sha256=5f3a...

    Exit codes: the guest's own; 134 on a trap; 124 at the timeout; 137 at
    the memory limit; 1 or 2 when the Keep itself could not start.
    """
    from donjon.keep import source
    from donjon.keep.config import parse_size
    from donjon.keep.runner import KeepOptions
    from donjon.keep.runner import run as run_keep

    memory_bytes = None
    if memory is not None:
        try:
            memory_bytes = parse_size(memory)
        except ValueError as exc:
            raise UsageError(f"--memory: {exc}") from exc
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    # Library warnings (a dropped TLS client, a retried connect) reach the operator as
    # "donjon: <message>" lines, like the Keep's own status.
    log_to_stderr(logging.WARNING)

    def report(line: str) -> None:
        if not quiet or any(w in line for w in ("UNATTESTED", "NOT a hardware TEE", "DEVELOPMENT")):
            _say(line)

    cache_dir = None
    if not no_cache:
        from donjon.wasi.cache import default_cache_dir

        cache_dir = default_cache_dir()
    options = KeepOptions(
        platform=platform_name,
        state_dir=state_dir,
        cache_dir=cache_dir,
        export_cert=export_cert,
        memory_bytes=memory_bytes,
        timeout_s=timeout,
        report=report,
    )
    opened = source.open_package(
        path,
        config_override=config_file,
        options=source.SourceOptions(allow_tag=allow_tag, ca_bundle=registry_ca),
        report=report,
    )
    sys.stdout.flush()
    with opened:
        result = run_keep(opened.package, options)
    if result.trap:
        _say(result.trap)
    sys.exit(result.exit_code)


@click.group("config")
def config() -> None:
    """Create and check Donjon.toml / Enarx.toml workload configs.

    \b
    Examples:
      donjon config init myapp            write myapp/Donjon.toml
      donjon config check myapp           validate myapp's config
      donjon config check Enarx.toml --json
    """


@config.command("init")
@click.argument("directory", required=False, type=DIRECTORY)
@click.option("--enarx", is_flag=True, help="Name the file Enarx.toml instead of Donjon.toml.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def config_init(directory: Path | None, enarx: bool, force: bool) -> None:
    """Write a commented config template into DIRECTORY (default: here).

    \b
    Example:
      donjon config init myapp && $EDITOR myapp/Donjon.toml
    """
    directory = directory or Path.cwd()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / ("Enarx.toml" if enarx else "Donjon.toml")
    if target.exists() and not force:
        raise UsageError(f"{target}: already exists (use --force to overwrite)")
    write_text(target, CONFIG_TEMPLATE, mode=0o644)
    click.echo(f"wrote {target}")


@config.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the parsed config as JSON.")
@click.option("--no-bind", is_flag=True, help="Do not test that listen addresses are free.")
def config_check(path: Path | None, as_json: bool, no_bind: bool) -> None:
    """Validate a config file, or the config of the package directory PATH.

    Checks the fields, the [[files]] order and names, that directories and PEM
    files exist and, unless --no-bind, that every listen address can be bound
    now. The first problem is reported on one line with file, entry and field.

    \b
    Examples:
      donjon config check                      ./Donjon.toml or ./Enarx.toml
      donjon config check examples/hello
      donjon config check Enarx.toml --json
    """
    from donjon.keep import net
    from donjon.keep import package as packages
    from donjon.keep.config import ListenFile, file_label

    path = path or Path.cwd()
    if path.is_dir():
        found = [path / n for n in packages.CONFIG_NAMES if (path / n).is_file()]
        if not found:
            raise UsageError(f"{path}: no Donjon.toml or Enarx.toml here")
        path = found[0]
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    cfg = packages.parse(path.read_bytes(), path)
    if not no_bind:
        for index, entry in enumerate(cfg.files):
            if isinstance(entry, ListenFile):
                net.listen(entry, f"{path}: {file_label(index, entry)}").close()
    if as_json:
        print_json({"file": str(path), "config": cfg, "fd_names": cfg.fd_names()})
        return
    click.echo(f"{mark(True)} {path}: valid")
    for index, entry in enumerate(cfg.files):
        detail = ""
        if isinstance(entry, ListenFile):
            detail = f" {net.hostport(entry.addr, entry.effective_port())} {entry.prot.value}"
        click.echo(f"  fd {index}: {entry.kind} {entry.effective_name()!r}{detail}")


@click.group("platform")
def platform() -> None:
    """Show which TEE platforms this host offers.

    \b
    Example:
      donjon platform info
      donjon platform info --json
    """


@platform.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@_STATE_DIR
@click.option(
    "--root",
    type=DIRECTORY,
    default=Path("/"),
    hidden=True,
    help="Probe a fake root (tests).",
)
def platform_info(as_json: bool, state_dir: Path | None, root: Path) -> None:
    """List each platform (sgx, snp, tdx, sim, nil) with ✔/✗ checks and hints.

    The Keep uses the first usable platform in that order unless --platform
    or $DONJON_PLATFORM says otherwise. sim and nil protect nothing.

    \b
    Examples:
      donjon platform info
      donjon platform info --json | jq '.platforms[] | select(.usable) | .name'
    """
    from donjon.keep.platforms.probe import probe

    reports = probe(root, state_dir=state_dir)
    chosen = next((r.name for r in reports if r.usable), None)
    if as_json:
        print_json({"selected": chosen, "platforms": reports})
        return
    rows: list[tuple[int, bool, str]] = []
    for report in reports:
        rows.append((0, report.usable, f"{report.name}: {report.summary}"))
        for check in report.checks:
            text = check.text + (f"  (hint: {check.hint})" if check.hint and not check.ok else "")
            rows.append((1, check.ok, text))
    print_checks(rows)
    click.echo(
        f"\nA Keep here would use: {chosen}"
        + ("  (NOT a hardware TEE: nothing is protected)" if chosen in ("sim", "nil") else "")
    )
