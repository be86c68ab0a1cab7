"""Where Intel collateral comes from, in order, and the memos that make re-verification cheap.

Sources, first to last (the first *current* candidate wins; CRLs are pooled,
since revocation is permanent):

1. the evidence itself (Enarx's SGX extension carries TCB Info and CRLs);
2. a collateral file given for this check (``--collateral FILE``);
3. the trust directory (collateral bundles, the Intel root, CRLs) and the
   on-disk cache of fetched bundles, which expire at their ``nextUpdate``;
4. Intel PCS or a PCCS, when a fetcher is configured (the result is cached).

Thread safety: a store may be shared by a Steward's worker threads. Its
memos are dictionaries whose entries are written whole and never mutated, so
a race costs at most a duplicate parse or fetch, never a wrong answer; the
cache files are written atomically. There is no module-level state: a store
lives on its :class:`~donjon.attestation.trust.TrustStore` (:func:`intel_store`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509

from donjon.atomicfile import write_bytes
from donjon.attestation.dcap.collateral import (
    CollateralBundle,
    Signed,
    is_bundle,
    load_crl,
    parse_bundle,
)
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.snp.chain import fingerprint
from donjon.attestation.x509util import load_certificates

if TYPE_CHECKING:
    from donjon.attestation.dcap.chain import RevocationResult
    from donjon.attestation.dcap.fetch import IntelFetcher
    from donjon.attestation.trust import TrustStore

T = TypeVar("T")
_MEMO_SIZE = 4096
_SUFFIXES = {".pem", ".der", ".crt", ".cer", ".crl"}
CACHE_SUBDIR = "intel"


@dataclass(frozen=True)
class Pool:
    """Collateral candidates from one source."""

    source: str
    signed: tuple[Signed, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    certs: tuple[x509.Certificate, ...] = ()
    #: Given for this very quote (evidence, ``--collateral``): a mismatch is an error there,
    #: where a trust directory's other platforms' collateral is simply not chosen.
    explicit: bool = False

    @classmethod
    def of_bundle(cls, bundle: CollateralBundle, source: str, *, explicit: bool) -> Pool:
        return cls(
            source=source,
            signed=(bundle.tcb_info, bundle.qe_identity),
            crls=bundle.crls,
            certs=bundle.certificates,
            explicit=explicit,
        )


def load_bundle_file(path: Path) -> CollateralBundle:
    """A QuoteCollateralV3 JSON file (``--collateral``), every failure naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MalformedEvidenceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_bundle(data, str(path))


