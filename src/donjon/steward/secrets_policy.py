"""The release policy of one secret: which attested Keeps may receive it.

A secret is bound to what it serves: main.wasm digests, package (OCI manifest)
digests and/or TEE measurements; at least one binding is required, so a secret
never goes to "any attested Keep" by omission. Platforms, the minimum TCB
status and development Keeps are checked too; ``development = false`` unless
the policy says otherwise, so a sim/nil Keep gets nothing under a production
policy. Each check has its own id, reported in refusals and audit rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from donjon.attestation.claims import PLATFORMS, AttestationResult

#: Better first; statuses of equal rank are equally good. Unknown statuses rank last.
TCB_RANK = {
    "UpToDate": 0,
    "MeetsMinimum": 0,
    "SWHardeningNeeded": 1,
    "ConfigurationNeeded": 2,
    "ConfigurationAndSWHardeningNeeded": 3,
    "OutOfDate": 4,
    "OutOfDateConfigurationNeeded": 5,
    "NotAppraised": 6,
}
MinTcb = Literal[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "NotAppraised",
    "any",
]


def _hex_digests(values: list[str], size: int | None, field_name: str) -> list[str]:
    out = []
    for value in values:
        text = value.strip().lower().removeprefix("sha256:")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"{field_name}: {value!r} is not hex") from None
        if size is not None and len(raw) != size:
            raise ValueError(f"{field_name}: {value!r} is not a {size}-byte digest")
        if not raw:
            raise ValueError(f"{field_name}: empty value")
        out.append(text)
    return sorted(set(out))


class ReleasePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_workloads: list[str] = Field(default_factory=list)  # SHA-256 of main.wasm
    allowed_packages: list[str] = Field(default_factory=list)  # SHA-256 of the OCI manifest
    measurements: list[str] = Field(default_factory=list)  # the TEE's launch measurement
    platforms: list[str] = Field(default_factory=list)  # empty: any platform
    min_tcb_status: MinTcb = "UpToDate"
    development: bool = False

    _workloads = field_validator("allowed_workloads")(
        lambda v: _hex_digests(v, 32, "allowed_workloads")
    )
    _packages = field_validator("allowed_packages")(
        lambda v: _hex_digests(v, 32, "allowed_packages")
    )
    _measurements = field_validator("measurements")(lambda v: _hex_digests(v, None, "measurements"))

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - PLATFORMS)
        if unknown:
            raise ValueError(f"unknown platform(s) {', '.join(unknown)}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _bound(self) -> ReleasePolicy:
        if not (self.allowed_workloads or self.allowed_packages or self.measurements):
            raise ValueError(
                "bind the secret to allowed_workloads, allowed_packages or measurements: "
                "otherwise any attested Keep would receive it"
            )
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


@dataclass(frozen=True)
class Check:
    id: str
    passed: bool
    reason: str


def evaluate(policy: ReleasePolicy, result: AttestationResult) -> list[Check]:
    """Every policy check against the certificate's attested claims (all run)."""
    checks: list[Check] = []
    workload = result.workload
    dev_ok = policy.development or not result.development
    checks.append(
        Check(
            "policy.development",
            dev_ok,
            "development Keep allowed by the secret's policy"
            if result.development
            else "not a development Keep",
        )
        if dev_ok
        else Check(
            "policy.development",
            False,
            f"the Keep is a development Keep (platform {result.platform}) and the secret's "
            "policy says development = false",
        )
    )
    if policy.platforms:
        ok = result.platform in policy.platforms
        checks.append(
            Check(
                "policy.platform",
                ok,
                f"platform {result.platform}"
                + (" allowed" if ok else f" not in {', '.join(policy.platforms)}"),
            )
        )
    if policy.min_tcb_status != "any":
        rank = TCB_RANK.get(result.tcb_status, 99)
        ok = rank <= TCB_RANK[policy.min_tcb_status]
        checks.append(
            Check(
                "policy.tcb_status",
                ok,
                f"TCB status {result.tcb_status or '(none)'}"
                + (" meets " if ok else " is below ")
                + f"min_tcb_status {policy.min_tcb_status}",
            )
        )
    if policy.allowed_workloads:
        got = workload.wasm_sha256.hex() if workload else None
        ok = got in policy.allowed_workloads
        checks.append(
            Check(
                "policy.workload",
                ok,
                f"workload {got} " + ("allowed" if ok else "is not in allowed_workloads")
                if got
                else "the certificate names no workload",
            )
        )
    if policy.allowed_packages:
        pkg = workload.package_sha256 if workload else None
        got = pkg.hex() if pkg else None
        ok = got in policy.allowed_packages
        checks.append(
            Check(
                "policy.package",
                ok,
                f"package sha256:{got} " + ("allowed" if ok else "is not in allowed_packages")
                if got
                else "the certificate names no package (not deployed from a registry)",
            )
        )
    if policy.measurements:
        got = result.measurement.hex()
        ok = got in policy.measurements
        checks.append(
            Check(
                "policy.measurement",
                ok,
                f"measurement {got[:32]}... " + ("allowed" if ok else "is not in measurements"),
            )
        )
    return checks
