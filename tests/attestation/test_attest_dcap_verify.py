"""SGX and TDX verification: each vector as expected.json says, every signed byte guarded,
and each kind of failure with its own error and check id.

Expected values come from expected.json (independent parses, upstream assertions)
or from how the fake Intel was built, never from the code under test.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from dcap_support import FAKE_NOW, FakeIntel, dcap_vectors, load_quote, run, verify_at

from donjon.attestation.dcap.chain import RootPin, common_name
from donjon.attestation.dcap.collateral import Signed, load_crl, signed_from_pcs
from donjon.attestation.dcap.quote import parse_quote
from donjon.attestation.dcap.store import IntelCollateralStore, Pool, load_bundle_file
from donjon.attestation.errors import (
    CertificateExpiredError,
    CertificateRevokedError,
    CollateralMismatchError,
    CollateralMissingError,
    CollateralSignatureError,
    CollateralStaleError,
    CrlSignatureError,
    FingerprintMismatchError,
    MalformedEvidenceError,
    QeIdentityMismatchError,
    QeReportBindingError,
    QeReportSignatureError,
    QuoteSignatureError,
    TcbNotSupportedError,
    TcbRevokedError,
    TdxModuleMismatchError,
    UnsupportedCertificationDataError,
)
from donjon.attestation.snp.chain import fingerprint
from donjon.attestation.x509util import load_certificate, load_certificates

LENIENT = {"tcb_mode": "if-available", "crl_mode": "if-available"}


@pytest.fixture(scope="module")
def fake() -> FakeIntel:
    return FakeIntel()


def _vector(expected: dict[str, Any], vector_id: str) -> dict[str, Any]:
    return next(v for v in dcap_vectors(expected) if v["id"] == vector_id)


def _bundle_pool(vectors: Path, vector: dict[str, Any]) -> Pool:
    bundle = load_bundle_file(vectors / vector["collateral"])
    return Pool.of_bundle(bundle, "--collateral", explicit=True)


# --- the vectors ----------------------------------------------------------------------------


def test_each_real_quote_verifies_its_signatures_and_chain(
    vectors: Path, expected: dict[str, Any]
) -> None:
    for vector in dcap_vectors(expected):
        checks_expected = vector["computed"].get("checks")
        if checks_expected is None:
            continue  # Intel's synthetic samples: below
        quote = load_quote(vectors, vector)
        if vector["id"] == "tdx-v4-go-tdx-guest":
            quote = quote[: len(quote) - len(parse_quote(quote).trailing)]  # see below
        result, checks = run(quote, now=verify_at(vector), **LENIENT)
        assert result is not None, (vector["id"], checks.first_failed, checks.error)
        assert [common_name(c.subject) for c in (result.chain.leaf, result.chain.ca)] == (
            checks_expected["chain"][:2]
        ), vector["id"]
        assert fingerprint(result.chain.root) == (
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
        )
        assert result.pck.fmspc.hex() == checks_expected["fmspc"], vector["id"]
        assert (
            result.chain.leaf.not_valid_before_utc.isoformat(" ")
            == (checks_expected["pck_validity"][0])
        )
        passed = {c.id for c in checks.checks if c.passed}
        assert {"dcap.quote_signature", "dcap.qe_report_signature", "dcap.qe_binding"} <= passed
        assert result.tcb is None and result.tcb_status == "NotAppraised"


def test_vectors_with_collateral_get_intels_status(vectors: Path, expected: dict[str, Any]) -> None:
    for vector_id in ("tdx-v4-phala", "sgx-v3-phala"):
        vector = _vector(expected, vector_id)
        want = vector["computed"]["collateral_checks"]["tcb_status"]
        result, checks = run(
            load_quote(vectors, vector),
            now=verify_at(vector),
            pools=(_bundle_pool(vectors, vector),),
        )
        assert result is not None and result.tcb is not None, checks.error
        assert result.tcb.status == want[0]
        assert list(result.tcb.advisories) == sorted(want[1] or [])
        assert (
            result.tcb.qe_status
            == vector["computed"]["collateral_checks"]["qe_identity_match"]["qe_status"]
        )
        assert result.revocation.checked


def test_outdated_phala_quote_is_refused_as_tcb_not_supported(
    vectors: Path, expected: dict[str, Any]
) -> None:
    vector = _vector(expected, "tdx-v5-phala-outdated")
    assert vector["computed"]["collateral_checks"]["tcb_status"][0] == "NoMatch"
    result, checks = run(
        load_quote(vectors, vector), now=verify_at(vector), pools=(_bundle_pool(vectors, vector),)
    )
    assert result is None
    assert checks.first_failed == "dcap.tcb_status"
    assert isinstance(checks.error, TcbNotSupportedError)


def test_trustee_v5_quote_matches_no_level_either(vectors: Path, expected: dict[str, Any]) -> None:
    vector = _vector(expected, "tdx-v5-trustee-5")
    outdated = _vector(expected, "tdx-v5-phala-outdated")
    result, checks = run(
        load_quote(vectors, vector),
        now=verify_at(outdated),
        pools=(_bundle_pool(vectors, outdated),),
    )
    assert result is None and isinstance(checks.error, TcbNotSupportedError)


def test_go_tdx_guest_quote_with_its_pcs_collateral(
    vectors: Path, expected: dict[str, Any]
) -> None:
    """go-tdx-guest's collateral as PCS served it (bodies + issuer-chain headers)."""
    vector = _vector(expected, "tdx-v4-go-tdx-guest")
    assert vector["computed"]["tcb_status_vs_tcbinfo_fmspc_50806f000000.json"][0] == "NoMatch"
    base = vectors / "tdx/go-tdx-guest/collateral"
    chain = tuple(load_certificates((base / "tcbInfoIssuerChain.pem").read_bytes()))
    pool = Pool(
        "go-tdx-guest collateral",
        signed=(
            signed_from_pcs(
                (base / "tcbinfo_fmspc_50806f000000.json").read_bytes(), chain, "tcb_info", "tcb"
            ),
            signed_from_pcs(
                (base / "qe_identity_td_qe.json").read_bytes(), chain, "qe_identity", "qe"
            ),
        ),
        crls=(
            load_crl((base / "pckcrl_platform.der").read_bytes(), "pck crl"),
            load_crl((base / "rootcrl.der").read_bytes(), "root crl"),
        ),
        explicit=True,
    )
    raw = load_quote(vectors, vector)
    quote = raw[: len(raw) - len(parse_quote(raw).trailing)]
    result, checks = run(quote, now=verify_at(vector), pools=(pool,))
    assert result is None
    passed = {c.id for c in checks.checks if c.passed}
    assert {"dcap.tcb_info", "dcap.qe_identity", "dcap.revocation"} <= passed
    assert isinstance(checks.error, TcbNotSupportedError)


