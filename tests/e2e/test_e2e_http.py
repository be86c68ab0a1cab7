"""The demo's flow, driven as a library: every step must pass and report its timing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from donjon.cli.demo import run_demo

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_flow(build_wasm: Callable[[Path], Path]) -> None:
    source = REPO / "examples" / "http" / "main.c"
    wasm = build_wasm(source)  # skips with the reason when no C toolchain is installed
    messages: list[str] = []
    outcome = run_demo(example=source.parent, keep_going=False, progress=messages.append)
    assert outcome.ok, [(s.name, s.detail) for s in outcome.steps if not s.ok]
    assert len(messages) == len(outcome.steps) == 6
    assert outcome.claims["platform"] == "sim" and outcome.claims["development"] is True
    assert outcome.claims["workload_sha256"] == hashlib.sha256(wasm.read_bytes()).hexdigest()
    assert "<h1>Hello from a Donjon Keep</h1>" in outcome.page
    assert set(outcome.timings) == {
        "keep_start_to_workload_s",
        "keep_start_to_certificate_s",
        "attestation_round_trip_s",
        "tls_handshake_s",
        "first_tls_response_s",
    }
    assert all(value > 0 for value in outcome.timings.values())
    # The certificate comes before the workload runs, and the round trip inside that.
    timings = outcome.timings
    assert timings["attestation_round_trip_s"] < timings["keep_start_to_certificate_s"]
    assert timings["keep_start_to_certificate_s"] <= timings["keep_start_to_workload_s"]


@pytest.mark.slow
def test_demo_flow_on_tdx(build_wasm: Callable[[Path], Path]) -> None:
    """``donjon demo --tee tdx``: TDX quotes v4 and their collateral through the whole flow."""
    source = REPO / "examples" / "http" / "main.c"
    wasm = build_wasm(source)
    outcome = run_demo(
        example=source.parent, keep_going=False, progress=lambda _: None, tee="tdx"
    )
    assert outcome.ok, [(s.name, s.detail) for s in outcome.steps if not s.ok]
    assert "Intel TDX" in outcome.steps[0].name
    claims = outcome.claims
    assert claims["platform"] == "sim" and claims["development"] is True
    assert claims["product"].startswith("TDX FMSPC ")
    # The simulated Intel publishes CRLs and an UpToDate TCB level for its platform.
    assert claims["tcb_status"] == "UpToDate"
    assert claims["advisories"] == "none"
    assert claims["tcb"].startswith("tee_tcb_svn=0x")
    assert claims["workload_sha256"] == hashlib.sha256(wasm.read_bytes()).hexdigest()
    assert "<h1>Hello from a Donjon Keep</h1>" in outcome.page


def test_demo_names_a_missing_example(tmp_path: Path) -> None:
    outcome = run_demo(example=tmp_path, keep_going=False, progress=lambda _: None)
    assert not outcome.ok
    build = outcome.steps[1]
    assert build.ok is False and "no main.c or .wasm file there" in build.detail
    # Without --keep-going the later steps are skipped, but everything is still stopped.
    assert [s.ok for s in outcome.steps] == [True, False, None, None, None, True]


@pytest.mark.slow
def test_keep_going_runs_every_step(tmp_path: Path) -> None:
    outcome = run_demo(example=tmp_path, keep_going=True, progress=lambda _: None)
    results = {s.name: s for s in outcome.steps}
    assert all(s.ok is not None for s in outcome.steps)
    keep = results["start the Keep (attest, get a certificate, serve)"]
    assert keep.ok is False and "needs the result of an earlier step" in keep.detail
