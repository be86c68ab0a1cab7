"""Policy loading: the Enarx superset, strictness, and the ABI version requirement."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from donjon.attestation import Policy, PolicyError, Product, load_policy
from donjon.attestation.versionreq import VersionReq

D48 = "ab" * 48


def load(text: str, tmp_path: Path) -> Policy:
    path = tmp_path / "steward.toml"
    path.write_text(text)
    return load_policy(path)


def test_enarx_policy_loads(vectors: Path) -> None:
    path = vectors / "enarx-steward/steward_testdata_policy.toml"
    policy = load_policy(path)
    assert policy.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert policy.cert_lifetime == timedelta(days=28)
    assert policy.san_dns == []
    snp = policy.snp
    assert [d.hex() for d in snp.signer] == [
        "7dc22240a8344fce6ba5f22ffbedabc52d4123ae0ba1c59796e521b953916b503f223b15c4429e7d8c5489ad71f1e193"
    ]
    assert len(snp.id_key_digest) == 1 and len(snp.measurement) == 1
    assert snp.abi is not None and snp.abi.matches((1, 51, 0)) and not snp.abi.matches((1, 50, 0))
    assert snp.policy_flags == 1 << 16  # SMT is guest policy bit 16
    assert snp.platform_info_flags == 1  # Enarx "SME" = platform_info bit 0
    assert not snp.allow_debug and snp.vmpl == frozenset({0})
    sgx = policy.tees["sgx"]  # Enarx's [sgx] keys keep their meaning (see test_attest_dcap_policy)
    assert [d.hex() for d in sgx.allowed("signer")] == [
        "7a49a07df0f8e90a6e1d9a63e3c696d9c844f0e3f8739b21daa640f99facc48a"
    ]
    assert snp.crl == "require"  # no crl key in the Enarx file: the fail-closed default
    assert not policy.nil_allow and not policy.kvm_allow and policy.sim is None


def test_donjon_superset(tmp_path: Path) -> None:
    (tmp_path / "ark.pem").write_text("placeholder")
    policy = load(
        f"""
