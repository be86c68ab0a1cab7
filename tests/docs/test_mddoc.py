"""The doc-test format itself: parsing markers and commands, and matching output."""

from __future__ import annotations

import pytest

from support import mddoc

DOC = """# A doc

<!-- doc-test: not run: needs an SEV-SNP host -->
```console
$ sudo donjon run app
```

<!-- doc-test: file app/Donjon.toml -->
```toml
args = ["0"]
```

<!-- doc-test: setup: cp ../x.bin report.bin -->
```console
$ donjon attest verify report.bin \\
      --at 2023-02-01
✔ snp.signature …
...
ACCEPTED
$ donjon steward serve --dev &
$ donjon config check broken
donjon: error: broken/Donjon.toml: unknown field 'portt'
```
"""


def test_blocks_markers_and_commands() -> None:
    skipped, toml, console = mddoc.parse(DOC, "doc")
    assert skipped.not_run == "needs an SEV-SNP host"
    assert (toml.info, toml.file, toml.text) == ("toml", "app/Donjon.toml", 'args = ["0"]\n')
    assert console.setup == ["cp ../x.bin report.bin"]
    verify, serve, check = console.commands
    assert verify.text == "donjon attest verify report.bin \\\n      --at 2023-02-01"
    assert verify.output == ["✔ snp.signature …", "...", "ACCEPTED"]
    assert verify.line == 15 and not verify.must_fail and not verify.background
    assert serve.background and serve.output == []
    assert check.must_fail


def test_a_marker_must_be_understood_and_a_skip_must_say_why() -> None:
    with pytest.raises(mddoc.DocFormatError, match="unknown doc-test marker"):
        mddoc.parse("<!-- doc-test: skipp -->\n```console\n$ x\n```\n")
    with pytest.raises(mddoc.DocFormatError, match="needs a reason"):
        mddoc.parse("<!-- doc-test: not run: -->\n```console\n$ x\n```\n")


def test_a_marker_belongs_only_to_the_block_right_below() -> None:
    (block,) = mddoc.parse("<!-- doc-test: not run: hardware -->\ntext\n```console\n$ x\n```\n")
    assert block.not_run is None


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        (["ok"], ["ok"]),
        (["a  b"], ["a b   "]),  # runs of spaces count as one
        (["sha256 4480cbfc...e859"], ["sha256 ed72e785f7f23c4fb4cc0dbec1d0b3fc9c5"]),
        (["ARK 00e634a50c65d7da..."], ["ARK 58cfc4a85c9572d2..."]),
        (["took 1.46 s and 120.5 ms"], ["took 0.66 s and 9 ms"]),
        (["pid …, port …"], ["pid 123, port 4567"]),
        (["first", "...", "last"], ["first", "x", "y", "last"]),
        (["first", "...", "last"], ["first", "last"]),
        (["a"], ["a", ""]),  # a trailing empty line is no difference
    ],
)
def test_matching_what_the_doc_shows(expected: list[str], actual: list[str]) -> None:
    assert mddoc.matches(expected, actual)


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        (["ok"], ["not ok"]),
        (["ok"], ["ok", "and more"]),  # every line is compared, unless "..." says otherwise
        (["✔ snp.revocation"], ["– snp.revocation"]),
        (["first", "...", "last"], ["first", "x"]),
        (["exit 0"], ["exit 1"]),
    ],
)
def test_drift_is_caught(expected: list[str], actual: list[str]) -> None:
    assert not mddoc.matches(expected, actual)
