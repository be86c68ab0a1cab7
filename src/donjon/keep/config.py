"""The workload configuration: a superset of Enarx's ``Enarx.toml``.

An unmodified ``Enarx.toml`` (``args``, ``[env]``, ``steward``, ``[[files]]``
of kind null, stdin, stdout, stderr, listen and connect) means the same here as
under Enarx. Donjon adds ``kind = "dir"`` preopens, per-socket TLS options,
``steward_ca`` and ``[limits]``. Unknown fields are refused, never ignored: a
typo in a security setting must not silently fall back to a default.

Parsing is pure: nothing here touches the network or binds a socket. Paths in
the file are resolved relative to the file's directory by :mod:`.package`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from donjon.keep import config_peer
from donjon.keep.config_peer import Revocation
from donjon.keep.config_secret import SecretFile, SecretRef, env_value

#: fds 0-2 are stdio in WASI; these kinds may sit there.
STDIO_KINDS = frozenset({"null", "stdin", "stdout", "stderr"})
#: Names the Keep exports itself; a config may not set them.
RESERVED_ENV = frozenset({"FD_COUNT", "FD_NAMES"})

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


class Prot(StrEnum):
    TLS = "tls"
    TCP = "tcp"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _check_name(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "":
        raise ValueError("must not be empty")
    if ":" in value:
        raise ValueError(f"{value!r} contains ':', which separates the names in FD_NAMES")
    return value


Port = Annotated[int, Field(ge=0, le=65535)]


class _Stdio(_Strict):
    name: str | None = None

    _name = field_validator("name")(_check_name)

    def effective_name(self) -> str:
        kind: str = self.model_dump()["kind"]
        return self.name or kind


class NullFile(_Stdio):
    """Reads give EOF, writes are discarded."""

    kind: Literal["null"]


class StdinFile(_Stdio):
    kind: Literal["stdin"]


class StdoutFile(_Stdio):
    kind: Literal["stdout"]


class StderrFile(_Stdio):
    kind: Literal["stderr"]


class DirFile(_Strict):
    """Donjon: a host directory preopened for the guest at ``name``."""

    kind: Literal["dir"]
    name: str
    path: Path
    writable: bool = False

    _name = field_validator("name")(_check_name)

    def effective_name(self) -> str:
        return self.name


class ListenFile(_Strict):
    """A listening socket, bound before the workload starts."""

    kind: Literal["listen"]
    name: str
    addr: str = "::"
    port: Port | None = None  # 443 for tls, 80 for tcp; 0 picks a free port
    prot: Prot = Prot.TLS
    #: Donjon: require a client certificate that chains to this trust ("steward", a PEM path).
    client_ca: str | None = None
    # Donjon workload identity: what every client Keep's Steward-issued certificate must attest.
    #: ``"sha256:<hex>"`` of the client's main.wasm, or a list of them.
    expect_client_workload: str | list[str] | None = None
    expect_client_platform: str | list[str] | None = None
    #: ``"bl=3,tee=0,snp=8,ucode=115"``: each component at least this.
    expect_client_min_tcb: str | None = None
    #: Advisories accepted in a TEE client's certificate (default: none).
    allow_client_advisories: list[str] | None = None
    #: ``"if-available"``: admit clients without a revocation check when the CRL is unreachable.
    revocation: Revocation = Revocation.REQUIRED

    _name = field_validator("name")(_check_name)
    _workloads = field_validator("expect_client_workload")(
        lambda v: config_peer.workloads(v, "the client's")
    )
    _platforms = field_validator("expect_client_platform")(config_peer.platforms)
    _tcb = field_validator("expect_client_min_tcb")(config_peer.min_tcb)
    _advisories = field_validator("allow_client_advisories")(config_peer.advisories)

    @model_validator(mode="after")
    def _tls_only_options(self) -> ListenFile:
        expects = self.client_expects()
        if self.prot is Prot.TCP:
            given = ["client_ca"] if self.client_ca is not None else []
            if given or expects:
                raise ValueError(f'{", ".join(given + expects)} needs prot = "tls"')
        _check_loosening(
            self,
            expects or (["client_ca"] if self.client_ca == "steward" else []),
            ("allow_client_advisories", "revocation"),
            'client_ca = "steward" or expect_client_workload, expect_client_platform or '
            "expect_client_min_tcb",
        )
        if expects and self.effective_client_ca() != "steward":
            _check_revocation_possible(self.revocation, 'client_ca = "<bundle>"')
        return self

    def client_expects(self) -> list[str]:
        """The ``expect_client_*`` options given: each makes clients prove their workload."""
        fields = ("expect_client_workload", "expect_client_platform", "expect_client_min_tcb")
        return [k for k in fields if getattr(self, k) is not None]

    def effective_client_ca(self) -> str | None:
        """``client_ca``, or ``"steward"`` when clients must prove what they run."""
        if self.client_ca is None and self.client_expects():
            return "steward"
        return self.client_ca

    def effective_name(self) -> str:
        return self.name

    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 443 if self.prot is Prot.TLS else 80


def _check_loosening(
    entry: BaseModel, expects: list[str], options: tuple[str, ...], needs: str
) -> None:
    """An option that only loosens peer checks is refused where no check runs: a sign
    that the entry does not do what its author thinks."""
    given = [k for k in options if k in entry.model_fields_set]
    if given and not expects:
        raise ValueError(f"{given[0]} applies only with {needs}")


def _check_revocation_possible(revocation: Revocation, trust: str) -> None:
    if revocation is Revocation.REQUIRED:
        raise ValueError(
            f"with {trust} the Keep cannot fetch the peer Steward's CRL (only its own "
            'Steward\'s), so revocation cannot be checked: set revocation = "if-available" '
            "to accept peers without that check"
        )


#: What makes a connect entry check its peer as a relying party (and so use its loosenings).
STEWARD_PEER_OPTIONS = (
    'trust = "steward" or expect_workload, expect_platform, expect_min_tcb, expect_package, '
    "expect_repository or expect_signer"
)


class Trust(StrEnum):
    STEWARD = "steward"  # the CA that issued this Keep's certificate
    SYSTEM = "system"  # the host's default trust store
    BUNDLE = "bundle"  # a PEM file of CA certificates (``ca_bundle``)
    PIN = "pin"  # exactly one peer certificate (``pin``), e.g. a Keep without a Steward


class ConnectFile(_Strict):
    """An outgoing stream, connected before the workload starts."""

    kind: Literal["connect"]
    host: str
    name: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    prot: Prot = Prot.TLS
    # Donjon TLS options.
    trust: Trust | None = None  # default: pin if set, bundle if set, steward if any, else system
    ca_bundle: Path | None = None
    pin: Path | None = None
    server_name: str | None = None  # default: host
    client_cert: bool = False  # present the Keep's certificate (client authentication)
    # Donjon connection options.
    connect_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    retries: Annotated[int, Field(ge=0, le=100)] = 3
    retry_delay: Annotated[float, Field(ge=0, le=60)] = 0.5
    # Donjon workload identity: what the peer Keep's Steward-issued certificate must attest.
    #: ``"sha256:<hex>"`` of the peer's main.wasm.
    expect_workload: str | None = None
    #: Attested platforms accepted (``"snp"`` or a list); ``nil``/``sim``/``kvm`` admit
    #: development peers, which are refused otherwise.
    expect_platform: str | list[str] | None = None
    #: ``"bl=3,tee=0,snp=8,ucode=115"``: each component at least this; also accepts a
    #: peer whose Steward appraised no TCB (NotAppraised), since it is appraised here.
    expect_min_tcb: str | None = None
    #: ``"sha256:<hex>"`` of the OCI manifest the peer was deployed from.
    expect_package: str | None = None
    #: ``host[:port]/path`` (or ``host/path/*``) of the registry repository it came from.
    expect_repository: str | None = None
    #: Public key(s) (PEM path relative to this config, or inline PEM): the peer's package
    #: must be signed by one of them over its repository and manifest digest.
    expect_signer: str | list[str] | None = None
    #: Advisories accepted in a TEE peer's certificate (default: none).
    allow_advisories: list[str] | None = None
    #: ``"if-available"``: connect without a revocation check when the CRL is unreachable.
    revocation: Revocation = Revocation.REQUIRED

    _name = field_validator("name")(_check_name)
    _workload = field_validator("expect_workload")(
        lambda v: None if v is None else config_peer.workload(v)
    )
    _package = field_validator("expect_package")(config_peer.package)
    _repository = field_validator("expect_repository")(config_peer.repository)
    _signer = field_validator("expect_signer")(config_peer.signers)
    _platforms = field_validator("expect_platform")(config_peer.platforms)
    _tcb = field_validator("expect_min_tcb")(config_peer.min_tcb)
    _advisories = field_validator("allow_advisories")(config_peer.advisories)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not a host name or address")
        return value

    @model_validator(mode="after")
    def _tls_options(self) -> ConnectFile:
        tls_only = {
            "trust": self.trust,
            "ca_bundle": self.ca_bundle,
            "pin": self.pin,
            "server_name": self.server_name,
        }
        if self.prot is Prot.TCP:
            given = [k for k, v in tls_only.items() if v is not None]
            if self.client_cert:
                given.append("client_cert")
            if given:
                raise ValueError(f'{", ".join(given)} needs prot = "tls"')
        if self.trust is Trust.BUNDLE and self.ca_bundle is None:
            raise ValueError('trust = "bundle" needs ca_bundle = "path/to/cas.pem"')
        if self.trust is Trust.PIN and self.pin is None:
            raise ValueError('trust = "pin" needs pin = "path/to/peer.pem"')
        if self.pin is not None and self.trust not in (None, Trust.PIN):
            raise ValueError(f'pin is only used with trust = "pin", not "{self.trust.value}"')
        if self.ca_bundle is not None and self.trust not in (None, Trust.BUNDLE):
            raise ValueError(
                f'ca_bundle is only used with trust = "bundle", not "{self.trust.value}"'
            )
        if self.pin is not None and self.ca_bundle is not None:
            raise ValueError("give either pin or ca_bundle, not both")
        expects = self.expects()
        if expects:
            if self.prot is Prot.TCP:
                raise ValueError(f'{", ".join(expects)} needs prot = "tls"')
            trust = self.effective_trust(has_steward=True)
            if trust not in (Trust.STEWARD, Trust.BUNDLE):
                raise ValueError(
                    f'{expects[0]} needs trust = "steward" or "bundle", not "{trust.value}": '
                    "only a Steward's certificate attests which workload a peer runs"
                )
            if trust is Trust.BUNDLE:
                _check_revocation_possible(self.revocation, 'trust = "bundle"')
        _check_loosening(
            self,
            expects or (["trust"] if self._may_trust_steward() else []),
            ("allow_advisories", "revocation"),
            STEWARD_PEER_OPTIONS,
        )
        return self

    def _may_trust_steward(self) -> bool:
        """Steward trust, given or implied when the config names a Steward (checked there)."""
        return self.prot is Prot.TLS and self.effective_trust(has_steward=True) is Trust.STEWARD

    def loosening_without_effect(self, has_steward: bool) -> str | None:
        """``allow_advisories``/``revocation`` where no peer check runs, given the config."""
        if self.expects() or self.effective_trust(has_steward) is Trust.STEWARD:
            return None
        given = [k for k in ("allow_advisories", "revocation") if k in self.model_fields_set]
        return f"{given[0]} applies only with {STEWARD_PEER_OPTIONS}" if given else None

    def expects(self) -> list[str]:
        """The ``expect_*`` options given: each makes the peer prove its workload."""
        fields = (
            "expect_workload",
            "expect_platform",
            "expect_min_tcb",
            "expect_package",
            "expect_repository",
            "expect_signer",
        )
        return [k for k in fields if getattr(self, k) is not None]

    def expected_workload_sha256(self) -> bytes | None:
        """The digest ``expect_workload`` names, as bytes."""
        if self.expect_workload is None:
            return None
        return bytes.fromhex(self.expect_workload.removeprefix("sha256:"))

    def expected_platforms(self) -> frozenset[str] | None:
        return config_peer.as_set(self.expect_platform)

    def effective_name(self) -> str:
        return self.name or self.host

    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 443 if self.prot is Prot.TLS else 80

    def effective_trust(self, has_steward: bool) -> Trust:
        if self.trust is not None:
            return self.trust
        if self.pin is not None:
            return Trust.PIN
        if self.ca_bundle is not None:
            return Trust.BUNDLE
        return Trust.STEWARD if has_steward else Trust.SYSTEM


FileEntry = Annotated[
    NullFile
    | StdinFile
    | StdoutFile
    | StderrFile
    | DirFile
    | ListenFile
    | ConnectFile
    | SecretFile,
    Field(discriminator="kind"),
]


class LimitsConfig(_Strict):
    """Donjon: resource limits of the workload."""

    #: Bytes of linear memory: an integer or a string like "256MiB".
    memory: int | str | None = None
    #: Wall-clock seconds for the whole run.
    timeout: Annotated[float, Field(gt=0)] | None = None

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_size(value)
        return value

    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_size(self.memory)


def parse_size(value: int | str) -> int:
    """``"64MiB"`` -> 67108864; a bare integer is bytes."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be a positive number of bytes")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f'{value!r} is not a size like 65536, "64MiB" or "1GB"')
    number, unit = int(match.group(1)), (match.group(2) or "").upper()
    base = 1024 if "I" in unit else 1000
    exponent = 0 if unit in ("", "B") else "KMGT".index(unit[0]) + 1
    size: int = number * base**exponent
    if size <= 0:
        raise ValueError("must be a positive size")
    return size


