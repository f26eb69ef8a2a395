"""Server-side SVG charts: pure functions from data to an SVG string.

Why server-side: the operator pages must work offline and without JavaScript, and an SVG
rendered here needs no chart library in the browser. Every label is XML-escaped because card
aliases and station names are typed by people.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

_FONT = "font-family='system-ui,sans-serif' font-size='11'"
_BAR = "#3b6ea5"
_AXIS = "#888"


@dataclass(frozen=True)
class Bar:
    """One labelled value; ``href`` makes the bar a link (e.g. to the card's page)."""

    label: str
    value: float
    href: str | None = None


def _esc(text: str) -> str:
    return escape(text, {'"': "&quot;", "'": "&#x27;"})


def _fmt(value: float) -> str:
    """The tracker's one number format: thousands split by a narrow space ("21 000")."""
    text = f"{int(value):,}" if value == int(value) else f"{value:,.2f}"
    return text.replace(",", "\u202f")


#: Width of the chart drawn for phones (shown instead of the wide one below 640 px): a wide
#: chart scaled down to a phone would shrink its 11 px labels to 6 px.
NARROW = 340


def responsive(draw: Callable[[int], str]) -> str:
    """The chart drawn twice, at full and at phone width; CSS shows the one that fits."""
    return (
        f"<div class='chart-wide'>{draw(640)}</div>"
        f"<div class='chart-narrow'>{draw(NARROW)}</div>"
    )


def _nice_max(value: float) -> float:
    """Round the axis maximum up to 1, 2 or 5 times a power of ten so ticks read well."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _truncate(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _empty(width: int, height: int, title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' role='img' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' class='chart chart-empty'>"
        f"<title>{_esc(title)}</title>"
        f"<text x='{width // 2}' y='{height // 2}' text-anchor='middle' {_FONT} fill='{_AXIS}'>"
        "no data for this period</text></svg>"
    )


def vertical_bars(
    bars: Sequence[Bar], *, title: str, unit: str = "", width: int = 640, height: int = 220
) -> str:
    """Column chart (e.g. payout volume per day, taps per station)."""
    if not bars:
        return _empty(width, height, title)
    left, right, top, bottom = 56, 8, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max(b.value for b in bars))
    slot = plot_w / len(bars)
    bar_w = min(max(1.0, slot * 0.7), 64.0)  # one bar should not fill the whole chart
    # At most one x label per ~52 px (about 12 on a wide chart) so they do not overlap.
    every = max(1, -(-len(bars) // max(1, plot_w // 52)))
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' role='img' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' class='chart'>",
        f"<title>{_esc(title)}</title>",
    ]
    whole = all(float(b.value).is_integer() for b in bars)
    # Counts get whole-number gridlines: no "1.50 taps".
    ticks = next((n for n in (4, 5, 2, 1) if (top_value / n).is_integer()), 4) if whole else 4
    for i in range(ticks + 1):
        value = top_value * i / ticks
        y = top + plot_h - plot_h * i / ticks
        parts.append(
            f"<line x1='{left}' y1='{y:.1f}' x2='{width - right}' y2='{y:.1f}' "
            f"stroke='#e3e3e3'/>"
            f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end' {_FONT} fill='{_AXIS}'>"
            f"{_esc(_fmt(value))}</text>"
        )
    for i, bar in enumerate(bars):
        h = plot_h * max(bar.value, 0) / top_value
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        tip = f"{bar.label}: {_fmt(bar.value)}{(' ' + unit) if unit else ''}"
        rect = (
            f"<rect x='{x:.1f}' y='{y:.1f}' width='{bar_w:.1f}' height='{h:.1f}' fill='{_BAR}'>"
            f"<title>{_esc(tip)}</title></rect>"
        )
        if bar.href:
            rect = f"<a href='{_esc(bar.href)}'>{rect}</a>"
        parts.append(rect)
        if i % every == 0:
            parts.append(
                f"<text x='{x + bar_w / 2:.1f}' y='{height - bottom + 16}' text-anchor='middle' "
                f"{_FONT} fill='#333'>{_esc(_truncate(bar.label, 14 if width > NARROW else 8))}"
                "</text>"
            )
    parts.append(
        f"<line x1='{left}' y1='{top + plot_h}' x2='{width - right}' y2='{top + plot_h}' "
        f"stroke='{_AXIS}'/></svg>"
    )
    return "".join(parts)


def horizontal_bars(
    bars: Sequence[Bar], *, title: str, unit: str = "", width: int = 640, row: int = 24
) -> str:
    """Ranked bar chart (e.g. top cards by amount); labels on the left, values at the bar end."""
    if not bars:
        return _empty(width, 3 * row, title)
    label_w, value_w, pad = min(170, int(width * 0.34)), 90, 8
    label_chars = 24 if width > NARROW else 14
    height = pad * 2 + row * len(bars)
    plot_w = width - label_w - value_w
    top_value = max(max(b.value for b in bars), 1e-9)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' role='img' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' class='chart'>",
        f"<title>{_esc(title)}</title>",
    ]
    for i, bar in enumerate(bars):
        y = pad + i * row
        w = plot_w * max(bar.value, 0) / top_value
        label = (
            f"<text x='{label_w - 6}' y='{y + row * 0.65:.1f}' text-anchor='end' {_FONT} "
            f"fill='#333'>{_esc(_truncate(bar.label, label_chars))}</text>"
        )
        if bar.href:
            label = f"<a href='{_esc(bar.href)}'>{label}</a>"
        tip = f"{bar.label}: {_fmt(bar.value)}{(' ' + unit) if unit else ''}"
        parts.append(
            label + f"<rect x='{label_w}' y='{y + 3}' width='{w:.1f}' height='{row - 6}' "
            f"fill='{_BAR}'><title>{_esc(tip)}</title></rect>"
            f"<text x='{label_w + w + 6:.1f}' y='{y + row * 0.65:.1f}' {_FONT} fill='#333'>"
            f"{_esc(_fmt(bar.value))}{(' ' + _esc(unit)) if unit else ''}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def payout_volume_per_day(rows: Sequence[tuple[str, float]], *, width: int = 640) -> str:
    """``rows``: (ISO day, sats) in day order."""
    return vertical_bars(
        [Bar(day, sats) for day, sats in rows],
        title="Payout volume per day (sats)",
        unit="sats",
        width=width,
    )


def taps_per_station(rows: Sequence[tuple[str, int]], *, width: int = 640) -> str:
    """``rows``: (station name, tap count)."""
    return vertical_bars(
        [Bar(name, count) for name, count in rows], title="Taps per station", unit="taps",
        width=width,
    )


def top_cards(rows: Sequence[tuple[str, float, str | None]], *, width: int = 640) -> str:
    """``rows``: (card label, sats, link to the card page or None), largest first."""
    return horizontal_bars(
        [Bar(label, sats, href) for label, sats, href in rows],
        title="Top cards by paid amount (sats)",
        unit="sats",
        width=width,
    )


def card_activity(rows: Sequence[tuple[str, int, int]], *, width: int = 640) -> str:
    """``rows``: (day label, taps, sats paid) oldest first: two small charts on one day axis,
    taps above and sats paid below (two units, so two scales rather than two axes on one)."""
    taps = vertical_bars(
        [Bar(label, n) for label, n, _ in rows],
        title="Taps per day",
        unit="taps",
        width=width,
        height=150,
    )
    paid = vertical_bars(
        [Bar(label, sats) for label, _, sats in rows],
        title="Paid per day (sats)",
        unit="sats",
        width=width,
        height=150,
    )
    return (
        f"<figure class='activity'><figcaption>Taps per day</figcaption>{taps}</figure>"
        f"<figure class='activity'><figcaption>Paid per day (sats)</figcaption>{paid}</figure>"
    )
