"""The one exception type that reaches a user as a one-line message.

Every subpackage raises subclasses of :class:`DonjonError` for bad input or a
refused operation. The CLI prints ``donjon: error: <message>`` and exits
non-zero, never a traceback. Messages say what was wrong and where.
"""

from __future__ import annotations


class DonjonError(Exception):
    """A user-facing failure with a one-line, self-explaining message."""

    exit_code: int = 1

    def __init__(
        self, message: str, *, hint: str | None = None, more: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: Further problems found in the same input, one line each (all are reported).
        self.more = more

    def __str__(self) -> str:
        return self.message


class UsageError(DonjonError):
    """Bad input given by the user: a file, a flag or a config value."""

    exit_code = 2


#: cryptography's (Rust) ASN.1 ParseError kinds, in words.
_ASN1_KINDS = {
    "InvalidLength": "a length is invalid",
    "ShortData": "the data ends too early",
    "ExtraData": "there are extra bytes after the end",
    "UnexpectedTag": "a field has an unexpected type",
    "InvalidTag": "a tag is invalid",
    "InvalidValue": "a value is invalid",
    "InvalidSetOrdering": "a SET is not in DER order",
    "EncodedDefault": "a default value is encoded (not DER)",
    "IntegerOverflow": "an integer is too large",
    "OidTooLong": "an object identifier is too long",
    "UnknownDefinedBy": "an algorithm or type identifier is unknown",
}


def plain(exc: BaseException) -> str:
    """A library's refusal of some bytes (cryptography, pyasn1, ssl) in Donjon's words.

    Library messages name their own internals (``ParseError { kind: InvalidLength }``,
    pyasn1 schema dumps, FAQ links); a user needs to know what is wrong with the file.
    """
    if isinstance(exc, DonjonError):
        return exc.message  # already in our words
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if "ParseError" in text and "kind:" in text:
        kind = text.split("kind:", 1)[1].split()[0].strip("{},")
        return f"malformed DER: {_ASN1_KINDS.get(kind, 'an unreadable structure')}"
    if "Unable to load PEM" in text:
        return "malformed PEM (no well-formed BEGIN/END block)"
    if text.startswith("Could not deserialize key data"):
        return "not a key in a supported format (PEM or DER, unencrypted)"
    if name in ("SubstrateUnderrunError", "EndOfStreamError"):
        return "malformed DER: the data ends too early"
    if name == "PyAsn1Error" or "asn1Spec" in text:
        return "malformed DER: it does not have the expected structure"
    if name == "InvalidSignature":
        return "the signature does not verify"
    if ("{" in text and "}" in text) or len(text) > 160:  # a debug dump, not a sentence
        return f"unreadable ({name})"
    return text or name
