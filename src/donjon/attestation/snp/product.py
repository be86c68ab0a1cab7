"""AMD product lines: how to recognise them and how their TCB is laid out."""

from __future__ import annotations

from enum import Enum

from donjon.attestation.errors import ProductMismatchError
from donjon.attestation.snp import layout


class Product(Enum):
    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @classmethod
    def parse(cls, text: str) -> Product:
        """Accept ``Milan``, ``milan`` or a VCEK product name such as ``Milan-B0``."""
        base = text.strip().split("-", 1)[0].lower()
        for product in cls:
            if product.value.lower() == base:
                return product
        known = ", ".join(p.value for p in cls)
        raise ProductMismatchError(f"unknown AMD product line {text!r} (known: {known})")

    @classmethod
    def from_cpuid(cls, family: int, model: int) -> Product:
        """Map the CPUID family/model that v3+ reports carry to a product line."""
        if family == layout.CPUID_FAMILY_ZEN3_4:
            if model <= 0x0F:
                return cls.MILAN
            if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
                return cls.GENOA
        if family == layout.CPUID_FAMILY_ZEN5:
            return cls.TURIN
        raise ProductMismatchError(
            f"SNP report: CPUID family 0x{family:02x} model 0x{model:02x} is no known AMD product"
        )

    @property
    def turin_layout(self) -> bool:
        """Turin added an FMC SPL and moved the TCB bytes."""
        return self is Product.TURIN

    @property
    def hwid_size(self) -> int:
        """Bytes of CHIP_ID carried by the VCEK's hwID extension."""
        return 8 if self is Product.TURIN else 64
