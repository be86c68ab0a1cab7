"""Docs that run: every console block of the README and docs/*.md, as written, in order.

The format is described in ``mddoc.py`` and, for contributors, in CONTRIBUTING.md.
Each document runs in its own temporary copy of the repository (a fresh clone, as
the reader has) with an empty ``$HOME``; a doc that drifts from the code fails here.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import mddoc

REPO = Path(__file__).resolve().parents[2]
DOCS = [
    REPO / "README.md",
    REPO / "CONTRIBUTING.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "examples" / "README.md",
]



def _runnable(doc: Path) -> list[mddoc.Block]:
    blocks = mddoc.parse(doc.read_text(), rel(doc))
    return [b for b in blocks if b.info == "console" and b.not_run is None]


COMMAND_TIMEOUT_S = 300  # a first build of a C example compiles zig's libc
BACKGROUND_WAIT_S = 90
#: Settings of the developer's own environment that would change what a reader sees.
CLEARED_ENV = (
    "DONJON_PLATFORM",
    "DONJON_TRUST_DIR",
    "DONJON_STEWARD_NOW",
    "DONJON_STEWARD_CA",
    "DONJON_STEWARD_ADMIN_TOKEN",
    "DONJON_STEWARD_AUDIT_TOKEN",
    "DONJON_DEBUG",
    "DONJON_STATE_DIR",
    "DONJON_STEWARD_URL",
    "DONJON_STEWARD_KEK",
    "DONJON_REGISTRY_CA",
    "DONJON_REGISTRY_USERNAME",
    "DONJON_REGISTRY_PASSWORD",
    "DONJON_PKCS11_MODULE",
    "DONJON_PKCS11_PIN",
    "DONJON_TPM_TCTI",
    "DONJON_AZURE_IMDS_URL",
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "VIRTUAL_ENV",
)


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def fresh_clone(target: Path) -> Path:
    """The repository's files as a clone has them (tracked and new, not ignored)."""
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=False,
    )  # fmt: skip
    if proc.returncode == 0:
        for name in proc.stdout.decode().split("\0"):
            source = REPO / name
            if name and source.is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
    else:  # an unpacked tarball: copy what a clone would hold
        ignore = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "*.wasm", ".*_cache")
        shutil.copytree(REPO, target, ignore=ignore, dirs_exist_ok=True)
    return target


