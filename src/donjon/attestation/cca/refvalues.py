"""Reference values for CCA tokens: what a known-good platform and realm measure.

A platform reference names an implementation, the exact set of its firmware
components (type and measurement, and the signer when given) and optionally
its configuration. A realm reference names the RIM, the four REMs and
optionally the personalization value. Trustee's ``rvstore.json`` has this
shape and can be imported as it is::

    { "platform": [ { "implementation-id": "<hex>",
                      "sw-components": [ { "component-type": "RMM",
                                           "measurement-value": "<hex>",
                                           "signer-id": "<hex>" } ],
                      "platform-configuration": "<hex>" } ],
      "realm":    [ { "initial-measurement": "<hex>",
                      "extensible-measurements": ["<hex>", x4],
                      "personalization-value": "<hex>",
                      "rak-hash-algorithm": "sha-256" } ] }
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from donjon.attestation.cca.token import (
    HASH_SIZES,
    IMPLEMENTATION_ID_SIZE,
    PERSONALIZATION_SIZE,
    REM_COUNT,
    PlatformClaims,
    RealmClaims,
)


class ReferenceValueError(ValueError):
    """A reference-value entry that cannot be used; names the entry."""


@dataclass(frozen=True)
class ComponentReference:
    type: str
    measurement: bytes
    signer_id: bytes | None = None

    def matches(self, component_type: str | None, measurement: bytes, signer: bytes) -> bool:
        return (
            component_type == self.type
            and measurement == self.measurement
            and (self.signer_id is None or signer == self.signer_id)
        )


@dataclass(frozen=True)
class PlatformReference:
    implementation_id: bytes | None
    components: tuple[ComponentReference, ...]
    config: bytes | None
    source: str

    @cached_property
    def _by_value(self) -> dict[tuple[str, bytes], tuple[ComponentReference, ...]]:
        index: dict[tuple[str, bytes], tuple[ComponentReference, ...]] = {}
        for ref in self.components:
            key = (ref.type, ref.measurement)
            index[key] = (*index.get(key, ()), ref)
        return index

    def mismatch(self, claims: PlatformClaims) -> str | None:
        """Why the platform does not match this reference, or None when it does.

        The token's components and the reference's must be the same set: each token
        component matches a reference entry (type, measurement, and signer when the
        entry names one), and no reference entry is left unmatched.
        """
        if (
            self.implementation_id is not None
            and claims.implementation_id != self.implementation_id
        ):
            return f"implementation-id is not {self.implementation_id.hex()[:16]}..."
        if self.config is not None and claims.config != self.config:
            return f"platform config {claims.config.hex()[:16]} is not {self.config.hex()[:16]}"
        index = self._by_value
        matched: set[ComponentReference] = set()
        for c in claims.sw_components:
            candidates = index.get((c.type, c.measurement), ()) if c.type is not None else ()
            hit = next((r for r in candidates if r.signer_id in (None, c.signer_id)), None)
            if hit is None:
                return (
                    f"component {c.type or '(untyped)'} measurement "
                    f"{c.measurement.hex()[:16]}... is not a reference value"
                )
            matched.add(hit)
        missing = [r for r in self.components if r not in matched]
        if missing:
            return f"component {missing[0].type} is missing from the token"
        return None


@dataclass(frozen=True)
class RealmReference:
    initial_measurement: bytes
    extensible_measurements: tuple[bytes, ...]
    personalization_value: bytes | None
    rak_hash_algo: str | None
    source: str

    def matches(self, claims: RealmClaims) -> bool:
        return (
            claims.initial_measurement == self.initial_measurement
            and claims.extensible_measurements == self.extensible_measurements
            and (
                self.personalization_value is None
                or claims.personalization_value == self.personalization_value
            )
            and (self.rak_hash_algo is None or claims.public_key_hash_algo == self.rak_hash_algo)
        )


@dataclass(frozen=True)
class ReferenceValues:
    platforms: tuple[PlatformReference, ...] = ()
    realms: tuple[RealmReference, ...] = ()


def _hex(value: Any, where: str, sizes: tuple[int, ...]) -> bytes:
    if not isinstance(value, str):
        raise ReferenceValueError(f"{where} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise ReferenceValueError(f"{where} is not hex") from exc
    if len(raw) not in sizes:
        raise ReferenceValueError(
            f"{where} is {len(raw)} bytes, expected {' or '.join(map(str, sizes))}"
        )
    return raw


def _only(entry: Any, known: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise ReferenceValueError(f"{where} must be an object")
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ReferenceValueError(f"{where}: unknown member(s) {', '.join(unknown)}")
    return entry


_DIGEST_SIZES = tuple(sorted(set(HASH_SIZES.values())))


def component(entry: Any, where: str) -> ComponentReference:
    """One ``{component-type, measurement-value[, signer-id]}`` entry."""
    fields = _only(entry, {"component-type", "measurement-value", "signer-id"}, where)
    kind = fields.get("component-type")
    if not isinstance(kind, str) or not kind:
        raise ReferenceValueError(f"{where}: component-type must be a non-empty string")
    signer = fields.get("signer-id")
    return ComponentReference(
        type=kind,
        measurement=_hex(
            fields.get("measurement-value"), f"{where} measurement-value", _DIGEST_SIZES
        ),
        signer_id=None if signer is None else _hex(signer, f"{where} signer-id", _DIGEST_SIZES),
    )


def parse_rvstore(data: bytes, source: str) -> ReferenceValues:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReferenceValueError(f"{source}: not JSON ({exc})") from exc
    top = _only(doc, {"platform", "realm"}, source)
    platforms = []
    for index, entry in enumerate(_list(top.get("platform", []), f"{source} platform")):
        where = f"{source} platform[{index}]"
        fields = _only(
            entry, {"implementation-id", "sw-components", "platform-configuration"}, where
        )
        impl = fields.get("implementation-id")
        config = fields.get("platform-configuration")
        comps = _list(fields.get("sw-components"), f"{where} sw-components")
        if not comps:
            raise ReferenceValueError(f"{where}: sw-components is empty")
        platforms.append(
            PlatformReference(
                implementation_id=None
                if impl is None
                else _hex(impl, f"{where} implementation-id", (IMPLEMENTATION_ID_SIZE,)),
                components=tuple(
                    component(c, f"{where} sw-components[{i}]") for i, c in enumerate(comps)
                ),
                config=None
                if config is None
                else _config(config, f"{where} platform-configuration"),
                source=where,
            )
        )
    realms = []
    for index, entry in enumerate(_list(top.get("realm", []), f"{source} realm")):
        where = f"{source} realm[{index}]"
        fields = _only(
            entry,
            {
                "initial-measurement",
                "extensible-measurements",
                "personalization-value",
                "rak-hash-algorithm",
            },
            where,
        )
        rim = _hex(fields.get("initial-measurement"), f"{where} initial-measurement", _DIGEST_SIZES)
        rems = _list(fields.get("extensible-measurements"), f"{where} extensible-measurements")
        if len(rems) != REM_COUNT:
            raise ReferenceValueError(f"{where}: extensible-measurements must hold {REM_COUNT}")
        rpv = fields.get("personalization-value")
        algo = fields.get("rak-hash-algorithm")
        if algo is not None and algo not in HASH_SIZES:
            raise ReferenceValueError(f"{where}: rak-hash-algorithm {algo!r} is not known")
        realms.append(
            RealmReference(
                initial_measurement=rim,
                extensible_measurements=tuple(
                    _hex(r, f"{where} extensible-measurements[{i}]", (len(rim),))
                    for i, r in enumerate(rems)
                ),
                personalization_value=None
                if rpv is None
                else _hex(rpv, f"{where} personalization-value", (PERSONALIZATION_SIZE,)),
                rak_hash_algo=algo,
                source=where,
            )
        )
    return ReferenceValues(tuple(platforms), tuple(realms))


def _config(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ReferenceValueError(f"{where} must be a non-empty hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise ReferenceValueError(f"{where} is not hex") from exc


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ReferenceValueError(f"{where} must be an array")
    return value


def load_rvstore(path: Path) -> ReferenceValues:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReferenceValueError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_rvstore(data, str(path))
