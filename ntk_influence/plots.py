"""Matplotlib figures for the paper's Table 1 and Figures 1-7, saved as PNG.

Every function draws on a new figure (or a given ``ax``), returns the ``Figure``, and saves it when
``path`` is given (atomically, 150 dpi). The Agg backend is used when no display is available.
"""

from __future__ import annotations

import io as _io
import os
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_write_bytes


def _plt() -> Any:
    import matplotlib

    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() not in (
            "agg", "inline", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str] | None, dpi: int = 150) -> Any:
    """Save ``fig`` as PNG atomically when ``path`` is given; return the figure.

    Args:
      fig: a matplotlib Figure.
      path: destination, or None to skip saving.
      dpi: resolution.

    Returns:
      The figure.
    """
    if path is not None:
        buf = _io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        atomic_write_bytes(Path(path), buf.getvalue())
    return fig


def influence_scatter(predicted: Any, actual: Any, *, ax: Any = None, title: str = "",
                      xlabel: str = "actual influence (leave-one-out retraining)",
                      ylabel: str = "predicted influence (NTK)", path: Any = None) -> Any:
    """Figure 1: predicted against actual influence, with R, rho and the least-squares slope.

    Args:
      predicted: predicted influences (e.g. ``I_ntk``).
      actual: actual influences (``I_nn`` from retraining).
      ax: axes to draw on (a new figure if None).
      title: title.
      xlabel: x-axis label.
      ylabel: y-axis label.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    from scipy import stats

    plt = _plt()
    p0, a0 = np.asarray(predicted, float).ravel(), np.asarray(actual, float).ravel()
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
    else:
        fig = ax.figure
    # one power of ten for both axes, named in the labels: no offset text to collide with them
    big = float(np.max(np.abs(np.concatenate([a0, p0])), initial=0.0))
    e = int(np.floor(np.log10(big))) if big > 0 and np.isfinite(big) else 0
    e = e if e <= -2 or e >= 3 else 0
    p, a = p0 / 10.0**e, a0 / 10.0**e
    unit = f" [$\\times 10^{{{e}}}$]" if e else ""
    ax.scatter(a, p, s=18, alpha=0.8, edgecolor="none")
    lo, hi = float(min(a.min(), p.min())), float(max(a.max(), p.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8, label="y = x")
    if p.size > 2 and np.std(a) > 0 and np.std(p) > 0:
        r = stats.pearsonr(a0, p0)[0]
        rho = stats.spearmanr(a0, p0)[0]
        slope = float(np.dot(a0 - a0.mean(), p0 - p0.mean())
                      / np.dot(a0 - a0.mean(), a0 - a0.mean()))
        ax.text(0.04, 0.96, f"R = {r:.4f}\n$\\rho$ = {rho:.4f}\nslope = {slope:.3f}",
                transform=ax.transAxes, va="top", fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    ax.set_xlabel(xlabel + unit)
    ax.set_ylabel(ylabel + unit)
    ax.ticklabel_format(style="plain", useOffset=False)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # short labels that never touch
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# Figures 2-7: regularisation, density, examples, complexity and dynamics
# ----------------------------------------------------------------------------------------------

def _new_ax(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def lambda_sweep_plot(sweep: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """Figure 2: the IHVP's actual relative error per lambda against Theorem 3's bounds.

    Args:
      sweep: a :class:`~ntk_influence.analysis.LambdaSweep`.
      ax: axes to draw on (a new figure if None).
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = _new_ax(ax, (5.0, 3.8))
    lams = np.asarray(sweep.lams)
    ax.plot(lams, sweep.mean_error_rate, "o-", label="mean actual error rate")
    ax.plot(lams, sweep.median_error_rate, "s-", ms=4, label="median actual error rate")
    ax.plot(lams, sweep.mean_leverage, "^:", ms=4, label="mean leverage $h_i$ (term I)")
    ax.plot(lams, sweep.lower, "k--", label=r"$\lambda_{min}/(\lambda_{min}+\lambda)$ (Thm 3)")
    ax.plot(lams, sweep.upper, "k:", label=r"$\lambda_{max}/(\lambda_{max}+\lambda)$")
    if getattr(sweep, "net_error_rate", None) is not None:
        ax.plot(lams, sweep.net_error_rate, "d-", label="finite net IHVP error rate")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(r"$\lambda$")
    ax.set_ylabel("relative error of the IHVP")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def density_plot(analysis: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """Figure 3: each training point's KDE log-density against its IHVP error rate.

    Points are coloured by their ridge leverage ``h_i``; Spearman's rho is shown.

    Args:
      analysis: a :class:`~ntk_influence.density.DensityAnalysis`.
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = _new_ax(ax, (4.8, 4.0))
    sc = ax.scatter(analysis.log_density, analysis.error_rate, c=analysis.leverage, s=14,
                    cmap="viridis", edgecolor="none")
    fig.colorbar(sc, ax=ax, label="leverage $h_i$")
    ax.set_xlabel(f"log density (Gaussian KDE, {analysis.kde.bandwidth_rule}, "
                  f"{analysis.kde.dim}-d{' PCA' if analysis.kde.pca else ''})")
    ax.set_ylabel(f"IHVP error rate ({analysis.statistic} over test points)")
    ax.text(0.96, 0.96, f"Spearman $\\rho$ = {analysis.spearman_density_error:.3f}",
            transform=ax.transAxes, ha="right", va="top", fontsize=9,
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _class_of(classes: Any, i: int) -> str:
    """`` (class c)`` for point ``i`` when the classes are known, else nothing."""
    return "" if classes is None else f" ({int(np.asarray(classes)[i])})"


GRID_FONT = 8
"""Font size of image-grid titles (Figures 4 and 6), readable at the saved 150 dpi."""


def _image(v: np.ndarray, image_shape: tuple[int, ...] | None) -> tuple[np.ndarray, str | None]:
    a = np.asarray(v, float).reshape(-1)
    if image_shape is None:
        side = int(round(np.sqrt(a.size)))
        if side * side != a.size:
            from ._errors import InputError

            raise InputError(f"cannot show a {a.size}-dimensional point as an image; pass "
                             "image_shape (Dataset.image_shape).")
        image_shape = (side, side)
    img = a.reshape(image_shape)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return img, (None if img.ndim == 3 else "gray_r")


def influential_examples_plot(examples: Any, x_train: Any, x_test: Any,
                              image_shape: tuple[int, ...] | None, *, title: str = "",
                              path: Any = None, class_train: Any = None,
                              class_test: Any = None) -> Any:
    """Figure 4: test images with their most helpful, most harmful and least influential images.

    Rows are test points; columns are the test image, then ``k`` helpful, ``k`` harmful and
    ``k`` uninfluential training images, each kind under a heading. Every image is titled with
    its index, its class (when given) and its influence. Each image is min-max scaled for
    display; 8x8 digits and 28x28 MNIST are grey, 32x32x3 CIFAR in colour
    (``Dataset.image_shape``).

    Args:
      examples: :class:`~ntk_influence.analysis.InfluentialExamples`.
      x_train: ``(n_train, d)`` training inputs.
      x_test: ``(n_test, d)`` test inputs.
      image_shape: shape of one image, e.g. ``(8, 8)``, ``(28, 28)``, ``(32, 32, 3)``.
      title: title.
      path: PNG path to save to.
      class_train: ``(n_train,)`` class of each training point (``Dataset.class_train``).
      class_test: ``(n_test,)`` class of each test point (``Dataset.class_test``).

    Returns:
      The matplotlib Figure.
    """
    plt = _plt()
    xtr, xte = np.asarray(x_train), np.asarray(x_test)
    m, k = examples.helpful.shape
    cols = 1 + 3 * k
    fig, axes = plt.subplots(m, cols, figsize=(1.25 * cols, 1.55 * m + 0.9), squeeze=False)
    kinds = [("helpful", examples.helpful, examples.helpful_value),
             ("harmful", examples.harmful, examples.harmful_value),
             ("uninfluential", examples.uninfluential, examples.uninfluential_value)]
    for r, j in enumerate(examples.test_index):
        img, cmap = _image(xte[j], image_shape)
        axes[r, 0].imshow(img, cmap=cmap)
        axes[r, 0].set_title(f"test #{int(j)}{_class_of(class_test, int(j))}", fontsize=GRID_FONT,
                             fontweight="bold")
        for c_k, (name, idx, val) in enumerate(kinds):
            for q in range(k):
                ax = axes[r, 1 + c_k * k + q]
                i = int(idx[r, q])
                img, cmap = _image(xtr[i], image_shape)
                ax.imshow(img, cmap=cmap)
                head = f"{name}\n" if r == 0 else ""  # the kind heads the first row
                ax.set_title(f"{head}#{i}{_class_of(class_train, i)}\nI={val[r, q]:+.1e}",
                             fontsize=GRID_FONT)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=GRID_FONT + 2)
    fig.tight_layout()
    return save_figure(fig, path)


def complexity_plot(groups: Any, complexity: Any, *, ax: Any = None, title: str = "",
                    path: Any = None) -> Any:
    """Figure 5: complexity ``C(X_I)`` (eq. 19) of each influence group, harmful (0) to helpful.

    Args:
      groups: :class:`~ntk_influence.complexity.InfluenceGroups`.
      complexity: :class:`~ntk_influence.complexity.ComplexityResult` (or an array).
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = _new_ax(ax, (5.0, 3.6))
    vals = np.asarray(complexity, float)
    ids = np.arange(vals.size)
    ax.bar(ids, vals, color="tab:blue", alpha=0.8, label="complexity $C(X_I)$")
    ax.set_xticks(ids)
    ax.set_xlabel("group (0 = most harmful, last = most helpful)")
    ax.set_ylabel("complexity $C(X_I)$ (eq. 19)")
    ax2 = ax.twinx()
    ax2.plot(ids, groups.group_score, "o-", color="tab:red", ms=4)
    ax2.axhline(0.0, color="tab:red", lw=0.5, ls=":")
    ax2.set_ylabel(f"influence ({groups.reduce} over test points)", color="tab:red")
    matrix = getattr(complexity, "matrix", None)
    if matrix:
        ax.text(0.5, 0.96, f"B = {matrix}", transform=ax.transAxes, ha="center", va="top",
                fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _time_labels(times: np.ndarray) -> list[str]:
    return ["inf" if np.isinf(t) else f"{t:.3g}" for t in times]


def most_influential_plot(top: Any, times: Any, x_train: Any, x_test: Any,
                          image_shape: tuple[int, ...] | None, *, test_index: Any = None,
                          title: str = "", path: Any = None, class_train: Any = None,
                          class_test: Any = None) -> Any:
    """Figure 6: the most influential training image for some test images as training goes on.

    Rows are test points: the test image, then the most influential training image at each
    time. Without image data (``image_shape`` None and non-square ``d``), the indices are drawn
    as lines over time instead.

    Args:
      top: ``(T, n_test)`` indices from :func:`~ntk_influence.dynamics.most_influential`.
      times: ``(T,)`` times.
      x_train: training inputs.
      x_test: test inputs.
      image_shape: shape of one image, or None.
      test_index: which test points (default: the first 5).
      title: title.
      path: PNG path to save to.
      class_train: ``(n_train,)`` class of each training point, shown with its index.
      class_test: ``(n_test,)`` class of each test point.

    Returns:
      The matplotlib Figure.
    """
    plt = _plt()
    top = np.asarray(top)
    tt = np.asarray(times, float)
    sel = np.arange(min(5, top.shape[1])) if test_index is None else np.atleast_1d(test_index)
    xtr, xte = np.asarray(x_train), np.asarray(x_test)
    d = xtr.reshape(xtr.shape[0], -1).shape[1]
    as_images = image_shape is not None or int(round(np.sqrt(d))) ** 2 == d
    if not as_images:
        fig, ax = plt.subplots(figsize=(5.0, 3.5))
        for j in sel:
            ax.step(np.arange(tt.size), top[:, j], where="mid", label=f"test {int(j)}")
        ax.set_xticks(np.arange(tt.size), _time_labels(tt), rotation=45, fontsize=7)
        ax.set_xlabel("training time")
        ax.set_ylabel("most influential training index")
        ax.legend(fontsize=7)
    else:
        fig, axes = plt.subplots(len(sel), tt.size + 1, squeeze=False,
                                 figsize=(1.15 * (tt.size + 1), 1.4 * len(sel) + 0.9))
        labels = _time_labels(tt)
        for r, j in enumerate(sel):
            img, cmap = _image(xte[j], image_shape)
            axes[r, 0].imshow(img, cmap=cmap)
            axes[r, 0].set_title(f"test #{int(j)}{_class_of(class_test, int(j))}",
                                 fontsize=GRID_FONT, fontweight="bold")
            for c in range(tt.size):
                i = int(top[c, j])
                img, cmap = _image(xtr[i], image_shape)
                axes[r, c + 1].imshow(img, cmap=cmap)
                head = f"t={labels[c]}\n" if r == 0 else ""
                axes[r, c + 1].set_title(f"{head}#{i}{_class_of(class_train, i)}",
                                         fontsize=GRID_FONT)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=GRID_FONT + 2)
    fig.tight_layout()
    return save_figure(fig, path)


def label_noise_plot(result: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """Figure 7: share of clean and noisy points among the most influential points over time.

    Args:
      result: :class:`~ntk_influence.dynamics.LabelNoiseResult`.
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = _new_ax(ax, (5.0, 3.6))
    tt = np.asarray(result.times, float)
    sh = result.shares
    finite_pos = np.isfinite(tt).all() and (tt > 0).all()
    xs = tt if finite_pos else np.arange(tt.size)
    ax.plot(xs, sh.share_clean, "o-", label="clean")
    ax.plot(xs, sh.share_noisy, "s-", label="noisy (flipped)")
    ax.axhline(sh.noise_fraction, color="k", ls=":", lw=0.8,
               label=f"share of noisy points ({sh.noise_fraction:.0%})")
    if finite_pos:
        ax.set_xscale("log")
    else:
        ax.set_xticks(xs, _time_labels(tt), rotation=45, fontsize=7)
    ax.set_xlabel(f"training time ({result.time_unit} units)")
    ax.set_ylabel("share of most influential points")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def time_agreement_plot(result: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """First-order against exact time-``t`` influence: relative error and correlation over time.

    Args:
      result: :class:`~ntk_influence.dynamics.TimeInfluenceResult` computed with ``method="both"``.
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    from ._errors import InputError

    if result.agreement is None:
        raise InputError("the result has no agreement; compute it with method='both'.")
    fig, ax = _new_ax(ax, (5.0, 3.6))
    tt = np.asarray(result.times, float)
    xs = np.arange(tt.size)
    ag = result.agreement
    ax.plot(xs, ag.rel_error, "o-", label="relative error")
    ax.plot(xs, ag.pearson, "s-", label="Pearson R")
    ax.plot(xs, ag.slope, "^-", label="slope")
    ax.set_xticks(xs, _time_labels(tt), rotation=45, fontsize=7)
    ax.set_xlabel(f"training time ({result.time_unit} units)")
    ax.set_ylabel("first order vs exact")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


#: The figures of the paper that :func:`plot_figure` draws, by name.
FIGURES: dict[str, Any] = {
    "fig1": influence_scatter,
    "fig2": lambda_sweep_plot,
    "fig3": density_plot,
    "fig4": influential_examples_plot,
    "fig5": complexity_plot,
    "fig6": most_influential_plot,
    "fig7": label_noise_plot,
    "time-agreement": time_agreement_plot,
}


def plot_figure(name: str, *args: Any, **kwargs: Any) -> Any:
    """Draw one of the paper's figures by name (``"fig1"`` ... ``"fig7"``, ``"time-agreement"``).

    Args:
      name: figure name; ``"figure2"`` and ``"2"`` are accepted for ``"fig2"``.
      *args: positional arguments of the figure function.
      **kwargs: keyword arguments of the figure function (e.g. ``path``).

    Returns:
      The matplotlib Figure.
    """
    from ._errors import InputError

    key = str(name).lower().replace("figure", "fig").replace(" ", "")
    if key.isdigit():
        key = f"fig{key}"
    if key not in FIGURES:
        raise InputError(f"unknown figure {name!r}; choose one of {sorted(FIGURES)}.")
    return FIGURES[key](*args, **kwargs)


def mixture_plot(experiment: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """Theorem 4 on Definition 1's mixture: each component's IHVP error rate against ``p_k``.

    Args:
      experiment: :class:`~ntk_influence.density.MixtureExperiment`.
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = _new_ax(ax, (4.8, 3.6))
    order = np.argsort(experiment.p)
    p = np.asarray(experiment.p)[order]
    ax.plot(p, np.asarray(experiment.component_error)[order], "o-",
            label="median IHVP error rate")
    ax.plot(p, np.asarray(experiment.component_leverage)[order], "s--", label="mean leverage $h_i$")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    gaps = np.diff(np.log10(p)) if p.size > 1 else np.ones(1)
    crowded = bool(np.min(gaps) < 0.15)
    ax.set_xticks(p, [f"{v:.3g}" for v in p], rotation=45 if crowded else 0, fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("component proportion $p_k$")
    ax.set_ylabel("error rate of points in component $k$")
    ax.text(0.96, 0.96, f"Spearman $\\rho$ = {experiment.spearman_p_error:.2f}",
            transform=ax.transAxes, ha="right", va="top", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


FIGURES["theorem4"] = mixture_plot


def width_curves(curves: dict[str, list[dict[str, Any]]], *, ax: Any = None, title: str = "",
                 path: Any = None) -> Any:
    """Pearson R of NTK influence against retraining over width, one curve per architecture.

    Args:
      curves: architecture name -> the width rows of ``compare.json`` (``width``, ``pearson``,
        and ``ihvp_pearson`` drawn dashed when present).
      ax: matplotlib axes (default: a new figure).
      title: figure title.
      path: save the figure here.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = _new_ax(ax, (5.5, 4.0))
    for i, (name, rows) in enumerate(sorted(curves.items())):
        rows = sorted(rows, key=lambda r: r["width"])
        w = [r["width"] for r in rows]
        line = ax.plot(w, [r["pearson"] for r in rows], "o-", color=f"C{i}",
                       label=f"{name}: NTK")[0]
        if all(r.get("ihvp_pearson") is not None for r in rows):
            ax.plot(w, [r["ihvp_pearson"] for r in rows], "s--", color=line.get_color(),
                    alpha=0.7, label=f"{name}: IHVP")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width (hidden units; channels for cnn)")
    ax.set_ylabel("Pearson R with leave-one-out retraining")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save_figure(fig, path)
