"""``[cca]``: which CPAKs are trusted and what a CCA realm and platform must show.

Example::

    [cca]
    trust_anchors = "tastore.json"        # CPAKs by implementation and instance ID
    reference_values = "rvstore.json"     # Trustee's shape: platform and realm entries
    rim = ["ae87fbf7..."]                 # allowed realm initial measurements
    rem0 = ["00..."]                      # allowed values of REM0 (rem1..rem3 likewise)
    personalization_value = ["00..."]
    sw_components = [ { type = "RMM", measurement = "a1fb50e6..." } ]
    implementation_ids = ["7f454c46..."]
    platform_config = ["cfcfcfcf"]
    lifecycle = ["secured"]               # the default; debug states must be listed
    allowed_workloads = ["<sha256 of main.wasm>"]

Paths are relative to the policy file. The files are read when the policy is
loaded, so a broken store stops a Steward at start, not at the first request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from donjon.attestation.cca.anchors import AnchorError, AnchorStore, load_store
from donjon.attestation.cca.refvalues import (
    ComponentReference,
    PlatformReference,
    RealmReference,
    ReferenceValueError,
    component,
    load_rvstore,
)
from donjon.attestation.cca.token import (
    IMPLEMENTATION_ID_SIZE,
    LIFECYCLE_STATES,
    PERSONALIZATION_SIZE,
    SECURED,
)
from donjon.attestation.policytoml import SectionReader
from donjon.attestation.rules import RULE_KEYS, TeeRules, parse_rules

#: Arm publishes no TCB status: a result says whether reference values appraised the platform.
CCA_TCB_STATUSES = frozenset({"MeetsMinimum", "NotAppraised"})
_REMS = ("rem0", "rem1", "rem2", "rem3")
CCA_KEYS = RULE_KEYS | {
    "trust_anchors",
    "reference_values",
    "rim",
    *_REMS,
    "personalization_value",
    "sw_components",
    "implementation_ids",
    "platform_config",
    "lifecycle",
}
_DIGESTS = (32, 48, 64)


@dataclass(frozen=True)
class CcaPolicy:
    anchors: AnchorStore = field(default_factory=AnchorStore)
    rim: frozenset[bytes] = frozenset()
    rems: tuple[frozenset[bytes], ...] = (frozenset(),) * 4
    personalization_value: frozenset[bytes] = frozenset()
    platform_references: tuple[PlatformReference, ...] = ()
    realm_references: tuple[RealmReference, ...] = ()
    implementation_ids: frozenset[bytes] = frozenset()
    platform_config: frozenset[bytes] = frozenset()
    lifecycle: frozenset[str] = frozenset({SECURED})
    rules: TeeRules = field(default_factory=TeeRules)

    def pinned(self) -> tuple[str, ...]:
        """The keys that pin the realm's code (for ``policy.pinned``): its RIM (with the
        REMs beside it), or realm reference values (each names a RIM). The REMs are
        extended by the realm itself, so a realm whose RIM nobody pinned replays any
        recorded sequence into them; the host gives the Personalization Value when it
        creates the realm."""
        named = []
        if self.rim:
            named.append("rim")
            named += [name for name, values in zip(_REMS, self.rems, strict=True) if values]
        if self.realm_references:
            named.append("reference_values (realm)")
        return tuple(named)


def _digests(reader: SectionReader, table: Mapping[str, Any], key: str) -> frozenset[bytes]:
    if key not in table:
        return frozenset()
    return frozenset(reader.digests(table[key], _DIGESTS, key))


def parse_cca(table: Mapping[str, Any], reader: SectionReader) -> CcaPolicy:
    """A ``[cca]`` table, strictly (its files are read now)."""
    reader.only(table, CCA_KEYS)
    anchors = AnchorStore()
    if "trust_anchors" in table:
        for path in reader.paths(table["trust_anchors"], "trust_anchors"):
            try:
                anchors = anchors.merged(load_store(path))
            except AnchorError as exc:
                raise reader.fail("trust_anchors", str(exc)) from exc
    platforms: list[PlatformReference] = []
    realms: list[RealmReference] = []
    if "reference_values" in table:
        for path in reader.paths(table["reference_values"], "reference_values"):
            try:
                values = load_rvstore(path)
            except ReferenceValueError as exc:
                raise reader.fail("reference_values", str(exc)) from exc
            platforms += values.platforms
            realms += values.realms
    if "sw_components" in table:
        platforms.append(_inline_components(table["sw_components"], reader))
    return CcaPolicy(
        anchors=anchors,
        rim=_digests(reader, table, "rim"),
        rems=tuple(_digests(reader, table, name) for name in _REMS),
        personalization_value=frozenset(
            reader.digests(
                table["personalization_value"], PERSONALIZATION_SIZE, "personalization_value"
            )
        )
        if "personalization_value" in table
        else frozenset(),
        platform_references=tuple(platforms),
        realm_references=tuple(realms),
        implementation_ids=frozenset(
            reader.digests(
                table["implementation_ids"], IMPLEMENTATION_ID_SIZE, "implementation_ids"
            )
        )
        if "implementation_ids" in table
        else frozenset(),
        platform_config=_configs(table, reader),
        lifecycle=_lifecycle(table, reader),
        rules=parse_rules(table, reader),
    )


def _inline_components(value: Any, reader: SectionReader) -> PlatformReference:
    if not isinstance(value, list) or not value:
        raise reader.fail(
            "sw_components",
            'must be a list of tables such as { type = "RMM", measurement = "..." }',
        )
    comps: list[ComponentReference] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise reader.fail(f"sw_components[{index}]", "must be a table")
        unknown = sorted(set(item) - {"type", "measurement", "signer_id"})
        if unknown:
            raise reader.fail(
                f"sw_components[{index}]",
                f"unknown key {unknown[0]} (known: type, measurement, signer_id)",
            )
        renamed = {
            "component-type": item.get("type"),
            "measurement-value": item.get("measurement"),
        }
        if "signer_id" in item:
            renamed["signer-id"] = item["signer_id"]
        try:
            comps.append(component(renamed, f"sw_components[{index}]"))
        except ReferenceValueError as exc:
            raise reader.fail("sw_components", str(exc)) from exc
    return PlatformReference(None, tuple(comps), None, f"{reader.source} [cca] sw_components")


def _configs(table: Mapping[str, Any], reader: SectionReader) -> frozenset[bytes]:
    if "platform_config" not in table:
        return frozenset()
    items = table["platform_config"]
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise reader.fail("platform_config", "must be a list of hex strings")
    out = set()
    for item in items:
        try:
            out.add(bytes.fromhex(item))
        except ValueError as exc:
            raise reader.fail("platform_config", f"{item[:16]!r} is not hex") from exc
    return frozenset(out)


def _lifecycle(table: Mapping[str, Any], reader: SectionReader) -> frozenset[str]:
    if "lifecycle" not in table:
        return frozenset({SECURED})
    known = set(LIFECYCLE_STATES.values())
    states = reader.strings(table["lifecycle"], "lifecycle")
    unknown = sorted(states - known)
    if unknown:
        raise reader.fail(
            "lifecycle", f"unknown state {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    return states
