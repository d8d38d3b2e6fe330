"""Charts for the HTML report: matplotlib figures saved as inline SVG that follow the page's theme.

Every colour is drawn as a sentinel and replaced by a CSS variable (`var(--fg)` …) in the SVG, so
one chart serves the light and the dark theme; text stays real text in the page's font.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

# sentinel colour → CSS variable (report.css defines them for each theme)
_VARS = {
    "#0c0c01": "var(--fg)",
    "#0c0c02": "var(--muted)",
    "#0c0c03": "var(--grid)",
    "#0c0c04": "var(--c1)",
    "#0c0c05": "var(--c2)",
    "#0c0c06": "var(--c3)",
    "#0c0c07": "var(--c4)",
}
FG, MUTED, GRID, C1, C2, C3, C4 = _VARS
SERIES = (C1, C2, C3, C4)

_RC = {
    "svg.fonttype": "none",  # text as <text>: small, selectable, in the page's font
    "text.parse_math": False,  # a column named "a$b$" is text, not TeX
    "font.size": 9,
    "text.color": FG,
    "axes.labelcolor": FG,
    "axes.edgecolor": MUTED,
    "axes.titlesize": 9,
    "axes.titlelocation": "left",
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": FG,
    "ytick.labelcolor": FG,
    "grid.color": GRID,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
}


class Charts:
    """Makes the SVG charts of one page; ids are prefixed per chart so they never collide."""

    def __init__(self) -> None:
        import matplotlib

        matplotlib.use("svg", force=False)  # never a GUI backend, even where a display exists
        self._mpl = matplotlib
        self.count = 0

    def figure(self, width: float, height: float) -> Any:
        from matplotlib.figure import Figure

        with self._mpl.rc_context(_RC):
            return Figure(figsize=(width, height))

    def svg(self, fig: Any) -> str:
        """The figure as an SVG fragment ready to inline in the page."""
        self.count += 1
        buf = io.StringIO()
        with self._mpl.rc_context({**_RC, "svg.hashsalt": f"c{self.count}"}):
            fig.savefig(buf, format="svg", transparent=True, metadata={"Date": None})
        return _clean(buf.getvalue(), f"c{self.count}-")

    def barh(
        self,
        labels: Sequence[str],
        series: dict[str, Sequence[float]],
        title: str,
        stacked: bool = False,
        notes: Sequence[str] | None = None,
    ) -> str:
        """Horizontal bars, one row per label (top to bottom), one colour per series; `notes`
        are written at the end of each row's bars (default: the value)."""
        with self._mpl.rc_context(_RC):
            fig = self.figure(WIDTH, 0.75 + 0.24 * len(labels) * (1 if stacked else len(series)))
            ax = fig.subplots()
            _barh(ax, list(labels), series, stacked, "{:g}", notes)
            ax.set_title(title)
            _margins(fig, labels, legend=len(series) > 1)
            return self.svg(fig)

    def panels(self, items: Sequence[tuple[str, Sequence[str], Sequence[float]]], fmt: str = "{:g}") -> str:
        """Small multiples of horizontal bars, (title, labels, values) per panel, 3 a row; every
        panel has the same labels, so only the first column of panels shows them."""
        cols = min(3, len(items))
        rows = -(-len(items) // cols)
        labels = list(items[0][1])
        with self._mpl.rc_context(_RC):
            fig = self.figure(WIDTH, rows * (0.55 + 0.2 * len(labels)))
            axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=True)).ravel()
            for ax, (title, _, values) in zip(axes, items, strict=False):
                _barh(ax, labels, {"": values}, False, fmt)
                ax.set_title(title)
                ax.xaxis.set_major_locator(self._mpl.ticker.MaxNLocator(3))
            for ax in axes[len(items) :]:
                ax.set_visible(False)
            _margins(fig, labels, legend=False, wspace=0.35, hspace=0.9 if rows > 1 else 0.2)
            return self.svg(fig)

    def ridges(self, rows: Sequence[tuple[str, dict[str, Sequence[float]]]], title: str) -> str:
        """Histograms of several columns in one chart, a row each (all on one x scale), the
        series of a row overlaid: one axes, however many columns, so the report stays quick."""
        with self._mpl.rc_context(_RC):
            fig = self.figure(WIDTH, 0.9 + 0.42 * len(rows))
            ax = fig.subplots()
            names = _ridges(ax, rows)
            ax.set_title(title)
            if len(names) > 1:
                ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=len(names), fontsize=8)
            _margins(fig, [r[0] for r in rows], legend=len(names) > 1)
            return self.svg(fig)


WIDTH = 11.0  # inches: 1056 px at 96 dpi, about the page's width, so text keeps its size


