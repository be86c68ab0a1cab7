"""The layout of a Donjon package as an OCI artifact, and its strict parser.

Manifest (``application/vnd.oci.image.manifest.v1+json``)::

    config: application/vnd.wasm.config.v0+json     CNCF wasm config
    layers:
      application/wasm                              main.wasm (exactly one), or
      application/vnd.donjon.wasm.v1+encrypted      main.wasm, AES-256-GCM (confidential)
      application/vnd.donjon.keep-config.v1+toml    Donjon.toml / Enarx.toml (at most one)
      application/vnd.donjon.keep-config.sealed.v1+encrypted
                                                    the config's sealed part (with a sealed
                                                    main.wasm, and only then)
      application/vnd.donjon.files.v1.tar           other files of the package (at most one)

A manifest with any other media type, an unknown layer type, or a second layer
of a kind is refused: the Keep runs exactly what was described, nothing extra.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from donjon.errors import DonjonError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
WASM_CONFIG = "application/vnd.wasm.config.v0+json"
WASM_LAYER = "application/wasm"
SEALED_WASM_LAYER = "application/vnd.donjon.wasm.v1+encrypted"
KEEP_CONFIG_LAYER = "application/vnd.donjon.keep-config.v1+toml"
FILES_LAYER = "application/vnd.donjon.files.v1.tar"
#: The sealed part of the config (args, env values): ``keep/sealed_config.py``.
SEALED_CONFIG_LAYER = "application/vnd.donjon.keep-config.sealed.v1+encrypted"
#: Any version of it: another version than v1 is refused by name, not as an unknown layer.
SEALED_CONFIG_PREFIX = "application/vnd.donjon.keep-config.sealed."
ARTIFACT_TYPE = "application/vnd.donjon.package.v1"

TITLE = "org.opencontainers.image.title"
#: On a sealed layer: SHA-256 of the plaintext main.wasm, and the Steward secret holding its key.
PLAIN_SHA256 = "dev.donjon.wasm.sha256"
KEY_SECRET = "dev.donjon.key.secret"
CIPHER = "dev.donjon.cipher"
#: On the sealed config layer: SHA-256 of its (blinded) plaintext.
SEALED_CONFIG_SHA256 = "dev.donjon.keep-config.sha256"
AES_256_GCM = "AES-256-GCM"

LAYER_TYPES = frozenset(
    {WASM_LAYER, SEALED_WASM_LAYER, KEEP_CONFIG_LAYER, SEALED_CONFIG_LAYER, FILES_LAYER}
)
CONFIG_NAMES = ("Donjon.toml", "Enarx.toml")


class ArtifactError(DonjonError):
    """A manifest that is not a Donjon package: wrong media type, layers, or fields."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc

    @classmethod
    def of(
        cls, media_type: str, data: bytes, annotations: dict[str, str] | None = None
    ) -> Descriptor:
        return cls(media_type, sha256_digest(data), len(data), dict(annotations or {}))


@dataclass(frozen=True)
class PackageManifest:
    """A parsed, checked package manifest: one descriptor per role."""

    config: Descriptor
    wasm: Descriptor
    keep_config: Descriptor | None
    files: Descriptor | None
    annotations: dict[str, str]
    #: The config's sealed part: present exactly when main.wasm is sealed.
    sealed_config: Descriptor | None = None

    @property
    def sealed(self) -> bool:
        return self.wasm.media_type == SEALED_WASM_LAYER

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        parts = (self.wasm, self.keep_config, self.sealed_config, self.files)
        return tuple(d for d in parts if d is not None)

    @property
    def name(self) -> str:
        return self.annotations.get(TITLE, "")

    def plain_wasm_sha256(self) -> bytes:
        """The digest of main.wasm in clear: the layer's, or the sealed layer's annotation."""
        if not self.sealed:
            return bytes.fromhex(self.wasm.digest.removeprefix("sha256:"))
        return bytes.fromhex(self.wasm.annotations[PLAIN_SHA256])

    def key_secret(self) -> str | None:
        return self.wasm.annotations.get(KEY_SECRET) if self.sealed else None

    def config_name(self) -> str | None:
        if self.keep_config is None:
            return None
        return self.keep_config.annotations.get(TITLE, "Donjon.toml")

    def sealed_config_sha256(self) -> bytes | None:
        if self.sealed_config is None:
            return None
        return bytes.fromhex(self.sealed_config.annotations[SEALED_CONFIG_SHA256])

    def clear_config_sha256(self) -> bytes | None:
        """The clear config layer's digest (what a Keep attests as its config), if any."""
        if self.keep_config is None:
            return None
        return bytes.fromhex(self.keep_config.digest.removeprefix("sha256:"))


