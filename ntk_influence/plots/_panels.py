"""Multi-panel figures: image grids (Figures 4 and 6), groups (Figure 5), label noise (Figure 7).

Also the Theorem 4 mixture panel and the attribution yardsticks figure (LDS and mislabel AUC per
method, predicted against actual subset loss). Each function returns the ``Figure`` and saves it
atomically as PNG when ``path`` is given.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..attribution import (
    AttributionResult,
    CleaningResult,
    additive_predictions,
)
from ..errors import InputError
from ._figures import finish, new_ax, plain, pyplot, save_figure, time_labels


def attribution_figure(result: AttributionResult, *, path: str | os.PathLike[str] | None = None
                       ) -> Any:
    """LDS and mislabel AUC per method as bars; predicted vs actual subset loss for the best two.

    Args:
      result: an :class:`AttributionResult`.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    plt = pyplot()
    m = {k: v for k, v in result.metrics.items() if "lds" in v}
    names = sorted(m, key=lambda k: -m[k]["lds"])
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    ax[0].bar(names, [m[k]["lds"] for k in names], color="tab:blue")
    ax[0].set_title("LDS (Spearman across subsets)")
    aucs = {k: v["mislabel_auc"] for k, v in result.metrics.items() if "mislabel_auc" in v}
    a_names = sorted(aucs, key=lambda k: -aucs[k])
    ax[1].bar(a_names, [aucs[k] for k in a_names], color="tab:orange")
    ax[1].set_title("mislabel detection AUC")
    for a in ax[:2]:
        a.tick_params(axis="x", rotation=45)
    for a, name in zip(ax[2:], names[:2], strict=False):
        pred = result.refit_losses if name == "ntk_refit" else additive_predictions(
            result.scores[name], result.subset_indices, result.full_losses)
        a.scatter(result.subset_losses.ravel(), pred.ravel(), s=4, alpha=0.5)
        lo = min(result.subset_losses.min(), pred.min())
        hi = max(result.subset_losses.max(), pred.max())
        a.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        a.set_xlabel("actual subset loss (retrained)")
        a.set_ylabel("predicted")
        a.set_title(f"{name}: LDS {m[name]['lds']:.3f}")
    fig.tight_layout()
    return save_figure(fig, path)


def cleaning_figure(result: CleaningResult, *, path: str | os.PathLike[str] | None = None
                    ) -> Any:
    """Test loss, test accuracy and the share of flipped labels removed, against ``k``.

    One line per ranking; the dotted vertical line marks ``k_star``, chosen by the exact refit's
    validation loss.

    Args:
      result: a :class:`CleaningResult`.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    plt = pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
    panels = (("test loss (retrained)", result.test_loss), ("test accuracy", result.test_acc),
              ("share of removed points that were flipped", result.precision))
    for a, (title, table) in zip(ax, panels, strict=True):
        for name, v in table.items():
            ks, vals = (result.ks[1:], v[1:]) if table is result.precision else (result.ks, v)
            a.plot(ks, vals, marker="o", ms=3, lw=1.2, label=name,
                   ls="-" if name == "ntk_refit" else "--")
        a.axvline(result.k_star, color="k", ls=":", lw=0.8)
        a.set_xlabel("training points removed, k")
        a.set_title(title)
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _class_of(classes: Any, i: int) -> str:
    """`` (class c)`` for point ``i`` when the classes are known, else nothing."""
    return "" if classes is None else f" ({int(np.asarray(classes)[i])})"


GRID_FONT = 8


def _image(v: np.ndarray, image_shape: tuple[int, ...] | None) -> tuple[np.ndarray, str | None]:
    a = np.asarray(v, float).reshape(-1)
    if image_shape is None:
        side = int(round(np.sqrt(a.size)))
        if side * side != a.size:
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
      examples: :class:`~ntk_influence.influence.InfluentialExamples`.
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
    plt = pyplot()
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
        fig.suptitle(plain(title), fontsize=GRID_FONT + 2)
    fig.tight_layout()
    return save_figure(fig, path)


def matrix_text(matrix: Any) -> str:
    """The matrix ``B`` of eq. (19) as figure text: ``"K^-1"`` drawn as ``K⁻¹``, never as a caret.

    Args:
      matrix: ``ComplexityResult.matrix``, e.g. ``"K^-1"`` or ``"(K + 1e-06 I)^-1"``.

    Returns:
      The text, with ``^-1`` as the superscript ``⁻¹`` and any ``$`` escaped.
    """
    return plain(str(matrix).replace("^-1", "\u207b\u00b9"))


def complexity_plot(groups: Any, complexity: Any, *, ax: Any = None, title: str = "",
                    path: Any = None) -> Any:
    """Figure 5: complexity ``C(X_I)`` (eq. 19) of each influence group, harmful (0) to helpful.

    Args:
      groups: :class:`~ntk_influence.influence.InfluenceGroups`.
      complexity: :class:`~ntk_influence.influence.ComplexityResult` (or an array).
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = new_ax(ax, (5.0, 3.6))
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
        ax.text(0.5, 0.96, f"B = {matrix_text(matrix)}", transform=ax.transAxes, ha="center",
                va="top", fontsize=8)
    return finish(fig, ax, title, path)


