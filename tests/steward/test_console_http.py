"""The console over real HTTPS (no browser): sign-in, sessions, CSRF, revocation, escaping,
uploads, modes and workers. The browser tests (test_console_browser.py) look at the pages."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from steward_fakes import FakePolicy, FakeVerifier, make_csr
from steward_harness import (
    RunningSteward,
    ServerThread,
    StewardFactory,
    StewardProcess,
    TlsFiles,
)

from donjon.steward import wire
from donjon.steward.app import AppSettings, create_app
from donjon.steward.ca import CertificateAuthority
from donjon.steward.console.render import CSP
from donjon.steward.console.session import SECURE_COOKIE
from donjon.steward.secrets_policy import ReleasePolicy
from donjon.steward.secrets_release import SecretService
from donjon.steward.secrets_store import ReleaseRecord, SecretStore
from donjon.steward.secrets_vault import new_kek_text, parse_kek
from donjon.steward.service import Steward
from donjon.steward.store import AuditStore, Rejection
from support.net import free_port

ADMIN = "admin-token-0123456789"
AUDIT = "audit-token-0123456789"
PKCS10 = {"Content-Type": "application/pkcs10"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
HOSTILE = "<script>alert('x')</script>\n<img src=x onerror=alert(1)>\r\n" + "A" * 10_000


def settings(mode: str = "on", **kwargs: object) -> AppSettings:
    return AppSettings(admin_token=ADMIN, audit_token=AUDIT, console=mode, **kwargs)  # type: ignore[arg-type]


def browser(s: RunningSteward) -> httpx.Client:
    """A client with its own cookie jar, as one browser."""
    return httpx.Client(base_url=s.url, verify=s.tls.context, timeout=30)


def sign_in(client: httpx.Client, token: str) -> str:
    """Sign in; the session's CSRF token (from a page's sign-out form)."""
    r = client.post("/console/signin", data={"token": token, "next": "/console/policy"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console/policy"
    page = client.get("/console/policy")
    assert page.status_code == 200
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def issue(s: RunningSteward) -> str:
    r = s.client.post("/", content=make_csr(), headers=PKCS10)
    assert r.status_code == 200, r.text
    leaf = x509.load_der_x509_certificate(wire.split_sequence(r.content, "answer")[1])
    return format(leaf.serial_number, "x")


# --- sign-in and sessions ----------------------------------------------------------------


def test_pages_need_a_session_and_the_sign_in_sets_a_strict_host_cookie(
    start_steward: StewardFactory,
) -> None:
    s = start_steward(settings=settings())
    with browser(s) as client:
        r = client.get("/console/certificates?platform=nil")
        assert r.status_code == 303
        assert (
            r.headers["location"]
            == "/console/signin?next=%2Fconsole%2Fcertificates%3Fplatform%3Dnil"
        )
        r = client.post("/console/signin", data={"token": ADMIN, "next": "/console/refusals"})
        assert r.status_code == 303 and r.headers["location"] == "/console/refusals"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(SECURE_COOKIE + "=v1.admin.")
        for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
            assert attribute.lower() in cookie.lower()
        assert "domain=" not in cookie.lower()
        page = client.get("/console/refusals")
        assert page.status_code == 200 and "admin session" in page.text
        assert page.headers["content-security-policy"] == CSP
        assert "default-src 'self'" in CSP
        assert page.headers["cache-control"] == "no-store"


def test_a_wrong_token_is_refused_slowly_and_said_once(
    start_steward: StewardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    s = start_steward(settings=settings())
    with browser(s) as client:
        started = datetime.now(UTC)
        r = client.post("/console/signin", data={"token": ADMIN + "x"})
        waited = (datetime.now(UTC) - started).total_seconds()
        assert r.status_code == 401 and "not this Steward" in r.text
        assert waited >= 0.9
        assert "set-cookie" not in r.headers
        assert client.get("/console").status_code == 303
    assert any("wrong token" in rec.getMessage() for rec in caplog.records)
    assert not any(ADMIN in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console", "/v1/crl"])
def test_sign_in_never_sends_you_elsewhere(start_steward: StewardFactory, target: str) -> None:
    s = start_steward(settings=settings())
    with browser(s) as client:
        r = client.post("/console/signin", data={"token": AUDIT, "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/console"


def test_a_forged_cookie_is_no_session(start_steward: StewardFactory) -> None:
    s = start_steward(settings=settings())
    with browser(s) as client:
        sign_in(client, AUDIT)
        value = client.cookies[SECURE_COOKIE]
        promoted = value.replace("v1.audit.", "v1.admin.")
        client.cookies.set(SECURE_COOKIE, promoted, domain="127.0.0.1")
        assert client.get("/console", follow_redirects=False).status_code == 303


def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(start_steward: StewardFactory) -> None:
    s = start_steward(settings=settings())
    with browser(s) as client:
        csrf = sign_in(client, ADMIN)
        assert client.post("/console/signout", data={}).status_code == 403
        r = client.post("/console/signout", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/console/signin"
        assert "max-age=0" in r.headers["set-cookie"].lower()
        assert client.get("/console").status_code == 303


# --- revocation ----------------------------------------------------------------------------


def test_an_admin_revokes_after_confirming_and_the_crl_lists_it(
    start_steward: StewardFactory,
) -> None:
    s = start_steward(settings=settings())
    serial = issue(s)
    with browser(s) as client:
        csrf = sign_in(client, ADMIN)
        detail = client.get(f"/console/certificates/{serial}")
        assert f'action="/console/certificates/{serial}/revoke"' in detail.text
        form = {"csrf": csrf, "reason": "key-compromise"}
        ask = client.post(f"/console/certificates/{serial}/revoke", data=form)
        assert ask.status_code == 200 and "This cannot be undone" in ask.text
        assert s.steward.store.get(serial).revoked_at is None  # only asked so far
        done = client.post(f"/console/certificates/{serial}/revoke", data=form | {"confirm": "yes"})
        assert done.status_code == 303
        assert done.headers["location"] == f"/console/certificates/{serial}?revoked=1"
        page = client.get(done.headers["location"])
        assert "Revoked." in page.text and "key-compromise" in page.text
        assert f'action="/console/certificates/{serial}/revoke"' not in page.text
    record = s.steward.store.get(serial)
    assert record.revocation_reason == "key-compromise"
    crl = x509.load_der_x509_crl(s.client.get("/v1/crl").content)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def test_an_audit_session_sees_no_revoke_form_and_its_post_is_403(
    start_steward: StewardFactory,
) -> None:
    s = start_steward(settings=settings())
    serial = issue(s)
    with browser(s) as client:
        csrf = sign_in(client, AUDIT)
        page = client.get(f"/console/certificates/{serial}")
        assert page.status_code == 200 and "audit session" in page.text
        assert "/revoke" not in page.text and "Revoke" not in page.text
        # The one form that posts on this page ends the session; none changes the Steward.
        actions = set(re.findall(r'<form[^>]* method="post" action="([^"]+)"', page.text))
        assert actions == {"/console/signout"}
        form = {"csrf": csrf, "reason": "key-compromise", "confirm": "yes"}
        r = client.post(f"/console/certificates/{serial}/revoke", data=form)
        assert r.status_code == 403 and "only an admin session revokes" in r.text
        assert (
            client.post(
                f"/console/certificates/{serial}/revoke", data={"confirm": "yes"}
            ).status_code
            == 403
        )
    assert s.steward.store.get(serial).revoked_at is None


@pytest.mark.parametrize(
    ("form", "headers", "why"),
    [
        ({"reason": "key-compromise", "confirm": "yes"}, {}, "CSRF token is missing"),
        ({"csrf": "A" * 43, "reason": "key-compromise", "confirm": "yes"}, {}, "CSRF"),
        (
            {"reason": "key-compromise", "confirm": "yes"},
            {"Origin": "https://evil.example"},
            "another origin",
        ),
        (
            {"reason": "key-compromise", "confirm": "yes"},
            {"Sec-Fetch-Site": "cross-site"},
            "cross-site",
        ),
    ],
    ids=["no-token", "wrong-token", "origin", "fetch-site"],
)
def test_a_forged_admin_post_is_403(
    start_steward: StewardFactory, form: dict[str, str], headers: dict[str, str], why: str
) -> None:
    s = start_steward(settings=settings())
    serial = issue(s)
    with browser(s) as client:
        csrf = sign_in(client, ADMIN)
        if "csrf" not in form and why != "CSRF token is missing":
            form = form | {"csrf": csrf}
        r = client.post(f"/console/certificates/{serial}/revoke", data=form, headers=headers)
        assert r.status_code == 403 and why in r.text
    assert s.steward.store.get(serial).revoked_at is None


def test_read_only_mode_lets_nobody_revoke(start_steward: StewardFactory) -> None:
    s = start_steward(settings=settings("read-only"))
    serial = issue(s)
    with browser(s) as client:
        csrf = sign_in(client, ADMIN)
        page = client.get(f"/console/certificates/{serial}")
        assert "(read-only)" in page.text and "/revoke" not in page.text
        form = {"csrf": csrf, "reason": "superseded", "confirm": "yes"}
        r = client.post(f"/console/certificates/{serial}/revoke", data=form)
        assert r.status_code == 403 and "read-only" in r.text
    assert s.steward.store.get(serial).revoked_at is None


def test_the_console_off_serves_nothing(start_steward: StewardFactory) -> None:
    s = start_steward(settings=settings("off"))
    assert s.client.get("/console").status_code == 404
    assert s.client.get("/console/signin").status_code == 404


# --- what the pages show -----------------------------------------------------------------


def test_a_hostile_refusal_renders_escaped_and_truncated(start_steward: StewardFactory) -> None:
    s = start_steward(settings=settings())
    s.steward.store.record_rejection(
        Rejection(datetime.now(UTC), "<b>x</b>", 403, "snp", "ab" * 32, HOSTILE)
    )
    with browser(s) as client:
        sign_in(client, AUDIT)
        page = client.get("/console/refusals").text
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    row = re.search(r'<td data-label="Reason" class="detail">([^<]*)</td>', page)
    assert row is not None
    shown = row.group(1)
    assert "\\n" in shown and "\n" not in shown  # one line: the newline shown as an escape
    assert len(shown) < 400 and "chars)" in shown  # 10 KB cut to a few hundred characters


def test_the_overview_counts_what_was_issued_and_refused(start_steward: StewardFactory) -> None:
    s = start_steward(settings=settings())
    issue(s)
    issue(s)
    bad = s.client.post("/", content=b"\x30\x03\x02\x01\x00", headers=PKCS10)
    assert bad.status_code == 400
    with browser(s) as client:
        sign_in(client, AUDIT)
        page = client.get("/console?range=hour").text
    totals = re.findall(r'<span class="num">(\d+)</span><span class="what">([^<]+)</span>', page)
    assert totals == [
        ("2", "certificates issued"),
        ("1", "attestations refused"),
        ("0", "certificates revoked"),
    ]
    assert "<svg" in page and "Attestations and refusals, last hour: issued 2, refused 1" in page


def test_the_certificate_page_downloads_pem_and_der(start_steward: StewardFactory) -> None:
    s = start_steward(settings=settings())
    serial = issue(s)
    with browser(s) as client:
        sign_in(client, AUDIT)
        pem = client.get(f"/console/certificates/{serial}/pem")
        der = client.get(f"/console/certificates/{serial}/der")
        missing = client.get("/console/certificates/abcdef")
        malformed = client.get("/console/certificates/not-hex")
    assert pem.headers["content-disposition"] == f'attachment; filename="donjon-{serial}.pem"'
    cert = x509.load_pem_x509_certificate(pem.content)
    assert cert.public_bytes(serialization.Encoding.DER) == der.content
    assert format(cert.serial_number, "x") == serial
    assert (missing.status_code, malformed.status_code) == (404, 400)
    assert "no certificate with serial abcdef" in missing.text


def test_the_policy_page_diffs_against_the_policy_kept_before(
    start_steward: StewardFactory,
) -> None:
    from donjon.steward.console.queries import record_policy

    s = start_steward(settings=settings(), policy=FakePolicy(digest="cd" * 32))
    now = datetime.now(UTC)
    engine = s.steward.store.engine
    record_policy(engine, digest="ab" * 32, source="p.toml", text="[nil]\nallow = true\n", now=now)
    record_policy(engine, digest="cd" * 32, source="p.toml", text="[nil]\nallow = false\n", now=now)
    with browser(s) as client:
        sign_in(client, AUDIT)
        page = client.get("/console/policy").text
    assert '<span class="del">-allow = true</span>' in page
    assert '<span class="add">+allow = false</span>' in page


# --- verify evidence ---------------------------------------------------------------------


def _upload(client: httpx.Client, csrf: str | None, data: bytes, at: str = "") -> httpx.Response:
    fields = {"at": at} | ({"csrf": csrf} if csrf is not None else {})
    return client.post("/console/verify", data=fields, files={"evidence": ("e.bin", data)})


def test_an_upload_needs_the_csrf_token_and_a_known_form(start_steward: StewardFactory) -> None:
    s = start_steward(settings=settings())
    with browser(s) as client:
        csrf = sign_in(client, AUDIT)
        assert _upload(client, None, b"\x01\x02").status_code == 403
        r = _upload(client, csrf, b"hello, not evidence")
        assert r.status_code == 400
        assert "not a Keep CSR or any known evidence" in r.text and "raw SNP report" in r.text
        assert _upload(client, csrf, b"").status_code == 400
        r = _upload(client, csrf, b"x", at="yesterday")
        assert r.status_code == 400 and "not an ISO 8601 time" in r.text


def test_an_upload_over_the_limit_is_refused_before_it_is_read(
    start_steward: StewardFactory,
) -> None:
    s = start_steward(settings=settings(max_body=4096))
    with browser(s) as client:
        csrf = sign_in(client, AUDIT)
        r = _upload(client, csrf, b"\x30" * 64 * 1024)
        assert r.status_code == 413 and "limit" in r.text


def test_a_keep_certificate_is_checked_against_this_ca_and_the_store(
    start_steward: StewardFactory,
) -> None:
    s = start_steward(settings=settings())
    r = s.client.post("/", content=make_csr(), headers=PKCS10)
    leaf = x509.load_der_x509_certificate(wire.split_sequence(r.content, "answer")[1])
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    serial = format(leaf.serial_number, "x")
    with browser(s) as client:
        csrf = sign_in(client, AUDIT)
        ok = _upload(client, csrf, pem)
        assert ok.status_code == 200 and "ACCEPTED" in ok.text
        for check in ("peer.decode", "peer.chain", "peer.profile", "peer.revocation"):
            assert f'<code class="id">{check}</code>' in ok.text
        assert f'href="/console/certificates/{serial}"' in ok.text
        s.steward.revoke(serial, reason="superseded")
        refused = _upload(client, csrf, pem)
        assert "REFUSED" in refused.text and "peer.revocation" in refused.text
        assert "superseded" in refused.text


# --- the command line and workers -------------------------------------------------------


def _token_file(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.slow
def test_sessions_hold_across_workers(tls_files: TlsFiles, tmp_path: Path) -> None:
    """Two worker processes share no memory: a session signed by one is read by the other."""
    policy = tmp_path / "dev.toml"
    policy.write_text("[nil]\nallow = true\n")
    port = free_port()
    args = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dev", "--init",
        "--dir", str(tmp_path / "state"), "--policy", str(policy),
        "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key),
        "--port", str(port), "--workers", "2", "--log-level", "info",
        "--admin-token-file", str(_token_file(tmp_path / "admin.token", ADMIN)),
    ]  # fmt: skip
    proc = StewardProcess(args, tmp_path / "steward.log")
    url = f"https://127.0.0.1:{port}"
    try:
        proc.wait_ready(url, tls_files.context)
        with httpx.Client(base_url=url, verify=tls_files.context, timeout=30) as client:
            csrf = ""
            r = client.post("/console/signin", data={"token": ADMIN})
            assert r.status_code == 303
            # New connections each time, so the kernel spreads them over both workers.
            for _ in range(12):
                with httpx.Client(base_url=url, verify=tls_files.context, timeout=30,
                                  cookies=client.cookies) as fresh:  # fmt: skip
                    page = fresh.get("/console/policy")
                    assert page.status_code == 200, page.text
                    found = CSRF.search(page.text)
                    assert found is not None
                    assert csrf in ("", found.group(1))  # one session, one CSRF token
                    csrf = found.group(1)
        log = (tmp_path / "steward.log").read_text()
        assert "web console: on at /console" in log
        assert len(set(re.findall(r"started worker pid (\d+)", log))) == 2
    finally:
        proc.proc.terminate()
        proc.proc.wait(timeout=30)
        proc.log.close()


def test_cli_console_on_without_a_token_is_one_line(tmp_path: Path) -> None:
    policy = tmp_path / "dev.toml"
    policy.write_text("[nil]\nallow = true\n")
    env = {k: v for k, v in __import__("os").environ.items() if "DONJON_STEWARD" not in k}
    r = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dev", "--init",
         "--dir", str(tmp_path / "s"), "--policy", str(policy), "--console", "on"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert r.returncode == 2
    assert "--console on needs a token to sign in with" in r.stderr
    assert "Traceback" not in r.stderr


# --- secrets -----------------------------------------------------------------------------

SECRET_VALUE = b"correct-horse-battery-staple-0451"


def _steward_with_secrets(tls_files: TlsFiles, tmp_path: Path) -> tuple[RunningSteward, Any]:

    now = datetime.now(UTC)
    store = AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}")
    steward = Steward(
        ca=CertificateAuthority.create(curve="p384", now=now),
        policy=FakePolicy(),
        trust=None,
        store=store,
        verifier=FakeVerifier(),
        clock=lambda: datetime.now(UTC),
    )
    service = SecretService(
        store=SecretStore(store.engine),
        kek=parse_kek(new_kek_text(), "test"),
        ca=steward.ca,
        audit=store,
        clock=steward.clock,
    )
    policy = ReleasePolicy(allowed_workloads=["5f" * 32], platforms=["snp"])
    service.put("db-password", SECRET_VALUE, policy, create=True)
    service.rotate("db-password", SECRET_VALUE + b"-v2", None)
    service.withdraw("db-password", 1)
    service.store.record_release(
        ReleaseRecord(now, "db-password", 2, "refused", "policy.workload", 403, "ab12",
                      None, "snp", "66" * 32, None, "<i>workload</i> not allowed\n")
    )  # fmt: skip
    app = create_app(steward, settings(), secrets=service)
    thread = ServerThread(app, tls_files)
    url = f"https://127.0.0.1:{thread.start()}"
    client = httpx.Client(base_url=url, verify=tls_files.context, timeout=30)
    running = RunningSteward(url=url, steward=steward, client=client, tls=tls_files)
    return running, thread


def test_the_secrets_pages_show_versions_policies_and_history_never_a_value(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    s, thread = _steward_with_secrets(tls_files, tmp_path)
    try:
        with browser(s) as client:
            sign_in(client, AUDIT)
            listing = client.get("/console/secrets")
            detail = client.get("/console/secrets/db-password")
            missing = client.get("/console/secrets/no-such")
            nav = client.get("/console").text
    finally:
        s.client.close()
        thread.stop()
        s.steward.store.close()
    assert listing.status_code == 200 and detail.status_code == 200
    assert 'href="/console/secrets"' in nav
    assert "db-password" in listing.text and "policy.workload" in listing.text
    assert "&lt;i&gt;workload&lt;/i&gt;" in listing.text and "<i>workload" not in listing.text
    assert "Version 2" in detail.text and "Version 1" in detail.text and "withdrawn" in detail.text
    assert "5f" * 32 in detail.text and "snp" in detail.text
    for page in (listing.text, detail.text):
        for form in (SECRET_VALUE, SECRET_VALUE.hex().encode(), b"correct-horse"):
            assert form.decode() not in page
    assert missing.status_code == 404 and "no secret named" in missing.text


def test_without_a_kek_there_is_no_secrets_page(start_steward: StewardFactory) -> None:
    s = start_steward(settings=settings())
    with browser(s) as client:
        sign_in(client, AUDIT)
        assert 'href="/console/secrets"' not in client.get("/console").text
        r = client.get("/console/secrets")
        assert r.status_code == 404 and "stores no secrets" in r.text


def test_over_plain_http_the_cookie_is_still_secure_and_the_overview_says_so(
    tmp_path: Path,
) -> None:
    """--dev serves plain HTTP: browsers keep a Secure cookie from it for localhost only."""
    store = AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}")
    steward = Steward(
        ca=CertificateAuthority.create(curve="p384", now=datetime.now(UTC)),
        policy=FakePolicy(),
        trust=None,
        store=store,
        verifier=FakeVerifier(),
        clock=lambda: datetime.now(UTC),
    )
    app = create_app(steward, settings(development=True))

    async def run() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            signed = await c.post("/console/signin", data={"token": AUDIT})
            cookie = signed.headers["set-cookie"].split(";", 1)[0]
            page = await c.get("/console", headers={"Cookie": cookie})
            return signed, page

    try:
        signed, page = asyncio.run(run())
    finally:
        store.close()
    cookie = signed.headers["set-cookie"].lower()
    assert cookie.startswith("donjon_console=v1.audit.") and "; secure" in cookie
    assert page.status_code == 200
    assert "served over plain HTTP" in page.text and "not fit for production" in page.text
