"""Property fuzzing of every SGX/TDX parser: hostile bytes give a MalformedEvidenceError
(or a verdict), never another exception, and whatever parses serialises back exactly."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.attestation.dcap.collateral import parse_bundle, parse_qe_identity, parse_tcb_info
from donjon.attestation.dcap.pck import parse_sgx_extension
from donjon.attestation.dcap.quote import parse_quote
from donjon.attestation.dcap.store import IntelCollateralStore
from donjon.attestation.dcap.verify import DcapOptions, verify_quote
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.sgx.evidence import decode_enarx_sgx
from donjon.attestation.tdx.evidence import decode_tdx_evidence
from donjon.attestation.verdict import Checklist, Stop

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _real(path: str) -> bytes:
    """A real input to mutate ($DONJON_VECTORS or ../shared/vectors, as conftest looks)."""
    base = (
        os.environ.get("DONJON_VECTORS") or Path(__file__).resolve().parents[3] / "shared/vectors"
    )
    full = Path(base) / path
    if not full.is_file():
        pytest.skip(f"attestation vectors not found: {full} (set DONJON_VECTORS)")
    return full.read_bytes()


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Flips, truncations and insertions of ``seed``."""
    positions = st.integers(min_value=0, max_value=len(seed) - 1)
    flip = st.tuples(positions, st.integers(1, 255)).map(
        lambda pv: seed[: pv[0]] + bytes([seed[pv[0]] ^ pv[1]]) + seed[pv[0] + 1 :]
    )
    cut = positions.map(lambda p: seed[:p])
    insert = st.tuples(positions, st.binary(min_size=1, max_size=8)).map(
        lambda pb: seed[: pb[0]] + pb[1] + seed[pb[0] :]
    )
    return st.one_of(flip, cut, insert)


def _parses_or_refuses(parse: Any, data: bytes) -> Any:
    try:
        return parse(data)
    except MalformedEvidenceError:
        return None


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    for parse in (parse_quote, parse_sgx_extension, decode_tdx_evidence, decode_enarx_sgx):
        _parses_or_refuses(parse, data)
    for parse_json in (parse_tcb_info, parse_qe_identity):
        _parses_or_refuses(parse_json, data)
    _parses_or_refuses(lambda d: parse_bundle(d, "fuzz"), data)


@FUZZ
@given(st.data())
def test_mutated_quotes_parse_exactly_or_are_refused(data: st.DataObject) -> None:
    seed = _real("tdx/phala-dcap-qvl/tdx_quote_outdated.dat")
    mutated = data.draw(_mutations(seed))
    quote = _parses_or_refuses(parse_quote, mutated)
    if quote is not None:
        assert quote.to_bytes() == mutated


@FUZZ
@given(st.data())
def test_mutated_sgx_quotes_parse_exactly_or_are_refused(data: st.DataObject) -> None:
    seed = _real("sgx/phala-dcap-qvl/sgx_quote.dat")
    mutated = data.draw(_mutations(seed))
    quote = _parses_or_refuses(parse_quote, mutated)
    if quote is not None:
        assert quote.to_bytes() == mutated


_STORE = IntelCollateralStore()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_quotes_through_the_whole_pipeline(data: st.DataObject) -> None:
    """Verification of a hostile quote is a recorded refusal, never an escaping exception."""
    seed = _real("tdx/trustee/tdx_quote_4.dat")
    mutated = data.draw(_mutations(seed))
    checks = Checklist()
    try:
        verify_quote(
            mutated,
            store=_STORE,
            now=datetime(2025, 1, 1, tzinfo=UTC),
            checks=checks,
            options=DcapOptions(tcb_mode="if-available", crl_mode="if-available"),
        )
    except Stop:
        assert checks.error is not None
        assert checks.error.code != "verifier.internal", checks.error


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.data())
def test_mutated_collateral_json(data: st.DataObject) -> None:
    bundle = json.loads(_real("tdx/phala-dcap-qvl/tdx_quote_collateral.json"))
    tcb = json.loads(bundle["tcb_info"])
    key = data.draw(st.sampled_from(sorted(tcb)))
    tcb[key] = data.draw(_JSON)
    _parses_or_refuses(parse_tcb_info, json.dumps(tcb).encode())
    level = tcb.get("tcbLevels")
    if isinstance(level, list) and level and isinstance(level[0], dict):
        level[0][data.draw(st.sampled_from(["tcb", "tcbStatus", "tcbDate", "advisoryIDs"]))] = (
            data.draw(_JSON)
        )
        _parses_or_refuses(parse_tcb_info, json.dumps(tcb).encode())
    qe = json.loads(bundle["qe_identity"])
    qe[data.draw(st.sampled_from(sorted(qe)))] = data.draw(_JSON)
    _parses_or_refuses(parse_qe_identity, json.dumps(qe).encode())
    bundle[data.draw(st.sampled_from(sorted(bundle)))] = data.draw(_JSON)
    _parses_or_refuses(lambda d: parse_bundle(d, "fuzz"), json.dumps(bundle).encode())


@FUZZ
@given(st.data())
def test_mutated_pck_extension(data: st.DataObject) -> None:
    from cryptography import x509

    from donjon.attestation.dcap.pck import SGX_EXTENSION_OID, encode_sgx_extension
    from donjon.attestation.dcap.verify import split_pem_or_der

    quote = parse_quote(_real("tdx/phala-dcap-qvl/tdx_quote.dat"))
    leaf = split_pem_or_der(quote.qe.certification.data)[0]
    seed = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    der = seed.value.value  # type: ignore[attr-defined]
    parsed = _parses_or_refuses(parse_sgx_extension, data.draw(_mutations(der)))
    if parsed is not None:
        assert parse_sgx_extension(encode_sgx_extension(parsed)) == parsed