def _default_files() -> list[FileEntry]:
    return [StdinFile(kind="stdin"), StdoutFile(kind="stdout"), StderrFile(kind="stderr")]


class Config(_Strict):
    """A parsed ``Donjon.toml`` or ``Enarx.toml``."""

    args: list[str] = Field(default_factory=list)
    #: Donjon: a value may be ``{ secret = "name" }``, fetched from the Steward after attesting.
    env: dict[str, Annotated[str | SecretRef, BeforeValidator(env_value)]] = Field(
        default_factory=dict
    )
    steward: str | None = None
    #: Donjon: PEM bundle trusted for the Steward's HTTPS endpoint (default: the system store).
    steward_ca: Path | None = None
    #: Enarx's default when ``files`` is absent: the host's stdin, stdout and stderr.
    files: list[FileEntry] = Field(default_factory=lambda: _default_files())
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    @field_validator("steward")
    @classmethod
    def _steward(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https":
            raise ValueError(
                f"{value!r} must be an https:// URL: the CSR and certificate travel on it"
            )
        if not parts.hostname:
            raise ValueError(f"{value!r} has no host")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        for key in value:
            if key in RESERVED_ENV:
                raise ValueError(f"{key} is set by the Keep from [[files]]; remove it")
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"{key!r} is not a valid variable name")
        return value

    def fd_names(self) -> list[str]:
        return [entry.effective_name() for entry in self.files]

    def plain_env(self) -> dict[str, str]:
        """The environment values written in the config (not secrets)."""
        return {k: v for k, v in self.env.items() if isinstance(v, str)}

    def secret_names(self) -> list[str]:
        """Every Steward secret this config needs, once each, in order of first use."""
        names = [e.secret for e in self.files if isinstance(e, SecretFile)]
        names += [v.secret for v in self.env.values() if isinstance(v, SecretRef)]
        return list(dict.fromkeys(names))


