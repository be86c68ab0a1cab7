"""Secrets: stored by the admin, released to attested Keeps, every decision audited.

A Keep asks over mutual TLS with the certificate this Steward issued it. The
release runs, in order, each with its own check id (the refusal names it):

* ``mtls.client_certificate``: the TLS connection presented a client certificate;
* ``cert.issuer``: this Steward's CA signed it; ``cert.unknown``: it is in the
  audit store, byte for byte; ``cert.validity``: it is valid now;
  ``cert.revoked``: it is not revoked; ``cert.claims``: it carries the attested
  claims this Steward wrote;
* ``binding.nonce`` and ``binding.signature``: the request carries a challenge
  this Steward issued (accepted once) and a signature, by the certificate's key,
  over that nonce, the secret's name and the certificate's SHA-256. Python's
  ``ssl`` exposes no TLS exporter (RFC 9266 ``tls-exporter``), and ``tls-unique``
  is undefined for TLS 1.3, so the request is bound to the key this way;
* ``secret.unknown``: a live version exists; then the secret's release policy
  (``secrets_policy``): development, platform, TCB status, workload, package,
  measurement.

Values never appear in a log line, a metric, an error or an audit row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import ValidationError

from donjon.attestation import oids
from donjon.attestation.binding import secret_release_payload
from donjon.attestation.claims import AttestationResult, ClaimsError
from donjon.steward import challenges
from donjon.steward.ca import CertificateAuthority
from donjon.steward.errors import MalformedRequest, NotFound, StewardError
from donjon.steward.refusals import FloodBudget, bounded
from donjon.steward.secrets_policy import ReleasePolicy, evaluate
from donjon.steward.secrets_store import ReleaseRecord, SecretStore, VersionRow, check_name
from donjon.steward.secrets_vault import Kek, open_value, seal
from donjon.steward.store import AuditStore

log = logging.getLogger("donjon.steward")
Clock = Callable[[], datetime]
MAX_VALUE = 1024 * 1024


class SecretRefused(StewardError):
    """The Keep may not have this secret: the check says why."""

    status = 403
    code = "secret-refused"


def signature_algorithm(curve: ec.EllipticCurve) -> ec.ECDSA:
    return ec.ECDSA(hashes.SHA384() if curve.key_size >= 384 else hashes.SHA256())


def parse_policy(doc: Any) -> ReleasePolicy:
    try:
        return ReleasePolicy.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise MalformedRequest(
            f"policy: {where}: {message}" if where else f"policy: {message}", check="policy"
        ) from None


@dataclass(frozen=True)
class Released:
    name: str
    version: int
    value: bytes


@dataclass
class ReleaseRefusals(FloodBudget):
    """Refused releases cost their sender nothing (no certificate is needed to be refused):
    they are stored and logged within a budget, the rest summarised in one row."""

    store: SecretStore = field(kw_only=True)

    def summarise(self, detail: str, now: datetime) -> None:
        super().summarise(detail, now)
        self.store.record_release(
            ReleaseRecord(
                at=now,
                name="*",  # no secret is named so: the summary covers every name
                version=None,
                outcome="refused",
                check="flood.summary",
                status=429,
                serial=None,
                subject_key_sha256=None,
                platform=None,
                workload_sha256=None,
                package_sha256=None,
                detail=detail,
            )
        )


@dataclass
class _Who:
    serial: str | None = None
    key: str | None = None
    platform: str | None = None
    workload: str | None = None
    package: str | None = None


class SecretService:
    def __init__(
        self,
        *,
        store: SecretStore,
        kek: Kek,
        ca: CertificateAuthority,
        audit: AuditStore,
        clock: Clock,
    ) -> None:
        self.store = store
        self.kek = kek
        self.ca = ca
        self.audit = audit
        self.clock = clock
        self.refusals = ReleaseRefusals(store=store)
        self._challenge_key: bytes | None = None

    # --- admin ---------------------------------------------------------------------------

    def put(self, name: str, value: bytes, policy: ReleasePolicy, *, create: bool) -> VersionRow:
        """A new secret (``create``) or a new version of one (rotation)."""
        return self._store(name, value, policy, create=create)

    def rotate(self, name: str, value: bytes, policy: ReleasePolicy | None) -> VersionRow:
        """A new version; the policy stays the latest version's unless one is given."""
        return self._store(name, value, policy, create=False)

    def _store(
        self, name: str, value: bytes, policy: ReleasePolicy | None, *, create: bool
    ) -> VersionRow:
        check_name(name)
        if not 0 < len(value) <= MAX_VALUE:
            raise MalformedRequest(f"a secret value is 1 to {MAX_VALUE} bytes", check="secret.size")
        row = self.store.add_version(
            name,
            lambda version: seal(self.kek, name, version, value),
            None if policy is None else policy.to_json(),
            self.clock(),
            create=create,
        )
        log.info("secret %s version %d stored (%d bytes)", name, row.version, len(value))
        return row

    def withdraw(self, name: str, version: int | None) -> list[int]:
        gone = self.store.withdraw(name, version, self.clock())
        log.warning("secret %s: withdrew version(s) %s", name, ", ".join(map(str, gone)))
        return gone

    def meta(self, name: str, *, releases: int = 50) -> dict[str, Any]:
        check_name(name)
        rows = self.store.versions(name)
        return {
            "name": name,
            "versions": [row.meta() for row in rows],
            "policy": rows[-1].policy,
            "releases": [r.to_json() for r in self.store.releases(name, limit=releases)],
        }

    # --- release -------------------------------------------------------------------------

    def release(
        self,
        name: str,
        *,
        client_cert_der: bytes | None,
        nonce_hex: Any,
        signature_b64: Any,
    ) -> Released:
        who = _Who()
        version: int | None = None
        now = self.clock()
        try:
            check_name(name)
            cert, result = self._certificate(client_cert_der, now, who)
            self._binding(cert, name, nonce_hex, signature_b64, now)
            row = self.store.current(name)
            if row is None:
                raise NotFound(f"no live secret named {name!r}", check="secret.unknown")
            version = row.version
            policy = parse_policy(row.policy)
            for check in evaluate(policy, result):
                if not check.passed:
                    raise SecretRefused(f"{check.id}: {check.reason}", check=check.id)
            value = open_value(self.kek, name, row.version, row.sealed)
        except StewardError as exc:
            why = bounded(exc.check or exc.code, 64)
            if self.refusals.admit(why, now):
                self._audit(name, version, "refused", why, exc.status, who, bounded(exc.message))
                # The name is the request's path: escaped and cut, like every quote of one.
                log.warning(
                    "secret %s refused to serial=%s: %s", bounded(name, 128), who.serial or "-", why
                )
            raise
        self._audit(name, version, "released", "ok", 200, who, f"version {version} released")
        log.info("secret %s version %d released to serial=%s", name, version, who.serial)
        return Released(name, row.version, value)

    def _audit(
        self,
        name: str,
        version: int | None,
        outcome: str,
        check: str,
        status: int,
        who: _Who,
        detail: str,
    ) -> None:
        self.store.record_release(
            ReleaseRecord(
                at=self.clock(),
                name=name[:128],
                version=version,
                outcome=outcome,
                check=check,
                status=status,
                serial=who.serial,
                subject_key_sha256=who.key,
                platform=who.platform,
                workload_sha256=who.workload,
                package_sha256=who.package,
                detail=detail,
            )
        )

    def _certificate(
        self, der: bytes | None, now: datetime, who: _Who
    ) -> tuple[x509.Certificate, AttestationResult]:
        if not der:
            raise SecretRefused(
                "no client certificate on this TLS connection: a Keep presents the certificate "
                "this Steward issued it",
                check="mtls.client_certificate",
            )
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise SecretRefused("the client certificate is not DER", check="cert.issuer") from None
        who.serial = format(cert.serial_number, "x")
        key_der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        who.key = hashlib.sha256(key_der).hexdigest()
        try:
            cert.verify_directly_issued_by(self.ca.certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise SecretRefused(
                "the client certificate was not issued by this Steward's CA", check="cert.issuer"
            ) from None
        try:
            record = self.audit.get(who.serial)
        except NotFound:
            record = None
        if record is None or record.certificate_der != der:
            raise SecretRefused(
                f"certificate serial {who.serial} is not in this Steward's audit store",
                check="cert.unknown",
            )
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise SecretRefused(
                f"certificate serial {who.serial} is not valid now", check="cert.validity"
            )
        if record.revoked_at is not None:
            raise SecretRefused(
                f"certificate serial {who.serial} is revoked ({record.revocation_reason})",
                check="cert.revoked",
            )
        try:
            ext = cert.extensions.get_extension_for_oid(oids.ATTESTATION_RESULT).value
            raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
            result = AttestationResult.from_der(raw)
        except (x509.ExtensionNotFound, ClaimsError):
            raise SecretRefused(
                f"certificate serial {who.serial} carries no attestation result",
                check="cert.claims",
            ) from None
        who.platform = result.platform
        if result.workload is not None:
            who.workload = result.workload.wasm_sha256.hex()
            pkg = result.workload.package_sha256
            who.package = pkg.hex() if pkg else None
        return cert, result

    def _binding(
        self, cert: x509.Certificate, name: str, nonce_hex: Any, signature_b64: Any, now: datetime
    ) -> None:
        try:
            nonce = bytes.fromhex(nonce_hex) if isinstance(nonce_hex, str) else b""
            signature = (
                base64.b64decode(signature_b64, validate=True)
                if isinstance(signature_b64, str)
                else b""
            )
        except (ValueError, binascii.Error):
            nonce, signature = b"", b""
        if not 32 <= len(nonce) <= 64 or not signature:
            raise SecretRefused(
                'the request must carry {"nonce": <hex from POST /v1/challenge>, '
                '"signature": <base64>}',
                check="binding.nonce",
            )
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise SecretRefused("the certificate's key is not an EC key", check="binding.signature")
        payload = secret_release_payload(nonce, name, cert.public_bytes(Encoding.DER))
        try:
            public.verify(signature, payload, signature_algorithm(public.curve))
        except InvalidSignature:
            raise SecretRefused(
                "the request's signature does not verify with the certificate's key",
                check="binding.signature",
            ) from None
        if self._challenge_key is None:
            self._challenge_key = self.audit.challenge_key()
        outcome, expires = challenges.check(self._challenge_key, nonce, now)
        if outcome == "ok" and expires is not None:
            used = not self.store.use_nonce(challenges.digest(nonce), now=now, expires_at=expires)
            outcome = "used" if used else "ok"
        if outcome != "ok":
            raise SecretRefused(
                f"the challenge nonce is {outcome}: ask POST /v1/challenge for a new one",
                check="binding.nonce",
            )
