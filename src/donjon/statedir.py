"""Where Donjon keeps per-user state, shared by every subpackage.

The platforms keep the simulated TEE's vendor keys there, and the WASI host
its module-cache key: secrets that must not sit in a cache directory, which
other tools (and other users, on a shared cache) may be able to write.
"""

from __future__ import annotations

import os

#: ``pathlib`` costs milliseconds to import; mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

ENV_STATE_DIR = "DONJON_STATE_DIR"


def default_state_dir() -> Path:
    """``$DONJON_STATE_DIR``, else ``$XDG_DATA_HOME/donjon``, else ``~/.local/share/donjon``."""
    from pathlib import Path

    return Path(default_state_path())


def default_state_path() -> str:
    """:func:`default_state_dir` as a string (``donjon run-wasm`` starts without pathlib)."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return env
    xdg = os.environ.get("XDG_DATA_HOME")
    base = xdg if xdg else os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "donjon")


__all__ = ["ENV_STATE_DIR", "default_state_dir", "default_state_path"]
