"""Donjon.toml / Enarx.toml parsing: Enarx's format unmodified, Donjon's additions, every error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from donjon.keep import package
from donjon.keep.config import (
    Config,
    ConnectFile,
    DirFile,
    ListenFile,
    NullFile,
    Prot,
    StdinFile,
    Trust,
    parse_size,
)
from donjon.keep.package import ConfigError, PackageError

STDIO = '[[files]]\nkind = "stdin"\n\n[[files]]\nkind = "stdout"\n\n[[files]]\nkind = "stderr"\n'

# The shape of the Enarx.toml files published with Enarx demos (a TLS or TCP listener
# after the three stdio entries), and the full example of Enarx's own documentation.
ENARX_LISTEN_TLS = (
    STDIO + '\n[[files]]\nkind = "listen"\nprot = "tls"\nport = 10030\nname = "TEST_TCP_LISTEN"\n'
)
ENARX_FULL = """
args = [
     "--argument1",
     "--argument2=foo"
]
steward = "https://attest.profian.com"

[env]
VAR1 = "var1"
VAR2 = "var2"

[[files]]
kind = "null"

[[files]]
kind = "stdout"

[[files]]
kind = "stderr"

[[files]]
name = "LISTEN"
kind = "listen"
prot = "tls" # or prot = "tcp"
port = 12345

[[files]]
name = "CONNECT"
kind = "connect"
prot = "tcp" # or prot = "tls"
host = "127.0.0.1"
port = 23456

