"""Charts drawn on the server as inline SVG: no script, nothing fetched, colours from the CSS.

Every shape has a class (``bar-issued``, ``bar-refused``, ``axis``...) that
``static/console.css`` colours, so the contrast test reads one place. Each
chart carries a ``<title>`` and a text summary; the page also offers the
numbers as a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

_W, _H = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 12, 30


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int]
    css: str  # class of its bars


def _nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 4:
        return 4
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def bar_chart(
    title: str, labels: Sequence[str], series: Sequence[Series], *, label_every: int = 1
) -> Markup:
    """Grouped bars, one group per label, one bar per series."""
    count = len(labels)
    top = _nice_max(max((max(s.values, default=0) for s in series), default=0))
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM
    group = plot_w / max(count, 1)
    bar = max(group * 0.8 / max(len(series), 1), 1.0)
    totals = ", ".join(f"{s.name} {sum(s.values)}" for s in series)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(title)}: {escape(totals)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in range(5):
        value = top * tick / 4
        y = _TOP + plot_h - plot_h * tick / 4
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_num(y)}" y2="{_num(y)}"/>'
        )
        parts.append(
            f'<text class="axis" x="{_LEFT - 6}" y="{_num(y + 4)}" text-anchor="end">'
            f"{_num(value)}</text>"
        )
    for index, label in enumerate(labels):
        x0 = _LEFT + group * index + group * 0.1
        for position, s in enumerate(series):
            value = s.values[index] if index < len(s.values) else 0
            height = plot_h * value / top if top else 0
            x = x0 + bar * position
            y = _TOP + plot_h - height
            parts.append(
                f'<rect class="{escape(s.css)}" x="{_num(x)}" y="{_num(y)}" '
                f'width="{_num(bar)}" height="{_num(height)}">'
                f"<title>{escape(label)}: {escape(s.name)} {value}</title></rect>"
            )
        if index % label_every == 0:
            parts.append(
                f'<text class="axis" x="{_num(x0 + group * 0.4)}" y="{_H - 10}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append(
        f'<line class="baseline" x1="{_LEFT}" x2="{_W - _RIGHT}" '
        f'y1="{_TOP + plot_h}" y2="{_TOP + plot_h}"/>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def hbar_chart(title: str, items: Sequence[tuple[str, int]], *, css: str) -> Markup:
    """Horizontal bars with their labels and counts (top refusal reasons)."""
    row = 28
    height = max(len(items), 1) * row + 8
    label_w = 300
    plot_w = _W - label_w - 60
    top = max((n for _, n in items), default=0) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, count) in enumerate(items):
        y = 4 + index * row
        shown = label if len(label) <= 40 else label[:39] + "…"
        width = plot_w * count / top
        parts.append(
            f'<text class="label" x="{label_w - 8}" y="{y + 18}" text-anchor="end">'
            f"{escape(shown)}</text>"
        )
        parts.append(
            f'<rect class="{escape(css)}" x="{label_w}" y="{y + 4}" width="{_num(width)}" '
            f'height="{row - 10}"><title>{escape(label)}: {count}</title></rect>'
        )
        parts.append(
            f'<text class="axis" x="{_num(label_w + width + 6)}" y="{y + 18}">{count}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
