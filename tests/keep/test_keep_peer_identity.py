"""Keep-to-Keep workload identity: a ``connect`` entry's ``expect_workload``/``expect_platform``.

The peer Keep's certificate carries the Steward's AttestationResult; the client
Keep checks it right after the TLS handshake and refuses, before its guest
starts, a peer that runs another workload or is on another platform.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.attestation.peer import PeerExpectations
from donjon.keep import net, tls
from donjon.keep.config import Config, ConnectFile, Trust, check_files
from donjon.keep.identity import Identity
from donjon.keep.net import PeerRefused, TlsListener

if TYPE_CHECKING:
    from conftest import StandInCA

#: Hand-written digests: the peer's workload and one it does not run.
PEER_WASM = bytes.fromhex("5f" * 32)
OTHER_WASM = bytes.fromhex("a0" * 32)


def attested(
    ca: StandInCA,
    platform: str,
    wasm_sha256: bytes,
    *,
    debug: bool = False,
    dns_name: str | None = None,
    advisories: tuple[str, ...] = (),
    tcb_status: str = "UpToDate",
    workload: WorkloadClaims | None = None,
) -> Identity:
    """A Keep identity as Donjon's Steward issues it: claims and attestation result inside."""
    workload = workload or WorkloadClaims(wasm_sha256, hashlib.sha256(b"cfg").digest(), "peer")
    result = AttestationResult(
        platform=platform,
        product="Milan" if platform == "snp" else "",
        measurement=b"\x11" * 48,
        tcb="bl=3 tee=0 snp=8 ucode=115",
        tcb_status=tcb_status,
        advisories=advisories,
        debug=debug or platform in ("nil", "kvm"),  # as Donjon's Steward says for them
        development=platform in ("nil", "sim", "kvm"),
        policy_id="test",
        evaluated_at=dt.datetime.now(dt.UTC),
        workload=workload,
    )
    key = ec.generate_private_key(ec.SECP256R1())
    base = ca.sign(key.public_key(), dns_name=dns_name)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(base.subject)
        .issuer_name(base.issuer)
        .public_key(key.public_key())
        .serial_number(base.serial_number)
        .not_valid_before(base.not_valid_before_utc)
        .not_valid_after(base.not_valid_after_utc)
    )
    for ext in base.extensions:
        leaf = leaf.add_extension(ext.value, ext.critical)
    leaf = leaf.add_extension(
        x509.UnrecognizedExtension(oids.ATTESTATION_RESULT, result.to_der()), False
    ).add_extension(x509.UnrecognizedExtension(oids.WORKLOAD_CLAIMS, workload.to_der()), False)
    cert = leaf.sign(ca.key, hashes.SHA256())
    return Identity(key=key, chain=(cert,), ca=ca.cert, platform=platform, claims=workload)


def entry(**kw: object) -> ConnectFile:
    return ConnectFile.model_validate({"kind": "connect", "host": "localhost", "port": 1, **kw})


@pytest.fixture
def server(steward_ca: StandInCA) -> Iterator[TlsListener]:
    """A Keep on the (development) nil platform running PEER_WASM, attested by ``steward_ca``."""
    sock = net.bind("127.0.0.1", 0)
    ident = attested(steward_ca, "nil", PEER_WASM)
    with TlsListener(sock, tls.server_context(ident), name="peer") as listener:
        yield listener


def dial(
    listener: TlsListener, ca: StandInCA, claims: WorkloadClaims, **expect: object
) -> socket.socket | ssl.SSLSocket:
    port = listener.getsockname()[1]  # type: ignore[index]
    plan = net.plan(entry(port=port, trust="steward", **expect), has_steward=True)
    client = tls.client_context(
        trust=Trust.STEWARD, server_name="localhost", identity=ca.issue(claims), check_name=False
    )
    return net.connect(plan, client, '[[files]] #4 "peer" (fd 3)')


# Configuration ---------------------------------------------------------------------------------


