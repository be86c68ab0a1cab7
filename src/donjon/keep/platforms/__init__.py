"""Evidence providers, chosen by name or automatically.

Each platform lives in its own module, imported only when used, and exposes
``create(state_dir) -> Platform``. Auto-selection follows Enarx's order: sgx,
snp, tdx, then cca and nitro, then azure (a vTPM holding Azure's HCL report), then
sim and sim-cca (only once ``donjon sim init`` has made their state), then nil.
``--platform`` or ``DONJON_PLATFORM`` overrides it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import cast

from donjon.keep.platforms.base import (
    PLATFORM_NAMES,
    Platform,
    PlatformError,
    PlatformFactory,
    PlatformUnavailable,
    UnknownPlatform,
)
from donjon.statedir import ENV_STATE_DIR, default_state_dir

__all__ = [
    "ENV_STATE_DIR",
    "PLATFORM_NAMES",
    "REGISTRY",
    "Platform",
    "PlatformError",
    "PlatformUnavailable",
    "UnknownPlatform",
    "create",
    "default_state_dir",
    "select",
]

ENV_PLATFORM = "DONJON_PLATFORM"

#: name -> module exposing ``create(state_dir)``; modules are imported lazily.
REGISTRY: dict[str, str] = {
    "sgx": "donjon.keep.platforms.sgx",
    "snp": "donjon.keep.platforms.snp",
    "tdx": "donjon.keep.platforms.tdx",
    "cca": "donjon.keep.platforms.cca",
    "nitro": "donjon.keep.platforms.nitro",
    "azure": "donjon.keep.platforms.azure",
    "sim": "donjon.keep.platforms.sim",
    "sim-cca": "donjon.keep.platforms.sim_cca",
    "nil": "donjon.keep.platforms.nil",
}


def factory(name: str) -> PlatformFactory:
    """The ``create`` function of platform ``name``."""
    module_name = REGISTRY.get(name)
    if module_name is None:
        known = ", ".join(PLATFORM_NAMES)
        raise UnknownPlatform(f"unknown platform {name!r} (known: {known})")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise PlatformUnavailable(
            f"platform {name!r} is not available: this Donjon build has no {module_name}"
        ) from exc
    return cast(PlatformFactory, module.create)


def create(name: str, state_dir: Path | None = None) -> Platform:
    """Platform ``name``, whether or not the host can use it (see ``available()``)."""
    return factory(name)(state_dir)


def select(requested: str | None = None, state_dir: Path | None = None) -> Platform:
    """The platform to use: ``requested``, else ``$DONJON_PLATFORM``, else the first available.

    An explicit choice that is unavailable is an error, never a silent downgrade.
    """
    name = requested or os.environ.get(ENV_PLATFORM) or None
    if name:
        platform = create(name.strip().lower(), state_dir)
        if not platform.available():
            raise PlatformUnavailable(
                f"platform {platform.name!r} is not available on this host",
                hint="run `donjon platform info` to see what is missing",
            )
        return platform
    for candidate in PLATFORM_NAMES:
        try:
            platform = create(candidate, state_dir)
        except PlatformUnavailable:
            continue
        if platform.available():
            return platform
    raise PlatformUnavailable("no platform is available (not even nil)")  # pragma: no cover
