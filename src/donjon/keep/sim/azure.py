"""A simulated Azure paravisor: make a TPM (swtpm) look like an Azure CVM's vTPM.

It does what the HCL does at boot, with the simulator's SNP hierarchy in the
place of AMD's: persist an RSA-2048 attestation key at ``0x81000003``, write
runtime claims naming it, have the simulated VCEK sign an SNP report whose
report_data is SHA-256 of those claims, and store the HCL report in NV
``0x01400001``. A Keep on the ``azure`` platform then runs the real TPM protocol
against it; a Steward accepts the result only through ``[sim] trust``, and
labels it development.

:func:`thim_answer` is what Azure's THIM endpoint would serve for that chip.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation.azure.hcl import AK_HANDLE, NV_INDEX, HardwareKind, build_hcl_report
from donjon.attestation.azure.runtime import runtime_claims_json
from donjon.keep.platforms.tpm import Tpm, TpmError
from donjon.keep.sim.report import GuestIdentity, make_report
from donjon.keep.sim.state import SimState

#: The simulated paravisor's launch measurement (a real one is Azure's HCL firmware).
SIM_HCL_MEASUREMENT = hashlib.sha384(b"donjon simulated Azure paravisor").digest()


@dataclass(frozen=True)
class VmSettings:
    """The VM configuration the simulated paravisor reports in its runtime claims."""

    console_enabled: bool = False
    secure_boot: bool = True
    tpm_enabled: bool = True
    vm_unique_id: str = "D0D0D0D0-0000-4000-8000-000000000001"


def ensure_ak(tpm: Tpm) -> rsa.RSAPublicKey:
    """The AK at 0x81000003, created if the TPM has none."""
    try:
        return tpm.rsa_public(AK_HANDLE)
    except TpmError:
        return tpm.create_ak(AK_HANDLE)


def install_hcl_report(tpm: Tpm, report: bytes) -> None:
    """Write ``report`` into NV 0x01400001, replacing what is there."""
    if tpm.nv_size(NV_INDEX) is not None:
        tpm.nv_undefine(NV_INDEX)
    tpm.nv_define_and_write(NV_INDEX, report)


def snp_hcl_report(
    state: SimState, ak: rsa.RSAPublicKey, settings: VmSettings = VmSettings()
) -> bytes:
    """An HCL report whose SNP report, signed by the simulated VCEK, binds claims naming ``ak``."""
    claims = runtime_claims_json(
        ak=ak,
        console_enabled=settings.console_enabled,
        secure_boot=settings.secure_boot,
        tpm_enabled=settings.tpm_enabled,
        vm_unique_id=settings.vm_unique_id,
    )
    report_data = hashlib.sha256(claims).digest() + bytes(32)
    guest = GuestIdentity(measurement=SIM_HCL_MEASUREMENT)
    report = make_report(state.config, state.vcek_key, guest, report_data)
    return build_hcl_report(HardwareKind.SNP, report, claims)


def provision(tpm: Tpm, state: SimState, settings: VmSettings = VmSettings()) -> bytes:
    """Boot the simulated paravisor on ``tpm``: AK and HCL report in place; the report."""
    report = snp_hcl_report(state, ensure_ak(tpm), settings)
    install_hcl_report(tpm, report)
    return report


def thim_answer(state: SimState) -> dict[str, Any]:
    """What THIM serves for the simulated chip: its VCEK, then ASK and ARK (PEM)."""
    vcek, ask, ark = state.chain
    return {
        "vcekCert": vcek.public_bytes(Encoding.PEM).decode(),
        "certificateChain": (ask.public_bytes(Encoding.PEM) + ark.public_bytes(Encoding.PEM))
        .decode(),
        "tcbm": f"{state.config.tcb.raw:016X}",
    }
