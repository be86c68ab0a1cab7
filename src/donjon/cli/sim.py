"""``donjon sim``: create, inspect and remove the simulated TEE's vendor hierarchy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from donjon.attestation.dcap.collateral import TCB_STATUSES
from donjon.cli import sim_cca
from donjon.cli.options import DIRECTORY, JSON
from donjon.cli.output import print_json
from donjon.errors import UsageError
from donjon.keep.platforms import default_state_dir
from donjon.keep.sim import sim_dir, tdx_state
from donjon.keep.sim import state as sim_state
from donjon.keep.sim.measure import runtime_measurement
from donjon.keep.sim.products import DEFAULT_TCB, Product, parse_product, parse_tcb

_STATE_DIR = click.option(
    "--state-dir",
    type=DIRECTORY,
    envvar="DONJON_STATE_DIR",
    help="Donjon's state directory; the simulator lives in its 'sim' subdirectory "
    "[default: ~/.local/share/donjon, or $DONJON_STATE_DIR].",
)


_TEE = click.option(
    "--tee",
    type=click.Choice(["snp", "tdx", "cca"]),
    default="snp",
    show_default=True,
    help="Which TEE to simulate: AMD SEV-SNP (reports), Intel TDX (quotes v4 with their "
    "collateral) or Arm CCA (tokens, --platform sim-cca).",
)


def _directory(state_dir: Path | None) -> Path:
    return sim_dir(state_dir or default_state_dir())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def sim() -> None:
    """Manage the simulated TEE, a software stand-in for AMD SEV-SNP or Intel TDX.

    The simulator makes a local vendor hierarchy in the vendor's format (AMD:
    ARK, ASK and a VCEK; Intel: a root, a PCK chain, a TCB Signing key) and
    signs evidence in the real layout with it (SEV-SNP reports, TDX quotes v4
    with their TCB Info and QE Identity). A Steward trusts that evidence only if
    its policy names the simulator's root, and every certificate it issues on it
    says platform=sim. For development and CI, never production.

    \b
    Examples:
      donjon sim init                         SEV-SNP Milan, default TCB
      donjon sim init --product Turin --tcb fmc=1,bl=1,tee=1,snp=1,ucode=9
      donjon sim init --tee tdx               Intel TDX (quotes v4)
      donjon sim init --tee tdx --tcb-status OutOfDate --force
      donjon sim show --json
      donjon sim tcb ucode=220                move the simulated chip to a new TCB (SNP)
      donjon sim reset
    """


@sim.command()
@_STATE_DIR
@click.option(
    "--product",
    default="Milan",
    show_default=True,
    help="SNP: AMD product line to simulate: Milan, Genoa or Turin.",
)
@click.option(
    "--tcb",
    "tcb_text",
    default="",
    metavar="bl=N,tee=N,snp=N,ucode=N[,fmc=N]",
    help="Security patch levels; omitted fields keep the product's default.",
)
@click.option(
    "--report-version",
    type=click.Choice(["3", "5"]),
    default="3",
    show_default=True,
    help="SEV-SNP report format version to emit.",
)
@click.option(
    "--debug",
    is_flag=True,
    help="Launch guests with debugging allowed (SNP policy bit 19; TDX: the DEBUG attribute).",
)
@click.option(
    "--tcb-status",
    type=click.Choice(list(TCB_STATUSES)),
    default="UpToDate",
    show_default=True,
    help="TDX: the TCB status the simulated Intel publishes for this platform.",
)
@click.option("--force", is_flag=True, help="Replace an existing hierarchy.")
@_TEE
@JSON
def init(
    state_dir: Path | None,
    tee: str,
    product: str,
    tcb_text: str,
    report_version: str,
    debug: bool,
    tcb_status: str,
    force: bool,
    as_json: bool,
) -> None:
    """Create the simulated vendor hierarchy (SNP: two RSA-4096 keys, a second or two).

    \b
    Examples:
      donjon sim init
      donjon sim init --state-dir /tmp/donjon --product Genoa --report-version 5
      donjon sim init --tee tdx
      donjon sim init --tee cca              Arm CCA: a CPAK and a platform identity
    """
    if tee == "cca":
        if tcb_text or debug:
            raise UsageError("--tcb and --debug apply to --tee snp only")
        sim_cca.init(state_dir, force=force, as_json=as_json)
        return
    if tee == "tdx":
        if product != "Milan" or tcb_text or report_version != "3":
            raise UsageError("--product, --tcb and --report-version are SNP options")
        _init_tdx(_directory(state_dir), debug, tcb_status, force, as_json)
        return
    if tcb_status != "UpToDate":
        raise UsageError("--tcb-status is a TDX option (AMD publishes no TCB status)")
    line = parse_product(product)
    tcb = parse_tcb(tcb_text, line)
    policy = sim_state.DEFAULT_POLICY | (1 << 19 if debug else 0)
    directory = _directory(state_dir)
    config = sim_state.SimConfig(
        line, tcb, sim_state.random_chip_id(line), int(report_version), policy
    )
    if (sim_state.is_initialised(directory) or tdx_state.is_initialised(directory)) and not force:
        sim_state.init(directory, config)  # raises the "already exists" error
    if not as_json:
        click.echo(
            f"generating a simulated {line.value} hierarchy (ARK, ASK: RSA-4096) ...", err=True
        )
    loaded = sim_state.init(directory, config, force=force)
    _show(loaded, as_json)


def _init_tdx(directory: Path, debug: bool, status: str, force: bool, as_json: bool) -> None:
    attributes = tdx_state.DEFAULT_ATTRIBUTES | (1 if debug else 0)  # bit 0: DEBUG
    advisories = () if status == "UpToDate" else ("INTEL-SA-00000",)
    config = tdx_state.TdxSimConfig(
        td_attributes=attributes, tcb_status=status, advisories=advisories
    )
    _show_tdx(tdx_state.init(directory, config, force=force), as_json)


@sim.command()
@_STATE_DIR
@_TEE
@JSON
def show(state_dir: Path | None, tee: str, as_json: bool) -> None:
    """Show the simulated chip, its TCB, and the policy line that trusts it.

    \b
    Example:
      donjon sim show --json | jq .ark_sha256
      donjon sim show --tee cca
    """
    if tee == "cca":
        sim_cca.show(state_dir, as_json)
        return
    directory = _directory(state_dir)
    if tdx_state.is_initialised(directory):
        _show_tdx(tdx_state.load(directory), as_json)
        return
    _show(sim_state.load(directory), as_json)


@sim.command()
@_STATE_DIR
@click.argument("tcb_text", metavar="bl=N,tee=N,snp=N,ucode=N[,fmc=N]")
@JSON
def tcb(state_dir: Path | None, tcb_text: str, as_json: bool) -> None:
    """Move the simulated chip to a new TCB (a new VCEK; ARK and ASK stay).

    \b
    Example:
      donjon sim tcb bl=4,ucode=220
    """
    directory = _directory(state_dir)
    if tdx_state.is_initialised(directory):
        raise UsageError(
            "`donjon sim tcb` moves the SNP product; the TDX product's TCB is set at "
            "`donjon sim init --tee tdx`"
        )
    current = sim_state.load(directory)
    product = current.config.product
    merged = ",".join(f"{k}={v}" for k, v in current.config.tcb.components().items())
    new = parse_tcb(f"{merged},{tcb_text}", product)
    _show(sim_state.reissue_vcek(directory, new), as_json)


@sim.command()
@_STATE_DIR
@_TEE
@JSON
def reset(state_dir: Path | None, tee: str, as_json: bool) -> None:
    """Delete the simulated hierarchy (keys and certificates).

    \b
    Example:
      donjon sim reset
      donjon sim reset --tee cca
    """
    if tee == "cca":
        sim_cca.reset(state_dir, as_json)
        return
    directory = _directory(state_dir)
    removed = sim_state.reset(directory)
    if as_json:
        print_json({"directory": directory, "removed": removed})
    elif removed:
        click.echo(f"removed the simulated TEE in {directory}")
    else:
        click.echo(f"nothing to remove: no simulated TEE in {directory}")


def describe(loaded: sim_state.SimState) -> dict[str, Any]:
    """What ``show`` prints, as data."""
    config = loaded.config
    ark_path = loaded.directory / "ark.pem"
    return {
        "directory": loaded.directory,
        "product": config.product.value,
        "tcb": config.tcb.components(),
        "chip_id": config.chip_id.hex(),
        "report_version": config.report_version,
        "policy": f"{config.policy:#x}",
        "debug": config.debug,
        "ark": ark_path,
        "ark_sha256": _fingerprint(loaded.ark),
        "vcek_not_after": loaded.vcek.not_valid_after_utc,
        "measurement": runtime_measurement().hex(),
        "steward_policy": f'[sim]\ntrust = "{ark_path}"',
        "defaults": {p.value: DEFAULT_TCB[p].components() for p in Product},
    }


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _show(loaded: sim_state.SimState, as_json: bool) -> None:
    info = describe(loaded)
    if as_json:
        info.pop("defaults")
        print_json(info)
        return
    tcb_text = " ".join(f"{k}={v}" for k, v in info["tcb"].items())
    click.echo(f"simulated TEE in {info['directory']}  (NOT a hardware TEE)")
    click.echo(f"  product         {info['product']}  (SNP report v{info['report_version']})")
    click.echo(f"  TCB             {tcb_text}")
    click.echo(f"  chip_id         {info['chip_id'][:32]}...")
    debug = "  DEBUG ALLOWED" if info["debug"] else ""
    click.echo(f"  guest policy    {info['policy']}{debug}")
    click.echo(f"  ARK             {info['ark']}")
    click.echo(f"  ARK SHA-256     {info['ark_sha256']}")
    click.echo(f"  measurement     {info['measurement']}")
    click.echo("  a Steward trusts it with this policy entry:")
    for line in str(info["steward_policy"]).splitlines():
        click.echo(f"    {line}")


def describe_tdx(loaded: tdx_state.TdxSimState) -> dict[str, Any]:
    """What ``show`` prints for the TDX product, as data."""
    config = loaded.config
    root = loaded.root_path
    return {
        "directory": loaded.directory,
        "tee": "tdx",
        "fmspc": config.fmspc.hex(),
        "tee_tcb_svn": config.tee_tcb_svn.hex(),
        "pcesvn": config.pcesvn,
        "td_attributes": f"{config.td_attributes:#018x}",
        "debug": config.debug,
        "tcb_status": config.tcb_status,
        "advisories": list(config.advisories),
        "root": root,
        "root_sha256": _fingerprint(loaded.hierarchy.root.cert),
        "pck_not_after": loaded.hierarchy.pck.cert.not_valid_after_utc,
        "mrtd": runtime_measurement().hex(),
        "steward_policy": f'[sim.tdx]\ntrust = "{root}"',
    }


def _show_tdx(loaded: tdx_state.TdxSimState, as_json: bool) -> None:
    info = describe_tdx(loaded)
    if as_json:
        print_json(info)
        return
    click.echo(f"simulated TEE in {info['directory']}  (NOT a hardware TEE)")
    click.echo("  product         Intel TDX  (TD quote v4, TCB Info v3, TD_QE Identity)")
    click.echo(f"  FMSPC           {info['fmspc']}")
    click.echo(f"  TEE_TCB_SVN     {info['tee_tcb_svn']}")
    debug = "  DEBUG" if info["debug"] else ""
    click.echo(f"  TD attributes   {info['td_attributes']}{debug}")
    advisories = f"  ({', '.join(info['advisories'])})" if info["advisories"] else ""
    click.echo(f"  TCB status      {info['tcb_status']}{advisories}")
    click.echo(f"  root            {info['root']}")
    click.echo(f"  root SHA-256    {info['root_sha256']}")
    click.echo(f"  MRTD            {info['mrtd']}")
    click.echo("  a Steward trusts it with this policy entry:")
    for line in str(info["steward_policy"]).splitlines():
        click.echo(f"    {line}")
