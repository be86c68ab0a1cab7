"""Package signatures in the registry: OCI artifacts whose ``subject`` is the package manifest.

A signature manifest (``artifactType`` :data:`SIGNATURE_ARTIFACT`)::

    config: application/vnd.oci.empty.v1+json  ("{}")
    layers: application/vnd.donjon.package.statement.v1+json   one per signature:
            the statement blob (see donjon.attestation.packagesig), annotated
              dev.donjon.signature            base64 of the signature
              dev.donjon.signature.algorithm  ecdsa-p256-sha256 | ecdsa-p384-sha384 | ed25519
              dev.donjon.signature.key        sha256:<hex> key id of the signer
    subject: the package manifest's descriptor

Where the registry has the OCI 1.1 referrers API, each signature is its own
manifest, found through ``GET /v2/<repo>/referrers/<digest>``. Where it has not
(the referrers call answers 404, as Debian's docker-registry 2.8 does), the
cosign-style tag ``sha256-<hex>.sig`` holds one manifest whose layers are all the
signatures, and signing adds a layer to it. Reading takes both. A ``.sig`` tag
holding another tool's signature (cosign's) is left alone: it is not read, and
signing refuses to overwrite it.

Nothing here decides whether a signature is good: the Keep carries what it
found into its claims, and the Steward's policy (or a relying party) judges it.
Every byte is bounded and digest-checked as the package's own blobs are.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon.attestation import packagesig
from donjon.attestation.packagesig import MAX_SIGNATURES, SignatureFormatError, SignatureRecord
from donjon.keep.oci import artifact
from donjon.keep.oci.artifact import OCI_MANIFEST, ArtifactError, Descriptor
from donjon.keep.oci.auth import Credentials
from donjon.keep.oci.reference import Reference
from donjon.keep.oci.registry import RegistryClient, TooLarge

log = logging.getLogger("donjon.keep")

SIGNATURE_ARTIFACT = "application/vnd.donjon.package.signature.v1"
STATEMENT_LAYER = "application/vnd.donjon.package.statement.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
A_SIGNATURE = "dev.donjon.signature"
A_ALGORITHM = "dev.donjon.signature.algorithm"
A_KEY = "dev.donjon.signature.key"
#: A signature manifest or referrers index is small: anything bigger is refused unread.
MAX_SIGNATURE_MANIFEST = 64 * 1024
MAX_REFERRERS_INDEX = 256 * 1024


class SignatureArtifactError(ArtifactError):
    """A signature artifact in the registry that is not one this Donjon wrote or reads."""


@dataclass(frozen=True)
class SignatureLayer:
    """A statement layer as the manifest describes it (the statement blob not yet fetched)."""

    descriptor: Descriptor
    algorithm: str
    key_id: bytes
    signature: bytes

    def record(self, statement: bytes) -> SignatureRecord:
        try:
            return SignatureRecord(statement, self.algorithm, self.key_id, self.signature)
        except SignatureFormatError as exc:
            where = f"signature layer {self.descriptor.digest}"
            raise SignatureArtifactError(f"{where}: {exc}") from None


def fallback_tag(digest: str) -> str:
    """``sha256-<hex>.sig``: where signatures live on a registry without referrers."""
    return digest.replace(":", "-") + ".sig"


def layer_of(record: SignatureRecord) -> Descriptor:
    return Descriptor.of(
        STATEMENT_LAYER,
        record.statement,
        {
            A_SIGNATURE: base64.b64encode(record.signature).decode(),
            A_ALGORITHM: record.algorithm,
            A_KEY: "sha256:" + record.key_id.hex(),
        },
    )


def build_manifest(subject: Descriptor, layers: list[Descriptor]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_ARTIFACT,
        "config": Descriptor.of(EMPTY_CONFIG, EMPTY).to_json(),
        "layers": [layer.to_json() for layer in layers],
        "subject": subject.to_json(),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def is_ours(data: bytes) -> bool:
    """Whether a manifest says it is a Donjon signature (else: another tool's, left alone)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("artifactType") == SIGNATURE_ARTIFACT


def parse_manifest(data: bytes, subject: str, where: str) -> list[SignatureLayer]:
    """A Donjon signature manifest for ``subject`` (a manifest digest), strictly."""
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SignatureArtifactError(f"{where}: signature manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise SignatureArtifactError(f"{where}: signature manifest is not a JSON object")
    if doc.get("schemaVersion") != 2 or doc.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST:
        raise SignatureArtifactError(f"{where}: not an OCI image manifest (schemaVersion 2)")
    if doc.get("artifactType") != SIGNATURE_ARTIFACT:
        raise SignatureArtifactError(
            f"{where}: artifactType {str(doc.get('artifactType'))[:80]!r} is not "
            f"{SIGNATURE_ARTIFACT}"
        )
    config = artifact.parse_descriptor(doc.get("config"), f"{where}: config")
    if config.media_type != EMPTY_CONFIG:
        raise SignatureArtifactError(f"{where}: config media type is not {EMPTY_CONFIG}")
    said = artifact.parse_descriptor(doc.get("subject"), f"{where}: subject")
    if said.digest != subject:
        raise SignatureArtifactError(
            f"{where}: signs subject {said.digest}, not the package {subject}"
        )
    layers = doc.get("layers")
    if not isinstance(layers, list) or not 0 < len(layers) <= MAX_SIGNATURES:
        raise SignatureArtifactError(f"{where}: expected 1..{MAX_SIGNATURES} signature layers")
    out = []
    for index, raw in enumerate(layers):
        at = f"{where}: layers[{index}]"
        layer = artifact.parse_descriptor(raw, at)
        if layer.media_type != STATEMENT_LAYER:
            raise SignatureArtifactError(f"{at}: media type {layer.media_type[:80]!r} is not ours")
        if layer.size > packagesig.MAX_STATEMENT:
            raise SignatureArtifactError(
                f"{at}: a statement of {layer.size} bytes (at most {packagesig.MAX_STATEMENT})"
            )
        notes = layer.annotations
        try:
            signature = base64.b64decode(notes.get(A_SIGNATURE, ""), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureArtifactError(f"{at}: {A_SIGNATURE} is not base64") from None
        key = notes.get(A_KEY, "")
        if not key.startswith("sha256:") or len(key) != 71:
            raise SignatureArtifactError(f"{at}: {A_KEY} is not sha256:<64 hex>")
        try:
            key_id = bytes.fromhex(key[7:])
        except ValueError:
            raise SignatureArtifactError(f"{at}: {A_KEY} is not sha256:<64 hex>") from None
        algorithm = notes.get(A_ALGORITHM, "")
        if not signature or len(signature) > packagesig.MAX_SIGNATURE or not algorithm:
            raise SignatureArtifactError(f"{at}: no signature, or no algorithm, or too long")
        out.append(SignatureLayer(layer, algorithm[:32], key_id, signature))
    return out


def parse_referrers(data: bytes, where: str) -> list[Descriptor]:
    """The Donjon signature manifests an OCI referrers index lists."""
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SignatureArtifactError(f"{where}: referrers index is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise SignatureArtifactError(f"{where}: referrers index has no manifests list")
    found = []
    for index, raw in enumerate(doc["manifests"]):
        if not isinstance(raw, dict) or raw.get("artifactType") != SIGNATURE_ARTIFACT:
            continue  # another kind of referrer (an SBOM, cosign's...): not ours to read
        found.append(artifact.parse_descriptor(raw, f"{where}: manifests[{index}]"))
    return found


def fetch(client: RegistryClient, digest: str) -> tuple[SignatureRecord, ...]:
    """Every Donjon signature the registry holds for manifest ``digest`` (at most
    MAX_SIGNATURES; duplicates dropped), each statement blob digest-checked."""
    layers = _signature_layers(client, digest)
    records: list[SignatureRecord] = []
    for layer in layers:
        statement = client.get_blob(layer.descriptor)
        record = layer.record(statement)
        if record not in records:
            records.append(record)
        if len(records) == MAX_SIGNATURES:
            if len(layers) > MAX_SIGNATURES:
                log.warning("%s: more than %d signatures; the first are used", digest, len(records))
            break
    return tuple(records)


def _read_small(client: RegistryClient, target: str) -> bytes | None:
    fetched = client.find_manifest(target)
    if fetched is None:
        return None
    if len(fetched.data) > MAX_SIGNATURE_MANIFEST:
        raise TooLarge(f"signature manifest {target}: {len(fetched.data)} bytes")
    return fetched.data


def _signature_layers(client: RegistryClient, digest: str) -> list[SignatureLayer]:
    layers: list[SignatureLayer] = []
    where = f"{client.ref.registry}/{client.ref.repository}"
    index = client.get_referrers(digest, SIGNATURE_ARTIFACT, MAX_REFERRERS_INDEX)
    if index is not None:
        for descriptor in parse_referrers(index, f"{where} referrers of {digest}")[:MAX_SIGNATURES]:
            data = _read_small(client, descriptor.digest)
            if data is not None:
                layers += parse_manifest(data, digest, f"{where}@{descriptor.digest}")
    tag = fallback_tag(digest)
    data = _read_small(client, tag)
    if data is not None:
        if is_ours(data):
            layers += parse_manifest(data, digest, f"{where}:{tag}")
        else:
            log.info("%s:%s holds another tool's signature; not read", where, tag)
    return layers


def attach(client: RegistryClient, subject: Descriptor, record: SignatureRecord) -> tuple[str, str]:
    """Store ``record`` as a signature of ``subject``: (how, where) it went.

    With the referrers API, as its own manifest; without, added to the
    ``.sig`` tag's manifest (replacing an earlier signature by the same key).
    """
    layer = layer_of(record)
    client.push_blob(EMPTY)
    client.push_blob(record.statement)
    if client.get_referrers(subject.digest, SIGNATURE_ARTIFACT, MAX_REFERRERS_INDEX) is not None:
        pushed = client.push_manifest(build_manifest(subject, [layer]), None)
        if client.subject_noted:
            return "referrers", pushed
    tag = fallback_tag(subject.digest)
    layers = [layer]
    existing = _read_small(client, tag)
    if existing is not None:
        if not is_ours(existing):
            raise SignatureArtifactError(
                f"{client.ref.registry}/{client.ref.repository}:{tag} holds another tool's "
                "signature (cosign?); Donjon will not overwrite it",
                hint="sign in a registry with the OCI referrers API, or remove that tag",
            )
        where = f"{client.ref.registry}/{client.ref.repository}:{tag}"
        for old in parse_manifest(existing, subject.digest, where):
            if old.key_id != record.key_id and len(layers) < MAX_SIGNATURES:
                layers.append(old.descriptor)
    client.push_manifest(build_manifest(subject, layers), tag, by_digest=False)
    return "tag", tag


# --- for the CLI: sign and verify a reference ----------------------------------------------


@dataclass(frozen=True)
class SignedPackage:
    reference: Reference  # with the manifest digest
    record: SignatureRecord
    stored: str  # "referrers" or "tag"
    where: str  # the signature manifest's digest, or the fallback tag


@dataclass(frozen=True)
class CheckedPackage:
    reference: Reference  # with the manifest digest
    records: tuple[SignatureRecord, ...]
    judgement: packagesig.Judgement


def repository_of(ref: Reference) -> str:
    """What a statement and the claims name: ``host[:port]/path``."""
    return f"{ref.registry}/{ref.repository}"


def sign_reference(
    ref: Reference,
    key: packagesig.PrivateKey,
    *,
    credentials: Credentials | None,
    ca_bundle: Path | None = None,
) -> SignedPackage:
    """Sign the package ``ref`` names (its manifest digest) and store the signature beside it."""
    with RegistryClient(ref, credentials=credentials, ca_bundle=ca_bundle, push=True) as client:
        fetched = client.get_manifest(ref.target)
        artifact.parse_manifest(fetched.data, fetched.media_type, str(ref))  # a package, checked
        subject = Descriptor(fetched.media_type, fetched.digest, len(fetched.data), {})
        record = packagesig.sign(key, repository_of(ref), fetched.digest)
        stored, where = attach(client, subject, record)
    return SignedPackage(ref.with_digest(fetched.digest), record, stored, where)


def check_reference(
    ref: Reference,
    signers: Mapping[bytes, packagesig.PublicKey],
    *,
    credentials: Credentials | None,
    ca_bundle: Path | None = None,
) -> CheckedPackage:
    """The signatures of ``ref`` and the judgement of them against ``signers``."""
    with RegistryClient(ref, credentials=credentials, ca_bundle=ca_bundle) as client:
        fetched = client.get_manifest(ref.target)
        artifact.parse_manifest(fetched.data, fetched.media_type, str(ref))
        records = fetch(client, fetched.digest)
    pinned = ref.with_digest(fetched.digest)
    judgement = packagesig.judge(
        records,
        repository_of(ref),
        bytes.fromhex(fetched.digest.removeprefix("sha256:")),
        signers,
        whose="one of the keys given",
    )
    return CheckedPackage(pinned, records, judgement)