def test_expect_workload_is_normalised_to_lower_case() -> None:
    got = entry(expect_workload="sha256:" + "5F" * 32, trust="steward")
    assert got.expect_workload == "sha256:" + "5f" * 32
    assert got.expected_workload_sha256() == PEER_WASM


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"expect_workload": "5f" * 32},
            "'5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f' is not \"sha256:\" "
            "followed by 64 hex digits (the SHA-256 of the peer's main.wasm)",
        ),
        ({"expect_workload": "sha256:abc"}, 'is not "sha256:" followed by 64 hex digits'),
        (
            {"expect_platform": "sev"},
            "unknown platform 'sev' (expected one of azure-snp, azure-tdx, cca, kvm, nil,",
        ),
        ({"expect_platform": []}, "must name at least one platform"),
        (
            {"expect_platform": ["snp", "sim"]},
            "mixes TEE platforms (snp) with development ones (sim): a development peer is "
            "never confidential, so list one kind only",
        ),
        ({"expect_platform": "snp", "prot": "tcp"}, 'expect_platform needs prot = "tls"'),
        (
            {"expect_workload": "sha256:" + "00" * 32, "trust": "system"},
            'expect_workload needs trust = "steward" or "bundle", not "system": only a '
            "Steward's certificate attests which workload a peer runs",
        ),
        (
            {"expect_platform": "snp", "pin": "peer.pem"},
            'needs trust = "steward" or "bundle", not "pin"',
        ),
    ],
)
def test_bad_expectations_are_refused_with_their_reason(
    fields: dict[str, object], message: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        entry(**fields)
    assert message in str(info.value)


def test_expectations_without_a_steward_are_a_layout_problem() -> None:
    stdio = [{"kind": k} for k in ("stdin", "stdout", "stderr")]
    config = Config.model_validate(
        {"files": [*stdio, {"kind": "connect", "host": "h", "expect_platform": ["snp", "tdx"]}]}
    )
    assert check_files(config) == [
        (
            3,
            'expect_platform needs a steward URL in the config (or trust = "bundle" with the '
            "peer's Steward CA): only a Steward's certificate attests what the peer runs",
        )
    ]
    with_steward = config.model_copy(update={"steward": "https://steward.example/"})
    assert check_files(with_steward) == []


def test_expectations_of_an_entry() -> None:
    # Steward trust without expect_*: still the relying-party defaults (issue #9).
    plain = net.expectations(entry(trust="steward"), has_steward=True)
    assert plain == PeerExpectations()
    # Implied Steward trust too; no Steward (system trust) or a pin: nothing attests.
    assert net.expectations(entry(), has_steward=True) == PeerExpectations()
    assert net.expectations(entry(), has_steward=False) is None
    assert net.expectations(entry(trust="system"), has_steward=True) is None
    only_digest = net.expectations(
        entry(trust="steward", expect_workload="sha256:" + "5f" * 32), has_steward=True
    )
    assert only_digest is not None
    assert (only_digest.workload_sha256, only_digest.platforms) == (PEER_WASM, None)
    assert not only_digest.allow_development  # a digest alone demands a real TEE
    dev = net.expectations(entry(trust="steward", expect_platform=["nil", "sim"]), has_steward=True)
    assert dev is not None
    # nil and kvm results always say debug: a development peer is never confidential.
    assert (dev.platforms, dev.allow_development, dev.allow_debug) == (
        frozenset({"nil", "sim"}),
        True,
        True,
    )
    tee = net.expectations(entry(trust="steward", expect_platform=["snp", "tdx"]), has_steward=True)
    assert tee is not None
    assert (tee.allow_development, tee.allow_debug) == (False, False)


# After the handshake ---------------------------------------------------------------------------


def test_the_right_workload_connects(
    server: TlsListener, steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    with dial(
        server,
        steward_ca,
        claims,
        expect_workload="sha256:" + PEER_WASM.hex(),
        expect_platform="nil",
    ) as conn:
        accepted, _ = server.accept()
        with accepted:
            conn.sendall(b"hello peer")
            assert accepted.recv(10) == b"hello peer"


def test_a_wrong_workload_is_refused_and_closed(
    server: TlsListener,
    steward_ca: StandInCA,
    claims: WorkloadClaims,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[object] = []
    real = socket.create_connection

    def counting(*args: object, **kw: object) -> socket.socket:
        attempts.append(args)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", counting)
    with pytest.raises(PeerRefused) as info:
        dial(
            server,
            steward_ca,
            claims,
            expect_workload="sha256:" + OTHER_WASM.hex(),
            expect_platform="nil",
            retries=3,
        )
    port = server.getsockname()[1]  # type: ignore[index]
    assert str(info.value) == (
        f'[[files]] #4 "peer" (fd 3): peer localhost:{port} refused: peer runs workload '
        f"{PEER_WASM.hex()}, expected {OTHER_WASM.hex()}"
    )
    assert info.value.code == "peer.workload"
    assert len(attempts) == 1  # a refusal is final: retries are for unreachable peers
    accepted, _ = server.accept()
    with accepted:
        accepted.settimeout(5)
        assert accepted.recv(1) == b""  # the client Keep closed it


def test_a_development_peer_is_refused_unless_its_platform_is_expected(
    server: TlsListener, steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    with pytest.raises(PeerRefused) as info:
        dial(server, steward_ca, claims, expect_workload="sha256:" + PEER_WASM.hex())
    assert info.value.code == "peer.development"
    assert str(info.value).endswith(
        "refused: peer is not in a TEE (platform nil, development certificate)"
    )
    with pytest.raises(PeerRefused) as info:
        dial(server, steward_ca, claims, expect_platform=["snp", "tdx"])
    assert info.value.code == "peer.development"
    with pytest.raises(PeerRefused) as info:
        dial(server, steward_ca, claims, expect_platform="sim")
    assert info.value.code == "peer.platform"
    assert str(info.value).endswith("refused: peer platform nil is not one of sim")


def test_a_debug_tee_is_refused(steward_ca: StandInCA, claims: WorkloadClaims) -> None:
    ident = attested(steward_ca, "snp", PEER_WASM, debug=True)
    with (
        TlsListener(net.bind("127.0.0.1", 0), tls.server_context(ident), name="dbg") as listener,
        pytest.raises(PeerRefused, match="peer TEE allows debugging") as info,
    ):
        dial(listener, steward_ca, claims, expect_platform="snp")
    assert info.value.code == "peer.debug"


def test_a_tee_peer_with_an_advisory_is_refused(
    steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    # Its Steward could not check the vendor CRL: the relying-party default refuses that.
    ident = attested(steward_ca, "snp", PEER_WASM, advisories=("revocation-not-checked",))
    with (
        TlsListener(net.bind("127.0.0.1", 0), tls.server_context(ident), name="adv") as listener,
        pytest.raises(PeerRefused, match="advisory revocation-not-checked") as info,
    ):
        dial(listener, steward_ca, claims, expect_workload="sha256:" + PEER_WASM.hex())
    assert info.value.code == "peer.advisory"
    good = attested(steward_ca, "snp", PEER_WASM)
    with (
        TlsListener(net.bind("127.0.0.1", 0), tls.server_context(good), name="ok") as listener,
        dial(listener, steward_ca, claims, expect_workload="sha256:" + PEER_WASM.hex()),
    ):
        listener.accept()[0].close()


def test_a_certificate_without_attestation_is_refused(
    steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    plain = steward_ca.issue(claims)  # chains to the CA, but no Steward attestation inside
    with (
        TlsListener(net.bind("127.0.0.1", 0), tls.server_context(plain), name="x") as listener,
        pytest.raises(PeerRefused, match="carries no attestation result") as info,
    ):
        dial(listener, steward_ca, claims, expect_platform="nil")
    assert info.value.code == "peer.no_attestation"


def test_bundle_trust_checks_against_the_peer_steward(
    steward_ca: StandInCA, other_ca: StandInCA, tmp_path: Path
) -> None:
    # The client Keep has no identity from the peer's Steward: it trusts that CA by bundle
    # (bundle trust checks the host name, so this peer's certificate names localhost).
    bundle = tmp_path / "cas.pem"
    bundle.write_bytes(
        b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in (other_ca, steward_ca))
    )
    client = tls.client_context(trust=Trust.BUNDLE, server_name="localhost", ca_bundle=bundle)
    assert [c.subject for c in client.anchors] == [other_ca.cert.subject, steward_ca.cert.subject]
    ident = attested(steward_ca, "nil", PEER_WASM, dns_name="localhost")
    with TlsListener(net.bind("127.0.0.1", 0), tls.server_context(ident), name="b") as listener:
        port = listener.getsockname()[1]  # type: ignore[index]

        def plan(wasm: bytes) -> net.ConnectPlan:
            fields = {
                "expect_workload": "sha256:" + wasm.hex(),
                "expect_platform": "nil",
                # The Keep fetches only its own Steward's CRL: say that none is checked here.
                "revocation": "if-available",
            }
            return net.plan(entry(port=port, ca_bundle=str(bundle), **fields), has_steward=True)

        with pytest.raises(PeerRefused, match=f"expected {OTHER_WASM.hex()}$"):
            net.connect(plan(OTHER_WASM), client, "peer")
        with net.connect(plan(PEER_WASM), client, "peer"):
            listener.accept()[0].close()
