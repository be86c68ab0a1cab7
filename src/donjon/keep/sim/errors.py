"""Errors of the simulated TEE, each a one-line message naming what and where."""

from __future__ import annotations

from donjon.errors import DonjonError


class SimError(DonjonError):
    """The simulated TEE cannot be used."""


class SimNotInitialised(SimError):
    """No simulator state: ``donjon sim init`` was never run for this directory."""


class SimStateCorrupt(SimError):
    """The state directory exists but a file in it is unreadable or inconsistent."""


class SimAlreadyInitialised(SimError):
    """``donjon sim init`` would overwrite an existing hierarchy."""
