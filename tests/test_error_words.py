"""Library refusals reach users in Donjon's words, never as a library's internals."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from pyasn1.codec.der import decoder
from pyasn1_modules import rfc5280

from donjon.errors import plain


def refusal(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except Exception as exc:
        return exc
    raise AssertionError("the library accepted it")


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (lambda: x509.load_der_x509_certificate(b"\x30\x82\xff\xff"), "malformed DER: "),
        (lambda: x509.load_der_x509_certificate(b"\x30\x03\x02\x01"), "the data ends too early"),
        (lambda: x509.load_pem_x509_certificate(b"junk"), "malformed PEM"),
        (
            lambda: decoder.decode(b"\x04\x00", asn1Spec=rfc5280.Certificate()),
            "malformed DER: it does not have the expected structure",
        ),
    ],
)
def test_library_messages_become_our_words(fn: Callable[[], object], words: str) -> None:
    exc = refusal(fn)
    said = plain(exc)
    assert words in said
    for internal in ("ParseError", "kind:", "TagSet", "cryptography.io", "{"):
        assert internal not in said


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (bytes(range(256)) * 2, "malformed DER: "),
        (b"", "the file is empty"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "malformed DER: "),
    ],
)
def test_verify_peer_with_a_ca_that_is_not_a_certificate(
    tmp_path: Path, content: bytes, words: str
) -> None:
    ca = tmp_path / "random.bin"
    ca.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "verify-peer", "127.0.0.1:1", "--ca", str(ca)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"donjon: error: Steward CA {ca} is not a certificate: ")
    assert words in proc.stderr and "ParseError" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_our_own_messages_pass_through_whole() -> None:
    from donjon.errors import UsageError

    long = "x" * 300 + " {with braces}"
    assert plain(UsageError(long)) == long
