"""The runtime-claims JSON of an HCL report: the vTPM's keys and the VM's configuration.

Shape (Azure's guest attestation design, OpenHCL ``RuntimeClaims``)::

    {"keys": [{"kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA", "e": b64url, "n": b64url},
              {"kid": "HCLEkPub", "key_ops": ["encrypt"], ...}],
     "vm-configuration": {"console-enabled": bool, "secure-boot": bool, "tpm-enabled": bool,
                          "vmUniqueId": str, ...},
     "user-data": hex}

Parsing is strict, because every field may change what the claims mean: a
duplicate or unknown field, a wrong type, or a key Donjon does not know is
refused with its name. The bytes are hashed as they are (never re-serialised).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from donjon.attestation.errors import AttestationKeyError, RuntimeClaimsError

AK_KID = "HCLAkPub"
EK_KID = "HCLEkPub"
_KEY_OPS = {AK_KID: ["sign"], EK_KID: ["encrypt"]}
_JWK_FIELDS = frozenset({"kid", "key_ops", "kty", "e", "n"})
_TOP_FIELDS = frozenset({"keys", "vm-configuration", "user-data"})
#: vm-configuration fields: name -> (type, required).
_VM_FIELDS: dict[str, tuple[type, bool]] = {
    "console-enabled": (bool, True),
    "secure-boot": (bool, True),
    "tpm-enabled": (bool, True),
    "vmUniqueId": (str, True),
    "tpm-persisted": (bool, False),
    "root-cert-thumbprint": (str, False),
    "interactive-console-enabled": (bool, False),
    "filtered-vpci-devices-allowed": (bool, False),
    "current-time": (int, False),
}
#: An AK smaller than this is refused; Azure's is RSA 2048.
MIN_AK_BITS = 2048
MAX_AK_BITS = 4096
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_HEX = re.compile(r"[0-9a-fA-F]*")


@dataclass(frozen=True)
class VmConfiguration:
    console_enabled: bool
    secure_boot: bool
    tpm_enabled: bool
    vm_unique_id: str
    #: Every field as the JSON gave it (for display).
    fields: tuple[tuple[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.fields)


@dataclass(frozen=True)
class Jwk:
    kid: str
    n: int
    e: int

    @property
    def bits(self) -> int:
        return self.n.bit_length()


@dataclass(frozen=True)
class RuntimeClaims:
    raw: bytes
    keys: tuple[Jwk, ...]
    vm: VmConfiguration
    user_data: bytes | None

    @property
    def ak(self) -> Jwk | None:
        return next((k for k in self.keys if k.kid == AK_KID), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": [{"kid": k.kid, "kty": "RSA", "bits": k.bits, "e": k.e} for k in self.keys],
            "vm_configuration": self.vm.to_dict(),
            "user_data": None if self.user_data is None else self.user_data.hex(),
        }


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RuntimeClaimsError(f"runtime claims: field {key!r} appears twice")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise RuntimeClaimsError(f"runtime claims: {name} is not valid JSON")


def _b64url_int(text: Any, where: str) -> int:
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise RuntimeClaimsError(f"runtime claims: {where} is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise RuntimeClaimsError(f"runtime claims: {where} is not base64url") from exc
    return int.from_bytes(raw, "big")


def _jwk(item: Any, index: int) -> Jwk:
    where = f"keys[{index}]"
    if not isinstance(item, dict):
        raise RuntimeClaimsError(f"runtime claims: {where} is not an object")
    unknown = sorted(set(item) - _JWK_FIELDS)
    if unknown:
        raise RuntimeClaimsError(f"runtime claims: {where} has unknown field {unknown[0]!r}")
    missing = sorted(_JWK_FIELDS - set(item))
    if missing:
        raise RuntimeClaimsError(f"runtime claims: {where} lacks {missing[0]!r}")
    kid = item["kid"]
    if kid not in _KEY_OPS:
        raise RuntimeClaimsError(f"runtime claims: {where} has unknown kid {kid!r}")
    if item["kty"] != "RSA":
        raise RuntimeClaimsError(f"runtime claims: {kid} is a {item['kty']!r} key, not RSA")
    if item["key_ops"] != _KEY_OPS[kid]:
        raise RuntimeClaimsError(
            f"runtime claims: {kid} key_ops {item['key_ops']!r} should be {_KEY_OPS[kid]!r}"
        )
    return Jwk(kid, _b64url_int(item["n"], f"{kid}.n"), _b64url_int(item["e"], f"{kid}.e"))


def _vm(value: Any) -> VmConfiguration:
    if not isinstance(value, dict):
        raise RuntimeClaimsError("runtime claims: vm-configuration is not an object")
    for name, item in value.items():
        if name not in _VM_FIELDS:
            raise RuntimeClaimsError(
                f"runtime claims: vm-configuration field {name!r} is unknown to this Donjon"
            )
        kind = _VM_FIELDS[name][0]
        # bool is an int in Python: compare types exactly.
        if type(item) is not kind:
            raise RuntimeClaimsError(
                f"runtime claims: vm-configuration {name!r} must be a {kind.__name__}"
            )
    for name, (_, required) in _VM_FIELDS.items():
        if required and name not in value:
            raise RuntimeClaimsError(f"runtime claims: vm-configuration lacks {name!r}")
    return VmConfiguration(
        console_enabled=value["console-enabled"],
        secure_boot=value["secure-boot"],
        tpm_enabled=value["tpm-enabled"],
        vm_unique_id=value["vmUniqueId"],
        fields=tuple(value.items()),
    )


def parse_runtime_claims(raw: bytes) -> RuntimeClaims:
    """The claims as the paravisor wrote them; raises :class:`RuntimeClaimsError`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuntimeClaimsError("runtime claims: not UTF-8") from exc
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RuntimeClaimsError(f"runtime claims: not JSON ({exc.msg} at {exc.pos})") from exc
    if not isinstance(doc, dict):
        raise RuntimeClaimsError("runtime claims: not a JSON object")
    unknown = sorted(set(doc) - _TOP_FIELDS)
    if unknown:
        raise RuntimeClaimsError(f"runtime claims: field {unknown[0]!r} is unknown to this Donjon")
    for name in ("keys", "vm-configuration"):
        if name not in doc:
            raise RuntimeClaimsError(f"runtime claims: no {name!r}")
    if not isinstance(doc["keys"], list) or not doc["keys"]:
        raise RuntimeClaimsError("runtime claims: keys must be a non-empty list")
    keys = tuple(_jwk(item, i) for i, item in enumerate(doc["keys"]))
    kids = [k.kid for k in keys]
    if len(set(kids)) != len(kids):
        raise RuntimeClaimsError("runtime claims: a key id appears twice")
    user_data = None
    if "user-data" in doc:
        text_ud = doc["user-data"]
        if not isinstance(text_ud, str) or len(text_ud) > 128 or not _HEX.fullmatch(text_ud):
            raise RuntimeClaimsError("runtime claims: user-data must be up to 64 bytes of hex")
        if len(text_ud) % 2:
            raise RuntimeClaimsError("runtime claims: user-data has an odd number of digits")
        user_data = bytes.fromhex(text_ud)
    return RuntimeClaims(raw=raw, keys=keys, vm=_vm(doc["vm-configuration"]), user_data=user_data)


