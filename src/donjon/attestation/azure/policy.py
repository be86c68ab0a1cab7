"""``[azure]``: what an Azure confidential VM must show, beyond its hardware report.

Example::

    [azure]
    allowed_workloads = ["<sha256 of main.wasm>"]
    pcrs = { 4 = "<sha256 hex>", 7 = "<sha256 hex>", 11 = "<sha256 hex>" }
    secure_boot = true         # the VM must boot with Secure Boot (default true)
    tpm_enabled = true         # the runtime claims must say the vTPM is on (default true)
    allow_console = false      # a serial console is a way in (default: refused)
    vm_unique_id = ["6332533D-5649-4D02-8AA7-8F64B7C3EE21"]   # optional allow-list

    [azure.snp]                # every [snp] key, for the SNP report inside the HCL report
    measurement = "<sha384 hex>"

    [azure.tdx]                # every [tdx] key, for the TD quote (mrtd, rtmr0-3, collateral...)

The shared rules (``allowed_workloads``, ``accept_any_workload``, ...) sit in
``[azure]`` itself; ``[azure.snp]`` and ``[azure.tdx]`` only judge hardware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from donjon.attestation.policytoml import SectionReader
from donjon.attestation.rules import RULE_KEYS, TeeRules, parse_rules
from donjon.attestation.snp.policy import SnpPolicy, parse_snp
from donjon.attestation.tdx.policy import TdxPolicy, parse_tdx

PCR_COUNT = 24
PCR_SIZE = 32  # the SHA-256 bank
AZURE_KEYS = RULE_KEYS | {
    "pcrs",
    "secure_boot",
    "tpm_enabled",
    "allow_console",
    "vm_unique_id",
    "snp",
    "tdx",
}


@dataclass(frozen=True)
class AzurePolicy:
    #: PCR index -> the values it may have (any of them).
    pcrs: Mapping[int, frozenset[bytes]] = field(default_factory=dict)
    secure_boot: bool = True
    tpm_enabled: bool = True
    allow_console: bool = False
    vm_unique_id: frozenset[str] = frozenset()
    snp: SnpPolicy = field(default_factory=SnpPolicy)
    tdx: TdxPolicy = field(default_factory=TdxPolicy)
    rules: TeeRules = field(default_factory=TeeRules)

    def pinned(self) -> tuple[str, ...]:
        """Keys that pin the guest's code: expected PCRs, hardware measurements. The VM id
        is the cloud's (the host's) to give, so it narrows and pins nothing."""
        own = ("pcrs",) if self.pcrs else ()
        hardware = tuple(f"snp.{name}" for name in self.snp.pinned())
        hardware += tuple(f"tdx.{name}" for name in self.tdx.pinned())
        return own + hardware


def parse_azure(table: Mapping[str, Any], reader: SectionReader) -> AzurePolicy:
    """An ``[azure]`` table, strictly."""
    reader.only(table, AZURE_KEYS)
    values: dict[str, Any] = {"rules": parse_rules(table, reader)}
    if "pcrs" in table:
        values["pcrs"] = _pcrs(table["pcrs"], reader)
    for key in ("secure_boot", "tpm_enabled"):
        values[key] = reader.boolean(table, key, default=True)
    values["allow_console"] = reader.boolean(table, "allow_console")
    if "vm_unique_id" in table:
        ids = reader.strings(table["vm_unique_id"], "vm_unique_id")
        values["vm_unique_id"] = frozenset(i.upper() for i in ids)
    if "snp" in table:
        values["snp"] = parse_snp(_hardware(table, "snp", reader), _sub(reader, "snp"))
    if "tdx" in table:
        values["tdx"] = parse_tdx(_hardware(table, "tdx", reader), _sub(reader, "tdx"))
    return AzurePolicy(**values)


def _sub(reader: SectionReader, name: str) -> SectionReader:
    return reader.child(f"{reader.section}.{name}")


def _hardware(table: Mapping[str, Any], name: str, reader: SectionReader) -> Mapping[str, Any]:
    sub = table[name]
    if not isinstance(sub, dict):
        raise reader.fail(name, f"must be a table ([{reader.section}.{name}])")
    for key in sub:
        if key in RULE_KEYS:
            raise _sub(reader, name).fail(
                key, f"is a rule of the whole section: write it in [{reader.section}]"
            )
    return sub


def _pcrs(value: Any, reader: SectionReader) -> dict[int, frozenset[bytes]]:
    if not isinstance(value, dict) or not value:
        raise reader.fail("pcrs", 'must be a table such as { 7 = "<sha256 hex>" }')
    out: dict[int, frozenset[bytes]] = {}
    for key, expected in value.items():
        if not key.isdigit() or not 0 <= int(key) < PCR_COUNT:
            raise reader.fail(f"pcrs.{key}", f"is not a PCR index 0..{PCR_COUNT - 1}")
        out[int(key)] = frozenset(reader.digests(expected, PCR_SIZE, f"pcrs.{key}"))
    return out
