"""Keep-to-Keep identity, the other way round and with revocation (in process).

A ``listen`` entry's ``expect_client_*`` is checked by the TLS listener's handshake
worker: a client Keep that fails is dropped and logged and the guest never
accepts it. ``expect_min_tcb``/``allow_advisories`` loosen the relying-party
defaults knowingly, and the Steward's CRL refuses revoked peers both ways.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import ValidationError
from test_keep_peer_identity import OTHER_WASM, PEER_WASM, attested, entry

from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.peer import AdvisoryNotAllowedError, CrlStaleError, WrongPurposeError
from donjon.keep import net, package, peercheck, tls
from donjon.keep.config import Config, ListenFile, Trust, check_files
from donjon.keep.config_peer import Revocation
from donjon.keep.identity import Identity
from donjon.keep.net import PeerRefused, TlsListener
from donjon.keep.revocation import CrlCache, CrlUnavailableError
from donjon.keep.runner import KeepOptions, prepare
from donjon.keep.steward_client import StewardUnreachable
from support.net import hello_as

if TYPE_CHECKING:
    from conftest import Responder, StandInCA

LABEL = '[[files]] #4 "peer" (fd 3)'
#: The TCB the ``attested`` helper writes, and advisories a real TEE peer may carry.
PEER_TCB = "bl=3,tee=0,snp=8,ucode=115"
NOT_CHECKED = "revocation-not-checked"


def listen_entry(**kw: object) -> ListenFile:
    return ListenFile.model_validate({"kind": "listen", "name": "api", "port": 0, **kw})


def crl_der(ca: StandInCA, *serials: int, valid_for: dt.timedelta = dt.timedelta(hours=1)) -> bytes:
    """A CRL of ``ca`` listing ``serials``, written here with ``cryptography``'s builder."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + valid_for)
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def unreachable() -> bytes:
    raise StewardUnreachable("https://steward.test/v1/crl: unreachable: [Errno 111] refused")


def verifier(
    ca: StandInCA, crl: CrlCache | None = None, **fields: object
) -> peercheck.ClientVerifier:
    """The runner's check for a listen entry with ``fields`` (client_ca = "steward")."""
    item = listen_entry(**fields)
    wanted = peercheck.client_expectations(item)
    assert wanted is not None
    expect, workloads = wanted
    return peercheck.ClientVerifier("api", (ca.cert,), expect, workloads, crl, item.revocation)


@contextmanager
def serving(
    ca: StandInCA, claims: WorkloadClaims, check: peercheck.ClientVerifier
) -> Iterator[TlsListener]:
    server = tls.server_context(ca.issue(claims), "steward")
    with TlsListener(net.bind("127.0.0.1", 0), server, name="api", verify=check) as listener:
        listener.settimeout(5)
        yield listener


def talk(listener: TlsListener, client: Identity) -> bytes:
    """Connect as ``client`` with its certificate, send a line, return the guest's echo."""
    return hello_as(listener.getsockname()[1], client)  # type: ignore[index]


def echo_once(listener: TlsListener) -> Callable[[], None]:
    """Play the guest: accept one connection and echo what it sends."""

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(conn.recv(16))

    return run


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused TLS client" in r.getMessage()]


# Configuration ---------------------------------------------------------------------------------


