"""Fuzz targets: every parser Donjon runs on bytes someone else chose.

Each target is a factory ``make(fixtures) -> one_input``; ``one_input(data)``
feeds ``data`` to one parser through its public entry point and returns, or
raises. The rule every target enforces (:func:`donjon_only`): the only
exceptions that may escape are Donjon's own (classes defined under
``donjon.``), which the callers turn into one-line errors, refusals or 4xx
answers. A ``ValueError`` from ``cryptography``, an ``IndexError``, a
``RecursionError`` or a pyasn1 error escaping is a bug. Targets that wrap a
whole pipeline also assert what that pipeline promises (a verdict is never a
verifier-internal error, the Steward never answers 500).

``fixtures`` is ``fuzz/fixtures``: the simulated ARK and a Steward CA that the
seeds were made with (``fuzz/make_seeds.py``), so that seeds reach past the
signature checks.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OneInput = Callable[[bytes], None]
Factory = Callable[[Path], OneInput]

#: When the seeds' certificates are valid (make_seeds dates them from 2025-01-01).
NOW = datetime(2025, 6, 1, tzinfo=UTC)


class FuzzFinding(AssertionError):
    """A target's own assertion failed: the parser broke a promise other than "no crash"."""


def is_donjon_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("donjon.")


def donjon_only(fn: OneInput) -> OneInput:
    """Let Donjon's own errors pass (the input was refused, as it should be); re-raise the rest."""

    def one_input(data: bytes) -> None:
        try:
            fn(data)
        except FuzzFinding:
            raise
        except Exception as exc:
            if is_donjon_error(exc):
                return
            raise

    one_input.__name__ = getattr(fn, "__name__", "one_input")
    return one_input


def _private_tmp() -> Path:
    """Scratch space on tmpfs when there is one: the targets write files per input."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="donjon-fuzz-", dir=base))


# --- SNP reports -------------------------------------------------------------------------


def snp_report(fixtures: Path) -> OneInput:
    from donjon.attestation.snp.report import parse_report, reserved_violations

    @donjon_only
    def one_input(data: bytes) -> None:
        lenient = parse_report(data, strict=False)
        lenient.to_dict()
        str(lenient.reported_tcb)
        reserved_violations(data)
        parse_report(data, strict=True)

    return one_input


# --- CSR evidence extensions --------------------------------------------------------------


def snp_evidence(fixtures: Path) -> OneInput:
    """The evidence extension values: Enarx SNP, Donjon sim, nil and kvm."""
    from donjon.attestation.evidence import check_kvm, check_nil, decode_enarx_snp, decode_sim

    decoders = (decode_enarx_snp, decode_sim, check_nil, check_kvm)

    @donjon_only
    def one_input(data: bytes) -> None:
        if not data:
            return
        decoders[data[0] % len(decoders)](data[1:])

    return one_input


# --- CSRs --------------------------------------------------------------------------------


def _dev_policy(fixtures: Path, directory: Path) -> Path:
    path = directory / "policy.toml"
    ark = fixtures / "sim-ark.pem"
    path.write_text(f'[nil]\nallow = true\n\n[kvm]\nallow = true\n\n[sim]\ntrust = "{ark}"\n')
    return path


def _csr_verifier(fixtures: Path) -> Callable[[bytes], None]:
    """verify_csr under a development policy that trusts the fixtures' simulated ARK."""
    from donjon.attestation.csr import verify_csr
    from donjon.attestation.policy import load_policy
    from donjon.attestation.trust import TrustStore

    policy = load_policy(_dev_policy(fixtures, _private_tmp()))
    trust = TrustStore()

    def verify(der: bytes) -> None:
        verdict = verify_csr(der, policy=policy, trust=trust, now=NOW)
        code = getattr(verdict.error, "code", None)
        if code == "verifier.internal":
            raise FuzzFinding(f"verifier internal error: {verdict.error}")
        if verdict.accepted and verdict.result is None:
            raise FuzzFinding("an accepted verdict without a result")

    return verify


def csr(fixtures: Path) -> OneInput:
    """Raw CSR bytes, as ``POST /`` receives them (most mutations die at the signature)."""
    verify = _csr_verifier(fixtures)

    @donjon_only
    def one_input(data: bytes) -> None:
        verify(data)

    return one_input


