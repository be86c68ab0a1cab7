"""Intel's TCB status algorithm, as the Quote Verification Library applies it.

* **Platform TCB level** (SGX and TDX): the first level of TCB Info whose sixteen
  SGX components and PCESVN the PCK certificate meets or exceeds, component by
  component. For TDX, the first such level whose TDX components the TD report's
  TEE_TCB_SVN also meets; bytes 0 and 1 (the TDX module's SVN and version) are
  skipped when the module version is not 0, because the TDX module identities
  judge them instead. No level: "TCB not supported", a refusal.
* **TDX module**: MRSIGNERSEAM and SEAM attributes must be the module's (from
  ``tdxModule``, or the ``TDX_<version>`` identity), SEAM attributes zero, and
  the module's ISVSVN finds its own level.
* **QE Identity**: MISCSELECT and ATTRIBUTES under their masks, MRSIGNER and
  ISVPRODID equal, and the QE's ISVSVN finds a level.
* The statuses then converge as QVL does (an out-of-date QE or module makes an
  up-to-date platform OutOfDate, a configuration-needed one
  OutOfDateConfigurationNeeded; Revoked wins), with TDX 1.5's relaunch advice.

Every function is pure; errors name what did not match.
"""

from __future__ import annotations

from dataclasses import dataclass

from donjon.attestation.dcap.collateral import (
    ModuleLevel,
    QeIdentity,
    TcbInfo,
    TcbLevel,
    TdxModuleIdentity,
)
from donjon.attestation.dcap.pck import PckTcb
from donjon.attestation.dcap.quote import EnclaveReport, TdReport
from donjon.attestation.errors import (
    QeIdentityMismatchError,
    TcbNotSupportedError,
    TdxModuleMismatchError,
)

UP_TO_DATE = "UpToDate"
OUT_OF_DATE = "OutOfDate"
REVOKED = "Revoked"
CONFIG_NEEDED = ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded")
RELAUNCH = "TDRelaunchAdvised"
RELAUNCH_CONFIG = "TDRelaunchAdvisedConfigurationNeeded"
#: Every status the algorithm can conclude (TCB Info statuses, and TDX 1.5's relaunch advice).
ALL_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    RELAUNCH,
    RELAUNCH_CONFIG,
    "Revoked",
)


@dataclass(frozen=True)
class TcbVerdict:
    status: str
    advisories: tuple[str, ...]
    #: The platform level that matched, and the date Intel gives it.
    level: TcbLevel
    #: Each part's own status, for the checklist.
    platform_status: str
    module_status: str | None
    qe_status: str | None

    def describe(self) -> str:
        parts = [f"platform {self.platform_status} (TCB date {self.level.tcb_date.date()})"]
        if self.module_status is not None:
            parts.append(f"TDX module {self.module_status}")
        if self.qe_status is not None:
            parts.append(f"QE {self.qe_status}")
        return f"{self.status}: " + ", ".join(parts)


def _sgx_meets(tcb: PckTcb, level: TcbLevel) -> bool:
    return tcb.pcesvn >= level.pcesvn and all(
        have >= want for have, want in zip(tcb.components, level.sgx_components, strict=True)
    )


def _tdx_meets(tee_tcb_svn: bytes, level: TcbLevel) -> bool:
    assert level.tdx_components is not None
    start = 2 if tee_tcb_svn[1] > 0 else 0
    return all(tee_tcb_svn[i] >= level.tdx_components[i] for i in range(start, 16))


def match_levels(
    info: TcbInfo, tcb: PckTcb, tee_tcb_svn: bytes | None
) -> tuple[TcbLevel | None, TcbLevel | None]:
    """(SGX level, TDX level): the first levels the platform meets, in TCB Info's order."""
    sgx_level: TcbLevel | None = None
    for level in info.levels:
        if not _sgx_meets(tcb, level):
            continue
        if tee_tcb_svn is None:
            return level, None
        if sgx_level is None:
            sgx_level = level
        if _tdx_meets(tee_tcb_svn, level):
            return sgx_level, level
    return sgx_level, None


def _module_identity(info: TcbInfo, td: TdReport) -> TdxModuleIdentity:
    """The identity that must describe this TD's module: by version, or ``tdxModule``."""
    version = td.tee_tcb_svn[1]
    if version == 0:
        assert info.tdx_module is not None
        return info.tdx_module
    wanted = f"TDX_{version:02X}"
    for identity in info.tdx_module_identities:
        if identity.id.upper() == wanted:
            return identity
    raise TdxModuleMismatchError(
        f"TCB Info has no TDX module identity {wanted} for the TD's module version {version}"
    )


def check_tdx_module(info: TcbInfo, td: TdReport) -> TdxModuleIdentity:
    """MRSIGNERSEAM and SEAM attributes are those of the module TCB Info describes."""
    identity = _module_identity(info, td)
    if td.mrsignerseam != identity.mrsigner:
        raise TdxModuleMismatchError(
            f"MRSIGNERSEAM {td.mrsignerseam.hex()[:16]}... is not the TDX module signer "
            f"{identity.mrsigner.hex()[:16]}... of TCB Info"
        )
    if any(td.seam_attributes) or td.seam_attributes != identity.attributes:
        raise TdxModuleMismatchError(
            f"SEAM attributes {td.seam_attributes.hex()} are not zero and equal to TCB Info's "
            f"{identity.attributes.hex()}"
        )
    return identity


def _module_level(identity: TdxModuleIdentity, isvsvn: int) -> ModuleLevel:
    for level in identity.levels:
        if isvsvn >= level.isvsvn:
            return level
    raise TcbNotSupportedError(
        f"TDX module {identity.id} ISVSVN {isvsvn} is below every level of TCB Info"
    )


