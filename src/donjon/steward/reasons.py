"""The revocation reasons the Steward accepts (RFC 5280 CRLReason names, dashed).

Kept free of heavy imports: the CLI builds its ``--reason`` choice from it at start-up.
"""

from __future__ import annotations

REVOCATION_REASONS: tuple[str, ...] = (
    "unspecified",
    "key-compromise",
    "affiliation-changed",
    "superseded",
    "cessation-of-operation",
    "privilege-withdrawn",
)
