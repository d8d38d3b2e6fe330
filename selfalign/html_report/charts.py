"""Charts for the HTML report, written as SVG by hand and inlined in the page.

Plain string building, no plotting library: the report is written at the end of every run, and
importing matplotlib and laying its figures out used to be the report's largest cost
(docs/report.md has the figures). Every colour is one of the page's CSS variables (`var(--fg)` …),
so one chart serves the light and the dark theme; text is real `<text>` in the page's font, always
escaped; a `viewBox` without width or height lets the chart scale to the page's width.
"""

from __future__ import annotations

import html
import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

FG, MUTED, GRID = "var(--fg)", "var(--muted)", "var(--grid)"
SERIES = ("var(--c1)", "var(--c2)", "var(--c3)", "var(--c4)")

DPI = 96  # the sizes below were matplotlib's, in inches and points, at 96 px an inch
# 1056 px, about the page's width (report.css caps a chart at 1080 px), so text keeps its size
WIDTH = 11.0 * DPI
FONT = 12.0  # px (9 pt): labels, ticks, titles
LEGEND = 10.7  # px (8 pt)
NOTE = 10.0  # px (7.5 pt): the value at the end of a row's bars
CHAR = 0.6  # a character's average width in em (a CJK one: 1 em): no text is measured, widths are estimated
TICK = 4.7  # px: tick marks and the gap between a tick and its label (3.5 pt)
STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)  # round tick steps (× 10^k), matplotlib's defaults
FINE = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)  # for the few ticks of a small panel


