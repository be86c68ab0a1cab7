"""The Arm CCA attestation token: a CBOR collection of a platform and a realm token.

Layout (Arm DEN0137 "Realm Management Monitor", and the IETF draft
``draft-ffm-rats-cca-token``)::

    cca-token = #6.399({
        44234 => bstr .cbor COSE_Sign1(cca-platform-claims),  -- signed by the CPAK
        44241 => bstr .cbor COSE_Sign1(cca-realm-claims) })   -- signed by the RAK

The realm token carries the RAK's public key; the platform token's challenge is
the hash of that key, which is what binds the two. Claim keys are below. Parsing
is strict: an unknown profile, a missing mandatory claim, an unknown claim or
a value of the wrong type or size is refused, naming the claim.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation.cose import CBOR_MAPS, Sign1, decode_sign1, loads_strict
from donjon.attestation.errors import MalformedEvidenceError, UnsupportedVersionError

COLLECTION_TAG = 399
PLATFORM_TOKEN = 44234
REALM_TOKEN = 44241
#: Largest token accepted (a real one is about 2 KiB).
MAX_TOKEN_SIZE = 64 * 1024

# Platform claims.
P_PROFILE = 265
P_CHALLENGE = 10
P_IMPLEMENTATION_ID = 2396
P_INSTANCE_ID = 256
P_CONFIG = 2401
P_LIFECYCLE = 2395
P_SW_COMPONENTS = 2399
P_VERIFICATION_SERVICE = 2400
P_HASH_ALGO = 2402
# Software component fields (PSA/CCA).
SW_TYPE = 1
SW_MEASUREMENT = 2
SW_VERSION = 4
SW_SIGNER_ID = 5
SW_HASH_ALGO = 6
# Realm claims.
R_PROFILE = 265
R_CHALLENGE = 10
R_PERSONALIZATION = 44235
R_HASH_ALGO = 44236
R_PUBLIC_KEY = 44237
R_INITIAL_MEASUREMENT = 44238
R_EXTENSIBLE_MEASUREMENTS = 44239
R_PUBLIC_KEY_HASH_ALGO = 44240

#: The platform profiles this verifier knows (legacy name first).
PLATFORM_PROFILES = ("http://arm.com/CCA-SSD/1.0.0", "tag:arm.com,2023:cca_platform#1.0.0")
#: The realm profile of RMM 1.0; a legacy realm token (RMM EAC5) carries no profile claim.
REALM_PROFILE_1 = "tag:arm.com,2023:realm#1.0.0"
REALM_PROFILES = (None, REALM_PROFILE_1)

#: Named-information hash algorithm names (IANA) and their digest sizes.
HASH_SIZES = {"sha-256": 32, "sha-384": 48, "sha-512": 64}
_HASHERS: dict[str, Callable[[bytes], Any]] = {
    "sha-256": hashlib.sha256,
    "sha-384": hashlib.sha384,
    "sha-512": hashlib.sha512,
}

#: Security lifecycle ranges (PSA/CCA): the high byte names the state.
LIFECYCLE_STATES = {
    0x00: "unknown",
    0x10: "assembly-and-test",
    0x20: "cca-platform-rot-provisioning",
    0x30: "secured",
    0x40: "non-cca-platform-rot-debug",
    0x50: "recoverable-cca-platform-rot-debug",
    0x60: "decommissioned",
}
SECURED = "secured"
DEBUG_STATES = frozenset({"non-cca-platform-rot-debug", "recoverable-cca-platform-rot-debug"})

REALM_CHALLENGE_SIZE = 64
PERSONALIZATION_SIZE = 64
IMPLEMENTATION_ID_SIZE = 32
INSTANCE_ID_SIZE = 33  # UEID: type byte 0x01 (random) and 32 bytes
REM_COUNT = 4
RAK_RAW_SIZE = 97  # uncompressed P-384 point


def digest(algorithm: str, data: bytes) -> bytes:
    return bytes(_HASHERS[algorithm](data).digest())


def lifecycle_state(value: int) -> str:
    """The named state of a lifecycle value, or a :class:`MalformedEvidenceError`."""
    state = LIFECYCLE_STATES.get(value >> 8) if 0 <= value <= 0xFFFF else None
    if state is None:
        raise MalformedEvidenceError(f"CCA platform lifecycle 0x{value:04x} is not a known state")
    return state


@dataclass(frozen=True)
class SwComponent:
    type: str | None
    measurement: bytes
    version: str | None
    signer_id: bytes
    hash_algo: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "measurement": self.measurement.hex(),
            "version": self.version,
            "signer_id": self.signer_id.hex(),
            "hash_algo": self.hash_algo,
        }


@dataclass(frozen=True)
class PlatformClaims:
    profile: str
    challenge: bytes
    implementation_id: bytes
    instance_id: bytes
    config: bytes
    lifecycle: int
    sw_components: tuple[SwComponent, ...]
    verification_service: str | None
    hash_algo: str

    @property
    def lifecycle_state(self) -> str:
        return lifecycle_state(self.lifecycle)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "challenge": self.challenge.hex(),
            "implementation_id": self.implementation_id.hex(),
            "instance_id": self.instance_id.hex(),
            "config": self.config.hex(),
            "lifecycle": {"value": self.lifecycle, "state": self.lifecycle_state},
            "sw_components": [c.to_dict() for c in self.sw_components],
            "verification_service": self.verification_service,
            "hash_algo": self.hash_algo,
        }


@dataclass(frozen=True)
class RealmClaims:
    profile: str | None
    challenge: bytes
    personalization_value: bytes
    initial_measurement: bytes
    extensible_measurements: tuple[bytes, bytes, bytes, bytes]
    hash_algo: str
    public_key: bytes  # the RAK claim as it arrived (its hash is the platform challenge)
    public_key_hash_algo: str
    rak: ec.EllipticCurvePublicKey

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "challenge": self.challenge.hex(),
            "personalization_value": self.personalization_value.hex(),
            "initial_measurement": self.initial_measurement.hex(),
            "extensible_measurements": [m.hex() for m in self.extensible_measurements],
            "hash_algo": self.hash_algo,
            "public_key": self.public_key.hex(),
            "public_key_hash_algo": self.public_key_hash_algo,
        }


@dataclass(frozen=True)
class CcaToken:
    platform: Sign1
    realm: Sign1
    platform_claims: PlatformClaims
    realm_claims: RealmClaims

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": {
                "algorithm": self.platform.algorithm.name,
                "claims": self.platform_claims.to_dict(),
            },
            "realm": {
                "algorithm": self.realm.algorithm.name,
                "claims": self.realm_claims.to_dict(),
            },
        }


def is_token(data: bytes) -> bool:
    """Cheap recognition: the CBOR head of tag 399 (``d9 01 8f``) and a map."""
    return len(data) > 4 and data[:3] == b"\xd9\x01\x8f" and (data[3] & 0xE0) == 0xA0


def parse_token(data: bytes) -> CcaToken:
    """Decode and check the whole token's structure; signatures are not verified here."""
    if len(data) > MAX_TOKEN_SIZE:
        raise MalformedEvidenceError(
            f"CCA token: {len(data)} bytes is larger than {MAX_TOKEN_SIZE}"
        )
    collection = loads_strict(data, "CCA token")
    if not isinstance(collection, cbor2.CBORTag) or collection.tag != COLLECTION_TAG:
        raise MalformedEvidenceError(f"CCA token: not a CBOR tag {COLLECTION_TAG} collection")
    body = collection.value
    if not isinstance(body, CBOR_MAPS) or set(body) != {PLATFORM_TOKEN, REALM_TOKEN}:
        keys = sorted(str(k) for k in body) if isinstance(body, CBOR_MAPS) else "not a map"
        raise MalformedEvidenceError(
            f"CCA token: the collection must hold exactly the platform ({PLATFORM_TOKEN}) "
            f"and realm ({REALM_TOKEN}) tokens, it has {keys}"
        )
    platform_bytes, realm_bytes = body[PLATFORM_TOKEN], body[REALM_TOKEN]
    if not isinstance(platform_bytes, bytes) or not isinstance(realm_bytes, bytes):
        raise MalformedEvidenceError("CCA token: the platform and realm tokens must be bstr")
    platform = decode_sign1(
        loads_strict(platform_bytes, "CCA platform token"), "CCA platform token", tagged=True
    )
    realm = decode_sign1(
        loads_strict(realm_bytes, "CCA realm token"), "CCA realm token", tagged=True
    )
    return CcaToken(
        platform=platform,
        realm=realm,
        platform_claims=parse_platform_claims(platform.payload),
        realm_claims=parse_realm_claims(realm.payload),
    )


