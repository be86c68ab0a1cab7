"""What the console draws and says, without a server: charts, the escaping filter, the policy
as an operator reads it, and its diff."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from donjon.attestation import Policy
from donjon.steward.console import charts, policyview
from donjon.steward.console.render import clip, make_environment

HOSTILE = "<script>alert(1)</script>\n\x1b[31m" + "Z" * 10_000


def test_clip_makes_one_short_line_and_says_how_much_was_cut() -> None:
    shown = clip(HOSTILE, 60)
    assert "\n" not in shown and "\x1b" not in shown
    assert shown.startswith("<script>alert(1)</script>\\n\\x1b[31m")
    assert shown.endswith(f"...(+{len(HOSTILE) + 4 - 60} chars)")  # \n and \x1b take 2 and 4
    assert clip(None) == "" and clip("short") == "short"


def test_templates_escape_even_what_clip_lets_through() -> None:
    env = make_environment()
    html = env.from_string("<td>{{ value|clip(80) }}</td><a title='{{ value }}'>").render(
        value=HOSTILE + "' onmouseover='alert(2)"
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "onmouseover='" not in html and "&#39; onmouseover=&#39;" in html


def test_a_bar_chart_scales_to_its_largest_value_and_escapes_its_labels() -> None:
    svg = str(
        charts.bar_chart(
            "Attestations <&> refusals",
            ["<b>x</b>", "y"],
            [charts.Series("issued", [3, 7], "bar-issued"), charts.Series("refused", [0, 1], "r")],
        )
    )
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert 'aria-label="Attestations &lt;&amp;&gt; refusals: issued 10, refused 1"' in svg
    heights = {
        title: float(h) for h, title in re.findall(r'height="([\d.]+)"><title>([^<]+)</title>', svg)
    }
    # The axis tops out at a round 10 for a largest value of 7: 7 bars reach 70 % of the plot.
    plot = 240 - 12 - 30
    assert heights["y: issued 7"] == pytest.approx(plot * 0.7, abs=0.1)
    assert heights["y: refused 1"] == pytest.approx(plot * 0.1, abs=0.1)
    assert "style=" not in svg  # the CSP forbids inline styles: colours come from classes


def test_an_empty_chart_still_draws_its_axis() -> None:
    svg = str(charts.bar_chart("nothing", ["a", "b"], [charts.Series("issued", [0, 0], "c")]))
    assert svg.count("<rect") == 2 and ">4</text>" in svg


def _policy(text: str) -> Policy:
    return Policy.from_toml(text, source="test.toml", base_dir=Path("/tmp"))


def test_the_policy_view_separates_pins_open_keys_and_opt_ins(vectors: Path) -> None:
    enarx = (vectors / "enarx-steward" / "steward_testdata_policy.toml").read_text()
    views = {v.name: v for v in policyview.describe(_policy(enarx))}
    snp = views["snp"]
    pinned = {e.key: e.value for e in snp.pinned}
    assert pinned["measurement"].startswith("ff717ae719840c93")  # Enarx's test policy
    assert set(pinned) == {"signer", "id_key_digest", "measurement"}
    assert {"host_data", "image_id", "allowed_workloads"} <= set(snp.open)
    assert snp.opted_in == []
    sgx = {e.key: e.value for e in views["sgx"].pinned}  # pins kept in a mapping of digests
    assert sgx["mrenclave"].startswith("4046ea255f045513") and set(sgx) == {"signer", "mrenclave"}


def test_opt_ins_are_named() -> None:
    text = (
        '[snp]\naccept_any_workload = true\nallow_debug = true\ncrl = "if-available"\n'
        'allowed_advisories = ["AMD-SB-3019"]\n[nil]\nallow = true\n'
    )
    views = {v.name: v for v in policyview.describe(_policy(text))}
    opted = {e.key for e in views["snp"].opted_in}
    assert opted == {"accept_any_workload", "allow_debug", "crl", "allowed_advisories"}
    assert views["snp"].pinned == []
    assert views["nil"].kind == "development"


def test_the_diff_marks_added_and_removed_lines() -> None:
    lines = policyview.diff("[snp]\nallow_debug = false\n", "[snp]\nallow_debug = true\n",
                            before_name="old", after_name="new")  # fmt: skip
    kinds = [(line.kind, line.text) for line in lines]
    assert ("del", "-allow_debug = false") in kinds and ("add", "+allow_debug = true") in kinds
    assert kinds[0] == ("file", "--- old") and policyview.diff("a", "a", before_name="x",
                                                               after_name="y") == []  # fmt: skip
