"""Where Donjon keeps per-user state, shared by every subpackage.

The platforms keep the simulated TEE's vendor keys there, and the WASI host
its module-cache key: secrets that must not sit in a cache directory, which
other tools (and other users, on a shared cache) may be able to write.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_STATE_DIR = "DONJON_STATE_DIR"


def default_state_dir() -> Path:
    """``$DONJON_STATE_DIR``, else ``$XDG_DATA_HOME/donjon``, else ``~/.local/share/donjon``."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "donjon"


__all__ = ["ENV_STATE_DIR", "default_state_dir"]
