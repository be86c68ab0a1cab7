"""A registry client for the OCI distribution API, with every byte digest-checked.

Why not ``oras`` (PyPI): its pull streams blobs straight into files without
checking their digest, returns manifests as parsed JSON (so the manifest's own
digest cannot be recomputed from the bytes served), has no size limits, and
verifies TLS only on or off (no CA bundle per registry). A Keep must check every
byte before it uses one, and must never let a registry fill its memory or disk,
so the few calls needed are made here on httpx (already a dependency).

Reads are held in memory and returned only whole and checked: a download that
stops early, overruns its declared size, or hashes to another digest raises,
so no caller ever sees part of a blob.
"""

from __future__ import annotations

import hashlib
import os
import queue
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx

from donjon.errors import DonjonError
from donjon.keep.oci.artifact import OCI_INDEX, OCI_MANIFEST, Descriptor, sha256_digest
from donjon.keep.oci.auth import Credentials, RegistryAuth, RegistryAuthError
from donjon.keep.oci.reference import Reference

ENV_REGISTRY_CA = "DONJON_REGISTRY_CA"
MAX_MANIFEST = 4 * 1024 * 1024  # as the OCI distribution spec suggests registries accept
DEFAULT_MAX_LAYER = 256 * 1024 * 1024
CHUNK = 1 << 20

Progress = Callable[[int, int], None]


class RegistryError(DonjonError):
    """A registry operation failed; the message names the registry and the object."""


class RegistryUnreachable(RegistryError):
    """No answer, a TLS failure, or a connection that broke mid-transfer."""


