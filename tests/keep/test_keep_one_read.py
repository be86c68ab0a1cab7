"""The certificate names the workload that actually runs: ``main.wasm`` is read once.

The attack: the host swaps ``main.wasm`` on disk after the Keep hashed it into
its CSR (here, while the Steward is answering), hoping the Keep then compiles
the new file under a certificate that names the old one. The Keep must run the
bytes it attested. And a compiled module planted in the cache under the
attested module's name must never run either.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from donjon import wasi
from donjon.keep import package
from donjon.keep.runner import KeepOptions, prepare
from donjon.wasi import Stdio, StdioKind
from donjon.wasi.cache import KEY_NAME, ModuleCache
from donjon.wasi.runner import EngineFlags
from support.wat import printer

if TYPE_CHECKING:
    from conftest import Responder, StandInCA

ATTESTED = printer("attested")
SWAPPED = printer("SWAPPED")


def keep_package(root: Path, url: str, bundle: Path) -> Path:
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "main.wasm").write_bytes(ATTESTED)
    (pkg / "Donjon.toml").write_text(
        f'steward = "{url}"\nsteward_ca = "{bundle}"\n'
        '[[files]]\nkind = "null"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'
    )
    return pkg


def swapping_responder(ca: StandInCA, wasm: Path, seen: list[bytes]) -> Responder:
    """Issues for the CSR, after swapping main.wasm: the CSR is built, its hash is fixed."""
    issue = ca.responder()

    def respond(body: bytes, ctype: str) -> tuple[int, str, bytes]:
        seen.append(body)
        wasm.write_bytes(SWAPPED)
        return issue(body, ctype)

    return respond


def run_to_file(keep_spec: wasi.RunSpec, out: Path) -> str:
    keep_spec.stdout = Stdio(StdioKind.FILE, path=out)
    assert wasi.run(keep_spec).exit_code == 0
    return out.read_text()


def test_a_main_wasm_swapped_after_the_csr_does_not_run(
    tmp_path: Path,
    steward: tuple[str, Path, list[Responder]],
    steward_ca: StandInCA,
) -> None:
    url, bundle, responders = steward
    pkg = keep_package(tmp_path, url, bundle)
    csrs: list[bytes] = []
    responders.append(swapping_responder(steward_ca, pkg / "main.wasm", csrs))
    loaded = package.load(pkg)
    with prepare(loaded, KeepOptions(platform="nil", report=lambda _: None)) as keep:
        assert csrs, "the Steward was never asked"
        assert (pkg / "main.wasm").read_bytes() == SWAPPED  # the swap happened
        assert keep.identity.claims.wasm_sha256 == hashlib.sha256(ATTESTED).digest()
        assert run_to_file(keep.spec, tmp_path / "out") == "attested\n"


def test_a_cache_entry_of_another_module_under_the_attested_name_never_runs(
    tmp_path: Path,
    steward: tuple[str, Path, list[Responder]],
    steward_ca: StandInCA,
) -> None:
    url, bundle, responders = steward
    responders.append(steward_ca.responder())
    pkg = keep_package(tmp_path, url, bundle)
    state, cache = tmp_path / "state", tmp_path / "cache"
    options = KeepOptions(platform="nil", state_dir=state, cache_dir=cache, report=lambda _: None)
    with prepare(package.load(pkg), options) as keep:
        assert run_to_file(keep.spec, tmp_path / "1.out") == "attested\n"
    key_file = state / KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # the Keep's key, in its state dir
    # The attacker writes the cache, not the state dir: SWAPPED's entry under ATTESTED's name.
    flags = EngineFlags(epoch_interruption=False)
    theirs = ModuleCache(tmp_path / "their-cache", flags.key(), tmp_path / "their.key")
    theirs.load(flags.engine(), SWAPPED, "swapped.wasm")
    planted = ModuleCache(cache, flags.key(), key_file).path_for(ATTESTED)
    assert planted.is_file()
    shutil.copyfile(theirs.path_for(SWAPPED), planted)
    with prepare(package.load(pkg), options) as keep:
        assert run_to_file(keep.spec, tmp_path / "2.out") == "attested\n"


def test_sgx_turns_the_module_cache_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under Gramine the host serves every file: the cache key would be no secret."""
    from donjon.keep import runner
    from donjon.keep.platforms import nil

    class SgxLike:
        name = "sgx"

        def __getattr__(self, attr: str) -> object:
            return getattr(nil.create(None), attr)

    monkeypatch.setattr(runner.platforms, "select", lambda *_: SgxLike())
    (tmp_path / "main.wasm").write_bytes(ATTESTED)
    lines: list[str] = []
    options = KeepOptions(cache_dir=tmp_path / "cache", report=lines.append)
    with prepare(package.load(tmp_path / "main.wasm"), options) as keep:
        assert keep.spec.cache_dir is None
    assert any("module cache off" in line for line in lines), lines