#: byte 0 of a ``csr_extensions`` input picks the evidence extension.
EVIDENCE_KINDS = ("nil", "kvm", "sim", "snp", "sgx", "tdx")


def split_extensions(data: bytes) -> tuple[str, bytes | None, bytes]:
    """``kind (1 byte) | claims length (2 bytes, 0xffff: no claims) | claims | evidence``."""
    kind = EVIDENCE_KINDS[data[0] % len(EVIDENCE_KINDS)] if data else "nil"
    size = int.from_bytes(data[1:3], "big") if len(data) >= 3 else 0xFFFF
    rest = data[3:]
    if size == 0xFFFF:
        return kind, None, rest
    return kind, rest[:size], rest[size:]


def join_extensions(kind: str, claims: bytes | None, evidence: bytes) -> bytes:
    size = 0xFFFF if claims is None else len(claims)
    return (
        bytes([EVIDENCE_KINDS.index(kind)]) + size.to_bytes(2, "big") + (claims or b"") + evidence
    )


def csr_extensions(fixtures: Path) -> OneInput:
    """A correctly signed CSR around fuzzed claims and evidence extensions, so the
    extension parsers and the verifier behind them are reached (a Keep's key signs
    whatever it likes; only the evidence can say no)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from donjon.attestation import oids

    verify = _csr_verifier(fixtures)
    key = ec.derive_private_key(0xD0_1709, ec.SECP384R1())
    evidence_oid = {
        "nil": oids.EVIDENCE_NIL,
        "kvm": oids.ENARX_KVM,
        "sim": oids.EVIDENCE_SIM,
        "snp": oids.ENARX_SNP,
        "sgx": oids.ENARX_SGX,
        "tdx": oids.EVIDENCE_TDX,
    }

    @donjon_only
    def one_input(data: bytes) -> None:
        kind, claims, evidence = split_extensions(data)
        builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
        builder = builder.add_extension(
            x509.UnrecognizedExtension(evidence_oid[kind], evidence), critical=False
        )
        if claims is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(oids.WORKLOAD_CLAIMS, claims), critical=False
            )
        der = builder.sign(key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)
        verify(der)

    return one_input


# --- Donjon's claims extensions ----------------------------------------------------------


def claims(fixtures: Path) -> OneInput:
    """WorkloadClaims and AttestationResult DER; what decodes must survive a round trip."""
    from donjon.attestation.claims import AttestationResult, WorkloadClaims

    kinds: tuple[Any, ...] = (WorkloadClaims, AttestationResult)

    @donjon_only
    def one_input(data: bytes) -> None:
        if not data:
            return
        kind = kinds[data[0] % len(kinds)]
        value = kind.from_der(data[1:])
        again = kind.from_der(value.to_der())
        if again != value:
            raise FuzzFinding(f"{kind.__name__} changes in a DER round trip: {value} -> {again}")

    return one_input


# --- package signatures ----------------------------------------------------------------

#: The package every signature seed names (its manifest digest and repository).
SIGNED_DIGEST = "sha256:" + "9c" * 32
SIGNED_REPOSITORY = "registry.fuzz:5000/team/app"


def signer_keys() -> list[Any]:
    """Fixed signer keys (P-256 and Ed25519): seeds signed by them reach the statement checks."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    return [
        ec.derive_private_key(0x5EED, ec.SECP256R1()),
        ed25519.Ed25519PrivateKey.from_private_bytes(b"\x5e" * 32),
    ]


