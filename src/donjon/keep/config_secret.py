"""Secrets in a workload config: ``kind = "secret"`` files and ``{ secret = "name" }`` env values.

Values are never in the config: it names Steward secrets, which the Keep fetches
after it attested (``keep/secrets.py``) and hands to the guest in memory::

    [[files]]
    kind = "secret"
    secret = "db"                  # the secret's name in the Steward
    name = "/run/secrets/db"       # a path the guest opens (read-only, in memory)

    [[files]]
    kind = "secret"
    secret = "api-key"
    name = "API_KEY"               # no leading "/": the fd at this position, read-only

    [env]
    DB_PASSWORD = { secret = "db" }

A path-named secret is a preopened in-memory directory (its parent path, holding
every secret under it), so like ``dir`` it must come before the first socket.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_secret_name(value: str) -> str:
    if not SECRET_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a secret name (letters, digits, . _ - ; at most 128 characters)"
        )
    return value


class SecretRef(BaseModel):
    """``{ secret = "name" }``: an environment value the Keep fetches from its Steward."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str

    _secret = field_validator("secret")(check_secret_name)


class SecretFile(BaseModel):
    """Donjon: a secret from the Steward, shown to the guest as a read-only in-memory file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["secret"]
    secret: str
    #: ``/dir/file``: a path the guest opens; anything else: the FD_NAMES name of this fd.
    name: str

    _secret = field_validator("secret")(check_secret_name)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        if ":" in value:
            raise ValueError(f"{value!r} contains ':', which separates the names in FD_NAMES")
        if value.startswith("/"):
            parts = value.split("/")[1:]
            if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
                raise ValueError(
                    f"{value!r}: a secret's path is /dir/file (no empty, . or .. parts), "
                    "e.g. /run/secrets/db"
                )
        return value

    @property
    def is_path(self) -> bool:
        return self.name.startswith("/")

    def directory(self) -> str:
        """The in-memory directory a path-named secret lives in (``/run/secrets``)."""
        return self.name.rsplit("/", 1)[0]

    def file_name(self) -> str:
        return self.name.rsplit("/", 1)[1]

    def effective_name(self) -> str:
        return self.name


def env_value(value: object) -> object:
    """Before validation: a string or ``{ secret = "name" }``; anything else, one message."""
    if isinstance(value, str | SecretRef):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"secret"})
        if unknown or not isinstance(value.get("secret"), str):
            extra = f" (unknown key {unknown[0]!r})" if unknown else ""
            raise ValueError(f'a secret reference is {{ secret = "name" }}{extra}')
        return SecretRef.model_construct(secret=check_secret_name(value["secret"]))
    raise ValueError('Input should be a valid string, or { secret = "name" }')
