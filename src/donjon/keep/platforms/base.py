"""The contract between the Keep and an evidence provider (a TEE platform).

The Keep makes a fresh key pair on the curve the platform asks for, computes the
64 bytes of ``report_data`` that bind that key (and the workload claims), and asks
the platform for a CSR extension that carries the TEE's signed evidence over
them. Platforms produce evidence; they never verify it (the Steward does).

A platform module exposes ``create(state_dir: Path | None) -> Platform`` and is
listed in :data:`donjon.keep.platforms.REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.errors import DonjonError

#: The names a user may pass to ``--platform`` / ``DONJON_PLATFORM``, in auto-selection order.
PLATFORM_NAMES: tuple[str, ...] = (
    "sgx", "snp", "tdx", "cca", "nitro", "azure", "sim", "sim-cca", "nil"
)  # fmt: skip

#: Platforms whose evidence comes from real TEE hardware; ``sim`` and ``nil`` are not among them.
#: (``azure-snp``/``azure-tdx`` are what a Steward names the ``azure`` Keep platform's results.)
HARDWARE_PLATFORMS = frozenset(
    {"sgx", "snp", "tdx", "cca", "nitro", "azure", "azure-snp", "azure-tdx"}
)
#: Platforms whose file system the host serves call by call (SGX under Gramine): a file
#: there, the module cache's key included, is no secret from the host.
HOST_SERVES_FILES = frozenset({"sgx"})


class PlatformError(DonjonError):
    """The platform cannot be used, or failed to produce evidence."""


class UnknownPlatform(PlatformError):
    """A platform name that Donjon does not know."""

    exit_code = 2


class PlatformUnavailable(PlatformError):
    """A known platform that this host cannot offer right now."""


@runtime_checkable
class Platform(Protocol):
    """An evidence provider. Implementations must be cheap to construct: no I/O in ``__init__``."""

    #: "snp" | "tdx" | "sgx" | "cca" | "nitro" | "azure" | "sim" | "sim-cca" | "nil"
    name: str

    def key_curve(self) -> ec.EllipticCurve:
        """The curve of the Keep's key: P-384 for snp and sim, P-256 otherwise."""
        ...

    def available(self) -> bool:
        """Whether this host can produce evidence on this platform now (no exception)."""
        ...

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        """The CSR extension carrying evidence over ``report_data`` (64 bytes).

        Raises :class:`PlatformError` with a one-line reason on failure.
        """
        ...


PlatformFactory = Callable[[Path | None], Platform]
"""``create(state_dir)``: ``state_dir`` is where a platform keeps local state (sim's vendor
keys); ``None`` means the default location."""


def check_report_data(report_data: bytes) -> None:
    """Refuse anything but the 64 bytes every TEE report carries."""
    if len(report_data) != 64:
        raise PlatformError(f"report_data must be 64 bytes, got {len(report_data)}")
