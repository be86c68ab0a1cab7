"""Starting a Keep: platform, identity, sockets, then the workload on the WASI host.

Order matters. Listen addresses are bound first, so a port clash fails before
anyone is asked for a certificate. The identity comes next (from the Steward,
or self-signed and marked UNATTESTED). Connect entries dial out last, with the
identity ready for client authentication. Only then does the guest start; it
finds every socket already in its fd table at the position ``[[files]]`` gave it.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509

from donjon.atomicfile import write_bytes
from donjon.attestation.claims import WorkloadClaims
from donjon.keep import guest_secrets, net, peercheck, platforms, precheck, revocation, tls
from donjon.keep import identity as ident
from donjon.keep.config import (
    STDIO_KINDS,
    Config,
    ConnectFile,
    DirFile,
    ListenFile,
    Prot,
    Trust,
    file_label,
)
from donjon.keep.config_secret import SecretFile
from donjon.keep.identity import Identity
from donjon.keep.package import Package, resolve
from donjon.keep.platforms.base import HARDWARE_PLATFORMS, HOST_SERVES_FILES, Platform
from donjon.keep.revocation import CrlCache
from donjon.keep.steward_client import StewardClient
from donjon.wasi.api import (
    ByteStream,
    Limits,
    Listener,
    MemoryDir,
    MemoryFile,
    Preopen,
    RunResult,
    RunSpec,
    Stdio,
    StdioKind,
)
from donjon.wasi.cache import KEY_NAME

log = logging.getLogger("donjon.keep")

Report = Callable[[str], None]


@dataclass
class KeepOptions:
    platform: str | None = None
    state_dir: Path | None = None
    #: Compiled-module cache; ``None`` disables it.
    cache_dir: Path | None = None
    #: Write the Keep's certificate chain (PEM, public) here, for peers to pin.
    export_cert: Path | None = None
    memory_bytes: int | None = None
    timeout_s: float | None = None
    #: Progress and status lines for a person (the CLI prints them on stderr).
    report: Report = field(default=lambda line: log.info("%s", line))


@dataclass
class PreparedKeep:
    """A Keep ready to run: its identity, its open sockets, and the WASI run description."""

    platform: Platform
    identity: Identity
    spec: RunSpec
    listeners: dict[str, tuple[str, int]]
    _stack: ExitStack

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> PreparedKeep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def workload_claims(package: Package) -> WorkloadClaims:
    return WorkloadClaims(
        wasm_sha256=package.wasm_sha256(),
        config_sha256=package.config_sha256(),
        package_name=package.name,
        package_sha256=package.package_sha256,
        package_repository=package.package_repository,
        package_signatures=package.package_signatures,
    )


def obtain_identity(
    package: Package, platform: Platform, claims: WorkloadClaims, report: Report
) -> Identity:
    """A certificate from the Steward when the config names one, else a self-signed one."""
    key = ident.generate_key(platform)
    config = package.config
    if config.steward is None:
        identity = ident.unattested_identity(key, claims, platform)
        report(f"{identity.describe()}; peers cannot verify what runs here")
        return identity
    ca_bundle = resolve(package.base_dir, config.steward_ca) if config.steward_ca else None
    client = StewardClient.from_config(config.steward, ca_bundle)
    report(f"asking steward {config.steward} for a challenge")
    nonce = client.challenge()
    if nonce is None:
        report(f"steward {config.steward} offers no challenge: this evidence cannot be fresh")
    else:
        claims = replace(claims, nonce=nonce)
    csr = ident.build_csr(key, claims, platform)
    report(f"requesting a certificate from steward {config.steward}")
    chain = client.request(csr)
    # Enarx order is [CA, ..., leaf]; TLS presents leaf first, without the trust anchor.
    identity = Identity(
        key=key,
        chain=tuple(reversed(chain[1:])),
        ca=chain[0],
        platform=platform.name,
        claims=claims,
    )
    report(identity.describe())
    return identity


def _stdio(config: Config) -> tuple[Stdio, Stdio, Stdio]:
    host_streams = {
        "stdin": (0, sys.stdin),
        "stdout": (1, sys.stdout),
        "stderr": (2, sys.stderr),
    }
    out: list[Stdio] = []
    for fd in range(3):
        kind = config.files[fd].kind if fd < len(config.files) else "null"
        if kind == "null":
            out.append(Stdio(StdioKind.NULL))
            continue
        host_fd, stream = host_streams[kind]
        if host_fd == fd:
            out.append(Stdio(StdioKind.INHERIT))
        else:  # e.g. Enarx's ``kind = "stdout"`` at fd 2: the guest's fd 2 writes to our stdout
            out.append(Stdio(StdioKind.STREAM, stream=stream.buffer))
    return out[0], out[1], out[2]


def _fd_env(config: Config) -> dict[str, str]:
    names = config.fd_names()
    names += ["null"] * (3 - len(names))
    return {"FD_COUNT": str(len(names)), "FD_NAMES": ":".join(names)}


def _sockname(sock: socket.socket | net.TlsListener) -> tuple[str, int]:
    addr = sock.getsockname()
    assert isinstance(addr, tuple)
    return str(addr[0]), int(addr[1])


def prepare(package: Package, options: KeepOptions) -> PreparedKeep:
    """Do everything up to starting the guest; the caller runs ``spec`` and then closes."""
    report = options.report
    config = package.config
    if package.sealed is None:  # a sealed module is opened only after attestation
        precheck.check_module(package.wasm_bytes, package.wasm)  # before any key or file
    if options.export_cert is not None:
        precheck.check_export_target(options.export_cert)
    platform = platforms.select(options.platform, options.state_dir)
    if platform.name == "nitro":
        report(
            "platform nitro: memory is isolated by AWS's Nitro hypervisor, which you trust "
            "(not a CPU TEE; certificates say hypervisor-trusted)"
        )
    elif platform.name in HARDWARE_PLATFORMS:
        report(f"platform {platform.name}: memory and registers are protected by the TEE")
    else:
        report(
            f"platform {platform.name}: NOT a hardware TEE; the host can read and change "
            "everything in this Keep"
        )
    stack = ExitStack()
    try:
        raw_listeners: dict[int, socket.socket] = {}
        for index, entry in enumerate(config.files):
            if isinstance(entry, ListenFile):
                sock = net.listen(entry, file_label(index, entry))
                stack.callback(sock.close)
                raw_listeners[index] = sock

        claims = workload_claims(package)
        identity = obtain_identity(package, platform, claims, report)
        if options.export_cert is not None:
            write_bytes(
                options.export_cert, identity.certificate_pem(), mode=0o644, make_parents=False
            )
            report(f"wrote the Keep's certificate to {options.export_cert}")
        # After attesting, before anything reaches the guest: secrets and a sealed module's key.
        secrets = guest_secrets.release(package, identity, report)
        config = secrets.config or config  # with a sealed part: args and env values merged in

        streams: list[Listener | ByteStream | MemoryFile] = []
        preopens: list[Preopen | MemoryDir] = []
        listening: dict[str, tuple[str, int]] = {}
        server_contexts: dict[str | None, ssl.SSLContext] = {}
        crls = _StewardCrl(config, package.base_dir)
        for index, entry in enumerate(config.files):
            label = file_label(index, entry)
            if entry.kind in STDIO_KINDS:
                continue
            if isinstance(entry, DirFile):
                preopens.append(
                    Preopen(resolve(package.base_dir, entry.path), entry.name, entry.writable)
                )
            elif isinstance(entry, SecretFile):
                if entry.is_path:
                    preopens.append(secrets.memory_dir(config, entry))
                else:
                    streams.append(secrets.memory_file(entry))
            elif isinstance(entry, ListenFile):
                sock = raw_listeners[index]
                where = _sockname(sock)
                listening[entry.name] = where
                if entry.prot is Prot.TCP:
                    streams.append(sock)
                else:
                    client_ca = entry.effective_client_ca()
                    if client_ca is not None and client_ca != "steward":
                        client_ca = str(resolve(package.base_dir, Path(client_ca)))
                    if client_ca not in server_contexts:
                        server_contexts[client_ca] = tls.server_context(identity, client_ca)
                    verify = _client_verifier(entry, label, client_ca, identity, crls)
                    listener = net.TlsListener(
                        sock, server_contexts[client_ca], name=entry.name, verify=verify
                    )
                    stack.callback(listener.close)
                    streams.append(listener)
                host, port = where
                report(f"{label}: listening on {net.hostport(host, port)} ({entry.prot.value})")
            elif isinstance(entry, ConnectFile):
                client = None
                crl = None
                if entry.prot is Prot.TLS:
                    client = _client_tls(entry, package, identity)
                    if entry.effective_trust(config.steward is not None) is Trust.STEWARD:
                        crl = crls.get()
                target = net.plan(
                    entry, crl, has_steward=config.steward is not None, base_dir=package.base_dir
                )
                stream = net.connect(target, client, label)
                stack.callback(stream.close)
                streams.append(stream)
                report(
                    f"{label}: connected to "
                    f"{net.hostport(entry.host, entry.effective_port())} ({entry.prot.value})"
                )

        limits = Limits(
            memory_bytes=options.memory_bytes or config.limits.memory_bytes(),
            timeout_s=options.timeout_s or config.limits.timeout,
        )
        stdin, stdout, stderr = _stdio(config)
        spec = RunSpec(
            module=package.wasm,
            # The bytes hashed into the claims above (or, for a confidential package, the
            # module opened in memory after attestation), never the file again.
            module_bytes=secrets.module or package.wasm_bytes,
            args=["main.wasm", *config.args],
            env={**config.plain_env(), **secrets.env, **_fd_env(config)},
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            preopens=preopens,
            streams=streams,
            limits=limits,
            # Compiled code of a confidential module would be its plaintext on the host's disk.
            cache_dir=None if package.sealed is not None else _cache_dir(platform, options, report),
            cache_key_file=options.state_dir / KEY_NAME if options.state_dir else None,
        )
        return PreparedKeep(platform, identity, spec, listening, stack)
    except BaseException:
        stack.close()
        raise


def _cache_dir(platform: Platform, options: KeepOptions, report: Report) -> Path | None:
    """The module cache, unless the host serves the files its key would be kept in."""
    if options.cache_dir is not None and platform.name in HOST_SERVES_FILES:
        report(
            f"platform {platform.name}: module cache off (the host serves every file, "
            "so it could read the cache's key and plant compiled code)"
        )
        return None
    return options.cache_dir


class _StewardCrl:
    """The one CRL cache of the Keep's own Steward, made when an entry first needs it."""

    def __init__(self, config: Config, base_dir: Path) -> None:
        self._config = config
        self._base_dir = base_dir
        self._cache: CrlCache | None = None

    def get(self) -> CrlCache | None:
        config = self._config
        if config.steward is None:
            return None
        if self._cache is None:
            ca_bundle = resolve(self._base_dir, config.steward_ca) if config.steward_ca else None
            client = StewardClient.from_config(config.steward, ca_bundle)
            self._cache = CrlCache(
                lambda: client.fetch_crl(revocation.FETCH_TIMEOUT_S), client.crl_url
            )
        return self._cache


