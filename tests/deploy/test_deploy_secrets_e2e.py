"""The confidential deploy, end to end, on the simulated TEE.

1. an encrypted package is pushed to a real registry; its key goes to the Steward;
2. a database password is stored in the Steward, bound to the package's digest;
3. ``donjon run oci://...@sha256:...`` attests, gets the key and the password;
4. the workload reads /run/secrets/db and serves it over TLS to a client that
   verifies the Keep's certificate and the package digest in it.

And what must not happen: a Keep running other code, a revoked Keep, or a
development Keep under a production policy gets nothing; the host's disk and
the logs never hold the plaintext wasm or the password.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from deploy_harness import SecretSteward

from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.oids import WORKLOAD_CLAIMS
from donjon.keep import sealed_config
from donjon.keep.oci import artifact, bundle, publish, reference
from donjon.keep.oci.artifact import Descriptor
from donjon.keep.oci.auth import Credentials
from donjon.keep.oci.registry import RegistryClient
from support import registry as registries
from support.keepproc import KeepProcess
from support.net import free_port
from support.registry import Registry

pytestmark = pytest.mark.slow

PROGRAMS = Path(__file__).resolve().parent / "programs"
PASSWORD = "correct-horse-battery-staple-7f3a9c"
API_KEY = "api-key-0c1d2e3f4a5b"
#: The simulator's SNP reports are not appraised against AMD's TCB: say so in each policy.
SIM_TCB = "NotAppraised"
SIM = ("--min-tcb-status", SIM_TCB)
STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'


def donjon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip


def package_dir(root: Path, name: str, wasm: bytes, steward: SecretSteward, body: str) -> Path:
    pkg = root / name
    pkg.mkdir()
    (pkg / "main.wasm").write_bytes(wasm)
    (pkg / "steward-https.pem").write_bytes(steward.https_ca.read_bytes())
    head = f'steward = "{steward.url}/"\nsteward_ca = "steward-https.pem"\n'
    (pkg / "Donjon.toml").write_text(head + body)
    return pkg


def secret_config(port: int, secret: str = "db") -> str:
    return (
        f'[env]\nDB_PASSWORD = {{ secret = "{secret}" }}\n{STDIO}'
        f'[[files]]\nkind = "secret"\nsecret = "{secret}"\nname = "/run/secrets/db"\n'
        f'[[files]]\nkind = "listen"\nname = "web"\naddr = "127.0.0.1"\nport = {port}\n'
        '[[files]]\nkind = "secret"\nsecret = "api-key"\nname = "API_KEY"\n'
    )


@pytest.fixture(scope="module")
def wasm(build_wasm: Callable[[Path], Path]) -> bytes:
    return build_wasm(PROGRAMS / "secret_reader.c").read_bytes()


def push_encrypted(pkg: Path, ref: str, steward: SecretSteward, env: dict[str, str]) -> str:
    return str(push_encrypted_json(pkg, ref, steward, env)["digest"])


def push_encrypted_json(
    pkg: Path, ref: str, steward: SecretSteward, env: dict[str, str]
) -> dict[str, object]:
    pushed = donjon(
        "package", "push", str(pkg), ref, "--encrypt", "--steward", steward.url,
        "--steward-ca", str(steward.https_ca), "--admin-token-file", str(steward.admin_token_file),
        "--platform", "sim", "--development", "--min-tcb-status", SIM_TCB, "--json", env=env,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    doc: dict[str, object] = json.loads(pushed.stdout)
    assert doc["encrypted"] and doc["key_registered"]
    return doc


def put_secret(steward: SecretSteward, name: str, value: str, *policy: str) -> None:
    put = donjon(
        "steward", "secrets", "put", name, "--value-env", "SECRET_VALUE", *policy,
        *steward.admin_args(), env={"SECRET_VALUE": value},
    )  # fmt: skip
    assert put.returncode == 0, put.stderr
    assert value not in put.stdout + put.stderr


def tls_get(port: int, ca_pem: bytes) -> tuple[bytes, x509.Certificate]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem.decode())
    context.check_hostname = False  # Keeps are named by their claims, not by DNS
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    assert der is not None
    return data, x509.load_der_x509_certificate(der)


def steward_ca(steward: SecretSteward) -> bytes:
    context = ssl.create_default_context(cafile=str(steward.https_ca))
    return httpx.get(steward.url + "/v1/ca", verify=context).content


def test_encrypted_package_from_the_registry_serves_its_secret_over_tls(
    tmp_path: Path,
    registry: Registry,
    secret_steward: SecretSteward,
    wasm: bytes,
    host: dict[str, str],
) -> None:
    # A custom section of random bytes: plaintext that exists nowhere but in this package
    # (the shared registry also holds the same program in clear, pushed by other tests).
    marker = os.urandom(64)
    name = b"donjon-test"
    wasm = wasm + b"\0" + bytes([1 + len(name) + len(marker), len(name)]) + name + marker
    port = free_port()
    pkg = package_dir(tmp_path, "confidential", wasm, secret_steward, secret_config(port))
    repo = registry.ref("team/confidential")
    digest = push_encrypted(pkg, repo, secret_steward, host)
    policy = ("--allow-package", digest, "--platform", "sim", "--development", *SIM)
    put_secret(secret_steward, "db", PASSWORD, *policy)
    put_secret(secret_steward, "api-key", API_KEY, *policy)

    keep = KeepProcess(f"{repo}@{digest}", env={**os.environ, **host})
    try:
        data, leaf = tls_get(keep.port(), steward_ca(secret_steward))
        code, out, err = keep.finish()
    finally:
        keep.stop()
    assert code == 0, err
    assert data == f"db={PASSWORD}\n".encode()
    claims = WorkloadClaims.from_der(
        leaf.extensions.get_extension_for_oid(WORKLOAD_CLAIMS).value.value  # type: ignore[attr-defined]
    )
    assert claims.package_sha256 == bytes.fromhex(digest.removeprefix("sha256:"))
    assert claims.wasm_sha256 == hashlib.sha256(wasm).digest()
    assert "secret db version 1 released" in err
    assert "opened the sealed main.wasm in memory" in err

    # The registry holds only ciphertext; nothing on the host's disk or in a log is plaintext.
    assert_nowhere(
        [registry.storage, Path(host["HOME"]), secret_steward.state],
        [marker, PASSWORD.encode(), API_KEY.encode()],
    )
    for log in (out, err, secret_steward.log.read_text()):
        assert PASSWORD not in log and API_KEY not in log
    meta = donjon("steward", "secrets", "show-meta", "db", "--json", *secret_steward.admin_args())
    assert meta.returncode == 0, meta.stderr
    releases = json.loads(meta.stdout)["releases"]
    assert releases[0]["outcome"] == "released" and releases[0]["version"] == 1
    assert releases[0]["package_sha256"] == digest.removeprefix("sha256:")
    assert PASSWORD not in meta.stdout


def assert_nowhere(roots: list[Path], needles: list[bytes]) -> None:
    """No file under ``roots`` holds any needle (the test's grep of the host's disk)."""
    checked = 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                checked += 1
                for needle in needles:
                    assert needle not in data, f"{path} holds a secret or plaintext wasm"
    assert checked > 0


def test_a_keep_running_other_code_gets_no_secret(
    tmp_path: Path,
    registry: Registry,
    secret_steward: SecretSteward,
    wasm: bytes,
    host: dict[str, str],
) -> None:
    port = free_port()
    good = package_dir(tmp_path, "good", wasm, secret_steward, secret_config(port, "other-db"))
    digest = push_encrypted(good, registry.ref("team/good"), secret_steward, host)
    put_secret(secret_steward, "other-db", PASSWORD, "--allow-package", digest,
               "--platform", "sim", "--development", *SIM)  # fmt: skip
    # Other code: the same module with a custom section "evil" appended (still valid wasm,
    # so the Keep gets as far as asking for the secret; a truncated module is refused first).
    other = wasm + b"\x00\x05\x04evil"
    evil = package_dir(tmp_path, "evil", other, secret_steward, secret_config(port, "other-db"))
    pushed = donjon("package", "push", str(evil), registry.ref("team/evil"), env=host)
    ran = donjon("run", f"{registry.ref('team/evil')}@{pushed.stdout.strip()}", env=host)
    assert ran.returncode == 1
    assert "secret 'other-db'" in ran.stderr and "[policy.package]" in ran.stderr
    assert "db=" not in ran.stdout  # the workload never started
    assert PASSWORD not in ran.stdout + ran.stderr


def test_a_development_keep_gets_nothing_under_a_production_policy(
    tmp_path: Path,
    registry: Registry,
    secret_steward: SecretSteward,
    wasm: bytes,
    host: dict[str, str],
) -> None:
    port = free_port()
    pkg = package_dir(tmp_path, "prod", wasm, secret_steward, secret_config(port, "prod-db"))
    digest = push_encrypted(pkg, registry.ref("team/prod"), secret_steward, host)
    put_secret(secret_steward, "prod-db", PASSWORD, "--allow-package", digest)  # development off
    ran = donjon("run", f"{registry.ref('team/prod')}@{digest}", env=host)
    assert ran.returncode == 1
    assert "[policy.development]" in ran.stderr
    assert ran.stderr.strip().count("\n") < 12 and "Traceback" not in ran.stderr


def test_a_revoked_keep_gets_no_secret(
    registry: Registry, secret_steward: SecretSteward, sim_state: Path
) -> None:
    from donjon.keep import identity as ident
    from donjon.keep import platforms
    from donjon.keep.identity import Identity
    from donjon.keep.secret_client import SecretClient, SecretFetchError
    from donjon.keep.steward_client import StewardClient

    package = hashlib.sha256(b"revoked package").digest()
    put_secret(secret_steward, "revoked-db", PASSWORD, "--allow-package", package.hex(),
               "--platform", "sim", "--development", *SIM)  # fmt: skip
    platform = platforms.select("sim", sim_state)
    client = StewardClient(secret_steward.url + "/", secret_steward.https_ca)
    claims = WorkloadClaims(
        wasm_sha256=hashlib.sha256(b"wasm").digest(),
        config_sha256=b"",
        package_name="revoked",
        nonce=client.challenge(),
        package_sha256=package,
    )
    key = ident.generate_key(platform)
    chain = client.request(ident.build_csr(key, claims, platform))
    identity = Identity(key, tuple(reversed(chain[1:])), chain[0], "sim", claims)
    with SecretClient(secret_steward.url, secret_steward.https_ca, identity) as secrets:
        assert secrets.fetch("revoked-db").value == PASSWORD.encode()  # before: released
        revoked = httpx.post(
            secret_steward.url + "/v1/revoke",
            json={"serial": format(identity.certificate.serial_number, "x")},
            headers={"Authorization": f"Bearer {secret_steward.admin_token_file.read_text()}"},
            verify=ssl.create_default_context(cafile=str(secret_steward.https_ca)),
        )
        assert revoked.status_code == 200, revoked.text
        with pytest.raises(SecretFetchError, match=r"HTTP 403: .*revoked.*\[cert\.revoked\]"):
            secrets.fetch("revoked-db")


# --- The config's sealed part: args and env values ---------------------------------------


def sealed_config_body(arg: str, motd: str) -> str:
    return f'args = ["{arg}"]\n[env]\nMOTD = "{motd}"\n{STDIO}'


def markers() -> tuple[str, str]:
    """An argument and an env value that exist nowhere but in this test's package."""
    return f"sealed-arg-{os.urandom(8).hex()}", f"sealed-motd-{os.urandom(8).hex()}"


