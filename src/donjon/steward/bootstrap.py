"""Assemble a Steward from its configuration: CA, policy, trust, store, clock, limits.

The CLI only maps flags onto :class:`StewardConfig`; everything else is here,
so a program embedding the Steward builds it the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from donjon.errors import UsageError
from donjon.steward.app import AppSettings
from donjon.steward.ca import CA_CERT_NAME, CA_KEY_NAME, CertificateAuthority
from donjon.steward.clock import NOW_ENV, fixed_clock, parse_time, system_clock
from donjon.steward.contract import Verifier
from donjon.steward.engine import default_verifier, development_platforms, load_policy, load_trust
from donjon.steward.server import DEV_BANNER
from donjon.steward.service import Steward
from donjon.steward.store import AuditStore

log = logging.getLogger("donjon.steward")

ADMIN_TOKEN_ENV = "DONJON_STEWARD_ADMIN_TOKEN"


@dataclass(frozen=True)
class StewardConfig:
    state_dir: Path = Path("steward")
    ca_cert: Path | None = None  # default: <state_dir>/ca.pem
    ca_key: Path | None = None  # default: <state_dir>/ca.key
    init: bool = False  # create the CA if it does not exist
    curve: str = "p384"
    ca_name: str = "Donjon Steward CA"
    policy: Path | None = None
    trust_dir: Path | None = None
    db: str | None = None  # default: sqlite:///<state_dir>/audit.db
    now: datetime | None = None  # fixed evaluation time (tests, expired vectors)
    admin_token_file: Path | None = None
    development: bool = False
    max_body: int = 256 * 1024
    max_concurrent: int = 8
    attest_timeout: float = 30.0

    @property
    def ca_cert_path(self) -> Path:
        return self.ca_cert or self.state_dir / CA_CERT_NAME

    @property
    def ca_key_path(self) -> Path:
        return self.ca_key or self.state_dir / CA_KEY_NAME

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{(self.state_dir / 'audit.db').resolve()}"


def read_admin_token(path: Path | None) -> str | None:
    """The revocation token from a file (first line) or ``$DONJON_STEWARD_ADMIN_TOKEN``."""
    if path is not None:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the admin token file {path}: {exc.strerror}") from None
        if len(token) < 16:
            raise UsageError(f"admin token in {path} is too short (at least 16 characters)")
        return token
    token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if token and len(token) < 16:
        raise UsageError(f"${ADMIN_TOKEN_ENV} is too short (at least 16 characters)")
    return token or None


def load_or_create_ca(config: StewardConfig, now: datetime) -> CertificateAuthority:
    cert, key = config.ca_cert_path, config.ca_key_path
    if config.init and not cert.exists() and not key.exists():
        ca = CertificateAuthority.create(name=config.ca_name, curve=config.curve, now=now)
        ca.save_to(cert, key)
        log.warning("created a new Steward CA: %s (key %s, mode 0600)", cert, key)
        return ca
    if not cert.exists() or not key.exists():
        raise UsageError(
            f"no Steward CA at {cert} / {key}",
            hint="create one with `donjon steward init` or pass --init",
        )
    return CertificateAuthority.load(cert, key)


def build_steward(
    config: StewardConfig, *, verifier: Verifier | None = None
) -> tuple[Steward, AppSettings]:
    """A ready Steward and its HTTP settings. ``verifier`` defaults to the engine's."""
    now_text = os.environ.get(NOW_ENV)
    instant = config.now or (parse_time(now_text, what=f"${NOW_ENV}") if now_text else None)
    clock = fixed_clock(instant) if instant is not None else system_clock
    if instant is not None:
        log.warning("clock fixed at %s: certificates are dated then", instant.isoformat())
    ca = load_or_create_ca(config, clock())  # a CA made now is valid at the fixed time
    policy = load_policy(config.policy)
    trust = load_trust(config.trust_dir, cache_dir=config.state_dir / "collateral")
    dev_platforms = development_platforms(policy)
    if dev_platforms and not config.development:
        raise UsageError(
            f"the policy allows non-TEE platforms ({', '.join(dev_platforms)}): "
            "start the Steward with --dev to confirm development mode"
        )
    if config.development:
        log.warning(DEV_BANNER)
        if dev_platforms:
            log.warning(
                "DEVELOPMENT MODE: policy accepts %s evidence; those certificates say so",
                ", ".join(dev_platforms),
            )
    if getattr(getattr(policy, "snp", None), "crl", "require") != "require":
        log.warning(
            'REVOCATION MAY GO UNCHECKED: the policy says [snp] crl = "if-available"; '
            "certificates issued without a current AMD CRL carry the advisory "
            '"revocation-not-checked"'
        )
    store = AuditStore.open(config.db_url)
    steward = Steward(
        ca=ca,
        policy=policy,
        trust=trust,
        store=store,
        verifier=verifier or default_verifier(),
        clock=clock,
    )
    settings = AppSettings(
        max_body=config.max_body,
        max_concurrent=config.max_concurrent,
        attest_timeout=config.attest_timeout,
        admin_token=read_admin_token(config.admin_token_file),
        development=config.development,
    )
    return steward, settings
