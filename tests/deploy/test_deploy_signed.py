"""Signed packages through a real registry and a real Steward, on the simulated TEE.

The Steward's policy lists no digest, only ``{ repository, signer }``: a package
pushed with ``--sign-key`` gets a certificate whose claims name the repository
and carry the signature; an unsigned one, or one signed by another key, is
refused with its own reason. The registry is Debian's docker-registry 2.8, which
has no OCI referrers API: the signatures live under the ``sha256-<hex>.sig`` tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from deploy_harness import running_steward

from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.oids import WORKLOAD_CLAIMS
from support.registry import Registry

pytestmark = pytest.mark.slow

PROGRAMS = Path(__file__).resolve().parent / "programs"
REPOSITORY = "team/signed"


def donjon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip


def write_key(path: Path) -> Path:
    """A P-256 signer key pair made here (not by the code under test): path, path.pub."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = path.with_name(path.name + ".pub")
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


class Steward:
    def __init__(self, url: str, https_ca: Path, team_key: Path) -> None:
        self.url, self.https_ca, self.team_key = url, https_ca, team_key


@pytest.fixture(scope="module")
def steward(
    tmp_path_factory: pytest.TempPathFactory, sim_state: Path, registry: Registry
) -> Iterator[Steward]:
    """A Steward whose [sim] section admits only packages of REPOSITORY signed by team.key."""
    tmp = tmp_path_factory.mktemp("signed-steward")
    (tmp / "keys").mkdir()
    team = write_key(tmp / "keys" / "team.key")
    ark = sim_state / "sim" / "ark.pem"
    (tmp / "policy.toml").write_text(
        f'[sim]\ntrust = "{ark}"\naccept_any_workload = true\n'
        f'allowed_packages = [{{ repository = "{registry.host}/{REPOSITORY}", '
        'signer = "keys/team.key.pub" }]\n'
    )
    with running_steward(tmp, tmp / "policy.toml") as (url, cert):
        yield Steward(url, cert, team)


@pytest.fixture(scope="module")
def wasm(build_wasm: Callable[[Path], Path]) -> bytes:
    return build_wasm(PROGRAMS / "secret_reader.c").read_bytes()


def package_dir(root: Path, name: str, wasm: bytes, steward: Steward) -> Path:
    pkg = root / name
    pkg.mkdir()
    (pkg / "main.wasm").write_bytes(wasm)
    (pkg / "steward-https.pem").write_bytes(steward.https_ca.read_bytes())
    (pkg / "Donjon.toml").write_text(
        f'steward = "{steward.url}/"\nsteward_ca = "steward-https.pem"\nargs = ["{name}"]\n'
    )
    return pkg


def claims_of(cert: Path) -> WorkloadClaims:
    leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    ext = leaf.extensions.get_extension_for_oid(WORKLOAD_CLAIMS).value
    return WorkloadClaims.from_der(ext.value)  # type: ignore[attr-defined]


