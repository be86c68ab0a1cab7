"""Console sessions and modes: what a cookie proves, how long, and who gets a console at all."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from donjon.errors import UsageError
from donjon.steward.console import announce, resolve_mode
from donjon.steward.console.session import ABSOLUTE, IDLE, SessionKeys, match_token

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADMIN = "admin-token-0123456789"
AUDIT = "audit-token-0123456789"
SECRET = bytes(range(32))


def keys(admin: str | None = ADMIN, audit: str | None = AUDIT) -> SessionKeys:
    return SessionKeys(SECRET, {"admin": admin, "audit": audit})


def test_a_session_reads_back_with_its_role_until_it_idles_out() -> None:
    value, session = keys().issue("audit", T0)
    read = keys().read(value, T0 + timedelta(minutes=5))
    assert read == session and read is not None and read.role == "audit" and not read.is_admin
    assert keys().read(value, T0 + IDLE) is None  # idle for 30 minutes: gone
    assert keys().read(value, T0 - timedelta(seconds=1)) is None  # not yet signed in


def test_renewal_moves_the_idle_deadline_but_never_past_the_absolute_limit() -> None:
    _, session = keys().issue("admin", T0)
    later = T0 + timedelta(minutes=25)
    renewed = keys().renew(session, later)
    read = keys().read(renewed, later + timedelta(minutes=20))
    assert read is not None and read.sid == session.sid and read.signed_in == session.signed_in
    near_end = T0 + ABSOLUTE - timedelta(minutes=5)
    last = keys().renew(session, near_end)
    assert keys().read(last, near_end + timedelta(minutes=4)) is not None
    assert keys().read(last, T0 + ABSOLUTE) is None  # 12 hours after signing in, whatever


@pytest.mark.parametrize(
    "edit",
    [
        lambda v: v.replace("v1.audit.", "v1.admin."),  # promote itself
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # another MAC
        lambda v: ".".join(
            p if i != 3 else str(int(p) + 3600) for i, p in enumerate(v.split("."))
        ),  # longer life
        lambda v: v + ".extra",
        lambda v: "",
        lambda v: "v1.audit.x.y.z.w",
    ],
    ids=["role", "mac", "expiry", "trailing", "empty", "garbage"],
)
def test_an_edited_cookie_is_no_session(edit: object) -> None:
    value, _ = keys().issue("audit", T0)
    assert callable(edit)
    assert keys().read(edit(value), T0 + timedelta(minutes=1)) is None


def test_another_store_secret_or_a_rotated_token_ends_every_session() -> None:
    value, _ = keys().issue("admin", T0)
    now = T0 + timedelta(minutes=1)
    assert SessionKeys(bytes(32), {"admin": ADMIN}).read(value, now) is None
    assert keys(admin="admin-token-rotated-0000").read(value, now) is None
    assert keys(admin=None).read(value, now) is None  # the admin token was removed
    assert keys(audit="audit-token-rotated-0000").read(value, now) is not None  # not its token


def test_csrf_tokens_are_bound_to_their_session() -> None:
    k = keys()
    _, one = k.issue("admin", T0)
    _, two = k.issue("admin", T0)
    assert k.check_csrf(one, k.csrf(one))
    assert not k.check_csrf(one, k.csrf(two))
    assert not k.check_csrf(one, None) and not k.check_csrf(one, "")


def test_tokens_match_their_role_only() -> None:
    tokens = {"admin": ADMIN, "audit": AUDIT}
    assert match_token(ADMIN, tokens) == "admin"
    assert match_token(f"  {AUDIT}\n", tokens) == "audit"
    assert match_token("admin-token-012345678", tokens) is None
    assert match_token("", tokens) is None
    assert match_token(ADMIN, {"admin": None, "audit": AUDIT}) is None


def test_no_session_for_a_role_without_a_token() -> None:
    with pytest.raises(ValueError, match="no admin token"):
        keys(admin=None).issue("admin", T0)


def test_the_default_mode_follows_the_tokens_and_on_needs_one() -> None:
    assert resolve_mode(None, admin_token=ADMIN, audit_token=None) == "on"
    assert resolve_mode(None, admin_token=None, audit_token=AUDIT) == "on"
    assert resolve_mode(None, admin_token=None, audit_token=None) == "off"
    assert resolve_mode("read-only", admin_token=ADMIN, audit_token=None) == "read-only"
    assert resolve_mode("off", admin_token=ADMIN, audit_token=AUDIT) == "off"
    with pytest.raises(UsageError, match="--console on needs a token"):
        resolve_mode("on", admin_token=None, audit_token=None)
    with pytest.raises(UsageError, match="use one of off, read-only, on"):
        resolve_mode("maybe", admin_token=ADMIN, audit_token=None)


def test_the_mode_is_said_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="donjon.steward"):
        announce("on", admin_token=None, audit_token=AUDIT)
        announce("read-only", admin_token=ADMIN, audit_token=None)
        announce("off", admin_token=None, audit_token=None)
    lines = [r.getMessage() for r in caplog.records]
    assert "no admin token, so nobody revokes" in lines[0] and "audit token" in lines[0]
    assert lines[1].startswith("web console: read-only at /console")
    assert lines[2].startswith("web console: off")
