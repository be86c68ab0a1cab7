"""Who may read audit records (GET /v1/certificates/{serial}): by default only a bearer of the
admin or the read-only audit token; anyone only when the operator says --public-audit."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from steward_fakes import FakeVerifier, make_csr
from steward_harness import RunningSteward, StewardFactory

from donjon.errors import UsageError
from donjon.steward import wire
from donjon.steward.app import AppSettings
from donjon.steward.bootstrap import AUDIT_TOKEN_ENV, StewardConfig, build_steward
from donjon.steward.openapi import openapi_document

PKCS10 = {"Content-Type": "application/pkcs10"}
ADMIN_TOKEN = "admin-token-0123456789"
AUDIT_TOKEN = "audit-token-0123456789"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _issue(s: RunningSteward) -> str:
    r = s.client.post("/", content=make_csr(), headers=PKCS10)
    assert r.status_code == 200, r.text
    leaf_der = wire.split_sequence(r.content, "answer")[1]
    return format(x509.load_der_x509_certificate(leaf_der).serial_number, "x")


def _assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == f"urn:donjon:steward:problem:{code}"
    assert body["check"] == "audit-token"
    assert "serial" not in body and "platform" not in body


# --- the default: the admin token reads, nobody else ----------------------------------------


def test_default_audit_reads_need_the_admin_token(start_steward: StewardFactory) -> None:
    s = start_steward(settings=AppSettings(admin_token=ADMIN_TOKEN))
    serial = _issue(s)
    url = f"/v1/certificates/{serial}"
    missing = s.client.get(url)
    _assert_problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    _assert_problem(s.client.get(url, headers=_bearer("not-the-token-at-all")), 401, "unauthorized")
    _assert_problem(s.client.get(url, headers={"Authorization": ADMIN_TOKEN}), 401, "unauthorized")
    ok = s.client.get(url, headers=_bearer(ADMIN_TOKEN))
    assert ok.status_code == 200, ok.text
    assert ok.json()["serial"] == serial
    assert ok.json()["platform"] == "nil"


def test_without_the_token_nothing_leaks_not_even_existence(start_steward: StewardFactory) -> None:
    s = start_steward(settings=AppSettings(admin_token=ADMIN_TOKEN))
    serial = _issue(s)
    # A known serial, an unknown one and a malformed one all answer the same 401.
    for path in (serial, "abcdef", "not-hex"):
        _assert_problem(s.client.get(f"/v1/certificates/{path}"), 401, "unauthorized")
    assert s.client.get("/v1/certificates/abcdef", headers=_bearer(ADMIN_TOKEN)).status_code == 404
    assert s.client.get("/v1/certificates/not-hex", headers=_bearer(ADMIN_TOKEN)).status_code == 400


def test_no_token_configured_disables_audit_reads(start_steward: StewardFactory) -> None:
    s = start_steward(settings=AppSettings())
    serial = _issue(s)
    r = s.client.get(f"/v1/certificates/{serial}", headers=_bearer(ADMIN_TOKEN))
    _assert_problem(r, 403, "forbidden")
    assert "--public-audit" in r.json()["detail"]


# --- the read-only audit token --------------------------------------------------------------


def test_audit_token_reads_but_cannot_revoke(start_steward: StewardFactory) -> None:
    s = start_steward(settings=AppSettings(admin_token=ADMIN_TOKEN, audit_token=AUDIT_TOKEN))
    serial = _issue(s)
    url = f"/v1/certificates/{serial}"
    assert s.client.get(url, headers=_bearer(AUDIT_TOKEN)).status_code == 200
    assert s.client.get(url, headers=_bearer(ADMIN_TOKEN)).status_code == 200
    _assert_problem(s.client.get(url), 401, "unauthorized")
    revoke = s.client.post("/v1/revoke", json={"serial": serial}, headers=_bearer(AUDIT_TOKEN))
    assert revoke.status_code == 401
    assert revoke.json()["check"] == "admin-token"
    assert s.client.get(url, headers=_bearer(AUDIT_TOKEN)).json()["revoked"] is False


def test_audit_token_alone_without_an_admin_token(start_steward: StewardFactory) -> None:
    s = start_steward(settings=AppSettings(audit_token=AUDIT_TOKEN))
    serial = _issue(s)
    assert s.client.get(f"/v1/certificates/{serial}", headers=_bearer(AUDIT_TOKEN)).is_success
    r = s.client.post("/v1/revoke", json={"serial": serial}, headers=_bearer(AUDIT_TOKEN))
    assert r.status_code == 403  # revocation over HTTP stays disabled


# --- the explicit opt-out -------------------------------------------------------------------


def test_public_audit_needs_no_token(start_steward: StewardFactory) -> None:
    s = start_steward(settings=AppSettings(admin_token=ADMIN_TOKEN, public_audit=True))
    serial = _issue(s)
    r = s.client.get(f"/v1/certificates/{serial}")
    assert r.status_code == 200, r.text
    assert r.json()["serial"] == serial
    assert s.client.get("/v1/certificates/abcdef").status_code == 404
    # Public audit does not open revocation.
    assert s.client.post("/v1/revoke", json={"serial": serial}).status_code == 401


def test_openapi_says_what_the_audit_read_needs(start_steward: StewardFactory) -> None:
    private = start_steward(settings=AppSettings(admin_token=ADMIN_TOKEN))
    public = start_steward(settings=AppSettings(public_audit=True))
    op = private.client.get("/openapi.json").json()["paths"]["/v1/certificates/{serial}"]["get"]
    assert op["security"] == [{"bearer": []}]
    assert {"401", "403", "404"} <= set(op["responses"])
    op = public.client.get("/openapi.json").json()["paths"]["/v1/certificates/{serial}"]["get"]
    assert op["security"] == []
    assert "--public-audit" in op["description"]
    # The library default describes the default deployment.
    assert openapi_document("0")["paths"]["/v1/certificates/{serial}"]["get"]["security"] == [
        {"bearer": []}
    ]


# --- configuration: the flags, the environment, the start-up log ----------------------------


def _config(tmp_path: Path, **kwargs: object) -> StewardConfig:
    policy = tmp_path / "dev.toml"
    policy.write_text("[nil]\nallow = true\n")
    return StewardConfig(
        state_dir=tmp_path / "state",
        init=True,
        policy=policy,
        trust_dir=tmp_path,
        development=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _build(config: StewardConfig) -> AppSettings:
    steward, settings = build_steward(config, verifier=FakeVerifier())
    steward.store.close()
    return settings


def test_config_defaults_to_private_audit_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUDIT_TOKEN_ENV, raising=False)
    monkeypatch.delenv("DONJON_STEWARD_ADMIN_TOKEN", raising=False)
    with caplog.at_level(logging.INFO, logger="donjon.steward"):
        settings = _build(_config(tmp_path))
    assert (settings.audit_token, settings.public_audit) == (None, False)
    assert any("audit reads over HTTP are disabled" in r.getMessage() for r in caplog.records)


def test_config_public_audit_is_logged_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUDIT_TOKEN_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="donjon.steward"):
        settings = _build(_config(tmp_path, public_audit=True))
    assert settings.public_audit is True
    warned = [r for r in caplog.records if "AUDIT RECORDS ARE PUBLIC" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING


def test_config_reads_the_audit_token_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUDIT_TOKEN_ENV, raising=False)
    token_file = tmp_path / "audit.token"
    token_file.write_text(AUDIT_TOKEN + "\n")
    token_file.chmod(0o600)
    assert _build(_config(tmp_path, audit_token_file=token_file)).audit_token == AUDIT_TOKEN
    monkeypatch.setenv(AUDIT_TOKEN_ENV, "from-the-environment-42")
    assert _build(_config(tmp_path)).audit_token == "from-the-environment-42"


@pytest.mark.parametrize(
    ("content", "public", "message"),
    [
        ("short", False, "audit token in"),
        (AUDIT_TOKEN, True, "--public-audit contradicts an audit token"),
        (None, False, "cannot read the audit token file"),
    ],
    ids=["too-short", "contradiction", "missing"],
)
def test_config_refuses_bad_audit_settings(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str | None,
    public: bool,
    message: str,
) -> None:
    monkeypatch.delenv(AUDIT_TOKEN_ENV, raising=False)
    token_file = tmp_path / "audit.token"
    if content is not None:
        token_file.write_text(content)
        token_file.chmod(0o600)
    config = _config(tmp_path, audit_token_file=token_file, public_audit=public)
    with pytest.raises(UsageError, match=message):
        _build(config)
    # Refused before anything was created.
    assert not (tmp_path / "state" / "ca.key").exists()


def test_cli_serve_refuses_the_contradiction_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from donjon.cli.main import main

    monkeypatch.delenv(AUDIT_TOKEN_ENV, raising=False)
    token_file = tmp_path / "audit.token"
    token_file.write_text(AUDIT_TOKEN)
    token_file.chmod(0o600)
    argv = ["steward", "serve", "--dev", "--dir", str(tmp_path), "--init", "--port", "0"]
    argv += ["--public-audit", "--audit-token-file", str(token_file)]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--public-audit contradicts an audit token" in err
    assert "Traceback" not in err
    assert not (tmp_path / "ca.key").exists()


def test_cli_serve_help_documents_the_audit_options(capsys: pytest.CaptureFixture[str]) -> None:
    from donjon.cli.main import main

    try:
        main(["steward", "serve", "--help"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    assert "--audit-token-file" in out and "--public-audit" in out
