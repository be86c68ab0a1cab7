"""Helpers shared by the end-to-end tests: config snippets and the client side."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'


def listen(name: str, port: int, client_ca: str | None = None) -> str:
    extra = f'client_ca = "{client_ca}"\n' if client_ca else ""
    return (
        f'[[files]]\nname = "{name}"\nkind = "listen"\naddr = "127.0.0.1"\nport = {port}\n'
        f'prot = "tls"\n{extra}'
    )
