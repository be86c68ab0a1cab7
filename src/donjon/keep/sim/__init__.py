"""The simulated TEE: a local AMD-format vendor hierarchy that signs SNP-format reports.

For development and CI only. Its evidence is real SNP report bytes signed by a
VCEK that chains to a locally generated ARK, so a Steward verifies it with the
same code as real SEV-SNP evidence, but trusts it only when its policy names
that ARK explicitly (``[sim] trust = "ark.pem"``), and labels every certificate
it issues on it ``platform=sim``.
"""

from __future__ import annotations

from pathlib import Path

SIM_SUBDIR = "sim"


def sim_dir(state_dir: Path) -> Path:
    """Where the simulator keeps its files inside Donjon's state directory."""
    return state_dir / SIM_SUBDIR