def test_a_package_signed_by_the_listed_signer_gets_a_certificate_naming_its_repository(
    tmp_path: Path, registry: Registry, steward: Steward, wasm: bytes, host: dict[str, str]
) -> None:
    pkg = package_dir(tmp_path, "good", wasm, steward)
    pushed = donjon(
        "package", "push", str(pkg), registry.ref(REPOSITORY), "--sign-key",
        str(steward.team_key), "--json", env=host,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    doc = json.loads(pushed.stdout)
    digest = doc["digest"]
    team_spki = serialization.load_pem_public_key(
        steward.team_key.with_name("team.key.pub").read_bytes()
    ).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert doc["signed_by"] == "sha256:" + hashlib.sha256(team_spki).hexdigest()
    # docker-registry 2.8 has no referrers API: the signature is under the fallback tag.
    tag = "sha256-" + digest.removeprefix("sha256:") + ".sig"
    sig = registry.client().get(
        f"/v2/{REPOSITORY}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert sig.status_code == 200
    assert sig.json()["subject"]["digest"] == digest
    assert sig.json()["artifactType"] == "application/vnd.donjon.package.signature.v1"
    assert registry.client().get(f"/v2/{REPOSITORY}/referrers/{digest}").status_code == 404

    verified = donjon(
        "package", "verify", f"{registry.ref(REPOSITORY)}@{digest}",
        "--signer", str(steward.team_key.with_name("team.key.pub")), env=host,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr

    cert = tmp_path / "keep.pem"
    ran = donjon(
        "run", f"{registry.ref(REPOSITORY)}@{digest}", "--export-cert", str(cert), env=host
    )
    assert ran.returncode == 0, ran.stderr
    assert "1 signature(s) found" in ran.stderr
    claims = claims_of(cert)
    assert claims.package_sha256 == bytes.fromhex(digest.removeprefix("sha256:"))
    assert claims.package_repository == f"{registry.host}/{REPOSITORY}"
    (record,) = claims.package_signatures
    assert record.algorithm == "ecdsa-p256-sha256"
    assert record.key_id == hashlib.sha256(team_spki).digest()
    assert record.statement == (
        b'{"digest":"' + digest.encode() + b'","repository":"'
        + f"{registry.host}/{REPOSITORY}".encode()
        + b'","type":"dev.donjon.package-signature","version":1}'
    )  # fmt: skip


def test_an_unsigned_package_is_refused(
    tmp_path: Path, registry: Registry, steward: Steward, wasm: bytes, host: dict[str, str]
) -> None:
    pkg = package_dir(tmp_path, "unsigned", wasm, steward)
    pushed = donjon("package", "push", str(pkg), registry.ref(REPOSITORY), env=host)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip()
    ran = donjon("run", f"{registry.ref(REPOSITORY)}@{digest}", env=host)
    assert ran.returncode == 1
    assert "attestation refused: policy.package_unsigned: " in ran.stderr
    assert (
        f"package {digest[:23]}... from {registry.host}/{REPOSITORY}: not signed "
        "(no signature was found for it)"
    ) in ran.stderr
    assert "Traceback" not in ran.stderr


def test_a_package_signed_by_another_key_is_refused(
    tmp_path: Path, registry: Registry, steward: Steward, wasm: bytes, host: dict[str, str]
) -> None:
    pkg = package_dir(tmp_path, "stranger", wasm, steward)
    stranger = write_key(tmp_path / "stranger.key")
    pushed = donjon(
        "package", "push", str(pkg), registry.ref(REPOSITORY), "--sign-key", str(stranger),
        env=host,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip()
    ran = donjon("run", f"{registry.ref(REPOSITORY)}@{digest}", env=host)
    assert ran.returncode == 1
    assert "attestation refused: policy.package_signer: " in ran.stderr
    assert "which is not a signer allowed_packages names for this repository" in ran.stderr
    refused = donjon(
        "package", "verify", f"{registry.ref(REPOSITORY)}@{digest}",
        "--signer", str(steward.team_key.with_name("team.key.pub")), env=host,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "which is not one of the keys given" in refused.stderr


def test_a_signed_package_pushed_to_another_repository_is_refused(
    tmp_path: Path, registry: Registry, steward: Steward, wasm: bytes, host: dict[str, str]
) -> None:
    pkg = package_dir(tmp_path, "elsewhere", wasm, steward)
    other = "team/elsewhere"
    pushed = donjon(
        "package", "push", str(pkg), registry.ref(other), "--sign-key", str(steward.team_key),
        env=host,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    ran = donjon("run", f"{registry.ref(other)}@{pushed.stdout.strip()}", env=host)
    assert ran.returncode == 1
    assert "attestation refused: policy.package_repository: " in ran.stderr
    assert f"its repository {registry.host}/{other} is not one allowed_packages names" in (
        ran.stderr
    )