[[files]]
kind = "connect"
host = "example.com"
"""


def parse(tmp_path: Path, text: str, name: str = "Enarx.toml") -> Config:
    path = tmp_path / name
    path.write_text(text)
    return package.parse(path.read_bytes(), path)


def error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "Donjon.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        package.parse(path.read_bytes(), path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}")
    return message.removeprefix(f"{path}")


def test_enarx_listener_sample(tmp_path: Path) -> None:
    config = parse(tmp_path, ENARX_LISTEN_TLS)
    listen = config.files[3]
    assert isinstance(listen, ListenFile)
    assert (listen.name, listen.addr, listen.port, listen.prot) == (
        "TEST_TCP_LISTEN",
        "::",
        10030,
        Prot.TLS,
    )
    assert config.fd_names() == ["stdin", "stdout", "stderr", "TEST_TCP_LISTEN"]


def test_enarx_documentation_example(tmp_path: Path) -> None:
    config = parse(tmp_path, ENARX_FULL)
    assert config.args == ["--argument1", "--argument2=foo"]
    assert config.env == {"VAR1": "var1", "VAR2": "var2"}
    assert config.steward == "https://attest.profian.com"
    files = config.files
    assert isinstance(files[0], NullFile)
    connect = files[4]
    assert isinstance(connect, ConnectFile)
    assert (connect.host, connect.effective_port(), connect.prot) == ("127.0.0.1", 23456, Prot.TCP)
    # Missing prot means tls; missing port means 443 for tls; name defaults to the host.
    default = files[5]
    assert (default.prot, default.effective_port(), default.effective_name()) == (
        Prot.TLS,
        443,
        "example.com",
    )
    assert default.effective_trust(has_steward=True) is Trust.STEWARD
    assert config.fd_names() == ["null", "stdout", "stderr", "LISTEN", "CONNECT", "example.com"]


def test_no_files_means_host_stdio(tmp_path: Path) -> None:
    config = parse(tmp_path, 'args = ["x"]\n')
    assert isinstance(config.files[0], StdinFile)
    assert config.fd_names() == ["stdin", "stdout", "stderr"]


def test_default_ports_depend_on_protocol(tmp_path: Path) -> None:
    config = parse(
        tmp_path,
        STDIO + '[[files]]\nkind="listen"\nname="a"\nprot="tcp"\n'
        '[[files]]\nkind="listen"\nname="b"\n'
        '[[files]]\nkind="connect"\nhost="h"\nprot="tcp"\n',
    )
    ports = [f.effective_port() for f in config.files[3:]]
    assert ports == [80, 443, 80]


def test_donjon_additions(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "peer.pem").write_text("x")
    config = parse(
        tmp_path,
        STDIO + '[[files]]\nkind="dir"\nname="/data"\npath="data"\nwritable=true\n'
        '[[files]]\nkind="connect"\nhost="peer"\nport=8443\npin="peer.pem"\nclient_cert=true\n'
        "connect_timeout=2.5\nretries=7\n"
        "[limits]\nmemory='64MiB'\ntimeout=30\n",
        "Donjon.toml",
    )
    files = config.files
    assert isinstance(files[3], DirFile) and files[3].writable
    assert files[4].effective_trust(has_steward=False) is Trust.PIN
    assert (files[4].connect_timeout, files[4].retries, files[4].client_cert) == (2.5, 7, True)
    assert config.limits.memory_bytes() == 64 * 1024 * 1024
    assert config.limits.timeout == 30


@pytest.mark.parametrize(
    ("text", "size"),
    [(65536, 65536), ("1GB", 10**9), ("64MiB", 67108864), ("2 KiB", 2048), ("10k", 10000)],
)
def test_sizes(text: int | str, size: int) -> None:
    assert parse_size(text) == size


LISTEN = '[[files]]\nkind="listen"\nname="L"\n'

ERRORS = [
    ("argz = []\n", ": unknown field 'argz'"),
    (STDIO + LISTEN + "portt = 7\n", ": [[files]] #4 \"L\" (fd 3): unknown field 'portt'"),
    (
        STDIO + LISTEN + "port = 70000\n",
        ': [[files]] #4 "L" (fd 3): port: Input should be less than or equal to 65535',
    ),
    (
        STDIO + LISTEN + "port = -1\n",
        ': [[files]] #4 "L" (fd 3): port: Input should be greater than or equal to 0',
    ),
    (
        STDIO + '[[files]]\nkind="connect"\nhost="h"\nport=0\n',
        ': [[files]] #4 "h" (fd 3): port: Input should be greater than or equal to 1',
    ),
    (
        STDIO + '[[files]]\nkind="listen"\n',
        ": [[files]] #4 (listen, fd 3): missing required field 'name'",
    ),
    (
        STDIO + '[[files]]\nkind="connect"\n',
        ": [[files]] #4 (connect, fd 3): missing required field 'host'",
    ),
    (
        '[[files]]\nkind="socket"\n',
        ": [[files]] #1 (socket, fd 0): unknown kind 'socket' (expected null, stdin, stdout, "
        "stderr, dir, listen, connect or secret)",
    ),
    ('[[files]]\nname="x"\n', ": [[files]] #1 \"x\" (fd 0): missing field 'kind'"),
    (
        '[[files]]\nkind="null"\nname="a:b"\n',
        ": [[files]] #1 \"a:b\" (fd 0): name: 'a:b' contains ':', which separates the names in "
        "FD_NAMES",
    ),
    (
        STDIO + LISTEN + '[[files]]\nkind="connect"\nhost="h"\nname="L"\n',
        ": [[files]] #5 \"L\" (fd 4): name 'L' is already used by [[files]] #4",
    ),
    (
        STDIO + LISTEN + '[[files]]\nkind="connect"\nhost="L"\n',
        ": [[files]] #5 \"L\" (fd 4): name 'L' is already used by [[files]] #4",
    ),
    (
        'steward = "http://steward.example"\n',
        ": steward: 'http://steward.example' must be an https:// URL",
    ),
    ('steward = "https://"\n', ": steward: 'https://' has no host"),
    (
        STDIO + LISTEN + '[[files]]\nkind="dir"\nname="/d"\npath="."\n',
        ': [[files]] #5 "/d" (fd 4): a dir must come before the first socket (fd 3): '
        "wasi-libc scans preopened dirs",
    ),
    (
        STDIO + '[[files]]\nkind="dir"\nname="/d"\npath="nope"\n',
        ': [[files]] #4 "/d" (fd 3): path: nope: directory does not exist',
    ),
    (
        '[[files]]\nkind="stdin"\n' + LISTEN,
        ': [[files]] #2 "L" (fd 1): fds 0-2 are stdin/stdout/stderr',
    ),
    (
        STDIO + '[[files]]\nkind="null"\n',
        ": [[files]] #4 (null, fd 3): a 'null' entry can only be one of the first three",
    ),
    (
        STDIO + '[[files]]\nkind="connect"\nhost="h"\nprot="tcp"\nclient_cert=true\n',
        ': [[files]] #4 "h" (fd 3): client_cert needs prot = "tls"',
    ),
    (
        STDIO + '[[files]]\nkind="connect"\nhost="h"\ntrust="bundle"\n',
        ': [[files]] #4 "h" (fd 3): trust = "bundle" needs ca_bundle',
    ),
    (
        STDIO + '[[files]]\nkind="connect"\nhost="h"\ntrust="steward"\n',
        ': [[files]] #4 "h" (fd 3): trust = "steward" needs a steward URL',
    ),
    (
        STDIO + '[[files]]\nkind="connect"\nhost="h"\ntrust="moon"\n',
        ': [[files]] #4 "h" (fd 3): trust: Input should be',
    ),
    (
        STDIO + '[[files]]\nkind="connect"\nhost="h"\npin="nope.pem"\n',
        ': [[files]] #4 "h" (fd 3): pin: nope.pem: file not found',
    ),
    (
        STDIO + LISTEN + 'client_ca="nope.pem"\n',
        ': [[files]] #4 "L" (fd 3): client_ca: nope.pem: file not found',
    ),
    (
        STDIO + LISTEN + 'client_ca="steward"\n',
        ': [[files]] #4 "L" (fd 3): client_ca = "steward" needs a steward URL',
    ),
    ('[env]\nFD_COUNT = "3"\n', ": env: FD_COUNT is set by the Keep from [[files]]; remove it"),
    ("[env]\nX = 1\n", ": env.X: Input should be a valid string"),
    ("[limits]\nmemory = '12XB'\n", ": limits.memory: '12XB' is not a size"),
    ("[limits]\ntimeout = 0\n", ": limits.timeout: Input should be greater than 0"),
    ("args = [\n'a'\nx =\n", ":3: invalid TOML: "),
    ('args = "a"\n', ": args: Input should be a valid list"),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_config_errors_name_file_entry_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text).startswith(expected)


def test_several_problems_are_counted(tmp_path: Path) -> None:
    message = error(tmp_path, "a = 1\nb = 2\n")
    assert message == ": unknown field 'a' (and 1 more problems)"


def test_non_utf8_config(tmp_path: Path) -> None:
    path = tmp_path / "Enarx.toml"
    path.write_bytes(b"args = ['\xff']\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        package.parse(path.read_bytes(), path)


# Packages --------------------------------------------------------------------------------------


def test_package_directory_hashes_config_bytes(tmp_path: Path) -> None:
    (tmp_path / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "Enarx.toml").write_text(ENARX_LISTEN_TLS)
    pkg = package.load(tmp_path)
    assert pkg.name == tmp_path.name
    assert pkg.config_path == tmp_path / "Enarx.toml"
    assert pkg.wasm_sha256() == hashlib.sha256(b"\0asm\1\0\0\0").digest()
    assert pkg.config_sha256() == hashlib.sha256(ENARX_LISTEN_TLS.encode()).digest()


def test_package_name_of_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg_dir = tmp_path / "my-app"
    pkg_dir.mkdir()
    (pkg_dir / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
    monkeypatch.chdir(pkg_dir)
    assert package.load(Path(".")).name == "my-app"


def test_bare_wasm_has_no_config_digest(tmp_path: Path) -> None:
    wasm = tmp_path / "hello.wasm"
    wasm.write_bytes(b"\0asm\1\0\0\0")
    pkg = package.load(wasm)
    assert (pkg.name, pkg.config_path, pkg.config_sha256()) == ("hello", None, b"")


def test_config_override(tmp_path: Path) -> None:
    (tmp_path / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "Enarx.toml").write_text("bogus = 1\n")
    other = tmp_path / "other.toml"
    other.write_text('args = ["x"]\n')
    assert package.load(tmp_path, other).config.args == ["x"]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no main.wasm in this directory"),
        (
            {"main.wasm": "", "Enarx.toml": "", "Donjon.toml": ""},
            "has both Donjon.toml and Enarx.toml",
        ),
    ],
)
def test_package_errors(tmp_path: Path, layout: dict[str, str], message: str) -> None:
    for name, text in layout.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(PackageError, match=message):
        package.load(tmp_path)


def test_missing_path_and_wrong_suffix(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="no such file or directory"):
        package.load(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(PackageError, match=r"expected a \.wasm file"):
        package.load(tmp_path / "x.txt")


EXAMPLES = sorted(
    p
    for p in (Path(__file__).resolve().parents[2] / "examples").glob("*/*.toml")
    if p.name in package.CONFIG_NAMES
)


@pytest.mark.skipif(not EXAMPLES, reason="no examples/*/Enarx.toml or Donjon.toml in this tree")
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_config_is_valid(path: Path) -> None:
    """Schema and layout only: files a config names (pins) are made when the example runs."""
    import tomllib

    from donjon.keep.config import Config, check_files

    config = Config.model_validate(tomllib.loads(path.read_text()))
    assert check_files(config) == []
