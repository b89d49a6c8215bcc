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


# ---------------------------------------------------------------- user text is never mathtext

DOLLAR = r"cost $5 \frac at npz:/tmp/a$b/data.npz"  # unescaped: a mathtext error
TIMES = np.array([0.1, 1.0, 10.0, 30.0, 100.0, np.inf])


class _Complexity:
    """A complexity result: values through ``__array__`` and the matrix ``B`` used."""

    def __init__(self, matrix="K^-1"):
        self.matrix = matrix

    def __array__(self, dtype=None, copy=None):
        return np.linspace(2.0, 0.5, 4)


def _groups():
    return types.SimpleNamespace(group_score=np.array([-1.0, -0.1, 0.2, 1.5]), reduce="sum")


def _noise(times=TIMES):
    clean = np.array([0.6, 0.4, 0.3, 0.5, 0.5, 0.5])[: times.size]
    sh = types.SimpleNamespace(share_clean=clean, share_noisy=1 - clean, noise_fraction=0.4)
    return types.SimpleNamespace(times=times, shares=sh, time_unit="flow")


def _sweep():
    lams = np.array([0.1, 1.0, 10.0])
    v = np.array([0.5, 0.2, 0.05])
    return types.SimpleNamespace(lams=lams, mean_error_rate=v, median_error_rate=v,
                                 mean_leverage=v, lower=v / 2, upper=v * 1.5)


def _density():
    kde = types.SimpleNamespace(bandwidth_rule="scott", dim=10, pca=True)
    return types.SimpleNamespace(log_density=RNG.normal(size=20), error_rate=RNG.random(20),
                                 leverage=RNG.random(20), kde=kde, statistic="median",
                                 spearman_density_error=-0.5)


def _agreement():
    ag = types.SimpleNamespace(rel_error=RNG.random(6), pearson=RNG.random(6), slope=RNG.random(6))
    return types.SimpleNamespace(agreement=ag, times=TIMES, time_unit="flow")


def _examples_data():
    return InfluentialExamples(np.array([0, 1]), *[RNG.integers(0, 30, (2, 3)) for _ in range(3)],
                               *[RNG.normal(size=(2, 3)) * 1e-3 for _ in range(3)])


# (name, draw(title, path)): every figure that takes a title (or a label) from its caller
TITLED = [
    ("figure1", lambda t, p: plots.influence_scatter(RNG.normal(size=9), RNG.normal(size=9),
                                                     title=t, xlabel=t, ylabel=t, path=p)),
    ("figure2", lambda t, p: plots.lambda_sweep_plot(_sweep(), title=t, path=p)),
    ("figure3", lambda t, p: plots.density_plot(_density(), title=t, path=p)),
    ("figure4", lambda t, p: plots.influential_examples_plot(_examples_data(), X, X, (8, 8),
                                                             title=t, path=p)),
    ("figure5", lambda t, p: plots.complexity_plot(_groups(), _Complexity(t), title=t, path=p)),
    ("figure6", lambda t, p: plots.most_influential_plot(RNG.integers(0, 30, (6, 5)), TIMES, X,
                                                         X, (8, 8), title=t, path=p)),
    ("figure7", lambda t, p: plots.label_noise_plot(_noise(), title=t, path=p)),
    ("time agreement", lambda t, p: plots.time_agreement_plot(_agreement(), title=t, path=p)),
    ("theorem4", lambda t, p: plots.save_figure(_mixture([0.5, 0.3, 0.2]), p)),
    ("width curves", lambda t, p: plots.width_curves(
        {t: [{"width": 64, "pearson": 0.9}, {"width": 128, "pearson": 0.95}]}, title=t, path=p)),
]


@pytest.mark.parametrize("name,draw", TITLED, ids=[f[0] for f in TITLED])
def test_dollar_in_title_and_path_is_drawn_as_written(name, draw, tmp_path):
    folder = tmp_path / "runs$1"
    folder.mkdir()
    fig = draw(DOLLAR, folder / "fig$.png")
    try:
        fig.canvas.draw()  # raised ValueError (mathtext) before titles were escaped
        assert (folder / "fig$.png").stat().st_size > 0
        texts = [t for t in fig.findobj(matplotlib.text.Text) if "at npz" in t.get_text()]
        for t in texts:  # shown verbatim: every $ escaped, so no mathtext
            assert t.get_text().count("$") == t.get_text().count(r"\$"), t.get_text()
    finally:
        plt.close(fig)


