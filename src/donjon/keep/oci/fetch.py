"""Fetching a package from a registry: manifest, config and layers, each digest-checked.

Nothing is returned until every blob is in memory and checked, so a Keep can
never start on part of a package. A reference by tag is refused unless the
caller allows it: the digest it resolved to is reported, and that digest (not
the tag) is what the Keep attests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from donjon.attestation.packagesig import SignatureRecord
from donjon.errors import UsageError
from donjon.keep.oci import artifact, signatures
from donjon.keep.oci.artifact import ArtifactError, PackageManifest
from donjon.keep.oci.auth import Credentials
from donjon.keep.oci.reference import Reference
from donjon.keep.oci.registry import Limits, RegistryClient, TooLarge

log = logging.getLogger("donjon.keep")
Report = Callable[[str], None]
#: All layers of one package together.
DEFAULT_MAX_PACKAGE = 1024 * 1024 * 1024


class TagNotAllowed(UsageError):
    """A reference without a digest, and no ``--allow-tag``."""


@dataclass(frozen=True)
class FetchedBlobs:
    """A package as a registry served it, every blob checked against the manifest."""

    reference: Reference  # with the manifest digest
    manifest: PackageManifest
    manifest_bytes: bytes = field(repr=False)
    wasm_layer: bytes = field(repr=False)  # plaintext or sealed
    keep_config: bytes | None = field(repr=False)
    files_tar: bytes | None = field(repr=False)
    #: The signatures the registry holds for the manifest (judged by the Steward, not here).
    signatures: tuple[SignatureRecord, ...] = ()
    #: The config's sealed part (ciphertext), beside a sealed main.wasm.
    sealed_config: bytes | None = field(default=None, repr=False)


def require_pinned(ref: Reference, allow_tag: bool) -> None:
    if ref.pinned:
        return
    if not allow_tag:
        raise TagNotAllowed(
            f"{ref}: a tag can be moved by whoever controls the registry; deploy by digest "
            f"({ref.registry}/{ref.repository}@sha256:...) or pass --allow-tag",
            hint=f"donjon package inspect {ref} prints the digest",
        )
    log.warning("deploying %s by tag (--allow-tag): the digest it resolves to is attested", ref)


def resolve_manifest(client: RegistryClient, ref: Reference) -> tuple[bytes, str, PackageManifest]:
    fetched = client.get_manifest(ref.target)
    manifest = artifact.parse_manifest(fetched.data, fetched.media_type, str(ref))
    return fetched.data, fetched.digest, manifest


def fetch(
    ref: Reference,
    *,
    credentials: Credentials | None,
    ca_bundle: Path | None = None,
    allow_tag: bool = False,
    limits: Limits | None = None,
    max_package: int = DEFAULT_MAX_PACKAGE,
    report: Report | None = None,
) -> FetchedBlobs:
    require_pinned(ref, allow_tag)
    with RegistryClient(ref, credentials=credentials, ca_bundle=ca_bundle, limits=limits) as client:
        data, digest, manifest = resolve_manifest(client, ref)
        if not ref.pinned and report is not None:
            report(f"{ref}: tag resolved to {digest} (this digest is attested)")
        total = manifest.config.size + sum(layer.size for layer in manifest.layers)
        if total > max_package:
            raise TooLarge(
                f"{ref}: the package is {total} bytes, over the {max_package}-byte limit"
            )
        config_blob = client.get_blob(manifest.config)
        _check_config(config_blob, manifest, str(ref))
        blobs: dict[str, bytes] = {}
        for layer in manifest.layers:
            blobs[layer.media_type] = client.get_blob(layer)
            if report is not None:
                report(f"fetched {layer.media_type} {layer.digest} ({layer.size} bytes, digest ok)")
        found = signatures.fetch(client, digest)
        if report is not None:
            keys = ", ".join(sorted({"sha256:" + s.key_id.hex()[:16] + "..." for s in found}))
            report(f"{len(found)} signature(s) found" + (f" (keys {keys})" if found else ""))
    return FetchedBlobs(
        reference=ref.with_digest(digest),
        manifest=manifest,
        manifest_bytes=data,
        wasm_layer=blobs[manifest.wasm.media_type],
        keep_config=blobs.get(artifact.KEEP_CONFIG_LAYER),
        files_tar=blobs.get(artifact.FILES_LAYER),
        signatures=found,
        sealed_config=blobs.get(artifact.SEALED_CONFIG_LAYER),
    )


def _check_config(blob: bytes, manifest: PackageManifest, where: str) -> None:
    """The CNCF wasm config must be JSON; if it lists layer digests, they must be ours."""
    try:
        doc = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        raise ArtifactError(f"{where}: the wasm config blob is not JSON") from None
    if not isinstance(doc, dict):
        raise ArtifactError(f"{where}: the wasm config blob is not a JSON object")
    listed = doc.get("layerDigests")
    if listed is not None and listed != [layer.digest for layer in manifest.layers]:
        raise ArtifactError(f"{where}: the wasm config's layerDigests do not match the manifest")