def attestation_key(claims: RuntimeClaims) -> rsa.RSAPublicKey:
    """The vTPM attestation key (HCLAkPub), or :class:`AttestationKeyError`."""
    ak = claims.ak
    if ak is None:
        raise AttestationKeyError(f"the runtime claims carry no {AK_KID} key")
    if not MIN_AK_BITS <= ak.bits <= MAX_AK_BITS:
        raise AttestationKeyError(
            f"{AK_KID} is an RSA-{ak.bits} key (accepted: {MIN_AK_BITS}..{MAX_AK_BITS} bits)"
        )
    if ak.e < 3 or ak.e % 2 == 0 or ak.e >= 2**64:
        raise AttestationKeyError(f"{AK_KID} has an unusable public exponent {ak.e}")
    try:
        return rsa.RSAPublicNumbers(ak.e, ak.n).public_key()
    except ValueError as exc:
        raise AttestationKeyError(f"{AK_KID} is not a valid RSA key: {exc}") from exc


def runtime_claims_json(
    *,
    ak: rsa.RSAPublicKey,
    console_enabled: bool = False,
    secure_boot: bool = True,
    tpm_enabled: bool = True,
    vm_unique_id: str = "00000000-0000-0000-0000-000000000000",
) -> bytes:
    """Runtime claims as a paravisor writes them (for the simulated HCL and tests)."""
    numbers = ak.public_numbers()

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    doc = {
        "keys": [
            {"kid": AK_KID, "key_ops": ["sign"], "kty": "RSA", "e": b64(numbers.e),
             "n": b64(numbers.n)}
        ],
        "vm-configuration": {
            "console-enabled": console_enabled,
            "secure-boot": secure_boot,
            "tpm-enabled": tpm_enabled,
            "vmUniqueId": vm_unique_id,
        },
        "user-data": "00" * 64,
    }  # fmt: skip
    return json.dumps(doc, separators=(",", ":")).encode()
