"""The CA key on a PKCS#11 token (an HSM, a cloud HSM's PKCS#11 library, or SoftHSM2).

:class:`TokenKey` is a ``cryptography`` ECDSA private key whose ``sign`` hashes
locally and asks the token to sign the digest (``CKM_ECDSA``): certificate and
CRL builders take it like any other key, and the private key never leaves the
token (it is generated there with ``CKA_SENSITIVE`` and without
``CKA_EXTRACTABLE``). Binding: ``python-pkcs11``.

One session per process, used under a lock (a PKCS#11 session is not safe for
concurrent calls); a session the token dropped is reopened once per call.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from donjon.errors import UsageError
from donjon.steward.errors import CAError, CAUnavailable
from donjon.steward.pkcs11uri import Pkcs11Uri

log = logging.getLogger("donjon.steward")

_CURVES: dict[str, ec.EllipticCurve] = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise UsageError(
            "a pkcs11: CA key needs python-pkcs11: pip install 'donjon[hsm]'"
        ) from None
    return pkcs11


def _token(uri: Pkcs11Uri) -> Any:
    """The one token that matches every token attribute of the URI."""
    p11 = _pkcs11()
    module = uri.module()
    try:
        lib = p11.lib(str(module))
        slots = lib.get_slots(token_present=True)
    except p11.PKCS11Error as exc:
        raise CAError(f"PKCS#11 module {module} failed to load: {_name(exc)}") from None
    matches = []
    for slot in slots:
        token = slot.get_token()
        serial = token.serial.decode(errors="replace") if isinstance(token.serial, bytes) else ""
        wanted = (
            (uri.token, token.label),
            (uri.manufacturer, token.manufacturer_id),
            (uri.model, token.model),
            (uri.serial, serial),
        )
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            continue
        if all(want is None or want == str(have).strip() for want, have in wanted):
            matches.append(token)
    if not matches:
        raise CAError(f"no PKCS#11 token matches {uri.redacted} in {module}")
    if len(matches) > 1:
        raise CAError(
            f"{len(matches)} PKCS#11 tokens match {uri.redacted}: add token=, serial= or slot-id="
        )
    return matches[0]


def _name(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _open_session(token: Any, pin: str, *, rw: bool = False) -> Any:
    p11 = _pkcs11()
    try:
        return token.open(user_pin=pin, rw=rw)
    except p11.exceptions.UserAlreadyLoggedIn:
        # PKCS#11 logins are per application: another session of this process is logged in.
        return token.open(rw=rw)
    except (p11.exceptions.PinIncorrect, p11.exceptions.PinInvalid, p11.exceptions.PinLenRange):
        raise CAError(f"the PKCS#11 PIN for token {token.label!r} is wrong") from None
    except p11.exceptions.PinLocked:
        raise CAError(f"the PKCS#11 token {token.label!r} has its user PIN locked") from None
    except p11.PKCS11Error as exc:
        raise CAError(f"cannot open a session on token {token.label!r}: {_name(exc)}") from None


def _selector(uri: Pkcs11Uri) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    if uri.object is not None:
        selector["label"] = uri.object
    if uri.id is not None:
        selector["id"] = uri.id
    return selector


def _curve_of(params: bytes) -> ec.EllipticCurve:
    from pkcs11.util.ec import encode_named_curve_parameters

    for name, curve in (("secp256r1", ec.SECP256R1()), ("secp384r1", ec.SECP384R1())):
        if bytes(encode_named_curve_parameters(name)) == bytes(params):
            return curve
    raise CAError("the PKCS#11 CA key is not on P-256 or P-384")


def _point(raw: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the point (some tokens give it bare)."""
    from pyasn1.codec.der import decoder
    from pyasn1.error import PyAsn1Error
    from pyasn1.type import univ

    if raw[:1] == b"\x04" and len(raw) > 2 and raw[1] == len(raw) - 2:
        try:
            inner, rest = decoder.decode(raw, asn1Spec=univ.OctetString())
        except PyAsn1Error:
            return raw
        if not rest:
            return bytes(inner)
    return raw


