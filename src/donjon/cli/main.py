"""Entry point of the ``donjon`` command.

Subcommands are imported only when invoked, so that ``donjon run-wasm`` does not
pay for importing the Steward's web stack: process start time is a measured goal.
Every :class:`~donjon.errors.DonjonError` becomes one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from donjon import __version__
from donjon.cli import failure

#: command name -> (module, attribute, one-line help shown by ``donjon --help``)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("donjon.cli.keep", "run", "Run a workload package in a Keep."),
    "config": ("donjon.cli.keep", "config", "Create and check Donjon.toml / Enarx.toml."),
    "package": (
        "donjon.cli.package",
        "package",
        "Push, pull and inspect packages in an OCI registry.",
    ),
    "platform": ("donjon.cli.keep", "platform", "Show which TEE platforms this host offers."),
    "run-wasm": ("donjon.cli.run_wasm", "run_wasm", "Run a WASI module directly (no Keep)."),
    "attest": ("donjon.cli.attest", "attest", "Decode and verify attestation evidence."),
    "steward": ("donjon.cli.steward", "steward", "Run and manage a Steward (attestation CA)."),
    "verify-peer": (
        "donjon.cli.verify_peer",
        "verify_peer",
        "Connect to a Keep over TLS and check its attested certificate.",
    ),
    "sim": ("donjon.cli.sim", "sim", "Manage the simulated TEE used for development."),
    "demo": ("donjon.cli.demo", "demo", "Run the whole attested flow on this machine."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attribute, _ = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return None
        command = getattr(module, attribute, None)
        return command if isinstance(command, click.Command) else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Show the short help without importing every module.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="donjon")
def cli() -> None:
    """Donjon runs WebAssembly workloads in Keeps: instances inside hardware TEEs
    (AMD SEV-SNP, Intel TDX and SGX, Arm CCA) that prove by remote attestation
    what they run, get a certificate from a Steward, and serve over TLS.

    \b
    Quick start:
      donjon run-wasm hello.wasm          run a WASI module
      donjon run examples/hello           run a workload package in a Keep
      donjon platform info                what TEEs does this host have?
      donjon demo                         the whole attested flow, locally
    """


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI, turning known failures into one-line errors."""
    try:
        return cli.main(args=argv, prog_name="donjon", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("donjon: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        sys.exit(failure.report(exc))


if __name__ == "__main__":
    main()
