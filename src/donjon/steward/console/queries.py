"""The console's searches of the audit store, and the policy history: SQLAlchemy Core over
the store's own tables (the overview's counts are in ``overview.py``).

Nothing here loads a certificate's DER or verdict; the list pages read a page of
rows in ``issued_at`` (or id) order, using the indexes of migration ``0005_console``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from donjon.steward.errors import StoreError
from donjon.steward.store import Rejection, certificates, policy_texts, rejections

T = TypeVar("T")
PAGE_SIZE = 50


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; a database error is the Steward's StoreError (503), one line."""
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        text = str(getattr(exc, "orig", None) or exc).splitlines()
        raise StoreError(f"audit store unavailable: {(text[0] if text else '')[:300]}") from None


def naive(value: datetime) -> datetime:
    """The store's timestamps are naive UTC."""
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


# --- searching -----------------------------------------------------------------------------


class SearchError(ValueError):
    """A search the console cannot run; the message says what it takes."""


#: Qualifiers of the certificate search box, and what each matches.
FIELDS = ("serial", "workload", "package", "measurement", "evidence", "key")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    page: int
    has_next: bool


def parse_search(text: str) -> tuple[str | None, str]:
    """``[field:]hex`` -> (field or None for any, lowercase hex)."""
    text = text.strip().lower()
    field: str | None = None
    if ":" in text:
        name, _, rest = text.partition(":")
        if name in FIELDS:
            field, text = name, rest.strip()
        elif name != "sha256":
            raise SearchError(f"unknown search field {name[:20]!r}: use one of {', '.join(FIELDS)}")
    text = text.removeprefix("sha256:").removeprefix("0x").replace(":", "")
    if not text or len(text) > 128 or not _HEX.fullmatch(text):
        raise SearchError(
            "search by a serial or a hex digest (workload, package, measurement, evidence, "
            "key), optionally as field:hex, e.g. workload:4f2a..."
        )
    return field, text


def _day(value: date | None, *, end: bool = False) -> datetime | None:
    if value is None:
        return None
    return datetime.combine(value + timedelta(days=1) if end else value, time())


@dataclass(frozen=True)
class CertQuery:
    text: str = ""
    platform: str = ""
    status: str = ""  # "" | active | revoked | expired
    since: date | None = None
    until: date | None = None  # inclusive
    page: int = 0


@dataclass(frozen=True)
class CertRow:
    serial: str
    issued_at: datetime
    not_after: datetime
    platform: str
    development: bool
    workload_sha256: str | None
    package_name: str | None
    tcb_status: str | None
    revoked_at: datetime | None
    revocation_reason: str | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.not_after <= now else "active"


def _claims_match(name: str, value: str) -> Any:
    # Claims are stored as json.dumps(..., sort_keys=True): '"name": "hex"' is exact.
    return certificates.c.claims.contains(f'"{name}": "{value}"', autoescape=True)


def _text_filter(field: str | None, value: str) -> Any:
    c = certificates.c
    by = {
        "serial": c.serial.startswith(value, autoescape=True),
        "workload": c.workload_sha256 == value,
        "package": _claims_match("package_sha256", value),
        "measurement": _claims_match("measurement", value),
        "evidence": c.evidence_sha256 == value,
        "key": c.subject_key_sha256 == value,
    }
    if field is not None:
        return by[field]
    return sa.or_(*by.values())


def search_certificates(engine: Engine, query: CertQuery, now: datetime) -> Page[CertRow]:
    c = certificates.c
    select = sa.select(
        c.serial,
        c.issued_at,
        c.not_after,
        c.platform,
        c.development,
        c.workload_sha256,
        c.claims,
        c.revoked_at,
        c.revocation_reason,
    )
    if query.text.strip():
        select = select.where(_text_filter(*parse_search(query.text)))
    if query.platform:
        select = select.where(c.platform == query.platform)
    if query.status == "revoked":
        select = select.where(c.revoked_at.is_not(None))
    elif query.status == "active":
        select = select.where(c.revoked_at.is_(None), c.not_after > naive(now))
    elif query.status == "expired":
        select = select.where(c.revoked_at.is_(None), c.not_after <= naive(now))
    if (since := _day(query.since)) is not None:
        select = select.where(c.issued_at >= since)
    if (until := _day(query.until, end=True)) is not None:
        select = select.where(c.issued_at < until)
    select = (
        select.order_by(c.issued_at.desc(), c.serial)
        .limit(PAGE_SIZE + 1)
        .offset(query.page * PAGE_SIZE)
    )
    with read(engine) as conn:
        rows = conn.execute(select).all()
    out = []
    for row in rows[:PAGE_SIZE]:
        m = row._mapping
        claims = _json(m["claims"])
        found = claims.get("workload")
        workload: dict[str, Any] = found if isinstance(found, dict) else {}
        issued_at, not_after = _aware(m["issued_at"]), _aware(m["not_after"])
        assert issued_at is not None and not_after is not None
        out.append(
            CertRow(
                serial=m["serial"],
                issued_at=issued_at,
                not_after=not_after,
                platform=m["platform"],
                development=bool(m["development"]),
                workload_sha256=m["workload_sha256"],
                package_name=_text(workload.get("package_name")),
                tcb_status=_text(claims.get("tcb_status")),
                revoked_at=_aware(m["revoked_at"]),
                revocation_reason=m["revocation_reason"],
            )
        )
    return Page(out, query.page, len(rows) > PAGE_SIZE)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class RefusalQuery:
    platform: str = ""
    reason: str = ""
    evidence: str = ""
    since: date | None = None
    until: date | None = None
    page: int = 0


