"""Package signatures: the statement, the claims fields, and ``allowed_packages`` entries with
a signer, judged by the Steward's shared rules. Each way to fail has its own check id."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from donjon.attestation import packagesig
from donjon.attestation.claims import ClaimsError, WorkloadClaims
from donjon.attestation.errors import PolicyError, PolicyViolationError
from donjon.attestation.packagesig import (
    SignatureFormatError,
    SignatureRecord,
    UnknownAlgorithmError,
    UnknownStatementVersionError,
)
from donjon.attestation.policytoml import SectionReader
from donjon.attestation.rules import TeeRules, apply_rules, parse_rules
from donjon.attestation.verdict import Checklist

WASM = b"\x61" * 32
DIGEST = b"\xd1" * 32
OTHER_DIGEST = b"\xd2" * 32
REPO = "registry.example:5000/team/app"
#: The canonical statement for REPO and DIGEST, written out by hand.
STATEMENT = (
    b'{"digest":"sha256:d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1",'
    b'"repository":"registry.example:5000/team/app",'
    b'"type":"dev.donjon.package-signature","version":1}'
)
DIGEST_TEXT = "sha256:" + "d1" * 32
NEWER = UnknownStatementVersionError


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _claims(*records: SignatureRecord, repository: str | None = REPO) -> WorkloadClaims:
    return WorkloadClaims(
        WASM,
        b"",
        "app",
        package_sha256=DIGEST,
        package_repository=repository,
        package_signatures=records,
    )


def _pem(key: packagesig.PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- the statement ------------------------------------------------------------------------------


def test_the_statement_is_canonical_json_naming_repository_and_digest() -> None:
    assert packagesig.statement(REPO, DIGEST_TEXT).to_bytes() == STATEMENT
    parsed = packagesig.parse_statement(STATEMENT)
    assert parsed.repository == REPO and parsed.digest == DIGEST_TEXT


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (STATEMENT.replace(b'"version":1', b'"version":2'), NEWER, "version 2"),
        (STATEMENT.replace(b'"version":1', b'"version":true'), NEWER, "version"),
        (STATEMENT.replace(b"package-signature", b"package-attestation"), NEWER, "type"),
        (STATEMENT.replace(b'","repository', b'", "repository'), SignatureFormatError, "canonical"),
        (STATEMENT[:-1] + b',"extra":1}', SignatureFormatError, "extra"),
        (STATEMENT.replace(b'"sha256:d1', b'"sha256:D1'), SignatureFormatError, "sha256"),
        (STATEMENT.replace(b"team/app", b"Team/app"), SignatureFormatError, "repository"),
        (b"[1]", SignatureFormatError, "object"),
        (b"\xff", SignatureFormatError, "ASCII JSON"),
        (b"", SignatureFormatError, "bytes"),
    ],
)  # fmt: skip
def test_a_statement_not_in_the_version_1_form_is_refused(
    data: bytes, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        packagesig.parse_statement(data)


def test_a_duplicate_key_is_not_canonical() -> None:
    doubled = STATEMENT[:-1] + b',"version":1}'
    with pytest.raises(SignatureFormatError):
        packagesig.parse_statement(doubled)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ec.generate_private_key(ec.SECP521R1()),
        lambda: rsa.generate_private_key(65537, 2048),
    ],
)
def test_keys_other_than_p256_p384_ed25519_are_refused(make: object) -> None:
    key = make()  # type: ignore[operator]
    with pytest.raises(UnknownAlgorithmError):
        packagesig.algorithm_of(key)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(UnknownAlgorithmError):
        packagesig.load_public_key(pem, "k.pub")


@pytest.mark.parametrize(
    ("make", "algorithm"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ecdsa-p256-sha256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ecdsa-p384-sha384"),
        (ed25519.Ed25519PrivateKey.generate, "ed25519"),
    ],
)
def test_each_algorithm_signs_and_verifies(make: object, algorithm: str) -> None:
    key = make()  # type: ignore[operator]
    record = packagesig.sign(key, REPO, DIGEST_TEXT)
    assert record.algorithm == algorithm and record.statement == STATEMENT
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert record.key_id == hashlib.sha256(spki).digest()
    verdict = packagesig.judge([record], REPO, DIGEST, {record.key_id: key.public_key()})
    assert verdict.ok and verdict.reason == "signed"


# --- the claims ----------------------------------------------------------------------------------


def test_repository_and_signatures_round_trip_as_context_tags_2_and_3() -> None:
    record = SignatureRecord(STATEMENT, "ed25519", b"\x4b" * 32, b"\x53" * 64)
    claims = _claims(record)
    der = claims.to_der()
    repo = REPO.encode()
    # [2] IMPLICIT UTF8String, then [3] IMPLICIT SEQUENCE OF (constructed: 0xa3).
    assert bytes([0x82, len(repo)]) + repo in der
    assert b"\xa3" in der[der.index(repo) + len(repo) :][:1]
    assert der.endswith(b"\x04\x20" + b"\x4b" * 32 + b"\x04\x40" + b"\x53" * 64)
    assert WorkloadClaims.from_der(der) == claims
    shown = claims.to_json()
    assert shown["package_repository"] == REPO
    assert shown["package_signatures"][0]["key_id"] == "sha256:" + "4b" * 32


def test_claims_with_an_unknown_algorithm_still_decode_for_the_verifier_to_refuse() -> None:
    record = SignatureRecord(STATEMENT, "rsa-pss-sha256", b"\x4b" * 32, b"\x53" * 64)
    assert WorkloadClaims.from_der(_claims(record).to_der()).package_signatures == (record,)


def test_signatures_without_a_repository_and_a_repository_without_a_package_are_refused() -> None:
    record = SignatureRecord(STATEMENT, "ed25519", b"\x4b" * 32, b"\x53" * 64)
    with pytest.raises(ClaimsError, match="without a package repository"):
        _claims(record, repository=None)
    with pytest.raises(ClaimsError, match="without a package digest"):
        WorkloadClaims(WASM, b"", "p", package_repository=REPO)
    with pytest.raises(ClaimsError, match="at most 8"):
        _claims(*([record] * 9))


# --- the Steward's rule ------------------------------------------------------------------------


def _rules(tmp_path: Path, body: str, **keys: packagesig.PublicKey) -> TeeRules:
    for name, key in keys.items():
        (tmp_path / f"{name}.pub").write_bytes(_pem(key))
    import tomllib

    table = tomllib.loads(body)
    return parse_rules(table, SectionReader("policy.toml", "sim", tmp_path))


def _judge(rules: TeeRules, claims: WorkloadClaims) -> Checklist:
    checks = Checklist()
    apply_rules(
        rules,
        section="sim",
        pinned=("measurement",),
        tcb_status="UpToDate",
        default_statuses=frozenset({"UpToDate"}),
        vendor_advisories=(),
        workload=claims,
        checks=checks,
    )
    return checks


TEAM = f'allowed_packages = [{{ repository = "{REPO}", signer = "keys/team.pub" }}]\n'


@pytest.fixture
def team(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, TeeRules]:
    key = _p256()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "team.pub").write_bytes(_pem(key.public_key()))
    return key, _rules(tmp_path, TEAM)


def _refusal(checks: Checklist) -> tuple[str, str]:
    assert not checks.passed
    assert isinstance(checks.error, PolicyViolationError)
    assert checks.first_failed == checks.error.code
    return checks.error.code, checks.error.message


def test_a_package_signed_by_the_listed_signer_for_the_listed_repository_is_accepted(
    team: tuple[ec.EllipticCurvePrivateKey, TeeRules],
) -> None:
    key, rules = team
    checks = _judge(rules, _claims(packagesig.sign(key, REPO, DIGEST_TEXT)))
    assert checks.passed
    reason = next(c.reason for c in checks.checks if c.id == "policy.package")
    assert "signed by key sha256:" in reason and REPO in reason


def test_a_listed_digest_needs_no_signature(tmp_path: Path) -> None:
    rules = _rules(tmp_path, f'allowed_packages = ["{DIGEST_TEXT}"]\n')
    assert _judge(rules, _claims()).passed


def test_no_signature(team: tuple[ec.EllipticCurvePrivateKey, TeeRules]) -> None:
    _, rules = team
    code, message = _refusal(_judge(rules, _claims()))
    assert code == "policy.package_unsigned"
    assert message == (
        f"package sha256:{'d1' * 8}... from {REPO}: not signed (no signature was found for it)"
    )


def test_a_different_signers_key(team: tuple[ec.EllipticCurvePrivateKey, TeeRules]) -> None:
    _, rules = team
    stranger = _p256()
    code, message = _refusal(_judge(rules, _claims(packagesig.sign(stranger, REPO, DIGEST_TEXT))))
    assert code == "policy.package_signer"
    key = packagesig.key_id(stranger.public_key()).hex()[:16]
    assert message == (
        f"package sha256:{'d1' * 8}... from {REPO}: signed by key sha256:{key}..., which is "
        "not a signer allowed_packages names for this repository"
    )


def test_a_signature_over_another_digest(team: tuple[ec.EllipticCurvePrivateKey, TeeRules]) -> None:
    key, rules = team
    record = packagesig.sign(key, REPO, "sha256:" + "d2" * 32)
    code, message = _refusal(_judge(rules, _claims(record)))
    assert code == "policy.package_signed_digest"
    assert f"signed package sha256:{'d2' * 32}, not {DIGEST_TEXT}" in message


def test_a_signature_over_another_repository(
    team: tuple[ec.EllipticCurvePrivateKey, TeeRules],
) -> None:
    key, rules = team
    record = packagesig.sign(key, "registry.example:5000/team/other", DIGEST_TEXT)
    code, message = _refusal(_judge(rules, _claims(record)))
    assert code == "policy.package_signed_repository"
    assert "signed it for repository registry.example:5000/team/other" in message


def test_a_repository_the_policy_does_not_name(
    team: tuple[ec.EllipticCurvePrivateKey, TeeRules],
) -> None:
    key, rules = team
    elsewhere = "registry.example:5000/team/other"
    claims = _claims(packagesig.sign(key, elsewhere, DIGEST_TEXT), repository=elsewhere)
    code, message = _refusal(_judge(rules, claims))
    assert code == "policy.package_repository"
    assert f"its repository {elsewhere} is not one allowed_packages names ({REPO})" in message


@pytest.mark.parametrize("where", ["signature", "statement"])
def test_flipped_bytes(team: tuple[ec.EllipticCurvePrivateKey, TeeRules], where: str) -> None:
    key, rules = team
    good = packagesig.sign(key, REPO, DIGEST_TEXT)
    if where == "signature":
        raw = bytearray(good.signature)
        raw[len(raw) // 2] ^= 0x01
        record = SignatureRecord(good.statement, good.algorithm, good.key_id, bytes(raw))
    else:
        raw = bytearray(good.statement)
        raw[raw.index(b"d1")] = ord("e")  # still a valid statement, over another digest
        record = SignatureRecord(bytes(raw), good.algorithm, good.key_id, good.signature)
    code, message = _refusal(_judge(rules, _claims(record)))
    assert code == "policy.package_signature"
    assert "does not verify over its statement" in message


def test_an_unknown_statement_version(team: tuple[ec.EllipticCurvePrivateKey, TeeRules]) -> None:
    key, rules = team
    body = STATEMENT.replace(b'"version":1', b'"version":2')
    raw = key.sign(body, ec.ECDSA(hashes.SHA256()))
    record = SignatureRecord(body, "ecdsa-p256-sha256", packagesig.key_id(key.public_key()), raw)
    code, message = _refusal(_judge(rules, _claims(record)))
    assert code == "policy.package_statement"
    assert "statement version 2 is unknown (this Donjon reads 1)" in message


def test_an_unknown_algorithm(team: tuple[ec.EllipticCurvePrivateKey, TeeRules]) -> None:
    key, rules = team
    good = packagesig.sign(key, REPO, DIGEST_TEXT)
    record = SignatureRecord(good.statement, "rsa-pss-sha256", good.key_id, good.signature)
    code, message = _refusal(_judge(rules, _claims(record)))
    assert code == "policy.package_algorithm"
    assert "unknown signature algorithm 'rsa-pss-sha256'" in message
    wrong = SignatureRecord(good.statement, "ed25519", good.key_id, good.signature)
    code, message = _refusal(_judge(rules, _claims(wrong)))
    assert code == "policy.package_algorithm"
    assert "does not fit key" in message


def test_one_good_signature_among_bad_ones_is_enough(
    team: tuple[ec.EllipticCurvePrivateKey, TeeRules],
) -> None:
    key, rules = team
    junk = packagesig.sign(_p256(), REPO, DIGEST_TEXT)
    assert _judge(rules, _claims(junk, packagesig.sign(key, REPO, DIGEST_TEXT))).passed


def test_a_trailing_slash_star_admits_repositories_below_whole_components(tmp_path: Path) -> None:
    key = _p256()
    rules = _rules(
        tmp_path,
        'allowed_packages = [{ repository = "registry.example:5000/team/*", signer = "k.pub" }]\n',
        k=key.public_key(),
    )
    assert _judge(rules, _claims(packagesig.sign(key, REPO, DIGEST_TEXT))).passed
    sibling = "registry.example:5000/team-evil/app"
    claims = _claims(packagesig.sign(key, sibling, DIGEST_TEXT), repository=sibling)
    assert _refusal(_judge(rules, claims))[0] == "policy.package_repository"


def test_an_inline_pem_signer(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = _pem(key.public_key()).decode()
    rules = _rules(
        tmp_path, f"allowed_packages = [{{ repository = \"{REPO}\", signer = '''{pem}''' }}]\n"
    )
    assert rules.package_signers[0].source == "inline PEM"
    assert _judge(rules, _claims(packagesig.sign(key, REPO, DIGEST_TEXT))).passed


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (f'{{ repository = "{REPO}", signer = "k.pub", singer = "x" }}',
         "unknown key 'singer' in a table entry (did you mean 'signer'? "
         "known: repository, signer)"),
        (f'{{ repository = "{REPO}" }}', "needs repository"),
        ('{ repository = "app", signer = "k.pub" }', "is not a repository"),
        (f'{{ repository = "{REPO}", signer = "missing.pub" }}', "cannot read"),
        (f'{{ repository = "{REPO}", signer = "policy.toml" }}', "not a PEM public key"),
    ],
)  # fmt: skip
def test_a_bad_table_entry_is_a_policy_error(tmp_path: Path, entry: str, words: str) -> None:
    (tmp_path / "policy.toml").write_text("not a key")
    with pytest.raises(PolicyError) as caught:
        _rules(tmp_path, f"allowed_packages = [{entry}]\n", k=_p256().public_key())
    assert words in str(caught.value)
    assert str(caught.value).startswith("policy.toml: [sim] allowed_packages: ")
