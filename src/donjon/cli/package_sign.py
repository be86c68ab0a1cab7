"""``donjon package keygen|sign|verify``: signer keys, and signatures stored beside packages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from donjon.attestation import packagesig
from donjon.attestation.packagesig import SignatureFormatError
from donjon.cli.options import EXISTING_FILE, FILE, JSON
from donjon.cli.output import escape, print_json
from donjon.errors import DonjonError, UsageError

if TYPE_CHECKING:
    from donjon.keep.oci.signatures import SignedPackage

_REGISTRY_CA = click.option(
    "--registry-ca",
    type=FILE,
    help="PEM that signed the registry's HTTPS certificate [$DONJON_REGISTRY_CA; else system].",
)


class SignatureRefused(DonjonError):
    """``package verify`` found no signature it accepts."""


def read_private_key(path: Path) -> packagesig.PrivateKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the signer key: {exc.strerror}") from None
    try:
        return packagesig.load_private_key(pem, str(path))
    except SignatureFormatError as exc:
        raise UsageError(str(exc)) from None


def read_public_key(path: Path) -> packagesig.PublicKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the signer's public key: {exc.strerror}") from None
    try:
        return packagesig.load_public_key(pem, str(path))
    except SignatureFormatError as exc:
        raise UsageError(str(exc)) from None


@click.command("keygen")
@click.argument("key", type=FILE)
@click.option(
    "--algorithm",
    type=click.Choice(packagesig.ALGORITHMS),
    default=packagesig.ECDSA_P256,
    show_default=True,
    help="Key type (and so signature algorithm).",
)
@JSON
def keygen(key: Path, algorithm: str, as_json: bool) -> None:
    """Make a package signer key pair: KEY (private, mode 0600) and KEY.pub.

    Give KEY.pub to whoever judges packages: the Steward's policy
    (allowed_packages = [{ repository = "...", signer = "team.pub" }]),
    `donjon package verify --signer`, `donjon verify-peer --expect-signer`.

    \b
    Examples:
      donjon package keygen team.key
      donjon package keygen release.key --algorithm ed25519
    """
    from donjon import atomicfile

    public = key.with_name(key.name + ".pub")
    for path in (key, public):
        if path.exists():
            raise UsageError(f"{path}: already exists; a signer key is never overwritten")
    private = packagesig.generate_key(algorithm)
    atomicfile.write_bytes(key, packagesig.private_pem(private), mode=0o600, overwrite=False)
    atomicfile.write_bytes(public, packagesig.public_pem(private.public_key()), overwrite=False)
    fingerprint = packagesig.fingerprint(private.public_key())
    if as_json:
        print_json(
            {
                "private_key": str(key),
                "public_key": str(public),
                "algorithm": algorithm,
                "key_id": fingerprint,
            }
        )
        return
    click.echo(f"{public}  {algorithm}  {fingerprint}")


@click.command("sign")
@click.argument("ref")
@click.option("--key", "key_path", type=EXISTING_FILE, required=True, help="Signer key (PEM).")
@click.option("--allow-tag", is_flag=True, help="Sign what a tag names now (logged).")
@_REGISTRY_CA
@JSON
def sign(
    ref: str, key_path: Path, allow_tag: bool, registry_ca: Path | None, as_json: bool
) -> None:
    """Sign the package REF and store the signature in its registry.

    The signature covers the repository (host[:port]/path) and the manifest
    digest. It is stored as an OCI artifact whose subject is the package: found
    through the referrers API where the registry has one, else under the tag
    sha256-<hex>.sig (as cosign does). A Keep running the package carries the
    signatures into its certificate's claims; the Steward's policy judges them.

    \b
    Examples:
      donjon package sign oci://registry.example/team/app@sha256:9c1e... --key team.key
      donjon package push ./app oci://registry.example/team/app --sign-key team.key
    """
    from donjon.keep.oci import reference
    from donjon.keep.oci.auth import find_credentials
    from donjon.keep.oci.fetch import require_pinned
    from donjon.keep.oci.signatures import sign_reference

    key = read_private_key(key_path)
    parsed = reference.parse(ref)
    require_pinned(parsed, allow_tag)
    signed = sign_reference(
        parsed, key, credentials=find_credentials(parsed.registry), ca_bundle=registry_ca
    )
    show_signed(signed, as_json)


def show_signed(signed: SignedPackage, as_json: bool) -> None:
    doc = {
        "reference": str(signed.reference),
        "key_id": "sha256:" + signed.record.key_id.hex(),
        "algorithm": signed.record.algorithm,
        "stored": signed.stored,
        "where": signed.where,
    }
    if as_json:
        print_json(doc)
        return
    how = "referrers API" if signed.stored == "referrers" else f"tag {signed.where}"
    click.echo(f"signed {signed.reference} with key {doc['key_id']} ({how})")


@click.command("verify")
@click.argument("ref")
@click.option(
    "--signer",
    "signer_paths",
    type=EXISTING_FILE,
    multiple=True,
    required=True,
    help="A signer's public key (PEM); repeat to accept any of several.",
)
@click.option("--allow-tag", is_flag=True, help="Verify what a tag names now (logged).")
@_REGISTRY_CA
@JSON
def verify(
    ref: str,
    signer_paths: tuple[Path, ...],
    allow_tag: bool,
    registry_ca: Path | None,
    as_json: bool,
) -> None:
    """Check that REF carries a signature by one of the --signer keys over its
    repository and manifest digest; exit 0 only then.

    \b
    Examples:
      donjon package verify oci://registry.example/team/app@sha256:9c1e... --signer team.pub
      donjon package verify oci://registry.example/team/app@sha256:9c1e... \\
          --signer team.pub --signer release.pub --json
    """
    from donjon.keep.oci import reference
    from donjon.keep.oci.auth import find_credentials
    from donjon.keep.oci.fetch import require_pinned
    from donjon.keep.oci.signatures import check_reference

    keys = [read_public_key(p) for p in signer_paths]
    parsed = reference.parse(ref)
    require_pinned(parsed, allow_tag)
    checked = check_reference(
        parsed,
        {packagesig.key_id(k): k for k in keys},
        credentials=find_credentials(parsed.registry),
        ca_bundle=registry_ca,
    )
    verdict = checked.judgement
    if as_json:
        print_json(
            {
                "reference": str(checked.reference),
                "verified": verdict.ok,
                "reason": verdict.reason,
                "message": verdict.message,
                "signatures": packagesig.records_json(checked.records),
            }
        )
        if not verdict.ok:
            raise SystemExit(1)
        return
    if not verdict.ok:
        raise SignatureRefused(f"{checked.reference}: {verdict.message}")
    click.echo(f"{escape(str(checked.reference))}: {escape(verdict.message)}")