class Charts:
    """Makes the SVG charts of one page; each chart's id carries a counter so ids never collide."""

    def __init__(self) -> None:
        self.count = 0

    def svg(self, height: float, body: Iterable[str]) -> str:
        """One chart: an inline-ready `<svg>` that scales to the width of its box."""
        self.count += 1
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" id="c{self.count}" viewBox="0 0 {_f(WIDTH)} '
            f'{_f(height)}" font-size="{_f(FONT)}">{"".join(body)}</svg>'
        )

    def barh(
        self,
        labels: Sequence[str],
        series: dict[str, Sequence[float]],
        title: str,
        stacked: bool = False,
        notes: Sequence[str] | None = None,
    ) -> str:
        """Horizontal bars, one row per label (top to bottom), one colour per series, side by side
        or `stacked`; `notes` are written at the end of each row's bars (default: the value)."""
        labels = [str(x) for x in labels]
        height = DPI * (0.75 + 0.24 * len(labels) * (1 if stacked else max(len(series), 1)))
        left, top, bottom = _margins(labels, height, legend=len(series) > 1)
        grid = [_values(v, len(labels)) for v in series.values()]
        ax = _Axes(
            left, top, WIDTH * 0.97 - left, bottom - top, 0.0, _bar_top(grid, stacked) * 1.18, len(labels)
        )
        body = [_frame(ax, labels, title, _ticks(ax.lo, ax.hi, 9, STEPS))]
        body += _bars(ax, grid, stacked, "{:g}", notes)
        if len(series) > 1:
            body.append(_legend(list(series), ax, title))
        return self.svg(height, body)

    def panels(self, items: Sequence[tuple[str, Sequence[str], Sequence[float]]], fmt: str = "{:g}") -> str:
        """Small multiples of horizontal bars, (title, labels, values) per panel, 3 a row; every
        panel has the same labels, so only the first column of panels shows them."""
        cols = max(1, min(3, len(items)))
        rows = max(1, -(-len(items) // cols))
        labels = [str(x) for x in items[0][1]] if items else []
        height = DPI * rows * (0.55 + 0.2 * len(labels))
        left, top, bottom = _margins(labels, height, legend=False)
        # matplotlib's subplots_adjust: the gaps are fractions of a panel's width and height
        wspace, hspace = 0.35, 0.9 if rows > 1 else 0.2
        pw = (WIDTH * 0.97 - left) / (cols + (cols - 1) * wspace)
        ph = (bottom - top) / (rows + (rows - 1) * hspace)
        body: list[str] = []
        for n, (title, _, values) in enumerate(items):
            r, c = divmod(n, cols)
            v = _values(values, len(labels))
            x0, y0 = left + c * pw * (1 + wspace), top + r * ph * (1 + hspace)
            ax = _Axes(x0, y0, pw, ph, 0.0, _bar_top([v], False) * 1.18, len(labels))
            body.append(_frame(ax, labels if c == 0 else [], title, _ticks(ax.lo, ax.hi, 3, FINE)))
            body += _bars(ax, [v], False, fmt)
        return self.svg(height, body)

    def ridges(self, rows: Sequence[tuple[str, dict[str, Sequence[float]]]], title: str) -> str:
        """Histograms of several columns in one chart, a row each (all on one x scale), the
        series of a row overlaid and told apart by colour in the legend."""
        labels = [str(r[0]) for r in rows]
        bins, counts = histograms(rows)
        names = list(dict.fromkeys(k for c in counts for k in c))  # in order of first appearance
        height = DPI * (0.9 + 0.42 * len(rows))
        left, top, bottom = _margins(labels, height, legend=len(names) > 1)
        lo, hi = float(bins[0]), float(bins[-1])
        ax = _Axes(left, top, WIDTH * 0.97 - left, bottom - top, lo, hi, len(rows))
        body = [_frame(ax, labels, title, _ticks(lo, hi, 9, STEPS))]
        body += _steps(ax, bins, counts, names)
        if len(names) > 1:
            body.append(_legend(names, ax, title, opacity=0.55))
        return self.svg(height, body)


@dataclass
class _Axes:
    """A plot area in px, with its x range in data units and one slot per row, the first on top."""

    left: float
    top: float
    width: float
    height: float
    lo: float
    hi: float
    rows: int

    def x(self, v: float) -> float:
        return self.left + (v - self.lo) / ((self.hi - self.lo) or 1.0) * self.width

    def y(self, r: float) -> float:
        """The middle of row r."""
        return self.top + (r + 0.5) * self.row

    @property
    def row(self) -> float:
        return self.height / max(self.rows, 1)


def _margins(labels: Sequence[str], height: float, legend: bool) -> tuple[float, float, float]:
    """Left edge, top and bottom of the plot area, from the longest label (and a legend's line)."""
    left = min(0.5 * WIDTH, max((_em(x) for x in labels), default=4 * CHAR) * FONT + 18.7)
    top = DPI * (0.3 + (0.18 if legend else 0))
    return left, top, max(height - DPI * 0.32, top)  # a chart of no rows has a plot area of no height


def _values(values: Sequence[float], n: int) -> list[float]:
    """n numbers, one per label: a missing or non-finite value (NaN) is 0."""
    out = []
    for v in list(values)[:n]:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = 0.0
        out.append(f if math.isfinite(f) else 0.0)
    return out + [0.0] * (n - len(out))


def _bar_top(grid: list[list[float]], stacked: bool) -> float:
    """The longest row of bars (1 when there is none, so the axis still has a range)."""
    if stacked:
        top = max((sum(max(v, 0.0) for v in row) for row in zip(*grid, strict=True)), default=0.0)
    else:
        top = max((v for values in grid for v in values), default=0.0)
    return top if top > 0 else 1.0


def _ticks(lo: float, hi: float, most: int, steps: Sequence[float]) -> list[float]:
    """Round values in [lo, hi], at most `most` intervals apart: the smallest step of the form
    s × 10^k (s in `steps`) that needs no more, as matplotlib's MaxNLocator chooses them."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / most
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(s * mag for s in steps if s * mag >= raw * (1 - 1e-9))
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [k * step for k in range(first, last + 1)]


def _tick_labels(ticks: Sequence[float]) -> list[str]:
    """All with the same number of decimals, the fewest that show each tick exactly (0.0 0.2 0.4)."""
    d = next((d for d in range(10) if all(abs(t - round(t, d)) < 1e-9 * max(1.0, abs(t)) for t in ticks)), 10)
    return [f"{t:.{d}f}" for t in ticks]


def _frame(ax: _Axes, labels: Sequence[str], title: str, ticks: Sequence[float]) -> str:
    """Grid lines, the left and bottom axes with their ticks and labels, and the title."""
    bottom, right = ax.top + ax.height, ax.left + ax.width
    xs = [ax.x(t) for t in ticks]
    grid = "".join(f"M{_f(x)} {_f(ax.top)}V{_f(bottom)}" for x in xs)
    axes = f"M{_f(ax.left)} {_f(ax.top)}V{_f(bottom)}H{_f(right)}"
    axes += "".join(f"M{_f(x)} {_f(bottom)}v{TICK}" for x in xs)
    axes += "".join(f"M{_f(ax.left)} {_f(ax.y(r))}h-{TICK}" for r in range(ax.rows))
    room = (ax.left - 18.7) / FONT + 1e-6  # em that fit left of the axis
    ylabels = "".join(
        _text(ax.left - 2 * TICK, ax.y(r), _fit(label, room), dy=".35em") for r, label in enumerate(labels)
    )
    xlabels = "".join(
        _text(x, bottom + 2 * TICK + 0.75 * FONT, s) for x, s in zip(xs, _tick_labels(ticks), strict=True)
    )
    return (
        f'<text x="{_f(ax.left)}" y="{_f(ax.top - 8)}" style="fill:{FG}">{_esc(title)}</text>'
        f'<path d="{grid}" style="stroke:{GRID}" stroke-width="0.7" fill="none"/>'
        f'<path d="{axes}" style="stroke:{MUTED}" stroke-width="1.1" fill="none"/>'
        f'<g style="fill:{FG}" text-anchor="end">{ylabels}</g>'
        f'<g style="fill:{FG}" text-anchor="middle">{xlabels}</g>'
    )


def _bars(
    ax: _Axes, grid: list[list[float]], stacked: bool, fmt: str, notes: Sequence[str] | None = None
) -> list[str]:
    """One path per series (a rectangle per row), then the value or note at the end of each row's
    bars: of every series side by side, or of the row's total when stacked."""
    h = (0.7 if stacked else 0.8 / max(len(grid), 1)) * ax.row
    ends = [0.0] * ax.rows  # where each row's stack ends so far, in data units
    out, ends_at = [], []  # ends_at: (value written, its x in data units, y, row)
    for i, values in enumerate(grid):
        rects = []
        for r, v in enumerate(values):
            start, w = ends[r], max(v, 0.0)  # a negative value has no bar, only its number
            y = ax.y(r) - h / 2 if stacked else ax.y(r) - 0.4 * ax.row + h * i
            if w > 0:
                x0, x1 = ax.x(start), ax.x(start + w)
                rects.append(f"M{_f(x0)} {_f(y)}h{_f(x1 - x0)}v{_f(h)}h-{_f(x1 - x0)}z")
            if stacked:
                ends[r] += w
            else:
                ends_at.append((v, w, y + h / 2, r))
        if rects:
            out.append(f'<path d="{"".join(rects)}" style="fill:{SERIES[i % len(SERIES)]}"/>')
    if stacked:
        ends_at = [(sum(col), ends[r], ax.y(r), r) for r, col in enumerate(zip(*grid, strict=True))]
    pad = (ax.hi - ax.lo) / 1.18 * 0.01  # 1% of the longest bar, as before
    texts = "".join(
        _text(ax.x(at + pad), y, notes[r] if notes and r < len(notes) else fmt.format(v), dy=".35em")
        for v, at, y, r in ends_at
    )
    # white-space: pre keeps a note's double space ("3  (+12 dropped)") as it was written
    out.append(f'<g style="fill:{FG};white-space:pre" font-size="{_f(NOTE)}">{texts}</g>')
    return out


def histograms(
    rows: Sequence[tuple[str, dict[str, Sequence[float]]]],
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """The bins every row shares (evenly over the global min..max, 6 to 24 of them as the
    largest series grows) and each row's counts per series; non-finite values are left out."""
    arrays = []
    for _, series in rows:
        a = {str(k): np.asarray(v, dtype=float).ravel() for k, v in series.items()}
        arrays.append({k: v[np.isfinite(v)] for k, v in a.items()})
    every = np.concatenate([np.zeros(0), *(v for a in arrays for v in a.values())])
    lo, hi = (float(every.min()), float(every.max())) if every.size else (0.0, 0.0)
    if hi == lo:  # one value everywhere: centre it
        lo, hi = lo - 0.5, hi + 0.5
    most = max((v.size for a in arrays for v in a.values()), default=1)
    bins = np.linspace(lo, hi, int(np.clip(np.sqrt(most) * 2, 6, 24)) + 1)
    return bins, [{k: np.histogram(v, bins=bins)[0] for k, v in a.items()} for a in arrays]


def _steps(ax: _Axes, bins: np.ndarray, counts: list[dict[str, np.ndarray]], names: list[str]) -> list[str]:
    """Each row's histograms as filled step areas rising from below the row's middle, scaled to
    the row's highest bar; a series' areas of every row share one path (per opacity)."""
    paths: dict[tuple[int, float], list[str]] = {}
    xs = [_f(ax.x(float(b))) for b in bins]
    for r, row in enumerate(counts):
        peak = max((int(c.max()) for c in row.values() if c.size), default=0) or 1
        base = ax.y(r) + 0.42 * ax.row
        for name, c in row.items():
            if c.any():
                ys = [_f(base - 0.84 * ax.row * n / peak) for n in c.tolist()]
                key = (names.index(name), 0.55 if len(row) > 1 else 0.85)
                paths.setdefault(key, []).append(_area(xs, _f(base), ys))
    return [
        f'<path d="{"".join(areas)}" style="fill:{SERIES[i % len(SERIES)]}" fill-opacity="{a}"/>'
        for (i, a), areas in sorted(paths.items())
    ]


def _area(xs: Sequence[str], base: str, ys: Sequence[str]) -> str:
    """A filled step area: from the baseline up to each bin's height across the bin, and back;
    neighbouring bins of one height make one step."""
    d, last = [f"M{xs[0]} {base}"], base
    for x, y in zip(xs[1:], ys, strict=True):
        if y != last:
            d.append(f"V{y}")
        elif d[-1][0] == "H":
            d.pop()
        d.append(f"H{x}")
        last = y
    return "".join(d) + ("" if last == base else f"V{base}") + "z"


def _legend(names: Sequence[str], ax: _Axes, title: str, opacity: float = 1.0) -> str:
    """A swatch and a name per series, in one line that ends at the plot's right edge: beside
    the title, or above it when they would overlap (text widths are estimated)."""
    em = LEGEND
    widths = [2 * em + 0.8 * em + _em(n) * em for n in names]
    x = ax.left + ax.width - sum(widths) - 2 * em * (len(names) - 1)
    y = ax.top - 8
    if x < ax.left + _em(title) * FONT + 2 * em:
        y -= 1.4 * FONT  # the top margin of a chart with a legend has room for this line
    alpha = f' fill-opacity="{opacity}"' if opacity < 1 else ""
    out = []
    for i, (name, w) in enumerate(zip(names, widths, strict=True)):
        colour = SERIES[i % len(SERIES)]
        out.append(
            f'<rect x="{_f(x)}" y="{_f(y - 0.7 * em)}" width="{_f(2 * em)}" height="{_f(0.7 * em)}" '
            f'style="fill:{colour}"{alpha}/>'
        )
        out.append(_text(x + 2.8 * em, y, name))
        x += w + 2 * em
    return f'<g style="fill:{FG}" font-size="{_f(em)}">{"".join(out)}</g>'


def _text(x: float, y: float, s: str, dy: str | None = None) -> str:
    shift = f' dy="{dy}"' if dy else ""
    return f'<text x="{_f(x)}" y="{_f(y)}"{shift}>{_esc(s)}</text>'


def _em(s: str) -> float:
    """The estimated width of a text, in em."""
    return sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else CHAR for ch in s)


def _fit(label: str, room: float) -> str:
    """The label, cut with an ellipsis when it is wider than `room` em (the margin is at most half
    the chart's width)."""
    if _em(label) <= room:
        return label
    while label and _em(label) + CHAR > room:
        label = label[:-1]
    return label + "…"


def _esc(s: object) -> str:
    """Text for inside an SVG element or attribute: markup is shown, never read."""
    return html.escape(str(s), quote=True)


def _f(v: float) -> str:
    """A coordinate to 0.1 px: small, and no visible difference."""
    s = f"{v:.1f}"
    s = s[:-2] if s.endswith(".0") else s
    return "0" if s == "-0" else s
