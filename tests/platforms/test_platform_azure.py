"""The azure platform against a real TPM 2.0 simulator (swtpm) and a fake IMDS on 127.0.0.1.

A simulated paravisor provisions swtpm as Azure's HCL does at boot (an AK at
0x81000003, an HCL report in NV 0x01400001 whose SNP report the simulated VCEK
signed); the Keep then quotes through the real TPM protocol, and the verifier
judges the CSR it builds. Negative cases tamper with what a hostile host controls.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import TrustStore, oids
from donjon.attestation.azure.evidence import (
    AzureEvidence,
    TpmQuote,
    decode_azure_evidence,
    encode_azure_evidence,
)
from donjon.attestation.azure.hcl import (
    NV_INDEX,
    HardwareKind,
    build_hcl_report,
    parse_hcl_report,
)
from donjon.attestation.azure.runtime import runtime_claims_json
from donjon.attestation.azure.tpm import build_attest, encode_rsassa_signature, parse_attest
from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.csr import verify_csr
from donjon.attestation.errors import CollateralMissingError
from donjon.attestation.policy import Policy
from donjon.attestation.snp.report import parse_report
from donjon.attestation.verdict import Verdict
from donjon.keep import identity
from donjon.keep.platforms.azure import AzurePlatform, AzurePlatformError
from donjon.keep.platforms.base import PlatformUnavailable
from donjon.keep.platforms.imds import Imds, ImdsError
from donjon.keep.platforms.probe import probe
from donjon.keep.platforms.tpm import open_tpm
from donjon.keep.sim import azure as sim_azure
from donjon.keep.sim import state as sim_state
from support.azure import FakeImds, Swtpm, running_swtpm

CLAIMS = WorkloadClaims(
    wasm_sha256=hashlib.sha256(b"main.wasm").digest(),
    config_sha256=b"",
    package_name="azure-test",
    nonce=bytes(range(32)),
)


@pytest.fixture
def tpm(tmp_path: Path) -> Iterator[Swtpm]:
    with running_swtpm(tmp_path / "swtpm") as swtpm:
        yield swtpm


@pytest.fixture
def sim(sim_state_dir: Path) -> sim_state.SimState:
    return sim_state.load(sim_state_dir / "sim")


@pytest.fixture
def imds(sim: sim_state.SimState) -> Iterator[FakeImds]:
    with FakeImds() as fake:
        fake.thim = sim_azure.thim_answer(sim)
        yield fake


def provision(tpm: Swtpm, sim: sim_state.SimState, **settings: object) -> bytes:
    with open_tpm(tpm.tcti) as handle:
        return sim_azure.provision(handle, sim, sim_azure.VmSettings(**settings))  # type: ignore[arg-type]


def platform(tpm: Swtpm, imds: FakeImds, tmp_path: Path) -> AzurePlatform:
    return AzurePlatform(tcti=tpm.tcti, imds=Imds(imds.url, retries=0), cache_dir=tmp_path)


def policy(sim: sim_state.SimState, tmp_path: Path, azure: str = "") -> Policy:
    ark = tmp_path / "sim-ark.pem"
    ark.write_bytes((sim.directory / "ark.pem").read_bytes())
    text = f'[sim]\ntrust = "{ark}"\n\n[azure]\naccept_any_workload = true\n{azure}'
    return Policy.from_toml(text, source="azure-test.toml", base_dir=tmp_path)


def csr_of(
    plat: AzurePlatform, key: ec.EllipticCurvePrivateKey | None = None
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = key or identity.generate_key(plat)
    csr = identity.build_csr(key, CLAIMS, plat)
    return csr.public_bytes(Encoding.DER), key


def judge(csr: bytes, pol: Policy) -> Verdict:
    return verify_csr(csr, policy=pol, trust=TrustStore(), now=datetime.now(UTC))


def evidence_of(csr_der: bytes) -> AzureEvidence:
    csr = x509.load_der_x509_csr(csr_der)
    value = csr.extensions.get_extension_for_oid(oids.EVIDENCE_AZURE).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return decode_azure_evidence(value.value)


def resigned(key: ec.EllipticCurvePrivateKey, evidence: AzureEvidence) -> bytes:
    """A CSR for ``key`` carrying ``evidence`` (tampered by the test) and the same claims."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.UnrecognizedExtension(oids.WORKLOAD_CLAIMS, CLAIMS.to_der()), False)
        .add_extension(
            x509.UnrecognizedExtension(oids.EVIDENCE_AZURE, encode_azure_evidence(evidence)),
            False,
        )
        .sign(key, identity.signature_hash(key))
    )
    return csr.public_bytes(Encoding.DER)


