"""``[nitro]``: which enclave images (PCRs) may get a certificate, and whether debug may.

Example::

    [nitro]
    pcr0 = ["d265a83f..."]     # enclave image file (EIF) measurement
    pcr1 = ["bcdf05fe..."]     # Linux kernel and bootstrap
    pcr2 = ["e4f634d2..."]     # application
    pcr3 = ["..."]             # IAM role of the parent instance
    pcr4 = ["..."]             # parent instance ID
    pcr8 = ["97c5395a..."]     # the certificate that signed the EIF
    allow_debug = false        # all-zero PCRs: a debug-mode enclave (the default refuses it)
    allowed_workloads = ["<sha256 of main.wasm>"]

Each PCR key is a list of allowed 48-byte values; an absent key does not
constrain that PCR.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from donjon.attestation.policytoml import SectionReader
from donjon.attestation.rules import RULE_KEYS, TeeRules, parse_rules

#: The PCRs a policy may pin, and what they measure (AWS Nitro Enclaves User Guide).
PCR_MEANINGS = {
    0: "enclave image file",
    1: "Linux kernel and bootstrap",
    2: "application",
    3: "IAM role of the parent instance",
    4: "instance ID of the parent instance",
    8: "enclave image signing certificate",
}
#: AWS publishes no TCB for the Nitro hypervisor: a result's status says it was not appraised.
NITRO_TCB_STATUSES = frozenset({"NotAppraised"})
NITRO_KEYS = RULE_KEYS | {f"pcr{i}" for i in PCR_MEANINGS} | {"allow_debug"}


@dataclass(frozen=True)
class NitroPolicy:
    pcrs: Mapping[int, frozenset[bytes]] = field(default_factory=dict)
    allow_debug: bool = False
    rules: TeeRules = field(default_factory=TeeRules)

    def pinned(self) -> tuple[str, ...]:
        """PCR0-2 and 8 pin the enclave image; 3 and 4 pin only where it runs."""
        return tuple(f"pcr{i}" for i in (0, 1, 2, 8) if self.pcrs.get(i))


def parse_nitro(table: Mapping[str, Any], reader: SectionReader) -> NitroPolicy:
    reader.only(table, NITRO_KEYS)
    pcrs = {
        index: frozenset(reader.digests(table[f"pcr{index}"], 48, f"pcr{index}"))
        for index in PCR_MEANINGS
        if f"pcr{index}" in table
    }
    return NitroPolicy(
        pcrs=pcrs,
        allow_debug=reader.boolean(table, "allow_debug"),
        rules=parse_rules(table, reader),
    )
