"""The config's sealed part: what ``push --encrypt`` moves out of the clear layer, how it
is sealed, and every way the Keep refuses it. No registry: the end-to-end run is in
``test_deploy_secrets_e2e.py``."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from donjon.keep import config_split, guest_secrets, runner, sealed, sealed_config, source
from donjon.keep.config_problems import ConfigError
from donjon.keep.config_secret import SecretRef
from donjon.keep.oci import artifact, bundle, publish, reference
from donjon.keep.oci.artifact import ArtifactError, Descriptor
from donjon.keep.oci.fetch import FetchedBlobs
from donjon.keep.sealed import SealedModule, SealedModuleError
from donjon.keep.sealed_config import SealedConfig, SealedConfigError

ARG = "arg-marker-5b1e0c9d"
ENV = "env-marker-77a2f4e1"
CONFIG = f"""# a comment: comments are not kept in the clear part
args = ["--token", "{ARG}"]
steward = "https://steward.example:8443/"

[env]
MOTD = "{ENV}"
DB_PASSWORD = {{ secret = "db" }}

[[files]]
kind = "stdin"
[[files]]
kind = "stdout"
[[files]]
kind = "stderr"
[[files]]
kind = "listen"
name = "web"
port = 8443

[limits]
timeout = 30
"""
WASM = b"\0asm\1\0\0\0" + b"module bytes " * 20
WASM_SHA256 = hashlib.sha256(WASM).digest()


@pytest.fixture
def where(tmp_path: Path) -> Path:
    path = tmp_path / "Donjon.toml"
    path.write_text(CONFIG)
    return path


def test_split_seals_args_and_env_values_and_keeps_the_rest_clear(where: Path) -> None:
    clear, part = config_split.split(CONFIG.encode(), where)
    for marker in (ARG, ENV, "MOTD", "--token", "a comment"):
        assert marker.encode() not in clear
    assert ARG.encode() in part and ENV.encode() in part
    assert b"https://steward.example:8443/" in clear and b"8443" in clear and b'"db"' in clear
    merged = config_split.merge(clear, part, where)
    assert merged.args == ["--token", ARG]
    assert merged.env == {"MOTD": ENV, "DB_PASSWORD": SecretRef(secret="db")}
    assert merged.steward == "https://steward.example:8443/"
    assert merged.fd_names() == ["stdin", "stdout", "stderr", "web"]
    assert merged.limits.timeout == 30
    # The clear part alone is a config: what the Keep parses (and attests) before the key.
    clear_only = config_split.merge(clear, b"", where)
    assert clear_only.args == [] and clear_only.plain_env() == {}
    assert clear_only.secret_names() == ["db"]


def test_a_config_with_nothing_to_seal_gives_an_empty_sealed_part(where: Path) -> None:
    text = 'steward = "https://s.example/"\n'
    clear, part = config_split.split(text.encode(), where)
    assert part == b""
    assert config_split.merge(clear, part, where).steward == "https://s.example/"


def test_push_refuses_to_split_a_config_that_does_not_validate(where: Path) -> None:
    with pytest.raises(ConfigError, match=r"Donjon\.toml: unknown field 'argz'"):
        config_split.split(b'argz = ["x"]\n', where)


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (b'steward = "https://evil.example/"\n', r"steward: stays in the clear config"),
        (b"[[files]]\nkind = 'null'\n", r"files: stays in the clear config"),
        (b"argz = []\n", r"unknown field 'argz' \(did you mean 'args'\?\)"),
        (b"[env]\nX = { secret = 'db' }\n", r"env\.X: a sealed env value is a string"),
        (b"[env]\nDB_PASSWORD = 'x'\n", r"env\.DB_PASSWORD: also given in the clear config"),
        (b"args = [1]\n", r"args\.0: must be a string"),
        (b"args = 'x'\n", r"args: must be a list"),
        (b"env = 3\n", r"env: must be a table"),
        (b"[env]\nFD_NAMES = 'a'\n", r"env: FD_NAMES is set by the Keep"),
        (b"args = [\n", r"invalid TOML"),
        (b"\xff", r"not UTF-8"),
    ],
)
def test_the_sealed_part_gets_the_checks_of_a_config_and_errors_name_it(
    where: Path, part: bytes, message: str
) -> None:
    clear = b'steward = "https://s.example/"\n[env]\nDB_PASSWORD = { secret = "db" }\n'
    with pytest.raises(ConfigError) as caught:
        config_split.merge(clear, part, where)
    assert caught.value.message.startswith(f"{where} (sealed part)")
    assert len(caught.value.message.splitlines()) == 1
    assert re.search(message, caught.value.message), caught.value.message


def test_args_in_both_parts_are_refused(where: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(sealed part\): args: also given in the clear"):
        config_split.merge(b'args = ["a"]\n', b'args = ["b"]\n', where)


def _sealed(part: bytes, clear_sha256: bytes | None = None) -> tuple[bytes, SealedConfig]:
    key = bytes(range(32))
    blob, digest = sealed_config.seal(key, part, wasm_sha256=WASM_SHA256, clear_sha256=clear_sha256)
    return key, SealedConfig(blob, digest, WASM_SHA256, clear_sha256)


def test_the_sealed_part_opens_only_with_its_key_beside_its_package() -> None:
    part = f'args = ["{ARG}"]\n'.encode()
    clear_sha256 = hashlib.sha256(b"clear").digest()
    key, box = _sealed(part, clear_sha256)
    assert ARG.encode() not in box.ciphertext
    assert box.open(key) == part
    # The digest in the manifest is of blind || TOML: no oracle for guessing a short value.
    assert box.plain_sha256 != hashlib.sha256(part).digest()
    assert _sealed(part, clear_sha256)[1].plain_sha256 != box.plain_sha256
    flipped = bytearray(box.ciphertext)
    flipped[20] ^= 1
    refusals = [
        (SealedConfig(box.ciphertext, box.plain_sha256, WASM_SHA256, clear_sha256), bytes(32)),
        (SealedConfig(bytes(flipped), box.plain_sha256, WASM_SHA256, clear_sha256), key),
        # Beside another module, another clear config, or none: the AAD binds them.
        (SealedConfig(box.ciphertext, box.plain_sha256, bytes(32), clear_sha256), key),
        (SealedConfig(box.ciphertext, box.plain_sha256, WASM_SHA256, bytes(32)), key),
        (SealedConfig(box.ciphertext, box.plain_sha256, WASM_SHA256, None), key),
        # Another plaintext digest in the manifest.
        (
            SealedConfig(box.ciphertext, hashlib.sha256(b"x").digest(), WASM_SHA256, clear_sha256),
            key,
        ),
    ]
    for other, with_key in refusals:
        with pytest.raises(SealedConfigError, match="does not open with the package key"):
            other.open(with_key)
    with pytest.raises(SealedConfigError, match="is 16 bytes, not 32"):
        box.open(bytes(16))
    with pytest.raises(SealedConfigError, match="too short"):
        SealedConfig(box.ciphertext[:40], box.plain_sha256, WASM_SHA256, clear_sha256).open(key)


def test_a_sealed_module_and_a_sealed_config_cannot_stand_in_for_each_other() -> None:
    key, box = _sealed(b'args = ["x"]\n')
    _, wasm_blob = sealed.seal(WASM, key)  # the same package key
    as_config = SealedConfig(wasm_blob, WASM_SHA256, WASM_SHA256, None)
    with pytest.raises(SealedConfigError, match="does not open"):
        as_config.open(key)
    as_module = SealedModule(box.ciphertext, box.plain_sha256, "k")
    with pytest.raises(SealedModuleError, match="does not open"):
        as_module.open(key)
    assert SealedModule(wasm_blob, WASM_SHA256, "k").open(key) == WASM  # each opens as itself


def _manifest(layers: list[Descriptor]) -> bytes:
    config = Descriptor(artifact.WASM_CONFIG, "sha256:" + "00" * 32, 2, {})
    return artifact.build_manifest(config, layers, {artifact.TITLE: "x"})


SEALED_WASM = Descriptor.of(
    artifact.SEALED_WASM_LAYER,
    b"ciphertext",
    {
        artifact.PLAIN_SHA256: WASM_SHA256.hex(),
        artifact.KEY_SECRET: "package-key.x",
        artifact.CIPHER: artifact.AES_256_GCM,
    },
)
SEALED_PART = Descriptor.of(
    artifact.SEALED_CONFIG_LAYER,
    b"sealed config",
    {artifact.SEALED_CONFIG_SHA256: "ab" * 32, artifact.CIPHER: artifact.AES_256_GCM},
)


def test_the_manifest_has_a_sealed_config_part_exactly_when_main_wasm_is_sealed() -> None:
    parsed = artifact.parse_manifest(
        _manifest([SEALED_WASM, SEALED_PART]), artifact.OCI_MANIFEST, "t"
    )
    assert parsed.sealed and parsed.sealed_config == SEALED_PART
    assert parsed.sealed_config_sha256() == bytes.fromhex("ab" * 32)
    assert parsed.layers == (SEALED_WASM, SEALED_PART)
    clear_wasm = Descriptor.of(artifact.WASM_LAYER, WASM)
    v2 = Descriptor(
        "application/vnd.donjon.keep-config.sealed.v2+encrypted",
        SEALED_PART.digest,
        SEALED_PART.size,
        SEALED_PART.annotations,
    )
    no_digest = Descriptor.of(artifact.SEALED_CONFIG_LAYER, b"s", {artifact.CIPHER: "AES-256-GCM"})
    other_cipher = Descriptor.of(
        artifact.SEALED_CONFIG_LAYER,
        b"s",
        {artifact.SEALED_CONFIG_SHA256: "ab" * 32, artifact.CIPHER: "ChaCha20-Poly1305"},
    )
    cases = [
        ([SEALED_WASM], "main.wasm is sealed but the package has no .*sealed.v1"),
        ([clear_wasm, SEALED_PART], "sealed.v1\\+encrypted layer beside a main.wasm in clear"),
        ([SEALED_WASM, v2], "sealed.v2\\+encrypted' is a version this Donjon does not read"),
        ([SEALED_WASM, no_digest], "has no dev.donjon.keep-config.sha256"),
        ([SEALED_WASM, other_cipher], "unsupported cipher 'ChaCha20-Poly1305'"),
        ([SEALED_WASM, SEALED_PART, SEALED_PART], "a second .*sealed.v1\\+encrypted layer"),
    ]
    for layers, message in cases:
        with pytest.raises(ArtifactError, match=message):
            artifact.parse_manifest(_manifest(layers), artifact.OCI_MANIFEST, "t")


def _package_dir(root: Path) -> Path:
    pkg = root / "app"
    pkg.mkdir()
    (pkg / "main.wasm").write_bytes(WASM)
    (pkg / "Donjon.toml").write_text(CONFIG)
    return pkg


def test_an_encrypted_build_holds_the_markers_only_as_ciphertext(tmp_path: Path) -> None:
    files = bundle.read_dir(_package_dir(tmp_path))
    manifest, blobs, key, _ = publish.build(files, encrypt=True, key_secret="package-key.app")
    assert key is not None
    by_type = {d.media_type: (d, data) for d, data in blobs}
    assert set(by_type) == {
        artifact.WASM_CONFIG,
        artifact.SEALED_WASM_LAYER,
        artifact.KEEP_CONFIG_LAYER,
        artifact.SEALED_CONFIG_LAYER,
    }
    for _, data in blobs:
        assert ARG.encode() not in data and ENV.encode() not in data
    assert ARG.encode() not in manifest and ENV.encode() not in manifest
    parsed = artifact.parse_manifest(manifest, artifact.OCI_MANIFEST, "t")
    clear = by_type[artifact.KEEP_CONFIG_LAYER][1]
    assert parsed.clear_config_sha256() == hashlib.sha256(clear).digest()
    part_digest = parsed.sealed_config_sha256()
    assert part_digest is not None
    box = SealedConfig(
        by_type[artifact.SEALED_CONFIG_LAYER][1],
        part_digest,
        parsed.plain_wasm_sha256(),
        parsed.clear_config_sha256(),
    )
    merged = config_split.merge(clear, box.open(key), tmp_path / "Donjon.toml")
    assert merged.args == ["--token", ARG] and merged.plain_env() == {"MOTD": ENV}
    # The wasm config lists every layer, in the manifest's order (the Keep checks it).
    listed = json.loads(by_type[artifact.WASM_CONFIG][1])["layerDigests"]
    assert listed == [d.digest for d in parsed.layers]


def test_a_plain_build_has_no_sealed_part_and_keeps_the_config_byte_for_byte(
    tmp_path: Path,
) -> None:
    files = bundle.read_dir(_package_dir(tmp_path))
    _, blobs, key, _ = publish.build(files, encrypt=False, key_secret=None)
    assert key is None
    configs = [data for d, data in blobs if d.media_type == artifact.KEEP_CONFIG_LAYER]
    assert configs == [CONFIG.encode()]
    assert all(d.media_type != artifact.SEALED_CONFIG_LAYER for d, _ in blobs)


def test_an_encrypted_package_without_a_config_still_has_a_sealed_part(tmp_path: Path) -> None:
    pkg = tmp_path / "bare"
    pkg.mkdir()
    (pkg / "main.wasm").write_bytes(WASM)
    manifest, blobs, key, _ = publish.build(
        bundle.read_dir(pkg), encrypt=True, key_secret="package-key.bare"
    )
    assert key is not None
    parsed = artifact.parse_manifest(manifest, artifact.OCI_MANIFEST, "t")
    assert parsed.keep_config is None and parsed.sealed_config is not None
    digest = parsed.sealed_config_sha256()
    assert digest is not None
    blob = next(data for d, data in blobs if d.media_type == artifact.SEALED_CONFIG_LAYER)
    assert SealedConfig(blob, digest, WASM_SHA256, None).open(key) == b""


def _fetched(tmp_path: Path) -> tuple[FetchedBlobs, bytes]:
    """An encrypted package as ``fetch`` returns it (every digest checked), and its key."""
    pkg = _package_dir(tmp_path)
    (pkg / "Donjon.toml").write_text(
        CONFIG.replace('steward = "', 'steward_ca = "ca.pem"\nsteward = "')
    )
    (pkg / "ca.pem").write_text("a static file of the package\n")
    manifest, blobs, key, _ = publish.build(
        bundle.read_dir(pkg), encrypt=True, key_secret="package-key.app"
    )
    assert key is not None
    by_type = {d.media_type: data for d, data in blobs}
    digest = artifact.sha256_digest(manifest)
    fetched = FetchedBlobs(
        reference=reference.parse(f"oci://registry.example/team/app@{digest}"),
        manifest=artifact.parse_manifest(manifest, artifact.OCI_MANIFEST, "t"),
        manifest_bytes=manifest,
        wasm_layer=by_type[artifact.SEALED_WASM_LAYER],
        keep_config=by_type[artifact.KEEP_CONFIG_LAYER],
        files_tar=by_type[artifact.FILES_LAYER],
        sealed_config=by_type[artifact.SEALED_CONFIG_LAYER],
    )
    return fetched, key


def test_the_keep_attests_the_clear_config_and_merges_the_sealed_part_after(
    tmp_path: Path,
) -> None:
    fetched, key = _fetched(tmp_path)
    with source._from_blobs(fetched, None, source.SourceOptions()) as opened:
        package = opened.package
        # Before the key: the clear config only, and the claims name its layer.
        assert package.config.args == [] and package.config.plain_env() == {}
        assert package.config.secret_names() == ["db"]
        clear = fetched.keep_config
        assert clear is not None and package.config_bytes == clear
        claims = runner.workload_claims(package)
        assert claims.config_sha256 == hashlib.sha256(clear).digest()
        assert claims.package_sha256 == hashlib.sha256(fetched.manifest_bytes).digest()
        assert package.sealed is not None and package.sealed.config is not None
        # After: the same merge guest_secrets runs once the key is released.
        merged = guest_secrets._open_config(package, package.sealed.config, key)
        assert merged.args == ["--token", ARG] and merged.plain_env() == {"MOTD": ENV}
        assert merged.steward_ca == Path("ca.pem")  # resolved beside the unpacked files
        with pytest.raises(SealedConfigError, match="does not open"):
            guest_secrets._open_config(package, package.sealed.config, bytes(32))
    override = tmp_path / "mine.toml"
    override.write_text('args = ["mine"]\n')
    with pytest.raises(
        source.SourceError,
        match=r"has a sealed part \(args, env values\), which --config would drop",
    ):
        source._from_blobs(fetched, override, source.SourceOptions())
