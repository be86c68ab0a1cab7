"""Relying party: donjon verify-peer and the pure checks in donjon.attestation.peer."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from steward_fakes import (
    CLAIMS,
    WASM_DIGEST,
    issue_snp_leaf,
    make_csr,
    make_key,
)
from steward_harness import RunningSteward, StewardFactory

from donjon.attestation.peer import (
    DebugPeerError,
    DevelopmentPeerError,
    MissingAttestationError,
    PeerExpectations,
    PeerExpiredError,
    PeerRevokedError,
    PlatformNotAllowedError,
    TcbTooLowError,
    UntrustedChainError,
    WorkloadMismatchError,
    parse_tcb,
    verify_peer_certificate,
)
from donjon.cli.main import main
from donjon.steward import wire
from donjon.steward.ca import CertificateAuthority
from donjon.steward.relying import connect_and_verify, fetch_crl

NOW = datetime.now(UTC)
DEV = PeerExpectations(allow_development=True)


class KeepServer:
    """A TLS 1.3 server presenting an issued certificate, like a Keep's listener."""

    def __init__(self, cert_pem: bytes, key: ec.EllipticCurvePrivateKey, tmp: Path) -> None:
        cert_file, key_file = tmp / "keep.pem", tmp / "keep.key"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.load_cert_chain(cert_file, key_file)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello\n")
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def attested(
    start_steward: StewardFactory, tmp_path: Path
) -> Iterator[tuple[RunningSteward, KeepServer, x509.Certificate]]:
    steward = start_steward()
    key = make_key(ec.SECP256R1())
    r = steward.client.post(
        "/", content=make_csr(key, claims=CLAIMS), headers={"Content-Type": "application/pkcs10"}
    )
    _ca_der, leaf_der = wire.split_sequence(r.content, "answer")
    leaf = x509.load_der_x509_certificate(leaf_der)
    server = KeepServer(leaf.public_bytes(serialization.Encoding.PEM), key, tmp_path)
    (tmp_path / "ca.pem").write_bytes(steward.ca.certificate_pem)
    yield steward, server, leaf
    server.close()


def test_attested_keep_is_accepted_over_tls13(
    attested: tuple[RunningSteward, KeepServer, x509.Certificate],
) -> None:
    steward, server, leaf = attested
    report = connect_and_verify(
        "127.0.0.1",
        server.port,
        steward.ca.certificate,
        expect=replace(DEV, workload_sha256=WASM_DIGEST),
    )
    assert report.tls_version == "TLSv1.3"
    assert report.identity.certificate == leaf
    assert report.identity.workload == CLAIMS
    assert report.identity.result.platform == "nil"


def test_development_peer_refused_by_default(
    attested: tuple[RunningSteward, KeepServer, x509.Certificate],
) -> None:
    steward, server, _ = attested
    with pytest.raises(DevelopmentPeerError):
        connect_and_verify("127.0.0.1", server.port, steward.ca.certificate)


def test_wrong_workload_refused(
    attested: tuple[RunningSteward, KeepServer, x509.Certificate],
) -> None:
    steward, server, _ = attested
    with pytest.raises(WorkloadMismatchError):
        connect_and_verify(
            "127.0.0.1",
            server.port,
            steward.ca.certificate,
            expect=replace(DEV, workload_sha256=b"\x00" * 32),
        )


def test_other_ca_is_untrusted(
    attested: tuple[RunningSteward, KeepServer, x509.Certificate],
) -> None:
    _, server, _ = attested
    other = CertificateAuthority.create(now=NOW).certificate
    with pytest.raises(UntrustedChainError):
        connect_and_verify("127.0.0.1", server.port, other, expect=DEV)


def test_revoked_peer_refused_with_the_stewards_crl(
    attested: tuple[RunningSteward, KeepServer, x509.Certificate],
) -> None:
    steward, server, leaf = attested
    crl = fetch_crl(steward.url + "/v1/crl", ca_context=steward.tls.context)
    connect_and_verify("127.0.0.1", server.port, steward.ca.certificate, expect=DEV, crl=crl)
    steward.steward.revoke(format(leaf.serial_number, "x"), reason="key-compromise")
    crl = fetch_crl(steward.url + "/v1/crl", ca_context=steward.tls.context)
    with pytest.raises(PeerRevokedError):
        connect_and_verify("127.0.0.1", server.port, steward.ca.certificate, expect=DEV, crl=crl)


