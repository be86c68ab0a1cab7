"""Steward trust without ``expect_*`` is not "chain only": the relying-party defaults apply.

The attack (issue #9): a ``connect`` entry with ``trust = "steward"`` (given or
implied) and no ``expect_*``, or a ``listen`` entry with ``client_ca = "steward"``
and no ``expect_client_*``, used to check only that the peer's certificate
chains to the Steward CA. A revoked Keep, a development Keep (nil/sim: the host
reads its memory) or a debug TEE then passed. Each must now be refused, with its
own code, exactly as when an ``expect_*`` is given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_keep_client_identity import (
    NOT_CHECKED,
    _fake,
    crl_der,
    refusals,
    serving,
    talk,
    unreachable,
)
from test_keep_peer_identity import PEER_WASM, attested, entry

from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.peer import (
    DebugPeerError,
    DevelopmentPeerError,
    MissingAttestationError,
    PeerRevokedError,
)
from donjon.keep import net, package, peercheck, tls
from donjon.keep.config import Config, ListenFile, Trust, check_files
from donjon.keep.identity import Identity
from donjon.keep.net import PeerRefused, TlsListener
from donjon.keep.revocation import CrlCache
from donjon.keep.runner import KeepOptions, prepare

if TYPE_CHECKING:
    from conftest import Responder, StandInCA

LABEL = '[[files]] #4 "peer" (fd 3)'


def clean_crl(ca: StandInCA) -> CrlCache:
    return CrlCache(lambda: crl_der(ca), "test CRL")


def dial_plain(
    peer: Identity,
    ca: StandInCA,
    claims: WorkloadClaims,
    crl: CrlCache | None,
    **fields: object,
) -> None:
    """Connect as a Keep whose entry names its Steward and nothing else (no ``expect_*``)."""
    with TlsListener(net.bind("127.0.0.1", 0), tls.server_context(peer), name="p") as listener:
        port = listener.getsockname()[1]  # type: ignore[index]
        item = entry(port=port, retries=0, **fields)
        assert not item.expects()
        plan = net.plan(item, crl, has_steward=True)
        client = tls.client_context(
            trust=Trust.STEWARD,
            server_name="localhost",
            identity=ca.issue(claims),
            check_name=False,
        )
        with net.connect(plan, client, LABEL):
            listener.accept()[0].close()


@pytest.mark.parametrize("trust", [{"trust": "steward"}, {}])  # given, or implied by `steward`
@pytest.mark.parametrize(
    ("peer", "code"),
    [
        (lambda ca: attested(ca, "nil", PEER_WASM), "peer.development"),
        (lambda ca: attested(ca, "sim", PEER_WASM), "peer.development"),
        (lambda ca: attested(ca, "snp", PEER_WASM, debug=True), "peer.debug"),
        (lambda ca: attested(ca, "snp", PEER_WASM, advisories=(NOT_CHECKED,)), "peer.advisory"),
        (lambda ca: attested(ca, "snp", PEER_WASM, tcb_status="OutOfDate"), "peer.tcb_status"),
        (lambda ca: ca.issue(WorkloadClaims(PEER_WASM, b"", "x")), "peer.no_attestation"),
    ],
)
def test_a_connect_entry_without_expectations_refuses(
    steward_ca: StandInCA,
    claims: WorkloadClaims,
    peer: object,
    code: str,
    trust: dict[str, str],
) -> None:
    assert callable(peer)
    with pytest.raises(PeerRefused) as info:
        dial_plain(peer(steward_ca), steward_ca, claims, clean_crl(steward_ca), **trust)
    assert info.value.code == code


def test_a_connect_entry_without_expectations_refuses_a_revoked_tee_peer(
    steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    peer = attested(steward_ca, "snp", PEER_WASM)
    serial = peer.certificate.serial_number
    revoked = CrlCache(lambda: crl_der(steward_ca, serial), "test CRL")
    with pytest.raises(PeerRefused) as info:
        dial_plain(peer, steward_ca, claims, revoked)
    assert info.value.code == "peer.revoked"
    with pytest.raises(PeerRefused) as info:
        dial_plain(peer, steward_ca, claims, CrlCache(unreachable, "test CRL"))
    assert info.value.code == "peer.crl_unavailable"
    # The same peer, not revoked: accepted. So the refusals above are the checks at work.
    dial_plain(peer, steward_ca, claims, clean_crl(steward_ca))


def test_loosening_a_plain_steward_entry_knowingly(
    steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    """allow_advisories and revocation now mean something without expect_*."""
    lax = attested(steward_ca, "snp", PEER_WASM, advisories=(NOT_CHECKED,))
    dial_plain(lax, steward_ca, claims, clean_crl(steward_ca), allow_advisories=[NOT_CHECKED])
    good = attested(steward_ca, "snp", PEER_WASM)
    dial_plain(good, steward_ca, claims, CrlCache(unreachable, "x"), revocation="if-available")


def test_other_trust_without_expectations_checks_no_attestation() -> None:
    """A pin or a bundle of public CAs names no attested Keep: nothing to demand."""
    assert net.expectations(entry(trust="system"), has_steward=True) is None
    assert net.expectations(entry(pin="peer.pem"), has_steward=True) is None
    assert net.expectations(entry(ca_bundle="cas.pem"), has_steward=True) is None
    assert net.expectations(entry(), has_steward=False) is None  # system trust, no Steward
    assert net.expectations(entry(prot="tcp"), has_steward=True) is None


def test_loosening_without_any_peer_check_is_a_config_problem() -> None:
    """``allow_advisories`` on an entry whose trust is the system store does nothing."""
    stdio = [{"kind": k} for k in ("stdin", "stdout", "stderr")]
    connect = {"kind": "connect", "host": "db", "allow_advisories": [NOT_CHECKED]}
    config = Config.model_validate({"files": [*stdio, connect]})
    assert check_files(config) == [
        (
            3,
            'allow_advisories applies only with trust = "steward" or expect_workload, '
            "expect_platform, expect_min_tcb, expect_package, expect_repository or expect_signer",
        )
    ]
    with_steward = config.model_copy(update={"steward": "https://steward.example/"})
    assert check_files(with_steward) == []


# Listen side ----------------------------------------------------------------------------------


def plain_verifier(
    ca: StandInCA, crl: CrlCache | None, **fields: object
) -> peercheck.ClientVerifier:
    item = ListenFile.model_validate(
        {"kind": "listen", "name": "api", "port": 0, "client_ca": "steward", **fields}
    )
    assert not item.client_expects()
    wanted = peercheck.client_expectations(item)
    assert wanted is not None, "client_ca = steward must always check its clients"
    expect, workloads = wanted
    return peercheck.ClientVerifier("api", (ca.cert,), expect, workloads, crl, item.revocation)


def test_a_steward_listener_without_expectations_refuses(steward_ca: StandInCA) -> None:
    check = plain_verifier(steward_ca, clean_crl(steward_ca))
    with pytest.raises(DevelopmentPeerError):
        check(_fake(attested(steward_ca, "nil", PEER_WASM)))
    with pytest.raises(DebugPeerError):
        check(_fake(attested(steward_ca, "snp", PEER_WASM, debug=True)))
    with pytest.raises(MissingAttestationError):
        check(_fake(steward_ca.issue(WorkloadClaims(PEER_WASM, b"", "x"))))
    good = attested(steward_ca, "snp", PEER_WASM)
    assert check(_fake(good)).result.platform == "snp"
    serial = good.certificate.serial_number
    revoked = plain_verifier(steward_ca, CrlCache(lambda: crl_der(steward_ca, serial), "crl"))
    with pytest.raises(PeerRevokedError):
        revoked(_fake(good))


def test_a_development_client_is_dropped_by_a_plain_steward_listener(
    steward_ca: StandInCA, claims: WorkloadClaims, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "donjon.keep.net")
    with serving(steward_ca, claims, plain_verifier(steward_ca, clean_crl(steward_ca))) as listener:
        assert talk(listener, attested(steward_ca, "nil", PEER_WASM)) == b""
        assert listener.clients_refused == 1
    [line] = refusals(caplog)
    assert line.endswith(
        "peer is not in a TEE (platform nil, development certificate) [peer.development]"
    )


def test_a_plain_steward_listener_needs_the_crl_to_start(
    tmp_path: Path,
    steward: tuple[str, Path, list[Responder]],
    steward_ca: StandInCA,
) -> None:
    url, bundle, responders = steward
    responders.append(steward_ca.responder())  # issues; GET /v1/crl is not served (501)
    (tmp_path / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "Donjon.toml").write_text(
        f'steward = "{url}"\nsteward_ca = "{bundle}"\n'
        '[[files]]\nkind = "null"\n[[files]]\nkind = "null"\n[[files]]\nkind = "null"\n'
        '[[files]]\nkind = "listen"\nname = "api"\naddr = "127.0.0.1"\nport = 0\n'
        'client_ca = "steward"\n'
    )
    with pytest.raises(net.ListenError, match="cannot check client revocation"):
        prepare(package.load(tmp_path), KeepOptions(platform="nil", report=lambda _: None))


def test_a_refusal_log_line_quoting_the_client_is_escaped(
    steward_ca: StandInCA, claims: WorkloadClaims, caplog: pytest.LogCaptureFixture
) -> None:
    """The refusal reason quotes the client's advisory: it cannot add a log line of its own."""
    caplog.set_level(logging.WARNING, "donjon.keep.net")
    forged = "x\ndonjon: api: admitted TLS client 10.0.0.1:443"
    client = attested(steward_ca, "snp", PEER_WASM, advisories=(forged,))
    with serving(steward_ca, claims, plain_verifier(steward_ca, clean_crl(steward_ca))) as listener:
        assert talk(listener, client) == b""
    [line] = refusals(caplog)
    assert "\n" not in line
    assert "advisory x\\ndonjon: api: admitted TLS client 10.0.0.1:443, not accepted" in line
