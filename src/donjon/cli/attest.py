"""``donjon attest``: decode and verify attestation evidence.

The logic lives in :mod:`donjon.attestation`; this module only reads files,
recognises what they hold, and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    verify_csr,
    verify_report,
)
from donjon.attestation.errors import AttestationError
from donjon.attestation.evidence import decode_enarx_snp, decode_sim
from donjon.attestation.snp.chain import CrlMode
from donjon.attestation.snp.report import SnpReport, parse_report
from donjon.attestation.trust import parse_cert_bundle
from donjon.attestation.x509util import X509_LOAD_ERRORS, quiet_serials
from donjon.cli.options import DIRECTORY, EXISTING_FILE
from donjon.cli.output import escape, mark, print_json
from donjon.errors import UsageError

REPORT_SIZE = 1184
HCL_HEADER = 32  # Azure CVM HCL report: 32-byte header, then the SNP report


@dataclass(frozen=True)
class Evidence:
    kind: str  # "report" | "csr"
    data: bytes  # the 1184-byte report, or the CSR DER
    form: str  # how it was found, for display


def recognise(path: Path) -> Evidence:
    """Raw report, hex report, Azure HCL report, or a DER/PEM CSR (Enarx or Donjon)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) == REPORT_SIZE:
        return Evidence("report", data, "raw SNP report")
    if data[:4] == b"HCLA" and len(data) >= HCL_HEADER + REPORT_SIZE:
        return Evidence("report", data[HCL_HEADER : HCL_HEADER + REPORT_SIZE], "Azure HCL report")
    text = data.strip()
    if b"-----BEGIN CERTIFICATE REQUEST-----" in text:
        try:
            csr = x509.load_pem_x509_csr(text)
        except ValueError as exc:
            raise UsageError(f"{path}: PEM CSR is malformed ({exc})") from exc
        from cryptography.hazmat.primitives.serialization import Encoding

        return Evidence("csr", csr.public_bytes(Encoding.DER), "PEM CSR")
    try:
        decoded = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        decoded = b""
    if len(decoded) == REPORT_SIZE:
        return Evidence("report", decoded, "hex SNP report")
    if data[:1] == b"\x30":
        try:
            x509.load_der_x509_csr(data)
        except ValueError:
            pass
        else:
            return Evidence("csr", data, "DER CSR")
    raise UsageError(
        f"{path}: not an SNP report (1184 raw bytes or hex), an Azure HCL report or a CSR "
        f"({len(data)} bytes)"
    )


def _csr_report(der: bytes) -> tuple[str, bytes | None]:
    """(kind of CSR, embedded SNP report if any), without verifying anything."""
    csr = x509.load_der_x509_csr(der)
    with quiet_serials():
        for ext in csr.extensions:
            value = ext.value
            raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
            if ext.oid == oids.ENARX_SNP:
                return "Enarx SNP CSR", decode_enarx_snp(raw).report
            if ext.oid == oids.EVIDENCE_SIM:
                return "Donjon sim CSR", decode_sim(raw).report
            if ext.oid in oids.EVIDENCE_OIDS:
                return f"CSR with evidence {ext.oid.dotted_string}", None
    return "CSR without evidence", None


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


@click.group()
def attest() -> None:
    """Decode and verify attestation evidence (AMD SEV-SNP reports and Keep CSRs).

    \b
    Examples:
      donjon attest show report.bin
      donjon attest verify report.bin --vcek vcek.der --trust-dir amd-roots/
      donjon attest verify keep.csr --policy steward.toml --trust-dir amd-roots/ --json
    """