def _margins(fig: Any, labels: Sequence[str], legend: bool, **space: float) -> None:
    """Fixed margins from the longest label (a layout engine would draw every chart twice)."""
    w, h = fig.get_size_inches()
    left = min(0.5, (max((len(str(x)) for x in labels), default=4) * 5.4 + 14) / (w * 72))
    top = 1 - (0.3 + (0.18 if legend else 0)) / h
    fig.subplots_adjust(left=left, right=0.97, top=top, bottom=0.32 / h, **space)


def _barh(
    ax: Any,
    labels: list[str],
    series: dict[str, Sequence[float]],
    stacked: bool,
    fmt: str,
    notes: Sequence[str] | None = None,
) -> None:
    y = np.arange(len(labels))
    k = 1 if stacked else len(series)
    h = 0.8 / k
    left = np.zeros(len(labels))
    grid = np.nan_to_num(np.array([list(v) for v in series.values()], dtype=float).reshape(len(series), -1))
    top = float(grid.sum(axis=0).max(initial=0) if stacked else grid.max(initial=0))
    for i, (name, v) in enumerate(zip(series, grid, strict=True)):
        pos = y if stacked else y - 0.4 + h * (i + 0.5)
        bars = ax.barh(
            pos,
            v,
            height=h if not stacked else 0.7,
            left=left if stacked else None,
            color=SERIES[i % len(SERIES)],
            label=name or None,
        )
        if not stacked or i == len(series) - 1:
            _annotate(ax, bars, left + v if stacked else v, top, notes, fmt)
        if stacked:
            left = left + v
    ax.set_yticks(y, labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first label on top
    ax.set_xlim(0, (top or 1) * 1.18)
    ax.grid(axis="x", linewidth=0.5)
    ax.set_axisbelow(True)
    if len(series) > 1:
        ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=len(series), fontsize=8)


def _annotate(ax: Any, bars: Any, totals: Any, top: float, notes: Sequence[str] | None, fmt: str) -> None:
    """The value (or the note) at the end of each row's bars."""
    for j, (b, t) in enumerate(zip(bars, totals, strict=True)):
        ax.text(
            t + top * 0.01,
            b.get_y() + b.get_height() / 2,
            notes[j] if notes else fmt.format(t),
            va="center",
            fontsize=7.5,
            color=FG,
        )


def _ridges(ax: Any, rows: Sequence[tuple[str, dict[str, Sequence[float]]]]) -> list[str]:
    arrays = [{k: np.asarray(v, dtype=float) for k, v in series.items()} for _, series in rows]
    every = np.concatenate([v for a in arrays for v in a.values()] or [np.zeros(1)])
    lo, hi = float(every.min()), float(every.max())
    if hi == lo:  # one value everywhere: centre it
        lo, hi = lo - 0.5, hi + 0.5
    most = max((v.size for a in arrays for v in a.values()), default=1)
    bins = np.linspace(lo, hi, int(np.clip(np.sqrt(most) * 2, 6, 24)) + 1)
    names: list[str] = []
    for j, series in enumerate(arrays):
        counts = {k: np.histogram(v, bins=bins)[0] for k, v in series.items()}
        peak = max((int(c.max()) for c in counts.values()), default=1) or 1
        for i, (name, c) in enumerate(counts.items()):
            color = SERIES[i % len(SERIES)]
            ax.stairs(
                j + 0.42 - 0.84 * c / peak,
                bins,
                baseline=j + 0.42,
                fill=True,
                alpha=0.55 if len(counts) > 1 else 0.85,
                color=color,
                label=name if name not in names else None,
            )
            if name not in names:
                names.append(name)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(bins[0], bins[-1])
    ax.grid(axis="x", linewidth=0.5)
    ax.set_axisbelow(True)
    return names


_GEOMETRY = re.compile(r'\s(d|x|y|transform)="([^"]*)"')
_DECIMALS = re.compile(r"(\d+\.\d\d)\d+")


def _round(m: re.Match[str]) -> str:
    return f' {m[1]}="{_DECIMALS.sub(_two_places, m[2])}"'


def _two_places(m: re.Match[str]) -> str:
    return m[1]


def _clean(svg: str, prefix: str) -> str:
    """Inline-ready SVG: no XML prolog or metadata, ids prefixed, theme colours as CSS variables,
    the page's font, coordinates to 2 decimals (a third of the size, no visible change)."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\sid="([^"]+)"', rf' id="{prefix}\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}\1)", svg)
    svg = re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{prefix}\1"', svg)
    svg = re.sub(r"font-family:[^;\"]*;?\s*", "", svg)
    svg = re.sub(r'\s(width|height)="[\d.]+pt"', "", svg, count=2)  # scale with the page
    for sentinel, var in _VARS.items():
        svg = svg.replace(sentinel, var)
    svg = _GEOMETRY.sub(_round, svg)
    return svg.replace(" \n", " ").replace("\n", " ")
