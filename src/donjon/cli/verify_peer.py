"""``donjon verify-peer``: connect to a Keep over TLS 1.3 and check its attested certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from donjon.cli.options import EXISTING_FILE, FILE, JSON
from donjon.cli.output import escape, mark, print_json
from donjon.cli.package_sign import read_public_key
from donjon.errors import UsageError


def _digest(text: str | None, option: str = "--expect-workload") -> bytes | None:
    if text is None:
        return None
    from donjon.errors import UsageError

    value = text.strip().lower().removeprefix("sha256:")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a hex SHA-256 digest") from None
    if len(raw) != 32:
        raise UsageError(f"{option} must be 32 bytes (64 hex digits), got {len(raw)}")
    return raw


#: Launch measurements: SGX MRENCLAVE (32 bytes), SNP MEASUREMENT and TDX MRTD (48), CCA (64).
MEASUREMENT_SIZES = (32, 48, 64)


def _measurement(text: str | None) -> bytes | None:
    if text is None:
        return None
    from donjon.errors import UsageError

    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise UsageError(f"--expect-measurement {text!r} is not hex") from None
    if len(raw) not in MEASUREMENT_SIZES:
        raise UsageError(
            f"--expect-measurement must be 32, 48 or 64 bytes (64, 96 or 128 hex digits), "
            f"got {len(raw)}"
        )
    return raw


def _tcb_statuses(given: tuple[str, ...]) -> frozenset[str] | None:
    if not given:
        return None
    from donjon.attestation.peer import KNOWN_TCB_STATUSES
    from donjon.errors import UsageError

    unknown = sorted(set(given) - KNOWN_TCB_STATUSES)
    if unknown:
        raise UsageError(
            f"--allow-tcb-status {unknown[0]!r} is not a TCB status "
            f"(known: {', '.join(sorted(KNOWN_TCB_STATUSES))})"
        )
    return frozenset(given)


def _known_platforms(given: tuple[str, ...]) -> None:
    from donjon.attestation.claims import PLATFORMS
    from donjon.errors import UsageError

    unknown = sorted(set(given) - PLATFORMS)
    if unknown:
        raise UsageError(
            f"--platform {unknown[0]!r} is not a platform (known: {', '.join(sorted(PLATFORMS))})"
        )


def _advisories(given: tuple[str, ...]) -> frozenset[str] | None:
    if not given:
        return None
    from donjon.errors import UsageError

    names = frozenset(a.strip() for a in given)
    if "" in names:
        raise UsageError("--allow-advisory needs an advisory name, e.g. revocation-not-checked")
    return names


def _repository(text: str | None) -> str | None:
    from donjon.attestation.packagesig import SignatureFormatError, check_repository_pattern

    if text is None:
        return None
    try:
        return check_repository_pattern(text, "--expect-repository")
    except SignatureFormatError as exc:
        raise UsageError(str(exc)) from None


@click.command("verify-peer")
@click.argument("address", metavar="HOST:PORT")
@click.option(
    "--ca",
    "ca_path",
    required=True,
    type=FILE,
    help="The Steward CA certificate (PEM or DER).",
)
@click.option(
    "--expect-workload", metavar="SHA256", help="Required digest of the peer's main.wasm."
)
@click.option(
    "--expect-package",
    metavar="SHA256",
    help="Required OCI manifest digest (sha256:...) the peer was deployed from.",
)
@click.option(
    "--expect-repository",
    metavar="HOST/PATH",
    help="Required registry repository the peer's package came from (host[:port]/path, "
    "or host/path/* for any below it).",
)
@click.option(
    "--expect-signer",
    "expect_signers",
    type=EXISTING_FILE,
    multiple=True,
    metavar="PUB.pem",
    help="The peer's package must be signed by this key (repeat: any of several), over its "
    "repository and manifest digest.",
)
@click.option(
    "--expect-measurement",
    metavar="HEX",
    help="Required launch measurement of the peer's TEE (SNP MEASUREMENT, TDX MRTD, "
    "SGX MRENCLAVE), as `donjon attest show` prints it.",
)
@click.option("--min-tcb", metavar="SPEC", help='Minimum TCB, e.g. "bl=3,tee=0,snp=8,ucode=115".')
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    help="Accepted platform(s): snp, sgx, tdx, cca, nitro, azure-snp, azure-tdx (or sim, "
    "nil, kvm with --allow-development).",
)
@click.option("--crl", "crl_source", metavar="FILE|URL", help="Check revocation with this CRL.")
@click.option("--allow-development", is_flag=True, help="Accept nil/sim/kvm (non-TEE) peers.")
@click.option("--allow-debug", is_flag=True, help="Accept a TEE that allows debugging.")
@click.option(
    "--allow-advisory",
    "allow_advisories",
    multiple=True,
    metavar="NAME",
    help="Accept a certificate carrying this advisory (repeatable), e.g. "
    "revocation-not-checked. Any advisory not listed is refused.",
)
@click.option(
    "--allow-tcb-status",
    "allow_tcb_statuses",
    multiple=True,
    metavar="STATUS",
    help="Accepted TCB status (repeatable); replaces the default UpToDate, MeetsMinimum "
    "(and NotAppraised with --min-tcb).",
)
@click.option("--server-name", help="SNI name to send [default: HOST].")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds.")
@JSON
def verify_peer(
    address: str,
    ca_path: Path,
    expect_workload: str | None,
    expect_package: str | None,
    expect_repository: str | None,
    expect_signers: tuple[Path, ...],
    expect_measurement: str | None,
    min_tcb: str | None,
    platforms: tuple[str, ...],
    crl_source: str | None,
    allow_development: bool,
    allow_debug: bool,
    allow_advisories: tuple[str, ...],
    allow_tcb_statuses: tuple[str, ...],
    server_name: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Connect to HOST:PORT, check the chain to the Steward CA and the attested claims.

    Exits 0 only when the peer is an attested Keep meeting every expectation;
    otherwise one line says which check failed (and --json says it as "code").

    Fails closed: development (nil/sim/kvm) and debug peers, any advisory the
    Steward wrote (e.g. revocation-not-checked) and a TCB status other than
    UpToDate/MeetsMinimum are refused unless allowed. An allowed development
    peer may carry revocation-not-checked (no vendor CRL exists for it).
    Without --crl, revocation is NOT checked, and the output says so.

    \b
    Examples:
      donjon verify-peer keep.example:8443 --ca steward-ca.pem \\
          --crl https://steward.example/v1/crl
      donjon verify-peer 10.0.0.5:443 --ca ca.pem --expect-workload 5f3a...e1 \\
          --expect-measurement 9a4c...07 --min-tcb snp=8,ucode=115 \\
          --crl https://steward.example/v1/crl --json
      donjon verify-peer keep.example:443 --ca ca.pem --expect-package sha256:9c1e... \\
          --crl https://steward.example/v1/crl
      donjon verify-peer keep.example:443 --ca ca.pem \\
          --expect-repository registry.example/team/app --expect-signer team.key.pub
      donjon verify-peer 127.0.0.1:8443 --ca ca.pem --allow-development \\
          --platform sim --allow-advisory revocation-not-checked
      donjon verify-peer keep.example:8443 --ca ca.pem --platform cca
      donjon verify-peer enclave.example:8443 --ca ca.pem --platform nitro \\
          --allow-advisory hypervisor-trusted --allow-advisory revocation-not-checked \\
          --allow-tcb-status NotAppraised
    """
    from donjon.attestation.peer import PeerError, PeerExpectations, parse_tcb
    from donjon.steward.relying import connect_and_verify, fetch_crl, parse_address, read_ca

    _known_platforms(platforms)
    host, port = parse_address(address)
    ca = read_ca(ca_path)
    expect = PeerExpectations(
        workload_sha256=_digest(expect_workload),
        package_sha256=_digest(expect_package, "--expect-package"),
        package_repository=_repository(expect_repository),
        package_signers=tuple(read_public_key(p) for p in expect_signers),
        measurement=_measurement(expect_measurement),
        min_tcb=parse_tcb(min_tcb) if min_tcb else {},
        platforms=frozenset(platforms) if platforms else None,
        allow_development=allow_development,
        allow_debug=allow_debug,
        allowed_advisories=_advisories(allow_advisories),
        tcb_statuses=_tcb_statuses(allow_tcb_statuses),
    )
    try:
        crl = fetch_crl(crl_source, timeout=timeout) if crl_source else None
        report = connect_and_verify(
            host, port, ca, expect=expect, crl=crl, timeout=timeout, server_name=server_name
        )
    except PeerError as exc:
        if as_json:
            print_json({"accepted": False, "code": exc.code, "error": exc.message})
            raise SystemExit(1) from None
        raise
    identity = report.identity
    r = identity.result
    doc: dict[str, Any] = {
        "accepted": True,
        "peer": f"{host}:{port}",
        "tls": {"version": report.tls_version, "cipher": report.cipher},
        "serial": identity.serial_hex,
        "not_after": identity.certificate.not_valid_after_utc,
        **r.to_json(),
        "workload": None if identity.workload is None else identity.workload.to_json(),
        "revocation": {
            "checked": identity.revocation_checked,
            "reason": next(c.reason for c in identity.checks if c.id == "revocation"),
        },
        "checks": [
            {"id": c.id, "passed": c.passed, "skipped": c.skipped, "reason": c.reason}
            for c in identity.checks
        ],
    }
    if as_json:
        print_json(doc)
        return
    # Every string below but our own words comes from the peer's certificate: escaped.
    click.echo(f"{host}:{port}: attested Keep ({report.tls_version}, {report.cipher})")
    for c in identity.checks:
        sign = mark(c.passed, not_checked=c.skipped)
        click.echo(f"  {sign} {c.id}: {escape(c.reason)}")
    dev = "  (DEVELOPMENT: not in a TEE)" if r.development else ""
    if "hypervisor-trusted" in r.advisories:
        dev += "  (isolation by a trusted hypervisor, not by the CPU)"
    click.echo(f"  platform:    {escape(r.platform)} {escape(r.product)}{dev}")
    click.echo(f"  measurement: {r.measurement.hex() or '-'}")
    click.echo(f"  tcb:         {escape(r.tcb) or '-'} ({escape(r.tcb_status)})")
    click.echo(f"  advisories:  {escape(', '.join(r.advisories)) or 'none'}")
    if identity.workload is not None:
        click.echo(
            f"  workload:    {escape(identity.workload.package_name)} "
            f"sha256:{identity.workload.wasm_sha256.hex()}"
        )
        if identity.workload.package_sha256 is not None:
            click.echo(f"  package:     sha256:{identity.workload.package_sha256.hex()}")
        if identity.workload.package_repository is not None:
            signed = len(identity.workload.package_signatures)
            click.echo(
                f"  repository:  {escape(identity.workload.package_repository)} "
                f"({signed} signature{'' if signed == 1 else 's'} claimed)"
            )
    click.echo(
        f"  certificate: serial {identity.serial_hex}, until {doc['not_after']:%Y-%m-%d %H:%M}Z"
    )
    if not identity.revocation_checked:
        click.echo("  revocation:  NOT CHECKED (no CRL given; pass --crl to check it)")
