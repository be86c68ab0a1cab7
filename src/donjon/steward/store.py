"""The audit store: one row for every issued certificate, and one for every refusal.

SQLAlchemy Core over SQLite (WAL, ``synchronous=FULL``) by default, or
PostgreSQL by URL so that several Steward replicas share one store. The
Steward commits a certificate's row *before* it answers with the certificate,
so nothing it ever issued is missing from the audit trail.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from donjon.steward.errors import MalformedRequest, NotFound, StoreConfigError, StoreError

SCHEMA_VERSION = 1  # the steward_meta row of stores made before Alembic (0001_baseline)

_metadata = sa.MetaData()

certificates = sa.Table(
    "certificates",
    _metadata,
    sa.Column("serial", sa.String(64), primary_key=True),  # lowercase hex
    sa.Column("issued_at", sa.DateTime(), nullable=False),
    sa.Column("not_before", sa.DateTime(), nullable=False),
    sa.Column("not_after", sa.DateTime(), nullable=False),
    sa.Column("subject_key_sha256", sa.String(64), nullable=False),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("development", sa.Boolean(), nullable=False),
    sa.Column("workload_sha256", sa.String(64), nullable=True),
    sa.Column("claims", sa.Text(), nullable=False),  # JSON
    sa.Column("verdict", sa.Text(), nullable=False),  # JSON
    sa.Column("evidence_sha256", sa.String(64), nullable=False),
    sa.Column("policy_digest", sa.String(64), nullable=False),
    sa.Column("certificate_der", sa.LargeBinary(), nullable=False),
    sa.Column("revoked_at", sa.DateTime(), nullable=True),
    sa.Column("revocation_reason", sa.String(64), nullable=True),
)

rejections = sa.Table(
    "rejections",
    _metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("evidence_sha256", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
)

#: Challenge nonces that were answered: the primary key makes each acceptable once, across
#: every Steward on this store. A row outlives its nonce's expiry only until the next purge.
used_nonces = sa.Table(
    "used_nonces",
    _metadata,
    sa.Column("nonce_sha256", sa.String(64), primary_key=True),
    sa.Column("used_at", sa.DateTime(), nullable=False),
    sa.Column("expires_at", sa.DateTime(), nullable=False, index=True),
)

#: A revoked key must stay revoked: issuance asks whether a key has a revoked certificate,
#: a seek on (key, revoked_at) however many certificates the key has (0006).
_by_subject_key = sa.Index(
    "ix_certificates_subject_key_revoked",
    certificates.c.subject_key_sha256,
    certificates.c.revoked_at,
)
#: The CRL reads only revoked rows, and asks whether they changed on every fetch.
_by_revoked_at = sa.Index("ix_certificates_revoked_at", certificates.c.revoked_at)

#: Asked twice per issued certificate (before signing, after the commit): built once, as
#: building a select and its cache key anew cost more than running it.
_REVOKED_SERIAL_FOR_KEY = (
    sa.select(certificates.c.serial)
    .where(
        certificates.c.subject_key_sha256 == sa.bindparam("key"),
        certificates.c.revoked_at.is_not(None),
    )
    .order_by(certificates.c.revoked_at, certificates.c.serial)
    .limit(1)
)

#: Secrets for attested Keeps (``steward/secrets_*.py``): each version sealed under the KEK.
secret_versions = sa.Table(
    "secret_versions",
    _metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("kek_id", sa.String(16), nullable=False),
    sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
    sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
    sa.Column("policy", sa.Text(), nullable=False),  # JSON of ReleasePolicy
    sa.Column("withdrawn_at", sa.DateTime(), nullable=True),
)

secret_releases = sa.Table(
    "secret_releases",
    _metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(), nullable=False, index=True),
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.Integer(), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # released | refused
    sa.Column("check", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("serial", sa.String(64), nullable=True),
    sa.Column("subject_key_sha256", sa.String(64), nullable=True),
    sa.Column("platform", sa.String(16), nullable=True),
    sa.Column("workload_sha256", sa.String(64), nullable=True),
    sa.Column("package_sha256", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text(), nullable=False),
)

meta = sa.Table(
    "steward_meta",
    _metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

# --- the web console (steward/console/, migration 0005_console) -----------------------------
#: The overview's charts count a range of these per bucket; its counts per platform read
#: the last hour or two of them; the certificate list pages through them, newest first.
_by_issued_at = sa.Index(
    "ix_certificates_issued_at", certificates.c.issued_at, certificates.c.platform
)
#: Revoked certificates per platform, reading only the revoked rows.
_by_revoked_platform = sa.Index(
    "ix_certificates_revoked_platform", certificates.c.revoked_at, certificates.c.platform
)
#: Searching certificates by workload digest.
_by_workload = sa.Index("ix_certificates_workload", certificates.c.workload_sha256)
#: Refusals over time, and per platform in the last hour or two.
_rejections_by_at = sa.Index("ix_rejections_at", rejections.c.at, rejections.c.platform)
#: The top refusal reasons in a window: a seek per distinct reason, then a range count.
_rejections_by_reason = sa.Index("ix_rejections_reason_at", rejections.c.reason, rejections.c.at)

#: Each policy text a Steward started with, so the console can diff the last two.
policy_texts = sa.Table(
    "policy_texts",
    _metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("source", sa.String(512), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("first_seen", sa.DateTime(), nullable=False),
)


def schema_metadata() -> sa.MetaData:
    """The tables as this Donjon reads them (what the migrations must produce)."""
    return _metadata


def _utc(value: datetime) -> datetime:
    """Naive UTC for storage: SQLite has no time zones, so every row is UTC."""
    if value.tzinfo is None:
        raise ValueError("timestamps stored in the audit log must be timezone-aware")
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class CertificateRecord:
    serial: str
    issued_at: datetime
    not_before: datetime
    not_after: datetime
    subject_key_sha256: str
    platform: str
    development: bool
    workload_sha256: str | None
    claims: dict[str, Any]
    verdict: dict[str, Any]
    evidence_sha256: str
    policy_digest: str
    certificate_der: bytes = field(repr=False)
    revoked_at: datetime | None = None
    revocation_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as an API/CLI document."""
        return {
            "serial": self.serial,
            "issued_at": self.issued_at.isoformat(),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "subject_key_sha256": self.subject_key_sha256,
            "platform": self.platform,
            "development": self.development,
            "workload_sha256": self.workload_sha256,
            "claims": self.claims,
            "verdict": self.verdict,
            "evidence_sha256": self.evidence_sha256,
            "policy_digest": self.policy_digest,
            "revoked": self.revoked_at is not None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revocation_reason": self.revocation_reason,
            "certificate_der_b64": base64.b64encode(self.certificate_der).decode(),
        }


