"""Vendor facts the simulator needs per AMD product line, on top of the verifier's model.

The product enum and the TCB_VERSION encoding are the verifier's own
(:mod:`donjon.attestation.snp`), so a sim report can only be laid out the way the
verifier reads real ones. This module adds what a *producer* needs: the CPUID
values a v3+ report carries, the VCEK product name, and plausible default TCBs.
"""

from __future__ import annotations

import re

from donjon.attestation.errors import ProductMismatchError
from donjon.attestation.snp.product import Product
from donjon.attestation.snp.report import TcbVersion
from donjon.errors import UsageError

__all__ = ["CPUID", "DEFAULT_TCB", "VCEK_PRODUCT_NAMES", "Product", "TcbVersion"]

#: (family, model, stepping) of a representative part of each line (AMD CPUID, leaf 1).
CPUID: dict[Product, tuple[int, int, int]] = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x01),
}

#: The productName IA5String of the VCEK (as AMD KDS writes it).
VCEK_PRODUCT_NAMES = {Product.MILAN: "Milan-B0", Product.GENOA: "Genoa-B1", Product.TURIN: "Turin"}

#: Plausible current levels (not a claim about any real machine).
DEFAULT_TCB = {
    Product.MILAN: TcbVersion(bl=4, tee=0, snp=24, ucode=219),
    Product.GENOA: TcbVersion(bl=9, tee=0, snp=23, ucode=72),
    Product.TURIN: TcbVersion(bl=1, tee=1, snp=1, ucode=9, fmc=1),
}

_TCB_FIELDS = ("bl", "tee", "snp", "ucode", "fmc")


def parse_product(text: str) -> Product:
    try:
        return Product.parse(text)
    except ProductMismatchError as exc:
        raise UsageError(exc.message) from None


def parse_tcb(text: str, product: Product) -> TcbVersion:
    """Read ``bl=3,tee=0,snp=20,ucode=209[,fmc=1]``; omitted fields keep the defaults."""
    values = DEFAULT_TCB[product].components()
    for part in filter(None, (p.strip() for p in re.split(r"[,\s]+", text))):
        name, sep, raw = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in _TCB_FIELDS:
            raise UsageError(
                f"bad TCB item {part!r}: expected name=value with name one of "
                + ", ".join(_TCB_FIELDS)
            )
        if name == "fmc" and not product.turin_layout:
            raise UsageError(f"fmc is a Turin SPL; {product.value} has none")
        try:
            values[name] = int(raw, 0)
        except ValueError:
            raise UsageError(f"bad TCB value {part!r}: not an integer") from None
    for name, value in values.items():
        if not 0 <= value <= 0xFF:
            raise UsageError(f"TCB {name}={value} is out of range 0..255 (one byte)")
    return TcbVersion(**values)
