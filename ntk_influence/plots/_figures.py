"""Single-axes figures: Figure 1 (influence scatter), 2 (lambda sweep), 3 (density), time agreement.

Also the width curves of the deep-net comparison, the Agg-backend choice (:func:`pyplot`) and the
atomic PNG writer (:func:`save_figure`). Every function draws on a new figure (or a given
``ax``), returns the ``Figure``, and saves it when ``path`` is given (atomically, 150 dpi).
"""

from __future__ import annotations

import io as _io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_write_bytes


def pyplot() -> Any:
    """``matplotlib.pyplot``, on the Agg backend unless a display or a notebook backend is in use.

    Returns:
      the ``matplotlib.pyplot`` module.
    """
    import matplotlib

    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() not in (
            "agg", "inline", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plain(text: Any) -> str:
    """``text`` shown as written: every ``$`` escaped, so matplotlib never reads it as mathtext.

    Titles and labels that carry user text (a dataset path, a name) go through this; a ``$``
    would otherwise start a mathtext expression, drawn wrongly or failing to draw.

    Args:
      text: a title or label (anything printable).

    Returns:
      The text with ``$`` escaped as ``\\$``.
    """
    return str(text).replace("$", r"\$")


def finish(fig: Any, ax: Any, title: str, path: str | os.PathLike[str] | None) -> Any:
    """Title the axes (when ``title``), tighten the layout and save (when ``path``).

    Args:
      fig: the matplotlib Figure.
      ax: its axes.
      title: title; an empty string leaves the axes untitled.
      path: PNG path, or None not to save.

    Returns:
      ``fig``.
    """
    if title:
        ax.set_title(plain(title))
    fig.tight_layout()
    return save_figure(fig, path)


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

    plt = pyplot()
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
    ax.set_xlabel(plain(xlabel) + unit)
    ax.set_ylabel(plain(ylabel) + unit)
    ax.ticklabel_format(style="plain", useOffset=False)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # short labels that never touch
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    if title:
        ax.set_title(plain(title))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def new_ax(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def lambda_sweep_plot(sweep: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """Figure 2: the IHVP's actual relative error per lambda against Theorem 3's bounds.

    Args:
      sweep: a :class:`~ntk_influence.experiments.LambdaSweep`.
      ax: axes to draw on (a new figure if None).
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = new_ax(ax, (5.0, 3.8))
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
    return finish(fig, ax, title, path)


def density_plot(analysis: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """Figure 3: each training point's KDE log-density against its IHVP error rate.

    Points are coloured by their ridge leverage ``h_i``; Spearman's rho is shown.

    Args:
      analysis: a :class:`~ntk_influence.experiments.DensityAnalysis`.
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = new_ax(ax, (4.8, 4.0))
    sc = ax.scatter(analysis.log_density, analysis.error_rate, c=analysis.leverage, s=14,
                    cmap="viridis", edgecolor="none")
    fig.colorbar(sc, ax=ax, label="leverage $h_i$")
    ax.set_xlabel(f"log density (Gaussian KDE, {analysis.kde.bandwidth_rule}, "
                  f"{analysis.kde.dim}-d{' PCA' if analysis.kde.pca else ''})")
    ax.set_ylabel(f"IHVP error rate ({analysis.statistic} over test points)")
    ax.text(0.96, 0.96, f"Spearman $\\rho$ = {analysis.spearman_density_error:.3f}",
            transform=ax.transAxes, ha="right", va="top", fontsize=9,
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    return finish(fig, ax, title, path)


"""Font size of image-grid titles (Figures 4 and 6), readable at the saved 150 dpi."""


def time_labels(times: np.ndarray) -> list[str]:
    return ["inf" if np.isinf(t) else f"{t:.3g}" for t in times]


def time_agreement_plot(result: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """First-order against exact time-``t`` influence: relative error and correlation over time.

    Args:
      result: :class:`~ntk_influence.influence.TimeInfluenceResult` computed with ``method="both"``.
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    if result.agreement is None:
        raise InputError("the result has no agreement; compute it with method='both'.")
    fig, ax = new_ax(ax, (5.0, 3.6))
    tt = np.asarray(result.times, float)
    xs = np.arange(tt.size)
    ag = result.agreement
    ax.plot(xs, ag.rel_error, "o-", label="relative error")
    ax.plot(xs, ag.pearson, "s-", label="Pearson R")
    ax.plot(xs, ag.slope, "^-", label="slope")
    ax.set_xticks(xs, time_labels(tt), rotation=45, fontsize=7)
    ax.set_xlabel(f"training time ({result.time_unit} units)")
    ax.set_ylabel("first order vs exact")
    ax.legend(fontsize=7)
    return finish(fig, ax, title, path)


#: The figures of the paper that :func:`plot_figure` draws, by name.
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
    fig, ax = new_ax(ax, (5.5, 4.0))
    for i, (name, rows) in enumerate(sorted(curves.items())):
        rows = sorted(rows, key=lambda r: r["width"])
        w = [r["width"] for r in rows]
        line = ax.plot(w, [r["pearson"] for r in rows], "o-", color=f"C{i}",
                       label=f"{plain(name)}: NTK")[0]
        if all(r.get("ihvp_pearson") is not None for r in rows):
            ax.plot(w, [r["ihvp_pearson"] for r in rows], "s--", color=line.get_color(),
                    alpha=0.7, label=f"{plain(name)}: IHVP")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("width (hidden units; channels for cnn)")
    ax.set_ylabel("Pearson R with leave-one-out retraining")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(plain(title))
    return save_figure(fig, path)