@dataclass(frozen=True)
class Rejection:
    at: datetime
    reason: str
    status: int
    platform: str
    evidence_sha256: str
    detail: str


def _select(conn: Connection, serial: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(certificates).where(certificates.c.serial == serial)).first()


def _found(row: sa.Row[Any] | None, serial: str) -> CertificateRecord:
    if row is None:
        raise NotFound(f"no certificate with serial {serial} in the audit store")
    return _row_to_record(row)


def _row_to_record(row: sa.Row[Any]) -> CertificateRecord:
    m = row._mapping
    issued_at = _aware(m["issued_at"])
    not_before = _aware(m["not_before"])
    not_after = _aware(m["not_after"])
    assert issued_at is not None and not_before is not None and not_after is not None
    return CertificateRecord(
        serial=m["serial"],
        issued_at=issued_at,
        not_before=not_before,
        not_after=not_after,
        subject_key_sha256=m["subject_key_sha256"],
        platform=m["platform"],
        development=bool(m["development"]),
        workload_sha256=m["workload_sha256"],
        claims=json.loads(m["claims"]),
        verdict=json.loads(m["verdict"]),
        evidence_sha256=m["evidence_sha256"],
        policy_digest=m["policy_digest"],
        certificate_der=bytes(m["certificate_der"]),
        revoked_at=_aware(m["revoked_at"]),
        revocation_reason=m["revocation_reason"],
    )


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3, the driver Donjon ships with."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class AuditStore:
    """Thread-safe access to the audit database (one engine, pooled connections)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> AuditStore:
        url = normalize_url(url)
        try:
            if url.startswith("sqlite"):
                engine = sa.create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 10}
                )
                sa.event.listen(engine, "connect", _on_sqlite_connect)
            else:
                engine = sa.create_engine(
                    url,
                    pool_pre_ping=True,
                    pool_size=8,
                    max_overflow=8,
                    pool_timeout=10,
                    # A database that does not answer is "unavailable" in seconds, not minutes.
                    connect_args={"connect_timeout": 5} if "+psycopg" in url else {},
                )
        except (ArgumentError, ImportError, ValueError) as exc:
            raise StoreConfigError(f"bad audit store URL {url!r}: {exc}") from None
        store = cls(engine)
        if create:
            store._create()
        return store

    def _create(self) -> None:
        """Migrate an empty store; refuse a schema other than this Donjon's head (one line)."""
        from donjon.steward import schema  # it imports this module

        try:
            schema.ensure(self._engine)
        except StoreConfigError:
            self._engine.dispose()
            raise

    @property
    def engine(self) -> Engine:
        """For schema migrations (``donjon.steward.schema``) and the console's read queries."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    @property
    def url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except StoreError:
            raise
        except IntegrityError as exc:
            raise StoreError(f"audit store refused the write: {_short(exc)}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"audit store unavailable: {_short(exc)}") from None

    def ping(self) -> None:
        """One round trip to the database (readiness); StoreError when it does not answer."""
        with self._tx() as conn:
            conn.execute(sa.text("SELECT 1"))

    def record_issued(
        self,
        records: Sequence[CertificateRecord],
        nonces: Sequence[UsedNonce] = (),
    ) -> None:
        """Commit every record, and the use of every nonce, in one transaction (all or nothing).

        A nonce used before makes the whole transaction fail with :class:`NonceAlreadyUsed`:
        nothing is recorded, so nothing may be handed out.
        """
        rows = [
            {
                "serial": r.serial,
                "issued_at": _utc(r.issued_at),
                "not_before": _utc(r.not_before),
                "not_after": _utc(r.not_after),
                "subject_key_sha256": r.subject_key_sha256,
                "platform": r.platform,
                "development": r.development,
                "workload_sha256": r.workload_sha256,
                "claims": json.dumps(r.claims, sort_keys=True),
                "verdict": json.dumps(r.verdict, sort_keys=True),
                "evidence_sha256": r.evidence_sha256,
                "policy_digest": r.policy_digest,
                "certificate_der": r.certificate_der,
            }
            for r in records
        ]
        used = [
            {
                "nonce_sha256": n.nonce_sha256,
                "used_at": _utc(n.used_at),
                "expires_at": _utc(n.expires_at),
            }
            for n in nonces
        ]
        try:
            with self._engine.begin() as conn:
                if used:
                    conn.execute(used_nonces.insert(), used)
                conn.execute(certificates.insert(), rows)
        except IntegrityError as exc:
            if used and _duplicate_nonce(exc):
                raise NonceAlreadyUsed() from None
            raise StoreError(f"audit store refused the write: {_short(exc)}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"audit store unavailable: {_short(exc)}") from None

    def record_rejection(self, rejection: Rejection) -> None:
        with self._tx() as conn:
            conn.execute(
                rejections.insert().values(
                    at=_utc(rejection.at),
                    reason=rejection.reason[:64],
                    status=rejection.status,
                    platform=rejection.platform[:16],
                    evidence_sha256=rejection.evidence_sha256[:64],
                    detail=rejection.detail[:2000],
                )
            )

    def get(self, serial: str) -> CertificateRecord:
        serial = normalize_serial(serial)
        with self._tx() as conn:
            row = _select(conn, serial)
        return _found(row, serial)

    def records(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        revoked: bool | None = None,
        platform: str | None = None,
    ) -> list[CertificateRecord]:
        query = sa.select(certificates).order_by(
            certificates.c.issued_at.desc(), certificates.c.serial
        )
        if revoked is True:
            query = query.where(certificates.c.revoked_at.is_not(None))
        elif revoked is False:
            query = query.where(certificates.c.revoked_at.is_(None))
        if platform:
            query = query.where(certificates.c.platform == platform)
        with self._tx() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).all()
        return [_row_to_record(r) for r in rows]

    def revoke(self, serial: str, *, reason: str, at: datetime) -> CertificateRecord:
        """Mark a certificate revoked; revoking twice keeps the first time and reason.

        Every other certificate for the same key is revoked with it, in a second
        transaction after the first commits: an issuance racing this one commits
        its row, then looks for a revoked sibling, so one of the two always sees
        the other (``revoked_serial_for_key``).
        """
        serial = normalize_serial(serial)
        with self._tx() as conn:
            conn.execute(
                certificates.update()
                .where(certificates.c.serial == serial, certificates.c.revoked_at.is_(None))
                .values(revoked_at=_utc(at), revocation_reason=reason)
            )
            row = _select(conn, serial)
        record = _found(row, serial)
        self.revoke_key(record.subject_key_sha256, reason=reason, at=at)
        return record

    def revoke_key(self, subject_key_sha256: str, *, reason: str, at: datetime) -> list[str]:
        """Revoke every unrevoked certificate of one key; their serials."""
        column = certificates.c.subject_key_sha256
        with self._tx() as conn:
            serials = [
                row[0]
                for row in conn.execute(
                    sa.select(certificates.c.serial).where(
                        column == subject_key_sha256, certificates.c.revoked_at.is_(None)
                    )
                )
            ]
            if serials:
                conn.execute(
                    certificates.update()
                    .where(certificates.c.serial.in_(serials), certificates.c.revoked_at.is_(None))
                    .values(revoked_at=_utc(at), revocation_reason=reason)
                )
        return serials

    def revoked_serial_for_key(self, subject_key_sha256: str) -> str | None:
        """The serial of a revoked certificate for this key, if there is one."""
        with self._tx() as conn:
            return conn.execute(_REVOKED_SERIAL_FOR_KEY, {"key": subject_key_sha256}).scalar()

    # --- challenges ----------------------------------------------------------------------

    def challenge_key(self) -> bytes:
        """The key that authenticates this store's challenges (made once, shared by replicas)."""
        return self.secret("challenge_key")

    def secret(self, name: str) -> bytes:
        """A random 32-byte key kept in steward_meta as ``name``: made once, shared by replicas
        (the challenge key; the console's session key)."""
        with self._tx() as conn:
            found = conn.execute(sa.select(meta.c.value).where(meta.c.key == name)).scalar()
            if found is None:
                # A replica may create it at the same moment: keep whichever was first.
                with contextlib.suppress(IntegrityError), conn.begin_nested():
                    conn.execute(meta.insert().values(key=name, value=secrets.token_hex(32)))
                found = conn.execute(sa.select(meta.c.value).where(meta.c.key == name)).scalar()
        return bytes.fromhex(str(found))

    def purge_used_nonces(self, *, before: datetime) -> int:
        """Forget used nonces that expired before ``before`` (they are refused as expired)."""
        with self._tx() as conn:
            gone = conn.execute(used_nonces.delete().where(used_nonces.c.expires_at < _utc(before)))
        return int(gone.rowcount or 0)

    def revocation_mark(self) -> tuple[int, datetime | None]:
        """How many certificates are revoked, and the latest revocation: a CRL built when
        this was the same lists the same serials (revocations are never undone)."""
        with self._tx() as conn:
            count, latest = conn.execute(
                sa.select(sa.func.count(), sa.func.max(certificates.c.revoked_at)).where(
                    certificates.c.revoked_at.is_not(None)
                )
            ).one()
        return int(count or 0), _aware(latest)

    def revoked(self) -> list[tuple[str, datetime, str]]:
        """(serial, revoked_at, reason) of every revoked certificate, for the CRL."""
        query = (
            sa.select(
                certificates.c.serial,
                certificates.c.revoked_at,
                certificates.c.revocation_reason,
            )
            .where(certificates.c.revoked_at.is_not(None))
            .order_by(certificates.c.serial)
        )
        with self._tx() as conn:
            rows = conn.execute(query).all()
        out: list[tuple[str, datetime, str]] = []
        for serial, at, reason in rows:
            when = _aware(at)
            assert when is not None
            out.append((serial, when, reason or "unspecified"))
        return out

    def counts(self) -> dict[str, int]:
        with self._tx() as conn:
            issued = conn.execute(sa.select(sa.func.count()).select_from(certificates)).scalar()
            revoked = conn.execute(
                sa.select(sa.func.count())
                .select_from(certificates)
                .where(certificates.c.revoked_at.is_not(None))
            ).scalar()
            refused = conn.execute(sa.select(sa.func.count()).select_from(rejections)).scalar()
        return {
            "issued": int(issued or 0),
            "revoked": int(revoked or 0),
            "rejected": int(refused or 0),
        }

    def rejections(self, *, limit: int = 100) -> list[Rejection]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(rejections).order_by(rejections.c.id.desc()).limit(limit)
            ).all()
        out = []
        for row in rows:
            m = row._mapping
            at = _aware(m["at"])
            assert at is not None
            out.append(
                Rejection(
                    at=at,
                    reason=m["reason"],
                    status=m["status"],
                    platform=m["platform"],
                    evidence_sha256=m["evidence_sha256"],
                    detail=m["detail"],
                )
            )
        return out


@dataclass(frozen=True)
class UsedNonce:
    nonce_sha256: str
    used_at: datetime
    expires_at: datetime


class NonceAlreadyUsed(Exception):
    """A nonce in this issuance was used before (by this Steward or a replica)."""


def _duplicate_nonce(exc: IntegrityError) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "used_nonces" in text or "nonce_sha256" in text


def normalize_serial(serial: str) -> str:
    """Serials are stored as lowercase hex without ``0x`` or colons."""
    text = serial.strip().lower().replace(":", "")
    text = text.removeprefix("0x")
    try:
        value = int(text, 16)
    except ValueError:
        raise MalformedRequest(
            f"{serial!r} is not a hexadecimal certificate serial", check="serial"
        ) from None
    return format(value, "x")


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__