def _converge(platform: str, other: str | None) -> str:
    """An out-of-date or revoked QE or TDX module drags the platform status down."""
    if other == OUT_OF_DATE:
        if platform in (UP_TO_DATE, "SWHardeningNeeded"):
            return OUT_OF_DATE
        if platform in CONFIG_NEEDED:
            return "OutOfDateConfigurationNeeded"
    if other == REVOKED:
        return REVOKED
    return platform


def qe_status(identity: QeIdentity, report: EnclaveReport) -> ModuleLevel:
    """The QE report against QE Identity: its level, or a refusal naming the mismatch."""
    misc = bytes(a & m for a, m in zip(report.miscselect, identity.miscselect_mask, strict=True))
    if misc != identity.miscselect:
        raise QeIdentityMismatchError(
            f"QE MISCSELECT {report.miscselect.hex()} under mask "
            f"{identity.miscselect_mask.hex()} is not {identity.miscselect.hex()}"
        )
    attrs = bytes(a & m for a, m in zip(report.attributes, identity.attributes_mask, strict=True))
    if attrs != identity.attributes:
        raise QeIdentityMismatchError(
            f"QE attributes {report.attributes.hex()} under mask "
            f"{identity.attributes_mask.hex()} are not {identity.attributes.hex()}"
        )
    if report.mrsigner != identity.mrsigner:
        raise QeIdentityMismatchError(
            f"QE MRSIGNER {report.mrsigner.hex()} is not Intel's {identity.mrsigner.hex()} "
            f"({identity.id} identity)"
        )
    if report.isvprodid != identity.isvprodid:
        raise QeIdentityMismatchError(
            f"QE ISVPRODID {report.isvprodid} is not {identity.isvprodid} ({identity.id} identity)"
        )
    for level in identity.levels:
        if report.isvsvn >= level.isvsvn:
            return level
    raise TcbNotSupportedError(f"QE ISVSVN {report.isvsvn} is below every level of QE Identity")


def _relaunch(
    info: TcbInfo,
    td: TdReport,
    sgx_status: str,
    tdx_status: str,
    module_status: str | None,
    qe: str | None,
) -> str:
    """TDX 1.5: an out-of-date TD on an updated platform is advised to relaunch."""
    svn2 = td.tee_tcb_svn2
    if svn2 is None or qe in (OUT_OF_DATE, REVOKED):
        return tdx_status
    if sgx_status not in (UP_TO_DATE, "SWHardeningNeeded", *CONFIG_NEEDED):
        return tdx_status
    if (
        tdx_status not in (OUT_OF_DATE, "OutOfDateConfigurationNeeded")
        or module_status != OUT_OF_DATE
    ):
        return tdx_status
    latest = info.levels[0]
    assert latest.tdx_components is not None
    if svn2[1] == 0:
        newest_module = latest.tdx_components[0]
    else:
        wanted = f"TDX_{svn2[1]:02X}"
        found = [i for i in info.tdx_module_identities if i.id.upper() == wanted]
        if not found:
            raise TdxModuleMismatchError(
                f"TCB Info has no TDX module identity {wanted} (TEE_TCB_SVN_2)"
            )
        newest_module = found[0].levels[0].isvsvn
    if svn2[0] >= newest_module and svn2[2] >= latest.tdx_components[2]:
        config = sgx_status in CONFIG_NEEDED or tdx_status == "OutOfDateConfigurationNeeded"
        return RELAUNCH_CONFIG if config else RELAUNCH
    return tdx_status


def evaluate(
    info: TcbInfo,
    tcb: PckTcb,
    body: EnclaveReport | TdReport,
    qe_identity: QeIdentity | None,
    qe_report: EnclaveReport,
) -> TcbVerdict:
    """The TCB status of a genuine quote, and its advisories (sorted, without duplicates)."""
    td = body if isinstance(body, TdReport) else None
    qe_level = qe_status(qe_identity, qe_report) if qe_identity is not None else None
    qe = qe_level.status if qe_level is not None else None
    sgx_level, tdx_level = match_levels(info, tcb, td.tee_tcb_svn if td else None)
    if sgx_level is None:
        raise TcbNotSupportedError(
            f"no TCB level of TCB Info (FMSPC {info.fmspc.hex()}) matches the PCK's TCB "
            f"(components {list(tcb.components)}, PCESVN {tcb.pcesvn})"
        )
    advisories = list(sgx_level.advisories)
    module_status: str | None = None
    level = sgx_level
    if td is None:
        status = _converge(sgx_level.status, qe)
    else:
        if tdx_level is None:
            raise TcbNotSupportedError(
                f"no TCB level of TCB Info matches the TD's TEE_TCB_SVN {td.tee_tcb_svn.hex()}"
            )
        level = tdx_level
        advisories = list(tdx_level.advisories)
        identity = check_tdx_module(info, td)
        if td.tee_tcb_svn[1] > 0:
            module_level = _module_level(identity, td.tee_tcb_svn[0])
            module_status = module_level.status
            advisories += module_level.advisories
        status = _converge(tdx_level.status, module_status)
        if status != REVOKED:
            status = _relaunch(info, td, sgx_level.status, status, module_status, qe)
        status = _converge(status, qe) if status not in (RELAUNCH, RELAUNCH_CONFIG) else status
    if qe_level is not None:
        advisories += qe_level.advisories
    return TcbVerdict(
        status=status,
        advisories=tuple(sorted(set(advisories))),
        level=level,
        platform_status=level.status,
        module_status=module_status,
        qe_status=qe,
    )
