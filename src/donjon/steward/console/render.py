"""HTML out: the Jinja2 environment (autoescape always on), its filters, and the headers
every console response carries.

Anything a Keep or a request could have written (package names, refusal
details, check reasons) goes through ``clip`` in the templates: escaped by
Jinja2, made one line (control characters shown as escapes) and cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse, Response

from donjon import __version__
from donjon.steward.refusals import bounded

#: Where the console is served.
BASE = "/console"
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: What a console page may load: only this Steward, nothing inline, no framing.
CSP = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}

#: How much of an attacker-controlled string a page shows by default.
CLIP = 200


def clip(value: object, limit: int = CLIP) -> str:
    """One line, at most ``limit`` characters (and says how much was cut). Escaping for
    HTML is Jinja2's autoescape; this only makes the text short and visible."""
    return bounded("" if value is None else str(value), limit)


def when(value: datetime | None, with_seconds: bool = True) -> str:
    if value is None:
        return "—"
    shown = value.astimezone(UTC)
    return shown.strftime("%Y-%m-%d %H:%M:%S UTC" if with_seconds else "%Y-%m-%d %H:%M UTC")


def short(value: str | None, keep: int = 16) -> str:
    """A long hex digest cut for a table cell (the full value is one click away)."""
    if not value:
        return "—"
    return value if len(value) <= keep + 2 else value[:keep] + "…"


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clip"] = clip
    env.filters["when"] = when
    env.filters["short"] = short
    env.globals["version"] = __version__
    return env


def with_security_headers(response: Response, *, cache: str = "no-store") -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["Cache-Control"] = cache
    return response


def render(
    env: jinja2.Environment, template: str, context: Mapping[str, Any], status: int = 200
) -> Response:
    html = env.get_template(template).render(**context)
    return with_security_headers(HTMLResponse(html, status_code=status))