def failed(verdict: Verdict) -> tuple[str | None, str | None]:
    return verdict.reason, None if verdict.error is None else verdict.error.code


# --- the Keep side, end to end through the verifier ------------------------------------------


def test_keep_quotes_the_vtpm_and_the_verifier_accepts_it(
    tpm: Swtpm, sim: sim_state.SimState, imds: FakeImds, tmp_path: Path
) -> None:
    report = provision(tpm, sim)
    plat = platform(tpm, imds, tmp_path)
    found = plat.detect()
    assert (found.usable, found.kind, found.nv) == (True, HardwareKind.SNP, True)
    csr, key = csr_of(plat)
    evidence = evidence_of(csr)
    assert evidence.hcl_report == report
    info = parse_attest(evidence.quote.attest)  # type: ignore[union-attr]
    # swtpm implements SHA-512, so the whole 64-byte binding fits in TPM2B_DATA.
    spki = identity.spki_der(key)
    assert info.extra_data == hashlib.sha512(spki + CLAIMS.to_der()).digest()
    assert len(evidence.quote.pcrs) == 24  # type: ignore[union-attr]
    assert [c.subject for c in evidence.certificates] == [c.subject for c in sim.chain]
    assert ("GET", "/metadata/THIM/amd/certification") in [r[:2] for r in imds.requests]
    verdict = judge(csr, policy(sim, tmp_path))
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert verdict.result is not None
    assert (verdict.result.platform, verdict.result.development) == ("azure-snp", True)
    assert verdict.result.measurement == sim_azure.SIM_HCL_MEASUREMENT
    ids = [c.id for c in verdict.checks]
    for check in ("azure.vendor_root", "snp.signature", "azure.report_data", "azure.ak",
                  "azure.quote_signature", "azure.quote", "binding.report_data",
                  "azure.pcr_digest", "policy.console"):  # fmt: skip
        assert check in ids


def test_expected_pcrs_pass_and_a_wrong_pcr_value_is_refused(
    tpm: Swtpm, sim: sim_state.SimState, imds: FakeImds, tmp_path: Path
) -> None:
    provision(tpm, sim)
    with open_tpm(tpm.tcti) as handle:
        handle.extend(7, hashlib.sha256(b"secure boot db").digest())
        pcr4, pcr7 = handle.pcr_values([4, 7])
    plat = platform(tpm, imds, tmp_path)
    csr, _ = csr_of(plat)
    good = policy(sim, tmp_path, f'pcrs = {{ 4 = "{pcr4.hex()}", 7 = "{pcr7.hex()}" }}\n')
    assert judge(csr, good).accepted
    wrong = "ab" * 32
    bad = policy(sim, tmp_path, f'pcrs = {{ 4 = "{pcr4.hex()}", 7 = "{wrong}" }}\n')
    verdict = judge(csr, bad)
    assert failed(verdict) == ("policy.pcrs", "policy.pcrs")
    assert f"PCR 7 is {pcr7.hex()}" in verdict.error.message  # type: ignore[union-attr]


def test_a_quote_from_another_ak_is_refused(
    tpm: Swtpm, sim: sim_state.SimState, imds: FakeImds, tmp_path: Path
) -> None:
    provision(tpm, sim)
    plat = platform(tpm, imds, tmp_path)
    csr, key = csr_of(plat)
    # Another TPM (its own AK) quotes the same binding: the host swaps that quote in.
    with running_swtpm(tmp_path / "other") as other:
        with open_tpm(other.tcti) as handle:
            sim_azure.ensure_ak(handle)
        qualifying = parse_attest(evidence_of(csr).quote.attest).extra_data  # type: ignore[union-attr]
        with open_tpm(other.tcti) as handle:
            attest, signature = handle.quote(0x81000003, list(range(24)), qualifying)
            pcrs = tuple(handle.pcr_values(list(range(24))))
    forged = replace(evidence_of(csr), quote=TpmQuote(attest, signature, pcrs))
    assert failed(judge(resigned(key, forged), policy(sim, tmp_path))) == (
        "azure.quote_signature",
        "azure.quote_signature",
    )