class _Claims:
    """Typed access to one claims map, naming the claim in every error."""

    def __init__(self, value: Any, what: str, names: Mapping[int, str]) -> None:
        if not isinstance(value, CBOR_MAPS):
            raise MalformedEvidenceError(f"{what}: the claims must be a map")
        unknown = [k for k in value if k not in names]
        if unknown:
            raise MalformedEvidenceError(
                f"{what}: unknown claim(s) {', '.join(str(k) for k in unknown[:5])}"
            )
        self.map = value
        self.what = what
        self.names = names

    def _name(self, key: int) -> str:
        return f"{self.what} claim {self.names[key]} ({key})"

    def _get(self, key: int, optional: bool) -> Any:
        if key not in self.map:
            if optional:
                return None
            raise MalformedEvidenceError(f"{self._name(key)} is mandatory and missing")
        return self.map[key]

    def bytes_(self, key: int, sizes: tuple[int, ...] | None = None) -> bytes:
        value = self._get(key, False)
        if not isinstance(value, bytes):
            raise MalformedEvidenceError(f"{self._name(key)} must be a byte string")
        if sizes is not None and len(value) not in sizes:
            want = " or ".join(str(s) for s in sizes)
            raise MalformedEvidenceError(f"{self._name(key)} is {len(value)} bytes, not {want}")
        if sizes is None and not value:
            raise MalformedEvidenceError(f"{self._name(key)} is empty")
        return value

    def text(self, key: int, *, optional: bool = False) -> str | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise MalformedEvidenceError(f"{self._name(key)} must be a non-empty text string")
        return value

    def hash_algo(self, key: int) -> str:
        name = self.text(key)
        assert name is not None
        if name not in HASH_SIZES:
            raise UnsupportedVersionError(
                f"{self._name(key)}: hash algorithm {name!r} is not one of " + ", ".join(HASH_SIZES)
            )
        return name

    def uint(self, key: int) -> int:
        value = self._get(key, False)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MalformedEvidenceError(f"{self._name(key)} must be an unsigned integer")
        return value