class IntelCollateralStore:
    """Intel roots, collateral bundles and CRLs from a trust directory and a cache directory."""

    def __init__(self, trust_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self.trust_dir = trust_dir
        self.cache_dir = cache_dir
        self._local: Pool | None = None
        self._fetched: dict[str, Pool] = {}
        self._memo: dict[tuple[str, Any], Any] = {}
        #: Changes whenever a fetched or cached bundle joins the sources.
        self.generation = 0
        #: Files of the trust directory that could not be read as collateral.
        self.skipped: list[str] = []

    # --- memos (parsed or verified once per content) ------------------------------------------
    def memo_lookup(self, kind: str, key: Any, keep_alive: tuple[object, ...]) -> Any:
        """A value :meth:`memo_store` kept under ``key`` for these very objects, or None."""
        found = self._memo.get((kind, key))
        if found is not None and found[0] == keep_alive:
            return found[1]
        return None

    def memo_store(self, kind: str, key: Any, keep_alive: tuple[object, ...], value: Any) -> None:
        """Keep ``value``; ``keep_alive`` (whose ids are in ``key``) is held and compared."""
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[(kind, key)] = (keep_alive, value)

    def memo(self, kind: str, key: Any, compute: Callable[[], T]) -> T:
        """``compute()`` once per (kind, key); its exceptions are not remembered."""
        slot = (kind, key)
        found = self._memo.get(slot)
        if found is not None:
            value: T = found
            return value
        value = compute()
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[slot] = value
        return value

    def memo_window(
        self,
        kind: str,
        key: Any,
        keep_alive: tuple[object, ...],
        now: datetime,
        compute: Callable[[], RevocationResult],
    ) -> RevocationResult:
        """A time-dependent conclusion, reused while ``now`` stays inside its window.

        ``keep_alive`` (the objects whose ``id()`` is in ``key``) is held with the entry and
        compared by identity, so that a recycled id can never stand for another object.
        """
        slot = (kind, key)
        found = self._memo.get(slot)
        # Tuple equality tries identity first: the very same objects compare at once.
        if found is not None and found[0] == keep_alive and found[1].holds_at(now):
            result: RevocationResult = found[1]
            return result
        result = compute()
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[slot] = (keep_alive, result)
        return result

    # --- local sources --------------------------------------------------------------------------
    def local(self) -> Pool:
        """The trust directory and the cache, read once."""
        if self._local is None:
            signed: list[Signed] = []
            crls: list[x509.CertificateRevocationList] = []
            certs: list[x509.Certificate] = []
            if self.trust_dir is not None and self.trust_dir.is_dir():
                self._scan(self.trust_dir, signed, crls, certs)
            cache = self._cache_root()
            if cache is not None and cache.is_dir():
                self._scan(cache, signed, crls, certs)
            where = str(self.trust_dir) if self.trust_dir else "no trust directory"
            self._local = Pool(where, tuple(signed), tuple(crls), _unique(certs))
        return self._local

    def roots(self) -> tuple[x509.Certificate, ...]:
        """Every self-signed certificate the local sources hold (checked against the pin later)."""
        return tuple(c for c in self.local().certs if c.issuer == c.subject)

    def fetched(self, key: str) -> Pool | None:
        return self._fetched.get(key)

    def _scan(
        self,
        directory: Path,
        signed: list[Signed],
        crls: list[x509.CertificateRevocationList],
        certs: list[x509.Certificate],
    ) -> None:
        for path in sorted(directory.rglob("*")):
            suffix = path.suffix.lower()
            if not path.is_file() or (suffix not in _SUFFIXES and suffix != ".json"):
                continue
            try:
                data = path.read_bytes()
            except OSError:
                self.skipped.append(str(path))
                continue
            try:
                if suffix == ".json":
                    bundle = _bundle_or_none(data, str(path))
                    if bundle is not None:
                        signed += [bundle.tcb_info, bundle.qe_identity]
                        crls += bundle.crls
                        certs += bundle.certificates
                elif b"BEGIN X509 CRL" in data or suffix == ".crl":
                    crls.append(load_crl(data, str(path)))
                else:
                    try:
                        certs += load_certificates(data, what=str(path))
                    except MalformedEvidenceError:
                        crls.append(load_crl(data, str(path)))  # a DER CRL named .der
            except MalformedEvidenceError:
                self.skipped.append(str(path))

    # --- the cache and the fetcher --------------------------------------------------------------
    def _cache_root(self) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / CACHE_SUBDIR

    @staticmethod
    def cache_key(tee: str, fmspc: bytes, ca: str) -> str:
        return f"{tee.lower()}-{fmspc.hex()}-{ca}"

    def fetch(self, fetcher: IntelFetcher, tee: str, fmspc: bytes, ca: str) -> Pool:
        """One quote's bundle from PCS/PCCS, cached on disk (atomically) and in memory."""
        key = self.cache_key(tee, fmspc, ca)
        bundle = fetcher.bundle(tee, fmspc, ca)
        pool = Pool.of_bundle(bundle, fetcher.where, explicit=False)
        self._fetched[key] = pool
        self.generation += 1
        cache = self._cache_root()
        if cache is not None:
            write_bytes(cache / f"{key}.json", bundle.to_bytes(), mode=0o600)
        return pool

    def cached_pool(self, tee: str, fmspc: bytes, ca: str, now: datetime) -> Pool | None:
        """What was fetched for this platform, in memory or in the on-disk cache."""
        if not self._fetched and self.cache_dir is None:
            return None
        key = self.cache_key(tee, fmspc, ca)
        return self._fetched.get(key) or self.cached_bundle(tee, fmspc, ca, now)

    def cached_bundle(self, tee: str, fmspc: bytes, ca: str, now: datetime) -> Pool | None:
        """The cached bundle for this platform while ``now`` is before its nextUpdate."""
        cache = self._cache_root()
        if cache is None:
            return None
        path = cache / f"{self.cache_key(tee, fmspc, ca)}.json"
        if not path.is_file():
            return None
        try:
            bundle = parse_bundle(path.read_bytes(), str(path))
            expires = bundle.next_update
        except (OSError, MalformedEvidenceError):
            return None  # a damaged cache entry is refetched, never trusted
        if expires is None or now > expires:
            return None
        pool = Pool.of_bundle(bundle, f"cache {path.name}", explicit=False)
        self._fetched[path.stem] = pool
        self.generation += 1
        return pool


def _bundle_or_none(data: bytes, source: str) -> CollateralBundle | None:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not is_bundle(doc):
        return None
    return parse_bundle(data, source)


def _unique(certs: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    seen: dict[str, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(fingerprint(cert), cert)
    return tuple(seen.values())


def intel_store(trust: TrustStore) -> IntelCollateralStore:
    """The Intel collateral store that lives beside ``trust`` (its directories; built once)."""
    store = trust.companions.get("intel")
    if not isinstance(store, IntelCollateralStore):
        store = IntelCollateralStore(trust.trust_dir, trust.cache_dir)
        trust.companions["intel"] = store
    return store
