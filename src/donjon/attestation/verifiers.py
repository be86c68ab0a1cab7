"""The default registry: every evidence format this Donjon verifies, by OID.

Adding a TEE adds its entry here (and its policy section in ``policy.py``).
"""

from __future__ import annotations

from donjon.attestation import oids
from donjon.attestation.azure.entry import AzureEntry
from donjon.attestation.azure.evidence import sniff_hcl_report, sniff_trustee
from donjon.attestation.devplatforms import DevEntry, UnsupportedEntry
from donjon.attestation.registry import BareFormat, Registry
from donjon.attestation.snp.entry import (
    SimEntry,
    SnpEntry,
    sniff_hex_report,
    sniff_report,
)


def default_registry() -> Registry:
    snp = SnpEntry()
    azure = AzureEntry()
    return Registry(
        {
            oids.ENARX_SNP: snp,
            oids.EVIDENCE_SIM: SimEntry(),
            oids.EVIDENCE_NIL: DevEntry("nil"),
            oids.ENARX_KVM: DevEntry("kvm"),
            oids.ENARX_SGX: UnsupportedEntry("sgx"),
            oids.EVIDENCE_TDX: UnsupportedEntry("tdx"),
            oids.EVIDENCE_CCA: UnsupportedEntry("cca"),
            oids.EVIDENCE_AZURE: azure,
        },
        bare=[
            BareFormat("raw SNP report", "snp", sniff_report, snp),
            BareFormat("hex SNP report", "snp", sniff_hex_report, snp),
            BareFormat("Azure HCL report", "azure", sniff_hcl_report, azure),
            BareFormat("Trustee Azure vTPM evidence (JSON)", "azure", sniff_trustee, azure),
        ],
    )


#: Built once at import: entries hold no state, so sharing it is safe.
REGISTRY = default_registry()
