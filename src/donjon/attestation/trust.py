"""Where vendor roots, intermediates, VCEKs and CRLs come from, and the chain cache.

* A **trust directory** supplied by the operator: PEM/DER certificates and
  CRLs in any file layout. Roots are accepted only with a pinned fingerprint.
* An on-disk **cache** for VCEKs, certificate chains and CRLs fetched from AMD
  KDS (written atomically), used only when a fetcher is configured.
* A **chain cache** in memory: a verified chain stays verified while the
  evaluation time is inside the window its certificates and CRL allow.

One store is shared by every thread of a Steward: its caches and memos are
guarded by one lock held only for dictionary work (never while verifying or
parsing), and fetches from a collateral service take turns behind another, so
two threads that miss the same VCEK or CRL do not both fetch it.

``TrustStore.offline(dir)`` never touches the network: everything must be in
the directory or in the evidence.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar, cast

from cryptography import x509
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ

from donjon.atomicfile import write_bytes
from donjon.attestation.der import DECODE_ERRORS
from donjon.attestation.errors import (
    AttestationError,
    CollateralMissingError,
    FingerprintMismatchError,
    MalformedEvidenceError,
)
from donjon.attestation.kds import CollateralFetcher
from donjon.attestation.roots import AMD_ARK_SHA256
from donjon.attestation.snp.chain import ChainResult, crl_fingerprint, fingerprint, is_current
from donjon.attestation.snp.product import Product
from donjon.attestation.snp.report import TcbVersion
from donjon.attestation.snp.vcek import EndorsementKeyInfo, endorsement_key_info
from donjon.attestation.x509util import (
    X509_LOAD_ERRORS,
    load_certificate,
    load_certificates,
    quiet_serials,
    touch_crl,
)

_SUFFIXES = {".pem", ".der", ".crt", ".cer", ".pkipath", ".crl"}
_CHAIN_CACHE_SIZE = 4096
_MEMO_SIZE = 8192
_T = TypeVar("_T")


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def product_of_name(common_name: str) -> Product | None:
    """``ARK-Milan``, ``SEV-Milan``, ``SEV-VLEK-Genoa`` -> the product line."""
    tail = common_name.rsplit("-", 1)[-1]
    for product in Product:
        if product.value == tail:
            return product
    return None


def parse_cert_bundle(data: bytes, what: str) -> list[x509.Certificate]:
    """PEM bundle, a single DER certificate, or a DER PkiPath (SEQUENCE OF Certificate)."""
    if b"-----BEGIN" in data:
        return load_certificates(data, what=what)
    try:
        return [load_certificate(data, what=what)]
    except MalformedEvidenceError:
        pass
    try:
        seq, rest = decoder.decode(data, asn1Spec=univ.SequenceOf(componentType=univ.Any()))
    except DECODE_ERRORS as exc:
        raise MalformedEvidenceError(f"{what}: neither a certificate nor a PkiPath") from exc
    if rest:
        raise MalformedEvidenceError(f"{what}: trailing bytes after the PkiPath")
    return [load_certificate(bytes(encoder.encode(item)), what=what) for item in seq]


@dataclass
class _Loaded:
    arks: dict[Product, x509.Certificate] = field(default_factory=dict)
    refused: dict[Product, str] = field(default_factory=dict)
    intermediates: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    #: Every self-signed certificate, by SHA-256 fingerprint (other vendors' pinned roots).
    self_signed: dict[str, x509.Certificate] = field(default_factory=dict)

    def add_cert(self, cert: x509.Certificate, source: str) -> None:
        if cert.issuer == cert.subject:
            self.self_signed.setdefault(fingerprint(cert), cert)
        cn = _common_name(cert.subject)
        product = product_of_name(cn)
        if cert.issuer == cert.subject and cn.startswith("ARK-") and product is not None:
            actual = fingerprint(cert)
            if actual == AMD_ARK_SHA256[product]:
                self.arks[product] = cert
            else:
                self.refused[product] = (
                    f"{source}: {cn} has fingerprint {actual[:16]}..., not the pinned "
                    f"{AMD_ARK_SHA256[product][:16]}..."
                )
        elif (
            cn.startswith("SEV-")
            and _common_name(cert.issuer).startswith("ARK-")
            and all(fingerprint(cert) != fingerprint(c) for c in self.intermediates)
        ):
            self.intermediates.append(cert)

    def add_crl(self, crl: x509.CertificateRevocationList) -> None:
        self.crls.append(crl)


class TrustStore:
    """Vendor roots and collateral for SNP verification; safe for concurrent use."""

    def __init__(
        self,
        trust_dir: Path | None = None,
        *,
        cache_dir: Path | None = None,
        fetcher: CollateralFetcher | None = None,
        certificates: Iterable[x509.Certificate] = (),
        crls: Iterable[x509.CertificateRevocationList] = (),
    ) -> None:
        self.trust_dir = trust_dir
        self.cache_dir = cache_dir
        self.fetcher = fetcher
        self._loaded = _Loaded()
        self._lock = threading.RLock()  # caches, memos and _loaded
        self._fetch_lock = threading.Lock()  # one fetch at a time (held across network I/O)
        self._chains: OrderedDict[tuple[str, ...], ChainResult] = OrderedDict()
        # Per-object memos (identity-checked, so a recycled id() never aliases).
        self._fps: dict[int, tuple[object, str]] = {}
        self._key_infos: OrderedDict[str, EndorsementKeyInfo] = OrderedDict()
        self._parsed: OrderedDict[tuple[str, ...], object] = OrderedDict()
        self._by_name: dict[tuple[str, str], list[x509.Certificate]] = {}
        self._crls_by_issuer: dict[str, list[x509.CertificateRevocationList]] = {}
        #: Files of the trust directory (or cache) that are neither certificates nor CRLs.
        self.skipped: list[Path] = []
        # Why the last CRL fetch failed, so that "no current CRL" can say so.
        self._crl_fetch_errors: dict[tuple[Product, str], str] = {}
        #: Other vendors' collateral stores, built on first use beside this one
        #: (``dcap/store.py``: ``intel_store(trust)``).
        self.companions: dict[str, object] = {}
        if trust_dir is not None:
            self._scan(trust_dir)
        if cache_dir is not None and (cache_dir / "amd").is_dir():
            self._scan(cache_dir / "amd")
        for cert in certificates:
            self._loaded.add_cert(cert, "<given>")
        for crl in crls:
            self._loaded.add_crl(crl)

    @classmethod
    def offline(cls, trust_dir: Path) -> TrustStore:
        if not trust_dir.is_dir():
            raise CollateralMissingError(f"trust directory {trust_dir} does not exist")
        return cls(trust_dir)

    # --- loading -----------------------------------------------------------------------
    def _scan(self, directory: Path) -> None:
        for path in sorted(directory.rglob("*")):
            if path.suffix.lower() not in _SUFFIXES or not path.is_file():
                continue
            data = path.read_bytes()
            try:
                certs = parse_cert_bundle(data, str(path))
            except MalformedEvidenceError:
                certs = []
            if certs:
                for cert in certs:
                    self._loaded.add_cert(cert, str(path))
                continue
            crl = _load_crl(data)
            if crl is not None:
                self._loaded.add_crl(crl)
            else:
                self.skipped.append(path)

    # --- queries -----------------------------------------------------------------------
    def ark(self, product: Product) -> x509.Certificate:
        with self._lock:
            cert = self._loaded.arks.get(product)
        if cert is None and self.fetcher is not None:
            with self._fetch_lock:
                with self._lock:
                    cert = self._loaded.arks.get(product)
                if cert is None:
                    self._fetch_chain(product, "VCEK")
            with self._lock:
                cert = self._loaded.arks.get(product)
        if cert is not None:
            return cert
        with self._lock:
            refused = self._loaded.refused.get(product)
        if refused is not None:
            raise FingerprintMismatchError(refused)
        where = f" in {self.trust_dir}" if self.trust_dir else ""
        raise CollateralMissingError(f"no trusted ARK-{product.value} certificate{where}")

    def pinned_root(self, sha256: str) -> x509.Certificate | None:
        """The trust directory's self-signed certificate with this fingerprint, if any."""
        return self._loaded.self_signed.get(sha256)

    def intermediates(self, product: Product, kind: str) -> list[x509.Certificate]:
        prefix = "SEV-VLEK-" if kind == "VLEK" else "SEV-"
        wanted = f"{prefix}{product.value}"
        found = self._named(wanted)
        if not found and self.fetcher is not None:
            with self._fetch_lock:
                if not self._named(wanted):
                    self._fetch_chain(product, kind)
            found = self._named(wanted)
        return found

    def _named(self, common_name: str) -> list[x509.Certificate]:
        key = ("subject", common_name)
        with self._lock:
            if key not in self._by_name:
                self._by_name[key] = [
                    c for c in self._loaded.intermediates if _common_name(c.subject) == common_name
                ]
            return list(self._by_name[key])

    def crls(
        self, product: Product, kind: str, now: datetime
    ) -> list[x509.CertificateRevocationList]:
        """CRLs issued by this product's ARK; fetched when none is current and a fetcher exists."""
        found = self._crls_of(f"ARK-{product.value}")
        if any(is_current(c, now) for c in found) or self.fetcher is None:
            return found
        with self._fetch_lock:
            found = self._crls_of(f"ARK-{product.value}")  # another thread may have fetched it
            if any(is_current(c, now) for c in found):
                return found
            try:
                data = self.fetcher.crl(product, kind)
            except AttestationError as exc:
                with self._lock:
                    self._crl_fetch_errors[(product, kind)] = exc.message
                return found
            crl = _load_crl(data)
            with self._lock:
                if crl is None:
                    self._crl_fetch_errors[(product, kind)] = "AMD KDS answered with no valid CRL"
                    return found
                self._crl_fetch_errors.pop((product, kind), None)
                self._loaded.add_crl(crl)
                self._crls_by_issuer.clear()
            self._cache_write(f"{product.value}_{kind}.crl", data)
        return [*found, crl]

    def _crls_of(self, issuer: str) -> list[x509.CertificateRevocationList]:
        with self._lock:
            if issuer not in self._crls_by_issuer:
                self._crls_by_issuer[issuer] = [
                    c for c in self._loaded.crls if _common_name(c.issuer) == issuer
                ]
            return list(self._crls_by_issuer[issuer])

    def crl_fetch_error(self, product: Product, kind: str) -> str | None:
        """Why the last attempt to fetch this ARK's CRL failed (None: it did not, or none)."""
        with self._lock:
            return self._crl_fetch_errors.get((product, kind))

    def endorsement_key(
        self, product: Product, chip_id: bytes, tcb: TcbVersion
    ) -> x509.Certificate | None:
        """A cached or fetched VCEK for this chip at this TCB, or None."""
        name = f"vcek_{product.value}_{chip_id[: product.hwid_size].hex()}_{tcb.raw:016x}.der"
        if self.cache_dir is not None:
            path = self.cache_dir / "vcek" / name
            if path.is_file():
                return load_certificate(path.read_bytes(), what=str(path))
        if self.fetcher is None:
            return None
        with self._fetch_lock:
            if self.cache_dir is not None and (self.cache_dir / "vcek" / name).is_file():
                path = self.cache_dir / "vcek" / name  # another thread fetched it meanwhile
                return load_certificate(path.read_bytes(), what=str(path))
            data = self.fetcher.vcek(product, chip_id, tcb)
            cert = load_certificate(data, what="VCEK from AMD KDS")
            if self.cache_dir is not None:
                write_bytes(self.cache_dir / "vcek" / name, data, mode=0o600)
        return cert

    # --- memos -------------------------------------------------------------------------
    def fingerprint_of(self, obj: x509.Certificate | x509.CertificateRevocationList) -> str:
        """SHA-256 of a certificate or CRL, memoised per object."""
        with self._lock:
            entry = self._fps.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        value = fingerprint(obj) if isinstance(obj, x509.Certificate) else crl_fingerprint(obj)
        with self._lock:
            if len(self._fps) >= _MEMO_SIZE:
                self._fps.clear()
            self._fps[id(obj)] = (obj, value)
        return value

    def key_info(self, leaf: x509.Certificate) -> EndorsementKeyInfo:
        """The AMD extensions of an endorsement key, parsed once per certificate."""
        fp = self.fingerprint_of(leaf)
        with self._lock:
            info = self._key_infos.get(fp)
        if info is None:
            info = endorsement_key_info(leaf)
            with self._lock:
                self._key_infos[fp] = info
                while len(self._key_infos) > _MEMO_SIZE:
                    self._key_infos.popitem(last=False)
        return info

    def parsed(self, key: tuple[str, ...], build: Callable[[], _T]) -> _T:
        """``build()``, memoised under ``key``: only for pure parses of immutable evidence
        (a VM's HCL report is the same at every attestation until it reboots)."""
        if key in self._parsed:
            self._parsed.move_to_end(key)
            return cast(_T, self._parsed[key])
        value = build()
        self._parsed[key] = value
        while len(self._parsed) > _MEMO_SIZE:
            self._parsed.popitem(last=False)
        return value

    # --- chain cache -------------------------------------------------------------------
    def cached_chain(self, key: tuple[str, ...], now: datetime) -> ChainResult | None:
        with self._lock:
            result = self._chains.get(key)
            if result is None or not result.valid_from <= now <= result.valid_until:
                return None
            self._chains.move_to_end(key)
            return result

    def remember_chain(self, key: tuple[str, ...], result: ChainResult) -> None:
        with self._lock:
            self._chains[key] = result
            while len(self._chains) > _CHAIN_CACHE_SIZE:
                self._chains.popitem(last=False)

    # --- helpers -----------------------------------------------------------------------
    def _fetch_chain(self, product: Product, kind: str) -> None:
        """Fetch and load a product's chain (the caller holds ``_fetch_lock``)."""
        assert self.fetcher is not None
        data = self.fetcher.cert_chain(product, kind)
        certs = parse_cert_bundle(data, f"AMD KDS {product.value} {kind} cert_chain")
        with self._lock:
            for cert in certs:
                self._loaded.add_cert(cert, "AMD KDS")
            self._by_name.clear()
        self._cache_write(f"{product.value}_{kind}_cert_chain.pem", data)

    def _cache_write(self, name: str, data: bytes) -> None:
        if self.cache_dir is not None:
            write_bytes(self.cache_dir / "amd" / name, data, mode=0o600)


def _load_crl(data: bytes) -> x509.CertificateRevocationList | None:
    with quiet_serials():
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                crl = x509.load_pem_x509_crl(data)
            else:
                crl = x509.load_der_x509_crl(data)
        except X509_LOAD_ERRORS:
            return None
    try:
        return touch_crl(crl, "CRL")
    except MalformedEvidenceError:
        return None
