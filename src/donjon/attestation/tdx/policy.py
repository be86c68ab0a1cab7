"""``[tdx]``: what a TD quote must show, beside the rules every TEE shares.

Keys (all optional; an allow-list that is absent or empty accepts any value)::

    mrtd, mrtd_deny                       48-byte hex digests (a string or a list)
    rtmr0 .. rtmr3, rtmr0_deny ..         each register: an exact value, or a list of them
    mrconfigid, mrowner, mrownerconfig    48-byte allow-lists
    mrseam                                the TDX modules accepted (48-byte allow-list)
    min_tee_tcb_svn                       16 bytes hex, each byte a minimum (TEE_TCB_SVN)
    allow_debug                           default false: a debug TD is refused
    td_attributes_required / _forbidden   names: DEBUG, SEPT_VE_DISABLE, MIGRATABLE, PKS,
                                          KL, PERFMON
    xfam                                  allowed XFAM values (8 bytes hex, exact)
    crl, tcb_mode, qe_identity, pccs_url  how collateral is judged (``dcap/policy.py``)
    allowed_workloads, accept_any_workload, tcb_statuses, allowed_advisories

The TCB statuses a section accepts default to UpToDate only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from donjon.attestation.dcap import layout
from donjon.attestation.dcap.policy import COLLATERAL_KEYS, CollateralPolicy, parse_collateral
from donjon.attestation.policytoml import SectionReader
from donjon.attestation.rules import RULE_KEYS, TeeRules, parse_rules

TDX_TCB_STATUSES = frozenset({"UpToDate"})
REGISTERS = ("rtmr0", "rtmr1", "rtmr2", "rtmr3")
_DIGESTS = ("mrtd", "mrtd_deny", *REGISTERS, *(f"{r}_deny" for r in REGISTERS))
_DIGESTS += ("mrconfigid", "mrowner", "mrownerconfig", "mrseam")
TDX_KEYS = (
    frozenset(_DIGESTS)
    | RULE_KEYS
    | COLLATERAL_KEYS
    | {
        "min_tee_tcb_svn",
        "allow_debug",
        "td_attributes_required",
        "td_attributes_forbidden",
        "xfam",
    }
)


@dataclass(frozen=True)
class TdxPolicy:
    """What a TD quote must show. Empty allow-lists mean "any"."""

    digests: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    min_tee_tcb_svn: bytes | None = None
    allow_debug: bool = False
    attributes_required: int = 0
    attributes_forbidden: int = 0
    xfam: frozenset[bytes] = frozenset()
    collateral: CollateralPolicy = field(default_factory=CollateralPolicy)
    rules: TeeRules = field(default_factory=TeeRules)

    def allowed(self, name: str) -> frozenset[bytes]:
        return self.digests.get(name, frozenset())

    def pinned(self) -> tuple[str, ...]:
        """The keys set here that pin the guest's code (for ``policy.pinned``)."""
        return self._pinned

    @cached_property
    def _pinned(self) -> tuple[str, ...]:
        """MRTD, and the RTMRs beside it. The RTMRs are extended by the TD's own code, so
        a TD whose MRTD nobody pinned can replay any recorded sequence into them; and the
        host VMM gives MRCONFIGID, MROWNER and MROWNERCONFIG when it creates the TD."""
        if not self.allowed("mrtd"):
            return ()
        return tuple(name for name in ("mrtd", *REGISTERS) if self.allowed(name))


def parse_tdx(table: Mapping[str, Any], reader: SectionReader) -> TdxPolicy:
    """A ``[tdx]`` table, strictly (also the TDX keys of ``[sim.tdx]``)."""
    reader.only(table, TDX_KEYS)
    digests = {
        key: frozenset(reader.digests(table[key], 48, key)) for key in _DIGESTS if key in table
    }
    for name in ("mrtd", *REGISTERS):
        both = digests.get(name, frozenset()) & digests.get(f"{name}_deny", frozenset())
        if both:
            raise reader.fail(
                f"{name}_deny", f"{sorted(both)[0].hex()} is in both the allow and deny lists"
            )
    values: dict[str, Any] = {
        "digests": digests,
        "rules": parse_rules(table, reader),
        "collateral": parse_collateral(table, reader),
        "allow_debug": reader.boolean(table, "allow_debug"),
    }
    if "min_tee_tcb_svn" in table:
        values["min_tee_tcb_svn"] = next(
            iter(reader.digests(table["min_tee_tcb_svn"], 16, "min_tee_tcb_svn"))
        )
        if isinstance(table["min_tee_tcb_svn"], list):
            raise reader.fail("min_tee_tcb_svn", "must be one 16-byte hex string")
    for key, attr in (
        ("td_attributes_required", "attributes_required"),
        ("td_attributes_forbidden", "attributes_forbidden"),
    ):
        if key in table:
            values[attr] = reader.flags(table[key], layout.TD_ATTRIBUTE_BITS, key)
    both = values.get("attributes_required", 0) & values.get("attributes_forbidden", 0)
    if both:
        raise reader.fail("td_attributes_forbidden", "names a bit that is also required")
    debug = layout.TD_ATTRIBUTE_BITS["DEBUG"]
    if values.get("attributes_required", 0) & debug and not values["allow_debug"]:
        raise reader.fail("td_attributes_required", "lists DEBUG, which needs allow_debug = true")
    if "xfam" in table:
        values["xfam"] = frozenset(reader.digests(table["xfam"], 8, "xfam"))
    return TdxPolicy(**values)
