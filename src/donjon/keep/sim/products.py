"""The AMD product lines the simulator can impersonate, with their vendor facts.

The facts (CPUID family/model, TCB_VERSION byte layout, hwID length, KDS names)
come from the AMD SEV-SNP ABI specification (rev 1.58) and the AMD KDS
interface specification; they decide how a real verifier reads the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from donjon.attestation.snp import layout
from donjon.errors import UsageError


class Product(Enum):
    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @classmethod
    def parse(cls, text: str) -> Product:
        for product in cls:
            if product.value.lower() == text.strip().lower():
                return product
        known = ", ".join(p.value for p in cls)
        raise UsageError(f"unknown product {text!r} (known: {known})")

    @property
    def cpuid(self) -> tuple[int, int, int]:
        """(family, model, stepping) that a v3+ report carries for this product."""
        return _CPUID[self]

    @property
    def hwid_size(self) -> int:
        """Bytes of CHIP_ID that the VCEK's hwID extension carries (Turin: 8, else 64)."""
        return 8 if self is Product.TURIN else 64

    @property
    def has_fmc(self) -> bool:
        """Turin added the FMC SPL to TCB_VERSION and the VCEK (OID ...3704.1.3.9)."""
        return self is Product.TURIN


_CPUID = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x01),
}

_TCB_FIELDS = ("bl", "tee", "snp", "ucode", "fmc")


@dataclass(frozen=True)
class Tcb:
    """Security patch levels (SPLs) of the firmware components, one byte each."""

    bl: int
    tee: int
    snp: int
    ucode: int
    fmc: int | None = None  # Turin only

    def __post_init__(self) -> None:
        for name in _TCB_FIELDS:
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 255:
                raise UsageError(f"TCB {name}={value} is out of range 0..255")

    @classmethod
    def parse(cls, text: str, product: Product) -> Tcb:
        """Read ``bl=3,tee=0,snp=20,ucode=209[,fmc=1]``; omitted fields take the defaults."""
        values = dict(_DEFAULT_TCB[product].as_dict())
        for part in filter(None, (p.strip() for p in re.split(r"[,\s]+", text))):
            name, sep, raw = part.partition("=")
            name = name.strip().lower()
            if not sep or name not in _TCB_FIELDS:
                raise UsageError(
                    f"bad TCB item {part!r}: expected name=value with name one of "
                    + ", ".join(_TCB_FIELDS)
                )
            try:
                values[name] = int(raw, 0)
            except ValueError:
                raise UsageError(f"bad TCB value {part!r}: not an integer") from None
        fmc = values.get("fmc")
        if fmc is not None and not product.has_fmc:
            raise UsageError(f"fmc is a Turin SPL; {product.value} has none")
        return cls(
            bl=values["bl"] or 0,
            tee=values["tee"] or 0,
            snp=values["snp"] or 0,
            ucode=values["ucode"] or 0,
            fmc=fmc,
        )

    @classmethod
    def default(cls, product: Product) -> Tcb:
        return _DEFAULT_TCB[product]

    def as_dict(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in _TCB_FIELDS}

    def encode(self, product: Product) -> int:
        """The 64-bit TCB_VERSION value as the report stores it (little-endian u64).

        Milan/Genoa: byte 0 bl, 1 tee, 6 snp, 7 ucode. Turin: 0 fmc, 1 bl, 2 tee,
        3 snp, 7 ucode.
        """
        positions = layout.TCB_LAYOUT_TURIN if product.has_fmc else layout.TCB_LAYOUT_MILAN
        raw = bytearray(8)
        for name, index in positions.items():
            raw[index] = getattr(self, name) or 0
        return int.from_bytes(raw, "little")

    def __str__(self) -> str:
        text = f"bl={self.bl} tee={self.tee} snp={self.snp} ucode={self.ucode}"
        return text if self.fmc is None else f"{text} fmc={self.fmc}"


# Plausible current levels (not a claim about any real machine).
_DEFAULT_TCB = {
    Product.MILAN: Tcb(bl=4, tee=0, snp=24, ucode=219),
    Product.GENOA: Tcb(bl=9, tee=0, snp=23, ucode=72),
    Product.TURIN: Tcb(bl=1, tee=1, snp=1, ucode=9, fmc=1),
}