def most_influential_plot(top: Any, times: Any, x_train: Any, x_test: Any,
                          image_shape: tuple[int, ...] | None, *, test_index: Any = None,
                          title: str = "", path: Any = None, class_train: Any = None,
                          class_test: Any = None) -> Any:
    """Figure 6: the most influential training image for some test images as training goes on.

    Rows are test points: the test image, then the most influential training image at each
    time. Without image data (``image_shape`` None and non-square ``d``), the indices are drawn
    as lines over time instead.

    Args:
      top: ``(T, n_test)`` indices from :func:`~ntk_influence.influence.most_influential`.
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
    plt = pyplot()
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
        ax.set_xticks(np.arange(tt.size), time_labels(tt), rotation=45, fontsize=7)
        ax.set_xlabel("training time")
        ax.set_ylabel("most influential training index")
        ax.legend(fontsize=7)
    else:
        fig, axes = plt.subplots(len(sel), tt.size + 1, squeeze=False,
                                 figsize=(1.15 * (tt.size + 1), 1.4 * len(sel) + 0.9))
        labels = time_labels(tt)
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
        fig.suptitle(plain(title), fontsize=GRID_FONT + 2)
    fig.tight_layout()
    return save_figure(fig, path)


def label_noise_plot(result: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """Figure 7: share of clean and noisy points among the most influential points over time.

    The clean share is a solid line with filled circles; the noisy share is dashed with hollow
    squares and drawn on top, so both stay visible where the shares are equal.

    Args:
      result: :class:`~ntk_influence.experiments.LabelNoiseResult`.
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = new_ax(ax, (5.0, 3.6))
    tt = np.asarray(result.times, float)
    sh = result.shares
    finite_pos = np.isfinite(tt).all() and (tt > 0).all()
    xs = tt if finite_pos else np.arange(tt.size)
    # where the two shares are equal the lines coincide: the noisy line is drawn dashed, with
    # hollow markers, over the solid clean one, so both stay visible
    ax.plot(xs, sh.share_clean, "o-", color="C0", ms=7, lw=2.2, zorder=2, label="clean")
    ax.plot(xs, sh.share_noisy, "s--", color="C1", ms=5, lw=1.4, mfc="none", mew=1.4, zorder=3,
            label="noisy (flipped)")
    ax.axhline(sh.noise_fraction, color="k", ls=":", lw=0.8,
               label=f"share of noisy points ({sh.noise_fraction:.0%})")
    if finite_pos:
        ax.set_xscale("log")
    else:
        ax.set_xticks(xs, time_labels(tt), rotation=45, fontsize=7)
    ax.set_xlabel(f"training time ({result.time_unit} units)")
    ax.set_ylabel("share of most influential points")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return finish(fig, ax, title, path)


def mixture_plot(experiment: Any, *, ax: Any = None, title: str = "", path: Any = None) -> Any:
    """Theorem 4 on Definition 1's mixture: each component's IHVP error rate against ``p_k``.

    Args:
      experiment: :class:`~ntk_influence.experiments.MixtureExperiment`.
      ax: axes to draw on.
      title: title.
      path: PNG path to save to.

    Returns:
      The matplotlib Figure.
    """
    fig, ax = new_ax(ax, (4.8, 3.6))
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
    return finish(fig, ax, title, path)
