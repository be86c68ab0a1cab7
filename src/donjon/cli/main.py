"""Entry point of the ``donjon`` command.

Subcommands are imported only when invoked, so that ``donjon run-wasm`` does not
pay for importing the Steward's web stack: process start time is a measured goal.
Every :class:`~donjon.errors.DonjonError` becomes one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import Any

import click

from donjon import __version__
from donjon.cli import failure
from donjon.escape import escape

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


class UnknownCommand(click.UsageError):
    """A subcommand that does not exist, with the nearest one that does."""

    def __init__(self, name: str, nearest: str | None, ctx: click.Context) -> None:
        super().__init__(f"No such command '{name}'", ctx)
        self.nearest = nearest


def usage_error_lines(exc: click.UsageError) -> tuple[str, str | None]:
    """Click's three-line usage error as Donjon's one line, and a hint where it helps.

    ``donjon: error: run: missing argument 'PATH'`` then, because the usage line
    tells what is missing, ``donjon: hint: usage: donjon run [OPTIONS] PATH``.
    """
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "donjon"
    where = path.removeprefix("donjon").strip()
    prefix = f"{where}: " if where else ""
    hint: str | None = None
    if isinstance(exc, click.NoSuchOption):
        message = f"no such option '{exc.option_name}'"
        if exc.possibilities:
            message += f" (did you mean '{exc.possibilities[0]}'?)"
        else:
            hint = f"'{path} --help' lists the options"
    elif isinstance(exc, UnknownCommand):
        message = exc.message[0].lower() + exc.message[1:]
        if exc.nearest:
            message += f" (did you mean '{exc.nearest}'?)"
        else:
            hint = f"'{path} --help' lists the commands"
    else:
        text = " ".join(exc.format_message().split())
        message = (text[:1].lower() + text[1:]).rstrip(".")
        usage_helps = isinstance(exc, click.MissingParameter) or "extra argument" in text
        if usage_helps and ctx is not None:
            hint = f"usage: {ctx.get_usage().removeprefix('Usage: ').strip()}"
    return f"donjon: error: {prefix}{message}", None if hint is None else f"donjon: hint: {hint}"


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

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # Click says only "No such command"; name the nearest one, as for options.
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            near = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            raise UnknownCommand(name, near[0] if near else None, ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Show the short help without importing every module.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="donjon")
def cli() -> None:
    """Donjon runs WebAssembly workloads in Keeps: instances inside hardware TEEs
    (AMD SEV-SNP, Intel TDX and SGX, Arm CCA, AWS Nitro, Azure confidential VMs)
    that prove by remote attestation what they run, get a certificate from a
    Steward, and serve over TLS.

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
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `donjon config`: the help is the answer
            exc.show()
            sys.exit(exc.exit_code)
        line, hint = usage_error_lines(exc)
        click.echo(escape(line), err=True)
        if hint:
            click.echo(escape(hint), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"donjon: error: {escape(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        sys.exit(failure.report(exc))


if __name__ == "__main__":
    main()
