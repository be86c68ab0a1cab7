"""``[sgx]``: what an SGX quote must show; a superset of Enarx's ``[sgx]`` keys.

Enarx's keys keep Enarx's meaning:

* ``signer``, ``hash`` (MRSIGNER, MRENCLAVE allow-lists), ``hash_blacklist``;
* ``features``: the ATTRIBUTES flags an enclave may have (INIT and MODE64BIT always
  may): ``CET``, ``Debug``, ``EInitKey``, ``KSS``, ``ProvisioningKey``;
* ``misc_select``: the MISCSELECT bits it may have (``EXINFO``);
* ``enclave_security_version``: the minimum ISVSVN; ``enclave_product_id``: the ISVPRODID;
* ``allowed_advisories``: Intel advisories that may be outstanding. As in Enarx, a
  section that lists advisories and no ``tcb_statuses`` accepts any status those
  advisories explain (every status but Revoked); without either, only UpToDate.

Donjon adds ``allow_debug`` (default false: a debug enclave is refused even when
``features`` lists Debug), ``min_isvsvn`` (``enclave_security_version``'s other
name), the KSS fields ``isv_ext_prod_id``, ``isv_family_id``, ``config_id`` and
``min_config_svn``, ``tcb_statuses``, and the collateral keys (``dcap/policy.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from donjon.attestation.dcap import layout
from donjon.attestation.dcap.policy import COLLATERAL_KEYS, CollateralPolicy, parse_collateral
from donjon.attestation.dcap.tcb import ALL_STATUSES
from donjon.attestation.policytoml import SectionReader
from donjon.attestation.rules import RULE_KEYS, TeeRules, parse_rules

SGX_TCB_STATUSES = frozenset({"UpToDate"})
#: Enarx: listing advisories accepts the statuses that advisories explain.
ENARX_ADVISORY_STATUSES = frozenset(s for s in ALL_STATUSES if s != "Revoked")

#: ATTRIBUTES flags by Enarx's names and by Intel's.
FEATURE_BITS: dict[str, int] = {
    "CET": layout.SGX_FLAG_BITS["CET"],
    "Debug": layout.SGX_FLAG_BITS["DEBUG"],
    "EInitKey": layout.SGX_FLAG_BITS["EINITTOKENKEY"],
    "KSS": layout.SGX_FLAG_BITS["KSS"],
    "ProvisioningKey": layout.SGX_FLAG_BITS["PROVISIONKEY"],
    **layout.SGX_FLAG_BITS,
}
#: What every enclave may have: INIT (it is initialised) and MODE64BIT (Enarx requires it).
ALWAYS_ALLOWED = layout.SGX_FLAG_BITS["INIT"] | layout.SGX_FLAG_BITS["MODE64BIT"]
MISC_SELECT_BITS = {"EXINFO": 1 << 0}

_DIGEST_LISTS: dict[str, tuple[str, int]] = {
    "signer": ("signer", 32),
    "mrsigner": ("signer", 32),
    "signer_deny": ("signer_deny", 32),
    "signer_blacklist": ("signer_deny", 32),
    "hash": ("mrenclave", 32),
    "mrenclave": ("mrenclave", 32),
    "hash_blacklist": ("mrenclave_deny", 32),
    "hash_deny": ("mrenclave_deny", 32),
    "mrenclave_deny": ("mrenclave_deny", 32),
    "isv_ext_prod_id": ("isv_ext_prod_id", 16),
    "isv_family_id": ("isv_family_id", 16),
    "config_id": ("config_id", 64),
}
SGX_KEYS = (
    frozenset(_DIGEST_LISTS)
    | RULE_KEYS
    | COLLATERAL_KEYS
    | {
        "features",
        "misc_select",
        "enclave_security_version",
        "min_isvsvn",
        "enclave_product_id",
        "min_config_svn",
        "allow_debug",
    }
)


@dataclass(frozen=True)
class SgxPolicy:
    """What an SGX quote must show. Empty allow-lists mean "any"."""

    digests: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    #: Allowed ATTRIBUTES flags (None: any), MISCSELECT bits (None: any).
    features: int | None = None
    misc_select: int | None = None
    min_isvsvn: int | None = None
    product_id: int | None = None
    min_config_svn: int | None = None
    allow_debug: bool = False
    collateral: CollateralPolicy = field(default_factory=CollateralPolicy)
    rules: TeeRules = field(default_factory=TeeRules)

    def allowed(self, name: str) -> frozenset[bytes]:
        return self.digests.get(name, frozenset())

    def pinned(self) -> tuple[str, ...]:
        """MRSIGNER or MRENCLAVE; CONFIGID is what the (host's) loader gives at ECREATE."""
        return tuple(n for n in ("signer", "mrenclave") if self.allowed(n))

    @property
    def default_statuses(self) -> frozenset[str]:
        """UpToDate; Enarx's rule when the section lists advisories but no statuses."""
        if self.rules.allowed_advisories and self.rules.tcb_statuses is None:
            return ENARX_ADVISORY_STATUSES
        return SGX_TCB_STATUSES


def parse_sgx(table: Mapping[str, Any], reader: SectionReader) -> SgxPolicy:
    """An ``[sgx]`` table (Enarx's, or Donjon's superset), strictly."""
    reader.only(table, SGX_KEYS)
    lists: dict[str, set[bytes]] = {}
    for key, (attr, size) in _DIGEST_LISTS.items():
        if key in table:
            lists.setdefault(attr, set()).update(reader.digests(table[key], size, key))
    for allow, deny in (("signer", "signer_deny"), ("mrenclave", "mrenclave_deny")):
        both = lists.get(allow, set()) & lists.get(deny, set())
        if both:
            raise reader.fail(deny, f"{sorted(both)[0].hex()} is in both the allow and deny lists")
    values: dict[str, Any] = {
        "digests": {attr: frozenset(v) for attr, v in lists.items()},
        "rules": parse_rules(table, reader),
        "collateral": parse_collateral(table, reader),
        "allow_debug": reader.boolean(table, "allow_debug"),
    }
    if "features" in table:
        values["features"] = ALWAYS_ALLOWED | reader.flags(
            table["features"], FEATURE_BITS, "features"
        )
    if "misc_select" in table:
        values["misc_select"] = reader.flags(table["misc_select"], MISC_SELECT_BITS, "misc_select")
    if "enclave_security_version" in table and "min_isvsvn" in table:
        raise reader.fail("min_isvsvn", "is enclave_security_version's other name: give one")
    for key in ("enclave_security_version", "min_isvsvn"):
        if key in table:
            values["min_isvsvn"] = reader.integer(table[key], key, 0, 0xFFFF)
    if "enclave_product_id" in table:
        values["product_id"] = reader.integer(
            table["enclave_product_id"], "enclave_product_id", 0, 0xFFFF
        )
    if "min_config_svn" in table:
        values["min_config_svn"] = reader.integer(
            table["min_config_svn"], "min_config_svn", 0, 0xFFFF
        )
    return SgxPolicy(**values)