def test_client_expectations_default_to_the_steward_ca() -> None:
    item = listen_entry(expect_client_workload="sha256:" + "5F" * 32)
    assert item.expect_client_workload == "sha256:" + "5f" * 32
    assert item.effective_client_ca() == "steward"
    assert listen_entry().effective_client_ca() is None
    assert listen_entry(client_ca="cas.pem").effective_client_ca() == "cas.pem"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"expect_client_workload": "sha256:abc"},
            'is not "sha256:" followed by 64 hex digits (the SHA-256 of the client\'s main.wasm)',
        ),
        ({"expect_client_workload": []}, "must name at least one workload"),
        (
            {"expect_client_workload": ["sha256:" + "ab" * 32, "sha256:" + "AB" * 32]},
            "names a workload twice",
        ),
        ({"expect_client_platform": "sev"}, "unknown platform 'sev'"),
        (
            {"expect_client_platform": "snp", "prot": "tcp"},
            'expect_client_platform needs prot = "tls"',
        ),
        (
            {"allow_client_advisories": [NOT_CHECKED]},
            'allow_client_advisories applies only with client_ca = "steward" or '
            "expect_client_workload, expect_client_platform or expect_client_min_tcb",
        ),
        (
            {"revocation": "if-available", "client_ca": "cas.pem"},
            'revocation applies only with client_ca = "steward" or expect_client_workload',
        ),
        ({"expect_client_platform": "snp", "revocation": "never"}, "revocation"),
        (
            {"expect_client_platform": "snp", "client_ca": "cas.pem"},
            'with client_ca = "<bundle>" the Keep cannot fetch the peer Steward\'s CRL (only its '
            'own Steward\'s), so revocation cannot be checked: set revocation = "if-available" '
            "to accept peers without that check",
        ),
        ({"expect_client_min_tcb": "snp"}, "TCB component 'snp' is not NAME=NUMBER (e.g. snp=8)"),
        ({"expect_client_min_tcb": " , "}, "names no TCB component"),
        ({"expect_client_min_tcb": "snp=-1"}, "TCB component snp is negative"),
        (
            {"expect_client_platform": "snp", "allow_client_advisories": ["bad name"]},
            "'bad name' is not an advisory name",
        ),
    ],
)
def test_bad_client_expectations_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        listen_entry(**fields)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"expect_min_tcb": "snp=x"}, "TCB component 'snp=x' has a non-numeric value"),
        (
            {"allow_advisories": [NOT_CHECKED], "trust": "system"},
            'allow_advisories applies only with trust = "steward" or expect_workload, '
            "expect_platform, expect_min_tcb, expect_package, expect_repository or expect_signer",
        ),
        (
            {"revocation": "if-available", "pin": "peer.pem"},
            'revocation applies only with trust = "steward" or expect_workload',
        ),
        (
            {"expect_platform": "snp", "ca_bundle": "cas.pem"},
            'with trust = "bundle" the Keep cannot fetch the peer Steward\'s CRL',
        ),
        ({"expect_min_tcb": "snp=8", "trust": "system"}, 'expect_min_tcb needs trust = "steward"'),
    ],
)
def test_bad_connect_options_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        entry(**fields)
    assert message in str(info.value)


def test_client_expectations_without_a_steward_are_a_layout_problem() -> None:
    stdio = [{"kind": k} for k in ("stdin", "stdout", "stderr")]
    listen = {"kind": "listen", "name": "api", "expect_client_platform": "snp"}
    config = Config.model_validate({"files": [*stdio, listen]})
    assert check_files(config) == [
        (
            3,
            "expect_client_platform needs a steward URL in the config (or client_ca with the "
            "clients' Steward CA): only a Steward's certificate attests what a client runs",
        )
    ]
    with_steward = config.model_copy(update={"steward": "https://steward.example/"})
    assert check_files(with_steward) == []


def test_expectations_carry_min_tcb_and_advisories() -> None:
    got = net.expectations(
        entry(trust="steward", expect_min_tcb=PEER_TCB, allow_advisories=[NOT_CHECKED]),
        has_steward=True,
    )
    assert got is not None
    assert dict(got.min_tcb) == {"bl": 3, "tee": 0, "snp": 8, "ucode": 115}
    assert got.allowed_advisories == frozenset({NOT_CHECKED})
    assert not got.allow_development
    # A development peer's Steward always writes revocation-not-checked: still accepted.
    dev = net.expectations(
        entry(trust="steward", expect_platform="nil", allow_advisories=["x"]), has_steward=True
    )
    assert dev is not None and dev.allowed_advisories == frozenset({"x", NOT_CHECKED})
    # Defaults (nothing given): the relying-party defaults, which refuse any TEE advisory.
    plain = net.expectations(entry(trust="steward", expect_platform="snp"), has_steward=True)
    assert plain is not None and (plain.allowed_advisories, dict(plain.min_tcb)) == (None, {})


# The listener drops clients that fail ----------------------------------------------------------


def test_listener_admits_only_the_expected_client_workload(
    steward_ca: StandInCA, claims: WorkloadClaims, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "donjon.keep.net")
    check = verifier(
        steward_ca, expect_client_workload="sha256:" + PEER_WASM.hex(), expect_client_platform="nil"
    )
    wrong = attested(steward_ca, "nil", OTHER_WASM)
    right = attested(steward_ca, "nil", PEER_WASM)
    with serving(steward_ca, claims, check) as listener:
        assert talk(listener, wrong) == b""  # closed by the Keep before the guest saw it
        guest = echo_once(listener)
        worker = threading.Thread(target=guest)
        worker.start()
        assert talk(listener, right) == b"hello"
        worker.join(5)
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()  # the wrong client was never queued for the guest
        assert (listener.handshakes_ok, listener.clients_refused) == (1, 1)
    [line] = refusals(caplog)
    assert line.startswith("api: refused TLS client 127.0.0.1:")
    assert line.endswith(
        f": peer runs workload {OTHER_WASM.hex()}, expected {PEER_WASM.hex()} [peer.workload]"
    )


