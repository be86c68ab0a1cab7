"""What decoding hostile DER with pyasn1 can raise, named once for every decoder.

pyasn1 reports most malformed input as ``PyAsn1Error``, but not all of it: a
length field larger than the platform's index size reaches Python's own limits
first (``OverflowError: cannot fit 'int' into an index-sized integer``, found
by ``fuzz/targets.py``), and odd nesting can surface as other built-in errors.
Every decode of bytes someone else chose catches :data:`DECODE_ERRORS` and turns
them into its own one-line error (malformed evidence, bad claims, a 400).
"""

from __future__ import annotations

from pyasn1.error import PyAsn1Error

DECODE_ERRORS: tuple[type[Exception], ...] = (
    PyAsn1Error,
    OverflowError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    RecursionError,
)

__all__ = ["DECODE_ERRORS"]
