"""The ``sim`` platform: SNP-format evidence from the simulated TEE.

Available only after ``donjon sim init``. The CSR extension is ``EVIDENCE_SIM``::

    SimEvidence ::= SEQUENCE {
        certs   SEQUENCE OF Certificate,   -- [vcek, ask, ark]
        report  OCTET STRING }             -- a 1184-byte SEV-SNP ATTESTATION_REPORT

The measurement is the digest of this Donjon installation
(:func:`donjon.keep.sim.measure.runtime_measurement`), computed once per Keep.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.attestation.evidence import encode_sim
from donjon.keep.platforms import default_state_dir
from donjon.keep.platforms.base import PlatformError, check_report_data
from donjon.keep.sim import sim_dir
from donjon.keep.sim import state as sim_state
from donjon.keep.sim.errors import SimError
from donjon.keep.sim.measure import runtime_measurement
from donjon.keep.sim.report import GuestIdentity, make_report


class SimPlatform:
    """One simulated guest: the report_id and measurement stay fixed for its lifetime."""

    name = "sim"

    def __init__(self, directory: Path, measurement: bytes | None = None) -> None:
        self.directory = directory
        self._measurement = measurement
        self._guest: GuestIdentity | None = None
        self._state: sim_state.SimState | None = None

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1()

    def available(self) -> bool:
        return sim_state.is_initialised(self.directory)

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

    def report(self, report_data: bytes) -> bytes:
        """A signed SNP report over ``report_data``."""
        check_report_data(report_data)
        state = self.state()
        return make_report(state.config, state.vcek_key, self.guest(), report_data)

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        report = self.report(report_data)
        der = encode_sim(report, *self.state().chain)
        return x509.UnrecognizedExtension(oids.EVIDENCE_SIM, der)


def create(state_dir: Path | None = None) -> SimPlatform:
    return SimPlatform(sim_dir(state_dir or default_state_dir()))
