"""Where signatures live in a real registry (docker-registry 2.8: no referrers API), and what
the Keep does with what it finds there: bounded, digest-checked, strict, never judged."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from donjon.attestation import packagesig
from donjon.keep.oci import reference, signatures
from donjon.keep.oci.artifact import OCI_MANIFEST, sha256_digest
from donjon.keep.oci.auth import find_credentials
from donjon.keep.oci.publish import push
from donjon.keep.oci.registry import DigestMismatch, RegistryClient
from donjon.keep.oci.signatures import SignatureArtifactError
from support.registry import Registry


def _pushed(tmp_path: Path, registry: Registry, repo: str) -> reference.Reference:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "main.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00" + repo.encode())
    ref = reference.parse(registry.ref(repo))
    return push(pkg, ref, credentials=find_credentials(ref.registry)).reference


def _client(ref: reference.Reference, push: bool = False) -> RegistryClient:
    return RegistryClient(ref, credentials=find_credentials(ref.registry), push=push)


def _tag(ref: reference.Reference) -> str:
    assert ref.digest is not None
    return "sha256-" + ref.digest.removeprefix("sha256:") + ".sig"


def test_signing_twice_with_two_keys_keeps_both_and_again_with_one_replaces_it(
    tmp_path: Path, registry_env: Registry
) -> None:
    ref = _pushed(tmp_path, registry_env, "store/two")
    first, second = ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()
    creds = find_credentials(ref.registry)
    assert signatures.sign_reference(ref, first, credentials=creds).stored == "tag"
    signatures.sign_reference(ref, second, credentials=creds)
    signatures.sign_reference(ref, first, credentials=creds)
    assert ref.digest is not None
    with _client(ref) as client:
        found = signatures.fetch(client, ref.digest)
    assert sorted(r.algorithm for r in found) == ["ecdsa-p384-sha384", "ed25519"]
    keys = {packagesig.key_id(k.public_key()): k.public_key() for k in (first, second)}
    digest = bytes.fromhex(ref.digest.removeprefix("sha256:"))
    repo = f"{registry_env.host}/store/two"
    assert packagesig.judge(found, repo, digest, keys).ok
    # The registry answers 404 to the referrers API: this is why the tag holds them.
    with registry_env.client() as http:
        assert http.get(f"/v2/store/two/referrers/{ref.digest}").status_code == 404
        manifest = http.get(
            f"/v2/store/two/manifests/{_tag(ref)}", headers={"Accept": OCI_MANIFEST}
        ).json()
    assert len(manifest["layers"]) == 2
    assert manifest["subject"]["digest"] == ref.digest


def test_a_statement_blob_changed_in_storage_is_refused(
    tmp_path: Path, registry_env: Registry
) -> None:
    ref = _pushed(tmp_path, registry_env, "store/tampered")
    key = ec.generate_private_key(ec.SECP256R1())
    signatures.sign_reference(ref, key, credentials=find_credentials(ref.registry))
    assert ref.digest is not None
    record = packagesig.sign(key, f"{registry_env.host}/store/tampered", ref.digest)
    blob = registry_env.blob_path(sha256_digest(record.statement))
    data = bytearray(blob.read_bytes())
    data[12] ^= 0x01
    blob.write_bytes(bytes(data))
    with _client(ref) as client, pytest.raises(DigestMismatch, match="hash to"):
        signatures.fetch(client, ref.digest)


def _put_sig_manifest(registry: Registry, repo: str, tag: str, doc: dict[str, object]) -> None:
    with registry.client() as http:
        put = http.put(
            f"/v2/{repo}/manifests/{tag}",
            content=json.dumps(doc).encode(),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, put.text


def test_a_malformed_donjon_signature_manifest_is_refused_with_one_line(
    tmp_path: Path, registry_env: Registry
) -> None:
    ref = _pushed(tmp_path, registry_env, "store/malformed")
    assert ref.digest is not None
    key = ec.generate_private_key(ec.SECP256R1())
    record = packagesig.sign(key, f"{registry_env.host}/store/malformed", ref.digest)
    with _client(ref, push=True) as client:
        client.push_blob(signatures.EMPTY)
        client.push_blob(record.statement)
    layer = signatures.layer_of(record).to_json()
    layer["annotations"][signatures.A_SIGNATURE] = "not base64!"  # type: ignore[index]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": signatures.SIGNATURE_ARTIFACT,
        "config": {"mediaType": signatures.EMPTY_CONFIG, "digest": sha256_digest(b"{}"), "size": 2},
        "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": ref.digest, "size": 1},
    }
    _put_sig_manifest(registry_env, "store/malformed", _tag(ref), doc)
    with _client(ref) as client, pytest.raises(SignatureArtifactError) as info:
        signatures.fetch(client, ref.digest)
    assert "layers[0]: dev.donjon.signature is not base64" in str(info.value)
    # A manifest under the tag that names another subject: refused, not read as ours.
    layer["annotations"][signatures.A_SIGNATURE] = base64.b64encode(record.signature).decode()  # type: ignore[index]
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "ab" * 32, "size": 1}
    _put_sig_manifest(registry_env, "store/malformed", _tag(ref), doc)
    with _client(ref) as client, pytest.raises(SignatureArtifactError) as info:
        signatures.fetch(client, ref.digest)
    assert f"signs subject sha256:{'ab' * 32}, not the package {ref.digest}" in str(info.value)


def test_another_tools_sig_tag_is_not_read_and_not_overwritten(
    tmp_path: Path, registry_env: Registry
) -> None:
    ref = _pushed(tmp_path, registry_env, "store/cosign")
    assert ref.digest is not None
    with _client(ref, push=True) as client:
        client.push_blob(b"{}")
    cosign_like = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": sha256_digest(b"{}"), "size": 2}],
    }  # fmt: skip
    _put_sig_manifest(registry_env, "store/cosign", _tag(ref), cosign_like)
    with _client(ref) as client:
        assert signatures.fetch(client, ref.digest) == ()
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureArtifactError, match="holds another tool's signature"):
        signatures.sign_reference(ref, key, credentials=find_credentials(ref.registry))
