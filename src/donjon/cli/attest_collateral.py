"""``donjon attest collateral``: save the Intel collateral a later offline check needs."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography import x509

from donjon.atomicfile import write_bytes
from donjon.attestation.dcap.bare import quote_of_extension, quote_platform
from donjon.attestation.dcap.collateral import parse_qe_identity, parse_tcb_info
from donjon.attestation.dcap.fetch import INTEL_PCS_URL, PcsFetcher
from donjon.attestation.errors import AttestationError
from donjon.cli.options import EXISTING_FILE, FILE, JSON
from donjon.cli.output import print_json
from donjon.errors import UsageError


def _quote(path: Path) -> bytes:
    from donjon.cli.attest import recognise

    evidence = recognise(path)
    if evidence.bare is not None:
        if evidence.bare.platform not in ("tdx", "sgx"):
            raise UsageError(f"{path}: {evidence.form} is not an Intel quote")
        return evidence.data
    csr = x509.load_der_x509_csr(evidence.data)
    for ext in csr.extensions:
        value = ext.value
        if isinstance(value, x509.UnrecognizedExtension):
            quote = quote_of_extension(ext.oid.dotted_string, value.value)
            if quote is not None:
                return quote
    raise UsageError(f"{path}: the CSR carries no SGX or TDX quote")


@click.group()
def collateral() -> None:
    """Intel collateral (TCB Info, QE Identity, CRLs) for offline SGX and TDX checks.

    \b
    Examples:
      donjon attest collateral fetch quote.dat -o collateral.json
      donjon attest collateral fetch keep.csr -o collateral.json --pccs https://pccs:8081
      donjon attest verify quote.dat --collateral collateral.json
    """


@collateral.command()
@click.argument("quote", type=EXISTING_FILE)
@click.option("-o", "--output", type=FILE, required=True, help="Where to write the JSON bundle.")
@click.option(
    "--pccs",
    metavar="URL",
    help=f"A PCCS (e.g. your cloud's) instead of Intel PCS ({INTEL_PCS_URL}).",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request.")
@JSON
def fetch(quote: Path, output: Path, pccs: str | None, timeout: float, as_json: bool) -> None:
    """Fetch the collateral of QUOTE's platform and write it to a file.

    QUOTE is a raw, hex or base64 SGX/TDX quote, or a Keep CSR that carries one.
    The file uses the QuoteCollateralV3 JSON layout of Phala dcap-qvl; give it to
    `donjon attest verify --collateral`, or put it in a trust directory. Nothing
    fetched is trusted: verification checks every signature up to the pinned root.

    \b
    Example:
      donjon attest collateral fetch quote.dat -o collateral.json
    """
    data = _quote(quote)
    try:
        tee, fmspc, ca = quote_platform(data)
    except AttestationError as exc:
        raise UsageError(f"{quote}: {exc.message}") from exc
    fetcher = PcsFetcher(pccs or INTEL_PCS_URL, timeout=timeout)
    if not as_json:
        click.echo(
            f"fetching {tee} collateral for FMSPC {fmspc.hex()} ({ca} CA) from {fetcher.where}...",
            err=True,
        )
    bundle = fetcher.bundle(tee, fmspc, ca)
    tcb = parse_tcb_info(bundle.tcb_info.body)
    qe = parse_qe_identity(bundle.qe_identity.body)
    write_bytes(output, bundle.to_bytes())
    info = {
        "file": str(output),
        "source": fetcher.where,
        "tee": tee,
        "fmspc": fmspc.hex(),
        "pck_ca": ca,
        "tcb_info": tcb.summary(),
        "qe_identity": qe.summary(),
        "next_update": bundle.next_update,
    }
    if as_json:
        print_json(info)
        return
    click.echo(
        f"wrote {output}: {tee} TCB Info (FMSPC {fmspc.hex()}, evaluation "
        f"{tcb.evaluation_number}), {qe.id} Identity, PCK and root CRLs"
    )
    click.echo(f"  valid until {info['next_update']} (the earliest nextUpdate)")