def test_nonzero_trailing_bytes_are_refused(vectors: Path, expected: dict[str, Any]) -> None:
    vector = _vector(expected, "tdx-v4-go-tdx-guest")
    result, checks = run(load_quote(vectors, vector), now=verify_at(vector), **LENIENT)
    assert result is None and checks.first_failed == "dcap.quote"
    assert "39 bytes after the quote's signature data are not zero" in str(checks.error)


@pytest.mark.parametrize(
    ("offset", "value", "check"),
    [
        (0x00, 3, "dcap.quote"),  # "quote format not supported"
        (0x278, 0x10, "dcap.quote"),  # cert data size mismatch
        (0x1343, 0x32, "dcap.pck_chain"),  # PCK cert chain invalid (root)
        (0x1329, 0x32, "dcap.pck_chain"),  # root cert signature failure
        (0xF5F, 0x32, "dcap.pck_chain"),  # intermediate signature failure
        (0xB77, 0x32, "dcap.pck_chain"),  # PCK leaf signature failure
        (0x1E, 0x32, "dcap.quote_signature"),  # header
        (0x3C, 0x32, "dcap.quote_signature"),  # TD body
    ],
)
def test_go_tdx_guest_negative_tests(
    vectors: Path, expected: dict[str, Any], offset: int, value: int, check: str
) -> None:
    vector = _vector(expected, "tdx-v4-go-tdx-guest")
    assert any(f"0x{offset:X}" in t or f"0x{offset:02X}" in t for t in vector["negative_tests"])
    raw = bytearray(load_quote(vectors, vector))
    raw = raw[: len(raw) - 39]  # the testing suffix
    raw[offset] = value
    result, checks = run(bytes(raw), now=verify_at(vector), **LENIENT)
    assert result is None
    assert checks.first_failed in (check, "dcap.cert_data")