def package_signature(fixtures: Path) -> OneInput:
    """What a registry serves about signatures and what the Steward judges: a statement, a
    signature manifest, a referrers index, and claims whose signatures are judged."""
    from donjon.attestation import packagesig
    from donjon.attestation.claims import WorkloadClaims
    from donjon.keep.oci import signatures

    keys = {packagesig.key_id(k.public_key()): k.public_key() for k in signer_keys()}
    digest = bytes.fromhex(SIGNED_DIGEST.removeprefix("sha256:"))

    @donjon_only
    def one_input(data: bytes) -> None:
        if not data:
            return
        kind, body = data[0] % 4, data[1:]
        if kind == 0:
            said = packagesig.parse_statement(body)
            if said.to_bytes() != body:
                raise FuzzFinding(f"a statement parsed but is not canonical: {body[:80]!r}")
        elif kind == 1:
            for layer in signatures.parse_manifest(body, SIGNED_DIGEST, "fuzz"):
                layer.record(b"{}")
        elif kind == 2:
            signatures.parse_referrers(body, "fuzz")
        else:
            claims = WorkloadClaims.from_der(body)
            verdict = packagesig.judge(
                claims.package_signatures, SIGNED_REPOSITORY, digest, keys
            )
            if verdict.ok and claims.package_signatures and not any(
                r.statement.startswith(b'{"digest":"' + SIGNED_DIGEST.encode())
                for r in claims.package_signatures
            ):
                raise FuzzFinding("a signature was accepted over another digest")

    return one_input


# --- VCEK / VLEK extensions --------------------------------------------------------------


def vcek(fixtures: Path) -> OneInput:
    from donjon.attestation.snp.vcek import endorsement_key_info
    from donjon.attestation.x509util import load_certificate

    @donjon_only
    def one_input(data: bytes) -> None:
        info = endorsement_key_info(load_certificate(data, what="VCEK"))
        _ = (info.product, info.issuer_product)

    return one_input


# --- CRLs --------------------------------------------------------------------------------


