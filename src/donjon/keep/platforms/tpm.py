"""A TPM 2.0, through tpm2-pytss (the TCG ESAPI) over a TCTI: what the Azure platform needs.

The default TCTI is the kernel's resource manager, ``device:/dev/tpmrm0``;
``$DONJON_TPM_TCTI`` (or the ``tcti`` argument) names another, e.g.
``swtpm:host=127.0.0.1,port=2321`` for the simulator the tests use.

tpm2-pytss is optional (``pip install 'donjon[azure]'``, it needs the libtss2
libraries): it is imported only when a TPM is opened, so Donjon installs and
runs without it on macOS or a Raspberry Pi. Every TSS failure becomes a
one-line :class:`TpmError`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from donjon.keep.platforms.base import PlatformError, PlatformUnavailable

ENV_TCTI = "DONJON_TPM_TCTI"
DEFAULT_TCTI = "device:/dev/tpmrm0"
#: The ESAPI reads at most this much NV data per command on every TPM we know (1024 is
#: TPM_PT_NV_BUFFER_MAX on swtpm and Azure's vTPM); smaller chunks are always accepted.
NV_CHUNK = 1024
#: TPM2_PCR_Read returns at most 8 digests per call.
PCR_READ_BATCH = 8
#: Digest sizes of the hash algorithms a TPM may implement (TPM_ALG_ID -> bytes).
_DIGESTS = {0x0004: 20, 0x000B: 32, 0x000C: 48, 0x000D: 64, 0x0012: 32}
INSTALL_HINT = (
    "install tpm2-pytss (pip install 'donjon[azure]'; it needs libtss2, "
    "e.g. apt install libtss2-dev)"
)


class TpmError(PlatformError):
    """The TPM refused a command, or answered something unusable."""


def tcti_spec(override: str | None = None) -> str:
    """The TCTI to use: the argument, ``$DONJON_TPM_TCTI``, or the kernel resource manager."""
    return override or os.environ.get(ENV_TCTI) or DEFAULT_TCTI


def device_of(spec: str) -> Path | None:
    """The device node a ``device:`` TCTI opens (None for other TCTIs)."""
    name, _, conf = spec.partition(":")
    if name != "device":
        return None
    return Path(conf or "/dev/tpmrm0")


def load_pytss() -> ModuleType:
    """tpm2-pytss, or :class:`PlatformUnavailable` that says how to install it."""
    # The TSS logs every refused command to stderr; Donjon reports failures itself.
    os.environ.setdefault("TSS2_LOG", "all+none")
    try:
        return importlib.import_module("tpm2_pytss")
    except ImportError as exc:
        raise PlatformUnavailable(f"no TPM library: {exc}", hint=INSTALL_HINT) from None


class Tpm:
    """One ESAPI context. Use :func:`open_tpm` so that it is closed."""

    def __init__(self, spec: str) -> None:
        pytss = load_pytss()
        self._pytss = pytss
        self.spec = spec
        name, _, conf = spec.partition(":")
        try:
            self._tcti = pytss.TCTILdr(name, conf or None)
            self._esapi = pytss.ESAPI(self._tcti)
        except Exception as exc:  # TCTI load and connect errors have no common type
            raise TpmError(f"cannot open the TPM through TCTI {spec!r}: {exc}") from None
        from tpm2_pytss import constants, types

        self._c = constants
        self._t = types

    def close(self) -> None:
        self._esapi.close()

    def _run(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._pytss.TSS2_Exception as exc:
            raise TpmError(f"TPM {what} failed: {exc}") from None

    # --- queries ---------------------------------------------------------------------
    def nv_size(self, index: int) -> int | None:
        """The size of NV index ``index``, or None when it is not defined."""
        try:
            handle = self._esapi.tr_from_tpmpublic(index)
        except self._pytss.TSS2_Exception:
            return None
        public, _ = self._run(f"NV_ReadPublic 0x{index:08x}", self._esapi.nv_read_public, handle)
        return int(public.nvPublic.dataSize)

    def nv_read(self, index: int) -> bytes:
        """All of NV index ``index``, read with owner authorisation (empty password)."""
        what = f"NV_Read 0x{index:08x}"
        try:
            handle = self._esapi.tr_from_tpmpublic(index)
        except self._pytss.TSS2_Exception as exc:
            raise TpmError(f"the TPM has no NV index 0x{index:08x} ({exc})") from None
        public, _ = self._run(what, self._esapi.nv_read_public, handle)
        size = int(public.nvPublic.dataSize)
        out = bytearray()
        while len(out) < size:
            chunk = min(NV_CHUNK, size - len(out))
            data = self._run(
                what,
                self._esapi.nv_read,
                handle,
                chunk,
                len(out),
                auth_handle=self._c.ESYS_TR.OWNER,
            )
            out += bytes(data)
        return bytes(out)

    def max_digest_size(self) -> int:
        """sizeof(TPMU_HA): the largest digest of a hash the TPM implements.

        TPM2B_DATA (a quote's qualifying data) holds at most this many bytes.
        """
        _, data = self._run(
            "GetCapability(ALGS)", self._esapi.get_capability, self._c.TPM2_CAP.ALGS, 0, 128
        )
        sizes = [_DIGESTS.get(int(a.alg), 0) for a in data.data.algorithms]
        return max([32, *sizes])

    def rsa_public(self, handle: int) -> rsa.RSAPublicKey:
        """The public part of the RSA key at persistent ``handle``."""
        try:
            obj = self._esapi.tr_from_tpmpublic(handle)
        except self._pytss.TSS2_Exception as exc:
            raise TpmError(f"the TPM has no key at handle 0x{handle:08x} ({exc})") from None
        public, _, _ = self._run("ReadPublic", self._esapi.read_public, obj)
        area = public.publicArea
        if int(area.type) != int(self._c.TPM2_ALG.RSA):
            raise TpmError(f"the key at 0x{handle:08x} is not an RSA key")
        exponent = int(area.parameters.rsaDetail.exponent) or 65537
        modulus = int.from_bytes(bytes(area.unique.rsa), "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()

    def quote(
        self, handle: int, pcrs: Sequence[int], qualifying_data: bytes
    ) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) of a quote by the key at ``handle`` over SHA-256 PCRs."""
        key = self._run("TR_FromTPMPublic", self._esapi.tr_from_tpmpublic, handle)
        selection = self._t.TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, pcrs)))
        attest, signature = self._run(
            "Quote", self._esapi.quote, key, selection, qualifying_data
        )
        return bytes(attest), bytes(signature.marshal())

    def pcr_values(self, pcrs: Sequence[int]) -> list[bytes]:
        """The SHA-256 bank's values of ``pcrs``, in order."""
        out: list[bytes] = []
        for start in range(0, len(pcrs), PCR_READ_BATCH):
            batch = pcrs[start : start + PCR_READ_BATCH]
            selection = self._t.TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, batch)))
            _, _, digests = self._run("PCR_Read", self._esapi.pcr_read, selection)
            values = [bytes(digests.digests[i]) for i in range(digests.count)]
            if len(values) != len(batch):
                raise TpmError(f"the TPM returned {len(values)} of PCRs {list(batch)}")
            out += values
        return out

    # --- provisioning (the simulated paravisor and tests) ------------------------------
    def create_ak(self, handle: int) -> rsa.RSAPublicKey:
        """An RSA-2048 restricted signing key (RSASSA/SHA-256), persisted at ``handle``."""
        attrs = self._c.TPMA_OBJECT
        public = self._t.TPM2B_PUBLIC.parse(
            "rsa2048:rsassa-sha256:null",
            objectAttributes=attrs.RESTRICTED
            | attrs.SIGN_ENCRYPT
            | attrs.FIXEDTPM
            | attrs.FIXEDPARENT
            | attrs.SENSITIVEDATAORIGIN
            | attrs.USERWITHAUTH
            | attrs.NODA,
        )
        esys_tr = self._c.ESYS_TR
        created, *_ = self._run(
            "CreatePrimary", self._esapi.create_primary, None, public, esys_tr.OWNER
        )
        self._run("EvictControl", self._esapi.evict_control, esys_tr.OWNER, created, handle)
        self._run("FlushContext", self._esapi.flush_context, created)
        return self.rsa_public(handle)

    def nv_define_and_write(self, index: int, data: bytes) -> None:
        """Define NV ``index`` (owner read/write) holding exactly ``data``."""
        nv_attr = self._c.TPMA_NV
        public = self._t.TPM2B_NV_PUBLIC(
            nvPublic=self._t.TPMS_NV_PUBLIC(
                nvIndex=index,
                nameAlg=self._c.TPM2_ALG.SHA256,
                attributes=nv_attr.OWNERREAD
                | nv_attr.OWNERWRITE
                | nv_attr.AUTHREAD
                | nv_attr.AUTHWRITE
                | nv_attr.NO_DA,
                dataSize=len(data),
            )
        )
        owner = self._c.ESYS_TR.OWNER
        handle = self._run("NV_DefineSpace", self._esapi.nv_define_space, None, public, owner)
        for offset in range(0, len(data), NV_CHUNK):
            chunk = data[offset : offset + NV_CHUNK]
            self._run("NV_Write", self._esapi.nv_write, handle, chunk, offset, auth_handle=owner)

    def nv_undefine(self, index: int) -> None:
        handle = self._run("TR_FromTPMPublic", self._esapi.tr_from_tpmpublic, index)
        self._run(
            "NV_UndefineSpace", self._esapi.nv_undefine_space, handle, self._c.ESYS_TR.OWNER
        )

    def extend(self, pcr: int, digest: bytes) -> None:
        """Extend the SHA-256 bank of ``pcr`` (tests change a PCR this way)."""
        value = self._t.TPMT_HA(hashAlg=self._c.TPM2_ALG.SHA256)
        value.digest.sha256 = digest
        values = self._t.TPML_DIGEST_VALUES([value])
        self._run("PCR_Extend", self._esapi.pcr_extend, self._c.ESYS_TR(pcr), values)


@contextmanager
def open_tpm(tcti: str | None = None) -> Iterator[Tpm]:
    """The TPM named by ``tcti`` (or ``$DONJON_TPM_TCTI``, or /dev/tpmrm0), closed after use."""
    tpm = Tpm(tcti_spec(tcti))
    try:
        yield tpm
    finally:
        tpm.close()
