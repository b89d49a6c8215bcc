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
            "agg", "module://matplotlib_inline.backend_inline"):
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
    p, a = np.asarray(predicted, float).ravel(), np.asarray(actual, float).ravel()
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
    else:
        fig = ax.figure
    ax.scatter(a, p, s=18, alpha=0.8, edgecolor="none")
    lo, hi = float(min(a.min(), p.min())), float(max(a.max(), p.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8, label="y = x")
    if p.size > 2 and np.std(a) > 0 and np.std(p) > 0:
        r = stats.pearsonr(a, p)[0]
        rho = stats.spearmanr(a, p)[0]
        slope = float(np.dot(a - a.mean(), p - p.mean()) / np.dot(a - a.mean(), a - a.mean()))
        ax.text(0.04, 0.96, f"R = {r:.4f}\n$\\rho$ = {rho:.4f}\nslope = {slope:.3f}",
                transform=ax.transAxes, va="top", fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.ticklabel_format(style="sci", scilimits=(-3, 3))
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
