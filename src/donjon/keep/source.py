"""Where a package comes from: a local path, an OCI reference, or an https tar. One interface.

:func:`open_package` turns any of them into a :class:`~donjon.keep.package.Package`
whose main.wasm is held in memory (for remote sources) after every digest was
checked. Static files of a remote package are unpacked into a private temporary
directory, which :class:`OpenedPackage` removes when closed; main.wasm and the
config are never written there. A confidential main.wasm stays sealed until the
Keep has attested (``keep/runner.py`` opens it with the released key).

``https://HOST/PATH/pkg.tar#sha256=HEX``: the digest of the whole tar is
required and is what the Keep attests as its package digest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from donjon.attestation.packagesig import SignatureRecord
from donjon.errors import DonjonError, UsageError
from donjon.keep import package as packages
from donjon.keep.config import Config
from donjon.keep.oci import artifact, bundle, reference
from donjon.keep.oci.auth import find_credentials
from donjon.keep.oci.fetch import DEFAULT_MAX_PACKAGE, FetchedBlobs, fetch
from donjon.keep.oci.registry import Limits, RegistryUnreachable, TooLarge
from donjon.keep.package import Package
from donjon.keep.sealed import SealedModule
from donjon.keep.sealed_config import SealedConfig

Report = Callable[[str], None]


class SourceError(DonjonError):
    """A package source that could not be fetched or does not hold a package."""


@dataclass(frozen=True)
class SourceOptions:
    allow_tag: bool = False
    #: CA bundle for registries and https sources (default: $DONJON_REGISTRY_CA, else system).
    ca_bundle: Path | None = None
    limits: Limits = field(default_factory=Limits)
    max_package: int = DEFAULT_MAX_PACKAGE


class OpenedPackage:
    """A package ready to run, and the temporary directory its static files live in."""

    def __init__(self, package: Package, scratch: Path | None) -> None:
        self.package = package
        self._scratch = scratch

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> OpenedPackage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_remote(text: str) -> bool:
    return reference.is_oci(text) or text.startswith("https://")


def open_package(
    text: str,
    *,
    config_override: Path | None = None,
    options: SourceOptions | None = None,
    report: Report | None = None,
) -> OpenedPackage:
    """A local path, ``oci://...`` or ``https://...#sha256=...``, as a package to run."""
    options = options or SourceOptions()
    if config_override is not None and is_remote(text) and report is not None:
        report(
            f"{config_override} replaces the package's config: this Keep's certificate will "
            "not name the package (allowed_packages and --expect-package refuse it)"
        )
    if reference.is_oci(text):
        ref = reference.parse(text)
        blobs = fetch(
            ref,
            credentials=find_credentials(ref.registry),
            ca_bundle=options.ca_bundle,
            allow_tag=options.allow_tag,
            limits=options.limits,
            max_package=options.max_package,
            report=report,
        )
        return _from_blobs(blobs, config_override, options)
    if text.startswith("https://"):
        return _from_tar_url(text, config_override, options, report)
    if "://" in text:
        raise UsageError(f"{text!r}: a package is a path, oci://... or https://...#sha256=...")
    return OpenedPackage(packages.load(Path(text), config_override), None)


def _scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="donjon-package-"))


def _assemble(
    *,
    name: str,
    origin: str,
    package_sha256: bytes,
    wasm: bytes | None,
    sealed: SealedModule | None,
    config_name: str | None,
    config: bytes | None,
    files: dict[str, bytes],
    config_override: Path | None,
    repository: str | None = None,
    signatures: tuple[SignatureRecord, ...] = (),
) -> OpenedPackage:
    scratch = _scratch_dir()
    try:
        os.chmod(scratch, 0o700)
        bundle.write_files(scratch, files)
        wasm_path = scratch / bundle.WASM_NAME  # names it in messages; never written
        if config_override is not None:
            config_name, config = str(config_override), config_override.read_bytes()
        if config is None:
            parsed, config_path, config_bytes = Config(), None, b""
        else:
            config_path = Path(config_name or "Donjon.toml")
            where = config_override or scratch / config_path
            parsed, config_bytes = packages.parse(config, where), config
            config_path = where
        package = Package(
            name=name,
            wasm=wasm_path,
            config=parsed,
            config_path=config_path,
            config_bytes=config_bytes,
            base_dir=scratch if config_override is None else config_override.parent,
            wasm_bytes=wasm if wasm is not None else b"",
            sealed=sealed,
            # A config of the operator's own replaces the package's (and its base
            # directory): what runs is not the package, so the claims do not name it.
            package_sha256=package_sha256 if config_override is None else None,
            origin=origin,
            package_repository=repository if config_override is None else None,
            package_signatures=signatures if config_override is None else (),
        )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return OpenedPackage(package, scratch)