def test_listener_accepts_any_of_several_workloads(
    steward_ca: StandInCA, claims: WorkloadClaims, caplog: pytest.LogCaptureFixture
) -> None:
    third = bytes.fromhex("c3" * 32)
    names = ["sha256:" + PEER_WASM.hex(), "sha256:" + OTHER_WASM.hex()]
    check = verifier(steward_ca, expect_client_workload=names, expect_client_platform="nil")
    assert check.workloads == frozenset({PEER_WASM, OTHER_WASM})
    with serving(steward_ca, claims, check) as listener:
        for wasm in (PEER_WASM, OTHER_WASM):
            ident = attested(steward_ca, "nil", wasm)
            assert check(_fake(ident)).workload.wasm_sha256 == wasm  # type: ignore[union-attr]
        assert talk(listener, attested(steward_ca, "nil", third)) == b""
    [line] = refusals(caplog)
    assert line.endswith(
        f"peer runs workload {third.hex()}, expected one of "
        f"{min(PEER_WASM, OTHER_WASM).hex()}, {max(PEER_WASM, OTHER_WASM).hex()} [peer.workload]"
    )


class _FakeSock:
    """What the verifier reads of a handshaken socket: the peer's DER certificate."""

    def __init__(self, der: bytes) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool = False) -> bytes:
        assert binary_form
        return self.der


def _fake(ident: Identity) -> ssl.SSLSocket:
    der = ident.certificate.public_bytes(serialization.Encoding.DER)
    return _FakeSock(der)  # type: ignore[return-value]


def test_client_check_is_for_a_tls_client(steward_ca: StandInCA, claims: WorkloadClaims) -> None:
    """The client's certificate needs clientAuth, not serverAuth (role = "client")."""
    ident = attested(steward_ca, "nil", PEER_WASM)
    leaf = ident.certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(leaf.public_key())
        .serial_number(leaf.serial_number)
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
    )
    for ext in leaf.extensions:
        value = ext.value
        if isinstance(value, x509.ExtendedKeyUsage):
            value = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        builder = builder.add_extension(value, ext.critical)
    server_only = builder.sign(steward_ca.key, hashes.SHA256())
    check = verifier(steward_ca, expect_client_platform="nil")
    sock = _FakeSock(server_only.public_bytes(serialization.Encoding.DER))
    with pytest.raises(WrongPurposeError, match="extendedKeyUsage lacks clientAuth"):
        check(sock)  # type: ignore[arg-type]


# expect_min_tcb and allow_advisories -------------------------------------------------------------


@pytest.fixture
def lax_tee_peer(steward_ca: StandInCA) -> Iterator[TlsListener]:
    """An SNP peer whose Steward set no TCB minimum and could not check the vendor CRL."""
    ident = attested(
        steward_ca, "snp", PEER_WASM, advisories=(NOT_CHECKED,), tcb_status="NotAppraised"
    )
    with TlsListener(net.bind("127.0.0.1", 0), tls.server_context(ident), name="tee") as listener:
        yield listener


@pytest.mark.parametrize(
    ("fields", "code", "reason"),
    [
        ({}, "peer.advisory", "peer certificate carries advisory revocation-not-checked"),
        (
            {"allow_advisories": [NOT_CHECKED]},
            "peer.tcb_status",
            "peer TCB status NotAppraised is not accepted (accepted: MeetsMinimum, UpToDate): "
            "the Steward's policy sets no minimum TCB",
        ),
        (
            {"expect_min_tcb": PEER_TCB},
            "peer.advisory",
            "peer certificate carries advisory revocation-not-checked",
        ),
        (
            {"expect_min_tcb": "bl=3,tee=0,snp=9,ucode=115", "allow_advisories": [NOT_CHECKED]},
            "peer.tcb",
            "peer TCB below the minimum: snp=8 < 9",
        ),
    ],
)
def test_a_lax_tee_peer_is_refused_by_default(
    lax_tee_peer: TlsListener,
    steward_ca: StandInCA,
    claims: WorkloadClaims,
    fields: dict[str, object],
    code: str,
    reason: str,
) -> None:
    with pytest.raises(PeerRefused) as info:
        _dial(lax_tee_peer, steward_ca, claims, expect_platform="snp", **fields)
    assert info.value.code == code
    assert reason in str(info.value)


