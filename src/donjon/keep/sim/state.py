"""The simulator's state directory: its configuration, vendor keys and certificates.

Layout (directory mode 0700, keys 0600, every file written atomically)::

    sim.json            product, TCB, chip_id, report version, guest policy
    ark.pem ask.pem vcek.pem     certificates (PEM)
    ark.key ask.key vcek.key     private keys (PKCS#8 PEM, unencrypted: it is a simulator)

Loading is strict: an unknown field, a wrong type or a VCEK that does not match the
configuration is refused, naming the file.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from donjon.atomicfile import make_private_dir, write_bytes
from donjon.attestation.snp import layout
from donjon.attestation.snp.vcek import OID_HWID
from donjon.errors import UsageError
from donjon.keep.sim import hierarchy, tdx_state
from donjon.keep.sim.errors import (
    SimAlreadyInitialised,
    SimNotInitialised,
    SimStateCorrupt,
)
from donjon.keep.sim.pemfiles import load_pem_certificate, load_pem_key, private_key_pem
from donjon.keep.sim.products import Product, TcbVersion, parse_product, parse_tcb

STATE_VERSION = 1
CONFIG_FILE = "sim.json"
CERT_NAMES = ("ark", "ask", "vcek")
REPORT_VERSIONS = (3, 5)

#: SMT allowed, bit 17 (must be one) set, debug off: 0x30000.
DEFAULT_POLICY = layout.POLICY_SMT | layout.POLICY_RESERVED_ONE

_CONFIG_KEYS = frozenset(
    {"version", "product", "tcb", "chip_id", "report_version", "policy", "created"}
)



def check_header(data: Any, keys: frozenset[str], version: int, where: Path) -> dict[str, Any]:
    """A state file's JSON object, read fail-closed: no unknown field, no other version."""
    if not isinstance(data, dict):
        raise SimStateCorrupt(f"{where}: expected a JSON object")
    unknown = set(data) - keys
    if unknown:
        raise SimStateCorrupt(f"{where}: unknown field {sorted(unknown)[0]!r}")
    if data.get("version") != version:
        raise SimStateCorrupt(f"{where}: unsupported state version {data.get('version')!r}")
    return data

@dataclass(frozen=True)
class SimConfig:
    product: Product
    tcb: TcbVersion
    chip_id: bytes  # 64 bytes, as in the report
    report_version: int = 3
    policy: int = DEFAULT_POLICY
    created: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.chip_id) != 64:
            raise ValueError("chip_id must be 64 bytes")
        if self.report_version not in REPORT_VERSIONS:
            raise ValueError(f"report version must be one of {REPORT_VERSIONS}")

    @property
    def hwid(self) -> bytes:
        """The part of CHIP_ID that the VCEK certifies."""
        return self.chip_id[: self.product.hwid_size]

    @property
    def debug(self) -> bool:
        return bool(self.policy & layout.POLICY_DEBUG)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "product": self.product.value,
            "tcb": self.tcb.components(),
            "chip_id": self.chip_id.hex(),
            "report_version": self.report_version,
            "policy": f"{self.policy:#x}",
            "created": (self.created or datetime.now(UTC)).isoformat(),
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> SimConfig:
        def bad(why: str) -> SimStateCorrupt:
            return SimStateCorrupt(f"{where}: {why}")

        data = check_header(data, _CONFIG_KEYS, STATE_VERSION, where)
        try:
            product = parse_product(str(data["product"]))
            tcb_raw = data["tcb"]
            if not isinstance(tcb_raw, dict) or not all(
                isinstance(v, int) for v in tcb_raw.values()
            ):
                raise bad("tcb must map names to integers")
            tcb = parse_tcb(",".join(f"{k}={v}" for k, v in tcb_raw.items()), product)
            return cls(
                product=product,
                tcb=tcb,
                chip_id=bytes.fromhex(str(data["chip_id"])),
                report_version=int(data["report_version"]),
                policy=int(str(data["policy"]), 0),
                created=datetime.fromisoformat(str(data["created"])),
            )
        except KeyError as exc:
            raise bad(f"missing field {exc.args[0]!r}") from None
        except SimStateCorrupt:
            raise
        except UsageError as exc:
            raise bad(exc.message) from None
        except (ValueError, TypeError) as exc:
            raise bad(str(exc).splitlines()[0]) from None


def random_chip_id(product: Product) -> bytes:
    """A random CHIP_ID; Turin certifies only the first 8 bytes, the rest is zero as on Turin."""
    return secrets.token_bytes(product.hwid_size).ljust(64, b"\0")


@dataclass(frozen=True)
class SimState:
    """A loaded simulator: what the report signer needs, nothing more."""

    directory: Path
    config: SimConfig
    ark: x509.Certificate
    ask: x509.Certificate
    vcek: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey

    @property
    def chain(self) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        """[vcek, ask, ark], the order of the sim evidence extension."""
        return (self.vcek, self.ask, self.ark)


