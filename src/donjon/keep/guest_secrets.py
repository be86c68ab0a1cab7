"""What a Keep fetches after attesting: its package key and its secrets, for the guest.

Runs once the Steward has issued the Keep's certificate and before the guest
starts: every secret the config names (``[[files]] kind = "secret"``, ``[env]
X = { secret = "..." }``) and, for a confidential package, the key of its
sealed main.wasm and of its config's sealed part (args, env values), which is
merged into the config here. A missing or refused secret stops the Keep with one line.
Values go to the WASI host only as in-memory read-only files and environment
values (``donjon.wasi.api.MemoryDir``/``MemoryFile``); nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from donjon.keep import config_split
from donjon.keep.config import Config
from donjon.keep.config_secret import SecretFile, SecretRef
from donjon.keep.identity import Identity
from donjon.keep.package import Package, resolve
from donjon.keep.sealed_config import SealedConfig
from donjon.keep.secret_client import FetchedSecret, SecretClient, SecretFetchError
from donjon.wasi.api import MemoryDir, MemoryFile

Report = Callable[[str], None]


@dataclass(frozen=True)
class GuestSecrets:
    """What the guest gets: the opened module and config (if sealed), secret env values and
    secret files."""

    module: bytes | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    values: dict[str, bytes] = field(default_factory=dict, repr=False)
    #: The whole config, with its sealed part merged in (None: the package has no sealed part).
    config: Config | None = field(default=None, repr=False)

    def memory_dir(self, config: Config, entry: SecretFile) -> MemoryDir:
        """The in-memory directory of a path-named secret: every secret under its parent."""
        directory = entry.directory()
        files = {
            e.file_name(): self.values[e.secret]
            for e in config.files
            if isinstance(e, SecretFile) and e.is_path and e.directory() == directory
        }
        return MemoryDir(directory, files)

    def memory_file(self, entry: SecretFile) -> MemoryFile:
        return MemoryFile(self.values[entry.secret])


def needed(package: Package) -> list[str]:
    names = package.config.secret_names()
    if package.sealed is not None:
        names = [package.sealed.key_secret, *[n for n in names if n != package.sealed.key_secret]]
    return names


def release(package: Package, identity: Identity, report: Report) -> GuestSecrets:
    """Fetch every secret the package needs; open a sealed main.wasm. None needed: nothing."""
    names = needed(package)
    if not names:
        return GuestSecrets()
    config = package.config
    if config.steward is None:
        raise SecretFetchError(
            f"{package.origin or package.name}: needs secrets ({', '.join(names)}) and its "
            "config names no steward to release them"
        )
    ca_bundle = resolve(package.base_dir, config.steward_ca) if config.steward_ca else None
    fetched: dict[str, FetchedSecret] = {}
    with SecretClient(config.steward, ca_bundle, identity) as client:
        for name in names:
            fetched[name] = client.fetch(name)
            report(f"secret {name} version {fetched[name].version} released by the steward")
    module = None
    opened = None
    if package.sealed is not None:
        package_key = fetched[package.sealed.key_secret].value
        module = package.sealed.open(package_key)
        digest = package.sealed.plain_sha256.hex()[:16]
        report(f"opened the sealed main.wasm in memory (sha256 {digest}..., as attested)")
        if package.sealed.config is not None:
            opened = _open_config(package, package.sealed.config, package_key)
            report("opened the sealed part of the config in memory (args and env values)")
    env: dict[str, str] = {}
    for key, value in config.env.items():
        if isinstance(value, SecretRef):
            env[key] = _env_text(key, fetched[value.secret])
    return GuestSecrets(module, env, {name: s.value for name, s in fetched.items()}, opened)


def _open_config(package: Package, part: SealedConfig, key: bytes) -> Config:
    """The package's config with its sealed part merged in, checked as one config."""
    where = package.config_path or package.base_dir / "Donjon.toml"
    return config_split.merge(package.config_bytes, part.open(key), where)


def _env_text(key: str, secret: FetchedSecret) -> str:
    try:
        text = secret.value.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFetchError(
            f"env.{key}: secret {secret.name!r} is not UTF-8 text, so it cannot be an "
            "environment value (expose it as a [[files]] secret instead)"
        ) from None
    if "\0" in text:
        raise SecretFetchError(f"env.{key}: secret {secret.name!r} contains a NUL byte")
    return text