def test_a_sealed_config_reaches_the_workload_and_nowhere_else(
    tmp_path: Path,
    registry: Registry,
    secret_steward: SecretSteward,
    wasm: bytes,
    host: dict[str, str],
    sim_state: Path,
) -> None:
    arg, motd = markers()
    body = sealed_config_body(arg, motd)
    pkg = package_dir(tmp_path, "sealed-config", wasm, secret_steward, body)
    repo = registry.ref("team/sealed-config")
    digest = push_encrypted(pkg, repo, secret_steward, host)
    cert = tmp_path / "keep.pem"
    ran = donjon("run", f"{repo}@{digest}", "--export-cert", str(cert), env=host)
    assert ran.returncode == 0, ran.stderr
    # The workload sees both values; it prints them itself (its stdout is its own choice).
    assert f"arg1={arg}\n" in ran.stdout and f"motd={motd}\n" in ran.stdout
    assert "opened the sealed part of the config in memory (args and env values)" in ran.stderr

    shown = donjon("package", "inspect", f"{repo}@{digest}", "--json", env=host)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["config_sealed"] is True and doc["encrypted"] is True
    media = [layer["mediaType"] for layer in doc["layers"]]
    assert media == [
        "application/vnd.donjon.wasm.v1+encrypted",
        "application/vnd.donjon.keep-config.v1+toml",
        "application/vnd.donjon.keep-config.sealed.v1+encrypted",
        "application/vnd.donjon.files.v1.tar",  # steward-https.pem
    ]
    text = donjon("package", "inspect", f"{repo}@{digest}", env=host)
    assert "  sealed:      args and env values of the config (ciphertext" in text.stdout
    pulled = Path(host["HOME"]) / "pulled"
    got = donjon("package", "pull", f"{repo}@{digest}", str(pulled), env=host)
    assert got.returncode == 0, got.stderr
    assert sorted(p.name for p in pulled.iterdir()) == [
        "Donjon.toml", "Donjon.toml.sealed", "main.wasm.sealed", "steward-https.pem",
    ]  # fmt: skip
    clear = (pulled / "Donjon.toml").read_bytes()
    assert f'steward = "{secret_steward.url}/"'.encode() in clear

    # The certificate names the clear config the Keep attested, and the package (whose
    # manifest names the sealed part's ciphertext and plaintext digests).
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    claims = WorkloadClaims.from_der(
        leaf.extensions.get_extension_for_oid(WORKLOAD_CLAIMS).value.value  # type: ignore[attr-defined]
    )
    assert claims.config_sha256 == hashlib.sha256(clear).digest()
    assert claims.package_sha256 == bytes.fromhex(digest.removeprefix("sha256:"))

    needles = [arg.encode(), motd.encode()]
    assert_nowhere([registry.storage, Path(host["HOME"]), secret_steward.state, sim_state], needles)
    for log in (ran.stderr, shown.stdout, text.stdout, got.stdout + got.stderr):
        assert arg not in log and motd not in log
    assert arg not in secret_steward.log.read_text() and motd not in secret_steward.log.read_text()


