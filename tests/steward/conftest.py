"""Fixtures of the Steward tests: a real uvicorn server on 127.0.0.1 over TLS, and stores.

``store_url`` is parametrized over SQLite and PostgreSQL; PostgreSQL is started
from Debian's package in a temporary directory (as the ``postgres`` user when
running as root) and skipped with the reason when it is not installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from steward_fakes import FakePolicy, FakeVerifier
from steward_harness import RunningSteward, ServerThread, StewardFactory, TlsFiles

from donjon.steward.app import AppSettings, create_app
from donjon.steward.ca import CertificateAuthority
from donjon.steward.service import Steward
from donjon.steward.store import AuditStore
from support.net import free_port
from support.pki import write_self_signed


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed server certificate for 127.0.0.1 (the Steward's own HTTPS identity)."""
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = write_self_signed(
        directory, common_name="steward.test", cert_name="tls.pem", key_name="tls.key"
    )
    context = ssl.create_default_context(cafile=str(cert_path))
    return TlsFiles(cert_path, key_path, context)


@pytest.fixture
def start_steward(tls_files: TlsFiles, tmp_path: Path) -> Iterator[StewardFactory]:
    """Start a real Steward; keyword arguments override the verifier, policy, clock, store."""
    running: list[tuple[ServerThread, RunningSteward]] = []

    def start(
        *,
        verifier: Any = None,
        policy: Any = None,
        clock: Callable[[], datetime] | None = None,
        store_url: str | None = None,
        settings: AppSettings | None = None,
        ca: CertificateAuthority | None = None,
        trust: Any = None,
    ) -> RunningSteward:
        clock = clock or (lambda: datetime.now(UTC))
        ca = ca or CertificateAuthority.create(curve="p384", now=clock())
        store = AuditStore.open(store_url or f"sqlite:///{tmp_path / 'audit.db'}")
        steward = Steward(
            ca=ca,
            policy=policy or FakePolicy(),
            trust=trust,
            store=store,
            verifier=verifier or FakeVerifier(),
            clock=clock,
        )
        app = create_app(steward, settings or AppSettings(admin_token="s3cret-token"))
        thread = ServerThread(app, tls_files)
        port = thread.start()
        url = f"https://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, verify=tls_files.context, timeout=30)
        handle = RunningSteward(
            url=url, steward=steward, client=client, tls=tls_files, server=thread.server
        )
        running.append((thread, handle))
        return handle

    yield start
    for thread, handle in running:
        handle.client.close()
        thread.stop()
        handle.steward.store.close()


# --- PostgreSQL -------------------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    """The session's PostgreSQL: its URL, and stop/start for the tests of an outage."""

    url: str
    ctl: list[str]  # pg_ctl (under runuser when root) with -D <data>

    def stop(self) -> None:
        subprocess.run([*self.ctl, "-m", "fast", "-w", "stop"], check=True,
                       capture_output=True, timeout=60)  # fmt: skip

    def start(self) -> None:
        subprocess.run([*self.ctl, "-w", "start"], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster from Debian's package, or a skip with the reason."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL not installed (/usr/lib/postgresql/*/bin/pg_ctl missing)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'donjon[postgres]')")
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing: cannot start PostgreSQL")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL")
        prefix = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="donjon-pg-"))
    data = base / "data"
    if prefix:
        shutil.chown(base, "postgres")
    port = free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=60)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "donjon", "-A", "trust", "--no-sync")
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-w",
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        stderr = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"could not start PostgreSQL: {stderr.decode(errors='replace')[-300:]}")
    ctl = [
        *prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"),
        "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
    ]  # fmt: skip
    try:
        yield PostgresServer(f"postgresql://donjon@127.0.0.1:{port}/postgres", ctl)
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty audit store: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    base: str = request.getfixturevalue("postgres_url")
    import psycopg

    name = f"audit_{uuid.uuid4().hex}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name
