"""File modes of the Steward's secrets and records: nobody else on the host reads them.

The state directory holds the CA key, the audit database (which says which
workloads run where) and cached collateral: it is created 0700, the SQLite
database and its WAL 0600. Token files must not be readable by other users,
as the CA key must not.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from donjon.errors import UsageError

STATE_DIR_MODE = 0o700
DB_MODE = 0o600


def make_state_dir(path: Path) -> None:
    """Create the state directory 0700 (with missing parents); an existing one is kept."""
    try:
        path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the state directory {path}: {exc.strerror}") from None


def private_sqlite_file(path: Path) -> None:
    """Make the database file 0600 before SQLite opens it; SQLite gives its WAL the same mode.

    Safe to call again once this process has the database open: an existing file is
    only chmod-ed, never opened. Opening and closing a descriptor of it would drop every
    POSIX lock this process holds on it, SQLite's shared lock included, and the next
    process to close the database (``donjon steward certs list``) would then delete the
    WAL under the running Steward.
    """
    if not path.parent.exists():
        make_state_dir(path.parent)
    if not path.exists():
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, DB_MODE)
        except FileExistsError:
            pass  # another Steward on this directory made it meanwhile
        except OSError as exc:
            raise UsageError(f"cannot create the audit database {path}: {exc.strerror}") from None
        else:
            os.close(fd)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, DB_MODE)


def check_private(path: Path, what: str) -> None:
    """Refuse a secret file that other users can read (one line, with the fix)."""
    if os.name != "posix":
        return
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(
            f"the {what} {path} is readable by other users (mode {stat.S_IMODE(mode):04o})",
            hint=f"chmod 600 {path}",
        )
