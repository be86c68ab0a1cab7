"""Packages through a real registry (Debian's docker-registry, TLS + htpasswd on 127.0.0.1).

Push, pull, inspect and run; and every way the bytes can go wrong: a wrong
digest, a blob corrupted in the registry's storage, a registry that dies
mid-download, bad credentials, a manifest of the wrong media type, a layer over
the limit, a tag without --allow-tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from donjon.keep import source
from donjon.keep.oci import artifact, reference
from donjon.keep.oci.artifact import ArtifactError
from donjon.keep.oci.auth import Credentials, RegistryAuthError, find_credentials
from donjon.keep.oci.fetch import fetch, resolve_manifest
from donjon.keep.oci.publish import push
from donjon.keep.oci.registry import (
    DigestMismatch,
    Limits,
    RegistryClient,
    RegistryUnreachable,
    TooLarge,
)
from support import registry as registries
from support.registry import Registry

PROGRAMS = Path(__file__).resolve().parent / "programs"
CONFIG = 'args = ["a"]\n[env]\nGREETING = "hello"\n'


def donjon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip


def make_pkg(root: Path, wasm: bytes, config: str = CONFIG, static: bool = True) -> Path:
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "main.wasm").write_bytes(wasm)
    (pkg / "Donjon.toml").write_text(config)
    if static:
        (pkg / "static").mkdir()
        (pkg / "static" / "index.html").write_text("<h1>hi</h1>\n")
    return pkg


@pytest.fixture
def wasm(build_wasm: Callable[[Path], Path]) -> bytes:
    return build_wasm(PROGRAMS / "secret_reader.c").read_bytes()


def test_push_prints_the_digest_inspect_and_pull_give_the_same_bytes(
    tmp_path: Path, registry: Registry, wasm: bytes
) -> None:
    pkg = make_pkg(tmp_path, wasm)
    ref = registry.ref("team/app", ":v1")
    pushed = donjon("package", "push", str(pkg), ref, env=registry.env())
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71
    manifest = registry.client().get(
        f"/v2/team/app/manifests/{digest}", headers={"Accept": artifact.OCI_MANIFEST}
    )
    assert "sha256:" + hashlib.sha256(manifest.content).hexdigest() == digest
    doc = manifest.json()
    assert doc["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    wasm_layer = doc["layers"][0]
    assert wasm_layer["mediaType"] == "application/wasm"
    assert wasm_layer["digest"] == "sha256:" + hashlib.sha256(wasm).hexdigest()

    shown = donjon("package", "inspect", f"{registry.ref('team/app')}@{digest}", "--json",
                   env=registry.env())  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["digest"] == digest and info["encrypted"] is False
    assert info["wasm_sha256"] == hashlib.sha256(wasm).hexdigest()
    assert info["config"] == "Donjon.toml"

    out = tmp_path / "copy"
    pulled = donjon("package", "pull", f"{registry.ref('team/app')}@{digest}", str(out),
                    env=registry.env())  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert (out / "main.wasm").read_bytes() == wasm
    assert (out / "Donjon.toml").read_text() == CONFIG
    assert (out / "static" / "index.html").read_text() == "<h1>hi</h1>\n"
    again = donjon("package", "push", str(pkg), registry.ref("team/app", ":v2"), env=registry.env())
    assert again.stdout.strip() == digest  # the same directory, the same digest


def test_run_from_the_registry_attests_the_manifest_digest(
    tmp_path: Path, registry: Registry, wasm: bytes
) -> None:
    pkg = make_pkg(tmp_path, wasm)
    digest = donjon("package", "push", str(pkg), registry.ref("team/run"), env=registry.env())
    digest_text = digest.stdout.strip()
    cert = tmp_path / "keep.pem"
    ran = donjon(
        "run", f"{registry.ref('team/run')}@{digest_text}", "--export-cert", str(cert),
        env={**registry.env(), "DONJON_PLATFORM": "nil"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "db=\n" in ran.stdout and "api_key=\n" in ran.stdout  # no secrets configured
    from cryptography import x509

    from donjon.attestation.claims import WorkloadClaims
    from donjon.attestation.oids import WORKLOAD_CLAIMS

    leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    ext = leaf.extensions.get_extension_for_oid(WORKLOAD_CLAIMS).value
    claims = WorkloadClaims.from_der(ext.value)  # type: ignore[attr-defined]
    assert claims.package_sha256 == bytes.fromhex(digest_text.removeprefix("sha256:"))
    assert claims.wasm_sha256 == hashlib.sha256(wasm).digest()
    assert claims.config_sha256 == hashlib.sha256(CONFIG.encode()).digest()


def test_a_tag_alone_needs_allow_tag_and_is_logged(
    tmp_path: Path, registry: Registry, wasm: bytes
) -> None:
    pkg = make_pkg(tmp_path, wasm, static=False)
    assert donjon("package", "push", str(pkg), registry.ref("team/tag", ":stable"),
                  env=registry.env()).returncode == 0  # fmt: skip
    env = {**registry.env(), "DONJON_PLATFORM": "nil"}
    refused = donjon("run", registry.ref("team/tag", ":stable"), env=env)
    assert refused.returncode == 2
    assert "a tag can be moved" in refused.stderr and "Traceback" not in refused.stderr
    allowed = donjon("run", registry.ref("team/tag", ":stable"), "--allow-tag", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert "by tag (--allow-tag)" in allowed.stderr


def test_a_digest_the_registry_does_not_have_is_refused(
    tmp_path: Path, registry: Registry, wasm: bytes
) -> None:
    pkg = make_pkg(tmp_path, wasm, static=False)
    donjon("package", "push", str(pkg), registry.ref("team/wrong"), env=registry.env())
    missing = "sha256:" + "ab" * 32
    ran = donjon("run", f"{registry.ref('team/wrong')}@{missing}",
                 env={**registry.env(), "DONJON_PLATFORM": "nil"})  # fmt: skip
    assert ran.returncode != 0
    assert "HTTP 404" in ran.stderr and "MANIFEST_UNKNOWN" in ran.stderr
    assert ran.stderr.count("\n") == 1


def test_a_manifest_served_under_another_digest_is_refused(
    tmp_path: Path, registry_env: Registry, wasm: bytes
) -> None:
    registry = registry_env
    pkg = make_pkg(tmp_path, wasm, static=False)
    result = push(pkg, reference.parse(registry.ref("team/swap")), credentials=_creds(registry))
    (tmp_path / "o").mkdir()
    other = make_pkg(tmp_path / "o", wasm + b"\0", static=False)
    second = push(other, reference.parse(registry.ref("team/swap")), credentials=_creds(registry))
    client = RegistryClient(
        reference.parse(registry.ref("team/swap")), credentials=_creds(registry)
    )
    with client, pytest.raises(DigestMismatch, match="served bytes of"):
        # Ask by one digest; the registry (here: our request by tag rewritten) answers another.
        client.get_manifest.__func__(  # type: ignore[attr-defined]
            _Redirect(client, second.digest), result.digest
        )


class _Redirect:
    """A client whose manifest URL names another digest than the one asked for."""

    def __init__(self, client: RegistryClient, served: str) -> None:
        self.__dict__.update(client.__dict__)
        self._client, self._served = client, served

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def _stream(self, method: str, url: str, what: str, **kwargs: object) -> object:
        return self._client._stream(
            method, url.rsplit("/", 1)[0] + "/" + self._served, what, **kwargs
        )


def _creds(registry: Registry) -> Credentials:
    return Credentials(registries.USERNAME, registries.PASSWORD, "test")


def test_a_blob_corrupted_in_the_registry_storage_is_refused(
    tmp_path: Path, registry_env: Registry, wasm: bytes
) -> None:
    registry = registry_env
    pkg = make_pkg(tmp_path, wasm + b"corrupt-me", static=False)
    result = push(pkg, reference.parse(registry.ref("team/corrupt")), credentials=_creds(registry))
    blob = registry.blob_path("sha256:" + result.wasm_sha256)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match="corrupted or tampered"):
        source.open_package(str(result.reference))


def test_a_registry_that_dies_mid_download_leaves_nothing_half_used(
    tmp_path: Path, registry_env: Registry
) -> None:
    own = registries.start(tmp_path / "dying")
    try:
        pkg = make_pkg(tmp_path, os.urandom(48 * 1024 * 1024), static=False)
        result = push(
            pkg, reference.parse(own.ref("team/big")), credentials=_creds(own), ca_bundle=own.ca
        )
        ref = result.reference
        client = RegistryClient(ref, credentials=_creds(own), ca_bundle=own.ca)
        with client:
            _, _, manifest = resolve_manifest(client, ref)
            killed = threading.Event()

            def kill_once(done: int, total: int) -> None:
                if done > 1024 * 1024 and not killed.is_set():
                    killed.set()
                    own.proc.kill()

            with pytest.raises(RegistryUnreachable, match=r"broke after|ended after"):
                client.get_blob(manifest.wasm, progress=kill_once)
        assert killed.is_set()
    finally:
        own.stop()


def test_bad_credentials_and_no_credentials_are_one_line_errors(
    tmp_path: Path, registry: Registry, wasm: bytes
) -> None:
    pkg = make_pkg(tmp_path, wasm, static=False)
    env = {**registry.env(), "DONJON_REGISTRY_PASSWORD": "wrong-password"}
    bad = donjon("package", "push", str(pkg), registry.ref("team/auth"), env=env)
    assert bad.returncode == 1
    assert "refused the credentials from $DONJON_REGISTRY_USERNAME (HTTP 401)" in bad.stderr
    assert "wrong-password" not in bad.stderr and "Traceback" not in bad.stderr
    anonymous = {"DONJON_REGISTRY_CA": str(registry.ca), "HOME": str(tmp_path)}
    env_clean = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_REGISTRY")}
    none = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "package", "inspect",
         registry.ref("team/auth:x")],
        capture_output=True, text=True, env={**env_clean, **anonymous}, timeout=120,
    )  # fmt: skip
    assert none.returncode == 1
    assert "asks for credentials and none are configured" in none.stderr


def test_credentials_from_a_docker_config_file(tmp_path: Path, registry: Registry) -> None:
    import base64

    auth = base64.b64encode(f"{registries.USERNAME}:{registries.PASSWORD}".encode()).decode()
    config = tmp_path / "auth.json"
    config.write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    found = find_credentials(registry.host, {"REGISTRY_AUTH_FILE": str(config)})
    assert found is not None and (found.username, found.password) == (
        registries.USERNAME,
        registries.PASSWORD,
    )
    helper = tmp_path / "helper.json"
    helper.write_text(json.dumps({"credsStore": "desktop"}))
    with pytest.raises(RegistryAuthError, match="credential helper"):
        find_credentials(registry.host, {"REGISTRY_AUTH_FILE": str(helper)})


def test_a_manifest_of_the_wrong_media_type_is_refused(registry_env: Registry) -> None:
    registry = registry_env
    ref = reference.parse(registry.ref("team/image"))
    with RegistryClient(ref, credentials=_creds(registry), push=True) as client:
        layer = client.push_blob(b"not a package")
        config = client.push_blob(b"{}")
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": artifact.OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer, "size": 13}],
        }).encode()  # fmt: skip
        digest = client.push_manifest(manifest, None)
    with pytest.raises(ArtifactError, match=r"config media type .* is not application/vnd\.wasm"):
        source.open_package(f"{registry.ref('team/image')}@{digest}")
    with pytest.raises(ArtifactError, match=r"is not application/vnd\.oci\.image\.manifest"):
        artifact.parse_manifest(
            manifest, "application/vnd.docker.distribution.manifest.v2+json", "x"
        )


def test_a_layer_over_the_limit_is_refused_before_download(
    tmp_path: Path, registry_env: Registry
) -> None:
    registry = registry_env
    pkg = make_pkg(tmp_path, os.urandom(2 * 1024 * 1024), static=False)
    result = push(pkg, reference.parse(registry.ref("team/large")), credentials=_creds(registry))
    with pytest.raises(TooLarge, match="over the 1048576-byte layer limit"):
        fetch(result.reference, credentials=_creds(registry), limits=Limits(max_layer=1 << 20))
    with pytest.raises(TooLarge, match="over the 1000000-byte limit"):
        fetch(result.reference, credentials=_creds(registry), max_package=1_000_000)


def test_an_https_tar_needs_and_checks_its_digest(tmp_path: Path, wasm: bytes) -> None:
    import io
    import tarfile

    from support.pki import server_context, write_self_signed

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("main.wasm", wasm), ("Donjon.toml", CONFIG.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    cert, key = write_self_signed(tmp_path)
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"https://localhost:{server.server_address[1]}/app.tar"
    try:
        options = source.SourceOptions(ca_bundle=cert)
        good = hashlib.sha256(body).hexdigest()
        with source.open_package(f"{url}#sha256={good}", options=options) as opened:
            assert opened.package.wasm_bytes == wasm
            assert opened.package.package_sha256 == bytes.fromhex(good)
            assert opened.package.config.args == ["a"]
        with pytest.raises(source.SourceError, match="hashes to sha256:"):
            source.open_package(f"{url}#sha256={'0' * 64}", options=options)
        with pytest.raises(source.UsageError, match="needs its digest"):
            source.open_package(url, options=options)
    finally:
        server.shutdown()
        server.server_close()


def test_a_config_of_the_hosts_own_makes_the_claims_name_no_package(
    tmp_path: Path, wasm: bytes
) -> None:
    # `donjon run https://...#sha256=... --config host.toml`: the host's config replaced the
    # package's (args, env, files, peers; relative paths then resolve in the host's
    # directory), while the claims still named the package. allowed_packages, secrets bound
    # to the package and `verify-peer --expect-package` accepted a Keep running it.
    import io
    import tarfile
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from donjon.keep.runner import workload_claims
    from support.pki import server_context, write_self_signed

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("main.wasm", wasm), ("Donjon.toml", CONFIG.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    cert, key = write_self_signed(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    host_config = tmp_path / "host.toml"
    host_config.write_text('args = ["--no-auth"]\n')
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    digest = hashlib.sha256(body).hexdigest()
    url = f"https://localhost:{server.server_address[1]}/app.tar#sha256={digest}"
    options = source.SourceOptions(ca_bundle=cert)
    try:
        with source.open_package(url, options=options) as opened:
            assert workload_claims(opened.package).package_sha256 == bytes.fromhex(digest)
        said: list[str] = []
        with source.open_package(
            url, config_override=host_config, options=options, report=said.append
        ) as opened:
            assert f"{host_config} replaces the package's config" in said[0]
            claims = workload_claims(opened.package)
            assert opened.package.config.args == ["--no-auth"]
            assert claims.wasm_sha256 == hashlib.sha256(wasm).digest()
            assert claims.config_sha256 == hashlib.sha256(host_config.read_bytes()).digest()
            assert claims.package_sha256 is None
    finally:
        server.shutdown()
        server.server_close()


def test_inspect_prints_what_the_registry_says_escaped(
    tmp_path: Path, registry: Registry, wasm: bytes
) -> None:
    # The manifest's title (the package name) is the publisher's string, served by the
    # registry: printed as it was, it wrote lines of its own under `donjon package inspect`.
    forged = "sha256:" + "0" * 64
    renamed = tmp_path / f"app\n  main.wasm:   {forged}"
    make_pkg(tmp_path, wasm).rename(renamed)
    ref = registry.ref("team/named", ":v1")
    pushed = donjon("package", "push", str(renamed), ref, env=registry.env())
    assert pushed.returncode == 0, pushed.stderr
    shown = donjon("package", "inspect", ref, env=registry.env())
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line for line in lines if "main.wasm:" in line] == [
        "  name:        app\\n  main.wasm:   " + forged,
        "  main.wasm:   sha256:" + hashlib.sha256(wasm).hexdigest(),
    ]
