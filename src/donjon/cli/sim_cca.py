"""``donjon sim ... --tee cca``: the simulated Arm CCA platform (its CPAK and identity)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import hashes, serialization

from donjon.cli.output import print_json
from donjon.keep.platforms import default_state_dir
from donjon.keep.sim import cca as sim_cca
from donjon.keep.sim.measure import runtime_measurement


def directory(state_dir: Path | None) -> Path:
    return sim_cca.cca_dir(state_dir or default_state_dir())


def describe(state: sim_cca.SimCcaState) -> dict[str, Any]:
    """What ``donjon sim show --tee cca`` prints, as data."""
    der = state.cpak.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    config = state.config
    return {
        "tee": "cca",
        "directory": state.directory,
        "implementation_id": config.implementation_id.hex(),
        "instance_id": config.instance_id.hex(),
        "lifecycle": f"{config.lifecycle:#06x}",
        "components": [t for t, _, _ in config.components],
        "cpak": state.cpak_pem,
        "cpak_spki_sha256": digest.finalize().hex(),
        "trust_anchors": state.tastore,
        "rim": sim_cca.realm_measurement(runtime_measurement()).hex(),
        "steward_policy": f'[sim]\ncca_cpak = "{state.cpak_pem}"',
    }


def init(state_dir: Path | None, *, force: bool, as_json: bool) -> None:
    where = directory(state_dir)
    if sim_cca.is_initialised(where) and not force:
        sim_cca.init(where)  # raises the "already exists" error
    show_state(sim_cca.init(where, force=force), as_json)


def show(state_dir: Path | None, as_json: bool) -> None:
    show_state(sim_cca.load(directory(state_dir)), as_json)


def reset(state_dir: Path | None, as_json: bool) -> None:
    where = directory(state_dir)
    removed = sim_cca.reset(where)
    if as_json:
        print_json({"directory": where, "removed": removed})
    elif removed:
        click.echo(f"removed the simulated CCA platform in {where}")
    else:
        click.echo(f"nothing to remove: no simulated CCA platform in {where}")


def show_state(state: sim_cca.SimCcaState, as_json: bool) -> None:
    info = describe(state)
    if as_json:
        print_json(info)
        return
    click.echo(f"simulated Arm CCA platform in {info['directory']}  (NOT a hardware TEE)")
    click.echo(f"  implementation  {info['implementation_id']}")
    click.echo(f"  instance        {info['instance_id']}")
    click.echo(f"  lifecycle       {info['lifecycle']} (secured)")
    click.echo(f"  firmware        {', '.join(info['components'])}")
    click.echo(f"  CPAK            {info['cpak']}")
    click.echo(f"  CPAK SHA-256    {info['cpak_spki_sha256']}  (of its SubjectPublicKeyInfo)")
    click.echo(f"  realm RIM       {info['rim'][:32]}...")
    click.echo("  a Steward trusts it with this policy entry (development only):")
    for line in str(info["steward_policy"]).splitlines():
        click.echo(f"    {line}")
    click.echo("  Keeps use it with: donjon run PACKAGE --platform sim-cca")