def _from_blobs(
    blobs: FetchedBlobs, config_override: Path | None, options: SourceOptions
) -> OpenedPackage:
    manifest = blobs.manifest
    where = str(blobs.reference)
    files = (
        bundle.tar_members(blobs.files_tar, f"{where} files layer", max_total=options.max_package)
        if blobs.files_tar is not None
        else {}
    )
    sealed = None
    wasm: bytes | None = blobs.wasm_layer
    if manifest.sealed:
        key_secret = manifest.key_secret()
        part_sha256 = manifest.sealed_config_sha256()
        # parse_manifest requires both beside a sealed main.wasm
        assert key_secret is not None and part_sha256 is not None
        assert blobs.sealed_config is not None
        if config_override is not None:
            raise SourceError(
                f"{where}: its config has a sealed part (args, env values), which --config "
                "would drop; run it without --config"
            )
        config_part = SealedConfig(
            blobs.sealed_config,
            part_sha256,
            wasm_sha256=manifest.plain_wasm_sha256(),
            clear_sha256=manifest.clear_config_sha256(),
        )
        sealed = SealedModule(
            blobs.wasm_layer, manifest.plain_wasm_sha256(), key_secret, config=config_part
        )
        wasm = None
    digest = blobs.reference.digest
    assert digest is not None
    return _assemble(
        name=manifest.name or blobs.reference.repository.rsplit("/", 1)[-1],
        origin=where,
        package_sha256=bytes.fromhex(digest.removeprefix("sha256:")),
        wasm=wasm,
        sealed=sealed,
        config_name=manifest.config_name(),
        config=blobs.keep_config,
        files=files,
        config_override=config_override,
        repository=f"{blobs.reference.registry}/{blobs.reference.repository}",
        signatures=blobs.signatures,
    )


def parse_tar_url(text: str) -> tuple[str, bytes]:
    """``https://...#sha256=HEX`` -> (URL without fragment, digest)."""
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise UsageError(f"{text!r}: expected https://HOST/PATH.tar#sha256=<64 hex>")
    fragment = parts.fragment
    if not fragment.startswith("sha256="):
        raise UsageError(
            f"{text!r}: an https package needs its digest: append #sha256=<64 hex> "
            "(sha256sum pkg.tar)"
        )
    hexdigest = fragment.removeprefix("sha256=")
    if len(hexdigest) != 64 or hexdigest != hexdigest.lower():
        raise UsageError(f"{text!r}: #sha256= needs 64 lowercase hex digits")
    try:
        digest = bytes.fromhex(hexdigest)
    except ValueError:
        raise UsageError(f"{text!r}: #sha256= needs 64 lowercase hex digits") from None
    return text.split("#", 1)[0], digest


def _from_tar_url(
    text: str, config_override: Path | None, options: SourceOptions, report: Report | None
) -> OpenedPackage:
    import httpx

    url, digest = parse_tar_url(text)
    env_ca = os.environ.get("DONJON_REGISTRY_CA")
    cafile = options.ca_bundle or (Path(env_ca) if env_ca else None)
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    limit = options.max_package
    body = bytearray()
    try:
        with (
            httpx.Client(verify=context, timeout=30.0, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise SourceError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
            for chunk in response.iter_bytes(1 << 20):
                body += chunk
                if len(body) > limit:
                    raise TooLarge(f"{url}: more than {limit} bytes; stopped")
    except httpx.HTTPError as exc:
        raise RegistryUnreachable(f"{url}: download failed after {len(body)} bytes: {exc}") from exc
    data = bytes(body)
    if hashlib.sha256(data).digest() != digest:
        raise SourceError(
            f"{url}: the tar hashes to sha256:{hashlib.sha256(data).hexdigest()}, not the "
            f"sha256:{digest.hex()} the URL names"
        )
    if report is not None:
        report(f"fetched {url} ({len(data)} bytes, digest ok)")
    members = bundle.tar_members(data, url, max_total=limit)
    wasm = members.pop(bundle.WASM_NAME, None)
    if wasm is None:
        raise SourceError(f"{url}: the tar has no top-level {bundle.WASM_NAME}")
    configs = [n for n in artifact.CONFIG_NAMES if n in members]
    if len(configs) > 1:
        raise SourceError(f"{url}: the tar has both Donjon.toml and Enarx.toml")
    config_name = configs[0] if configs else None
    config = members.pop(config_name) if config_name else None
    name = Path(urlsplit(url).path).name.removesuffix(".tar") or "workload"
    return _assemble(
        name=name,
        origin=f"{url}#sha256={digest.hex()}",
        package_sha256=digest,
        wasm=wasm,
        sealed=None,
        config_name=config_name,
        config=config,
        files=members,
        config_override=config_override,
    )
