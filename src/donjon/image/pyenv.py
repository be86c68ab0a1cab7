"""Donjon and its dependencies, from wheels, as a virtual environment at /opt/donjon.

pip runs on the build machine, not in the image (the image has no pip): it is told the
image's interpreter (CPython 3.11, glibc 2.36) and takes wheels only, so nothing is
compiled. The venv is written by hand, as ``python -m venv`` would write it:
``pyvenv.cfg``, ``bin/python3`` pointing at Debian's ``/usr/bin/python3.11``, and
``lib/python3.11/site-packages``.

One set of downloaded wheels (``donjon[postgres,hsm]``'s), two installs: Donjon alone
(both images), then the wheels only the extras need (the Steward's layer 3), so the
Steward image shares the Keep image's layers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from donjon.errors import DonjonError
from donjon.image import VENV, Progress

PYTHON = "3.11"
#: the extras of the Steward image: its audit store on PostgreSQL, its CA key on an HSM
STEWARD_EXTRAS = ("postgres", "hsm")
SITE = f"lib/python{PYTHON}/site-packages"
#: Debian 12's glibc is 2.36: every manylinux wheel up to that runs on it
GLIBC_MINOR = 36
_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


class PyenvError(DonjonError):
    """pip could not build, download or install Donjon and its dependencies."""


@dataclass(frozen=True)
class Venvs:
    """The two installs, each a directory laid out like /opt/donjon."""

    common: Path  # Donjon and its runtime dependencies: both images
    steward_extra: Path  # what the Steward's extras add on top, nothing else
    donjon_version: str


def platform_args(arch: str) -> list[str]:
    """pip's flags for the image's interpreter: its ABI and every manylinux tag it accepts."""
    machine = _MACHINE.get(arch)
    if machine is None:
        raise PyenvError(f"no wheels for architecture {arch!r}: amd64 and arm64 are supported")
    tags = [f"manylinux_2_{m}_{machine}" for m in range(GLIBC_MINOR, 16, -1)]
    tags.append(f"manylinux2014_{machine}")
    args = ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp",
            "--abi", f"cp{PYTHON.replace('.', '')}"]  # fmt: skip
    for tag in tags:
        args += ["--platform", tag]
    return args


def _pip(args: list[str], what: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=1200
    )
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ERROR")] or [
            (done.stderr.strip().splitlines() or ["no output"])[-1]
        ]
        raise PyenvError(f"{what} failed: {lines[0].removeprefix('ERROR: ')}")


def build_wheel(repo: Path, out: Path, progress: Progress) -> Path:
    progress("building Donjon's wheel")
    _pip(["wheel", "--no-deps", "-q", "-w", str(out), str(repo)], "pip wheel (Donjon)")
    wheels = sorted(out.glob("donjon-*.whl"))
    if len(wheels) != 1:
        raise PyenvError(f"pip wheel wrote {len(wheels)} Donjon wheels into {out}")
    return wheels[0]


def _install(wheelhouse: Path, requirements: list[str], target: Path, arch: str,
             deps: bool = True) -> None:  # fmt: skip
    _pip(["install", "-q", "--no-index", "--find-links", str(wheelhouse), "--no-compile",
          *([] if deps else ["--no-deps"]), "--target", str(target / SITE), *platform_args(arch),
          *requirements],
         f"pip install {' '.join(Path(r).name for r in requirements)}")  # fmt: skip
    _drop_direct_urls(target / SITE)
    bin_dir = target / "bin"
    moved = target / SITE / "bin"  # pip --target puts scripts beside the packages
    bin_dir.mkdir(parents=True, exist_ok=True)
    if moved.is_dir():
        for script in moved.iterdir():
            _retarget(script, bin_dir / script.name)
        shutil.rmtree(moved)


def _drop_direct_urls(site: Path) -> None:
    """pip records the wheel's path (a temporary directory) in direct_url.json: a build
    machine's detail that would also make every build's layer differ. It goes, with its
    line in RECORD."""
    for record in site.glob("*.dist-info/RECORD"):
        direct = record.with_name("direct_url.json")
        if direct.exists():
            direct.unlink()
            name = f"{record.parent.name}/direct_url.json,"
            lines = record.read_text().splitlines(keepends=True)
            record.write_text("".join(ln for ln in lines if not ln.startswith(name)))


def _make_venv(target: Path) -> None:
    """What ``python -m venv`` writes, pointing at the image's interpreter."""
    (target / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {PYTHON}\n"
    )
    for name in ("python", "python3", f"python{PYTHON}"):
        (target / "bin" / name).symlink_to(f"/usr/bin/python{PYTHON}")


