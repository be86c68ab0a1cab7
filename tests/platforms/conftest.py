"""A simulated vendor hierarchy made once per session (RSA-4096 keys take a second)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from donjon.keep.sim import state
from donjon.keep.sim.products import Product, TcbVersion

#: A fixed chip_id, so tests can assert on it without reading it back from the code.
CHIP_ID = bytes(range(64))


@pytest.fixture(scope="session")
def chip_id() -> bytes:
    return CHIP_ID


@pytest.fixture(scope="session")
def sim_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim-template")
    directory = root / "sim"
    config = state.SimConfig(
        Product.MILAN, TcbVersion(bl=3, tee=0, snp=20, ucode=209), CHIP_ID, report_version=3
    )
    state.init(directory, config)
    return directory


@pytest.fixture
def sim_state_dir(sim_template: Path, tmp_path: Path) -> Path:
    """A private copy of the session hierarchy: Donjon's state dir, with the sim in ``sim/``."""
    target = tmp_path / "state"
    shutil.copytree(sim_template, target / "sim")
    return target
