"""What pins a guest (issue 9 §3, second review): a value that whoever launches the
guest chooses, or that the guest writes itself, names no guest.

A TEE section must name the guest's code: its launch measurement, or a key of the
owner's that signed it. The host that runs the Keeps can also launch a guest of its own,
with any code, on the same genuine hardware, and give it the launch data it likes:
SEV-SNP HOST_DATA (the hypervisor's, at SNP_LAUNCH_FINISH), an ID block signed by a key
of its own (IMAGE_ID), TDX MRCONFIGID/MROWNER/MROWNERCONFIG (the VMM's, at TD
creation), an SGX CONFIGID (the loader's, at ECREATE), a CCA Realm Personalization
Value (the host's, at realm creation), an Azure VM id (the cloud's). Registers that the
guest extends at run time (TDX RTMRs, CCA REMs) reach any recorded value in a guest
whose launch measurement nobody pinned. Each of these narrows; none pins.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attest_fakes import at

from donjon.attestation import Policy, PolicyViolationError, TrustStore, verify_csr

D48 = "ab" * 48


def load(text: str, tmp_path: Path) -> Policy:
    return Policy.from_toml(text, source="p.toml", base_dir=tmp_path)


@pytest.mark.parametrize(
    ("section", "key_line"),
    [
        ("snp", f'host_data = ["{"02" * 32}"]'),
        ("snp", f'image_id = ["{"01" * 16}"]'),
        ("snp", f'family_id = ["{"01" * 16}"]'),
        ("tdx", f'mrconfigid = ["{D48}"]'),
        ("tdx", f'mrowner = ["{D48}"]'),
        ("tdx", f'mrownerconfig = ["{D48}"]'),
        ("tdx", f'rtmr1 = ["{D48}"]'),
        ("sgx", f'config_id = ["{"cd" * 64}"]'),
        ("cca", f'personalization_value = ["{"22" * 64}"]'),
        ("cca", f'rem0 = ["{"11" * 64}"]'),
        ("azure", 'vm_unique_id = ["6332533d-5649-4d02-8aa7-8f64b7c3ee21"]'),
    ],
)
def test_launch_data_the_host_chooses_pins_no_guest(
    section: str, key_line: str, tmp_path: Path
) -> None:
    policy = load(f"[{section}]\n{key_line}\n", tmp_path)
    assert policy.tees[section].pinned() == ()
    (message,) = policy.unpinned()  # so `steward serve` refuses to start with it
    assert message.startswith(f"[{section}] pins nothing")


@pytest.mark.parametrize(
    ("text", "pins"),
    [
        (f'[snp]\nhash = ["{D48}"]\nhost_data = ["{"02" * 32}"]\n', ("measurement",)),
        (f'[snp]\nid_key_digest = ["{D48}"]\nimage_id = ["{"01" * 16}"]\n', ("id_key_digest",)),
        (f'[tdx]\nmrtd = ["{D48}"]\nrtmr1 = ["{D48}"]\nmrowner = ["{D48}"]\n', ("mrtd", "rtmr1")),
        (f'[sgx]\nsigner = ["{"cd" * 32}"]\nconfig_id = ["{"cd" * 64}"]\n', ("signer",)),
        (f'[cca]\nrim = ["{"00" * 64}"]\nrem0 = ["{"11" * 64}"]\n', ("rim", "rem0")),
    ],
)
def test_they_still_narrow_beside_a_pin(text: str, pins: tuple[str, ...], tmp_path: Path) -> None:
    policy = load(text, tmp_path)
    (section,) = policy.tees.values()
    assert section.pinned() == pins
    assert policy.unpinned() == []


@pytest.mark.parametrize("key", ["host_data", "image_id"])
def test_a_guest_nobody_named_is_refused_whatever_launch_data_the_host_gave_it(
    key: str, vectors: Path, amd_trust: TrustStore, vector_by_id: Callable[[str], Any]
) -> None:
    # The genuine Enarx CSR stands for a guest the host launched: its measurement is in
    # no policy, its HOST_DATA and IMAGE_ID are what the host chose (expected.json).
    vid = "snp-milan-v2-steward-csr"
    chosen = vector_by_id(vid)["computed"]["report"][key]
    csr = (vectors / "enarx-steward/snp_milan.signed.crl.csr").read_bytes()
    policy = Policy.from_toml(f'[snp]\n{key} = ["{chosen}"]\n', source="p", base_dir=Path("."))
    verdict = verify_csr(csr, policy=policy, trust=amd_trust, now=at("2023-02-01T00:00:00Z"))
    assert not verdict.accepted
    assert verdict.reason == "policy.pinned"
    assert isinstance(verdict.error, PolicyViolationError)
    assert verdict.error.code == "policy.unpinned"
    # The value itself matched: it is not what was wrong.
    assert next(c for c in verdict.checks if c.id == f"policy.{key}").passed