def refused_before_the_workload(ran: subprocess.CompletedProcess[str], message: str) -> None:
    assert ran.returncode != 0
    assert "Traceback" not in ran.stderr
    errors = [line for line in ran.stderr.splitlines() if line.startswith("donjon: error:")]
    assert len(errors) == 1 and message in errors[0], ran.stderr
    assert "arg1=" not in ran.stdout and "motd=" not in ran.stdout  # the workload never ran


def test_a_sealed_config_whose_key_is_gone_stops_the_keep(
    tmp_path: Path,
    registry: Registry,
    secret_steward: SecretSteward,
    wasm: bytes,
    host: dict[str, str],
) -> None:
    arg, motd = markers()
    pkg = package_dir(tmp_path, "keyless", wasm, secret_steward, sealed_config_body(arg, motd))
    repo = registry.ref("team/keyless")
    doc = push_encrypted_json(pkg, repo, secret_steward, host)
    key_secret = str(doc["key_secret"])
    gone = donjon("steward", "secrets", "delete", key_secret, *secret_steward.admin_args())
    assert gone.returncode == 0, gone.stderr
    ran = donjon("run", f"{repo}@{doc['digest']}", env=host)
    refused_before_the_workload(ran, f"secret {key_secret!r}")
    assert arg not in ran.stderr and motd not in ran.stderr


