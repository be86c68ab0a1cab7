"""The default registry: every evidence format this Donjon verifies, by OID.

Adding a TEE adds its entry here (and its policy section in ``policy.py``).
"""

from __future__ import annotations

from donjon.attestation import oids
from donjon.attestation.cca.entry import CcaEntry, sniff_token
from donjon.attestation.devplatforms import DevEntry, UnsupportedEntry
from donjon.attestation.nitro.entry import NitroEntry, sniff_document, sniff_ratls
from donjon.attestation.registry import BareFormat, Registry
from donjon.attestation.snp.entry import (
    SimEntry,
    SnpEntry,
    sniff_hcl_report,
    sniff_hex_report,
    sniff_report,
)


def default_registry() -> Registry:
    snp = SnpEntry()
    cca = CcaEntry()
    nitro = NitroEntry()
    return Registry(
        {
            oids.ENARX_SNP: snp,
            oids.EVIDENCE_SIM: SimEntry(),
            oids.EVIDENCE_NIL: DevEntry("nil"),
            oids.ENARX_KVM: DevEntry("kvm"),
            oids.ENARX_SGX: UnsupportedEntry("sgx"),
            oids.EVIDENCE_TDX: UnsupportedEntry("tdx"),
            oids.EVIDENCE_CCA: cca,
            oids.EVIDENCE_NITRO: nitro,
        },
        bare=[
            BareFormat("Arm CCA attestation token", "cca", sniff_token, cca),
            BareFormat("AWS Nitro attestation document", "nitro", sniff_document, nitro),
            BareFormat("RA-TLS certificate carrying a Nitro document", "nitro", sniff_ratls, nitro),
            BareFormat("raw SNP report", "snp", sniff_report, snp),
            BareFormat("hex SNP report", "snp", sniff_hex_report, snp),
            BareFormat("Azure HCL report (its SNP report)", "snp", sniff_hcl_report, snp),
        ],
    )


#: Built once at import: entries hold no state, so sharing it is safe.
REGISTRY = default_registry()
