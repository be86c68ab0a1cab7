"""``donjon package``: push a workload package to an OCI registry, pull it, inspect it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from donjon.cli import package_sign
from donjon.cli.options import DIRECTORY, EXISTING_FILE, FILE, JSON
from donjon.cli.output import escape, print_json
from donjon.errors import UsageError

_REGISTRY_CA = click.option(
    "--registry-ca",
    type=FILE,
    help="PEM that signed the registry's HTTPS certificate [$DONJON_REGISTRY_CA; else system].",
)


_SEALED_PART = "ciphertext; opened only in an attested Keep"


def _say(line: str) -> None:
    click.echo(f"donjon: {escape(line)}", err=True)


@click.group("package")
def package() -> None:
    """Publish workload packages as OCI artifacts, and fetch them back.

    A package (main.wasm, Donjon.toml or Enarx.toml, other files) is pushed in
    the CNCF wasm artifact layout; `donjon run oci://HOST/REPO@sha256:...` runs
    it after checking every digest. Credentials come from ~/.docker/config.json,
    $REGISTRY_AUTH_FILE or $DONJON_REGISTRY_USERNAME/$DONJON_REGISTRY_PASSWORD.

    \b
    Examples:
      donjon package push ./app oci://registry.example:5000/team/app:1.0
      donjon package push ./app oci://registry.example/team/app --encrypt \\
          --steward https://steward:8443 --admin-token-file admin.token --platform snp
      donjon package inspect oci://registry.example/team/app@sha256:9c1e... --json
      donjon package pull oci://registry.example/team/app@sha256:9c1e... ./app-copy
      donjon run oci://registry.example/team/app@sha256:9c1e...
      donjon package keygen team.key
      donjon package push ./app oci://registry.example/team/app --sign-key team.key
      donjon package verify oci://registry.example/team/app@sha256:9c1e... --signer team.key.pub
    """


package.add_command(package_sign.keygen)
package.add_command(package_sign.sign)
package.add_command(package_sign.verify)


@package.command("push")
@click.argument("directory", type=DIRECTORY)
@click.argument("ref")
@click.option(
    "--encrypt",
    is_flag=True,
    help="Seal main.wasm and the config's args and env values (AES-256-GCM); register the key.",
)
@click.option("--key-secret", metavar="NAME", help="Steward secret name of the key [generated].")
@click.option("--steward", metavar="URL", help="Steward to register the key with (--encrypt).")
@click.option("--steward-ca", type=FILE, help="PEM that signed the Steward's HTTPS certificate.")
@click.option("--admin-token-file", type=FILE, help="The Steward's admin token (--encrypt).")
@click.option("--platform", "platforms", multiple=True, help="Key release: platforms allowed.")
@click.option("--min-tcb-status", help="Key release: lowest TCB status [UpToDate].")
@click.option("--development", is_flag=True, help="Key release: to development Keeps too.")
@click.option("--sign-key", type=EXISTING_FILE, help="Sign the pushed package with this key.")
@_REGISTRY_CA
@JSON
def push(
    directory: Path,
    ref: str,
    encrypt: bool,
    key_secret: str | None,
    steward: str | None,
    steward_ca: Path | None,
    admin_token_file: Path | None,
    platforms: tuple[str, ...],
    min_tcb_status: str | None,
    development: bool,
    sign_key: Path | None,
    registry_ca: Path | None,
    as_json: bool,
) -> None:
    """Push DIRECTORY to REF (oci://HOST[:PORT]/REPO[:TAG]); print the manifest digest.

    With --encrypt, main.wasm and the config's args and [env] values are sealed
    under a fresh AES-256-GCM key, which is stored in the Steward as a secret
    released only to Keeps attesting this package's manifest digest; the
    registry holds only their ciphertext. The rest of the config (steward,
    [[files]], secret names, [limits]) stays clear: the Keep reads it before it
    attests (docs/secrets.md).

    With --sign-key, the pushed package is signed as `donjon package sign` does.
    """
    from donjon.keep.oci import reference
    from donjon.keep.oci.auth import find_credentials
    from donjon.keep.oci.publish import push as push_package

    parsed = reference.parse(ref)
    if parsed.digest is not None:
        raise UsageError(f"{ref}: push to a tag or a bare repository; the digest is computed")
    signer = package_sign.read_private_key(sign_key) if sign_key else None  # before any upload
    admin = None
    if encrypt:
        from donjon.cli.steward_secrets import _admin

        admin = _admin(steward, admin_token_file, steward_ca)  # checked before any upload
    elif steward or admin_token_file or platforms or min_tcb_status or development:
        raise UsageError("--steward, --admin-token-file and the key release options need --encrypt")
    result = push_package(
        directory,
        parsed,
        credentials=find_credentials(parsed.registry),
        ca_bundle=registry_ca,
        encrypt=encrypt,
        key_secret=key_secret,
        report=None if as_json else _say,
    )
    registered = None
    if admin is not None and result.key is not None and result.key_secret is not None:
        policy: dict[str, object] = {"allowed_packages": [result.digest]}
        if platforms:
            policy["platforms"] = list(platforms)
        if min_tcb_status:
            policy["min_tcb_status"] = min_tcb_status
        if development:
            policy["development"] = True
        registered = admin.put(result.key_secret, result.key, policy)
        if not as_json:
            _say(
                f"registered the package key as secret {result.key_secret} "
                f"(released only to Keeps attesting {result.digest})"
            )
    signed = None
    if signer is not None:
        from donjon.keep.oci.signatures import sign_reference

        signed = sign_reference(
            result.reference, signer, credentials=find_credentials(parsed.registry),
            ca_bundle=registry_ca,
        )  # fmt: skip
        if not as_json:
            _say(f"signed with key sha256:{signed.record.key_id.hex()} ({signed.where})")
    if as_json:
        print_json(
            {
                "reference": str(result.reference),
                "digest": result.digest,
                "wasm_sha256": result.wasm_sha256,
                "size": result.size,
                "encrypted": encrypt,
                "key_secret": result.key_secret,
                "key_registered": registered is not None,
                "signed_by": None if signed is None else "sha256:" + signed.record.key_id.hex(),
            }
        )
        return
    click.echo(result.digest)


@package.command("inspect")
@click.argument("ref")
@_REGISTRY_CA
@JSON
def inspect(ref: str, registry_ca: Path | None, as_json: bool) -> None:
    """Show the manifest of REF: digest, layers, sizes, whether main.wasm is sealed."""
    from donjon.attestation.packagesig import records_json
    from donjon.keep.oci import reference
    from donjon.keep.oci.auth import find_credentials
    from donjon.keep.oci.fetch import resolve_manifest
    from donjon.keep.oci.registry import RegistryClient
    from donjon.keep.oci.signatures import fetch as fetch_signatures

    parsed = reference.parse(ref)
    with RegistryClient(
        parsed, credentials=find_credentials(parsed.registry), ca_bundle=registry_ca
    ) as client:
        _, digest, manifest = resolve_manifest(client, parsed)
        signatures = fetch_signatures(client, digest)
    doc = {
        "reference": str(parsed.with_digest(digest)),
        "digest": digest,
        "name": manifest.name,
        "encrypted": manifest.sealed,
        "wasm_sha256": manifest.plain_wasm_sha256().hex(),
        "key_secret": manifest.key_secret(),
        "config": manifest.config_name(),
        "config_sealed": manifest.sealed_config is not None,
        "layers": [layer.to_json() for layer in manifest.layers],
        "signatures": records_json(signatures),
    }
    if as_json:
        print_json(doc)
        return
    # The manifest's strings are the publisher's, served by the registry: escaped.
    click.echo(escape(str(doc["reference"])))
    click.echo(f"  name:        {escape(manifest.name or '-')}")
    click.echo(f"  main.wasm:   sha256:{doc['wasm_sha256']}")
    if manifest.sealed:
        secret = escape(manifest.key_secret() or "")
        click.echo(f"  encrypted:   yes (key: Steward secret {secret})")
    click.echo(f"  config:      {escape(manifest.config_name() or 'none (Enarx defaults)')}")
    if manifest.sealed_config is not None:
        click.echo(f"  sealed:      args and env values of the config ({_SEALED_PART})")
    for layer in manifest.layers:
        kind, digest = escape(layer.media_type), escape(layer.digest)
        click.echo(f"  layer {kind}  {digest}  {layer.size} bytes")
    for record in signatures:  # unverified: `donjon package verify --signer` judges them
        algorithm = escape(record.algorithm)
        click.echo(f"  signature   key sha256:{record.key_id.hex()}  {algorithm}  (not verified)")
    if not signatures:
        click.echo("  signatures:  none")


@package.command("pull")
@click.argument("ref")
@click.argument("directory", type=DIRECTORY)
@click.option("--allow-tag", is_flag=True, help="Accept a reference by tag (logged).")
@_REGISTRY_CA
def pull(ref: str, directory: Path, allow_tag: bool, registry_ca: Path | None) -> None:
    """Fetch REF into DIRECTORY (new), every digest checked first.

    A sealed main.wasm is written as main.wasm.sealed, and the sealed part of its
    config as Donjon.toml.sealed (or Enarx.toml.sealed), both ciphertext: they
    open only inside an attested Keep.
    """
    from donjon.keep.oci import bundle, reference
    from donjon.keep.oci.auth import find_credentials
    from donjon.keep.oci.fetch import fetch

    if directory.exists():
        raise UsageError(f"{directory}: already exists; pull into a new directory")
    parsed = reference.parse(ref)
    blobs = fetch(
        parsed,
        credentials=find_credentials(parsed.registry),
        ca_bundle=registry_ca,
        allow_tag=allow_tag,
        report=_say,
    )
    files = {}
    if blobs.files_tar is not None:
        files = bundle.tar_members(blobs.files_tar, f"{ref} files layer", max_total=1 << 30)
    wasm_name = "main.wasm.sealed" if blobs.manifest.sealed else "main.wasm"
    files[wasm_name] = blobs.wasm_layer
    config_name = blobs.manifest.config_name()
    if config_name and blobs.keep_config is not None:
        files[config_name] = blobs.keep_config
    if blobs.sealed_config is not None:
        files[f"{config_name or 'Donjon.toml'}.sealed"] = blobs.sealed_config
    staging = directory.with_name(f".{directory.name}.pulling-{os.getpid()}")
    staging.mkdir(parents=True)
    try:
        bundle.write_files(staging, files)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    sys.stdout.flush()
    click.echo(f"pulled {blobs.reference} into {directory}")
