"""The console's two POSTs: revoke a certificate (admin sessions, confirmed), and judge an
uploaded file (any session; nothing is stored).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import RedirectResponse, Response

from donjon.attestation.recognise import UnrecognisedEvidence, known_forms
from donjon.errors import DonjonError
from donjon.steward.clock import parse_time
from donjon.steward.console.evidence import judge
from donjon.steward.console.pages import verify_context
from donjon.steward.console.render import BASE, render, with_security_headers
from donjon.steward.errors import Forbidden, MalformedRequest, Overloaded
from donjon.steward.reasons import REVOCATION_REASONS

if TYPE_CHECKING:
    from donjon.steward.console.web import Console, Ctx

log = logging.getLogger("donjon.steward")

#: Seconds one upload may take to judge (the Steward's own attestation timeout).
VERIFY_TIMEOUT = 30.0
#: Room for the multipart framing and the small fields around the file.
_FRAMING = 8 * 1024


async def revoke(console: Console, ctx: Ctx) -> Response:
    """First POST: the confirmation page. Second POST (confirm=yes): revoke, then show it."""
    if not ctx.can_revoke:
        why = (
            "the console is read-only (--console read-only)"
            if console.config.mode != "on"
            else "audit sessions read; only an admin session revokes"
        )
        raise Forbidden(f"not allowed to revoke: {why}", check="console.role")
    serial = str(ctx.request.path_params["serial"])
    reason = ctx.form.get("reason", "unspecified")
    if reason not in REVOCATION_REASONS:
        raise MalformedRequest(
            f"unknown revocation reason {reason[:40]!r}: "
            f"use one of {', '.join(REVOCATION_REASONS)}",
            check="reason",
        )
    record = await run_in_threadpool(console.steward.store.get, serial)
    if ctx.form.get("confirm") != "yes":
        context = ctx.base("certificates", f"Revoke {record.serial}?") | {
            "r": record,
            "reason": reason,
        }
        return render(console.env, "revoke.html", context)
    done = await run_in_threadpool(console.steward.revoke, record.serial, reason=reason)
    log.warning("console: an admin session revoked certificate %s (%s)", done.serial, reason)
    response = RedirectResponse(f"{BASE}/certificates/{done.serial}?revoked=1", status_code=303)
    return with_security_headers(response)


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def _upload(console: Console, ctx: Ctx) -> tuple[bytes, str]:
    """The uploaded file and the 'at' field, after the CSRF token; bounded, in memory."""
    limit = console.config.max_upload
    body = await console.read_body(ctx.request, limit + _FRAMING)
    parser = MultiPartParser(
        ctx.request.headers, _once(body), max_files=1, max_fields=4, max_part_size=4096
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise MalformedRequest(f"the upload could not be read: {exc.message}") from None
    try:
        csrf = form.get("csrf")
        console.check_csrf(await console.keys(), ctx, csrf if isinstance(csrf, str) else None)
        upload = form.get("evidence")
        if not isinstance(upload, UploadFile):
            raise MalformedRequest("choose a file to verify", check="upload")
        data = await upload.read(limit + 1)  # in memory: well under the spooling threshold
        at = form.get("at")
        return data, at.strip() if isinstance(at, str) else ""
    finally:
        await form.close()


async def verify(console: Console, ctx: Ctx) -> Response:
    data, at = await _upload(console, ctx)
    limit = console.config.max_upload
    problem = ""
    if not data:
        problem = "the file is empty"
    elif len(data) > limit:
        problem = f"the file is larger than {limit} bytes"
    when = ctx.now
    if at and not problem:
        try:
            when = parse_time(at, what="evaluate at")
        except DonjonError as exc:
            problem = exc.message
    if problem:
        context = verify_context(console, ctx, problem=problem, at=at)
        return render(console.env, "verify.html", context, status=400)
    try:
        async with asyncio.timeout(VERIFY_TIMEOUT):
            async with console.verifying:
                verdict = await run_in_threadpool(judge, data, console.steward, when)
    except TimeoutError:
        raise Overloaded(f"judging the file took longer than {VERIFY_TIMEOUT:g} s") from None
    except UnrecognisedEvidence as exc:
        problem = f"{exc}. The console knows: {', '.join(known_forms())}, and Keep certificates."
        context = verify_context(console, ctx, problem=problem, at=at)
        return render(console.env, "verify.html", context, status=400)
    return render(console.env, "verify.html", verify_context(console, ctx, verdict=verdict, at=at))
