"""Fixtures for the attestation tests: vector loading, trust stores, a fake AMD PKI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attest_fakes import FakeAmd, SnpVector, make_amd

from donjon.attestation import TrustStore
from donjon.attestation.x509util import load_certificate


@pytest.fixture(scope="session")
def snp_vectors(expected: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in expected["vectors"] if v["platform"] == "sev-snp"]


@pytest.fixture(scope="session")
def load_report(vectors: Path) -> Callable[[dict[str, Any]], bytes]:
    def load(vector: dict[str, Any]) -> bytes:
        raw: bytes = (vectors / vector["evidence"]).read_bytes()
        if vector["evidence"].endswith(".hex"):
            raw = bytes.fromhex(raw.decode().strip())
        if vector["evidence"].endswith("hcl-report.bin"):
            raw = raw[32 : 32 + 1184]  # the HCL header is 32 bytes (expected.json notes)
        return raw

    return load


@pytest.fixture(scope="session")
def load_vcek(vectors: Path) -> Callable[[dict[str, Any]], Any]:
    def load(vector: dict[str, Any]) -> Any:
        return load_certificate((vectors / vector["endorsement_cert"]).read_bytes())

    return load


@pytest.fixture(scope="session")
def amd_trust(vectors: Path) -> TrustStore:
    return TrustStore.offline(vectors / "amd-roots")


@pytest.fixture(scope="session")
def fake_milan() -> FakeAmd:
    return make_amd("Milan")


@pytest.fixture(scope="session")
def vector_by_id(snp_vectors: list[dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    table = {v["id"]: v for v in snp_vectors}
    return lambda vid: table[vid]


@pytest.fixture(scope="session")
def json_expected(vectors: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors / "expected.json").read_text())
    return data


@pytest.fixture(scope="session")
def snp_vector(
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], Any],
) -> Callable[[str], SnpVector]:
    """An SNP vector by id, with its report and VCEK (or VLEK) loaded."""

    def load(vid: str) -> SnpVector:
        data = vector_by_id(vid)
        return SnpVector(data, load_report(data), load_vcek(data))

    return load
