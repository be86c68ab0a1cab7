"""``donjon attest``: decode and verify attestation evidence.

The logic lives in :mod:`donjon.attestation`; this module only reads files,
recognises what they hold, and prints.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from donjon.attestation import (
    KdsFetcher,
    Policy,
    Product,
    TrustStore,
    Verdict,
    load_policy,
    oids,
)
from donjon.attestation.cca.anchors import AnchorError, AnchorStore, load_cpak, load_store
from donjon.attestation.cca.entry import MATERIAL_ANCHORS as CCA_ANCHORS
from donjon.attestation.dcap.collateral import CollateralBundle
from donjon.attestation.dcap.store import load_bundle_file
from donjon.attestation.errors import AttestationError
from donjon.attestation.nitro.entry import MATERIAL_TIME as NITRO_TIME
from donjon.attestation.recognise import Evidence, UnrecognisedEvidence, verify_recognised
from donjon.attestation.recognise import recognise as recognise_evidence
from donjon.attestation.registry import TcbMode, VerifyOptions
from donjon.attestation.snp.chain import CrlMode
from donjon.attestation.trust import parse_cert_bundle
from donjon.attestation.verifiers import REGISTRY
from donjon.attestation.x509util import X509_LOAD_ERRORS, quiet_serials
from donjon.cli.options import DIRECTORY, EXISTING_FILE
from donjon.cli.output import escape, mark, print_fields, print_json
from donjon.errors import UsageError, plain


def recognise(path: Path) -> Evidence:
    """A DER/PEM CSR (Enarx or Donjon), or any bare form the verifier registry knows."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return recognise_evidence(data)
    except UnrecognisedEvidence as exc:
        raise UsageError(f"{path}: {exc}") from exc


def _decode(evidence: Evidence) -> tuple[str, str, dict[str, Any]]:
    """(form, platform, decoded fields) without verifying anything."""
    if evidence.bare is not None:
        bare = evidence.bare
        return evidence.form, bare.platform, bare.verifier.show_bare(evidence.data)
    csr = x509.load_der_x509_csr(evidence.data)
    with quiet_serials():
        for ext in csr.extensions:
            entry = REGISTRY.get(ext.oid)
            value = ext.value
            if entry is None or not isinstance(value, x509.UnrecognizedExtension):
                continue
            kind = "Enarx" if ext.oid.dotted_string.startswith(oids.ENARX_ARC) else "Donjon"
            name = f"{kind} {entry.platform.upper()} CSR"
            return name, entry.platform, entry.show(value.value)
    return "CSR without evidence", "unknown", {}


def _parse_time(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"--at: {text!r} is not an ISO 8601 time (e.g. 2023-02-01T00:00Z)"
        ) from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _certs(path: Path | None, what: str) -> list[x509.Certificate]:
    if path is None:
        return []
    try:
        return parse_cert_bundle(path.read_bytes(), str(path))
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read: {exc.strerror or exc}") from exc


def _crls(paths: tuple[Path, ...]) -> tuple[x509.CertificateRevocationList, ...]:
    out = []
    for path in paths:
        data = path.read_bytes()
        try:
            with quiet_serials():
                crl = (
                    x509.load_pem_x509_crl(data)
                    if data.lstrip().startswith(b"-----BEGIN")
                    else x509.load_der_x509_crl(data)
                )
        except X509_LOAD_ERRORS as exc:
            raise UsageError(f"--crl {path}: not a CRL") from exc
        out.append(crl)
    return tuple(out)


def _say(line: str) -> None:
    click.echo(f"donjon: {line}", err=True)