def test_extra_data_made_for_another_key_is_refused(
    tpm: Swtpm, sim: sim_state.SimState, imds: FakeImds, tmp_path: Path
) -> None:
    provision(tpm, sim)
    plat = platform(tpm, imds, tmp_path)
    csr, _ = csr_of(plat)
    thief = identity.generate_key(plat)  # the host copies genuine evidence into its own CSR
    verdict = judge(resigned(thief, evidence_of(csr)), policy(sim, tmp_path))
    assert failed(verdict) == ("binding.report_data", "binding.report_data")


def test_runtime_claims_edited_after_signing_are_refused(
    tpm: Swtpm, sim: sim_state.SimState, imds: FakeImds, tmp_path: Path
) -> None:
    provision(tpm, sim, console_enabled=True)
    plat = platform(tpm, imds, tmp_path)
    csr, key = csr_of(plat)
    evidence = evidence_of(csr)
    # The host turns the console flag off in the claims, and fixes up the report's sizes.
    hcl = parse_hcl_report(evidence.hcl_report)
    claims = hcl.runtime_claims.replace(b'"console-enabled":true', b'"console-enabled":false')
    assert claims != hcl.runtime_claims
    tampered = build_hcl_report(hcl.kind, hcl.hardware_report, claims, version=hcl.version)
    verdict = judge(resigned(key, replace(evidence, hcl_report=tampered)), policy(sim, tmp_path))
    assert failed(verdict) == ("azure.report_data", "azure.report_data")


def test_a_console_enabled_vm_is_refused_unless_allowed(
    tpm: Swtpm, sim: sim_state.SimState, imds: FakeImds, tmp_path: Path
) -> None:
    provision(tpm, sim, console_enabled=True)
    csr, _ = csr_of(platform(tpm, imds, tmp_path))
    assert failed(judge(csr, policy(sim, tmp_path))) == ("policy.console", "policy.console")
    assert judge(csr, policy(sim, tmp_path, "allow_console = true\n")).accepted


def test_without_a_sim_trust_the_simulated_paravisor_is_refused(
    tpm: Swtpm, sim: sim_state.SimState, imds: FakeImds, tmp_path: Path
) -> None:
    provision(tpm, sim)
    csr, _ = csr_of(platform(tpm, imds, tmp_path))
    prod = Policy.from_toml(
        "[azure]\naccept_any_workload = true\n", source="p.toml", base_dir=tmp_path
    )
    verdict = judge(csr, prod)
    # The chain ends at a root that is no pinned AMD ARK: the SNP chain check refuses it.
    assert verdict.reason == "snp.chain"
    assert "azure.vendor_root" not in [c.id for c in verdict.checks]


# --- detection, VCEK sources, IMDS ----------------------------------------------------------


def test_a_tpm_without_an_hcl_report_is_not_azure(
    tpm: Swtpm, imds: FakeImds, tmp_path: Path
) -> None:
    plat = platform(tpm, imds, tmp_path)
    found = plat.detect()
    assert (found.usable, found.nv, found.tpm, found.library) == (False, False, None, None)
    assert not plat.available()
    with pytest.raises(PlatformUnavailable, match="no HCL report"):
        plat.evidence_extension(bytes(64))


def test_garbage_in_the_nv_index_is_named(tpm: Swtpm, imds: FakeImds, tmp_path: Path) -> None:
    with open_tpm(tpm.tcti) as handle:
        handle.nv_define_and_write(NV_INDEX, b"HCLA" + bytes(100))
    found = platform(tpm, imds, tmp_path).detect()
    assert (found.nv, found.kind) == (True, None)
    assert "shorter than its fixed part" in (found.report_error or "")
    with pytest.raises(AzurePlatformError, match="NV 0x01400001: HCL report"):
        platform(tpm, imds, tmp_path).evidence_extension(bytes(64))


def test_no_tpm_at_all(tmp_path: Path) -> None:
    plat = AzurePlatform(tcti=f"device:{tmp_path}/tpmrm0")
    found = plat.detect()
    assert not found.usable and "does not exist" in (found.tpm or "")


