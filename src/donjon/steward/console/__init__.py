"""The Steward's web console at ``/console``: what was attested, what was refused and why,
what the policy pins, evidence checked on demand, and revocation for admin sessions.

Server-rendered HTML (Jinja2, autoescaped) with the console's own CSS and
JavaScript; it loads nothing from another host. See docs/console.md.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from donjon.steward.console.mode import MODES, ConsoleMode, announce, parse_mode, resolve_mode
from donjon.steward.console.web import BodyReader, Console, ConsoleConfig
from donjon.steward.secrets_store import SecretStore
from donjon.steward.service import Steward

__all__ = [
    "MODES",
    "ConsoleConfig",
    "ConsoleMode",
    "announce",
    "console_routes",
    "parse_mode",
    "resolve_mode",
]


def console_routes(
    steward: Steward,
    config: ConsoleConfig,
    *,
    read_body: BodyReader,
    secrets: SecretStore | None = None,
) -> list[BaseRoute]:
    """The console's routes, or none when it is off."""
    if config.mode == "off":
        return []
    return Console(steward, config, read_body, secrets).routes()
