"""The console's plumbing: sign-in and sign-out, the session on every page, CSRF, errors.

Every page goes through :meth:`Console.page`: no valid session cookie sends a
GET to the sign-in page and refuses a POST (403); a POST must carry the
session's CSRF token; a refusal is an HTML page with its status, never a
traceback; every answer carries the console's security headers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from donjon.steward.console import actions, pages, secretpages
from donjon.steward.console.mode import ConsoleMode
from donjon.steward.console.overview import WINDOWS, SettledCounts, overview
from donjon.steward.console.render import (
    BASE,
    STATIC,
    make_environment,
    render,
    with_security_headers,
)
from donjon.steward.console.session import (
    ABSOLUTE,
    COOKIE,
    SECURE_COOKIE,
    Role,
    Session,
    SessionKeys,
    match_token,
)
from donjon.steward.errors import Forbidden, MalformedRequest, StewardError
from donjon.steward.secrets_store import SecretStore
from donjon.steward.service import Steward

log = logging.getLogger("donjon.steward")

#: Seconds a wrong token waits before its answer (a brake on guessing, per request).
WRONG_TOKEN_DELAY = 1.0
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}  # fmt: skip

BodyReader = Callable[[Request, int], Awaitable[bytes]]


@dataclass(frozen=True)
class ConsoleConfig:
    mode: ConsoleMode
    admin_token: str | None = None
    audit_token: str | None = None
    development: bool = False
    max_upload: int = 256 * 1024


@dataclass
class Ctx:
    """One signed-in request."""

    request: Request
    session: Session
    csrf: str
    can_revoke: bool
    now: datetime
    form: dict[str, str] = field(default_factory=dict)  # a urlencoded POST's fields

    def base(self, active: str, title: str) -> dict[str, Any]:
        """What base.html needs, plus the page's own keys."""
        return {
            "active": active,
            "title": title,
            "role": self.session.role,
            "csrf": self.csrf,
            "can_revoke": self.can_revoke,
            "base": BASE,
        }


Handler = Callable[["Console", Ctx], Awaitable[Response]]


