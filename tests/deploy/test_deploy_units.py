"""The deploy pieces on their own: references, manifests, sealing, the secret vault and
policy, the policy rule allowed_packages, verify-peer's package check, config entries."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.attestation.policytoml import SectionReader
from donjon.attestation.rules import apply_rules, parse_rules
from donjon.attestation.verdict import Checklist
from donjon.keep import package as packages
from donjon.keep.oci import artifact, reference
from donjon.keep.oci.artifact import ArtifactError, Descriptor
from donjon.keep.oci.reference import ReferenceError
from donjon.keep.sealed import SealedModule, SealedModuleError, seal
from donjon.steward.errors import MalformedRequest
from donjon.steward.secrets_policy import ReleasePolicy, evaluate
from donjon.steward.secrets_store import SecretStore
from donjon.steward.secrets_vault import (
    Kek,
    KekError,
    SecretUnavailable,
    load_kek,
    open_value,
    parse_kek,
    rewrap,
)
from donjon.steward.secrets_vault import (
    seal as seal_value,
)
from donjon.steward.store import AuditStore

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci://r.example/a/b@" + DIGEST, ("r.example", "a/b", None, DIGEST)),
        ("oci://127.0.0.1:5000/app:v1", ("127.0.0.1:5000", "app", "v1", None)),
        ("oci://[::1]:5000/x/y:t@" + DIGEST, ("[::1]:5000", "x/y", "t", DIGEST)),
    ],
)
def test_references_parse(text: str, expected: tuple[object, ...]) -> None:
    ref = reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("docker://r/a", "starts with oci://"),
        ("oci://r.example", "expected oci://HOST"),
        ("oci://r.example/App", "not a repository name"),
        ("oci://r.example/a@sha256:xyz", "not a digest"),
        ("oci://r.example:99999/a", "out of range"),
        ("oci://r.example/a:bad tag", "not a valid tag"),
    ],
)
def test_bad_references_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ReferenceError, match=message):
        reference.parse(text)


def _manifest(layers: list[Descriptor], config_type: str = artifact.WASM_CONFIG) -> bytes:
    config = Descriptor(config_type, DIGEST, 2, {})
    return artifact.build_manifest(config, layers, {artifact.TITLE: "x"})


def test_manifest_parser_refuses_what_is_not_a_package() -> None:
    wasm = Descriptor.of(artifact.WASM_LAYER, b"\0asm")
    ok = artifact.parse_manifest(_manifest([wasm]), artifact.OCI_MANIFEST, "t")
    assert ok.wasm == wasm and not ok.sealed
    cases = [
        (_manifest([wasm, wasm]), "a second application/wasm layer"),
        (_manifest([Descriptor.of("text/plain", b"x")]), "unknown media type 'text/plain'"),
        (_manifest([Descriptor.of(artifact.FILES_LAYER, b"x")]), "no application/wasm layer"),
        (_manifest([wasm], "application/json"), "not a wasm package"),
        (_manifest([Descriptor.of(artifact.SEALED_WASM_LAYER, b"x")]), "has no dev.donjon"),
    ]
    for data, message in cases:
        with pytest.raises(ArtifactError, match=message):
            artifact.parse_manifest(data, artifact.OCI_MANIFEST, "t")
    doc = json.loads(_manifest([wasm]))
    doc["layers"][0]["digest"] = "sha256:" + "AB" * 32
    with pytest.raises(ArtifactError, match="lowercase"):
        artifact.parse_manifest(json.dumps(doc).encode(), artifact.OCI_MANIFEST, "t")


def test_a_sealed_module_opens_only_with_its_key_and_its_digest() -> None:
    wasm = b"\0asm\1\0\0\0" + bytes(range(200))
    key, sealed = seal(wasm)
    digest = hashlib.sha256(wasm).digest()
    assert wasm not in sealed
    assert SealedModule(sealed, digest, "k").open(key) == wasm
    with pytest.raises(SealedModuleError, match="does not open"):
        SealedModule(sealed, digest, "k").open(bytes(32))
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    with pytest.raises(SealedModuleError, match="does not open"):
        SealedModule(bytes(flipped), digest, "k").open(key)
    with pytest.raises(SealedModuleError, match="does not open"):  # the AAD binds the digest
        SealedModule(sealed, hashlib.sha256(b"other").digest(), "k").open(key)


def test_vault_binds_values_to_name_version_and_kek(tmp_path: Path) -> None:
    kek, other = Kek(b"\1" * 32), Kek(b"\2" * 32)
    sealed = seal_value(kek, "db", 1, b"pw")
    assert b"pw" not in sealed.ciphertext + sealed.wrapped_dek
    assert open_value(kek, "db", 1, sealed) == b"pw"
    with pytest.raises(SecretUnavailable, match="does not unwrap"):
        open_value(kek, "db", 2, sealed)  # a row moved to another version
    with pytest.raises(SecretUnavailable, match="wrapped by KEK"):
        open_value(other, "db", 1, sealed)
    moved = rewrap(kek, other, "db", 1, sealed)
    assert open_value(other, "db", 1, moved) == b"pw" and moved.ciphertext == sealed.ciphertext
    path = tmp_path / "kek"
    path.write_text("00" * 32)
    path.chmod(0o644)
    with pytest.raises(Exception, match=r"0600|group|other|permissions|mode"):
        load_kek(path)
    path.chmod(0o600)
    assert load_kek(path) == Kek(bytes(32))
    with pytest.raises(KekError, match="32 bytes"):
        parse_kek("abcd", "x")
    assert load_kek(None, {}) is None


def _result(**changes: object) -> AttestationResult:
    base: dict[str, object] = {
        "platform": "snp",
        "product": "Milan",
        "measurement": b"\7" * 48,
        "tcb": "",
        "tcb_status": "UpToDate",
        "advisories": (),
        "debug": False,
        "development": False,
        "policy_id": "p",
        "evaluated_at": datetime.now(UTC),
        "workload": WorkloadClaims(b"\1" * 32, b"", "w", package_sha256=b"\2" * 32),
    }
    base.update(changes)
    return AttestationResult(**base)  # type: ignore[arg-type]


def test_release_policy_checks_each_binding_with_its_own_id() -> None:
    with pytest.raises(ValueError, match="bind the secret"):
        ReleasePolicy()
    policy = ReleasePolicy(allowed_packages=["sha256:" + "02" * 32], platforms=["snp"])
    assert all(c.passed for c in evaluate(policy, _result()))
    failed = {
        c.id
        for c in evaluate(policy, _result(development=True, platform="sim", tcb_status="OutOfDate"))
        if not c.passed
    }
    assert failed == {"policy.development", "policy.platform", "policy.tcb_status"}
    other = _result(workload=WorkloadClaims(b"\1" * 32, b"", "w", package_sha256=b"\3" * 32))
    assert [c.id for c in evaluate(policy, other) if not c.passed] == ["policy.package"]
    by_wasm = ReleasePolicy(allowed_workloads=["01" * 32], min_tcb_status="any")
    assert all(c.passed for c in evaluate(by_wasm, _result(tcb_status="NoTEE")))


def test_secret_store_versions_withdrawal_and_audit(tmp_path: Path) -> None:
    audit = AuditStore.open(f"sqlite:///{tmp_path / 's.db'}")  # the schema, secrets included
    store = SecretStore(audit.engine)
    kek = Kek(b"\5" * 32)
    now = datetime.now(UTC)
    policy = ReleasePolicy(allowed_workloads=["01" * 32]).to_json()
    one = store.add_version(
        "db", lambda v: seal_value(kek, "db", v, b"one"), policy, now, create=True
    )
    two = store.add_version(
        "db", lambda v: seal_value(kek, "db", v, b"two"), None, now, create=False
    )
    assert (one.version, two.version, two.policy) == (1, 2, policy)
    with pytest.raises(Exception, match="exists"):
        store.add_version("db", lambda v: seal_value(kek, "db", v, b"x"), policy, now, create=True)
    assert store.withdraw("db", 1, now) == [1]
    current = store.current("db")
    assert current is not None and current.version == 2
    assert open_value(kek, "db", 2, current.sealed) == b"two"
    assert store.version("db", 1).sealed.ciphertext == b""  # withdrawn: erased
    assert store.names()[0]["live_versions"] == [2]
    raw = (tmp_path / "s.db").read_bytes()
    assert b"one" not in raw and b"two" not in raw
    with pytest.raises(MalformedRequest, match="not a secret name"):
        store.add_version("../x", lambda v: seal_value(kek, "x", v, b"x"), policy, now, create=True)


def _rules(text: dict[str, object]) -> Checklist:
    rules = parse_rules(text, SectionReader("policy.toml", "snp"))
    checks = Checklist()
    apply_rules(
        rules,
        section="snp",
        pinned=("measurement",),  # allowed_packages narrows beside a pin; it pins nothing
        tcb_status="UpToDate",
        default_statuses=frozenset({"UpToDate"}),
        vendor_advisories=(),
        workload=WorkloadClaims(b"\1" * 32, b"", "w", package_sha256=b"\2" * 32),
        checks=checks,
    )
    return checks


def test_allowed_packages_is_a_shared_policy_rule() -> None:
    assert _rules({"allowed_packages": ["sha256:" + "02" * 32]}).passed
    refused = _rules({"allowed_packages": ["03" * 32]})
    assert not refused.passed and refused.first_failed == "policy.package"
    with pytest.raises(Exception, match="allowed_packages"):
        _rules({"allowed_packages": ["sha256:12"]})


def test_config_secret_entries_and_env_references(tmp_path: Path) -> None:
    head = 'steward = "https://s.example"\n'
    stdio = '[[files]]\nkind="stdin"\n[[files]]\nkind="stdout"\n[[files]]\nkind="stderr"\n'
    good = (
        head + '[env]\nPW = { secret = "db" }\nPLAIN = "x"\n' + stdio
        + '[[files]]\nkind="secret"\nsecret="db"\nname="/run/secrets/db"\n'
        + '[[files]]\nkind="secret"\nsecret="key"\nname="KEY"\n'
    )  # fmt: skip
    config = packages.parse(good.encode(), tmp_path / "Donjon.toml")
    assert config.secret_names() == ["db", "key"] and config.plain_env() == {"PLAIN": "x"}
    bad = {
        stdio + '[[files]]\nkind="secret"\nsecret="db"\nname="/db"\n': "/dir/file",
        stdio + '[[files]]\nkind="secret"\nsecret="db"\nname="/a/../b"\n': "/dir/file",
        stdio + '[[files]]\nkind="secret"\nsecret="d b"\nname="X"\n': "not a secret name",
        stdio + '[[files]]\nkind="listen"\nname="L"\n[[files]]\nkind="secret"\nsecret="d"\n'
        'name="/run/s/d"\n': "must come before the first socket",
        '[env]\nPW = { secret = "db", extra = 1 }\n': "extra",
    }
    for text, message in bad.items():
        with pytest.raises(packages.ConfigError, match=message):
            packages.parse((head + text).encode(), tmp_path / "Donjon.toml")
    with pytest.raises(packages.ConfigError, match="needs a steward URL"):
        packages.parse(b'[env]\nPW = { secret = "db" }\n', tmp_path / "Donjon.toml")
