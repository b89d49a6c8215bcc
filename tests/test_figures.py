"""Figures are readable: no text overlaps other text, grid titles are large and name classes.

Table-driven: each figure is one line, ``(name, draw)``; every figure is checked for
overlapping text (tick labels, offset text, axis labels, titles) after drawing.
"""

from __future__ import annotations

import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from ntk_influence import plots
from ntk_influence.influence import InfluentialExamples

RNG = np.random.default_rng(0)
X = RNG.random((30, 64))
CLASSES = np.where(np.arange(30) % 2, 8, 3)


def _scatter(scale=2e-3):
    a = RNG.normal(size=40) * scale
    return plots.influence_scatter(a + 0.05 * scale * RNG.normal(size=40), a,
                                   ylabel="classic IHVP on the trained net (eq. 12)")


def _mixture(p):
    k = len(p)
    mx = types.SimpleNamespace(p=np.asarray(p), component_error=np.linspace(0.5, 0.1, k),
                               component_leverage=np.linspace(0.3, 0.05, k),
                               spearman_p_error=-1.0)
    return plots.mixture_plot(mx, title="mixture")


def _examples():
    ex = InfluentialExamples(np.array([0, 1, 2]), *[RNG.integers(0, 30, (3, 5)) for _ in range(3)],
                             *[RNG.normal(size=(3, 5)) * 1e-3 for _ in range(3)])
    return plots.influential_examples_plot(ex, X, X, (8, 8), title="digits",
                                           class_train=CLASSES, class_test=CLASSES)


def _dynamics():
    times = np.array([*np.geomspace(0.01, 1000, 11), np.inf])
    top = RNG.integers(0, 30, (times.size, 5))
    return plots.most_influential_plot(top, times, X, X, (8, 8), title="digits",
                                       class_train=CLASSES, class_test=CLASSES)


FIGURES = [
    ("figure1", _scatter),
    ("figure1 at 1e-2", lambda: plots.influence_scatter(
        0.6 * np.linspace(-1.25, 1.65, 12) * 1e-2, np.linspace(-1.25, 1.65, 12) * 1e-2)),
    ("figure1 at 1", lambda: _scatter(1.0)),
    ("theorem4 mixture", lambda: _mixture([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])),
    ("theorem4 mixture, close proportions", lambda: _mixture([0.3, 0.25, 0.2, 0.15, 0.1])),
    ("figure4 grid", _examples),
    ("figure6 grid", _dynamics),
]


def _texts(fig):
    """Every visible, non-empty text of the figure with its box on the canvas."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    out = []
    def shown(axis, minor=False):  # tick labels drawn: those inside the axis' view
        lo, hi = sorted(axis.get_view_interval())
        locs = axis.get_minorticklocs() if minor else axis.get_majorticklocs()
        return [t for t, x in zip(axis.get_ticklabels(minor=minor), locs)
                if lo - 1e-9 * abs(hi - lo) <= x <= hi + 1e-9 * abs(hi - lo)]

    for ax in fig.axes:
        items = [ax.title, ax.xaxis.label, ax.yaxis.label, ax.xaxis.get_offset_text(),
                 ax.yaxis.get_offset_text(), *shown(ax.xaxis), *shown(ax.yaxis),
                 *shown(ax.xaxis, minor=True)]
        out += [t for t in items if t.get_visible() and t.get_text().strip()]
    out += [t for t in fig.texts if t.get_visible() and t.get_text().strip()]  # suptitle too
    return [(t.get_text(), t.get_window_extent(r)) for t in out]


@pytest.mark.parametrize("name,draw", FIGURES, ids=[f[0] for f in FIGURES])
def test_no_text_overlaps(name, draw):
    fig = draw()
    try:
        boxes = _texts(fig)
        clashes = [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:]
                   if ba.overlaps(bb) and ba.intersection(ba, bb).width > 1
                   and ba.intersection(ba, bb).height > 1]
        assert not clashes, f"{name}: overlapping text {clashes[:5]}"
    finally:
        plt.close(fig)


def test_figure1_names_the_scale_in_its_labels_not_in_an_offset():
    fig = _scatter()
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        assert ax.xaxis.get_offset_text().get_text() == ""
        assert "10^{-3}" in ax.get_xlabel() and "10^{-3}" in ax.get_ylabel()
        assert "slope" in ax.texts[0].get_text()  # statistics of the unscaled data
    finally:
        plt.close(fig)


def test_mixture_ticks_are_the_proportions():
    p = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04]
    fig = _mixture(p)
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert shown == [f"{v:.3g}" for v in sorted(p)]
        assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
    finally:
        plt.close(fig)


@pytest.mark.parametrize("draw", [_examples, _dynamics], ids=["figure4", "figure6"])
def test_image_grid_titles_are_readable_and_name_classes(draw):
    fig = draw()
    try:
        titles = [ax.title for ax in fig.axes if ax.get_title()]
        assert titles and min(t.get_fontsize() for t in titles) >= 8
        tests = [t.get_text() for t in titles if t.get_text().startswith("test #")]
        assert tests and all(t.endswith(("(3)", "(8)")) for t in tests), tests
        train = [t.get_text() for t in titles if not t.get_text().startswith("test #")]
        assert all("(3)" in t or "(8)" in t for t in train), train[:3]
    finally:
        plt.close(fig)


def test_report_prints_mixture_errors_as_numbers(tmp_path):
    from ntk_influence.cli._report import fig3_report
    from ntk_influence.io import save_json

    save_json(tmp_path / "summary.json", {
        "spearman_density_error": -0.25,
        "mixture": {"p": [0.4, 0.1], "component_error": [0.123456, 0.5],
                    "spearman_p_error": -1.0}})
    line = next(ln for ln in fig3_report(tmp_path) if "mixture" in ln)
    assert "'" not in line and '"' not in line, line
    assert "p_k = [0.4, 0.1]" in line and "component = [0.123, 0.5]" in line, line
