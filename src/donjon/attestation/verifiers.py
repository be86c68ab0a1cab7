"""The default registry: every evidence format this Donjon verifies, by OID.

Adding a TEE adds its entry here (and its policy section in ``policy.py``).
"""

from __future__ import annotations

from donjon.attestation import oids
from donjon.attestation.azure.entry import AzureEntry
from donjon.attestation.azure.evidence import sniff_hcl_report, sniff_trustee
from donjon.attestation.cca.entry import CcaEntry, sniff_token
from donjon.attestation.dcap import layout as dcap_layout
from donjon.attestation.dcap.bare import sniff_base64, sniff_hex, sniff_raw
from donjon.attestation.devplatforms import DevEntry
from donjon.attestation.nitro.entry import NitroEntry, sniff_document, sniff_ratls
from donjon.attestation.registry import BareFormat, Registry
from donjon.attestation.sgx.entry import SgxEntry
from donjon.attestation.snp.entry import (
    SimEntry,
    SnpEntry,
    sniff_hex_report,
    sniff_report,
)
from donjon.attestation.tdx.entry import SimTdxEntry, TdxEntry


def default_registry() -> Registry:
    snp = SnpEntry()
    cca = CcaEntry()
    nitro = NitroEntry()
    azure = AzureEntry()
    tdx = TdxEntry()
    sgx = SgxEntry()
    tee_tdx, tee_sgx = dcap_layout.TEE_TDX, dcap_layout.TEE_SGX
    return Registry(
        {
            oids.ENARX_SNP: snp,
            oids.EVIDENCE_SIM: SimEntry(),
            oids.EVIDENCE_SIM_TDX: SimTdxEntry(),
            oids.EVIDENCE_NIL: DevEntry("nil"),
            oids.ENARX_KVM: DevEntry("kvm"),
            oids.ENARX_SGX: sgx,
            oids.EVIDENCE_TDX: tdx,
            oids.EVIDENCE_CCA: cca,
            oids.EVIDENCE_NITRO: nitro,
            oids.EVIDENCE_AZURE: azure,
        },
        bare=[
            BareFormat("Arm CCA attestation token", "cca", sniff_token, cca),
            BareFormat("AWS Nitro attestation document", "nitro", sniff_document, nitro),
            BareFormat("RA-TLS certificate carrying a Nitro document", "nitro", sniff_ratls, nitro),
            BareFormat("raw SNP report", "snp", sniff_report, snp),
            BareFormat("hex SNP report", "snp", sniff_hex_report, snp),
            BareFormat("Azure HCL report", "azure", sniff_hcl_report, azure),
            BareFormat("Trustee Azure vTPM evidence (JSON)", "azure", sniff_trustee, azure),
            BareFormat("raw TDX quote", "tdx", sniff_raw(tee_tdx), tdx),
            BareFormat("hex TDX quote", "tdx", sniff_hex(tee_tdx), tdx),
            BareFormat("base64 TDX quote", "tdx", sniff_base64(tee_tdx), tdx),
            BareFormat("raw SGX quote", "sgx", sniff_raw(tee_sgx), sgx),
            BareFormat("hex SGX quote", "sgx", sniff_hex(tee_sgx), sgx),
            BareFormat("base64 SGX quote", "sgx", sniff_base64(tee_sgx), sgx),
        ],
    )


#: Built once at import: entries hold no state, so sharing it is safe.
REGISTRY = default_registry()