def test_qvl_tdx_sample_needs_its_own_root(vectors: Path, expected: dict[str, Any]) -> None:
    vector = _vector(expected, "tdx-intel-qvl-sample")
    quote = load_quote(vectors, vector)
    result, checks = run(quote, now=verify_at(vector), **LENIENT)
    assert result is None and checks.first_failed == "dcap.pck_chain"
    assert isinstance(checks.error, FingerprintMismatchError)  # a foreign root
    root = load_certificate((vectors / vector["trusted_root"]).read_bytes())
    pin = RootPin(fingerprint(root), "the QVL sample root")
    result, checks = run(quote, now=verify_at(vector), pin=pin, **LENIENT)
    assert result is not None, checks.error
    passed = {c.id for c in checks.checks if c.passed}
    assert {"dcap.quote_signature", "dcap.qe_report_signature", "dcap.qe_binding"} <= passed


def test_qvl_sgx_sample_certification_type_1_is_not_supported(
    vectors: Path, expected: dict[str, Any]
) -> None:
    vector = _vector(expected, "sgx-intel-qvl-sample")
    result, checks = run(load_quote(vectors, vector), now=verify_at(vector), **LENIENT)
    assert result is None and checks.first_failed == "dcap.cert_data"
    assert isinstance(checks.error, UnsupportedCertificationDataError)
    assert "certification data type 1 (PCK identifier: PPID in clear text" in str(checks.error)


# --- byte flips across every signed region --------------------------------------------------


def _regions(quote: bytes) -> dict[str, range]:
    parsed = parse_quote(quote)
    signed = len(parsed.signed_bytes())
    start = signed + 4  # signature data length
    qe = start + 128 + (0 if parsed.header.version == 3 else 6)
    auth = qe + 384 + 64 + 2
    return {
        "header and body": range(0, signed),
        "quote signature": range(start, start + 64),
        "attestation key": range(start + 64, start + 128),
        "QE report": range(qe, qe + 384),
        "QE report signature": range(qe + 384, qe + 448),
        "QE auth data": range(auth, auth + len(parsed.qe.qe_auth_data)),
    }


def _flip_all(quote: bytes, region: range, stride: int, **options: Any) -> list[int]:
    """Offsets in ``region`` whose flip was NOT refused (must stay empty)."""
    survivors = []
    for offset in region[::stride]:
        raw = bytearray(quote)
        raw[offset] ^= 0x01
        result, _ = run(bytes(raw), **options)
        if result is not None:
            survivors.append(offset)
    return survivors


def test_flips_in_a_real_quote_are_refused(vectors: Path, expected: dict[str, Any]) -> None:
    vector = _vector(expected, "tdx-v4-phala")
    quote = load_quote(vectors, vector)
    store = IntelCollateralStore()
    options = {"now": verify_at(vector), "pools": (_bundle_pool(vectors, vector),), "store": store}
    assert run(quote, **options)[0] is not None
    for name, region in _regions(quote).items():
        assert _flip_all(quote, region, 5, **options) == [], name


def test_flips_in_the_pck_chain_are_refused(fake: FakeIntel) -> None:
    quote = fake.quote()
    chain = fake.chain_pem()
    start = quote.index(chain)
    options = {"now": FAKE_NOW, "pin": fake.pin, "pools": (fake.pool(),)}
    assert run(quote, **options)[0] is not None
    survivors = []
    for i in range(0, len(chain), 11):
        char = chain[i : i + 1]
        if not char.isalnum():
            continue  # PEM armour and newlines: the certificates are the signed bytes
        raw = bytearray(quote)
        raw[start + i] = ord("A") if char != b"A" else ord("B")
        if run(bytes(raw), **options)[0] is not None:
            survivors.append(i)
    # A flip in a signature's last base64 digit can leave its DER unchanged (padding bits).
    assert len(survivors) <= 3, survivors


