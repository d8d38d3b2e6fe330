"""The report's hand-written SVG charts: bars, panels and histograms drawn from what the callers
pass (empty stages, one label, equal scores, NaN), every text escaped, colours from the theme."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from selfalign.html_report.charts import FINE, STEPS, Charts, _tick_labels, _ticks, histograms

RECT = re.compile(r"M([\d.]+) ([\d.]+)h([\d.]+)v([\d.]+)h-[\d.]+z")


def bars(svg: str, colour: str) -> list[tuple[float, float, float, float]]:
    """(x, y, width, height) of every bar drawn in `colour` (var(--c1) …)."""
    paths = re.findall(rf'<path d="([^"]*)" style="fill:var\(--{colour}\)"', svg)
    return [tuple(map(float, m)) for d in paths for m in RECT.findall(d)]


def texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_stacked_bars_are_as_long_as_their_values_and_follow_each_other():
    svg = Charts().barh(["a", "b", "c"], {"out": [1, 3, 0], "dropped": [2, 0, 0]}, "t", stacked=True)
    out, dropped = bars(svg, "c1"), bars(svg, "c2")
    assert len(out) == 2 and len(dropped) == 1  # a value of 0 draws no bar
    unit = out[0][2] / 1
    assert out[1][2] == pytest.approx(3 * unit, abs=0.2) and dropped[0][2] == pytest.approx(2 * unit, abs=0.2)
    assert dropped[0][0] == pytest.approx(out[0][0] + out[0][2], abs=0.2)  # stacked after "out"
    assert dropped[0][1] == out[0][1] and out[0][1] < out[1][1]  # same row; first label on top
    assert texts(svg)[-5:-2] == ["3", "3", "0"]  # each row's total at its end, before the legend
    assert texts(svg)[-2:] == ["out", "dropped"]


def test_grouped_bars_share_a_row_without_overlapping():
    svg = Charts().barh(["x"], {"s1": [2.0], "s2": [4.0]}, "t")
    (a,), (b,) = bars(svg, "c1"), bars(svg, "c2")
    assert a[0] == b[0] and b[2] == pytest.approx(2 * a[2], abs=0.2)
    assert a[1] + a[3] == pytest.approx(b[1], abs=0.2)  # s2 right below s1
    assert {"2", "4"} <= set(texts(svg))


def test_nan_and_missing_values_are_zero_bars():
    svg = Charts().barh(["a", "b", "c"], {"n": [float("nan"), 2.0]}, "t")
    assert len(bars(svg, "c1")) == 1 and "nan" not in svg.lower()
    assert texts(svg).count("0") >= 2  # the values written at the end of the rows: 0, 2, 0


def test_every_text_is_escaped_and_never_interpreted():
    evil = '<b>&x"'
    c = Charts()
    svgs = [
        c.barh([evil], {evil: [1], "b": [2]}, evil, notes=[evil]),
        c.panels([(evil, [evil], [1.0])]),
        c.ridges([(evil, {evil: [1.0, 2.0], "final": [1.0]})], evil),
        c.barh(["c$1$ \\n"], {"n": [1]}, "$x^2$"),
    ]
    for svg in svgs[:3]:
        assert "<b>" not in svg and "&lt;b&gt;&amp;x&quot;" in svg
    assert "c$1$ \\n" in svgs[3] and "$x^2$" in svgs[3]


def test_charts_scale_use_theme_variables_and_have_unique_ids():
    c = Charts()
    svgs = [
        c.barh(["a"], {"n": [1]}, "t"),
        c.panels([("p", ["a"], [1.0])]),
        c.ridges([("r", {"s": [1.0]})], "t"),
    ]
    assert c.count == 3
    ids = [set(re.findall(r'id="([^"]+)"', s)) for s in svgs]
    assert all(ids) and not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    for s in svgs:
        assert s.startswith("<svg ") and 'viewBox="0 0 1056 ' in s
        root = s[: s.index(">")]
        assert " width=" not in root and " height=" not in root  # the page sizes it
        assert not re.search(r"#[0-9a-fA-F]{3,8}\b|rgb\(", s) and "font-family" not in s
        colours = set(re.findall(r"(?:fill|stroke):([^;\"]+)", s))
        assert colours and colours <= {"var(--fg)", "var(--muted)", "var(--grid)", "var(--c1)", "var(--c2)"}


def test_panels_show_the_labels_in_the_first_column_only():
    labels = ["load", "generate", "judge"]
    items = [(f"p{i}", labels, [1.0, 2.0, 3.0 * i]) for i in range(5)]  # 3 + 2: two rows of panels
    svg = Charts().panels(items, fmt="{:.4g}")
    shown = texts(svg)
    assert shown.count("judge") == 2  # the first panel of each row of panels
    assert all(f"p{i}" in shown for i in range(5))
    assert len(bars(svg, "c1")) == 5 * 3 - 1  # p0's judge is 0: no bar
    assert "12" in shown  # p4's judge, with the format given


def test_histogram_counts_sum_to_n_on_shared_bins():
    rows = [("a", {"at": list(range(50)), "final": [3.0, 7.0]}), ("b", {"at": [10.0, 20.0, float("nan")]})]
    bins, counts = histograms(rows)
    assert bins[0] == 0 and bins[-1] == 49  # the global min..max
    assert len(bins) - 1 == int(np.clip(math.sqrt(50) * 2, 6, 24))  # from the largest series
    assert [int(c.sum()) for row in counts for c in row.values()] == [50, 2, 2]  # NaN left out
    svg = Charts().ridges(rows, "t")
    assert texts(svg)[-2:] == ["at", "final"]  # a legend: two series
    assert 'fill-opacity="0.55"' in svg and 'fill-opacity="0.85"' in svg  # overlaid / alone


def test_all_equal_scores_and_one_label():
    bins, counts = histograms([("s", {"x": [4.0, 4.0, 4.0]})])
    assert bins[0] == 3.5 and bins[-1] == 4.5 and len(bins) == 7 and counts[0]["x"].sum() == 3
    svg = Charts().ridges([("s", {"x": [4.0, 4.0, 4.0]})], "t")
    assert "s" in texts(svg) and svg.count("<path") == 3  # grid, axes, the one histogram
    one = Charts().barh(["only"], {"n": [5]}, "t")
    assert len(bars(one, "c1")) == 1 and "only" in texts(one) and "<rect" not in one  # no legend


@pytest.mark.parametrize(
    "draw",
    [
        lambda c: c.barh([], {}, "t"),
        lambda c: c.barh(["a"], {}, "t"),
        lambda c: c.barh([], {"a": [], "b": []}, "t", stacked=True),
        lambda c: c.barh(["stage"], {"rows out": [0], "dropped": [0]}, "t", stacked=True, notes=["0"]),
        lambda c: c.panels([]),
        lambda c: c.panels([("requests", ["stage"], [0]), ("tokens", ["stage"], [0])]),
        lambda c: c.ridges([], "t"),
        lambda c: c.ridges([("a", {})], "t"),
        lambda c: c.ridges([("a", {"s": []}), ("b", {"s": []})], "t"),
    ],
)
def test_empty_input_draws_an_empty_chart(draw):
    svg = draw(Charts())
    assert svg.startswith("<svg ") and svg.endswith("</svg>") and "nan" not in svg.lower()
    height = float(re.search(r'viewBox="0 0 1056 ([\d.]+)"', svg)[1])
    heights = [float(h) for h in re.findall(r"v([\d.]+)h-", svg)]
    assert height > 0 and all(h >= 0 for h in heights)


def test_long_labels_set_the_margin_and_are_cut_at_half_the_width():
    svg = Charts().barh(["x" * 30, "y" * 300], {"n": [1, 2]}, "t")
    shown = texts(svg)
    assert "x" * 30 in shown  # whole: the margin is made for it
    cut = next(t for t in shown if t.startswith("y"))
    assert cut.endswith("…") and len(cut) < 80
    x0 = bars(svg, "c1")[0][0]
    assert 500 < x0 <= 528  # the plot starts at half the width at most
    wide = Charts().barh(["数据集" * 4, "ab"], {"n": [1, 2]}, "t")  # 12 characters, each 1 em wide
    assert bars(wide, "c1")[0][0] > 12 * 12 and "数据集" * 4 in texts(wide)


def test_ticks_are_round_and_labelled_alike():
    assert _ticks(0, 17.7, 9, STEPS) == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert _ticks(1, 100, 9, STEPS) == [20, 40, 60, 80, 100]
    assert _ticks(0, 17.7, 3, FINE) == [0, 6, 12]
    assert _tick_labels(_ticks(0, 0.575, 3, FINE)) == ["0.0", "0.2", "0.4"]
    assert _tick_labels(_ticks(0, 4425, 3, FINE)) == ["0", "1500", "3000"]
    assert _tick_labels(_ticks(0, 9, 4, STEPS)) == ["0.0", "2.5", "5.0", "7.5"]
    assert _ticks(3, 3, 9, STEPS) == [3]
