"""Policies for the vector tests, and the one fact they share about revocation."""

from __future__ import annotations

from pathlib import Path

from attest_fakes import VERIFY_AT, at

from donjon.attestation import Policy

MILAN_VLEK = "snp-milan-v3-vlek-trustee"
#: nextUpdate of the only Milan CRL in the vectors (amd-roots/crl_milan_2022-05-09.der).
MILAN_CRL_NEXT_UPDATE = at("2023-05-09T23:00:00Z")
#: After that instant no current Milan CRL exists in the vectors, so a test that verifies
#: later must accept, explicitly, that revocation is not checked.
STALE_CRL_OK = 'crl = "if-available"'


#: These tests judge evidence, not whose workload it is: their [snp] sections opt into
#: accepting any workload explicitly (test_attest_rules.py tests the refusal without it).
ANY_WORKLOAD = "accept_any_workload = true"


def policy(text: str = "[snp]\n") -> Policy:
    """A policy whose [snp] section (the default one) accepts any workload explicitly."""
    text = text.replace("[snp]", f"[snp]\n{ANY_WORKLOAD}", 1)
    return Policy.from_toml(text, source="test-policy.toml", base_dir=Path("."))


def stale_ok(extra: str = "") -> Policy:
    """An [snp] policy that knowingly accepts a stale Milan CRL, plus ``extra`` lines."""
    return policy(f"[snp]\n{STALE_CRL_OK}\n{extra}")


def vector_policy(vid: str, *, crl_line: bool = True) -> Policy:
    """What each vector needs; ``crl = "if-available"`` where its CRL is stale at its time."""
    lines = ["[snp]"]
    if crl_line and at(VERIFY_AT[vid]) > MILAN_CRL_NEXT_UPDATE:
        lines.append(STALE_CRL_OK)
    if vid == MILAN_VLEK:
        lines.append("vmpl = 1")  # the AWS report was requested at VMPL 1 (expected.json)
    if vid == "snp-milan-v2-go-sev-guest":
        lines.append("allow_debug = true")  # its guest policy 0xb0000 has DEBUG set
    return policy("\n".join(lines))