def test_cli_verify_peer_json(
    attested: tuple[RunningSteward, KeepServer, x509.Certificate],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, server, leaf = attested
    main(
        [
            "verify-peer",
            f"127.0.0.1:{server.port}",
            "--ca",
            str(tmp_path / "ca.pem"),
            "--allow-development",
            "--expect-workload",
            WASM_DIGEST.hex(),
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["accepted"] is True
    assert doc["serial"] == format(leaf.serial_number, "x")
    assert doc["workload"]["wasm_sha256"] == WASM_DIGEST.hex()
    assert doc["development"] is True


def test_cli_verify_peer_refusal_is_one_line(
    attested: tuple[RunningSteward, KeepServer, x509.Certificate],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, server, _ = attested
    with pytest.raises(SystemExit) as exit_info:
        main(["verify-peer", f"127.0.0.1:{server.port}", "--ca", str(tmp_path / "ca.pem")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("donjon: error: peer is not in a TEE")


# --- pure checks on hand-made certificates --------------------------------------------------


def _snp_cert(ca: CertificateAuthority, **changes: object) -> x509.Certificate:
    """A leaf as the Steward would issue it for an SNP verdict with the given claims."""
    return issue_snp_leaf(ca, now=NOW, **changes)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(curve="p256", now=NOW)


def test_snp_peer_accepted_with_tcb_minimum(ca: CertificateAuthority) -> None:
    leaf = _snp_cert(ca)
    ident = verify_peer_certificate(
        leaf,
        ca.certificate,
        now=NOW,
        expect=PeerExpectations(
            min_tcb=parse_tcb("bl=3,snp=8,ucode=115"), platforms=frozenset({"snp"})
        ),
    )
    assert ident.result.product == "Milan"
    assert [c.id for c in ident.checks] == [
        "chain",
        "profile",
        "revocation",
        "attestation",
        "debug",
        "advisories",
        "tcb_status",
        "tcb",
    ]


def test_tcb_below_minimum(ca: CertificateAuthority) -> None:
    with pytest.raises(TcbTooLowError, match="snp=8 < 9"):
        verify_peer_certificate(
            _snp_cert(ca), ca.certificate, now=NOW, expect=PeerExpectations(min_tcb={"snp": 9})
        )


def test_debug_tee_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(DebugPeerError):
        verify_peer_certificate(_snp_cert(ca, debug=True), ca.certificate, now=NOW)


def test_platform_not_allowed(ca: CertificateAuthority) -> None:
    with pytest.raises(PlatformNotAllowedError):
        verify_peer_certificate(
            _snp_cert(ca),
            ca.certificate,
            now=NOW,
            expect=PeerExpectations(platforms=frozenset({"tdx"})),
        )


def test_expired_and_not_yet_valid(ca: CertificateAuthority) -> None:
    leaf = _snp_cert(ca)
    with pytest.raises(PeerExpiredError, match="expired"):
        verify_peer_certificate(leaf, ca.certificate, now=NOW + timedelta(days=29))
    with pytest.raises(PeerExpiredError, match="not valid before"):
        verify_peer_certificate(leaf, ca.certificate, now=NOW - timedelta(hours=1))


def test_certificate_without_attestation_result(ca: CertificateAuthority) -> None:
    key = make_key()
    plain = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca.key, ca.hash_algorithm)
    )
    with pytest.raises(MissingAttestationError):
        verify_peer_certificate(plain, ca.certificate, now=NOW)


def test_tampered_leaf_signature(ca: CertificateAuthority) -> None:
    der = bytearray(_snp_cert(ca).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    with pytest.raises(UntrustedChainError):
        verify_peer_certificate(x509.load_der_x509_certificate(bytes(der)), ca.certificate, now=NOW)


# --- an Intel TDX peer: its platform, TCB status and advisories reach the relying party ------

TDX_TCB = (
    "tee_tcb_svn=0x06010300000000000000000000000000 fmspc=0xb0c06f000000 pcesvn=11 "
    "cpusvn=0x03030202040100050000000000000000"
)


def _tdx_cert(ca: CertificateAuthority, **changes: object) -> x509.Certificate:
    fields: dict[str, object] = {
        "platform": "tdx",
        "product": "TDX FMSPC b0c06f000000",
        "tcb": TDX_TCB,
        "tcb_status": "OutOfDate",
        "advisories": ("INTEL-SA-00837",),
    }
    fields.update(changes)
    return issue_snp_leaf(ca, now=NOW, **fields)


def test_tdx_peer_status_and_advisories_are_judged(ca: CertificateAuthority) -> None:
    from donjon.attestation.peer import AdvisoryNotAllowedError, TcbStatusNotAllowedError

    leaf = _tdx_cert(ca)
    with pytest.raises(AdvisoryNotAllowedError, match="INTEL-SA-00837"):
        verify_peer_certificate(leaf, ca.certificate, now=NOW)
    with pytest.raises(TcbStatusNotAllowedError, match="OutOfDate"):
        verify_peer_certificate(
            leaf,
            ca.certificate,
            now=NOW,
            expect=PeerExpectations(allowed_advisories=frozenset({"INTEL-SA-00837"})),
        )
    ident = verify_peer_certificate(
        leaf,
        ca.certificate,
        now=NOW,
        expect=PeerExpectations(
            platforms=frozenset({"tdx"}),
            allowed_advisories=frozenset({"INTEL-SA-00837"}),
            tcb_statuses=frozenset({"OutOfDate"}),
            min_tcb=parse_tcb("pcesvn=11"),
        ),
    )
    result = ident.result
    assert (result.platform, result.tcb_status, result.advisories) == (
        "tdx",
        "OutOfDate",
        ("INTEL-SA-00837",),
    )
    with pytest.raises(TcbTooLowError, match="pcesvn=11 < 12"):
        verify_peer_certificate(
            _tdx_cert(ca, tcb_status="UpToDate", advisories=()),
            ca.certificate,
            now=NOW,
            expect=PeerExpectations(min_tcb={"pcesvn": 12}),
        )
