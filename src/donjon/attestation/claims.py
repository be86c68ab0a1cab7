"""The DER formats of Donjon's two claims extensions (see ``docs/extensions.md``).

``WorkloadClaims`` travels in the Keep's CSR and, copied by the Steward, in the
issued certificate: it says *which workload* holds the key. With it present,
the evidence binds ``report_data = SHA-512(SPKI DER || WorkloadClaims DER)``.

``AttestationResult`` is written by the Steward into every certificate it
issues, so that a relying party can read what was attested and how it was judged.

ASN.1::

    WorkloadClaims ::= SEQUENCE {
        version       INTEGER (1),
        wasmSha256    OCTET STRING (SIZE (32)),
        configSha256  OCTET STRING (SIZE (0 | 32)),   -- empty: no config file
        packageName   UTF8String,
        nonce         [0] IMPLICIT OCTET STRING (SIZE (32..64)) OPTIONAL,
                                         -- the Steward's challenge (POST /v1/challenge)
        packageSha256 [1] IMPLICIT OCTET STRING (SIZE (32)) OPTIONAL,
                                         -- digest of the OCI manifest that was deployed
        packageRepository [2] IMPLICIT UTF8String OPTIONAL,
                                         -- host[:port]/path it was fetched from
        packageSignatures [3] IMPLICIT SEQUENCE SIZE (1..8) OF PackageSignature OPTIONAL }
                                         -- the signatures the registry held for it

    PackageSignature ::= SEQUENCE {      -- see donjon.attestation.packagesig
        statement     OCTET STRING (SIZE (1..1024)),  -- canonical JSON: repository, digest
        algorithm     UTF8String,        -- ecdsa-p256-sha256 | ecdsa-p384-sha384 | ed25519
        keyId         OCTET STRING (SIZE (32)),       -- SHA-256 of the signer's SPKI DER
        signature     OCTET STRING (SIZE (1..256)) }

    AttestationResult ::= SEQUENCE {
        version       INTEGER (1),
        platform      UTF8String,        -- snp | sgx | tdx | cca | nitro | azure-snp |
                                         -- azure-tdx | sim | kvm | nil
        product       UTF8String,        -- e.g. Milan, or "" when not applicable
        measurement   OCTET STRING,
        tcb           UTF8String,        -- e.g. "bl=3 tee=0 snp=8 ucode=115"
        tcbStatus     UTF8String,        -- UpToDate, OutOfDate, ...
        advisories    SEQUENCE OF UTF8String,
        debug         BOOLEAN,
        development   BOOLEAN,           -- accepted only under an explicit dev allowance
        policyId      UTF8String,        -- SHA-256 hex of the policy that judged it
        evaluatedAt   GeneralizedTime,
        workload      WorkloadClaims OPTIONAL }

Decoding is strict: trailing bytes, an unknown version, or a wrong digest size
are rejected with :class:`ClaimsError`. The optional fields came later
without a version bump: claims without them still parse. The signatures are
carried as the registry held them: an unknown algorithm or statement version
decodes here and is refused by whoever verifies them (the Steward's policy, a
relying party), each with its own reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, namedtype, tag, univ, useful

from donjon.attestation.der import DECODE_ERRORS
from donjon.attestation.packagesig import (
    MAX_SIGNATURES,
    SignatureFormatError,
    SignatureRecord,
    check_repository,
    records_json,
)
from donjon.errors import plain

CLAIMS_VERSION = 1
#: Advisory set by the Steward when no current CRL of the vendor root was checked
#: (policy ``crl = "if-available"``, or the simulator, which publishes none).
REVOCATION_NOT_CHECKED = "revocation-not-checked"
#: Advisory set by the Steward on evidence that carries no challenge of its own
#: (Enarx-format CSRs): it may be a replay of older evidence for the same key.
EVIDENCE_NOT_FRESH = "evidence-not-fresh"
#: Advisory set by the Steward on evidence whose isolation rests on a trusted hypervisor,
#: not on the CPU (AWS Nitro Enclaves): a relying party refuses it unless it allows it.
HYPERVISOR_TRUSTED = "hypervisor-trusted"
#: Advisory set by the Steward on SGX/TDX evidence judged without TCB collateral
#: (``tcb_mode = "if-available"``): the result's TCB status is NotAppraised.
TCB_NOT_APPRAISED = "tcb-not-appraised"
#: Advisory set on SGX/TDX evidence whose quoting enclave was not judged against Intel's
#: QE Identity (``qe_identity = "if-available"``, or Enarx SGX evidence, which carries none).
QE_IDENTITY_NOT_APPRAISED = "qe-identity-not-appraised"
#: Platforms an issued result may name (a refused verdict may also say "unknown").
PLATFORMS = frozenset(
    {"snp", "sgx", "tdx", "cca", "nitro", "azure-snp", "azure-tdx", "sim", "kvm", "nil"}
)
#: Sizes of a challenge nonce that claims may carry.
NONCE_MIN, NONCE_MAX = 32, 64


def _context(number: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatSimple, number)


class ClaimsError(ValueError):
    """A claims extension that is malformed or of an unknown version."""


class _PackageSignatureAsn1(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("statement", univ.OctetString()),
        namedtype.NamedType("algorithm", char.UTF8String()),
        namedtype.NamedType("keyId", univ.OctetString()),
        namedtype.NamedType("signature", univ.OctetString()),
    )


class _PackageSignaturesAsn1(univ.SequenceOf):
    componentType = _PackageSignatureAsn1()


class _WorkloadClaimsAsn1(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("wasmSha256", univ.OctetString()),
        namedtype.NamedType("configSha256", univ.OctetString()),
        namedtype.NamedType("packageName", char.UTF8String()),
        namedtype.OptionalNamedType("nonce", univ.OctetString().subtype(implicitTag=_context(0))),
        namedtype.OptionalNamedType(
            "packageSha256", univ.OctetString().subtype(implicitTag=_context(1))
        ),
        namedtype.OptionalNamedType(
            "packageRepository", char.UTF8String().subtype(implicitTag=_context(2))
        ),
        namedtype.OptionalNamedType(
            "packageSignatures",
            _PackageSignaturesAsn1().subtype(
                implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 3)
            ),
        ),
    )


class _AdvisoriesAsn1(univ.SequenceOf):
    componentType = char.UTF8String()


class _AttestationResultAsn1(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("platform", char.UTF8String()),
        namedtype.NamedType("product", char.UTF8String()),
        namedtype.NamedType("measurement", univ.OctetString()),
        namedtype.NamedType("tcb", char.UTF8String()),
        namedtype.NamedType("tcbStatus", char.UTF8String()),
        namedtype.NamedType("advisories", _AdvisoriesAsn1()),
        namedtype.NamedType("debug", univ.Boolean()),
        namedtype.NamedType("development", univ.Boolean()),
        namedtype.NamedType("policyId", char.UTF8String()),
        namedtype.NamedType("evaluatedAt", useful.GeneralizedTime()),
        namedtype.OptionalNamedType("workload", _WorkloadClaimsAsn1()),
    )


@dataclass(frozen=True)
class WorkloadClaims:
    wasm_sha256: bytes
    config_sha256: bytes  # b"" when the package has no config file
    package_name: str
    #: The Steward's challenge: evidence made for it cannot be older than the challenge.
    nonce: bytes | None = None
    #: SHA-256 of the OCI manifest the package came from (``donjon run oci://...``).
    package_sha256: bytes | None = None
    #: ``host[:port]/path`` of the registry repository the package was fetched from.
    package_repository: str | None = None
    #: The package's signatures as the registry held them (verified by the Steward).
    package_signatures: tuple[SignatureRecord, ...] = ()

    def __post_init__(self) -> None:
        if len(self.wasm_sha256) != 32:
            raise ClaimsError(f"wasm digest must be 32 bytes, got {len(self.wasm_sha256)}")
        if len(self.config_sha256) not in (0, 32):
            raise ClaimsError(f"config digest must be 0 or 32 bytes, got {len(self.config_sha256)}")
        if self.nonce is not None and not NONCE_MIN <= len(self.nonce) <= NONCE_MAX:
            raise ClaimsError(
                f"nonce must be {NONCE_MIN}..{NONCE_MAX} bytes, got {len(self.nonce)}"
            )
        if self.package_sha256 is not None and len(self.package_sha256) != 32:
            raise ClaimsError(f"package digest must be 32 bytes, got {len(self.package_sha256)}")
        if self.package_repository is not None:
            if self.package_sha256 is None:
                raise ClaimsError("a package repository without a package digest")
            try:
                check_repository(self.package_repository, "package repository")
            except SignatureFormatError as exc:
                raise ClaimsError(str(exc)) from None
        if self.package_signatures and self.package_repository is None:
            raise ClaimsError("package signatures without a package repository")
        if len(self.package_signatures) > MAX_SIGNATURES:
            raise ClaimsError(
                f"{len(self.package_signatures)} package signatures, at most {MAX_SIGNATURES}"
            )

    def _asn1(self) -> _WorkloadClaimsAsn1:
        value = _WorkloadClaimsAsn1()
        value["version"] = CLAIMS_VERSION
        value["wasmSha256"] = self.wasm_sha256
        value["configSha256"] = self.config_sha256
        value["packageName"] = self.package_name
        if self.nonce is not None:
            value["nonce"] = self.nonce
        if self.package_sha256 is not None:
            value["packageSha256"] = self.package_sha256
        if self.package_repository is not None:
            value["packageRepository"] = self.package_repository
        if self.package_signatures:
            records = value["packageSignatures"]
            for i, record in enumerate(self.package_signatures):
                item = _PackageSignatureAsn1()
                item["statement"] = record.statement
                item["algorithm"] = record.algorithm
                item["keyId"] = record.key_id
                item["signature"] = record.signature
                records[i] = item
        return value

    def to_der(self) -> bytes:
        return bytes(encoder.encode(self._asn1()))

    @classmethod
    def _from_asn1(cls, value: _WorkloadClaimsAsn1) -> WorkloadClaims:
        _check_version(int(value["version"]), "workload claims")
        return cls(
            wasm_sha256=bytes(value["wasmSha256"]),
            config_sha256=bytes(value["configSha256"]),
            package_name=str(value["packageName"]),
            nonce=_optional_bytes(value, "nonce"),
            package_sha256=_optional_bytes(value, "packageSha256"),
            package_repository=(
                str(value["packageRepository"]) if value["packageRepository"].isValue else None
            ),
            package_signatures=_signatures(value["packageSignatures"]),
        )

    @classmethod
    def from_der(cls, der: bytes) -> WorkloadClaims:
        return cls._from_asn1(_decode(der, _WorkloadClaimsAsn1(), "workload claims"))

    def to_json(self) -> dict[str, Any]:
        """The claims as the JSON outputs (verdicts, Steward answers, verify-peer) show them."""
        doc: dict[str, Any] = {
            "wasm_sha256": self.wasm_sha256.hex(),
            "config_sha256": self.config_sha256.hex(),
            "package_name": self.package_name,
            "nonce": None if self.nonce is None else self.nonce.hex(),
            "package_sha256": None if self.package_sha256 is None else self.package_sha256.hex(),
        }
        if self.package_repository is not None:
            doc["package_repository"] = self.package_repository
            doc["package_signatures"] = records_json(self.package_signatures)
        return doc


@dataclass(frozen=True)
class AttestationResult:
    platform: str
    product: str
    measurement: bytes
    tcb: str
    tcb_status: str
    advisories: tuple[str, ...]
    debug: bool
    development: bool
    policy_id: str
    evaluated_at: datetime
    workload: WorkloadClaims | None = None

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ClaimsError(f"unknown platform {self.platform!r}")
        if self.evaluated_at.tzinfo is None:
            raise ClaimsError("evaluated_at must be timezone-aware")

    def to_json(self) -> dict[str, Any]:
        """Every field but ``workload`` (whose source callers choose), as JSON shows it."""
        return {
            "platform": self.platform,
            "product": self.product,
            "measurement": self.measurement.hex(),
            "tcb": self.tcb,
            "tcb_status": self.tcb_status,
            "advisories": list(self.advisories),
            "debug": self.debug,
            "development": self.development,
            "policy_id": self.policy_id,
            "evaluated_at": self.evaluated_at.isoformat(),
        }

    def to_der(self) -> bytes:
        value = _AttestationResultAsn1()
        value["version"] = CLAIMS_VERSION
        value["platform"] = self.platform
        value["product"] = self.product
        value["measurement"] = self.measurement
        value["tcb"] = self.tcb
        value["tcbStatus"] = self.tcb_status
        advisories = _AdvisoriesAsn1()
        for i, advisory in enumerate(self.advisories):
            advisories[i] = advisory
        value["advisories"] = advisories
        value["debug"] = self.debug
        value["development"] = self.development
        value["policyId"] = self.policy_id
        at = self.evaluated_at.astimezone(UTC)
        # %Y writes year 225 as "225" (glibc): read back, that was year 2250.
        when = f"{at.year:04d}{at:%m%d%H%M%S}Z"
        value["evaluatedAt"] = useful.GeneralizedTime(when)
        if self.workload is not None:
            value["workload"] = self.workload._asn1()
        return bytes(encoder.encode(value))

    @classmethod
    def from_der(cls, der: bytes) -> AttestationResult:
        value = _decode(der, _AttestationResultAsn1(), "attestation result")
        _check_version(int(value["version"]), "attestation result")
        workload = None
        if value["workload"].isValue:
            workload = WorkloadClaims._from_asn1(value["workload"])
        text = str(value["evaluatedAt"])
        digits = text[:14]
        if len(text) != 15 or not (digits.isascii() and digits.isdigit()) or text[14] != "Z":
            # DER's GeneralizedTime: YYYYMMDDHHMMSSZ, nothing shorter, no fractions or offsets.
            raise ClaimsError(
                f"attestation result: evaluatedAt is not YYYYMMDDHHMMSSZ: {text[:40]!r}"
            )
        try:
            evaluated_at = value["evaluatedAt"].asDateTime
        except (PyAsn1Error, ValueError) as exc:
            raise ClaimsError(f"attestation result: bad evaluatedAt: {exc}") from exc
        evaluated_at = (
            evaluated_at.replace(tzinfo=UTC)
            if evaluated_at.tzinfo is None
            else evaluated_at.astimezone(UTC)
        )
        return cls(
            platform=str(value["platform"]),
            product=str(value["product"]),
            measurement=bytes(value["measurement"]),
            tcb=str(value["tcb"]),
            tcb_status=str(value["tcbStatus"]),
            advisories=tuple(str(a) for a in value["advisories"]),
            debug=bool(value["debug"]),
            development=bool(value["development"]),
            policy_id=str(value["policyId"]),
            evaluated_at=evaluated_at,
            workload=workload,
        )


def _signatures(component: Any) -> tuple[SignatureRecord, ...]:
    if not component.isValue:
        return ()
    if not 0 < len(component) <= MAX_SIGNATURES:
        raise ClaimsError(
            f"workload claims: {len(component)} package signatures (1..{MAX_SIGNATURES})"
        )
    out = []
    for item in component:
        try:
            out.append(
                SignatureRecord(
                    statement=bytes(item["statement"]),
                    algorithm=str(item["algorithm"]),
                    key_id=bytes(item["keyId"]),
                    signature=bytes(item["signature"]),
                )
            )
        except SignatureFormatError as exc:
            raise ClaimsError(f"workload claims: package signature: {exc}") from None
    return tuple(out)


def _optional_bytes(value: univ.Sequence, name: str) -> bytes | None:
    component = value[name]
    return bytes(component) if component.isValue else None


def _check_version(version: int, what: str) -> None:
    if version != CLAIMS_VERSION:
        raise ClaimsError(
            f"{what}: unsupported version {version} (this Donjon reads {CLAIMS_VERSION})"
        )


def _decode(der: bytes, spec: univ.Sequence, what: str) -> univ.Sequence:
    try:
        value, rest = decoder.decode(der, asn1Spec=spec)
    except DECODE_ERRORS as exc:
        raise ClaimsError(f"{what}: not valid DER: {plain(exc)}") from exc
    if rest:
        raise ClaimsError(f"{what}: {len(rest)} trailing bytes after the DER value")
    return value
