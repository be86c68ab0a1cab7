"""Strict parsing of the Azure formats: the HCL report, runtime claims, TPMS_ATTEST,
TPMT_SIGNATURE, Donjon's extension, Trustee's JSON, and the ``[azure]`` policy section.

Inputs are built here from the layouts; each malformed one must be refused with a
message that names what is wrong.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from donjon.attestation.azure.evidence import (
    AzureEvidence,
    TpmQuote,
    decode_azure_evidence,
    encode_azure_evidence,
    parse_trustee_evidence,
)
from donjon.attestation.azure.hcl import (
    REQUEST_OFFSET,
    HardwareKind,
    build_hcl_report,
    parse_hcl_report,
)
from donjon.attestation.azure.runtime import (
    attestation_key,
    parse_runtime_claims,
    runtime_claims_json,
)
from donjon.attestation.azure.tpm import (
    build_attest,
    encode_rsassa_signature,
    parse_attest,
    parse_rsassa_signature,
)
from donjon.attestation.errors import (
    AttestationKeyError,
    HclReportError,
    MalformedEvidenceError,
    PolicyError,
    RuntimeClaimsError,
    TpmQuoteFormatError,
    TpmQuoteSignatureError,
    UnsupportedVersionError,
)
from donjon.attestation.policy import Policy

AK = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
CLAIMS = runtime_claims_json(ak=AK)
SNP_REPORT = bytes(range(256)) * 4 + bytes(160)  # layout only: 1184 bytes


def hcl(**header: int) -> bytes:
    data = bytearray(build_hcl_report(HardwareKind.SNP, SNP_REPORT, CLAIMS))
    fields = ("signature", "version", "report_size", "request_type", "status", "r0")
    for name, value in header.items():
        struct.pack_into("<I", data, 4 * fields.index(name), value)
    return bytes(data)


def request(**values: int) -> bytes:
    data = bytearray(build_hcl_report(HardwareKind.SNP, SNP_REPORT, CLAIMS))
    fields = ("data_size", "version", "report_type", "hash_type", "variable_size")
    for name, value in values.items():
        struct.pack_into("<I", data, REQUEST_OFFSET + 4 * fields.index(name), value)
    return bytes(data)


# --- the HCL report --------------------------------------------------------------------------


def test_a_built_report_parses_back() -> None:
    parsed = parse_hcl_report(build_hcl_report(HardwareKind.SNP, SNP_REPORT, CLAIMS) + bytes(99))
    assert (parsed.kind, parsed.version) == (HardwareKind.SNP, 2)
    assert (parsed.hardware_report, parsed.runtime_claims) == (SNP_REPORT, CLAIMS)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (hcl(signature=0x41424344), HclReportError, "is not 'HCLA'"),
        (hcl(version=3), UnsupportedVersionError, "header version 3 is unknown"),
        (hcl(request_type=1), HclReportError, "request type 1 is not the AK-certificate"),
        (hcl(status=5), HclReportError, "status 0x5"),
        (hcl(r0=1), HclReportError, "reserved header words"),
        (hcl(report_size=100), HclReportError, "report_size 100 should be"),
        (request(version=2), UnsupportedVersionError, "request data version 2"),
        (request(report_type=3), HclReportError, "neither SNP (2) nor TDX (4)"),
        (request(hash_type=2), UnsupportedVersionError, "SHA-384 is not supported"),
        (request(hash_type=9), UnsupportedVersionError, "type 9 is not supported"),
        (request(data_size=7), HclReportError, "request data size 7"),
        (request(variable_size=0), HclReportError, "size 0 is out of range"),
        (b"HCLA" + bytes(100), HclReportError, "shorter than its fixed part"),
        (build_hcl_report(HardwareKind.SNP, SNP_REPORT, CLAIMS)[:-1], HclReportError,
         "truncated"),
        (build_hcl_report(HardwareKind.SNP, SNP_REPORT, CLAIMS) + b"\0\1", HclReportError,
         "non-zero bytes after the report"),
    ],
)  # fmt: skip
def test_malformed_hcl_reports_are_refused(
    data: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_hcl_report(data)


def test_tdx_padding_must_be_zero() -> None:
    report = bytearray(build_hcl_report(HardwareKind.TDX, bytes(1024), CLAIMS))
    report[32 + 1100] = 1
    with pytest.raises(HclReportError, match="padding after the TDREPORT"):
        parse_hcl_report(bytes(report))


# --- runtime claims --------------------------------------------------------------------------


def claims_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(CLAIMS)
    return doc


def edited(change: Any) -> bytes:
    doc = claims_doc()
    change(doc)
    return json.dumps(doc).encode()


def test_claims_parse_and_name_the_ak() -> None:
    claims = parse_runtime_claims(CLAIMS)
    assert attestation_key(claims).public_numbers() == AK.public_numbers()
    assert (claims.vm.console_enabled, claims.vm.secure_boot) == (False, True)
    assert claims.user_data == bytes(64)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff{}", "not UTF-8"),
        (b"[1]", "not a JSON object"),
        (b'{"keys": NaN}', "NaN is not valid JSON"),
        (CLAIMS[:-1] + b',"keys":[]}', "'keys' appears twice"),
        (edited(lambda d: d.update({"x-ms-new": 1})), "'x-ms-new' is unknown"),
        (edited(lambda d: d["vm-configuration"].update({"hot-plug": True})),
         "'hot-plug' is unknown"),
        (edited(lambda d: d["vm-configuration"].update({"console-enabled": 1})),
         "'console-enabled' must be a bool"),
        (edited(lambda d: d["vm-configuration"].pop("vmUniqueId")), "lacks 'vmUniqueId'"),
        (edited(lambda d: d.pop("vm-configuration")), "no 'vm-configuration'"),
        (edited(lambda d: d["keys"][0].update({"kid": "Other"})), "unknown kid 'Other'"),
        (edited(lambda d: d["keys"][0].update({"kty": "EC"})), "'EC' key, not RSA"),
        (edited(lambda d: d["keys"][0].update({"key_ops": ["encrypt"]})),
         "key_ops ['encrypt'] should be ['sign']"),
        (edited(lambda d: d["keys"][0].update({"n": "a+b/"})), "not unpadded base64url"),
        (edited(lambda d: d["keys"][0].update({"alg": "RS256"})), "unknown field 'alg'"),
        (edited(lambda d: d["keys"].append(dict(d["keys"][0]))), "a key id appears twice"),
        (edited(lambda d: d.update({"user-data": "abc"})), "odd number of digits"),
        (edited(lambda d: d.update({"user-data": "00" * 65})), "up to 64 bytes of hex"),
    ],
)  # fmt: skip
def test_malformed_runtime_claims_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(RuntimeClaimsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_runtime_claims(raw)


def test_the_attestation_key_must_be_there_and_strong() -> None:
    no_ak = edited(lambda d: d["keys"][0].update({"kid": "HCLEkPub", "key_ops": ["encrypt"]}))
    with pytest.raises(AttestationKeyError, match="no HCLAkPub"):
        attestation_key(parse_runtime_claims(no_ak))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(AttestationKeyError, match="RSA-1024"):
        attestation_key(parse_runtime_claims(runtime_claims_json(ak=small)))
    even = base64.urlsafe_b64encode(b"\x01\x00").rstrip(b"=").decode()
    with pytest.raises(AttestationKeyError, match="exponent 256"):
        attestation_key(parse_runtime_claims(edited(lambda d: d["keys"][0].update({"e": even}))))


# --- TPMS_ATTEST, TPMT_SIGNATURE -------------------------------------------------------------

PCRS = [bytes([i]) * 32 for i in range(24)]


def test_attest_round_trip() -> None:
    info = parse_attest(build_attest(extra_data=b"n" * 48, pcr_values=PCRS, clock=7))
    assert (info.extra_data, info.clock, info.safe) == (b"n" * 48, 7, True)
    assert info.selections[0].pcrs == tuple(range(24))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: b"\xff\x54\x43\x48" + a[4:], "magic 0xff544348 is not TPM_GENERATED"),
        (lambda a: a[:4] + b"\x80\x17" + a[6:], "type 0x8017 is not a quote"),
        (lambda a: a + b"\0", "1 trailing bytes"),
        (lambda a: a[:-3], "truncated in pcrDigest"),
        (lambda a: a[:6] + b"\x00\x50" + a[8:], "qualifiedSigner is 80 bytes"),
    ],
)
def test_malformed_attest_is_refused(change: Any, message: str) -> None:
    attest = build_attest(extra_data=b"n" * 32, pcr_values=PCRS)
    with pytest.raises(TpmQuoteFormatError, match=message):
        parse_attest(change(attest))


def test_unsafe_clock_flag_and_oversized_extra_data() -> None:
    attest = bytearray(build_attest(extra_data=b"n" * 32, pcr_values=PCRS))
    safe_at = 4 + 2 + 2 + 34 + 2 + 32 + 16
    attest[safe_at] = 2
    with pytest.raises(TpmQuoteFormatError, match="safe is 2"):
        parse_attest(bytes(attest))
    with pytest.raises(TpmQuoteFormatError, match="extraData is 65 bytes"):
        parse_attest(build_attest(extra_data=b"n" * 65, pcr_values=PCRS))


def test_only_rsassa_sha256_signatures_are_read() -> None:
    assert parse_rsassa_signature(encode_rsassa_signature(b"s" * 256)) == b"s" * 256
    ecdsa = struct.pack(">HHH", 0x0018, 0x000B, 4) + b"sign"
    with pytest.raises(TpmQuoteSignatureError, match="0x0018, not RSASSA"):
        parse_rsassa_signature(ecdsa)
    sha1 = struct.pack(">HHH", 0x0014, 0x0004, 4) + b"sign"
    with pytest.raises(TpmQuoteSignatureError, match="hash 0x0004, not SHA-256"):
        parse_rsassa_signature(sha1)
    with pytest.raises(TpmQuoteSignatureError, match="trailing"):
        parse_rsassa_signature(encode_rsassa_signature(b"s" * 256) + b"x")


# --- Donjon's extension and Trustee's JSON ---------------------------------------------------


def test_evidence_extension_round_trips_and_is_strict() -> None:
    evidence = AzureEvidence(b"HCLA", TpmQuote(b"a", b"s", (bytes(32),)), td_quote=b"q")
    der = encode_azure_evidence(evidence)
    assert decode_azure_evidence(der) == evidence
    with pytest.raises(MalformedEvidenceError, match="trailing"):
        decode_azure_evidence(der + b"\0")
    bumped = bytearray(der)
    assert bumped[2:5] == b"\x02\x01\x01"  # version INTEGER 1, right after the SEQUENCE header
    bumped[4] = 2
    with pytest.raises(UnsupportedVersionError, match="version 2"):
        decode_azure_evidence(bytes(bumped))


def trustee(**doc: Any) -> bytes:
    quote = {"message": "00", "signature": "00", "pcrs": []}
    return json.dumps({"version": 1, "hcl_report": "SENMQQ", "tpm_quote": quote, **doc}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (trustee(extra=1), "unknown field 'extra'"),
        (trustee(version=2), "version 2 is unknown"),
        (trustee(vcek="MII", td_quote="AA"), "both a VCEK"),
        (trustee(tpm_quote={"message": "00"}), "exactly message, signature and pcrs"),
        (trustee(hcl_report="***"), "hcl_report is not base64"),
        (trustee(tpm_quote={"message": "zz", "signature": "00", "pcrs": []}),
         "message is not hex"),
        (trustee(hcl_report=[1, 2, 300]), "is not a list of bytes"),
        (b'{"report": [], "quote": {}}', "expected hcl_report/tpm_quote"),
        (b'{"hcl_report": 1, "hcl_report": 2}', "a field appears twice"),
    ],
)  # fmt: skip
def test_malformed_trustee_json_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=message):
        parse_trustee_evidence(data)


# --- [azure] ---------------------------------------------------------------------------------


def load(text: str) -> Policy:
    return Policy.from_toml(text, source="azure.toml", base_dir=Path.cwd())


def test_azure_section_parses_pcrs_flags_and_hardware() -> None:
    policy = load(
        "[azure]\n"
        'pcrs = { 7 = "' + "ab" * 32 + '", 11 = ["' + "cd" * 32 + '", "' + "ef" * 32 + '"] }\n'
        "secure_boot = false\nallow_console = true\n"
        'vm_unique_id = ["6332533d-5649-4d02-8aa7-8f64b7c3ee21"]\n'
        "[azure.snp]\n"
        'measurement = "' + "11" * 48 + '"\ncrl = "if-available"\n'
    )
    azure: Any = policy.tees["azure"]
    assert azure.pcrs == {7: frozenset({b"\xab" * 32}), 11: frozenset({b"\xcd" * 32, b"\xef" * 32})}
    assert (azure.secure_boot, azure.tpm_enabled, azure.allow_console) == (False, True, True)
    assert azure.vm_unique_id == frozenset({"6332533D-5649-4D02-8AA7-8F64B7C3EE21"})
    assert azure.snp.crl == "if-available"
    assert azure.pinned() == ("pcrs", "snp.measurement")  # the VM id is the cloud's to give


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[azure]\nbogus = 1\n", r"\[azure\] bogus: unknown key"),
        ('[azure]\npcrs = { 24 = "' + "ab" * 32 + '" }\n', "not a PCR index 0..23"),
        ('[azure]\npcrs = { 7 = "abcd" }\n', "is 2 bytes, expected 32"),
        ("[azure]\npcrs = {}\n", "must be a table"),
        ("[azure]\nallow_console = 1\n", "must be true or false"),
        ("[azure.snp]\naccept_any_workload = true\n",
         r"\[azure.snp\] accept_any_workload: is a rule of the whole section"),
        ("[azure.snp]\nbogus = 1\n", r"\[azure.snp\] bogus: unknown key"),
        ("[azure]\nsnp = 1\n", "must be a table"),
    ],
)  # fmt: skip
def test_bad_azure_sections_are_refused(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load(text)


def test_an_azure_section_that_pins_nothing_must_say_so() -> None:
    assert load("[azure]\n").unpinned() == [
        "[azure] pins nothing (no pcrs, [azure.snp] measurement or [azure.tdx] "
        "mrtd): any genuine azure guest on any cloud would get a certificate; "
        "pin one, or say accept_any_workload = true in [azure]"
    ]
    assert load("[azure]\naccept_any_workload = true\n").unpinned() == []


def test_azure_tdx_takes_the_tdx_keys() -> None:
    azure: Any = load('[azure]\n[azure.tdx]\nmrtd = "' + "22" * 48 + '"\n').tees["azure"]
    assert azure.tdx.allowed("mrtd") == frozenset({b"\x22" * 48})
    assert azure.pinned() == ("tdx.mrtd",)
    with pytest.raises(PolicyError, match=r"\[azure.tdx\] allowed_workloads: is a rule"):
        load("[azure.tdx]\nallowed_workloads = []\n")
