"""The workload-identity options shared by ``listen`` and ``connect`` entries.

A ``connect`` entry demands things of the server Keep it calls (``expect_workload``,
...); a ``listen`` entry demands the same of every client Keep (``expect_client_workload``,
...). Both turn into the relying-party :class:`PeerExpectations`, and both check
the peer Steward's CRL unless told ``revocation = "if-available"``.

Validators here raise ``ValueError`` so that pydantic reports them with the entry and
the field; nothing here touches the network.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from donjon.attestation import packagesig
from donjon.attestation.claims import PLATFORMS
from donjon.attestation.peer import (
    DEVELOPMENT_ADVISORIES,
    DEVELOPMENT_PLATFORMS,
    PeerExpectations,
    parse_tcb,
)
from donjon.errors import UsageError

_WORKLOAD = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
_ADVISORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


class Revocation(StrEnum):
    """What to do when the Steward's CRL cannot be fetched."""

    REQUIRED = "required"  # refuse the peer (fail closed)
    IF_AVAILABLE = "if-available"  # log a warning and check without it


def workload(value: str, whose: str = "the peer's") -> str:
    """``"sha256:<64 hex>"``, normalised to lower case."""
    match = _WORKLOAD.match(value)
    if match is None:
        raise ValueError(
            f'{value!r} is not "sha256:" followed by 64 hex digits '
            f"(the SHA-256 of {whose} main.wasm)"
        )
    return f"sha256:{match.group(1).lower()}"


def package(value: str | None) -> str | None:
    """``"sha256:<64 hex>"`` of an OCI manifest, normalised to lower case."""
    if value is None:
        return None
    match = _WORKLOAD.match(value)
    if match is None:
        raise ValueError(
            f'{value!r} is not "sha256:" followed by 64 hex digits (the peer\'s OCI manifest '
            "digest, as `donjon package push` prints it)"
        )
    return f"sha256:{match.group(1).lower()}"


def workloads(value: str | list[str] | None, whose: str) -> str | list[str] | None:
    """One digest or a non-empty list of them."""
    if value is None:
        return None
    if isinstance(value, str):
        return workload(value, whose)
    if not value:
        raise ValueError("must name at least one workload")
    out = [workload(v, whose) for v in value]
    if len(set(out)) != len(out):
        raise ValueError("names a workload twice")
    return out


def repository(value: str | None) -> str | None:
    """``host[:port]/path``, or ``host[:port]/path/*`` for every repository below it."""
    if value is None:
        return None
    try:
        return packagesig.check_repository_pattern(value, "expect_repository")
    except packagesig.SignatureFormatError as exc:
        raise ValueError(str(exc)) from None


def signers(value: str | list[str] | None) -> str | list[str] | None:
    """One or more public keys: a PEM path (relative to the config) or an inline PEM."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not items or not all(item.strip() for item in items):
        raise ValueError("must name at least one public key (a PEM path or an inline PEM)")
    return value


def load_signers(value: str | list[str] | None, base_dir: Path) -> tuple[packagesig.PublicKey, ...]:
    """The keys ``expect_signer`` names, read now (a path is relative to ``base_dir``)."""
    if value is None:
        return ()
    out = []
    for item in [value] if isinstance(value, str) else value:
        try:
            out.append(packagesig.load_signer(item, base_dir, "expect_signer")[0])
        except packagesig.SignatureFormatError as exc:
            raise UsageError(str(exc)) from None
    return tuple(out)


def platforms(value: str | list[str] | None) -> str | list[str] | None:
    """Known platform names, not mixing development platforms with TEEs."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not names:
        raise ValueError("must name at least one platform")
    unknown = [n for n in names if n not in PLATFORMS]
    if unknown:
        raise ValueError(
            f"unknown platform {unknown[0]!r} (expected one of {', '.join(sorted(PLATFORMS))})"
        )
    dev = sorted(set(names) & DEVELOPMENT_PLATFORMS)
    tee = sorted(set(names) - DEVELOPMENT_PLATFORMS)
    if dev and tee:
        raise ValueError(
            f"mixes TEE platforms ({', '.join(tee)}) with development ones "
            f"({', '.join(dev)}): a development peer is never confidential, so list "
            "one kind only"
        )
    return value


def min_tcb(value: str | None) -> str | None:
    """``"bl=3,tee=0,snp=8,ucode=115"``: at least one component, none negative."""
    if value is None:
        return None
    try:
        parts = parse_tcb(value)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    if not parts:
        raise ValueError('names no TCB component (e.g. "bl=3,tee=0,snp=8,ucode=115")')
    negative = [name for name, number in parts.items() if number < 0]
    if negative:
        raise ValueError(f"TCB component {negative[0]} is negative")
    return value


def advisories(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    for name in value:
        if not _ADVISORY.match(name):
            raise ValueError(f"{name!r} is not an advisory name (e.g. revocation-not-checked)")
    if len(set(value)) != len(value):
        raise ValueError("names an advisory twice")
    return value


def as_set(value: str | list[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset({value}) if isinstance(value, str) else frozenset(value)


def digests(value: str | list[str] | None) -> frozenset[bytes] | None:
    """The validated ``sha256:`` names as raw digests."""
    names = as_set(value)
    if names is None:
        return None
    return frozenset(bytes.fromhex(n.removeprefix("sha256:")) for n in names)


def expectations(
    *,
    workload_sha256: bytes | None,
    platform_names: frozenset[str] | None,
    tcb: str | None,
    allowed: list[str] | None,
    package_sha256: bytes | None = None,
    package_repository: str | None = None,
    package_signers: tuple[packagesig.PublicKey, ...] = (),
) -> PeerExpectations:
    """The relying-party expectations of one entry.

    Development peers (nil, sim, kvm) are refused unless the platforms named are only
    those; their memory is never confidential, so their debug flag (always set for nil
    and kvm) is moot then, and their Steward always writes revocation-not-checked. A TEE
    that allows debugging is always refused. ``allowed`` advisories replace the default
    (none for a TEE peer) and add to the development one.
    """
    development = platform_names is not None and platform_names <= DEVELOPMENT_PLATFORMS
    accepted: frozenset[str] | None = None
    if allowed is not None:
        accepted = frozenset(allowed) | (DEVELOPMENT_ADVISORIES if development else frozenset())
    return PeerExpectations(
        workload_sha256=workload_sha256,
        package_sha256=package_sha256,
        package_repository=package_repository,
        package_signers=package_signers,
        min_tcb=parse_tcb(tcb) if tcb else {},
        platforms=platform_names,
        allow_development=development,
        allow_debug=development,
        allowed_advisories=accepted,
    )