def _dist_name(text: str) -> str:
    """A distribution's normalized name (PEP 503), from a wheel or .dist-info file name."""
    return re.sub(r"[-_.]+", "-", text.split("-")[0]).lower()


#: pip's wrapper for an interpreter path too long for a ``#!`` line: sh runs python
_SH_WRAPPER = re.compile(rb"\A#!/bin/sh\n'''exec' .*\n' '''\n")


def _retarget(script: Path, dest: Path) -> None:
    """A script's ``#!`` line names the build machine's python; the image's is /opt/donjon's.

    The image has no shell, so pip's sh wrapper (long build paths) is replaced as well.
    """
    data = script.read_bytes()
    shebang = f"#!{VENV}/bin/python3\n".encode()
    wrapped = _SH_WRAPPER.match(data)
    if wrapped:
        data = shebang + data[wrapped.end() :]
    elif data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
        data = shebang + data[data.index(b"\n") + 1 :]
    dest.write_bytes(data)
    dest.chmod(0o755)


def _check_disjoint(common: Path, extra: Path) -> None:
    """The extras' layer only adds files: none may replace one of the shared layer's."""
    for path in extra.rglob("*"):
        rel = path.relative_to(extra)
        mine = common / rel
        if not path.is_dir() and (mine.exists() or mine.is_symlink()):
            raise PyenvError(f"the Steward's extras would replace a shared file: {rel}")


def build(repo: Path, work: Path, arch: str, progress: Progress) -> Venvs:
    wheel = build_wheel(repo, work / "dist", progress)
    version = wheel.name.split("-")[1]
    wheelhouse = work / "wheelhouse"
    extras = ",".join(STEWARD_EXTRAS)
    progress(f"downloading the wheels of donjon[{extras}] for CPython {PYTHON} ({arch})")
    _pip(["download", "-q", "-d", str(wheelhouse), *platform_args(arch), f"{wheel}[{extras}]"],
         "pip download")  # fmt: skip
    count = len(list(wheelhouse.glob("*.whl")))
    progress(f"installing {count} wheels (no compiler: binary wheels only)")
    common, extra = work / "venv-common", work / "venv-extra"
    _install(wheelhouse, [str(wheel)], common, arch)
    _make_venv(common)
    # the extras' own wheels: those the download resolved that the plain install did not
    # take; their dependencies are among them or already in the shared layer
    installed = {_dist_name(d.name) for d in (common / SITE).glob("*.dist-info")}
    rest = sorted(str(w) for w in wheelhouse.glob("*.whl") if _dist_name(w.name) not in installed)
    if not rest:
        raise PyenvError(f"the Steward's extras ({extras}) added no wheel")
    _install(wheelhouse, rest, extra, arch, deps=False)
    _check_disjoint(common, extra)
    return Venvs(common, extra, version)


def compile_bytecode(dirs: list[tuple[Path, str]], progress: Progress) -> bool:
    """Precompile (``dir`` -> its path in the image): a read-only root cannot cache .pyc.

    The .pyc format is the interpreter's; only a 3.11 on the build machine writes them.
    ``unchecked-hash``: the image never changes, so Python need not stat each source.
    """
    if sys.version_info[:2] != (3, 11):
        progress(f"no .pyc files: this is Python {sys.version_info[0]}.{sys.version_info[1]}, "
                 f"the image's is {PYTHON} (modules compile at each start)")  # fmt: skip
        return False
    progress("precompiling Python modules (.pyc, unchecked-hash)")
    for path, in_image in dirs:
        done = subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", "-x", r"/(test|tests)/",
             "--invalidation-mode", "unchecked-hash", "-s", str(path), "-p", in_image,
             str(path)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        # compileall exits 1 when some file fails to compile (py2-only files in some
        # packages' test data); those stay without .pyc, which is harmless
        if done.returncode not in (0, 1):
            raise PyenvError(f"compileall {in_image} failed: {done.stderr.strip()[-300:]}")
    return True
