"""Write the fuzzers' seed corpus and fixtures from Donjon's own outputs.

Nothing here comes from ``../shared``: a simulated SEV-SNP hierarchy
(``donjon.keep.sim``, dated ``targets.NOW``) signs the reports, a Steward built
by ``donjon.steward.bootstrap`` issues certificates and CRLs, the Keep's own
code builds the CSRs, and the configs and policies are the project's examples
and docs. Run it again when a format changes:

    PYTHONPATH=src python fuzz/make_seeds.py

It replaces ``fuzz/seeds/`` and ``fuzz/fixtures/``; commit both.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from targets import (  # noqa: E402
    NOW,
    SIGNED_DIGEST,
    SIGNED_REPOSITORY,
    TARGETS,
    join_extensions,
    seed_name,
    signer_keys,
)


def main() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from donjon.attestation import oids
    from donjon.attestation.claims import AttestationResult, WorkloadClaims
    from donjon.attestation.evidence import DER_NULL, encode_enarx_snp
    from donjon.keep import identity
    from donjon.keep.platforms import nil
    from donjon.keep.platforms.sim import SimPlatform
    from donjon.keep.sim import state as sim_state
    from donjon.keep.sim.products import parse_product, parse_tcb
    from donjon.steward import wire
    from donjon.steward.bootstrap import StewardConfig, build_steward

    seeds: dict[str, list[bytes]] = {name: [] for name in TARGETS}
    fixtures = HERE / "fixtures"
    shutil.rmtree(fixtures, ignore_errors=True)
    fixtures.mkdir()
    work = Path(tempfile.mkdtemp(prefix="donjon-seeds-"))

    # A simulated TEE (Milan, report v3 and Genoa, report v5), dated NOW.
    platforms: list[SimPlatform] = []
    for product, version in (("Milan", 3), ("Genoa", 5)):
        line = parse_product(product)
        config = sim_state.SimConfig(
            line, parse_tcb("", line), sim_state.random_chip_id(line), version
        )
        directory = work / f"sim-{product}"
        sim_state.init(directory, config, now=NOW)
        platforms.append(SimPlatform(directory))
    milan = platforms[0].state()
    (fixtures / "sim-ark.pem").write_bytes(milan.ark.public_bytes(serialization.Encoding.PEM))

    # The Keep's CSRs: nil and sim, with workload claims.
    claims = WorkloadClaims(bytes(range(32)), bytes(range(32, 64)), "fuzz-seed")
    csrs: dict[str, bytes] = {}
    for name, platform in (("nil", nil.create(None)), ("sim", platforms[0])):
        key = identity.generate_key(platform)
        csr = identity.build_csr(key, claims, platform)
        csrs[name] = csr.public_bytes(serialization.Encoding.DER)
    # Enarx's SNP extension around a simulated report (its chain is not AMD's: refused
    # later, but every parser before the chain check runs).
    key = identity.generate_key(platforms[0])
    report = platforms[0].report(identity.report_data(key, claims))
    enarx_value = encode_enarx_snp(report, milan.vcek)
    enarx_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.UnrecognizedExtension(oids.WORKLOAD_CLAIMS, claims.to_der()), False)
        .add_extension(x509.UnrecognizedExtension(oids.ENARX_SNP, enarx_value), False)
        .sign(key, identity.signature_hash(key))
    )
    csrs["snp"] = enarx_csr.public_bytes(serialization.Encoding.DER)
    seeds["csr"] += list(csrs.values())

    def extensions(der: bytes) -> tuple[bytes | None, x509.ObjectIdentifier, bytes]:
        request = x509.load_der_x509_csr(der)
        found: dict[x509.ObjectIdentifier, bytes] = {}
        for ext in request.extensions:
            value = ext.value
            assert isinstance(value, x509.UnrecognizedExtension)
            found[ext.oid] = value.value
        claims_der = found.pop(oids.WORKLOAD_CLAIMS, None)
        [(oid, evidence)] = found.items()
        return claims_der, oid, evidence

    kinds = {oids.EVIDENCE_NIL: "nil", oids.EVIDENCE_SIM: "sim", oids.ENARX_SNP: "snp"}
    for der in csrs.values():
        claims_der, oid, evidence = extensions(der)
        seeds["csr_extensions"].append(join_extensions(kinds[oid], claims_der, evidence))
        seeds["csr_extensions"].append(join_extensions(kinds[oid], None, evidence))
        if oid == oids.EVIDENCE_SIM:
            seeds["snp_evidence"].append(b"\x01" + evidence)
    seeds["csr_extensions"].append(join_extensions("kvm", None, b""))
    seeds["snp_evidence"] += [b"\x00" + enarx_value, b"\x02" + DER_NULL, b"\x03"]

    # SNP reports (v3 and v5) and the simulated chain's certificates.
    for platform in platforms:
        seeds["snp_report"].append(platform.report(bytes(range(64))))
        state = platform.state()
        seeds["vcek"].append(state.vcek.public_bytes(serialization.Encoding.DER))
    seeds["vcek"].append(milan.ask.public_bytes(serialization.Encoding.DER))

    # A Steward (development policy: nil, and sim under the fixtures' ARK) issues for them.
    steward_dir = work / "steward"
    steward_dir.mkdir()
    policy = steward_dir / "policy.toml"
    policy.write_text(
        f'[nil]\nallow = true\n\n[sim]\ntrust = "{fixtures / "sim-ark.pem"}"\n'
        "min_reported_tcb = { bl = 0, tee = 0, snp = 0, ucode = 0 }\n"
    )
    steward, _ = build_steward(
        StewardConfig(state_dir=steward_dir, init=True, curve="p256", policy=policy,
                      development=True, now=NOW)
    )  # fmt: skip
    ca_pem = steward.ca.certificate_pem
    (fixtures / "steward-ca.pem").write_bytes(ca_pem)
    attested = steward.attest([csrs["nil"], csrs["sim"]])
    leaves = [item.certificate for item in attested.issued]
    assert [leaf.public_bytes(serialization.Encoding.DER) for leaf in leaves]
    (fixtures / "keep-leaf.pem").write_bytes(leaves[0].public_bytes(serialization.Encoding.PEM))
    seeds["peer_certificate"] += [c.public_bytes(serialization.Encoding.DER) for c in leaves]
    seeds["peer_certificate"].append(leaves[1].public_bytes(serialization.Encoding.PEM))
    for leaf in leaves:
        for oid, tag in ((oids.WORKLOAD_CLAIMS, b"\x00"), (oids.ATTESTATION_RESULT, b"\x01")):
            value = leaf.extensions.get_extension_for_oid(oid).value
            assert isinstance(value, x509.UnrecognizedExtension)
            seeds["claims"].append(tag + value.value)
    AttestationResult  # noqa: B018 (the type the \x01 seeds decode to)

    # CRLs: empty, then listing the nil Keep's certificate; DER and PEM.
    seeds["crl"].append(steward.crl().public_bytes(serialization.Encoding.DER))
    steward.revoke(format(leaves[0].serial_number, "x"), reason="key-compromise")
    revoked = steward.crl()
    seeds["crl"] += [
        revoked.public_bytes(serialization.Encoding.DER),
        revoked.public_bytes(serialization.Encoding.PEM),
    ]

    # Requests to the Steward: CSRs, a bundle, a revocation, an audit read.
    seeds["steward_request"] += [
        b"\x00" + csrs["nil"],
        b"\x01" + csrs["sim"],
        b"\x02" + wire.encode_certificates([csrs["nil"], csrs["sim"]]),
        b"\x03" + json.dumps({"serial": format(leaves[1].serial_number, "x")}).encode(),
        b"\x03" + b'{"serial": "01", "reason": "superseded"}',
        b"\x04" + format(leaves[1].serial_number, "x").encode(),
    ]
    steward.store.close()

    # Workload configs: the examples' and the `config init` template, uncommented.
    from donjon.cli.keep import CONFIG_TEMPLATE

    for path in sorted(REPO.glob("examples/*/*.toml")):
        seeds["workload_config"].append(path.read_bytes())
    setting = re.compile(r"^# (\[|[A-Za-z_]+ = )")
    lines = [line[2:] if setting.match(line) else line for line in CONFIG_TEMPLATE.splitlines()]
    seeds["workload_config"].append(("\n".join(lines) + "\n").encode())

    for name, items in package_seeds(work).items():
        seeds[name] += items

    # Steward policies: the development one above (its ARK path made relative) and the
    # docs' complete example, as written and with its elided digests filled in.
    from donjon.attestation.policy import load_policy

    seeds["policy"].append(policy.read_bytes().replace(str(fixtures).encode() + b"/", b""))
    sizes = {"host_data": 32, "allowed_workloads": 32}  # the others: 48 bytes

    def fill(match: re.Match[str]) -> str:
        return f'{match.group(1)}["{"ab" * sizes.get(match.group(2), 48)}"]'

    text = (REPO / "docs" / "policy.md").read_text()
    for block in re.findall(r"```toml\n(.*?)```", text, flags=re.S):
        seeds["policy"].append(block.encode())

        filled = re.sub(r'^((\w+) = )\["[0-9a-f]+\.\.\.[0-9a-f]+"\]', fill, block, flags=re.M)
        path = work / "filled.toml"
        path.write_text(filled)
        load_policy(path)  # a seed that loads reaches every section's checks
        seeds["policy"].append(filled.encode())

    for name, items in package_signature_seeds().items():
        seeds[name] += items

    out = HERE / "seeds"
    shutil.rmtree(out, ignore_errors=True)
    for name, items in seeds.items():
        assert items, f"no seeds for {name}"
        directory = out / name
        directory.mkdir(parents=True)
        for data in items:
            (directory / seed_name(data)).write_bytes(data)
        print(f"{name}: {len(items)} seeds")
    shutil.rmtree(work, ignore_errors=True)


def package_signature_seeds() -> dict[str, list[bytes]]:
    """Signatures made by the fixed signer keys, stored and claimed as Donjon does."""
    from donjon.attestation import packagesig
    from donjon.attestation.claims import WorkloadClaims
    from donjon.keep.oci import signatures
    from donjon.keep.oci.artifact import OCI_MANIFEST, Descriptor

    records = [packagesig.sign(k, SIGNED_REPOSITORY, SIGNED_DIGEST) for k in signer_keys()]
    subject = Descriptor(OCI_MANIFEST, SIGNED_DIGEST, 512, {})
    manifest = signatures.build_manifest(subject, [signatures.layer_of(r) for r in records])
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "artifactType": signatures.SIGNATURE_ARTIFACT,
                "digest": "sha256:" + "5a" * 32,
                "size": len(manifest),
            }
        ],
    }
    claims = WorkloadClaims(
        bytes(range(32)),
        b"",
        "fuzz-seed",
        package_sha256=bytes.fromhex(SIGNED_DIGEST.removeprefix("sha256:")),
        package_repository=SIGNED_REPOSITORY,
        package_signatures=tuple(records),
    )
    return {
        "package_signature": [
            b"\x00" + records[0].statement,
            b"\x01" + manifest,
            b"\x02" + json.dumps(index).encode(),
            b"\x03" + claims.to_der(),
        ],
        "claims": [b"\x00" + claims.to_der()],
    }


def write_package_signature_seeds() -> None:
    """Only these seeds (``--package-signature``), leaving the rest of the corpus as it is."""
    for name, items in package_signature_seeds().items():
        directory = HERE / "seeds" / name
        directory.mkdir(parents=True, exist_ok=True)
        for data in items:
            (directory / seed_name(data)).write_bytes(data)
        print(f"{name}: {len(items)} seeds written")


def package_seeds(work: Path) -> dict[str, list[bytes]]:
    """Manifests of plain and encrypted packages, and the clear and sealed parts of configs."""
    from donjon.keep.config_problems import ConfigError
    from donjon.keep.config_split import split
    from donjon.keep.oci import bundle, publish

    seeds: dict[str, list[bytes]] = {"sealed_config": [], "package_manifest": []}
    configs = [
        b'args = ["--token", "t"]\nsteward = "https://s.example/"\n'
        b'[env]\nMOTD = "m"\nDB = { secret = "db" }\n',
        *(path.read_bytes() for path in sorted(REPO.glob("examples/*/*.toml"))),
    ]
    for index, config in enumerate(configs):
        pkg = work / f"package-{index}"
        pkg.mkdir()
        (pkg / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
        (pkg / "Donjon.toml").write_bytes(config)
        try:
            clear, part = split(config, pkg / "Donjon.toml")
        except ConfigError:  # names a file of its example directory: not a seed here
            continue
        seeds["sealed_config"].append(clear + b"\0" + part)
        files = bundle.read_dir(pkg)
        for encrypt in (False, True) if index == 0 else (True,):
            manifest, _, _, _ = publish.build(files, encrypt=encrypt, key_secret="package-key.x")
            seeds["package_manifest"].append(manifest)
    bare = work / "package-bare"
    bare.mkdir()
    (bare / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
    manifest, _, _, _ = publish.build(bundle.read_dir(bare), encrypt=True, key_secret="k")
    seeds["package_manifest"].append(manifest)
    return seeds


if __name__ == "__main__":
    if sys.argv[1:] == ["--package-signature"]:
        write_package_signature_seeds()
        sys.exit(0)
    main()
