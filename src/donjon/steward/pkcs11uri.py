"""RFC 7512 PKCS#11 URIs: which token, which key, which module, which PIN.

``pkcs11:token=Donjon;object=steward-ca;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin``

Only the attributes Donjon acts on are accepted; any other (a ``library-*``
match, a vendor ``x-`` attribute) is refused rather than silently ignored,
since ignoring a selector could pick a different key than the operator meant.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from donjon.errors import UsageError

SCHEME = "pkcs11:"
MODULE_ENV = "DONJON_PKCS11_MODULE"
PIN_ENV = "DONJON_PKCS11_PIN"

_PATH_ATTRS = frozenset(
    {"token", "manufacturer", "serial", "model", "object", "type", "id", "slot-id"}
)
_QUERY_ATTRS = frozenset({"pin-source", "pin-value", "module-path"})
_TYPES = frozenset({"private", "public", "cert", "secret-key", "data"})
# RFC 7512 section 2.3: pchar minus the separators, plus percent-encoded octets.
_VALUE = re.compile(r"^(?:[A-Za-z0-9\-._~!$'()*+,=:@&/]|%[0-9A-Fa-f]{2})*$")


def is_pkcs11_uri(text: str) -> bool:
    return text.lower().startswith(SCHEME)


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed PKCS#11 URI; ``None`` means the attribute was absent."""

    text: str
    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    object: str | None = None  # the key's CKA_LABEL
    id: bytes | None = None  # the key's CKA_ID
    type: str | None = None
    slot_id: int | None = None
    pin_source: str | None = None
    pin_value: str | None = None
    module_path: str | None = None

    @property
    def redacted(self) -> str:
        """The URI for logs: a PIN value is never printed."""
        return re.sub(r"(pin-value=)[^&]*", r"\1***", self.text)

    def module(self) -> Path:
        """The PKCS#11 module (shared library): ``module-path`` or ``$DONJON_PKCS11_MODULE``."""
        value = self.module_path or os.environ.get(MODULE_ENV, "").strip()
        if not value:
            raise UsageError(
                f"{self.redacted}: no PKCS#11 module: add ?module-path=/path/to/module.so "
                f"or set ${MODULE_ENV}"
            )
        path = Path(value)
        if not path.is_file():
            raise UsageError(f"PKCS#11 module {path} does not exist")
        return path

    def pin(self) -> str:
        """The user PIN: ``pin-source`` (a file), ``pin-value``, or ``$DONJON_PKCS11_PIN``."""
        if self.pin_source is not None:
            source = self.pin_source.removeprefix("file:")
            try:
                return Path(source).read_text().strip()
            except OSError as exc:
                raise UsageError(
                    f"cannot read the PKCS#11 PIN file {source}: {exc.strerror}"
                ) from None
            except UnicodeDecodeError:
                raise UsageError(f"the PKCS#11 PIN file {source} is not text") from None
        if self.pin_value is not None:
            return self.pin_value
        pin = os.environ.get(PIN_ENV, "")
        if not pin:
            raise UsageError(
                f"{self.redacted}: no PIN: add ?pin-source=file:/path, or set ${PIN_ENV}"
            )
        return pin


def _decode(name: str, value: str, uri: str) -> bytes:
    if not _VALUE.match(value):
        raise UsageError(f"PKCS#11 URI {uri!r}: attribute {name} has a character to percent-encode")
    return unquote_to_bytes(value)


def _text(name: str, raw: bytes, uri: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"PKCS#11 URI {uri!r}: attribute {name} is not UTF-8") from None


def _pairs(part: str, separator: str, allowed: frozenset[str], uri: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if not part:
        return out
    for item in part.split(separator):
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            raise UsageError(f"PKCS#11 URI {uri!r}: {item!r} is not name=value")
        if name not in allowed:
            raise UsageError(
                f"PKCS#11 URI {uri!r}: attribute {name!r} is not supported "
                f"(use {', '.join(sorted(allowed))})"
            )
        if name in out:
            raise UsageError(f"PKCS#11 URI {uri!r}: attribute {name} appears twice")
        out[name] = _decode(name, value, uri)
    return out


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse an RFC 7512 URI; a malformed or unsupported one is one UsageError."""
    if not is_pkcs11_uri(text):
        raise UsageError(f"{text!r} is not a PKCS#11 URI (it must start with pkcs11:)")
    body = text[len(SCHEME) :]
    path, _, query = body.partition("?")
    attrs = _pairs(path, ";", _PATH_ATTRS, text)
    params = _pairs(query, "&", _QUERY_ATTRS, text)
    if "object" not in attrs and "id" not in attrs:
        raise UsageError(f"PKCS#11 URI {text!r} names no key: add object=<label> or id=<%xx..>")
    key_type = _text("type", attrs["type"], text) if "type" in attrs else None
    if key_type is not None and key_type not in _TYPES:
        raise UsageError(f"PKCS#11 URI {text!r}: type={key_type} is not an RFC 7512 type")
    slot_id = None
    if "slot-id" in attrs:
        raw = _text("slot-id", attrs["slot-id"], text)
        if not raw.isdigit():
            raise UsageError(f"PKCS#11 URI {text!r}: slot-id={raw} is not a decimal number")
        slot_id = int(raw)

    def field(name: str, source: dict[str, bytes]) -> str | None:
        return _text(name, source[name], text) if name in source else None

    return Pkcs11Uri(
        text=text,
        token=field("token", attrs),
        manufacturer=field("manufacturer", attrs),
        serial=field("serial", attrs),
        model=field("model", attrs),
        object=field("object", attrs),
        id=attrs.get("id"),
        type=key_type,
        slot_id=slot_id,
        pin_source=field("pin-source", params),
        pin_value=field("pin-value", params),
        module_path=field("module-path", params),
    )
