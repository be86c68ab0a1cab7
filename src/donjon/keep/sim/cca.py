"""The simulated Arm CCA platform: a local CPAK that signs tokens in the real CCA layout.

For development and CI only. ``donjon sim init --tee cca`` makes a platform
(implementation and instance IDs, firmware components, a P-384 CPAK); each
simulated Realm has its own RAK. Tokens are the real collection (CBOR tag 399)
with the RMM 1.0 profiles, so a Steward verifies them with the same code as a
real Realm's, but trusts the CPAK only when its policy names it
(``[sim] cca_cpak = "cpak.pem"``), and labels the result ``platform = sim``.

Layout of the state directory (``<state>/sim-cca``, mode 0700, the key 0600)::

    cca.json       implementation and instance IDs, lifecycle, config, components
    cpak.key       the CPAK (PKCS#8 PEM, unencrypted: it is a simulator)
    cpak.pem       its public key, for [sim] cca_cpak
    tastore.json   the same key as a trust-anchor store (Trustee's shape)

The realm's initial measurement (RIM) is SHA-512 of the runtime measurement
(:func:`donjon.keep.sim.measure.runtime_measurement`) under a domain string.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.atomicfile import make_private_dir, write_bytes
from donjon.attestation.cca import token as layout
from donjon.attestation.cca.anchors import jwk_of
from donjon.attestation.cose import sign1_encode
from donjon.errors import plain
from donjon.keep.sim.errors import SimAlreadyInitialised, SimNotInitialised, SimStateCorrupt
from donjon.keep.sim.state import check_header

SUBDIR = "sim-cca"
STATE_VERSION = 1
CONFIG_FILE = "cca.json"
FILES = (CONFIG_FILE, "cpak.key", "cpak.pem", "tastore.json")
RIM_DOMAIN = b"donjon-sim-cca-rim-v1\n"
#: Firmware a CCA platform boots, in order (names as Arm's reference platforms report them).
COMPONENTS = ("RSE_BL1_2", "RSE_BL2", "RSE_S", "AP_BL1", "AP_BL2", "AP_BL31", "RMM")
VERIFICATION_SERVICE = "https://donjon.invalid/sim-cca"
_KEYS = frozenset(
    {"version", "implementation_id", "instance_id", "lifecycle", "config", "components", "created"}
)


def cca_dir(state_dir: Path) -> Path:
    return state_dir / SUBDIR


@dataclass(frozen=True)
class SimCcaConfig:
    implementation_id: bytes
    instance_id: bytes
    lifecycle: int = 0x3000  # secured
    config: bytes = b"\x00\x01"
    components: tuple[tuple[str, bytes, bytes], ...] = ()  # (type, measurement, signer)
    created: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "implementation_id": self.implementation_id.hex(),
            "instance_id": self.instance_id.hex(),
            "lifecycle": self.lifecycle,
            "config": self.config.hex(),
            "components": [
                {"type": t, "measurement": m.hex(), "signer_id": s.hex()}
                for t, m, s in self.components
            ],
            "created": (self.created or datetime.now(UTC)).isoformat(),
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> SimCcaConfig:
        def bad(why: str) -> SimStateCorrupt:
            return SimStateCorrupt(f"{where}: {why}")

        data = check_header(data, _KEYS, STATE_VERSION, where)
        try:
            components = tuple(
                (str(c["type"]), bytes.fromhex(c["measurement"]), bytes.fromhex(c["signer_id"]))
                for c in data["components"]
            )
            config = cls(
                implementation_id=bytes.fromhex(data["implementation_id"]),
                instance_id=bytes.fromhex(data["instance_id"]),
                lifecycle=int(data["lifecycle"]),
                config=bytes.fromhex(data["config"]),
                components=components,
                created=datetime.fromisoformat(str(data["created"])),
            )
        except KeyError as exc:
            raise bad(f"missing field {exc.args[0]!r}") from None
        except (ValueError, TypeError) as exc:
            raise bad(str(exc).splitlines()[0]) from None
        if len(config.implementation_id) != layout.IMPLEMENTATION_ID_SIZE:
            raise bad("implementation_id must be 32 bytes")
        if len(config.instance_id) != layout.INSTANCE_ID_SIZE or config.instance_id[0] != 1:
            raise bad("instance_id must be 33 bytes starting with 01")
        return config


def new_config() -> SimCcaConfig:
    """A fresh platform: random IDs, plausible firmware measurements."""
    signer = hashlib.sha256(b"donjon simulated firmware signer").digest()
    components = tuple(
        (name, hashlib.sha256(b"donjon-sim-cca " + name.encode()).digest(), signer)
        for name in COMPONENTS
    )
    return SimCcaConfig(
        implementation_id=secrets.token_bytes(layout.IMPLEMENTATION_ID_SIZE),
        instance_id=b"\x01" + secrets.token_bytes(layout.INSTANCE_ID_SIZE - 1),
        components=components,
    )


@dataclass(frozen=True)
class SimCcaState:
    directory: Path
    config: SimCcaConfig
    cpak: ec.EllipticCurvePrivateKey

    @property
    def cpak_pem(self) -> Path:
        return self.directory / "cpak.pem"

    @property
    def tastore(self) -> Path:
        return self.directory / "tastore.json"


def is_initialised(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file()


def init(
    directory: Path, config: SimCcaConfig | None = None, *, force: bool = False
) -> SimCcaState:
    if is_initialised(directory) and not force:
        raise SimAlreadyInitialised(
            f"a simulated CCA platform already exists in {directory}",
            hint="use `donjon sim reset --tee cca` first, or `donjon sim init --tee cca --force`",
        )
    config = config or new_config()
    stamped = SimCcaConfig(
        config.implementation_id,
        config.instance_id,
        config.lifecycle,
        config.config,
        config.components,
        config.created or datetime.now(UTC),
    )
    make_private_dir(directory)
    cpak = ec.generate_private_key(ec.SECP384R1())
    write_bytes(
        directory / "cpak.key",
        cpak.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    public = cpak.public_key()
    write_bytes(
        directory / "cpak.pem",
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    store = [
        {
            "implementation-id": stamped.implementation_id.hex(),
            "instance-id": stamped.instance_id.hex(),
            "pkey": jwk_of(public),
        }
    ]
    write_bytes(directory / "tastore.json", json.dumps(store, indent=2).encode())
    # The config goes last: its presence marks the directory as initialised.
    write_bytes(directory / CONFIG_FILE, json.dumps(stamped.to_json(), indent=2).encode())
    return SimCcaState(directory, stamped, cpak)


def load(directory: Path) -> SimCcaState:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise SimNotInitialised(
            f"the simulated CCA platform is not initialised in {directory}: "
            "run `donjon sim init --tee cca`"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SimStateCorrupt(f"{path}: unreadable: {exc}") from None
    config = SimCcaConfig.from_json(data, path)
    key_path = directory / "cpak.key"
    try:
        cpak = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SimStateCorrupt(f"{key_path}: missing (run `donjon sim reset --tee cca`)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise SimStateCorrupt(f"{key_path}: not a PEM private key: {plain(exc)}") from None
    if not isinstance(cpak, ec.EllipticCurvePrivateKey) or not isinstance(cpak.curve, ec.SECP384R1):
        raise SimStateCorrupt(f"{key_path}: not an EC P-384 key")
    return SimCcaState(directory, config, cpak)


def reset(directory: Path) -> bool:
    """Delete the simulated platform; ``False`` when there was none. Refuses foreign files."""
    if not directory.exists():
        return False
    foreign = [
        p.name
        for p in directory.iterdir()
        if p.name not in FILES and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    ]
    if foreign:
        raise SimStateCorrupt(
            f"{directory}: refusing to delete, it holds files that are not the simulator's "
            f"({', '.join(sorted(foreign)[:3])})"
        )
    shutil.rmtree(directory)
    return True


def realm_measurement(runtime: bytes) -> bytes:
    """The simulated RIM: SHA-512 of a domain string and the runtime measurement."""
    return hashlib.sha512(RIM_DOMAIN + runtime).digest()


def cose_key(rak: ec.EllipticCurvePublicKey) -> bytes:
    """The RAK as RMM 1.0 reports it: an EC2 P-384 COSE_Key."""
    numbers = rak.public_numbers()
    return cbor2.dumps(
        {1: 2, -1: 2, -2: numbers.x.to_bytes(48, "big"), -3: numbers.y.to_bytes(48, "big")}
    )


def make_token(
    state: SimCcaState, rak: ec.EllipticCurvePrivateKey, rim: bytes, challenge: bytes
) -> bytes:
    """A CCA token over ``challenge``: realm signed by ``rak``, platform by the CPAK."""
    if len(challenge) != layout.REALM_CHALLENGE_SIZE:
        raise ValueError("the realm challenge is 64 bytes")
    rak_claim = cose_key(rak.public_key())
    realm = {
        layout.R_PROFILE: layout.REALM_PROFILE_1,
        layout.R_CHALLENGE: challenge,
        layout.R_PERSONALIZATION: bytes(layout.PERSONALIZATION_SIZE),
        layout.R_HASH_ALGO: "sha-512",
        layout.R_PUBLIC_KEY: rak_claim,
        layout.R_INITIAL_MEASUREMENT: rim,
        layout.R_EXTENSIBLE_MEASUREMENTS: [bytes(64)] * layout.REM_COUNT,
        layout.R_PUBLIC_KEY_HASH_ALGO: "sha-256",
    }
    config = state.config
    platform = {
        layout.P_PROFILE: layout.PLATFORM_PROFILES[1],
        layout.P_CHALLENGE: hashlib.sha256(rak_claim).digest(),
        layout.P_IMPLEMENTATION_ID: config.implementation_id,
        layout.P_INSTANCE_ID: config.instance_id,
        layout.P_CONFIG: config.config,
        layout.P_LIFECYCLE: config.lifecycle,
        layout.P_SW_COMPONENTS: [
            {
                layout.SW_TYPE: kind,
                layout.SW_MEASUREMENT: measurement,
                layout.SW_SIGNER_ID: signer,
                layout.SW_HASH_ALGO: "sha-256",
            }
            for kind, measurement, signer in config.components
        ],
        layout.P_VERIFICATION_SERVICE: VERIFICATION_SERVICE,
        layout.P_HASH_ALGO: "sha-256",
    }
    realm_token = sign1_encode(cbor2.dumps(realm), rak, tagged=True)
    platform_token = sign1_encode(cbor2.dumps(platform), state.cpak, tagged=True)
    return layout.encode_token(platform_token, realm_token)
