"""The simulator's TDX product: its configuration, Intel-like keys and certificates.

Lives in the same directory as the SNP product (one product per directory;
``donjon sim init --tee tdx`` makes this one). Layout (keys 0600, every file
written atomically; ``tdx.json`` last, since it marks the product as made)::

    tdx.json                                   FMSPC, TCB, TD attributes, TCB status to publish
    tdx-root.pem  tdx-pck-ca.pem  tdx-pck.pem  tdx-tcb-signing.pem      certificates
    tdx-root.key  tdx-pck-ca.key  tdx-pck.key  tdx-tcb-signing.key  tdx-qe.key  keys

Loading is strict: an unknown field, a wrong type or a PCK that does not match
the configuration is refused, naming the file.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.atomicfile import make_private_dir, write_bytes
from donjon.attestation.dcap import layout
from donjon.attestation.dcap.collateral import TCB_STATUSES, CollateralBundle
from donjon.attestation.dcap.pck import PckExtensions, PckTcb, pck_extensions
from donjon.keep.sim.errors import SimAlreadyInitialised, SimNotInitialised, SimStateCorrupt
from donjon.keep.sim.pemfiles import load_pem_certificate, load_pem_key, private_key_pem
from donjon.keep.sim.tdx_hierarchy import IntelHierarchy, Issued, generate
from donjon.keep.sim.tdx_quote import SimPlatformTcb, collateral, sign_quote, td_report

STATE_VERSION = 1
CONFIG_FILE = "tdx.json"
ISSUED = ("root", "pck-ca", "pck", "tcb-signing")
FILES = frozenset(
    {CONFIG_FILE, "tdx-qe.key"}
    | {f"tdx-{name}.pem" for name in ISSUED}
    | {f"tdx-{name}.key" for name in ISSUED}
)
#: SEPT_VE_DISABLE set, DEBUG clear: what a production TD launches with.
DEFAULT_ATTRIBUTES = layout.TD_ATTRIBUTE_BITS["SEPT_VE_DISABLE"]
DEFAULT_XFAM = bytes.fromhex("e702060000000000")
DEFAULT_COMPONENTS = (3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
DEFAULT_TEE_TCB_SVN = bytes([3, 1, 2] + [0] * 13)
_KEYS = frozenset(
    {
        "version", "tee", "fmspc", "sgx_components", "pcesvn", "tee_tcb_svn", "qe_isvsvn",
        "mrseam", "td_attributes", "xfam", "tcb_status", "advisories", "created",
    }
)  # fmt: skip


@dataclass(frozen=True)
class TdxSimConfig:
    fmspc: bytes = bytes.fromhex("00d06f000000")
    sgx_components: tuple[int, ...] = DEFAULT_COMPONENTS
    pcesvn: int = 11
    tee_tcb_svn: bytes = DEFAULT_TEE_TCB_SVN
    qe_isvsvn: int = 4
    mrseam: bytes = field(default_factory=lambda: bytes.fromhex("5e" * 48))
    td_attributes: int = DEFAULT_ATTRIBUTES
    xfam: bytes = DEFAULT_XFAM
    #: The TCB status the simulated Intel publishes for this platform (and its advisories).
    tcb_status: str = "UpToDate"
    advisories: tuple[str, ...] = ()
    created: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.fmspc) != 6 or len(self.tee_tcb_svn) != 16 or len(self.mrseam) != 48:
            raise ValueError("fmspc is 6 bytes, tee_tcb_svn 16, mrseam 48")
        if len(self.sgx_components) != 16 or not all(0 <= c <= 255 for c in self.sgx_components):
            raise ValueError("sgx_components are 16 values 0..255")
        if self.tcb_status not in TCB_STATUSES:
            raise ValueError(f"TCB status must be one of {', '.join(TCB_STATUSES)}")
        if len(self.xfam) != 8:
            raise ValueError("xfam is 8 bytes")

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes & layout.TD_ATTRIBUTE_BITS["DEBUG"])

    @property
    def platform_tcb(self) -> SimPlatformTcb:
        return SimPlatformTcb(
            self.sgx_components, self.pcesvn, self.tee_tcb_svn, self.qe_isvsvn, self.mrseam
        )

    def pck_extensions(self, ppid: bytes, instance: bytes) -> PckExtensions:
        return PckExtensions(
            ppid=ppid,
            tcb=PckTcb(self.sgx_components, self.pcesvn, bytes(self.sgx_components)),
            pceid=bytes(2),
            fmspc=self.fmspc,
            sgx_type=1,
            platform_instance_id=instance,
            dynamic_platform=True,
            cached_keys=True,
            smt_enabled=True,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "tee": "tdx",
            "fmspc": self.fmspc.hex(),
            "sgx_components": list(self.sgx_components),
            "pcesvn": self.pcesvn,
            "tee_tcb_svn": self.tee_tcb_svn.hex(),
            "qe_isvsvn": self.qe_isvsvn,
            "mrseam": self.mrseam.hex(),
            "td_attributes": f"{self.td_attributes:#018x}",
            "xfam": self.xfam.hex(),
            "tcb_status": self.tcb_status,
            "advisories": list(self.advisories),
            "created": (self.created or datetime.now(UTC)).isoformat(),
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> TdxSimConfig:
        if not isinstance(data, dict):
            raise SimStateCorrupt(f"{where}: expected a JSON object")
        unknown = set(data) - _KEYS
        if unknown:
            raise SimStateCorrupt(f"{where}: unknown field {sorted(unknown)[0]!r}")
        if data.get("version") != STATE_VERSION or data.get("tee") != "tdx":
            raise SimStateCorrupt(f"{where}: not a version {STATE_VERSION} TDX simulator state")
        try:
            return cls(
                fmspc=bytes.fromhex(data["fmspc"]),
                sgx_components=tuple(int(v) for v in data["sgx_components"]),
                pcesvn=int(data["pcesvn"]),
                tee_tcb_svn=bytes.fromhex(data["tee_tcb_svn"]),
                qe_isvsvn=int(data["qe_isvsvn"]),
                mrseam=bytes.fromhex(data["mrseam"]),
                td_attributes=int(str(data["td_attributes"]), 0),
                xfam=bytes.fromhex(data["xfam"]),
                tcb_status=str(data["tcb_status"]),
                advisories=tuple(str(a) for a in data["advisories"]),
                created=datetime.fromisoformat(str(data["created"])),
            )
        except KeyError as exc:
            raise SimStateCorrupt(f"{where}: missing field {exc.args[0]!r}") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise SimStateCorrupt(f"{where}: {str(exc).splitlines()[0]}") from None


@dataclass(frozen=True)
class TdxSimState:
    directory: Path
    config: TdxSimConfig
    hierarchy: IntelHierarchy
    attestation_key: ec.EllipticCurvePrivateKey

    @property
    def root_path(self) -> Path:
        return self.directory / "tdx-root.pem"

    def chain_pem(self) -> bytes:
        h = self.hierarchy
        return b"".join(
            c.cert.public_bytes(serialization.Encoding.PEM) for c in (h.pck, h.pck_ca, h.root)
        )

    def quote(self, report_data: bytes, mrtd: bytes) -> bytes:
        """A signed v4 TD quote over ``report_data``, for a TD measured as ``mrtd``."""
        config = self.config
        body = td_report(
            config.platform_tcb,
            mrtd=mrtd,
            report_data=report_data,
            td_attributes=config.td_attributes,
            xfam=config.xfam,
        )
        return sign_quote(
            body,
            tcb=config.platform_tcb,
            pck=self.hierarchy.pck,
            attestation_key=self.attestation_key,
            chain_pem=self.chain_pem(),
        )

    def collateral(self, now: datetime | None = None) -> CollateralBundle:
        h = self.hierarchy
        return collateral(
            self.config.platform_tcb,
            root=h.root,
            pck_ca=h.pck_ca,
            tcb_signing=h.tcb_signing,
            fmspc=self.config.fmspc,
            now=now or datetime.now(UTC),
            status=self.config.tcb_status,
            advisories=self.config.advisories,
        )


def is_initialised(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file()


def init(
    directory: Path, config: TdxSimConfig, *, force: bool = False, now: datetime | None = None
) -> TdxSimState:
    """Create the TDX product in ``directory``; refuse to overwrite one unless ``force``."""
    from donjon.keep.sim import state as snp_state  # it imports this module: not at the top

    if (is_initialised(directory) or snp_state.is_initialised(directory)) and not force:
        raise SimAlreadyInitialised(
            f"a simulated TEE already exists in {directory}",
            hint="use `donjon sim reset` first, or `donjon sim init --force`",
        )
    if force:
        snp_state.reset(directory)  # one product per directory
    make_private_dir(directory)
    now = now or datetime.now(UTC)
    h = generate(config.pck_extensions(secrets.token_bytes(16), secrets.token_bytes(16)), now)
    qe_key = ec.generate_private_key(ec.SECP256R1())
    for name, issued in zip(ISSUED, (h.root, h.pck_ca, h.pck, h.tcb_signing), strict=True):
        write_bytes(directory / f"tdx-{name}.key", private_key_pem(issued.key), mode=0o600)
        write_bytes(
            directory / f"tdx-{name}.pem", issued.cert.public_bytes(serialization.Encoding.PEM)
        )
    write_bytes(directory / "tdx-qe.key", private_key_pem(qe_key), mode=0o600)
    stamped = TdxSimConfig(**{**config.__dict__, "created": config.created or now})
    write_bytes(directory / CONFIG_FILE, json.dumps(stamped.to_json(), indent=2).encode())
    return TdxSimState(directory, stamped, h, qe_key)


def load(directory: Path) -> TdxSimState:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise SimNotInitialised(
            f"the simulated TDX is not initialised in {directory}: run `donjon sim init --tee tdx`"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SimStateCorrupt(f"{path}: unreadable: {exc}") from None
    config = TdxSimConfig.from_json(data, path)
    issued = [
        Issued(
            _load_key(directory / f"tdx-{n}.key"), load_pem_certificate(directory / f"tdx-{n}.pem")
        )
        for n in ISSUED
    ]
    for name, item in zip(ISSUED, issued, strict=True):
        if item.key.public_key() != item.cert.public_key():
            raise SimStateCorrupt(f"{directory / f'tdx-{name}.key'}: does not match its .pem")
    hierarchy = IntelHierarchy(*issued)
    try:
        fmspc = pck_extensions(hierarchy.pck.cert).fmspc
    except Exception as exc:  # a damaged PCK: say which file
        raise SimStateCorrupt(f"{directory / 'tdx-pck.pem'}: {exc}") from None
    if fmspc != config.fmspc:
        raise SimStateCorrupt(f"{directory / 'tdx-pck.pem'}: FMSPC does not match {path.name}")
    return TdxSimState(directory, config, hierarchy, _load_key(directory / "tdx-qe.key"))


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = load_pem_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SimStateCorrupt(f"{path}: not an EC P-256 key")
    return key