def is_initialised(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file()


def init(
    directory: Path,
    config: SimConfig,
    *,
    force: bool = False,
    now: datetime | None = None,
) -> SimState:
    """Create a new hierarchy in ``directory``; refuse to overwrite one unless ``force``."""
    other = (directory / tdx_state.CONFIG_FILE).is_file()
    if (is_initialised(directory) or other) and not force:
        raise SimAlreadyInitialised(
            f"a simulated TEE already exists in {directory}",
            hint="use `donjon sim reset` first, or `donjon sim init --force`",
        )
    if other:
        reset(directory)  # one product per directory: --force replaces the TDX one
    make_private_dir(directory)
    h = hierarchy.generate(config.product, config.tcb, config.hwid, now=now)
    for name, key in (("ark", h.ark_key), ("ask", h.ask_key), ("vcek", h.vcek_key)):
        write_bytes(directory / f"{name}.key", private_key_pem(key), mode=0o600)
    for name, cert in (("ark", h.ark), ("ask", h.ask), ("vcek", h.vcek)):
        write_bytes(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
    created = config.created or now or datetime.now(UTC)
    stamped = SimConfig(
        config.product, config.tcb, config.chip_id, config.report_version, config.policy, created
    )
    # The config goes last: its presence is what marks the directory as initialised.
    write_bytes(directory / CONFIG_FILE, json.dumps(stamped.to_json(), indent=2).encode())
    return SimState(directory, stamped, h.ark, h.ask, h.vcek, h.vcek_key)


def load(directory: Path) -> SimState:
    """Load and cross-check the state; every failure names the file."""
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise SimNotInitialised(
            f"the simulated TEE is not initialised in {directory}: run `donjon sim init`"
        )
    try:
        data = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SimStateCorrupt(f"{config_path}: unreadable: {exc}") from None
    config = SimConfig.from_json(data, config_path)
    certs = {name: load_pem_certificate(directory / f"{name}.pem") for name in CERT_NAMES}
    vcek_key = load_pem_key(directory / "vcek.key")
    if not isinstance(vcek_key, ec.EllipticCurvePrivateKey) or not isinstance(
        vcek_key.curve, ec.SECP384R1
    ):
        raise SimStateCorrupt(f"{directory / 'vcek.key'}: not an EC P-384 key")
    if vcek_key.public_key() != certs["vcek"].public_key():
        raise SimStateCorrupt(f"{directory / 'vcek.key'}: does not match vcek.pem")
    hwid = certs["vcek"].extensions.get_extension_for_oid(OID_HWID).value
    if not isinstance(hwid, x509.UnrecognizedExtension) or hwid.value != config.hwid:
        raise SimStateCorrupt(f"{directory / 'vcek.pem'}: hwID does not match chip_id in sim.json")
    return SimState(directory, config, certs["ark"], certs["ask"], certs["vcek"], vcek_key)


def reissue_vcek(directory: Path, tcb: TcbVersion, now: datetime | None = None) -> SimState:
    """Move the simulated chip to a new TCB: a new VCEK, as AMD's KDS would issue."""
    state = load(directory)
    ask_key = load_pem_key(directory / "ask.key")
    if not isinstance(ask_key, rsa.RSAPrivateKey):
        raise SimStateCorrupt(f"{directory / 'ask.key'}: not an RSA key")
    config = SimConfig(
        state.config.product,
        tcb,
        state.config.chip_id,
        state.config.report_version,
        state.config.policy,
        state.config.created,
    )
    key, cert = hierarchy.make_vcek(
        config.product, tcb, config.hwid, ask_key, state.ask, now or datetime.now(UTC)
    )
    write_bytes(directory / "vcek.key", private_key_pem(key), mode=0o600)
    write_bytes(directory / "vcek.pem", cert.public_bytes(serialization.Encoding.PEM))
    write_bytes(directory / CONFIG_FILE, json.dumps(config.to_json(), indent=2).encode())
    return SimState(directory, config, state.ark, state.ask, cert, key)


def reset(directory: Path) -> bool:
    """Delete the simulator's state; ``False`` when there was none. Refuses foreign files."""
    if not directory.exists():
        return False
    ours = {CONFIG_FILE} | {f"{n}.pem" for n in CERT_NAMES} | {f"{n}.key" for n in CERT_NAMES}
    ours |= tdx_state.FILES
    foreign = [
        p.name
        for p in directory.iterdir()
        if p.name not in ours and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    ]
    if foreign:
        raise SimStateCorrupt(
            f"{directory}: refusing to delete, it holds files that are not the simulator's "
            f"({', '.join(sorted(foreign)[:3])})"
        )
    shutil.rmtree(directory)
    return True