@dataclass
class Runner:
    """Runs one document's commands: a shell per command, ``cd`` carried over."""

    cwd: Path
    env: dict[str, str]
    state: Path
    background: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def shell(self, text: str) -> tuple[int, list[str]]:
        pwd_file = self.state / "pwd"
        script = (
            f"cd {shlex.quote(str(self.cwd))} || exit 97\n{text}\n__doc_rc=$?\n"
            f"pwd > {shlex.quote(str(pwd_file))}\nexit $__doc_rc\n"
        )
        proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", script],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return 124, [*out.decode(errors="replace").splitlines(), "(doc test: timed out)"]
        if pwd_file.is_file():
            self.cwd = Path(pwd_file.read_text().strip())
            pwd_file.unlink()
        return proc.returncode, out.decode(errors="replace").splitlines()

    def start(self, command: mddoc.Command) -> str | None:
        """A background command; waits for the output the doc shows. An error, or None."""
        log = self.state / f"background-{len(self.background)}.log"
        text = command.text.rstrip().removesuffix("&")
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", f"cd {shlex.quote(str(self.cwd))}\n{text}"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.background.append((proc, log))
        if not command.output:
            return None
        deadline = time.monotonic() + BACKGROUND_WAIT_S
        while True:
            lines = log.read_text(errors="replace").splitlines()
            if mddoc.matches([*command.output, "..."], lines):
                return None
            if proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if proc.poll() is not None else "did not print it in time"
                return f"background command {why}\n" + mddoc.first_mismatch(command.output, lines)
            time.sleep(0.2)

    def background_logs(self) -> str:
        """The last lines of every background command, for a failure message."""
        parts = []
        for proc, log in self.background:
            tail = log.read_text(errors="replace").splitlines()[-8:]
            what = proc.args[-1].splitlines()[-1][:60]  # type: ignore[index]
            parts.append(f"background {what!r}:\n  " + "\n  ".join(tail))
        return "\n".join(parts)

    def stop(self) -> None:
        for proc, _ in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.background:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def doc_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    if env.get("PYTHONPATH"):  # commands run elsewhere: a relative entry would point nowhere
        parts = env["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in parts if p)
    real_cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    # `donjon` and `python3` are this interpreter, whatever is installed elsewhere.
    for name, line in (
        ("donjon", f'exec {shlex.quote(sys.executable)} -m donjon.cli.main "$@"'),
        ("python3", f'exec {shlex.quote(sys.executable)} "$@"'),
        ("python", f'exec {shlex.quote(sys.executable)} "$@"'),
    ):
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\n{line}\n")
        shim.chmod(0o755)
    (tmp / "home").mkdir()
    env.update(
        HOME=str(tmp / "home"),
        XDG_CACHE_HOME=real_cache,  # the toolchain's build cache is a cache: share it
        # Compiled modules are authenticated with a key in the (fresh, empty) state
        # directory: a shared module cache would hold entries of another key, which a
        # reader's machine does not (each would be discarded, with a warning).
        DONJON_CACHE_DIR=str(tmp / "module-cache"),
        PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        NO_COLOR="1",
        TERM="dumb",
        PYTHONUNBUFFERED="1",  # stdout and stderr interleave as on a terminal
    )
    return env


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    clone = fresh_clone(tmp_path / "repo")
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    yield clone, doc_env(tmp_path)


# The docs' Stewards listen where the docs say (127.0.0.1:3000 and others): under
# pytest-xdist every doc runs in one worker, in turn (scripts/test: --dist loadfile;
# the group holds under --dist loadgroup too).
@pytest.mark.xdist_group("docs-fixed-ports")
# A doc with nothing to run (every console block says why not, which the test below
# checks) is not a case here: CI skips nothing.
@pytest.mark.parametrize("doc", [d for d in DOCS if _runnable(d)], ids=rel)
def test_doc_runs_as_written(doc: Path, workspace: tuple[Path, dict[str, str]]) -> None:
    text = doc.read_text()
    blocks = mddoc.parse(text, rel(doc))
    runnable = [b for b in blocks if b.info == "console" and b.not_run is None]
    if "../shared/vectors" in text and not (REPO.parent / "shared" / "vectors").is_dir():
        pytest.skip(f"{rel(doc)} uses ../shared/vectors, which is absent")
    clone, env = workspace
    state = clone.parent / "doc-state"
    state.mkdir()
    runner = Runner(cwd=clone, env=env, state=state)
    try:
        for block in blocks:
            where = f"{rel(doc)}:{block.line}"
            if block.file is not None:
                target = runner.cwd / block.file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text)
            if block not in runnable:
                continue
            for setup in block.setup:
                code, out = runner.shell(setup)
                assert code == 0, f"{where}: hidden setup failed: {setup}\n" + "\n".join(out)
            for command in block.commands:
                where = f"{rel(doc)}:{command.line}: $ {command.text}"
                if command.background:
                    problem = runner.start(command)
                    assert problem is None, f"{where}\n{problem}"
                    continue
                code, out = runner.shell(command.text)
                shown = "\n".join(out)
                if command.must_fail:
                    assert code != 0, f"{where}\nshould fail (the doc shows an error)\n{shown}"
                else:
                    logs = runner.background_logs()
                    assert code == 0, f"{where}\nexited {code}:\n{shown}\n{logs}"
                if command.output:
                    assert mddoc.matches(command.output, out), (
                        f"{where}\nthe output drifted from the doc\n"
                        + mddoc.first_mismatch(command.output, out)
                        + f"\n{runner.background_logs()}"
                    )
    finally:
        runner.stop()


def test_the_quickstart_runs_exactly_as_a_reader_types_it() -> None:
    """No hidden setup and nothing skipped: a newcomer types every command of it."""
    blocks = mddoc.parse((REPO / "docs" / "quickstart.md").read_text(), "quickstart")
    console = [b for b in blocks if b.info == "console"]
    assert console
    assert all(b.not_run is None and not b.setup for b in console)


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_block_that_is_not_run_says_why(doc: Path) -> None:
    for block in mddoc.parse(doc.read_text(), rel(doc)):  # a marker without reason raises
        if block.info == "console" and block.not_run is not None:
            assert len(block.not_run) >= 10, f"{rel(doc)}:{block.line}: say why it is not run"