def test_a_lax_tee_peer_is_accepted_knowingly(
    lax_tee_peer: TlsListener, steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    with _dial(
        lax_tee_peer,
        steward_ca,
        claims,
        expect_platform="snp",
        expect_min_tcb=PEER_TCB,
        allow_advisories=[NOT_CHECKED],
    ):
        lax_tee_peer.accept()[0].close()


def test_a_lax_tee_client_needs_the_same_on_listen(steward_ca: StandInCA) -> None:
    client = attested(
        steward_ca, "snp", PEER_WASM, advisories=(NOT_CHECKED,), tcb_status="NotAppraised"
    )
    with pytest.raises(AdvisoryNotAllowedError):
        verifier(steward_ca, expect_client_platform="snp")(_fake(client))
    lax = verifier(
        steward_ca,
        expect_client_platform="snp",
        expect_client_min_tcb=PEER_TCB,
        allow_client_advisories=[NOT_CHECKED],
    )
    assert lax(_fake(client)).result.platform == "snp"


def _dial(
    listener: TlsListener,
    ca: StandInCA,
    claims: WorkloadClaims,
    crl: CrlCache | None = None,
    /,
    **fields: object,
) -> socket.socket | ssl.SSLSocket:
    port = listener.getsockname()[1]  # type: ignore[index]
    plan = net.plan(entry(port=port, trust="steward", retries=0, **fields), crl, has_steward=True)
    client = tls.client_context(
        trust=Trust.STEWARD, server_name="localhost", identity=ca.issue(claims), check_name=False
    )
    return net.connect(plan, client, LABEL)


# Revocation ------------------------------------------------------------------------------------


def test_a_revoked_server_is_refused(steward_ca: StandInCA, claims: WorkloadClaims) -> None:
    ident = attested(steward_ca, "nil", PEER_WASM)
    serial = ident.certificate.serial_number
    revoked = CrlCache(lambda: crl_der(steward_ca, serial), "test CRL")
    clean = CrlCache(lambda: crl_der(steward_ca, serial + 1), "test CRL")
    with TlsListener(net.bind("127.0.0.1", 0), tls.server_context(ident), name="p") as listener:
        with pytest.raises(PeerRefused) as info:
            _dial(listener, steward_ca, claims, revoked, expect_platform="nil")
        assert info.value.code == "peer.revoked"
        assert f"refused: peer certificate {serial:x} was revoked at " in str(info.value)
        with _dial(listener, steward_ca, claims, clean, expect_platform="nil"):
            listener.accept()[0].close()


def test_a_revoked_client_is_dropped(
    steward_ca: StandInCA, claims: WorkloadClaims, caplog: pytest.LogCaptureFixture
) -> None:
    client = attested(steward_ca, "nil", PEER_WASM)
    serial = client.certificate.serial_number
    crl = CrlCache(lambda: crl_der(steward_ca, serial), "test CRL")
    check = verifier(steward_ca, crl, expect_client_platform="nil")
    with serving(steward_ca, claims, check) as listener:
        assert talk(listener, client) == b""
        assert listener.clients_refused == 1
    [line] = refusals(caplog)
    assert f": peer certificate {serial:x} was revoked at " in line
    assert line.endswith("[peer.revoked]")


def test_an_unreachable_crl_refuses_unless_if_available(
    steward_ca: StandInCA, claims: WorkloadClaims, caplog: pytest.LogCaptureFixture
) -> None:
    ident = attested(steward_ca, "nil", PEER_WASM)
    with TlsListener(net.bind("127.0.0.1", 0), tls.server_context(ident), name="p") as listener:
        with pytest.raises(PeerRefused) as info:
            _dial(listener, steward_ca, claims, CrlCache(unreachable, "x"), expect_platform="nil")
        assert info.value.code == "peer.crl_unavailable"
        assert str(info.value) == (
            f"{LABEL}: cannot check the peer's revocation: cannot fetch the Steward's CRL: "
            "https://steward.test/v1/crl: unreachable: [Errno 111] refused; peers are refused "
            'while revocation cannot be checked (revocation = "if-available" accepts them '
            "unchecked)"
        )
        caplog.set_level(logging.WARNING, "donjon.keep.revocation")
        with _dial(
            listener,
            steward_ca,
            claims,
            CrlCache(unreachable, "x"),
            expect_platform="nil",
            revocation="if-available",
        ):
            listener.accept()[0].close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "donjon.keep.revocation"]
    assert warnings == [
        f'{LABEL}: peer revocation NOT checked (revocation = "if-available"): cannot fetch '
        "the Steward's CRL: https://steward.test/v1/crl: unreachable: [Errno 111] refused"
    ]


