"""The harness itself can fail: a planted FAIL line, a changed stdout, a changed tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from wasi_harness import Case, Outcome, check_self, differential, first_diff


def test_a_fail_line_fails_even_with_exit_0(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="FAIL planted"):
        differential(Case("wat/says_fail.wat", compare_tree=False), tmp_path)


def test_wrong_exit_code_fails() -> None:
    outcome = Outcome(3, b"ok all\n", b"", {})
    with pytest.raises(AssertionError, match="exit 3"):
        check_self("donjon", outcome, Case("c/none.c", exit_code=0))


def test_first_diff_points_at_the_first_differing_line() -> None:
    ref = Outcome(0, b"a\nb\nc\n", b"", {})
    got = Outcome(0, b"a\nB\nc\n", b"", {})
    text = first_diff(ref, got)
    assert text.startswith("stdout differs at line 2:")
    assert "wasmtime: b" in text and "donjon:   B" in text
