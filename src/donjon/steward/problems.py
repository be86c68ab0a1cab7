"""RFC 9457 problem+json bodies: every refusal names what failed, machine-readably."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from donjon.steward.errors import StewardError

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:donjon:steward:problem:"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    check: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title or code.replace("-", " "),
        "status": status,
        "detail": detail,
    }
    if check is not None:
        body["check"] = check
    if extra:
        body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


def from_error(error: StewardError) -> ProblemResponse:
    extra: dict[str, Any] = {}
    if error.checks:
        extra["checks"] = error.checks
    if error.evidence_sha256:
        extra["evidence_sha256"] = error.evidence_sha256
    headers = (
        {"WWW-Authenticate": 'Bearer realm="donjon-steward"'}
        if error.code == "unauthorized"
        else None
    )
    if error.status == 503:
        headers = {"Retry-After": "1"}
    return problem(
        error.status,
        error.code,
        error.message,
        check=error.check,
        extra=extra,
        headers=headers,
    )
