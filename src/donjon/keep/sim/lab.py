"""A local lab for the whole attested flow: the simulated TEE, a Steward and Keeps, on one host.

``donjon demo`` and the end-to-end tests drive it. Every Steward and Keep is a
real ``donjon`` process (as an operator would run them), started in its own
session so that stopping the lab ends it and everything it spawned; the lab
never signals a process it did not start. Output lines are timestamped as they
arrive, which is how the demo measures its step timings.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from donjon.atomicfile import write_bytes
from donjon.attestation.peer import (
    PeerExpectations,
    PeerExpiredError,
    PeerIdentity,
    UntrustedChainError,
    client_context,
    load_certificate,
    verify_peer_certificate,
)
from donjon.errors import DonjonError
from donjon.keep.sim import cca as sim_cca
from donjon.keep.sim import sim_dir, tdx_state
from donjon.keep.sim import state as sim_state
from donjon.keep.sim.products import DEFAULT_TCB, Product

LOCALHOST = "127.0.0.1"
X509_V_ERR_CERT_HAS_EXPIRED = 10  # OpenSSL verify code
STOP_GRACE = 5.0


class LabError(DonjonError):
    """A step of the local flow failed; the message says which and why."""


def free_port() -> int:
    """A port that was free a moment ago (the process that binds it may still race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Line:
    at: float  # time.monotonic() when the line arrived
    stream: str  # "stdout" | "stderr"
    text: str


class Proc:
    """A child process whose output lines are collected with arrival times."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: stop() reaches its children
        )
        self.lines: list[Line] = []
        self._new: queue.Queue[Line] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, label), daemon=True)
            for stream, label in ((self.popen.stdout, "stdout"), (self.popen.stderr, "stderr"))
        ]
        try:
            for reader in self._readers:
                reader.start()
        except BaseException:
            _signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            raise

    def _read(self, stream: IO[bytes] | None, label: str) -> None:
        assert stream is not None
        for raw in iter(stream.readline, b""):
            line = Line(time.monotonic(), label, raw.decode("utf-8", "replace").rstrip("\n"))
            self.lines.append(line)
            self._new.put(line)
        stream.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_for(
        self, pattern: str, timeout: float, stream: str | None = None, after: Line | None = None
    ) -> Line:
        """The first line (seen so far or arriving, and later than ``after`` on the same
        stream) that matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        skipping = after is not None
        while True:
            for line in self.lines[seen:]:
                seen += 1
                if skipping:
                    skipping = line is not after
                    continue
                if (stream is None or line.stream == stream) and regex.search(line.text):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"{self.name}: no output matching {pattern!r} in {timeout:g} s")
            if not self.running() and self._new.empty() and not self._reading():
                tail = self.tail()
                raise LabError(f"{self.name} exited with {self.popen.returncode}: {tail}")
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=min(left, 0.05))

    def _reading(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def wait(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"{self.name} still running after {timeout:g} s") from None
        for reader in self._readers:
            reader.join(timeout=2)
        return code

    def tail(self, stream: str = "stderr") -> str:
        """The last meaningful line it wrote, for one-line error messages."""
        for line in reversed(self.lines):
            if line.stream == stream and line.text.strip():
                return line.text.strip()
        return "(no output)"

    def text(self, stream: str = "stdout") -> str:
        return "\n".join(line.text for line in self.lines if line.stream == stream)

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after a grace period; never anyone else.

        The group is its own (``start_new_session``), so this also ends anything it
        spawned, and returns only once the whole group is gone.
        """
        group = self.popen.pid
        if self.popen.poll() is None or _group_alive(group):
            _signal_group(group, signal.SIGTERM)
            if not _wait_group(self.popen, group, STOP_GRACE):
                _signal_group(group, signal.SIGKILL)
                _wait_group(self.popen, group, STOP_GRACE)
        for reader in self._readers:
            reader.join(timeout=2)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a member changed user: still there
        return True
    return True


def _wait_group(popen: subprocess.Popen[bytes], group: int, timeout: float) -> bool:
    """Reap the leader and wait for the rest of its group; False on timeout."""
    deadline = time.monotonic() + timeout
    try:
        popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    while _group_alive(group):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the lab CA that clients of the Steward's HTTPS endpoint trust
    cert: Path
    key: Path


def make_tls(directory: Path, now: datetime) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1, for the Steward's HTTPS."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Donjon demo HTTPS CA")])
    start, end = now - timedelta(minutes=5), now + timedelta(days=1)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOCALHOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOCALHOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "https-ca.pem", directory / "https.pem", directory / "https.key")
    write_bytes(files.ca, ca.public_bytes(serialization.Encoding.PEM))
    write_bytes(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_bytes(files.key, key_pem, mode=0o600)
    return files


@dataclass
class Steward:
    proc: Proc
    url: str
    directory: Path
    policy: Path

    @property
    def ca_pem(self) -> Path:
        """The Steward's CA certificate: what relying parties trust."""
        return self.directory / "ca.pem"


def toml_string(text: str) -> str:
    """A TOML basic string (JSON escaping is a subset of TOML's)."""
    return json.dumps(text)


@dataclass
class Lab:
    """Temporary directories, the simulated TEE and every process of one run."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="donjon-lab-")))
    keep_root: bool = False
    procs: list[Proc] = field(default_factory=list)
    #: The CA of the newest Steward's HTTPS certificate, for Keeps' ``steward_ca``.
    https_ca: Path | None = None
    #: The simulated TEE: "snp" (SEV-SNP reports) or "tdx" (TDX quotes).
    tee: str = "snp"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def ark(self) -> Path:
        """The simulator's root certificate (the SNP ARK, or the TDX product's root)."""
        name = "tdx-root.pem" if self.tee == "tdx" else "ark.pem"
        return sim_dir(self.state_dir) / name

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process (Keeps first, then Stewards) and remove the files."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if not self.keep_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DONJON_STATE_DIR"] = str(self.state_dir)
        env.pop("DONJON_PLATFORM", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def spawn(self, name: str, args: Sequence[str]) -> Proc:
        """Start ``donjon ARGS``; a Ctrl-C arriving meanwhile waits until it is registered,
        so that :meth:`close` always knows every process it has to stop."""
        argv = [sys.executable, "-m", "donjon.cli.main", *args]
        with interrupts_deferred():
            proc = Proc(name, argv, self.env(), self.root)
            self.procs.append(proc)
        return proc

    # --- the pieces ---------------------------------------------------------------------
    def init_sim(
        self, product: Product = Product.MILAN, now: datetime | None = None
    ) -> sim_state.SimState:
        config = sim_state.SimConfig(
            product, DEFAULT_TCB[product], sim_state.random_chip_id(product)
        )
        return sim_state.init(sim_dir(self.state_dir), config, now=now)

    def init_sim_cca(self) -> sim_cca.SimCcaState:
        """The simulated Arm CCA platform (a CPAK; Keeps use ``--platform sim-cca``)."""
        self.tee = "cca"
        return sim_cca.init(sim_cca.cca_dir(self.state_dir))

    def init_sim_tdx(self, now: datetime | None = None) -> tdx_state.TdxSimState:
        """The TDX product (``donjon sim init --tee tdx``); ``tee`` becomes "tdx"."""
        self.tee = "tdx"
        return tdx_state.init(sim_dir(self.state_dir), tdx_state.TdxSimConfig(), now=now)

    def write_policy(
        self, allowed_wasm: Sequence[bytes], extra: str = "", tee: str | None = None
    ) -> Path:
        """A policy trusting the simulated TEE ``tee`` (default: the last one initialised)."""
        tee = tee or self.tee
        digests = ", ".join(toml_string(d.hex()) for d in allowed_wasm)
        if tee == "cca":
            cpak = sim_cca.cca_dir(self.state_dir) / "cpak.pem"
            text = f"[sim]\ncca_cpak = {toml_string(str(cpak))}\nallowed_workloads = [{digests}]\n"
        else:
            section = "[sim.tdx]" if tee == "tdx" else "[sim]"
            trust = toml_string(str(self.ark))
            text = f"{section}\ntrust = {trust}\nallowed_workloads = [{digests}]\n"
        path = self.root / f"policy-{len(list(self.root.glob('policy-*')))}.toml"
        write_bytes(path, (extra + "\n" + text).encode())
        return path

    def start_steward(
        self,
        policy: Path,
        *,
        now: datetime | None = None,
        tls_now: datetime | None = None,
        timeout: float = 60.0,
        extra: Sequence[str] = (),
    ) -> Steward:
        """A development Steward on HTTPS, ready to answer when this returns; ``extra`` are
        more ``steward serve`` arguments (tokens, --console, --trust-dir...)."""
        index = sum(1 for p in self.procs if p.name.startswith("steward"))
        directory = self.root / f"steward-{index}"
        tls = make_tls(directory / "https", tls_now or datetime.now(UTC))
        port = free_port()
        args = [
            "steward", "serve", "--dev", "--init", "--dir", str(directory),
            "--policy", str(policy), "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
            "--addr", LOCALHOST, "--port", str(port), "--log-level", "warning",
            # No load balancer to tell: stop at once (a drain outlasted STOP_GRACE).
            "--drain-seconds", "0",
        ]  # fmt: skip
        if now is not None:
            args += ["--now", now.isoformat()]
        args += list(extra)
        proc = self.spawn(f"steward-{index}", args)
        _wait_listening(proc, port, timeout)
        self.https_ca = tls.ca
        return Steward(proc, f"https://{LOCALHOST}:{port}", directory, policy)

    def write_package(self, name: str, wasm: Path, config: str) -> Path:
        """A package directory: ``main.wasm`` and ``Donjon.toml``."""
        directory = self.root / "packages" / name
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wasm, directory / "main.wasm")
        write_bytes(directory / "Donjon.toml", config.encode())
        return directory

    def steward_config(self, steward: Steward | str) -> str:
        """The top of a Donjon.toml that sends the CSR to ``steward``."""
        url = steward.url if isinstance(steward, Steward) else steward
        lines = [f"steward = {toml_string(url)}"]
        if self.https_ca is not None:
            lines.append(f"steward_ca = {toml_string(str(self.https_ca))}")
        return "\n".join(lines) + "\n"

    def start_keep(self, package: Path, extra: Sequence[str] = (), platform: str = "sim") -> Proc:
        name = f"keep {package.name}"
        return self.spawn(name, ["run", str(package), "--platform", platform, *extra])


def _wait_listening(proc: Proc, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running():
            proc.wait(timeout=5)
            raise LabError(f"{proc.name} exited with {proc.popen.returncode}: {proc.tail()}")
        with contextlib.suppress(OSError), socket.create_connection((LOCALHOST, port), 0.2):
            return
        time.sleep(0.05)
    raise LabError(f"{proc.name}: not listening on port {port} after {timeout:g} s")


def sha256_file(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back during a critical section, then deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def record(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {signum: signal.signal(signum, record) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for held, handler in previous.items():
            signal.signal(held, handler)
        for signum in pending:
            signal.raise_signal(signum)  # now handled as it would have been


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so cleanup runs as for Ctrl-C (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Fetch:
    """What a relying party saw: the attested identity, then the workload's answer."""

    identity: PeerIdentity
    tls_version: str
    response: bytes
    connect_s: float  # TCP connect + TLS handshake
    first_byte_s: float  # from starting to connect to the first byte of the answer