def search_refusals(engine: Engine, query: RefusalQuery) -> Page[Rejection]:
    r = rejections.c
    select = sa.select(rejections)
    if query.platform:
        select = select.where(r.platform == query.platform)
    if query.reason:
        select = select.where(r.reason.startswith(query.reason, autoescape=True))
    if query.evidence:
        _, value = parse_search(query.evidence)
        select = select.where(r.evidence_sha256.startswith(value, autoescape=True))
    if (since := _day(query.since)) is not None:
        select = select.where(r.at >= since)
    if (until := _day(query.until, end=True)) is not None:
        select = select.where(r.at < until)
    select = select.order_by(r.id.desc()).limit(PAGE_SIZE + 1).offset(query.page * PAGE_SIZE)
    with read(engine) as conn:
        rows = conn.execute(select).all()
    out = []
    for row in rows[:PAGE_SIZE]:
        m = row._mapping
        at = _aware(m["at"])
        assert at is not None
        out.append(
            Rejection(
                at=at,
                reason=m["reason"],
                status=int(m["status"]),
                platform=m["platform"],
                evidence_sha256=m["evidence_sha256"],
                detail=m["detail"],
            )
        )
    return Page(out, query.page, len(rows) > PAGE_SIZE)


# --- policy history ------------------------------------------------------------------------

#: The longest policy text kept (a policy is a few KiB; this bounds a mistake).
MAX_POLICY_TEXT = 256 * 1024


@dataclass(frozen=True)
class PolicyText:
    id: int
    digest: str
    source: str
    text: str
    first_seen: datetime


def record_policy(engine: Engine, *, digest: str, source: str, text: str, now: datetime) -> bool:
    """Remember the policy a Steward starts with, unless it is already the newest one kept.

    Replicas starting together may both add it; the history then shows it twice in a row,
    which :func:`policy_history` skips.
    """
    try:
        with engine.begin() as conn:
            newest = conn.execute(
                sa.select(policy_texts.c.digest).order_by(policy_texts.c.id.desc()).limit(1)
            ).scalar()
            if newest == digest:
                return False
            conn.execute(
                policy_texts.insert().values(
                    digest=digest,
                    source=source[-512:],
                    text=text[:MAX_POLICY_TEXT],
                    first_seen=naive(now),
                )
            )
    except SQLAlchemyError as exc:
        text_ = str(getattr(exc, "orig", None) or exc).splitlines()
        raise StoreError(f"audit store unavailable: {(text_[0] if text_ else '')[:300]}") from None
    return True


def _policy_row(row: sa.Row[Any] | None) -> PolicyText | None:
    if row is None:
        return None
    m = row._mapping
    first = _aware(m["first_seen"])
    assert first is not None
    return PolicyText(int(m["id"]), m["digest"], m["source"], m["text"], first)


def policy_history(engine: Engine, digest: str) -> tuple[PolicyText | None, PolicyText | None]:
    """(the newest text kept of the policy in force, the policy kept before it that differs)."""
    p = policy_texts.c
    with read(engine) as conn:
        current = _policy_row(
            conn.execute(
                sa.select(policy_texts).where(p.digest == digest).order_by(p.id.desc()).limit(1)
            ).first()
        )
        if current is None:
            return None, None
        previous = _policy_row(
            conn.execute(
                sa.select(policy_texts)
                .where(p.id < current.id, p.digest != digest)
                .order_by(p.id.desc())
                .limit(1)
            ).first()
        )
    return current, previous
