"""Refusals are labelled truthfully: an unparsed CSR names no platform, and /metrics counts
each refusal under its own failed check.

The real attestation engine is used where it matters (it is where the platform
of a malformed CSR is decided); metrics are read with prometheus_client's own
text parser, not with the Steward's code.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families
from steward_fakes import FakePolicy, FakeVerdict, FakeVerifier, make_csr, make_key
from steward_harness import RunningSteward, StewardFactory

from donjon.attestation import Policy, verify_csr
from donjon.attestation.claims import AttestationResult, ClaimsError

PKCS10 = {"Content-Type": "application/pkcs10"}
AT = datetime(2026, 11, 26, tzinfo=UTC)
GARBAGE = b"\x30\x03\x02\x01"  # a truncated DER SEQUENCE: no CSR at all


def _tampered_csr() -> bytes:
    csr = bytearray(make_csr())
    csr[-3] ^= 0x01  # inside the ECDSA signature
    return bytes(csr)


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """``{sorted labels: value}`` of one sample name in a Prometheus text exposition."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _verdicts(steward: RunningSteward) -> dict[tuple[str, str, str], float]:
    """Verdict counters keyed by (platform, outcome, reason)."""
    text = steward.client.get("/metrics").text
    out = {}
    for labels, value in _samples(text, "donjon_steward_verdicts_total").items():
        d = dict(labels)
        out[(d["platform"], d["outcome"], d["reason"])] = value
    return out


# --- the engine: which platform a refused verdict names -------------------------------------


@pytest.mark.parametrize(
    ("csr", "failed"),
    [
        (GARBAGE, "csr.parse"),
        (_tampered_csr(), "csr.signature"),
        (make_csr(evidence=None), "csr.extensions"),
    ],
    ids=["unparsable", "bad-signature", "no-evidence"],
)
def test_engine_names_no_platform_before_the_evidence_is_read(csr: bytes, failed: str) -> None:
    verdict = verify_csr(csr, policy=Policy.default(), trust=cast(Any, None), now=AT)
    assert not verdict.accepted
    assert verdict.reason == failed
    assert verdict.platform == "unknown"


def test_engine_names_the_platform_once_the_evidence_is_read() -> None:
    # nil evidence, refused by the default policy (genuine SNP only): the platform is known.
    verdict = verify_csr(make_csr(), policy=Policy.default(), trust=cast(Any, None), now=AT)
    assert not verdict.accepted
    assert verdict.platform == "nil"


def test_an_issued_result_cannot_say_unknown() -> None:
    with pytest.raises(ClaimsError, match="unknown platform"):
        AttestationResult(
            platform="unknown",
            product="",
            measurement=b"",
            tcb="",
            tcb_status="None",
            advisories=(),
            debug=False,
            development=True,
            policy_id="ab" * 32,
            evaluated_at=AT,
        )


# --- the Steward: log line, metrics label, rejection record ---------------------------------


@pytest.mark.parametrize(
    ("csr", "status", "failed"),
    [(GARBAGE, 400, "csr.parse"), (_tampered_csr(), 401, "csr.signature")],
    ids=["unparsable", "bad-signature"],
)
def test_a_csr_refused_before_its_evidence_is_platform_unknown(
    start_steward: StewardFactory,
    caplog: pytest.LogCaptureFixture,
    csr: bytes,
    status: int,
    failed: str,
) -> None:
    s = start_steward(verifier=verify_csr, policy=Policy.default(), clock=lambda: AT)
    with caplog.at_level(logging.WARNING, logger="donjon.steward"):
        r = s.client.post("/", content=csr, headers=PKCS10)
    assert r.status_code == status, r.text
    assert r.json()["check"] == failed
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "donjon.steward"]
    refused = [line for line in lines if line.startswith("refused attestation:")]
    assert len(refused) == 1, lines
    assert refused[0].startswith(f"refused attestation: platform=unknown reason={failed} ")
    assert _verdicts(s) == {("unknown", "refused", failed): 1.0}
    assert [(x.platform, x.reason) for x in s.steward.store.rejections()] == [("unknown", failed)]


def test_the_steward_says_unknown_even_if_a_verifier_names_a_platform_without_a_csr(
    start_steward: StewardFactory,
) -> None:
    """A verifier with the old default ("nil" for an unparsed CSR) is not believed."""
    inner = FakeVerifier()

    def old_default(csr_der: bytes, **kwargs: Any) -> FakeVerdict:
        verdict: FakeVerdict = inner(csr_der, **kwargs)
        return replace(verdict, platform="nil") if verdict.csr is None else verdict

    s = start_steward(verifier=old_default)
    assert s.client.post("/", content=GARBAGE, headers=PKCS10).status_code == 400
    assert _verdicts(s) == {("unknown", "refused", "csr-parse"): 1.0}
    assert [x.platform for x in s.steward.store.rejections()] == ["unknown"]


# --- /metrics: reasons and per-route latency ------------------------------------------------


def test_each_refusal_increments_its_own_reason(start_steward: StewardFactory) -> None:
    s = start_steward(policy=FakePolicy(allow_nil=False))
    assert _verdicts(s) == {}
    assert s.client.post("/", content=make_csr(), headers=PKCS10).status_code == 403
    assert _verdicts(s) == {("nil", "refused", "platform-allowed"): 1.0}
    assert s.client.post("/v1/attest", content=make_csr(), headers=PKCS10).status_code == 403
    assert s.client.post("/", content=_tampered_csr(), headers=PKCS10).status_code == 401
    assert s.client.post("/", content=GARBAGE, headers=PKCS10).status_code == 400
    assert _verdicts(s) == {
        ("nil", "refused", "platform-allowed"): 2.0,
        ("unknown", "refused", "csr-signature"): 1.0,
        ("unknown", "refused", "csr-parse"): 1.0,
    }


def test_accepted_verdicts_count_without_a_reason(start_steward: StewardFactory) -> None:
    s = start_steward()
    key = make_key(ec.SECP384R1())
    assert s.client.post("/", content=make_csr(key), headers=PKCS10).status_code == 200
    assert _verdicts(s) == {("nil", "accepted", ""): 1.0}


def test_latency_histograms_exist_per_route(start_steward: StewardFactory) -> None:
    s = start_steward()
    s.client.post("/", content=make_csr(), headers=PKCS10)
    s.client.post("/v1/attest", content=GARBAGE, headers=PKCS10)
    s.client.get("/v1/ca")
    s.client.get("/v1/crl")
    s.client.get("/v1/certificates/abcdef", headers={"Authorization": "Bearer s3cret-token"})
    s.client.get("/no/such/route")
    text = s.client.get("/metrics").text
    counts = {
        dict(labels)["route"]: value
        for labels, value in _samples(text, "donjon_steward_request_seconds_count").items()
    }
    # /metrics itself is observed after its body is rendered, so it is not in this scrape.
    assert counts == {
        "/": 1.0,
        "/v1/attest": 1.0,
        "/v1/ca": 1.0,
        "/v1/crl": 1.0,
        "/v1/certificates/{serial}": 1.0,
        "other": 1.0,
    }
    requests = _samples(text, "donjon_steward_requests_total")
    assert requests[(("method", "POST"), ("route", "/v1/attest"), ("status", "400"))] == 1.0
    assert requests[(("method", "GET"), ("route", "other"), ("status", "404"))] == 1.0