def test_an_unreachable_crl_drops_clients_unless_if_available(
    steward_ca: StandInCA, caplog: pytest.LogCaptureFixture
) -> None:
    client = _fake(attested(steward_ca, "nil", PEER_WASM))
    strict = verifier(steward_ca, CrlCache(unreachable, "x"), expect_client_platform="nil")
    with pytest.raises(CrlUnavailableError):
        strict(client)
    lax = verifier(
        steward_ca,
        CrlCache(unreachable, "x"),
        expect_client_platform="nil",
        revocation="if-available",
    )
    assert lax.revocation is Revocation.IF_AVAILABLE
    identity = lax(client)
    assert not identity.revocation_checked  # recorded as skipped, not passed


def test_a_stale_crl_is_refused(steward_ca: StandInCA) -> None:
    client = _fake(attested(steward_ca, "nil", PEER_WASM))
    stale = CrlCache(lambda: crl_der(steward_ca, valid_for=dt.timedelta(minutes=-1)), "x")
    with pytest.raises(CrlStaleError):
        verifier(steward_ca, stale, expect_client_platform="nil")(client)


def test_the_crl_is_cached_until_its_next_update(steward_ca: StandInCA) -> None:
    now = [dt.datetime.now(dt.UTC)]
    answers: list[Callable[[], bytes]] = [lambda: crl_der(steward_ca)]
    cache = CrlCache(lambda: answers[0](), "x", clock=lambda: now[0], retry_after_s=3600)
    first = cache.get()
    assert cache.get() is first and cache.fetches == 1
    now[0] += dt.timedelta(minutes=59)  # the test CRL's nextUpdate is in one hour
    assert cache.get() is first and cache.fetches == 1
    now[0] += dt.timedelta(minutes=2)
    second = cache.get()
    assert second is not first and cache.fetches == 2
    # Once past nextUpdate and the Steward is down: unavailable, and not asked again at once.
    now[0] += dt.timedelta(hours=2)
    answers[0] = unreachable
    for _ in range(2):
        with pytest.raises(CrlUnavailableError, match="unreachable"):
            cache.get()
    assert cache.fetches == 3


def test_a_crl_that_is_not_a_crl_is_unavailable(steward_ca: StandInCA) -> None:
    cache = CrlCache(lambda: b"<html>proxy login</html>", "https://steward.test/v1/crl")
    with pytest.raises(
        CrlUnavailableError, match=re.escape("the answer of https://steward.test/v1/crl")
    ):
        cache.get()


# The runner: the CRL is fetched when the Keep starts ---------------------------------------------


def _package(tmp_path: Path, url: str, bundle: Path, listen: str) -> package.Package:
    (tmp_path / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "Donjon.toml").write_text(
        f'steward = "{url}"\nsteward_ca = "{bundle}"\n'
        '[[files]]\nkind = "null"\n[[files]]\nkind = "null"\n[[files]]\nkind = "null"\n'
        '[[files]]\nkind = "listen"\nname = "api"\naddr = "127.0.0.1"\nport = 0\n'
        'expect_client_platform = "nil"\n' + listen
    )
    return package.load(tmp_path)


def test_a_keep_that_cannot_fetch_the_crl_does_not_start(
    tmp_path: Path,
    steward: tuple[str, Path, list[Responder]],
    steward_ca: StandInCA,
) -> None:
    url, bundle, responders = steward
    responders.append(steward_ca.responder())  # issues; GET /v1/crl is not served (501)
    pkg = _package(tmp_path, url, bundle, "")
    with pytest.raises(net.ListenError) as info:
        prepare(pkg, KeepOptions(platform="nil", report=lambda _: None))
    assert str(info.value) == (
        '[[files]] #4 "api" (fd 3): cannot check client revocation: cannot fetch the '
        f"Steward's CRL: {url}v1/crl: HTTP 501: Unsupported method ('GET'); peers are "
        'refused while revocation cannot be checked (revocation = "if-available" accepts '
        "them unchecked)"
    )


def test_if_available_starts_without_the_crl_and_says_so(
    tmp_path: Path,
    steward: tuple[str, Path, list[Responder]],
    steward_ca: StandInCA,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, bundle, responders = steward
    responders.append(steward_ca.responder())
    caplog.set_level(logging.WARNING, "donjon.keep.revocation")
    pkg = _package(tmp_path, url, bundle, 'revocation = "if-available"\n')
    with prepare(pkg, KeepOptions(platform="nil", report=lambda _: None)) as keep:
        assert keep.identity.attested
    assert [r.getMessage() for r in caplog.records] == [
        '[[files]] #4 "api" (fd 3): peer revocation NOT checked (revocation = "if-available"): '
        f"cannot fetch the Steward's CRL: {url}v1/crl: HTTP 501: Unsupported method ('GET')"
    ]