Layers = list[tuple[Descriptor, bytes]]


def _replace(layers: Layers, media: str, data: bytes, **notes: str) -> Layers:
    out: Layers = []
    for descriptor, blob in layers:
        if descriptor.media_type == media:
            descriptor = Descriptor.of(media, data, {**descriptor.annotations, **notes})
            blob = data
        out.append((descriptor, blob))
    return out


def _blob(layers: Layers, media: str) -> bytes:
    return next(blob for d, blob in layers if d.media_type == media)


def _flip(layers: Layers, key: bytes) -> Layers:
    data = bytearray(_blob(layers, artifact.SEALED_CONFIG_LAYER))
    data[-20] ^= 1
    return _replace(layers, artifact.SEALED_CONFIG_LAYER, bytes(data))


def _other_digest(layers: Layers, key: bytes) -> Layers:
    data = _blob(layers, artifact.SEALED_CONFIG_LAYER)
    return _replace(layers, artifact.SEALED_CONFIG_LAYER, data, **{CONFIG_DIGEST: "ab" * 32})


def _steward_in_the_sealed_part(layers: Layers, key: bytes) -> Layers:
    wasm_layer = next(d for d, _ in layers if d.media_type == artifact.SEALED_WASM_LAYER)
    blob, digest = sealed_config.seal(
        key,
        b'steward = "https://steward.evil.example/"\n',
        wasm_sha256=bytes.fromhex(wasm_layer.annotations[artifact.PLAIN_SHA256]),
        clear_sha256=hashlib.sha256(_blob(layers, artifact.KEEP_CONFIG_LAYER)).digest(),
    )
    return _replace(layers, artifact.SEALED_CONFIG_LAYER, blob, **{CONFIG_DIGEST: digest.hex()})


