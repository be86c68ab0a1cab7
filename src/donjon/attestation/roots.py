"""Pinned SHA-256 fingerprints of the vendor root certificates.

These are published facts (the AMD KDS ``cert_chain`` roots, Intel's SGX Root CA). The certificates
themselves come from a trust directory or from the vendor, and any root whose
fingerprint is not listed here is refused.
"""

from __future__ import annotations

from donjon.attestation.snp.product import Product

#: AMD Root Keys (ARK), self-signed RSA-4096 RSASSA-PSS, one per product line.
AMD_ARK_SHA256: dict[Product, str] = {
    Product.MILAN: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    Product.GENOA: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    Product.TURIN: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}

#: AWS Nitro Enclaves root G1 ("aws.nitro-enclaves"), self-signed ECDSA P-384, valid
#: 2019-10-28..2049-10-28 (AWS, "Verifying the root of trust").
AWS_NITRO_ROOT_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
#: Where AWS publishes it, for the message that says it is missing.
AWS_NITRO_ROOT_URL = "https://aws-nitro-enclaves.amazonaws.com/AWS_NitroEnclaves_Root-G1.zip"
#: The Intel SGX Root CA (ECDSA P-256, self-signed, valid 2018-05-21..2049-12-31): the root of
#: every PCK, TCB Signing and CRL chain of SGX and TDX (Intel PCS, ``IntelSGXRootCA.der``).
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