def test_flips_in_a_fake_quote_are_refused(fake: FakeIntel) -> None:
    quote = fake.quote()
    options = {"now": FAKE_NOW, "pin": fake.pin, "pools": (fake.pool(),)}
    for name, region in _regions(quote).items():
        assert _flip_all(quote, region, 3, **options) == [], name


# --- each failure, its own error ------------------------------------------------------------


def _fails(quote: bytes, check: str, error: type[Exception], **options: Any) -> Any:
    result, checks = run(quote, **options)
    assert result is None, "accepted"
    assert checks.first_failed == check, (checks.first_failed, checks.error)
    assert type(checks.error) is error, checks.error
    return checks.error


def test_fake_quote_verifies(fake: FakeIntel) -> None:
    result, checks = run(fake.quote(), now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(),))
    assert result is not None, checks.error
    assert result.tcb is not None and result.tcb.status == "UpToDate"
    assert result.revocation.checked


def test_wrong_qe_report_binding(fake: FakeIntel) -> None:
    quote = parse_quote(fake.quote())
    rebound = replace(quote, qe=replace(quote.qe, qe_auth_data=bytes(32)), signed_raw=b"")
    _fails(
        rebound.to_bytes(), "dcap.qe_binding", QeReportBindingError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(),),
    )  # fmt: skip


def test_qe_report_signed_by_another_key(fake: FakeIntel) -> None:
    quote = parse_quote(fake.quote())
    other = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(other.sign(quote.qe.qe_report_raw, ec.ECDSA(hashes.SHA256())))
    forged = replace(
        quote,
        qe=replace(quote.qe, qe_report_signature=r.to_bytes(32, "big") + s.to_bytes(32, "big")),
    )
    _fails(
        forged.to_bytes(), "dcap.qe_report_signature", QeReportSignatureError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(),),
    )  # fmt: skip


def test_quote_signed_by_another_attestation_key(fake: FakeIntel) -> None:
    quote = parse_quote(fake.quote())
    other = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(other.sign(quote.signed_bytes(), ec.ECDSA(hashes.SHA256())))
    forged = replace(quote, signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    _fails(
        forged.to_bytes(), "dcap.quote_signature", QuoteSignatureError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(),),
    )  # fmt: skip


def test_foreign_root(fake: FakeIntel) -> None:
    error = _fails(fake.quote(), "dcap.pck_chain", FingerprintMismatchError, now=FAKE_NOW)
    assert "a foreign root" in str(error)  # its CN says Intel SGX Root CA; its key is not Intel's


def test_expired_pck(fake: FakeIntel) -> None:
    pck = fake.pck_valid_until(FAKE_NOW - timedelta(hours=1))
    error = _fails(
        fake.quote(pck=pck), "dcap.validity", CertificateExpiredError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(),),
    )  # fmt: skip
    assert "Intel SGX PCK Certificate expired" in str(error)


def test_revoked_pck(fake: FakeIntel) -> None:
    bundle = fake.revoke_pck(fake.collateral(), fake.hierarchy.pck.cert.serial_number)
    error = _fails(
        fake.quote(), "dcap.revocation", CertificateRevokedError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(bundle),),
    )  # fmt: skip
    assert "is revoked by the Intel SGX PCK Platform CA CRL" in str(error)


def test_crl_with_a_bad_signature(fake: FakeIntel) -> None:
    other = FakeIntel()  # same names, other keys
    bundle = replace(fake.collateral(), pck_crl=other.collateral().pck_crl)
    _fails(
        fake.quote(), "dcap.crl", CrlSignatureError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(bundle),),
    )  # fmt: skip


def _signed_by(key: ec.EllipticCurvePrivateKey, signed: Signed) -> Signed:
    r, s = decode_dss_signature(key.sign(signed.body, ec.ECDSA(hashes.SHA256())))
    return replace(signed, signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_tcb_info_signed_by_the_wrong_key(fake: FakeIntel) -> None:
    bundle = fake.collateral()
    forged = _signed_by(ec.generate_private_key(ec.SECP256R1()), bundle.tcb_info)
    error = _fails(
        fake.quote(), "dcap.tcb_info", CollateralSignatureError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(replace(bundle, tcb_info=forged)),),
    )  # fmt: skip
    assert "not signed by the TCB Signing key" in str(error)


