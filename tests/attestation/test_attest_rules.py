"""The rules every TEE shares (rules.py), [freshness], and the claims' nonce field."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.attestation import Policy, TrustStore, load_policy, verify_csr
from donjon.attestation.claims import ClaimsError, WorkloadClaims
from donjon.attestation.errors import FreshnessError, PolicyError, PolicyViolationError
from donjon.attestation.policytoml import SectionReader
from donjon.attestation.rules import TeeRules, apply_rules, check_freshness, parse_freshness
from donjon.attestation.verdict import Checklist

# Version-1 claims as a Donjon of the previous release wrote them (no optional fields):
# wasm = 32 x 0x61, no config, package "p".
OLD_CLAIMS_DER = bytes.fromhex(
    "302a0201010420616161616161616161616161616161616161616161616161616161616161616104000c0170"
)
WASM = b"\x61" * 32


def test_claims_of_the_previous_release_still_parse() -> None:
    claims = WorkloadClaims.from_der(OLD_CLAIMS_DER)
    assert claims.wasm_sha256 == WASM and claims.config_sha256 == b""
    assert claims.package_name == "p"
    assert claims.nonce is None and claims.package_sha256 is None
    assert claims.to_der() == OLD_CLAIMS_DER  # and are written the same way


def test_the_nonce_and_package_digest_round_trip_as_context_tags() -> None:
    claims = WorkloadClaims(WASM, b"", "p", nonce=b"\x6e" * 32, package_sha256=b"\x63" * 32)
    der = claims.to_der()
    # [0] IMPLICIT OCTET STRING and [1] IMPLICIT OCTET STRING after the package name.
    assert bytes.fromhex("8020" + "6e" * 32) in der
    assert der.endswith(bytes.fromhex("8120" + "63" * 32))
    assert WorkloadClaims.from_der(der) == claims


@pytest.mark.parametrize("size", [0, 16, 31, 65, 128])
def test_a_nonce_of_the_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(ClaimsError, match=r"nonce must be 32\.\.64 bytes"):
        WorkloadClaims(WASM, b"", "p", nonce=b"\x01" * size)
    # and in DER from someone else: [0] with 16 bytes.
    der = bytearray(OLD_CLAIMS_DER)
    der += bytes.fromhex("8010") + b"\x01" * 16
    der[1] = len(der) - 2
    with pytest.raises(ClaimsError, match="nonce"):
        WorkloadClaims.from_der(bytes(der))


def test_an_unknown_tag_after_the_package_name_is_refused() -> None:
    der = bytearray(OLD_CLAIMS_DER)
    der += bytes.fromhex("8401ff")  # [4]: a field this Donjon does not know
    der[1] = len(der) - 2
    with pytest.raises(ClaimsError):
        WorkloadClaims.from_der(bytes(der))


# --- the shared rules ---------------------------------------------------------------------------


def _apply(rules: TeeRules, **kwargs: object) -> Checklist:
    checks = Checklist()
    args: dict[str, object] = {
        "section": "snp",
        "pinned": (),
        "tcb_status": "NotAppraised",
        "default_statuses": frozenset({"MeetsMinimum", "NotAppraised"}),
        "vendor_advisories": (),
        "workload": WorkloadClaims(WASM, b"", "p"),
    }
    args.update(kwargs)
    apply_rules(rules, checks=checks, **args)  # type: ignore[arg-type]
    return checks


def test_a_section_that_pins_nothing_is_refused() -> None:
    checks = _apply(TeeRules())
    assert checks.first_failed == "policy.pinned"
    assert isinstance(checks.error, PolicyViolationError)
    assert checks.error.code == "policy.unpinned"
    assert "accept_any_workload = true" in checks.error.message


@pytest.mark.parametrize(
    ("rules", "pinned", "reason"),
    [
        (TeeRules(accept_any_workload=True), (), "accept_any_workload = true"),
        (TeeRules(), ("measurement",), "pinned by measurement"),
        (TeeRules(allowed_workloads=frozenset({WASM})), ("signer",), "pinned by signer"),
    ],
)
def test_what_counts_as_pinned(rules: TeeRules, pinned: tuple[str, ...], reason: str) -> None:
    checks = _apply(rules, pinned=pinned)
    assert checks.passed
    assert reason in next(c.reason for c in checks.checks if c.id == "policy.pinned")


@pytest.mark.parametrize(
    "rules",
    [
        TeeRules(allowed_workloads=frozenset({WASM})),
        TeeRules(allowed_packages=frozenset({b"\x63" * 32})),
        TeeRules(allowed_workloads=frozenset({WASM}), allowed_packages=frozenset({b"\x63" * 32})),
    ],
)
def test_what_a_guest_claims_pins_nothing(rules: TeeRules) -> None:
    # A host can launch a guest of its own in the same TEE, with any code, and have it
    # claim the allowed workload and package: the claims are the guest's own words.
    rogue = WorkloadClaims(WASM, b"", "rogue", package_sha256=b"\x63" * 32)
    checks = _apply(rules, pinned=(), workload=rogue)
    assert checks.first_failed == "policy.pinned"
    assert isinstance(checks.error, PolicyViolationError)
    assert checks.error.code == "policy.unpinned"
    assert "only narrow what it may claim" in checks.error.message


def test_tcb_status_and_advisories_fail_closed() -> None:
    open_rules = TeeRules(accept_any_workload=True)
    status = _apply(open_rules, tcb_status="OutOfDate", default_statuses=frozenset({"UpToDate"}))
    assert status.first_failed == "policy.tcb_status"
    chosen = TeeRules(accept_any_workload=True, tcb_statuses=frozenset({"OutOfDate"}))
    assert _apply(chosen, tcb_status="OutOfDate").passed
    advisory = _apply(open_rules, vendor_advisories=("INTEL-SA-00615",))
    assert advisory.first_failed == "policy.advisories"
    assert "INTEL-SA-00615" in str(advisory.error)
    allowed = TeeRules(accept_any_workload=True, allowed_advisories=frozenset({"INTEL-SA-00615"}))
    assert _apply(allowed, vendor_advisories=("INTEL-SA-00615",)).passed


def test_every_rule_runs_so_every_reason_is_shown() -> None:
    rules = TeeRules(allowed_workloads=frozenset({b"\x00" * 32}))
    checks = _apply(rules, pinned=("measurement",), tcb_status="Bad", vendor_advisories=("X",))
    failed = [c.id for c in checks.checks if not c.passed]
    assert failed == ["policy.workload", "policy.tcb_status", "policy.advisories"]


# --- freshness ----------------------------------------------------------------------------------


def _fresh(text: str) -> object:
    import tomllib

    return parse_freshness(tomllib.loads(text), SectionReader("p.toml", "freshness"))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('donjon = "maybe"', '[freshness] donjon: must be "require" or "optional"'),
        ('enarx = "yes"', '[freshness] enarx: must be "accept" or "refuse"'),
        ('nonce_lifetime = "1s"', "between 5 seconds and 1 hour"),
        ('nonce_lifetime = "2h"', "between 5 seconds and 1 hour"),
        ("nonce_lifetime = 120", 'expected a duration such as "120s"'),
        ("fresh = true", "[freshness] fresh: unknown key"),
    ],
)
def test_bad_freshness_settings_are_refused(text: str, needle: str) -> None:
    with pytest.raises(PolicyError) as raised:
        _fresh(text)
    assert needle in raised.value.message


def test_freshness_outcomes() -> None:
    from donjon.attestation.rules import FreshnessPolicy

    strict = FreshnessPolicy()
    with_nonce = WorkloadClaims(WASM, b"", "p", nonce=b"\x01" * 32)
    checks = Checklist()
    assert check_freshness(strict, with_nonce, checks) is False and checks.passed
    checks = Checklist()
    assert check_freshness(strict, WorkloadClaims(WASM, b"", "p"), checks) is True
    assert isinstance(checks.error, FreshnessError)
    assert checks.error.code == "freshness.nonce_missing"
    checks = Checklist()
    assert check_freshness(strict, None, checks) is True and checks.passed  # Enarx: accepted
    checks = Checklist()
    check_freshness(FreshnessPolicy(enarx="refuse"), None, checks)
    assert checks.error is not None and checks.error.code == "freshness.enarx_refused"
    checks = Checklist()
    check_freshness(FreshnessPolicy(donjon="optional"), WorkloadClaims(WASM, b"", "p"), checks)
    assert checks.passed


# --- the policy loader --------------------------------------------------------------------------


def test_unpinned_sections_are_named_with_what_to_pin(tmp_path: Path) -> None:
    policy = Policy.from_toml("[snp]\nallow_debug = false\n", source="p.toml", base_dir=tmp_path)
    (message,) = policy.unpinned()
    assert message.startswith("[snp] pins nothing (no measurement/hash, signer or id_key_digest")
    opted = Policy.from_toml("[snp]\naccept_any_workload = true\n", source="p", base_dir=tmp_path)
    assert opted.unpinned() == [] and opted.accepting_any() == ["snp"]
    pinned = Policy.from_toml(
        '[snp]\naccept_any_workload = true\nhash = ["' + "ab" * 48 + '"]\n',
        source="p",
        base_dir=tmp_path,
    )
    assert pinned.accepting_any() == []  # pinned anyway: nothing to shout about


def test_a_section_with_only_allowed_workloads_is_unpinned_and_says_why(tmp_path: Path) -> None:
    text = '[snp]\nallowed_workloads = ["' + "01" * 32 + '"]\n'
    policy = Policy.from_toml(text, source="p.toml", base_dir=tmp_path)
    (message,) = policy.unpinned()
    assert message.startswith("[snp] pins nothing (no measurement/hash, signer or id_key_digest)")
    assert "(allowed_workloads only narrow what a guest claims)" in message
    opted = Policy.from_toml(
        text + "accept_any_workload = true\n", source="p.toml", base_dir=tmp_path
    )
    # Opting in is what the owner does; it is shouted about at every start.
    assert opted.unpinned() == [] and opted.accepting_any() == ["snp"]


def test_the_enarx_policy_pins_snp_and_keeps_its_meaning(vectors: Path) -> None:
    policy = load_policy(vectors / "enarx-steward/steward_testdata_policy.toml")
    assert policy.unpinned() == [] and policy.accepting_any() == []
    assert policy.freshness.enarx == "accept"


def test_the_enarx_csr_is_refused_when_the_owner_refuses_unfresh_evidence(
    vectors: Path, tmp_path: Path
) -> None:
    from attest_fakes import at

    text = (vectors / "enarx-steward/steward_testdata_policy.toml").read_text()
    strict = Policy.from_toml(
        text + '\n[freshness]\nenarx = "refuse"\n', source="p", base_dir=tmp_path
    )
    csr = (vectors / "enarx-steward/snp_milan.signed.crl.csr").read_bytes()
    verdict = verify_csr(
        csr,
        policy=strict,
        trust=TrustStore.offline(vectors / "amd-roots"),
        now=at("2023-02-01T00:00:00Z"),
    )
    assert not verdict.accepted and verdict.reason == "freshness.nonce"
    assert verdict.error is not None and verdict.error.code == "freshness.enarx_refused"
