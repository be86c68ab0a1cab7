"""What TEEs does this host offer? A tree of checks for ``donjon platform info``.

Probing only looks: it reads ``/proc/cpuinfo`` and checks that device nodes and
configfs directories exist. It never opens a TEE device or asks for a report.
The root directory is a parameter, so tests run against a fake ``/sys``,
``/dev`` and ``/proc``.
"""

from __future__ import annotations

import platform as host_platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from donjon.keep.platforms.base import PLATFORM_NAMES

TSM_REPORT = "sys/kernel/config/tsm/report"
SEV_GUEST = "dev/sev-guest"
TDX_GUEST = "dev/tdx_guest"
GRAMINE_ATTESTATION = "dev/attestation"
SGX_ENCLAVE = "dev/sgx_enclave"
KVM = "dev/kvm"
CPUINFO = "proc/cpuinfo"
NSM = "dev/nsm"

#: What each platform protects, in one line, for people deciding where to run.
SUMMARY = {
    "sgx": "Intel SGX enclave (under Gramine): enclave memory encrypted, DCAP quote",
    "snp": "AMD SEV-SNP confidential VM: VM memory encrypted and integrity-protected, SNP report",
    "tdx": "Intel TDX trust domain: VM memory encrypted and integrity-protected, TD quote",
    "cca": "Arm CCA Realm: VM memory isolated by the RMM, CCA attestation token",
    "nitro": "AWS Nitro Enclave: isolated by AWS's hypervisor (not the CPU), NSM document",
    "azure": "Azure confidential VM (SEV-SNP or TDX under Azure's paravisor): HCL report "
    "and vTPM quote",
    "sim": "simulated TEE for development: SNP or TDX evidence, NO protection at all",
    "sim-cca": "simulated Arm CCA for development: CCA-format tokens, NO protection at all",
    "nil": "no TEE: NO protection, no evidence; certificates say so",
}


#: The simulated platforms, and the command that makes each one's state.
SIMULATED = {"sim": "donjon sim init", "sim-cca": "donjon sim init --tee cca"}


@dataclass(frozen=True)
class Check:
    ok: bool
    text: str
    hint: str | None = None


@dataclass(frozen=True)
class PlatformReport:
    name: str
    usable: bool
    summary: str
    checks: list[Check] = field(default_factory=list)


Sysctl = Callable[[str], str | None]


def _run_sysctl(name: str) -> str | None:
    try:
        proc = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def cpu_flags(root: Path, system: str, sysctl: Sysctl) -> set[str] | None:
    """CPU feature flags, lower-case; ``None`` when this host does not say."""
    if system == "Linux":
        try:
            text = (root / CPUINFO).read_text(errors="replace")
        except OSError:
            return None
        flags: set[str] = set()
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in ("flags", "features"):
                flags.update(value.lower().split())
        return flags
    if system == "Darwin":
        parts = [sysctl(n) for n in ("machdep.cpu.features", "machdep.cpu.leaf7_features")]
        words = " ".join(p for p in parts if p)
        return set(words.lower().split()) if words else None
    return None


@dataclass(frozen=True)
class _CvmGuest:
    """What a confidential-VM guest (SNP, TDX) needs: a report path and the CPU flag."""

    device: str
    device_what: str
    device_hint: str
    cpu_flag: str
    flag_what: str
    flag_hint: str


_CVM_GUESTS = {
    "snp": _CvmGuest(
        SEV_GUEST,
        "SEV guest device",
        "load sev-guest (modprobe sev-guest)",
        "sev_snp",
        "SEV-SNP active",
        "boot this VM as an SEV-SNP guest",
    ),
    "tdx": _CvmGuest(
        TDX_GUEST,
        "TDX guest device",
        "load tdx-guest (modprobe tdx_guest)",
        "tdx_guest",
        "TDX guest",
        "boot this VM as a TDX trust domain",
    ),
}


def _exists(root: Path, rel: str, what: str, hint: str) -> Check:
    present = (root / rel).exists()
    return Check(present, f"{what}: /{rel}", None if present else hint)


def _flag(flags: set[str] | None, name: str, what: str, hint: str) -> Check:
    if flags is None:
        return Check(False, f"CPU flag {name} ({what}): CPU flags unknown on this host", hint)
    present = name in flags
    return Check(present, f"CPU flag {name} ({what})", None if present else hint)


