"""Checking a peer Keep's attested certificate right after a TLS handshake.

OpenSSL has verified the chain during the handshake; these read the Steward's
AttestationResult and WorkloadClaims with the relying-party checks of
:mod:`donjon.attestation.peer` against the CA that issued the peer, and the
Steward's CRL when there is one. The server side of a connect entry and the
clients of a listen entry go through the same function, only the TLS role
(serverAuth or clientAuth) differs.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from donjon.attestation.peer import (
    PeerExpectations,
    PeerIdentity,
    PeerRole,
    UntrustedChainError,
    WorkloadMismatchError,
    verify_peer_certificate,
)
from donjon.attestation.peer_x509 import touch_peer
from donjon.attestation.x509util import X509_LOAD_ERRORS
from donjon.errors import plain
from donjon.keep import config_peer
from donjon.keep.config import ConnectFile, ListenFile, Prot, Trust
from donjon.keep.config_peer import Revocation
from donjon.keep.revocation import CrlCache, current_crl


def verify_peer(
    der: bytes | None,
    anchors: Sequence[x509.Certificate],
    expect: PeerExpectations,
    *,
    role: PeerRole,
    crl: x509.CertificateRevocationList | None = None,
    workloads: frozenset[bytes] | None = None,
    now: datetime | None = None,
) -> PeerIdentity:
    """The peer's identity, or the PeerError that says why it is refused.

    ``workloads`` admits any of several main.wasm digests (a listener serving several
    client workloads); a single expected digest goes in ``expect``.
    """
    if der is None:
        raise UntrustedChainError("peer presented no certificate")
    try:
        leaf = x509.load_der_x509_certificate(der)
    except X509_LOAD_ERRORS as exc:
        raise UntrustedChainError(f"peer certificate is unreadable: {plain(exc)}") from None
    touch_peer(leaf)  # every field decodes, before the issuer is compared below
    if not anchors:
        raise UntrustedChainError("no Steward CA to check the peer's attestation against")
    issuers = [ca for ca in anchors if ca.subject == leaf.issuer] or list(anchors)
    when = now or datetime.now(UTC)
    last: UntrustedChainError | None = None
    for ca in issuers:  # a bundle may hold several CAs of one name (a rollover)
        try:
            identity = verify_peer_certificate(
                leaf, ca, now=when, crl=crl, expect=expect, role=role
            )
        except UntrustedChainError as exc:
            last = exc
            continue
        _check_workloads(identity, workloads)
        return identity
    assert last is not None
    raise last


def _check_workloads(identity: PeerIdentity, workloads: frozenset[bytes] | None) -> None:
    if workloads is None:
        return
    if identity.workload is None:
        raise WorkloadMismatchError("peer certificate names no workload")
    if identity.workload.wasm_sha256 not in workloads:
        raise WorkloadMismatchError(
            f"peer runs workload {identity.workload.wasm_sha256.hex()}, expected one of "
            + ", ".join(sorted(w.hex() for w in workloads))
        )


@dataclass(frozen=True)
class ClientVerifier:
    """What a ``listen`` entry demands of each client Keep; called by the TLS listener's
    handshake worker, which drops (and logs) a client this raises for."""

    name: str
    anchors: tuple[x509.Certificate, ...]
    expect: PeerExpectations
    workloads: frozenset[bytes] | None = None
    crl: CrlCache | None = None
    revocation: Revocation = Revocation.REQUIRED

    def __call__(self, sock: ssl.SSLSocket) -> PeerIdentity:
        crl = current_crl(self.crl, self.revocation, self.name)
        return verify_peer(
            sock.getpeercert(binary_form=True),
            self.anchors,
            self.expect,
            role="client",
            crl=crl,
            workloads=self.workloads,
        )


def connect_expectations(
    entry: ConnectFile, *, has_steward: bool, base_dir: Path | None = None
) -> PeerExpectations | None:
    """What a ``connect`` entry demands of the server Keep, if anything.

    Under Steward trust the peer is always a relying party's peer: with no ``expect_*``
    the defaults still refuse a revoked, development or debug Keep, and any advisory.
    Other trust (a pin, a bundle of public CAs, the system store) names no attested
    Keep, so only ``expect_*`` (which needs a Steward's bundle) asks for the checks.
    """
    if not entry.expects():
        if entry.prot is not Prot.TLS or entry.effective_trust(has_steward) is not Trust.STEWARD:
            return None
        return config_peer.expectations(
            workload_sha256=None, platform_names=None, tcb=None, allowed=entry.allow_advisories
        )
    package = entry.expect_package
    return config_peer.expectations(
        workload_sha256=entry.expected_workload_sha256(),
        platform_names=entry.expected_platforms(),
        tcb=entry.expect_min_tcb,
        allowed=entry.allow_advisories,
        package_sha256=bytes.fromhex(package.removeprefix("sha256:")) if package else None,
        package_repository=entry.expect_repository,
        package_signers=config_peer.load_signers(entry.expect_signer, base_dir or Path.cwd()),
    )


def client_expectations(
    entry: ListenFile,
) -> tuple[PeerExpectations, frozenset[bytes] | None] | None:
    """What a ``listen`` entry demands of each client Keep, if anything: the expectations,
    and the digests admitted when it names more than one workload.

    ``client_ca = "steward"`` without ``expect_client_*`` still applies the relying-party
    defaults to every client (no revoked, development or debug Keep, no advisory).
    """
    if not entry.client_expects():
        if entry.effective_client_ca() != "steward":
            return None
        expect = config_peer.expectations(
            workload_sha256=None,
            platform_names=None,
            tcb=None,
            allowed=entry.allow_client_advisories,
        )
        return expect, None
    digests = config_peer.digests(entry.expect_client_workload)
    single = next(iter(digests)) if digests is not None and len(digests) == 1 else None
    expect = config_peer.expectations(
        workload_sha256=single,
        platform_names=config_peer.as_set(entry.expect_client_platform),
        tcb=entry.expect_client_min_tcb,
        allowed=entry.allow_client_advisories,
    )
    return expect, (digests if single is None else None)
