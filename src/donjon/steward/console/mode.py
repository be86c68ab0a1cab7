"""Whether the web console is served, and who may change state through it.

``off``: no /console route at all. ``read-only``: audit and admin sessions read,
nobody revokes. ``on``: admin sessions may also revoke. Left unset, the console is
on when an admin or audit token exists (someone can sign in), off otherwise.
"""

from __future__ import annotations

import logging
from typing import Literal

from donjon.errors import UsageError

log = logging.getLogger("donjon.steward")

ConsoleMode = Literal["off", "read-only", "on"]
MODES: tuple[ConsoleMode, ...] = ("off", "read-only", "on")


def parse_mode(text: str) -> ConsoleMode:
    for mode in MODES:
        if text == mode:
            return mode
    raise UsageError(f"--console {text!r}: use one of {', '.join(MODES)}")


def resolve_mode(
    requested: str | None, *, admin_token: str | None, audit_token: str | None
) -> ConsoleMode:
    """The mode in force: the one asked for, or the default; a console nobody can sign in to
    is refused rather than served."""
    if requested is None:
        return "on" if (admin_token or audit_token) else "off"
    mode = parse_mode(requested)
    if mode != "off" and not (admin_token or audit_token):
        raise UsageError(
            f"--console {mode} needs a token to sign in with: pass --admin-token-file or "
            "--audit-token-file (or set $DONJON_STEWARD_ADMIN_TOKEN / $DONJON_STEWARD_AUDIT_TOKEN)"
        )
    return mode


def announce(mode: ConsoleMode, *, admin_token: str | None, audit_token: str | None) -> None:
    """Say at start what the console serves and to whom (once per process)."""
    if mode == "off":
        log.info("web console: off (--console on with an admin or audit token serves /console)")
        return
    who = " and ".join(
        name for name, token in (("admin", admin_token), ("audit", audit_token)) if token
    )
    if mode == "read-only":
        log.info("web console: read-only at /console (sign in with the %s token)", who)
    else:
        revoke = "admin sessions may revoke" if admin_token else "no admin token, so nobody revokes"
        log.info("web console: on at /console (sign in with the %s token; %s)", who, revoke)
