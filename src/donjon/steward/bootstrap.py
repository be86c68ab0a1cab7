"""Assemble a Steward from its configuration: CA, policy, trust, store, clock, limits.

The CLI only maps flags onto :class:`StewardConfig`; everything else is here,
so a program embedding the Steward builds it the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from donjon.errors import UsageError
from donjon.steward.app import AppSettings
from donjon.steward.ca import CA_CERT_NAME, CA_KEY_NAME, CertificateAuthority
from donjon.steward.clock import NOW_ENV, fixed_clock, parse_time, system_clock
from donjon.steward.console import announce as announce_console
from donjon.steward.console import resolve_mode
from donjon.steward.console.queries import record_policy
from donjon.steward.contract import Verifier
from donjon.steward.engine import default_verifier, development_platforms, load_policy, load_trust
from donjon.steward.errors import StewardError
from donjon.steward.pkcs11uri import is_pkcs11_uri
from donjon.steward.secrets_release import SecretService
from donjon.steward.secrets_store import SecretStore
from donjon.steward.secrets_vault import KEK_ENV, load_kek
from donjon.steward.server import DEV_BANNER
from donjon.steward.service import Steward
from donjon.steward.statedir import check_private, make_state_dir, private_sqlite_file
from donjon.steward.store import AuditStore

log = logging.getLogger("donjon.steward")

ADMIN_TOKEN_ENV = "DONJON_STEWARD_ADMIN_TOKEN"
AUDIT_TOKEN_ENV = "DONJON_STEWARD_AUDIT_TOKEN"


@dataclass(frozen=True)
class StewardConfig:
    state_dir: Path = Path("steward")
    ca_cert: Path | None = None  # default: <state_dir>/ca.pem
    ca_key: Path | str | None = None  # a file or a pkcs11: URI; default: <state_dir>/ca.key
    init: bool = False  # create the CA if it does not exist
    curve: str = "p384"
    ca_name: str = "Donjon Steward CA"
    policy: Path | None = None
    trust_dir: Path | None = None
    db: str | None = None  # default: sqlite:///<state_dir>/audit.db
    now: datetime | None = None  # fixed evaluation time (tests, expired vectors)
    admin_token_file: Path | None = None
    audit_token_file: Path | None = None  # read-only token of GET /v1/certificates/{serial}
    public_audit: bool = False  # audit reads need no token (an explicit opt-out, logged)
    development: bool = False
    max_body: int = 256 * 1024
    max_concurrent: int = 8
    attest_timeout: float = 30.0
    console: str | None = None  # off | read-only | on; default: on when a token exists
    #: Key-encryption key of stored secrets (0600 file); else $DONJON_STEWARD_KEK; else none.
    secrets_kek_file: Path | None = None

    @property
    def ca_cert_path(self) -> Path:
        return self.ca_cert or self.state_dir / CA_CERT_NAME

    @property
    def ca_key_path(self) -> Path | str:
        """The key file, or the ``pkcs11:`` URI of a key on a token."""
        if isinstance(self.ca_key, str) and not is_pkcs11_uri(self.ca_key):
            return Path(self.ca_key)
        return self.ca_key or self.state_dir / CA_KEY_NAME

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{(self.state_dir / 'audit.db').resolve()}"


def read_token(path: Path | None, env: str, what: str) -> str | None:
    """A bearer token from a file (first line) or the environment variable ``env``."""
    if path is not None:
        check_private(Path(path), f"{what} token file")
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the {what} token file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"the {what} token file {path} is not text") from None
        if len(token) < 16:
            raise UsageError(f"{what} token in {path} is too short (at least 16 characters)")
        return token
    token = os.environ.get(env, "").strip()
    if token and len(token) < 16:
        raise UsageError(f"${env} is too short (at least 16 characters)")
    return token or None


def read_admin_token(path: Path | None) -> str | None:
    """The revocation token from a file (first line) or ``$DONJON_STEWARD_ADMIN_TOKEN``."""
    return read_token(path, ADMIN_TOKEN_ENV, "admin")


def audit_access(config: StewardConfig, admin_token: str | None) -> tuple[str | None, bool]:
    """The audit token and public flag, refusing a contradiction."""
    audit_token = read_token(config.audit_token_file, AUDIT_TOKEN_ENV, "audit")
    if config.public_audit and audit_token is not None:
        raise UsageError(
            "--public-audit contradicts an audit token "
            f"(--audit-token-file or ${AUDIT_TOKEN_ENV}): choose one"
        )
    return audit_token, config.public_audit


def say_audit_access(
    config: StewardConfig,
    audit_token: str | None,
    admin_token: str | None,
    warn: Callable[..., None],
) -> None:
    """Said once at start, once the configuration is known to be good."""
    if config.public_audit:
        warn(
            "AUDIT RECORDS ARE PUBLIC (--public-audit): GET /v1/certificates/{serial} "
            "answers anyone, and says which workloads run where"
        )
    elif audit_token is None and admin_token is None:
        warn(
            "audit reads over HTTP are disabled (no audit or admin token): "
            "use `donjon steward certs` on the store, or pass --audit-token-file"
        )
    else:
        log.info(
            "audit reads (GET /v1/certificates/{serial}) need the %s bearer token",
            "audit or admin" if audit_token is not None else "admin",
        )


def load_or_create_ca(config: StewardConfig, now: datetime) -> CertificateAuthority:
    cert, key = config.ca_cert_path, config.ca_key_path
    if isinstance(key, str):  # a key on a PKCS#11 token
        if not cert.exists():
            raise UsageError(
                f"no Steward CA certificate at {cert} for the token key",
                hint="create both with `donjon steward init --pkcs11 URI`",
            )
        return CertificateAuthority.load(cert, key)
    if config.init and not cert.exists() and not key.exists():
        make_state_dir(key.parent)
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


def check_policy_pins(policy: object) -> None:
    """Refuse to start with a TEE section that would certify any guest without saying so."""
    unpinned = getattr(policy, "unpinned", None)
    problems: list[str] = unpinned() if unpinned is not None else []
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(
            f"{getattr(policy, 'source', 'the policy')}: {problems[0]}{more}",
            hint="docs/policy.md: 'What a policy must pin'",
        )
    tees = getattr(policy, "tees", {})
    if (
        not tees
        and getattr(policy, "sim", None) is None
        and not (getattr(policy, "nil_allow", False) or getattr(policy, "kvm_allow", False))
    ):
        raise UsageError(
            f"{getattr(policy, 'source', 'the policy')}: accepts no platform at all: add a "
            "section such as [snp] that pins your workload",
            hint="docs/policy.md",
        )


def announce_policy(policy: object, steward: Steward, *, announce: bool = True) -> None:
    """Say at every start what the policy opted into, in the log and in /metrics.

    ``announce``: log it (once per Steward; a ``--workers`` worker only sets its metrics,
    and says it at debug level, as the parent already warned)."""
    warn = log.warning if announce else log.debug
    info = log.info if announce else log.debug
    accepting = getattr(policy, "accepting_any", None)
    for name in accepting() if accepting is not None else []:
        steward.metrics.accept_any_workload.labels(name).set(1)
        warn(
            "[%s] accept_any_workload = true: ANY genuine %s guest gets a certificate, "
            "whatever it runs or claims to run; pin a measurement or signer to narrow it",
            name,
            name,
        )
    freshness = getattr(policy, "freshness", None)
    if freshness is not None and freshness.donjon == "optional":
        warn(
            'FRESHNESS OPTIONAL: [freshness] donjon = "optional": Donjon evidence without a '
            "challenge nonce is accepted, so copied evidence can be replayed"
        )
    if freshness is not None and freshness.enarx == "accept":
        info(
            "Enarx CSRs (no challenge possible) are accepted with the advisory "
            'evidence-not-fresh; [freshness] enarx = "refuse" turns them away'
        )


def build_steward(
    config: StewardConfig, *, verifier: Verifier | None = None, announce: bool = True
) -> tuple[Steward, AppSettings]:
    """A ready Steward and its HTTP settings. ``verifier`` defaults to the engine's.

    ``announce``: log the development-mode warnings (once per Steward, not per worker)."""
    # Tokens first: a bad token file must not leave a new CA or an open store behind.
    admin_token = read_admin_token(config.admin_token_file)
    audit_token, public_audit = audit_access(config, admin_token)
    warn = log.warning if announce else log.debug
    console = resolve_mode(config.console, admin_token=admin_token, audit_token=audit_token)
    now_text = os.environ.get(NOW_ENV)
    instant = config.now or (parse_time(now_text, what=f"${NOW_ENV}") if now_text else None)
    clock = fixed_clock(instant) if instant is not None else system_clock
    if instant is not None:
        warn("clock fixed at %s: certificates are dated then", instant.isoformat())
    if config.policy is None:
        raise UsageError(
            "the Steward needs a policy (--policy FILE): it names the platforms and workloads "
            "it certifies",
            hint="see docs/policy.md; pin the guest's measurement, then its allowed_workloads",
        )
    policy = load_policy(config.policy)
    check_policy_pins(policy)
    say_audit_access(config, audit_token, admin_token, warn)
    make_state_dir(config.state_dir)
    ca = load_or_create_ca(config, clock())  # a CA made now is valid at the fixed time
    trust = load_trust(config.trust_dir, cache_dir=config.state_dir / "collateral")
    dev_platforms = development_platforms(policy)
    if dev_platforms and not config.development:
        raise UsageError(
            f"the policy allows non-TEE platforms ({', '.join(dev_platforms)}): "
            "start the Steward with --dev to confirm development mode"
        )
    if config.development:
        warn(DEV_BANNER)
        if dev_platforms:
            warn(
                "DEVELOPMENT MODE: policy accepts %s evidence; those certificates say so",
                ", ".join(dev_platforms),
            )
    if getattr(getattr(policy, "snp", None), "crl", "require") != "require":
        warn(
            'REVOCATION MAY GO UNCHECKED: the policy says [snp] crl = "if-available"; '
            "certificates issued without a current AMD CRL carry the advisory "
            '"revocation-not-checked"'
        )
    for name in ("tdx", "sgx"):
        collateral = getattr(getattr(policy, "tees", {}).get(name), "collateral", None)
        if collateral is not None and "if-available" in (collateral.crl, collateral.tcb_mode):
            warn(
                "INTEL COLLATERAL MAY GO UNCHECKED: the policy says [%s] crl = %r, "
                "tcb_mode = %r; such certificates carry the advisory "
                '"revocation-not-checked" or "tcb-not-appraised"',
                name,
                collateral.crl,
                collateral.tcb_mode,
            )
    if config.db is None:
        private_sqlite_file((config.state_dir / "audit.db").resolve())
    store = AuditStore.open(config.db_url)
    if config.db is None:
        private_sqlite_file((config.state_dir / "audit.db").resolve())  # its WAL, now there
    steward = Steward(
        ca=ca,
        policy=policy,
        trust=trust,
        store=store,
        verifier=verifier or default_verifier(),
        clock=clock,
    )
    announce_policy(policy, steward, announce=announce)
    remember_policy(store, config.policy, policy.digest, policy.text_digest)
    if announce:  # once per Steward, not per worker
        announce_console(console, admin_token=admin_token, audit_token=audit_token)
    settings = AppSettings(
        max_body=config.max_body,
        max_concurrent=config.max_concurrent,
        attest_timeout=config.attest_timeout,
        admin_token=admin_token,
        audit_token=audit_token,
        public_audit=public_audit,
        development=config.development,
        console=console,
    )
    return steward, settings


def remember_policy(store: AuditStore, path: Path, digest: str, text_digest: str) -> None:
    """Keep the policy text this Steward starts with, so the console can show what changed.

    ``digest`` is the policy id (it covers the files the policy names, too); ``text_digest``
    is the SHA-256 of the file alone, to see that the text read again is the one loaded."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        log.warning("policy history: cannot read %s again (%s): not recorded", path, exc.strerror)
        return
    if hashlib.sha256(data).hexdigest() != text_digest:
        log.warning("policy history: %s changed while the Steward started: not recorded", path)
        return
    try:
        record_policy(
            store.engine,
            digest=digest,
            source=str(path),
            text=data.decode("utf-8", errors="replace"),
            now=system_clock(),
        )
    except StewardError as exc:
        log.warning("policy history: not recorded: %s", exc.message)


def build_secrets(config: StewardConfig, steward: Steward) -> SecretService | None:
    """Secret storage and release, when a KEK is configured (else the routes say disabled)."""
    kek = load_kek(config.secrets_kek_file)
    if kek is None:
        log.info("secrets disabled (no --secrets-kek-file or $%s)", KEK_ENV)
        return None
    store = SecretStore(steward.store.engine)
    stale = sorted({row.name for row in store.live_rows() if row.sealed.kek_id != kek.kek_id})
    if stale:
        log.warning(
            "secrets wrapped by another KEK cannot be released until rewrapped: %s",
            ", ".join(stale[:20]),
        )
    log.info(
        "secrets enabled: KEK %s; release needs mutual TLS with a Keep certificate", kek.kek_id
    )
    return SecretService(
        store=store, kek=kek, ca=steward.ca, audit=steward.store, clock=steward.clock
    )
