"""The simulated ARK/ASK/VCEK must look like AMD's to a verifier.

Expected values are vendor facts: the real AMD certificates in the shared
vectors, and constants from the AMD KDS and SEV-SNP ABI specifications.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from donjon.keep.sim import hierarchy
from donjon.keep.sim.products import Product, TcbVersion

# Real AMD VCEKs have serial number 0, which cryptography warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number")

RSASSA_PSS = "1.2.840.113549.1.1.10"


def load_chain(sim_template: Path) -> dict[str, x509.Certificate]:
    return {
        name: x509.load_pem_x509_certificate((sim_template / f"{name}.pem").read_bytes())
        for name in ("ark", "ask", "vcek")
    }


def verify_pss(issuer: x509.Certificate, cert: x509.Certificate) -> None:
    key = issuer.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
        hashes.SHA384(),
    )


def test_chain_is_signed_like_amd(sim_template: Path) -> None:
    chain = load_chain(sim_template)
    for name in ("ark", "ask", "vcek"):
        assert chain[name].signature_algorithm_oid.dotted_string == RSASSA_PSS, name
    verify_pss(chain["ark"], chain["ark"])
    verify_pss(chain["ark"], chain["ask"])
    verify_pss(chain["ask"], chain["vcek"])
    for name in ("ark", "ask"):
        key = chain[name].public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
    vcek_key = chain["vcek"].public_key()
    assert isinstance(vcek_key, ec.EllipticCurvePublicKey)
    assert vcek_key.curve.name == "secp384r1"


def test_names_follow_amd_but_say_simulated(sim_template: Path) -> None:
    chain = load_chain(sim_template)
    cn = x509.NameOID.COMMON_NAME
    assert chain["ark"].subject.get_attributes_for_oid(cn)[0].value == "ARK-Milan"
    assert chain["ask"].subject.get_attributes_for_oid(cn)[0].value == "SEV-Milan"
    assert chain["vcek"].subject.get_attributes_for_oid(cn)[0].value == "SEV-VCEK"
    assert chain["vcek"].issuer == chain["ask"].subject
    org = chain["ark"].subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value
    assert "Advanced Micro Devices" not in str(org) and "not AMD" in str(org)


def test_ca_constraints(sim_template: Path) -> None:
    chain = load_chain(sim_template)
    ark_bc = chain["ark"].extensions.get_extension_for_class(x509.BasicConstraints)
    ask_bc = chain["ask"].extensions.get_extension_for_class(x509.BasicConstraints)
    assert ark_bc.critical and ark_bc.value.ca
    assert ask_bc.critical and ask_bc.value.ca and ask_bc.value.path_length == 0


def ext_map(cert: x509.Certificate) -> dict[str, bytes]:
    out = {}
    for ext in cert.extensions:
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        assert not ext.critical
        out[ext.oid.dotted_string] = ext.value.value
    return out


def test_vcek_extensions_have_amd_oids_and_encoding(
    sim_template: Path, vectors: Path, chip_id: bytes
) -> None:
    real = x509.load_der_x509_certificate(
        (vectors / "sev-snp/go-sev-guest/vcek_milan.der").read_bytes()
    )
    ours = ext_map(load_chain(sim_template)["vcek"])
    assert set(ours) == set(ext_map(real))
    # DER INTEGERs and an IA5String product name, hand-encoded (AMD KDS spec).
    assert ours["1.3.6.1.4.1.3704.1.1"] == bytes.fromhex("020100")  # structVersion 0
    assert ours["1.3.6.1.4.1.3704.1.2"] == b"\x16\x08Milan-B0"
    assert ours["1.3.6.1.4.1.3704.1.3.1"] == bytes.fromhex("020103")  # blSPL 3
    assert ours["1.3.6.1.4.1.3704.1.3.2"] == bytes.fromhex("020100")  # teeSPL 0
    assert ours["1.3.6.1.4.1.3704.1.3.3"] == bytes.fromhex("020114")  # snpSPL 20
    assert ours["1.3.6.1.4.1.3704.1.3.8"] == bytes.fromhex("020200d1")  # ucodeSPL 209
    assert ours["1.3.6.1.4.1.3704.1.4"] == chip_id  # hwID: raw 64 bytes


def test_turin_vcek_matches_real_turin(vectors: Path) -> None:
    real = x509.load_der_x509_certificate(
        (vectors / "sev-snp/virtee-sev/vcek_turin.der").read_bytes()
    )
    real_exts = ext_map(real)
    hwid = bytes.fromhex("1e550a8ee5cf9f4d")
    exts = hierarchy.vcek_extensions(Product.TURIN, TcbVersion(0, 0, 0, 9, fmc=0), hwid)
    ours = {e.oid.dotted_string: e.value for e in exts}
    assert set(ours) == set(real_exts)
    # This exact TCB and hwID are those of the real Turin VCEK: every value must match,
    # the product name (IA5String "Turin") included.
    assert ours == real_exts
    assert ours["1.3.6.1.4.1.3704.1.2"] == b"\x16\x05Turin"


def test_wrong_hwid_size_is_refused() -> None:
    with pytest.raises(ValueError, match="hwID"):
        hierarchy.vcek_extensions(Product.TURIN, TcbVersion(0, 0, 0, 9, fmc=0), bytes(64))


def test_validity(sim_template: Path) -> None:
    chain = load_chain(sim_template)
    now = datetime.now(UTC)
    for cert in chain.values():
        assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    assert chain["vcek"].not_valid_after_utc.year - now.year in (6, 7)