_PLATFORM_NAMES = {
    P_PROFILE: "profile",
    P_CHALLENGE: "challenge",
    P_IMPLEMENTATION_ID: "implementation-id",
    P_INSTANCE_ID: "instance-id",
    P_CONFIG: "config",
    P_LIFECYCLE: "lifecycle",
    P_SW_COMPONENTS: "sw-components",
    P_VERIFICATION_SERVICE: "verification-service",
    P_HASH_ALGO: "hash-algo-id",
}
_SW_NAMES = {
    SW_TYPE: "measurement-type",
    SW_MEASUREMENT: "measurement-value",
    SW_VERSION: "version",
    SW_SIGNER_ID: "signer-id",
    SW_HASH_ALGO: "hash-algo-id",
}
_REALM_NAMES = {
    R_PROFILE: "profile",
    R_CHALLENGE: "challenge",
    R_PERSONALIZATION: "personalization-value",
    R_HASH_ALGO: "hash-algo-id",
    R_PUBLIC_KEY: "public-key",
    R_INITIAL_MEASUREMENT: "initial-measurement",
    R_EXTENSIBLE_MEASUREMENTS: "extensible-measurements",
    R_PUBLIC_KEY_HASH_ALGO: "public-key-hash-algo-id",
}


def parse_platform_claims(payload: bytes) -> PlatformClaims:
    claims = _Claims(loads_strict(payload, "CCA platform"), "CCA platform", _PLATFORM_NAMES)
    profile = claims.text(P_PROFILE)
    if profile not in PLATFORM_PROFILES:
        raise UnsupportedVersionError(
            f"CCA platform profile {profile!r} is not one this verifier knows "
            f"({', '.join(PLATFORM_PROFILES)})"
        )
    assert profile is not None
    lifecycle = claims.uint(P_LIFECYCLE)
    lifecycle_state(lifecycle)  # refuses values outside the defined ranges
    raw_components = claims._get(P_SW_COMPONENTS, False)
    if not isinstance(raw_components, (list, tuple)) or not raw_components:
        raise MalformedEvidenceError("CCA platform claim sw-components must be a non-empty array")
    components = tuple(_sw_component(item, index) for index, item in enumerate(raw_components))
    instance_id = claims.bytes_(P_INSTANCE_ID, (INSTANCE_ID_SIZE,))
    if instance_id[0] != 0x01:
        raise MalformedEvidenceError(
            "CCA platform instance-id must be a random UEID (type 0x01), "
            f"got 0x{instance_id[0]:02x}"
        )
    return PlatformClaims(
        profile=profile,
        challenge=claims.bytes_(P_CHALLENGE, (32, 48, 64)),
        implementation_id=claims.bytes_(P_IMPLEMENTATION_ID, (IMPLEMENTATION_ID_SIZE,)),
        instance_id=instance_id,
        config=claims.bytes_(P_CONFIG),
        lifecycle=lifecycle,
        sw_components=components,
        verification_service=claims.text(P_VERIFICATION_SERVICE, optional=True),
        hash_algo=claims.hash_algo(P_HASH_ALGO),
    )


