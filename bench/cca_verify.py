"""Arm CCA token verification rate per core vs its two raw ECDSA P-384 verifications, same run.

Donjon: ``verify_evidence`` on the real trustee CCA token (shared vectors), with its
CPAK from a trust-anchor store in the ``[cca]`` policy and its reference values: strict
CBOR parse of the collection, both COSE_Sign1 and every claim, CPAK lookup, the
platform signature, the realm signature by the RAK, the RAK binding, lifecycle,
reference values and the shared rules.
Baseline: ``cryptography``'s ECDSA P-384/SHA-384 verify of the platform token's and the
realm token's Sig_structure (prepared once), with keys already loaded: the floor any
CCA verifier must pay. Goal: Donjon >= 60 % of it.

    python bench/cca_verify.py [--repeat 15] [--seconds 0.3] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import UTC, datetime

from common import Row, report
from snp_verify import rate, vectors_dir

NOW = datetime(2025, 1, 1, tzinfo=UTC)  # CCA keys have no validity window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    args = parser.parse_args()
    vectors = vectors_dir()
    if vectors is None:
        raise SystemExit("cca_verify: shared vectors not found (set DONJON_VECTORS)")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    import cbor2
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from donjon.attestation import Policy, TrustStore
    from donjon.attestation.cca.anchors import load_cpak
    from donjon.attestation.csr import verify_evidence
    from donjon.attestation.verifiers import REGISTRY

    cca = vectors / "cca/trustee"
    token = (cca / "cca-example-token.cbor").read_bytes()
    policy = Policy.from_toml(
        f'[cca]\ntrust_anchors = "{cca / "tastore.json"}"\n'
        f'reference_values = "{cca / "rvstore.json"}"\naccept_any_workload = true\n',
        source="bench",
        base_dir=cca,
    )
    form = next(f for f in REGISTRY.bare_formats if f.platform == "cca")
    trust = TrustStore()

    def donjon() -> None:
        verdict = verify_evidence(token, form, policy=policy, trust=trust, now=NOW)
        assert verdict.accepted, verdict.error

    # The baseline's inputs, prepared once: keys, DER signatures, Sig_structures.
    cpak = load_cpak(cca / "cpak-pub.json").bare[0].key
    collection = cbor2.loads(token).value
    prepared = []
    for label, key in ((44234, cpak), (44241, None)):
        protected, _, payload, sig = cbor2.loads(collection[label]).value
        if key is None:  # the RAK: the realm claim 44237, an uncompressed P-384 point
            point = cbor2.loads(payload)[44237]
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), point)
        tbs = cbor2.dumps(["Signature1", protected, b"", payload])
        der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
        prepared.append((key, der, tbs))

    def raw_two_ecdsa() -> None:
        for key, der, tbs in prepared:
            key.verify(der, tbs, ec.ECDSA(hashes.SHA384()))

    donjon()
    raw_two_ecdsa()
    base, ours = [], []
    for _ in range(args.repeat):  # interleaved, so machine load hits both alike
        base.append(rate(raw_two_ecdsa, args.seconds))
        ours.append(rate(donjon, args.seconds))
    b, d = statistics.median(base), statistics.median(ours)
    ratios = sorted(x / y for x, y in zip(ours, base, strict=True))
    paired = statistics.median(ratios)
    rows = [Row("CCA token verify (vector, store + rvstore)", "/s", d, b, "ratio >= 0.60",
                paired >= 0.60)]  # fmt: skip
    notes = [
        f"baseline = two raw ECDSA P-384 verifies (platform + realm), {b:,.0f}/s on one core",
        f"per verification: Donjon {1e6 / d:,.0f} us, two raw ECDSA {1e6 / b:,.0f} us; "
        f"median of {args.repeat} x {args.seconds:g} s",
        f"Donjon/raw ratio per round: median {paired:.3f}, min {ratios[0]:.3f}, "
        f"max {ratios[-1]:.3f}",
    ]
    report(
        "cca_verify: Arm CCA token verifications per second per core (higher is better)",
        rows,
        args.json,
        notes,
    )


if __name__ == "__main__":
    main()
