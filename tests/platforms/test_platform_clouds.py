"""GCP and AWS, made explicit: what the Keep handles differently on each, with real evidence
from those clouds served through a fake configfs-tsm.

* AWS signs SNP reports with a VLEK, which AMD KDS cannot serve by chip: the host hands
  it over (configfs ``auxblob``) and the Keep sends it with the report.
* GCP's SNP reports are version 5, and carry the CPUID: a VCEK can be fetched by product.
* GCP's TDX quotes carry their PCK chain but no collateral: the Steward needs a PCCS or
  Intel PCS for TCB Info (a fake PCCS on 127.0.0.1 here).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from fake_kernel import FakeConfigfs

from donjon.attestation import Policy, TrustStore
from donjon.attestation.csr import verify_evidence, verify_report
from donjon.attestation.evidence import decode_enarx_snp
from donjon.attestation.registry import VerifyOptions
from donjon.attestation.snp.product import Product
from donjon.attestation.verifiers import REGISTRY
from donjon.attestation.x509util import load_certificate
from donjon.keep.platforms.configfs import ConfigfsTsm
from donjon.keep.platforms.devguest import SevGuestDevice, TdxGuestDevice
from donjon.keep.platforms.snp import GUID_VLEK, SnpPlatform, build_cert_table
from donjon.keep.platforms.tdx import TdxPlatform

AWS_REPORT = "sev-snp/trustee/test-vlek-report.bin"
AWS_VLEK = "sev-snp/trustee/test-vlek.der"
GCP_REPORT = "sev-snp/teekit-gcp/sev-gcp.bin"
GCP_VCEK = "sev-snp/teekit-gcp/sev-gcp-vcek.pem"
GCP_TDX = "tdx/go-tdx-guest/ccel/cos-113-tdx-quote.dat"

# AMD's VCEK/VLEK serial numbers are not positive (SOURCES.md, pitfall 4): cryptography warns.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)


def snp_on_configfs(
    tmp_path: Path, report: bytes, table: bytes, **kw: Any
) -> tuple[SnpPlatform, FakeConfigfs]:
    fake = FakeConfigfs(tmp_path, "sev_guest", lambda inblob: (report, table))
    device = SevGuestDevice(path=tmp_path / "dev-sev-guest")
    device.path.touch()
    tsm = ConfigfsTsm(fake.root, fs=fake)
    return SnpPlatform(tsm=tsm, device=device, linux=True, **kw), fake


def own_report_data(report: bytes) -> bytes:
    """A recorded report can only answer the report_data it was made for (offset 0x50)."""
    return report[0x50:0x90]


def test_aws_vlek_comes_from_the_host_and_travels_with_the_report(
    vectors: Path, tmp_path: Path
) -> None:
    report = (vectors / AWS_REPORT).read_bytes()
    vlek = (vectors / AWS_VLEK).read_bytes()
    table = build_cert_table({GUID_VLEK: vlek})
    plat, _ = snp_on_configfs(tmp_path, report, table)
    ext = plat.evidence_extension(own_report_data(report))
    evidence = decode_enarx_snp(ext.value)
    assert evidence.endorsement is not None
    assert evidence.endorsement.public_bytes(Encoding.DER) == vlek
    # This report was requested at VMPL 1 (an SVSM-style guest): the policy must say so.
    policy = Policy.from_toml(
        "[snp]\naccept_any_workload = true\nvmpl = [0, 1]\n", source="t", base_dir=tmp_path
    )
    verdict = verify_report(
        evidence.report,
        policy=policy,
        trust=TrustStore.offline(vectors / "amd-roots"),
        now=datetime(2025, 6, 1, tzinfo=UTC),  # expected.json: inside the VLEK's one year
        vcek=evidence.endorsement,
        crl_mode="if-available",
    )
    assert verdict.accepted, (verdict.reason, verdict.error)
    key = (verdict.details or {})["endorsement_key"]
    assert key["kind"] == "VLEK"
    assert "cc-us-east-2.amazonaws.com" in key["csp_id"]  # SOURCES.md: its CSP_ID


def test_aws_vlek_report_without_the_vlek_is_refused_by_the_keep(
    vectors: Path, tmp_path: Path
) -> None:
    report = (vectors / AWS_REPORT).read_bytes()
    plat, _ = snp_on_configfs(tmp_path, report, b"")
    with pytest.raises(Exception, match="signed by a VLEK but the host gave no VLEK"):
        plat.evidence_extension(own_report_data(report))


class OneVcek:
    """AMD KDS stand-in: records what was asked, serves one VCEK."""

    def __init__(self, der: bytes) -> None:
        self.der = der
        self.asked: list[tuple[Product, bytes]] = []

    def vcek(self, product: Product, hwid: bytes, tcb: object) -> bytes:
        self.asked.append((product, hwid))
        return self.der

    def cert_chain(self, product: Product, kind: str) -> bytes:
        raise AssertionError("not used by the Keep")

    def crl(self, product: Product, kind: str) -> bytes:
        raise AssertionError("not used by the Keep")


def test_gcp_v5_report_names_its_product_so_the_vcek_is_fetched_by_chip(
    vectors: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    report = (vectors / GCP_REPORT).read_bytes()
    vcek = load_certificate((vectors / GCP_VCEK).read_bytes())
    kds = OneVcek(vcek.public_bytes(Encoding.DER))
    plat, _ = snp_on_configfs(tmp_path, report, b"", cache_dir=tmp_path / "cache", fetcher=kds)
    evidence = decode_enarx_snp(plat.evidence_extension(own_report_data(report)).value)
    want = next(v for v in expected["vectors"] if v["id"] == "snp-milan-v5-gcp-zero-reportdata")
    assert want["computed"]["report"]["version"] == 5
    assert kds.asked == [(Product.MILAN, bytes.fromhex(want["computed"]["report"]["chip_id"]))]
    verdict = verify_report(
        evidence.report,
        policy=Policy.default(),
        trust=TrustStore.offline(vectors / "amd-roots"),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        vcek=evidence.endorsement,
        crl_mode="if-available",
    )
    assert verdict.accepted, (verdict.reason, verdict.error)
    shown = (verdict.details or {})["report"]
    assert shown["version"] == 5
    assert {"launch_mit_vector", "current_mit_vector"} <= set(shown)
    # The second Keep start finds it in its cache: KDS is asked once.
    plat.evidence_extension(own_report_data(report))
    assert len(kds.asked) == 1


class FakePccs:
    """A PCCS that has nothing for the FMSPC asked: records the request, answers 404."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.paths.append(self.path)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def pccs() -> Iterator[FakePccs]:
    fake = FakePccs()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_gcp_tdx_quote_travels_bare_and_its_collateral_comes_from_a_pccs(
    vectors: Path, tmp_path: Path, pccs: FakePccs
) -> None:
    quote = (vectors / GCP_TDX).read_bytes()
    fake = FakeConfigfs(tmp_path, "tdx_guest", lambda inblob: (quote, b""))
    device = TdxGuestDevice(path=tmp_path / "dev-tdx-guest")
    device.path.touch()
    plat = TdxPlatform(tsm=ConfigfsTsm(fake.root, fs=fake), device=device, linux=True)
    assert plat.quote(bytes(64)) == quote  # expected.json: report_data all zero
    found = REGISTRY.recognise(quote)
    assert found is not None
    form, data = found
    trust = TrustStore(vectors / "intel-roots")
    now = datetime(2025, 6, 1, tzinfo=UTC)
    policy = Policy.from_toml("[tdx]\naccept_any_workload = true\n", source="t", base_dir=tmp_path)
    verdict = verify_evidence(data, form, policy=policy, trust=trust, now=now)
    assert verdict.reason == "dcap.collateral"  # signature and PCK chain pass; no TCB Info
    assert "00806f050000" in (verdict.error.message if verdict.error else "")
    options = VerifyOptions(material={"pccs": pccs.url})
    asked = verify_evidence(data, form, policy=policy, trust=trust, now=now, options=options)
    assert asked.reason == "dcap.collateral"
    assert any("fmspc=00806F050000" in path for path in pccs.paths), pccs.paths
