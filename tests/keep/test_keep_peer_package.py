"""Connect entries that demand the peer's package: ``expect_package`` (the OCI manifest digest),
``expect_repository`` and ``expect_signer``, checked on the peer's certificate claims."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from test_keep_peer_identity import PEER_WASM, attested, dial, entry

from donjon.attestation import packagesig
from donjon.attestation.claims import WorkloadClaims
from donjon.keep import net, tls
from donjon.keep.config import Trust
from donjon.keep.net import PeerRefused, TlsListener

if TYPE_CHECKING:
    from conftest import StandInCA

PACKAGE = b"\x9c" * 32
PACKAGE_TEXT = "sha256:" + "9c" * 32
REPO = "registry.example:5000/team/peer"
DEV = {"expect_platform": "nil"}  # the peer below is a development (nil) Keep


@pytest.fixture(scope="module")
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def peer(steward_ca: StandInCA, signer: ec.EllipticCurvePrivateKey) -> Iterator[TlsListener]:
    """A nil Keep deployed from REPO@PACKAGE, signed by ``signer``."""
    claims = WorkloadClaims(
        PEER_WASM,
        hashlib.sha256(b"cfg").digest(),
        "peer",
        package_sha256=PACKAGE,
        package_repository=REPO,
        package_signatures=(packagesig.sign(signer, REPO, PACKAGE_TEXT),),
    )
    ident = attested(steward_ca, "nil", PEER_WASM, workload=claims)
    with TlsListener(net.bind("127.0.0.1", 0), tls.server_context(ident), name="peer") as listener:
        yield listener


def _pub(tmp_path: Path, key: ec.EllipticCurvePrivateKey, name: str = "team.pub") -> str:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / name).write_bytes(pem)
    return name


def _dial_from(tmp_path: Path, peer: TlsListener, ca: StandInCA, claims: WorkloadClaims,
               **fields: object) -> None:  # fmt: skip
    port = peer.getsockname()[1]  # type: ignore[index]
    plan = net.plan(
        entry(port=port, trust="steward", **DEV, **fields), has_steward=True, base_dir=tmp_path
    )
    client = tls.client_context(
        trust=Trust.STEWARD,
        server_name="localhost",
        identity=ca.issue(claims),
        check_name=False,
    )
    net.connect(plan, client, '[[files]] #4 "peer" (fd 3)').close()
    peer.accept()[0].close()


def test_the_expected_package_repository_and_signer_are_accepted(
    tmp_path: Path,
    peer: TlsListener,
    steward_ca: StandInCA,
    claims: WorkloadClaims,
    signer: ec.EllipticCurvePrivateKey,
) -> None:
    _dial_from(
        tmp_path, peer, steward_ca, claims,
        expect_package=PACKAGE_TEXT.upper().replace("SHA256", "sha256"),
        expect_repository=REPO, expect_signer=_pub(tmp_path, signer),
    )  # fmt: skip
    _dial_from(tmp_path, peer, steward_ca, claims, expect_repository="registry.example:5000/team/*")


def test_expect_package_mismatch_is_refused(
    peer: TlsListener, steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    with pytest.raises(PeerRefused) as info:
        dial(peer, steward_ca, claims, expect_package="sha256:" + "9d" * 32, **DEV)
    assert info.value.code == "peer.package"
    assert f"peer was deployed from package {PACKAGE_TEXT}, expected sha256:{'9d' * 32}" in str(
        info.value
    )


def test_a_peer_from_no_registry_is_refused_by_expect_package(
    steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    ident = attested(steward_ca, "nil", PEER_WASM)  # claims without a package
    with (
        TlsListener(net.bind("127.0.0.1", 0), tls.server_context(ident), name="p") as server,
        pytest.raises(PeerRefused) as info,
    ):
        dial(server, steward_ca, claims, expect_package=PACKAGE_TEXT, **DEV)
    assert info.value.code == "peer.package"
    assert "peer certificate names no package (not from a registry)" in str(info.value)


def test_expect_repository_mismatch_is_refused(
    peer: TlsListener, steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    with pytest.raises(PeerRefused) as info:
        dial(peer, steward_ca, claims, expect_repository="registry.example:5000/team/app", **DEV)
    assert info.value.code == "peer.package_repository"
    assert (
        f"peer was deployed from repository {REPO}, expected registry.example:5000/team/app"
        in str(info.value)
    )


def test_expect_signer_of_another_key_is_refused(
    tmp_path: Path, peer: TlsListener, steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(PeerRefused) as info:
        _dial_from(tmp_path, peer, steward_ca, claims, expect_signer=_pub(tmp_path, other))
    assert info.value.code == "peer.package_signature"
    assert "which is not a signer key given" in str(info.value)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"expect_package": "9c" * 32}, "the peer's OCI manifest digest"),
        ({"expect_repository": "app"}, "is not a repository like registry.example/team/app"),
        ({"expect_signer": []}, "must name at least one public key"),
        (
            {"expect_package": PACKAGE_TEXT, "trust": "system"},
            'expect_package needs trust = "steward"',
        ),
    ],
)
def test_bad_package_expectations_are_refused(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        entry(**fields)
    assert words in str(info.value)
