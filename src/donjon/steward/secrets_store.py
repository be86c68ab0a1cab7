"""Stored secrets and their release history: two plain SQLAlchemy tables.

``secret_versions`` holds one row per version of a secret: its envelope-encrypted
value (``secrets_vault``), the release policy as JSON, and when it was withdrawn
(a withdrawn version's ciphertext and wrapped key are erased; the row stays for
the audit). ``secret_releases`` records every release and every refusal: who
(certificate serial and key), which version, when, and which check failed; never
a value. They share the audit store's database (and engine) but not its schema
version: a migration for them can be written on their own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from donjon.steward.errors import MalformedRequest, NotFound, StewardError, StoreError
from donjon.steward.secrets_vault import Sealed
from donjon.steward.store import used_nonces

_metadata = sa.MetaData()
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

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


class SecretExists(StewardError):
    status = 409
    code = "secret-exists"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise MalformedRequest(
            f"{name[:80]!r} is not a secret name (letters, digits, . _ -; up to 128)",
            check="secret.name",
        )
    return name


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class VersionRow:
    name: str
    version: int
    created_at: datetime
    size: int
    policy: dict[str, Any]
    withdrawn_at: datetime | None
    sealed: Sealed

    def meta(self) -> dict[str, Any]:
        """Everything but the value: for listings, the console and the CLI."""
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "size": self.size,
            "kek_id": self.sealed.kek_id,
            "withdrawn": self.withdrawn_at is not None,
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
            "policy": self.policy,
        }


@dataclass(frozen=True)
class ReleaseRecord:
    at: datetime
    name: str
    version: int | None
    outcome: str
    check: str
    status: int
    serial: str | None
    subject_key_sha256: str | None
    platform: str | None
    workload_sha256: str | None
    package_sha256: str | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


def _row(row: sa.Row[Any]) -> VersionRow:
    m = row._mapping
    created = _aware(m["created_at"])
    assert created is not None
    return VersionRow(
        name=m["name"],
        version=m["version"],
        created_at=created,
        size=m["size"],
        policy=json.loads(m["policy"]),
        withdrawn_at=_aware(m["withdrawn_at"]),
        sealed=Sealed(m["kek_id"], bytes(m["wrapped_dek"]), bytes(m["ciphertext"])),
    )


class SecretStore:
    """Secrets in the Steward's database (the audit store's engine)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        try:
            _metadata.create_all(engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot create the secrets tables: {exc}") from None

    def _tx(self) -> Any:
        return _Tx(self._engine)

    def add_version(
        self,
        name: str,
        sealed_for: Any,
        policy: dict[str, Any] | None,
        now: datetime,
        *,
        create: bool,
    ) -> VersionRow:
        """Store the next version; ``sealed_for(version)`` encrypts the value for it.

        ``create``: the name must be new (409 otherwise); else it must exist (404), and
        ``policy=None`` keeps the latest version's policy.
        """
        check_name(name)
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(secret_versions)
                .where(secret_versions.c.name == name)
                .order_by(secret_versions.c.version.desc())
            ).all()
            if create and rows:
                raise SecretExists(
                    f"secret {name!r} exists: rotate it to add a version", check="secret.exists"
                )
            if not create and not rows:
                raise NotFound(f"no secret named {name!r}", check="secret.unknown")
            version = rows[0]._mapping["version"] + 1 if rows else 1
            if policy is None:
                policy = json.loads(rows[0]._mapping["policy"])
            sealed: Sealed = sealed_for(version)
            conn.execute(
                secret_versions.insert().values(
                    name=name,
                    version=version,
                    created_at=_utc(now),
                    size=0 if sealed is None else len(sealed.ciphertext) - 28,
                    kek_id=sealed.kek_id,
                    wrapped_dek=sealed.wrapped_dek,
                    ciphertext=sealed.ciphertext,
                    policy=json.dumps(policy, sort_keys=True),
                )
            )
        return self.version(name, version)

    def version(self, name: str, version: int) -> VersionRow:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(secret_versions).where(
                    secret_versions.c.name == name, secret_versions.c.version == version
                )
            ).first()
        if row is None:
            raise NotFound(f"no version {version} of secret {name!r}", check="secret.unknown")
        return _row(row)

    def versions(self, name: str) -> list[VersionRow]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(secret_versions)
                .where(secret_versions.c.name == name)
                .order_by(secret_versions.c.version)
            ).all()
        if not rows:
            raise NotFound(f"no secret named {name!r}", check="secret.unknown")
        return [_row(r) for r in rows]

    def current(self, name: str) -> VersionRow | None:
        """The newest version not withdrawn, or None."""
        with self._tx() as conn:
            row = conn.execute(
                sa.select(secret_versions)
                .where(secret_versions.c.name == name, secret_versions.c.withdrawn_at.is_(None))
                .order_by(secret_versions.c.version.desc())
                .limit(1)
            ).first()
        return None if row is None else _row(row)

    def names(self) -> list[dict[str, Any]]:
        """One summary per secret: latest version, versions live, latest policy."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(secret_versions).order_by(
                    secret_versions.c.name, secret_versions.c.version
                )
            ).all()
        out: dict[str, dict[str, Any]] = {}
        for raw in rows:
            row = _row(raw)
            entry = out.setdefault(
                row.name, {"name": row.name, "versions": [], "live_versions": []}
            )
            entry["versions"].append(row.version)
            if row.withdrawn_at is None:
                entry["live_versions"].append(row.version)
            entry["latest"] = row.version
            entry["policy"] = row.policy
            entry["updated_at"] = row.created_at.isoformat()
        return list(out.values())

    def withdraw(self, name: str, version: int | None, now: datetime) -> list[int]:
        """Withdraw one version (or all): its value is erased, its row stays for the audit."""
        check_name(name)
        query = secret_versions.update().where(
            secret_versions.c.name == name, secret_versions.c.withdrawn_at.is_(None)
        )
        if version is not None:
            query = query.where(secret_versions.c.version == version)
        with self._tx() as conn:
            found = conn.execute(
                sa.select(secret_versions.c.version).where(
                    secret_versions.c.name == name,
                    secret_versions.c.withdrawn_at.is_(None),
                    *([secret_versions.c.version == version] if version is not None else []),
                )
            ).all()
            if not found:
                what = f"version {version} of " if version is not None else ""
                raise NotFound(f"no live {what}secret named {name!r}", check="secret.unknown")
            conn.execute(query.values(withdrawn_at=_utc(now), ciphertext=b"", wrapped_dek=b""))
        return sorted(r[0] for r in found)

    def live_rows(self) -> list[VersionRow]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(secret_versions).where(secret_versions.c.withdrawn_at.is_(None))
            ).all()
        return [_row(r) for r in rows]

    def replace_wrapping(self, rows: list[tuple[str, int, Sealed]]) -> None:
        """Store rewrapped data keys, all in one transaction."""
        with self._tx() as conn:
            for name, version, sealed in rows:
                conn.execute(
                    secret_versions.update()
                    .where(secret_versions.c.name == name, secret_versions.c.version == version)
                    .values(kek_id=sealed.kek_id, wrapped_dek=sealed.wrapped_dek)
                )

    def use_nonce(self, nonce_sha256: str, *, now: datetime, expires_at: datetime) -> bool:
        """Record a challenge's use in the audit store's ``used_nonces`` (the table that
        makes each challenge acceptable once, for certificates and releases alike);
        False when it was used before."""
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    used_nonces.insert().values(
                        nonce_sha256=nonce_sha256, used_at=_utc(now), expires_at=_utc(expires_at)
                    )
                )
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise StoreError(f"audit store unavailable: {exc}") from None
        return True

    def record_release(self, record: ReleaseRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                secret_releases.insert().values(
                    at=_utc(record.at),
                    name=record.name[:128],
                    version=record.version,
                    outcome=record.outcome,
                    check=record.check[:64],
                    status=record.status,
                    serial=record.serial,
                    subject_key_sha256=record.subject_key_sha256,
                    platform=(record.platform or "")[:16] or None,
                    workload_sha256=record.workload_sha256,
                    package_sha256=record.package_sha256,
                    detail=record.detail[:2000],
                )
            )

    def releases(self, name: str | None = None, *, limit: int = 100) -> list[ReleaseRecord]:
        query = sa.select(secret_releases).order_by(secret_releases.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(secret_releases.c.name == name)
        with self._tx() as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows:
            m = dict(row._mapping)
            m.pop("id")
            at = _aware(m.pop("at"))
            assert at is not None
            out.append(ReleaseRecord(at=at, **m))
        return out


class _Tx:
    def __init__(self, engine: Engine) -> None:
        self._cm = engine.begin()

    def __enter__(self) -> Connection:
        try:
            return self._cm.__enter__()
        except SQLAlchemyError as exc:
            raise StoreError(f"secret store unavailable: {exc}") from None

    def __exit__(self, *exc: Any) -> None:
        try:
            self._cm.__exit__(*exc)
        except IntegrityError as exc:
            raise StoreError(f"secret store refused the write: {exc.orig}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"secret store unavailable: {exc}") from None