@pytest.mark.parametrize("matrix,shown", [("K^-1", "B = K⁻¹"),
                                          ("(K + 1e-06 I)^-1", "B = (K + 1e-06 I)⁻¹")])
def test_figure5_names_its_matrix_without_a_caret(matrix, shown):
    fig = plots.complexity_plot(_groups(), _Complexity(matrix))
    try:
        fig.canvas.draw()
        texts = [t.get_text() for t in fig.axes[0].texts]
        assert texts == [shown], texts
    finally:
        plt.close(fig)


@pytest.mark.parametrize("times", [TIMES, np.array([0.1, 1.0, 10.0, 30.0, 100.0])],
                         ids=["with inf", "finite"])
def test_figure7_keeps_both_lines_visible_where_they_coincide(times):
    res = _noise(times)
    assert np.allclose(res.shares.share_clean[3:], res.shares.share_noisy[3:])  # from t = 30 on
    fig = plots.label_noise_plot(res)
    try:
        clean, noisy = (next(ln for ln in fig.axes[0].lines if ln.get_label() == name)
                        for name in ("clean", "noisy (flipped)"))
        assert clean.get_linestyle() == "-" and noisy.get_linestyle() == "--"
        assert clean.get_marker() != noisy.get_marker()
        assert noisy.get_zorder() > clean.get_zorder()  # the dashed line lies on top
        assert noisy.get_markerfacecolor() == "none"  # hollow: the filled marker shows through
        assert noisy.get_markersize() < clean.get_markersize()
    finally:
        plt.close(fig)


def test_report_gives_figure4_numbers_per_test_point(tmp_path):
    from ntk_influence.cli.reproduce import PARTS
    from ntk_influence.io import save_json, save_npz

    ex = _examples_data()
    save_npz(tmp_path / "examples.npz", test_index=ex.test_index, helpful=ex.helpful,
             harmful=ex.harmful, uninfluential=ex.uninfluential, helpful_value=ex.helpful_value,
             harmful_value=ex.harmful_value, uninfluential_value=ex.uninfluential_value)
    save_json(tmp_path / "summary.json", {"data": {"n_train": 30}, "settings": {"k": 3}})
    report = next(p for p in PARTS if p.name == "figure4").report
    lines = report(tmp_path)  # the figure4 part's report
    rows = [ln for ln in lines if ln.startswith("| 0 |") or ln.startswith("| 1 |")]
    assert len(rows) == 2, lines
    for r, row in enumerate(rows):
        cells = [c.strip() for c in row.strip("|").split("|")]
        i, v = int(ex.helpful[r, 0]), ex.helpful_value[r, 0]
        assert cells[1].startswith(f"#{i} ({v:+.2e})"), row
        assert cells[2].startswith(f"#{int(ex.harmful[r, 0])} ("), row
        assert cells[3].count("#") == 3, row
    assert "out of 30 training points" in lines[0]


def test_notebook_figure4_and_figure6_name_classes():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "build_notebooks.py"
    text = path.read_text()
    for fn in ("influential_examples_plot(", "most_influential_plot("):
        call = text[text.index(fn):text.index(")\n", text.index(fn))]
        assert "class_train=ds.class_train" in call and "class_test=ds.class_test" in call, call
    assert importlib.util.spec_from_file_location("b", path) is not None


def test_cli_draws_figures_for_a_data_path_with_dollars(tmp_path):
    from ntk_influence.cli import main
    from ntk_influence.data import load_dataset

    ds = load_dataset("digits:3,8", n_train=20, n_test=5, seed=0)
    data = tmp_path / r"a$\frac" / "d$.npz"  # unescaped in a title: a mathtext error
    data.parent.mkdir()
    np.savez(data, x_train=ds.x_train, y_train=ds.class_train, x_test=ds.x_test,
             y_test=ds.class_test)
    out = tmp_path / "out$1"
    code = main(["examples", "--data", f"npz:{data}:3,8", "--n-train", "20", "--n-test", "5",
                 "--test-index", "0", "--k", "2", "--quiet", "--out", str(out)])
    assert code == 0 and (out / "fig4_examples.png").stat().st_size > 1000
