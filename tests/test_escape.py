"""``donjon.escape``: what someone else wrote stays on one visible line when printed.

Used by every CLI printer of certificate, CSR and evidence strings, by the
CLI's error and log lines, and by the Keep's logs that quote a peer.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from donjon.cli.output import EscapingFormatter
from donjon.escape import escape


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("hello world", "hello world"),
        ("café ✔ 東京", "café ✔ 東京"),  # printable Unicode is left alone
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # no terminal control
        ("\x00\x7f\x85", "\\x00\\x7f\\x85"),  # C0, DEL, C1 (NEL)
        ("abc\u202egnp.exe", "abc\\u202egnp.exe"),  # a bidi override cannot reorder text
        ("x\u2028y\u2029z", "x\\u2028y\\u2029z"),  # line and paragraph separators
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("C:\\path", "C:\\path"),  # a backslash is printable: shown as it is
    ],
)
def test_escape(text: str, shown: str) -> None:
    assert escape(text) == shown
    assert escape(text).isprintable()


def test_the_log_formatter_escapes_the_message_only() -> None:
    formatter = EscapingFormatter("donjon: %(message)s")
    record = logging.LogRecord(
        "donjon.keep.net", logging.WARNING, __file__, 1, "refused %s", ("a\nb",), None
    )
    assert formatter.format(record) == "donjon: refused a\\nb"


def test_attest_verify_escapes_what_the_evidence_said(capsys: pytest.CaptureFixture[str]) -> None:
    from donjon.cli.attest import _print_verdict

    check = SimpleNamespace(passed=False, id="vcek", reason="subject CN=x\n  ✔ chain ok")
    verdict: Any = SimpleNamespace(
        evaluated_at=datetime(2024, 1, 1, tzinfo=UTC),
        details={"product": "Milan\x1b[2J", "chain": ["CN=ark", "CN=a\nb"]},
        platform="snp",
        appraisal=None,
        crl_mode=None,
        revocation_checked=None,
        checks=[check],
        accepted=False,
        error=SimpleNamespace(code="attest.chain"),
        reason="vcek\n✔",
    )
    evidence: Any = SimpleNamespace(form="csr")
    policy: Any = SimpleNamespace(source="default")
    _print_verdict(Path("x.csr"), evidence, verdict, policy, from_flag=False)
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert not any(line.lstrip().startswith("✔") for line in out.splitlines())
    assert "subject CN=x\\n  ✔ chain ok" in out
    assert "CN=ark -> CN=a\\nb" in out
