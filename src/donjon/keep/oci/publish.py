"""``donjon package push``: a package directory into a registry, optionally sealed."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from donjon.keep import config_split, sealed, sealed_config
from donjon.keep.oci import artifact, bundle
from donjon.keep.oci.artifact import Descriptor
from donjon.keep.oci.auth import Credentials
from donjon.keep.oci.reference import Reference
from donjon.keep.oci.registry import RegistryClient

Report = Callable[[str], None]


@dataclass(frozen=True)
class PushResult:
    reference: Reference  # with the manifest digest
    digest: str
    wasm_sha256: str  # of the plaintext main.wasm
    size: int  # bytes of every layer and the config
    #: For a sealed package: the key to register with the Steward, and the secret's name.
    key: bytes | None = field(default=None, repr=False)
    key_secret: str | None = None


def new_key_secret_name(files: bundle.PackageFiles) -> str:
    """A name for the package key that no other push will take."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", files.name.lower())[:40].strip("-._") or "workload"
    return f"package-key.{stem}.{secrets.token_hex(8)}"


def build(
    files: bundle.PackageFiles, *, encrypt: bool, key_secret: str | None
) -> tuple[bytes, list[tuple[Descriptor, bytes]], bytes | None, str | None]:
    """(manifest, [(descriptor, blob)] including the config, key, key secret name)."""
    blobs: list[tuple[Descriptor, bytes]] = []
    key = None
    plain_sha256 = hashlib.sha256(files.wasm).hexdigest()
    if encrypt:
        key_secret = key_secret or new_key_secret_name(files)
        key, ciphertext = sealed.seal(files.wasm)
        annotations = {
            artifact.PLAIN_SHA256: plain_sha256,
            artifact.KEY_SECRET: key_secret,
            artifact.CIPHER: artifact.AES_256_GCM,
            artifact.TITLE: "main.wasm",
        }
        blobs.append(
            (Descriptor.of(artifact.SEALED_WASM_LAYER, ciphertext, annotations), ciphertext)
        )
    else:
        key_secret = None
        title = {artifact.TITLE: "main.wasm"}
        blobs.append((Descriptor.of(artifact.WASM_LAYER, files.wasm, title), files.wasm))
    config_bytes = files.config
    sealed_part = None
    if key is not None:  # the config's secret parts are sealed under the same package key
        config_bytes, sealed_part = _seal_config(files, key, bytes.fromhex(plain_sha256))
    if config_bytes is not None and files.config_name is not None:
        title = {artifact.TITLE: files.config_name}
        blobs.append((Descriptor.of(artifact.KEEP_CONFIG_LAYER, config_bytes, title), config_bytes))
    if sealed_part is not None:
        blobs.append(sealed_part)
    if files.files_tar is not None:
        blobs.append((Descriptor.of(artifact.FILES_LAYER, files.files_tar), files.files_tar))
    layers = [d for d, _ in blobs]
    config_blob = artifact.wasm_config(layers)
    config = Descriptor.of(artifact.WASM_CONFIG, config_blob)
    manifest = artifact.build_manifest(config, layers, {artifact.TITLE: files.name})
    return manifest, [(config, config_blob), *blobs], key, key_secret


def _seal_config(
    files: bundle.PackageFiles, key: bytes, wasm_sha256: bytes
) -> tuple[bytes | None, tuple[Descriptor, bytes]]:
    """(clear config, sealed config layer): ``keep/config_split.py`` says what is sealed."""
    clear, part = None, b""
    if files.config is not None and files.config_name is not None:
        clear, part = config_split.split(files.config, files.directory / files.config_name)
    clear_sha256 = hashlib.sha256(clear).digest() if clear is not None else None
    blob, digest = sealed_config.seal(key, part, wasm_sha256=wasm_sha256, clear_sha256=clear_sha256)
    annotations = {
        artifact.SEALED_CONFIG_SHA256: digest.hex(),
        artifact.CIPHER: artifact.AES_256_GCM,
    }
    return clear, (Descriptor.of(artifact.SEALED_CONFIG_LAYER, blob, annotations), blob)


def push(
    directory: Path,
    ref: Reference,
    *,
    credentials: Credentials | None,
    ca_bundle: Path | None = None,
    encrypt: bool = False,
    key_secret: str | None = None,
    report: Report | None = None,
) -> PushResult:
    """Upload every blob, then the manifest (by digest, and by tag if the reference has one)."""
    files = bundle.read_dir(directory)
    manifest, blobs, key, key_secret = build(files, encrypt=encrypt, key_secret=key_secret)
    with RegistryClient(ref, credentials=credentials, ca_bundle=ca_bundle, push=True) as client:
        for descriptor, data in blobs:
            client.push_blob(data)
            if report is not None:
                report(
                    f"pushed {descriptor.media_type} {descriptor.digest} ({descriptor.size} bytes)"
                )
        digest = client.push_manifest(manifest, ref.tag)
    return PushResult(
        reference=ref.with_digest(digest),
        digest=digest,
        wasm_sha256=hashlib.sha256(files.wasm).hexdigest(),
        size=sum(d.size for d, _ in blobs),
        key=key,
        key_secret=key_secret,
    )