@attest.command()
@click.argument("file", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the decoded fields as JSON.")
def show(file: Path, as_json: bool) -> None:
    """Decode FILE without verifying it: a raw or hex SNP report, or a CSR.

    \b
    Examples:
      donjon attest show report.bin
      donjon attest show keep.csr --json
    """
    evidence = recognise(file)
    form = evidence.form
    report_bytes: bytes | None = evidence.data
    if evidence.kind == "csr":
        try:
            form, report_bytes = _csr_report(evidence.data)
        except (ValueError, AttestationError) as exc:
            raise UsageError(f"{file}: cannot decode the CSR's evidence: {exc}") from exc
    report = parse_report(report_bytes, strict=False) if report_bytes else None
    if as_json:
        print_json(
            {"file": str(file), "form": form, "report": report.to_dict() if report else None}
        )
        return
    click.echo(f"{file}: {form}")
    if report is not None:
        _print_report(report)


@attest.command()
@click.argument("file", type=EXISTING_FILE)
@click.option(
    "--vcek",
    type=EXISTING_FILE,
    help="VCEK or VLEK certificate (DER or PEM) for a bare report.",
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
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify(
    file: Path,
    vcek: Path | None,
    chain: Path | None,
    crl_files: tuple[Path, ...],
    policy_file: Path | None,
    trust_dir: Path | None,
    product: str | None,
    at_time: str | None,
    crl_mode: str | None,
    require_crl: bool,
    fetch: bool,
    as_json: bool,
) -> None:
    """Verify FILE (an SNP report or a Keep CSR) and judge it against a policy.

    Exits non-zero when the evidence is refused. Every check is shown with ✔ or ✗.
    Revocation fails closed: without a current CRL of the AMD root (from the
    evidence, --crl, --trust-dir or --fetch) the evidence is refused, unless
    --crl-mode if-available (or the policy's crl = "if-available") says otherwise.

    \b
    Examples:
      donjon attest verify report.bin --vcek vcek.der --trust-dir amd-roots/ --fetch
      donjon attest verify report.hex --vcek vcek.der --chain ask_ark_milan.pem \\
          --crl crl_milan.der --at 2023-04-10
      donjon attest verify report.bin --vcek vcek.der --trust-dir amd-roots/ \\
          --crl-mode if-available
      donjon attest verify keep.csr --policy steward.toml --trust-dir amd-roots/ --json
    """
    evidence = recognise(file)
    now = _parse_time(at_time)
    policy = load_policy(policy_file) if policy_file else Policy.default()
    if trust_dir is not None and not trust_dir.is_dir():
        raise UsageError(f"--trust-dir {trust_dir}: not a directory")
    chain_certs = _certs(chain, "--chain")
    crls = _crls(crl_files)
    fetcher = KdsFetcher() if fetch else None
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
    if evidence.kind == "csr":
        verdict = verify_csr(
            evidence.data, policy=policy, trust=trust, now=now, product=chosen, crl_mode=mode
        )
    else:
        cert = _certs(vcek, "--vcek")
        if vcek is not None and len(cert) != 1:
            raise UsageError(f"--vcek {vcek}: expected exactly one certificate")
        verdict = verify_report(
            evidence.data,
            policy=policy,
            trust=trust,
            now=now,
            vcek=cert[0] if cert else None,
            chain=tuple(chain_certs),
            crls=crls,
            product=chosen,
            crl_mode=mode,
        )
    if as_json:
        data = verdict.to_dict()
        data["file"] = str(file)
        data["form"] = evidence.form
        data["policy"] = policy.source
        data["revocation"]["crl_mode_from"] = "flag" if mode else "policy"
        print_json(data)
    else:
        _print_verdict(file, evidence, verdict, policy, from_flag=mode is not None)
    if not verdict.accepted and verdict.error is not None:
        raise verdict.error


def _crl_mode(text: str | None) -> CrlMode | None:
    if text == "require":
        return "require"
    if text == "if-available":
        return "if-available"
    return None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "donjon" / "kds"


def _bold(text: str) -> str:
    return click.style(text, bold=True)


def _print_report(report: SnpReport) -> None:
    fields: dict[str, Any] = report.to_dict()
    click.echo(f"  version          {report.version}")
    click.echo(f"  product          {fields['product'] or 'unknown (v2 report: no CPUID)'}")
    click.echo(f"  measurement      {_bold(report.measurement.hex())}")
    click.echo(f"  reported TCB     {_bold(str(report.reported_tcb))}")
    click.echo(f"  current TCB      {report.current_tcb}   firmware {report.current_fw}")
    click.echo(f"  committed TCB    {report.committed_tcb}   firmware {report.committed_fw}")
    click.echo(f"  launch TCB       {report.launch_tcb}")
    gp = report.policy
    flags = [
        name
        for name, on in (
            ("SMT", gp.smt_allowed),
            ("MIGRATE_MA", gp.migrate_ma_allowed),
            ("DEBUG", gp.debug_allowed),
            ("SINGLE_SOCKET", gp.single_socket),
        )
        if on
    ]
    debug = click.style(" (debuggable!)", fg="red") if gp.debug_allowed else ""
    click.echo(
        f"  guest policy     0x{gp.raw:x} ABI {gp.abi_major}.{gp.abi_minor} "
        f"{'|'.join(flags) or '-'}{debug}"
    )
    click.echo(f"  platform info    0x{report.platform_info.raw:x}")
    click.echo(
        f"  signing key      {report.signing_key.name}  vmpl {report.vmpl}  "
        f"guest svn {report.guest_svn}"
    )
    for name in (
        "report_data",
        "host_data",
        "id_key_digest",
        "author_key_digest",
        "family_id",
        "image_id",
        "report_id",
        "chip_id",
    ):
        click.echo(f"  {name:<16} {fields[name]}")
    if report.cpuid is not None:
        fam, mod, step = report.cpuid
        click.echo(f"  cpuid            family 0x{fam:x} model 0x{mod:x} stepping {step}")


def _print_verdict(
    file: Path, evidence: Evidence, verdict: Verdict, policy: Policy, *, from_flag: bool
) -> None:
    when = verdict.evaluated_at.isoformat() if verdict.evaluated_at else "?"
    product = (verdict.details or {}).get("product", "")
    click.echo(f"{file}: {evidence.form}")
    # Names, reasons and subjects below may quote the evidence's own strings: escaped.
    click.echo(
        f"platform {_bold(escape(verdict.platform))}  product {_bold(escape(product or '-'))}  "
        f"evaluated at {when}  policy {policy.source}"
    )
    report = (verdict.details or {}).get("report")
    if report is not None:
        click.echo(f"  measurement      {_bold(report['measurement'])}")
        tcb = " ".join(f"{k}={v}" for k, v in report["reported_tcb"].items())
        click.echo(f"  reported TCB     {_bold(tcb)}   firmware {report['current_fw']}")
        click.echo(f"  report_data      {report['report_data']}")
        click.echo(f"  chip_id          {report['chip_id']}")
    chain = (verdict.details or {}).get("chain")
    if chain:
        click.echo("  chain            " + " -> ".join(escape(str(name)) for name in chain))
    if verdict.crl_mode is not None:
        source = "--crl-mode" if from_flag else f"policy {policy.source}"
        checked = verdict.revocation_checked
        state = "" if checked is None else ": checked" if checked else ": NOT CHECKED"
        color = "red" if checked is False else None
        text = f'  revocation       crl = "{verdict.crl_mode}" (from {source}){state}'
        click.echo(click.style(text, fg=color))
    for check in verdict.checks:
        click.echo(f"  {mark(check.passed)} {check.id:<24} {escape(check.reason)}")
    if verdict.accepted:
        caveat = " (revocation NOT checked)" if verdict.revocation_checked is False else ""
        click.echo(click.style("ACCEPTED" + caveat, fg="green", bold=True))
    else:
        code = verdict.error.code if verdict.error else "?"
        rejected = f"REJECTED at {escape(verdict.reason or '?')} ({code})"
        click.echo(click.style(rejected, fg="red", bold=True))