class RegistryRefused(RegistryError):
    """The registry answered with an error status (not found, denied, ...)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class DigestMismatch(RegistryError):
    """Bytes served under a digest hash to another: a tampered or corrupted registry."""


class TooLarge(RegistryError):
    """A manifest or layer larger than the limit (or than it declared)."""


@dataclass(frozen=True)
class Limits:
    max_manifest: int = MAX_MANIFEST
    max_layer: int = DEFAULT_MAX_LAYER


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: str


def _reason(exc: BaseException) -> str:
    cause: BaseException = exc
    while (nxt := cause.__cause__ or cause.__context__) is not None:
        cause = nxt
    text = str(cause) or type(cause).__name__
    return text.splitlines()[0]


class RegistryClient:
    """One registry, one repository, one authenticated HTTP client."""

    def __init__(
        self,
        ref: Reference,
        *,
        credentials: Credentials | None,
        ca_bundle: Path | None = None,
        push: bool = False,
        limits: Limits | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.ref = ref
        self.limits = limits or Limits()
        #: The last push_manifest's answer carried OCI-Subject (the registry indexes referrers).
        self.subject_noted = False
        env_ca = os.environ.get(ENV_REGISTRY_CA)
        cafile = ca_bundle or (Path(env_ca) if env_ca else None)
        try:
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        except (OSError, ssl.SSLError) as exc:
            raise RegistryError(f"registry CA bundle {cafile}: cannot load: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        self.base = f"https://{ref.registry}/v2/{ref.repository}/"
        self.http = httpx.Client(
            verify=context,
            timeout=timeout_s,
            auth=RegistryAuth(ref.registry, credentials, scope),
            follow_redirects=True,
            headers={"User-Agent": "donjon"},
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self, what: str) -> str:
        return f"{self.ref.registry}/{self.ref.repository} {what}"

    def _send(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        return self._request(method, url, what, stream=False, **kwargs)

    def _request(
        self, method: str, url: str, what: str, *, stream: bool, **kwargs: Any
    ) -> httpx.Response:
        try:
            request = self.http.build_request(method, url, **kwargs)
            return self.http.send(request, stream=stream)
        except RegistryAuthError:
            raise
        except httpx.TimeoutException as exc:
            raise RegistryUnreachable(f"{self._where(what)}: no answer in time") from exc
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(f"{self._where(what)}: {_reason(exc)}") from exc

    def _refused(self, response: httpx.Response, what: str) -> RegistryRefused:
        detail = ""
        try:
            errors = response.json().get("errors") or []
            if errors and isinstance(errors[0], dict):
                detail = f": {errors[0].get('code', '')} {errors[0].get('message', '')}".rstrip()
        except (ValueError, AttributeError):
            pass
        return RegistryRefused(
            f"{self._where(what)}: HTTP {response.status_code} {response.reason_phrase}{detail}",
            status=response.status_code,
        )

    # --- reading -------------------------------------------------------------------------

    def get_manifest(self, target: str) -> FetchedManifest:
        """The manifest's exact bytes; when ``target`` is a digest, they must hash to it."""
        what = f"manifest {target}"
        url = self.base + "manifests/" + target
        with self._stream("GET", url, what, headers={"Accept": OCI_MANIFEST}) as response:
            if response.status_code != 200:
                response.read()
                raise self._refused(response, what)
            data = self._read_limited(response, what, self.limits.max_manifest, None)
            media = response.headers.get("content-type", "").split(";")[0].strip()
        digest = sha256_digest(data)
        if target.startswith("sha256:") and digest != target:
            raise DigestMismatch(f"{self._where(what)}: the registry served bytes of {digest}")
        return FetchedManifest(data, media, digest)

    def find_manifest(self, target: str) -> FetchedManifest | None:
        """:meth:`get_manifest`, or None when the registry has no such manifest (404)."""
        try:
            return self.get_manifest(target)
        except RegistryRefused as exc:
            if exc.status == 404:
                return None
            raise

    def get_referrers(self, digest: str, artifact_type: str, limit: int) -> bytes | None:
        """The OCI 1.1 referrers index of ``digest`` (at most ``limit`` bytes), or None when
        the registry has no referrers API (404: use the fallback tag)."""
        what = f"referrers of {digest}"
        url = self.base + "referrers/" + digest + "?" + urlencode({"artifactType": artifact_type})
        with self._stream("GET", url, what, headers={"Accept": OCI_INDEX}) as response:
            if response.status_code == 404:
                response.read()
                return None
            if response.status_code != 200:
                response.read()
                raise self._refused(response, what)
            return self._read_limited(response, what, limit, None)

    def get_blob(self, descriptor: Descriptor, progress: Progress | None = None) -> bytes:
        """A whole blob, checked against the descriptor's size and digest before it is returned."""
        what = f"blob {descriptor.digest}"
        if descriptor.size > self.limits.max_layer:
            raise TooLarge(
                f"{self._where(what)}: declares {descriptor.size} bytes, over the "
                f"{self.limits.max_layer}-byte layer limit"
            )
        url = self.base + "blobs/" + descriptor.digest
        hasher = _Hasher()
        try:
            with self._stream("GET", url, what) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._refused(response, what)
                data = self._read_limited(response, what, descriptor.size, progress, hasher)
        finally:
            served = hasher.finish()
        if len(data) != descriptor.size:
            raise RegistryUnreachable(
                f"{self._where(what)}: download ended after {len(data)} of {descriptor.size} bytes"
            )
        if served != descriptor.digest:
            raise DigestMismatch(
                f"{self._where(what)}: the bytes served hash to {served}: "
                "corrupted or tampered in the registry"
            )
        return data

    def _stream(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        return _Closing(self._request(method, url, what, stream=True, **kwargs))

    def _read_limited(
        self,
        response: httpx.Response,
        what: str,
        limit: int,
        progress: Progress | None,
        hasher: _Hasher | None = None,
    ) -> bytes:
        """At most ``limit`` bytes into one buffer sized up front (no copies as it grows)."""
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge(
                f"{self._where(what)}: {declared} bytes offered, more than the {limit} expected"
            )
        buffer = bytearray(limit)
        view = memoryview(buffer)
        size = 0
        try:
            for chunk in response.iter_bytes(CHUNK):
                end = size + len(chunk)
                if end > limit:
                    raise TooLarge(
                        f"{self._where(what)}: more than the {limit} bytes expected; stopped"
                    )
                view[size:end] = chunk
                if hasher is not None:
                    hasher.feed(chunk)
                size = end
                if progress is not None:
                    progress(size, limit)
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(
                f"{self._where(what)}: download broke after {size} bytes: {_reason(exc)}"
            ) from exc
        finally:
            view.release()
        if size < limit:
            del buffer[size:]
        # The buffer is ours alone from here: handed out as the (read-only by contract) bytes.
        return buffer  # type: ignore[return-value]

    # --- writing -------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        response = self._send("HEAD", self.base + "blobs/" + digest, f"blob {digest}")
        return response.status_code == 200

    def push_blob(self, data: bytes) -> str:
        """Upload one blob (monolithic POST + PUT) unless the registry has it; its digest."""
        digest = sha256_digest(data)
        what = f"blob {digest}"
        if self.has_blob(digest):
            return digest
        started = self._send("POST", self.base + "blobs/uploads/", what)
        if started.status_code != 202 or "location" not in started.headers:
            raise self._refused(started, what)
        location = urljoin(self.base, started.headers["location"])
        # The location carries the upload's state in its query: add to it, never replace it.
        location += ("&" if "?" in location else "?") + urlencode({"digest": digest})
        done = self._send(
            "PUT",
            location,
            what,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status_code != 201:
            raise self._refused(done, what)
        return digest

    def push_manifest(self, data: bytes, tag: str | None, *, by_digest: bool = True) -> str:
        """PUT the manifest under its digest (and ``tag``); the registry must agree on it."""
        digest = sha256_digest(data)
        self.subject_noted = False
        for target in ([digest] if by_digest else []) + ([tag] if tag else []):
            what = f"manifest {target}"
            response = self._send(
                "PUT",
                self.base + "manifests/" + target,
                what,
                content=data,
                headers={"Content-Type": OCI_MANIFEST},
            )
            if response.status_code != 201:
                raise self._refused(response, what)
            said = response.headers.get("docker-content-digest")
            if said is not None and said != digest:
                raise DigestMismatch(f"{self._where(what)}: registry says {said}, we sent {digest}")
            # OCI 1.1: a registry that indexed the manifest's subject for the referrers API says so.
            self.subject_noted = self.subject_noted or "oci-subject" in response.headers
        return digest


class _Hasher:
    """SHA-256 on a second thread while the download goes on (hashlib releases the GIL)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="donjon-blob-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def feed(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def finish(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return "sha256:" + self._hash.hexdigest()


class _Closing:
    """``with`` for a streamed httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def __enter__(self) -> httpx.Response:
        return self.response

    def __exit__(self, *exc: object) -> None:
        self.response.close()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
