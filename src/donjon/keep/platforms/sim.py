"""The ``sim`` platform: evidence from the simulated TEE, in its product's real layout.

Available only after ``donjon sim init``. The product decides the evidence:

* SEV-SNP (``donjon sim init``): the CSR extension is ``EVIDENCE_SIM``::

      SimEvidence ::= SEQUENCE {
          certs   SEQUENCE OF Certificate,   -- [vcek, ask, ark]
          report  OCTET STRING }             -- a 1184-byte SEV-SNP ATTESTATION_REPORT

* Intel TDX (``donjon sim init --tee tdx``): ``EVIDENCE_SIM_TDX``, Donjon's TDX
  evidence (``SEQUENCE { quote, [0] collateral }``) with a v4 TD quote and the
  collateral the simulated Intel publishes for it (TCB Info, QE Identity, CRLs).

The measurement (SNP MEASUREMENT, TDX MRTD) is the digest of this Donjon
installation (:func:`donjon.keep.sim.measure.runtime_measurement`), computed once
per Keep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.attestation.dcap.collateral import CollateralBundle
from donjon.attestation.evidence import encode_sim
from donjon.attestation.tdx.evidence import encode_tdx_evidence
from donjon.keep.platforms import default_state_dir
from donjon.keep.platforms.base import PlatformError, check_report_data
from donjon.keep.sim import sim_dir, tdx_state
from donjon.keep.sim import state as sim_state
from donjon.keep.sim.errors import SimError
from donjon.keep.sim.measure import runtime_measurement
from donjon.keep.sim.report import GuestIdentity, make_report

#: The simulated Intel re-signs its collateral when the Keep's copy is this old.
COLLATERAL_REFRESH = timedelta(days=1)


class SimPlatform:
    """One simulated guest: its identity (report_id, measurement) stays fixed for its lifetime."""

    name = "sim"

    def __init__(self, directory: Path, measurement: bytes | None = None) -> None:
        self.directory = directory
        self._measurement = measurement
        self._guest: GuestIdentity | None = None
        self._state: sim_state.SimState | None = None
        self._tdx: tdx_state.TdxSimState | None = None
        self._collateral: tuple[datetime, CollateralBundle] | None = None

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1()

    def available(self) -> bool:
        return sim_state.is_initialised(self.directory) or tdx_state.is_initialised(self.directory)

    @property
    def tee(self) -> str:
        """The simulated product: "tdx" or "snp"."""
        return "tdx" if tdx_state.is_initialised(self.directory) else "snp"

    def guest(self) -> GuestIdentity:
        if self._guest is None:
            self._guest = GuestIdentity(measurement=self._measurement or runtime_measurement())
        return self._guest

    def state(self) -> sim_state.SimState:
        if self._state is None:
            try:
                self._state = sim_state.load(self.directory)
            except SimError as exc:
                raise PlatformError(f"sim platform: {exc.message}", hint=exc.hint) from None
        return self._state

    def tdx(self) -> tdx_state.TdxSimState:
        if self._tdx is None:
            try:
                self._tdx = tdx_state.load(self.directory)
            except SimError as exc:
                raise PlatformError(f"sim platform: {exc.message}", hint=exc.hint) from None
        return self._tdx

    def report(self, report_data: bytes) -> bytes:
        """A signed SNP report over ``report_data``."""
        check_report_data(report_data)
        state = self.state()
        return make_report(state.config, state.vcek_key, self.guest(), report_data)

    def td_quote(self, report_data: bytes) -> bytes:
        """A signed TDX quote v4 over ``report_data``."""
        check_report_data(report_data)
        return self.tdx().quote(report_data, self.guest().measurement)

    def tdx_collateral(self, now: datetime | None = None) -> CollateralBundle:
        now = now or datetime.now(UTC)
        if self._collateral is None or now - self._collateral[0] > COLLATERAL_REFRESH:
            self._collateral = (now, self.tdx().collateral(now))
        return self._collateral[1]

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        if self.tee == "tdx":
            quote = self.td_quote(report_data)
            der = encode_tdx_evidence(quote, self.tdx_collateral())
            return x509.UnrecognizedExtension(oids.EVIDENCE_SIM_TDX, der)
        report = self.report(report_data)
        der = encode_sim(report, *self.state().chain)
        return x509.UnrecognizedExtension(oids.EVIDENCE_SIM, der)


def create(state_dir: Path | None = None) -> SimPlatform:
    return SimPlatform(sim_dir(state_dir or default_state_dir()))