def _no_sealed_part(layers: Layers, key: bytes) -> Layers:
    return [(d, b) for d, b in layers if d.media_type != artifact.SEALED_CONFIG_LAYER]


def _wasm_in_clear(layers: Layers, key: bytes) -> Layers:
    """A main.wasm in clear (an empty module) beside the sealed config part."""
    wasm_layer = next(d for d, _ in layers if d.media_type == artifact.SEALED_WASM_LAYER)
    plain = Descriptor.of(artifact.WASM_LAYER, b"\0asm\1\0\0\0", {artifact.TITLE: "main.wasm"})
    return [(plain, b"\0asm\1\0\0\0") if d is wasm_layer else (d, b) for d, b in layers]


def _version_2(layers: Layers, key: bytes) -> Layers:
    return [
        (replace(d, media_type=d.media_type.replace(".v1+", ".v2+")), b)
        if d.media_type == artifact.SEALED_CONFIG_LAYER
        else (d, b)
        for d, b in layers
    ]


CONFIG_DIGEST = artifact.SEALED_CONFIG_SHA256


@pytest.mark.parametrize(
    ("change", "key_released", "message"),
    [
        (_flip, True, "the sealed config layer does not open with the package key"),
        (_other_digest, True, "the sealed config layer does not open with the package key"),
        (
            _steward_in_the_sealed_part,
            True,
            "Donjon.toml (sealed part): steward: stays in the clear config",
        ),
        (_no_sealed_part, False, "main.wasm is sealed but the package has no"),
        (_wasm_in_clear, False, "encrypted layer beside a main.wasm in clear"),
        (_version_2, False, "is a version this Donjon does not read"),
    ],
)
def test_a_changed_sealed_config_stops_the_keep_before_the_workload(
    tmp_path: Path,
    registry: Registry,
    secret_steward: SecretSteward,
    wasm: bytes,
    host: dict[str, str],
    change: Callable[[Layers, bytes], Layers],
    key_released: bool,
    message: str,
) -> None:
    """Packages changed as only the key's holder could (except where the manifest alone
    refuses them): the Keep gets the key and still refuses what it opens."""
    arg, motd = markers()
    pkg = package_dir(tmp_path, "crafted", wasm, secret_steward, sealed_config_body(arg, motd))
    key_secret = f"crafted-key-{os.urandom(4).hex()}"
    _, blobs, key, _ = publish.build(bundle.read_dir(pkg), encrypt=True, key_secret=key_secret)
    assert key is not None
    layers = change([(d, b) for d, b in blobs if d.media_type != artifact.WASM_CONFIG], key)
    repo = registry.ref("team/crafted")
    digest = push_layers(registry, repo, layers)
    if key_released:
        key_file = tmp_path / "package.key"
        key_file.write_bytes(key)
        put = donjon(
            "steward", "secrets", "put", key_secret, "--value-file", str(key_file),
            "--allow-package", digest, "--platform", "sim", "--development", *SIM,
            *secret_steward.admin_args(),
        )  # fmt: skip
        assert put.returncode == 0, put.stderr
    ran = donjon("run", f"{repo}@{digest}", env=host)
    refused_before_the_workload(ran, message)
    if key_released:
        assert f"secret {key_secret} version 1 released" in ran.stderr
    assert arg not in ran.stdout + ran.stderr and motd not in ran.stdout + ran.stderr


def push_layers(registry: Registry, repo: str, layers: Layers) -> str:
    """Push ``layers`` as a package manifest, in process: its digest."""
    descriptors = [d for d, _ in layers]
    config_blob = artifact.wasm_config(descriptors)
    config = Descriptor.of(artifact.WASM_CONFIG, config_blob)
    manifest = artifact.build_manifest(config, descriptors, {artifact.TITLE: "crafted"})
    ref = reference.parse(repo)
    credentials = Credentials(registries.USERNAME, registries.PASSWORD, "test")
    with RegistryClient(ref, credentials=credentials, ca_bundle=registry.ca, push=True) as client:
        for data in (config_blob, *(blob for _, blob in layers)):
            client.push_blob(data)
        return client.push_manifest(manifest, None)
