"""Docs that run: the console blocks of a Markdown file, parsed, run and compared.

The convention (written down for contributors in CONTRIBUTING.md, "Docs that run"):

* Every fenced ``console`` block of README.md, docs/*.md and examples/README.md
  is run in CI, in order, one document at a time, in a temporary copy of the
  repository (a "fresh clone"), with its own empty ``$HOME``.
* ``$ command`` lines are commands (a trailing ``\\`` continues one); the lines
  after a command, up to the next ``$``, are its output (stdout and stderr, as a
  terminal shows them). Without output lines the output is not compared.
* Each command runs in a new ``bash`` in the document's directory: ``cd`` carries
  over to the next command, variables do not. A command must exit 0, unless its
  shown output has a ``donjon: error:`` line: then it must fail.
* A command that ends with ``&`` runs in the background until the document ends;
  its output lines, if shown, are waited for (the doc shows what a reader sees
  before typing the next command).
* Output is compared line by line after normalising: runs of spaces count as one,
  hex strings of 8 or more characters (also shortened ones like ``4480cbfc...e859``)
  match any hex string, and durations (``1.46 s``, ``120.5 ms``) match any duration.
  ``…`` or ``...`` inside a line matches any text; a line that is only ``...`` (or
  ``…``) matches any number of lines.
* HTML comments just above a block change what happens to it:
  ``<!-- doc-test: not run: REASON -->`` (the reason is required, e.g. real TEE
  hardware or a cloud); ``<!-- doc-test: setup: COMMAND -->`` runs a hidden
  command first (to provide files a reader has, e.g. evidence from the test
  vectors; never to make a command work that would fail for a reader);
  ``<!-- doc-test: file PATH -->`` above a non-console block writes the block's
  text to PATH, which is what the doc asks the reader to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MARKER = re.compile(r"^<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<info>[\w+-]*)")


@dataclass
class Command:
    text: str  # the shell text, continuation lines joined with newlines
    output: list[str]  # the lines the doc shows after it
    line: int  # where the command starts in the file (1-based)

    @property
    def background(self) -> bool:
        return self.text.rstrip().endswith("&") and not self.text.rstrip().endswith("&&")

    @property
    def must_fail(self) -> bool:
        return any(out.startswith("donjon: error:") for out in self.output)


@dataclass
class Block:
    line: int  # line of the opening fence (1-based)
    info: str  # "console", "toml", ...
    text: str
    not_run: str | None = None  # the reason, when marked not run
    setup: list[str] = field(default_factory=list)
    file: str | None = None  # write the block's text here
    commands: list[Command] = field(default_factory=list)


class DocFormatError(ValueError):
    """A doc-test marker that cannot be understood (say so rather than skip silently)."""


def parse(text: str, name: str = "doc") -> list[Block]:
    """The fenced blocks of a Markdown text, with the markers just above each."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line.strip())
        if marker:
            pending.append((i + 1, marker.group("body")))
            i += 1
            continue
        fence = FENCE.match(line)
        if fence is None:
            if line.strip():
                pending = []  # a marker belongs to the block right below it
            i += 1
            continue
        closing = fence.group("fence")
        indent = len(fence.group("indent"))  # a fence inside a list item is indented
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].lstrip(" ").startswith(closing):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        block = Block(line=i + 1, info=fence.group("info"), text="\n".join(body) + "\n")
        for where, marker_body in pending:
            _apply(block, marker_body, f"{name}:{where}")
        if block.info == "console":
            block.commands = _commands(body, i + 2)
        blocks.append(block)
        pending = []
        i = j + 1
    return blocks


def _apply(block: Block, body: str, where: str) -> None:
    if body.startswith("not run:"):
        reason = body.removeprefix("not run:").strip()
        if not reason:
            raise DocFormatError(f"{where}: 'not run' needs a reason")
        block.not_run = reason
    elif body.startswith("setup:"):
        block.setup.append(body.removeprefix("setup:").strip())
    elif body.startswith("file "):
        block.file = body.removeprefix("file ").strip()
    else:
        raise DocFormatError(f"{where}: unknown doc-test marker {body!r}")


def _commands(body: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    k = 0
    while k < len(body):
        line = body[k]
        if not line.startswith("$ "):
            if commands:
                commands[-1].output.append(line)
            k += 1
            continue
        start = k
        parts = [line[2:]]
        while parts[-1].endswith("\\") and k + 1 < len(body):
            k += 1
            parts.append(body[k])
        commands.append(Command("\n".join(parts), [], first_line + start))
        k += 1
    for command in commands:
        while command.output and not command.output[-1].strip():
            command.output.pop()
    return commands


# --- comparing output -----------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_HEX = re.compile(r"\b[0-9a-f]{4,}(?:\.\.\.|…)[0-9a-f]{2,}\b|\b[0-9a-f]{8,}(?:\.\.\.|…)?")
_TIME = re.compile(r"\b\d+(?:\.\d+)? ?(?:ms|s)\b")
_ELLIPSIS = re.compile(r"\.\.\.|…")


def normalise(line: str) -> str:
    line = _ANSI.sub("", line).rstrip()
    line = _HEX.sub("<hex>", line)
    return _TIME.sub("<time>", line)


def _squash(line: str) -> str:
    return re.sub(r"\s+", " ", normalise(line)).strip()


def _line_pattern(expected: str) -> re.Pattern[str]:
    pieces = _ELLIPSIS.split(_squash(expected))
    return re.compile(".*?".join(re.escape(p) for p in pieces) + r"\Z", re.DOTALL)


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` lines match the doc's ``expected`` lines (see the module doc)."""
    act = [_squash(a) for a in actual]
    while act and not act[-1]:
        act.pop()
    return _match(list(expected), 0, act, 0)


def _match(exp: list[str], i: int, act: list[str], j: int) -> bool:
    if i == len(exp):
        return j == len(act)
    if exp[i].strip() in ("...", "…"):
        return any(_match(exp, i + 1, act, k) for k in range(j, len(act) + 1))
    if j == len(act):
        return False
    return bool(_line_pattern(exp[i]).match(act[j])) and _match(exp, i + 1, act, j + 1)


def first_mismatch(expected: list[str], actual: list[str]) -> str:
    """A short explanation for a failure message."""
    return (
        "expected (normalised):\n  "
        + "\n  ".join(_squash(e) for e in expected)
        + "\nactual (normalised):\n  "
        + "\n  ".join(_squash(a) for a in actual)
    )
