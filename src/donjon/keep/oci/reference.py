"""``oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]``: where a package lives in a registry.

A digest names exactly one manifest; a tag can be moved by whoever controls
the registry, so a reference by tag alone is accepted only when the caller
says so (``--allow-tag``), and that is logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from donjon.errors import UsageError

SCHEME = "oci://"
#: Repository path components, as the OCI distribution spec defines them.
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(
    r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?$"
)


class ReferenceError(UsageError):
    """A package reference that is not ``oci://HOST/REPO[:TAG][@sha256:...]``."""


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port]
    repository: str
    tag: str | None = None
    digest: str | None = None  # "sha256:<hex>"

    @property
    def pinned(self) -> bool:
        """True when a digest names the manifest: nobody can move what it points at."""
        return self.digest is not None

    @property
    def target(self) -> str:
        """What the registry's ``/manifests/`` path names: the digest if any, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = f"{SCHEME}{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_oci(text: str) -> bool:
    return text.startswith(SCHEME)


def check_digest(text: str, where: str) -> str:
    """A ``sha256:<64 lowercase hex>`` digest, or a one-line error naming ``where``."""
    if not _DIGEST.match(text):
        raise ReferenceError(f"{where}: {text!r} is not a digest like sha256:<64 hex digits>")
    return text


def parse(text: str) -> Reference:
    """Parse ``oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]`` strictly."""
    if not is_oci(text):
        raise ReferenceError(f"{text!r}: a registry reference starts with {SCHEME}")
    rest = text[len(SCHEME) :]
    digest = None
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
        check_digest(digest, text)
    host, slash, path = rest.partition("/")
    if not slash or not host or not path:
        raise ReferenceError(f"{text!r}: expected {SCHEME}HOST[:PORT]/REPOSITORY")
    if not _HOST.match(host):
        raise ReferenceError(f"{text!r}: {host!r} is not a registry host[:port]")
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else None
    if port is not None and not 0 < int(port) < 65536:
        raise ReferenceError(f"{text!r}: port {port} is out of range")
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ReferenceError(f"{text!r}: {tag!r} is not a valid tag")
    if len(path) > 255 or not all(_COMPONENT.match(part) for part in path.split("/")):
        raise ReferenceError(
            f"{text!r}: {path!r} is not a repository name (lowercase letters, digits, "
            "and . _ - between them, components separated by /)"
        )
    return Reference(host, path, tag, digest)
