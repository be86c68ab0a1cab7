"""Sizes, offsets and codes of Intel DCAP quotes (SGX v3, TDX v4 and v5).

Sources: Intel SGX ECDSA Quote Library API (quote format, appendix A), Intel TDX
DCAP Quoting Library API (TD quote v4 and v5 layouts).
"""

from __future__ import annotations

HEADER_SIZE = 48
#: v5 inserts ``u16 body type, u32 body size`` after the header.
BODY_DESCRIPTOR_SIZE = 6

TEE_SGX = 0x00000000
TEE_TDX = 0x00000081
TEE_NAMES = {TEE_SGX: "SGX", TEE_TDX: "TDX"}

#: Attestation key types (header ``att_key_type``).
KEY_ECDSA_P256 = 2
KEY_ECDSA_P384 = 3
KEY_NAMES = {KEY_ECDSA_P256: "ECDSA-256-with-P-256", KEY_ECDSA_P384: "ECDSA-384-with-P-384"}

#: Intel's QE vendor ID: the only quoting enclaves Donjon accepts.
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

SGX_REPORT_SIZE = 384
TD_REPORT10_SIZE = 584
TD_REPORT15_SIZE = 648

#: v5 body types.
BODY_SGX = 1
BODY_TD10 = 2
BODY_TD15 = 3
BODY_SIZES = {BODY_SGX: SGX_REPORT_SIZE, BODY_TD10: TD_REPORT10_SIZE, BODY_TD15: TD_REPORT15_SIZE}
BODY_NAMES = {
    BODY_SGX: "SGX enclave report",
    BODY_TD10: "TDX 1.0 TD report",
    BODY_TD15: "TDX 1.5 TD report",
}

SIGNATURE_SIZE = 64  # r || s, big-endian, P-256
ATTESTATION_KEY_SIZE = 64  # x || y, big-endian, P-256

#: Certification data types (Intel SGX ECDSA Quote Library API, "Certification Data").
CERT_PPID_CLEAR = 1
CERT_PPID_RSA2048 = 2
CERT_PPID_RSA3072 = 3
CERT_PCK_LEAF = 4
CERT_PCK_CHAIN = 5
CERT_QE_REPORT = 6
CERT_PLATFORM_MANIFEST = 7
CERT_TYPE_NAMES = {
    CERT_PPID_CLEAR: "PCK identifier: PPID in clear text, CPUSVN and PCESVN",
    CERT_PPID_RSA2048: "PCK identifier: PPID encrypted with RSA-2048-OAEP, CPUSVN and PCESVN",
    CERT_PPID_RSA3072: "PCK identifier: PPID encrypted with RSA-3072-OAEP, CPUSVN and PCESVN",
    CERT_PCK_LEAF: "PCK leaf certificate alone",
    CERT_PCK_CHAIN: "PCK certificate chain (PEM)",
    CERT_QE_REPORT: "QE report certification data",
    CERT_PLATFORM_MANIFEST: "platform manifest",
}

# --- the SGX enclave report body (sgx_report_body_t), offsets inside the 384 bytes ---------
SGX_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("cpusvn", 0, 16),
    ("miscselect", 16, 4),
    ("reserved1", 20, 12),
    ("isv_ext_prod_id", 32, 16),
    ("attributes", 48, 16),
    ("mrenclave", 64, 32),
    ("reserved2", 96, 32),
    ("mrsigner", 128, 32),
    ("reserved3", 160, 32),
    ("config_id", 192, 64),
    ("isvprodid", 256, 2),
    ("isvsvn", 258, 2),
    ("config_svn", 260, 2),
    ("reserved4", 262, 42),
    ("isv_family_id", 304, 16),
    ("report_data", 320, 64),
)

#: SGX ATTRIBUTES.FLAGS bits (the first 8 bytes of ``attributes``, little-endian).
SGX_FLAG_BITS: dict[str, int] = {
    "INIT": 1 << 0,
    "DEBUG": 1 << 1,
    "MODE64BIT": 1 << 2,
    "PROVISIONKEY": 1 << 4,
    "EINITTOKENKEY": 1 << 5,
    "CET": 1 << 6,
    "KSS": 1 << 7,
    "AEXNOTIFY": 1 << 10,
}

# --- the TD report body (TDX 1.0, plus the TDX 1.5 tail) ---------------------------------------
TD_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("tee_tcb_svn", 0, 16),
    ("mrseam", 16, 48),
    ("mrsignerseam", 64, 48),
    ("seam_attributes", 112, 8),
    ("td_attributes", 120, 8),
    ("xfam", 128, 8),
    ("mrtd", 136, 48),
    ("mrconfigid", 184, 48),
    ("mrowner", 232, 48),
    ("mrownerconfig", 280, 48),
    ("rtmr0", 328, 48),
    ("rtmr1", 376, 48),
    ("rtmr2", 424, 48),
    ("rtmr3", 472, 48),
    ("report_data", 520, 64),
)
TD15_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("tee_tcb_svn2", 584, 16),
    ("mrservicetd", 600, 48),
)

#: TD ATTRIBUTES bits (u64 little-endian; Intel TDX module ABI, "TD attributes").
TD_ATTRIBUTE_BITS: dict[str, int] = {
    "DEBUG": 1 << 0,
    "SEPT_VE_DISABLE": 1 << 28,
    "MIGRATABLE": 1 << 29,
    "PKS": 1 << 30,
    "KL": 1 << 31,
    "PERFMON": 1 << 63,
}
