"""Intel's TCB algorithm on hand-made TCB Info: every expected status is read off Intel's
rules (the QVL's TcbLevelCheck, TdxModuleCheck and EnclaveReportVerifier), not computed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from donjon.attestation.dcap.collateral import (
    ModuleLevel,
    QeIdentity,
    TcbInfo,
    TcbLevel,
    TdxModuleIdentity,
)
from donjon.attestation.dcap.pck import PckTcb
from donjon.attestation.dcap.quote import EnclaveReport, TdReport
from donjon.attestation.dcap.tcb import evaluate, match_levels, qe_status
from donjon.attestation.errors import (
    QeIdentityMismatchError,
    TcbNotSupportedError,
    TdxModuleMismatchError,
)

DAY = datetime(2024, 1, 1, tzinfo=UTC)


def level(
    sgx: int, pce: int, status: str, tdx: list[int] | None = None, adv: tuple[str, ...] = ()
) -> TcbLevel:
    return TcbLevel(
        sgx_components=(sgx,) * 16,
        pcesvn=pce,
        tdx_components=None if tdx is None else tuple(tdx + [0] * (16 - len(tdx))),
        tcb_date=DAY,
        status=status,
        advisories=adv,
    )


def info(
    levels: list[TcbLevel], *, tdx: bool = False, modules: tuple[TdxModuleIdentity, ...] = ()
) -> TcbInfo:
    module = TdxModuleIdentity("", bytes(48), bytes(8), b"\xff" * 8, ())
    return TcbInfo(
        id="TDX" if tdx else "SGX",
        version=3,
        issue_date=DAY,
        next_update=DAY,
        fmspc=bytes(6),
        pceid=bytes(2),
        tcb_type=0,
        evaluation_number=17,
        levels=tuple(levels),
        tdx_module=module if tdx else None,
        tdx_module_identities=modules,
    )


def pck(value: int, pce: int) -> PckTcb:
    return PckTcb((value,) * 16, pce, bytes([value]) * 16)


def enclave(isvsvn: int = 4, mrsigner: bytes = b"\x11" * 32, prodid: int = 1) -> EnclaveReport:
    return EnclaveReport(
        cpusvn=bytes(16), miscselect=bytes(4), isv_ext_prod_id=bytes(16),
        attributes=bytes.fromhex("1500000000000000e700000000000000"), mrenclave=bytes(32),
        mrsigner=mrsigner, config_id=bytes(64), isvprodid=prodid, isvsvn=isvsvn, config_svn=0,
        isv_family_id=bytes(16), report_data=bytes(64),
    )  # fmt: skip


def identity(levels: list[tuple[int, str]], adv: tuple[str, ...] = ()) -> QeIdentity:
    return QeIdentity(
        id="QE", version=2, issue_date=DAY, next_update=DAY, evaluation_number=17,
        miscselect=bytes(4), miscselect_mask=b"\xff" * 4,
        attributes=bytes.fromhex("11000000000000000000000000000000"),
        attributes_mask=bytes.fromhex("FBFFFFFFFFFFFFFF0000000000000000"),
        mrsigner=b"\x11" * 32, isvprodid=1,
        levels=tuple(ModuleLevel(svn, DAY, status, adv) for svn, status in levels),
    )  # fmt: skip


def td(
    tee_tcb_svn: list[int], mrsignerseam: bytes = bytes(48), svn2: bytes | None = None
) -> TdReport:
    z48 = bytes(48)
    return TdReport(
        tee_tcb_svn=bytes(tee_tcb_svn + [0] * (16 - len(tee_tcb_svn))), mrseam=z48,
        mrsignerseam=mrsignerseam, seam_attributes=bytes(8), td_attributes=bytes(8),
        xfam=bytes(8), mrtd=z48, mrconfigid=z48, mrowner=z48, mrownerconfig=z48,
        rtmr0=z48, rtmr1=z48, rtmr2=z48, rtmr3=z48, report_data=bytes(64),
        tee_tcb_svn2=svn2, mrservicetd=None if svn2 is None else z48,
    )  # fmt: skip


SGX_LEVELS = [
    level(5, 10, "UpToDate"),
    level(4, 10, "SWHardeningNeeded", adv=("INTEL-SA-1",)),
    level(3, 9, "ConfigurationNeeded", adv=("INTEL-SA-2",)),
    level(2, 5, "OutOfDate", adv=("INTEL-SA-3",)),
]


@pytest.mark.parametrize(
    ("svn", "pce", "status"),
    [
        (5, 10, "UpToDate"),
        (9, 99, "UpToDate"),
        (5, 9, "ConfigurationNeeded"),  # PCESVN below the first two levels
        (4, 10, "SWHardeningNeeded"),
        (3, 9, "ConfigurationNeeded"),
        (2, 9, "OutOfDate"),
    ],
)
def test_sgx_first_level_met_component_by_component(svn: int, pce: int, status: str) -> None:
    verdict = evaluate(info(SGX_LEVELS), pck(svn, pce), enclave(), None, enclave())
    assert verdict.status == status


def test_one_low_component_skips_a_level() -> None:
    platform = PckTcb((5,) * 15 + (3,), 10, bytes(16))  # the last component is behind
    assert evaluate(info(SGX_LEVELS), platform, enclave(), None, enclave()).status == (
        "ConfigurationNeeded"
    )


def test_below_every_level_is_not_supported() -> None:
    with pytest.raises(TcbNotSupportedError, match="no TCB level"):
        evaluate(info(SGX_LEVELS), pck(1, 10), enclave(), None, enclave())


@pytest.mark.parametrize(
    ("platform", "qe", "status"),
    [
        ("UpToDate", "OutOfDate", "OutOfDate"),
        ("SWHardeningNeeded", "OutOfDate", "OutOfDate"),
        ("ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("OutOfDate", "OutOfDate", "OutOfDate"),
        ("UpToDate", "Revoked", "Revoked"),
        ("ConfigurationNeeded", "UpToDate", "ConfigurationNeeded"),
    ],
)
def test_qe_status_converges_as_qvl(platform: str, qe: str, status: str) -> None:
    levels = [level(5, 10, platform)]
    ident = identity([(6, "UpToDate"), (4, qe)], adv=("INTEL-SA-QE",))
    verdict = evaluate(info(levels), pck(5, 10), enclave(), ident, enclave(isvsvn=4))
    assert (verdict.status, verdict.qe_status) == (status, qe)
    assert "INTEL-SA-QE" in verdict.advisories


def test_qe_below_every_identity_level_is_not_supported() -> None:
    with pytest.raises(TcbNotSupportedError, match="QE ISVSVN 2"):
        qe_status(identity([(4, "UpToDate")]), enclave(isvsvn=2))


@pytest.mark.parametrize(
    ("report", "words"),
    [
        (enclave(mrsigner=b"\x22" * 32), "QE MRSIGNER"),
        (enclave(prodid=2), "QE ISVPRODID 2"),
        (
            replace(enclave(), attributes=bytes.fromhex("1700000000000000e700000000000000")),
            "attributes",
        ),
        (replace(enclave(), miscselect=b"\x01\x00\x00\x00"), "MISCSELECT"),
    ],
)
def test_qe_identity_mismatches(report: EnclaveReport, words: str) -> None:
    with pytest.raises(QeIdentityMismatchError, match=words):
        qe_status(identity([(1, "UpToDate")]), report)


def test_masked_qe_attribute_bits_are_ignored() -> None:
    # MODE64BIT (bit 2, 0x04) is masked out by FB: 0x15 and 0x11 both match 0x11.
    assert qe_status(identity([(1, "UpToDate")]), enclave()).status == "UpToDate"


TDX_LEVELS = [
    level(5, 10, "UpToDate", tdx=[5, 0, 3]),
    level(5, 10, "OutOfDate", tdx=[2, 0, 1], adv=("INTEL-SA-TDX",)),
]


def test_tdx_needs_the_tee_tcb_svn_too() -> None:
    i = info(TDX_LEVELS, tdx=True)
    assert evaluate(i, pck(5, 10), td([5, 0, 3]), None, enclave()).status == "UpToDate"
    assert evaluate(i, pck(5, 10), td([4, 0, 3]), None, enclave()).status == "OutOfDate"
    with pytest.raises(TcbNotSupportedError, match="TEE_TCB_SVN"):
        evaluate(i, pck(5, 10), td([1, 0, 0]), None, enclave())


def test_sgx_and_tdx_levels_are_chosen_separately() -> None:
    sgx, tdx = match_levels(info(TDX_LEVELS, tdx=True), pck(5, 10), td([4, 0, 3]).tee_tcb_svn)
    assert sgx is not None and sgx.status == "UpToDate"
    assert tdx is not None and tdx.status == "OutOfDate"


MODULES = (
    TdxModuleIdentity(
        "TDX_01",
        bytes(48),
        bytes(8),
        b"\xff" * 8,
        (ModuleLevel(4, DAY, "UpToDate", ()), ModuleLevel(2, DAY, "OutOfDate", ("INTEL-SA-MOD",))),
    ),
)


def test_module_version_skips_the_first_two_bytes_and_uses_its_identity() -> None:
    i = info(TDX_LEVELS, tdx=True, modules=MODULES)
    # Module version 1, SVN 4: bytes 0-1 not compared with the levels; TDX_01 says UpToDate.
    up = evaluate(i, pck(5, 10), td([4, 1, 3]), None, enclave())
    assert (up.status, up.module_status) == ("UpToDate", "UpToDate")
    # SVN 2: the module is OutOfDate, which makes the whole TDX status OutOfDate.
    down = evaluate(i, pck(5, 10), td([2, 1, 3]), None, enclave())
    assert (down.status, down.module_status) == ("OutOfDate", "OutOfDate")
    assert "INTEL-SA-MOD" in down.advisories
    with pytest.raises(TcbNotSupportedError, match="TDX module TDX_01 ISVSVN 1"):
        evaluate(i, pck(5, 10), td([1, 1, 3]), None, enclave())


def test_unknown_module_version_and_signer() -> None:
    i = info(TDX_LEVELS, tdx=True, modules=MODULES)
    with pytest.raises(TdxModuleMismatchError, match="TDX_03"):
        evaluate(i, pck(5, 10), td([4, 3, 3]), None, enclave())
    with pytest.raises(TdxModuleMismatchError, match="MRSIGNERSEAM"):
        evaluate(i, pck(5, 10), td([5, 0, 3], mrsignerseam=b"\x01" * 48), None, enclave())


def test_relaunch_is_advised_when_the_platform_was_updated_under_the_td() -> None:
    i = info(TDX_LEVELS, tdx=True, modules=MODULES)
    # Running module SVN 2 (out of date); TEE_TCB_SVN_2 says the platform now has SVN 4
    # and byte 2 meets the newest level: Intel advises relaunching the TD.
    verdict = evaluate(
        i, pck(5, 10), td([2, 1, 3], svn2=bytes([4, 1, 3] + [0] * 13)), None, enclave()
    )
    assert verdict.status == "TDRelaunchAdvised"
    not_yet = evaluate(
        i, pck(5, 10), td([2, 1, 3], svn2=bytes([2, 1, 3] + [0] * 13)), None, enclave()
    )
    assert not_yet.status == "OutOfDate"