def _azure(root: Path, state_dir: Path | None) -> list[Check]:
    """vTPM, TPM library, HCL report in NV, its hardware: each a check, stopping at the first ✗."""
    from donjon.keep.platforms import azure, tpm

    spec = tpm.tcti_spec()
    device = tpm.device_of(spec)
    if device is not None:
        rel = str(device).lstrip("/")
        present = (root / rel).exists()
        hint = "an Azure confidential VM has a vTPM; elsewhere set DONJON_TPM_TCTI"
        checks = [Check(present, f"vTPM: /{rel}", None if present else hint)]
        if not present:
            return checks
    else:
        checks = [Check(True, f"vTPM: TCTI {spec} (from ${tpm.ENV_TCTI})")]
    found = azure.AzurePlatform(cache_dir=state_dir).detect()
    if found.library is not None:
        return [*checks, Check(False, "TPM library tpm2-pytss", tpm.INSTALL_HINT)]
    checks.append(Check(True, "TPM library tpm2-pytss"))
    if found.tpm is not None:
        hint = "the Keep needs read access to the TPM (root, or the tss group)"
        return [*checks, Check(False, f"TPM answers: {found.tpm}", hint)]
    checks.append(Check(True, "TPM answers"))
    nv = "HCL report in vTPM NV index 0x01400001"
    if not found.nv:
        return [*checks, Check(False, nv, "not an Azure confidential VM (no paravisor report)")]
    checks.append(Check(True, nv))
    if found.kind is None:
        return [*checks, Check(False, f"HCL report: {found.report_error}")]
    what = "SEV-SNP report" if found.kind.name == "SNP" else "TDX TDREPORT"
    return [*checks, Check(True, f"HCL report holds a {what} ({found.kind.platform})")]


def _provider(name: str, state_dir: Path | None) -> tuple[Check, bool]:
    from donjon.keep import platforms

    module = platforms.REGISTRY[name]
    try:
        provider = platforms.create(name, state_dir)
    except platforms.PlatformError as exc:
        return Check(False, f"provider {module}", str(exc)), False
    try:
        ready = provider.available()
    except Exception as exc:  # a provider's probe must not break the report
        return Check(False, f"provider {module}: {exc}"), False
    return Check(True, f"provider {module}"), ready


def probe(
    root: Path = Path("/"),
    *,
    system: str | None = None,
    state_dir: Path | None = None,
    sysctl: Sysctl = _run_sysctl,
    with_providers: bool = True,
    machine: str | None = None,
) -> list[PlatformReport]:
    """One report per platform, in auto-selection order."""
    system = system or host_platform.system()
    machine = (machine or host_platform.machine()).lower()
    flags = cpu_flags(root, system, sysctl)
    linux = system == "Linux"
    not_linux = Check(False, f"TEE guest interfaces need Linux (this is {system})")
    tsm_hint = (
        "Linux 6.7+ inside a confidential VM, with configfs mounted: "
        "mount -t configfs none /sys/kernel/config"
    )
    reports: list[PlatformReport] = []
    for name in PLATFORM_NAMES:
        checks: list[Check] = []
        usable = False
        if name in _CVM_GUESTS:
            if linux:
                guest = _CVM_GUESTS[name]
                tsm = _exists(root, TSM_REPORT, "configfs-tsm", tsm_hint)
                dev = _exists(root, guest.device, guest.device_what, guest.device_hint)
                active = _flag(flags, guest.cpu_flag, guest.flag_what, guest.flag_hint)
                checks += [tsm, dev, active]
                usable = (tsm.ok or dev.ok) and active.ok
            else:
                checks.append(not_linux)
        elif name == "sgx":
            checks.append(
                _flag(
                    flags, "sgx", "SGX in this CPU", "needs an Intel CPU with SGX enabled in BIOS"
                )
            )
            if linux:
                gramine = _exists(
                    root,
                    GRAMINE_ATTESTATION,
                    "Gramine attestation",
                    "run donjon inside Gramine (gramine-sgx) with remote attestation enabled",
                )
                checks.append(gramine)
                checks.append(
                    _exists(root, SGX_ENCLAVE, "SGX driver", "Linux 5.11+ with SGX enabled")
                )
                usable = gramine.ok
            else:
                checks.append(not_linux)
        elif name == "cca":
            if linux:
                arm = machine in ("aarch64", "arm64")
                checks.append(
                    Check(arm, f"arm64 CPU (this is {machine})", None if arm else "needs Arm")
                )
                tsm = _exists(root, TSM_REPORT, "configfs-tsm", tsm_hint + " (a Realm guest)")
                checks.append(tsm)
                usable = arm and tsm.ok
            else:
                checks.append(not_linux)
        elif name == "nitro":
            if linux:
                nsm = _exists(
                    root, NSM, "Nitro Security Module", "run donjon inside an AWS Nitro Enclave"
                )
                checks.append(nsm)
                usable = nsm.ok
            else:
                checks.append(not_linux)
        elif name == "azure":
            azure_checks = _azure(root, state_dir) if linux else [not_linux]
            checks += azure_checks
            usable = all(c.ok for c in azure_checks)
        elif name in SIMULATED:
            checks.append(Check(True, "software only: runs anywhere, protects nothing"))
        else:
            checks.append(Check(True, "always available"))
            if linux:
                kvm = (root / KVM).exists()
                checks.append(
                    Check(
                        kvm,
                        "/dev/kvm: hardware virtualisation (isolation only, no attestation)",
                        None if kvm else "not needed by nil",
                    )
                )
        if with_providers:
            provider, ready = _provider(name, state_dir)
            checks.append(provider)
            if name in SIMULATED:
                usable = ready
                hint = None if ready else f"run `{SIMULATED[name]}`"
                checks.append(Check(ready, "simulated vendor keys initialised", hint))
            elif name == "nil":
                usable = ready
            else:
                usable = usable and provider.ok
        elif name == "nil":
            usable = True
        reports.append(PlatformReport(name, usable, SUMMARY[name], checks))
    return reports
