"""TPM 2.0 structures of a quote, parsed with ``struct`` (TPM 2.0 Library, Part 2).

All integers are big-endian. A quote is a ``TPMS_ATTEST`` (10.12.12)::

    magic            UINT32   TPM_GENERATED_VALUE 0xff544347
    type             UINT16   TPM_ST_ATTEST_QUOTE 0x8018
    qualifiedSigner  TPM2B_NAME
    extraData        TPM2B_DATA      the caller's qualifying data (Donjon's binding)
    clockInfo        TPMS_CLOCK_INFO clock UINT64, resetCount UINT32, restartCount UINT32,
                                     safe BYTE (0|1)
    firmwareVersion  UINT64
    attested         TPMS_QUOTE_INFO pcrSelect TPML_PCR_SELECTION, pcrDigest TPM2B_DIGEST

signed by the AK as a ``TPMT_SIGNATURE`` (11.3.4): sigAlg UINT16, then for
RSASSA ``hash UINT16, sig TPM2B_PUBLIC_KEY_RSA``. Anything else (another type,
another scheme, trailing bytes) is refused.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from donjon.attestation.errors import TpmQuoteFormatError, TpmQuoteSignatureError

TPM_GENERATED = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_RSASSA = 0x0014
TPM_ALG_SHA256 = 0x000B
#: Digest sizes of the hash algorithms a PCR bank or a name may use.
DIGEST_SIZES = {0x0004: 20, 0x000B: 32, 0x000C: 48, 0x000D: 64, 0x0012: 32}
#: TPM2B_DATA holds at most sizeof(TPMU_HA): the largest digest the TPM implements.
MAX_DATA = 64
#: TPM2B_NAME: a handle (4 bytes) or nameAlg (2) + a digest.
MAX_NAME = 2 + 64
PCR_SELECT_MIN = 3  # 24 PCRs
PCR_SELECT_MAX = 8
MAX_BANKS = 8
#: Donjon quotes the SHA-256 bank, PCRs 0..23 (what Azure's vTPM implements).
QUOTED_PCRS = tuple(range(24))

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_CLOCK = struct.Struct(">QIIB")
_U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class PcrSelection:
    hash_alg: int
    pcrs: tuple[int, ...]


@dataclass(frozen=True)
class QuoteInfo:
    """A parsed ``TPMS_ATTEST`` of type quote."""

    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    selections: tuple[PcrSelection, ...]
    pcr_digest: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "qualified_signer": self.qualified_signer.hex(),
            "extra_data": self.extra_data.hex(),
            "clock": self.clock,
            "reset_count": self.reset_count,
            "restart_count": self.restart_count,
            "safe": self.safe,
            "firmware_version": f"{self.firmware_version:016x}",
            "pcr_selection": [
                {"hash": f"0x{s.hash_alg:04x}", "pcrs": list(s.pcrs)} for s in self.selections
            ],
            "pcr_digest": self.pcr_digest.hex(),
        }


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, size: int, field: str) -> bytes:
        if self.pos + size > len(self.data):
            raise TpmQuoteFormatError(f"{self.what}: truncated in {field}")
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def unpack(self, fmt: struct.Struct, field: str) -> tuple[Any, ...]:
        return fmt.unpack(self.take(fmt.size, field))

    def sized(self, limit: int, field: str) -> bytes:
        (size,) = self.unpack(_U16, field)
        if size > limit:
            raise TpmQuoteFormatError(f"{self.what}: {field} is {size} bytes (at most {limit})")
        return self.take(size, field)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise TpmQuoteFormatError(
                f"{self.what}: {len(self.data) - self.pos} trailing bytes after the structure"
            )


def parse_attest(data: bytes) -> QuoteInfo:
    """A quote's ``TPMS_ATTEST``; raises :class:`TpmQuoteFormatError` for anything else."""
    r = _Reader(data, "TPMS_ATTEST")
    (magic,) = r.unpack(_U32, "magic")
    if magic != TPM_GENERATED:
        raise TpmQuoteFormatError(
            f"TPMS_ATTEST: magic 0x{magic:08x} is not TPM_GENERATED (0xff544347): "
            "the TPM did not make this structure"
        )
    (kind,) = r.unpack(_U16, "type")
    if kind != TPM_ST_ATTEST_QUOTE:
        raise TpmQuoteFormatError(f"TPMS_ATTEST: type 0x{kind:04x} is not a quote (0x8018)")
    signer = r.sized(MAX_NAME, "qualifiedSigner")
    extra = r.sized(MAX_DATA, "extraData")
    clock, resets, restarts, safe = r.unpack(_CLOCK, "clockInfo")
    if safe not in (0, 1):
        raise TpmQuoteFormatError(f"TPMS_ATTEST: clockInfo.safe is {safe}, not 0 or 1")
    (firmware,) = r.unpack(_U64, "firmwareVersion")
    (count,) = r.unpack(_U32, "pcrSelect.count")
    if count > MAX_BANKS:
        raise TpmQuoteFormatError(f"TPMS_ATTEST: {count} PCR banks selected (at most {MAX_BANKS})")
    selections = []
    for index in range(count):
        (alg,) = r.unpack(_U16, f"pcrSelections[{index}].hash")
        size = r.take(1, f"pcrSelections[{index}].sizeofSelect")[0]
        if not PCR_SELECT_MIN <= size <= PCR_SELECT_MAX:
            raise TpmQuoteFormatError(f"TPMS_ATTEST: sizeofSelect {size} is out of range")
        bitmap = r.take(size, f"pcrSelections[{index}].pcrSelect")
        pcrs = tuple(i for i in range(size * 8) if bitmap[i // 8] >> (i % 8) & 1)
        selections.append(PcrSelection(alg, pcrs))
    digest = r.sized(64, "pcrDigest")
    r.end()
    return QuoteInfo(
        qualified_signer=signer,
        extra_data=extra,
        clock=clock,
        reset_count=resets,
        restart_count=restarts,
        safe=bool(safe),
        firmware_version=firmware,
        selections=tuple(selections),
        pcr_digest=digest,
    )


def parse_rsassa_signature(data: bytes) -> bytes:
    """The RSA signature bytes of a ``TPMT_SIGNATURE``, which must be RSASSA with SHA-256."""
    r = _Reader(data, "TPMT_SIGNATURE")
    if len(data) < 4:
        raise TpmQuoteSignatureError(f"TPMT_SIGNATURE: {len(data)} bytes is too short")
    alg, hash_alg = struct.unpack_from(">HH", data)
    if alg != TPM_ALG_RSASSA:
        raise TpmQuoteSignatureError(
            f"the quote is signed with algorithm 0x{alg:04x}, not RSASSA-PKCS1-v1_5 (0x0014)"
        )
    if hash_alg != TPM_ALG_SHA256:
        raise TpmQuoteSignatureError(f"the quote is signed over hash 0x{hash_alg:04x}, not SHA-256")
    r.pos = 4
    try:
        sig = r.sized(512, "signature")
        r.end()
    except TpmQuoteFormatError as exc:
        raise TpmQuoteSignatureError(exc.message) from None
    return sig


def encode_rsassa_signature(signature: bytes) -> bytes:
    """A ``TPMT_SIGNATURE`` for an RSASSA/SHA-256 signature (Trustee gives the bare bytes)."""
    return struct.pack(">HHH", TPM_ALG_RSASSA, TPM_ALG_SHA256, len(signature)) + signature


def pcr_digest(values: Sequence[bytes]) -> bytes:
    """What the TPM signs for the selected PCRs: SHA-256 of their values, in order."""
    return hashlib.sha256(b"".join(values)).digest()


def selection_bitmap(pcrs: Sequence[int], size: int = PCR_SELECT_MIN) -> bytes:
    """A ``pcrSelect`` bitmap (for tests and the simulated TPM)."""
    out = bytearray(size)
    for pcr in pcrs:
        out[pcr // 8] |= 1 << (pcr % 8)
    return bytes(out)


def build_attest(
    *,
    extra_data: bytes,
    pcr_values: Sequence[bytes],
    pcrs: Sequence[int] = QUOTED_PCRS,
    signer: bytes = b"\x00\x0b" + bytes(32),
    clock: int = 0,
    firmware: int = 0,
) -> bytes:
    """A quote ``TPMS_ATTEST`` over SHA-256 PCRs (for tests: a real TPM makes its own)."""
    digest = pcr_digest(pcr_values)
    return b"".join(
        [
            _U32.pack(TPM_GENERATED),
            _U16.pack(TPM_ST_ATTEST_QUOTE),
            _U16.pack(len(signer)),
            signer,
            _U16.pack(len(extra_data)),
            extra_data,
            _CLOCK.pack(clock, 0, 0, 1),
            _U64.pack(firmware),
            _U32.pack(1),
            _U16.pack(TPM_ALG_SHA256),
            bytes([PCR_SELECT_MIN]),
            selection_bitmap(pcrs),
            _U16.pack(len(digest)),
            digest,
        ]
    )
