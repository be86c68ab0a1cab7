"""The keys ``[tdx]`` and ``[sgx]`` share: how collateral is judged, and where it comes from.

* ``crl``: ``"require"`` (default) refuses without current Intel CRLs; ``"if-available"``
  accepts, and the certificate says revocation was not checked.
* ``tcb_mode``: ``"require"`` (default) refuses without current TCB Info;
  ``"if-available"`` verifies signature and chain without it, and the result says
  ``tcb_status = NotAppraised`` ("TCB NOT APPRAISED").
* ``qe_identity``: ``"require"`` (default) refuses without Intel's QE Identity;
  ``"if-available"`` judges the quoting enclave only when one is available.
* ``pccs_url``: a PCCS (clouds run their own) instead of Intel PCS, when fetching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from donjon.attestation.policytoml import SectionReader
from donjon.attestation.snp.chain import CrlMode

Mode = Literal["require", "if-available"]
COLLATERAL_KEYS = frozenset({"crl", "tcb_mode", "qe_identity", "pccs_url"})
_MODES: tuple[str, ...] = ("require", "if-available")


@dataclass(frozen=True)
class CollateralPolicy:
    crl: CrlMode = "require"
    tcb_mode: Mode = "require"
    #: None: not said (the entry's default applies: "require", "if-available" for Enarx SGX).
    qe_identity: Mode | None = None
    pccs_url: str | None = None


def _mode(value: Any, key: str, reader: SectionReader) -> Mode:
    return "if-available" if reader.choice(value, key, _MODES) == "if-available" else "require"


def parse_collateral(table: Mapping[str, Any], reader: SectionReader) -> CollateralPolicy:
    values: dict[str, Any] = {}
    for key in ("crl", "tcb_mode", "qe_identity"):
        if key in table:
            values[key] = _mode(table[key], key, reader)
    if "pccs_url" in table:
        url = table["pccs_url"]
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise reader.fail("pccs_url", 'must be an http(s) URL such as "https://pccs:8081"')
        values["pccs_url"] = url.rstrip("/")
    return CollateralPolicy(**values)