def file_label(index: int, entry: object) -> str:
    """How errors name one ``[[files]]`` entry: 1-based entry number, its name and its fd."""

    def get(key: str) -> object:
        return entry.get(key) if isinstance(entry, dict) else getattr(entry, key, None)

    name = get("name") or get("host")
    if isinstance(name, str):
        return f'[[files]] #{index + 1} "{name}" (fd {index})'
    kind = get("kind")
    what = f"{kind}, " if isinstance(kind, str) else ""
    return f"[[files]] #{index + 1} ({what}fd {index})"


def check_files(config: Config) -> list[tuple[int, str]]:
    """Problems across ``files`` entries: (index, message) pairs.

    WASI gives fds 0-2 to stdio, so only stdio kinds may sit there. wasi-libc
    finds preopened directories by scanning from fd 3 and stops at the first fd
    that is not one, so every ``dir`` must come before the first socket.
    """
    problems: list[tuple[int, str]] = []
    first_other: int | None = None
    seen: dict[str, int] = {}
    for index, entry in enumerate(config.files):
        if index < 3 and entry.kind not in STDIO_KINDS:
            problems.append(
                (
                    index,
                    f"fds 0-2 are stdin/stdout/stderr, so a {entry.kind!r} entry cannot be "
                    "there; list three null/stdin/stdout/stderr entries first",
                )
            )
        elif index >= 3 and entry.kind in STDIO_KINDS:
            problems.append(
                (index, f"a {entry.kind!r} entry can only be one of the first three (fds 0-2)")
            )
        preopened = entry.kind == "dir" or (isinstance(entry, SecretFile) and entry.is_path)
        if preopened:
            if first_other is not None:
                problems.append(
                    (
                        index,
                        (
                            "a dir must come before the first socket"
                            if entry.kind == "dir"
                            else "a secret with a /path name is an in-memory dir: it must "
                            "come before the first socket or fd secret"
                        )
                        + f" (fd {first_other}): "
                        "wasi-libc scans preopened dirs from fd 3 and stops at the first "
                        "fd that is not one, so this dir would be invisible to the guest",
                    )
                )
        elif entry.kind not in STDIO_KINDS and first_other is None and index >= 3:
            first_other = index
        if isinstance(entry, SecretFile) and entry.is_path:
            clash = [
                i
                for i, e in enumerate(config.files)
                if isinstance(e, DirFile) and e.name == entry.directory()
            ]
            if clash:
                problems.append(
                    (
                        index,
                        f"{entry.directory()} is also the dir of [[files]] #{clash[0] + 1}: put "
                        "secrets in a directory of their own, such as /run/secrets",
                    )
                )
        if isinstance(entry, SecretFile) and not config.steward:
            problems.append((index, "a secret needs a steward URL in the config"))
        named = entry.kind not in STDIO_KINDS or getattr(entry, "name", None) is not None
        if named:
            name = entry.effective_name()
            if name in seen:
                problems.append(
                    (index, f"name {name!r} is already used by [[files]] #{seen[name] + 1}")
                )
            else:
                seen[name] = index
        if isinstance(entry, ConnectFile) and entry.trust is Trust.STEWARD and not config.steward:
            problems.append((index, 'trust = "steward" needs a steward URL in the config'))
        elif (
            isinstance(entry, ConnectFile)
            and entry.expects()
            and entry.effective_trust(config.steward is not None) is not Trust.STEWARD
            and entry.effective_trust(config.steward is not None) is not Trust.BUNDLE
        ):
            problems.append(
                (
                    index,
                    f'{entry.expects()[0]} needs a steward URL in the config (or trust = "bundle" '
                    "with the peer's Steward CA): only a Steward's certificate attests what the "
                    "peer runs",
                )
            )
        if isinstance(entry, ConnectFile):
            useless = entry.loosening_without_effect(config.steward is not None)
            if useless is not None:
                problems.append((index, useless))
        if isinstance(entry, ListenFile) and not config.steward:
            if entry.client_ca == "steward":
                problems.append((index, 'client_ca = "steward" needs a steward URL in the config'))
            elif entry.effective_client_ca() == "steward":
                problems.append(
                    (
                        index,
                        f"{entry.client_expects()[0]} needs a steward URL in the config (or "
                        "client_ca with the clients' Steward CA): only a Steward's certificate "
                        "attests what a client runs",
                    )
                )
    secret_env = [k for k, v in config.env.items() if isinstance(v, SecretRef)]
    if secret_env and not config.steward:
        problems.append((-1, f"env.{secret_env[0]}: a secret needs a steward URL in the config"))
    return problems
