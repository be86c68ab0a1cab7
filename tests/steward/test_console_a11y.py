"""Accessibility basics the console's sources must keep: WCAG contrast of every text colour
pair in the stylesheet (>= 4.5:1), a label for every form control, one h1 per page.

The browser tests check the rendered pages (headings in order, keyboard use); this one
reads the files, so a colour change that fails contrast fails here at once.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from donjon.steward.console.render import STATIC, TEMPLATES

CSS = (STATIC / "console.css").read_text()
RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
MINIMUM = 4.5


def _vars() -> dict[str, str]:
    root = re.search(r":root\s*\{([^}]*)\}", CSS)
    assert root is not None
    return dict(re.findall(r"(--[\w-]+)\s*:\s*(#[0-9a-fA-F]{6})", root.group(1)))


VARS = _vars()


def _resolve(value: str) -> str | None:
    value = value.strip()
    found = re.fullmatch(r"var\((--[\w-]+)\)", value)
    if found:
        return VARS[found.group(1)]
    return value if re.fullmatch(r"#[0-9a-fA-F]{6}", value) else None


def luminance(hex_colour: str) -> float:
    """WCAG 2.x relative luminance of an sRGB colour."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _pairs() -> list[tuple[str, str, str]]:
    """(selector, text colour, background) for every rule that sets a text colour. A rule
    without its own background is checked on both backgrounds text sits on: page and card."""
    out = []
    for selector, body in RULE.findall(CSS):
        decls = dict(
            (k.strip(), v.strip()) for k, _, v in (d.partition(":") for d in body.split(";")) if v
        )
        svg_text = "text" in selector or re.search(r"\.(axis|label)\b", selector)
        text = decls.get("color") or (decls.get("fill") if svg_text else None)
        if text is None or _resolve(text) is None:
            continue
        background = decls.get("background") or decls.get("background-color")
        grounds = [_resolve(background)] if background else [VARS["--bg"], VARS["--card"]]
        for ground in grounds:
            if ground is not None:
                out.append((selector.strip(), _resolve(text) or "", ground))
    return out


PAIRS = _pairs()


def test_the_luminance_formula_matches_wcag_reference_values() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # just below AA
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # just above


def test_the_stylesheet_sets_many_text_colours() -> None:
    assert len(PAIRS) >= 40  # the parser found them (a broken parser would pass vacuously)
    selectors = {s for s, _, _ in PAIRS}
    assert {".notice.bad", ".button.danger", "svg.chart .axis", ".check.fail"} <= selectors


@pytest.mark.parametrize(("selector", "text", "ground"), PAIRS, ids=[p[0] for p in PAIRS])
def test_every_text_colour_has_a_contrast_of_at_least_4_5(
    selector: str, text: str, ground: str
) -> None:
    ratio = contrast(text, ground)
    assert ratio >= MINIMUM, f"{selector}: {text} on {ground} is {ratio:.2f}:1"


PAGES = sorted(p for p in TEMPLATES.glob("*.html") if not p.name.startswith("_"))


@pytest.mark.parametrize("template", [p for p in PAGES if p.name != "base.html"], ids=str)
def test_every_page_has_one_h1(template: Path) -> None:
    assert template.read_text().count("<h1") == 1


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.html")), ids=lambda p: p.name)
def test_every_form_control_has_a_label(template: Path) -> None:
    text = template.read_text()
    labelled = set(re.findall(r'<label for="([^"]+)"', text))
    for control in re.findall(r"<(?:input|select|textarea)\b[^>]*>", text):
        if 'type="hidden"' in control:
            continue
        found = re.search(r'\bid="([^"]+)"', control)
        assert found is not None and found.group(1) in labelled, control


def test_focus_is_visible_and_there_is_a_skip_link() -> None:
    assert re.search(r":focus-visible\s*\{[^}]*outline:\s*3px solid", CSS)
    base = (TEMPLATES / "base.html").read_text()
    assert '<a class="skip-link" href="#main">' in base and '<main id="main"' in base
