"""Prometheus metrics of one Steward app, in its own registry (no global state).

Under ``--workers N`` the supervisor sets ``$PROMETHEUS_MULTIPROC_DIR`` before
it spawns the workers; prometheus_client then keeps every value in a file
there, and a scrape of any worker renders the sum over all of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class StewardMetrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "donjon_steward_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "donjon_steward_request_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.verdicts = Counter(
            "donjon_steward_verdicts",
            "Attestation verdicts, by platform, outcome and failed check (reason).",
            ["platform", "outcome", "reason"],
            registry=r,
        )
        self.verify_seconds = Histogram(
            "donjon_steward_verify_seconds",
            "Time spent verifying evidence (attestation engine only).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audit_commit_seconds = Histogram(
            "donjon_steward_audit_commit_seconds",
            "Time to commit an issuance's audit rows, waiting for the database's write "
            "lock included (SQLite has one writer at a time, across every worker).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.issued = Counter(
            "donjon_steward_certificates_issued", "Certificates issued and recorded.", registry=r
        )
        self.revoked = Counter(
            "donjon_steward_certificates_revoked", "Revocations accepted by the API.", registry=r
        )
        self.challenges = Counter(
            "donjon_steward_challenges", "Challenge nonces handed out.", registry=r
        )
        self.accept_any_workload = Gauge(
            "donjon_steward_policy_accept_any_workload",
            "1 for each TEE section whose policy opts into accepting any workload.",
            ["platform"],
            registry=r,
        )
        self.in_flight = Gauge(
            "donjon_steward_attestations_in_flight",
            "Attestations being verified now.",
            registry=r,
            multiprocess_mode="livesum",
        )

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(merged))
        return bytes(generate_latest(self.registry))
