"""Relying party, fail closed on X.509: the leaf's profile and the Steward's CRL.

Leaves are built by hand (each with exactly the extension under test) and signed by
a real Steward CA; CRLs are built with the Steward's ``build_crl`` or by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280
from steward_fakes import CLAIMS

from donjon.attestation import oids
from donjon.attestation.certprofile import key_usage
from donjon.attestation.claims import AttestationResult
from donjon.attestation.peer import (
    CrlError,
    CrlNotYetValidError,
    CrlScopeError,
    CrlSignatureError,
    CrlStaleError,
    LeafProfileError,
    PeerError,
    PeerExpectations,
    PeerIdentity,
    PeerIsCAError,
    PeerRevokedError,
    PeerRole,
    WrongPurposeError,
    verify_peer_certificate,
)
from donjon.steward.ca import CertificateAuthority
from donjon.steward.crl import build_crl

NOW = datetime.now(UTC)
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
#: An OID under the documentation-only arc 2.999 (ITU-T X.660): no verifier knows it.
UNKNOWN_OID = x509.ObjectIdentifier("2.999.7")
KEEP = AttestationResult(
    platform="snp",
    product="Milan",
    measurement=b"\x11" * 48,
    tcb="bl=3 tee=0 snp=8 ucode=115",
    tcb_status="UpToDate",
    advisories=(),
    debug=False,
    development=False,
    policy_id="cd" * 32,
    evaluated_at=NOW,
    workload=CLAIMS,
).to_der()
#: Not set: the extension is left out.
OMIT = object()


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(curve="p256", now=NOW)


def leaf(
    ca: CertificateAuthority,
    *,
    basic: object = x509.BasicConstraints(ca=False, path_length=None),
    eku: object = (SERVER, CLIENT),
    key_usage: object = OMIT,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
    attestation_critical: bool = False,
    serial: int = 0x1234,
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keep")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(oids.ATTESTATION_RESULT, KEEP), attestation_critical
        )
    )
    if isinstance(basic, x509.BasicConstraints):
        builder = builder.add_extension(basic, critical=True)
    if isinstance(eku, tuple):
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if isinstance(key_usage, x509.KeyUsage):
        builder = builder.add_extension(key_usage, critical=True)
    for value, critical in extra:
        builder = builder.add_extension(value, critical)
    return builder.sign(ca.key, hashes.SHA256())


def verify(
    ca: CertificateAuthority,
    cert: x509.Certificate,
    *,
    crl: x509.CertificateRevocationList | None = None,
    role: PeerRole = "server",
    now: datetime = NOW,
) -> PeerIdentity:
    return verify_peer_certificate(
        cert, ca.certificate, now=now, crl=crl, expect=PeerExpectations(), role=role
    )


def usage(*, digital_signature: bool) -> x509.KeyUsage:
    return key_usage(digital_signature=digital_signature, key_encipherment=not digital_signature)


# --- the leaf's profile --------------------------------------------------------------------


def test_a_well_formed_leaf_passes_the_profile_check(ca: CertificateAuthority) -> None:
    ident = verify(ca, leaf(ca, key_usage=usage(digital_signature=True)))
    assert [c.reason for c in ident.checks if c.id == "profile"] == [
        "end-entity certificate for TLS (serverAuth)"
    ]


def test_an_unknown_critical_extension_is_refused(ca: CertificateAuthority) -> None:
    cert = leaf(ca, extra=[(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True)])
    with pytest.raises(LeafProfileError) as info:
        verify(ca, cert)
    assert info.value.code == "peer.profile"
    assert str(info.value) == "peer certificate has an unknown critical extension 2.999.7"


def test_a_critical_extension_that_is_parsed_but_not_processed_is_refused(
    ca: CertificateAuthority,
) -> None:
    # cryptography parses policyConstraints, but nothing here enforces it.
    constraints = x509.PolicyConstraints(require_explicit_policy=0, inhibit_policy_mapping=None)
    with pytest.raises(LeafProfileError, match=r"unknown critical extension 2\.5\.29\.36"):
        verify(ca, leaf(ca, extra=[(constraints, True)]))


def test_the_same_extension_non_critical_is_ignored(ca: CertificateAuthority) -> None:
    verify(ca, leaf(ca, extra=[(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), False)]))


def test_donjons_own_extensions_may_be_critical(ca: CertificateAuthority) -> None:
    assert verify(ca, leaf(ca, attestation_critical=True)).result.platform == "snp"


def test_a_ca_certificate_is_never_a_keep(ca: CertificateAuthority) -> None:
    with pytest.raises(PeerIsCAError) as info:
        verify(ca, leaf(ca, basic=x509.BasicConstraints(ca=True, path_length=None)))
    assert info.value.code == "peer.is_ca"


def test_a_leaf_without_basic_constraints_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(LeafProfileError, match="no basicConstraints"):
        verify(ca, leaf(ca, basic=OMIT))


def test_a_key_usage_without_digital_signature_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(LeafProfileError, match="does not allow digitalSignature"):
        verify(ca, leaf(ca, key_usage=usage(digital_signature=False)))


@pytest.mark.parametrize(
    ("eku", "role", "refused"),
    [
        ((CLIENT,), "server", "lacks serverAuth"),
        ((SERVER,), "client", "lacks clientAuth"),
        ((ExtendedKeyUsageOID.CODE_SIGNING,), "server", "lacks serverAuth"),
        ((ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,), "server", "lacks serverAuth"),
        (OMIT, "server", "no extendedKeyUsage"),
    ],
)
def test_the_eku_must_allow_the_role_the_peer_plays(
    ca: CertificateAuthority, eku: object, role: PeerRole, refused: str
) -> None:
    with pytest.raises(WrongPurposeError, match=refused) as info:
        verify(ca, leaf(ca, eku=eku), role=role)
    assert info.value.code == "peer.purpose"


def test_a_client_certificate_needs_client_auth_only(ca: CertificateAuthority) -> None:
    ident = verify(ca, leaf(ca, eku=(CLIENT,)), role="client")
    assert "end-entity certificate for TLS (clientAuth)" in [c.reason for c in ident.checks]


# --- the Steward's CRL ---------------------------------------------------------------------


def test_the_stewards_current_crl_is_accepted_and_a_listed_serial_refused(
    ca: CertificateAuthority,
) -> None:
    verify(ca, leaf(ca), crl=build_crl(ca, [], now=NOW))
    crl = build_crl(ca, [("1234", NOW, "key-compromise")], now=NOW)
    with pytest.raises(PeerRevokedError, match="1234 was revoked"):
        verify(ca, leaf(ca), crl=crl)


def test_a_crl_past_next_update_is_stale(ca: CertificateAuthority) -> None:
    crl = build_crl(ca, [], now=NOW - timedelta(days=2), validity=timedelta(days=1))
    with pytest.raises(CrlStaleError, match="the CRL is stale") as info:
        verify(ca, leaf(ca), crl=crl)
    assert info.value.code == "peer.crl_stale"


def test_a_revocation_in_a_stale_crl_still_applies(ca: CertificateAuthority) -> None:
    old = NOW - timedelta(days=2)
    crl = build_crl(ca, [("1234", old, "key-compromise")], now=old, validity=timedelta(days=1))
    with pytest.raises(PeerRevokedError):
        verify(ca, leaf(ca), crl=crl)


def test_a_crl_from_the_future_is_not_yet_valid(ca: CertificateAuthority) -> None:
    crl = build_crl(ca, [], now=NOW + timedelta(hours=1))
    with pytest.raises(CrlNotYetValidError) as info:
        verify(ca, leaf(ca), crl=crl)
    assert info.value.code == "peer.crl_not_yet_valid"


def without_next_update(ca: CertificateAuthority, this_update: datetime) -> bytes:
    """A CRL signed by ``ca`` that has no nextUpdate (builders refuse to omit it, so the
    TBSCertList is re-encoded without it and signed again)."""
    signed = build_crl(ca, [], now=this_update)
    tbs, _ = decoder.decode(signed.tbs_certlist_bytes, asn1Spec=rfc5280.TBSCertList())
    bare = rfc5280.TBSCertList()
    for name in ("version", "signature", "issuer", "thisUpdate"):
        bare[name] = tbs[name]
    tbs_der = bytes(encoder.encode(bare))
    outer = rfc5280.CertificateList()
    outer["tbsCertList"] = bare
    outer["signatureAlgorithm"] = tbs["signature"]
    outer["signature"] = univ.BitString.fromOctetString(
        ca.key.sign(tbs_der, ec.ECDSA(ca.hash_algorithm))
    )
    return bytes(encoder.encode(outer))


def test_a_crl_without_next_update_is_never_current(ca: CertificateAuthority) -> None:
    # Issued a minute ago and genuinely signed: only the missing nextUpdate is wrong.
    crl = x509.load_der_x509_crl(without_next_update(ca, NOW - timedelta(minutes=1)))
    assert crl.next_update_utc is None and crl.is_signature_valid(ca.key.public_key())
    with pytest.raises(CrlStaleError, match="has no nextUpdate, so it can never prove"):
        verify(ca, leaf(ca), crl=crl)


def test_a_crl_signed_by_another_ca_of_the_same_name(ca: CertificateAuthority) -> None:
    impostor = CertificateAuthority.create(curve="p256", now=NOW)
    assert impostor.certificate.subject == ca.certificate.subject
    with pytest.raises(CrlSignatureError, match="not signed by the Steward CA") as info:
        verify(ca, leaf(ca), crl=build_crl(impostor, [], now=NOW))
    assert info.value.code == "peer.crl_signature"


def test_a_crl_of_another_issuer_name(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create(curve="p256", now=NOW, name="Other Steward CA")
    with pytest.raises(CrlSignatureError, match="issued by 'CN=Other Steward CA'"):
        verify(ca, leaf(ca), crl=build_crl(other, [], now=NOW))


def scoped_crl(ca: CertificateAuthority, extension: x509.ExtensionType, critical: bool) -> bytes:
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(NOW - timedelta(minutes=1))
        .next_update(NOW + timedelta(hours=1))
        .add_extension(extension, critical=critical)
        .sign(ca.key, ca.hash_algorithm)
    )
    return crl.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("extension", "critical", "why"),
    [
        (x509.DeltaCRLIndicator(7), True, "is a delta CRL"),
        (
            x509.IssuingDistributionPoint(
                full_name=None,
                relative_name=None,
                only_contains_user_certs=True,
                only_contains_ca_certs=False,
                only_some_reasons=None,
                indirect_crl=False,
                only_contains_attribute_certs=False,
            ),
            True,
            "covers only part",
        ),
        (x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True, "unknown critical"),
    ],
)
def test_a_crl_that_is_not_the_complete_list_never_counts(
    ca: CertificateAuthority, extension: x509.ExtensionType, critical: bool, why: str
) -> None:
    crl = x509.load_der_x509_crl(scoped_crl(ca, extension, critical))
    with pytest.raises(CrlScopeError, match=why) as info:
        verify(ca, leaf(ca), crl=crl)
    assert info.value.code == "peer.crl_scope"


def test_every_crl_failure_is_still_a_crl_error_and_a_peer_error() -> None:
    for kind in (CrlSignatureError, CrlStaleError, CrlNotYetValidError, CrlScopeError):
        assert issubclass(kind, CrlError) and issubclass(kind, PeerError)
    codes = {
        kind.code
        for kind in (CrlError, CrlSignatureError, CrlStaleError, CrlNotYetValidError, CrlScopeError)
    }
    assert len(codes) == 5
