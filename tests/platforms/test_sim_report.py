"""Sim reports are SEV-SNP reports: checked against offsets and values from the AMD
SEV-SNP ABI spec (Table 23), written here by hand, and against real reports."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pyasn1.codec.der import decoder, encoder

from donjon.attestation import oids
from donjon.keep.platforms import sim as sim_platform
from donjon.keep.platforms.base import PlatformError
from donjon.keep.sim import state
from donjon.keep.sim.products import Product, TcbVersion
from donjon.keep.sim.report import GuestIdentity, make_report

REPORT_DATA = bytes(range(100, 164))
MEASUREMENT = bytes.fromhex("ab" * 48)


def verify_report(report: bytes, vcek: x509.Certificate) -> None:
    """Check the signature the way the AMD spec defines it, independently of Donjon."""
    r = int.from_bytes(report[0x2A0:0x2E8], "little")
    s = int.from_bytes(report[0x2E8:0x330], "little")
    key = vcek.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))


def test_report_layout_and_signature(sim_state_dir: Path, chip_id: bytes) -> None:
    platform = sim_platform.SimPlatform(sim_state_dir / "sim", measurement=MEASUREMENT)
    report = platform.report(REPORT_DATA)
    assert len(report) == 1184
    version, guest_svn, policy = struct.unpack_from("<IIQ", report, 0)
    assert (version, guest_svn, policy) == (3, 0, 0x30000)  # debug bit 19 clear
    assert struct.unpack_from("<II", report, 0x30) == (0, 1)  # VMPL 0, ECDSA P-384/SHA-384
    assert report[0x50:0x90] == REPORT_DATA
    assert report[0x90:0xC0] == MEASUREMENT
    assert report[0x1A0:0x1E0] == chip_id
    # TCB bl=3 tee=0 snp=20 ucode=209 in Milan's byte order [bl, tee, 0, 0, 0, 0, snp, ucode].
    tcb = bytes([3, 0, 0, 0, 0, 0, 20, 209])
    for offset in (0x38, 0x180, 0x1E0, 0x1F0):  # current, reported, committed, launch
        assert report[offset : offset + 8] == tcb
    assert report[0x188:0x18B] == bytes([0x19, 0x01, 0x01])  # Milan CPUID family/model/step
    assert struct.unpack_from("<I", report, 0x48)[0] == 0  # signed by the VCEK
    assert report[0x330:] == bytes(1184 - 0x330)
    vcek = x509.load_pem_x509_certificate((sim_state_dir / "sim" / "vcek.pem").read_bytes())
    verify_report(report, vcek)


def test_tcb_encoding_matches_real_reports(expected: dict[str, object]) -> None:
    vectors = {v["id"]: v for v in expected["vectors"]}  # type: ignore[attr-defined]
    for vid in ("snp-milan-v2-go-sev-guest", "snp-milan-v5-gcp-zero-reportdata"):
        rep = vectors[vid]["computed"]["report"]
        t = rep["reported_tcb"]
        ours = TcbVersion(t["bl"], t["tee"], t["snp"], t["ucode"]).raw
        assert ours == int(rep["reported_tcb_raw"], 16), vid


def test_turin_tcb_byte_order() -> None:
    # AMD SEV-SNP ABI 1.58, TCB_VERSION for family 1Ah: [fmc, bl, tee, snp, 0, 0, 0, ucode].
    value = TcbVersion(bl=2, tee=3, snp=4, ucode=5, fmc=1).raw
    assert value.to_bytes(8, "little") == bytes([1, 2, 3, 4, 0, 0, 0, 5])


def test_version_5_and_debug_policy(sim_state_dir: Path) -> None:
    loaded = state.load(sim_state_dir / "sim")
    config = state.SimConfig(
        loaded.config.product,
        loaded.config.tcb,
        loaded.config.chip_id,
        report_version=5,
        policy=0x30000 | (1 << 19),
    )
    report = make_report(config, loaded.vcek_key, GuestIdentity(MEASUREMENT), REPORT_DATA)
    assert struct.unpack_from("<IIQ", report, 0) == (5, 0, 0xB0000)
    assert report[0x1F8:0x208] == bytes(16)  # mitigation vectors present and zero
    verify_report(report, loaded.vcek)


def test_evidence_extension_format(sim_state_dir: Path) -> None:
    platform = sim_platform.create(sim_state_dir)
    assert platform.available()
    assert isinstance(platform.key_curve(), ec.SECP384R1)
    ext = platform.evidence_extension(REPORT_DATA)
    assert ext.oid == oids.EVIDENCE_SIM
    value, rest = decoder.decode(ext.value)
    assert rest == b""
    certs = [x509.load_der_x509_certificate(encoder.encode(c)) for c in value[0]]
    names = [c.subject.rfc4514_string().split(",")[0] for c in certs]
    # Outer-most RDN printed first: CN=... identifies vcek, ask, ark in that order.
    assert names == ["CN=SEV-VCEK", "CN=SEV-Milan", "CN=ARK-Milan"]
    report = bytes(value[1])
    assert report[0x50:0x90] == REPORT_DATA
    verify_report(report, certs[0])


def test_same_guest_same_measurement_and_report_id(sim_state_dir: Path) -> None:
    platform = sim_platform.create(sim_state_dir)
    a = platform.report(REPORT_DATA)
    b = platform.report(bytes(64))
    assert a[0x90:0xC0] == b[0x90:0xC0] and a[0x140:0x160] == b[0x140:0x160]


def test_measurement_is_the_runtime_digest(sim_state_dir: Path) -> None:
    import donjon

    root = Path(donjon.__file__).parent
    digest = hashlib.sha384(b"donjon-sim-measurement-v1\n")
    files = sorted(
        (p.relative_to(root).as_posix(), p)
        for p in root.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix != ".pyc"
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    for rel, path in files:
        data = path.read_bytes()
        digest.update(struct.pack(">I", len(rel.encode())) + rel.encode())
        digest.update(struct.pack(">Q", len(data)) + data)
    report = sim_platform.create(sim_state_dir).report(REPORT_DATA)
    assert report[0x90:0xC0] == digest.digest()


def test_bad_report_data_is_refused(sim_state_dir: Path) -> None:
    with pytest.raises(PlatformError, match="64 bytes"):
        sim_platform.create(sim_state_dir).evidence_extension(b"short")


def test_uninitialised_sim_is_unavailable_and_says_why(tmp_path: Path) -> None:
    platform = sim_platform.create(tmp_path)
    assert not platform.available()
    with pytest.raises(PlatformError, match=r"not initialised.*sim init"):
        platform.evidence_extension(bytes(64))


def test_config_file_is_json_with_known_fields(sim_state_dir: Path, chip_id: bytes) -> None:
    data = json.loads((sim_state_dir / "sim" / "sim.json").read_text())
    assert data["product"] == "Milan" and data["chip_id"] == chip_id.hex()
    assert data["tcb"] == {"bl": 3, "tee": 0, "snp": 20, "ucode": 209}


@pytest.mark.parametrize(
    ("product", "cpuid", "tcb", "tcb_bytes"),
    [
        (Product.GENOA, (0x19, 0x11, 0x01), TcbVersion(9, 0, 23, 72), [9, 0, 0, 0, 0, 0, 23, 72]),
        (
            Product.TURIN,
            (0x1A, 0x02, 0x01),
            TcbVersion(bl=1, tee=2, snp=3, ucode=9, fmc=4),
            [4, 1, 2, 3, 0, 0, 0, 9],
        ),
    ],
)
def test_other_products_parse_strictly(
    sim_state_dir: Path,
    product: Product,
    cpuid: tuple[int, int, int],
    tcb: TcbVersion,
    tcb_bytes: list[int],
) -> None:
    from donjon.attestation.snp.report import parse_report

    loaded = state.load(sim_state_dir / "sim")
    config = state.SimConfig(product, tcb, state.random_chip_id(product), report_version=5)
    raw = make_report(config, loaded.vcek_key, GuestIdentity(MEASUREMENT), REPORT_DATA)
    assert raw[0x188:0x18B] == bytes(cpuid)
    assert raw[0x38:0x40] == bytes(tcb_bytes)
    if product is Product.TURIN:
        assert raw[0x1A8:0x1E0] == bytes(56)  # Turin: only 8 bytes of CHIP_ID are used
    parsed = parse_report(raw, strict=True)  # the verifier's parser accepts it as is
    assert parsed.product is product and parsed.reported_tcb == tcb
    verify_report(raw, loaded.vcek)


def test_sim_report_passes_the_verifier_parser(sim_state_dir: Path) -> None:
    from donjon.attestation.snp.report import parse_report

    raw = sim_platform.create(sim_state_dir).report(REPORT_DATA)
    parsed = parse_report(raw, strict=True)
    assert parsed.product is Product.MILAN
    assert parsed.report_data == REPORT_DATA
    assert not parsed.policy.debug_allowed
