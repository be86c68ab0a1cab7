"""Types shared by the deploy tests' fixtures and tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SecretSteward:
    url: str
    https_ca: Path  # the Steward's HTTPS certificate (self-signed), for clients
    admin_token_file: Path
    state: Path  # its state directory (CA, audit.db with the secrets tables)
    log: Path

    def admin_args(self) -> list[str]:
        return [
            "--url", self.url, "--ca", str(self.https_ca),
            "--admin-token-file", str(self.admin_token_file),
        ]  # fmt: skip