def test_tcb_info_under_a_foreign_signing_chain(fake: FakeIntel) -> None:
    other = FakeIntel()
    bundle = fake.collateral()
    foreign = _signed_by(other.hierarchy.tcb_signing.key, bundle.tcb_info)
    foreign = replace(foreign, chain=(other.hierarchy.tcb_signing.cert, other.hierarchy.root.cert))
    _fails(
        fake.quote(), "dcap.tcb_info", CollateralSignatureError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(replace(bundle, tcb_info=foreign)),),
    )  # fmt: skip


def test_stale_collateral(fake: FakeIntel) -> None:
    later = FAKE_NOW + timedelta(days=31)  # the fake collateral lives 30 days
    error = _fails(
        fake.quote(), "dcap.collateral", CollateralStaleError,
        now=later, pin=fake.pin, pools=(fake.pool(),),
    )  # fmt: skip
    assert "past its nextUpdate" in str(error) and error.code == "collateral.stale"


def test_stale_real_collateral(vectors: Path, expected: dict[str, Any]) -> None:
    vector = _vector(expected, "tdx-v4-phala")
    _fails(
        load_quote(vectors, vector), "dcap.collateral", CollateralStaleError,
        now=datetime(2025, 8, 1, tzinfo=UTC), pools=(_bundle_pool(vectors, vector),),
    )  # fmt: skip


def test_missing_collateral_and_if_available(fake: FakeIntel) -> None:
    error = _fails(
        fake.quote(), "dcap.collateral", CollateralMissingError, now=FAKE_NOW, pin=fake.pin
    )
    assert error.code == "collateral.missing" and "--collateral FILE" in (error.hint or "")
    result, checks = run(fake.quote(), now=FAKE_NOW, pin=fake.pin, **LENIENT)
    assert result is not None and result.tcb_status == "NotAppraised"
    assert "TCB NOT APPRAISED" in " ".join(c.reason for c in checks.checks)


def test_collateral_for_another_tee(vectors: Path, expected: dict[str, Any]) -> None:
    tdx = _vector(expected, "tdx-v4-phala")
    sgx = _vector(expected, "sgx-v3-phala")
    error = _fails(
        load_quote(vectors, tdx), "dcap.collateral", CollateralMismatchError,
        now=verify_at(tdx), pools=(_bundle_pool(vectors, sgx),),
    )  # fmt: skip
    assert "TCB Info is for SGX, the quote is TDX" in str(error)


def test_qe_identity_of_another_enclave(fake: FakeIntel) -> None:
    import json

    bundle = fake.collateral()
    doc = json.loads(bundle.qe_identity.body)
    doc["mrsigner"] = "AB" * 32
    body = json.dumps(doc, separators=(",", ":")).encode()
    forged = _signed_by(fake.hierarchy.tcb_signing.key, replace(bundle.qe_identity, body=body))
    error = _fails(
        fake.quote(), "dcap.tcb_status", QeIdentityMismatchError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(replace(bundle, qe_identity=forged)),),
    )  # fmt: skip
    assert "QE MRSIGNER" in str(error)


def test_tdx_module_of_another_signer(fake: FakeIntel) -> None:
    _fails(
        fake.quote(mrsignerseam=b"\x01" * 48), "dcap.tcb_status", TdxModuleMismatchError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(),),
    )  # fmt: skip


def test_revoked_tcb_status(fake: FakeIntel) -> None:
    bundle = fake.collateral(status="Revoked", advisories=("INTEL-SA-00999",))
    error = _fails(
        fake.quote(), "dcap.tcb_status", TcbRevokedError,
        now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(bundle),),
    )  # fmt: skip
    assert "INTEL-SA-00999" in str(error)


def test_out_of_date_status_carries_its_advisories(fake: FakeIntel) -> None:
    bundle = fake.collateral(status="OutOfDate", advisories=("INTEL-SA-00837",))
    result, _ = run(fake.quote(), now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(bundle),))
    assert result is not None and result.tcb is not None
    assert (result.tcb.status, result.tcb.advisories) == ("OutOfDate", ("INTEL-SA-00837",))


