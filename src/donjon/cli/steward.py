"""``donjon steward``: create a Steward CA, serve it, and read or change its audit store."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from donjon import logformat
from donjon.cli.options import DIRECTORY, FILE, JSON
from donjon.cli.output import escape, print_json
from donjon.steward.reasons import REVOCATION_REASONS

_STATE_DIR = click.option(
    "--dir",
    "state_dir",
    type=DIRECTORY,
    default=Path("steward"),
    show_default=True,
    help="Steward state directory (ca.pem, ca.key, audit.db).",
)
_DB = click.option(
    "--db",
    metavar="URL",
    default=None,
    help="Audit store: sqlite:///path or postgresql://user@host/db "
    "[default: sqlite:///<dir>/audit.db].",
)


@click.group()
def steward() -> None:
    """Run and manage a Steward: the attestation-gated CA of a workload owner.

    \b
    Examples:
      donjon steward init --dir ./steward                   create a P-384 CA
      donjon steward serve --dir ./steward --policy steward.toml \\
          --tls-cert tls.pem --tls-key tls.key --trust-dir ./vendor-roots
      donjon steward serve --dev --init --policy dev.toml   local development
      donjon steward certs list --dir ./steward --json
      donjon steward certs revoke 4f2a... --reason key-compromise
      donjon steward secrets put db --url https://steward:8443 --value-file pw.txt \\
          --allow-workload 5f3a...e1
    """


@steward.command()
@_STATE_DIR
@click.option("--curve", type=click.Choice(["p256", "p384"]), default="p384", show_default=True)
@click.option("--name", default="Donjon Steward CA", show_default=True, help="CA common name.")
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing CA (its certificates die).")
@click.option(
    "--pkcs11",
    "pkcs11_uri",
    metavar="URI",
    help="Create the CA key on a PKCS#11 token (RFC 7512 URI); only ca.pem is written.",
)
@JSON
def init(
    state_dir: Path,
    curve: str,
    name: str,
    days: int,
    force: bool,
    pkcs11_uri: str | None,
    as_json: bool,
) -> None:
    """Create the Steward CA: ca.key (mode 0600) and ca.pem in --dir, or the key on a token.

    \b
    Examples:
      donjon steward init --dir ./steward --curve p384
      donjon steward init --dir ./steward --pkcs11 \\
        'pkcs11:token=donjon;object=steward-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin.txt'
      donjon steward serve --dir ./steward --ca-key 'pkcs11:token=donjon;object=steward-ca?...'
    """
    from datetime import timedelta

    from donjon.errors import UsageError
    from donjon.steward.ca import CA_CERT_NAME, CertificateAuthority
    from donjon.steward.statedir import make_state_dir

    make_state_dir(state_dir)  # 0700, as `serve` makes it (which keeps an existing one)
    now = datetime.now(UTC)
    lifetime = timedelta(days=days)
    key_shown: str
    if pkcs11_uri is not None:
        from donjon.steward.hsm import generate_token_key
        from donjon.steward.pkcs11uri import parse_pkcs11_uri

        uri = parse_pkcs11_uri(pkcs11_uri)
        cert_path = state_dir / CA_CERT_NAME
        if cert_path.exists() and not force:
            raise UsageError(
                f"a CA already exists at {cert_path}", hint="use --force to replace it"
            )
        key = generate_token_key(uri, curve=curve)
        try:
            ca = CertificateAuthority.create(name=name, now=now, lifetime=lifetime, key=key)
            ca.save_certificate(cert_path, overwrite=force)
        finally:
            key.close()
        key_shown = uri.redacted
    else:
        ca = CertificateAuthority.create(name=name, curve=curve, now=now, lifetime=lifetime)
        try:
            cert_path, key_path = ca.save(state_dir, overwrite=force)
        except FileExistsError as exc:
            raise UsageError(
                f"a CA already exists at {exc.filename}", hint="use --force to replace it"
            ) from None
        key_shown = str(key_path)
    fingerprint = ca.certificate.fingerprint(ca.hash_algorithm).hex()
    if as_json:
        print_json(
            {"certificate": cert_path, "key": key_shown, "curve": curve, "fingerprint": fingerprint}
        )
        return
    click.echo(f"CA certificate: {cert_path}")
    if pkcs11_uri is not None:
        click.echo(f"CA key:         {key_shown} (on the token, not extractable)")
    else:
        click.echo(f"CA key:         {key_shown} (mode 0600)")
    click.echo(f"fingerprint:    {fingerprint}")
    click.echo(
        "Give the certificate to relying parties: donjon verify-peer HOST:PORT --ca "
        + str(cert_path)
    )


@steward.command()
@_STATE_DIR
@click.option("--addr", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True)
@click.option("--tls-cert", type=FILE, help="HTTPS certificate (PEM).")
@click.option("--tls-key", type=FILE, help="HTTPS key (PEM).")
@click.option("--policy", type=FILE, help="Policy TOML (superset of Enarx steward.toml).")
@click.option("--ca-cert", type=FILE, help="CA certificate [default: <dir>/ca.pem].")
@click.option(
    "--ca-key",
    metavar="FILE|URI",
    help="CA key file, or a PKCS#11 URI (pkcs11:token=...;object=...) [default: <dir>/ca.key].",
)
@click.option("--init", is_flag=True, help="Create the CA first if it does not exist.")
@click.option(
    "--curve",
    type=click.Choice(["p256", "p384"]),
    default="p384",
    show_default=True,
    help="Curve of a CA made by --init.",
)
@_DB
@click.option("--trust-dir", type=DIRECTORY, help="Vendor roots and collateral (offline).")
@click.option(
    "--admin-token-file",
    type=FILE,
    help="Bearer token of POST /v1/revoke [or $DONJON_STEWARD_ADMIN_TOKEN]; "
    "also reads audit records.",
)
@click.option(
    "--audit-token-file",
    type=FILE,
    help="Read-only bearer token of GET /v1/certificates/{serial} "
    "[or $DONJON_STEWARD_AUDIT_TOKEN]. By default audit reads need the admin token.",
)
@click.option(
    "--public-audit",
    is_flag=True,
    help="Serve audit records (which workload runs where) without a token; logged at start.",
)
@click.option(
    "--now",
    "now_text",
    metavar="TIME",
    help="Fix the clock (ISO 8601) [or $DONJON_STEWARD_NOW]; for expired test vectors.",
)
@click.option(
    "--dev",
    "development",
    is_flag=True,
    help="Development mode: allows plain HTTP and non-TEE policies; logged loudly.",
)
@click.option(
    "--max-body",
    type=click.IntRange(1024),
    default=256 * 1024,
    show_default=True,
    help="Largest request body in bytes.",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Attestations verified at once.",
)
@click.option(
    "--secrets-kek-file",
    type=FILE,
    help="Key-encryption key of stored secrets (0600; 64 hex digits) [or $DONJON_STEWARD_KEK]. "
    "Without one, secrets are disabled. `donjon steward secrets kek-init FILE` makes one.",
)
@click.option(
    "--console",
    "console",
    type=click.Choice(["off", "read-only", "on"]),
    default=None,
    help="The web console at /console: sign in with the admin or audit token; 'on' lets "
    "admin sessions revoke, 'read-only' lets nobody. [default: on when a token exists]",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Steward processes sharing the port (one per core verifies in parallel).",
)
@click.option(
    "--drain-seconds",
    type=click.FloatRange(0, 600),
    default=5.0,
    show_default=True,
    help="After SIGTERM, answer new requests 503 + Retry-After this long while those "
    "in flight finish; then exit.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object a line (time, level, logger, message), for log shippers.",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log one line per HTTP request.",
)
def serve(
    state_dir: Path,
    addr: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    policy: Path | None,
    ca_cert: Path | None,
    ca_key: str | None,
    init: bool,
    curve: str,
    db: str | None,
    trust_dir: Path | None,
    admin_token_file: Path | None,
    audit_token_file: Path | None,
    public_audit: bool,
    now_text: str | None,
    development: bool,
    max_body: int,
    max_concurrent: int,
    console: str | None,
    secrets_kek_file: Path | None,
    workers: int,
    drain_seconds: float,
    log_level: str,
    log_format: str,
    access_log: bool,
) -> None:
    """Serve the Steward API (Enarx-compatible POST / plus /v1, /metrics, /openapi.json).

    \b
    Examples:
      donjon steward serve --dir ./steward --policy steward.toml \\
          --tls-cert tls.pem --tls-key tls.key --trust-dir ./vendor-roots
      donjon steward serve --dev --init --port 3000 --policy dev.toml
      donjon steward serve ... --admin-token-file admin.token \\
          --audit-token-file audit.token     (auditors read, cannot revoke)
      donjon steward serve ... --admin-token-file admin.token --console read-only
          (then open https://HOST:PORT/console and sign in with the token)
      DONJON_STEWARD_NOW=2023-02-01T00:00Z donjon steward serve ...   (Enarx vectors)
      donjon steward serve --db postgresql://steward@db/donjon --workers 2 \\
          --ca-key 'pkcs11:token=steward;object=ca?module-path=/usr/lib/softhsm/libsofthsm2.so' ...

    \b
    Probes: GET /healthz (the process is up), GET /readyz (the database answers
    and the CA key signs). SIGTERM drains: 503 + Retry-After to new requests,
    the ones in flight finish, then the process exits.
    """
    from donjon.steward.app import create_app
    from donjon.steward.bootstrap import StewardConfig, build_secrets, build_steward
    from donjon.steward.clock import parse_time
    from donjon.steward.server import ServeOptions
    from donjon.steward.server import serve as run

    config = StewardConfig(
        state_dir=state_dir,
        ca_cert=ca_cert,
        ca_key=ca_key,
        init=init,
        curve=curve,
        policy=policy,
        trust_dir=trust_dir,
        db=db,
        now=parse_time(now_text, what="--now") if now_text else None,
        admin_token_file=admin_token_file,
        audit_token_file=audit_token_file,
        public_audit=public_audit,
        development=development,
        max_body=max_body,
        max_concurrent=max_concurrent,
        console=console,
        secrets_kek_file=secrets_kek_file,
    )
    options = ServeOptions(
        host=addr,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        development=development,
        log_level=log_level,
        access_log=access_log,
        drain_seconds=drain_seconds,
        graceful_timeout=config.attest_timeout + 5,
    )
    with logformat.configured(log_level, log_format):
        if workers > 1:
            from donjon.steward.workers import serve_workers

            raise SystemExit(serve_workers(config, options, workers, log_level, log_format))
        stew, settings = build_steward(config)
        secret_service = build_secrets(config, stew)
        if secret_service is not None:
            # Keeps present their certificate to fetch secrets (mutual TLS).
            options = dataclasses.replace(options, client_ca_pem=stew.ca.certificate_pem)
        try:
            run(create_app(stew, settings, secrets=secret_service), options)
        finally:
            stew.store.close()


# --- the audit store ------------------------------------------------------------------------


def _open_store(state_dir: Path, db: str | None) -> Any:
    from donjon.steward.bootstrap import StewardConfig
    from donjon.steward.store import AuditStore

    url = StewardConfig(state_dir=state_dir, db=db).db_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        from donjon.errors import UsageError

        raise UsageError(f"no audit store at {url}", hint="pass --dir or --db")
    return AuditStore.open(url)


@steward.group()
def certs() -> None:
    """Read and change the audit store of issued certificates.

    \b
    Examples:
      donjon steward certs list --dir ./steward
      donjon steward certs show 4f2a91... --json
      donjon steward certs revoke 4f2a91... --reason key-compromise
    """


@certs.command("list")
@_STATE_DIR
@_DB
@click.option("--revoked/--active", "revoked", default=None, help="Only revoked / only active.")
@click.option("--platform", help="Only this platform (snp, sgx, sim, nil...).")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@JSON
def list_(
    state_dir: Path,
    db: str | None,
    revoked: bool | None,
    platform: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List issued certificates, newest first."""
    store = _open_store(state_dir, db)
    try:
        records = store.records(limit=limit, revoked=revoked, platform=platform)
    finally:
        store.close()
    if as_json:
        docs = [r.to_json() for r in records]
        for doc in docs:
            doc.pop("certificate_der_b64")
        print_json(docs)
        return
    if not records:
        click.echo("no certificates")
        return
    for r in records:
        state = "REVOKED" if r.revoked_at else "active"
        dev = " (development)" if r.development else ""
        # The platform and workload were read from the Keep's CSR: escaped.
        click.echo(
            f"{r.serial}  {r.issued_at:%Y-%m-%d %H:%M}Z  {escape(r.platform)}{dev}  "
            f"until {r.not_after:%Y-%m-%d}  {state}  "
            f"workload={escape(r.workload_sha256 or '-')}"
        )


@certs.command()
@click.argument("serial")
@_STATE_DIR
@_DB
@JSON
def show(serial: str, state_dir: Path, db: str | None, as_json: bool) -> None:
    """Show the audit record of one certificate (serial in hex)."""
    store = _open_store(state_dir, db)
    try:
        record = store.get(serial)
    finally:
        store.close()
    doc = record.to_json()
    if as_json:
        print_json(doc)
        return
    doc.pop("certificate_der_b64")
    for key in (
        "serial",
        "issued_at",
        "not_before",
        "not_after",
        "platform",
        "development",
        "workload_sha256",
        "subject_key_sha256",
        "evidence_sha256",
        "policy_digest",
        "revoked",
        "revoked_at",
        "revocation_reason",
    ):
        click.echo(f"{key + ':':20} {escape(str(doc[key]))}")
    click.echo("checks:")
    for check in doc["verdict"].get("checks", []):
        mark = "✔" if check["passed"] else "✗"
        click.echo(f"  {mark} {escape(str(check['id']))}: {escape(str(check['reason']))}")


@certs.command()
@click.argument("serial")
@click.option(
    "--reason",
    type=click.Choice(REVOCATION_REASONS),
    default="unspecified",
    show_default=True,
)
@_STATE_DIR
@_DB
@JSON
def revoke(serial: str, reason: str, state_dir: Path, db: str | None, as_json: bool) -> None:
    """Revoke a certificate; it appears in the next /v1/crl."""
    store = _open_store(state_dir, db)
    try:
        record = store.revoke(serial, reason=reason, at=datetime.now(UTC))
    finally:
        store.close()
    if as_json:
        print_json(
            {
                "serial": record.serial,
                "revoked_at": record.revoked_at,
                "reason": record.revocation_reason,
            }
        )
        return
    click.echo(
        f"revoked {record.serial} at {record.revoked_at:%Y-%m-%d %H:%M:%S}Z "
        f"({record.revocation_reason})"
    )


def _register_secrets() -> None:
    from donjon.cli.steward_secrets import secrets

    steward.add_command(secrets)


_register_secrets()


# --- the schema -----------------------------------------------------------------------------


@steward.group()
def db() -> None:
    """Migrate and inspect the audit store's schema (Alembic).

    A Steward refuses to start on a schema other than its own; run `db upgrade`
    once after installing a new Donjon (or let the Helm chart's init container
    do it). Replicas that upgrade together migrate once (a PostgreSQL lock).

    \b
    Examples:
      donjon steward db current --db postgresql://steward@db/donjon
      donjon steward db upgrade --db postgresql://steward@db/donjon
      donjon steward db upgrade --dir ./steward --json
    """


def _engine_of(state_dir: Path, db_url: str | None) -> Any:
    from donjon.steward.bootstrap import StewardConfig
    from donjon.steward.store import AuditStore

    url = StewardConfig(state_dir=state_dir, db=db_url).db_url
    return AuditStore.open(url, create=False)


@db.command()
@_STATE_DIR
@_DB
@JSON
def upgrade(state_dir: Path, db: str | None, as_json: bool) -> None:
    """Migrate the audit store to this Donjon's schema (an empty database is created)."""
    from donjon.steward import schema

    store = _engine_of(state_dir, db)
    try:
        before, after = schema.upgrade(store.engine)
    finally:
        store.close()
    if as_json:
        print_json({"before": before.to_json(), "after": after.to_json()})
        return
    if before.status == "up-to-date":
        click.echo(f"audit store already at {after.current} (head)")
    else:
        start = "an empty database" if before.empty else before.current
        click.echo(f"audit store migrated from {start} to {after.current}")


@db.command()
@_STATE_DIR
@_DB
@JSON
def current(state_dir: Path, db: str | None, as_json: bool) -> None:
    """Show the audit store's schema revision and whether this Donjon can serve it."""
    from donjon.steward import schema

    store = _engine_of(state_dir, db)
    try:
        found = schema.state(store.engine)
    finally:
        store.close()
    if as_json:
        print_json({**found.to_json(), "known": schema.known_revisions()})
        return
    label = {
        "up-to-date": "up to date",
        "behind": "older: run `donjon steward db upgrade`",
        "empty": "empty: `donjon steward db upgrade` (or the first start) creates it",
        "unknown": "unknown to this Donjon (a newer one migrated it)",
    }[found.status]
    extra = " (made before Alembic)" if found.pre_alembic else ""
    click.echo(f"current: {found.current or '-'}{extra}")
    click.echo(f"head:    {found.head}")
    click.echo(f"status:  {label}")