class TokenKey(ec.EllipticCurvePrivateKey):
    """An ECDSA key that lives on a PKCS#11 token; only ``sign`` and ``public_key`` work."""

    def __init__(self, uri: Pkcs11Uri, token: Any, pin: str) -> None:
        self.uri = uri
        self._token = token
        self._pin = pin
        self._lock = threading.Lock()
        self._session: Any = None
        self._key: Any = None
        self._public: ec.EllipticCurvePublicKey | None = None
        with self._lock:
            self._connect()

    @classmethod
    def open(cls, uri: Pkcs11Uri) -> TokenKey:
        """Find the private key the URI names (exactly one) and its public half."""
        if uri.type not in (None, "private"):
            raise UsageError(f"{uri.redacted}: the CA key URI must name a private key")
        return cls(uri, _token(uri), uri.pin())

    def _connect(self) -> None:
        p11 = _pkcs11()
        from pkcs11 import Attribute, KeyType, ObjectClass

        if self._session is not None:
            with contextlib.suppress(p11.PKCS11Error):
                self._session.close()
        self._session = _open_session(self._token, self._pin)
        selector = _selector(self.uri)
        try:
            self._key = self._session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, **selector
            )
            public = self._session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, **selector
            )
            curve = _curve_of(public[Attribute.EC_PARAMS])
            point = _point(bytes(public[Attribute.EC_POINT]))
        except p11.exceptions.NoSuchKey:
            raise CAError(
                f"no EC private and public key pair {self.uri.redacted} on token "
                f"{self._token.label!r}",
                hint="create it with `donjon steward init --pkcs11 URI`",
            ) from None
        except p11.exceptions.MultipleObjectsReturned:
            raise CAError(f"{self.uri.redacted} matches several keys: add id=") from None
        except p11.PKCS11Error as exc:
            raise CAError(
                f"cannot read the PKCS#11 key {self.uri.redacted}: {_name(exc)}"
            ) from None
        try:
            self._public = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        except ValueError:
            raise CAError(f"the token's public key {self.uri.redacted} is malformed") from None
        if self._key[Attribute.EXTRACTABLE] or not self._key[Attribute.SENSITIVE]:
            log.warning(
                "the PKCS#11 CA key %s is extractable or not sensitive: it could leave the token",
                self.uri.redacted,
            )

    def _sign_digest(self, digest: bytes) -> bytes:
        p11 = _pkcs11()
        from pkcs11 import Mechanism

        with self._lock:
            for attempt in (1, 2):
                try:
                    raw = bytes(self._key.sign(digest, mechanism=Mechanism.ECDSA))
                    break
                except (
                    p11.exceptions.SessionClosed,
                    p11.exceptions.SessionHandleInvalid,
                    p11.exceptions.DeviceRemoved,
                    p11.exceptions.TokenNotPresent,
                    p11.exceptions.DeviceError,
                    p11.exceptions.UserNotLoggedIn,
                    p11.exceptions.KeyHandleInvalid,
                    p11.exceptions.ObjectHandleInvalid,
                ) as exc:
                    if attempt == 2:
                        raise CAUnavailable(f"the HSM did not sign: {_name(exc)}") from None
                    log.warning("PKCS#11 session lost (%s): reopening", _name(exc))
                    try:
                        self._connect()
                    except CAError as again:
                        raise CAUnavailable(f"the HSM is unavailable: {again.message}") from None
                except p11.PKCS11Error as exc:
                    raise CAUnavailable(f"the HSM did not sign: {_name(exc)}") from None
        half = len(raw) // 2
        if len(raw) % 2 or half * 8 < self.curve.key_size - 7:
            raise CAUnavailable(f"the HSM returned a {len(raw)}-byte ECDSA signature")
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def probe(self) -> None:
        """Sign a throwaway digest: the readiness check that the token still signs."""
        self._sign_digest(b"\x00" * (self.curve.key_size // 8))

    # --- cryptography's EllipticCurvePrivateKey -------------------------------------------
    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("a PKCS#11 CA key signs ECDSA only")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, Prehashed):
            return self._sign_digest(bytes(data))
        assert isinstance(algorithm, hashes.HashAlgorithm)
        digest = hashes.Hash(algorithm)
        digest.update(data)
        return self._sign_digest(digest.finalize())

    def public_key(self) -> ec.EllipticCurvePublicKey:
        assert self._public is not None
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self.public_key().curve

    @property
    def key_size(self) -> int:
        return self.curve.key_size

    def _refuse(self, what: str) -> NoReturn:
        raise TypeError(
            f"the PKCS#11 CA key {self.uri.redacted} cannot {what}: it stays on the token"
        )

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        self._refuse("do ECDH")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        self._refuse("be exported")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        self._refuse("be exported")

    def __copy__(self) -> TokenKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenKey:
        return self

    def close(self) -> None:
        p11 = _pkcs11()
        with self._lock:
            if self._session is not None:
                with contextlib.suppress(p11.PKCS11Error):
                    self._session.close()
                self._session = None


def generate_token_key(uri: Pkcs11Uri, *, curve: str) -> TokenKey:
    """Create a non-extractable EC key pair on the token; refuse if one is already there."""
    p11 = _pkcs11()
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    if curve not in _CURVES:
        raise UsageError(f"unknown CA curve {curve!r}: use one of {', '.join(_CURVES)}")
    if uri.object is None:
        raise UsageError(f"{uri.redacted}: name the new key with object=<label>")
    token = _token(uri)
    pin = uri.pin()
    with _open_session(token, pin, rw=True) as session:
        existing = list(session.get_objects({Attribute.LABEL: uri.object}))
        if existing:
            raise CAError(
                f"token {token.label!r} already holds an object labelled {uri.object!r}",
                hint="pick another object= label; Donjon never deletes a key from a token",
            )
        try:
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[curve].name)},
                local=True,
            )
            template: dict[Any, Any] = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
            if uri.id is not None:
                template[Attribute.ID] = uri.id
            params.generate_keypair(
                store=True,
                label=uri.object,
                id=uri.id,
                private_template=template,
                public_template={Attribute.ID: uri.id} if uri.id is not None else {},
            )
        except p11.PKCS11Error as exc:
            raise CAError(f"the token refused to generate the key: {_name(exc)}") from None
    log.warning("generated CA key %s on token %r (non-extractable)", uri.redacted, token.label)
    return TokenKey(uri, token, pin)
