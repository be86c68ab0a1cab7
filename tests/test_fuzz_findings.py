"""What the fuzzers (``fuzz/``) found, each replayed as an attack that must now be refused.

* pyasn1 raises ``OverflowError`` (not ``PyAsn1Error``) for a length field beyond
  the platform's index size: the Steward answered 500 to such a bundle, and the
  claims, evidence and answer decoders raised a bare built-in error.
* ``cryptography`` decodes CRL extensions and certificate names lazily: a CRL or
  a peer certificate that loaded fine raised ``ValueError`` later, inside a check.
* An AttestationResult evaluated in year 225 was written ``2250601000000Z``
  (``strftime("%Y")`` does not pad) and read back as year 2250; evaluatedAt must
  now be exactly ``YYYYMMDDHHMMSSZ``.

And every committed seed and regression input passes every target, so the fuzz
corpus keeps working as the formats change.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from donjon.attestation.claims import AttestationResult, ClaimsError, WorkloadClaims
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.evidence import decode_enarx_snp, decode_sim
from donjon.attestation.peer import (
    CrlError,
    PeerExpectations,
    UntrustedChainError,
    load_crl,
    verify_peer_certificate,
)
from donjon.steward.errors import MalformedRequest
from donjon.steward.wire import decode_bundle

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
REGRESSIONS = FUZZ / "regressions"
FIXTURES = FUZZ / "fixtures"
#: An element whose 8-byte length (2**63) does not fit a Py_ssize_t.
HUGE = bytes.fromhex("0488" + "80" + "00" * 7)


@pytest.mark.parametrize(
    ("decode", "data", "error"),
    [
        (decode_sim, bytes.fromhex("300c3000") + HUGE, MalformedEvidenceError),
        (decode_enarx_snp, bytes.fromhex("300c3000") + HUGE, MalformedEvidenceError),
        (WorkloadClaims.from_der, bytes.fromhex("300c020101") + HUGE + b"\x00", ClaimsError),
        (AttestationResult.from_der, bytes.fromhex("300c020101") + HUGE + b"\x00", ClaimsError),
        (decode_bundle, bytes.fromhex("300a") + HUGE, MalformedRequest),
    ],
)
def test_an_overflowing_der_length_is_a_clean_refusal(
    decode: Callable[[bytes], object], data: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"not valid DER|not a DER SEQUENCE OF"):
        decode(data)


def test_the_steward_answers_400_not_500_to_an_overflowing_bundle(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from donjon.steward.app import create_app
    from donjon.steward.bootstrap import StewardConfig, build_steward
    from donjon.steward.wire import BUNDLE

    policy = tmp_path / "policy.toml"
    policy.write_text("[nil]\nallow = true\n")
    config = StewardConfig(
        state_dir=tmp_path, init=True, curve="p256", policy=policy, development=True
    )
    steward, settings = build_steward(config)
    transport = httpx.ASGITransport(app=create_app(steward, settings))  # type: ignore[arg-type]

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://steward") as client:
            return await client.post(
                "/v1/attest", content=bytes.fromhex("300a") + HUGE, headers={"Content-Type": BUNDLE}
            )

    try:
        answer = asyncio.run(post())
    finally:
        steward.store.close()
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_the_keep_refuses_an_overflowing_steward_answer() -> None:
    from donjon.keep.steward_client import StewardBadResponse, parse_chain

    with pytest.raises(StewardBadResponse, match="not a DER certificate list"):
        parse_chain(bytes.fromhex("300a") + bytes.fromhex("3088" + "80" + "00" * 7))


def test_a_crl_whose_extensions_do_not_decode_is_refused_at_load() -> None:
    data = (REGRESSIONS / "crl" / "malformed-extensions-decoded-lazily").read_bytes()
    x509.load_der_x509_crl(data)  # cryptography itself loads it: the trap is later
    with pytest.raises(CrlError, match=r"is not a CRL: .*malformed CRL"):
        load_crl(data, "the Steward's CRL")


def test_a_peer_certificate_whose_issuer_does_not_decode_is_refused() -> None:
    data = (REGRESSIONS / "peer_certificate" / "malformed-issuer-decoded-lazily").read_bytes()
    leaf = x509.load_der_x509_certificate(data)  # loads; its issuer fails on first use
    ca = x509.load_pem_x509_certificate((FIXTURES / "steward-ca.pem").read_bytes())
    now = datetime(2025, 6, 1, tzinfo=UTC)
    with pytest.raises(UntrustedChainError, match="peer certificate is unreadable"):
        verify_peer_certificate(leaf, ca, now=now, expect=PeerExpectations())
    from donjon.keep.peercheck import verify_peer

    with pytest.raises(UntrustedChainError, match="peer certificate is unreadable"):
        verify_peer(data, [ca], PeerExpectations(), role="server", now=now)


def _corpus() -> list[tuple[str, Path]]:
    cases = []
    for root in (FUZZ / "seeds", REGRESSIONS):
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            cases += [(directory.name, path) for path in sorted(directory.iterdir())]
    return cases


@pytest.fixture(scope="module")
def targets() -> dict[str, Callable[[bytes], None]]:
    sys.path.insert(0, str(FUZZ))
    try:
        from targets import TARGETS
    finally:
        sys.path.remove(str(FUZZ))
    return {name: make(FIXTURES) for name, make in TARGETS.items()}


def test_a_year_before_1000_survives_the_der_round_trip() -> None:
    # The claims fuzzer: evaluatedAt in year 225 was written "2250601000000Z" (strftime's
    # %Y does not pad), and read back as year 2250.
    result = AttestationResult(
        platform="nil", product="", measurement=b"", tcb="", tcb_status="NoTEE",
        advisories=(), debug=True, development=True, policy_id="0" * 64,
        evaluated_at=datetime(225, 6, 1, tzinfo=UTC),
    )  # fmt: skip
    again = AttestationResult.from_der(result.to_der())
    assert again.evaluated_at == datetime(225, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("when", ["2250601000000Z", "20230601000000.5Z", "202306010000Z"])
def test_an_evaluated_at_that_is_not_der_generalized_time_is_refused(when: str) -> None:
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type import useful

    from donjon.attestation.claims import _AttestationResultAsn1

    good = AttestationResult(
        platform="nil", product="", measurement=b"", tcb="", tcb_status="NoTEE",
        advisories=(), debug=False, development=True, policy_id="0" * 64,
        evaluated_at=datetime(2023, 6, 1, tzinfo=UTC),
    ).to_der()  # fmt: skip
    value, _ = decoder.decode(good, asn1Spec=_AttestationResultAsn1())
    value["evaluatedAt"] = useful.GeneralizedTime(when)
    forged = encoder.encode(value)
    assert when.encode() in forged
    with pytest.raises(ClaimsError, match="evaluatedAt is not YYYYMMDDHHMMSSZ"):
        AttestationResult.from_der(forged)


@pytest.mark.parametrize(
    ("target", "path"), _corpus(), ids=lambda v: v if isinstance(v, str) else v.name
)
def test_every_seed_and_finding_passes_its_target(
    targets: dict[str, Callable[[bytes], None]], target: str, path: Path
) -> None:
    targets[target](path.read_bytes())


def test_every_target_has_seeds() -> None:
    sys.path.insert(0, str(FUZZ))
    try:
        from targets import TARGETS
    finally:
        sys.path.remove(str(FUZZ))
    seeded = {name for name, _ in _corpus()}
    assert set(TARGETS) <= seeded


def test_an_unknown_x509_version_is_a_clean_refusal(tmp_path: Path) -> None:
    """``cryptography`` raises ``InvalidVersion``, which is not a ValueError, for it."""
    from donjon.attestation.peer import load_certificate
    from donjon.errors import UsageError
    from donjon.keep import tls
    from donjon.keep.peercheck import verify_peer

    cert = (REGRESSIONS / "peer_certificate" / "invalid-x509-version").read_bytes()
    crl = (REGRESSIONS / "crl" / "invalid-crl-version").read_bytes()
    with pytest.raises(x509.InvalidVersion):
        x509.load_der_x509_certificate(cert)  # the trap, as cryptography springs it
    with pytest.raises(UsageError, match="is not a certificate"):
        load_certificate(cert, "peer certificate")
    with pytest.raises(UntrustedChainError, match="peer certificate is unreadable"):
        verify_peer(cert, [], PeerExpectations(), role="client")
    pin = tmp_path / "peer.der"
    pin.write_bytes(cert)
    with pytest.raises(tls.TlsError, match="not a certificate"):
        tls.read_pin(pin)
    with pytest.raises(CrlError, match="is not a CRL"):
        load_crl(crl, "the Steward's CRL")


def test_the_fuzz_runner_reports_runs_and_rates() -> None:
    """``fuzz/run.py`` as CI calls it, briefly and without atheris (the fallback mode)."""
    import json
    import subprocess

    args = ["--mode", "mutate", "--time", "0.5", "--json"]
    args += ["--target", "claims", "--target", "workload_config"]
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["mode"] == "mutate"
    assert [t["target"] for t in doc["targets"]] == ["claims", "workload_config"]
    for target in doc["targets"]:
        assert target["finding"] is None
        assert target["runs"] > 0 and target["execs_per_s"] > 0


@pytest.mark.parametrize(
    "text",
    [
        'cert_lifetime = "99999999999999999999999d"\n',
        '[freshness]\nnonce_lifetime = "999999999999999999999999h"\n',
    ],
)
def test_a_duration_too_large_for_timedelta_is_a_clean_refusal(tmp_path: Path, text: str) -> None:
    """The policy fuzzer: ``timedelta(seconds=...)`` raised OverflowError for a huge count."""
    from donjon.attestation.policy import PolicyError, load_policy

    path = tmp_path / "steward.toml"
    path.write_text(text + "[nil]\nallow = true\n")
    with pytest.raises(PolicyError, match=r"must be between .* and "):
        load_policy(path)
