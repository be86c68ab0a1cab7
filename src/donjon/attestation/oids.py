"""Object identifiers of the evidence and claims extensions Donjon reads and writes.

Enarx's OIDs are kept so that Enarx Keeps and vectors work. Donjon's own
extensions sit under a UUID arc (``2.25.<uuid as integer>``, ITU-T X.667),
which needs no registration; ``docs/extensions.md`` documents each one.
"""

from __future__ import annotations

from cryptography.x509 import ObjectIdentifier

# Enarx (Profian private enterprise number 58270).
ENARX_ARC = "1.3.6.1.4.1.58270"
ENARX_KVM = ObjectIdentifier("1.3.6.1.4.1.58270.1.1")
ENARX_SGX = ObjectIdentifier("1.3.6.1.4.1.58270.1.2")
ENARX_SNP = ObjectIdentifier("1.3.6.1.4.1.58270.1.3")

# Donjon's arc: UUID 88a2aeb3-57c4-46e5-9fca-bca4df88bcfd.
DONJON_ARC = "2.25.181619702866105806351283801535139069181"

#: CSR and certificate extension: digests of main.wasm and the config, and the package name.
WORKLOAD_CLAIMS = ObjectIdentifier(f"{DONJON_ARC}.1")
#: Certificate extension written by the Steward: what was attested and how it was judged.
ATTESTATION_RESULT = ObjectIdentifier(f"{DONJON_ARC}.2")
#: CSR evidence extensions for platforms that Enarx never defined.
EVIDENCE_SIM = ObjectIdentifier(f"{DONJON_ARC}.3.1")
EVIDENCE_TDX = ObjectIdentifier(f"{DONJON_ARC}.3.2")
EVIDENCE_CCA = ObjectIdentifier(f"{DONJON_ARC}.3.3")
#: A Keep with no TEE at all says so explicitly, rather than sending nothing.
EVIDENCE_NIL = ObjectIdentifier(f"{DONJON_ARC}.3.4")
#: AWS Nitro Enclaves: ``SEQUENCE { document OCTET STRING }`` (docs/extensions.md).
EVIDENCE_NITRO = ObjectIdentifier(f"{DONJON_ARC}.3.5")
#: The simulated TEE's TDX product (under the sim arc): a TDX quote from a local root.
EVIDENCE_SIM_TDX = ObjectIdentifier(f"{DONJON_ARC}.3.1.2")
#: An Azure confidential VM: the paravisor's HCL report, a vTPM quote, and the hardware
#: report's collateral (``docs/extensions.md``).
EVIDENCE_AZURE = ObjectIdentifier(f"{DONJON_ARC}.3.7")

EVIDENCE_OIDS = frozenset(
    {
        ENARX_KVM,
        ENARX_SGX,
        ENARX_SNP,
        EVIDENCE_SIM,
        EVIDENCE_TDX,
        EVIDENCE_CCA,
        EVIDENCE_NIL,
        EVIDENCE_NITRO,
        EVIDENCE_SIM_TDX,
        EVIDENCE_AZURE,
    }
)
