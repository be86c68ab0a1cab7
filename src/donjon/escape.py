"""Printing text that someone else chose, shared by every subpackage.

A certificate, a CSR or a piece of evidence carries strings its author picked:
a package name, an advisory, a TCB status, a subject name. Printed as they
are, a newline in one of them starts a line the author wrote (a forged
``✔ revocation`` under ``donjon verify-peer``), an escape sequence recolours
or clears the terminal, and a bidirectional override reorders what a reader
sees. :func:`escape` shows every such character as a visible escape instead,
so one value stays on one line and reads as what it is.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with each non-printable character (controls, line and paragraph
    separators, bidi and other format characters, unassigned code points) written
    as ``\\n``, ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``; printable text is unchanged."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


__all__ = ["escape"]