def test_thim_down_falls_back_to_the_vcek_cache(
    tpm: Swtpm, sim: sim_state.SimState, imds: FakeImds, tmp_path: Path
) -> None:
    provision(tpm, sim)
    imds.thim_status = 503
    plat = platform(tpm, imds, tmp_path)
    # The cache the snp platform keeps, by product, chip and TCB (as AMD KDS would serve).
    report = parse_hcl_report(provision(tpm, sim)).hardware_report
    parsed = parse_report(report)
    product = parsed.product
    assert product is not None
    name = f"vcek-{product.value}-{parsed.chip_id[: product.hwid_size].hex()[:32]}-"
    cached = tmp_path / f"{name}{parsed.reported_tcb.raw:016x}.der"
    cached.write_bytes(sim.vcek.public_bytes(Encoding.DER))
    evidence = evidence_of(csr_of(plat)[0])
    assert [c.subject for c in evidence.certificates] == [sim.vcek.subject]


def test_thim_down_and_no_vcek_anywhere_is_one_line(
    tpm: Swtpm, sim: sim_state.SimState, imds: FakeImds, tmp_path: Path
) -> None:
    provision(tpm, sim)
    imds.thim_status = 404

    class NoKds:
        def vcek(self, *args: object) -> bytes:
            raise CollateralMissingError("AMD KDS: unreachable in this test")

        def cert_chain(self, *args: object) -> bytes:
            raise AssertionError

        def crl(self, *args: object) -> bytes:
            raise AssertionError

    plat = AzurePlatform(
        tcti=tpm.tcti, imds=Imds(imds.url, retries=0), cache_dir=tmp_path, fetcher=NoKds()
    )
    with pytest.raises(AzurePlatformError, match=r"no VCEK: IMDS GET .* \(HTTP 404\)"):
        plat.evidence_extension(bytes(64))


def test_imds_retries_then_names_the_failure() -> None:
    with FakeImds() as fake:
        sleeps: list[float] = []
        client = Imds(fake.url, retries=2, backoff=0.01, sleep=sleeps.append)
        with pytest.raises(ImdsError, match=r"POST .*/acc/tdquote failed \(HTTP 500\)"):
            client.td_quote(bytes(1024))
        assert sleeps == [0.01, 0.02]
        assert len([r for r in fake.requests if r[0] == "POST"]) == 3


# --- a software "TPM": what a hostile or unusual TPM could sign --------------------------------


def software_quote(
    sim: sim_state.SimState, key: ec.EllipticCurvePrivateKey, attest_of: object
) -> bytes:
    """A CSR for ``key`` whose quote ``attest_of(binding)`` is signed by a Python RSA AK."""
    ak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    report = sim_azure.snp_hcl_report(sim, ak.public_key())
    binding = hashlib.sha512(identity.spki_der(key) + CLAIMS.to_der()).digest()
    attest = attest_of(binding)  # type: ignore[operator]
    signature = ak.sign(attest, padding.PKCS1v15(), hashes.SHA256())
    quote = TpmQuote(attest, encode_rsassa_signature(signature), PCR_VALUES)
    return resigned(key, AzureEvidence(report, quote, certificates=sim.chain))


PCR_VALUES = tuple(bytes([i]) * 32 for i in range(24))