@click.group()
def attest() -> None:
    """Decode and verify attestation evidence: AMD SEV-SNP reports, Intel SGX and TDX quotes,
    Azure CVM evidence (HCL report + vTPM quote), Arm CCA tokens, AWS Nitro documents (raw,
    or inside an RA-TLS certificate) and Keep CSRs.

    \b
    Examples:
      donjon attest show report.bin
      donjon attest show quote.dat --json
      donjon attest show cca-token.cbor --json
      donjon attest verify cca-token.cbor --cpak cpak.pem
      donjon attest verify report.bin --vcek vcek.der --trust-dir amd-roots/
      donjon attest verify quote.dat --collateral collateral.json --trust-dir intel-roots/
      donjon attest collateral fetch quote.dat -o collateral.json
      donjon attest verify keep.csr --policy steward.toml --trust-dir roots/ --json
      donjon attest verify hcl-report.bin --quote tpm-quote.json --vcek vcek.pem \\
          --trust-dir amd-roots/ --policy azure.toml
      donjon attest verify az-snp-vtpm-evidence.json --trust-dir amd-roots/
    """


def _register_collateral() -> None:
    from donjon.cli.attest_collateral import collateral

    attest.add_command(collateral)


_register_collateral()


@attest.command()
@click.argument("file", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the decoded fields as JSON.")
def show(file: Path, as_json: bool) -> None:
    """Decode FILE without verifying it: a raw or hex SNP report, a raw, hex or base64
    SGX/TDX quote, an Azure HCL report or Trustee's az-snp-vtpm/az-tdx-vtpm evidence JSON,
    a CCA token, a Nitro document or RA-TLS certificate, or a CSR. ``--json`` prints every
    field, bytes as lowercase hex.

    \b
    Examples:
      donjon attest show report.bin
      donjon attest show quote.dat --json
      donjon attest show hcl-report.bin --json
      donjon attest show keep.csr --json
    """
    evidence = recognise(file)
    try:
        form, platform, decoded = _decode(evidence)
    except (ValueError, AttestationError) as exc:
        raise UsageError(f"{file}: cannot decode its evidence: {plain(exc)}") from exc
    if as_json:
        print_json({"file": str(file), "form": form, "platform": platform, **decoded})
        return
    click.echo(f"{file}: {form}")
    print_fields(decoded, indent=1)


@attest.command()
@click.argument("file", type=EXISTING_FILE)
@click.option(
    "--vcek",
    type=EXISTING_FILE,
    help="VCEK or VLEK certificate (DER or PEM) for a bare report; a PEM bundle "
    "(VCEK first, then ASK and ARK, as Azure's THIM serves it) is accepted.",
)
@click.option(
    "--chain",
    type=EXISTING_FILE,
    help="ASK/ASVK and ARK (PEM bundle or PkiPath); the ARK must be a pinned AMD root.",
)
@click.option(
    "--crl",
    "crl_files",
    multiple=True,
    type=EXISTING_FILE,
    help="An ARK CRL (DER or PEM); may be repeated.",
)
@click.option(
    "--quote",
    "tpm_quote",
    type=EXISTING_FILE,
    help="Azure: the vTPM quote of an HCL report, as Trustee writes it "
    '(JSON {"message", "signature", "pcrs"}, hex).',
)
@click.option(
    "--td-quote",
    type=EXISTING_FILE,
    help="Azure TDX: the TD quote IMDS made of the HCL report's TDREPORT (binary).",
)
@click.option(
    "--policy",
    "policy_file",
    type=EXISTING_FILE,
    help="Verification policy (TOML). Default: genuine SNP only, no debug, VMPL 0, "
    "a current ARK CRL required.",
)
@click.option(
    "--trust-dir",
    type=DIRECTORY,
    envvar="DONJON_TRUST_DIR",
    help="Directory of AMD roots and CRLs [$DONJON_TRUST_DIR].",
)
@click.option(
    "--product",
    type=click.Choice([p.value for p in Product], case_sensitive=False),
    help="AMD product line, when a v2 report cannot say.",
)
@click.option(
    "--at",
    "at_time",
    metavar="TIME",
    help="Evaluate at this ISO 8601 time instead of now (e.g. 2023-02-01T00:00Z).",
)
@click.option(
    "--crl-mode",
    type=click.Choice(["require", "if-available"]),
    help="Revocation: 'require' refuses without a current ARK CRL; 'if-available' accepts "
    "and says revocation was not checked. Default: the policy's [snp] crl (require).",
)
@click.option("--require-crl", is_flag=True, hidden=True, help="Same as --crl-mode require.")
@click.option(
    "--fetch",
    is_flag=True,
    help="Fetch missing VCEKs, chains and CRLs from AMD KDS (cached on disk).",
)
@click.option(
    "--cpak",
    type=EXISTING_FILE,
    help="Arm CCA: the platform key (CPAK, PEM or JWK) that must have signed the token.",
)
@click.option(
    "--trust-anchors",
    "trust_anchors",
    type=EXISTING_FILE,
    help="Arm CCA: a trust-anchor store (tastore.json: CPAKs by implementation and "
    "instance ID).",
)
@click.option(
    "--collateral",
    "collateral_file",
    type=EXISTING_FILE,
    help="Intel collateral for an SGX/TDX quote: a QuoteCollateralV3 JSON bundle "
    "(from `donjon attest collateral fetch`, or Phala dcap-qvl).",
)
@click.option(
    "--tcb-mode",
    type=click.Choice(["require", "if-available"]),
    help="SGX/TDX: 'require' refuses without current TCB Info; 'if-available' verifies "
    "signature and chain without it and says TCB NOT APPRAISED. Default: the policy's.",
)
@click.option(
    "--pccs",
    metavar="URL",
    help="Fetch missing Intel collateral from this PCCS (clouds run their own).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify(
    file: Path,
    vcek: Path | None,
    chain: Path | None,
    crl_files: tuple[Path, ...],
    tpm_quote: Path | None,
    td_quote: Path | None,
    policy_file: Path | None,
    trust_dir: Path | None,
    product: str | None,
    at_time: str | None,
    crl_mode: str | None,
    require_crl: bool,
    fetch: bool,
    cpak: Path | None,
    trust_anchors: Path | None,
    collateral_file: Path | None,
    tcb_mode: str | None,
    pccs: str | None,
    as_json: bool,
) -> None:
    """Verify FILE (an SNP report, an SGX/TDX quote, Azure CVM evidence, a CCA token, a
    Nitro document or RA-TLS certificate, or a Keep CSR) and judge it against a policy.

    Exits non-zero when the evidence is refused. Every check is shown with
    ✔ (passed), ✗ (failed) or – (not checked).
    Revocation fails closed: without a current CRL of the vendor root (from the
    evidence, --crl, --collateral, --trust-dir or --fetch) the evidence is refused,
    unless --crl-mode if-available (or the policy's crl = "if-available") says otherwise.
    SGX and TDX quotes need Intel's TCB Info and QE Identity: from the evidence,
    --collateral, a bundle in --trust-dir, or --fetch / --pccs (Intel PCS or a PCCS);
    --tcb-mode if-available judges signature and chain only (TCB NOT APPRAISED).

    \b
    Examples:
      donjon attest verify report.bin --vcek vcek.der --trust-dir amd-roots/ --fetch
      donjon attest verify report.hex --vcek vcek.der --chain ask_ark_milan.pem \\
          --crl crl_milan.der --at 2023-04-10
      donjon attest verify report.bin --vcek vcek.der --trust-dir amd-roots/ \\
          --crl-mode if-available
      donjon attest verify quote.dat --collateral collateral.json --at 2025-07-01
      donjon attest verify quote.dat --fetch
      donjon attest verify quote.dat --tcb-mode if-available
      donjon attest verify keep.csr --policy steward.toml --trust-dir amd-roots/ --json
      donjon attest verify cca-token.cbor --cpak cpak-pub.json
      donjon attest verify cca-token.cbor --trust-anchors tastore.json --policy steward.toml
      donjon attest verify nitro-doc.cose --trust-dir nitro-roots/   # at the doc's time
      donjon attest verify enclave-cert.pem --trust-dir nitro-roots/ --at 2023-01-18T15:20Z

      donjon attest verify hcl-report.bin --quote tpm-quote.json --vcek vcek.pem \\
          --trust-dir amd-roots/ --crl-mode if-available --policy azure.toml

    A Nitro document (or RA-TLS certificate) is judged at its own timestamp unless
    --at names a time; its AWS root is found in --trust-dir (or, identical by its pinned
    fingerprint, in the document).

    An Azure HCL report needs its vTPM quote (--quote) and, for SNP, its VCEK (--vcek,
    or --fetch); Trustee's evidence JSON carries both. The default policy refuses a VM
    with a serial console: say allow_console = true in [azure] to accept one.
    """
    evidence = recognise(file)
    now = _parse_time(at_time)
    policy = load_policy(policy_file) if policy_file else Policy.default()
    if trust_dir is not None and not trust_dir.is_dir():
        raise UsageError(f"--trust-dir {trust_dir}: not a directory")
    chain_certs = _certs(chain, "--chain")
    cert = _certs(vcek, "--vcek")
    if vcek is not None and not cert:
        raise UsageError(f"--vcek {vcek}: expected a certificate")
    # A bundle (as Azure's THIM serves it): the VCEK first, then its ASK and ARK.
    chain_certs += cert[1:]
    crls = _crls(crl_files)
    fetcher = KdsFetcher(progress=_say) if fetch else None
    cache = _cache_dir() if fetch else None
    if not as_json and fetch:
        click.echo("fetching missing collateral from AMD KDS...", err=True)
    trust = TrustStore(
        trust_dir, cache_dir=cache, fetcher=fetcher, certificates=chain_certs, crls=crls
    )
    chosen = Product.parse(product) if product else None
    if require_crl and crl_mode == "if-available":
        raise UsageError("--require-crl contradicts --crl-mode if-available")
    mode: CrlMode | None = "require" if require_crl else _crl_mode(crl_mode)
    material: dict[str, Any] = {
        "vcek": cert[0] if cert else None,
        "chain": tuple(chain_certs),
        "crls": crls,
        NITRO_TIME: "now" if at_time else "document",
        "tpm_quote": _read(tpm_quote, "--quote"),
        "td_quote": _read(td_quote, "--td-quote"),
        "collateral": _collateral(collateral_file),
        "pccs": pccs,
        "fetch": fetch,
    }
    anchors = _cca_anchors(cpak, trust_anchors)
    if anchors:
        material[CCA_ANCHORS] = anchors
    options = VerifyOptions(
        crl_mode=mode, tcb_mode=_tcb_mode(tcb_mode), product=chosen, material=material
    )
    verdict = verify_recognised(evidence, policy=policy, trust=trust, now=now, options=options)
    if as_json:
        data = verdict.to_dict()
        data["file"] = str(file)
        data["form"] = evidence.form
        data["policy"] = policy.source
        source = _crl_source(mode, tcb_mode, verdict)
        data["revocation"]["crl_mode_from"] = "policy" if source is None else "flag"
        print_json(data)
    else:
        crl_flag = _crl_source(mode, tcb_mode, verdict)
        _print_verdict(file, evidence, verdict, policy, crl_flag=crl_flag)
    if not verdict.accepted and verdict.error is not None:
        raise verdict.error


def _cca_anchors(cpak: Path | None, store: Path | None) -> AnchorStore:
    anchors = AnchorStore()
    for flag, path, load in (("--trust-anchors", store, load_store), ("--cpak", cpak, load_cpak)):
        if path is None:
            continue
        try:
            anchors = anchors.merged(load(path))
        except AnchorError as exc:
            raise UsageError(f"{flag}: {exc}") from exc
    return anchors


def _read(path: Path | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read: {exc.strerror or exc}") from exc


def _crl_mode(text: str | None) -> CrlMode | None:
    if text == "require":
        return "require"
    if text == "if-available":
        return "if-available"
    return None


def _tcb_mode(text: str | None) -> TcbMode | None:
    if text == "require":
        return "require"
    if text == "if-available":
        return "if-available"
    return None


def _collateral(path: Path | None) -> CollateralBundle | None:
    if path is None:
        return None
    try:
        return load_bundle_file(path)
    except AttestationError as exc:
        raise UsageError(f"--collateral {exc.message}") from exc


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "donjon" / "kds"


def _bold(text: str) -> str:
    return click.style(text, bold=True)


def _crl_source(crl_mode: str | None, tcb_mode: str | None, verdict: Verdict) -> str | None:
    """The flag that set the verdict's CRL mode, or None when the policy did."""
    if crl_mode is not None:
        return "--crl-mode"
    dcap = "quote" in (verdict.details or {})
    if dcap and tcb_mode == "if-available" and verdict.crl_mode == "if-available":
        return "--tcb-mode if-available"  # it accepts missing CRLs too (dcap/entry.py)
    return None


def _print_verdict(
    file: Path, evidence: Evidence, verdict: Verdict, policy: Policy, *, crl_flag: str | None
) -> None:
    when = verdict.evaluated_at.isoformat() if verdict.evaluated_at else "?"
    product = (verdict.details or {}).get("product", "")
    click.echo(f"{file}: {evidence.form}")
    # Names, reasons and subjects below may quote the evidence's own strings: escaped.
    click.echo(
        f"platform {_bold(escape(verdict.platform))}  product {_bold(escape(product or '-'))}  "
        f"evaluated at {when}  policy {policy.source}"
    )
    appraisal = verdict.appraisal
    if appraisal is not None:
        click.echo(f"  measurement      {_bold(appraisal.measurement.hex() or '-')}")
        click.echo(f"  TCB              {_bold(appraisal.tcb or '-')}   {appraisal.tcb_status}")
    if appraisal is not None and appraisal.vendor_advisories:
        click.echo(f"  advisories       {', '.join(appraisal.vendor_advisories)}")
    if appraisal is not None and appraisal.tcb_status == "NotAppraised" and "quote" in (
        verdict.details or {}
    ):
        click.echo(click.style("  TCB NOT APPRAISED (no TCB collateral)", fg="red"))
    quote = (verdict.details or {}).get("quote")
    if isinstance(quote, dict):
        click.echo(f"  report_data      {quote['body']['report_data']}")
    report = (verdict.details or {}).get("report")
    if isinstance(report, dict):
        for name in ("report_data", "chip_id"):
            if name in report:
                click.echo(f"  {name:<16} {report[name]}")
    azure = (verdict.details or {}).get("azure")
    if isinstance(azure, dict):
        quote, vm = azure["quote"], azure["runtime_claims"]["vm_configuration"]
        click.echo(f"  quote extraData  {quote['extra_data']}")
        flags = ", ".join(f"{k} {v}" for k, v in vm.items())
        click.echo(f"  vm               {flags}")
    chain = (verdict.details or {}).get("chain")
    if chain:
        click.echo("  chain            " + " -> ".join(escape(str(name)) for name in chain))
    if verdict.crl_mode is not None:
        source = crl_flag or f"policy {policy.source}"
        checked = verdict.revocation_checked
        state = "" if checked is None else ": checked" if checked else ": NOT CHECKED"
        color = "red" if checked is False else None
        text = f'  revocation       crl = "{verdict.crl_mode}" (from {source}){state}'
        click.echo(click.style(text, fg=color))
    for check in verdict.checks:
        sign = mark(check.passed, not_checked=check.not_checked)
        click.echo(f"  {sign} {check.id:<24} {escape(check.reason)}")
    if verdict.accepted:
        caveats = []
        if verdict.revocation_checked is False:
            caveats.append("revocation NOT checked")
        if appraisal is not None and appraisal.tcb_status == "NotAppraised" and "quote" in (
            verdict.details or {}
        ):
            caveats.append("TCB NOT APPRAISED")
        caveat = f" ({', '.join(caveats)})" if caveats else ""
        click.echo(click.style("ACCEPTED" + caveat, fg="green", bold=True))
    else:
        code = verdict.error.code if verdict.error else "?"
        rejected = f"REJECTED at {escape(verdict.reason or '?')} ({code})"
        click.echo(click.style(rejected, fg="red", bold=True))