def build_manifest(
    config: Descriptor,
    layers: list[Descriptor],
    annotations: dict[str, str],
) -> bytes:
    """Canonical JSON (sorted keys, no spaces): the same package always gets the same digest."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
        "annotations": annotations,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def wasm_config(layers: list[Descriptor]) -> bytes:
    """The CNCF wasm config blob (``application/vnd.wasm.config.v0+json``)."""
    doc = {
        "architecture": "wasm",
        "os": "wasip1",
        "layerDigests": [layer.digest for layer in layers],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ArtifactError(f"{where}: annotations must map strings to strings")
    return dict(value)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ArtifactError(f"{where}: expected a descriptor object")
    media, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media, str) or not media:
        raise ArtifactError(f"{where}: no mediaType")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise ArtifactError(f"{where}: digest {digest!r} is not sha256:<64 hex>")
    try:
        bytes.fromhex(digest[7:])
    except ValueError:
        raise ArtifactError(f"{where}: digest {digest!r} is not hex") from None
    if digest[7:] != digest[7:].lower():
        raise ArtifactError(f"{where}: digest {digest!r} must be lowercase hex")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArtifactError(f"{where}: size must be a non-negative integer")
    return Descriptor(media, digest, size, _str_map(value.get("annotations"), where))


def parse_descriptor(value: Any, where: str) -> Descriptor:
    """One OCI descriptor object, strictly (lowercase sha256 digest, non-negative size)."""
    return _descriptor(value, where)


def parse_manifest(data: bytes, media_type: str, where: str) -> PackageManifest:
    """Check a manifest's bytes (already digest-checked) describe a Donjon package."""
    if media_type != OCI_MANIFEST:
        raise ArtifactError(
            f"{where}: manifest media type {media_type or '(none)'!r} is not {OCI_MANIFEST}"
        )
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{where}: manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ArtifactError(f"{where}: manifest is not a JSON object")
    if doc.get("schemaVersion") != 2:
        raise ArtifactError(f"{where}: schemaVersion {doc.get('schemaVersion')!r} is not 2")
    if doc.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST:
        raise ArtifactError(f"{where}: manifest says mediaType {doc.get('mediaType')!r}")
    config = _descriptor(doc.get("config"), f"{where}: config")
    if config.media_type != WASM_CONFIG:
        raise ArtifactError(
            f"{where}: config media type {config.media_type!r} is not {WASM_CONFIG}: "
            "not a wasm package"
        )
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ArtifactError(f"{where}: no layers")
    by_role: dict[str, Descriptor] = {}
    for index, raw in enumerate(layers):
        layer = _descriptor(raw, f"{where}: layers[{index}]")
        if layer.media_type.startswith(SEALED_CONFIG_PREFIX) and (
            layer.media_type != SEALED_CONFIG_LAYER
        ):
            raise ArtifactError(
                f"{where}: layers[{index}]: sealed config layer {layer.media_type!r} is a "
                f"version this Donjon does not read (it reads {SEALED_CONFIG_LAYER})"
            )
        if layer.media_type not in LAYER_TYPES:
            raise ArtifactError(
                f"{where}: layers[{index}]: unknown media type {layer.media_type!r}"
            )
        role = "wasm" if layer.media_type in (WASM_LAYER, SEALED_WASM_LAYER) else layer.media_type
        if role in by_role:
            raise ArtifactError(f"{where}: layers[{index}]: a second {layer.media_type} layer")
        by_role[role] = layer
    wasm = by_role.get("wasm")
    if wasm is None:
        raise ArtifactError(f"{where}: no {WASM_LAYER} layer")
    if wasm.media_type == SEALED_WASM_LAYER:
        if not _is_sha256_hex(wasm.annotations.get(PLAIN_SHA256, "")):
            raise ArtifactError(f"{where}: the encrypted wasm layer has no {PLAIN_SHA256}")
        if not wasm.annotations.get(KEY_SECRET):
            raise ArtifactError(f"{where}: the encrypted wasm layer names no {KEY_SECRET}")
        _check_cipher(wasm, "the encrypted wasm layer", where)
    sealed_config = by_role.get(SEALED_CONFIG_LAYER)
    _check_sealed_config(sealed_config, wasm.media_type == SEALED_WASM_LAYER, where)
    keep_config = by_role.get(KEEP_CONFIG_LAYER)
    if keep_config is not None and keep_config.annotations.get(TITLE, "Donjon.toml") not in (
        CONFIG_NAMES
    ):
        raise ArtifactError(f"{where}: the config layer must be titled Donjon.toml or Enarx.toml")
    return PackageManifest(
        config=config,
        wasm=wasm,
        keep_config=keep_config,
        files=by_role.get(FILES_LAYER),
        annotations=_str_map(doc.get("annotations"), f"{where}: manifest"),
        sealed_config=sealed_config,
    )


def _check_cipher(layer: Descriptor, what: str, where: str) -> None:
    if layer.annotations.get(CIPHER) != AES_256_GCM:
        raise ArtifactError(
            f"{where}: {what}: unsupported cipher {layer.annotations.get(CIPHER)!r} "
            f"(this Donjon reads {AES_256_GCM})"
        )


def _check_sealed_config(layer: Descriptor | None, wasm_sealed: bool, where: str) -> None:
    """A sealed main.wasm comes with a sealed config part, and a sealed part only with it."""
    if layer is None:
        if wasm_sealed:
            raise ArtifactError(
                f"{where}: main.wasm is sealed but the package has no {SEALED_CONFIG_LAYER} "
                "layer (push --encrypt writes both; push it again with this Donjon)"
            )
        return
    if not wasm_sealed:
        raise ArtifactError(
            f"{where}: a {SEALED_CONFIG_LAYER} layer beside a main.wasm in clear "
            "(push --encrypt seals both, with one key)"
        )
    if not _is_sha256_hex(layer.annotations.get(SEALED_CONFIG_SHA256, "")):
        raise ArtifactError(f"{where}: the sealed config layer has no {SEALED_CONFIG_SHA256}")
    _check_cipher(layer, "the sealed config layer", where)


def _is_sha256_hex(text: str) -> bool:
    return len(text) == 64 and text == text.lower() and _is_hex(text)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