def crl(fixtures: Path) -> OneInput:
    """A CRL as a relying party (a Keep, verify-peer) and the SNP chain check read it."""
    from cryptography import x509

    from donjon.attestation.peer import check_crl, load_crl
    from donjon.attestation.snp.chain import is_current, why_not_current
    from donjon.attestation.snp.profile import crl_scope_problem

    ca = x509.load_pem_x509_certificate((fixtures / "steward-ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((fixtures / "keep-leaf.pem").read_bytes())

    @donjon_only
    def one_input(data: bytes) -> None:
        revocations = load_crl(data, "fuzz CRL")
        crl_scope_problem(revocations)
        if not is_current(revocations, NOW):
            why_not_current(revocations, NOW)
        check_crl(leaf, ca, revocations, NOW)

    return one_input


# --- A peer Keep's certificate -----------------------------------------------------------


def peer_certificate(fixtures: Path) -> OneInput:
    """A certificate a peer Keep presents, read as verify-peer and the Keep read it."""
    from cryptography import x509

    from donjon.attestation.peer import (
        check_leaf_profile,
        load_certificate,
        read_attestation,
        verify_peer_certificate,
    )

    ca = x509.load_pem_x509_certificate((fixtures / "steward-ca.pem").read_bytes())

    @donjon_only
    def one_input(data: bytes) -> None:
        leaf = load_certificate(data, "fuzz certificate")
        try:
            read_attestation(leaf)
            check_leaf_profile(leaf, "server")
        finally:
            verify_peer_certificate(leaf, ca, now=NOW)

    return one_input


# --- Workload configs --------------------------------------------------------------------


def workload_config(fixtures: Path) -> OneInput:
    """Donjon.toml / Enarx.toml bytes, as ``donjon run`` and ``config check`` parse them."""
    from donjon.keep.package import parse

    where = _private_tmp() / "pkg" / "Donjon.toml"

    @donjon_only
    def one_input(data: bytes) -> None:
        parse(data, where)

    return one_input


def sealed_config(fixtures: Path) -> OneInput:
    """A config's clear part and its opened sealed part (``clear NUL sealed``), as the Keep
    merges them after attesting: the sealed part is authenticated, but its TOML is still
    checked like any config."""
    from donjon.keep.config_split import merge

    where = _private_tmp() / "pkg" / "Donjon.toml"

    @donjon_only
    def one_input(data: bytes) -> None:
        clear, _, part = data.partition(b"\0")
        merge(clear, part, where)

    return one_input


# --- Package manifests -------------------------------------------------------------------


def package_manifest(fixtures: Path) -> OneInput:
    """An OCI manifest as a registry serves it to ``donjon run`` and ``package inspect``."""
    from donjon.keep.oci import artifact

    @donjon_only
    def one_input(data: bytes) -> None:
        manifest = artifact.parse_manifest(data, artifact.OCI_MANIFEST, "fuzz")
        # What the Keep and inspect read from a manifest that parsed.
        manifest.plain_wasm_sha256()
        manifest.sealed_config_sha256()
        manifest.clear_config_sha256()
        manifest.key_secret()
        manifest.config_name()
        for layer in manifest.layers:
            layer.to_json()

    return one_input


# --- Steward policies --------------------------------------------------------------------


def policy(fixtures: Path) -> OneInput:
    from donjon.attestation.policy import load_policy

    path = _private_tmp() / "steward.toml"

    @donjon_only
    def one_input(data: bytes) -> None:
        path.write_bytes(data)
        load_policy(path)

    return one_input


# --- The Steward's HTTP request bodies ---------------------------------------------------

ADMIN_TOKEN = "fuzz-admin-token"
#: byte 0 of a ``steward_request`` input picks the request; the rest is the body
#: (or, for the audit read, the serial in the path).
REQUESTS: tuple[tuple[str, str, str], ...] = (
    ("POST", "/", "application/pkcs10"),
    ("POST", "/v1/attest", "application/pkcs10"),
    ("POST", "/v1/attest", "bundle"),  # wire.BUNDLE
    ("POST", "/v1/revoke", "application/json"),
    ("GET", "/v1/certificates/", ""),
)


def steward_request(fixtures: Path) -> OneInput:
    """A request to the Steward's ASGI app, in process: never a 500, never an exception."""
    from donjon.steward.app import create_app
    from donjon.steward.bootstrap import StewardConfig, build_steward

    logging.disable(logging.CRITICAL)  # the development banner, refusals: not the point here
    state = _private_tmp()
    token = state / "admin.token"
    token.write_text(ADMIN_TOKEN)
    token.chmod(0o600)  # the Steward refuses a token file others can read
    config = StewardConfig(
        state_dir=state,
        init=True,
        curve="p256",
        policy=_dev_policy(fixtures, state),
        development=True,
        admin_token_file=token,
        now=NOW,
    )
    steward, settings = build_steward(config)
    app = create_app(steward, settings)
    loop = asyncio.new_event_loop()
    bundle = _bundle_media()

    async def call(method: str, path: str, media: str, body: bytes) -> int:
        headers = [(b"host", b"steward.fuzz"), (b"authorization", f"Bearer {ADMIN_TOKEN}".encode())]
        if media:
            media = bundle if media == "bundle" else media
            headers.append((b"content-type", media.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode("utf-8", "surrogateescape"),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 80),
        }
        delivered = False
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(int(message["status"]))

        await app(scope, receive, send)
        if not statuses:
            raise FuzzFinding(f"{method} {path}: no response at all")
        return statuses[0]

    def one_input(data: bytes) -> None:
        if not data:
            return
        method, path, media = REQUESTS[data[0] % len(REQUESTS)]
        body = data[1:]
        if path.endswith("/certificates/"):
            path += body.decode("utf-8", "replace")
            body = b""
        status = loop.run_until_complete(call(method, path, media, body))
        if status >= 500:
            raise FuzzFinding(f"{method} {path}: HTTP {status} for a {len(body)}-byte body")

    return one_input


def _bundle_media() -> str:
    from donjon.steward import wire

    return wire.BUNDLE


TARGETS: dict[str, Factory] = {
    "snp_report": snp_report,
    "snp_evidence": snp_evidence,
    "csr": csr,
    "csr_extensions": csr_extensions,
    "claims": claims,
    "vcek": vcek,
    "crl": crl,
    "peer_certificate": peer_certificate,
    "workload_config": workload_config,
    "sealed_config": sealed_config,
    "package_manifest": package_manifest,
    "policy": policy,
    "steward_request": steward_request,
    "package_signature": package_signature,
}


def seed_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


__all__ = [
    "NOW",
    "TARGETS",
    "FuzzFinding",
    "donjon_only",
    "is_donjon_error",
    "join_extensions",
    "seed_name",
    "split_extensions",
]
