"""The ``nitro`` platform: a Keep inside an AWS Nitro Enclave.

The Nitro Security Module (NSM) signs attestation documents; an enclave asks it
through ``/dev/nsm`` with the raw request ioctl (Linux ``include/uapi/linux/nsm.h``)::

    struct nsm_iovec { __u64 addr; __u64 len; };
    struct nsm_raw   { struct nsm_iovec request; struct nsm_iovec response; };
    NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct nsm_raw)

The request and the response are CBOR (the NSM API's serde encoding)::

    request:  { "Attestation": { "user_data": bstr, "nonce": null, "public_key": null } }
    response: { "Attestation": { "document": bstr } }   or   { "Error": "<ErrorCode>" }

Donjon puts the 64-byte report_data (SHA-512 of the Keep's key and workload
claims) in ``user_data`` and leaves ``nonce`` empty: the Steward's challenge is
inside the claims. The CSR extension is ``oids.EVIDENCE_NITRO``::

    NitroEvidence ::= SEQUENCE { document OCTET STRING }

Nitro isolation rests on AWS's hypervisor, not on the CPU: every certificate a
Steward issues on it says ``hypervisor-trusted``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.attestation.errors import AttestationError
from donjon.attestation.nitro.document import parse_document
from donjon.attestation.nitro.evidence import encode_nitro_evidence
from donjon.keep.platforms.base import PlatformError, PlatformUnavailable, check_report_data

NSM_DEVICE = Path("/dev/nsm")
NSM_MAGIC = 0x0A
NSM_REQUEST_MAX_SIZE = 0x1000
NSM_RESPONSE_MAX_SIZE = 0x3000


class NsmIovec(ctypes.Structure):
    _fields_ = (("addr", ctypes.c_uint64), ("len", ctypes.c_uint64))


class NsmRaw(ctypes.Structure):
    _fields_ = (("request", NsmIovec), ("response", NsmIovec))


#: ``_IOWR(0x0A, 0, struct nsm_raw)``: read/write (3) << 30 | size 32 << 16 | 0x0A << 8 | 0.
NSM_IOCTL_RAW = (3 << 30) | (ctypes.sizeof(NsmRaw) << 16) | (NSM_MAGIC << 8) | 0

Ioctl = Callable[[int, int, Any], Any]


class NsmError(PlatformError):
    """The NSM refused a request or answered something that is not a document."""


class NsmDevice:
    """``/dev/nsm``; tests inject the path, the ioctl and the opener."""

    def __init__(
        self,
        path: Path = NSM_DEVICE,
        ioctl: Ioctl = fcntl.ioctl,
        opener: Callable[[Path], int] | None = None,
    ) -> None:
        self.path = path
        self._ioctl = ioctl
        self._open = opener or (lambda p: os.open(p, os.O_RDWR))

    def present(self) -> bool:
        return self.path.exists()

    def request(self, message: bytes) -> bytes:
        """One raw NSM request: CBOR in, CBOR out."""
        if len(message) > NSM_REQUEST_MAX_SIZE:
            raise NsmError(f"NSM request of {len(message)} bytes exceeds {NSM_REQUEST_MAX_SIZE}")
        request = ctypes.create_string_buffer(message, len(message))
        response = ctypes.create_string_buffer(NSM_RESPONSE_MAX_SIZE)
        raw = NsmRaw(
            NsmIovec(ctypes.addressof(request), len(message)),
            NsmIovec(ctypes.addressof(response), NSM_RESPONSE_MAX_SIZE),
        )
        fd = self._open_device()
        try:
            self._ioctl(fd, NSM_IOCTL_RAW, raw)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EINVAL):
                raise NsmError(
                    f"{self.path}: the NSM driver refused the raw request ioctl "
                    f"({exc.strerror or exc}); is this a Nitro Enclave?"
                ) from None
            raise NsmError(f"{self.path}: NSM request failed: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        size = raw.response.len
        if not 0 < size <= NSM_RESPONSE_MAX_SIZE:
            raise NsmError(f"{self.path}: NSM answered {size} bytes")
        return response.raw[:size]

    def attestation(self, user_data: bytes) -> bytes:
        """An attestation document whose user_data is ``user_data``."""
        message = cbor2.dumps(
            {"Attestation": {"user_data": user_data, "nonce": None, "public_key": None}}
        )
        try:
            answer = cbor2.loads(self.request(message))
        except cbor2.CBORError as exc:
            raise NsmError(f"{self.path}: the NSM answer is not CBOR ({exc})") from None
        if isinstance(answer, dict) and "Error" in answer:
            raise NsmError(f"{self.path}: the NSM refused the attestation: {answer['Error']}")
        body = answer.get("Attestation") if isinstance(answer, dict) else None
        document = body.get("document") if isinstance(body, dict) else None
        if not isinstance(document, bytes) or not document:
            raise NsmError(f"{self.path}: the NSM answer holds no attestation document")
        return document

    def _open_device(self) -> int:
        try:
            return self._open(self.path)
        except FileNotFoundError:
            raise PlatformUnavailable(f"{self.path} does not exist: not a Nitro Enclave") from None
        except PermissionError:
            raise NsmError(f"cannot open {self.path}: permission denied (run as root)") from None
        except OSError as exc:
            raise NsmError(f"cannot open {self.path}: {exc.strerror or exc}") from None


class NitroPlatform:
    name = "nitro"

    def __init__(self, *, device: NsmDevice | None = None, linux: bool | None = None) -> None:
        self.device = device or NsmDevice()
        self._linux = sys.platform.startswith("linux") if linux is None else linux

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1()

    def available(self) -> bool:
        return self._linux and self.device.present()

    def document(self, report_data: bytes) -> bytes:
        check_report_data(report_data)
        if not self._linux:
            raise PlatformUnavailable("the nitro platform needs a Linux Nitro Enclave")
        document = self.device.attestation(report_data)
        try:
            parsed = parse_document(document)
        except AttestationError as exc:
            raise NsmError(
                f"{self.device.path}: not an attestation document: {exc.message}"
            ) from None
        if parsed.user_data != report_data:
            raise NsmError(
                f"{self.device.path}: the document's user_data is not the report_data requested"
            )
        return document

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        document = self.document(report_data)
        return x509.UnrecognizedExtension(oids.EVIDENCE_NITRO, encode_nitro_evidence(document))


def create(state_dir: Path | None = None) -> NitroPlatform:
    return NitroPlatform()