def connect(
    port: int,
    steward_ca: Path,
    *,
    expect: PeerExpectations,
    crl: x509.CertificateRevocationList | None = None,
    host: str = LOCALHOST,
    timeout: float = 10.0,
    now: datetime | None = None,
) -> tuple[ssl.SSLSocket, PeerIdentity]:
    """A TLS 1.3 connection to a Keep that is accepted only if its attested claims meet
    ``expect`` (and it is not in ``crl``) at ``now``; the caller closes the socket."""
    ca_pem = steward_ca.read_bytes()
    ca = load_certificate(ca_pem, f"Steward CA {steward_ca}")
    context = client_context(ca_pem)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise LabError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    try:
        tls = context.wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        if exc.verify_code == X509_V_ERR_CERT_HAS_EXPIRED:
            raise PeerExpiredError(f"{host}:{port}: certificate has expired") from None
        raise UntrustedChainError(f"{host}:{port}: {exc.verify_message}") from None
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise LabError(f"{host}:{port}: TLS handshake failed: {exc}") from None
    try:
        der = tls.getpeercert(binary_form=True)
        if der is None:
            raise LabError(f"{host}:{port} presented no certificate")
        leaf = x509.load_der_x509_certificate(der)
        when = now or datetime.now(UTC)
        identity = verify_peer_certificate(leaf, ca, now=when, crl=crl, expect=expect)
    except BaseException:
        tls.close()
        raise
    return tls, identity


def fetch(
    port: int,
    steward_ca: Path,
    request: bytes,
    *,
    expect: PeerExpectations,
    crl: x509.CertificateRevocationList | None = None,
    host: str = LOCALHOST,
    timeout: float = 10.0,
    now: datetime | None = None,
) -> Fetch:
    """Connect as :func:`connect` does, send ``request`` and read the answer to EOF."""
    started = time.monotonic()
    tls, identity = connect(
        port, steward_ca, expect=expect, crl=crl, host=host, timeout=timeout, now=now
    )
    with tls:
        connected = time.monotonic()
        tls.sendall(request)
        chunks = [tls.recv(65536)]
        first = time.monotonic()
        while chunks[-1]:
            chunks.append(tls.recv(65536))
        return Fetch(
            identity=identity,
            tls_version=tls.version() or "?",
            response=b"".join(chunks),
            connect_s=connected - started,
            first_byte_s=first - started,
        )
