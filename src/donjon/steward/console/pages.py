"""The console's read-only pages: overview, certificates, refusals, policy, the upload form.

Each handler reads the store in a worker thread (the event loop never waits on
the database) and renders one template.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from donjon.attestation.claims import PLATFORMS
from donjon.attestation.verdict import UNKNOWN_PLATFORM
from donjon.steward.console import charts, policyview, queries
from donjon.steward.console import overview as numbers
from donjon.steward.console.render import render, with_security_headers
from donjon.steward.crl import CRL_VALIDITY
from donjon.steward.engine import development_platforms
from donjon.steward.reasons import REVOCATION_REASONS
from donjon.steward.store import CertificateRecord, Rejection

if TYPE_CHECKING:
    from donjon.steward.console.web import Console, Ctx

PLATFORM_CHOICES = [*sorted(PLATFORMS), UNKNOWN_PLATFORM]
STATUS_CHOICES = ("active", "revoked", "expired")
#: The CA's expiry is a warning this long before it happens.
CA_WARNING = timedelta(days=30)
MAX_PAGE = 100_000


# --- query parameters ------------------------------------------------------------------------


def _param(ctx: Ctx, name: str, limit: int = 200) -> str:
    return ctx.request.query_params.get(name, "").strip()[:limit]


def _choice(ctx: Ctx, name: str, choices: tuple[str, ...] | list[str]) -> str:
    value = _param(ctx, name)
    return value if value in choices else ""


def _page(ctx: Ctx) -> int:
    text = _param(ctx, "page", 8)
    return int(text) if text.isdigit() and int(text) <= MAX_PAGE else 0


def _date(ctx: Ctx, name: str, problems: list[str]) -> date | None:
    text = _param(ctx, name, 20)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(f"{name}: {text!r} is not a date (YYYY-MM-DD)")
        return None


# --- overview --------------------------------------------------------------------------------


def warnings(console: Console, ctx: Ctx) -> list[tuple[str, str]]:
    """(level, text) of everything that widens trust or is about to break."""
    steward = console.steward
    policy: Any = steward.policy
    out: list[tuple[str, str]] = []
    # Development mode has its banner on every page; this list says what it lets in.
    if ctx.request.url.scheme != "https":
        out.append(("error", "served over plain HTTP: tokens and sessions cross in clear text"))
    for name in getattr(policy, "accepting_any", list)():
        out.append(
            ("warn", f"accept_any_workload is on for {name}: any genuine {name} guest "
                     "gets a certificate, whatever it runs")
        )  # fmt: skip
    dev = development_platforms(policy)
    if dev:
        out.append(("warn", f"the policy accepts non-TEE evidence: {', '.join(dev)}"))
    freshness = getattr(policy, "freshness", None)
    if getattr(freshness, "donjon", None) == "optional":
        out.append(("warn", "freshness is optional: evidence without a challenge is accepted"))
    snp = getattr(policy, "snp", None)
    if getattr(snp, "crl", "require") != "require":
        out.append(("warn", '[snp] crl = "if-available": revocation may go unchecked'))
    expires = steward.ca.certificate.not_valid_after_utc
    if expires <= ctx.now:
        out.append(("error", f"the CA certificate expired on {expires:%Y-%m-%d}"))
    elif expires - ctx.now < CA_WARNING:
        out.append(("warn", f"the CA certificate expires on {expires:%Y-%m-%d}"))
    return out


async def overview(console: Console, ctx: Ctx) -> Response:
    window = numbers.WINDOWS.get(_param(ctx, "range"), numbers.WINDOWS["day"])
    engine = console.steward.store.engine
    data = await run_in_threadpool(numbers.overview, engine, ctx.now, window, console.settled)
    labels = [start.strftime(window.label) for start in data.bucket_starts]
    every = max(1, len(labels) // 8)
    chart = charts.bar_chart(
        f"Attestations and refusals, last {window.name}",
        labels,
        [
            charts.Series("issued", data.issued_series, "bar-issued"),
            charts.Series("refused", data.refused_series, "bar-refused"),
        ],
        label_every=every,
    )
    reasons = charts.hbar_chart(
        f"Top refusal reasons, last {window.name}",
        data.top_reasons,
        css="bar-refused",
    )
    ca = console.steward.ca.certificate
    context = ctx.base("overview", "Overview") | {
        "data": data,
        "windows": list(numbers.WINDOWS),
        "window": window,
        "step_text": _duration(window.step),
        "chart": chart,
        "reasons_chart": reasons,
        "rows": list(zip(labels, data.issued_series, data.refused_series, strict=True)),
        "warnings": warnings(console, ctx),
        "ca_subject": ca.subject.rfc4514_string(),
        "ca_expires": ca.not_valid_after_utc,
        "ca_days": (ca.not_valid_after_utc - ctx.now).days,
        "crl_next": ctx.now + CRL_VALIDITY,
        "policy_digest": getattr(console.steward.policy, "digest", ""),
        "now": ctx.now,
        "refresh": 30,
    }
    return render(console.env, "overview.html", context)


def _duration(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    if minutes % 60:
        return f"{minutes} minutes"
    hours = minutes // 60
    return "hour" if hours == 1 else f"{hours} hours"


# --- certificates ----------------------------------------------------------------------------


async def certificates(console: Console, ctx: Ctx) -> Response:
    problems: list[str] = []
    query = queries.CertQuery(
        text=_param(ctx, "q"),
        platform=_choice(ctx, "platform", PLATFORM_CHOICES),
        status=_choice(ctx, "status", STATUS_CHOICES),
        since=_date(ctx, "from", problems),
        until=_date(ctx, "to", problems),
        page=_page(ctx),
    )
    result: queries.Page[queries.CertRow] = queries.Page([], query.page, False)
    try:
        result = await run_in_threadpool(
            queries.search_certificates, console.steward.store.engine, query, ctx.now
        )
    except queries.SearchError as exc:
        problems.append(str(exc))
    context = ctx.base("certificates", "Certificates") | {
        "query": query,
        "result": result,
        "problems": problems,
        "platforms": PLATFORM_CHOICES,
        "statuses": STATUS_CHOICES,
        "now": ctx.now,
        "params": _paging(ctx),
    }
    return render(console.env, "certificates.html", context, status=400 if problems else 200)


def _paging(ctx: Ctx) -> dict[str, str]:
    """The current filters, to carry into the next/previous page links."""
    return {k: v for k, v in ctx.request.query_params.items() if k != "page" and v}


def _checks(verdict: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for check in verdict.get("checks") or []:
        if not isinstance(check, dict):
            continue
        reason = str(check.get("reason", ""))
        status = check.get("status")
        if status not in ("passed", "failed", "not_checked"):
            passed = bool(check.get("passed"))
            status = (
                "failed" if not passed else
                "not_checked" if reason.lower().startswith("not checked") else "passed"
            )  # fmt: skip
        state = {"passed": "pass", "failed": "fail", "not_checked": "skip"}[str(status)]
        out.append({"id": str(check.get("id", "?")), "state": state, "reason": reason})
    return out


def _certificate_facts(record: CertificateRecord) -> dict[str, Any]:
    cert = x509.load_der_x509_certificate(record.certificate_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san]
    except (x509.ExtensionNotFound, ValueError):
        names = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "san": names,
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "key": type(cert.public_key()).__name__.removeprefix("_").replace("PublicKey", ""),
    }


async def _record(console: Console, ctx: Ctx) -> CertificateRecord:
    serial = str(ctx.request.path_params["serial"])
    return await run_in_threadpool(console.steward.store.get, serial)


async def certificate(console: Console, ctx: Ctx) -> Response:
    record = await _record(console, ctx)
    claims = record.claims if isinstance(record.claims, dict) else {}
    workload = claims.get("workload") if isinstance(claims.get("workload"), dict) else None
    context = ctx.base("certificates", f"Certificate {record.serial}") | {
        "r": record,
        "claims": claims,
        "workload": workload,
        "checks": _checks(record.verdict if isinstance(record.verdict, dict) else {}),
        "cert": _certificate_facts(record),
        "status": "revoked" if record.revoked_at else (
            "expired" if record.not_after <= ctx.now else "active"),
        "reasons": REVOCATION_REASONS,
        "just_revoked": ctx.request.query_params.get("revoked") == "1",
        "current_policy": record.policy_digest == getattr(console.steward.policy, "digest", ""),
    }  # fmt: skip
    return render(console.env, "certificate.html", context)


def _download(record: CertificateRecord, kind: str) -> Response:
    if kind == "pem":
        cert = x509.load_der_x509_certificate(record.certificate_der)
        body = cert.public_bytes(serialization.Encoding.PEM)
        media = "application/x-pem-file"
    else:
        body, media = record.certificate_der, "application/pkix-cert"
    response = Response(body, media_type=media)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="donjon-{record.serial}.{"pem" if kind == "pem" else "der"}"'
    )
    return with_security_headers(response)


async def pem(console: Console, ctx: Ctx) -> Response:
    return _download(await _record(console, ctx), "pem")


async def der(console: Console, ctx: Ctx) -> Response:
    return _download(await _record(console, ctx), "der")


# --- refusals --------------------------------------------------------------------------------


async def refusals(console: Console, ctx: Ctx) -> Response:
    problems: list[str] = []
    query = queries.RefusalQuery(
        platform=_choice(ctx, "platform", PLATFORM_CHOICES),
        reason=_param(ctx, "reason", 64),
        evidence=_param(ctx, "evidence", 80),
        since=_date(ctx, "from", problems),
        until=_date(ctx, "to", problems),
        page=_page(ctx),
    )
    result: queries.Page[Rejection] = queries.Page([], query.page, False)
    try:
        result = await run_in_threadpool(
            queries.search_refusals, console.steward.store.engine, query
        )
    except queries.SearchError as exc:
        problems.append(f"evidence: {exc}")
    context = ctx.base("refusals", "Refusals") | {
        "query": query,
        "result": result,
        "problems": problems,
        "platforms": PLATFORM_CHOICES,
        "params": _paging(ctx),
    }
    return render(console.env, "refusals.html", context, status=400 if problems else 200)


# --- policy ----------------------------------------------------------------------------------


async def policy(console: Console, ctx: Ctx) -> Response:
    steward_policy: Any = console.steward.policy
    digest = str(getattr(steward_policy, "digest", ""))
    current, previous = await run_in_threadpool(
        queries.policy_history, console.steward.store.engine, digest
    )
    changes: list[policyview.DiffLine] = []
    if current is not None and previous is not None:
        changes = policyview.diff(
            previous.text,
            current.text,
            before_name=f"{previous.digest[:12]} (from {previous.first_seen:%Y-%m-%d %H:%M})",
            after_name=f"{current.digest[:12]} (from {current.first_seen:%Y-%m-%d %H:%M})",
        )
    context = ctx.base("policy", "Policy") | {
        "sections": policyview.describe(steward_policy),
        "general": policyview.general(steward_policy),
        "current": current,
        "previous": previous,
        "changes": changes,
    }
    return render(console.env, "policy.html", context)


# --- verify evidence -------------------------------------------------------------------------


async def verify_form(console: Console, ctx: Ctx) -> Response:
    return render(console.env, "verify.html", verify_context(console, ctx))


def verify_context(console: Console, ctx: Ctx, **extra: Any) -> dict[str, Any]:
    return (
        ctx.base("verify", "Verify evidence")
        | {
            "max_upload": console.config.max_upload,
            "verdict": None,
            "problem": "",
            "at": "",
            "now": ctx.now,
        }
        | extra
    )