@pytest.mark.parametrize("size", [32, 48])
def test_qualifying_data_cut_to_a_smaller_tpm_is_accepted(
    sim: sim_state.SimState, tmp_path: Path, size: int
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    csr = software_quote(
        sim, key, lambda b: build_attest(extra_data=b[:size], pcr_values=PCR_VALUES)
    )
    assert judge(csr, policy(sim, tmp_path)).accepted


@pytest.mark.parametrize(
    ("attest_of", "want"),
    [
        (lambda b: build_attest(extra_data=b[:20], pcr_values=PCR_VALUES),
         ("binding.report_data", "binding.report_data")),
        (lambda b: build_attest(extra_data=b"", pcr_values=PCR_VALUES),
         ("binding.report_data", "binding.report_data")),
        (lambda b: b"\xff\x54\x43\x48" + build_attest(extra_data=b, pcr_values=PCR_VALUES)[4:],
         ("azure.quote", "azure.quote")),
        (lambda b: build_attest(extra_data=b, pcr_values=PCR_VALUES)[:4] + b"\x80\x14"
         + build_attest(extra_data=b, pcr_values=PCR_VALUES)[6:],
         ("azure.quote", "azure.quote")),
        (lambda b: build_attest(extra_data=b, pcr_values=PCR_VALUES[:8], pcrs=range(8)),
         ("azure.pcr_digest", "azure.pcr_digest")),
    ],
)  # fmt: skip
def test_signed_but_wrong_quotes_are_refused(
    sim: sim_state.SimState, tmp_path: Path, attest_of: object, want: tuple[str, str]
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    assert failed(judge(software_quote(sim, key, attest_of), policy(sim, tmp_path))) == want


# --- the TDX flavour: the TDREPORT goes to IMDS, which answers with a quote ---------------------


def td_report(report_data: bytes) -> bytes:
    """A TDREPORT's layout (type 0x81, report_data at 128, MRTD at 528): MAC'd by nobody."""
    report = bytearray(1024)
    report[0] = 0x81
    report[128:192] = report_data
    report[528:576] = b"\x77" * 48
    return bytes(report)


def quote_of(report: bytes, *, report_data: bytes | None = None) -> bytes:
    """A v4 TD quote's header and body for ``report`` (unsigned: the Keep does not verify)."""
    body = bytearray(584)
    body[136:184] = report[528:576]
    body[520:584] = report[128:192] if report_data is None else report_data
    header = struct.pack("<HHI", 4, 2, 0x81) + bytes(40)
    return header + bytes(body) + struct.pack("<I", 0)


def provision_tdx(tpm: Swtpm) -> bytes:
    with open_tpm(tpm.tcti) as handle:
        ak = sim_azure.ensure_ak(handle)
        claims = runtime_claims_json(ak=ak)
        report = td_report(hashlib.sha256(claims).digest() + bytes(32))
        hcl = build_hcl_report(HardwareKind.TDX, report, claims)
        sim_azure.install_hcl_report(handle, hcl)
    return report


def test_tdx_keep_sends_the_quote_imds_made_of_its_tdreport(
    tpm: Swtpm, imds: FakeImds, tmp_path: Path
) -> None:
    report = provision_tdx(tpm)
    imds.quote_of = quote_of
    plat = platform(tpm, imds, tmp_path)
    assert plat.detect().kind is HardwareKind.TDX
    evidence = evidence_of(csr_of(plat)[0])
    assert imds.td_reports == [report]  # the TDREPORT, base64url, as Azure's IMDS takes it
    assert evidence.td_quote == quote_of(report)
    assert evidence.certificates == ()
    assert ("POST", "/acc/tdquote") in [r[:2] for r in imds.requests]


def test_tdx_quote_over_other_report_data_is_refused_by_the_keep(
    tpm: Swtpm, imds: FakeImds, tmp_path: Path
) -> None:
    provision_tdx(tpm)
    imds.quote_of = lambda report: quote_of(report, report_data=bytes(64))
    with pytest.raises(AzurePlatformError, match="other report_data than the TDREPORT"):
        platform(tpm, imds, tmp_path).evidence_extension(bytes(64))


def test_tdx_keep_without_imds_says_so(tpm: Swtpm, imds: FakeImds, tmp_path: Path) -> None:
    provision_tdx(tpm)
    with pytest.raises(ImdsError, match=r"POST .*/acc/tdquote failed \(HTTP 500\)"):
        platform(tpm, imds, tmp_path).evidence_extension(bytes(64))


# --- donjon platform info -----------------------------------------------------------------------


def test_platform_info_shows_the_azure_tree(
    tpm: Swtpm, sim: sim_state.SimState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def azure_of(root: Path) -> Any:
        reports = probe(root, system="Linux", state_dir=tmp_path / "state")
        return next(r for r in reports if r.name == "azure")

    monkeypatch.delenv("DONJON_TPM_TCTI", raising=False)
    none = azure_of(tmp_path / "empty-root")
    assert not none.usable
    assert (none.checks[0].ok, none.checks[0].text) == (False, "vTPM: /dev/tpmrm0")
    monkeypatch.setenv("DONJON_TPM_TCTI", tpm.tcti)
    bare = azure_of(tmp_path / "empty-root")
    assert not bare.usable
    assert (False, "HCL report in vTPM NV index 0x01400001") in [
        (c.ok, c.text) for c in bare.checks
    ]
    provision(tpm, sim)
    found = azure_of(tmp_path / "empty-root")
    assert found.usable
    assert [c.text for c in found.checks if c.ok][-2:] == [
        "HCL report holds a SEV-SNP report (azure-snp)",
        "provider donjon.keep.platforms.azure",
    ]