class Console:
    def __init__(
        self,
        steward: Steward,
        config: ConsoleConfig,
        read_body: BodyReader,
        secrets: SecretStore | None = None,
    ) -> None:
        self.steward = steward
        self.secrets = secrets  # the Steward's secret store, when it has a KEK
        self.config = config
        self.read_body = read_body
        self.env = make_environment()
        self.env.globals["development"] = config.development
        self.env.globals["mode"] = config.mode
        self.env.globals["secrets_enabled"] = secrets is not None
        self.verifying = asyncio.Semaphore(2)  # uploads judged at once; more wait
        self.settled = SettledCounts()  # the overview's counts of rows older than an hour
        self._warming: threading.Thread | None = None
        self._keys: SessionKeys | None = None
        self._static = {
            path.name: path.read_bytes()
            for path in sorted(STATIC.iterdir())
            if path.suffix in _STATIC_TYPES
        }

    # --- sessions --------------------------------------------------------------------------

    async def keys(self) -> SessionKeys:
        if self._keys is None:
            secret = await run_in_threadpool(self.steward.store.secret, "console_key")
            tokens: dict[Role, str | None] = {
                "admin": self.config.admin_token,
                "audit": self.config.audit_token,
            }
            self._keys = SessionKeys(secret, tokens)
        return self._keys

    @staticmethod
    def cookie_name(request: Request) -> str:
        return SECURE_COOKIE if request.url.scheme == "https" else COOKIE

    def _set_cookie(self, response: Response, request: Request, value: str, max_age: int) -> None:
        # Secure even over plain HTTP (--dev): browsers keep it for localhost only, so a
        # development console is not signed into across a network in clear text.
        response.set_cookie(
            self.cookie_name(request),
            value,
            max_age=max_age,
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )

    async def _session(self, request: Request, now: datetime) -> Session | None:
        keys = await self.keys()
        return keys.read(request.cookies.get(self.cookie_name(request)), now)

    def now(self) -> datetime:
        return self.steward.clock()

    def _wall(self) -> datetime:
        """Sessions expire by the wall clock, even under a Steward whose clock is fixed."""
        return datetime.now(UTC)

    # --- the wrapper of every page ---------------------------------------------------------

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` with a session; a urlencoded POST's form read and its CSRF token checked
        first (a multipart POST's handler checks its own, inside the upload)."""

        async def endpoint(request: Request) -> Response:
            try:
                wall = self._wall()
                session = await self._session(request, wall)
                if session is None:
                    if request.method in ("GET", "HEAD"):
                        return _to_signin(request)
                    raise Forbidden("no console session: sign in first", check="console.session")
                keys = await self.keys()
                ctx = Ctx(
                    request=request,
                    session=session,
                    csrf=keys.csrf(session),
                    can_revoke=session.is_admin and self.config.mode == "on",
                    now=self.now(),
                )
                if request.method == "POST":
                    _same_origin(request)
                    if _media(request) != "multipart/form-data":
                        ctx.form = await self.form(request)
                        self.check_csrf(keys, ctx, ctx.form.get("csrf"))
                response = await handler(self, ctx)
                if "set-cookie" not in response.headers:  # signing out sets its own
                    renewed = keys.renew(session, wall)
                    self._set_cookie(response, request, renewed, int(ABSOLUTE.total_seconds()))
                return response
            except StewardError as exc:
                return self.error(request, exc.status, exc.message)
            except ClientDisconnect:
                return Response(status_code=499)
            except Exception:
                log.exception("console: internal error answering %s %s", request.method,
                              request.url.path)  # fmt: skip
                return self.error(request, 500, "the Steward failed internally; see its log")

        return endpoint

    def error(self, request: Request, status: int, message: str) -> Response:
        return render(
            self.env,
            "error.html",
            {"title": f"Error {status}", "status": status, "message": message, "base": BASE,
             "active": "", "role": None, "csrf": "", "can_revoke": False},
            status=status,
        )  # fmt: skip

    async def form(self, request: Request, limit: int = 4096) -> dict[str, str]:
        """An urlencoded form body, bounded (413 beyond ``limit``)."""
        body = await self.read_body(request, limit)
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            raise MalformedRequest("the form could not be read", check="console.form") from None
        return dict(pairs)

    @staticmethod
    def check_csrf(keys: SessionKeys, ctx: Ctx, offered: str | None) -> None:
        if not keys.check_csrf(ctx.session, offered):
            raise Forbidden(
                "the form's CSRF token is missing or not this session's: reload the page",
                check="console.csrf",
            )

    # --- sign-in ---------------------------------------------------------------------------

    async def signin_form(self, request: Request) -> Response:
        self._warm()
        return self._signin_page(request, "", 200)

    def _warm(self) -> None:
        """Count the settled rows while someone types their token, so that the first
        overview of this process is as quick as the next ones (console/overview.py)."""
        if self._warming is not None:
            return

        def warm() -> None:
            try:
                overview(self.steward.store.engine, self.now(), WINDOWS["day"], self.settled)
            except StewardError as exc:  # the page will say it, if it is still so
                log.debug("console: could not count the overview in advance: %s", exc.message)

        self._warming = threading.Thread(target=warm, name="console-warm", daemon=True)
        self._warming.start()

    def _signin_page(self, request: Request, message: str, status: int) -> Response:
        target = _safe_next(request.query_params.get("next", ""))
        return render(
            self.env,
            "signin.html",
            {"title": "Sign in", "message": message, "next": target, "base": BASE,
             "active": "", "role": None, "csrf": "", "can_revoke": False,
             "tokens": [r for r in ("admin", "audit") if getattr(self.config, f"{r}_token")]},
            status=status,
        )  # fmt: skip

    async def signin(self, request: Request) -> Response:
        try:
            _same_origin(request)
            fields = await self.form(request)
        except StewardError as exc:
            return self.error(request, exc.status, exc.message)
        except ClientDisconnect:
            return Response(status_code=499)
        tokens: dict[Role, str | None] = {
            "admin": self.config.admin_token,
            "audit": self.config.audit_token,
        }
        role = match_token(fields.get("token", ""), tokens)
        if role is None:
            client = request.client.host if request.client else "?"
            log.warning("console: a sign-in with a wrong token from %s", client)
            await asyncio.sleep(WRONG_TOKEN_DELAY)
            return self._signin_page(request, "That token is not this Steward's.", 401)
        keys = await self.keys()
        value, _ = keys.issue(role, self._wall())
        log.info("console: %s session signed in", role)
        response = RedirectResponse(_safe_next(fields.get("next", "")), status_code=303)
        self._set_cookie(response, request, value, int(ABSOLUTE.total_seconds()))
        return with_security_headers(response)

    async def signout(self, ctx: Ctx) -> Response:
        """Clear the cookie in this browser (a copy elsewhere lives until it expires)."""
        response = RedirectResponse(f"{BASE}/signin", status_code=303)
        response.delete_cookie(self.cookie_name(ctx.request), path="/", secure=True,
                               httponly=True, samesite="strict")  # fmt: skip
        log.info("console: %s session signed out", ctx.session.role)
        return with_security_headers(response)

    async def static_file(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        body = self._static.get(name)
        if body is None:
            return self.error(request, 404, "no such file")
        suffix = name[name.rfind(".") :]
        response = Response(body, media_type=_STATIC_TYPES[suffix])
        return with_security_headers(response, cache="no-cache")

    def routes(self) -> list[BaseRoute]:
        page = self.page
        return [
            Route(BASE, page(pages.overview), methods=["GET"]),
            Route(f"{BASE}/", page(pages.overview), methods=["GET"]),
            Route(f"{BASE}/signin", self.signin_form, methods=["GET"]),
            Route(f"{BASE}/signin", self.signin, methods=["POST"]),
            Route(f"{BASE}/signout", page(Console.signout), methods=["POST"]),
            Route(f"{BASE}/certificates", page(pages.certificates), methods=["GET"]),
            Route(f"{BASE}/certificates/{{serial}}", page(pages.certificate), methods=["GET"]),
            Route(f"{BASE}/certificates/{{serial}}/pem", page(pages.pem), methods=["GET"]),
            Route(f"{BASE}/certificates/{{serial}}/der", page(pages.der), methods=["GET"]),
            Route(
                f"{BASE}/certificates/{{serial}}/revoke",
                page(actions.revoke),
                methods=["POST"],
            ),
            Route(f"{BASE}/refusals", page(pages.refusals), methods=["GET"]),
            Route(f"{BASE}/policy", page(pages.policy), methods=["GET"]),
            Route(f"{BASE}/secrets", page(secretpages.secrets), methods=["GET"]),
            Route(f"{BASE}/secrets/{{name}}", page(secretpages.secret), methods=["GET"]),
            Route(f"{BASE}/verify", page(pages.verify_form), methods=["GET"]),
            Route(f"{BASE}/verify", page(actions.verify), methods=["POST"]),
            Route(f"{BASE}/static/{{name}}", self.static_file, methods=["GET"]),
        ]


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _to_signin(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"{BASE}/signin?next={quote(target, safe='')}", status_code=303)
    return with_security_headers(response)


def _safe_next(text: str) -> str:
    """Where to go after signing in: a console path on this host, never elsewhere."""
    parts = urlsplit(text)
    if (
        parts.scheme
        or parts.netloc
        or not parts.path.startswith(BASE)
        or "//" in text
        or "\\" in text
        or len(text) > 512
    ):
        return BASE
    return text


def _same_origin(request: Request) -> None:
    """A POST that a browser says came from another site is refused (CSRF, in depth)."""
    headers: Headers = request.headers
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("cross-site form posts are refused", check="console.origin")
    origin = headers.get("origin")
    # The host, not the scheme: a proxy in front may speak HTTPS for a plain-HTTP Steward.
    if origin not in (None, "null") and urlsplit(origin).netloc != request.url.netloc:
        raise Forbidden("the form came from another origin", check="console.origin")
