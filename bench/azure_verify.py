"""Azure CVM verification rate per core vs the raw signature checks it must make, same run.

Donjon: ``verify_evidence`` on the real Azure SNP vector (trustee's az-snp-vtpm HCL
report, its vTPM quote and the VCEK chain THIM served), collateral cached (one
TrustStore: the ARK -> ASK -> VCEK chain and CRL result are reused): HCL report,
runtime claims, the whole SNP pipeline, report_data, AK, quote signature, TPMS_ATTEST,
PCR digest, and the ``[azure]`` + ``[azure.snp]`` policy.
Baseline: the two signatures any Azure verifier must check, with ``cryptography``: one
ECDSA P-384/SHA-384 verify (the SNP report) plus one RSA-2048 PKCS#1 v1.5/SHA-256 verify
(the TPM quote). Goal: Donjon >= 60 % of that.

    python bench/azure_verify.py [--repeat 15] [--seconds 0.3] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import struct
from datetime import UTC, datetime

from common import REPO, Row, rate, report, vectors_dir

#: Inside the VCEK's life (from 2023-05-02) and the Milan CRL's window (to 2023-05-09), so
#: the required revocation check runs against a current CRL.
NOW = datetime(2023, 5, 5, tzinfo=UTC)
POLICY = "[azure]\naccept_any_workload = true\nallow_console = true\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    args = parser.parse_args()
    vectors = vectors_dir()
    if vectors is None:
        raise SystemExit("azure_verify: shared vectors not found (set DONJON_VECTORS)")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from donjon.attestation import Policy, TrustStore
    from donjon.attestation.csr import verify_evidence
    from donjon.attestation.registry import VerifyOptions
    from donjon.attestation.trust import parse_cert_bundle
    from donjon.attestation.verifiers import REGISTRY

    folder = vectors / "azure-cvm/trustee/az-snp-vtpm"
    hcl = (folder / "hcl-report.bin").read_bytes()
    quote_json = (folder / "tpm-quote-v1.json").read_bytes()
    chain = parse_cert_bundle((folder / "vcek.pem").read_bytes(), "vcek.pem")
    crl = x509.load_der_x509_crl((vectors / "amd-roots/crl_milan_2022-05-09.der").read_bytes())
    policy = Policy.from_toml(POLICY, source="bench", base_dir=REPO)
    found = REGISTRY.recognise(hcl)
    assert found is not None
    form, evidence = found
    options = VerifyOptions(
        material={"vcek": chain[0], "chain": tuple(chain[1:]), "tpm_quote": quote_json}
    )
    trust = TrustStore(certificates=chain[1:], crls=[crl])

    # The baseline's inputs, read straight from the layouts (not through Donjon).
    snp = hcl[32 : 32 + 1184]
    r = int.from_bytes(snp[0x2A0:0x2E8], "little")
    s = int.from_bytes(snp[0x2E8:0x330], "little")
    snp_signature, snp_signed = encode_dss_signature(r, s), snp[:0x2A0]
    vcek_key = chain[0].public_key()
    assert isinstance(vcek_key, ec.EllipticCurvePublicKey)
    (claims_size,) = struct.unpack_from("<I", hcl, 32 + 1184 + 16)
    claims = json.loads(hcl[32 + 1184 + 20 : 32 + 1184 + 20 + claims_size])
    jwk = next(k for k in claims["keys"] if k["kid"] == "HCLAkPub")

    def b64int(text: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")

    ak = rsa.RSAPublicNumbers(b64int(jwk["e"]), b64int(jwk["n"])).public_key()
    quote = json.loads(quote_json)
    message, signature = bytes.fromhex(quote["message"]), bytes.fromhex(quote["signature"])

    def raw_signatures() -> None:
        vcek_key.verify(snp_signature, snp_signed, ec.ECDSA(hashes.SHA384()))
        ak.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())

    def donjon() -> None:
        verdict = verify_evidence(
            evidence, form, policy=policy, trust=trust, now=NOW, options=options
        )
        assert verdict.accepted, verdict.reason

    donjon()  # warm the chain cache and fail early if the vector does not verify
    base, ours = [], []
    for _ in range(args.repeat):  # interleaved, so machine load hits both alike
        base.append(rate(raw_signatures, args.seconds))
        ours.append(rate(donjon, args.seconds))
    b, d = statistics.median(base), statistics.median(ours)
    ratios = sorted(x / y for x, y in zip(ours, base, strict=True))
    paired = statistics.median(ratios)
    rows = [
        Row("Azure SNP verify, collateral cached", "/s", d, b, "ratio >= 0.60", paired >= 0.60)
    ]
    notes = [
        f"baseline = ECDSA P-384 + RSA-2048 verify (cryptography), {b:,.0f}/s on one core",
        f"per verification: Donjon {1e6 / d:,.0f} us, raw signatures {1e6 / b:,.0f} us; "
        f"median of {args.repeat} x {args.seconds:g} s",
        f"Donjon/raw ratio per round: median {paired:.3f}, min {ratios[0]:.3f}, "
        f"max {ratios[-1]:.3f}",
    ]
    report(
        "azure_verify: Azure CVM verifications per second per core (higher is better)",
        rows,
        args.json,
        notes,
    )


if __name__ == "__main__":
    main()
