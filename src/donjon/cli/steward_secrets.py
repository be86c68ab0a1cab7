"""``donjon steward secrets``: store secrets in a Steward and say which Keeps may have them.

Every command but ``kek-init`` and ``rewrap`` talks to a running Steward over
HTTPS with the admin token; values go in once and are never printed again.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from donjon.cli.options import FILE, JSON
from donjon.cli.output import print_json
from donjon.errors import UsageError

URL_ENV = "DONJON_STEWARD_URL"


def _admin(url: str | None, token_file: Path | None, ca: Path | None) -> Any:
    from donjon.steward.bootstrap import read_admin_token
    from donjon.steward.secrets_admin import SecretsAdmin

    url = url or os.environ.get(URL_ENV)
    if not url:
        raise UsageError(f"which Steward? pass --url https://HOST:PORT (or set ${URL_ENV})")
    token = read_admin_token(token_file)
    if token is None:
        raise UsageError(
            "the admin token is needed: --admin-token-file FILE or $DONJON_STEWARD_ADMIN_TOKEN"
        )
    env_ca = os.environ.get("DONJON_STEWARD_CA")
    return SecretsAdmin(url, token, ca or (Path(env_ca) if env_ca else None))


def _connection(func: Any) -> Any:
    func = click.option(
        "--ca",
        type=FILE,
        help="PEM that signed the Steward's HTTPS certificate [$DONJON_STEWARD_CA].",
    )(func)
    func = click.option(
        "--admin-token-file", type=FILE, help="The admin token [$DONJON_STEWARD_ADMIN_TOKEN]."
    )(func)
    return click.option("--url", metavar="URL", help=f"The Steward [${URL_ENV}].")(func)


def _value_options(func: Any) -> Any:
    func = click.option("--value-env", metavar="VAR", help="Read the value from $VAR.")(func)
    func = click.option("--value-stdin", is_flag=True, help="Read the value from stdin.")(func)
    return click.option("--value-file", type=FILE, help="Read the value from a file.")(func)


def _policy_options(func: Any) -> Any:
    func = click.option(
        "--development", is_flag=True, help="Release to development Keeps (sim, nil) too."
    )(func)
    func = click.option(
        "--min-tcb-status",
        default=None,
        help="Lowest TCB status accepted [UpToDate]; 'any' accepts every status.",
    )(func)
    func = click.option(
        "--platform", "platforms", multiple=True, help="Platforms allowed (snp, tdx, sim...)."
    )(func)
    func = click.option(
        "--measurement", "measurements", multiple=True, help="TEE launch measurement (hex)."
    )(func)
    func = click.option(
        "--allow-package", "packages", multiple=True, help="OCI manifest digest (sha256:...)."
    )(func)
    func = click.option(
        "--allow-workload", "workloads", multiple=True, help="SHA-256 of main.wasm (hex)."
    )(func)
    return click.option(
        "--policy", "policy_file", type=FILE, help="Release policy as a TOML or JSON file."
    )(func)


def read_value(value_file: Path | None, value_stdin: bool, value_env: str | None) -> bytes:
    given = [x for x in (value_file, value_stdin or None, value_env) if x is not None]
    if len(given) != 1:
        raise UsageError("give the value one way: --value-file, --value-stdin or --value-env")
    if value_file is not None:
        try:
            return value_file.read_bytes()
        except OSError as exc:
            raise UsageError(f"{value_file}: {exc.strerror}") from None
    if value_env is not None:
        if value_env not in os.environ:
            raise UsageError(f"${value_env} is not set")
        return os.environ[value_env].encode()
    return sys.stdin.buffer.read()


def build_policy(
    policy_file: Path | None,
    workloads: tuple[str, ...],
    packages: tuple[str, ...],
    measurements: tuple[str, ...],
    platforms: tuple[str, ...],
    min_tcb_status: str | None,
    development: bool,
) -> dict[str, Any] | None:
    """The policy document from a file or from flags (not both); None when neither."""
    flags: dict[str, Any] = {}
    if workloads:
        flags["allowed_workloads"] = list(workloads)
    if packages:
        flags["allowed_packages"] = list(packages)
    if measurements:
        flags["measurements"] = list(measurements)
    if platforms:
        flags["platforms"] = list(platforms)
    if min_tcb_status:
        flags["min_tcb_status"] = min_tcb_status
    if development:
        flags["development"] = True
    if policy_file is not None:
        if flags:
            raise UsageError("give the policy as --policy FILE or as flags, not both")
        try:
            text = policy_file.read_text()
            doc = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{policy_file}: not a TOML or JSON policy: {exc}") from None
        return dict(doc)
    if not flags:
        return None
    from donjon.steward.errors import StewardError
    from donjon.steward.secrets_release import parse_policy

    try:  # checked here, for a message before any request
        return parse_policy(flags).to_json()
    except StewardError as exc:
        raise UsageError(exc.message) from None


@click.group("secrets")
def secrets() -> None:
    """Secrets released only to attested Keeps (database passwords, keys, package keys).

    \b
    Examples:
      donjon steward secrets kek-init steward/kek          make a key-encryption key
      donjon steward serve ... --secrets-kek-file steward/kek
      donjon steward secrets put db --url https://steward:8443 --admin-token-file t \\
          --value-file db-password.txt --allow-package sha256:9c1e... --platform snp
      donjon steward secrets rotate db --value-stdin < new-password.txt
      donjon steward secrets list --json
      donjon steward secrets show-meta db
      donjon steward secrets delete db --version 1          withdraw the old version
    """


@secrets.command("kek-init")
@click.argument("path", type=FILE)
def kek_init(path: Path) -> None:
    """Write a new random key-encryption key to PATH (mode 0600)."""
    from donjon.atomicfile import write_text
    from donjon.steward.secrets_vault import new_kek_text

    if path.exists():
        raise UsageError(f"{path}: already exists; a KEK is never overwritten")
    write_text(path, new_kek_text() + "\n", mode=0o600)
    click.echo(f"wrote a new KEK to {path}; back it up: without it, stored secrets are lost")


@secrets.command("put")
@click.argument("name")
@_value_options
@_policy_options
@_connection
@JSON
def put(
    name: str,
    value_file: Path | None,
    value_stdin: bool,
    value_env: str | None,
    policy_file: Path | None,
    workloads: tuple[str, ...],
    packages: tuple[str, ...],
    measurements: tuple[str, ...],
    platforms: tuple[str, ...],
    min_tcb_status: str | None,
    development: bool,
    url: str | None,
    admin_token_file: Path | None,
    ca: Path | None,
    as_json: bool,
) -> None:
    """Store a new secret NAME with its release policy (version 1)."""
    policy = build_policy(
        policy_file, workloads, packages, measurements, platforms, min_tcb_status, development
    )
    if policy is None:
        raise UsageError(
            "a secret needs a release policy: --allow-workload, --allow-package, --measurement "
            "or --policy FILE"
        )
    value = read_value(value_file, value_stdin, value_env)
    meta = _admin(url, admin_token_file, ca).put(name, value, policy)
    _show_version(meta, as_json, "stored")


@secrets.command("rotate")
@click.argument("name")
@_value_options
@_policy_options
@_connection
@JSON
def rotate(
    name: str,
    value_file: Path | None,
    value_stdin: bool,
    value_env: str | None,
    policy_file: Path | None,
    workloads: tuple[str, ...],
    packages: tuple[str, ...],
    measurements: tuple[str, ...],
    platforms: tuple[str, ...],
    min_tcb_status: str | None,
    development: bool,
    url: str | None,
    admin_token_file: Path | None,
    ca: Path | None,
    as_json: bool,
) -> None:
    """Add a new version of NAME (Keeps get it at their next start); policy kept unless given."""
    policy = build_policy(
        policy_file, workloads, packages, measurements, platforms, min_tcb_status, development
    )
    value = read_value(value_file, value_stdin, value_env)
    meta = _admin(url, admin_token_file, ca).rotate(name, value, policy)
    _show_version(meta, as_json, "rotated")


def _show_version(meta: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        print_json(meta)
        return
    click.echo(f"{verb} secret {meta['name']} version {meta['version']} ({meta['size']} bytes)")


@secrets.command("list")
@_connection
@JSON
def list_(url: str | None, admin_token_file: Path | None, ca: Path | None, as_json: bool) -> None:
    """List secrets: names, versions and policies (never values)."""
    items = _admin(url, admin_token_file, ca).list()
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("no secrets")
    for item in items:
        live = ",".join(map(str, item["live_versions"])) or "none"
        click.echo(f"{item['name']}  latest v{item['latest']}  live: {live}")


@secrets.command("show-meta")
@click.argument("name")
@_connection
@JSON
def show_meta(
    name: str, url: str | None, admin_token_file: Path | None, ca: Path | None, as_json: bool
) -> None:
    """Versions, policy and recent releases/refusals of NAME (never its value)."""
    meta = _admin(url, admin_token_file, ca).show(name)
    if as_json:
        print_json(meta)
        return
    click.echo(f"secret {meta['name']}")
    for version in meta["versions"]:
        state = "withdrawn" if version["withdrawn"] else "live"
        click.echo(f"  v{version['version']}  {version['created_at']}  {state}")
    click.echo("policy: " + json.dumps(meta["policy"], sort_keys=True))
    for release in meta["releases"]:
        click.echo(
            f"  {release['at']}  {release['outcome']:8}  v{release['version'] or '-'}  "
            f"serial={release['serial'] or '-'}  {release['check']}"
        )


@secrets.command("delete")
@click.argument("name")
@click.option("--version", type=click.IntRange(1), help="Withdraw only this version.")
@_connection
@JSON
def delete(
    name: str,
    version: int | None,
    url: str | None,
    admin_token_file: Path | None,
    ca: Path | None,
    as_json: bool,
) -> None:
    """Withdraw NAME (or one version): no Keep gets it again; the audit rows stay."""
    result = _admin(url, admin_token_file, ca).delete(name, version)
    if as_json:
        print_json(result)
        return
    versions = ", ".join(map(str, result["withdrawn_versions"]))
    click.echo(f"withdrew secret {name} version(s) {versions}")


@secrets.command("rewrap")
@click.option(
    "--dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("steward"),
    show_default=True,
    help="Steward state directory.",
)
@click.option("--db", metavar="URL", help="The store [default: sqlite:///<dir>/audit.db].")
@click.option("--old-kek-file", type=FILE, required=True, help="The KEK the secrets use now.")
@click.option("--kek-file", type=FILE, required=True, help="The new KEK (0600).")
def rewrap(state_dir: Path, db: str | None, old_kek_file: Path, kek_file: Path) -> None:
    """Rotate the KEK: rewrap every data key under the new KEK (values stay encrypted).

    Stop the Steward first, then start it with the new --secrets-kek-file.
    """
    from donjon.steward.bootstrap import StewardConfig
    from donjon.steward.secrets_store import SecretStore
    from donjon.steward.secrets_vault import load_kek
    from donjon.steward.secrets_vault import rewrap as rewrap_one
    from donjon.steward.store import AuditStore

    old, new = load_kek(old_kek_file), load_kek(kek_file)
    assert old is not None and new is not None
    store = AuditStore.open(StewardConfig(state_dir=state_dir, db=db).db_url)
    try:
        secrets_store = SecretStore(store.engine)
        rows = [r for r in secrets_store.live_rows() if r.sealed.kek_id != new.kek_id]
        done = [
            (r.name, r.version, rewrap_one(old, new, r.name, r.version, r.sealed)) for r in rows
        ]
        secrets_store.replace_wrapping(done)
    finally:
        store.close()
    click.echo(f"rewrapped {len(done)} secret version(s) from KEK {old.kek_id} to {new.kek_id}")
