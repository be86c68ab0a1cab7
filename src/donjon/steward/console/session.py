"""Console sessions: a signed, expiring cookie that any worker or replica can check.

Nothing is kept in a process: the cookie carries the role, when the person
signed in, when the session expires and a random session id, authenticated by
HMAC-SHA-256. The key is derived from a secret in the audit store's
``steward_meta`` (made once, shared by every worker and replica) *and* from
the token the person signed in with, so rotating the admin token ends every
admin session at once. A CSRF token is an HMAC of the session id: bound to
the session, never stored.

A session lives :data:`IDLE` after the last page it served (each page renews
it) and never longer than :data:`ABSOLUTE` after signing in. Signing out
clears the cookie in that browser; a copied cookie stays valid until it
expires (there is no server-side list to strike it from).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Role = Literal["admin", "audit"]
ROLES: tuple[Role, ...] = ("admin", "audit")

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)

COOKIE = "donjon_console"
#: Over HTTPS the cookie is named with the ``__Host-`` prefix: the browser then refuses it
#: unless it is Secure, for this host only and for every path (no Domain, Path=/).
SECURE_COOKIE = "__Host-" + COOKIE

_VERSION = "v1"
_FORMAT = re.compile(
    r"v1\.(admin|audit)\.(\d{1,12})\.(\d{1,12})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})"
)


@dataclass(frozen=True)
class Session:
    role: Role
    signed_in: int  # Unix seconds
    expires: int  # Unix seconds
    sid: str  # 32 hex digits

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def match_token(offered: str, tokens: Mapping[Role, str | None]) -> Role | None:
    """The role whose token was offered, compared in constant time against every token."""
    given = offered.strip().encode()
    found: Role | None = None
    for role in ROLES:  # no early exit: the time does not say which token matched
        token = tokens.get(role)
        if token and hmac.compare_digest(given, token.encode()) and found is None:
            found = role
    return found


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens under one store secret."""

    def __init__(self, secret: bytes, tokens: Mapping[Role, str | None]) -> None:
        self._keys: dict[Role, bytes] = {}
        for role in ROLES:
            token = tokens.get(role)
            if token:
                fingerprint = hashlib.sha256(token.encode()).digest()
                label = f"donjon-console/session/{role}/".encode()
                self._keys[role] = hmac.new(secret, label + fingerprint, hashlib.sha256).digest()

    def _mac(self, role: Role, text: str) -> str:
        return _b64(hmac.new(self._keys[role], text.encode(), hashlib.sha256).digest())

    def _seal(self, session: Session) -> str:
        body = f"{_VERSION}.{session.role}.{session.signed_in}.{session.expires}.{session.sid}"
        return f"{body}.{self._mac(session.role, body.replace('.', '|'))}"

    def issue(self, role: Role, now: datetime) -> tuple[str, Session]:
        """A new session for ``role`` (whose token was just checked) and its cookie value."""
        if role not in self._keys:
            raise ValueError(f"no {role} token: no {role} session")
        at = int(now.timestamp())
        session = Session(role, at, at + int(IDLE.total_seconds()), secrets.token_hex(16))
        return self._seal(session), session

    def renew(self, session: Session, now: datetime) -> str:
        """The same session, its idle deadline moved on (never past the absolute limit)."""
        limit = session.signed_in + int(ABSOLUTE.total_seconds())
        expires = min(int(now.timestamp()) + int(IDLE.total_seconds()), limit)
        return self._seal(Session(session.role, session.signed_in, expires, session.sid))

    def read(self, value: str | None, now: datetime) -> Session | None:
        """The session in a cookie value, or None: malformed, forged, expired or of a role
        whose token is gone or changed."""
        if not value:
            return None
        match = _FORMAT.fullmatch(value)
        if match is None:
            return None
        role_text, signed_text, expires_text, sid, mac = match.groups()
        role: Role = "admin" if role_text == "admin" else "audit"
        if role not in self._keys:
            return None
        body = value.rsplit(".", 1)[0]
        if not hmac.compare_digest(mac, self._mac(role, body.replace(".", "|"))):
            return None
        signed_in, expires = int(signed_text), int(expires_text)
        at = now.timestamp()
        if not signed_in <= at < expires or expires > signed_in + ABSOLUTE.total_seconds():
            return None
        return Session(role, signed_in, expires, sid)

    def csrf(self, session: Session) -> str:
        """The CSRF token of every state-changing form of this session."""
        return self._mac(session.role, f"csrf|{session.sid}|{session.signed_in}")

    def check_csrf(self, session: Session, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(str(offered), self.csrf(session))