def _client_verifier(
    entry: ListenFile,
    label: str,
    client_ca: str | None,
    identity: Identity,
    crls: _StewardCrl,
) -> peercheck.ClientVerifier | None:
    """The check each client of ``entry`` must pass after its handshake, if any.

    With ``client_ca = "steward"`` the CRL is fetched now, so that a Keep that cannot
    check revocation fails at start (or warns, with ``if-available``), not on a client.
    """
    wanted = peercheck.client_expectations(entry)
    if wanted is None:
        return None
    expect, workloads = wanted
    crl = None
    if client_ca == "steward":
        if identity.ca is None:
            raise tls.TlsError(f'{label}: client_ca = "steward" but this Keep has no Steward')
        anchors: tuple[x509.Certificate, ...] = (identity.ca,)
        crl = crls.get()
        try:
            revocation.current_crl(crl, entry.revocation, label)
        except revocation.CrlUnavailableError as exc:
            raise net.ListenError(f"{label}: cannot check client revocation: {exc}") from exc
    else:
        assert client_ca is not None  # a listen entry with expectations has one
        anchors = tls.read_bundle(Path(client_ca))
    return peercheck.ClientVerifier(
        name=entry.name,
        anchors=anchors,
        expect=expect,
        workloads=workloads,
        crl=crl,
        revocation=entry.revocation,
    )


def _client_tls(entry: ConnectFile, package: Package, identity: Identity) -> tls.ClientTls:
    return tls.client_context(
        trust=entry.effective_trust(package.config.steward is not None),
        server_name=entry.server_name or entry.host,
        identity=identity,
        ca_bundle=resolve(package.base_dir, entry.ca_bundle) if entry.ca_bundle else None,
        pin=resolve(package.base_dir, entry.pin) if entry.pin else None,
        present_certificate=entry.client_cert,
        check_name=entry.server_name is not None,
    )


def run(package: Package, options: KeepOptions) -> RunResult:
    """Run a package in a Keep to completion; sockets are closed afterwards."""
    from donjon import wasi  # deferred: importing wasmtime is the slow part of start-up

    with prepare(package, options) as keep:
        return wasi.run(keep.spec)


__all__ = ["KeepOptions", "PreparedKeep", "obtain_identity", "prepare", "run"]
