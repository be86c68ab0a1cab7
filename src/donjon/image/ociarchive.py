"""An OCI image archive (``oci-archive:``), read back and checked blob by blob.

The archive a build writes is input like any other: its index, manifest, config and
every layer are checked against the digests and sizes that point at them before
anything is reported or unpacked. Unpacking applies the layers in order, refuses
paths that leave the root and device files, and handles OCI whiteouts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from donjon.errors import DonjonError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HAS_FILTERS = hasattr(tarfile, "fully_trusted_filter")


class ArchiveError(DonjonError):
    """The OCI archive is malformed or a blob does not match its digest."""


@dataclass(frozen=True)
class Layer:
    digest: str  # of the compressed blob
    diff_id: str  # of the uncompressed tar (the config's rootfs.diff_ids)
    size: int  # compressed
    uncompressed: int


@dataclass(frozen=True)
class Image:
    """What a checked archive holds."""

    path: Path
    manifest_digest: str
    config_digest: str
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    manifest_size: int
    config_size: int

    @property
    def compressed_size(self) -> int:
        """Bytes a registry stores and a node pulls: layers, config and manifest."""
        return sum(layer.size for layer in self.layers) + self.config_size + self.manifest_size

    @property
    def uncompressed_size(self) -> int:
        return sum(layer.uncompressed for layer in self.layers)

    @property
    def runtime(self) -> dict[str, Any]:
        value = self.config.get("config") or {}
        return value if isinstance(value, dict) else {}


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise ArchiveError(f"the archive has no file {name}")
    return f


def _blob_name(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise ArchiveError(f"unsupported or malformed digest {digest!r} (sha256 only)")
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _read_blob(tar: tarfile.TarFile, digest: str, size: int, limit: int = 1 << 20) -> bytes:
    data = _member(tar, _blob_name(digest)).read(limit + 1)
    if len(data) > limit:
        raise ArchiveError(f"blob {digest} is larger than {limit} bytes")
    if len(data) != size or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise ArchiveError(f"blob {digest} does not match its digest or size ({size})")
    return data


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ArchiveError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ArchiveError(f"{what} is not a JSON object")
    return value


def _descriptor(value: Any, what: str) -> tuple[str, str, int]:
    if not isinstance(value, dict):
        raise ArchiveError(f"{what} is not a descriptor")
    media, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media, str) or not isinstance(digest, str) or not isinstance(size, int):
        raise ArchiveError(f"{what} lacks mediaType, digest or size")
    _blob_name(digest)
    return media, digest, size


def _hash_layer(f: IO[bytes], media: str) -> tuple[str, int, str, int]:
    """(digest, size) of the blob and of its uncompressed tar, streamed once."""
    outer, inner = hashlib.sha256(), hashlib.sha256()
    counted = _Counting(f, outer)
    raw = cast(IO[bytes], counted)
    stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw)) if media == LAYER_GZIP else raw
    total = 0
    try:
        while chunk := stream.read(1 << 20):
            inner.update(chunk)
            total += len(chunk)
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"a layer is not valid gzip: {exc}") from exc
    return "sha256:" + outer.hexdigest(), counted.count, "sha256:" + inner.hexdigest(), total


class _Counting:
    """A read-only file that hashes and counts what passes through it."""

    def __init__(self, f: IO[bytes], digest: Any) -> None:
        self._f, self._digest, self.count = f, digest, 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._digest.update(data)
        self.count += len(data)
        return data


def open_image(path: Path) -> Image:
    """Read and check ``path``: every blob against its digest, the layers against diff_ids."""
    try:
        with tarfile.open(path) as tar:
            return _check(path, tar)
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{path}: not a readable OCI archive: {exc}") from exc


def _check(path: Path, tar: tarfile.TarFile) -> Image:
    layout = _json(_member(tar, "oci-layout").read(4096), "oci-layout")
    if layout.get("imageLayoutVersion") != "1.0.0":
        raise ArchiveError(f"{path}: unknown imageLayoutVersion {layout.get('imageLayoutVersion')}")
    index = _json(_member(tar, "index.json").read(1 << 20), "index.json")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or len(manifests) != 1:
        raise ArchiveError(f"{path}: index.json must name exactly one manifest")
    media, digest, size = _descriptor(manifests[0], "index.json's manifest")
    if media != MANIFEST:
        raise ArchiveError(f"{path}: the manifest's media type {media} is not {MANIFEST}")
    manifest = _json(_read_blob(tar, digest, size), "the manifest")
    if manifest.get("schemaVersion") != 2:
        raise ArchiveError(f"{path}: the manifest's schemaVersion is not 2")
    c_media, c_digest, c_size = _descriptor(manifest.get("config"), "the manifest's config")
    if c_media != CONFIG:
        raise ArchiveError(f"{path}: the config's media type {c_media} is not {CONFIG}")
    config = _json(_read_blob(tar, c_digest, c_size), "the image config")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    descriptors = manifest.get("layers")
    if not isinstance(descriptors, list) or not isinstance(diff_ids, list):
        raise ArchiveError(f"{path}: the manifest's layers or the config's diff_ids are missing")
    if len(descriptors) != len(diff_ids):
        raise ArchiveError(f"{path}: {len(descriptors)} layers but {len(diff_ids)} diff_ids")
    layers = []
    for i, (value, diff_id) in enumerate(zip(descriptors, diff_ids, strict=True)):
        l_media, l_digest, l_size = _descriptor(value, f"layer {i}")
        if l_media not in (LAYER_GZIP, LAYER_TAR):
            raise ArchiveError(f"{path}: layer {i} has media type {l_media}")
        got, got_size, inner, total = _hash_layer(_member(tar, _blob_name(l_digest)), l_media)
        if (got, got_size) != (l_digest, l_size):
            raise ArchiveError(f"{path}: layer {i} does not match its digest or size")
        if inner != diff_id:
            raise ArchiveError(f"{path}: layer {i}'s content does not match diff_id {diff_id}")
        layers.append(Layer(l_digest, diff_id, l_size, total))
    return Image(path, digest, c_digest, config, tuple(layers), size, c_size)


def _safe(name: str) -> PurePosixPath:
    rel = PurePosixPath(name.lstrip("/"))
    if ".." in rel.parts:
        raise ArchiveError(f"a layer holds a path that leaves the root: {name}")
    return rel


def _members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, PurePosixPath]]:
    for member in tar:
        yield member, _safe(member.name)


def unpack(image: Image, dest: Path) -> None:
    """Apply the (already checked) layers in order into ``dest``, as a runtime would."""
    dest.chmod(0o755)  # a root filesystem's own mode, whatever made the directory
    with tarfile.open(image.path) as archive:
        for layer in image.layers:
            blob = _member(archive, _blob_name(layer.digest))
            with tarfile.open(fileobj=blob, mode="r|*") as tar:
                for member, rel in _members(tar):
                    _apply(tar, member, rel, dest)


def _apply(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: PurePosixPath, dest: Path) -> None:
    name = rel.name
    if name == ".wh..wh..opq":
        target = dest / rel.parent
        for child in target.iterdir() if target.is_dir() else ():
            _remove(child)
        return
    if name.startswith(".wh."):
        _remove(dest / rel.parent / name.removeprefix(".wh."))
        return
    if member.ischr() or member.isblk() or member.isfifo():
        raise ArchiveError(f"a layer holds a device or fifo: {member.name}")
    if member.mode & 0o6000 and not member.isdir():
        raise ArchiveError(f"a layer holds a setuid or setgid file: {member.name}")
    root = dest.resolve()
    parent = (dest / rel).parent.resolve()
    if parent != root and root not in parent.parents:
        raise ArchiveError(f"a layer writes through a link that leaves the root: {member.name}")
    if member.islnk() and ".." in _safe(member.linkname).parts:
        raise ArchiveError(f"a hard link leaves the root: {member.name} -> {member.linkname}")
    target = dest / rel
    if not member.isdir() and (target.exists() or target.is_symlink()):
        _remove(target)
    member.name = str(rel)
    if member.islnk():
        member.linkname = str(_safe(member.linkname))
    # paths checked above: Debian's Python 3.11.2 has no extraction filters, later ones do
    trusted: dict[str, Any] = {"filter": "fully_trusted"} if _HAS_FILTERS else {}
    tar.extract(member, dest, set_attrs=True, numeric_owner=True, **trusted)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