cert_lifetime = "12h"
san_dns = ["app.example.com"]
[snp]
measurement = ["{D48}"]
allow_debug = true
allow_migration_agent = true
vmpl = [0, 1]
min_reported_tcb = {{ bl = 3, snp = 8, ucode = 115 }}
min_launch_tcb = {{ tee = 0 }}
min_firmware = "1.55.2"
min_guest_svn = 1
family_id = ["{"00" * 16}"]
image_id = ["{"01" * 16}"]
host_data = ["{"02" * 32}"]
allowed_workloads = ["{"03" * 32}"]
products = ["Milan", "genoa"]
signing_keys = ["VCEK"]
crl = "if-available"
policy_flags = ["SMT", "Debug", "MigrateMA"]
platform_info_flags = ["SMT", "TSME"]
[sim]
trust = "ark.pem"
min_guest_svn = 2
[nil]
allow = true
[kvm]
allow = false
""",
        tmp_path,
    )
    assert policy.cert_lifetime == timedelta(hours=12)
    assert policy.san_dns == ["app.example.com"]
    snp = policy.snp
    assert snp.vmpl == frozenset({0, 1})
    assert snp.min_reported_tcb is not None and snp.min_reported_tcb.snp == 8
    assert snp.min_firmware == (1, 55, 2)
    assert snp.products == frozenset({Product.MILAN, Product.GENOA})
    assert snp.policy_flags == (1 << 16) | (1 << 19) | (1 << 18)
    assert snp.platform_info_flags == 0b11
    assert policy.sim is not None and policy.sim.trust == (tmp_path / "ark.pem").resolve()
    assert policy.sim.snp.min_guest_svn == 2
    assert snp.crl == "if-available"
    assert policy.sim.snp.crl == "if-available"  # sim hierarchies publish no CRL
    assert policy.nil_allow and not policy.kvm_allow
    assert set(policy.tees) == {"snp"}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("colour = 1", "colour"),
        ("[snp]\nmesurement = []", "[snp] mesurement"),
        ('[snp]\nhash = ["abcd"]', "[snp] hash"),
        ('[snp]\nsigner = ["' + "zz" * 48 + '"]', "[snp] signer"),
        (f'[snp]\nhash = ["{D48}"]\nhash_blacklist = ["{D48}"]', "[snp] hash_blacklist"),
        (f'[snp]\nmeasurement = ["{D48}"]\nmeasurement_deny = ["{D48}"]', "measurement_deny"),
        ('[snp]\nabi = "not a version"', "[snp] abi"),
        ('[snp]\npolicy_flags = ["Fast"]', "[snp] policy_flags"),
        ('[snp]\npolicy_flags = ["Debug"]', "[snp] policy_flags"),
        ("[snp]\nallow_debug = 1", "[snp] allow_debug"),
        ("[snp]\nvmpl = 4", "[snp] vmpl"),
        ("[snp]\nmin_reported_tcb = { xyz = 1 }", "min_reported_tcb.xyz"),
        ("[snp]\nmin_reported_tcb = { bl = 256 }", "min_reported_tcb.bl"),
        ('[snp]\nmin_firmware = "one"', "[snp] min_firmware"),
        ('[snp]\nproducts = ["Naples"]', "[snp] products"),
        ('[snp]\nsigning_keys = ["VXEK"]', "[snp] signing_keys"),
        ('cert_lifetime = "forever"', "cert_lifetime"),
        ('cert_lifetime = "400d"', "cert_lifetime"),
        ("san_dns = [1]", "san_dns"),
        ("[nil]\nallow = 'yes'", "[nil] allow"),
        ("[kvm]\npermit = true", "[kvm] permit"),
        ("[sim]\ntrust = 3", "[sim] trust"),
        ("[sim]\nsurprise = 3", "[sim] surprise"),
        ('[snp]\ncrl = "optional"', "[snp] crl"),
        ("[snp]\ncrl = true", "[snp] crl"),
        ('[sim]\ncrl = "require"', "[sim] crl"),
        ("not toml at all [", "not valid TOML"),
    ],
)
def test_bad_policies_name_file_and_key(text: str, where: str, tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load(text, tmp_path)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "steward.toml"))
    assert where in message
    assert "\n" not in message


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "nope.toml")


def test_default_policy_is_strict_about_the_tee_and_open_about_the_workload() -> None:
    # The offline appraisal policy (donjon attest verify without --policy).
    policy = Policy.default()
    snp = policy.snp
    assert snp is not None
    assert not snp.allow_debug and not snp.allow_migration_agent
    assert snp.vmpl == frozenset({0})
    assert snp.crl == "require"
    assert snp.rules.accept_any_workload and not snp.rules.allowed_workloads
    assert not policy.nil_allow and not policy.kvm_allow and policy.sim is None
    assert policy.freshness.donjon == "require" and policy.freshness.enarx == "accept"


def test_an_empty_policy_accepts_no_platform() -> None:
    empty = Policy.from_toml("", source="empty.toml", base_dir=Path("."))
    assert empty.tees == {} and empty.sim is None and not empty.nil_allow
    assert empty.digest == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("req", "yes", "no"),
    [
        (">=1.51", [(1, 51, 0), (1, 55, 0), (2, 0, 0)], [(1, 50, 0), (0, 99, 0)]),
        ("1.0", [(1, 0, 0), (1, 55, 0)], [(2, 0, 0), (0, 9, 0)]),  # bare = caret (Cargo)
        ("^0.31", [(0, 31, 0)], [(0, 32, 0), (1, 0, 0)]),
        ("~1.51", [(1, 51, 0)], [(1, 52, 0)]),
        (">1.51", [(1, 52, 0)], [(1, 51, 0)]),
        ("<=1.51", [(1, 51, 0), (1, 0, 0)], [(1, 52, 0)]),
        ("=1.51", [(1, 51, 0)], [(1, 52, 0), (1, 50, 0)]),
        (">=1.50, <1.55", [(1, 50, 0), (1, 54, 0)], [(1, 55, 0)]),
        ("*", [(0, 0, 0), (254, 0, 0)], []),
        (">254.0", [(255, 0, 0), (254, 1, 0)], [(1, 51, 0), (254, 0, 9)]),  # Cargo: >=254.1.0
    ],
)
def test_version_requirements(
    req: str, yes: list[tuple[int, int, int]], no: list[tuple[int, int, int]]
) -> None:
    parsed = VersionReq.parse(req)
    for version in yes:
        assert parsed.matches(version), (req, version)
    for version in no:
        assert not parsed.matches(version), (req, version)


@pytest.mark.parametrize("bad", ["abc", ">=", "1.2.3.4", ">>1"])
def test_bad_version_requirements(bad: str) -> None:
    with pytest.raises(ValueError):
        VersionReq.parse(bad)


def _public_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_the_policy_id_changes_when_a_file_it_names_changes(tmp_path: Path) -> None:
    """A certificate's policy id must name what judged it: a signer key or a simulator root
    swapped under an unchanged policy file gives another id."""
    text = (
        "[sim]\ntrust = \"ark.pem\"\n"
        "[snp]\naccept_any_workload = true\n"
        'allowed_packages = [{ repository = "registry.example/team/app", signer = "team.pub" }]\n'
    )
    policy_file = tmp_path / "steward.toml"
    policy_file.write_text(text)
    (tmp_path / "ark.pem").write_bytes(b"ark v1")
    key = tmp_path / "team.pub"
    key.write_bytes(_public_pem())

    def expected() -> str:
        lines = "donjon-policy-id-v2\n" + hashlib.sha256(text.encode()).hexdigest() + "\n"
        for name in ("ark.pem", "team.pub"):
            lines += f"{name}\n{hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()}\n"
        return hashlib.sha256(lines.encode()).hexdigest()

    first = load_policy(policy_file).digest
    assert first == expected()
    assert first != hashlib.sha256(text.encode()).hexdigest()

    key.write_bytes(_public_pem())  # another signer, same policy text
    second = load_policy(policy_file).digest
    assert second == expected() and second != first

    (tmp_path / "ark.pem").write_bytes(b"ark v2")
    third = load_policy(policy_file).digest
    assert third == expected() and third not in (first, second)


def test_a_policy_that_names_no_file_keeps_the_file_digest_as_its_id(tmp_path: Path) -> None:
    text = "[snp]\naccept_any_workload = true\n"
    policy_file = tmp_path / "steward.toml"
    policy_file.write_text(text)
    assert load_policy(policy_file).digest == hashlib.sha256(text.encode()).hexdigest()