_SW_KEYS = frozenset(_SW_NAMES)
_DIGEST_SIZES = frozenset(HASH_SIZES.values())
_ABSENT = object()


def _sw_component(item: Any, index: int) -> SwComponent:
    """The common, well-formed case checked inline (this runs a dozen times per token);
    anything else goes through the checks that name what is wrong."""
    if isinstance(item, dict) and _SW_KEYS.issuperset(item):
        fields: Any = item
        measurement = fields.get(SW_MEASUREMENT)
        signer = fields.get(SW_SIGNER_ID)
        kind = fields.get(SW_TYPE, _ABSENT)
        version = fields.get(SW_VERSION, _ABSENT)
        algo = fields.get(SW_HASH_ALGO, _ABSENT)
        if (
            type(measurement) is bytes
            and type(signer) is bytes
            and len(measurement) in _DIGEST_SIZES
            and len(signer) in _DIGEST_SIZES
            and (kind is _ABSENT or (type(kind) is str and kind))
            and (version is _ABSENT or (type(version) is str and version))
            and (algo is _ABSENT or HASH_SIZES.get(algo) == len(measurement))
        ):
            return SwComponent(
                type=cast("str | None", None if kind is _ABSENT else kind),
                measurement=measurement,
                version=cast("str | None", None if version is _ABSENT else version),
                signer_id=signer,
                hash_algo=None if algo is _ABSENT else algo,
            )
    return _sw_component_checked(item, index)


def _sw_component_checked(item: Any, index: int) -> SwComponent:
    what = f"CCA platform sw-components[{index}]"
    fields = _Claims(item, what, _SW_NAMES)
    hash_algo = fields.hash_algo(SW_HASH_ALGO) if SW_HASH_ALGO in item else None
    measurement = fields.bytes_(SW_MEASUREMENT, (32, 48, 64))
    if hash_algo is not None and len(measurement) != HASH_SIZES[hash_algo]:
        raise MalformedEvidenceError(
            f"{what}: a {hash_algo} measurement is {HASH_SIZES[hash_algo]} bytes, "
            f"not {len(measurement)}"
        )
    return SwComponent(
        type=fields.text(SW_TYPE, optional=True),
        measurement=measurement,
        version=fields.text(SW_VERSION, optional=True),
        signer_id=fields.bytes_(SW_SIGNER_ID, (32, 48, 64)),
        hash_algo=hash_algo,
    )


