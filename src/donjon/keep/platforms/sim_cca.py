"""The ``sim-cca`` platform: Arm CCA tokens from the simulated CCA platform.

Available only after ``donjon sim init --tee cca``. It sends the same CSR
extension as a real Realm (``oids.EVIDENCE_CCA``), so the Steward runs the real
CCA pipeline on it; only the CPAK, trusted through ``[sim] cca_cpak``, makes the
result a development one (``platform = sim``, product ``cca``).

Each platform object is one simulated Realm: its RAK and its measurement stay
fixed for its lifetime, as a real Realm's do until it is destroyed.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.attestation.cca.evidence import encode_cca_evidence
from donjon.keep.platforms import default_state_dir
from donjon.keep.platforms.base import PlatformError, check_report_data
from donjon.keep.sim import cca as sim_cca
from donjon.keep.sim.errors import SimError
from donjon.keep.sim.measure import runtime_measurement


class SimCcaPlatform:
    name = "sim-cca"

    def __init__(self, directory: Path, measurement: bytes | None = None) -> None:
        self.directory = directory
        self._measurement = measurement
        self._rak: ec.EllipticCurvePrivateKey | None = None
        self._state: sim_cca.SimCcaState | None = None

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1()

    def available(self) -> bool:
        return sim_cca.is_initialised(self.directory)

    def state(self) -> sim_cca.SimCcaState:
        if self._state is None:
            try:
                self._state = sim_cca.load(self.directory)
            except SimError as exc:
                raise PlatformError(f"sim-cca platform: {exc.message}", hint=exc.hint) from None
        return self._state

    def rim(self) -> bytes:
        if self._measurement is None:
            self._measurement = runtime_measurement()
        return sim_cca.realm_measurement(self._measurement)

    def token(self, report_data: bytes) -> bytes:
        check_report_data(report_data)
        if self._rak is None:
            self._rak = ec.generate_private_key(ec.SECP384R1())
        return sim_cca.make_token(self.state(), self._rak, self.rim(), report_data)

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        return x509.UnrecognizedExtension(
            oids.EVIDENCE_CCA, encode_cca_evidence(self.token(report_data))
        )


def create(state_dir: Path | None = None) -> SimCcaPlatform:
    return SimCcaPlatform(sim_cca.cca_dir(state_dir or default_state_dir()))