def test_an_sgx_quote_where_tdx_is_promised(vectors: Path, expected: dict[str, Any]) -> None:
    vector = _vector(expected, "sgx-v3-phala")
    error = _fails(
        load_quote(vectors, vector), "dcap.quote", MalformedEvidenceError,
        now=verify_at(vector), tee="TDX", **LENIENT,
    )  # fmt: skip
    assert "an SGX quote where a TDX quote is expected" in str(error)


def test_an_older_tdx_module_matches_the_older_level(fake: FakeIntel) -> None:
    weaker = replace(fake.config.platform_tcb, tee_tcb_svn=bytes(16))
    result, checks = run(fake.quote(tcb=weaker), now=FAKE_NOW, pin=fake.pin, pools=(fake.pool(),))
    # TEE_TCB_SVN module version 0: every TDX component compared; the fake's levels need
    # component 2 >= 2 (UpToDate) or >= 0 (OutOfDate): the OutOfDate level matches.
    assert result is not None and result.tcb is not None, checks.error
    assert result.tcb.status == "OutOfDate"


def test_hex_and_base64_forms_are_the_same_quote(vectors: Path, expected: dict[str, Any]) -> None:
    from donjon.attestation.dcap.bare import sniff_base64, sniff_hex, sniff_raw
    from donjon.attestation.dcap.layout import TEE_SGX, TEE_TDX

    raw = load_quote(vectors, _vector(expected, "tdx-v4-phala"))
    assert sniff_raw(TEE_TDX)(raw) == raw and sniff_raw(TEE_SGX)(raw) is None
    assert sniff_hex(TEE_TDX)(raw.hex().encode() + b"\n") == raw
    assert sniff_base64(TEE_TDX)(base64.b64encode(raw)) == raw
    assert hashlib.sha256(raw).digest()  # the three forms decode to these very bytes


# --- the platform memo: reused only while nothing it relied on can have changed ---------------


def test_a_memoised_platform_gives_the_same_checks(fake: FakeIntel) -> None:
    store = IntelCollateralStore()
    pool = fake.pool()
    first, one = run(fake.quote(), now=FAKE_NOW, pin=fake.pin, pools=(pool,), store=store)
    again, two = run(fake.quote(), now=FAKE_NOW, pin=fake.pin, pools=(pool,), store=store)
    assert first is not None and again is not None
    assert [(c.id, c.reason) for c in one.checks] == [(c.id, c.reason) for c in two.checks]


def test_a_memoised_platform_does_not_outlive_its_collateral(fake: FakeIntel) -> None:
    store = IntelCollateralStore()
    pool = fake.pool()
    options = {"pin": fake.pin, "pools": (pool,), "store": store}
    assert run(fake.quote(), now=FAKE_NOW, **options)[0] is not None
    later = FAKE_NOW + timedelta(days=31)  # the fake collateral lives 30 days
    _fails(fake.quote(), "dcap.collateral", CollateralStaleError, now=later, **options)
    assert run(fake.quote(), now=FAKE_NOW, **options)[0] is not None
    expired = fake.hierarchy.pck.cert.not_valid_after_utc + timedelta(seconds=1)
    _fails(fake.quote(), "dcap.validity", CertificateExpiredError, now=expired, **options)


def test_a_memoised_platform_still_checks_each_quote(fake: FakeIntel) -> None:
    store = IntelCollateralStore()
    options = {"now": FAKE_NOW, "pin": fake.pin, "pools": (fake.pool(),), "store": store}
    assert run(fake.quote(), **options)[0] is not None
    quote = parse_quote(fake.quote(report_data=b"\x01" * 64))
    forged = replace(quote, body=replace(quote.body, report_data=b"\x02" * 64), signed_raw=b"")
    _fails(forged.to_bytes(), "dcap.quote_signature", QuoteSignatureError, **options)
    rebound = replace(quote, qe=replace(quote.qe, qe_auth_data=bytes(32)), signed_raw=b"")
    _fails(rebound.to_bytes(), "dcap.qe_binding", QeReportBindingError, **options)
    debug = fake.quote(td_attributes=1 << 28 | 1)  # a debug TD is the policy's to refuse
    assert run(debug, **options)[0] is not None