def parse_realm_claims(payload: bytes) -> RealmClaims:
    claims = _Claims(loads_strict(payload, "CCA realm"), "CCA realm", _REALM_NAMES)
    profile = claims.text(R_PROFILE, optional=True)
    if profile not in REALM_PROFILES:
        raise UnsupportedVersionError(
            f"CCA realm profile {profile!r} is not one this verifier knows ({REALM_PROFILE_1}, "
            "or none for the legacy token)"
        )
    hash_algo = claims.hash_algo(R_HASH_ALGO)
    size = HASH_SIZES[hash_algo]
    rim = claims.bytes_(R_INITIAL_MEASUREMENT, (size,))
    raw_rems = claims._get(R_EXTENSIBLE_MEASUREMENTS, False)
    if not isinstance(raw_rems, (list, tuple)) or len(raw_rems) != REM_COUNT:
        raise MalformedEvidenceError(
            f"CCA realm claim extensible-measurements must be an array of {REM_COUNT}"
        )
    for index, rem in enumerate(raw_rems):
        if not isinstance(rem, bytes) or len(rem) != size:
            raise MalformedEvidenceError(
                f"CCA realm extensible-measurements[{index}] must be a {size}-byte {hash_algo} "
                "digest"
            )
    public_key = claims.bytes_(R_PUBLIC_KEY)
    rak = _rak(public_key, profile)
    return RealmClaims(
        profile=profile,
        challenge=claims.bytes_(R_CHALLENGE, (REALM_CHALLENGE_SIZE,)),
        personalization_value=claims.bytes_(R_PERSONALIZATION, (PERSONALIZATION_SIZE,)),
        initial_measurement=rim,
        extensible_measurements=(raw_rems[0], raw_rems[1], raw_rems[2], raw_rems[3]),
        hash_algo=hash_algo,
        public_key=public_key,
        public_key_hash_algo=claims.hash_algo(R_PUBLIC_KEY_HASH_ALGO),
        rak=rak,
    )


def _rak(data: bytes, profile: str | None) -> ec.EllipticCurvePublicKey:
    """The RAK: a raw P-384 point (legacy tokens) or a COSE_Key (realm profile 1.0)."""
    if profile is None:
        if len(data) != RAK_RAW_SIZE or data[0] != 0x04:
            raise MalformedEvidenceError(
                f"CCA realm public-key must be a {RAK_RAW_SIZE}-byte uncompressed P-384 point"
            )
        return _point(data[1:49], data[49:])
    key = loads_strict(data, "CCA realm public-key (COSE_Key)")
    # COSE_Key (RFC 9052, section 7): kty 1 = EC2 (2), crv -1 = P-384 (2), x -2, y -3.
    if not isinstance(key, CBOR_MAPS) or key.get(1) != 2 or key.get(-1) != 2:
        raise MalformedEvidenceError("CCA realm public-key must be an EC2 P-384 COSE_Key")
    unknown = [k for k in key if k not in (1, -1, -2, -3, 3)]
    if unknown:
        raise MalformedEvidenceError(
            f"CCA realm public-key: unknown COSE_Key parameter(s) {unknown[:3]}"
        )
    if 3 in key and key[3] != -35:
        raise MalformedEvidenceError("CCA realm public-key: the RAK's algorithm must be ES384")
    x, y = key.get(-2), key.get(-3)
    if not isinstance(x, bytes) or not isinstance(y, bytes) or len(x) != 48 or len(y) != 48:
        raise MalformedEvidenceError("CCA realm public-key: x and y must be 48 bytes each")
    return _point(x, y)


def _point(x: bytes, y: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), b"\x04" + x + y)
    except ValueError as exc:
        raise MalformedEvidenceError("CCA realm public-key is not a point on P-384") from exc


def encode_token(platform_token: bytes, realm_token: bytes) -> bytes:
    """The collection around two COSE_Sign1 tokens (for the simulator and tests)."""
    return cbor2.dumps(
        cbor2.CBORTag(COLLECTION_TAG, {PLATFORM_TOKEN: platform_token, REALM_TOKEN: realm_token})
    )
